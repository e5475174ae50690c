/**
 * The session's engine: everything between the SPI surface (spi-functions.ts) and the connection
 * (rpc.ts). It sends calls and turns what comes back into SPI results, keeps the session's state
 * (threads, event objects, overlapped operations, WSPEventSelect, nonblocking sockets) and applies
 * the notifications the daemon pushes. The surface checks the caller's own memory and makes one
 * call here; nothing here reads the caller's arguments.
 */
import * as P from '@spiwire/proto';
import { isU32 } from '@spiwire/proto';
import { BlockingGuard } from './blocking.js';
import { EventSelectMirror, type WSANETWORKEVENTS } from './event-select.js';
import { fieldOf, isResult, type Result } from './marshal.js';
import { OperationTable, type Delivery, type OperationSpec, type OpRecord } from './operations.js';
import type { ReplyListener, ReplyStep } from './rpc.js';
import { tracedPayload, type Tracer } from './trace.js';
export type { Delivery } from './operations.js';
import { SendStreams } from './send-streams.js';
import type { LPWSAOVERLAPPED_COMPLETION_ROUTINE, WSAOVERLAPPED } from './overlapped.js';
import { ConnectionClosedError, SpiwireProtocolError, type RpcConnection } from './rpc.js';
import { EventTable, ThreadRegistry, type SpiThread } from './threads.js';
import type { WSATHREADID } from './types.js';

/** Room kept in a frame for the JSON header of a call. */
const HEADER_ROOM = 64 * 1024;

/** The overlapped arguments of a call, checked: where its completion goes. */
export interface OverlappedArgs {
  s: number;
  ov: WSAOVERLAPPED;
  routine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null;
  lpThreadId: WSATHREADID | null;
}


/** A handle no socket has (handles are u32): for a blocking call on no one socket (WSPSelect). */
const NO_SOCKET = -1;

export class SessionEngine<T extends SpiThread> {
  /** The session's WSAEVENT handles. */
  readonly events = new EventTable();
  readonly threads: ThreadRegistry<T>;
  /** Overlapped operations, from their call to their completion. */
  readonly ops = new OperationTable(this.events);
  /** WSAEINPROGRESS: one blocking call per thread; nonblocking sockets make none. */
  readonly guard = new BlockingGuard();
  /** WSPEventSelect state by socket: the event object and the network events recorded so far. */
  readonly selections = new EventSelectMirror(this.events);
  /** The session's open sockets, with their family and type: calls that never reach the daemon check them. */
  readonly sockets = new Map<number, { af: number; type: number }>();
  private closing = false;
  /** WSPSend calls larger than one message, sent in pieces. */
  readonly streams: SendStreams;

  constructor(
    readonly rpc: RpcConnection,
    makeThread: (handle: number) => T,
  ) {
    this.threads = new ThreadRegistry(makeThread);
    this.streams = new SendStreams(rpc, () => this.maxPayload());
    // The connection ended: operations still pending here complete now, exactly once.
    rpc.onClose = () => this.ops.abandon(this.closing ? P.WSA_OPERATION_ABORTED : P.WSAENETDOWN);
  }

  /** Applies a notification from the daemon. */
  onNotification(method: string, params: Record<string, unknown>): void {
    if (method === 'spiwire.completion') this.ops.onCompletion(params);
    else if (method === 'spiwire.networkEvents') this.selections.onNetworkEvents(params);
    else if (method === 'spiwire.sendProgress') this.streams.onProgress(params);
  }

  /** Records a notification the trace shows (network events, faults applied); trace on only. */
  traceNotification(method: string, params: Record<string, unknown>): void {
    const tracer = this.tracer;
    if (!tracer) return;
    const s = fieldOf(params, 's', isU32);
    if (s === undefined) return;
    if (method === 'spiwire.networkEvents') {
      const events = fieldOf(params, 'events', isU32);
      if (events !== undefined) tracer.record({ t: tracer.now(), kind: 'network', s, events });
    } else if (method === 'spiwire.faultApplied') {
      const str = (k: string): string => fieldOf(params, k, (v): v is string => typeof v === 'string') ?? '';
      tracer.record({ t: tracer.now(), kind: 'fault', s, id: str('id'), fn: str('function'), action: str('action') });
    }
  }

  /** The most bytes one call may carry: the daemon's frame limit less room for the header. */
  maxPayload(): number {
    return this.rpc.welcome.limits.maxFrameBytes - HEADER_ROOM;
  }

  /**
   * Sends a call; a lost connection becomes WSAENETDOWN, as a vanished network subsystem would,
   * and a reply without ret and errno fails the call with SpiwireProtocolError.
   */
  call(method: string, params: Record<string, unknown>, listener?: ReplyListener): Promise<Result> {
    // Not an async function, and the reply becomes a Result as it is read: one promise per call.
    const sent = this.rpc.callThen(method, params, listener, resultOf, undefined);
    return this.tracer ? this.traced(sent, method, params, this.threads.current().id.ThreadHandle, undefined) : sent;
  }

