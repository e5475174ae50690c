/**
 * Scenarios 1 (bulk) and 3 (small-send rate): overlapped WSPSends on TCP to the discarding peer,
 * pipelined, against raw node:net writes of the same size to the same peer. A run is timed from
 * its first send to the moment the peer has received its last byte (the peer's clock, which is
 * this process's CLOCK_MONOTONIC); then the socket is closed and the peer's count at FIN checked.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx, type Pair } from '../lib/context.js';
import { endSocket, rawConnect, writeAll } from '../lib/raw.js';
import { SendPipeline, closeSocket, tcpSocket } from '../lib/spi.js';
import { readFileSync, readdirSync } from 'node:fs';
import { relayRun } from '../lib/relay.js';
import { startWebsockify } from '../lib/procs.js';
import { now, summarize, type Summary } from '../lib/stats.js';
import { WARM_UP_SECONDS, warmUp } from '../lib/warm-up.js';
import { GcStats, type GcTotals } from '@spiwire/server/gc-stats';

interface Run {
  seconds: number;
  bytes: number;
}

async function peerReached(ctx: Ctx, remotePort: number, bytes: number, t0: number): Promise<number> {
  const r = await ctx.discard.request<{ t: number; bytes: number }>('expect', { port: ctx.discardPort, remotePort, bytes });
  return ((ctx.sharedClock ? r.t : now()) - t0) / 1e9;
}

/** The peer's byte count once the connection ended (FIN seen). */
async function bytesAtEnd(ctx: Ctx, remotePort: number): Promise<number> {
  return (await ctx.discard.connectionEnded(ctx.discardPort, remotePort)).bytes;
}

export async function spiwireRun(ctx: Ctx, spi: S.SpiSession, chunk: number, count: number, window: number): Promise<Run> {
  const { s, localPort } = await tcpSocket(spi, ctx.discardPort);
  const buf = Buffer.alloc(chunk, 0x5a);
  const total = chunk * count;
  const t0 = now();
  const reached = peerReached(ctx, localPort, total, t0);
  await new SendPipeline(spi, ctx.api, s, buf, count, window).run();
  const seconds = await reached;
  await closeSocket(spi, s);
  return { seconds, bytes: await bytesAtEnd(ctx, localPort) };
}

export async function rawRun(ctx: Ctx, chunk: number, count: number): Promise<Run> {
  const sock = await rawConnect(ctx.discardPort);
  const localPort = sock.localPort!;
  const buf = Buffer.alloc(chunk, 0x5a);
  const t0 = now();
  const reached = peerReached(ctx, localPort, chunk * count, t0);
  await writeAll(sock, buf, count);
  const seconds = await reached;
  await endSocket(sock);
  return { seconds, bytes: await bytesAtEnd(ctx, localPort) };
}

export interface ThroughputResult {
  params: Record<string, number | string>;
  pair: Pair;
  checks: Check[];
  /** Bulk only: the same bytes through WebSocket-to-TCP relays a user might pick instead. */
  peers?: RelayPeers;
  /**
   * Bulk only: read and write system calls per MB (10^6 B) sent, from /proc/<pid>/io; and the
   * daemon's reads alone, each of which has node allocate a buffer (ArrayBuffer memory, which
   * allocations below cannot count).
   */
  syscalls?: { daemonPerMB: number; rawPerMB: number; daemonReadsPerMB: number } | null;
  /**
   * Bulk only: what the garbage collector saw per MB sent (server/src/gc-stats.ts): the daemon's
   * and this process's as the SDK client during spiwire runs, this process's as the raw writer
   * during raw runs. null where a daemon does not report it.
   */
  allocations?: { daemon: GcPerMB; client: GcPerMB; raw: GcPerMB } | null;
  /**
   * CPU time (user + system) per unit sent (a send, or an MB for bulk): this process as the SDK
   * client and the daemon during spiwire runs, this process as the raw writer during raw runs.
   * Steadier than a rate on a shared machine: it does not count time spent waiting for a core.
   */
  cpu?: { unit: string; clientUs: number; daemonUs: number; rawUs: number } | null;
}

/** Bytes allocated on the JavaScript heap (KB = 10^3 B) and collections, per MB sent. */
export interface GcPerMB {
  heapKB: number;
  minor: number;
  major: number;
}

