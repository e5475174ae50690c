/**
 * Gives memory back to the system after a burst. Bytes a session held (replies waiting for a slow
 * client, sends to a peer that does not read) are freed when it ends, but glibc keeps freed heap
 * memory for reuse, so the daemon's resident size stayed tens of MiB above where it started.
 * Shortly after a session ends or a connection is given up on (at most once a second) the daemon
 * asks glibc to return what it can.
 */
import { libc } from './native/libc.js';

/** Long enough for the frees that follow (write callbacks of a destroyed connection) to happen. */
const DELAY_MS = 100;
const MIN_INTERVAL_MS = 1000;

let scheduled: NodeJS.Timeout | null = null;
let lastTrim = -Infinity;

/** Trims at once (after a forced garbage collection, say). */
export function trimNow(): void {
  lastTrim = performance.now();
  libc()?.trimHeap();
}

export function trimSoon(): void {
  if (scheduled) return;
  const wait = Math.max(DELAY_MS, lastTrim + MIN_INTERVAL_MS - performance.now());
  scheduled = setTimeout(() => {
    scheduled = null;
    trimNow();
  }, wait);
  scheduled.unref();
}
