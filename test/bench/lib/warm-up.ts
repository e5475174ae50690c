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
  let rate = 0;
  await repeatFor(WARM_UP_SECONDS, async () => {
    rate = await run();
  });
  return Math.max(min, Math.round(rate * targetSeconds));
}

/** Runs run() again and again, at least once, until `seconds` have passed. */
export async function repeatFor(seconds: number, run: () => Promise<void>): Promise<void> {
  const until = now() + seconds * 1e9;
  do await run();
  while (now() < until);
}
