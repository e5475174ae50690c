/**
 * What a TCP socket needs from the C library (koffi, native/libc.ts) that node has no API for:
 * options on the descriptor, urgent data, the process as the owner of SIGURG, and a reset that
 * works after FIN is queued. Every function is a no-op (or reports "unavailable") where the C
 * library cannot be loaded; values are clamped to what the kernel takes, never thrown on.
 */
import * as net from 'node:net';
import * as W from '@spiwire/proto';
import { wsaFromErrno } from '../errno-map.js';
import { fdOf, libc, type Libc } from '../native/libc.js';
import type { SocketOptions } from './emulated-socket.js';

const INT32_MAX = 0x7fffffff;
/** The largest keep-alive values Linux takes (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). */
const KERNEL_MAX = { keepIdle: 32767, keepInterval: 32767, keepCount: 127 };

/**
 * IP_TTL / IPV6_UNICAST_HOPS, IP_TOS and IP_DONTFRAGMENT / IPV6_DONTFRAG on a real socket of either
 * transport: what the packets it sends carry. A dual-stack IPv6 socket's IPv4 packets take the same
 * time to live and don't-fragment bit. The kernel takes a TTL of 1 to 255; 0, which the option
 * keeps, goes as 1. False where the C library is missing.
 */
export function applyIpOptions(fd: number | null, v6: boolean, dualStack: boolean, o: SocketOptions): boolean {
  const native = libc();
  if (!native || fd === null) return false;
  const c = native.c;
  const ttl = Math.max(1, o.ttl);
  if (v6) native.setInt(fd, c.IPPROTO_IPV6, c.IPV6_UNICAST_HOPS, ttl);
  if (!v6 || dualStack) native.setInt(fd, c.IPPROTO_IP, c.IP_TTL, ttl);
  if (!v6) native.setInt(fd, c.IPPROTO_IP, c.IP_TOS, o.tos);
  const df = c.DONT_FRAGMENT;
  if (df) {
    if (v6) native.setInt(fd, c.IPPROTO_IPV6, df.v6, o.dontFragment ? 1 : 0);
    if (!v6 || dualStack) native.setInt(fd, c.IPPROTO_IP, df.v4.name, o.dontFragment ? df.v4.always : df.v4.never);
  }
  return true;
}

/** Applies SO_KEEPALIVE, TCP_NODELAY and, through the C library, the options node cannot set. */
/** oobInline: what the kernel socket gets for SO_OOBINLINE (TcpSocket turns it on only when that is safe). */
export function applyTcpOptions(conn: net.Socket, o: SocketOptions, oobInline: boolean, v6: boolean, dualStack: boolean): void {
  if (conn.destroyed) return;
  conn.setKeepAlive(o.keepAlive);
  conn.setNoDelay(o.noDelay);
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return;
  const c = native.c;
  applyIpOptions(fd, v6, dualStack, o);
  native.setInt(fd, c.SOL_SOCKET, c.SO_OOBINLINE, oobInline ? 1 : 0);
  native.setInt(fd, c.SOL_SOCKET, c.SO_DONTROUTE, o.dontRoute ? 1 : 0);
  // SO_LINGER stays the daemon's: WSPCloseSocket carries it out (an abortive close for {1, 0},
  // resetConnection). Given to the kernel, {1, N} made close(2), which node calls on the event
  // loop's thread, block for up to N seconds whenever unsent bytes remained: every session of
  // the daemon stood still (up to 65,535 s, l_linger being a u16).
  // Values read back as they were set; the kernel gets them clamped to what it takes.
  if (o.keepIdle > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPIDLE, Math.min(o.keepIdle, KERNEL_MAX.keepIdle));
  if (o.keepInterval > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPINTVL, Math.min(o.keepInterval, KERNEL_MAX.keepInterval));
  if (o.keepCount > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPCNT, Math.min(o.keepCount, KERNEL_MAX.keepCount));
  // Windows' TCP_MAXRT (seconds; -1 for no limit) is closest to Linux's TCP_USER_TIMEOUT
  // (milliseconds, an int): the longest it holds is about 24.8 days.
  const maxrt = o.maxRetransmitSeconds;
  if (maxrt !== 0 && c.TCP_USER_TIMEOUT) native.setInt(fd, c.IPPROTO_TCP, c.TCP_USER_TIMEOUT, maxrt < 0 ? INT32_MAX : Math.min(maxrt * 1000, INT32_MAX));
}

/**
 * An explicit SO_SNDBUF / SO_RCVBUF also sizes the kernel's buffers, so backpressure shows after a
 * few kilobytes rather than after the megabytes loopback autotuning allows.
 */
export function applyTcpBuffers(conn: net.Socket, o: SocketOptions): void {
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return;
  if (o.sndBufSet) native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_SNDBUF, o.sndBuf);
  if (o.rcvBufSet) native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_RCVBUF, o.rcvBuf);
}

/** Makes this process the owner of the connection (F_SETOWN), so that urgent data raises SIGURG here. */
export function ownUrgentSignal(conn: net.Socket): boolean {
  const native = libc();
  const fd = fdOf(conn);
  return native !== null && fd !== null && native.setOwner(fd) === 0;
}

/** Bytes the connection has received since it was made, or null where the platform does not say. */
export function receivedCount(conn: net.Socket): number | null {
  const native = libc();
  const fd = fdOf(conn);
  return native && fd !== null ? native.received(fd) : null;
}

