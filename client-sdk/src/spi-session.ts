/**
 * One session with the daemon, exposing the SPI functions under their SPI names with their SPI
 * parameter order. Each returns a Promise of what the C function returns; out parameters are
 * { value } objects filled before the promise resolves; lpErrno is written only on failure.
 *
 * Checks that concern the caller's own memory (WSAEFAULT for a buffer count beyond the array, a
 * len beyond its buffer, a missing out parameter) happen here, as they would in the caller's
 * address space; everything else is decided by the daemon on the real socket.
 */
import * as P from '@spiwire/proto';
import { isI32, isU32, sockaddrSize } from '@spiwire/proto';
import { checkErrno, fieldOf, fillAddr, finish, gather, isBytes, isOut, isRecord, isResult, isSockAddr, promised, scatter, setErr, wireAddr, type Result } from './marshal.js';
import { ConnectionClosedError, RpcConnection, SpiwireProtocolError, type RpcOptions, type Welcome } from './rpc.js';
import { out, type Out, type ProtocolInfoLike, type SOCKET, type SockAddr, type WSABUF, type WSATHREADID } from './types.js';
import { WSAOVERLAPPED, type LPWSAOVERLAPPED_COMPLETION_ROUTINE } from './overlapped.js';
import { EventTable, RoutineLocks, SpiThread, issuingThread, type ThreadHost } from './threads.js';
import { enumProtocols } from './catalog.js';
import { BlockingGuard } from './blocking.js';
import { EventSelectMirror, type WSANETWORKEVENTS } from './event-select.js';
import { OperationTable, type OperationSpec } from './operations.js';

/** FROM_PROTOCOL_INFO: take af, type or protocol from lpProtocolInfo. */
export const FROM_PROTOCOL_INFO = -1;

/** Room kept in a frame for the JSON header of a call. */
const HEADER_ROOM = 64 * 1024;

export interface ConnectOptions extends RpcOptions {
  /**
   * Automatic APC mode: completion routines (and WPUQueueApc APCs) run as soon as they arrive,
   * without an alertable wait. Off by default, which is the Windows behaviour.
   */
  autoApc?: boolean;
  /** Called when a completion routine or APC throws; default: printed to stderr. */
  onRoutineError?: (err: unknown) => void;
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
  'WSPCloseSocket',
  'WSPGetSockName',
  'WSPGetPeerName',
  'WSPIoctl',
  'WSPSetSockOpt',
  'WSPGetSockOpt',
  'WSPGetOverlappedResult',
  'WSPEventSelect',
  'WSPEnumNetworkEvents',
  'WSAWaitForMultipleEvents',
  'WSAGetLastError',
] as const;

export type ThreadBoundFunctions = Pick<SpiSession, (typeof THREAD_BOUND_FUNCTIONS)[number]>;

/**
 * A thread of the session: its id is the WSATHREADID to pass as lpThreadId, it waits with SleepEx
 * and WSAWaitForMultipleEvents, and it offers the SPI functions as calls issued by this thread.
 */
export interface SessionThread extends SpiThread, ThreadBoundFunctions {}

