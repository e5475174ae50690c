/**
 * What every emulated socket shares: its identity, its owner session, the socket options, waits
 * that close or daemon shutdown can interrupt, and the WSPEventSelect bookkeeping. Each transport
 * (tcp-socket.ts, udp-socket.ts) keeps its own state machine (socket-state.ts) and returns domain
 * results (results.ts); the SPI layer maps them to the wire.
 */
import type { Logger } from 'pino';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import type { SessionQuota, SessionReceived } from '../held-bytes.js';
import type { AcceptResult, Completion, CompletionOut, RecvResult, SendResult, Started } from './results.js';
import { cancellable, completion, recvFailed, sendFailed } from './results.js';
import type { AppliedFault, CallMode, FaultHook } from '../faults/rules.js';
import { SocketStateMachine, type MoveTable } from './socket-state.js';
import { MAX_TIMER_MS } from '../daemon-context.js';
import type { PortReservations, Reservation } from './port-reservations.js';
import { scopeIdOf } from './sockaddr.js';
import type { Answer } from '../later.js';

const FD_NAMES: Readonly<Record<number, W.NetworkEventName>> = {
  [W.FD_READ]: 'FD_READ',
  [W.FD_WRITE]: 'FD_WRITE',
  [W.FD_OOB]: 'FD_OOB',
  [W.FD_ACCEPT]: 'FD_ACCEPT',
  [W.FD_CONNECT]: 'FD_CONNECT',
  [W.FD_CLOSE]: 'FD_CLOSE',
};

/** WSPSelect's conditions (EmulatedSocket.selectReady): readfds, writefds and exceptfds. */
export const SELECT_READ = 1;
export const SELECT_WRITE = 2;
export const SELECT_EXCEPT = 4;

const SELECT_BITS = [SELECT_READ, SELECT_WRITE, SELECT_EXCEPT] as const;

/** A WSPSelect waiting on a socket: the conditions it wants, and how it is told. */
interface SelectWatcher {
  readonly wanted: number;
  readonly changed: () => void;
  readonly aborted: (errno: number) => void;
}

/** A socket's waiting selects; counts: how many want each condition. */
interface SelectWatch {
  readonly watchers: Set<SelectWatcher>;
  readonly counts: Record<number, number>;
  readonly stop: () => void;
}

/** What one socket is: its handle and kind. */
export interface SocketIdentity {
  readonly handle: number;
  readonly af: number;
  readonly type: number;
  readonly protocol: number;
  /** Created with WSA_FLAG_OVERLAPPED. */
  readonly overlapped: boolean;
}

/**
 * What a socket gets from its session. One object per session, shared by all its sockets: a
 * session may hold tens of thousands of idle sockets, and each per-socket copy of these fields and
 * closures would cost every one of them.
 */
export interface SocketContext {
  readonly owner: string;
  /** The session's logger (a socket makes its own child, with its handle, when it first logs). */
  readonly log: Logger;
  readonly defaults: { sndBuf: number; rcvBuf: number; sendPolicy: number };
  /**
   * The most received bytes one reply may carry (the frame limit less room for the record): a
   * receive returns at most this many, and a socket holds at most this many unread, whatever
   * SO_RCVBUF says, so that no client can make the daemon buffer without bound.
   */
  readonly maxRecvBytes: number;
  /** The session's memory quota for bytes held on behalf of its sends. */
  readonly quota: SessionQuota;
  /** The session's bytes received and not yet taken, against the daemon's budget. */
  readonly received: SessionReceived;
  /** The session's output: while paused, sockets pull no more data from the network. */
  readonly flow: { readonly paused: boolean };
  /** Reports network events recorded for a socket selected with WSPEventSelect. */
  readonly onNetworkEvents: (s: number, events: number, errors: Partial<Record<W.NetworkEventName, number>>) => void;
  /** The session's fault rules (server/src/faults/rules.ts). */
  readonly faults: FaultHook;
  /**
   * A call that is not overlapped begins to wait (for a connection, data, buffer room or the end
   * of a connect): the session tells the client (spiwire.waiting), whose thread then waits
   * alertably, as in Windows' Winsock. Called while the call runs, or it means nothing.
   */
  readonly callWaits: () => void;
  /**
   * The same for a wait that begins after the call has returned its promise (a connect that
   * first waits for the socket's setup): taken while the call runs, called when the wait begins.
   */
  readonly captureCall: () => () => void;
  /** The addresses the daemon's sockets hold, daemon-wide: who may share a port (PortReservations). */
  readonly ports: PortReservations;
}

/** SocketOptions.flags bits. */
const DEBUG = 1;
const REUSE_ADDR = 2;
const EXCLUSIVE_ADDR = 4;
const V6_ONLY = 8;
const DONT_FRAGMENT = 16;
const MULTICAST_LOOP = 32;
/** Windows' default IP_MULTICAST_TTL: multicast stays on the local link. */
const DEFAULT_MULTICAST_TTL = 1;

