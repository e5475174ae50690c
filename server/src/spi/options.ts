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

const SETTABLE = new Set([
  W.SO_SPIWIRE_SEND_POLICY, W.SO_SNDBUF, W.SO_RCVBUF, W.SO_SNDTIMEO, W.SO_RCVTIMEO, W.SO_BROADCAST, W.SO_KEEPALIVE, W.SO_OOBINLINE, W.SO_LINGER,
  W.SO_DONTLINGER, W.SO_DONTROUTE, W.SO_ERROR, W.SO_DEBUG, W.SO_REUSEADDR, W.SO_EXCLUSIVEADDRUSE,
]);
/** IPPROTO_TCP options: TCP_NODELAY, the keep-alive timing and TCP_MAXRT. */
const TCP_OPTIONS = new Set([W.TCP_NODELAY, W.TCP_KEEPIDLE, W.TCP_KEEPINTVL, W.TCP_KEEPCNT, W.TCP_MAXRT]);
/** Options with a meaning only on stream sockets. */
const STREAM_ONLY = new Set([W.SO_KEEPALIVE, W.SO_OOBINLINE, W.SO_LINGER, W.SO_DONTLINGER]);

/*
 * How Windows sizes option values, as Wine's test_optsize records it:
 * - one byte (ONE_BYTE): setting reads the first byte, with any optlen from 1 up; reading writes
 *   one byte and reports 1, whatever optlen;
 * - a BOOL that takes any length (ANY_LENGTH_BOOL): setting reads up to 4 bytes (none for optlen
 *   0, which sets FALSE; 4 for a negative optlen, as an unsigned length would) and is TRUE when
 *   any is nonzero; reading writes 1, 2 or 4 bytes and reports 1 for fewer than 4;
 * - the other SOL_SOCKET options take 4 bytes, a negative optlen included; reading fewer fails with
 *   WSAEFAULT, and for ZEROED_WHEN_SHORT zeroes the bytes it was given first;
 * - the other IPPROTO_TCP options take 4 bytes or more; reading fewer fails with WSAEFAULT and
 *   optlen 0.
 */
const ONE_BYTE = new Set([W.SO_KEEPALIVE, W.SO_DONTROUTE]);
const ANY_LENGTH_BOOL = new Set([W.SO_BROADCAST, W.SO_OOBINLINE, W.SO_DEBUG, W.SO_REUSEADDR, W.SO_EXCLUSIVEADDRUSE, W.SO_DONTLINGER]);
const ZEROED_WHEN_SHORT = new Set([W.SO_LINGER, W.SO_RCVBUF, W.SO_SNDBUF]);
/** TCP_KEEPCNT is a count of probes, 0 to 255. */
const MAX_KEEPCNT = 255;

/** A BOOL's bytes: up to 4 of optval (4 for a negative optlen); null when optval holds fewer. */
function anyLengthBool(optval: Uint8Array, optlen: number): number | null {
  const n = optlen < 0 ? DWORD : Math.min(optlen, DWORD);
  if (optval.length < n) return null;
  return optval.subarray(0, n).some((b) => b !== 0) ? 1 : 0;
}

/**
 * IPPROTO_IP and IPPROTO_IPV6 are levels Windows has, whose other options spiwire does not carry: an
 * option there is unknown (WSAENOPROTOOPT, which Wine's test_sockopt_validity gives for an unknown
 * option and accepts from Windows versions without the others), not the level (WSAEINVAL).
 */
function ipLevel(level: number): boolean {
  return level === W.IPPROTO_IP || level === W.IPPROTO_IPV6;
}

/**
 * IPV6_V6ONLY: a one-byte BOOL (Wine's test_optsize:
 * the first byte decides, a read writes one byte and reports 1; a negative optlen is WSAENOBUFS),
 * fixed once the socket has an address (test_ipv6only). Windows takes it on AF_INET sockets too,
 * where it changes nothing.
 */
function setV6Only(sock: EmulatedSocket, optval: Uint8Array | null, optlen: number): Result<'WSPSetSockOpt'> {
  if (!optval) return fail(W.WSAEFAULT);
  if (optlen < 0) return fail(W.WSAENOBUFS);
  if (optlen === 0 || optval.length < 1) return fail(W.WSAEFAULT);
  if (sock.addressFixed()) return fail(W.WSAEINVAL);
  sock.opts.v6Only = optval[0] !== 0;
  return ok();
}

/**
 * The IP-level options of what packets carry, on sockets of their family: IP_TTL, IP_TOS and
 * IP_DONTFRAGMENT (IPPROTO_IP, AF_INET), IPV6_UNICAST_HOPS and IPV6_DONTFRAG (IPPROTO_IPV6,
 * AF_INET6), and on UDP sockets the multicast TTL (hops) and loopback. Null for anything else.
 */
