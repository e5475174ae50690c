/** The C shapes of the SPI, as JavaScript values. */
import { MAX_SELECT_SET, type SockAddr } from '@spiwire/proto';

export type { SockAddr };

/** A SOCKET handle. */
export type SOCKET = number;

/** An out (or in/out) parameter: the call writes value before its promise resolves. */
export interface Out<T = number> {
  value: T;
}

/** WSABUF: len first, as in the C structure; only the first len bytes of buf are used. */
export interface WSABUF {
  len: number;
  buf: Uint8Array;
}

/** WSATHREADID: names the thread whose APC queue receives a completion routine. */
export interface WSATHREADID {
  ThreadHandle: number;
  Reserved: number;
}

/** The part of WSAPROTOCOL_INFOW that WSPSocket reads when af, type or protocol is FROM_PROTOCOL_INFO. */
export interface ProtocolInfoLike {
  iAddressFamily: number;
  iSocketType: number;
  iProtocol: number;
}

/** Creates a writable out parameter. */
export function out<T = number>(value: T): Out<T> {
  return { value };
}

/** Creates a WSABUF over bytes (len defaults to their length). */
export function wsabuf(buf: Uint8Array | string, len?: number): WSABUF {
  const bytes = typeof buf === 'string' ? new TextEncoder().encode(buf) : buf;
  return { len: len ?? bytes.length, buf: bytes };
}

/**
 * fd_set, for WSPSelect: the first fd_count entries of fd_array are the set. WSPSelect rewrites
 * fd_count and the first entries, and leaves the rest of fd_array as it was, as in C.
 */
export interface fd_set {
  fd_count: number;
  fd_array: SOCKET[];
}

/** struct timeval, for WSPSelect's timeout: seconds and microseconds. */
export interface timeval {
  tv_sec: number;
  tv_usec: number;
}

/**
 * How many sockets FD_SET puts in a set, and the most WSPSelect takes in one. Windows' default
 * FD_SETSIZE is 64; programs that select more sockets define it larger, as this one is.
 */
export const FD_SETSIZE = MAX_SELECT_SET;

/** An fd_set holding the given sockets (FD_ZERO, then FD_SET of each). */
export function fdSet(...sockets: SOCKET[]): fd_set {
  const set: fd_set = { fd_count: 0, fd_array: [] };
  for (const s of sockets) FD_SET(s, set);
  return set;
}

/** FD_ZERO: empties the set. */
export function FD_ZERO(set: fd_set): void {
  set.fd_count = 0;
}

/** FD_SET: adds s unless the set holds it already or is full (FD_SETSIZE), as the C macro does. */
export function FD_SET(s: SOCKET, set: fd_set): void {
  for (let i = 0; i < set.fd_count; i++) if (set.fd_array[i] === s) return;
  if (set.fd_count < FD_SETSIZE) set.fd_array[set.fd_count++] = s;
}

/** FD_CLR: removes s, moving the later entries of the set down, as the C macro does (fd_array past them is left alone). */
export function FD_CLR(s: SOCKET, set: fd_set): void {
  for (let i = 0; i < set.fd_count; i++) {
    if (set.fd_array[i] !== s) continue;
    for (let j = i; j < set.fd_count - 1; j++) set.fd_array[j] = set.fd_array[j + 1]!;
    set.fd_count--;
    return;
  }
}

/** FD_ISSET: whether s is among the set's first fd_count entries. */
export function FD_ISSET(s: SOCKET, set: fd_set): boolean {
  for (let i = 0; i < set.fd_count; i++) if (set.fd_array[i] === s) return true;
  return false;
}