/** The options WSPSetSockOpt and WSPIoctl set; each transport applies those it can to the real socket. */
export class SocketOptions {
  /** FIONBIO (and WSPEventSelect, which makes the socket nonblocking). */
  nonBlocking = false;
  sndBuf: number;
  rcvBuf: number;
  /** Set explicitly with WSPSetSockOpt: then the kernel buffer is sized too (not for defaults). */
  sndBufSet = false;
  rcvBufSet = false;
  broadcast = false;
  keepAlive = false;
  oobInline = false;
  noDelay = false;
  dontRoute = false;
  linger = { onoff: 0, seconds: 0 };
  /** Keep-alive timing (0: the system's default); seconds, as TCP_KEEPIDLE / TCP_KEEPINTVL take them. */
  keepIdle = 0;
  keepInterval = 0;
  keepCount = 0;
  /** TCP_MAXRT in seconds (0: the system's default, -1: no limit). */
  maxRetransmitSeconds = 0;
  /** SO_SPIWIRE_SEND_POLICY: the reference page's send policy (0) or Windows' observed one (1). */
  sendPolicy: number;
  /** SIO_UDP_CONNRESET: a UDP socket reports an ICMP port unreachable on its next receive (Windows' default). */
  udpConnReset = true;
  /** SIO_UDP_NETRESET: a UDP socket reports an ICMP time exceeded on its next receive (Windows' default). */
  udpNetReset = true;
  /** SIO_ENABLE_CIRCULAR_QUEUEING: a full UDP receive buffer drops its oldest datagrams for a new one. */
  circularQueueing = false;
  /** SO_SNDTIMEO and SO_RCVTIMEO, in milliseconds (0: no timeout); see EmulatedSocket.blockingTimeout. */
  sndTimeo = 0;
  rcvTimeo = 0;
  /** IP_TTL, IP_TOS and IP_MULTICAST_TTL, a byte each in one small integer (see ttl, tos, multicastTtl). */
  private ipBytes = W.DEFAULT_TTL | (DEFAULT_MULTICAST_TTL << 16);

  /** IP_TTL (AF_INET) or IPV6_UNICAST_HOPS (AF_INET6): Windows' 128 unless set; the real socket gets it. */
  get ttl(): number {
    return this.ipByte(0);
  }
  set ttl(v: number) {
    this.setIpByte(0, v);
  }
  /** IP_TOS (AF_INET): the type-of-service byte. */
  get tos(): number {
    return this.ipByte(8);
  }
  set tos(v: number) {
    this.setIpByte(8, v);
  }
  /** IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS (UDP): 1 unless set, as on Windows. */
  get multicastTtl(): number {
    return this.ipByte(16);
  }
  set multicastTtl(v: number) {
    this.setIpByte(16, v);
  }

  private ipByte(shift: number): number {
    return (this.ipBytes >> shift) & 0xff;
  }
  private setIpByte(shift: number, v: number): void {
    this.ipBytes = (this.ipBytes & ~(0xff << shift)) | ((v & 0xff) << shift);
  }
  /**
   * The rarely set BOOL options, one bit each in a small integer (every field costs each of
   * thousands of idle sockets 8 bytes): see the accessors below.
   */
  private flags = V6_ONLY | MULTICAST_LOOP;

  /** SO_DEBUG: kept and read back; it changes nothing (Windows' providers ignore it too). */
  get debug(): boolean {
    return this.flag(DEBUG);
  }
  set debug(on: boolean) {
    this.setFlag(DEBUG, on);
  }

  /** SO_REUSEADDR and SO_EXCLUSIVEADDRUSE (never both): how a bind shares its port (PortReservations). */
  get reuseAddr(): boolean {
    return this.flag(REUSE_ADDR);
  }
  set reuseAddr(on: boolean) {
    this.setFlag(REUSE_ADDR, on);
  }
  get exclusiveAddr(): boolean {
    return this.flag(EXCLUSIVE_ADDR);
  }
  set exclusiveAddr(on: boolean) {
    this.setFlag(EXCLUSIVE_ADDR, on);
  }

  /** IPV6_V6ONLY, on by default as on Windows; off, an AF_INET6 socket also takes IPv4 (mapped). */
  get v6Only(): boolean {
    return this.flag(V6_ONLY);
  }
  set v6Only(on: boolean) {
    this.setFlag(V6_ONLY, on);
  }

  /** IP_DONTFRAGMENT / IPV6_DONTFRAG: Windows sets it on TCP sockets (EmulatedSocket's constructor), not on UDP ones. */
  get dontFragment(): boolean {
    return this.flag(DONT_FRAGMENT);
  }
  set dontFragment(on: boolean) {
    this.setFlag(DONT_FRAGMENT, on);
  }

