/**
 * What every emulated socket shares: its identity, its owner session, the socket options both
 * transports understand, blocking waits that close or daemon shutdown can interrupt, and an
 * explicit state machine that refuses illegal moves.
 */
import type { Logger } from 'pino';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import { fail, type Outcome } from '../outcome.js';
import type { SessionQuota } from '../held-bytes.js';

const FD_NAMES: Record<number, string> = {
  [W.FD_READ]: 'FD_READ',
  [W.FD_WRITE]: 'FD_WRITE',
  [W.FD_OOB]: 'FD_OOB',
  [W.FD_ACCEPT]: 'FD_ACCEPT',
  [W.FD_CONNECT]: 'FD_CONNECT',
  [W.FD_CLOSE]: 'FD_CLOSE',
};

export type SocketState = 'open' | 'bound' | 'listening' | 'connecting' | 'connected' | 'closed';

/** Legal state moves; anything else is a bug, logged and refused. */
const MOVES: Record<SocketState, readonly SocketState[]> = {
  open: ['bound', 'connecting', 'connected', 'closed'],
  bound: ['listening', 'connecting', 'connected', 'closed'],
  listening: ['closed'],
  connecting: ['connected', 'open', 'bound', 'closed'],
  connected: ['closed'],
  closed: [],
};

export interface SocketContext {
  readonly handle: number;
  readonly owner: string;
  readonly af: number;
  readonly type: number;
  readonly protocol: number;
  readonly overlapped: boolean;
  readonly log: Logger;
  readonly defaults: { sndBuf: number; rcvBuf: number; sendPolicy: number };
  /** The session's memory quota for bytes held on behalf of its sends. */
  readonly quota: SessionQuota;
  /** The session's output: while paused, sockets pull no more data from the network. */
  readonly flow: { readonly paused: boolean };
  /** Reports network events recorded for a socket selected with WSPEventSelect. */
  readonly onNetworkEvents: (s: number, events: number, errors: Record<string, number>) => void;
}

/** A wait for something to happen on a socket; settled by the event, by close or by shutdown. */
export interface Waiter {
  /** Tries to finish the wait; returns true when it did. */
  poll(): boolean;
  abort(errno: number): void;
  /** An overlapped receive waiting for data, rather than a blocked call. */
  readonly overlapped: boolean;
}

/** Completion of an overlapped operation: called exactly once unless the start failed at once. */
export type CompleteFn = (errno: number, bytes: number, out?: { data?: Uint8Array; flags?: number; from?: SockAddr }) => void;

/**
 * How an overlapped operation started: outcome is the call's immediate answer (success, failure
 * or WSA_IO_PENDING). When it is pending, cancel completes it early with the given code.
 */
export interface OverlappedStart {
  outcome: Outcome;
  cancel?: (errno: number) => void;
}

export abstract class EmulatedSocket {
  readonly handle: number;
  readonly owner: string;
  readonly af: number;
  readonly type: number;
  readonly protocol: number;
  /** Created with WSA_FLAG_OVERLAPPED. */
  readonly overlapped: boolean;
  readonly log: Logger;
  protected readonly quota: SessionQuota;

  state: SocketState = 'open';
  nonBlocking = false;
  sndBuf: number;
  rcvBuf: number;
  broadcast = false;
  /** Set explicitly with WSPSetSockOpt: then the kernel buffer is sized too (not for defaults). */
  sndBufSet = false;
  rcvBufSet = false;
  keepAlive = false;
  oobInline = false;
  noDelay = false;
  dontRoute = false;
  linger = { onoff: 0, seconds: 0 };
  /** Keep-alive timing (0: the system's default); seconds, as TCP_KEEPIDLE / TCP_KEEPINTVL take them. */
  keepIdle = 0;
  keepInterval = 0;
  keepCount = 0;
  /** TCP_MAXRT in seconds (0: the system's default): how long unacknowledged data may be retried. */
  maxRetransmitSeconds = 0;
  sendShut = false;
  recvShut = false;
  /** SO_SPIWIRE_SEND_POLICY: the reference page's send policy (0) or Windows' observed one (1). */
  sendPolicy: number;
  /** The error SO_ERROR returns (and clears). */
  pendingError = 0;

