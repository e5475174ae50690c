/**
 * Threads, APC queues, events and alertable waits: the parts of a Windows process that overlapped
 * Winsock relies on, modelled inside one session. A completion routine is an APC: it runs only
 * while its thread is in an alertable wait (or at once, in the session's opt-in automatic mode).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import * as P from '@spiwire/proto';
import type { WSATHREADID } from './types.js';

/** The thread on whose behalf an SDK call runs (set by the thread's own methods). */
export const issuingThread = new AsyncLocalStorage<SpiThread>();
/**
 * The thread whose APCs run in a blocking call's wait: what they do, and what they start, runs
 * inside that blocking call on Windows, so a blocking call they make is not WSAEINPROGRESS.
 */
const blockingWaitApcs = new AsyncLocalStorage<SpiThread>();

interface Apc {
  run(): unknown;
  /** Completion routines of one socket never nest or overlap. */
  readonly socket: number | null;
}

/** What a completion routine is called with: one object per completion, not a closure and a record. */
export interface RoutineCall<O> {
  run: (dwError: number, cbTransferred: number, lpOverlapped: O, dwFlags: number) => unknown;
}

/** An operation's completion routine queued as an APC, with its arguments. */
class RoutineApc<O> implements Apc {
  constructor(
    private readonly routine: RoutineCall<O>,
    private readonly error: number,
    private readonly bytes: number,
    private readonly ov: O,
    private readonly flags: number,
    readonly socket: number | null,
  ) {}

  run(): unknown {
    return this.routine.run(this.error, this.bytes, this.ov, this.flags);
  }
}

/** Per-socket serialisation of completion routines, shared by the threads of a session. */
export class RoutineLocks {
  private readonly tails = new Map<number, Promise<void>>();

  /**
   * Runs the task at once when no routine of the socket is running, and returns nothing if it
   * finished synchronously; otherwise returns a promise that settles when it has run. Routines
   * that do not await stay synchronous, so the calls they make are packed into one frame.
   */
  runFast(socket: number | null, task: { run(): unknown }): Promise<void> | undefined {
    if (socket !== null && this.tails.has(socket)) return this.run(socket, () => task.run());
    const r = task.run();
    if (!isThenable(r)) return undefined;
    if (socket === null) return Promise.resolve(r).then(() => undefined);
    let release!: () => void;
    const tail = new Promise<void>((res) => (release = res));
    this.tails.set(socket, tail);
    return Promise.resolve(r).then(
      () => this.release(socket, tail, release),
      (err: unknown) => {
        this.release(socket, tail, release);
        throw err;
      },
    );
  }

  private release(socket: number, tail: Promise<void>, release: () => void): void {
    release();
    if (this.tails.get(socket) === tail) this.tails.delete(socket);
  }

  async run(socket: number | null, fn: () => unknown): Promise<void> {
    if (socket === null) {
      await fn();
      return;
    }
    const prev = this.tails.get(socket) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(socket, tail);
    await prev;
    try {
      await fn();
    } finally {
      this.release(socket, tail, release);
    }
  }
}

export interface ThreadHost {
  readonly locks: RoutineLocks;
  readonly autoApc: boolean;
  /** Tells the daemon the thread exited, so its pending operations are cancelled. */
  threadExited(thread: SpiThread): Promise<void>;
  /** Reports a completion routine that threw; the session keeps running. */
  routineFailed(err: unknown): void;
  /** The session's main thread: calls made without a thread context already count as its own. */
  readonly mainThread: SpiThread;
}

/** A manual-reset WSAEVENT. */
class EventObject {
  signaled = false;
  readonly watchers = new Set<() => void>();

  set(): void {
    this.signaled = true;
    for (const w of [...this.watchers]) w();
  }
}

/** The session's WSAEVENT handles. */
export class EventTable {
  private next = 0x200;
  private readonly events = new Map<number, EventObject>();

  create(): number {
    const h = this.next;
    this.next += 4;
    this.events.set(h, new EventObject());
    return h;
  }

  get(h: number): EventObject | undefined {
    return this.events.get(h);
  }

  close(h: number): boolean {
    return this.events.delete(h);
  }
}

export interface WaitSpec {
  events: readonly EventObject[];
  waitAll: boolean;
  timeoutMs: number;
  alertable: boolean;
}