  /** IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP (UDP): multicast datagrams also reach members on this host; on by default. */
  get multicastLoop(): boolean {
    return this.flag(MULTICAST_LOOP);
  }
  set multicastLoop(on: boolean) {
    this.setFlag(MULTICAST_LOOP, on);
  }

  private flag(bit: number): boolean {
    return (this.flags & bit) !== 0;
  }
  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  constructor(defaults: SocketContext['defaults']) {
    this.sndBuf = defaults.sndBuf;
    this.rcvBuf = defaults.rcvBuf;
    this.sendPolicy = defaults.sendPolicy;
  }

  /** A copy, for a connection accepted on a listening socket (which inherits its options). */
  copy(): SocketOptions {
    const o = Object.assign(new SocketOptions(this), this);
    o.linger = { ...this.linger };
    return o;
  }

  get windowsPolicy(): boolean {
    return this.sendPolicy === W.SPIWIRE_SEND_POLICY_WINDOWS;
  }
}

/** The SPI function a send was made with (fault rules tell them apart). */
export type SendFunction = 'WSPSend' | 'WSPSendTo';

/** Takes the next piece of a streamed send; false when the send no longer takes any. */
export type PieceSink = (piece: Uint8Array) => boolean;

/** How a streamed send started: its result, where the pieces still to come go, and how to fail it. */
export interface StreamedStart<R> {
  result: R;
  /** null: the send takes no more pieces (done with what it had, or failed). */
  pieces: PieceSink | null;
  cancel: ((errno: number) => void) | null;
  /** The send goes on taking pieces after its result (a Windows-policy background send). */
  background?: boolean;
}

/** A wait for something to happen on a socket; settled by the event, by close or by shutdown. */
interface Waiter {
  /** Tries to finish the wait; returns true when it did. */
  poll(): boolean;
  /** Ends the wait with errno; false when it had already ended. */
  abort(errno: number): boolean;
  /** An overlapped receive waiting for data, rather than a blocked call. */
  readonly overlapped: boolean;
}

export abstract class EmulatedSocket<S extends string = string> {
  readonly handle: number;
  readonly owner: string;
  readonly af: number;
  readonly type: number;
  readonly protocol: number;
  /** Created with WSA_FLAG_OVERLAPPED. */
  readonly overlapped: boolean;
  protected readonly quota: SessionQuota;
  /** See SocketContext.received. */
  protected readonly received: SessionReceived;
  opts: SocketOptions;
  /** WSPShutdown(SD_RECEIVE): receives fail with WSAESHUTDOWN (and, on TCP, arriving data resets). */
  recvShut = false;
  /** The error SO_ERROR returns (see socketError). */
  pendingError = 0;
  /** The name fault rules match on (spiwire.setSocketTag); null: none. */
  tag: string | null = null;
  /**
   * Overlapped datagram sends of the frame being handled that the session has not put in its
   * tables (they complete with the frame's batch): they count against the per-socket limit too.
   */
  opsInFrame = 0;
  /** The session's fault rules: a call asks them only while faults.armed. */
  protected readonly faults: FaultHook;
  /** Results held back by a delay fault, each delivered at once if the socket closes first. */
  private late: Set<() => void> | null = null;
  /**
   * Completions a reorder fault holds, by rule: delivered together, shuffled. Keyed by the rule's
   * generator, which is the rule's own: an id is not (the session's rules and the operator's have
   * ids of their own, and a removed rule's id may come back on a new one).
   */
  private reorderBatches: Map<AppliedFault['random'], Array<() => void>> | null = null;

  /** Blocked calls and overlapped receives waiting on this socket (made on the first wait). */
  private waiters: Set<Waiter> | null = null;
  /** The WSPSelect calls waiting on this socket (made on the first). */
  private selectWatch: SelectWatch | null = null;
  private childLog: Logger | null = null;
  /**
   * WSPEventSelect: the events selected, and those recorded and not re-enabled since. The second
   * outlives reselections: as on Windows, selecting the same events again (or 0, then them again)
   * records nothing new.
   */
  private selectedEvents = 0;
  private recordedEvents = 0;
  private readonly reportEvents: SocketContext['onNetworkEvents'];
  /** See SocketContext.callWaits and captureCall. */
  protected readonly callWaits: SocketContext['callWaits'];
  protected readonly captureCall: SocketContext['captureCall'];
  /** See SocketContext.maxRecvBytes. */
  protected readonly maxRecvBytes: number;

  /** The session's logger: state moves are traced there with the handle (no child logger per socket). */
  protected readonly sessionLog: Logger;

  /**
   * The socket's life (socket-state.ts): each transport's own table of states; every move goes
   * through state.move(), which refuses what the table does not allow, and runs entered().
   */
  protected readonly state: SocketStateMachine<S>;