function gcDelta(after: GcTotals, before: GcTotals): GcTotals {
  return { minor: after.minor - before.minor, major: after.major - before.major, pauseMs: after.pauseMs - before.pauseMs, heapAllocatedBytes: after.heapAllocatedBytes - before.heapAllocatedBytes };
}

function addGc(sum: GcTotals, d: GcTotals): void {
  for (const k of Object.keys(sum) as Array<keyof GcTotals>) sum[k] += d[k];
}

function gcPerMB(g: GcTotals, bytes: number): GcPerMB {
  const mb = bytes / 1e6;
  return { heapKB: g.heapAllocatedBytes / 1e3 / mb, minor: g.minor / mb, major: g.major / mb };
}

const noGc = (): GcTotals => ({ minor: 0, major: 0, pauseMs: 0, heapAllocatedBytes: 0 });

export interface RelayPeers {
  /** ws (with bufferutil) to node:net: the obvious relay to write. */
  naive: Summary;
  /** Debian's websockify; null when it is not installed. */
  websockify: Summary | null;
}

/** The kernel's clock ticks per second for /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/**
 * CPU time a process has used so far in microseconds, or null where there is no /proc: the sum
 * of its threads' time on a CPU from /proc/<pid>/task/<tid>/schedstat (nanoseconds), else utime
 * + stime from /proc/<pid>/stat, which counts 10 ms ticks, coarse beside a run that costs the
 * daemon some 100 ms and a figure judged to 3 %.
 */
export function cpuOf(pid: number): number | null {
  const ns = onCpuNs(pid);
  if (ns !== null) return ns / 1000;
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? (ticks * 1e6) / CLOCK_TICKS : null;
  } catch {
    return null;
  }
}

/** Nanoseconds on a CPU, summed over the process's threads (schedstat's first field), or null. */
function onCpuNs(pid: number): number | null {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let sum = 0;
  for (const tid of tids) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read: its time is no longer counted.
    }
  }
  return Number.isFinite(sum) && sum > 0 ? sum : null;
}

export function selfCpu(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** read and write system calls a process has made so far (/proc/<pid>/io), or null where there is no such file. */
function syscallsOf(pid: number | 'self'): { reads: number; writes: number } | null {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const v = (k: string): number => Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(io)?.[1] ?? NaN);
    const reads = v('syscr');
    const writes = v('syscw');
    return Number.isFinite(reads + writes) ? { reads, writes } : null;
  } catch {
    return null;
  }
}

/**
 * Repeats spiwire and raw runs, alternating which goes first. Full runs start with a warm-up of
 * each side (warmUp), which also sizes the runs: each side sends what it can in about
 * targetSeconds, so a slow or a fast path gets runs of a similar length.
 */