export class SpiThread {
  readonly id: WSATHREADID;
  /** WSAGetLastError of this thread (set by the WSA event functions). */
  lastError = 0;
  private readonly apcs: Apc[] = [];
  private alive = true;
  private runningApcs = false;
  private wake: (() => void) | null = null;
  private autoScheduled = false;
  /** Blocking SPI calls of this thread still running (WSAEINPROGRESS guard, blocking.ts). */
  blockingCalls = 0;
  /**
   * Blocking calls of this thread that the daemon said wait (spiwire.waiting). Windows' Winsock
   * waits alertably in a blocking call (Wine's test_accept and test_WSARecv): meanwhile the
   * thread's APCs run, as in SleepEx(..., TRUE).
   */
  private blockingWaits = 0;
  /** The run of APCs a blocking call's wait started, until it is over. */
  private apcsInWait: Promise<boolean> | null = null;

  constructor(
    private readonly host: ThreadHost,
    handle: number,
  ) {
    this.id = { ThreadHandle: handle, Reserved: 0 };
  }

  get isAlive(): boolean {
    return this.alive;
  }

  /** APCs queued and not yet run. */
  get queuedApcs(): number {
    return this.apcs.length;
  }

  /** Queues an APC; it runs at the thread's next alertable wait (or soon, in automatic mode). */
  queueApc(run: () => unknown, socket: number | null = null): boolean {
    return this.queue({ run, socket });
  }

  /** Queues an operation's completion routine (to run as queueApc's would), called with these arguments. */
  queueRoutine<O>(routine: RoutineCall<O>, error: number, bytes: number, ov: O, flags: number, socket: number | null): boolean {
    return this.queue(new RoutineApc(routine, error, bytes, ov, flags, socket));
  }

  private queue(apc: Apc): boolean {
    if (!this.alive) return false;
    this.apcs.push(apc);
    if (this.host.autoApc) this.scheduleAuto();
    else if (this.wake) this.wake();
    else if (this.blockingWaits > 0) this.runDuringBlockingWait();
    return true;
  }

  private scheduleAuto(): void {
    if (this.autoScheduled) return;
    this.autoScheduled = true;
    // setImmediate: the call that queued the completion has resolved to its caller first.
    setImmediate(() => {
      this.autoScheduled = false;
      void this.runApcs();
    });
  }

  /** A blocking call of this thread waits: APCs queued before or during the wait run now. */
  enterBlockingWait(): void {
    this.blockingWaits++;
    this.runDuringBlockingWait();
  }

  private runDuringBlockingWait(): void {
    if (this.apcs.length === 0 || this.runningApcs || !this.alive) return;
    const run = blockingWaitApcs.run(this, () => this.runApcs());
    this.apcsInWait = run;
    void run.finally(() => {
      if (this.apcsInWait === run) this.apcsInWait = null;
    });
  }

  /**
   * The blocking call's reply came. On Windows its APCs run on the blocked thread's own stack, so
   * the call cannot return before they do: this resolves once the APCs its wait started are done.
   */
  async leaveBlockingWait(): Promise<void> {
    this.blockingWaits--;
    // A blocking call made by one of those APCs returns to its APC, which is still running.
    if (this.inAlertableApc) return;
    while (this.apcsInWait) await this.apcsInWait;
  }

  /** Whether the caller is an APC of this thread run in a blocking call's wait, or work it started. */
  get inAlertableApc(): boolean {
    return blockingWaitApcs.getStore() === this;
  }

  /** Runs every queued APC, in order, one at a time; false when none ran (or a run is under way). */
  async runApcs(): Promise<boolean> {
    if (this.runningApcs || this.apcs.length === 0) return false;
    this.runningApcs = true;
    try {
      while (this.apcs.length > 0 && this.alive) {
        const apc = this.apcs.shift()!;
        try {
          // A routine runs on this thread: calls it makes are issued by this thread.
          // The main thread needs no context (calls without one fall back to it), and sparing
          // AsyncLocalStorage keeps node's promise hooks off for sessions that never make threads.
          const task = this === this.host.mainThread ? apc : { run: () => issuingThread.run(this, () => apc.run()) };
          const pending = this.host.locks.runFast(apc.socket, task);
          if (pending) await pending;
        } catch (err) {
          this.host.routineFailed(err);
        }
      }
    } finally {
      this.runningApcs = false;
    }
    return true;
  }