  constructor(id: SocketIdentity, ctx: SocketContext, moves: MoveTable<S>, initial: S) {
    this.sessionLog = ctx.log;
    this.handle = id.handle;
    this.owner = ctx.owner;
    this.af = id.af;
    this.type = id.type;
    this.protocol = id.protocol;
    this.overlapped = id.overlapped;
    this.opts = new SocketOptions(ctx.defaults);
    if (id.type === W.SOCK_STREAM) this.opts.dontFragment = true;
    this.quota = ctx.quota;
    this.received = ctx.received;
    this.reportEvents = ctx.onNetworkEvents;
    this.callWaits = ctx.callWaits;
    this.captureCall = ctx.captureCall;
    this.maxRecvBytes = ctx.maxRecvBytes;
    this.faults = ctx.faults;
    this.state = new SocketStateMachine(moves, initial, this.sessionLog, this);
  }

  /** Entry actions: what happens on arriving in a state, whoever made the move (the state machine runs them). */
  abstract entered(to: S, from: S): void;

  /** This socket's logger (the session's, with its handle), made when first used: most sockets never log. */
  get log(): Logger {
    return (this.childLog ??= this.sessionLog.child({ s: this.handle }));
  }

  /** Bytes of sends the transport has taken since the socket was made (match.afterBytes). */
  abstract get bytesTaken(): number;

  /** Bytes that arrived from the network since the socket was made (for metrics and inspection). */
  abstract get bytesReceived(): number;

  /** Bytes of sends accepted and not yet in the kernel, or still waiting to be accepted (inspection). */
  abstract get queuedSendBytes(): number;

  // ---- delay faults ----

