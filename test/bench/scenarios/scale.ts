/**
 * Scenario 6: scale. Daemon memory per idle connected TCP socket and per outstanding overlapped
 * send, at several sizes, each size measured in a fresh daemon (its own process, open-file limit
 * raised), from GET /stats?gc=1 before and after (two forced collections each time, the median
 * of seven such readings).
 *
 * Sockets: n TCP sockets made with WSPSocket and connected with WSPConnect to a holder peer (its
 * own process) that accepts them and never reads; nothing is sent.
 * Operations: K overlapped sockets with SO_SNDBUF 4096 (which also sizes the kernel's buffer) to
 * the holder; each first gets a 1 MiB "filler" send that stays pending (the peer does not read),
 * so everything posted behind it queues. Then m 1-byte overlapped sends, round robin over the K
 * sockets, all pending; the memory they add, less their 1 payload byte each, is the per-operation
 * cost. Afterwards the holder reads everything and every operation must complete, with the peer
 * receiving exactly the fillers plus m bytes.
 *
 * "live" is heapUsed + external less the compiled code in heapUsed (what the daemon's data takes,
 * buffers included; the JIT's code belongs to the process, see liveBytes); "rss" is the resident
 * set (adds native allocations, such as libuv handles, heap pages not yet returned, and the code).
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { DaemonProcess, liveBytes } from '../lib/procs.js';
import { postSend, tcpSocket } from '../lib/spi.js';
import { now, summarize, type Summary } from '../lib/stats.js';

const FILLER = 1024 * 1024;


async function waitUntil(what: string, ms: number, f: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface StepResult {
  n: number;
  /** Bytes per unit: live (heapUsed + external) and rss, over the repetitions. */
  live: Summary;
  rss: Summary;
  seconds: Summary;
}

export interface ScaleResult {
  params: Record<string, number | string | number[]>;
  sockets: StepResult[];
  ops: StepResult[];
  /** Per-unit cost at each size relative to the largest size's (1 = perfectly linear). */
  linearity: { sockets: number[]; ops: number[]; tolerance: number; linear: boolean };
  nofile: { daemon: number | null; holder: number | null; hardLimit: number };
  checks: Check[];
}

async function socketsStep(ctx: Ctx, n: number, checks: Check[], rep: number): Promise<{ live: number; rss: number; seconds: number; nofile: number | null }> {
  const d = await DaemonProcess.start({ flags: ['--max-sockets', String(n + 1000)], nofile: Math.max(65536, 2 * n + 4096), cpuProfDir: ctx.cpuProfDir });
  const { port } = await ctx.holder.request<{ port: number }>('tcpListen', { mode: 'hold', backlog: 4096 });
  const spi = await S.connect(d.url);
  const e = S.out(0);
  try {
    // Warm up the code paths (and lazily made structures) before the baseline.
    for (let i = 0; i < 20; i++) {
      const { s } = await tcpSocket(spi, port, { overlapped: false });
      await spi.WSPCloseSocket(s, e);
    }
    await waitUntil('the warm-up sockets to close', 10000, async () => (await d.stats()).sockets === 0);
    const before = await d.settledStats();
    const acceptedBefore = (await ctx.holder.request<{ accepted: number }>('listenerStats', { port })).accepted;
    const t0 = now();
    const BATCH = 500;
    for (let i = 0; i < n; i += BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(BATCH, n - i) }, async () => {
          const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, S.out(0));
          if (s === S.INVALID_SOCKET) throw new Error('WSPSocket failed');
          const err = S.out(0);
          if ((await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port }, 16, null, null, null, null, err)) !== 0) {
            throw new Error(`WSPConnect #${i} failed: ${S.wsaErrorName(err.value)}`);
          }
        }),
      );
    }
    const seconds = (now() - t0) / 1e9;
    let open = 0;
    await waitUntil(`the holder to hold ${n} connections`, 30000, async () => {
      open = (await ctx.holder.request<{ open: number }>('listenerStats', { port })).open;
      return open >= n;
    });
    const after = await d.steadyStats();
    checks.push(check(`scale ${n} sockets run ${rep + 1}: sockets in the daemon`, n, after.sockets - before.sockets));
    checks.push(check(`scale ${n} sockets run ${rep + 1}: connections held by the peer`, n, (await ctx.holder.request<{ accepted: number }>('listenerStats', { port })).accepted - acceptedBefore));
    return { live: (liveBytes(after) - liveBytes(before)) / n, rss: (after.memory.rss - before.memory.rss) / n, seconds, nofile: d.nofile };
  } finally {
    await spi.close();
    await d.stop();
    await ctx.holder.request('closeListener', { port });
  }
}

