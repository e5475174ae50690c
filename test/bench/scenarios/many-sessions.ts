/**
 * Scenario 9: many sessions. 32 SDK sessions, each with one TCP socket to the discard peer, send
 * 64 KiB overlapped WSPSends at once (32 in flight each) from a load process, while a bystander
 * session here makes blocking 100-byte WSPSends one at a time: the aggregate throughput beside one
 * session's bulk figure, and the bystander's small-call latency meanwhile. The daemon is scenario 1's.
 * Next to each aggregate run, one of the load's sessions sends the same bytes alone: the aggregate
 * is judged against that, measured in the same phase of the machine.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { closeSocket, tcpSocket } from '../lib/spi.js';
import { PeerProcess } from '../lib/procs.js';
import { now, percentile, summarize, type Summary } from '../lib/stats.js';
import { WARM_UP_SECONDS, repeatFor } from '../lib/warm-up.js';
import { cpuOf } from './tcp-throughput.js';

export interface ManySessionsResult {
  params: Record<string, number | string>;
  /** Aggregate MB/s (10^6 B) over the sessions, per repetition. */
  aggregate: Summary;
  /**
   * One of the load's sessions sending the same bytes alone, next to each aggregate run, and the
   * aggregate over it per repetition (absent from runs saved before it was measured).
   */
  oneSession?: Summary;
  ratio?: Summary;
  /** The bystander's blocking-call latency during the runs, us. */
  bystanderP50: Summary;
  bystanderP99: Summary;
  /**
   * CPU per MB (us) of the daemon and of the load process, summed over the repetitions: all the
   * sessions at once, and one alone (absent from runs saved before it was measured).
   */
  cpuPerMb?: { aggregate: { daemon: number; load: number }; alone: { daemon: number; load: number } };
  checks: Check[];
}

const CHUNK = 64 * 1024;
const WINDOW = 32;

/** A tally's CPU per MB as text: daemon + load, us. */
function perMb(t: { daemon: number; load: number; mb: number }): string {
  return t.mb > 0 ? `${(t.daemon / t.mb).toFixed(0)} + ${(t.load / t.mb).toFixed(0)} us` : '-';
}

/** Blocking 100-byte sends, one at a time, until stop() says so; the latencies in us. */
async function bystander(spi: S.SpiSession, s: number, stop: () => boolean, max: number): Promise<number[]> {
  const bufs = [S.wsabuf(Buffer.alloc(100, 0x62))];
  const sent = S.out(0);
  const e = S.out(0);
  const out: number[] = [];
  // Bounded by max samples as well as by the runs' end.
  while (!stop() && out.length < max) {
    const t0 = now();
    const ret = await spi.WSPSend(s, bufs, 1, sent, 0, null, null, null, e);
    out.push((now() - t0) / 1e3);
    if (ret !== 0) throw new Error(`bystander WSPSend failed: ${S.wsaErrorName(e.value)}`);
  }
  return out;
}