function ipByteOption(sock: EmulatedSocket, level: number, optname: number): IpByteOption | null {
  const udp = sock.type === W.SOCK_DGRAM;
  if (level === W.IPPROTO_IP && sock.af === W.AF_INET) {
    if (optname === W.IP_TTL) return 'ttl';
    if (optname === W.IP_TOS) return 'tos';
    if (optname === W.IP_DONTFRAGMENT) return 'dontFragment';
    if (udp && optname === W.IP_MULTICAST_TTL) return 'multicastTtl';
    if (udp && optname === W.IP_MULTICAST_LOOP) return 'multicastLoop';
  }
  if (level === W.IPPROTO_IPV6 && sock.af === W.AF_INET6) {
    if (optname === W.IPV6_UNICAST_HOPS) return 'ttl';
    if (optname === W.IPV6_DONTFRAG) return 'dontFragment';
    if (udp && optname === W.IPV6_MULTICAST_HOPS) return 'multicastTtl';
    if (udp && optname === W.IPV6_MULTICAST_LOOP) return 'multicastLoop';
  }
  return null;
}

type IpByteOption = 'ttl' | 'tos' | 'dontFragment' | 'multicastTtl' | 'multicastLoop';
/** The BOOLs among them: any nonzero value is TRUE, read back as 1. */
type IpBoolOption = 'dontFragment' | 'multicastLoop';

const isIpBool = (which: IpByteOption): which is IpBoolOption => which === 'dontFragment' || which === 'multicastLoop';

/**
 * IP-level options of datagrams (multicast, packet information) that a TCP socket refuses with
 * WSAEINVAL, as Wine's test_sockopt_validity records: IP_MULTICAST_IF, _TTL and _LOOP, IP_PKTINFO,
 * IP_RECVTTL and IP_RECVTOS (the IPv6 ones have the same numbers), and IP_HDRINCL, a raw socket's,
 * which TCP and UDP sockets refuse alike (test_set_getsockopt), as they do IPV6_HDRINCL
 * (test_sockopt_validity).
 */
const DATAGRAM_ONLY = new Set([W.IP_MULTICAST_IF, W.IP_MULTICAST_TTL, W.IP_MULTICAST_LOOP, W.IP_PKTINFO, W.IP_RECVTTL, W.IP_RECVTOS]);

/** IP_MULTICAST_IF (AF_INET) or IPV6_MULTICAST_IF (AF_INET6) on a UDP socket: a DWORD, 4 bytes. */
function isMulticastIf(sock: EmulatedSocket, level: number, optname: number): boolean {
  if (sock.type !== W.SOCK_DGRAM) return false;
  return (level === W.IPPROTO_IP && sock.af === W.AF_INET && optname === W.IP_MULTICAST_IF) || (level === W.IPPROTO_IPV6 && sock.af === W.AF_INET6 && optname === W.IPV6_MULTICAST_IF);
}

function refusedIpOption(sock: EmulatedSocket, level: number, optname: number): boolean {
  if ((level === W.IPPROTO_IP && optname === W.IP_HDRINCL) || (level === W.IPPROTO_IPV6 && optname === W.IPV6_HDRINCL)) return true;
  return (level === W.IPPROTO_IP || level === W.IPPROTO_IPV6) && sock.type === W.SOCK_STREAM && DATAGRAM_ONLY.has(optname);
}

/**
 * Sizes as Wine's test_optsize records them: setting reads the optlen bytes given (up to 4), a
 * value above 255 is WSAEINVAL (the don't-fragment BOOL takes any value, nonzero for TRUE), a
 * negative optlen WSAENOBUFS, 0 WSAEFAULT; reading writes one byte (optlen 1) into fewer than 4,
 * else 4.
 */
function setIpByte(sock: EmulatedSocket, which: IpByteOption, optval: Uint8Array | null, optlen: number): Result<'WSPSetSockOpt'> {
  if (!optval) return fail(W.WSAEFAULT);
  if (optlen < 0) return fail(W.WSAENOBUFS);
  const n = Math.min(optlen, DWORD);
  if (n === 0 || optval.length < n) return fail(W.WSAEFAULT);
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + optval[i]!;
  if (isIpBool(which)) sock.opts[which] = v !== 0;
  else if (v > 255) return fail(W.WSAEINVAL);
  else sock.opts[which] = v;
  sock.applyOptions();
  return ok();
}