  /** The session's call trace, or null (connect's trace option). */
  tracer: Tracer | null = null;

  /** Records a call once its result is in (trace on). */
  private traced(sent: Promise<Result>, method: string, params: Record<string, unknown>, thread: number, op: number | undefined): Promise<Result> {
    const tracer = this.tracer!;
    const start = tracer.now();
    return sent.then((r) => {
      const bytes = P.traceBytesOf(params);
      const data = tracer.payloads ? tracedPayload(params) : undefined;
      tracer.record({ t: tracer.now(), kind: 'call', fn: method, s: P.traceSocketOf(params), thread, start, ...(bytes === undefined ? {} : { bytes }), ret: r.ret, errno: r.errno, ...(op === undefined ? {} : { op }), ...(data === undefined ? {} : { data }) });
      return r;
    });
  }

  /** Sends a call that blocks its thread (WSAEINPROGRESS while the thread's previous one runs). */
  // Not async: a call that involves no thread costs no extra promise.
  blocking(method: string, params: Record<string, unknown>, s: number, lpThreadId: WSATHREADID | null): Promise<Result> {
    return this.guard.run(this.threads.issuer(lpThreadId), s, (listener) => this.call(method, params, listener));
  }

  /**
   * WSPSelect: a blocking call of the calling thread whatever its sockets' modes (it waits up to
   * its timeout), so its APCs run while the daemon says it waits, as in Windows' select().
   */
  select(params: Record<string, unknown>): Promise<Result> {
    return this.guard.run(this.threads.issuer(null), NO_SOCKET, (listener) => this.call('WSPSelect', params, listener));
  }

  /**
   * Starts an overlapped call: the routine goes to the thread lpThreadId names (else the issuing
   * thread), captured now; the operation table marks the WSAOVERLAPPED pending and sends the call
   * with {op, thread}. A call that fails at once leaves no completion.
   */
  overlapped(method: string, params: Record<string, unknown>, how: OverlappedArgs, delivery?: Delivery): Promise<Result>;
  overlapped<T>(method: string, params: Record<string, unknown>, how: OverlappedArgs, delivery: Delivery | undefined, then: (r: Result) => T): Promise<T>;
  /**
   * then, when given, makes the caller's value of the result in the same step: this runs for
   * every overlapped send, and each step of its own would be a promise and a microtask more.
   */
  overlapped<T>(method: string, params: Record<string, unknown>, how: OverlappedArgs, delivery?: Delivery, then?: (r: Result) => T): Promise<T | Result> {
    const issuer = this.threads.issuer(how.lpThreadId) ?? this.threads.main;
    let routine: OperationSpec['routine'] = null;
    if (how.routine) {
      const thread = how.lpThreadId ? this.threads.get(how.lpThreadId.ThreadHandle) : issuer;
      if (!thread || !thread.isAlive) {
        const refused: Result = { ret: P.SOCKET_ERROR, errno: P.WSAEINVAL };
        return Promise.resolve(then === undefined ? refused : then(refused));
      }
      routine = { run: how.routine, thread, s: how.s };
    }
    how.ov.lastSocket = how.s;
    const rec = this.ops.begin(how.ov, routine, delivery);
    // params is the caller's own fresh object: add to it rather than copy it.
    params['overlapped'] = { op: rec.op, thread: issuer.id.ThreadHandle };
    const tracing = this.tracer !== null;
    // (Traced, the caller's mapping runs after the trace has the result.)
    if (!tracing) rec.mapResult = then;
    let sent: Promise<T | Result>;
    try {
      sent = this.rpc.callThen(method, params, rec, operationStep as ReplyStep<T | Result, OpRecord>, rec);
    } catch (err) {
      this.ops.notSent(rec);
      throw err;
    }
    if (!tracing) return sent;
    const traced = this.traced(sent as Promise<Result>, method, params, issuer.id.ThreadHandle, rec.op);
    return then === undefined ? traced : traced.then(then);
  }

  /** WSPSocket: the new handle is remembered until its close. */
  async socket(params: { af: number; type: number; protocol: number; g: number; flags: number }): Promise<Result> {
    const r = await this.call('WSPSocket', params);
    // The socket's family and type as the daemon resolved them (0s and AF_UNSPEC, the Windows way).
    if (r.ret !== P.INVALID_SOCKET) {
      const t = P.resolveSocketTriple(params.af, params.type, params.protocol);
      this.sockets.set(r.ret, { af: t.af, type: t.type });
    }
    return r;
  }

  /**
   * Connections a condition function deferred (CF_DEFER), per listening socket, oldest first: the
   * daemon has accepted them, and the next WSPAccept on the listener takes them before any other,
   * as Windows keeps a deferred connection queued.
   */
  private readonly deferred = new Map<number, Result[]>();

  /** Whether a connection deferred on listening socket s waits for the next WSPAccept (WSPSelect: s is readable). */
  hasDeferredAccept(s: number): boolean {
    return (this.deferred.get(s)?.length ?? 0) > 0;
  }

