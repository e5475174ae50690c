/**
 * What the garbage collector saw since counting began: collections by kind, their pauses,
 * and the bytes allocated on the JavaScript heap between them. /stats reports it; the benchmark
 * divides it by the bytes sent to give allocations per MB beside system calls per MB.
 *
 * Allocation is not counted as it happens (that would cost every allocation); V8's GCProfiler
 * records the heap before and after each collection, and what was allocated between two
 * collections is what the heap grew by until the second began (nothing on it is freed without
 * one). ArrayBuffer memory outside the heap (node's socket reads, large Buffers) cannot be
 * counted this way: V8 frees it when its sweeper gets to it, between collections, so its size
 * before and after them misses what came and went (measured: 64 MiB of Buffers showed as 32).
 * The profiler's records are folded into the totals on every read and every FOLD_MS, so that
 * what it holds stays small.
 */
import * as v8 from 'node:v8';

/**
 * How often the profiler's records are folded into the totals when nobody asks. A record is
 * about 1.5 KB of JSON (the heap's spaces before and after), and a busy daemon makes up to a few
 * hundred collections a second: folding every second keeps that under a megabyte.
 */
export const FOLD_MS = 1000;

export interface GcTotals {
  /** Young-generation collections (scavenges, or minor mark-sweeps). */
  minor: number;
  /** Full collections (mark-sweep-compact) and the rest (incremental marking steps, weak callbacks). */
  major: number;
  /** Time spent in them, milliseconds. */
  pauseMs: number;
  /** Bytes allocated on the JavaScript heap. */
  heapAllocatedBytes: number;
}

interface HeapSizes {
  usedHeapSize: number;
}

/** One record of the profiler's (the fields used here). */
interface GcRecord {
  gcType: string;
  cost: number;
  beforeGC: { heapStatistics: HeapSizes };
  afterGC: { heapStatistics: HeapSizes };
}

export class GcStats {
  private readonly sums: GcTotals = { minor: 0, major: 0, pauseMs: 0, heapAllocatedBytes: 0 };
  private profiler: v8.GCProfiler | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The heap when last looked at: after the last collection, or at the last fold. */
  private last: HeapSizes = now();

  start(): this {
    if (this.profiler !== null) return this;
    this.last = now();
    this.profiler = new v8.GCProfiler();
    this.profiler.start();
    this.timer = setInterval(() => this.fold(), FOLD_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.profiler === null) return;
    this.fold();
    this.profiler.stop();
    this.profiler = null;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** The totals so far, up to this moment (allocation since the last collection included). */
  totals(): GcTotals {
    this.fold();
    return { ...this.sums };
  }

  private fold(): void {
    if (this.profiler === null) return;
    const records = (this.profiler.stop()?.statistics ?? []) as unknown as GcRecord[];
    this.profiler.start();
    for (const r of records) {
      this.grew(r.beforeGC.heapStatistics);
      this.last = r.afterGC.heapStatistics;
      if (r.gcType === 'Scavenge' || r.gcType === 'MinorMarkSweep') this.sums.minor++;
      else this.sums.major++;
      // cost is in microseconds.
      this.sums.pauseMs += r.cost / 1000;
    }
    const current = now();
    this.grew(current);
    this.last = current;
  }

  /** Adds what the heap grew by since last, to sizes. */
  private grew(sizes: HeapSizes): void {
    this.sums.heapAllocatedBytes += Math.max(0, sizes.usedHeapSize - this.last.usedHeapSize);
  }
}

/**
 * The process's one collector, shared by the daemons a process runs (tests start many): the
 * first to start runs the profiler, the last to stop ends it.
 */
let users = 0;
const processGc = new GcStats();

/** Starts counting for one more user; the function returned ends its use. */
export function useProcessGcStats(): { stats: GcStats; release: () => void } {
  if (users++ === 0) processGc.start();
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (--users === 0) processGc.stop();
  };
  return { stats: processGc, release };
}

function now(): HeapSizes {
  const s = v8.getHeapStatistics();
  return { usedHeapSize: s.used_heap_size };
}