export async function manySessions(ctx: Ctx, sessions = ctx.quick ? 4 : 32): Promise<ManySessionsResult> {
  // Quick: 16 sends per session. Full: 256 per session (16 MiB each, 512 MiB in all per run).
  const perSession = ctx.quick ? 16 : 256;
  const checks: Check[] = [];
  const aggregate: number[] = [];
  const one: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  const cpu = { aggregate: { daemon: 0, load: 0, mb: 0 }, alone: { daemon: 0, load: 0, mb: 0 } };
  // The bulk sessions live in a process of their own; the bystander is this one.
  const loader = await PeerProcess.start('load');
  const watcher = await S.connect(ctx.daemon.url, { autoApc: true });
  try {
    const { s: ws } = await tcpSocket(watcher, ctx.discardPort, { overlapped: false });
    /**
     * One round on fresh sockets: the first `sending` sessions send count sends each (the others'
     * sockets stay idle); answers MB/s, timed from the first send to the peer holding the last byte.
     */
    const round = async (label: string, sending: number, count: number, watch: boolean, tally: { daemon: number; load: number; mb: number } | null): Promise<{ mbps: number; lat: number[] }> => {
      const { localPorts } = await loader.request<{ localPorts: number[] }>('loadOpen', { url: ctx.daemon.url, sessions, port: ctx.discardPort });
      const daemonCpu0 = cpuOf(ctx.daemon.pid);
      const loadCpu0 = cpuOf(loader.child.pid!);
      const bytes = CHUNK * count;
      const senders = localPorts.slice(0, sending);
      const reached = senders.map((remotePort) => ctx.discard.request<{ t: number; bytes: number }>('expect', { port: ctx.discardPort, remotePort, bytes }, 300_000));
      let running = true;
      const run = loader.request<{ t0: number }>('loadRun', { count, window: WINDOW, sessions: sending }, 300_000);
      const watching = watch ? bystander(watcher, ws, () => !running, 1_000_000) : Promise.resolve([]);
      const { t0 } = await run;
      const ends = await Promise.all(reached);
      running = false;
      const lat = await watching;
      const last = Math.max(...ends.map((r) => (ctx.sharedClock ? r.t : now())));
      const daemonCpu1 = cpuOf(ctx.daemon.pid);
      const loadCpu1 = cpuOf(loader.child.pid!);
      if (tally && daemonCpu0 !== null && daemonCpu1 !== null && loadCpu0 !== null && loadCpu1 !== null) {
        tally.daemon += daemonCpu1 - daemonCpu0;
        tally.load += loadCpu1 - loadCpu0;
        tally.mb += (bytes * sending) / 1e6;
      }
      await loader.request('loadCloseSockets');
      for (let i = 0; i < localPorts.length; i++) {
        const end = await ctx.discard.connectionEnded(ctx.discardPort, localPorts[i]!);
        checks.push(check(`${label}: bytes at the peer (session ${i + 1})`, i < sending ? bytes : 0, end.bytes));
      }
      return { mbps: (bytes * sending) / ((last - t0) / 1e9) / 1e6, lat };
    };
    // Full runs: rounds first, not measured (the first rounds on new sessions ran at half the rate).
    if (!ctx.quick) await repeatFor(WARM_UP_SECONDS, async () => void (await round('many sessions warm-up', sessions, perSession, false, null)));
    for (let rep = 0; rep < ctx.reps; rep++) {
      // One session sends the same bytes as all of them, right before or after (alternating), in
      // the same phase of the machine: the aggregate's yardstick.
      const alone = async (): Promise<void> => void one.push((await round(`many sessions run ${rep + 1}, one session alone`, 1, perSession * sessions, false, cpu.alone)).mbps);
      if (rep % 2 === 1) await alone();
      const all = await round(`many sessions run ${rep + 1}`, sessions, perSession, true, cpu.aggregate);
      if (rep % 2 === 0) await alone();
      aggregate.push(all.mbps);
      if (all.lat.length > 0) {
        p50.push(percentile(all.lat, 50));
        p99.push(percentile(all.lat, 99));
      }
      ctx.log(`  many sessions rep ${rep + 1}: ${aggregate[rep]!.toFixed(0)} MB/s in all, one session alone ${one[rep]!.toFixed(0)} MB/s; bystander p50 ${p50[rep]?.toFixed(0)} us, p99 ${p99[rep]?.toFixed(0)} us (${all.lat.length} calls); CPU per MB so far, daemon + load: all ${perMb(cpu.aggregate)}, alone ${perMb(cpu.alone)}`);
    }
    await closeSocket(watcher, ws);
    await loader.request('loadEnd');
  } finally {
    await watcher.close();
    await loader.stop();
  }
  return {
    params: { sessions, sendsPerSession: perSession, chunkBytes: CHUNK, inFlight: WINDOW },
    aggregate: summarize(aggregate),
    oneSession: summarize(one),
    ratio: summarize(aggregate.map((a, i) => a / one[i]!)),
    bystanderP50: summarize(p50.length ? p50 : [NaN]),
    bystanderP99: summarize(p99.length ? p99 : [NaN]),
    ...(cpu.aggregate.mb > 0 && cpu.alone.mb > 0
      ? { cpuPerMb: { aggregate: { daemon: cpu.aggregate.daemon / cpu.aggregate.mb, load: cpu.aggregate.load / cpu.aggregate.mb }, alone: { daemon: cpu.alone.daemon / cpu.alone.mb, load: cpu.alone.load / cpu.alone.mb } } }
      : {}),
    checks,
  };
}
