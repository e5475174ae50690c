/**
 * Datagrams that a UDP socket sends in one go of the event loop, handed to the kernel together:
 * one sendmmsg(2) for up to 64 messages instead of one sendmsg each through node:dgram, each with
 * its destination (a struct sockaddr built by the socket) or none on a connected socket.
 * On these machines node's send costs the daemon about 6 us of CPU per 1 KiB datagram, a batch
 * about 2.5 us (measured beside each other, with a receiver that kept up): the UDP path is bound
 * by the daemon's CPU, so this is most of what a datagram costs it.
 *
 * A run of datagrams of one size to one destination goes as one message with UDP_SEGMENT
 * (generic segmentation offload, Linux 4.18+): the kernel builds one buffer for the run and cuts
 * it into the same datagrams on their way out, at about half the CPU again. The last of a run may
 * be shorter; each datagram still leaves on its own, its boundaries and bytes as sent. Where the
 * kernel refuses a run (a datagram larger than the route's MTU, IPsec, an old kernel), the socket
 * sends its datagrams one message each from then on (segment false).
 *
 * The payloads are copied into one staging buffer whose address is fixed, so the structures the
 * kernel reads point only at memory that never moves. Linux only (where the C library loads);
 * elsewhere sendmmsgBatcher() is null and sockets send through node:dgram as before.
 */
import { endianness } from 'node:os';
import { libc, type Libc } from '../native/libc.js';

/** Most messages per system call. */
export const MAX_BATCH_DATAGRAMS = 64;
/** Most datagrams in one segmented message (the kernel's UDP_MAX_SEGMENTS is 64, 128 since 6.9). */
const MAX_SEGMENTS = 64;
/** Most payload bytes in one segmented message: what one IPv4 datagram can carry. */
const MAX_SEGMENTED_BYTES = 65_507;
/** Bytes staged for one call: room for the largest datagram (65,535 bytes) many times over. */
const STAGE_BYTES = 256 * 1024;
/** struct mmsghdr on 64-bit Linux: a struct msghdr (56 bytes), msg_len, padding. */
const MMSGHDR_BYTES = 64;
/** Offset of msg_iov in struct msghdr, then msg_iovlen, msg_control, msg_controllen. */
const MSG_IOV_AT = 16;
const MSG_IOVLEN_AT = 24;
const MSG_CONTROL_AT = 32;
const MSG_CONTROLLEN_AT = 40;
/**
 * One control message with UDP_SEGMENT: struct cmsghdr (cmsg_len, a size_t, then cmsg_level and
 * cmsg_type) and the segment size, a u16: CMSG_LEN(2) = 18 bytes, CMSG_SPACE(2) = 24.
 */
