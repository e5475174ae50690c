/**
 * Child processes of the benchmark: the daemon and the peers. Every child is tracked and killed
 * (by its own pid) when the benchmark ends, however it ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '@spiwire/server/node-flags';
import type { GcTotals } from '@spiwire/server/gc-stats';

const children = new Set<ChildProcess>();

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

/** Kills every child still running (SIGKILL, each by its pid). */
export function killChildren(): void {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
}

process.once('exit', killChildren);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killChildren();
    process.exit(130);
  });
}

export const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/**
 * Runs node with args under /bin/sh after raising its open-file limit to nofile (root may raise
 * the hard limit; otherwise the soft limit goes as high as the hard one allows). The shell
 * reports the limit it got on stderr, then execs node, so the child's pid is node's.
 */
function spawnNode(args: readonly string[], nofile: number, stdio: Array<'ignore' | 'pipe' | 'inherit' | 'ipc'>): ChildProcess {
  const script = 'ulimit -n "$0" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; echo "bench-nofile=$(ulimit -n)" >&2; exec "$@"';
  return track(spawn('/bin/sh', ['-c', script, String(nofile), process.execPath, ...args], { cwd: ROOT, stdio }));
}

function nofileOf(stderr: string): number | null {
  const m = /bench-nofile=(\d+|unlimited)/.exec(stderr);
  if (!m) return null;
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/**
 * websockify (Debian's package), relaying WebSocket connections on a free port to target; null
 * when it is not installed. Resolves once it accepts connections.
 */
export async function startWebsockify(target: number): Promise<{ port: number; stop(): void } | null> {
  const bin = ['/usr/bin/websockify', '/usr/local/bin/websockify'].find((p) => existsSync(p));
  if (!bin) return null;
  const port = await freePort();
  const child = track(spawn(bin, [`127.0.0.1:${port}`, `127.0.0.1:${target}`], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const stop = (): void => void child.kill('SIGKILL');
  // Bounded: 100 tries, 50 ms apart.
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`websockify exited: ${stderr}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return { port, stop };
    await new Promise((r) => setTimeout(r, 50));
  }
  stop();
  throw new Error(`websockify did not listen on ${port}: ${stderr}`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface MemoryUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export interface DaemonStats {
  sessions: number;
  sockets: number;
  pendingOps: number;
  memory: MemoryUsage;
  /** The compiled code in heapUsed (absent from daemons older than it). */
  heapCodeBytes?: number;
  gcExposed: boolean;
  /** The collector since the daemon started (server/src/gc-stats.ts); null from a daemon without it. */
  gc: GcTotals | null;
}

/**
 * What the daemon's data takes, buffers included: heapUsed + external, less the compiled code in
 * heapUsed. The JIT compiles the paths a step makes hot while it runs (20-60 KB in a step of
 * 1,000 pending sends, up to 200 KB when a big function is optimized again), which is the
 * process's, not the sockets' or the operations'.
 */
export function liveBytes(st: DaemonStats): number {
  return st.memory.heapUsed + st.memory.external - (st.heapCodeBytes ?? 0);
}

export interface DaemonOptions {
  /** Extra daemon flags, for example ['--max-outstanding-ops', '200000']. */
  flags?: string[];
  /** Open-file limit to ask for (default 65536). */
  nofile?: number;
  /** Directory for a V8 CPU profile of the daemon (--cpu-prof), or null. */
  cpuProfDir?: string | null;
}

/**
 * The daemon as its own process, started as `npm start` starts it (DAEMON_NODE_FLAGS) plus
 * --expose-gc: node --expose-gc <flags> server/dist/src/main.js --port P --log-level warn.
 * At warn level the daemon does not print its "url" line (it is logged at info), so the benchmark
 * picks a free port itself and waits for /healthz.
 */
export class DaemonProcess {
  private stderr = '';
  private exited = false;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly flags: string[],
  ) {
    child.stderr!.on('data', (b: Buffer) => {
      if (this.stderr.length < 64 * 1024) this.stderr += b.toString();
    });
    // Log lines at warn level and above go to stdout (pino); keep them for the report.
    child.stdout!.on('data', (b: Buffer) => {
      if (this.stderr.length < 64 * 1024) this.stderr += b.toString();
    });
    child.once('exit', () => (this.exited = true));
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** What the daemon printed (warnings, errors), and the shell's open-file limit line. */
  get output(): string {
    return this.stderr;
  }

  get nofile(): number | null {
    return nofileOf(this.stderr);
  }

  static async start(opts: DaemonOptions = {}): Promise<DaemonProcess> {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const flags = ['--port', String(port), '--log-level', 'warn', ...(opts.flags ?? [])];
      const nodeArgs = ['--expose-gc', ...DAEMON_NODE_FLAGS];
      if (opts.cpuProfDir) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`);
      const child = spawnNode([...nodeArgs, 'server/dist/src/main.js', ...flags], opts.nofile ?? 65536, ['ignore', 'pipe', 'pipe']);
      const d = new DaemonProcess(child, port, flags);
      const deadline = Date.now() + 15000;
      while (Date.now() < deadline && !d.exited) {
        try {
          const r = await fetch(`http://127.0.0.1:${port}/healthz`);
          if (r.ok) return d;
        } catch {
          /* not listening yet */
        }
        await sleep(30);
      }
      await d.stop();
      // Another process may have taken the port between the probe and the daemon's listen.
      if (attempt < 3 && /EADDRINUSE/.test(d.stderr)) continue;
      throw new Error(`the daemon did not start: ${d.stderr.slice(0, 2000)}`);
    }
  }

  /** GET /stats; with gc, after two forced collections (the second settles what the first freed). */
  async stats(gc = false): Promise<DaemonStats> {
    if (gc) await fetch(`http://127.0.0.1:${this.port}/stats?gc=1`).then((r) => r.arrayBuffer());
    const r = await fetch(`http://127.0.0.1:${this.port}/stats${gc ? '?gc=1' : ''}`);
    if (!r.ok) throw new Error(`/stats answered ${r.status}`);
    return (await r.json()) as DaemonStats;
  }

  /**
   * Memory to compare with another reading: of seven readings after forced collections, the one
   * whose live memory (liveBytes) is the median. On an idle daemon most readings a moment apart
   * agree within a few KB, but one in three or four has 200-250 KB more in the old space, gone
   * again at the next reading; two such among three readings made 1,000 pending sends look like
   * 300 B each instead of 500, or 700 when they fell after the step.
   */
  async steadyStats(): Promise<DaemonStats> {
    const rs: DaemonStats[] = [];
    for (let i = 0; i < 7; i++) rs.push(await this.stats(true));
    return rs.sort((a, b) => liveBytes(a) - liveBytes(b))[3]!;
  }

  /**
   * A fresh daemon's baseline: steadyStats() after its first collections. In its first half-dozen
   * /stats?gc=1 a new daemon's collected heap still drops by 100-300 KB at a time (what its start
   * left behind; none later in sequences of 60), enough to make 1,000 pending sends look like
   * 285 B each instead of 500.
   */
  async settledStats(): Promise<DaemonStats> {
    for (let i = 0; i < 8; i++) await this.stats(true);
    return this.steadyStats();
  }

  /** SIGTERM (graceful stop, which also writes a --cpu-prof profile), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    await gone;
    clearTimeout(t);
  }
}

type Reply = Record<string, unknown>;

/**
 * A peer child process (test/bench/peer.ts) driven over IPC: requests carry an id and get one
 * reply; the peer may also push events (UDP credit counts).
 */
export class PeerProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Map<string, Array<(m: Reply) => void>>();
  private stderr = '';
  private exited = false;

  private constructor(
    readonly role: string,
    readonly child: ChildProcess,
  ) {
    child.stderr!.on('data', (b: Buffer) => {
      if (this.stderr.length < 64 * 1024) this.stderr += b.toString();
    });
    child.on('message', (m: Reply) => {
      if (typeof m['event'] === 'string') {
        for (const f of this.listeners.get(m['event']) ?? []) f(m);
        return;
      }
      const p = this.pending.get(m['id'] as number);
      if (!p) return;
      this.pending.delete(m['id'] as number);
      if (m['error']) p.reject(new Error(`peer ${role}: ${String(m['error'])}`));
      else p.resolve(m);
    });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`peer ${role} exited (${code ?? signal}): ${this.stderr.slice(0, 500)}`));
      this.pending.clear();
    });
  }

  get nofile(): number | null {
    return nofileOf(this.stderr);
  }

  static async start(role: string, nofile = 65536): Promise<PeerProcess> {
    const script = fileURLToPath(new URL('../peer.js', import.meta.url));
    const child = spawnNode(['--max-old-space-size=2048', script, role], nofile, ['ignore', 'ignore', 'pipe', 'ipc']);
    const p = new PeerProcess(role, child);
    await p.request('ping', {});
    return p;
  }

  /** Sends a command; rejects when the peer has not answered within timeoutMs (default 60 s). */
  request<T extends Reply = Reply>(cmd: string, args: Reply = {}, timeoutMs = 60_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`peer ${this.role} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`peer ${this.role}: no answer to ${cmd} ${JSON.stringify(args)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, cmd, ...args });
    });
  }

  /**
   * What a TCP listener of this peer received on the connection from remotePort, once that
   * connection has ended (sha256 only when hashing was asked for). The peer then forgets it: ask
   * once per connection, at its end.
   */
  connectionEnded(port: number, remotePort: number, timeoutMs?: number): Promise<{ bytes: number; stamps: number[]; sha256?: string }> {
    return this.request<{ bytes: number; stamps: number[]; sha256?: string }>('ended', { port, remotePort }, timeoutMs);
  }

  on(event: string, f: (m: Reply) => void): () => void {
    const list = this.listeners.get(event) ?? [];
    list.push(f);
    this.listeners.set(event, list);
    return () => {
      const l = this.listeners.get(event) ?? [];
      const i = l.indexOf(f);
      if (i >= 0) l.splice(i, 1);
    };
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    try {
      this.child.send({ id: 0, cmd: 'exit' });
    } catch {
      /* channel closed */
    }
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  }
}
