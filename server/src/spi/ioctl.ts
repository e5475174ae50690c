/** WSPIoctl: the control codes spiwire implements. */
import * as W from '@spiwire/proto';
import type { EmulatedSocket } from '../sockets/emulated-socket.js';
import { dwordBytes } from './options.js';

/**
 * What a control code did: errno 0 with its output bytes (bytes: lpcbBytesReturned), or a WSA
 * code. output is null for a code that has no output (the reply then has no `output` member).
 */
export interface IoctlResult {
  errno: number;
  bytes: number;
  output: Uint8Array | null;
}

function done(output: Uint8Array | null = null): IoctlResult {
  return { errno: 0, bytes: output?.length ?? 0, output };
}

function fail(errno: number): IoctlResult {
  return { errno, bytes: 0, output: null };
}

/** The control codes spiwire carries out; any other fails with WSAEOPNOTSUPP, as on Windows. */
const KNOWN_CODES: ReadonlySet<number> = new Set([
  W.FIONBIO,
  W.FIONREAD,
  W.SIOCATMARK,
  W.SIO_FLUSH,
  W.SIO_KEEPALIVE_VALS,
  W.SIO_UDP_CONNRESET,
  W.SIO_UDP_NETRESET,
  W.SIO_ENABLE_CIRCULAR_QUEUEING,
  W.SIO_BASE_HANDLE,
  W.SIO_IDEAL_SEND_BACKLOG_QUERY,
]);

/**
 * Whether the code is carried out. Windows answers SIO_BASE_HANDLE only when it is not
 * overlapped (in ws2_32); overlapped, it goes to the provider and fares as an unknown code
 * (Wine's test_base_handle).
 */
export function isKnownIoctl(code: number, overlapped: boolean): boolean {
  return KNOWN_CODES.has(code) && !(overlapped && code === W.SIO_BASE_HANDLE);
}

/**
 * A BOOL input: the C examples pass 4 bytes; .NET callers pass one byte, and Windows takes it: a
 * shorter input is read as a BOOLEAN. null: no input at all.
 */
function boolInput(input: Uint8Array): boolean | null {
  if (input.length < 1) return null;
  return input.length >= 4 ? new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true) !== 0 : input[0] !== 0;
}

/** What Windows answers SIO_IDEAL_SEND_BACKLOG_QUERY with on loopback (Wine's test_backlog_query). */
export const IDEAL_SEND_BACKLOG = 0x10000;

export function ioctl(sock: EmulatedSocket, code: number, input: Uint8Array, outputLength: number, overlapped: boolean): IoctlResult {
  switch (code) {
    case W.FIONBIO:
      if (input.length < 4) return fail(W.WSAEFAULT);
      // Windows refuses to make a socket blocking while WSPEventSelect has events selected on it.
      if (new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true) === 0) {
        if (sock.selection !== 0) return fail(W.WSAEINVAL);
        sock.opts.nonBlocking = false;
      } else sock.opts.nonBlocking = true;
      return done();
    case W.FIONREAD:
      if (outputLength < 4) return fail(W.WSAEFAULT);
      return done(dwordBytes(sock.readable()));
    case W.SIOCATMARK:
      if (outputLength < 4) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_STREAM) return fail(W.WSAEINVAL);
      // TRUE while no urgent data waits to be read out of band.
      return done(dwordBytes(sock.atMark() ? W.TRUE : W.FALSE));
    case W.SIO_FLUSH:
      // Queued sends not yet taken into the transport buffer are discarded (WSA_OPERATION_ABORTED).
      sock.flushSends();
      return done();
    case W.SIO_KEEPALIVE_VALS: {
      // struct tcp_keepalive { ULONG onoff; ULONG keepalivetime; ULONG keepaliveinterval; } in ms.
      if (input.length < 12) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_STREAM) return fail(W.WSAEOPNOTSUPP);
      const dv = new DataView(input.buffer, input.byteOffset, 12);
      sock.opts.keepAlive = dv.getUint32(0, true) !== 0;
      sock.opts.keepIdle = Math.max(1, Math.ceil(dv.getUint32(4, true) / 1000));
      sock.opts.keepInterval = Math.max(1, Math.ceil(dv.getUint32(8, true) / 1000));
      sock.applyOptions();
      return done();
    }
    case W.SIO_UDP_CONNRESET:
    case W.SIO_UDP_NETRESET: {
      // FALSE stops reporting ICMP port unreachables (CONNRESET) or times exceeded (NETRESET); one
      // already waiting for a receive is still reported.
      const on = boolInput(input);
      if (on === null) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_DGRAM) return fail(W.WSAEOPNOTSUPP);
      if (code === W.SIO_UDP_CONNRESET) sock.opts.udpConnReset = on;
      else sock.opts.udpNetReset = on;
      return done();
    }
    case W.SIO_ENABLE_CIRCULAR_QUEUEING:
      // For unreliable message sockets; a stream has no messages to push out.
      if (sock.type !== W.SOCK_DGRAM) return fail(W.WSAEOPNOTSUPP);
      sock.opts.circularQueueing = true;
      return done();
    case W.SIO_BASE_HANDLE: {
      // Overlapped, an unknown code (isKnownIoctl). spiwire is the base provider: the base handle
      // is the socket itself, a SOCKET of x64.
      if (overlapped) return fail(W.WSAEOPNOTSUPP);
      if (outputLength < 8) return fail(W.WSAEFAULT);
      const out = new Uint8Array(8);
      new DataView(out.buffer).setBigUint64(0, BigInt(sock.handle), true);
      return done(out);
    }
    case W.SIO_IDEAL_SEND_BACKLOG_QUERY:
      if (outputLength < 4) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_STREAM) return fail(W.WSAEOPNOTSUPP);
      if (sock.peerName() === null) return fail(W.WSAENOTCONN);
      // Windows estimates it from the path's bandwidth-delay product, and gives 64 KiB on
      // loopback; spiwire does not estimate the path and always gives that.
      return done(dwordBytes(IDEAL_SEND_BACKLOG));
    default:
      // Windows answers a code it does not know with WSAEOPNOTSUPP (Wine's test_unsupported_ioctls),
      // not the reference page's WSAEINVAL.
      return fail(W.WSAEOPNOTSUPP);
  }
}
