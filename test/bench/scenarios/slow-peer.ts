/**
 * Scenario 7: a slow peer. One overlapped TCP socket to a holder peer that accepts and never
 * reads; the client keeps posting 1 KiB overlapped WSPSends, a fixed number of posts, 256 calls
 * at a time. The kernel's buffers fill, then the transport buffer (SO_SNDBUF), then up to
 * --max-outstanding-ops sends pend; every later post fails at once with WSAEWOULDBLOCK. The
 * daemon's memory is sampled throughout (GET /stats, no forced GC) and read after forced GCs (the
 * median of three readings, the first after the fresh daemon has settled) at
 * 0, 25, 50, 75 and 100 % of the posts and after one more idle second. It must stay flat: what
 * the daemon holds is bounded by SO_SNDBUF and the outstanding-operation limit times the payload
 * (plus, at most, the 1 KiB per-operation target, and 1 MiB of one-time costs); from the half-way
 * point on it may grow by at most 5 % of that bound. Then the holder reads everything: every
 * pending send must complete, and the peer must receive exactly the bytes of the sends accepted.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { DaemonProcess, type DaemonStats } from '../lib/procs.js';
import { postSend, tcpSocket } from '../lib/spi.js';
import { now } from '../lib/stats.js';

const SIZE = 1024;
const BATCH = 256;

export interface MemPoint {
  /** Seconds since the first post. */
  t: number;
  posts: number;
  rss: number;
  heapUsed: number;
  external: number;
  pendingOps: number;
}

export interface SlowPeerResult {
  params: Record<string, number | string>;
  outcomes: { atOnce: number; pending: number; wouldBlock: number; noBufs: number; other: number };
  /** Sampled without forced GC. */
  samples: MemPoint[];
  /** After forced GCs, at 0/25/50/75/100 % of the posts and after an idle second. */
  checkpoints: MemPoint[];
  rss: { first: number; last: number; max: number };
  live: { first: number; last: number; max: number };
  /** Bytes the daemon may legitimately hold: SO_SNDBUF + limit x (payload + 1 KiB) + 1 MiB of one-time costs. */
  bound: number;
  /** live growth from the 50 % checkpoint to the end, and the most live rose above its start. */
  growthSecondHalf: number;
  maxGrowth: number;
  flat: boolean;
  checks: Check[];
}

function point(st: DaemonStats, t0: number, posts: number): MemPoint {
  return { t: (now() - t0) / 1e9, posts, rss: st.memory.rss, heapUsed: st.memory.heapUsed, external: st.memory.external, pendingOps: st.pendingOps };
}

const liveOf = (p: MemPoint): number => p.heapUsed + p.external;

