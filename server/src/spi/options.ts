/** WSPSetSockOpt / WSPGetSockOpt: option values are the C bytes (little-endian DWORD or BOOL). */
import * as W from '@spiwire/proto';
import { fail, ok, type Outcome } from '../outcome.js';
import type { EmulatedSocket } from '../sockets/emulated-socket.js';

const DWORD = 4;

function readDword(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(0, true);
}

export function dwordBytes(n: number): Uint8Array {
  const b = new Uint8Array(DWORD);
  new DataView(b.buffer).setInt32(0, n | 0, true);
  return b;
}

export function setSockOpt(sock: EmulatedSocket, level: number, optname: number, optval: Uint8Array | null, optlen: number): Outcome {
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) return fail(W.WSAENOPROTOOPT);
  switch (optname) {
    case W.SO_SNDBUF:
    case W.SO_RCVBUF:
    case W.SO_BROADCAST:
      break;
    default:
      // Read-only options (SO_TYPE, SO_ERROR, SO_MAX_MSG_SIZE) and unknown ones.
      return fail(W.WSAENOPROTOOPT);
  }
  if (!optval || optlen < DWORD || optval.length < DWORD) return fail(W.WSAEFAULT);
  const v = readDword(optval);
  switch (optname) {
    case W.SO_SNDBUF:
    case W.SO_RCVBUF:
      if (v < 0) return fail(W.WSAEINVAL);
      if (optname === W.SO_SNDBUF) sock.sndBuf = v;
      else sock.rcvBuf = v;
      sock.applyBuffers();
      return ok();
    case W.SO_BROADCAST:
      if (sock.type !== W.SOCK_DGRAM) return fail(W.WSAENOPROTOOPT);
      sock.broadcast = v !== 0;
      return ok();
  }
  return fail(W.WSAENOPROTOOPT);
}

export function getSockOpt(sock: EmulatedSocket, level: number, optname: number, optlen: number): Outcome {
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) return fail(W.WSAENOPROTOOPT);
  let value: number;
  switch (optname) {
    case W.SO_SNDBUF:
      value = sock.sndBuf;
      break;
    case W.SO_RCVBUF:
      value = sock.rcvBuf;
      break;
    case W.SO_BROADCAST:
      if (sock.type !== W.SOCK_DGRAM) return fail(W.WSAENOPROTOOPT);
      value = sock.broadcast ? 1 : 0;
      break;
    case W.SO_TYPE:
      value = sock.type;
      break;
    case W.SO_ERROR:
      if (optlen < DWORD) return fail(W.WSAEFAULT);
      value = sock.takePendingError();
      break;
    case W.SO_MAX_MSG_SIZE: {
      const m = sock.maxMessageSize();
      // Stream sockets have no message size (the catalog's dwMessageSize is 0 for TCP).
      if (m === null) return fail(W.WSAENOPROTOOPT);
      value = m;
      break;
    }
    default:
      return fail(W.WSAENOPROTOOPT);
  }
  if (optlen < DWORD) return fail(W.WSAEFAULT);
  return ok({ optval: dwordBytes(value), optlen: DWORD });
}
