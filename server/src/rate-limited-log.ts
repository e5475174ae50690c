/**
 * Debug lines about client mistakes, at most a few per second. A client decides how many
 * mistakes it makes, so it must not decide how much the daemon writes: past the budget lines are
 * counted, and the count is reported with the next line that gets through. Error level is kept
 * for the daemon's own faults; nothing a client sends is logged above debug.
 */
import type { Logger } from 'pino';

const LINES_PER_SECOND = 20;

export class RateLimitedLog {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(private readonly logger: Logger) {}

  log(fields: Record<string, unknown>, msg: string): void {
    const log = this.logger;
    if (!log.isLevelEnabled('debug')) return;
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow >= LINES_PER_SECOND) {
      this.suppressed++;
      return;
    }
    this.inWindow++;
    if (this.suppressed > 0) {
      log.debug({ ...fields, suppressed: this.suppressed }, `${msg} (${this.suppressed} similar lines suppressed)`);
      this.suppressed = 0;
    } else log.debug(fields, msg);
  }
}