const CMSG_BYTES = 24;
const CMSG_LEN = 18;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
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
  /** System calls made, the datagrams they sent, and those of them sent in segmented runs (the daemon's metrics). */
  calls = 0;
  datagrams = 0;
  segmented = 0;
  /** Whether the first message of the last call that sent nothing was a segmented run. */
  failedRun = false;
  /**
   * The last call sent fewer messages than it was given and more than none: a message after the
   * first failed, and sendmmsg dropped its error (which may have been an earlier datagram's ICMP
   * error, the socket's pending error).
   */
  cutShort = false;
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
  /** One UDP_SEGMENT control message per message, its segment size written per call. */
  private readonly controls = Buffer.alloc(MAX_BATCH_DATAGRAMS * CMSG_BYTES);
  private readonly controlsAt: number;
  private readonly cmsg: DataView;
  /** How many datagrams each message of the last call carried. */
  private readonly carried = new Uint8Array(MAX_BATCH_DATAGRAMS);

  constructor(private readonly sendmmsg: NonNullable<Libc['sendmmsg']>, address: (buf: Uint8Array) => number) {
    this.stageAt = address(this.stage);
    const iovBytes = Buffer.alloc(MAX_BATCH_DATAGRAMS * IOVEC_BYTES);
    this.iov = new Uint32Array(iovBytes.buffer, iovBytes.byteOffset, iovBytes.length / 4);
    const iovAt = address(iovBytes);
    this.namesAt = address(this.names);
    this.controlsAt = address(this.controls);
    // Every message has one iovec of its own; its name and control data are set per call.
    const words = new Uint32Array(this.vec.buffer, this.vec.byteOffset, this.vec.length / 4);
    this.words = words;
    const cmsg = new DataView(this.controls.buffer, this.controls.byteOffset, this.controls.length);
    this.cmsg = cmsg;
    const little = LOW === 0;
    for (let i = 0; i < MAX_BATCH_DATAGRAMS; i++) {
      const at = (i * MMSGHDR_BYTES + MSG_IOV_AT) / 4;
      split(iovAt + i * IOVEC_BYTES, words, at);
      words[(i * MMSGHDR_BYTES + MSG_IOVLEN_AT) / 4 + LOW] = 1;
      cmsg.setUint32(i * CMSG_BYTES + LOW * 4, CMSG_LEN, little);
      cmsg.setInt32(i * CMSG_BYTES + 8, SOL_UDP, little);
      cmsg.setInt32(i * CMSG_BYTES + 12, UDP_SEGMENT, little);
    }
  }

  /**
   * Sends items[from..] on fd, as many as one call takes: how many datagrams went (at least one),
   * or -errno when none did (the error belongs to items[from], and failedRun says whether it was
   * sent as a segmented run). segment: runs of one size to one destination may go as one message.
   */
  send(fd: number, items: readonly Batched[], from: number, segment: boolean): number {
    let n = 0;
    let staged = 0;
    let i = from;
    const iov = this.iov;
    const words = this.words;
    while (i < items.length && n < MAX_BATCH_DATAGRAMS) {
      const { payload, name } = items[i]!;
      const size = payload.length;
      if (staged + size > STAGE_BYTES) break;
      this.stage.set(payload, staged);
      let bytes = size;
      let count = 1;
      // A run: the datagrams that follow, to the same destination, of the same size but the last.
      if (segment && size > 0) {
        for (let j = i + 1; j < items.length && count < MAX_SEGMENTS; j++) {
          const next = items[j]!;
          const length = next.payload.length;
          if (next.name !== name || length === 0 || length > size) break;
          if (bytes + length > MAX_SEGMENTED_BYTES || staged + bytes + length > STAGE_BYTES) break;
          this.stage.set(next.payload, staged + bytes);
          bytes += length;
          count++;
          if (length < size) break;
        }
      }
      const m = (n * MMSGHDR_BYTES) / 4;
      if (name) {
        this.names.set(name, n * NAME_BYTES);
        split(this.namesAt + n * NAME_BYTES, words, m);
        words[m + 2] = name.length;
      } else {
        words[m] = 0;
        words[m + 1] = 0;
        words[m + 2] = 0;
      }
      const c = (n * MMSGHDR_BYTES + MSG_CONTROL_AT) / 4;
      const cl = (n * MMSGHDR_BYTES + MSG_CONTROLLEN_AT) / 4;
      if (count > 1) {
        this.cmsg.setUint16(n * CMSG_BYTES + 16, size, LOW === 0);
        split(this.controlsAt + n * CMSG_BYTES, words, c);
        words[cl + LOW] = CMSG_BYTES;
      } else {
        words[c] = 0;
        words[c + 1] = 0;
        words[cl + LOW] = 0;
      }
      const w = (n * IOVEC_BYTES) / 4;
      split(this.stageAt + staged, iov, w);
      iov[w + 2 + LOW] = bytes;
      iov[w + 2 + HIGH] = 0;
      this.carried[n] = count;
      staged += bytes;
      i += count;
      n++;
    }
    const r = this.sendmmsg(fd, this.vec, n);
    this.calls++;
    this.cutShort = r > 0 && r < n;
    if (r <= 0) {
      this.failedRun = this.carried[0]! > 1;
      return r;
    }
    let sent = 0;
    for (let k = 0; k < r; k++) {
      const count = this.carried[k]!;
      sent += count;
      if (count > 1) this.segmented += count;
    }
    this.datagrams += sent;
    return sent;
  }
}

/** Address families as Linux's struct sockaddr holds them. */
const LINUX_AF_INET = 2;
const LINUX_AF_INET6 = 10;

/**
 * A numeric address and port as the struct sockaddr a batched datagram carries (sockaddr_in, or
 * sockaddr_in6 with no flow label and no scope), or null where it cannot be made here.
 */
export function sockaddrBytes(v6: boolean, address: string, port: number): Uint8Array | null {
  const native = libc();
  if (!native) return null;
  const bytes = new Uint8Array(v6 ? 28 : 16);
  if (!native.addressBytes(v6 ? 'ipv6' : 'ipv4', address, bytes.subarray(v6 ? 8 : 4))) return null;
  const view = new DataView(bytes.buffer);
  // sa_family in the host's order (a u16 first), the port in network order.
  view.setUint16(0, v6 ? LINUX_AF_INET6 : LINUX_AF_INET, LOW === 0);
  view.setUint16(2, port, false);
  return bytes;
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
export function batchCounts(): { calls: number; datagrams: number; segmented: number } {
  return batcher ? { calls: batcher.calls, datagrams: batcher.datagrams, segmented: batcher.segmented } : { calls: 0, datagrams: 0, segmented: 0 };
}
