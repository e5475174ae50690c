/**
 * The transport buffer of a stream socket: SO_SNDBUF bytes that WSPSend has accepted and the
 * daemon has not yet handed to the kernel. Bytes are "handed to the kernel" when node's write
 * callback fires, so when the peer stops reading, the kernel buffer fills, node's writes stay
 * unfinished, and this buffer fills after it: that is the backpressure WSPSend sees.
 *
 * Sends that cannot be accepted at once (blocking or overlapped) wait in a first-in first-out
 * queue of operations; an operation completes when its last byte has entered the buffer.
 */
import { byteLength, contiguous } from './send-buffers.js';

export interface StreamSink {
  /** Hands bytes to the kernel side; done fires when they have been written to the kernel. */
  write(chunk: Uint8Array, done: (err?: Error | null) => void): void;
  cork(): void;
  uncork(): void;
  /**
   * Sends bytes straight to the kernel with send() flags (MSG_OOB for urgent data, MSG_DONTROUTE):
   * the byte count written, or -1 when the kernel buffer is full. Throws for a broken connection.
   */
  sendDirect?(chunk: Uint8Array, sendFlags: number): number;
  /** Runs after every pump; the socket uses it to send a deferred FIN once the queue is empty. */
  afterPump?(): void;
}

export interface SendOp {
  /**
   * The bytes, in order. For a streamed send (streamed: true) they arrive in pieces after the
   * operation was submitted (append()); the operation waits for them as it would for room.
   */
  readonly chunks: readonly Uint8Array[];
  readonly total: number;
  /** The bytes come in pieces (a send larger than one WebSocket message): see append(). */
  readonly streamed?: boolean;
  /** Told the bytes accepted so far whenever they grow (streamed sends report progress with it). */
  readonly progress?: (accepted: number) => void;
  /** An overlapped operation (completes through the caller's completion method) or a blocking call. */
  readonly overlapped: boolean;
  /** Accepted whole by a nonblocking send under the Windows policy: flows on even after close. */
  readonly background?: boolean;
  /**
   * Wire send() flags (SPI MSG_OOB, MSG_DONTROUTE): the bytes go straight to the kernel with
   * send(), once every earlier byte has reached it. 0 or absent: the ordinary path.
   */
  readonly direct?: number;
  /** Called exactly once: errno 0 with total bytes, or a WSA code with the bytes accepted so far. */
  complete(errno: number, bytes: number): void;
}

const NO_BYTES = new Uint8Array(0);

/** Why operations are cancelled: see TransportBuffer.cancel. */
export type CancelHow = 'cancel' | 'close' | 'broken';

/**
 * An operation waiting in the buffer; submit() returns it, and it is the handle to cancel that one
 * operation (cancelQueued) or give it the next piece of a streamed send (append).
 */
export interface QueuedSend {
  op: SendOp;
  /**
   * The chunks it has so far (all of them, unless streamed): what this buffer may hand over. A
   * streamed send's own copy of the list, which append() grows.
   */
  chunks: readonly Uint8Array[];
  /** Bytes of those chunks: held here until handed over. */
  available: number;
  /** Bytes that entered the transport buffer (or the kernel): what the operation has sent. */
  accepted: number;
  /** Bytes given to node's socket: accepted ones, then any sent ahead (see TransportBuffer). */
  handed: number;
  /** The chunk handed over next; DEAD once completed or cancelled (no longer waiting: its slot is passed over). */
  chunk: number;
  offset: number;
}

/** QueuedSend.chunk of an operation no longer waiting. (A field of its own would cost 8 bytes a pending send.) */
const DEAD = -1;
const isDead = (q: QueuedSend): boolean => q.chunk === DEAD;

type QueuedOp = QueuedSend;

const NO_CHUNKS: readonly Uint8Array[] = [];

