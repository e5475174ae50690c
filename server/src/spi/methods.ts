/**
 * The SPI methods: each takes validated params and returns the Winsock outcome. Handle lookup,
 * sockaddr checks and the choice of transport happen here; the sockets do the rest.
 */
import * as W from '@spiwire/proto';
import { INVALID_PARAMS, ProtocolError, type SockAddr } from '@spiwire/proto';
import { fail, ok, type Outcome } from '../outcome.js';
import type { CompleteFn, EmulatedSocket, OverlappedStart } from '../sockets/emulated-socket.js';
import { addressProblem, checkSockaddr, isAnyAddress, sockaddrSize } from '../sockets/sockaddr.js';
import { ioctl } from './ioctl.js';
import { getSockOpt, setSockOpt } from './options.js';

/** What a method needs from its session. */
export interface SpiSession {
  lookup(s: number): EmulatedSocket | null;
  createSocket(af: number, type: number, protocol: number, flags: number): Outcome;
  closeSocket(sock: EmulatedSocket): void;
  /** Runs an overlapped call: bookkeeping, the per-socket limit, and the completion notification. */
  /** fallback runs the call as a blocking one: what the Windows policy does on a socket without WSA_FLAG_OVERLAPPED. */
  overlapped(sock: EmulatedSocket, ov: OverlappedRef, start: (done: CompleteFn) => OverlappedStart | Promise<OverlappedStart>, fallback?: () => Outcome | Promise<Outcome>): Outcome | Promise<Outcome>;
  threadExit(thread: number): Outcome;
  /** The daemon's allow-list verdict for a destination (or, with unspecified, a bind to any address). */
  allows(address: string, port: number, unspecified?: boolean): boolean;
}

interface OverlappedRef {
  op: number;
  thread: number;
}

function ovParam(p: Params): OverlappedRef | null {
  return (p['overlapped'] as OverlappedRef | null | undefined) ?? null;
}

type Params = Record<string, unknown>;
export type SpiHandler = (session: SpiSession, p: Params) => Outcome | Promise<Outcome>;

/** A sockaddr parameter whose address is numeric (addressProblem), so that it never reaches a resolver. */
function addrParam(p: Params, key: string): SockAddr {
  const a = p[key] as SockAddr;
  const problem = addressProblem(a.address);
  if (problem) throw new ProtocolError(INVALID_PARAMS, `params.${key}.address ${problem}`, { field: `${key}.address` });
  return a;
}

/** Runs fn with the socket named by params.s, or answers WSAENOTSOCK. */
function withSocket(fn: (sock: EmulatedSocket, p: Params, session: SpiSession) => Outcome | Promise<Outcome>): SpiHandler {
  return (session, p) => {
    const sock = session.lookup(p['s'] as number);
    if (!sock) return fail(W.WSAENOTSOCK);
    return fn(sock, p, session);
  };
}

