/**
 * A seeded xorshift32 generator: the same seed gives the same campaign, so a defect it finds can be
 * replayed with `--seed`. Not for anything that must be unpredictable.
 */
export class Rng {
  private x: number;

  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
  }

  u32(): number {
    this.x ^= this.x << 13;
    this.x >>>= 0;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    this.x >>>= 0;
    return this.x;
  }

  /** An integer from 0 to n - 1. */
  int(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }

  /** An integer from lo to hi, both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }

  /** One of the entries, drawn with the given weights. */
  weighted<T>(entries: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of entries) total += w;
    let r = this.u32() % total;
    for (const [w, v] of entries) {
      if (r < w) return v;
      r -= w;
    }
    return entries[entries.length - 1]![1];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  /** A new generator whose sequence depends on this one's: sub-streams that do not disturb each other. */
  fork(): Rng {
    return new Rng(this.u32() ^ 0x9e3779b9);
  }
}
