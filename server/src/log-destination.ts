/**
 * Where the daemon's log lines go: standard output, but never at the cost of the daemon. pino's
 * default destination writes synchronously, so a reader that stops reading (a full pipe) froze
 * the whole daemon, signals included. process.stdout writes to a pipe without blocking; lines
 * wait in memory up to a bound while the reader is slow and are dropped beyond it, and a reader
 * that is gone (EPIPE) only ends the logging.
 */
import { once } from 'node:events';
import type { DestinationStream } from 'pino';

/** Log bytes held while standard output does not take them; beyond, lines are dropped. */
export const MAX_HELD_LOG_BYTES = 1024 * 1024;

export interface LogDestination {
  readonly stream: DestinationStream;
  /** Lines dropped because standard output did not take them. */
  dropped(): number;
  /** Waits until held lines are written, for at most ms (a stuck reader must not hold up an exit). */
  settle(ms: number): Promise<void>;
}

export function stdoutDestination(out: NodeJS.WritableStream & { writableLength: number } = process.stdout): LogDestination {
  let dropped = 0;
  let gone = false;
  out.on('error', () => {
    gone = true;
  });
  return {
    stream: {
      write(line: string): void {
        if (gone || out.writableLength > MAX_HELD_LOG_BYTES) {
          dropped++;
          return;
        }
        out.write(line);
      },
    },
    dropped: () => dropped,
    async settle(ms) {
      if (gone || out.writableLength === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([once(out, 'drain').catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    },
  };
}
