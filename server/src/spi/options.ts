/** WSPSetSockOpt / WSPGetSockOpt: option values are the C bytes (little-endian DWORD or BOOL). */
import * as W from '@spiwire/proto';
import type { Result } from '@spiwire/proto';
import { fail, ok } from '../outcome.js';
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

const SETTABLE = new Set([W.SO_SPIWIRE_SEND_POLICY, W.SO_SNDBUF, W.SO_RCVBUF, W.SO_BROADCAST, W.SO_KEEPALIVE, W.SO_OOBINLINE, W.SO_LINGER, W.SO_DONTROUTE]);
/** IPPROTO_TCP options: TCP_NODELAY, the keep-alive timing and TCP_MAXRT. */
const TCP_OPTIONS = new Set([W.TCP_NODELAY, W.TCP_KEEPIDLE, W.TCP_KEEPINTVL, W.TCP_KEEPCNT, W.TCP_MAXRT]);
/** Options with a meaning only on stream sockets. */
const STREAM_ONLY = new Set([W.SO_KEEPALIVE, W.SO_OOBINLINE, W.SO_LINGER]);

export function setSockOpt(sock: EmulatedSocket, level: number, optname: number, optval: Uint8Array | null, optlen: number): Result<'WSPSetSockOpt'> {
  const o = sock.opts;
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) {
    if (!TCP_OPTIONS.has(optname) || sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
    if (!optval || optlen < DWORD || optval.length < DWORD) return fail(W.WSAEFAULT);
    const v = readDword(optval);
    // TCP_MAXRT -1 means "retransmit for ever" on Windows; no other option takes a negative value.
    if (optname !== W.TCP_NODELAY && v < 0 && !(optname === W.TCP_MAXRT && v === -1)) return fail(W.WSAEINVAL);
    if (optname === W.TCP_NODELAY) o.noDelay = v !== 0;
    else if (optname === W.TCP_KEEPIDLE) o.keepIdle = v;
    else if (optname === W.TCP_KEEPINTVL) o.keepInterval = v;
    else if (optname === W.TCP_KEEPCNT) o.keepCount = v;
    else o.maxRetransmitSeconds = v;
    sock.applyOptions();
    return ok();
  }
  // Windows refuses SO_TYPE with WSAEINVAL on a datagram socket (Wine's test_WSASocket).
  if (optname === W.SO_TYPE && sock.type === W.SOCK_DGRAM) return fail(W.WSAEINVAL);
  // Read-only options (SO_TYPE, SO_ERROR, SO_MAX_MSG_SIZE, SO_PROTOCOL_INFOW) and unknown ones.
  if (!SETTABLE.has(optname)) return fail(W.WSAENOPROTOOPT);
  if (STREAM_ONLY.has(optname) && sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
  if (optname === W.SO_BROADCAST && sock.type !== W.SOCK_DGRAM) return fail(W.WSAENOPROTOOPT);
  if (!optval || optlen < DWORD || optval.length < DWORD) return fail(W.WSAEFAULT);
  const v = readDword(optval);
  switch (optname) {
    case W.SO_SNDBUF:
    case W.SO_RCVBUF:
      if (v < 0) return fail(W.WSAEINVAL);
      if (optname === W.SO_SNDBUF) {
        o.sndBuf = v;
        o.sndBufSet = true;
      } else {
        o.rcvBuf = v;
        o.rcvBufSet = true;
      }
      sock.applyBuffers();
      return ok();
    case W.SO_BROADCAST:
      o.broadcast = v !== 0;
      sock.applyOptions();
      return ok();
    case W.SO_SPIWIRE_SEND_POLICY:
      if (v !== W.SPIWIRE_SEND_POLICY_REFERENCE && v !== W.SPIWIRE_SEND_POLICY_WINDOWS) return fail(W.WSAEINVAL);
      o.sendPolicy = v;
      return ok();
    case W.SO_LINGER: {
      // struct linger { u_short l_onoff; u_short l_linger; }
      const dv = new DataView(optval.buffer, optval.byteOffset, 4);
      o.linger = { onoff: dv.getUint16(0, true), seconds: dv.getUint16(2, true) };
      break;
    }
    case W.SO_KEEPALIVE:
      o.keepAlive = v !== 0;
      break;
    case W.SO_OOBINLINE:
      o.oobInline = v !== 0;
      break;
    case W.SO_DONTROUTE:
      o.dontRoute = v !== 0;
      break;
  }
  sock.applyOptions();
  return ok();
}

function lingerBytes(l: { onoff: number; seconds: number }): Uint8Array {
  const b = new Uint8Array(4);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, l.onoff, true);
  dv.setUint16(2, l.seconds, true);
  return b;
}

export function getSockOpt(sock: EmulatedSocket, level: number, optname: number, optlen: number): Result<'WSPGetSockOpt'> {
  const o = sock.opts;
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) {
    if (!TCP_OPTIONS.has(optname) || sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
    if (optlen < DWORD) return fail(W.WSAEFAULT);
    const v =
      optname === W.TCP_NODELAY ? (o.noDelay ? 1 : 0) : optname === W.TCP_KEEPIDLE ? o.keepIdle : optname === W.TCP_KEEPINTVL ? o.keepInterval : optname === W.TCP_KEEPCNT ? o.keepCount : o.maxRetransmitSeconds;
    return ok({ optval: dwordBytes(v), optlen: DWORD });
  }
  if (STREAM_ONLY.has(optname) && sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
  let value: number;
  switch (optname) {
    case W.SO_LINGER:
      if (optlen < DWORD) return fail(W.WSAEFAULT);
      return ok({ optval: lingerBytes(o.linger), optlen: DWORD });
    case W.SO_KEEPALIVE:
      value = o.keepAlive ? 1 : 0;
      break;
    case W.SO_SPIWIRE_SEND_POLICY:
      value = o.sendPolicy;
      break;
    case W.SO_OOBINLINE:
      value = o.oobInline ? 1 : 0;
      break;
    case W.SO_DONTROUTE:
      value = o.dontRoute ? 1 : 0;
      break;
    case W.SO_SNDBUF:
      value = o.sndBuf;
      break;
    case W.SO_RCVBUF:
      value = o.rcvBuf;
      break;
    case W.SO_BROADCAST:
      if (sock.type !== W.SOCK_DGRAM) return fail(W.WSAENOPROTOOPT);
      value = o.broadcast ? 1 : 0;
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
    case W.SO_PROTOCOL_INFOW: {
      // The socket's catalog entry as the C WSAPROTOCOL_INFOW (proto/src/catalog.ts).
      const info = W.catalogEntryFor(sock.af, sock.type, sock.protocol);
      if (!info) return fail(W.WSAENOPROTOOPT);
      // As Windows: a short buffer fails and is told the size it needs; a larger one keeps its optlen.
      if (optlen < W.WSAPROTOCOL_INFOW_SIZE) return { ...fail(W.WSAEFAULT), optlen: W.WSAPROTOCOL_INFOW_SIZE };
      return ok({ optval: W.encodeProtocolInfoW(info), optlen });
    }
    // SO_PROTOCOL_INFOA: a provider answers only the W form (ws2_32 converts); falls to default.
    default:
      return fail(W.WSAENOPROTOOPT);
  }
  if (optlen < DWORD) return fail(W.WSAEFAULT);
  return ok({ optval: dwordBytes(value), optlen: DWORD });
}
