/**
 * The bytes a TCP connection has received and WSPRecv has not yet taken: SO_RCVBUF of them at most,
 * beyond which the socket stops reading from the kernel (so the peer sees TCP flow control).
 */
export class ReceiveBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;

  /** count: told of every change in the bytes held (the session's and the daemon's totals). */
  constructor(private readonly count: (delta: number) => void = () => undefined) {}

  /** Bytes waiting (FIONREAD). */
  get size(): number {
    return this.bytes;
  }

  /** Drops every byte waiting (a reset made them undeliverable). */
  clear(): void {
    this.count(-this.bytes);
    this.chunks = [];
    this.bytes = 0;
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    this.count(chunk.length);
  }

  /** Takes up to want bytes (leaves them with peek); a view of the first chunk when it holds them all. */
  take(want: number, peek: boolean): Uint8Array {
    const n = Math.min(want, this.bytes);
    const first = this.chunks[0];
    if (first && first.length >= n) {
      const data = first.subarray(0, n);
      if (!peek) {
        if (first.length === n) this.chunks.shift();
        else this.chunks[0] = first.subarray(n);
        this.bytes -= n;
        this.count(-n);
      }
      return data;
    }
    const all = Buffer.concat(this.chunks, this.bytes);
    const data = all.subarray(0, n);
    if (peek) this.chunks = [all];
    else {
      this.chunks = n < all.length ? [all.subarray(n)] : [];
      this.bytes -= n;
      this.count(-n);
    }
    return data;
  }
}