function getIpByte(sock: EmulatedSocket, which: IpByteOption, optlen: number): Result<'WSPGetSockOpt'> {
  if (optlen <= 0) return fail(W.WSAEFAULT);
  const v = isIpBool(which) ? (sock.opts[which] ? 1 : 0) : sock.opts[which];
  return optlen < DWORD ? ok({ optval: Uint8Array.of(v), optlen: 1 }) : ok({ optval: dwordBytes(v), optlen: DWORD });
}

export function setSockOpt(sock: EmulatedSocket, level: number, optname: number, optval: Uint8Array | null, optlen: number): Result<'WSPSetSockOpt'> {
  const o = sock.opts;
  if (level === W.IPPROTO_IPV6 && optname === W.IPV6_V6ONLY) return setV6Only(sock, optval, optlen);
  const ipByte = ipByteOption(sock, level, optname);
  if (ipByte) return setIpByte(sock, ipByte, optval, optlen);
  if (refusedIpOption(sock, level, optname)) return fail(W.WSAEINVAL);
  if (isMulticastIf(sock, level, optname)) {
    if (!optval) return fail(W.WSAEFAULT);
    if (optlen < 0) return fail(W.WSAENOBUFS);
    if (optlen < DWORD || optval.length < DWORD) return fail(W.WSAEFAULT);
    const code = sock.setMulticastInterface(readDword(optval) >>> 0);
    return code === 0 ? ok() : fail(code);
  }
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(ipLevel(level) ? W.WSAENOPROTOOPT : W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) {
    if (!TCP_OPTIONS.has(optname) || sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
    if (!optval) return fail(W.WSAEFAULT);
    if (optname === W.TCP_NODELAY) {
      if (optlen < 1 || optval.length < 1) return fail(W.WSAEFAULT);
      o.noDelay = optval[0] !== 0;
      sock.applyOptions();
      return ok();
    }
    if (optlen < DWORD || optval.length < DWORD) return fail(W.WSAEFAULT);
    const v = readDword(optval);
    // TCP_MAXRT -1 means "retransmit for ever" on Windows; no other option takes a negative value.
    if (v < 0 && !(optname === W.TCP_MAXRT && v === -1)) return fail(W.WSAEINVAL);
    if (optname === W.TCP_KEEPCNT && v > MAX_KEEPCNT) return fail(W.WSAEINVAL);
    if (optname === W.TCP_KEEPIDLE) o.keepIdle = v;
    else if (optname === W.TCP_KEEPINTVL) o.keepInterval = v;
    else if (optname === W.TCP_KEEPCNT) o.keepCount = v;
    else o.maxRetransmitSeconds = v;
    sock.applyOptions();
    return ok();
  }
  // Windows refuses SO_TYPE with WSAEINVAL on a datagram socket (Wine's test_WSASocket).
  if (optname === W.SO_TYPE && sock.type === W.SOCK_DGRAM) return fail(W.WSAEINVAL);
  // Read-only options (SO_TYPE, SO_MAX_MSG_SIZE, SO_PROTOCOL_INFOW) and unknown ones.
  if (!SETTABLE.has(optname)) return fail(W.WSAENOPROTOOPT);
  if (STREAM_ONLY.has(optname) && sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
  if (optname === W.SO_BROADCAST && sock.type !== W.SOCK_DGRAM) return fail(W.WSAENOPROTOOPT);
  if (!optval) return fail(W.WSAEFAULT);
  let v: number;
  if (ONE_BYTE.has(optname)) {
    if (optlen < 1 || optval.length < 1) return fail(W.WSAEFAULT);
    v = optval[0]!;
  } else if (ANY_LENGTH_BOOL.has(optname)) {
    const b = anyLengthBool(optval, optlen);
    if (b === null) return fail(W.WSAEFAULT);
    v = b;
  } else {
    if ((optlen >= 0 && optlen < DWORD) || optval.length < DWORD) return fail(W.WSAEFAULT);
    v = readDword(optval);
  }
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
    case W.SO_SNDTIMEO:
    case W.SO_RCVTIMEO:
      // A DWORD of milliseconds, read back as set (Wine's test_set_getsockopt and test_timeout).
      if (optname === W.SO_SNDTIMEO) o.sndTimeo = v >>> 0;
      else o.rcvTimeo = v >>> 0;
      return ok();
    case W.SO_ERROR:
      // Windows lets SO_ERROR be set; the next read gives the value (Wine's test_set_getsockopt).
      sock.pendingError = v;
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
    case W.SO_DONTLINGER:
      // Turning it off turns lingering on with the l_linger last set (the pair Windows keeps).
      o.linger = { onoff: v !== 0 ? 0 : 1, seconds: o.linger.seconds };
      break;
    case W.SO_DEBUG:
      o.debug = v !== 0;
      return ok();
    case W.SO_REUSEADDR:
    case W.SO_EXCLUSIVEADDRUSE: {
      // Never both on one socket: the later one fails, in either order (Wine's test_reuseaddr).
      const other = optname === W.SO_REUSEADDR ? o.exclusiveAddr : o.reuseAddr;
      if (v !== 0 && other) return fail(W.WSAEINVAL);
      if (optname === W.SO_REUSEADDR) o.reuseAddr = v !== 0;
      else o.exclusiveAddr = v !== 0;
      return ok();
    }
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
  if (level === W.IPPROTO_IPV6 && optname === W.IPV6_V6ONLY) {
    if (optlen <= 0) return fail(W.WSAEFAULT);
    return ok({ optval: Uint8Array.of(o.v6Only ? 1 : 0), optlen: 1 });
  }
  const ipByte = ipByteOption(sock, level, optname);
  if (ipByte) return getIpByte(sock, ipByte, optlen);
  if (refusedIpOption(sock, level, optname)) return fail(W.WSAEINVAL);
  if (isMulticastIf(sock, level, optname)) {
    if (optlen < DWORD) return fail(W.WSAEFAULT);
    return ok({ optval: dwordBytes(sock.multicastInterface() ?? 0), optlen: DWORD });
  }
  if (level !== W.SOL_SOCKET && level !== W.IPPROTO_TCP) return fail(ipLevel(level) ? W.WSAENOPROTOOPT : W.WSAEINVAL);
  if (level === W.IPPROTO_TCP) {
    if (!TCP_OPTIONS.has(optname) || sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
    if (optlen <= 0) return fail(W.WSAEFAULT);
    if (optname === W.TCP_NODELAY) return ok({ optval: Uint8Array.of(o.noDelay ? 1 : 0), optlen: 1 });
    if (optlen < DWORD) return { ...fail(W.WSAEFAULT), optlen: 0 };
    const v = optname === W.TCP_KEEPIDLE ? o.keepIdle : optname === W.TCP_KEEPINTVL ? o.keepInterval : optname === W.TCP_KEEPCNT ? o.keepCount : o.maxRetransmitSeconds;
    return ok({ optval: dwordBytes(v), optlen: DWORD });
  }
  if (STREAM_ONLY.has(optname) && sock.type !== W.SOCK_STREAM) return fail(W.WSAENOPROTOOPT);
  let value: number;
  switch (optname) {
    case W.SO_LINGER:
      if (optlen < DWORD) return shortRead(optname, optlen);
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
    case W.SO_DONTLINGER:
      value = o.linger.onoff === 0 ? 1 : 0;
      break;
    case W.SO_DEBUG:
      value = o.debug ? 1 : 0;
      break;
    case W.SO_REUSEADDR:
      value = o.reuseAddr ? 1 : 0;
      break;
    case W.SO_EXCLUSIVEADDRUSE:
      value = o.exclusiveAddr ? 1 : 0;
      break;
    case W.SO_ACCEPTCONN:
      value = sock.acceptsConnections() ? 1 : 0;
      break;
    case W.SO_CONNECT_TIME:
      // 0xFFFFFFFF without a connection, a UDP socket's default peer included (Wine's test_connect_time).
      value = sock.connectedSeconds() ?? -1;
      break;
    case W.SO_SNDBUF:
      value = o.sndBuf;
      break;
    case W.SO_RCVBUF:
      value = o.rcvBuf;
      break;
    case W.SO_SNDTIMEO:
      value = o.sndTimeo;
      break;
    case W.SO_RCVTIMEO:
      value = o.rcvTimeo;
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
      value = sock.socketError;
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
  if (optlen <= 0) return fail(W.WSAEFAULT);
  if (ONE_BYTE.has(optname)) return ok({ optval: Uint8Array.of(value), optlen: 1 });
  if (ANY_LENGTH_BOOL.has(optname)) {
    const n = optlen >= DWORD ? DWORD : optlen >= 2 ? 2 : 1;
    return ok({ optval: dwordBytes(value).subarray(0, n), optlen: n === DWORD ? DWORD : 1 });
  }
  if (optlen < DWORD) return shortRead(optname, optlen);
  return ok({ optval: dwordBytes(value), optlen: DWORD });
}

/** A read of a 4-byte SOL_SOCKET option into fewer bytes (1 to 3): WSAEFAULT, the bytes zeroed for some. */
function shortRead(optname: number, optlen: number): Result<'WSPGetSockOpt'> {
  if (optlen > 0 && ZEROED_WHEN_SHORT.has(optname)) return { ...fail(W.WSAEFAULT), optval: new Uint8Array(optlen) };
  return fail(W.WSAEFAULT);
}