/**
 * Before SO_OOBINLINE goes on, after an urgent byte was taken out of band: Linux would hand that
 * byte over again inline once the option is on (Wine's test_select notes it; Windows does not).
 * At the read position, a read makes the kernel step over it. With nothing waiting in the kernel
 * it is behind. Otherwise it may still be ahead: 'ahead', and the option must wait. Returns the
 * ordinary byte the step took after it, or null when the byte is settled and nothing was taken.
 */
export function settleTakenUrgentByte(conn: net.Socket): Buffer | 'ahead' | null {
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return null;
  if (!native.atMark(fd)) return native.queued(fd) === 0 ? null : 'ahead';
  // At the mark, a peek gives the urgent byte while it is unread, and EINVAL once it was read.
  if (native.recv(fd, new Uint8Array(1), native.c.MSG_OOB | MSG_PEEK) !== -native.c.EINVAL) return null;
  return readOneByte(native, fd);
}

/**
 * Once SO_OOBINLINE is on: an unread urgent byte alone in the kernel never made the connection
 * readable (Linux does not count it), so node will not read it until more data comes. Read inline
 * now, it is ordinary data; returns it, or null when nothing waits.
 */
export function readStrandedByte(conn: net.Socket): Buffer | null {
  const native = libc();
  const fd = fdOf(conn);
  return native && fd !== null ? readOneByte(native, fd) : null;
}

/** One byte from node's descriptor, which is nonblocking: null at once when none waits. */
function readOneByte(native: Libc, fd: number): Buffer | null {
  const buf = Buffer.alloc(1);
  return native.recv(fd, buf, 0) === 1 ? buf : null;
}

const MSG_PEEK = 2;

/** SO_OOBINLINE on the kernel socket alone. */
export function setKernelOobInline(conn: net.Socket, on: boolean): void {
  const native = libc();
  const fd = fdOf(conn);
  if (native && fd !== null) native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_OOBINLINE, on ? 1 : 0);
}

/** What send() with flags did: bytes the kernel took, 'full' (no room now), or the WSA code of a failure. */
export type DirectSend = number | 'full' | { errno: number };

/** send() on the descriptor with the SPI flags MSG_OOB and MSG_DONTROUTE. */
export function sendDirect(conn: net.Socket, chunk: Uint8Array, spiFlags: number): DirectSend {
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return { errno: W.WSAEOPNOTSUPP };
  const cflags = (spiFlags & W.MSG_OOB ? native.c.MSG_OOB : 0) | (spiFlags & W.MSG_DONTROUTE ? native.c.MSG_DONTROUTE : 0);
  const n = native.send(fd, chunk, cflags);
  if (n >= 0) return n;
  if (-n === native.c.EAGAIN || -n === native.c.EWOULDBLOCK) return 'full';
  return { errno: wsaFromErrno(-n) };
}

/** recv(MSG_OOB) of the one byte of TCP urgent data: the byte, null when none waits, or a WSA code. */
export function readUrgent(conn: net.Socket, peek: boolean): Uint8Array | null | { errno: number } {
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return { errno: W.WSAENOTCONN };
  const buf = new Uint8Array(1);
  const n = native.recv(fd, buf, native.c.MSG_OOB | (peek ? MSG_PEEK : 0));
  if (n >= 0) return buf.subarray(0, n);
  if (-n === native.c.EINVAL || -n === native.c.EAGAIN) return null;
  return { errno: wsaFromErrno(-n) };
}

/**
 * Takes the connection's pending socket error (getsockopt SO_ERROR) as a WSA code, 0 for none. A
 * reset that arrives after the peer's FIN is seen by no read (node stopped reading at the FIN):
 * this is how a receive finds it.
 */
export function takeSocketError(conn: net.Socket): number {
  const native = libc();
  const fd = fdOf(conn);
  if (!native || fd === null) return 0;
  const e = native.getInt(fd, native.c.SOL_SOCKET, native.c.SO_ERROR);
  return e ? wsaFromErrno(e) : 0;
}

/**
 * Ends a connection with RST. node's resetAndDestroy() cannot once a FIN is queued (libuv refuses
 * a reset after shutdown), and the kernel would then send the rest and FIN: the peer would take a
 * truncated stream for a whole one. SO_LINGER {1, 0} makes the close itself send RST.
 */
export function resetConnection(conn: net.Socket): void {
  const native = libc();
  const fd = fdOf(conn);
  if (native && fd !== null && native.setLinger(fd, 1, 0) === 0) conn.destroy();
  else conn.resetAndDestroy();
}

/** At most this many connections are taken from a listening socket's queue when it closes. */
const MAX_TAKEN_AT_CLOSE = 1024;

/**
 * The connections the kernel has completed on a listening socket and node has not accepted yet,
 * accepted now (paused, as pauseOnConnect would have them): a listening socket about to close
 * hands them on instead of letting the close reset them. Empty without the C library.
 */
export function takeQueuedConnections(server: net.Server): net.Socket[] {
  const accept = libc()?.accept;
  const fd = fdOf(server);
  if (!accept || fd === null) return [];
  const taken: net.Socket[] = [];
  for (let i = 0; i < MAX_TAKEN_AT_CLOSE; i++) {
    const conn = accept(fd);
    if (conn < 0) break;
    // Not reading, as net.Server's pauseOnConnect makes its sockets (pause() alone would let the
    // handle read on): until WSPAccept, bytes and urgent data stay in the kernel, where the
    // accepted socket's options (SO_OOBINLINE, SO_RCVBUF) still apply to them.
    const opts = { fd: conn, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true };
    taken.push(new net.Socket(opts as net.SocketConstructorOpts));
  }
  return taken;
}
