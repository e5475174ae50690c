/**
 * The overlapped operations of a session, from the call that starts one to its completion.
 *
 * An operation is registered before its call is sent (its op id goes in the call), and from then
 * on it ends exactly one way:
 * - the call fails at once (any result but WSA_IO_PENDING): the operation is forgotten, and no
 *   completion of any kind follows;
 * - the call's reply carries the completion (it completed at once), or a spiwire.completion
 *   notification arrives later: the WSAOVERLAPPED is filled in, then the completion routine is
 *   queued to its thread or the event object is set;
 * - the connection ends: an operation whose call was answered completes with the code given to
 *   abandon(); one whose call was never answered completes never, as its call fails.
 */
import * as P from '@spiwire/proto';
import { isU32 } from '@spiwire/proto';
import { fieldOf, isBytes, isCompletion, isResult, scatter, type Result } from './marshal.js';
import type { ReplyListener } from './rpc.js';
import type { Tracer } from './trace.js';
import type { LPWSAOVERLAPPED_COMPLETION_ROUTINE, WSAOVERLAPPED } from './overlapped.js';
import type { Out } from './types.js';
import type { EventTable, SpiThread } from './threads.js';
import { IdTable } from './id-table.js';

/** Where an operation's completion goes, given when it starts. */
export interface OperationSpec {
  ov: WSAOVERLAPPED;
  /** The completion routine, the thread whose APC queue gets it, and its socket (routines of one socket never overlap). */
  routine: { run: LPWSAOVERLAPPED_COMPLETION_ROUTINE; thread: SpiThread; s: number } | null;
  /** Where a receive's bytes go (the caller's WSABUFs). */
  targets?: readonly Uint8Array[] | undefined;
  /** A receive's lpFlags, updated at completion. */
  flagsOut?: Out | null | undefined;
  /** Called at completion, before any routine or event (used by the promise API). */
  onComplete?: ((error: number, bytes: number, flags: number) => void) | undefined;
}

/**
 * What the SDK remembers of an overlapped operation until its completion arrives (one shape for
 * all: a class). It listens for its call's reply itself, so starting one allocates no closure.
 */
export class OpRecord implements ReplyListener {
  /** The call's reply has arrived: until then, a lost connection fails the call, not the operation. */
  answered = false;
  /** What the caller makes of the call's result, in the step that reads it (engine.overlapped). */
  mapResult: ((r: Result) => unknown) | undefined = undefined;

  constructor(
    readonly table: OperationTable,
    readonly op: number,
    readonly ov: WSAOVERLAPPED,
    readonly routine: OperationSpec['routine'],
    /** Where a receive's bytes go, its lpFlags, and a hook run at completion (Delivery). */
    readonly targets: readonly Uint8Array[] | undefined,
    readonly flagsOut: Out | null | undefined,
    readonly onComplete: ((error: number, bytes: number, flags: number) => void) | undefined,
  ) {}

  replied(r: Record<string, unknown>): void {
    if (isResult(r)) this.table.answered(this, r);
  }

  completed(error: number, bytes: number, flags: number): void {
    this.table.complete(this.op, error, bytes, flags);
  }
}

/** Where a receive's completion puts its results, besides the WSAOVERLAPPED. */
export type Delivery = Pick<OperationSpec, 'targets' | 'flagsOut' | 'onComplete'>;

/** Sends an operation's call: op goes in the call, onReply must run as its reply is read. */
export type SendOperation = (op: number, onReply: (r: Result) => void) => Promise<Result>;

export class OperationTable {
  private nextOp = 1;
  private readonly ops = new IdTable<OpRecord>();

  constructor(private readonly events: EventTable) {}

  /** Operations started and not yet completed or failed. */
  get size(): number {
    return this.ops.size;
  }

  /**
   * begin() and settle() in one, for callers that do not mind a closure or two: send gets the op
   * id to put in the call and must pass the reply to onReply as it is read.
   */
  start(spec: OperationSpec, send: SendOperation): Promise<Result> {
    const rec = this.begin(spec.ov, spec.routine, spec);
    return this.settle(rec, () => send(rec.op, (r) => rec.replied(r)));
  }

  /**
   * Registers an operation: marks its WSAOVERLAPPED pending and remembers where its completion
   * goes. Its call (with rec.op in it) is then sent through settle().
   */
  begin(ov: WSAOVERLAPPED, routine: OperationSpec['routine'], delivery: Delivery | undefined): OpRecord {
    const op = this.nextOp++;
    if (this.nextOp > 0xffffffff) this.nextOp = 1;
    ov.Internal = P.WSS_OPERATION_IN_PROGRESS;
    // InternalHigh keeps what the caller put there while pending, as on Windows (Wine's
    // test_nonblocking_async_recv); the completion, or a failure at once, writes it.
    ov.Offset = 0;
    ov.OffsetHigh = 0;
    if (!routine && ov.hEvent) {
      const e = this.events.get(ov.hEvent);
      if (e) e.signaled = false;
    }
    const rec = new OpRecord(this, op, ov, routine, delivery?.targets, delivery?.flagsOut, delivery?.onComplete);
    this.ops.set(op, rec);
    return rec;
  }

