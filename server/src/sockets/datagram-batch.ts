/**
 * Datagrams that a UDP socket sends in one go of the event loop, handed to the kernel together:
 * one sendmmsg(2) for up to 64 of them instead of one sendmsg each through node:dgram, each with
 * its destination (a struct sockaddr built by the socket) or none on a connected socket.
 * On these machines node's send costs the daemon about 6 us of CPU per 1 KiB datagram, a batch
 * about 2.5 us (measured beside each other, with a receiver that kept up): the UDP path is bound
 * by the daemon's CPU, so this is most of what a datagram costs it.
 *
 * The payloads are copied into one staging buffer whose address is fixed, so the structures the
 * kernel reads point only at memory that never moves. Linux only (where the C library loads);
 * elsewhere sendmmsgBatcher() is null and sockets send through node:dgram as before.
 */
import { endianness } from 'node:os';
import { libc, type Libc } from '../native/libc.js';

/** Most datagrams per system call. */
export const MAX_BATCH_DATAGRAMS = 64;
/** Bytes staged for one call: room for the largest datagram (65,535 bytes) many times over. */
const STAGE_BYTES = 256 * 1024;
/** struct mmsghdr on 64-bit Linux: a struct msghdr (56 bytes), msg_len, padding. */
const MMSGHDR_BYTES = 64;
/** Offset of msg_iov in struct msghdr, then msg_iovlen. */
const MSG_IOV_AT = 16;
const MSG_IOVLEN_AT = 24;
/** struct iovec: iov_base, iov_len. */
const IOVEC_BYTES = 16;
/** Room for one destination, a struct sockaddr_in6 (28 bytes), rounded up. */
const NAME_BYTES = 32;
/** Which 32-bit half of a 64-bit field comes first in memory. */
const LOW = endianness() === 'LE' ? 0 : 1;
const HIGH = 1 - LOW;

/** One datagram waiting for the batch's system call. */
export interface Batched {
  readonly payload: Uint8Array;
  /** Its destination as a struct sockaddr, or null on a connected socket. */
  readonly name: Uint8Array | null;
}

export class DatagramBatcher {
  /** System calls made, and the datagrams they sent (the daemon's metrics). */
  calls = 0;
  datagrams = 0;
  private readonly stage = Buffer.allocUnsafeSlow(STAGE_BYTES);
  private readonly stageAt: number;
  private readonly vec = Buffer.alloc(MAX_BATCH_DATAGRAMS * MMSGHDR_BYTES);
  /** The iovecs, as 32-bit words: each datagram's address and length are written here. */
  private readonly iov: Uint32Array;
  /** The messages, as 32-bit words: each datagram's destination is pointed to here. */
  private readonly words: Uint32Array;
  /** The destinations of the datagrams of one call, NAME_BYTES each. */
  private readonly names = Buffer.alloc(MAX_BATCH_DATAGRAMS * NAME_BYTES);
  private readonly namesAt: number;

  constructor(private readonly sendmmsg: NonNullable<Libc['sendmmsg']>, address: (buf: Uint8Array) => number) {
    this.stageAt = address(this.stage);
    const iovBytes = Buffer.alloc(MAX_BATCH_DATAGRAMS * IOVEC_BYTES);
    this.iov = new Uint32Array(iovBytes.buffer, iovBytes.byteOffset, iovBytes.length / 4);
    const iovAt = address(iovBytes);
    this.namesAt = address(this.names);
    // Every message has one iovec of its own and no control data; its name is set per call.
    const words = new Uint32Array(this.vec.buffer, this.vec.byteOffset, this.vec.length / 4);
    this.words = words;
    for (let i = 0; i < MAX_BATCH_DATAGRAMS; i++) {
      const at = (i * MMSGHDR_BYTES + MSG_IOV_AT) / 4;
      split(iovAt + i * IOVEC_BYTES, words, at);
      words[(i * MMSGHDR_BYTES + MSG_IOVLEN_AT) / 4 + LOW] = 1;
    }
  }

  /**
   * Sends items[from..] on fd, as many as one call takes: how many went (at least one), or
   * -errno when none did (the error belongs to items[from]).
   */
  send(fd: number, items: readonly Batched[], from: number): number {
    let n = 0;
    let staged = 0;
    const iov = this.iov;
    for (let i = from; i < items.length && n < MAX_BATCH_DATAGRAMS; i++) {
      const { payload, name } = items[i]!;
      if (staged + payload.length > STAGE_BYTES) break;
      this.stage.set(payload, staged);
      const m = (n * MMSGHDR_BYTES) / 4;
      if (name) {
        this.names.set(name, n * NAME_BYTES);
        split(this.namesAt + n * NAME_BYTES, this.words, m);
        this.words[m + 2] = name.length;
      } else {
        this.words[m] = 0;
        this.words[m + 1] = 0;
        this.words[m + 2] = 0;
      }
      const w = (n * IOVEC_BYTES) / 4;
      split(this.stageAt + staged, iov, w);
      iov[w + 2 + LOW] = payload.length;
      iov[w + 2 + HIGH] = 0;
      staged += payload.length;
      n++;
    }
    const r = this.sendmmsg(fd, this.vec, n);
    this.calls++;
    if (r > 0) this.datagrams += r;
    return r;
  }
}

/** Writes a 64-bit address as two 32-bit words from words[at]. */
function split(address: number, words: Uint32Array, at: number): void {
  words[at + LOW] = address % 0x1_0000_0000;
  words[at + HIGH] = Math.floor(address / 0x1_0000_0000);
}

let batcher: DatagramBatcher | null | undefined;

/** The daemon's one batcher, or null where sendmmsg is not available (or SPIWIRE_NO_NATIVE is set). */
export function sendmmsgBatcher(): DatagramBatcher | null {
  if (batcher !== undefined) return batcher;
  const native = libc();
  batcher = native?.sendmmsg ? new DatagramBatcher(native.sendmmsg, native.address) : null;
  return batcher;
}

/** The batches' counts so far (zero before any UDP socket sent), without making the batcher. */
export function batchCounts(): { calls: number; datagrams: number } {
  return batcher ? { calls: batcher.calls, datagrams: batcher.datagrams } : { calls: 0, datagrams: 0 };
}
