/**
 * The SPI methods: one handler per entry of the method table (proto/src/messages.ts), typed by it:
 * a missing or misspelt handler is a compile error. Each takes validated params and returns the
 * method's wire result. Handle lookup, sockaddr checks and the choice of transport happen here;
 * the sockets do the rest and return domain results, which only this file maps to the wire.
 */
import * as W from '@spiwire/proto';
import { INVALID_PARAMS, ProtocolError, type MethodName, type OverlappedRef, type Params, type Result, type SockAddr } from '@spiwire/proto';
import { fail, ok } from '../outcome.js';
import type { EmulatedSocket, SendFunction } from '../sockets/emulated-socket.js';
import type { SessionFaults } from '../faults/rules.js';
import { completion, type Completion, type RecvResult, type SendResult, type Started } from '../sockets/results.js';
import { addressProblem, anyAddress, checkSockaddr, hasUnknownScope, isAnyAddress, lacksScope, ownScopeOf } from '../sockets/sockaddr.js';
import { ioctl, isKnownIoctl, type IoctlResult } from './ioctl.js';
import { getSockOpt, setSockOpt } from './options.js';
import { select } from './select.js';
import { runAfterReply, takeAfterReply } from './after-reply.js';
import type { SendStreams } from '../send-streams.js';
import { byteLength } from '../sockets/send-buffers.js';
import type { CallCounts } from '../metrics.js';
import { Later, mapResult, type Answer } from '../later.js';

/** What a socket operation that can be overlapped reports: its count, and its flags for receives. */
export interface Transfer {
  errno: number;
  bytes: number;
  flags?: number;
}

/** What a method needs from its session. */
export interface SpiSession {
  lookup(s: number): EmulatedSocket | null;
  createSocket(af: number, type: number, protocol: number, flags: number): Result<'WSPSocket'>;
  closeSocket(sock: EmulatedSocket): void;
  /**
   * Runs an overlapped call: bookkeeping, the per-socket limit and the completion notification.
   * start begins the operation; asBlocking runs it as a blocking call instead, for a socket made
   * without WSA_FLAG_OVERLAPPED under the Windows send policy (send-policy.ts). The result is R,
   * or 'pending' (WSA_IO_PENDING), with the completion when it completed at once.
   */
  overlapped<R extends Transfer>(sock: EmulatedSocket, ov: OverlappedRef, start: (done: Completion) => Answer<Started<R>>, asBlocking: () => R | Promise<R>): Answer<OverlappedAnswer<R>>;
  threadExit(thread: number): Result<'spiwire.threadExit'> | Promise<Result<'spiwire.threadExit'>>;
  /** spiwire.ack: the client has received this many counted messages (session resume). */
  acknowledged(received: number): void;
  /** The session's sends larger than one message. */
  readonly streams: SendStreams;
  /** The session's fault rules (proto/README.md section 19). */
  readonly faults: SessionFaults;
  /** The daemon's allow-list verdict for a destination (or, with unspecified, a bind to any address). */
  allows(address: string, port: number, unspecified?: boolean): boolean;
  /** Where every call's result code is counted (the daemon's metrics). */
  readonly calls: CallCounts;
  /** The daemon's id, which every RESUME_REFUSED names. */
  readonly daemonId: string;
  /** The call being handled begins to wait (spiwire.waiting); see SocketContext.callWaits. */
  callWaits(): void;
  /** Sockets watched by the session's waiting WSPSelect calls (select.ts). */
  selectWatches: number;
}

/** An overlapped call's answer: pending, refused before it started, or its result (and completion). */
export type OverlappedAnswer<R> = { kind: 'pending' } | { kind: 'refused'; errno: number } | { kind: 'done'; result: R; completion?: W.Completion };

type Handler<M extends MethodName> = (session: SpiSession, p: Params<M>) => Answer<Result<M>>;
type Handlers = { readonly [M in MethodName]: Handler<M> };

/**
 * Validates params for method M (INVALID_PARAMS otherwise) and runs its handler. shaped: the
 * decoder built the params from a fixed layout (a compact header, an ack's exact spelling),
 * which already fixed their types.
 */
