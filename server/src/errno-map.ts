/**
 * The one place where Node / libuv errors become WSA codes. Every socket error the daemon
 * reports passes through wsaFromNodeError; the table is tested row by row.
 */
import { constants } from 'node:os';
import * as W from '@spiwire/proto';

/** Node error code -> WSA code. */
export const NODE_ERRNO_TO_WSA: Readonly<Record<string, number>> = {
  ECONNRESET: W.WSAECONNRESET,
  // Linux reports EPIPE for a send after the peer reset the connection; Windows says WSAECONNRESET.
  EPIPE: W.WSAECONNRESET,
  ECONNREFUSED: W.WSAECONNREFUSED,
  ECONNABORTED: W.WSAECONNABORTED,
  ETIMEDOUT: W.WSAETIMEDOUT,
  EADDRINUSE: W.WSAEADDRINUSE,
  EADDRNOTAVAIL: W.WSAEADDRNOTAVAIL,
  EACCES: W.WSAEACCES,
  EPERM: W.WSAEACCES,
  ENETUNREACH: W.WSAENETUNREACH,
  EHOSTUNREACH: W.WSAEHOSTUNREACH,
  ENETDOWN: W.WSAENETDOWN,
  ENODEV: W.WSAENETDOWN,
  ENETRESET: W.WSAENETRESET,
  EMSGSIZE: W.WSAEMSGSIZE,
  ENOBUFS: W.WSAENOBUFS,
  ENOMEM: W.WSAENOBUFS,
  EAGAIN: W.WSAEWOULDBLOCK,
  EWOULDBLOCK: W.WSAEWOULDBLOCK,
  EINPROGRESS: W.WSAEINPROGRESS,
  EALREADY: W.WSAEALREADY,
  EISCONN: W.WSAEISCONN,
  ENOTCONN: W.WSAENOTCONN,
  ESHUTDOWN: W.WSAESHUTDOWN,
  EAFNOSUPPORT: W.WSAEAFNOSUPPORT,
  EPROTONOSUPPORT: W.WSAEPROTONOSUPPORT,
  EOPNOTSUPP: W.WSAEOPNOTSUPP,
  EINVAL: W.WSAEINVAL,
  EFAULT: W.WSAEFAULT,
  EMFILE: W.WSAEMFILE,
  ENFILE: W.WSAEMFILE,
  EDESTADDRREQ: W.WSAEDESTADDRREQ,
  EINTR: W.WSAEINTR,
  // Node's own codes for writes on a socket that is already gone.
  ERR_STREAM_DESTROYED: W.WSAECONNRESET,
  ERR_STREAM_WRITE_AFTER_END: W.WSAESHUTDOWN,
  ERR_SOCKET_DGRAM_NOT_RUNNING: W.WSAENOTSOCK,
};

/** When nothing in the table matches: the network subsystem failed. */
export const DEFAULT_WSA_ERROR = W.WSAENETDOWN;

export function wsaFromNodeError(err: unknown): number {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && Object.prototype.hasOwnProperty.call(NODE_ERRNO_TO_WSA, code)) return NODE_ERRNO_TO_WSA[code]!;
  return DEFAULT_WSA_ERROR;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** A raw errno number from a C call (positive), mapped through the same table by its name. */
export function wsaFromErrno(errno: number): number {
  const name = ERRNO_NAMES.get(errno);
  return name ? wsaFromNodeError({ code: name }) : DEFAULT_WSA_ERROR;
}

/** What is known about a TCP connection when node reports that it broke. */
export interface BrokenConnection {
  /** node's error code (ECONNRESET, ETIMEDOUT, EPIPE, ...). */
  code: string | undefined;
  /** SO_KEEPALIVE was on. */
  keepAlive: boolean;
  /** Data sent since the peer was last heard from, or still on its way: what may have gone unacknowledged. */
  unacknowledged: boolean;
  /** The socket's local address is no longer assigned to the machine. */
  interfaceGone: boolean;
}

/**
 * The WSA code for a broken connection. Linux says ETIMEDOUT both when keep-alive probes go
 * unanswered and when retransmissions give up; Windows tells them apart: WSAENETRESET for
 * keep-alive, WSAECONNABORTED for data that could not be delivered. An interface that went away
 * under the socket is WSAENETDOWN. Anything else goes through the table.
 */
export function classifyBroken(b: BrokenConnection): number {
  if (b.interfaceGone) return W.WSAENETDOWN;
  if (b.code === 'ETIMEDOUT') return b.keepAlive && !b.unacknowledged ? W.WSAENETRESET : W.WSAECONNABORTED;
  return wsaFromNodeError({ code: b.code });
}