export const SPI_HANDLERS: Record<string, SpiHandler> = {
  WSPSocket: (session, p) => session.createSocket(p['af'] as number, p['type'] as number, p['protocol'] as number, p['flags'] as number) ,

  WSPBind: withSocket((sock, p, session) => {
    const name = addrParam(p, 'name');
    const bad = checkSockaddr(name, p['namelen'] as number, sock.af);
    if (bad) return fail(bad);
    if (!session.allows(name.address, name.port, isAnyAddress(name.address))) return fail(W.WSAEACCES);
    return sock.bind(name);
  }),

  WSPListen: withSocket((sock, p) => sock.listen(p['backlog'] as number)),

  WSPAccept: withSocket((sock) => sock.accept()),

  WSPConnect: withSocket((sock, p, session) => {
    const name = addrParam(p, 'name');
    const bad = checkSockaddr(name, p['namelen'] as number, sock.af);
    if (bad) return fail(bad);
    // Dissolving a UDP association (any address, port 0) goes nowhere, so it is always allowed.
    const dissolve = sock.type === W.SOCK_DGRAM && isAnyAddress(name.address) && name.port === 0;
    if (!dissolve && !session.allows(name.address, name.port)) return fail(W.WSAEACCES);
    return sock.connect(name);
  }),

  WSPSend: withSocket((sock, p, session) => sendWith(session, sock, p, null)),

  WSPSendTo: withSocket((sock, p, session) => {
    let to: SockAddr | null = null;
    if (p['to'] != null && sock.type === W.SOCK_DGRAM) {
      to = addrParam(p, 'to');
      const bad = checkSockaddr(to, p['tolen'] as number, sock.af);
      if (bad) return fail(bad);
      if (sock.peerName() === null && !session.allows(to.address, to.port)) return fail(W.WSAEACCES);
    }
    return sendWith(session, sock, p, to);
  }),

  WSPRecv: withSocket((sock, p, session) => recvWith(session, sock, p, false)),

  WSPRecvFrom: withSocket((sock, p, session) => recvWith(session, sock, p, true)),

  WSPShutdown: withSocket((sock, p) => sock.shutdown(p['how'] as number)),

  WSPCloseSocket: withSocket((sock, _p, session) => {
    session.closeSocket(sock);
    return ok();
  }),

  WSPGetSockName: withSocket((sock, p) => {
    const name = sock.localName();
    if (!name) return fail(W.WSAEINVAL);
    const size = sockaddrSize(sock.af);
    if ((p['namelen'] as number) < size) return fail(W.WSAEFAULT);
    return ok({ name, namelen: size });
  }),

  WSPGetPeerName: withSocket((sock, p) => {
    const name = sock.peerName();
    if (!name) return fail(W.WSAENOTCONN);
    const size = sockaddrSize(sock.af);
    if ((p['namelen'] as number) < size) return fail(W.WSAEFAULT);
    return ok({ name, namelen: size });
  }),

  WSPIoctl: withSocket((sock, p, session) => {
    const run = (): Outcome => ioctl(sock, p['code'] as number, p['input'] as Uint8Array, p['outputLength'] as number);
    const ov = ovParam(p);
    if (!ov) return run();
    // Control codes finish at once; an overlapped WSPIoctl still reports through its completion.
    return session.overlapped(sock, ov, (done) => {
      const outcome = run();
      if (outcome.ret === 0) done(0, (outcome['bytesReturned'] as number | undefined) ?? 0);
      return { outcome };
    });
  }),

  'spiwire.threadExit': (session, p) => session.threadExit(p['thread'] as number),

  WSPEventSelect: withSocket((sock, p) => {
    const events = p['events'] as number;
    const known = W.FD_READ | W.FD_WRITE | W.FD_OOB | W.FD_ACCEPT | W.FD_CONNECT | W.FD_CLOSE;
    if (events & ~known) return fail(W.WSAEINVAL);
    sock.eventSelect(events);
    return ok();
  }),

  WSPSetSockOpt: withSocket((sock, p) => setSockOpt(sock, p['level'] as number, p['optname'] as number, p['optval'] as Uint8Array | null, p['optlen'] as number)),

  WSPGetSockOpt: withSocket((sock, p) => getSockOpt(sock, p['level'] as number, p['optname'] as number, p['optlen'] as number)),
};

function sendWith(session: SpiSession, sock: EmulatedSocket, p: Params, to: SockAddr | null): Outcome | Promise<Outcome> {
  const buffers = p['buffers'] as Uint8Array[];
  const flags = p['flags'] as number;
  const ov = ovParam(p);
  if (!ov) return sock.send(buffers, flags, to);
  return session.overlapped(
    sock,
    ov,
    (done) => sock.sendOverlapped(buffers, flags, to, ov.thread, done),
    () => sock.send(buffers, flags, to, true),
  );
}

function recvWith(session: SpiSession, sock: EmulatedSocket, p: Params, wantFrom: boolean): Outcome | Promise<Outcome> {
  const lengths = p['lengths'] as number[];
  const flags = p['flags'] as number;
  const ov = ovParam(p);
  if (!ov) return sock.recv(lengths, flags, wantFrom);
  return session.overlapped(
    sock,
    ov,
    (done) => sock.recvOverlapped(lengths, flags, wantFrom, done),
    () => sock.recv(lengths, flags, wantFrom, true),
  );
}

/** Checks WSPSocket's af / type / protocol triple; 0 when it names TCP or UDP over IPv4 or IPv6. */
export function checkSocketTriple(af: number, type: number, protocol: number): { errno: number; protocol: number } {
  if (af !== W.AF_INET && af !== W.AF_INET6) return { errno: W.WSAEAFNOSUPPORT, protocol };
  if (type !== W.SOCK_STREAM && type !== W.SOCK_DGRAM) return { errno: W.WSAESOCKTNOSUPPORT, protocol };
  const proto = protocol === 0 ? (type === W.SOCK_STREAM ? W.IPPROTO_TCP : W.IPPROTO_UDP) : protocol;
  if (proto !== W.IPPROTO_TCP && proto !== W.IPPROTO_UDP) return { errno: W.WSAEPROTONOSUPPORT, protocol: proto };
  if ((type === W.SOCK_STREAM) !== (proto === W.IPPROTO_TCP)) return { errno: W.WSAEPROTOTYPE, protocol: proto };
  return { errno: 0, protocol: proto };
}
