/**
 * The main-thread side of the bystander (lib/bystander-worker.ts): start it on a daemon, point it
 * at a new daemon after a crash and restart, stop it and collect its report.
 */
import { Worker } from 'node:worker_threads';
import type { BystanderReport } from './bystander-worker.js';
import { within } from './util.js';

export type { BystanderReport } from './bystander-worker.js';

export class Bystander {
  private readonly done: Promise<BystanderReport>;

  private constructor(private readonly worker: Worker) {
    this.done = new Promise((resolve, reject) => {
      worker.on('message', (m: { type: string; report?: BystanderReport }) => {
        if (m.type === 'report') resolve(m.report!);
      });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the bystander worker exited (${code}) without a report`)));
    });
    this.done.catch(() => undefined);
  }

  /** Starts the bystander on url; resolves once its first session works (or after 10 s regardless). */
  static async start(url: string, opts: { intervalMs?: number; peerPort?: number } = {}): Promise<Bystander> {
    const worker = new Worker(new URL('./bystander-worker.js', import.meta.url), { workerData: { url, intervalMs: opts.intervalMs ?? 20, peerPort: opts.peerPort ?? 0 } });
    const b = new Bystander(worker);
    await within(new Promise<void>((r) => worker.on('message', (m: { type: string }) => m.type === 'ready' && r())), 10000, undefined);
    return b;
  }

  /** The daemon was restarted at url: carry on there. */
  switchTo(url: string): void {
    this.worker.postMessage({ cmd: 'switch', url });
  }

  /**
   * Starts timing the bystander's calls from now; the function returned ends the window and
   * gives its longest call (one still waiting counts with its wait so far), or null when the
   * worker does not answer.
   */
  window(): () => Promise<number | null> {
    this.worker.postMessage({ cmd: 'window-open' });
    return () => {
      const answer = new Promise<number>((resolve) => {
        const on = (m: { type: string; maxMs?: number }): void => {
          if (m.type !== 'window') return;
          this.worker.off('message', on);
          resolve(m.maxMs ?? 0);
        };
        this.worker.on('message', on);
      });
      this.worker.postMessage({ cmd: 'window-close' });
      return within(answer, 5000, null);
    };
  }

  async stop(): Promise<BystanderReport> {
    this.worker.postMessage({ cmd: 'stop' });
    const r = await within(this.done, 15000, null);
    await this.worker.terminate();
    return r ?? { calls: 0, latenciesMs: [], sessions: 0, disturbedSessions: 1, events: ['the bystander did not report within 15 s'], bytesSent: 0, bytesLost: 0, slowest: [] };
  }
}