export function runMethod<M extends MethodName>(session: SpiSession, method: M, params: Record<string, unknown>, shaped: boolean): Answer<Result<M>> {
  const calls = session.calls;
  let result: Answer<Result<M>>;
  try {
    // The one check the spec puts before the params (section 19).
    if (method === 'spiwire.faults.add') session.faults.checkRoom();
    if (shaped) W.validateShapedParams(method, params);
    else W.validateParams(method, params);
    const handler: Handler<M> = SPI_HANDLERS[method];
    result = handler(session, params);
  } catch (err) {
    // A refused call counts under its JSON-RPC error (INVALID_PARAMS and the like).
    if (err instanceof ProtocolError) calls.count(method, err.code);
    throw err;
  }
  // Counting is an add to a plain number (metrics.ts). A call that waits is counted when it ends,
  // by the session as it replies (no extra promise hop here: UDP sends all wait).
  if (!(result instanceof Promise) && !(result instanceof Later)) calls.count(method, result.errno);
  return result;
}

/** A sockaddr parameter whose address is numeric (addressProblem), so that it never reaches a resolver. */
function checkedAddress(method: string, a: SockAddr, field: string): SockAddr {
  const problem = addressProblem(a.address);
  if (problem) throw new ProtocolError(INVALID_PARAMS, `${method}: params.${field}.address ${problem}`, { field: `${field}.address` });
  return a;
}

/** A sockaddr's family field: all an AF_UNSPEC name needs to hold. */
const SOCKADDR_FAMILY_BYTES = 2;

/** Runs fn with the socket named by params.s, or answers WSAENOTSOCK. */
function withSocket<P extends { s: number }, R>(fn: (sock: EmulatedSocket, p: P, session: SpiSession) => R): (session: SpiSession, p: P) => R | { ret: number; errno: number } {
  return (session, p) => {
    const sock = session.lookup(p.s);
    if (!sock) return fail(W.WSAENOTSOCK);
    return fn(sock, p, session);
  };
}

/** 0 or a WSA code, as the wire result of a call with no out values. */
function status(errno: number): { ret: number; errno: number } {
  return errno === 0 ? ok() : fail(errno);
}

/** mapResult for a value that is never a Later: the narrower type. */
function mapPromise<A, B>(v: A | Promise<A>, f: (a: A) => B): B | Promise<B> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/**
 * answer() now, or once the binds and datagram connects issued before it have settled: they are
 * synchronous on Windows and take a moment here (EmulatedSocket.namesSettled).
 */
function afterNames<R>(sock: EmulatedSocket, answer: () => R): R | Promise<R> {
  const pending = sock.namesSettled();
  return pending === null ? answer() : pending.then(answer);
}

/** WSPGetSockName's or WSPGetPeerName's result: the name, or missing when there is none. */
function nameResult(name: SockAddr | null, missing: number, af: number, namelen: number): Result<'WSPGetSockName'> {
  if (!name) return fail(missing);
  const size = W.sockaddrSize(af);
  if (namelen < size) return fail(W.WSAEFAULT);
  return ok({ name, namelen: size });
}