  /**
   * SleepEx: resolves to 0 after dwMilliseconds, or to WAIT_IO_COMPLETION (0xC0) when it was
   * alertable and APCs ran. INFINITE (0xFFFFFFFF) never times out.
   */
  async SleepEx(dwMilliseconds: number, bAlertable: boolean | number): Promise<number> {
    const r = await this.wait({ events: [], waitAll: false, timeoutMs: dwMilliseconds, alertable: !!bAlertable });
    return r === P.WSA_WAIT_TIMEOUT ? 0 : r;
  }

  /**
   * The wait behind SleepEx and WSAWaitForMultipleEvents: WSA_WAIT_EVENT_0 + i when the events
   * are satisfied (checked first), WSA_WAIT_IO_COMPLETION after APCs ran, WSA_WAIT_TIMEOUT.
   * Inside a completion routine an alertable wait does not run further APCs: routines never nest.
   */
  wait(spec: WaitSpec): Promise<number> {
    if (!this.alive) return Promise.resolve(P.WSA_WAIT_FAILED);
    return new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      let settled = false;
      const cleanup = (): void => {
        settled = true;
        if (timer) clearTimeout(timer);
        for (const e of spec.events) e.watchers.delete(check);
        if (this.wake === check) this.wake = null;
      };
      const check = (): void => {
        const satisfied = eventsSatisfied(spec);
        if (satisfied >= 0) {
          cleanup();
          resolve(P.WSA_WAIT_EVENT_0 + satisfied);
          return;
        }
        if (spec.alertable && this.apcs.length > 0 && !this.runningApcs && this.alive) {
          cleanup();
          void this.runApcs().then(() => resolve(P.WSA_WAIT_IO_COMPLETION));
          return;
        }
        if (!this.alive) {
          cleanup();
          resolve(P.WSA_WAIT_FAILED);
        }
      };
      for (const e of spec.events) e.watchers.add(check);
      if (spec.alertable) this.wake = check;
      check();
      if (settled) return;
      if (spec.timeoutMs !== P.INFINITE) {
        timer = setTimeout(() => {
          cleanup();
          resolve(P.WSA_WAIT_TIMEOUT);
        }, spec.timeoutMs);
      }
    });
  }

  /**
   * The thread exits: queued APCs are dropped, and the daemon cancels the operations this thread
   * issued (each completes with WSA_OPERATION_ABORTED; events are still signalled).
   */
  async exit(): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    this.apcs.length = 0;
    this.wake?.();
    await this.host.threadExited(this);
  }
}

/**
 * The threads of a session by ThreadHandle: the one whose method made a call, or the one a call
 * names with lpThreadId. make builds each thread object (the session binds its SPI functions to
 * it); the first one made is the main thread.
 */
export class ThreadRegistry<T extends SpiThread> {
  private readonly byHandle = new Map<number, T>();
  private nextHandle = 0x1004;
  /** The thread that calls made outside any thread belong to. */
  readonly main: T;

  constructor(private readonly make: (handle: number) => T) {
    this.main = this.create();
  }

  create(): T {
    const handle = this.nextHandle;
    this.nextHandle += 4;
    const thread = this.make(handle);
    this.byHandle.set(handle, thread);
    return thread;
  }

  get(handle: number): T | undefined {
    return this.byHandle.get(handle);
  }

  /** The thread a call runs on: the thread whose method was called, else the one lpThreadId names. */
  issuer(lpThreadId?: WSATHREADID | null): T | null {
    const t = issuingThread.getStore();
    if (t) {
      const mine = this.byHandle.get(t.id.ThreadHandle);
      if (mine === t) return mine;
    }
    if (lpThreadId && typeof lpThreadId === 'object') return this.byHandle.get(lpThreadId.ThreadHandle) ?? null;
    return null;
  }

  /** The calling thread: the issuing thread, or the main thread for calls made on the session. */
  current(): T {
    return this.issuer() ?? this.main;
  }
}

function eventsSatisfied(spec: WaitSpec): number {
  if (spec.events.length === 0) return -1;
  if (spec.waitAll) return spec.events.every((e) => e.signaled) ? 0 : -1;
  return spec.events.findIndex((e) => e.signaled);
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && 'then' in v && typeof v.then === 'function';
}
