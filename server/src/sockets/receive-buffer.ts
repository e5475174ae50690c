/**
 * The bytes a TCP connection has received and WSPRecv has not yet taken: SO_RCVBUF of them at most,
 * beyond which the socket stops reading from the kernel (so the peer sees TCP flow control).
 */
/**
 * A chunk this small is copied into the tail slab instead of being kept as it came: node gives
 * each read a Buffer of its own, about 100 bytes of overhead, and a peer writing one byte at a
 * time made 7 MB of received bytes cost 800 MB.
 */
const COPY_BELOW = 1024;
/** The first slab of a run of small chunks; each next one is twice as large, up to MAX_SLAB. */
const FIRST_SLAB = 256;
const MAX_SLAB = 16 * 1024;

export class ReceiveBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** The slab small chunks are copied into; the last of chunks is its bytes [start, end) while set. */
  private tail: { slab: Buffer; start: number; end: number } | null = null;

  /** count: told of every change in the bytes held (the session's and the daemon's totals). */
  constructor(private readonly count: (delta: number) => void = () => undefined) {}

  /** Bytes waiting (FIONREAD). */
  get size(): number {
    return this.bytes;
  }

  /** How many pieces of memory hold them (small chunks share slabs). */
  get pieces(): number {
    return this.chunks.length;
  }

  /** Drops every byte waiting (a reset made them undeliverable). */
  clear(): void {
    this.count(-this.bytes);
    this.chunks = [];
    this.bytes = 0;
    this.tail = null;
  }

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    if (n >= COPY_BELOW) {
      this.chunks.push(chunk);
      this.tail = null;
    } else {
      let t = this.tail;
      if (t !== null && t.end + n <= t.slab.length) {
        chunk.copy(t.slab, t.end);
        t.end += n;
        this.chunks[this.chunks.length - 1] = t.slab.subarray(t.start, t.end);
      } else {
        const size = Math.min(MAX_SLAB, t === null ? FIRST_SLAB : t.slab.length * 2);
        t = this.tail = { slab: Buffer.allocUnsafe(Math.max(size, n)), start: 0, end: n };
        chunk.copy(t.slab, 0);
        this.chunks.push(t.slab.subarray(0, n));
      }
    }
    this.bytes += n;
    this.count(n);
  }

  /** Takes up to want bytes (leaves them with peek); a view of the first chunk when it holds them all. */
  take(want: number, peek: boolean): Uint8Array {
    const n = Math.min(want, this.bytes);
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const data = first.subarray(0, n);
      if (!peek) {
        // The first chunk is the tail's when it is the only one.
        const isTail = this.tail !== null && this.chunks.length === 1;
        if (first.length === n) {
          this.chunks.shift();
          if (isTail) this.tail = null;
        } else {
          this.chunks[0] = first.subarray(n);
          if (isTail) this.tail!.start += n;
        }
        this.bytes -= n;
        this.count(-n);
      }
      return data;
    }
    const all = Buffer.concat(this.chunks, this.bytes);
    const data = all.subarray(0, n);
    this.tail = null;
    if (peek) this.chunks = [all];
    else {
      this.chunks = n < all.length ? [all.subarray(n)] : [];
      this.bytes -= n;
      this.count(-n);
    }
    return data;
  }
}