  /** A condition function deferred the connection r accepted on s: the next accept takes it. */
  deferAccept(s: number, r: Result): void {
    const q = this.deferred.get(s);
    if (q) q.unshift(r);
    else this.deferred.set(s, [r]);
  }

  /**
   * WSPAccept: a deferred connection first; the accepted socket inherits the listener's
   * nonblocking mode and WSPEventSelect.
   */
  async accept(s: number): Promise<Result> {
    const held = this.deferred.get(s);
    if (held && held.length > 0) {
      const r = held.shift()!;
      if (held.length === 0) this.deferred.delete(s);
      return r;
    }
    // WSAEINPROGRESS comes as ret INVALID_SOCKET (SOCKET_ERROR is the same -1).
    const r = await this.blocking('WSPAccept', { s }, s, null);
    if (r.ret === P.INVALID_SOCKET) return r;
    this.sockets.set(r.ret, this.sockets.get(s) ?? { af: P.AF_INET, type: P.SOCK_STREAM });
    if (this.guard.isNonBlocking(s)) this.guard.setNonBlocking(r.ret, true);
    // The same network events, signalled on the same event object (while that event exists).
    const sel = this.selections.selectionOf(s);
    if (sel && isU32(r.ret) && this.events.get(sel.hEvent)) await this.eventSelect(r.ret, sel.hEvent, sel.events);
    return r;
  }

  /** WSPCloseSocket: the socket's mode and selection end with it. */
  async closeSocket(s: number): Promise<Result> {
    const r = await this.call('WSPCloseSocket', { s });
    if (r.ret === 0 || r.errno === P.WSAENOTSOCK) this.sockets.delete(s);
    if (r.ret === 0) {
      this.guard.forget(s);
      this.selections.forget(s);
      // Deferred connections go with their listener: closed, as Windows resets what it queued.
      const held = this.deferred.get(s);
      this.deferred.delete(s);
      for (const c of held ?? []) await this.closeSocket(c.ret);
    }
    return r;
  }

  /** WSPIoctl: FIONBIO that succeeded changes what counts as a blocking call on the socket. */
  async ioctl(params: { s: number; code: number; input: Uint8Array; outputLength: number }, how: OverlappedArgs | null): Promise<Result> {
    const r = how ? await this.overlapped('WSPIoctl', params, how) : await this.call('WSPIoctl', params);
    if (r.ret === 0 && params.code === P.FIONBIO) {
      const input = params.input;
      this.guard.setNonBlocking(params.s, new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true) !== 0);
    }
    return r;
  }

  /** WSPEventSelect: the selection is in place before the call; the socket becomes nonblocking. */
  async eventSelect(s: number, hEvent: number, events: number): Promise<Result> {
    const settle = this.selections.select(s, hEvent, events);
    let r: Result;
    try {
      r = await this.call('WSPEventSelect', { s, events });
    } catch (err) {
      settle(false);
      throw err;
    }
    settle(r.ret === 0);
    if (r.ret === 0) this.guard.setNonBlocking(s, true);
    return r;
  }

  /** WSPEnumNetworkEvents: after a round trip, so events the daemon recorded before now have arrived. */
  async enumNetworkEvents(s: number): Promise<{ r: Result; recorded: WSANETWORKEVENTS }> {
    const r = await this.call('WSPGetSockOpt', { s, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
    return { r, recorded: r.ret === 0 ? this.selections.take(s) : { lNetworkEvents: 0, iErrorCode: [] } };
  }

  /** The thread exited: the daemon cancels what it issued. */
  async threadExited(thread: SpiThread): Promise<void> {
    try {
      await this.rpc.call('spiwire.threadExit', { thread: thread.id.ThreadHandle });
    } catch (err) {
      if (!(err instanceof ConnectionClosedError)) throw err;
    }
  }

  /** Ends the session: operations still pending complete with WSA_OPERATION_ABORTED. */
  close(): Promise<void> {
    this.closing = true;
    return this.rpc.close();
  }
}

/**
 * An overlapped call's reply, or its failure, as it is read: the operation is settled (failed at
 * once, or pending) and the caller's mapping made, in one step with no closure.
 */
function operationStep(raw: Record<string, unknown> | undefined, err: Error | undefined, rec: OpRecord): unknown {
  const r = err === undefined ? rec.table.outcome(rec, asResult, raw!) : rec.table.outcome(rec, netDown, err);
  return rec.mapResult === undefined ? r : rec.mapResult(r);
}

/** A call's reply as a Result, or its failure as one (WSAENETDOWN) or as the error it is. */
function resultOf(raw: Record<string, unknown> | undefined, err: Error | undefined): Result {
  return err === undefined ? asResult(raw!) : netDown(err);
}

function netDown(err: unknown): Result {
  if (err instanceof ConnectionClosedError) return { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN };
  throw err;
}

/** The reply of an SPI call, which carries ret and errno whatever else it holds. */
function asResult(r: Record<string, unknown>): Result {
  if (isResult(r)) return r;
  throw new SpiwireProtocolError(P.INVALID_REQUEST, 'the daemon answered an SPI call without ret and errno', { result: r });
}