async function compare(ctx: Ctx, name: string, chunk: number, quickCount: number, warmCount: number, targetSeconds: number, window: number, unit: string, rate: (bytes: number, seconds: number) => number, api = ctx.api, countSyscalls = false, cpuUnit: { name: string; per: (bytes: number) => number } | null = null, beside: Beside | null = null): Promise<ThroughputResult> {
  const spi = await S.connect(ctx.daemon.url, { autoApc: true });
  const c = { ...ctx, api };
  // This process's collector, counted where system calls are (bulk).
  const selfGc = countSyscalls ? new GcStats().start() : null;
  try {
    let swCount = quickCount;
    let rawCount = quickCount;
    if (!ctx.quick) {
      swCount = await warmUp(warmCount, targetSeconds, async () => warmCount / (await spiwireRun(c, spi, chunk, warmCount, window)).seconds);
      rawCount = await warmUp(warmCount, targetSeconds, async () => warmCount / (await rawRun(c, chunk, warmCount)).seconds);
    }
    const sw: number[] = [];
    const raw: number[] = [];
    const checks: Check[] = [];
    // Bytes each side sent, over the runs the counts below cover.
    const sent = { spiwire: 0, raw: 0 };
    // System calls: the daemon's during spiwire runs, this process's (the raw writer) during raw runs.
    const calls = { daemon: 0, daemonReads: 0, raw: 0, ok: countSyscalls };
    // CPU time: this process's and the daemon's during spiwire runs, this process's during raw runs.
    const cpu = { client: 0, daemon: 0, raw: 0, ok: cpuUnit !== null };
    // Allocations, counted where system calls are: the daemon's (from /stats) and this process's.
    const gc = { daemon: noGc(), client: noGc(), raw: noGc(), ok: countSyscalls, self: selfGc };
    for (let rep = 0; rep < ctx.reps; rep++) {
      const order = rep % 2 === 0 ? ['spiwire', 'raw'] : ['raw', 'spiwire'];
      for (const who of order) {
        const count = who === 'spiwire' ? swCount : rawCount;
        const pid = who === 'spiwire' ? ctx.daemon.pid : 'self';
        const before = calls.ok ? syscallsOf(pid) : null;
        const selfBefore = selfCpu();
        const daemonBefore = cpu.ok && who === 'spiwire' ? cpuOf(ctx.daemon.pid) : null;
        const daemonGcBefore = gc.ok && who === 'spiwire' ? (await ctx.daemon.stats()).gc : null;
        const selfGcBefore = gc.self?.totals() ?? null;
        const r = who === 'spiwire' ? await spiwireRun(c, spi, chunk, count, window) : await rawRun(c, chunk, count);
        const after = before === null ? null : syscallsOf(pid);
        if (selfGcBefore !== null) addGc(who === 'spiwire' ? gc.client : gc.raw, gcDelta(gc.self!.totals(), selfGcBefore));
        if (gc.ok && who === 'spiwire') {
          const daemonGcAfter = daemonGcBefore === null ? null : (await ctx.daemon.stats()).gc;
          if (daemonGcBefore === null || daemonGcAfter === null) gc.ok = false;
          else addGc(gc.daemon, gcDelta(daemonGcAfter, daemonGcBefore));
        }
        const selfUsed = selfCpu() - selfBefore;
        sent[who === 'spiwire' ? 'spiwire' : 'raw'] += chunk * count;
        if (who === 'spiwire') {
          const daemonAfter = daemonBefore === null ? null : cpuOf(ctx.daemon.pid);
          if (daemonBefore === null || daemonAfter === null) cpu.ok = false;
          else cpu.daemon += daemonAfter - daemonBefore;
          cpu.client += selfUsed;
        } else cpu.raw += selfUsed;
        if (before === null || after === null) calls.ok = false;
        else if (who === 'spiwire') {
          calls.daemon += after.reads + after.writes - before.reads - before.writes;
          calls.daemonReads += after.reads - before.reads;
        } else calls.raw += after.reads + after.writes - before.reads - before.writes;
        (who === 'spiwire' ? sw : raw).push(rate(chunk * count, r.seconds));
        checks.push(check(`${name} ${who} run ${rep + 1}: bytes at the peer`, chunk * count, r.bytes));
      }
      ctx.log(`  ${name} rep ${rep + 1}: spiwire ${sw[rep]!.toFixed(0)} ${unit}, raw ${raw[rep]!.toFixed(0)} ${unit}`);
      if (beside) {
        if (rep === 0 && !ctx.quick) await beside.warmUp(swCount);
        await beside.run(rep, swCount);
      }
    }
    const a = summarize(sw);
    const b = summarize(raw);
    const result: ThroughputResult = {
      params: { chunkBytes: chunk, spiwireSendsPerRun: swCount, rawWritesPerRun: rawCount, inFlight: window, api, warmUpSeconds: ctx.quick ? 0 : WARM_UP_SECONDS },
      pair: { unit, better: 'higher', spiwire: a, raw: b, ratio: a.median / b.median, ratioRuns: sw.map((x, i) => x / raw[i]!) },
      checks,
    };
    const measured = sent.spiwire > 0 && sent.raw > 0;
    if (cpuUnit) {
      const per = (us: number, bytes: number): number => us / cpuUnit.per(bytes);
      result.cpu = cpu.ok && measured ? { unit: cpuUnit.name, clientUs: per(cpu.client, sent.spiwire), daemonUs: per(cpu.daemon, sent.spiwire), rawUs: per(cpu.raw, sent.raw) } : null;
    }
    if (countSyscalls) result.syscalls = calls.ok && measured ? { daemonPerMB: calls.daemon / (sent.spiwire / 1e6), rawPerMB: calls.raw / (sent.raw / 1e6), daemonReadsPerMB: calls.daemonReads / (sent.spiwire / 1e6) } : null;
    if (countSyscalls) result.allocations = gc.ok && measured ? { daemon: gcPerMB(gc.daemon, sent.spiwire), client: gcPerMB(gc.client, sent.spiwire), raw: gcPerMB(gc.raw, sent.raw) } : null;
    return result;
  } finally {
    selfGc?.stop();
    await spi.close();
  }
}