export async function slowPeer(ctx: Ctx): Promise<SlowPeerResult> {
  const posts = ctx.quick ? 2000 : 50_000;
  const limit = ctx.quick ? 256 : 4096;
  const sndBuf = 65536;
  const d = await DaemonProcess.start({ flags: ['--max-outstanding-ops', String(limit), '--sndbuf', String(sndBuf)], cpuProfDir: ctx.cpuProfDir });
  const { port } = await ctx.holder.request<{ port: number }>('tcpListen', { mode: 'hold' });
  const spi = await S.connect(d.url, { autoApc: true });
  const outcomes = { atOnce: 0, pending: 0, wouldBlock: 0, noBufs: 0, other: 0 };
  const samples: MemPoint[] = [];
  const checkpoints: MemPoint[] = [];
  let completed = 0;
  let completedBytes = 0;
  let failed = 0;
  let posted = 0;
  try {
    // Quick runs make the kernel's buffers small (SO_SNDBUF set explicitly sizes them) so the limit is reached in a few posts.
    const { s, localPort } = await tcpSocket(spi, port, ctx.quick ? { sndBuf: 4096 } : {});
    const t0 = now();
    checkpoints.push(point(await d.settledStats(), t0, 0));
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        samples.push(point(await d.stats(), t0, posted));
        await new Promise((r) => setTimeout(r, ctx.quick ? 10 : 50));
      }
    })();
    const bufs = [S.wsabuf(Buffer.alloc(SIZE, 0x73))];
    const onDone = (err: number, bytes: number): void => {
      completed++;
      if (err === 0) completedBytes += bytes;
      else failed++;
    };
    const marks = new Set([0.25, 0.5, 0.75].map((f) => Math.floor((posts * f) / BATCH) * BATCH));
    while (posted < posts) {
      const n = Math.min(BATCH, posts - posted);
      const rs = await Promise.all(Array.from({ length: n }, () => postSend(spi, ctx.api, s, bufs, onDone)));
      posted += n;
      for (const r of rs) {
        if (r === 'now') outcomes.atOnce++;
        else if (r === 'pending') outcomes.pending++;
        else if (r === S.WSAEWOULDBLOCK) outcomes.wouldBlock++;
        else if (r === S.WSAENOBUFS) outcomes.noBufs++;
        else outcomes.other++;
      }
      if (marks.has(posted)) checkpoints.push(point(await d.steadyStats(), t0, posted));
    }
    checkpoints.push(point(await d.steadyStats(), t0, posted));
    await new Promise((r) => setTimeout(r, ctx.quick ? 100 : 1000));
    checkpoints.push(point(await d.steadyStats(), t0, posted));
    sampling = false;
    await sampler;
    // The peer reads: every pending send completes and the peer gets exactly the accepted bytes.
    await ctx.holder.request('release', { port });
    const accepted = outcomes.atOnce + outcomes.pending;
    const deadline = Date.now() + 60000;
    while (completed < accepted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const e = S.out(0);
    await spi.WSPCloseSocket(s, e);
    const end = await ctx.holder.connectionEnded(port, localPort);
    // SO_SNDBUF, the limit's payloads and 1 KiB per operation (the target), and 1 MiB for one-time
    // costs (code compiled on first use, tables that grow once).
    const bound = sndBuf + limit * (SIZE + 1024) + 1024 * 1024;
    const live = samples.map(liveOf);
    const rss = samples.map((p) => p.rss);
    const c50 = checkpoints.find((c) => c.posts >= posts / 2 - BATCH)!;
    const cEnd = checkpoints[checkpoints.length - 1]!;
    const growthSecondHalf = liveOf(cEnd) - liveOf(c50);
    const maxGrowth = Math.max(...checkpoints.map(liveOf)) - liveOf(checkpoints[0]!);
    const checks: Check[] = [
      check('slow peer: posts', posts, outcomes.atOnce + outcomes.pending + outcomes.wouldBlock + outcomes.noBufs + outcomes.other),
      check('slow peer: posts failing other than WSAEWOULDBLOCK', 0, outcomes.other + outcomes.noBufs),
      check('slow peer: operations pending in the daemon never above the limit', 1, Math.max(...samples.map((p) => p.pendingOps), ...checkpoints.map((p) => p.pendingOps)) <= limit ? 1 : 0),
      check('slow peer: completions after the peer read (every accepted send)', accepted, completed),
      check('slow peer: completions with an error', 0, failed),
      check('slow peer: bytes at the peer = accepted sends x 1 KiB', accepted * SIZE, end.bytes),
    ];
    if (!ctx.quick) checks.push(check('slow peer: the limit was reached (some posts got WSAEWOULDBLOCK)', 1, outcomes.wouldBlock > 0 ? 1 : 0));
    ctx.log(`  slow peer: ${JSON.stringify(outcomes)}; live ${(liveOf(checkpoints[0]!) / 2 ** 20).toFixed(1)} -> ${(liveOf(cEnd) / 2 ** 20).toFixed(1)} MiB (max growth ${(maxGrowth / 2 ** 20).toFixed(1)} MiB, bound ${(bound / 2 ** 20).toFixed(1)} MiB); rss max ${(Math.max(...rss) / 2 ** 20).toFixed(0)} MiB`);
    return {
      params: { posts, payloadBytes: SIZE, batch: BATCH, maxOutstandingOps: limit, sndBuf, api: ctx.api },
      outcomes,
      samples,
      checkpoints,
      rss: { first: rss[0]!, last: rss[rss.length - 1]!, max: Math.max(...rss) },
      live: { first: live[0]!, last: live[live.length - 1]!, max: Math.max(...live) },
      bound,
      growthSecondHalf,
      maxGrowth,
      flat: maxGrowth <= bound && growthSecondHalf <= 0.05 * bound,
      checks,
    };
  } finally {
    await spi.close();
    await d.stop();
    await ctx.holder.request('closeListener', { port });
  }
}
