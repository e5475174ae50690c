/**
 * Scenario 9: many sessions. 32 SDK sessions, each with one TCP socket to the discard peer, send
 * 64 KiB overlapped WSPSends at once (32 in flight each) from a load process, while a bystander
 * session here makes blocking 100-byte WSPSends one at a time: the aggregate throughput beside one
 * session's bulk figure, and the bystander's small-call latency meanwhile. The daemon is scenario 1's.
 * Next to each aggregate run, one of the load's sessions sends the same bytes alone: the aggregate
 * is judged against that, measured in the same phase of the machine. Raw node:net does the same
 * from this process (as many connections, then one), which shows what the kernel and the peer
 * lose by themselves when the bytes come on many connections.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { endSocket, rawConnect, writeAll } from '../lib/raw.js';
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
   * sessions at once, and one alone (absent from runs saved before it was measured). peer: the
   * discard peer's (absent from runs saved before it was measured).
   */
  cpuPerMb?: { aggregate: CpuPerMb; alone: CpuPerMb };
  /**
   * Raw node:net from the benchmark process, next to spiwire's runs: as many connections at once
   * (MB/s in all), one connection with the same bytes, their ratio per repetition, and CPU per MB
   * of the writer and of the discard peer (absent from runs saved before it was measured).
   */
  raw?: { aggregate: Summary; one: Summary; ratio: Summary; cpuPerMb: { aggregate: { writer: number; peer: number }; alone: { writer: number; peer: number } } | null };
  checks: Check[];
}

export interface CpuPerMb {
  daemon: number;
  load: number;
  peer?: number;
}

const CHUNK = 64 * 1024;
const WINDOW = 32;

/** CPU time (us) of the processes of a kind of run, and the MB it moved. */
interface Tally {
  daemon: number;
  load: number;
  peer: number;
  mb: number;
}

/** A tally's CPU per MB as text: daemon + load (the writer, for raw runs) + discard peer, us. */
function perMb(t: Tally): string {
  return t.mb > 0 ? `${(t.daemon / t.mb).toFixed(0)} + ${(t.load / t.mb).toFixed(0)} + ${(t.peer / t.mb).toFixed(0)} us` : '-';
}

/** A raw tally's CPU per MB as text: writer + discard peer, us. */
function rawPerMb(t: Tally): string {
  return t.mb > 0 ? `${(t.load / t.mb).toFixed(0)} + ${(t.peer / t.mb).toFixed(0)} us` : '-';
}

function perMbOf(t: Tally): CpuPerMb {
  return { daemon: t.daemon / t.mb, load: t.load / t.mb, peer: t.peer / t.mb };
}

function writerPerMb(t: Tally): { writer: number; peer: number } {
  return { writer: t.load / t.mb, peer: t.peer / t.mb };
}

/** CPU (us) of the pids, in order (0 for a null pid: a process not measured), or null when one cannot be read. */
function cpuOfAll(pids: Array<number | null>): number[] | null {
  const out: number[] = [];
  for (const pid of pids) {
    const c = pid === null ? 0 : cpuOf(pid);
    if (c === null) return null;
    out.push(c);
  }
  return out;
}

