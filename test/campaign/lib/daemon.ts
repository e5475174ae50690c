/**
 * The daemon under attack, as its own process: `node --expose-gc server/dist/src/main.js --port 0
 * --log-level info ...`. The campaign reads its URL from the JSON log line that carries `url`,
 * watches its log for internal errors, samples its memory and CPU from /proc, and stops it by its
 * PID. Every daemon started here is killed when the campaign process exits, however it exits, so
 * a failed run leaves nothing behind.
 *
 * --expose-gc only lets `GET /stats?gc=1` collect garbage before the "after" memory figure, so that
 * figure shows what the daemon still holds rather than garbage not yet collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { sleep, within } from './util.js';

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../../../../server/dist/src/main.js', import.meta.url));

const live = new Set<DaemonProc>();

/** Kills (SIGKILL, by PID) every daemon this process started that is still running. */
export function killAllDaemons(): void {
  for (const d of live) d.kill();
}

process.once('exit', killAllDaemons);

export interface LogLine {
  level?: number;
  msg?: string;
  [k: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** process.env without SPIWIRE_ variables: the daemon runs on its defaults plus the flags given. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SPIWIRE_')) env[k] = v;
  return env;
}

export class DaemonProc {
  readonly pid: number;
  readonly exited: Promise<Exit>;
  exit: Exit | null = null;
  /** True once the campaign itself asked the daemon to stop (SIGTERM or SIGKILL). */
  stopRequested = false;
  /** Error-level log lines (pino level >= 50), the first 200. */
  readonly errorLines: LogLine[] = [];
  /** Error-level lines that report a method failing inside the daemon (INTERNAL_ERROR). */
  internalErrorLines = 0;
  private errTail = '';
  private outTail: string[] = [];
  private partial = '';

  private constructor(
    child: ChildProcess,
    readonly args: readonly string[],
  ) {
    this.pid = child.pid!;
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      }),
    );
    child.stderr!.on('data', (b: Buffer) => {
      this.errTail = (this.errTail + b.toString()).slice(-16384);
    });
    // Always read stdout: a daemon whose log pipe fills up would block on its own logging.
    child.stdout!.on('data', (b: Buffer) => this.onStdout(b.toString()));
  }

  url = '';
  port = 0;

  /** Starts the daemon with extra flags and waits (up to 15 s) for its `url` log line. */
  static async start(flags: readonly string[] = []): Promise<DaemonProc> {
    const args = ['--port', '0', '--log-level', 'info', ...flags];
    const child = spawn(process.execPath, ['--expose-gc', MAIN, ...args], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) throw new Error('could not spawn the daemon');
    const d = new DaemonProc(child, args);
    live.add(d);
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the daemon logged no url within 15 s; stderr: ${d.stderrTail()}`)), 15000);
      d.onUrl = (u) => {
        clearTimeout(timer);
        resolve(u);
      };
      void d.exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`the daemon exited (${e.code ?? e.signal}) before listening; stderr: ${d.stderrTail()}`));
      });
    }).catch((err: unknown) => {
      d.kill();
      throw err;
    });
    d.url = url;
    d.port = Number(new URL(url).port);
    return d;
  }

  private onUrl: ((url: string) => void) | null = null;

  private onStdout(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const raw of lines) {
      if (!raw.trim()) continue;
      this.outTail.push(raw.length > 2000 ? `${raw.slice(0, 2000)}...` : raw);
      if (this.outTail.length > 40) this.outTail.shift();
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        continue;
      }
      if (this.onUrl && typeof line['url'] === 'string') {
        const cb = this.onUrl;
        this.onUrl = null;
        cb(line['url']);
      }
      if (typeof line.level === 'number' && line.level >= 50) {
        if (this.errorLines.length < 200) this.errorLines.push(line);
        if (line.msg === 'method failed' || typeof line['method'] === 'string') this.internalErrorLines++;
      }
    }
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** True when the daemon exited without being asked to. */
  get crashed(): boolean {
    return this.exit !== null && !this.stopRequested;
  }

  stderrTail(): string {
    return this.errTail.trim();
  }

  stdoutTail(): string[] {
    return [...this.outTail];
  }

  /** Resident memory in MiB (VmRSS), or null once the process is gone. */
  rssMiB(): number | null {
    try {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : null;
    } catch {
      return null;
    }
  }

  /** CPU time used so far (user + system), in seconds, or null once the process is gone. */
  cpuSeconds(): number | null {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      return null;
    }
  }

  /** GET path on the daemon's HTTP side; null when it does not answer within ms. */
  async http(path: string, ms = 3000): Promise<Record<string, unknown> | null> {
    if (!this.alive) return null;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), ms);
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}${path}`, { signal: ctl.signal });
      return (await res.json()) as Record<string, unknown>;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Collects garbage in the daemon (GET /stats?gc=1) and returns its RSS in MiB afterwards. */
  async settledRssMiB(): Promise<number | null> {
    await this.http('/stats?gc=1');
    await sleep(200);
    await this.http('/stats?gc=1');
    return this.rssMiB();
  }

  /** The number of sessions /healthz reports, or null. */
  async sessions(): Promise<number | null> {
    const h = await this.http('/healthz');
    return h && typeof h['sessions'] === 'number' ? h['sessions'] : null;
  }

  /** SIGTERM, then SIGKILL when the daemon has not exited within graceMs. Resolves with how it exited and whether it needed the SIGKILL. */
  async stop(graceMs = 10000): Promise<{ exit: Exit; killed: boolean }> {
    this.stopRequested = true;
    if (this.exit) return { exit: this.exit, killed: false };
    this.signal('SIGTERM');
    const e = await within(this.exited, graceMs, null);
    if (e) return { exit: e, killed: false };
    this.kill();
    return { exit: await this.exited, killed: true };
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exit) return;
    try {
      process.kill(this.pid, sig);
    } catch {
      /* already gone */
    }
  }

  kill(): void {
    this.stopRequested = true;
    this.signal('SIGKILL');
  }
}

