/**
 * The two send policies (SO_SPIWIRE_SEND_POLICY, README "The send policy"), in one place:
 *
 * - reference (the WSPSend reference page): a nonblocking stream send takes as many bytes as fit,
 *   a partial count, or fails with WSAEWOULDBLOCK when none do; an overlapped call on a socket
 *   made without WSA_FLAG_OVERLAPPED is WSAEINVAL.
 * - windows (what Windows does in practice): a nonblocking stream send takes the whole buffer and
 *   sends it in the background, or fails with WSAEWOULDBLOCK while earlier data is still queued,
 *   never a short count; an overlapped call on a plain socket runs as a blocking call and still
 *   reports its completion.
 *
 * Blocking and overlapped sends behave alike under both. The functions work on a stream socket's
 * transport buffer once the socket's own checks have passed.
 */
import { TransportBuffer, type QueuedSend, type SendOp } from './transport-buffer.js';
import { cancellable, sent, startedAt, type Cancellable, type Completion, type SendResult, type Started } from './results.js';
import { byteLength } from './send-buffers.js';
import { WSAETIMEDOUT } from '@spiwire/proto';

export interface StreamSend {
  readonly buffers: readonly Uint8Array[];
  readonly total: number;
  /** SPI flags that need send() on the descriptor (MSG_OOB, MSG_DONTROUTE), or 0. */
  readonly direct: number;
}

/**
 * A send that is not overlapped. 'would-block' is WSAEWOULDBLOCK, which also re-enables FD_WRITE:
 * the socket decides what follows.
 */
export function streamSend(tx: TransportBuffer, send: StreamSend, mode: SendMode): SendResult | 'would-block' | Promise<SendResult> {
  const { buffers, total, direct } = send;
  if (mode.nonBlocking && mode.windowsPolicy && !direct) {
    // The whole buffer or nothing; the rest goes in the background, even after a close.
    if (tx.pendingOps > 0) return 'would-block';
    if (tx.fitsNow(total)) tx.acceptNow(buffers, total);
    else tx.submit({ chunks: buffers, total, overlapped: false, background: true, complete: () => undefined });
    return sent(total);
  }
  if (mode.nonBlocking) {
    if (total === 0) return sent(0);
    const n = tx.acceptNow(buffers, total, direct);
    return n > 0 ? sent(n) : 'would-block';
  }
  // A blocking send that fits at once is answered in the same turn, so its reply can leave
  // before the corked bytes are written to the peer. (An empty send goes through the queue:
  // with SO_SNDBUF 0 it waits for earlier bytes to reach the kernel.)
  if (!direct && total > 0 && tx.fitsNow(total)) {
    tx.acceptNow(buffers, total);
    return sent(total);
  }
  return new Promise<SendResult>((resolve) => {
    // A blocking send that fails part way reports the bytes that reached the transport too.
    const op: SendOp = { chunks: buffers, total, overlapped: false, direct, complete: (errno, bytes) => resolve(errno === 0 ? sent(total) : { errno, bytes }) };
    submitBlocking(tx, op, mode.timeoutMs);
  });
}

export interface SendMode {
  nonBlocking: boolean;
  windowsPolicy: boolean;
  /** SO_SNDTIMEO for a blocking send (0: none): past it the send fails with WSAETIMEDOUT. */
  timeoutMs: number;
}

/**
 * Queues a blocking send; with a timeout, what it has not handed to the transport by then is
 * dropped and it fails with WSAETIMEDOUT, reporting the bytes that did go (Windows leaves the
 * connection as it is, "in an indeterminate state"). A send whose every byte has gone by then
 * is done, and completes as sent at once, even one still waiting for the kernel to finish.
 */
function submitBlocking(tx: TransportBuffer, op: SendOp, timeoutMs: number): QueuedSend {
  if (timeoutMs <= 0) return tx.submit(op);
  const complete = op.complete;
  let done = false;
  let queued: QueuedSend | null = null;
  const timer = setTimeout(() => {
    if (queued !== null) tx.cancelQueued(WSAETIMEDOUT, queued);
    // Not completed by the cancellation: its bytes are all with the kernel already.
    if (!done) op.complete(0, op.total);
  }, timeoutMs);
  op.complete = (errno, bytes) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    complete(errno, bytes);
  };
  queued = tx.submit(op);
  return queued;
}

