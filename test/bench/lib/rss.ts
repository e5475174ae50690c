/**
 * The resident set of another process (the daemon) while something runs, read from
 * /proc/<pid>/status, so that measuring it costs the measured process nothing. The peak is the
 * kernel's own high-water mark (VmHWM, reset by writing 5 to /proc/<pid>/clear_refs when the
 * probe starts), so no short spike between two samples is missed; the samples (every everyMs)
 * are kept for the record and stand in for the peak where the mark cannot be reset.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface RssWindow {
  /** VmRSS when the probe started, bytes. */
  before: number;
  /** The most the process held while the probe ran, bytes. */
  peak: number;
  /** VmRSS when the probe stopped, bytes. */
  after: number;
  /** Where the peak comes from: the kernel's high-water mark, or only the samples. */
  peakFrom: 'VmHWM' | 'samples';
  samples: number;
}

/** VmRSS and VmHWM of pid, in bytes. */
export function procMemory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

export class RssProbe {
  private readonly timer: NodeJS.Timeout;
  private readonly hwmReset: boolean;
  readonly before: number;
  private peak: number;
  private samples = 0;

  constructor(
    private readonly pid: number,
    everyMs = 50,
  ) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      this.hwmReset = true;
    } catch {
      this.hwmReset = false;
    }
    this.before = procMemory(pid).rss;
    this.peak = this.before;
    this.timer = setInterval(() => {
      try {
        this.sample();
      } catch {
        /* the process is gone: stop() will say so */
      }
    }, everyMs);
  }

  private sample(): number {
    const { rss } = procMemory(this.pid);
    this.samples++;
    this.peak = Math.max(this.peak, rss);
    return rss;
  }

  stop(): RssWindow {
    clearInterval(this.timer);
    const after = this.sample();
    const peak = this.hwmReset ? Math.max(this.peak, procMemory(this.pid).hwm) : this.peak;
    return { before: this.before, peak, after, peakFrom: this.hwmReset ? 'VmHWM' : 'samples', samples: this.samples };
  }
}