/** What a slot the front of the queue has passed holds, so that no finished operation stays alive. */
const PASSED: QueuedOp = { op: { chunks: NO_CHUNKS, total: 0, overlapped: false, complete: () => undefined }, chunks: NO_CHUNKS, available: 0, accepted: 0, handed: 0, chunk: DEAD, offset: 0 };

/** Slots passed, or dead inside the queue, beyond which the queue is compacted (when they are also half of it). */
const COMPACT_AFTER = 1024;

/** A piece of an operation handed to node ahead of acceptance; `accepted` of it entered the buffer since. */
interface AheadPiece {
  q: QueuedOp;
  n: number;
  accepted: number;
}

/**
 * How far beyond SO_SNDBUF the buffer may hand bytes of waiting operations to node ("ahead"), as
 * a multiple of SO_SNDBUF. A byte handed ahead is accepted (counts as sent) only when it would
 * have been anyway: when room frees up in the buffer, or when the kernel has it. So WSPSend
 * reports what it would report if bytes went over one buffer at a time, but the kernel gets
 * several buffers per writev instead of one write (and one wake-up of the peer) per SO_SNDBUF
 * bytes. The pieces are views of the operations' own buffers: no extra memory.
 */
const AHEAD_FACTOR = 3;

/**
 * Chunks handed over that are smaller than this are copied together into one write: each write is
 * an entry in node's queue and a callback, about 250 bytes whatever its size, and a client sending
 * one byte at a time into a large SO_SNDBUF made the daemon hold 250 bytes for each byte counted.
 */
const COALESCE_BELOW = 1024;
/** The slab small chunks are copied into; a flush writes what it holds and the next fill goes on after it. */
const STAGE_BYTES = 16 * 1024;

/**
 * A send's buffers are views of the message they came in, which stays in memory as long as any
 * view of it does, while the quotas count only the bytes viewed. A record may carry data no
 * reference uses (section 3 allows it): a pending send of 1 byte kept its whole 8 MiB record
 * alive, and a client could hold gigabytes counted as kilobytes. So views that keep too much
 * alive are copied:
 * - a send that has to wait (unpinWaiting) is copied when the messages its views keep alive come
 *   to more than RETAIN_RATIO times its bytes and RETAIN_SLACK beyond: a bulk send of 64 KiB
 *   spanning two 64 KiB reads stays views, a 1-byte send in a 64 KiB read does not;
 * - a piece handed to node (which holds it until the kernel takes it) is copied when it keeps
 *   more than a read's worth (READ_BYTES) beyond itself alive, as only an oversized message does
 *   (unpinned): copying the small edge pieces of bulk sends cost the daemon a sixth more CPU per MB.
 */
const RETAIN_SLACK = 4096;
const RETAIN_RATIO = 4;
/** What node reads from a connection at once: the most a view of an ordinary read keeps. */
const READ_BYTES = 64 * 1024;

/**
 * A copy of chunk. Under 4 KiB it is a slice of node's shared 8 KiB pool, which keeps at most
 * the pool alive (and many small copies share one): memory of its own costs an ArrayBuffer each,
 * which took a pending 1-byte send from 467 to 568 bytes (scenario 6).
 */
function copyOf(chunk: Uint8Array): Uint8Array {
  return Buffer.from(chunk);
}

/** chunk, or a copy of it when it keeps more than a read's worth of memory beyond its own bytes alive. */
function unpinned(chunk: Uint8Array): Uint8Array {
  const held = chunk.buffer.byteLength;
  return held - chunk.length > READ_BYTES && held > RETAIN_RATIO * chunk.length ? copyOf(chunk) : chunk;
}

/** The memory chunks keep alive: each message (ArrayBuffer) they are views of, once. */
function pinnedBy(chunks: readonly Uint8Array[]): number {
  let held = 0;
  for (let i = 0; i < chunks.length; i++) {
    const b = chunks[i]!.buffer;
    let seen = false;
    for (let k = 0; k < i && !seen; k++) seen = chunks[k]!.buffer === b;
    if (!seen) held += b.byteLength;
  }
  return held;
}