  private waiters = new Set<Waiter>();
  /** WSPEventSelect: the events selected, and those that may be recorded now (re-enabled). */
  private selectedEvents = 0;
  private armedEvents = 0;
  private readonly reportEvents: SocketContext['onNetworkEvents'];

  constructor(ctx: SocketContext) {
    this.handle = ctx.handle;
    this.owner = ctx.owner;
    this.af = ctx.af;
    this.type = ctx.type;
    this.protocol = ctx.protocol;
    this.overlapped = ctx.overlapped;
    this.log = ctx.log;
    this.sndBuf = ctx.defaults.sndBuf;
    this.rcvBuf = ctx.defaults.rcvBuf;
    this.sendPolicy = ctx.defaults.sendPolicy;
    this.quota = ctx.quota;
    this.reportEvents = ctx.onNetworkEvents;
  }

  /**
   * WSPEventSelect: selects network events (0 cancels) and, as on Windows, makes the socket
   * nonblocking. Each event is recorded once, then again only after its re-enabling call:
   * FD_READ / FD_OOB after a receive, FD_WRITE after a send failed with WSAEWOULDBLOCK,
   * FD_ACCEPT after an accept; FD_CONNECT and FD_CLOSE are recorded once.
   */
  eventSelect(events: number): void {
    this.selectedEvents = events;
    this.armedEvents = events;
    this.nonBlocking = true;
    this.selectionChanged();
    this.checkEvents();
  }

  /** The events selected with WSPEventSelect (0: none). */
  protected get selection(): number {
    return this.selectedEvents;
  }

  /** Runs when the selection changes (TCP watches for urgent data while FD_OOB is selected). */
  protected selectionChanged(): void {}

  /** Re-enables events after the call that re-enables them, and records them at once if due. */
  protected rearm(events: number): void {
    this.armedEvents |= events & this.selectedEvents;
    this.checkEvents();
  }

  /** Records and reports the selected, armed events whose condition holds now. */
  protected checkEvents(): void {
    // Runs on every state change: only the armed events are evaluated (FD_OOB costs a system call).
    if (this.armedEvents === 0 || this.state === 'closed') return;
    let events = 0;
    const errors: Record<string, number> = {};
    for (const [bit, error] of this.readyEvents(this.armedEvents)) {
      this.armedEvents &= ~bit;
      events |= bit;
      if (error) errors[FD_NAMES[bit] ?? String(bit)] = error;
    }
    if (events) this.reportEvents(this.handle, events, errors);
  }

  /** Of the events in wanted, those whose condition holds now, each with its error code (0 for none). */
  protected abstract readyEvents(wanted: number): Array<[number, number]>;

  /** The session's output went below its low water mark: pull data from the network again. */
  inputResumed(): void {}

  /** SIOCATMARK: true unless urgent data waits to be read with MSG_OOB. */
  atMark(): boolean {
    return this.readyEvents(W.FD_OOB).length === 0;
  }

  protected stopEvents(): void {
    this.selectedEvents = 0;
    this.armedEvents = 0;
    this.selectionChanged();
  }