export class SpiSession implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly autoApc: boolean;
  /** The thread that calls made directly on the session belong to for completion routines. */
  readonly mainThread: SessionThread;
  private readonly threads = new Map<number, SessionThread>();
  private nextThreadHandle = 0x1004;
  private readonly events = new EventTable();
  private readonly ops = new OperationTable(this.events);
  /** WSAEINPROGRESS: one blocking call per thread; nonblocking sockets make none. */
  private readonly guard = new BlockingGuard();
  /** WSPEventSelect state by socket: the event object and the network events recorded so far. */
  private readonly selections = new EventSelectMirror(this.events);
  private closing = false;
  private readonly onRoutineError: (err: unknown) => void;

  private constructor(
    private readonly rpc: RpcConnection,
    opts: ConnectOptions,
  ) {
    this.autoApc = opts.autoApc ?? false;
    this.onRoutineError = opts.onRoutineError ?? ((err) => process.stderr.write(`spiwire: a completion routine threw: ${stackOf(err)}\n`));
    rpc.onNotification = (method, params) => this.onNotification(method, params);
    // The connection ended: operations still pending here complete now, exactly once.
    rpc.onClose = () => this.ops.abandon(this.closing ? P.WSA_OPERATION_ABORTED : P.WSAENETDOWN);
    this.mainThread = this.createThread();
  }

  /** Opens a session: one WebSocket connection, one emulated process. */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<SpiSession> {
    return new SpiSession(await RpcConnection.open(url, opts), opts);
  }

  // ---------------------------------------------------------------- threads, APCs, events

  /** Creates a thread; pass thread.id as lpThreadId, or call the SPI functions on the thread. */
  createThread(): SessionThread {
    const handle = this.nextThreadHandle;
    this.nextThreadHandle += 4;
    const thread = new SpiThread(this, handle) as SessionThread;
    for (const name of THREAD_BOUND_FUNCTIONS) {
      const fn = this[name] as (...args: unknown[]) => unknown;
      Object.defineProperty(thread, name, { value: (...args: unknown[]) => issuingThread.run(thread, () => fn.apply(this, args)), enumerable: false });
    }
    this.threads.set(handle, thread);
    return thread;
  }

  /** ThreadHost: the daemon cancels what the thread issued. */
  async threadExited(thread: SpiThread): Promise<void> {
    try {
      await this.rpc.call('spiwire.threadExit', { thread: thread.id.ThreadHandle });
    } catch (err) {
      if (!(err instanceof ConnectionClosedError)) throw err;
    }
  }

  routineFailed(err: unknown): void {
    this.onRoutineError(err);
  }

  /** The thread a call runs on: the thread whose method was called, else the one lpThreadId names. */
  private issuer(lpThreadId?: WSATHREADID | null): SessionThread | null {
    const t = issuingThread.getStore();
    if (t && this.threads.get(t.id.ThreadHandle) === t) return t as SessionThread;
    if (lpThreadId && typeof lpThreadId === 'object') return this.threads.get(lpThreadId.ThreadHandle) ?? null;
    return null;
  }

  private currentThread(): SessionThread {
    return this.issuer() ?? this.mainThread;
  }

  /** SleepEx on the calling thread (the main thread when called on the session). */
  SleepEx(dwMilliseconds: number, bAlertable: boolean | number): Promise<number> {
    return this.currentThread().SleepEx(dwMilliseconds, bAlertable);
  }

  /** WSAGetLastError of the calling thread: the WSA event functions report failures there. */
  WSAGetLastError(): number {
    return this.currentThread().lastError;
  }

  /** WPUQueueApc: queues lpfnUserApc(dwContext) on the thread lpThreadId names. */
  async WPUQueueApc(lpThreadId: WSATHREADID | null, lpfnUserApc: (dwContext: number) => unknown, dwContext: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!lpThreadId || typeof lpThreadId !== 'object' || typeof lpfnUserApc !== 'function') return setErr(lpErrno, P.WSAEFAULT);
    const thread = this.threads.get(lpThreadId.ThreadHandle);
    if (!thread || !thread.queueApc(() => lpfnUserApc(dwContext))) return setErr(lpErrno, P.WSAEINVAL);
    return 0;
  }

  /** WSACreateEvent: a manual-reset event, initially not signalled. */
  WSACreateEvent(): number {
    return this.events.create();
  }

  WSASetEvent(hEvent: number): number {
    const e = this.events.get(hEvent);
    if (!e) return this.eventFail();
    e.set();
    return P.TRUE;
  }

  WSAResetEvent(hEvent: number): number {
    const e = this.events.get(hEvent);
    if (!e) return this.eventFail();
    e.signaled = false;
    return P.TRUE;
  }

  WSACloseEvent(hEvent: number): number {
    return this.events.close(hEvent) ? P.TRUE : this.eventFail();
  }

  private eventFail(code: number = P.WSA_INVALID_HANDLE): number {
    this.currentThread().lastError = code;
    return P.FALSE;
  }

  /**
   * WSAWaitForMultipleEvents on the calling thread: WSA_WAIT_EVENT_0 + i, WSA_WAIT_TIMEOUT,
   * WSA_WAIT_IO_COMPLETION (alertable, APCs ran) or WSA_WAIT_FAILED (see WSAGetLastError).
   */
  async WSAWaitForMultipleEvents(cEvents: number, lphEvents: readonly number[] | null, fWaitAll: boolean | number, dwTimeout: number, fAlertable: boolean | number): Promise<number> {
    const thread = this.currentThread();
    if (!isU32(cEvents) || cEvents === 0 || cEvents > P.WSA_MAXIMUM_WAIT_EVENTS || !Array.isArray(lphEvents) || lphEvents.length < cEvents || !isU32(dwTimeout)) {
      thread.lastError = P.WSA_INVALID_PARAMETER;
      return P.WSA_WAIT_FAILED;
    }
    const objs = [];
    for (let i = 0; i < cEvents; i++) {
      const e = this.events.get(lphEvents[i]!);
      if (!e) {
        thread.lastError = P.WSA_INVALID_HANDLE;
        return P.WSA_WAIT_FAILED;
      }
      objs.push(e);
    }
    return thread.wait({ events: objs, waitAll: !!fWaitAll, timeoutMs: dwTimeout, alertable: !!fAlertable });
  }

  /**
   * WSPGetOverlappedResult: TRUE with the byte count and flags of a completed operation; FALSE
   * with WSA_IO_INCOMPLETE while it is pending and fWait is FALSE; with fWait TRUE it waits on
   * the operation's hEvent (WSAEINVAL without one); FALSE with the operation's own error if it failed.
   */
  async WSPGetOverlappedResult(_s: SOCKET, lpOverlapped: WSAOVERLAPPED | null, lpcbTransfer: Out | null, fWait: boolean | number, lpdwFlags: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!(lpOverlapped instanceof WSAOVERLAPPED) || !isOut(lpcbTransfer) || !isOut(lpdwFlags)) {
      lpErrno.value = P.WSAEFAULT;
      return P.FALSE;
    }
    if (lpOverlapped.pending) {
      if (!fWait) {
        lpErrno.value = P.WSA_IO_INCOMPLETE;
        return P.FALSE;
      }
      const ev = lpOverlapped.hEvent ? this.events.get(lpOverlapped.hEvent) : undefined;
      if (!ev) {
        lpErrno.value = lpOverlapped.hEvent ? P.WSA_INVALID_HANDLE : P.WSAEINVAL;
        return P.FALSE;
      }
      await this.currentThread().wait({ events: [ev], waitAll: false, timeoutMs: P.INFINITE, alertable: false });
      if (lpOverlapped.pending) {
        // Someone signalled the event by hand; the operation itself is still under way.
        lpErrno.value = P.WSA_IO_INCOMPLETE;
        return P.FALSE;
      }
    }
    lpcbTransfer.value = lpOverlapped.InternalHigh;
    lpdwFlags.value = lpOverlapped.Offset;
    if (lpOverlapped.OffsetHigh !== 0) {
      lpErrno.value = lpOverlapped.OffsetHigh;
      return P.FALSE;
    }
    return P.TRUE;
  }

  /**
   * WSCEnumProtocols: the provider's catalog entries as C WSAPROTOCOL_INFOW structures back to back;
   * WSAENOBUFS with the needed length in lpdwBufferLength when the buffer is too small (catalog.ts).
   */
  async WSCEnumProtocols(lpiProtocols: readonly number[] | null, lpProtocolBuffer: Uint8Array | null, lpdwBufferLength: Out, lpErrno: Out): Promise<number> {
    return enumProtocols(lpiProtocols, lpProtocolBuffer, lpdwBufferLength, lpErrno);
  }

  /**
   * @internal For the promise API: an overlapped call whose completion goes to onComplete rather
   * than to a routine or an event. Resolves with the call's immediate result.
   */
  async startOperation(method: 'WSPSend' | 'WSPSendTo' | 'WSPRecv' | 'WSPRecvFrom', params: Record<string, unknown>, onComplete: (error: number, bytes: number, flags: number) => void, targets?: Uint8Array[]): Promise<Result> {
    // Without a routine the socket handle plays no part in the operation table.
    return this.overlappedCall(method, params, 0, new WSAOVERLAPPED(), null, null, { onComplete, targets });
  }

  /** Pending overlapped operations of this session (started, not yet completed). */
  get pendingOperations(): number {
    return this.ops.size;
  }

  /** What the daemon said when the session opened: session id, version, limits. */
  get welcome(): Welcome {
    return this.rpc.welcome;
  }

  get isOpen(): boolean {
    return this.rpc.isOpen;
  }

  /**
   * Ends the session: the daemon closes its sockets and cancels its operations; operations still
   * pending here complete with WSA_OPERATION_ABORTED (WSAENETDOWN when the connection dropped).
   */
  close(): Promise<void> {
    this.closing = true;
    return this.rpc.close();
  }

  /** The underlying connection, for tests of the wire protocol. */
  get connection(): RpcConnection {
    return this.rpc;
  }

  protected onNotification(method: string, params: Record<string, unknown>): void {
    if (method === 'spiwire.completion') this.ops.onCompletion(params);
    else if (method === 'spiwire.networkEvents') this.selections.onNetworkEvents(params);
  }

  /**
   * WSPEventSelect: associates hEventObject with the network events in lNetworkEvents (0 cancels)
   * and makes the socket nonblocking. The event is set whenever an event is recorded.
   */
  async WSPEventSelect(s: SOCKET, hEventObject: number, lNetworkEvents: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isU32(lNetworkEvents)) return setErr(lpErrno, P.WSAEINVAL);
    if (lNetworkEvents !== 0 && !this.events.get(hEventObject)) return setErr(lpErrno, P.WSAEINVAL);
    const settle = this.selections.select(s, hEventObject, lNetworkEvents);
    const r = await this.call('WSPEventSelect', { s, events: lNetworkEvents });
    settle(r.ret === 0);
    if (r.ret === 0) this.guard.setNonBlocking(s, true);
    return finish(r, lpErrno);
  }

  /**
   * WSPEnumNetworkEvents: reports and clears the network events recorded for the socket, with
   * their error codes (iErrorCode indexed by FD_READ_BIT ... FD_CLOSE_BIT); resets hEventObject.
   */
  async WSPEnumNetworkEvents(s: SOCKET, hEventObject: number, lpNetworkEvents: WSANETWORKEVENTS | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!lpNetworkEvents || typeof lpNetworkEvents !== 'object') return setErr(lpErrno, P.WSAEFAULT);
    // A round trip first, so events the daemon recorded before now have arrived.
    const r = await this.call('WSPGetSockOpt', { s, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
    if (r.ret !== 0) return finish(r, lpErrno);
    const taken = this.selections.take(s);
    lpNetworkEvents.lNetworkEvents = taken.lNetworkEvents;
    lpNetworkEvents.iErrorCode = taken.iErrorCode;
    if (hEventObject) {
      const e = this.events.get(hEventObject);
      if (!e) return setErr(lpErrno, P.WSAEINVAL);
      e.signaled = false;
    }
    return 0;
  }

  /**
   * Starts an overlapped call: the routine goes to the thread lpThreadId names (else the issuing
   * thread), captured now; the operation table marks the WSAOVERLAPPED pending and sends the call
   * with {op, thread}. A call that fails at once leaves no completion.
   */
  // Not async: one promise hop fewer per overlapped call.
  private overlappedCall(
    method: string,
    params: Record<string, unknown>,
    s: number,
    ov: WSAOVERLAPPED,
    routine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    delivery: Pick<OperationSpec, 'targets' | 'flagsOut' | 'onComplete'> = {},
  ): Promise<Result> {
    const issuer = this.issuer(lpThreadId) ?? this.mainThread;
    let bound: OperationSpec['routine'] = null;
    if (routine) {
      const thread = lpThreadId ? this.threads.get(lpThreadId.ThreadHandle) : issuer;
      if (!thread || !thread.isAlive) return Promise.resolve({ ret: P.SOCKET_ERROR, errno: P.WSAEINVAL });
      bound = { run: routine, thread, s };
    }
    return this.ops.start({ ov, routine: bound, ...delivery }, (op, onReply) => {
      // params is the caller's own fresh object: add to it rather than copy it.
      params['overlapped'] = { op, thread: issuer.id.ThreadHandle };
      return this.call(method, params, onReply);
    });
  }

  /** Checks the overlapped arguments; returns a WSA code when they are unusable, else 0. */
  private checkOverlappedArgs(lpOverlapped: unknown, lpCompletionRoutine: unknown, lpThreadId: unknown): number {
    if (!(lpOverlapped instanceof WSAOVERLAPPED)) return P.WSAEFAULT;
    if (lpCompletionRoutine !== null && lpCompletionRoutine !== undefined && typeof lpCompletionRoutine !== 'function') return P.WSAEFAULT;
    if (lpThreadId !== null && lpThreadId !== undefined && !(isRecord(lpThreadId) && isU32(lpThreadId['ThreadHandle']))) return P.WSAEFAULT;
    if (!lpCompletionRoutine && lpOverlapped.hEvent && !this.events.get(lpOverlapped.hEvent)) return P.WSA_INVALID_HANDLE;
    return 0;
  }

  /**
   * Sends a call; a lost connection becomes WSAENETDOWN, as a vanished network subsystem would,
   * and a reply without ret and errno fails the call with SpiwireProtocolError.
   */
  private call(method: string, params: Record<string, unknown>, onReply?: (r: Result) => void): Promise<Result> {
    // Not an async function: one promise fewer on the hot path.
    return this.rpc.call(method, params, onReply && ((r) => isResult(r) && onReply(r))).then(asResult, netDown);
  }

  private maxPayload(): number {
    return this.rpc.welcome.limits.maxFrameBytes - HEADER_ROOM;
  }

  // ---------------------------------------------------------------- socket lifecycle

  async WSPSocket(af: number, type: number, protocol: number, lpProtocolInfo: ProtocolInfoLike | null, g: number, dwFlags: number, lpErrno: Out): Promise<SOCKET> {
    checkErrno(lpErrno);
    if (lpProtocolInfo) {
      if (af === FROM_PROTOCOL_INFO) af = lpProtocolInfo.iAddressFamily;
      if (type === FROM_PROTOCOL_INFO) type = lpProtocolInfo.iSocketType;
      if (protocol === FROM_PROTOCOL_INFO) protocol = lpProtocolInfo.iProtocol;
    }
    if (![af, type, protocol].every(isI32) || !isU32(g) || !isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL, P.INVALID_SOCKET);
    const r = await this.call('WSPSocket', { af, type, protocol, g, flags: dwFlags });
    return finish(r, lpErrno);
  }

  async WSPCloseSocket(s: SOCKET, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    const r = await this.call('WSPCloseSocket', { s });
    if (r.ret === 0) {
      this.guard.forget(s);
      this.selections.forget(s);
    }
    return finish(r, lpErrno);
  }

  async WSPBind(s: SOCKET, name: SockAddr | null, namelen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isSockAddr(name) || !isI32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    return finish(await this.call('WSPBind', { s, name: wireAddr(name), namelen }), lpErrno);
  }

  async WSPListen(s: SOCKET, backlog: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(backlog)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.call('WSPListen', { s, backlog }), lpErrno);
  }

  /**
   * lpfnCondition, when given, is called with (callerId, dwCallbackData) after the daemon accepted
   * the connection: CF_ACCEPT keeps it, CF_REJECT closes it and the call fails with WSAECONNREFUSED.
   */
  async WSPAccept(
    s: SOCKET,
    addr: SockAddr | null,
    addrlen: Out | null,
    lpfnCondition: ((callerId: SockAddr, dwCallbackData: number) => number | Promise<number>) | null,
    dwCallbackData: number,
    lpErrno: Out,
  ): Promise<SOCKET> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK, P.INVALID_SOCKET);
    if ((addr === null) !== (addrlen === null) || (addrlen !== null && !isOut(addrlen))) return setErr(lpErrno, P.WSAEFAULT, P.INVALID_SOCKET);
    // WSAEINPROGRESS comes as ret INVALID_SOCKET (SOCKET_ERROR is the same -1).
    const r = await this.guard.run(this.issuer(null), s, () => this.call('WSPAccept', { s }));
    if (r.ret === P.INVALID_SOCKET) return finish(r, lpErrno);
    // An accepted socket inherits the listener's properties, nonblocking mode included.
    if (this.guard.isNonBlocking(s)) this.guard.setNonBlocking(r.ret, true);
    // ... and its WSPEventSelect: the same network events, signalled on the same event object.
    const sel = this.selections.selectionOf(s);
    if (sel) await this.WSPEventSelect(r.ret, sel.hEvent, sel.events, out(0));
    const peer = fieldOf(r, 'addr', isSockAddr);
    if (lpfnCondition && peer) {
      const verdict = await lpfnCondition(peer, dwCallbackData);
      if (verdict !== P.CF_ACCEPT) {
        await this.call('WSPCloseSocket', { s: r.ret });
        return setErr(lpErrno, P.WSAECONNREFUSED, P.INVALID_SOCKET);
      }
    }
    if (addr && addrlen && peer) {
      const size = sockaddrSize(peer.family);
      if (addrlen.value < size) {
        await this.call('WSPCloseSocket', { s: r.ret });
        return setErr(lpErrno, P.WSAEFAULT, P.INVALID_SOCKET);
      }
      fillAddr(addr, peer);
      addrlen.value = size;
    }
    return r.ret;
  }

  /** lpCallerData and lpCalleeData are ignored (TCP carries no connect data); QOS gives WSAEOPNOTSUPP. */
  async WSPConnect(s: SOCKET, name: SockAddr | null, namelen: number, _lpCallerData: unknown, _lpCalleeData: unknown, lpSQOS: unknown, lpGQOS: unknown, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isSockAddr(name) || !isI32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    if (lpSQOS != null || lpGQOS != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    return finish(await this.guard.run(this.issuer(null), s, () => this.call('WSPConnect', { s, name: wireAddr(name), namelen })), lpErrno);
  }

  async WSPShutdown(s: SOCKET, how: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(how)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.call('WSPShutdown', { s, how }), lpErrno);
  }

  async WSPGetSockName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetSockName', s, name, namelen, lpErrno);
  }

  async WSPGetPeerName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetPeerName', s, name, namelen, lpErrno);
  }

  private async getName(method: string, s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!name || typeof name !== 'object' || !isOut(namelen) || !isI32(namelen.value)) return setErr(lpErrno, P.WSAEFAULT);
    const r = await this.call(method, { s, namelen: namelen.value });
    const addr = fieldOf(r, 'name', isSockAddr);
    if (r.ret === 0 && addr) {
      fillAddr(name, addr);
      namelen.value = fieldOf(r, 'namelen', isI32) ?? sockaddrSize(addr.family);
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- sending

  WSPSend(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return promised(() => this.send('WSPSend', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, null, 0, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno));
  }

  WSPSendTo(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return promised(() => this.send('WSPSendTo', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpTo, iTolen, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno));
  }

  /**
   * WSPSend and WSPSendTo. Not an async function, nor is anything it calls on the way to the
   * daemon and back: on the hot path every promise hop shows in the small-call latency.
   */
  private send(
    method: 'WSPSend' | 'WSPSendTo',
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): number | Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    // lpCompletionRoutine is ignored without lpOverlapped: the call is then not overlapped.
    const overlapped = lpOverlapped !== null && lpOverlapped !== undefined;
    if (overlapped) {
      const bad = this.checkOverlappedArgs(lpOverlapped, lpCompletionRoutine, lpThreadId);
      if (bad) return setErr(lpErrno, bad);
    }
    if (lpNumberOfBytesSent !== null && lpNumberOfBytesSent !== undefined && !isOut(lpNumberOfBytesSent)) return setErr(lpErrno, P.WSAEFAULT);
    // Without an OVERLAPPED the byte count has nowhere else to go.
    if (!overlapped && !lpNumberOfBytesSent) return setErr(lpErrno, P.WSAEFAULT);
    if (!isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL);
    const buffers = gather(lpBuffers, dwBufferCount);
    if (typeof buffers === 'number') return setErr(lpErrno, buffers);
    let total = 0;
    for (const b of buffers) total += b.length;
    if (total > this.maxPayload()) return setErr(lpErrno, P.WSAENOBUFS);
    const params: Record<string, unknown> = { s, buffers, flags: dwFlags };
    if (method === 'WSPSendTo') {
      if (lpTo !== null && !isSockAddr(lpTo)) return setErr(lpErrno, P.WSAEFAULT);
      if (!isI32(iTolen)) return setErr(lpErrno, P.WSAEFAULT);
      params['to'] = lpTo ? wireAddr(lpTo) : null;
      params['tolen'] = iTolen;
    }
    if (overlapped) {
      return this.overlappedCall(method, params, s, lpOverlapped, lpCompletionRoutine ?? null, lpThreadId).then((r) => {
        // Pending: lpNumberOfBytesSent is not written.
        if (r.ret === 0 && lpNumberOfBytesSent) lpNumberOfBytesSent.value = fieldOf(r, 'bytesSent', isU32) ?? 0;
        return finish(r, lpErrno);
      });
    }
    return this.guard.run(this.issuer(lpThreadId), s, () => this.call(method, params)).then((r) => {
      if (r.ret === 0 && lpNumberOfBytesSent) lpNumberOfBytesSent.value = fieldOf(r, 'bytesSent', isU32) ?? 0;
      return finish(r, lpErrno);
    });
  }

  // ---------------------------------------------------------------- receiving

  WSPRecv(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.recv('WSPRecv', s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, null, null, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  WSPRecvFrom(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpFrom: SockAddr | null,
    lpFromlen: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.recv('WSPRecvFrom', s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, lpFrom, lpFromlen, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  private async recv(
    method: 'WSPRecv' | 'WSPRecvFrom',
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpFrom: SockAddr | null,
    lpFromlen: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    const overlapped = lpOverlapped !== null && lpOverlapped !== undefined;
    if (overlapped) {
      const bad = this.checkOverlappedArgs(lpOverlapped, lpCompletionRoutine, lpThreadId);
      if (bad) return setErr(lpErrno, bad);
    }
    if (!isOut(lpFlags) || !isU32(lpFlags.value)) return setErr(lpErrno, P.WSAEFAULT);
    if (!overlapped && !isOut(lpNumberOfBytesRecvd)) return setErr(lpErrno, P.WSAEFAULT);
    if ((lpFrom === null) !== (lpFromlen === null) || (lpFromlen !== null && !isOut(lpFromlen))) return setErr(lpErrno, P.WSAEFAULT);
    // The receive buffers are checked as the send buffers are: the caller must own every byte.
    const targets = gather(lpBuffers, dwBufferCount);
    if (typeof targets === 'number') return setErr(lpErrno, targets);
    const params = { s, lengths: targets.map((t) => t.length), flags: lpFlags.value };
    const r = overlapped
      ? await this.overlappedCall(method, params, s, lpOverlapped, lpCompletionRoutine ?? null, lpThreadId, { targets, flagsOut: lpFlags })
      : await this.guard.run(this.issuer(lpThreadId), s, () => this.call(method, params));
    const data = fieldOf(r, 'data', isBytes);
    if (data) {
      if (!overlapped) scatter(data, targets);
      if (isOut(lpNumberOfBytesRecvd)) lpNumberOfBytesRecvd.value = fieldOf(r, 'bytesRecvd', isU32) ?? data.length;
      lpFlags.value = fieldOf(r, 'flags', isU32) ?? 0;
      const from = fieldOf(r, 'from', isSockAddr);
      if (lpFrom && lpFromlen && from) {
        const size = sockaddrSize(from.family);
        if (lpFromlen.value < size) return setErr(lpErrno, P.WSAEFAULT);
        fillAddr(lpFrom, from);
        lpFromlen.value = size;
      }
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- control

  async WSPIoctl(
    s: SOCKET,
    dwIoControlCode: number,
    lpvInBuffer: Uint8Array | null,
    cbInBuffer: number,
    lpvOutBuffer: Uint8Array | null,
    cbOutBuffer: number,
    lpcbBytesReturned: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    const overlapped = lpOverlapped !== null && lpOverlapped !== undefined;
    if (overlapped) {
      const bad = this.checkOverlappedArgs(lpOverlapped, lpCompletionRoutine, lpThreadId);
      if (bad) return setErr(lpErrno, bad);
    }
    if (!isU32(dwIoControlCode) || !isU32(cbInBuffer) || !isU32(cbOutBuffer)) return setErr(lpErrno, P.WSAEINVAL);
    if (cbInBuffer > 0 && (!(lpvInBuffer instanceof Uint8Array) || lpvInBuffer.length < cbInBuffer)) return setErr(lpErrno, P.WSAEFAULT);
    if (cbOutBuffer > 0 && (!(lpvOutBuffer instanceof Uint8Array) || lpvOutBuffer.length < cbOutBuffer)) return setErr(lpErrno, P.WSAEFAULT);
    if (!overlapped && !isOut(lpcbBytesReturned)) return setErr(lpErrno, P.WSAEFAULT);
    const input = cbInBuffer > 0 ? lpvInBuffer!.subarray(0, cbInBuffer) : new Uint8Array(0);
    const params = { s, code: dwIoControlCode, input, outputLength: cbOutBuffer };
    const r = overlapped ? await this.overlappedCall('WSPIoctl', params, s, lpOverlapped, lpCompletionRoutine ?? null, lpThreadId) : await this.call('WSPIoctl', params);
    if (r.ret === 0 && dwIoControlCode === P.FIONBIO) this.guard.setNonBlocking(s, new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true) !== 0);
    if (r.ret === 0 && isOut(lpcbBytesReturned)) {
      const output = fieldOf(r, 'output', isBytes);
      if (output && output.length > 0 && lpvOutBuffer) lpvOutBuffer.set(output.subarray(0, cbOutBuffer));
      lpcbBytesReturned.value = fieldOf(r, 'bytesReturned', isU32) ?? 0;
    }
    return finish(r, lpErrno);
  }

  async WSPSetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(level) || !isI32(optname) || !isI32(optlen)) return setErr(lpErrno, P.WSAEINVAL);
    if (optval !== null && !(optval instanceof Uint8Array)) return setErr(lpErrno, P.WSAEFAULT);
    // optlen beyond the caller's buffer is memory the caller does not own.
    if (optval && optlen > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    const bytes = optval ? optval.subarray(0, Math.max(0, optlen)) : null;
    return finish(await this.call('WSPSetSockOpt', { s, level, optname, optval: bytes, optlen }), lpErrno);
  }

  async WSPGetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(level) || !isI32(optname)) return setErr(lpErrno, P.WSAEINVAL);
    if (!(optval instanceof Uint8Array) || !isOut(optlen) || !isI32(optlen.value) || optlen.value > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    const r = await this.call('WSPGetSockOpt', { s, level, optname, optlen: optlen.value });
    const v = fieldOf(r, 'optval', isBytes);
    if (r.ret === 0 && v) {
      optval.set(v.subarray(0, optlen.value));
      optlen.value = fieldOf(r, 'optlen', isI32) ?? Math.min(v.length, optlen.value);
    }
    return finish(r, lpErrno);
  }
}

// ---------------------------------------------------------------- helpers

function netDown(err: unknown): Result {
  if (err instanceof ConnectionClosedError) return { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN };
  throw err;
}

/** What to print for something a routine threw: its stack when it has one. */
function stackOf(err: unknown): string {
  return isRecord(err) && typeof err['stack'] === 'string' ? err['stack'] : String(err);
}

/** The reply of an SPI call, which carries ret and errno whatever else it holds. */
function asResult(r: Record<string, unknown>): Result {
  if (isResult(r)) return r;
  throw new SpiwireProtocolError(P.INVALID_REQUEST, 'the daemon answered an SPI call without ret and errno', { result: r });
}
