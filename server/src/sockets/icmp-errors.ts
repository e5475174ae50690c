/**
 * ICMP errors for the datagrams of any UDP socket, connected or not.
 *
 * Windows reports each ICMP port unreachable for an earlier datagram by a receive of the socket
 * (WSAECONNRESET), whether the socket was connected or sent with WSPSendTo, until
 * SIO_UDP_CONNRESET turns that off; likewise each ICMP time exceeded (the datagram's TTL ran out
 * on the way) as WSAENETRESET, until SIO_UDP_NETRESET turns that off. Linux tells an unconnected
 * socket nothing, unless IP_RECVERR (IPV6_RECVERR) is on: then every ICMP error queues an entry on
 * the socket's error queue and sets its pending error, which the next receive or send takes.
 *
 * The queue must be read. While it holds anything, epoll reports the descriptor in error and
 * libuv, which never reads it, wakes for it in a busy loop. Node hears of an entry only through
 * the pending error, and not always: when the second or a later message of one sendmmsg takes it
 * (the daemon's batches, and libuv's own for node's send queue), the call returns the messages
 * before it and the error is dropped. So the socket reads the queue after a batch that sendmmsg
 * cut short, after node's sends, and whenever node reports an error; and it reads each entry's
 * error, since the pending error names only the last one.
 */
import { constants } from 'node:os';
import * as W from '@spiwire/proto';
import { libc, type NativeConstants } from '../native/libc.js';

type RecvErr = NonNullable<NativeConstants['RECVERR']>;

const { ECONNREFUSED } = constants.errno;
/** Entries read from one queue at most per drain: the kernel bounds the queue by the receive buffer anyway. */
const MAX_DRAINED = 4096;

/** struct msghdr (LP64): name, namelen, iov, iovlen, control, controllen, flags. */
const MSGHDR_BYTES = 56;
/** struct cmsghdr (LP64): len (8), level (4), type (4), then struct sock_extended_err, whose ee_errno comes first. */
const CMSG_DATA_AT = 16;
/** struct sock_extended_err: ee_errno (u32), ee_origin (u8), ee_type (u8), ee_code (u8), ... */
const EE_ORIGIN_AT = 4;
const EE_TYPE_AT = 5;
/** ee_origin of an entry an ICMP (SO_EE_ORIGIN_ICMP) or ICMPv6 (SO_EE_ORIGIN_ICMP6) message made. */
const SO_EE_ORIGIN_ICMP = 2;
const SO_EE_ORIGIN_ICMP6 = 3;
/** ICMP Time Exceeded, and ICMPv6's. */
const ICMP_TIME_EXCEEDED = 11;
const ICMPV6_TIME_EXCEEDED = 3;

/** What one drain found. */
export interface DrainedErrors {
  /** Entries read. */
  entries: number;
  /** Of them, port unreachables (ECONNREFUSED). */
  refused: number;
  /** Of them, time exceeded: ICMP type 11, ICMPv6 type 3 (Linux gives them EHOSTUNREACH, as a host unreachable). */
  timeExceeded: number;
  /** Of them, entries with the errno the caller asked about (0: not asked). */
  matched: number;
  /** What the last port unreachable or time exceeded among them was (null: neither came). */
  latest: 'refused' | 'timeExceeded' | null;
}

/**
 * The buffers of one recvmsg, made once (reads are synchronous, one entry at a time). The header
 * points at the others by address, so all of them are kept here, out of the collector's reach.
 */
interface ErrorReader {
  msghdr: Buffer;
  control: Buffer;
  iov: Buffer;
  payload: Buffer;
}
let reader: ErrorReader | null = null;

function errorReader(): ErrorReader | null {
  if (reader) return reader;
  const native = libc();
  if (!native?.recvmsg) return null;
  // Each entry comes with the start of the datagram it was about; those bytes are not needed.
  const payload = Buffer.alloc(64);
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt(native.address(payload)), 0);
  iov.writeBigUInt64LE(BigInt(payload.length), 8);
  const control = Buffer.alloc(128);
  const msghdr = Buffer.alloc(MSGHDR_BYTES);
  msghdr.writeBigUInt64LE(BigInt(native.address(iov)), 16);
  msghdr.writeBigUInt64LE(1n, 24);
  msghdr.writeBigUInt64LE(BigInt(native.address(control)), 32);
  reader = { msghdr, control, iov, payload };
  return reader;
}

/**
 * Where the struct sock_extended_err of the IP_RECVERR or IPV6_RECVERR control message among the
 * first length bytes of control starts, or -1. Other control messages (timestamps, packet info)
 * would come before it, should the socket ever ask for them.
 */
function extendedErrorAt(control: Buffer, length: number, recverr: RecvErr): number {
  const { v4, v6 } = recverr;
  let at = 0;
  while (at + CMSG_DATA_AT + EE_TYPE_AT + 1 <= length) {
    const cmsgLength = control.readUInt32LE(at);
    const level = control.readInt32LE(at + 8);
    const type = control.readInt32LE(at + 12);
    if ((level === v4.level && type === v4.name) || (level === v6.level && type === v6.name)) return at + CMSG_DATA_AT;
    if (cmsgLength < CMSG_DATA_AT) break;
    // CMSG_NXTHDR: each message is padded to 8 bytes.
    at += (cmsgLength + 7) & ~7;
  }
  return -1;
}