export const SPI_HANDLERS: Handlers = {
  WSPSocket: (session, p) => session.createSocket(p.af, p.type, p.protocol, p.flags),

  WSPBind: withSocket((sock, p: Params<'WSPBind'>, session) => {
    let name = checkedAddress('WSPBind', p.name, 'name');
    const bad = checkSockaddr(name, p.namelen, sock.af);
    if (bad) return fail(bad);
    if (!session.allows(name.address, name.port, isAnyAddress(name.address))) return fail(W.WSAEACCES);
    if (hasUnknownScope(name)) return fail(W.WSAEADDRNOTAVAIL);
    if (lacksScope(name)) {
      // A link-local address without its scope: bound on the interface that holds it, whose
      // scope WSPGetSockName then gives, as on Windows; on none, not an address of the machine.
      const scopeId = ownScopeOf(name.address);
      if (scopeId === 0) return fail(W.WSAEADDRNOTAVAIL);
      name = { ...name, scopeId };
    }
    return sock.bind(name).then(status);
  }),

  WSPListen: withSocket((sock, p: Params<'WSPListen'>) => sock.listen(p.backlog).then(status)),

  WSPAccept: withSocket((sock) =>
    sock.accept().then((r): Result<'WSPAccept'> => (r.errno || !r.socket ? fail(r.errno || W.WSAEINVAL, W.INVALID_SOCKET) : r.addr ? ok({ addr: r.addr }, r.socket.handle) : ok({}, r.socket.handle))),
  ),

  WSPConnect: withSocket((sock, p: Params<'WSPConnect'>, session) => {
    // An AF_UNSPEC name dissolves a UDP association, as on Windows; its address is never looked at.
    if (sock.type === W.SOCK_DGRAM && p.name.family === W.AF_UNSPEC) {
      if (p.namelen < SOCKADDR_FAMILY_BYTES) return fail(W.WSAEFAULT);
      return sock.connect({ family: sock.af, address: anyAddress(sock.af), port: 0 }).then(status);
    }
    const name = checkedAddress('WSPConnect', p.name, 'name');
    const bad = checkSockaddr(name, p.namelen, sock.af);
    if (bad) return fail(bad);
    // Dissolving a UDP association (any address, port 0) goes nowhere, so it is always allowed.
    const dissolve = sock.type === W.SOCK_DGRAM && isAnyAddress(name.address) && name.port === 0;
    if (!dissolve && !session.allows(name.address, name.port)) return fail(W.WSAEACCES);
    return sock.connect(name).then(status);
  }),

  WSPSend: withSocket((sock, p: Params<'WSPSend'>, session) => (p.stream === undefined ? sendWith(session, sock, p.buffers, p.flags, null, p.overlapped, 'WSPSend') : sendStreamedWith(session, sock, p, p.stream))),

  'spiwire.sendData': (session, p) => {
    session.streams.data(p.stream, p.data);
    return ok();
  },

  WSPSendTo: withSocket((sock, p: Params<'WSPSendTo'>, session) => {
    let to: SockAddr | null = null;
    if (p.to != null && sock.type === W.SOCK_DGRAM) {
      to = checkedAddress('WSPSendTo', p.to, 'to');
      const bad = checkSockaddr(to, p.tolen, sock.af);
      if (bad) return fail(bad);
      if (sock.peerName() === null && !session.allows(to.address, to.port)) return fail(W.WSAEACCES);
    }
    const r = sendWith(session, sock, p.buffers, p.flags, to, p.overlapped, 'WSPSendTo');
    if (to !== null || sock.type !== W.SOCK_DGRAM) return r;
    // No lpTo and no default peer: WSPSend's WSAENOTCONN is WSAEDESTADDRREQ for WSPSendTo, as
    // on Windows (its WSAENOTCONN is for connection-oriented sockets only). That is the only
    // WSAENOTCONN of a datagram send without a destination, and a datagram send never pends.
    return mapResult(r, (x) => (x.errno === W.WSAENOTCONN ? Object.assign(x, { errno: W.WSAEDESTADDRREQ }) : x));
  }),

  WSPRecv: withSocket((sock, p: Params<'WSPRecv'>, session) => recvWith(session, sock, p.lengths, p.flags, false, p.overlapped)),

  WSPRecvFrom: withSocket((sock, p: Params<'WSPRecvFrom'>, session) => recvWith(session, sock, p.lengths, p.flags, true, p.overlapped)),

  WSPShutdown: withSocket((sock, p: Params<'WSPShutdown'>) => status(sock.shutdown(p.how))),

  WSPCloseSocket: withSocket((sock, _p: Params<'WSPCloseSocket'>, session) => {
    session.closeSocket(sock);
    return ok();
  }),

  // Both after a bind or UDP connect issued before them (in the same frame): the name it bound, the peer it set.
  WSPGetSockName: withSocket((sock, p: Params<'WSPGetSockName'>) => afterNames(sock, () => nameResult(sock.localName(), W.WSAEINVAL, sock.af, p.namelen))),

  WSPGetPeerName: withSocket((sock, p: Params<'WSPGetPeerName'>) => afterNames(sock, () => nameResult(sock.peerName(), W.WSAENOTCONN, sock.af, p.namelen))),

  WSPIoctl: withSocket((sock, p: Params<'WSPIoctl'>, session) => {
    // A fault fails the call at once, overlapped or not: no completion follows.
    const overlapped = p.overlapped != null;
    const injected = sock.ioctlFault(overlapped);
    if (injected) return fail(injected);
    const run = (): IoctlResult => ioctl(sock, p.code, p.input, p.outputLength, overlapped);
    // A control code without output (FIONBIO, SIO_FLUSH, SIO_KEEPALIVE_VALS) has no `output` member.
    const toWire = (r: IoctlResult): Result<'WSPIoctl'> => (r.errno ? fail(r.errno) : r.output ? ok({ output: r.output, bytesReturned: r.bytes }) : ok({ bytesReturned: 0 }));
    if (!p.overlapped) return toWire(run());
    // Control codes finish at once; an overlapped WSPIoctl still reports through its completion.
    return overlappedResult(
      session.overlapped(
        sock,
        p.overlapped,
        (done): Started<IoctlResult> => {
          const r = run();
          // Windows' completion of an overlapped WSPIoctl carries 0 bytes (Wine's test_fionbio,
          // test_keepalive_vals); the output and its size come in the reply.
          if (r.errno === 0) done.complete(0, 0);
          else if (!isKnownIoctl(p.code, true)) {
            // A code Windows does not know pends, then completes with WSAEOPNOTSUPP (Wine's
            // test_unsupported_ioctls): the completion follows the WSA_IO_PENDING reply.
            done.complete(r.errno, 0);
            return { pending: true };
          }
          return { pending: false, result: r };
        },
        run,
      ),
      toWire,
    );
  }),

  'spiwire.threadExit': (session, p) => session.threadExit(p.thread),

  'spiwire.setSocketTag': withSocket((sock, p: Params<'spiwire.setSocketTag'>) => {
    if (p.tag !== null) {
      const problem = W.socketTagProblem(p.tag);
      if (problem) throw new ProtocolError(INVALID_PARAMS, `spiwire.setSocketTag: params.tag ${problem}`, { field: 'tag' });
    }
    sock.tag = p.tag;
    return ok();
  }),

  'spiwire.faults.add': (session, p) => ok({ id: session.faults.add(p.rule, (h) => session.lookup(h)?.type ?? null) }),

  'spiwire.faults.remove': (session, p) => {
    session.faults.remove(p.id);
    return ok();
  },

  'spiwire.faults.list': (session) => ok({ rules: session.faults.list() }),

  'spiwire.ack': (session, p) => {
    session.acknowledged(p.received);
    return ok();
  },

  // The handshake of a resume connection reads it before any session exists (resume.ts); here,
  // inside a session, it can only be a mistake.
  'spiwire.resume': (session) => {
    throw new ProtocolError(W.RESUME_REFUSED, 'spiwire.resume is only the first message of a connection opened on /ws?resume=<session>', { reason: 'not-first', daemonId: session.daemonId });
  },

  WSPEventSelect: withSocket((sock, p: Params<'WSPEventSelect'>) => {
    // FD_ALL_EVENTS is what many programs select, and Windows takes it: the four events past
    // FD_CLOSE are accepted and never recorded (nothing here produces them).
    if (p.events & ~W.FD_ALL_EVENTS) return fail(W.WSAEINVAL);
    sock.eventSelect(p.events);
    return ok();
  }),

  WSPSelect: (session, p) => select(session, p),

  WSPSetSockOpt: withSocket((sock, p: Params<'WSPSetSockOpt'>) => setSockOpt(sock, p.level, p.optname, p.optval, p.optlen)),

  WSPGetSockOpt: withSocket((sock, p: Params<'WSPGetSockOpt'>) => getSockOpt(sock, p.level, p.optname, p.optlen)),
};