  /**
   * Sends the call of an operation begun with begin() (send passes rec as the reply listener) and
   * resolves with its result. A call that fails at once (or is rejected) leaves no completion.
   */
  // Not async: one promise hop fewer per overlapped call.
  settle(rec: OpRecord, send: () => Promise<Result>): Promise<Result> {
    let sent: Promise<Result>;
    try {
      sent = send();
    } catch (err) {
      this.notSent(rec);
      throw err;
    }
    return sent.then(
      (r) => this.outcome(rec, asIs, r),
      (err: unknown) => this.outcome(rec, rethrow, err),
    );
  }

  /** The call could not be sent (it threw): the operation fails, with no completion. */
  notSent(rec: OpRecord): void {
    this.failed(rec, P.WSAENETDOWN);
  }

  /**
   * The result f makes of x, the call's reply or why it failed (engine.overlapped's step, and
   * settle()); a call that failed at once, or has no usable result, leaves no completion.
   */
  outcome<X>(rec: OpRecord, f: (x: X) => Result, x: X): Result {
    let r: Result;
    try {
      r = f(x);
    } catch (err) {
      // No usable result (a protocol error): as after a lost connection, not pending, WSAENETDOWN.
      this.failed(rec, P.WSAENETDOWN);
      throw err;
    }
    if (r.ret !== 0 && r.errno !== P.WSA_IO_PENDING) this.failed(rec, r.errno);
    return r;
  }

  /**
   * The call's reply, read before any later record of its frame: a receive that completed at
   * once carries its bytes, which go to the caller's buffers before anyone is signalled, and a
   * reply with a completion stands for the completion.
   */
  answered(rec: OpRecord, r: Result): void {
    rec.answered = true;
    const data = fieldOf(r, 'data', isBytes);
    const c = fieldOf(r, 'completion', isCompletion);
    // A truncated datagram fails the call (WSAEMSGSIZE) and still delivers what fitted, with its completion.
    if (data && rec.targets && (r.ret === 0 || c)) scatter(data, rec.targets);
    if (c) this.complete(rec.op, c.error, c.bytes, c.flags);
  }

  /**
   * Failed at once: no completion of any kind, ever. A parameter the provider refuses
   * (WSAEFAULT) leaves the WSAOVERLAPPED as the call set it, Internal 0x103 and InternalHigh the
   * caller's, as on Windows (Wine's test_keepalive_vals); other failures write the error.
   */
  private failed(rec: OpRecord, errno: number): void {
    if (this.ops.get(rec.op) !== rec) return;
    this.ops.delete(rec.op);
    if (errno === P.WSAEFAULT) return;
    rec.ov.Internal = 0;
    rec.ov.InternalHigh = 0;
    rec.ov.OffsetHigh = errno;
  }

  /** spiwire.completion: the operation it names completes. */
  onCompletion(params: Record<string, unknown>): void {
    const op = fieldOf(params, 'op', isU32);
    if (op !== undefined && isCompletion(params)) this.complete(op, params.error, params.bytes, params.flags, fieldOf(params, 'data', isBytes));
  }

  /** An operation completed: fill the WSAOVERLAPPED, then queue its routine or signal its event. */
  complete(op: number, error: number, bytes: number, flags: number, data?: Uint8Array): void {
    const rec = this.ops.get(op);
    if (!rec) return;
    this.ops.delete(op);
    if (data && rec.targets) scatter(data, rec.targets);
    if (rec.flagsOut) rec.flagsOut.value = flags;
    const ov = rec.ov;
    ov.InternalHigh = bytes;
    ov.Offset = flags;
    ov.OffsetHigh = error;
    ov.Internal = 0;
    rec.onComplete?.(error, bytes, flags);
    const routine = rec.routine;
    const tracer = this.tracer;
    if (tracer) {
      const s = ov.lastSocket;
      tracer.record({ t: tracer.now(), kind: 'complete', op, s, error, bytes });
      // The delivery is recorded as it happens: when the routine runs on its thread, or now.
      const via = routine ? 'routine' : ov.hEvent ? 'event' : 'none';
      if (routine) {
        routine.thread.queueApc(() => {
          tracer.record({ t: tracer.now(), kind: 'deliver', op, s, via, thread: routine.thread.id.ThreadHandle });
          return routine.run(error, bytes, ov, flags);
        }, routine.s);
        return;
      }
      tracer.record({ t: tracer.now(), kind: 'deliver', op, s, via, thread: null });
    }
    if (routine) routine.thread.queueRoutine(routine, error, bytes, ov, flags, routine.s);
    else if (ov.hEvent) this.events.get(ov.hEvent)?.set();
  }

  /** The session's call trace, or null. */
  tracer: Tracer | null = null;

  /** The connection ended: every operation whose call was answered completes now with code, exactly once. */
  abandon(code: number): void {
    for (const [op, rec] of this.ops.entries()) {
      // A call still waiting for its reply fails with WSAENETDOWN itself; failing at once, it
      // must leave no completion (start() forgets the operation when that result comes).
      if (rec.answered) this.complete(op, code, 0, 0);
    }
  }
}

/** settle()'s reply is a Result already. */
function asIs(r: Result): Result {
  return r;
}

/** settle() has no result for a rejection: the operation fails (outcome) and the error goes on. */
function rethrow(err: unknown): never {
  throw err;
}
