/** Small statistics helpers: medians, percentiles and summaries of repeated measurements. */

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Every repetition's value, in run order. */
  runs: number[];
}

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile (p in 0..100) of an unsorted list; NaN for an empty one. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(runs: readonly number[]): Summary {
  const finite = runs.filter((x) => Number.isFinite(x));
  return { median: median(finite), min: finite.length ? Math.min(...finite) : NaN, max: finite.length ? Math.max(...finite) : NaN, runs: [...runs] };
}

/** Nanoseconds on CLOCK_MONOTONIC, which every process of this machine shares. */
export function now(): number {
  return Number(process.hrtime.bigint());
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
