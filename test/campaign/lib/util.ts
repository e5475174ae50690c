/** Small helpers shared by the campaign: timing, data patterns, percentiles. */

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** p's value, or fallback when p takes longer than ms; the timer never outlives p. */
export function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(fallback);
      },
    );
  });
}

/** Polls cond every 25 ms until it holds or ms pass; returns its last value. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(25);
  }
  return cond();
}

const PATTERN_LEN = 65521; // a prime: a stream that lost or repeated a stretch shows it unless the stretch is a multiple of this
const patterns = new Map<number, Buffer>();

/**
 * Deterministic bytes: byte i of stream `seed` depends on (seed, i mod 65521) only, so a receiver
 * can check any stretch of a stream without having kept what was sent, and making the bytes is a
 * copy (the campaign shares two cores with the daemon it measures).
 */
export function streamBytes(seed: number, offset: number, n: number): Buffer {
  let base = patterns.get(seed);
  if (!base) {
    base = Buffer.allocUnsafe(PATTERN_LEN * 2);
    let x = (seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < PATTERN_LEN; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      base[i] = base[i + PATTERN_LEN] = x & 0xff;
    }
    patterns.set(seed, base);
  }
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  let from = offset % PATTERN_LEN;
  while (at < n) {
    const take = Math.min(n - at, PATTERN_LEN);
    base.copy(out, at, from, from + take);
    at += take;
    from = (from + take) % PATTERN_LEN;
  }
  return out;
}

/** The value at quantile q (0..1) of the samples, or null when there are none. */
export function percentile(samples: readonly number[], q: number): number | null {
  if (samples.length === 0) return null;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export const MiB = 1024 * 1024;

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