/** Scenario 1's sends: their size, and how many are in flight. */
export const BULK_CHUNK = 64 * 1024;
export const BULK_IN_FLIGHT = 32;

/**
 * Scenario 1: 64 KiB overlapped WSPSends, window in flight, against raw 64 KiB writes; then the
 * same 64 KiB messages through the naive relay and websockify. MB/s (10^6 bytes).
 */
/** Runs of other programs inside compare()'s repetitions, next to spiwire's and raw's. */
interface Beside {
  /** Once, before the first repetition's runs (full runs only). */
  warmUp(spiwireCount: number): Promise<void>;
  run(rep: number, spiwireCount: number): Promise<void>;
}

export async function bulk(ctx: Ctx, window = BULK_IN_FLIGHT): Promise<ThroughputResult> {
  const relays = await RelayPeerRuns.start(ctx);
  try {
    // Quick: 4 MiB. Full: about 1.5 s per run, sized by warm-up runs of 128 MiB.
    const r = await compare(ctx, 'bulk', BULK_CHUNK, 64, 2048, 1.5, window, 'MB/s', (bytes, seconds) => bytes / seconds / 1e6, ctx.api, true, { name: 'MB', per: (bytes) => bytes / 1e6 }, relays);
    r.checks.push(...relays.checks);
    r.peers = relays.figures();
    return r;
  } finally {
    relays.stop();
  }
}

/**
 * The relays, one run each in every repetition of scenario 1, right after spiwire's and raw's
 * runs: relays run after all of them moved by the machine's phase against spiwire (the naive
 * relay at 585 MB/s in one full run, 350 in the one before). Each run sends the bytes of a
 * spiwire run (its figure is of the same order).
 */
class RelayPeerRuns implements Beside {
  readonly checks: Check[] = [];
  private readonly naive: number[] = [];
  private readonly websockify: number[] = [];

  private constructor(
    private readonly ctx: Ctx,
    private readonly naivePort: number,
    private readonly ws: { port: number; stop(): void } | null,
  ) {}

  static async start(ctx: Ctx): Promise<RelayPeerRuns> {
    const naivePort = (await ctx.ws.request<{ port: number }>('wsRelay', { target: ctx.discardPort })).port;
    const ws = await startWebsockify(ctx.discardPort);
    if (!ws) ctx.log('  bulk websockify: skipped (not installed; apt-get install websockify)');
    return new RelayPeerRuns(ctx, naivePort, ws);
  }

  private relays(): Array<{ name: string; port: number; protocols: string[]; rates: number[] }> {
    const naive = { name: 'naive relay', port: this.naivePort, protocols: [], rates: this.naive };
    return this.ws ? [naive, { name: 'websockify', port: this.ws.port, protocols: ['binary'], rates: this.websockify }] : [naive];
  }

  async warmUp(count: number): Promise<void> {
    for (const x of this.relays()) await relayRun(this.ctx, x.port, x.protocols, BULK_CHUNK, Math.min(count, 2048));
  }

  async run(rep: number, count: number): Promise<void> {
    const rates: string[] = [];
    for (const x of this.relays()) {
      const run = await relayRun(this.ctx, x.port, x.protocols, BULK_CHUNK, count);
      x.rates.push((BULK_CHUNK * count) / run.seconds / 1e6);
      this.checks.push(check(`bulk ${x.name} run ${rep + 1}: bytes at the peer`, BULK_CHUNK * count, run.bytes));
      rates.push(`${x.name} ${x.rates[rep]!.toFixed(0)} MB/s`);
    }
    this.ctx.log(`  bulk rep ${rep + 1}, beside: ${rates.join(', ')}`);
  }

  figures(): RelayPeers {
    return { naive: summarize(this.naive), websockify: this.ws ? summarize(this.websockify) : null };
  }

  stop(): void {
    this.ws?.stop();
  }
}

/** Scenario 3: 100-byte overlapped WSPSends, window in flight, against raw 100-byte writes. Sends per second. */
export function smallRate(ctx: Ctx, window = 1024, api = ctx.api): Promise<ThroughputResult> {
  return compare(ctx, 'small-send' + (api === ctx.api ? '' : ` (${api})`), 100, 2000, 20_000, 1.5, window, 'sends/s', (bytes, seconds) => bytes / 100 / seconds, api, false, { name: 'send', per: (bytes) => bytes / 100 });
}