/** Adds what the processes used since before (daemon, load or writer, peer) and mb to tally. */
function addTo(tally: Tally | null, pids: Array<number | null>, before: number[] | null, mb: number): void {
  const after = cpuOfAll(pids);
  if (!tally || !before || !after) return;
  tally.daemon += after[0]! - before[0]!;
  tally.load += after[1]! - before[1]!;
  tally.peer += after[2]! - before[2]!;
  tally.mb += mb;
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
  const rawAggregate: number[] = [];
  const rawOne: number[] = [];
  const tally = (): Tally => ({ daemon: 0, load: 0, peer: 0, mb: 0 });
  // Raw runs: load is this process (the writer); the daemon is idle then.
  const cpu = { aggregate: tally(), alone: tally(), rawAggregate: tally(), rawAlone: tally() };
  // The bulk sessions live in a process of their own; the bystander is this one.
  const loader = await PeerProcess.start('load');
  const watcher = await S.connect(ctx.daemon.url, { autoApc: true });
  try {
    const { s: ws } = await tcpSocket(watcher, ctx.discardPort, { overlapped: false });
    /**
     * One round on fresh sockets: the first `sending` sessions send count sends each (the others'
     * sockets stay idle); answers MB/s, timed from the first send to the peer holding the last byte.
     */
    const pids = [ctx.daemon.pid, loader.child.pid!, ctx.discard.child.pid!];
    const round = async (label: string, sending: number, count: number, watch: boolean, tally: Tally | null): Promise<{ mbps: number; lat: number[] }> => {
      const { localPorts } = await loader.request<{ localPorts: number[] }>('loadOpen', { url: ctx.daemon.url, sessions, port: ctx.discardPort });
      const cpu0 = cpuOfAll(pids);
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
      addTo(tally, pids, cpu0, (bytes * sending) / 1e6);
      await loader.request('loadCloseSockets');
      for (let i = 0; i < localPorts.length; i++) {
        const end = await ctx.discard.connectionEnded(ctx.discardPort, localPorts[i]!);
        checks.push(check(`${label}: bytes at the peer (session ${i + 1})`, i < sending ? bytes : 0, end.bytes));
      }
      return { mbps: (bytes * sending) / ((last - t0) / 1e9) / 1e6, lat };
    };
    /** The same from this process with raw node:net: n connections at once, count 64 KiB writes each; MB/s. */
    // (The daemon is idle then: its CPU is not read.)
    const rawPids = [null, process.pid, ctx.discard.child.pid!];
    const buf = Buffer.alloc(CHUNK, 0x5a);
    const rawRound = async (label: string, n: number, count: number, tally: Tally | null): Promise<number> => {
      const socks = await Promise.all(Array.from({ length: n }, () => rawConnect(ctx.discardPort)));
      // (A closed socket no longer knows its port.)
      const ports = socks.map((sock) => sock.localPort!);
      const bytes = CHUNK * count;
      const cpu0 = cpuOfAll(rawPids);
      const t0 = now();
      const reached = ports.map((remotePort) => ctx.discard.request<{ t: number; bytes: number }>('expect', { port: ctx.discardPort, remotePort, bytes }, 300_000));
      await Promise.all(socks.map((sock) => writeAll(sock, buf, count)));
      const ends = await Promise.all(reached);
      const last = Math.max(...ends.map((r) => (ctx.sharedClock ? r.t : now())));
      addTo(tally, rawPids, cpu0, (bytes * n) / 1e6);
      await Promise.all(socks.map(endSocket));
      for (let i = 0; i < n; i++) {
        const end = await ctx.discard.connectionEnded(ctx.discardPort, ports[i]!);
        checks.push(check(`${label}: bytes at the peer (connection ${i + 1})`, bytes, end.bytes));
      }
      return (bytes * n) / ((last - t0) / 1e9) / 1e6;
    };
    // Full runs: rounds first, not measured (the first rounds on new sessions ran at half the rate).
    if (!ctx.quick) {
      await repeatFor(WARM_UP_SECONDS, async () => void (await round('many sessions warm-up', sessions, perSession, false, null)));
      await rawRound('many sessions raw warm-up', sessions, perSession, null);
    }
    for (let rep = 0; rep < ctx.reps; rep++) {
      // One session sends the same bytes as all of them, right before or after (alternating), in
      // the same phase of the machine: the aggregate's yardstick.
      const alone = async (): Promise<void> => void one.push((await round(`many sessions run ${rep + 1}, one session alone`, 1, perSession * sessions, false, cpu.alone)).mbps);
      if (rep % 2 === 1) await alone();
      const all = await round(`many sessions run ${rep + 1}`, sessions, perSession, true, cpu.aggregate);
      if (rep % 2 === 0) await alone();
      aggregate.push(all.mbps);
      // Raw node:net, the same bytes as many connections and as one, in alternating order too.
      const rawAlone = async (): Promise<void> => void rawOne.push(await rawRound(`many sessions run ${rep + 1}, raw, one connection`, 1, perSession * sessions, cpu.rawAlone));
      if (rep % 2 === 1) await rawAlone();
      rawAggregate.push(await rawRound(`many sessions run ${rep + 1}, raw, ${sessions} connections`, sessions, perSession, cpu.rawAggregate));
      if (rep % 2 === 0) await rawAlone();
      if (all.lat.length > 0) {
        p50.push(percentile(all.lat, 50));
        p99.push(percentile(all.lat, 99));
      }
      ctx.log(`  many sessions rep ${rep + 1}: ${aggregate[rep]!.toFixed(0)} MB/s in all, one session alone ${one[rep]!.toFixed(0)} MB/s; bystander p50 ${p50[rep]?.toFixed(0)} us, p99 ${p99[rep]?.toFixed(0)} us (${all.lat.length} calls); CPU per MB so far, daemon + load + peer: all ${perMb(cpu.aggregate)}, alone ${perMb(cpu.alone)}; raw ${rawAggregate[rep]!.toFixed(0)} MB/s in all, one connection ${rawOne[rep]!.toFixed(0)} MB/s, CPU per MB, writer + peer: all ${rawPerMb(cpu.rawAggregate)}, one ${rawPerMb(cpu.rawAlone)}`);
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
    ...(cpu.aggregate.mb > 0 && cpu.alone.mb > 0 ? { cpuPerMb: { aggregate: perMbOf(cpu.aggregate), alone: perMbOf(cpu.alone) } } : {}),
    raw: {
      aggregate: summarize(rawAggregate),
      one: summarize(rawOne),
      ratio: summarize(rawAggregate.map((a, i) => a / rawOne[i]!)),
      cpuPerMb: cpu.rawAggregate.mb > 0 && cpu.rawAlone.mb > 0 ? { aggregate: writerPerMb(cpu.rawAggregate), alone: writerPerMb(cpu.rawAlone) } : null,
    },
    checks,
  };
}
