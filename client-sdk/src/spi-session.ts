/**
 * One session with the daemon: one WebSocket connection, one emulated process. SpiSession offers
 * the SPI functions (spi-functions.ts) and what a process has around them: its threads with their
 * APC queues and alertable waits, its WSAEVENT objects and WSAWaitForMultipleEvents, and the
 * session's own life. Its state and its traffic with the daemon are the engine's (engine.ts).
 */
import * as P from '@spiwire/proto';
import { isU32 } from '@spiwire/proto';
import { SessionEngine } from './engine.js';
import { SessionFaults } from './faults.js';
import { checkErrno, isRecord, setErr, type Result } from './marshal.js';
import { WSAOVERLAPPED } from './overlapped.js';
import { RpcConnection, type ConnectionEvent, type ConnectionEvents, type RpcOptions, type Welcome } from './rpc.js';
import { SpiFunctions } from './spi-functions.js';
import { RoutineLocks, SpiThread, issuingThread, type ThreadHost } from './threads.js';
import type { Out, WSATHREADID } from './types.js';
import { Tracer, type TraceSink } from './trace.js';

export { FROM_PROTOCOL_INFO } from './spi-functions.js';
export type { WSANETWORKEVENTS } from './event-select.js';

export interface ConnectOptions extends RpcOptions {
  /**
   * Automatic APC mode: completion routines (and WPUQueueApc APCs) run as soon as they arrive,
   * without an alertable wait. Off by default, which is the Windows behaviour.
   */
  autoApc?: boolean;
  /** Called when a completion routine or APC throws; default: printed to stderr. */
  onRoutineError?: (err: unknown) => void;
  /**
   * Record the session's call trace (docs/trace.md): a file path (JSON lines, written as the
   * session runs, flushed by close()), a function that gets each record, or { to, payloads }
   * with payloads true to record the bytes each send offered as well (base64). Off by default.
   */
  trace?: string | TraceSink | { to: string | TraceSink; payloads?: boolean };
  /** The connection dropped and the SDK is reconnecting (same as on('disconnected')). */
  onDisconnected?: (e: { reason: string }) => void;
  /** The session was resumed on a new connection (same as on('resumed')). */
  onResumed?: (e: { reason: string }) => void;
  /** The session could not be resumed; calls fail with WSAENETDOWN from now on (same as on('lost')). */
  onLost?: (e: { reason: string }) => void;
}

/** The SPI functions a thread object offers, bound to that thread. */
export const THREAD_BOUND_FUNCTIONS = [
  'WSPSocket',
  'WSPBind',
  'WSPListen',
  'WSPAccept',
  'WSPConnect',
  'WSPSend',
  'WSPSendTo',
  'WSPRecv',
  'WSPRecvFrom',
  'WSPShutdown',
  'WSPSendDisconnect',
  'WSPRecvDisconnect',
  'WSPCloseSocket',
  'WSPGetSockName',
  'WSPGetPeerName',
  'WSPIoctl',
  'WSPSetSockOpt',
  'WSPGetSockOpt',
  'WSPGetOverlappedResult',
  'WSPEventSelect',
  'WSPEnumNetworkEvents',
  'WSPSelect',
  'WSAWaitForMultipleEvents',
  'WSAGetLastError',
] as const;

export type ThreadBoundFunctions = Pick<SpiSession, (typeof THREAD_BOUND_FUNCTIONS)[number]>;

/**
 * A thread of the session: its id is the WSATHREADID to pass as lpThreadId, it waits with SleepEx
 * and WSAWaitForMultipleEvents, and it offers the SPI functions as calls issued by this thread.
 */
export interface SessionThread extends SpiThread, ThreadBoundFunctions {}