  get windowsPolicy(): boolean {
    return this.sendPolicy === W.SPIWIRE_SEND_POLICY_WINDOWS;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  protected moveTo(next: SocketState): boolean {
    if (this.state === next) return true;
    if (!MOVES[this.state].includes(next)) {
      this.log.error({ from: this.state, to: next }, 'illegal socket state move refused');
      return false;
    }
    this.log.trace(`state ${this.state} -> ${next}`);
    this.state = next;
    return true;
  }

  /**
   * Waits until check() returns an outcome (or undefined to keep waiting). The check runs now and
   * whenever wake() is called. Close answers WSAEINTR, daemon shutdown WSAENETDOWN.
   */
  protected waitFor(check: () => Outcome | undefined): Promise<Outcome> {
    const first = check();
    if (first) return Promise.resolve(first);
    return new Promise<Outcome>((resolve) => {
      this.addWaiter(check, resolve, false);
    });
  }

  /**
   * Registers a wait that check() settles later; returns a function that aborts it. Waiters are
   * polled in the order they were added, so receives are served first-come first-served.
   */
  protected addWaiter(check: () => Outcome | undefined, settle: (r: Outcome) => void, overlapped: boolean): (errno: number) => void {
    let done = false;
    const w: Waiter = {
      overlapped,
      poll: () => {
        if (done) return true;
        const r = check();
        if (!r) return false;
        done = true;
        this.waiters.delete(w);
        settle(r);
        return true;
      },
      abort: (errno) => {
        if (done) return;
        done = true;
        this.waiters.delete(w);
        settle(fail(errno));
      },
    };
    this.waiters.add(w);
    return w.abort;
  }

  /**
   * Starts an overlapped receive: data already waiting completes it at once; otherwise it waits
   * (whatever FIONBIO says) and done() reports the completion.
   */
  protected overlappedRecv(precheck: Outcome | null, check: () => Outcome | undefined, done: CompleteFn): OverlappedStart {
    if (precheck) return { outcome: precheck };
    const now = check();
    if (now) {
      // Data was already waiting: the call succeeds at once and still reports a completion.
      if (now.ret === 0) done(0, (now['data'] as Uint8Array | undefined)?.length ?? 0, { flags: (now['flags'] as number | undefined) ?? 0 });
      return { outcome: now };
    }
    const cancel = this.addWaiter(
      check,
      (r) => {
        const data = r['data'] as Uint8Array | undefined;
        const out: { data?: Uint8Array; flags?: number; from?: SockAddr } = {};
        if (data) out.data = data;
        if (typeof r['flags'] === 'number') out.flags = r['flags'];
        if (r['from']) out.from = r['from'] as SockAddr;
        done(r.errno, data?.length ?? 0, out);
      },
      true,
    );
    return { outcome: fail(W.WSA_IO_PENDING), cancel };
  }

  /** Re-checks every blocked call; called whenever the socket's state changes. */
  protected wake(): void {
    for (const w of [...this.waiters]) w.poll();
    this.checkEvents();
  }

  /**
   * Answers every blocked call with errno (WSAEINTR on close, WSAENETDOWN on daemon shutdown);
   * waiting overlapped receives complete with overlappedErrno.
   */
  abortWaits(errno: number, overlappedErrno: number = W.WSA_OPERATION_ABORTED): void {
    for (const w of [...this.waiters]) w.abort(w.overlapped ? overlappedErrno : errno);
  }

  /** Takes and clears SO_ERROR. */
  takePendingError(): number {
    const e = this.pendingError;
    this.pendingError = 0;
    return e;
  }

  // The SPI operations; each transport implements those that have a meaning for it.
  abstract bind(name: SockAddr): Promise<Outcome>;
  abstract listen(backlog: number): Promise<Outcome>;
  abstract accept(): Promise<Outcome>;
  abstract connect(name: SockAddr): Promise<Outcome>;
  /** A send that is not overlapped; forceBlocking ignores FIONBIO (an overlapped call run as a blocking one). */
  abstract send(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, forceBlocking?: boolean): Outcome | Promise<Outcome>;
  abstract recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking?: boolean): Promise<Outcome>;
  /** An overlapped send: completes at once, fails at once, or is pending (FIFO behind older sends). */
  abstract sendOverlapped(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, thread: number, done: CompleteFn): OverlappedStart | Promise<OverlappedStart>;
  abstract recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: CompleteFn): OverlappedStart;
  /** SIO_FLUSH: discards queued sends not yet taken into the transport buffer. Returns how many. */
  abstract flushSends(): number;
  abstract shutdown(how: number): Outcome;
  /**
   * Closes the socket. Blocked calls get abortCode (WSAEINTR by default); pending overlapped
   * operations complete with overlappedCode (WSA_OPERATION_ABORTED by default). Idempotent.
   */
  abstract close(abortCode?: number, overlappedCode?: number): void;
  abstract localName(): SockAddr | null;
  abstract peerName(): SockAddr | null;
  /** Bytes that a recv would return now (FIONREAD). */
  abstract readable(): number;
  /** Applies SO_SNDBUF / SO_RCVBUF changes to the transport. */
  abstract applyBuffers(): void;
  /** Applies SO_KEEPALIVE, SO_OOBINLINE, SO_LINGER, SO_DONTROUTE and TCP_NODELAY to the real socket where it can. */
  abstract applyOptions(): void;
  /** The largest datagram (SO_MAX_MSG_SIZE), or null when the option has no meaning (streams). */
  abstract maxMessageSize(): number | null;
}