/**
 * A queued send whose views keep too much alive (see RETAIN_SLACK) has them copied, all of them:
 * those handed over are still in its arrays until it completes. In place, in the queue's array
 * and in the operation's own (a streamed send's queue has a copy of it), so that neither keeps
 * the originals.
 */
function unpinWaiting(q: QueuedSend): void {
  for (const list of q.chunks === q.op.chunks ? [q.chunks] : [q.chunks, q.op.chunks]) {
    if (pinnedBy(list) <= RETAIN_RATIO * byteLength(list) + RETAIN_SLACK) continue;
    const chunks = list as Uint8Array[];
    for (let i = 0; i < chunks.length; i++) if (chunks[i]!.buffer.byteLength > chunks[i]!.length) chunks[i] = copyOf(chunks[i]!);
  }
}

/**
 * Pumps that finished writes may run in one turn of the event loop, all buffers together. Node
 * calls back a write the kernel took at once on the next tick, and each pump from there writes
 * again: with a tiny SO_SNDBUF (1 byte, so 4 bytes a write) a 1 MB send chained a quarter of a
 * million ticks and the daemon read no other socket or session for seconds. Past this many, a
 * buffer waits for the next turn (afterWrite).
 */
const PUMPS_PER_TURN = 256;
let pumpsThisTurn = 0;
let turnScheduled = false;
/** Buffers whose pump waits for the next turn, in the order they came. */
let waitingTurn: TransportBuffer[] = [];

function nextTurn(): void {
  turnScheduled = false;
  pumpsThisTurn = 0;
  const due = waitingTurn;
  waitingTurn = [];
  for (let i = 0; i < due.length; i++) {
    try {
      due[i]!.pumpInNewTurn();
    } catch (err) {
      // The rest keep their turn (a fault in one socket must not stall the others).
      for (const b of due.slice(i + 1)) waitingTurn.push(b);
      if (waitingTurn.length > 0 && !turnScheduled) {
        turnScheduled = true;
        setImmediate(nextTurn);
      }
      throw err;
    }
  }
}

export class TransportBuffer {
  private inKernelHandoff = 0;
  /** Every byte accepted since the buffer was made (what WSPSend counts as sent). */
  private takenTotal = 0;
  /** A block fault holds the buffer: it accepts and hands over nothing until the timer ends it. */
  private holdTimer: NodeJS.Timeout | null = null;
  private holdEnds = 0;
  /** Bytes of waiting operations handed to node ahead of acceptance, not yet in the kernel. */
  private ahead = 0;
  /** The pieces handed ahead, oldest first (node finishes writes in order). */
  private readonly aheadPieces: AheadPiece[] = [];
  /** aheadPieces before this index are accepted whole. */
  private firstUnaccepted = 0;
  /**
   * The waiting operations, oldest first, from head on; dead ones (cancelled one at a time) stay
   * in their slots until the front passes them or the queue is compacted. Never shift() or
   * splice(): with tens of thousands waiting each is a copy of the array, and a loop of them is
   * quadratic (seconds of a stalled daemon when a socket with 60,000 queued sends closes).
   */
  private queue: QueuedOp[] = [];
  private head = 0;
  /** Operations waiting (not dead) from head on. */
  private live = 0;
  /** Dead operations from head on. */
  private deadInside = 0;
  private queuedBytes = 0;
  private pumping = false;
  /**
   * Small chunks handed over in this turn and not yet written (COALESCE_BELOW): the first one as it
   * came (a lone small send is not copied), then the copies in stage from stageFrom to stagedTo.
   */
  private single: Uint8Array | null = null;
  private stage: Buffer | null = null;
  private stageFrom = 0;
  private stagedTo = 0;
  private flushDue = false;

