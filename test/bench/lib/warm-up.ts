/** Warming a path up before it is measured. */
import { now } from './stats.js';

/** Full runs warm each side up for at least this long before measuring. */
export const WARM_UP_SECONDS = 3;

/**
 * Repeats a warm-up run (which returns its rate, units per second) until WARM_UP_SECONDS have
 * passed, and returns how many units make about targetSeconds at the last run's rate (at least
 * min). Throughput through the daemon keeps climbing for a few seconds after start (compiled code,
 * heap and socket buffers settling): one short warm-up left the first repetition of the bulk
 * scenario about a third slower than the last.
 */
export async function warmUp(min: number, targetSeconds: number, run: () => Promise<number>): Promise<number> {
  const until = now() + WARM_UP_SECONDS * 1e9;
  let rate: number;
  do rate = await run();
  while (now() < until);
  return Math.max(min, Math.round(rate * targetSeconds));
}