/** The wire result of an overlapped call's answer, given how its result maps. */
function overlappedResult<R extends Transfer, Wire extends { ret: number; errno: number }>(
  answer: Answer<OverlappedAnswer<R>>,
  toWire: (r: R) => Wire,
): Answer<(Wire & { completion?: W.Completion }) | { ret: number; errno: number }> {
  return mapResult(answer, (a) => {
    if (a.kind === 'pending') {
      // A completion that must follow this reply goes with the wire result.
      const hook = takeAfterReply(a);
      const wire = fail(W.WSA_IO_PENDING);
      return hook ? runAfterReply(wire, hook) : wire;
    }
    if (a.kind === 'refused') return fail(a.errno);
    const wire: Wire & { completion?: W.Completion } = toWire(a.result);
    // Set on the fresh result, not spread into a copy: V8 (Node 20) gives an object spread and
    // then extended a shape whose every later key walk (the compact encoder's) is about 30 times
    // slower; Object.assign cost an object more per send.
    if (a.completion) wire.completion = a.completion;
    return wire;
  });
}

function sendToWire(r: SendResult): Result<'WSPSend'> {
  // A literal, not ok({...}): no spread and no object to spread from on every send.
  if (r.errno === 0) return { ret: 0, errno: 0, bytesSent: r.bytes };
  // A blocking send that failed part way says how many bytes reached the transport (they may
  // reach the peer); Winsock leaves lpNumberOfBytesSent undefined then.
  return r.bytes > 0 ? Object.assign(fail(r.errno), { bytesSent: r.bytes }) : fail(r.errno);
}