  constructor(
    private readonly sink: StreamSink,
    private cap: number,
    /** Told of every change in the bytes this buffer holds (queued and on their way to the kernel). */
    private readonly meter: (delta: number) => void = () => undefined,
  ) {}

  /** Bytes accepted and not yet written to the kernel. */
  get used(): number {
    return this.inKernelHandoff;
  }

  /** Operations waiting (not yet fully accepted). */
  get pendingOps(): number {
    return this.live;
  }

  /** Bytes of waiting operations not yet accepted. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Bytes accepted in this turn and not yet written to node (small sends, written together at its end). */
  get staged(): number {
    return (this.single?.length ?? 0) + this.stagedTo - this.stageFrom;
  }

  /** Bytes of waiting operations not yet handed to node's socket (neither accepted nor ahead). */
  get notHanded(): number {
    return this.queuedBytes - this.ahead;
  }

  /** Bytes accepted since the buffer was made. */
  get taken(): number {
    return this.takenTotal;
  }

  /**
   * A block fault: for ms the buffer takes nothing, as if it were full. Sends then wait (or fail
   * with WSAEWOULDBLOCK) behind the hold, in order; bytes already handed to node go on to the
   * kernel. A hold during a hold lasts until the later of the two ends.
   */
  hold(ms: number): void {
    const ends = performance.now() + ms;
    if (this.holdTimer !== null && ends <= this.holdEnds) return;
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdEnds = ends;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = null;
      this.pump();
    }, ms);
    // A socket closed under the hold needs no wake-up once the process is stopping.
    this.holdTimer.unref();
  }

  /** Ends a hold now (a block that lasts until bytes have drained). */
  release(): void {
    if (this.holdTimer === null) return;
    clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.pump();
  }

  /** True while a block fault holds the buffer. */
  get held(): boolean {
    return this.holdTimer !== null;
  }

  get capacity(): number {
    return this.cap;
  }

  set capacity(n: number) {
    this.cap = n;
    this.pump();
  }

  /** True when nothing is queued and nothing is on its way to the kernel. */
  get drained(): boolean {
    return this.live === 0 && this.inKernelHandoff === 0 && this.ahead === 0;
  }

  private room(): number {
    if (this.holdTimer !== null) return 0;
    // SO_SNDBUF 0: no buffering; one send at a time goes straight to the kernel.
    if (this.cap === 0) return this.inKernelHandoff === 0 ? Infinity : 0;
    return Math.max(0, this.cap - this.inKernelHandoff);
  }

  /** Room for bytes not yet handed over: none while older bytes wait ahead (bytes enter in order). */
  private roomForNew(): number {
    this.acceptAhead();
    return this.ahead === 0 ? this.room() : 0;
  }

  /**
   * A nonblocking send under the reference policy: takes as many bytes as fit now, across buffer
   * boundaries, and returns that count (0 when none fit or older sends are still queued).
   */
  acceptNow(chunks: readonly Uint8Array[], total: number, direct = 0): number {
    if (this.live > 0) return 0;
    if (direct) {
      // These bytes go to the kernel directly, so nothing may still be on its way there.
      if (this.inKernelHandoff > 0 || this.ahead > 0 || this.holdTimer !== null || !this.sink.sendDirect) return 0;
      const n = Math.max(0, this.sink.sendDirect(contiguous(chunks, total), direct));
      this.takenTotal += n;
      return n;
    }
    // (hand() meters the accepted bytes.)
    const n = Math.min(this.roomForNew(), total);
    if (n === 0) return 0;
    this.sink.cork();
    let left = n;
    for (const c of chunks) {
      if (left === 0) break;
      const part = c.length <= left ? c : c.subarray(0, left);
      if (part.length > 0) this.hand(part);
      left -= part.length;
    }
    this.sink.uncork();
    return n;
  }

  /**
   * True when a send would take bytes at once (FD_WRITE, select()'s writefds): room in the
   * buffer, or with SO_SNDBUF 0, nothing still on its way to the kernel.
   */
  get writable(): boolean {
    return this.live === 0 && this.roomForNew() > 0;
  }

  /** True when a whole send of this size would be accepted at once. */
  fitsNow(total: number): boolean {
    // With SO_SNDBUF 0 nothing is buffered: a send is done only when the kernel took all of it.
    if (this.cap === 0) return total === 0 && this.live === 0 && this.holdTimer === null;
    return this.live === 0 && this.roomForNew() >= total;
  }

  private retryTimer: NodeJS.Timeout | null = null;

  /** The kernel had no room for a direct send; try again shortly (nothing else would wake the queue). */
  private retryLater(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, 1);
  }

  /**
   * Queues an operation behind older ones; it may complete before this returns. The entry returned
   * cancels it alone (cancelQueued) and takes a streamed send's next pieces (append).
   */
  submit(op: SendOp): QueuedSend {
    const chunks = op.streamed ? [...op.chunks] : op.chunks;
    const available = op.streamed ? byteLength(chunks) : op.total;
    const q: QueuedOp = { op, chunks, available, accepted: 0, handed: 0, chunk: 0, offset: 0 };
    this.queue.push(q);
    this.live++;
    this.queuedBytes += available;
    this.meter(available);
    this.pump();
    // Still queued (waiting, or handed ahead and not yet accepted): it may be here a while.
    if (!isDead(q)) unpinWaiting(q);
    return q;
  }

  /** The oldest operation still waiting, passing over dead ones; undefined when none waits. */
  private front(): QueuedOp | undefined {
    const queue = this.queue;
    while (this.head < queue.length && isDead(queue[this.head]!)) {
      queue[this.head++] = PASSED;
      this.deadInside--;
    }
    return queue[this.head];
  }

  /** The front operation q is done (completed): its slot is passed. */
  private passFront(q: QueuedOp): void {
    q.chunk = DEAD;
    this.queue[this.head++] = PASSED;
    this.live--;
    this.compactIfWorth();
  }

  /** q leaves the queue where it is (cancelled): it is dead, and lets go of its bytes. */
  private kill(q: QueuedOp): void {
    q.chunk = DEAD;
    q.chunks = NO_CHUNKS;
    this.live--;
    this.deadInside++;
  }

  /** Drops the passed slots and the dead operations once they are many and half the array. */
  private compactIfWorth(): void {
    const queue = this.queue;
    const passedMany = this.head > COMPACT_AFTER && this.head * 2 > queue.length;
    const deadMany = this.deadInside > COMPACT_AFTER && this.deadInside * 2 > queue.length - this.head;
    if (!passedMany && !deadMany) return;
    const kept: QueuedOp[] = [];
    for (let i = this.head; i < queue.length; i++) if (!isDead(queue[i]!)) kept.push(queue[i]!);
    this.queue = kept;
    this.head = 0;
    this.deadInside = 0;
  }

  /**
   * The next piece of a streamed operation. Returns false when the operation is no longer queued
   * (completed or cancelled): the piece is not taken.
   */
  append(q: QueuedSend, piece: Uint8Array): boolean {
    if (isDead(q) || !q.op.streamed || q.available + piece.length > q.op.total) return false;
    if (piece.length === 0) return true;
    // (A streamed send's chunks are its own array: submit() copied them.)
    (q.chunks as Uint8Array[]).push(unpinned(piece));
    q.available += piece.length;
    this.queuedBytes += piece.length;
    this.meter(piece.length);
    this.pump();
    return true;
  }

  /**
   * Completes waiting operations that match with the given code (cancellation); bytes of an
   * operation already accepted stay on their way to the peer. Returns how many were cancelled.
   *
   * how: 'cancel' (SIO_FLUSH, a thread's exit) leaves alone an operation whose every byte the
   * kernel side already has: it is no longer queued, and completes when the kernel is done.
   * 'close' completes such an operation too (with success: its bytes still go, then FIN), as
   * nothing else would once the socket is closed. 'broken': the connection failed; only
   * accepted bytes count.
   */
  cancel(errno: number, match: (op: SendOp) => boolean = () => true, how: CancelHow = 'cancel'): number {
    let n = 0;
    // Whether every operation looked at so far was handed over whole (or had nothing to hand
    // over), and how many there were: an empty send behind such sends is as good as sent.
    let wholeSoFar = true;
    let seen = 0;
    // (The queue may be compacted by what a completion does: the loop keeps the array it began with.)
    const queue = this.queue;
    for (let i = this.head; i < queue.length; i++) {
      const q = queue[i]!;
      if (isDead(q)) continue;
      const total = q.op.total;
      const handedWhole = q.handed === total && (total > 0 || (wholeSoFar && seen > 0));
      wholeSoFar &&= q.handed === total;
      seen++;
      if (match(q.op) && this.drop(q, errno, how, handedWhole)) n++;
    }
    this.compactIfWorth();
    // Not at once: one cancellation can be several calls in a row (close() and SIO_FLUSH cancel
    // overlapped and blocking sends apart, a thread exit one operation at a time), and a pump
    // in between would hand over bytes of an operation that the next call cancels.
    this.pumpSoon();
    return n;
  }

  /** cancel() for one operation, by the entry submit() gave: no walk of the queue (but for an empty send). */
  cancelQueued(errno: number, q: QueuedSend, how: CancelHow = 'cancel'): number {
    if (isDead(q)) return 0;
    const total = q.op.total;
    let handedWhole = q.handed === total;
    if (handedWhole && total === 0) {
      // An empty send is as good as sent behind operations all handed over whole, and at least one.
      let seen = 0;
      for (let i = this.head; i < this.queue.length && this.queue[i] !== q; i++) {
        const before = this.queue[i]!;
        if (isDead(before)) continue;
        seen++;
        if (before.handed !== before.op.total) handedWhole = false;
      }
      handedWhole &&= seen > 0;
    }
    const n = this.drop(q, errno, how, handedWhole) ? 1 : 0;
    this.compactIfWorth();
    this.pumpSoon();
    return n;
  }

  /**
   * Takes q out of the queue and completes it, unless it is past cancelling (how 'cancel' and
   * every byte with the kernel side already). True when it was aborted (counted as cancelled).
   */
  private drop(q: QueuedOp, errno: number, how: CancelHow, handedWhole: boolean): boolean {
    const total = q.op.total;
    // An operation whose every byte is already with the kernel (SO_SNDBUF 0) is no longer
    // queued: only a broken connection fails it; otherwise it completes when the kernel is done.
    if (how === 'cancel' && q.accepted === total && total > 0) return false;
    // What it held and had not handed over (a streamed send holds only the pieces it got).
    this.queuedBytes -= q.available - q.handed;
    this.meter(-(q.available - q.handed));
    this.kill(q);
    if (how === 'broken') {
      // Bytes handed ahead never reach the peer now: only what was accepted counts.
      q.op.complete(errno, q.accepted);
      return true;
    }
    if (handedWhole) {
      // Handed over whole (an empty send behind such sends too): node cannot take the bytes
      // back and the peer will get them, so the send is done, as if the buffer had taken it.
      // Only the send being handed over when the cancellation came is cut, as on Windows.
      q.op.complete(0, total);
      return false;
    }
    // Bytes already handed ahead will reach the peer: the count is what the peer gets.
    q.op.complete(errno, q.handed);
    return true;
  }

  private pumpScheduled = false;

  private pumpSoon(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.sink.cork();
    try {
      // Room that freed up goes to bytes handed ahead, also those of cancelled operations.
      this.acceptAhead();
      for (let q = this.front(); q !== undefined; q = this.front()) {
        if (q.op.direct) {
          if (this.inKernelHandoff > 0 || this.ahead > 0 || this.holdTimer !== null || !this.sink.sendDirect) break;
          const rest = contiguous(q.chunks, q.op.total).subarray(q.accepted);
          const n = rest.length === 0 ? 0 : this.sink.sendDirect(rest, q.op.direct);
          if (n < 0) {
            this.retryLater();
            break;
          }
          q.accepted += n;
          this.takenTotal += n;
          q.op.progress?.(q.accepted);
          q.handed += n;
          this.queuedBytes -= n;
          this.meter(-n);
          if (q.accepted < q.op.total) {
            this.retryLater();
            break;
          }
          this.passFront(q);
          q.op.complete(0, q.op.total);
          continue;
        }
        this.feed(q);
        if (q.accepted < q.op.total) break;
        // SO_SNDBUF 0: the operation completes when the kernel has taken its last byte.
        if (this.cap === 0 && this.inKernelHandoff > 0) break;
        this.passFront(q);
        q.op.complete(0, q.op.total);
      }
      // Operations behind an unfinished one: their bytes may go ahead, in order.
      let prev = this.front();
      for (let i = this.head + 1; prev !== undefined && i < this.queue.length; i++) {
        const q = this.queue[i]!;
        if (isDead(q)) continue;
        if (prev.handed < prev.op.total || q.op.direct) break;
        this.feed(q);
        prev = q;
      }
    } finally {
      this.sink.uncork();
      this.pumping = false;
    }
    this.sink.afterPump?.();
  }

  /** Hands over what the buffer has room for of q, then what may go ahead. */
  private feed(q: QueuedOp): void {
    // Held: nothing goes, not even ahead.
    if (this.holdTimer !== null) return;
    while (q.handed < q.op.total) {
      const room = this.roomForNew();
      const aheadRoom = this.cap * AHEAD_FACTOR - this.ahead;
      if (room === 0 && aheadRoom <= 0) break;
      // A streamed send whose next piece has not arrived waits for it (append() pumps again).
      const c = q.chunks[q.chunk];
      if (!c) break;
      const take = Math.min(c.length - q.offset, room > 0 ? room : aheadRoom);
      if (take > 0) {
        const part = q.offset === 0 && take === c.length ? c : c.subarray(q.offset, q.offset + take);
        q.handed += take;
        if (room > 0) {
          // The bytes move from the queue to the handoff: hand() meters them again.
          this.meter(-take);
          this.hand(part);
          q.accepted += take;
          q.op.progress?.(q.accepted);
          this.queuedBytes -= take;
        } else this.handAhead(q, part);
      }
      q.offset += take;
      if (q.offset >= c.length) {
        // A streamed send lets go of each piece once handed over: it holds only what is to come.
        if (q.op.streamed) (q.chunks as Uint8Array[])[q.chunk] = NO_BYTES;
        q.chunk++;
        q.offset = 0;
      }
    }
  }

  /** Room in the buffer goes first to bytes handed ahead: they are the oldest waiting. */
  private acceptAhead(): void {
    let room = this.ahead > 0 ? this.room() : 0;
    while (room > 0 && this.firstUnaccepted < this.aheadPieces.length) {
      const a = this.aheadPieces[this.firstUnaccepted]!;
      const x = Math.min(a.n - a.accepted, room);
      a.accepted += x;
      a.q.accepted += x;
      this.takenTotal += x;
      a.q.op.progress?.(a.q.accepted);
      this.ahead -= x;
      this.queuedBytes -= x;
      this.inKernelHandoff += x;
      if (a.accepted === a.n) this.firstUnaccepted++;
      room = this.room();
    }
  }

  /** Hands a piece of a waiting operation to node ahead of acceptance (see AHEAD_FACTOR). */
  private handAhead(q: QueuedOp, view: Uint8Array): void {
    // Node's queue holds it until the kernel takes it.
    const chunk = unpinned(view);
    // After the small chunks accepted before it.
    this.flushStaged();
    const piece: AheadPiece = { q, n: chunk.length, accepted: 0 };
    this.aheadPieces.push(piece);
    this.ahead += piece.n;
    this.sink.write(chunk, (err) => {
      // The kernel has the piece, or the connection failed. (Bytes stay metered from submit()
      // until now.) Node finishes writes in order, so this is the oldest piece, except when a
      // write to a destroyed socket fails at once: look it up.
      const at = this.aheadPieces.indexOf(piece);
      this.aheadPieces.splice(at, 1);
      if (at < this.firstUnaccepted) this.firstUnaccepted--;
      this.inKernelHandoff -= piece.accepted;
      const rest = piece.n - piece.accepted;
      this.ahead -= rest;
      // Bytes that never reached the kernel are not sent: the connection's failure ends the op.
      if (!err) {
        piece.q.accepted += rest;
        this.takenTotal += rest;
        piece.q.op.progress?.(piece.q.accepted);
      }
      this.queuedBytes -= rest;
      this.meter(-piece.n);
      this.afterWrite();
    });
  }

  private hand(chunk: Uint8Array): void {
    const n = chunk.length;
    this.inKernelHandoff += n;
    this.takenTotal += n;
    this.meter(n);
    if (n >= COALESCE_BELOW) {
      this.flushStaged();
      this.write(unpinned(chunk));
    } else if (this.single === null && this.stagedTo === this.stageFrom) {
      this.single = unpinned(chunk);
      this.flushSoon();
    } else {
      if (this.single !== null) {
        this.copyToStage(this.single);
        this.single = null;
      }
      this.copyToStage(chunk);
    }
  }

  /** Writes accepted bytes to node; they count as on their way to the kernel until its callback. */
  private write(chunk: Uint8Array): void {
    const n = chunk.length;
    this.sink.write(chunk, () => {
      this.inKernelHandoff -= n;
      this.meter(-n);
      this.afterWrite();
    });
  }

  private waitsForTurn = false;

  /** A write finished: pump, unless finished writes have pumped enough in this turn (PUMPS_PER_TURN). */
  private afterWrite(): void {
    if (!turnScheduled) {
      turnScheduled = true;
      setImmediate(nextTurn);
    }
    if (pumpsThisTurn++ < PUMPS_PER_TURN) return this.pump();
    if (this.waitsForTurn) return;
    this.waitsForTurn = true;
    waitingTurn.push(this);
  }

  /** The next turn has come (nextTurn). */
  pumpInNewTurn(): void {
    this.waitsForTurn = false;
    this.pump();
  }

  private copyToStage(chunk: Uint8Array): void {
    if (this.stage !== null && this.stagedTo + chunk.length > this.stage.length) this.writeStage();
    if (this.stage === null || this.stagedTo + chunk.length > this.stage.length) {
      this.stage = Buffer.allocUnsafe(STAGE_BYTES);
      this.stageFrom = this.stagedTo = 0;
    }
    this.stage.set(chunk, this.stagedTo);
    this.stagedTo += chunk.length;
  }

  private writeStage(): void {
    if (this.stagedTo === this.stageFrom) return;
    const bytes = this.stage!.subarray(this.stageFrom, this.stagedTo);
    this.stageFrom = this.stagedTo;
    this.write(bytes);
  }

  private flushSoon(): void {
    if (this.flushDue) return;
    this.flushDue = true;
    process.nextTick(() => {
      this.flushDue = false;
      this.flushStaged();
    });
  }

  /**
   * Writes the small chunks handed over so far, in order. Runs at the end of the turn, before any
   * larger write, and before the connection is ended (the socket calls it before its FIN).
   */
  flushStaged(): void {
    if (this.single !== null) {
      const c = this.single;
      this.single = null;
      this.write(c);
    }
    this.writeStage();
  }
}
