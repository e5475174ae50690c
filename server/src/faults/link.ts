/**
 * A link fault's slow link (proto/README.md section 19): the bytes a stream socket hands to its
 * connection leave at bytesPerSecond, each latencyMs after it was handed over. A write counts as
 * done only once its last byte has gone to the connection, so the socket's transport buffer fills
 * up behind the link and the caller meets real backpressure (WSAEWOULDBLOCK, blocking, pending).
 */

/** Writes go out in slices of at most this long a stretch of the link, so the drain is smooth. */
const SLICE_MS = 20;
const MIN_SLICE = 256;

interface Queued {
  chunk: Uint8Array;
  offset: number;
  /** When the chunk was handed over: it may leave latencyMs after. */
  at: number;
  done: (err?: Error | null) => void;
}

export class SlowLink {
  private readonly queue: Queued[] = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the link is free to carry the next slice. */
  private freeAt = 0;
  private closed = false;
  /** Run once the queue is empty (a FIN waiting behind the bytes already counted as sent). */
  private emptied: Array<() => void> = [];

  constructor(
    private readonly bytesPerSecond: number,
    private readonly latencyMs: number,
    /** Writes to the real connection; done fires once node has written it. */
    private readonly write: (slice: Uint8Array, done: (err?: Error | null) => void) => void,
  ) {}

  /** Queues chunk; done fires when its last byte has been written to the connection. */
  send(chunk: Uint8Array, done: (err?: Error | null) => void): void {
    if (this.closed) return done(new Error('closed'));
    this.queue.push({ chunk, offset: 0, at: performance.now(), done });
    this.schedule();
  }

  /** Bytes handed to the link and not yet written to the connection. */
  get queuedBytes(): number {
    let n = 0;
    for (const q of this.queue) n += q.chunk.length - q.offset;
    return n;
  }

  /** Runs f once every byte handed to the link has been written to the connection (now if none is left). */
  whenEmpty(f: () => void): void {
    if (this.queue.length === 0 || this.closed) f();
    else this.emptied.push(f);
  }

  /** The connection is gone: every queued write is done with an error, no timer stays. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.emptied = [];
    for (const q of this.queue.splice(0)) q.done(new Error('closed'));
  }

  private schedule(): void {
    if (this.timer || this.queue.length === 0) return;
    const now = performance.now();
    const q = this.queue[0]!;
    const wait = Math.max(this.freeAt - now, q.at + this.latencyMs - now, 0);
    this.timer = setTimeout(this.tick, wait);
    this.timer.unref();
  }

  private readonly tick = (): void => {
    this.timer = null;
    const q = this.queue[0];
    if (!q || this.closed) return;
    const sliceMax = Math.max(MIN_SLICE, Math.floor((this.bytesPerSecond * SLICE_MS) / 1000));
    const n = Math.min(sliceMax, q.chunk.length - q.offset);
    const slice = q.chunk.subarray(q.offset, q.offset + n);
    q.offset += n;
    this.freeAt = Math.max(this.freeAt, performance.now()) + (n * 1000) / this.bytesPerSecond;
    const last = q.offset >= q.chunk.length;
    if (last) this.queue.shift();
    this.write(slice, last ? q.done : noop);
    if (this.queue.length === 0 && this.emptied.length > 0) for (const f of this.emptied.splice(0)) f();
    this.schedule();
  };
}

function noop(): void {}