function sendWith(session: SpiSession, sock: EmulatedSocket, buffers: Uint8Array[], flags: number, to: SockAddr | null, ov: OverlappedRef | null | undefined, fn: SendFunction): Answer<Result<'WSPSend'>> {
  if (!ov) return mapPromise(sock.send(buffers, flags, to, false, fn), sendToWire);
  return overlappedResult(
    session.overlapped(
      sock,
      ov,
      (done) => sock.sendOverlapped(buffers, flags, to, done, fn),
      () => sock.send(buffers, flags, to, true, fn),
    ),
    sendToWire,
  );
}

/**
 * A send larger than one message (send-streams.ts): the send starts with the first piece and
 * takes the rest from spiwire.sendData; the stream closes when the send is over.
 */
function sendStreamedWith(session: SpiSession, sock: EmulatedSocket, p: Params<'WSPSend'>, id: number): Answer<Result<'WSPSend'>> {
  const total = p.total;
  if (total === undefined) throw new ProtocolError(INVALID_PARAMS, 'WSPSend: params.total is missing (it is required with params.stream)', { field: 'total' });
  const first = byteLength(p.buffers);
  if (first > total) throw new ProtocolError(INVALID_PARAMS, 'WSPSend: params.total is less than the bytes of params.buffers', { field: 'total' });
  if (session.streams.has(id)) throw new ProtocolError(INVALID_PARAMS, `WSPSend: params.stream ${id} is already open`, { field: 'stream' });
  const streams = session.streams;
  const progress = streams.begin(id, total, first);
  const blocking = (forceBlocking: boolean): SendResult | Promise<SendResult> => {
    const started = sock.sendStreamed(p.buffers, total, p.flags, forceBlocking, progress);
    streams.attach(id, started.pieces, started.cancel);
    // A blocking send is over when its result comes (a Windows-policy background send stays
    // open until its last piece is taken).
    return mapPromise(started.result, (r) => {
      if (r.errno !== 0 || !started.background) streams.close(id);
      return r;
    });
  };
  const ov = p.overlapped;
  if (!ov) return mapPromise(blocking(false), sendToWire);
  // A call refused before its send starts (WSAEINVAL on a socket without WSA_FLAG_OVERLAPPED,
  // the overlapped limit, an op id in use) leaves no stream open: its id may be used again.
  let begun = false;
  try {
    return overlappedResult(
      session.overlapped(
        sock,
        ov,
        (done) => {
          begun = true;
          const finished = completion((errno, bytes, out) => {
            streams.close(id);
            done.complete(errno, bytes, out);
          });
          const started = sock.sendStreamedOverlapped(p.buffers, total, p.flags, finished, progress);
          streams.attach(id, started.pieces, started.cancel);
          if (!started.result.pending) streams.close(id);
          return started.result;
        },
        () => {
          begun = true;
          return blocking(true);
        },
      ),
      sendToWire,
    );
  } finally {
    if (!begun) streams.forget(id);
  }
}

function recvToWire(r: RecvResult): Result<'WSPRecvFrom'> {
  // A truncated datagram (WSAEMSGSIZE) still delivers the part that fitted.
  if (r.errno && r.errno !== W.WSAEMSGSIZE) return fail(r.errno);
  const out: Result<'WSPRecvFrom'> = r.errno ? fail(r.errno) : ok();
  out.data = r.data ?? new Uint8Array(0);
  out.bytesRecvd = r.bytes;
  out.flags = r.flags;
  if (r.from) out.from = r.from;
  return out;
}

function recvWith(session: SpiSession, sock: EmulatedSocket, lengths: number[], flags: number, wantFrom: boolean, ov: OverlappedRef | null | undefined): Answer<Result<'WSPRecvFrom'>> {
  // No buffers at all (dwBufferCount 0) is WSAEINVAL on Windows; one empty buffer waits for data.
  if (lengths.length === 0) return fail(W.WSAEINVAL);
  if (!ov) return sock.recv(lengths, flags, wantFrom).then(recvToWire);
  return overlappedResult(
    session.overlapped(
      sock,
      ov,
      (done) => sock.recvOverlapped(lengths, flags, wantFrom, done),
      () => sock.recv(lengths, flags, wantFrom, true),
    ),
    recvToWire,
  );
}