  /**
   * Holds fn back for ms; it runs at once instead when the socket closes first (flushLate). The
   * timer does not keep the process alive: a daemon that stops has closed the socket already.
   */
  private runLate(ms: number, fn: () => void): void {
    const late = (this.late ??= new Set());
    const run = (): void => {
      if (!late.delete(run)) return;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(run, ms);
    timer.unref();
    late.add(run);
  }

  /** Delivers at once every result a delay fault still holds (the socket is closing). */
  protected flushLate(): void {
    if (!this.late) return;
    for (const run of [...this.late]) run();
  }

  /** A blocking call's result, returned ms later (a delay fault). */
  protected delayedResult<R>(result: R | Promise<R>, ms: number): Promise<R> {
    return Promise.resolve(result).then((r) => new Promise<R>((resolve) => this.runLate(ms, () => resolve(r))));
  }

  /**
   * An overlapped call under a delay fault: it starts as usual, and its successful completion is
   * delivered ms after the transport consumed it; a failure or a cancellation is reported at once.
   * A call that completed at once therefore answers WSA_IO_PENDING. A cancellation while the
   * completion is held back (close, SIO_FLUSH, thread exit) delivers it at once: the bytes were
   * already taken.
   */
  protected delayedCompletion<R extends { errno: number }>(ms: number, done: Completion, start: (done: Completion) => Started<R>): Started<R>;
  protected delayedCompletion<R extends { errno: number }>(ms: number, done: Completion, start: (done: Completion) => Promise<Started<R>>): Promise<Started<R>>;
  protected delayedCompletion<R extends { errno: number }>(ms: number, done: Completion, start: (done: Completion) => Started<R> | Promise<Started<R>>): Started<R> | Promise<Started<R>> {
    return this.heldCompletion((deliver) => this.runLate(ms, deliver), done, start);
  }

  /**
   * An overlapped call under a reorder fault: held as a delayed one is, its successful completion
   * joins the rule's batch on this socket, which is delivered windowMs after its first member, in
   * an order drawn from the rule's generator.
   */
  protected reorderedCompletion<R extends { errno: number }>(fault: AppliedFault, windowMs: number, done: Completion, start: (done: Completion) => Started<R>): Started<R>;
  protected reorderedCompletion<R extends { errno: number }>(fault: AppliedFault, windowMs: number, done: Completion, start: (done: Completion) => Promise<Started<R>>): Promise<Started<R>>;
  protected reorderedCompletion<R extends { errno: number }>(fault: AppliedFault, windowMs: number, done: Completion, start: (done: Completion) => Started<R> | Promise<Started<R>>): Started<R> | Promise<Started<R>> {
    return this.heldCompletion((deliver) => this.joinReorderBatch(fault, windowMs, deliver), done, start);
  }

  private joinReorderBatch(fault: AppliedFault, windowMs: number, deliver: () => void): void {
    const batches = (this.reorderBatches ??= new Map());
    let batch = batches.get(fault.random);
    if (!batch) {
      const members: Array<() => void> = [];
      batch = members;
      batches.set(fault.random, members);
      this.runLate(windowMs, () => {
        batches.delete(fault.random);
        // A member delivered early (cancelled while held) does nothing when its turn comes.
        for (const d of fault.random.shuffle(members)) d();
      });
    }
    batch.push(deliver);
  }

  /**
   * An overlapped send under a break fault: its bytes went, and its completion waits for the
   * connection to break (until), then reports code. Held as a delayed one is: a thread exit
   * delivers it at once, with success.
   */
  protected completionHeldUntil<R extends { errno: number }>(until: Promise<void>, code: number, done: Completion, start: (done: Completion) => Started<R>): Started<R> {
    // (A synchronous start settles synchronously.)
    return this.heldCompletion((deliver) => void until.then(() => deliver(code)), done, start) as Started<R>;
  }

  /**
   * Starts an overlapped call whose successful completion hold() keeps back (see delayedCompletion).
   * hold's deliver completes it with success, or with the code it is given.
   */
  private heldCompletion<R extends { errno: number }>(hold: (deliver: (code?: number) => void) => void, done: Completion, start: (done: Completion) => Started<R> | Promise<Started<R>>): Started<R> | Promise<Started<R>> {
    let held: (() => void) | null = null;
    const late = completion((errno: number, bytes: number, out?: CompletionOut) => {
      if (errno !== 0) return done.complete(errno, bytes, out);
      let delivered = false;
      const deliver = (code = 0): void => {
        if (delivered) return;
        delivered = true;
        held = null;
        done.complete(code, bytes, out);
      };
      held = deliver;
      hold(deliver);
    });
    const settle = (st: Started<R>): Started<R> => {
      // A held completion is a success already: cancelling delivers it, and aborts nothing.
      const deliverHeld = (): false => {
        held?.();
        return false;
      };
      if (!st.pending) return st.result.errno === 0 ? { pending: true, cancel: cancellable(deliverHeld) } : st;
      const cancel = st.cancel;
      return {
        pending: true,
        cancel: cancellable((errno) => {
          if (held) return deliverHeld();
          // A send whose bytes were all handed over completes as it is cancelled, with success:
          // its completion, held now, is delivered at once like one held already.
          const aborted = cancel?.cancel(errno) ?? false;
          return aborted || deliverHeld();
        }),
      };
    };
    const st = start(late);
    return st instanceof Promise ? st.then(settle) : settle(st);
  }

  /** An error fault on WSPIoctl (the control code is not carried out): its code, or 0 for none. */
  ioctlFault(overlapped: boolean): number {
    if (!this.faults.armed) return 0;
    const fault = this.faults.decide(this, { fn: 'WSPIoctl', mode: overlapped ? 'overlapped' : this.opts.nonBlocking ? 'nonblocking' : 'blocking' });
    return fault?.action.type === 'error' ? fault.action.code : 0;
  }

  /**
   * What a call still waiting for its turn when the socket closed answers once its turn comes (a
   * connect behind a bind, a bind behind the host's answer): the close's code for blocked calls,
   * WSAEINTR after WSPCloseSocket, WSAENETDOWN when the daemon shuts down.
   */
  protected interruptedWith: number = W.WSAEINTR;

  /** Closed with WSPCloseSocket (or by the end of the session): the handle is gone. */
  get closed(): boolean {
    return this.state.current === 'closed';
  }

  /** The state's name, for logs and inspection. */
  get stateName(): string {
    return this.state.current;
  }

  // ---- WSPEventSelect ----

  /**
   * WSPEventSelect: selects network events (0 cancels) and, as on Windows, makes the socket
   * nonblocking. Each event is recorded once, then again only after its re-enabling call
   * (FD_READ / FD_OOB after a receive, FD_WRITE after a send failed with WSAEWOULDBLOCK,
   * FD_ACCEPT after an accept) or when its condition arises anew (new data, a new urgent byte,
   * a new connection); FD_CONNECT and FD_CLOSE are recorded once per connection.
   */
  eventSelect(events: number): void {
    this.selectedEvents = events;
    // Wine's tests show Windows forgetting an event left out of a new nonzero selection (it is
    // recorded again when selected later), while a selection of 0 forgets nothing.
    if (events !== 0) this.recordedEvents &= events;
    this.opts.nonBlocking = true;
    this.selectionChanged();
    this.checkEvents();
  }

  /** The events selected with WSPEventSelect (0: none). */
  get selection(): number {
    return this.selectedEvents;
  }

  /** Runs when the selection changes (TCP watches for urgent data while FD_OOB is selected). */
  protected selectionChanged(): void {}

  /** Re-enables events after the call that re-enables them, and records them at once if due. */
  protected rearm(events: number): void {
    this.reenable(events);
    this.checkEvents();
  }

  /** Lets events be recorded again: their condition arose anew (the caller wakes the socket). */
  protected reenable(events: number): void {
    this.recordedEvents &= ~events;
  }

  /** Records and reports the selected events, not yet recorded, whose condition holds now. */
  protected checkEvents(): void {
    // Runs on every change: only the armed events are evaluated (FD_OOB may cost a system call).
    const armed = this.selectedEvents & ~this.recordedEvents;
    if (armed === 0 || this.closed) return;
    let events = 0;
    const errors: Partial<Record<W.NetworkEventName, number>> = {};
    for (const [bit, error] of this.readyEvents(armed)) {
      this.recordedEvents |= bit;
      events |= bit;
      const name = FD_NAMES[bit];
      if (error && name) errors[name] = error;
    }
    if (events) this.reportEvents(this.handle, events, errors);
  }

  /** Of the events in wanted, those whose condition holds now, each with its error code (0 for none). */
  protected abstract readyEvents(wanted: number): Array<[number, number]>;

  protected stopEvents(): void {
    this.selectedEvents = 0;
    this.selectionChanged();
  }

  /** SIOCATMARK: true unless urgent data waits to be read with MSG_OOB. */
  atMark(): boolean {
    return this.readyEvents(W.FD_OOB).length === 0;
  }

  /** The session's output went below its low water mark: pull data from the network again. */
  inputResumed(): void {}

  // ---- waits ----

  /**
   * How long a blocking send or receive may wait (SO_SNDTIMEO, SO_RCVTIMEO), in ms; 0: for ever.
   * As on Windows, the options take effect only on a socket made with WSA_FLAG_OVERLAPPED (the
   * SOL_SOCKET options page; Wine applies them so too), and never on overlapped calls.
   */
  blockingTimeout(kind: 'send' | 'recv'): number {
    if (!this.overlapped) return 0;
    return Math.min(MAX_TIMER_MS, kind === 'send' ? this.opts.sndTimeo : this.opts.rcvTimeo);
  }

  /**
   * Waits until check() returns a result (or undefined to keep waiting). The check runs now and
   * whenever wake() is called. aborted(errno) is the result when close (WSAEINTR) or daemon
   * shutdown (WSAENETDOWN) ends the wait, or when timeoutMs (if not 0) passes first (WSAETIMEDOUT).
   */
  protected waitFor<R>(check: () => R | undefined, aborted: (errno: number) => R, announce: () => void = this.callWaits, timeoutMs = 0): Promise<R> {
    const first = check();
    if (first !== undefined) return Promise.resolve(first);
    announce();
    return new Promise<R>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const settle = (r: R): void => {
        if (timer) clearTimeout(timer);
        resolve(r);
      };
      const abort = this.addWaiter(check, settle, (errno) => settle(aborted(errno)), false);
      if (timeoutMs > 0) timer = setTimeout(() => abort(W.WSAETIMEDOUT), timeoutMs);
    });
  }

  /**
   * Registers a wait that check() settles later; returns a function that aborts it. Waiters are
   * polled in the order they were added, so receives are served first-come first-served.
   */
  private addWaiter<R>(check: () => R | undefined, settle: (r: R) => void, abort: (errno: number) => void, overlapped: boolean): (errno: number) => boolean {
    let done = false;
    const w: Waiter = {
      overlapped,
      poll: () => {
        if (done) return true;
        const r = check();
        if (r === undefined) return false;
        done = true;
        this.waiters?.delete(w);
        settle(r);
        return true;
      },
      abort: (errno) => {
        if (done) return false;
        done = true;
        this.waiters?.delete(w);
        abort(errno);
        return true;
      },
    };
    (this.waiters ??= new Set()).add(w);
    return w.abort;
  }

  /**
   * Starts an overlapped receive: data already waiting completes it at once; otherwise it waits
   * (whatever FIONBIO says) and done() reports the completion.
   */
  protected overlappedRecv(precheck: RecvResult | null, check: () => RecvResult | undefined, done: Completion): Started<RecvResult> {
    if (precheck) return { pending: false, result: precheck };
    const now = check();
    if (now) {
      // Data was already waiting: the call succeeds at once and still reports a completion. So
      // does a datagram truncated to the buffers (WSAEMSGSIZE): on Windows its status is a
      // warning (STATUS_BUFFER_OVERFLOW), which still completes the OVERLAPPED, sets the event
      // and queues the routine, as it does when the receive was pending.
      if (now.errno === 0 || now.errno === W.WSAEMSGSIZE) done.complete(now.errno, now.bytes, { flags: now.flags });
      return { pending: false, result: now };
    }
    const report = (r: RecvResult): void => {
      const out: { data?: Uint8Array; flags?: number; from?: SockAddr } = { flags: r.flags };
      if (r.data) out.data = r.data;
      if (r.from) out.from = r.from;
      done.complete(r.errno, r.bytes, out);
    };
    const cancel = this.addWaiter(check, report, (errno) => report(recvFailed(errno)), true);
    return { pending: true, cancel: cancellable(cancel) };
  }

  /** A transport's own reasons to fail a receive at once (flags, state), or null. */
  protected abstract recvPrecheck(flags: number): RecvResult | null;

  /** An error fault on a receive: its code, or 0 (the transport carries out what it means). */
  protected abstract recvFault(wantFrom: boolean, mode: CallMode): number;

  /** Why a receive fails before it starts: the transport's checks, then an error fault; null: it goes ahead. */
  protected recvRefusal(flags: number, wantFrom: boolean, mode: CallMode): RecvResult | null {
    const bad = this.recvPrecheck(flags);
    if (bad || !this.faults.armed) return bad;
    const code = this.recvFault(wantFrom, mode);
    return code ? recvFailed(code) : null;
  }

  // ---- WSPSelect ----

  /**
   * Of the conditions in wanted (SELECT_READ, SELECT_WRITE, SELECT_EXCEPT), those that hold now,
   * as Windows' select() reports them (spi/select.ts).
   */
  abstract selectReady(wanted: number): number;

  /**
   * A WSPSelect waits on this socket for the conditions in wanted: changed() runs when one of them
   * holds after a change of the socket, aborted(errno) once if the socket closes (WSAEINTR) or the
   * daemon stops (WSAENETDOWN) first. Returns the function that ends the watch.
   */
  watchSelect(wanted: number, changed: () => void, aborted: (errno: number) => void): () => void {
    const watch = (this.selectWatch ??= this.startSelectWatch());
    const w: SelectWatcher = { wanted, changed, aborted };
    watch.watchers.add(w);
    for (const bit of SELECT_BITS) if (wanted & bit) watch.counts[bit] = (watch.counts[bit] ?? 0) + 1;
    return () => {
      if (!watch.watchers.delete(w)) return;
      for (const bit of SELECT_BITS) if (wanted & bit) watch.counts[bit]!--;
      if (watch.watchers.size === 0) watch.stop();
    };
  }

  /**
   * The socket's select watch: one waiter, however many selects wait here. A change of the socket
   * asks it once about the conditions some select wants, and wakes only the selects it can end:
   * a busy socket that thousands of selects watch for something else costs one question per
   * change, not one per select.
   */
  private startSelectWatch(): SelectWatch {
    const watchers = new Set<SelectWatcher>();
    const counts: Record<number, number> = {};
    let stopped = false;
    const end = this.addWaiter<never>(
      () => {
        if (stopped) return undefined;
        let wanted = 0;
        for (const bit of SELECT_BITS) if (counts[bit]) wanted |= bit;
        const ready = wanted === 0 ? 0 : this.selectReady(wanted);
        if (ready !== 0) for (const w of [...watchers]) if (w.wanted & ready) w.changed();
        return undefined;
      },
      () => undefined,
      (errno) => {
        if (stopped) return;
        stopped = true;
        if (this.selectWatch === watch) this.selectWatch = null;
        for (const w of [...watchers]) w.aborted(errno);
      },
      false,
    );
    const watch: SelectWatch = {
      watchers,
      counts,
      stop: () => {
        stopped = true;
        if (this.selectWatch === watch) this.selectWatch = null;
        end(0);
      },
    };
    return watch;
  }

  /** Re-checks every blocked call; called whenever the socket's state changes. */
  protected wake(): void {
    this.pollWaiters();
    this.checkEvents();
  }

  /** Whether a call waits on this socket (a receive, on a connected TCP socket). */
  protected get hasWaiters(): boolean {
    return this.waiters !== null && this.waiters.size > 0;
  }

  /** Re-checks every blocked call, and records no event. */
  protected pollWaiters(): void {
    if (this.hasWaiters) for (const w of [...this.waiters!]) w.poll();
  }

  /**
   * Answers every blocked call with errno (WSAEINTR on close, WSAENETDOWN on daemon shutdown);
   * waiting overlapped receives complete with overlappedErrno.
   */
  protected abortWaits(errno: number, overlappedErrno: number): void {
    if (this.waiters !== null) for (const w of [...this.waiters]) w.abort(w.overlapped ? overlappedErrno : errno);
  }

  /**
   * SO_ERROR. Reading it does not clear it, as on Windows (Wine's test_select reads a refused
   * connect's WSAECONNREFUSED twice); a connection that succeeds does.
   */
  get socketError(): number {
    return this.pendingError;
  }

  // The SPI operations; each transport implements those that have a meaning for it. Results are
  // domain results: 0 or a WSA code, or the objects of results.ts.
  abstract bind(name: SockAddr): Promise<number>;
  abstract listen(backlog: number): Promise<number>;
  abstract accept(): Promise<AcceptResult>;
  abstract connect(name: SockAddr): Promise<number>;
  /** A send that is not overlapped; forceBlocking ignores FIONBIO (an overlapped call run as a blocking one). */
  abstract send(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, forceBlocking?: boolean, fn?: SendFunction): SendResult | Promise<SendResult>;
  abstract recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking?: boolean): Promise<RecvResult>;
  /** An overlapped send: completes at once, fails at once, or is pending (FIFO behind older sends); a Later when its outcome comes with its socket's batch (UDP). */
  abstract sendOverlapped(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, done: Completion, fn?: SendFunction): Answer<Started<SendResult>>;
  abstract recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: Completion): Started<RecvResult>;
  /**
   * A send larger than one message, whose bytes come in pieces (proto/README.md section 9): the
   * call's result, and the handle that takes the pieces still to come (null: it takes none).
   * Only streams have sends that large; a datagram cannot be (WSAEMSGSIZE).
   */
  sendStreamed(_buffers: readonly Uint8Array[], _total: number, _flags: number, _forceBlocking: boolean, _progress: (taken: number) => void): StreamedStart<SendResult | Promise<SendResult>> {
    return { result: sendFailed(W.WSAEMSGSIZE), pieces: null, cancel: null };
  }

  sendStreamedOverlapped(_buffers: readonly Uint8Array[], _total: number, _flags: number, _done: Completion, _progress: (taken: number) => void): StreamedStart<Started<SendResult>> {
    return { result: { pending: false, result: sendFailed(W.WSAEMSGSIZE) }, pieces: null, cancel: null };
  }
  /** SIO_FLUSH: discards queued sends not yet taken into the transport buffer. Returns how many. */
  abstract flushSends(): number;
  abstract shutdown(how: number): number;
  /**
   * Closes the socket. Blocked calls get abortCode (WSAEINTR by default); pending overlapped
   * operations complete with overlappedCode (WSA_OPERATION_ABORTED by default). Idempotent.
   */
  abstract close(abortCode?: number, overlappedCode?: number): void;
  abstract localName(): SockAddr | null;
  abstract peerName(): SockAddr | null;
  /**
   * Settles once the binds (and a datagram socket's connects) issued so far are done, or null when
   * none is under way: they are synchronous on Windows, and take a moment here. WSPGetSockName and
   * WSPGetPeerName wait for it. (A stream socket's connect has states of its own, WSAEALREADY...)
   */
  namesSettled(): Promise<unknown> | null {
    return null;
  }
  /** Bytes that a recv would return now (FIONREAD). */
  abstract readable(): number;
  /** Applies SO_SNDBUF / SO_RCVBUF changes to the transport. */
  abstract applyBuffers(): void;
  /** Applies SO_KEEPALIVE, SO_OOBINLINE, SO_LINGER, SO_DONTROUTE and TCP_NODELAY to the real socket where it can. */
  abstract applyOptions(): void;
  /** The largest datagram (SO_MAX_MSG_SIZE), or null when the option has no meaning (streams). */
  abstract maxMessageSize(): number | null;

  /** SO_ACCEPTCONN: the socket listens. */
  acceptsConnections(): boolean {
    return false;
  }

  /** IP_MULTICAST_IF / IPV6_MULTICAST_IF as set (a DWORD), or null where the option has no meaning (TCP). */
  multicastInterface(): number | null {
    return null;
  }

  /** Sets IP_MULTICAST_IF / IPV6_MULTICAST_IF: 0, or the WSA code. */
  setMulticastInterface(_value: number): number {
    return W.WSAEINVAL;
  }

  /** SO_CONNECT_TIME: whole seconds since the connection was made, or null when there is none. */
  connectedSeconds(): number | null {
    return null;
  }

  /** The socket has (or is taking) a local address: IPV6_V6ONLY can no longer change. */
  abstract addressFixed(): boolean;

  /** What this socket holds once bound to name on port, with its options as they are now. */
  protected reservationFor(name: SockAddr, port: number): Reservation {
    const o = this.opts;
    // The scope as an interface index, whether given as scopeId, "%4" or "%eth0".
    const pct = name.address.indexOf('%');
    const address = pct < 0 ? name.address : name.address.slice(0, pct);
    const scope = name.scopeId || (pct < 0 ? 0 : scopeIdOf(name.address.slice(pct + 1)));
    return { proto: this.type === W.SOCK_STREAM ? 'tcp' : 'udp', session: this.owner, family: name.family, address, scope, port, reuse: o.reuseAddr, exclusive: o.exclusiveAddr, dualStack: this.dualStack };
  }

  /** An AF_INET6 socket with IPV6_V6ONLY off: it also binds, listens and connects for IPv4. */
  get dualStack(): boolean {
    return this.af === W.AF_INET6 && !this.opts.v6Only;
  }

  /** node's ipv6Only for the real socket. */
  protected get ipv6Only(): boolean {
    return this.af === W.AF_INET6 && this.opts.v6Only;
  }
}
