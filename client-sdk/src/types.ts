/** The C shapes of the SPI, as JavaScript values. */
import type { SockAddr } from '@spiwire/proto';

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