export class SpiSession extends SpiFunctions implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly autoApc: boolean;
  /** The thread that calls made directly on the session belong to for completion routines. */
  readonly mainThread: SessionThread;
  protected readonly engine: SessionEngine<SessionThread>;
  /** The session's fault rules (proto/README.md section 19): add, remove, list, tagSocket, onApplied. */
  readonly faults: SessionFaults;
  private readonly onRoutineError: (err: unknown) => void;

  private constructor(rpc: RpcConnection, opts: ConnectOptions) {
    super();
    this.autoApc = opts.autoApc ?? false;
    this.onRoutineError = opts.onRoutineError ?? ((err) => process.stderr.write(`spiwire: a completion routine threw: ${stackOf(err)}\n`));
    this.engine = new SessionEngine(rpc, (handle) => this.newThread(handle));
    if (opts.trace !== undefined) {
      const spec = typeof opts.trace === 'object' ? opts.trace : { to: opts.trace };
      const tracer = typeof spec.to === 'string' ? Tracer.toFile(spec.to) : Tracer.to(spec.to);
      tracer.payloads = spec.payloads === true;
      this.engine.tracer = tracer;
      this.engine.ops.tracer = tracer;
      tracer.record({ t: tracer.now(), kind: 'origin', side: 'sdk', session: rpc.welcome.session, timeOrigin: performance.timeOrigin });
    }
    this.mainThread = this.engine.threads.main;
    this.faults = new SessionFaults(rpc);
    rpc.onNotification = (method, params) => this.onNotification(method, params);
    if (opts.onDisconnected) rpc.events.on('disconnected', opts.onDisconnected);
    if (opts.onResumed) rpc.events.on('resumed', opts.onResumed);
    if (opts.onLost) rpc.events.on('lost', opts.onLost);
  }

  /**
   * Hooks of the session's resume (proto/README.md section 20): 'disconnected' (the SDK is
   * reconnecting; calls wait), 'resumed' (everything goes on), 'lost' (calls fail with WSAENETDOWN).
   */
  on(event: keyof ConnectionEvents, listener: (e: ConnectionEvent) => void): this {
    this.engine.rpc.events.on(event, listener);
    return this;
  }

  off(event: keyof ConnectionEvents, listener: (e: ConnectionEvent) => void): this {
    this.engine.rpc.events.off(event, listener);
    return this;
  }

  /** Opens a session: one WebSocket connection, one emulated process. */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<SpiSession> {
    return new SpiSession(await RpcConnection.open(url, opts), opts);
  }

  // ---------------------------------------------------------------- threads and APCs

  /** Creates a thread; pass thread.id as lpThreadId, or call the SPI functions on the thread. */
  createThread(): SessionThread {
    return this.engine.threads.create();
  }

  /** A thread object: an SpiThread that offers the session's SPI functions as calls it issues. */
  private newThread(handle: number): SessionThread {
    const thread = new SpiThread(this, handle);
    for (const name of THREAD_BOUND_FUNCTIONS) {
      const fn = this[name];
      Object.defineProperty(thread, name, { value: (...args: unknown[]) => issuingThread.run(thread, () => Reflect.apply(fn, this, args)), enumerable: false });
    }
    if (!offersBoundFunctions(thread)) throw new Error('a thread object lacks an SPI function');
    return thread;
  }

  /** ThreadHost: the daemon cancels what the thread issued. */
  threadExited(thread: SpiThread): Promise<void> {
    return this.engine.threadExited(thread);
  }

  routineFailed(err: unknown): void {
    this.onRoutineError(err);
  }

  /** SleepEx on the calling thread (the main thread when called on the session). */
  SleepEx(dwMilliseconds: number, bAlertable: boolean | number): Promise<number> {
    return this.engine.threads.current().SleepEx(dwMilliseconds, bAlertable);
  }

  /** WSAGetLastError of the calling thread: the WSA event functions report failures there. */
  WSAGetLastError(): number {
    return this.engine.threads.current().lastError;
  }

  /** WPUQueueApc: queues lpfnUserApc(dwContext) on the thread lpThreadId names. */
  async WPUQueueApc(lpThreadId: WSATHREADID | null, lpfnUserApc: (dwContext: number) => unknown, dwContext: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!lpThreadId || typeof lpThreadId !== 'object' || typeof lpfnUserApc !== 'function') return setErr(lpErrno, P.WSAEFAULT);
    const thread = this.engine.threads.get(lpThreadId.ThreadHandle);
    if (!thread || !thread.queueApc(() => lpfnUserApc(dwContext))) return setErr(lpErrno, P.WSAEINVAL);
    return 0;
  }

  // ---------------------------------------------------------------- event objects and waits

  /** WSACreateEvent: a manual-reset event, initially not signalled. */
  WSACreateEvent(): number {
    return this.engine.events.create();
  }

  WSASetEvent(hEvent: number): number {
    const e = this.engine.events.get(hEvent);
    if (!e) return this.eventFail();
    e.set();
    return P.TRUE;
  }

  WSAResetEvent(hEvent: number): number {
    const e = this.engine.events.get(hEvent);
    if (!e) return this.eventFail();
    e.signaled = false;
    return P.TRUE;
  }

  WSACloseEvent(hEvent: number): number {
    return this.engine.events.close(hEvent) ? P.TRUE : this.eventFail();
  }

  private eventFail(code: number = P.WSA_INVALID_HANDLE): number {
    this.engine.threads.current().lastError = code;
    return P.FALSE;
  }

  /**
   * WSAWaitForMultipleEvents on the calling thread: WSA_WAIT_EVENT_0 + i, WSA_WAIT_TIMEOUT,
   * WSA_WAIT_IO_COMPLETION (alertable, APCs ran) or WSA_WAIT_FAILED (see WSAGetLastError).
   */
  async WSAWaitForMultipleEvents(cEvents: number, lphEvents: readonly number[] | null, fWaitAll: boolean | number, dwTimeout: number, fAlertable: boolean | number): Promise<number> {
    const thread = this.engine.threads.current();
    if (!isU32(cEvents) || cEvents === 0 || cEvents > P.WSA_MAXIMUM_WAIT_EVENTS || !Array.isArray(lphEvents) || lphEvents.length < cEvents || !isU32(dwTimeout)) {
      thread.lastError = P.WSA_INVALID_PARAMETER;
      return P.WSA_WAIT_FAILED;
    }
    const objs = [];
    for (let i = 0; i < cEvents; i++) {
      const e = this.engine.events.get(lphEvents[i]!);
      if (!e) {
        thread.lastError = P.WSA_INVALID_HANDLE;
        return P.WSA_WAIT_FAILED;
      }
      objs.push(e);
    }
    return thread.wait({ events: objs, waitAll: !!fWaitAll, timeoutMs: dwTimeout, alertable: !!fAlertable });
  }

  // ---------------------------------------------------------------- the session

  /**
   * @internal For the promise API: an overlapped call whose completion goes to onComplete rather
   * than to a routine or an event. Resolves with the call's immediate result.
   */
  async startOperation(method: 'WSPSend' | 'WSPSendTo' | 'WSPRecv' | 'WSPRecvFrom', params: Record<string, unknown>, onComplete: (error: number, bytes: number, flags: number) => void, targets?: Uint8Array[]): Promise<Result> {
    // Without a routine the socket handle plays no part in the operation.
    return this.engine.overlapped(method, params, { s: 0, ov: new WSAOVERLAPPED(), routine: null, lpThreadId: null }, { onComplete, targets });
  }

  /** Pending overlapped operations of this session (started, not yet completed). */
  get pendingOperations(): number {
    return this.engine.ops.size;
  }

  /** What the daemon said when the session opened: session id, version, limits. */
  get welcome(): Welcome {
    return this.engine.rpc.welcome;
  }

  get isOpen(): boolean {
    return this.engine.rpc.isOpen;
  }

  /**
   * Ends the session: the daemon closes its sockets and cancels its operations; operations still
   * pending here complete with WSA_OPERATION_ABORTED (WSAENETDOWN when the connection dropped).
   */
  async close(): Promise<void> {
    try {
      await this.engine.close();
    } finally {
      await this.engine.tracer?.close();
    }
  }

  /** The underlying connection, for tests of the wire protocol. */
  get connection(): RpcConnection {
    return this.engine.rpc;
  }

  protected onNotification(method: string, params: Record<string, unknown>): void {
    if (this.engine.tracer) this.engine.traceNotification(method, params);
    if (method === 'spiwire.faultApplied') this.faults.applied(params);
    else this.engine.onNotification(method, params);
  }
}

function offersBoundFunctions(thread: SpiThread): thread is SessionThread {
  return THREAD_BOUND_FUNCTIONS.every((name) => name in thread);
}

/** What to print for something a routine threw: its stack when it has one. */
function stackOf(err: unknown): string {
  return isRecord(err) && typeof err['stack'] === 'string' ? err['stack'] : String(err);
}