/** Whether the sock_extended_err at ee tells of an ICMP or ICMPv6 time exceeded. */
function isTimeExceeded(control: Buffer, ee: number): boolean {
  const origin = control[ee + EE_ORIGIN_AT];
  const type = control[ee + EE_TYPE_AT];
  return (origin === SO_EE_ORIGIN_ICMP && type === ICMP_TIME_EXCEEDED) || (origin === SO_EE_ORIGIN_ICMP6 && type === ICMPV6_TIME_EXCEEDED);
}

/** Turns ICMP error reporting on for a bound UDP descriptor; false where it could not be (then nothing is queued). */
export function reportIcmpErrors(fd: number, v6: boolean): boolean {
  const native = libc();
  const at = native?.c.RECVERR;
  if (!native || !at || !errorReader()) return false;
  const { level, name } = v6 ? at.v6 : at.v4;
  return native.setInt(fd, level, name, 1) === 0;
}

const found: DrainedErrors = { entries: 0, refused: 0, timeExceeded: 0, matched: 0, latest: null };

/**
 * Reads every entry of the descriptor's error queue and says what they were (the result is
 * reused by the next call). Reading the last entry also clears the pending error they set.
 */
export function drainIcmpErrors(fd: number, match = 0): DrainedErrors {
  found.entries = found.refused = found.timeExceeded = found.matched = 0;
  found.latest = null;
  const native = libc();
  const r = errorReader();
  const recverr = native?.c.RECVERR;
  if (!native?.recvmsg || !r || !recverr) return found;
  const flags = native.c.MSG_ERRQUEUE | native.c.MSG_DONTWAIT;
  while (found.entries < MAX_DRAINED) {
    // msg_controllen, a size_t, in two halves: no BigInt per call on this path.
    r.msghdr.writeUInt32LE(r.control.length, 40);
    r.msghdr.writeUInt32LE(0, 44);
    r.msghdr.writeInt32LE(0, 48);
    if (native.recvmsg(fd, r.msghdr, flags) < 0) break;
    found.entries++;
    const ee = extendedErrorAt(r.control, r.msghdr.readUInt32LE(40), recverr);
    if (ee < 0) continue;
    const errno = r.control.readUInt32LE(ee);
    if (errno === ECONNREFUSED) {
      found.refused++;
      found.latest = 'refused';
    } else if (isTimeExceeded(r.control, ee)) {
      found.timeExceeded++;
      found.latest = 'timeExceeded';
    }
    if (match !== 0 && errno === match) found.matched++;
  }
  return found;
}

/** One byte to peek into: a datagram of any length shows there (a zero-length one reads as 0). */
const peekByte = Buffer.alloc(1);

/**
 * Whether a datagram waits in the kernel's receive queue that node has not read yet: 'yes', 'no',
 * 'error' when the peek took the socket's pending ICMP error instead (the kernel reports that
 * before any datagram; its entry stays on the error queue, to be read), or null where it cannot
 * tell. Windows hands out the datagrams waiting before an ICMP error report, and a datagram the
 * kernel holds has arrived as far as the sender can tell (one sent to itself, say).
 */
export function datagramWaits(fd: number): 'yes' | 'no' | 'error' | null {
  const native = libc();
  if (!native) return null;
  const r = native.recv(fd, peekByte, native.c.MSG_PEEK | native.c.MSG_DONTWAIT);
  if (r >= 0) return 'yes';
  return -r === native.c.EAGAIN || -r === native.c.EWOULDBLOCK ? 'no' : 'error';
}

/** At most this many reports wait on one socket; later ones are dropped (a socket whose owner never receives must not grow). */
export const MAX_PENDING_REPORTS = 4096;

/**
 * The ICMP errors a UDP socket's receives have yet to report, in the order they came. Windows
 * reports each one (a WSAECONNRESET per port unreachable, a WSAENETRESET per time exceeded) by a
 * receive of its own. The codes wait in a ring of bytes, made on the first report: at most 4 KiB
 * for a socket that gets them, nothing for one that does not.
 */
export class PendingIcmpReports {
  /** Index 1 and 2 of the codes below, oldest at head. */
  private ring: Uint8Array | null = null;
  private head = 0;
  private count = 0;
  private static readonly CODES = [0, W.WSAECONNRESET, W.WSAENETRESET];

  get pending(): boolean {
    return this.count > 0;
  }

  /** Queues count reports of code (WSAECONNRESET or WSAENETRESET); those past the limit are dropped. */
  add(code: number, count = 1): void {
    const kind = PendingIcmpReports.CODES.indexOf(code);
    if (kind <= 0) return;
    const ring = (this.ring ??= new Uint8Array(MAX_PENDING_REPORTS));
    for (let i = 0; i < count && this.count < MAX_PENDING_REPORTS; i++) {
      ring[(this.head + this.count) % MAX_PENDING_REPORTS] = kind;
      this.count++;
    }
  }

  /** The oldest report's code, taken; 0 when none waits. */
  take(): number {
    if (this.count === 0 || !this.ring) return 0;
    const code = PendingIcmpReports.CODES[this.ring[this.head]!]!;
    this.head = (this.head + 1) % MAX_PENDING_REPORTS;
    this.count--;
    return code;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
  }
}