/**
 * An overlapped send waiting in the transport buffer. It is its own cancellation handle and hands
 * its completion straight on: one object per pending send, no closures (a client may keep
 * hundreds of thousands pending; issue 17's budget is 512 bytes each).
 */
class OverlappedSend implements SendOp, Cancellable {
  constructor(
    private readonly tx: TransportBuffer,
    readonly chunks: readonly Uint8Array[],
    readonly total: number,
    readonly direct: number,
    private readonly done: Completion,
  ) {}

  get overlapped(): boolean {
    return true;
  }

  /** Its place in the transport buffer's queue (set once submitted). */
  queued: QueuedSend | null = null;

  complete(errno: number, bytes: number): void {
    // The buffer reports a success with every byte (op.total).
    this.done.complete(errno, bytes);
  }

  cancel(errno: number): boolean {
    return this.queued !== null && this.tx.cancelQueued(errno, this.queued) > 0;
  }
}

/** An overlapped send: completes at once only when every byte fits now, behind no older send. */
export function streamSendOverlapped(tx: TransportBuffer, send: StreamSend, done: Completion): Started<SendResult> {
  const { buffers, total, direct } = send;
  if (!direct && tx.fitsNow(total)) {
    tx.acceptNow(buffers, total);
    done.complete(0, total);
    return startedAt(sent(total));
  }
  const op = new OverlappedSend(tx, buffers, total, direct, done);
  op.queued = tx.submit(op);
  return { pending: true, cancel: op };
}

/** What an overlapped call on a socket made without WSA_FLAG_OVERLAPPED does under the policy. */
export function overlappedOnPlainSocket(windowsPolicy: boolean): 'refuse' | 'run-blocking' {
  return windowsPolicy ? 'run-blocking' : 'refuse';
}

/** A send whose bytes come in pieces: the first pieces are here, total is the size of it all. */
export interface StreamedSend {
  readonly buffers: readonly Uint8Array[];
  readonly total: number;
  /** Told the bytes taken so far as they grow. */
  readonly progress: (accepted: number) => void;
}

/**
 * A streamed send that is not overlapped. op is the queued operation that takes the rest of the
 * pieces, or null when the call is done with what it has: a nonblocking send under the reference
 * policy takes what fits from the first pieces and no more (a partial count, or WSAEWOULDBLOCK).
 */
export function streamSendStreamed(tx: TransportBuffer, send: StreamedSend, mode: SendMode): { result: SendResult | 'would-block' | Promise<SendResult>; op: QueuedSend | null } {
  const { buffers, total, progress } = send;
  if (mode.nonBlocking && !mode.windowsPolicy) {
    const n = tx.acceptNow(buffers, byteLength(buffers));
    // What fits of the first piece, and no more: the stream's last report counts it.
    if (n > 0) progress(n);
    return { result: n > 0 ? sent(n) : 'would-block', op: null };
  }
  if (mode.nonBlocking) {
    // Windows in practice: the whole send or nothing; the pieces still to come go in the background.
    if (tx.pendingOps > 0) return { result: 'would-block', op: null };
    const op: SendOp = { chunks: buffers, total, overlapped: false, background: true, streamed: true, progress, complete: () => undefined };
    return { result: sent(total), op: tx.submit(op) };
  }
  let queued: QueuedSend | null = null;
  const result = new Promise<SendResult>((resolve) => {
    const op: SendOp = { chunks: buffers, total, overlapped: false, streamed: true, progress, complete: (errno, bytes) => resolve(errno === 0 ? sent(total) : { errno, bytes }) };
    queued = submitBlocking(tx, op, mode.timeoutMs);
  });
  return { result, op: queued };
}

/** A streamed overlapped send: pending until its last piece is taken. */
export function streamSendStreamedOverlapped(tx: TransportBuffer, send: StreamedSend, done: Completion): { started: Started<SendResult>; op: QueuedSend } {
  const op: SendOp = { chunks: send.buffers, total: send.total, overlapped: true, streamed: true, progress: send.progress, complete: (errno, bytes) => done.complete(errno, bytes) };
  const queued = tx.submit(op);
  return { started: { pending: true, cancel: cancellable((errno) => tx.cancelQueued(errno, queued) > 0) }, op: queued };
}