async function opsStep(ctx: Ctx, m: number, k: number, checks: Check[], rep: number): Promise<{ live: number; rss: number; seconds: number }> {
  const d = await DaemonProcess.start({
    flags: ['--max-outstanding-ops', String(m + 1000), '--session-quota', String(64 * 1024 * 1024 * 1024), '--max-pending-requests', String(1 << 20)],
    cpuProfDir: ctx.cpuProfDir,
  });
  const { port } = await ctx.holder.request<{ port: number }>('tcpListen', { mode: 'hold', backlog: 4096 });
  const spi = await S.connect(d.url, { autoApc: true });
  let completed = 0;
  let completedBytes = 0;
  let failures = 0;
  const onDone = (err: number, bytes: number): void => {
    completed++;
    completedBytes += bytes;
    if (err !== 0) failures++;
  };
  try {
    const socks: number[] = [];
    for (let i = 0; i < k; i++) socks.push((await tcpSocket(spi, port, { sndBuf: 4096 })).s);
    const filler = [S.wsabuf(Buffer.alloc(FILLER, 0x66))];
    // A filler that the kernel swallowed whole completes: post another until every socket has one pending.
    let fillers = 0;
    const fillerPending = new Map<number, boolean>();
    for (let round = 0; ; round++) {
      const idle = socks.filter((s) => !fillerPending.get(s));
      if (idle.length === 0 && (await d.stats()).pendingOps === k) break;
      if (round > 6) throw new Error(`only ${k - idle.length} of ${k} sockets keep a filler pending`);
      for (const s of idle) {
        fillers++;
        fillerPending.set(s, true);
        const r = await postSend(spi, ctx.api, s, filler, (err, bytes) => {
          fillerPending.set(s, false);
          onDone(err, bytes);
        });
        if (r !== 'now' && r !== 'pending') throw new Error(`filler failed: ${S.wsaErrorName(r)}`);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    const before = await d.settledStats();
    const one = [S.wsabuf(Buffer.from([0x31]))];
    const t0 = now();
    const BATCH = 4096;
    let notPending = 0;
    for (let i = 0; i < m; i += BATCH) {
      const rs = await Promise.all(Array.from({ length: Math.min(BATCH, m - i) }, (_, j) => postSend(spi, ctx.api, socks[(i + j) % k]!, one, onDone)));
      notPending += rs.filter((r) => r !== 'pending').length;
    }
    const seconds = (now() - t0) / 1e9;
    const after = await d.steadyStats();
    checks.push(check(`scale ${m} ops run ${rep + 1}: operations pending in the daemon`, m, after.pendingOps - before.pendingOps));
    checks.push(check(`scale ${m} ops run ${rep + 1}: sends that did not pend`, 0, notPending));
    // Let the peer read: every operation completes, and the peer gets every byte.
    await ctx.holder.request('release', { port });
    await waitUntil('every operation to complete', 60000, async () => completed >= fillers + m);
    await waitUntil('the peer to read every byte', 60000, async () => (await ctx.holder.request<{ bytes: number }>('listenerStats', { port })).bytes >= fillers * FILLER + m);
    checks.push(check(`scale ${m} ops run ${rep + 1}: bytes at the peer`, fillers * FILLER + m, (await ctx.holder.request<{ bytes: number }>('listenerStats', { port })).bytes));
    checks.push(check(`scale ${m} ops run ${rep + 1}: completions with an error`, 0, failures));
    return { live: (liveBytes(after) - liveBytes(before)) / m - 1, rss: (after.memory.rss - before.memory.rss) / m - 1, seconds };
  } finally {
    await spi.close();
    await d.stop();
    await ctx.holder.request('closeListener', { port });
  }
}

export async function scale(ctx: Ctx): Promise<ScaleResult> {
  // The daemon and the holder each need one descriptor per socket; the shell raises the limit to
  // the hard limit at most (more needs CAP_SYS_RESOURCE), so the third size is what fits.
  const room = ctx.nofileHard - 1000;
  const third = [20_000, 15_000].find((n) => n <= room);
  const socketSizes = ctx.quick ? [50, 200] : [1000, 10_000, ...(third ? [third] : [])];
  const opSizes = ctx.quick ? [100, 1000] : [1000, 10_000, 100_000];
  const k = ctx.quick ? 10 : 100;
  const checks: Check[] = [];
  const sockets: StepResult[] = [];
  const ops: StepResult[] = [];
  let daemonNofile: number | null = null;
  for (const n of socketSizes) {
    const l: number[] = [];
    const r: number[] = [];
    const t: number[] = [];
    for (let rep = 0; rep < ctx.scaleReps; rep++) {
      const x = await socketsStep(ctx, n, checks, rep);
      daemonNofile = x.nofile;
      l.push(x.live);
      r.push(x.rss);
      t.push(x.seconds);
      ctx.log(`  ${n} sockets: ${(x.live / 1024).toFixed(2)} KiB live, ${(x.rss / 1024).toFixed(2)} KiB rss per socket (connected in ${x.seconds.toFixed(1)} s)`);
    }
    sockets.push({ n, live: summarize(l), rss: summarize(r), seconds: summarize(t) });
  }
  for (const m of opSizes) {
    const l: number[] = [];
    const r: number[] = [];
    const t: number[] = [];
    for (let rep = 0; rep < ctx.scaleReps; rep++) {
      const x = await opsStep(ctx, m, k, checks, rep);
      l.push(x.live);
      r.push(x.rss);
      t.push(x.seconds);
      ctx.log(`  ${m} ops: ${x.live.toFixed(0)} B live, ${x.rss.toFixed(0)} B rss per operation (posted in ${x.seconds.toFixed(1)} s)`);
    }
    ops.push({ n: m, live: summarize(l), rss: summarize(r), seconds: summarize(t) });
  }
  const tolerance = 0.3;
  const rel = (steps: StepResult[]): number[] => steps.map((s) => s.live.median / steps[steps.length - 1]!.live.median);
  const ls = rel(sockets);
  const lo = rel(ops);
  return {
    params: { socketSizes, opSizes, socketsForOps: k, fillerBytes: FILLER, opPayloadBytes: 1, sndBufForOps: 4096, liveLessCode: 1, readingsPerMeasure: 7 },
    sockets,
    ops,
    linearity: { sockets: ls, ops: lo, tolerance, linear: [...ls, ...lo].every((x) => Math.abs(x - 1) <= tolerance) },
    nofile: { daemon: daemonNofile, holder: ctx.holder.nofile, hardLimit: ctx.nofileHard },
    checks,
  };
}
