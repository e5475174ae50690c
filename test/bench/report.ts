/**
 * The benchmark's outputs, all made from one results object: the targets (met or not), the table
 * printed on stdout, the SVG chart of the ratios and docs/performance.md.
 */
import type { Check, Pair } from './lib/context.js';
import type { Summary } from './lib/stats.js';
import type { GcPerMB, ThroughputResult } from './scenarios/tcp-throughput.js';
import type { LatencyResult } from './scenarios/latency.js';
import type { UdpResult } from './scenarios/udp.js';
import type { CompletionResult, CompletionVariant } from './scenarios/completion.js';
import type { ScaleResult, StepResult } from './scenarios/scale.js';
import type { SlowPeerResult } from './scenarios/slow-peer.js';
import type { LargeSendFigures, LargeSendsResult } from './scenarios/large-sends.js';
import type { ManySessionsResult } from './scenarios/many-sessions.js';
import type { BookkeepingResult } from './scenarios/bookkeeping.js';

export interface Results {
  manySessions?: ManySessionsResult;
  bookkeeping?: BookkeepingResult;
  bulk?: ThroughputResult;
  latency?: LatencyResult;
  smallSendRate?: ThroughputResult;
  smallSendRateHook?: ThroughputResult;
  udp?: UdpResult;
  completion?: CompletionResult;
  scale?: ScaleResult;
  slowPeer?: SlowPeerResult;
  largeSends?: LargeSendsResult;
}

export interface Meta {
  date: string;
  mode: 'full' | 'quick';
  reps: number;
  scaleReps: number;
  api: string;
  seconds: number;
  node: string;
  platform: string;
  cpus: { count: number; model: string; mhz: number };
  memoryBytes: number;
  loadavg: { start: number[]; end: number[] };
  git: { commit: string; dirty: string[] };
  bufferutil: boolean;
  daemonFlags: string[];
  /** The V8 flags the daemon ran with (besides --expose-gc). */
  daemonNodeFlags: string[];
  daemonOutput: string;
  sharedClock: boolean;
  nofileHard: number;
}

export interface Target {
  id: string;
  /** From the issue's target list, or a requirement stated in a scenario ("must grow linearly"). */
  kind: 'target' | 'requirement';
  what: string;
  /** How the value is judged, in words. */
  judged: string;
  value: number;
  unit: string;
  comparison: '>=' | '<=';
  threshold: number;
  met: boolean;
}

export interface Report {
  meta: Meta;
  targets: Target[];
  checks: { total: number; passed: number; failed: Check[] };
  results: Results;
}

// ---------------------------------------------------------------- numbers

export function fmt(x: number, unit = ''): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  const digits = a >= 100 || Number.isInteger(x) ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  const s = x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return unit ? `${s} ${unit}` : s;
}

function kib(bytes: number): string {
  return `${fmt(bytes / 1024)} KiB`;
}

function mib(bytes: number): string {
  return `${fmt(bytes / 2 ** 20)} MiB`;
}

/** A send's size: 1 GiB, 256 MiB. */
function sizeText(bytes: number): string {
  return bytes >= 2 ** 30 && bytes % 2 ** 30 === 0 ? `${fmt(bytes / 2 ** 30)} GiB` : mib(bytes);
}

/** The stream window a run recorded (runs saved before it was recorded say nothing of it). */
function windowText(w: number | string | undefined): string {
  return typeof w === 'number' && w > 0 ? sizeText(w) : 'the default';
}

function spread(s: Summary, unit = '', scale = 1): string {
  return `${fmt(s.median / scale, unit)} [${fmt(s.min / scale)}–${fmt(s.max / scale)}]`;
}

/** Scenario 9's CPU per MB of one kind of run, as text: daemon + load process (+ discard peer). */
function cpuText(c: { daemon: number; load: number; peer?: number }): string {
  return `${fmt(c.daemon)} + ${fmt(c.load)}${c.peer !== undefined ? ` + ${fmt(c.peer)}` : ''} us`;
}

function ratioSpread(p: Pair): string {
  const r = p.ratioRuns.filter(Number.isFinite);
  return `${fmt(p.ratio)} [${fmt(Math.min(...r))}–${fmt(Math.max(...r))}]`;
}

function metText(t: Target): string {
  return t.met ? 'met' : 'NOT MET';
}

// ---------------------------------------------------------------- targets

function stepAt(steps: StepResult[], n: number): StepResult | undefined {
  return steps.find((s) => s.n === n) ?? steps[steps.length - 1];
}

export function targets(r: Results): Target[] {
  const out: Target[] = [];
  const add = (t: Omit<Target, 'met'>): void => {
    out.push({ ...t, met: t.comparison === '>=' ? t.value >= t.threshold : t.value <= t.threshold });
  };
  if (r.bulk) add({ id: 'bulk', kind: 'target', what: 'Bulk at least 0.5 of raw TCP', judged: 'median spiwire MB/s / median raw node:net MB/s', value: r.bulk.pair.ratio, unit: 'x raw', comparison: '>=', threshold: 0.5 });
  if (r.bulk?.peers) {
    add({ id: 'bulkVsNaive', kind: 'target', what: 'Bulk at least 2x the naive relay', judged: 'median spiwire MB/s / median naive relay MB/s', value: r.bulk.pair.spiwire.median / r.bulk.peers.naive.median, unit: 'x', comparison: '>=', threshold: 2 });
    if (r.bulk.peers.websockify) add({ id: 'bulkVsWebsockify', kind: 'target', what: 'Bulk at least 4x websockify', judged: 'median spiwire MB/s / median websockify MB/s', value: r.bulk.pair.spiwire.median / r.bulk.peers.websockify.median, unit: 'x', comparison: '>=', threshold: 4 });
  }
  if (r.latency) {
    add({ id: 'latency', kind: 'target', what: 'Small-call latency p50 at most 1.1 times the raw WebSocket round trip', judged: 'median of the per-repetition p50s, spiwire / raw ws', value: r.latency.p50.ratio, unit: 'x raw', comparison: '<=', threshold: 1.1 });
    add({ id: 'latencyP99', kind: 'target', what: 'Small-call latency p99 at most 1.25 times the raw WebSocket round trip', judged: 'median of the per-repetition p99s, spiwire / raw ws', value: r.latency.p99.ratio, unit: 'x raw', comparison: '<=', threshold: 1.25 });
  }
  if (r.latency?.resume) {
    const rs = r.latency.resume;
    add({ id: 'resumeLatency', kind: 'target', what: 'Resumable sessions add at most 3 % to the small-call latency p50', judged: 'median of the per-repetition p50s of a resumable session / that of a session without resume, interleaved in the same repetitions', value: rs.p50.ratio, unit: 'x', comparison: '<=', threshold: 1.03 });
    add({ id: 'resumeLatencyP99', kind: 'target', what: 'Resumable sessions add at most 3 % to the small-call latency p99', judged: 'median of the per-repetition p99s of a resumable session / that of a session without resume, interleaved in the same repetitions', value: rs.p99.ratio, unit: 'x', comparison: '<=', threshold: 1.03 });
  }
  if (r.smallSendRate) add({ id: 'smallSendRate', kind: 'target', what: 'Small sends at least 0.8 of raw node:net 100-byte writes', judged: 'median sends/s through the public SPI path (WSPSend + WSAOVERLAPPED + completion routine) / median raw writes/s', value: r.smallSendRate.pair.ratio, unit: 'x raw', comparison: '>=', threshold: 0.8 });
  if (r.udp) add({ id: 'udp', kind: 'target', what: 'UDP at least 0.7 of raw node:dgram', judged: 'median datagrams/s received, spiwire / raw', value: r.udp.pair.ratio, unit: 'x raw', comparison: '>=', threshold: 0.7 });
  if (r.scale) {
    const s = stepAt(r.scale.sockets, 10_000);
    const o = stepAt(r.scale.ops, 100_000);
    if (s) {
      add({ id: 'socketMemoryLive', kind: 'target', what: 'At most 4 KiB of daemon memory per idle connected socket (live heap + external)', judged: `median per-socket growth of heapUsed + external less compiled code at ${fmt(s.n)} sockets`, value: s.live.median, unit: 'bytes', comparison: '<=', threshold: 4 * 1024 });
      add({ id: 'socketMemoryRss', kind: 'target', what: 'At most 10 KiB of daemon memory per idle connected socket (rss)', judged: `median per-socket growth of rss at ${fmt(s.n)} sockets`, value: s.rss.median, unit: 'bytes', comparison: '<=', threshold: 10 * 1024 });
    }
    if (o) {
      add({ id: 'opMemoryLive', kind: 'target', what: 'At most 512 B of daemon memory per outstanding operation (live heap + external)', judged: `median per-operation growth of heapUsed + external less compiled code at ${fmt(o.n)} operations, less the 1-byte payload`, value: o.live.median, unit: 'bytes', comparison: '<=', threshold: 512 });
      add({ id: 'opMemoryRss', kind: 'target', what: 'At most 1 KiB of daemon memory per outstanding operation (rss)', judged: `median per-operation growth of rss at ${fmt(o.n)} operations, less the 1-byte payload`, value: o.rss.median, unit: 'bytes', comparison: '<=', threshold: 1024 });
    }
    const devs = [...r.scale.linearity.sockets, ...r.scale.linearity.ops].map((x) => Math.abs(x - 1));
    add({ id: 'linear', kind: 'requirement', what: 'Memory grows linearly (per-unit cost at every size within ±30 % of the largest size’s)', judged: 'largest deviation of a per-unit live cost from the largest size’s', value: Math.max(...devs), unit: '', comparison: '<=', threshold: r.scale.linearity.tolerance });
  }
  if (r.slowPeer) {
    const sp = r.slowPeer;
    out.push({ id: 'slowPeerFlat', kind: 'requirement', what: 'Slow peer: daemon memory stays flat, bounded by the socket buffer and the outstanding-operation limit', judged: `live growth ≤ bound (${mib(sp.bound)}) and growth after the half-way point ≤ 5 % of it`, value: sp.maxGrowth, unit: 'bytes', comparison: '<=', threshold: sp.bound, met: sp.flat });
  }
  if (r.manySessions) {
    const m = r.manySessions;
    const what = `${m.params['sessions']} sessions: aggregate at least 0.9 of one session's bulk`;
    // As for large sends: judged on the one-session run beside each aggregate, not on scenario 1's.
    if (m.ratio) add({ id: 'manySessionsAggregate', kind: 'target', what, judged: 'median over the repetitions of (aggregate MB/s / MB/s of one of the sessions sending the same bytes alone, next to it)', value: m.ratio.median, unit: 'x', comparison: '>=', threshold: 0.9 });
    else if (r.bulk) add({ id: 'manySessionsAggregate', kind: 'target', what, judged: 'median aggregate MB/s / median scenario 1 spiwire MB/s', value: m.aggregate.median / r.bulk.pair.spiwire.median, unit: 'x', comparison: '>=', threshold: 0.9 });
  }
  if (r.bookkeeping) {
    // Judged on CPU per send where it was measured: on a shared 2-core machine the rates of runs
    // a second apart differ by more than the 3 % to be judged; the CPU the sends cost does not.
    const cpu = r.bookkeeping.cpu;
    if (cpu) {
      add({ id: 'resumeCost', kind: 'target', what: 'Resumable sessions cost at most 3 % more per small send', judged: 'CPU per send (SDK client + daemon, summed over the repetitions) of a resumable session / that of the same session without resume', value: cpu.ratios.resume, unit: 'x', comparison: '<=', threshold: 1.03 });
      add({ id: 'faultsArmedCost', kind: 'target', what: 'A fault rule armed and never firing costs at most 3 % more per small send', judged: 'CPU per send (SDK client + daemon, summed over the repetitions) of a session with a rule armed on another socket / that of the same session without', value: cpu.ratios.faultsArmed, unit: 'x', comparison: '<=', threshold: 1.03 });
    } else {
      add({ id: 'resumeCost', kind: 'target', what: 'Resumable sessions cost at most 3 % of the small-send rate', judged: 'median over the repetitions of the sends/s of a resumable session / those of the same session without resume in the same repetition', value: r.bookkeeping.ratios.resume, unit: 'x', comparison: '>=', threshold: 0.97 });
      add({ id: 'faultsArmedCost', kind: 'target', what: 'A fault rule armed and never firing costs at most 3 % of the small-send rate', judged: 'median over the repetitions of the sends/s of a session with a rule armed on another socket / those without in the same repetition', value: r.bookkeeping.ratios.faultsArmed, unit: 'x', comparison: '>=', threshold: 0.97 });
    }
  }
  if (r.manySessions) add({ id: 'manySessionsBystander', kind: 'target', what: 'Meanwhile a bystander session\'s small-call p99 under 5 ms', judged: 'median of the per-repetition p99 of blocking 100-byte WSPSends in another session', value: r.manySessions.bystanderP99.median / 1000, unit: 'ms', comparison: '<=', threshold: 5 });
  if (r.largeSends) {
    const ls = r.largeSends;
    const judged = 'largest growth of the daemon’s rss (peak during the send − rss before it) over the first (hashed) run and the measured repetitions';
    add({ id: 'largeSendBlockingMemory', kind: 'requirement', what: `Large sends: the daemon grows by at most ${mib(ls.bound)} during a blocking ${sizeText(ls.blocking.bytes)} WSPSend`, judged, value: ls.blocking.maxGrowth, unit: 'bytes', comparison: '<=', threshold: ls.bound });
    add({ id: 'largeSendOverlappedMemory', kind: 'requirement', what: `Large sends: the daemon grows by at most ${mib(ls.bound)} during an overlapped ${sizeText(ls.overlapped.bytes)} WSPSend`, judged, value: ls.overlapped.maxGrowth, unit: 'bytes', comparison: '<=', threshold: ls.bound });
    add({ id: 'largeSendGrowth', kind: 'target', what: `Large sends: daemon memory grows by less than 64 MiB during an overlapped ${sizeText(ls.overlapped.bytes)} WSPSend`, judged, value: ls.overlapped.maxGrowth, unit: 'bytes', comparison: '<=', threshold: 64 * 2 ** 20 });
    // Judged on bulk sends run beside each large one: scenario 1 runs minutes apart, in another
    // phase of the machine, and whole-run ratios against it moved from 0.70 to 1.30.
    const what = `Large sends: an overlapped ${sizeText(ls.overlapped.bytes)} WSPSend at least 0.8 of the bulk figure`;
    if (ls.bulkBeside) add({ id: 'largeSendRate', kind: 'target', what, judged: 'median over the repetitions of (MB/s of the large overlapped send / MB/s of the same bytes as scenario 1 bulk sends, run next to it on the same daemon)', value: ls.bulkBeside.ratio.median, unit: 'x', comparison: '>=', threshold: 0.8 });
    else if (r.bulk) add({ id: 'largeSendRate', kind: 'target', what, judged: 'median MB/s of the large overlapped send / median scenario 1 spiwire MB/s', value: ls.overlapped.pair.spiwire.median / r.bulk.pair.spiwire.median, unit: 'x', comparison: '>=', threshold: 0.8 });
  }
  return out;
}

function targetValue(t: Target): string {
  if (t.unit === 'bytes') {
    if (t.threshold >= 1024 * 1024) return `${mib(t.value)} (≤ ${mib(t.threshold)})`;
    if (t.threshold >= 10 * 1024) return `${kib(t.value)} (≤ ${kib(t.threshold)})`;
    return `${fmt(t.value)} B (≤ ${fmt(t.threshold)} B)`;
  }
  if (t.unit === 'sends/s') return `${fmt(t.value)} sends/s (≥ ${fmt(t.threshold)})`;
  if (t.unit === '') return `${fmt(t.value)} (≤ ${fmt(t.threshold)})`;
  return `${fmt(t.value)} ${t.unit} (${t.comparison === '<=' ? '≤' : '≥'} ${fmt(t.threshold)})`;
}

// ---------------------------------------------------------------- rows shared by the table and the page

interface Row {
  n: string;
  scenario: string;
  spiwire: string;
  raw: string;
  ratio: string;
}

function rows(r: Results): Row[] {
  const out: Row[] = [];
  const pairRow = (n: string, scenario: string, p: Pair, unit: string): void => {
    out.push({ n, scenario, spiwire: spread(p.spiwire, unit), raw: spread(p.raw, unit), ratio: ratioSpread(p) });
  };
  const cpuRow = (n: string, c: ThroughputResult['cpu']): void => {
    if (c) out.push({ n, scenario: `  CPU per ${c.unit}: SDK client + daemon / raw writer`, spiwire: `${fmt(c.clientUs)} + ${fmt(c.daemonUs)} us`, raw: `${fmt(c.rawUs)} us`, ratio: `${fmt((c.clientUs + c.daemonUs) / c.rawUs)} x raw` });
  };
  if (r.bulk) pairRow('1', `bulk: 64 KiB overlapped WSPSend, ${r.bulk.params['inFlight']} in flight (MB = 10^6 B)`, r.bulk.pair, 'MB/s');
  if (r.bulk?.peers) {
    const b = r.bulk;
    const peers = r.bulk.peers;
    const peer = (name: string, x: Summary | null): void => {
      if (!x) return void out.push({ n: '1', scenario: `  ${name}`, spiwire: 'skipped (not installed)', raw: '', ratio: '' });
      out.push({ n: '1', scenario: `  peer: ${name}, 64 KiB messages`, spiwire: spread(x, 'MB/s'), raw: `${fmt(x.median / b.pair.raw.median)} x raw`, ratio: `spiwire ${fmt(b.pair.spiwire.median / x.median)} x it` });
    };
    peer('naive relay (ws + bufferutil -> node:net)', peers.naive);
    peer('websockify (Debian)', peers.websockify);
  }
  cpuRow('1', r.bulk?.cpu);
  if (r.bulk?.syscalls) out.push({ n: '1', scenario: '  read+write system calls per MB: daemon / raw writer', spiwire: fmt(r.bulk.syscalls.daemonPerMB), raw: fmt(r.bulk.syscalls.rawPerMB), ratio: `${fmt(r.bulk.syscalls.daemonPerMB / r.bulk.syscalls.rawPerMB)} x raw` });
  const al = r.bulk?.allocations;
  if (al) {
    const gcs = (g: GcPerMB): string => fmt(g.minor + g.major);
    out.push({ n: '1', scenario: '  JS heap allocated per MB (KB): daemon; SDK client / raw writer', spiwire: `${fmt(al.daemon.heapKB)}; ${fmt(al.client.heapKB)}`, raw: fmt(al.raw.heapKB), ratio: `collections per MB: ${gcs(al.daemon)}; ${gcs(al.client)} / ${gcs(al.raw)}` });
  }
  if (r.latency) {
    pairRow('2', 'small-call latency p50: blocking WSPSend 100 B vs ws round trip', r.latency.p50, 'us');
    pairRow('2', 'small-call latency p99', r.latency.p99, 'us');
    const rs = r.latency.resume;
    if (rs) {
      // The Pair's "raw" side is the session without resume here, not a raw baseline.
      pairRow('2', '  p50: resumable session (as above) vs one without resume', rs.p50, 'us');
      pairRow('2', '  p99: resumable session (as above) vs one without resume', rs.p99, 'us');
    }
    const wp = r.latency.wokenPeer;
    if (wp) {
      pairRow('2', '  p50: the same calls to a peer woken by every send, vs ws round trip', wp.p50, 'us');
      pairRow('2', '  p99: the same calls to a peer woken by every send', wp.p99, 'us');
    }
  }
  if (r.smallSendRate) pairRow('3', `small-send rate: 100 B overlapped WSPSend, ${r.smallSendRate.params['inFlight']} in flight`, r.smallSendRate.pair, '/s');
  cpuRow('3', r.smallSendRate?.cpu);
  if (r.smallSendRateHook) pairRow('3b', 'small-send rate via the SDK startOperation hook (no APCs)', r.smallSendRateHook.pair, '/s');
  if (r.udp) pairRow('4', 'UDP: 1 KiB datagrams received per second', r.udp.pair, '/s');
  const uc = r.udp?.cost;
  if (uc) {
    const all = (c: typeof uc.spiwire): number => c.senderUs + c.daemonUs + c.receiverUs;
    out.push({ n: '4', scenario: '  CPU per datagram: SDK client + daemon + receiver / raw writer + receiver', spiwire: `${fmt(uc.spiwire.senderUs)} + ${fmt(uc.spiwire.daemonUs)} + ${fmt(uc.spiwire.receiverUs)} us`, raw: `${fmt(uc.raw.senderUs)} + ${fmt(uc.raw.receiverUs)} us`, ratio: `${fmt(all(uc.spiwire) / all(uc.raw))} x raw` });
  }
  if (r.completion) {
    const c = r.completion;
    const v = (name: string, x: CompletionVariant): void => {
      if (x.consumedToRoutine) out.push({ n: '5', scenario: `completion latency, consumed -> routine (${name})`, spiwire: `p50 ${spread(x.consumedToRoutine.p50, 'us')}`, raw: `p99 ${spread(x.consumedToRoutine.p99, 'us')}`, ratio: '' });
      out.push({ n: '5', scenario: `  notified -> routine / issued -> routine (${name})`, spiwire: `p50 ${fmt(x.notifiedToRoutine.p50.median)} / ${fmt(x.issuedToRoutine.p50.median)} us`, raw: `p99 ${fmt(x.notifiedToRoutine.p99.median)} / ${fmt(x.issuedToRoutine.p99.median)} us`, ratio: '' });
    };
    v('auto APC', c.autoApc);
    v('SleepEx', c.sleepEx);
  }
  if (r.scale) {
    for (const s of r.scale.sockets) out.push({ n: '6', scenario: `memory per idle connected socket, ${fmt(s.n)} sockets`, spiwire: `live ${spread(s.live, 'KiB', 1024)}`, raw: `rss ${spread(s.rss, 'KiB', 1024)}`, ratio: '' });
    for (const o of r.scale.ops) out.push({ n: '6', scenario: `memory per outstanding send, ${fmt(o.n)} sends`, spiwire: `live ${spread(o.live, 'B')}`, raw: `rss ${spread(o.rss, 'B')}`, ratio: '' });
  }
  if (r.slowPeer) {
    const sp = r.slowPeer;
    out.push({ n: '7', scenario: `slow peer, ${fmt(sp.params['posts'] as number)} posts of 1 KiB: live first/last/max`, spiwire: `${mib(sp.live.first)} / ${mib(sp.live.last)} / ${mib(sp.live.max)}`, raw: `rss ${mib(sp.rss.first)} / ${mib(sp.rss.last)} / ${mib(sp.rss.max)}`, ratio: '' });
  }
  if (r.largeSends) {
    const ls = r.largeSends;
    const sends: Array<[string, LargeSendFigures]> = [
      [`blocking ${sizeText(ls.blocking.bytes)}`, ls.blocking],
      [`overlapped ${sizeText(ls.overlapped.bytes)}`, ls.overlapped],
    ];
    pairRow('8', `large sends: blocking ${sizeText(ls.blocking.bytes)} WSPSend vs one node:net write`, ls.blocking.pair, 'MB/s');
    pairRow('8', `large sends: overlapped ${sizeText(ls.overlapped.bytes)} WSPSend + routine vs one write`, ls.overlapped.pair, 'MB/s');
    if (ls.bulkBeside) out.push({ n: '8', scenario: `  the same ${sizeText(ls.overlapped.bytes)} as 64 KiB bulk sends, next to each overlapped send`, spiwire: spread(ls.bulkBeside.mbps, 'MB/s'), raw: '', ratio: `overlapped ${spread(ls.bulkBeside.ratio)} x bulk` });
    for (const [what, f] of sends) out.push({ n: '8', scenario: `  daemon rss growth during the ${what} send (peak − before)`, spiwire: spread(f.growth, 'MiB', 2 ** 20), raw: `rss before ${mib(f.rssBefore.median)}, peak ${mib(f.rssPeak.median)}`, ratio: '' });
  }
  if (r.bookkeeping) {
    const b = r.bookkeeping;
    const names: Record<string, string> = { base: 'no resume, no rule, no trace', resume: 'resumable session (the SDK default)', faultsArmed: 'a fault rule armed, never firing', tracing: 'SDK call trace on' };
    for (const v of ['base', 'resume', 'faultsArmed', 'tracing'] as const) out.push({ n: '10', scenario: `small sends, ${names[v]}`, spiwire: spread(b.rates[v], '/s'), raw: '', ratio: `${fmt(b.ratios[v])} x base${v === 'base' || !b.ratioRuns ? '' : ` [${fmt(Math.min(...b.ratioRuns[v]))}–${fmt(Math.max(...b.ratioRuns[v]))}]`}` });
    const cpu = b.cpu;
    if (cpu) for (const v of ['base', 'resume', 'faultsArmed', 'tracing'] as const) out.push({ n: '10', scenario: `  CPU per send, ${names[v]}: SDK client + daemon`, spiwire: `${fmt(cpu.clientUs[v])} + ${fmt(cpu.daemonUs[v])} us`, raw: '', ratio: `${fmt(cpu.ratios[v])} x base` });
  }
  if (r.manySessions) {
    const m = r.manySessions;
    if (m.oneSession && m.ratio) out.push({ n: '9', scenario: `many sessions: ${m.params['sessions']} sessions x one bulk socket, aggregate (MB = 10^6 B), vs one of them alone with the same bytes`, spiwire: spread(m.aggregate, 'MB/s'), raw: `one alone ${spread(m.oneSession, 'MB/s')}`, ratio: `${spread(m.ratio)} x one` });
    else out.push({ n: '9', scenario: `many sessions: ${m.params['sessions']} sessions x one bulk socket, aggregate (MB = 10^6 B)`, spiwire: spread(m.aggregate, 'MB/s'), raw: r.bulk ? `one session ${fmt(r.bulk.pair.spiwire.median)} MB/s` : '', ratio: r.bulk ? `${fmt(m.aggregate.median / r.bulk.pair.spiwire.median)} x one` : '' });
    out.push({ n: '9', scenario: '  meanwhile, a bystander session\'s blocking 100 B WSPSend', spiwire: `p50 ${spread(m.bystanderP50, 'us')}`, raw: `p99 ${spread(m.bystanderP99, 'us')}`, ratio: '' });
    if (m.cpuPerMb) {
      const { aggregate: a, alone: o } = m.cpuPerMb;
      const peer = a.peer !== undefined && o.peer !== undefined;
      out.push({ n: '9', scenario: `  CPU per MB: daemon + load process${peer ? ' + discard peer' : ''}, all sessions / one alone`, spiwire: cpuText(a), raw: cpuText(o), ratio: peer ? `daemon ${fmt(a.daemon / o.daemon)} x alone` : `${fmt((a.daemon + a.load) / (o.daemon + o.load))} x alone` });
    }
    if (m.raw) {
      out.push({ n: '9', scenario: `  raw node:net: ${m.params['sessions']} connections at once vs one connection with the same bytes`, spiwire: spread(m.raw.aggregate, 'MB/s'), raw: `one ${spread(m.raw.one, 'MB/s')}`, ratio: `${spread(m.raw.ratio)} x one` });
      const c = m.raw.cpuPerMb;
      if (c) out.push({ n: '9', scenario: '  CPU per MB: raw writer + discard peer, all connections / one', spiwire: `${fmt(c.aggregate.writer)} + ${fmt(c.aggregate.peer)} us`, raw: `${fmt(c.alone.writer)} + ${fmt(c.alone.peer)} us`, ratio: `peer ${fmt(c.aggregate.peer / c.alone.peer)} x one` });
    }
  }
  return out;
}

// ---------------------------------------------------------------- stdout

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function table(rep: Report): string {
  const rs = rows(rep.results);
  const head: Row = { n: '#', scenario: 'scenario', spiwire: 'spiwire: median [min–max]', raw: 'raw baseline: median [min–max]', ratio: 'ratio [per rep]' };
  const w = {
    n: Math.max(...[head, ...rs].map((x) => x.n.length)),
    scenario: Math.max(...[head, ...rs].map((x) => x.scenario.length)),
    spiwire: Math.max(...[head, ...rs].map((x) => x.spiwire.length)),
    raw: Math.max(...[head, ...rs].map((x) => x.raw.length)),
  };
  const line = (x: Row): string => `${pad(x.n, w.n)}  ${pad(x.scenario, w.scenario)}  ${pad(x.spiwire, w.spiwire)}  ${pad(x.raw, w.raw)}  ${x.ratio}`.trimEnd();
  const m = rep.meta;
  const out = [
    `spiwire benchmark (${m.mode}, ${m.reps} repetition${m.reps === 1 ? '' : 's'}; ${m.cpus.count} CPUs, Node ${m.node}; ${fmt(m.seconds)} s)`,
    machineLine(rep.results),
    '',
    line(head),
    line({ n: '-'.repeat(w.n), scenario: '-'.repeat(w.scenario), spiwire: '-'.repeat(w.spiwire), raw: '-'.repeat(w.raw), ratio: '-'.repeat(15) }),
    ...rs.map(line),
    '',
  ];
  if (m.mode === 'quick') out.push('targets: not judged in --quick mode (correctness only)');
  else {
    out.push('targets:');
    const tw = Math.max(...rep.targets.map((t) => t.what.length));
    for (const t of rep.targets) out.push(`  ${pad(t.what, tw)}  ${pad(targetValue(t), 34)}  ${metText(t)}`);
  }
  out.push('', `checks: ${rep.checks.passed} of ${rep.checks.total} passed${rep.checks.failed.length ? `; FAILED: ${rep.checks.failed.map((c) => `${c.what} (expected ${c.expected}, got ${c.actual})`).join('; ')}` : ''}`);
  return out.join('\n');
}

/**
 * What this machine's system calls cost, read off the raw baselines of the same run, so that
 * figures from machines of different speeds can be compared.
 */
export function machineLine(r: Results): string {
  const parts: string[] = [];
  if (r.smallSendRate) parts.push(`raw 100-byte node:net writes ${fmt(r.smallSendRate.pair.raw.median)}/s`);
  if (r.bulk) parts.push(`raw bulk node:net ${fmt(r.bulk.pair.raw.median)} MB/s`);
  return parts.length ? `machine: ${parts.join(', ')}` : 'machine: (run scenarios 1 and 3 to measure it)';
}

// ---------------------------------------------------------------- SVG

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

interface Bar {
  label: string;
  sub: string;
  value: number;
  lo: number;
  hi: number;
  target: number | null;
  targetLabel: string;
  met: boolean | null;
}

export function svg(rep: Report): string {
  const r = rep.results;
  const t = new Map(rep.targets.map((x) => [x.id, x]));
  const bars: Bar[] = [];
  const runs = (p: Pair): [number, number] => {
    const xs = p.ratioRuns.filter(Number.isFinite);
    return [Math.min(...xs), Math.max(...xs)];
  };
  if (r.bulk) bars.push({ label: '1 bulk 64 KiB', sub: 'spiwire MB/s ÷ raw node:net', value: r.bulk.pair.ratio, lo: runs(r.bulk.pair)[0], hi: runs(r.bulk.pair)[1], target: 0.5, targetLabel: '≥ 0.5', met: t.get('bulk')?.met ?? null });
  if (r.latency) bars.push({ label: '2 latency p50', sub: 'spiwire ÷ raw ws (lower is better)', value: r.latency.p50.ratio, lo: runs(r.latency.p50)[0], hi: runs(r.latency.p50)[1], target: 1.1, targetLabel: '≤ 1.1', met: t.get('latency')?.met ?? null });
  if (r.smallSendRate) {
    const p = r.smallSendRate.pair;
    bars.push({ label: '3 small sends', sub: 'spiwire sends/s ÷ raw 100 B writes', value: p.ratio, lo: runs(p)[0], hi: runs(p)[1], target: 0.8, targetLabel: '≥ 0.8', met: t.get('smallSendRate')?.met ?? null });
  }
  if (r.smallSendRateHook) {
    const p = r.smallSendRateHook.pair;
    bars.push({ label: '3b small sends (hook)', sub: 'startOperation, no APCs (diagnostic)', value: p.ratio, lo: runs(p)[0], hi: runs(p)[1], target: 0.8, targetLabel: '≥ 0.8', met: p.ratio >= 0.8 });
  }
  if (r.udp) bars.push({ label: '4 UDP 1 KiB', sub: 'datagrams received ÷ raw node:dgram', value: r.udp.pair.ratio, lo: runs(r.udp.pair)[0], hi: runs(r.udp.pair)[1], target: 0.7, targetLabel: '≥ 0.7', met: t.get('udp')?.met ?? null });
  if (r.largeSends) {
    // Throughput of the large sends is information, not a target: grey bars without a target line.
    const o = r.largeSends.overlapped;
    bars.push({ label: `8 large send ${sizeText(o.bytes)}`, sub: 'overlapped, MB/s ÷ one raw write', value: o.pair.ratio, lo: runs(o.pair)[0], hi: runs(o.pair)[1], target: null, targetLabel: '', met: null });
  }
  const W = 720;
  const left = 230;
  const right = 120;
  const rowH = 46;
  const top = 52;
  const H = top + rowH * bars.length + 44;
  // A log axis: ratios far below and above 1 both stay readable; bars grow from 1 (parity with raw).
  const lows = bars.flatMap((b) => [b.lo, b.value, b.target ?? 1]).filter((v) => v > 0);
  const highs = bars.flatMap((b) => [b.hi, b.value, b.target ?? 1]);
  const lmin = Math.floor(Math.log10(Math.min(0.5, ...lows)));
  const lmax = Math.max(1, Math.ceil(Math.log10(Math.max(2, ...highs))));
  const x = (v: number): number => left + ((W - left - right) * (Math.log10(Math.max(v, 10 ** lmin)) - lmin)) / (lmax - lmin);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  o.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">spiwire ÷ raw baseline, same run (median; whisker: per-repetition range)</text>`);
  o.push(`<text x="${W / 2}" y="38" text-anchor="middle" fill="#555">${esc(`${rep.meta.date.slice(0, 10)} · ${rep.meta.cpus.count} CPUs · Node ${rep.meta.node} · ${rep.meta.reps} repetitions · log scale · dashed line: target`)}</text>`);
  for (let d = lmin; d < lmax || d === lmax; d++) {
    for (const m of d === lmax ? [1] : [1, 2, 5]) {
      const v = m * 10 ** d;
      const label = Number(v.toPrecision(1)).toString();
      o.push(`<line x1="${x(v).toFixed(1)}" y1="${top - 4}" x2="${x(v).toFixed(1)}" y2="${top + rowH * bars.length}" stroke="${v === 1 ? '#777' : '#e3e3e3'}" stroke-width="${v === 1 ? 1.5 : 1}"/>`);
      o.push(`<text x="${x(v).toFixed(1)}" y="${top + rowH * bars.length + 16}" text-anchor="middle" fill="#555">${label}</text>`);
    }
  }
  o.push(`<text x="${x(1).toFixed(1)}" y="${top + rowH * bars.length + 32}" text-anchor="middle" fill="#555">1 = raw</text>`);
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const color = b.met === null ? '#7a8ca3' : b.met ? '#3a9a5b' : '#d9822b';
    const x0 = Math.min(x(1), x(b.value));
    o.push(`<text x="${left - 10}" y="${y + 18}" text-anchor="end" font-weight="bold">${esc(b.label)}</text>`);
    o.push(`<text x="${left - 10}" y="${y + 33}" text-anchor="end" fill="#666" font-size="10.5">${esc(b.sub)}</text>`);
    o.push(`<rect x="${x0.toFixed(1)}" y="${y + 9}" width="${Math.max(1, Math.abs(x(b.value) - x(1))).toFixed(1)}" height="22" fill="${color}" rx="2"/>`);
    o.push(`<line x1="${x(b.lo).toFixed(1)}" y1="${y + 20}" x2="${x(b.hi).toFixed(1)}" y2="${y + 20}" stroke="#222" stroke-width="1.5"/>`);
    o.push(`<line x1="${x(b.lo).toFixed(1)}" y1="${y + 15}" x2="${x(b.lo).toFixed(1)}" y2="${y + 25}" stroke="#222" stroke-width="1.5"/>`);
    o.push(`<line x1="${x(b.hi).toFixed(1)}" y1="${y + 15}" x2="${x(b.hi).toFixed(1)}" y2="${y + 25}" stroke="#222" stroke-width="1.5"/>`);
    if (b.target !== null) {
      o.push(`<line x1="${x(b.target).toFixed(1)}" y1="${y + 3}" x2="${x(b.target).toFixed(1)}" y2="${y + 37}" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 3"/>`);
      o.push(`<text x="${(x(b.target) + 4).toFixed(1)}" y="${y + 8}" fill="#c0392b" font-size="10.5">${esc(b.targetLabel)}</text>`);
    }
    const lx = Math.max(x(b.value), x(b.hi), x(1)) + 8;
    o.push(`<text x="${lx.toFixed(1)}" y="${y + 25}" font-weight="bold">${fmt(b.value)}${b.met === null ? '' : b.met ? ' ✓ met' : ' ✗ not met'}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// ---------------------------------------------------------------- docs/performance.md

function pairLine(p: Pair, unit: string): string {
  return `spiwire ${spread(p.spiwire, unit)}, raw ${spread(p.raw, unit)}; ratio ${ratioSpread(p)} (runs: spiwire ${p.spiwire.runs.map((x) => fmt(x)).join(', ')}; raw ${p.raw.runs.map((x) => fmt(x)).join(', ')})`;
}

/** Scenario 2's peer, in words: the sink the calls' bytes go to. */
function latencyPeer(l: LatencyResult): string {
  const lowat = l.params['sinkRcvLowat'];
  if (lowat === undefined) return 'The peer is the discard process, woken by every call\'s bytes.';
  if (typeof lowat !== 'number') return 'The peer is the discard process; SO_RCVLOWAT could not be set here, so it is woken by every call\'s bytes.';
  return `The peer is a discard sink the kernel wakes once ${lowat.toLocaleString('en-US')} bytes wait (SO_RCVLOWAT), or at the end: a discard process woken by each call's 100 bytes spends about 20 us of CPU on it, a third busy process on the two cores the client and the daemon share, which the raw round trip does not have (on another machine the peer would not share them at all).`;
}

/** Scenario 2's calls to the peer woken by every send, in words (absent from older results). */
function latencyWoken(l: LatencyResult): string {
  const w = l.wokenPeer;
  if (!w) return '';
  return ` The same session's calls to the discard process woken by every send, in the same repetitions (between the others, in halves): p50 ${spread(w.p50.spiwire, 'us')}, ${fmt(w.p50.ratio)} x raw; p99 ${spread(w.p99.spiwire, 'us')}, ${fmt(w.p99.ratio)} x raw.`;
}

export function markdown(rep: Report, svgFile: string): string {
  const { meta: m, results: r } = rep;
  const L: string[] = [];
  L.push('# Performance');
  L.push('');
  L.push('<!-- Generated by `npm run bench` (test/bench/report.ts) from bench-results/results.json. Do not edit by hand. -->');
  L.push('');
  L.push(`The benchmark of issue 5, measured on ${m.date.slice(0, 10)}: every spiwire figure beside its raw baseline, measured in the same run, ` +
    `repeated ${m.reps} times (scale: ${m.scaleReps} times per size); each figure is the median with the range [min–max] over the repetitions, ` +
    'and ratios are taken between medians (the range shown beside a ratio is that of the per-repetition ratios). ' +
    'The machine was shared with other work while this ran, so expect noise, in the raw baselines as much as in spiwire.');
  L.push('');
  L.push(`![spiwire ÷ raw baseline](${svgFile})`);
  L.push('');
  L.push('## Figures');
  L.push('');
  L.push('| # | scenario | spiwire | raw baseline | ratio |');
  L.push('|---|---|---|---|---|');
  for (const x of rows(r)) L.push(`| ${x.n} | ${x.scenario.trim()} | ${x.spiwire} | ${x.raw} | ${x.ratio} |`);
  L.push('');
  L.push('## Targets');
  L.push('');
  L.push('| target | judged on | value | |');
  L.push('|---|---|---|---|');
  for (const t of rep.targets) L.push(`| ${t.what}${t.kind === 'requirement' ? ' *(scenario requirement)*' : ''} | ${t.judged} | ${targetValue(t)} | **${metText(t)}** |`);
  L.push('');
  const met = rep.targets.filter((t) => t.kind === 'target' && t.met).length;
  const all = rep.targets.filter((t) => t.kind === 'target').length;
  L.push(`${met} of ${all} targets met. Correctness checks (bytes and datagrams at the peers, completions, counts): ${rep.checks.passed} of ${rep.checks.total} passed${rep.checks.failed.length ? ` — failed: ${rep.checks.failed.map((c) => `${c.what} (expected ${c.expected}, got ${c.actual})`).join('; ')}` : ''}.`);
  L.push('');
  L.push('## Machine');
  L.push('');
  L.push(`- CPUs: ${m.cpus.count} × ${m.cpus.model}${m.cpus.mhz ? ` (${m.cpus.mhz} MHz)` : ''}; memory ${fmt(m.memoryBytes / 2 ** 30)} GiB`);
  L.push(`- What its system calls cost: ${machineLine(r).replace(/^machine: /, '')} (the raw baselines of this run; compare figures from machines with these)`);
  L.push(`- Node ${m.node}; ${m.platform}`);
  L.push(`- load average (1, 5, 15 min) at the start ${m.loadavg.start.map((x) => fmt(x)).join(', ')}, at the end ${m.loadavg.end.map((x) => fmt(x)).join(', ')}`);
  L.push(`- code: commit ${m.git.commit.slice(0, 12)}${m.git.dirty.length ? ` with uncommitted changes in ${m.git.dirty.join(', ')}` : ''}`);
  L.push(`- bufferutil (native WebSocket masking, as the SDK reports it in \`nativeMasking\`): ${m.bufferutil ? 'loaded' : 'MISSING'}; open-file hard limit ${fmt(m.nofileHard)}; the peers' clock checked to be this process's CLOCK_MONOTONIC: ${m.sharedClock ? 'yes' : 'no (peer-side times replaced by arrival times here)'}`);
  L.push(`- the whole run took ${fmt(m.seconds)} s`);
  L.push('');
  L.push('## How to reproduce');
  L.push('');
  L.push('```sh');
  L.push('npm ci');
  L.push('npm run bench                                  # builds, runs everything (about 6 minutes on 2 cores)');
  L.push('npm run bench -- --write-docs                  # the same, and rewrites this page and its chart from the run');
  L.push('node test/dist/bench/run.js --quick            # a few seconds: tiny sizes, one repetition, correctness only (CI runs this)');
  L.push('npm run bench -- --only 1,3 --reps 3           # some scenarios; --api hook uses the SDK startOperation hook instead of WSPSend');
  L.push('npm run bench -- --cpu-prof                    # V8 profiles of every daemon in bench-results/prof/, then:');
  L.push('node test/dist/bench/profile-summary.js bench-results/prof/*.cpuprofile');
  L.push('```');
  L.push('');
  L.push('The figures go to stdout as a table and to `bench-results/results.json` (git-ignored); a full run given `--write-docs` also rewrites this page and ' +
    '`docs/performance.svg`. The benchmark exits non-zero only when a correctness check fails; targets are reported, never asserted. ' +
    'Scenario 1 also runs the naive relay and, when Debian\'s `websockify` package is installed, websockify (`apt-get install websockify`; the row says skipped otherwise), one run of each in every repetition, right after spiwire\'s and raw\'s, so that all four are measured in the same phase of the machine.');
  L.push('');
  L.push('## Set-up');
  L.push('');
  L.push(`- The daemon runs as its own process, with the V8 flags \`npm start\` gives it (\`${m.daemonNodeFlags.join(' ')}\`, see \`server/src/node-flags.ts\`) and \`--expose-gc\` for the memory figures: ` +
    `\`node --expose-gc ${m.daemonNodeFlags.join(' ')} server/dist/src/main.js --port P --log-level warn\` (flags: \`${m.daemonFlags.join(' ')}\`), ` +
    'on a port the benchmark picked (at warn level the daemon does not print its `url` line). Scenarios 6, 7 and 8 start daemons of their own with the flags given below.');
  L.push('- The client (the SDK, and the raw baselines) runs in the benchmark process; the peers run in child processes of their own: a TCP discard server (which can also hash what a connection receives), ' +
    'a UDP receiver that counts datagrams, a `ws` echo server and a TCP "holder" that accepts connections and does not read them until told. ' +
    'spiwire and its raw baseline talk to the same peer process. Everything is on loopback; every child is killed when the benchmark ends.');
  L.push('- Pipelined scenarios use the public SPI path: `WSPSend` with a `WSAOVERLAPPED` and a completion routine, on a session in automatic APC mode ' +
    '(`connect(url, { autoApc: true })`); 3b repeats scenario 3 through the SDK’s internal `startOperation` hook, whose completion calls back without the APC machinery, to show what that machinery costs.');
  L.push('- Times at the peers are `process.hrtime` (CLOCK_MONOTONIC, shared by all processes of the machine), so a run ends when the peer has the last byte, not when a message about it arrives.');
  L.push('');
  L.push('## What each scenario measures');
  L.push('');
  if (r.bulk) L.push(`1. **Bulk.** A TCP socket made with \`WSA_FLAG_OVERLAPPED\`, connected to the discard peer; 64 KiB overlapped \`WSPSend\`s, ${r.bulk.params['inFlight']} in flight (a completion routine posts the next). Raw: \`node:net\` writing 64 KiB chunks, waiting for \`drain\` whenever \`write()\` asks. A run is timed from the first send to the peer holding the last byte; each side first warms up for ${r.bulk.params['warmUpSeconds']} s (runs of 128 MiB; throughput through the daemon climbs for a few seconds after start), then sends about 1.5 s worth per run, sized by the last warm-up run. ${pairLine(r.bulk.pair, 'MB/s')}.${r.bulk.allocations && r.bulk.syscalls ? ` Allocation per MB sent, over the same runs: on the JavaScript heap, from the garbage collector's records (the heap's size before and after each collection, V8's GC profiler; the daemon's through \`/stats\`, this process's directly), the daemon allocated ${fmt(r.bulk.allocations.daemon.heapKB)} KB per MB, the SDK client ${fmt(r.bulk.allocations.client.heapKB)} KB and the raw writer ${fmt(r.bulk.allocations.raw.heapKB)} KB. Outside the heap, the daemon's large allocation is the buffer node makes for each socket read, ${fmt(r.bulk.syscalls.daemonReadsPerMB)} reads per MB here (up to 64 KiB each, about 1 MB of buffers per MB, which WSPSend's buffers then view without a copy); the SDK client reuses its frame buffers once the daemon acknowledges them, and the raw writer writes one buffer throughout. V8 frees such memory as its sweeper gets to it, between collections, so the records cannot count it.` : ''}`);
  if (r.latency) L.push(`2. **Small-call latency.** A blocking, nonoverlapped \`WSPSend\` of 100 bytes on a blocking TCP socket, one call at a time, timed around the call (one WebSocket request and reply, plus the daemon taking the bytes into the transport buffer and writing them to the kernel). ${latencyPeer(r.latency)} Raw: a \`ws\` client sending 100-byte binary messages to the \`ws\` echo process, one at a time, timed to the echo. ${r.latency.params['samplesPerRep']} samples per repetition on each side (spiwire's in two halves around the raw ones), after ${r.latency.params['warmup']} warm-up calls on each side (at least ${r.latency.params['warmUpSeconds']} s). p50: ${pairLine(r.latency.p50, 'us')}. p99: ${pairLine(r.latency.p99, 'us')}.${latencyWoken(r.latency)}${r.latency.resume ? ` That session is resumable, the SDK's default; a second session without resume makes as many calls in the same repetitions (the order: resumable, without, woken peer, raw, woken peer, without, resumable, each in halves), which gives what resume adds to a round trip: p50 ${fmt(r.latency.resume.p50.ratio)} x, p99 ${fmt(r.latency.resume.p99.ratio)} x (without resume: p50 ${spread(r.latency.resume.p50.raw, 'us')}, p99 ${spread(r.latency.resume.p99.raw, 'us')}).` : ''}`);
  const sc = r.smallSendRate?.cpu;
  const smallCpu = sc ? ` CPU per send, from \`process.cpuUsage()\` and the daemon's /proc/<pid>/stat over the same runs: SDK client ${fmt(sc.clientUs)} us, daemon ${fmt(sc.daemonUs)} us, the raw writer ${fmt(sc.rawUs)} us. Unlike a rate it leaves out time spent waiting for a core: the steadier figure for comparing builds on a busy machine.` : '';
  if (r.smallSendRate) L.push(`3. **Small-send rate.** As 1, with 100-byte sends and ${r.smallSendRate.params['inFlight']} in flight; raw: 100-byte \`node:net\` writes with backpressure. Sends per second, timed to the peer holding the last byte. ${pairLine(r.smallSendRate.pair, 'sends/s')}.${r.smallSendRateHook ? ` Through the \`startOperation\` hook (3b): ${pairLine(r.smallSendRateHook.pair, 'sends/s')}.` : ''}${smallCpu}`);
  if (r.udp) L.push(`4. **UDP.** A UDP socket made with \`WSA_FLAG_OVERLAPPED\` and connected with \`WSPConnect\` (the default peer); overlapped 1 KiB \`WSPSend\`s. Raw: a connected \`node:dgram\` socket. Both obey the same flow control so that loss stays low: at most ${r.udp.params['window']} datagrams sent and not yet counted by the receiver (it reports every 128) and at most ${r.udp.params['inFlight']} sends awaiting completion. Only received datagrams count; the rate is received datagrams over the time from the first send to the last arrival. Each side first warms up for ${r.udp.params['warmUpSeconds']} s (runs of 10,000 datagrams), the last of which sizes the measured runs. ${pairLine(r.udp.pair, 'datagrams/s')}. Loss: spiwire ${fmt(r.udp.loss.spiwire.median * 100)} %, raw ${fmt(r.udp.loss.raw.median * 100)} % (medians).${r.udp.cost ? ` CPU per datagram received, summed over the measured runs (this process's \`process.cpuUsage()\`, /proc schedstat of the daemon and of the receiver): SDK client ${fmt(r.udp.cost.spiwire.senderUs)} us, daemon ${fmt(r.udp.cost.spiwire.daemonUs)} us, receiver ${fmt(r.udp.cost.spiwire.receiverUs)} us beside spiwire; raw writer ${fmt(r.udp.cost.raw.senderUs)} us, receiver ${fmt(r.udp.cost.raw.receiverUs)} us beside raw. The two cores are shared by three busy processes for spiwire and two for raw, so the rate follows the sum.` : ''}`);
  if (r.completion) {
    const c = r.completion;
    const d = (x: CompletionVariant): string =>
      `${x.consumedToRoutine ? `consumed → routine p50 ${spread(x.consumedToRoutine.p50, 'us')}, p99 ${spread(x.consumedToRoutine.p99, 'us')}; ` : ''}notified → routine p50 ${spread(x.notifiedToRoutine.p50, 'us')}, p99 ${spread(x.notifiedToRoutine.p99, 'us')}; issued → routine p50 ${spread(x.issuedToRoutine.p50, 'us')}, p99 ${spread(x.issuedToRoutine.p99, 'us')}`;
    L.push(`5. **Completion latency**, from the transport consuming an operation to its completion routine running. One overlapped 100-byte \`WSPSend\` at a time on TCP to the discard peer, on a socket with \`SO_SNDBUF\` 0: nothing is buffered, so each send pends until the kernel has taken its last byte, and that moment, the transport consuming the operation, is what sends its \`spiwire.completion\` (with a buffer the send would complete inside the call, before its bytes even leave the daemon, leaving no later moment to time). Three instants per send, on the shared clock: *consumed*, when the discard peer reads the send's bytes (the earliest outside sign that the transport consumed the operation; the peer's own wake-up makes it slightly late, so this figure errs low); *notified*, when the WebSocket frame carrying the completion reaches the SDK (a listener placed ahead of the SDK's own); *routine*, when the completion routine starts. *issued → routine* is the whole overlapped call, round trip included. ${c.params['samplesPerRep']} samples per repetition. With the automatic APC mode: ${d(c.autoApc)}. With a thread in \`SleepEx(INFINITE, TRUE)\`: ${d(c.sleepEx)}.`);
  }
  if (r.scale) {
    const s = r.scale;
    L.push(`6. **Scale.** Each size in a fresh daemon (own process; open-file limit raised to the hard limit, ${fmt(s.nofile.hardLimit)} here${s.nofile.hardLimit < 21000 ? ', which is why the third socket size is ' + fmt(s.sockets[2]?.n ?? 0) + ' rather than 20,000' : ''}), memory from \`GET /stats?gc=1\` (two forced collections${s.params['readingsPerMeasure'] ? `; the median of ${s.params['readingsPerMeasure']} such readings` : ''}) before and after; ${s.params['liveLessCode'] ? "*live* is heapUsed + external less the compiled code in heapUsed (\`heapCodeBytes\`): what the daemon's data takes, buffers included, without what the JIT compiles once per process as a step makes paths hot (20-60 KB in a step of 1,000 sends, up to 200 KB when a large function is optimized again, which alone moved the figure at 1,000 by a third)" : "*live* is heapUsed + external (what the daemon's JavaScript holds, buffers included)"}, *rss* the resident set (adds native allocations such as libuv handles, heap pages V8 has not returned, and the code). ` +
      `Sockets: n TCP sockets from \`WSPSocket\` + \`WSPConnect\` to the holder peer, idle (nothing sent). Operations: ${s.params['socketsForOps']} overlapped sockets with \`SO_SNDBUF\` 4096 (which also sizes the kernel's buffer) to the holder, which does not read; each first gets a 1 MiB send that stays pending, then m 1-byte overlapped sends go round robin behind them, all pending (daemon flags \`--max-outstanding-ops m+1000 --session-quota 64GiB\`); per-operation cost = growth ÷ m less the 1-byte payload. Afterwards the holder reads: every operation must complete and the peer must receive exactly the fillers plus m bytes.`);
    L.push('');
    L.push('   | size | per unit, live [min–max] | per unit, rss [min–max] | ÷ largest size (live) | time to connect / post |');
    L.push('   |---|---|---|---|---|');
    s.sockets.forEach((x, i) => L.push(`   | ${fmt(x.n)} sockets | ${spread(x.live, 'KiB', 1024)} | ${spread(x.rss, 'KiB', 1024)} | ${fmt(s.linearity.sockets[i]!)} | ${fmt(x.seconds.median)} s |`));
    s.ops.forEach((x, i) => L.push(`   | ${fmt(x.n)} sends | ${spread(x.live, 'B')} | ${spread(x.rss, 'B')} | ${fmt(s.linearity.ops[i]!)} | ${fmt(x.seconds.median)} s |`));
    L.push('');
  }
  if (r.slowPeer) {
    const sp = r.slowPeer;
    const o = sp.outcomes;
    L.push(`7. **Slow peer.** One overlapped TCP socket to the holder, which never reads; ${fmt(sp.params['posts'] as number)} overlapped 1 KiB \`WSPSend\`s posted ${sp.params['batch']} at a time (daemon: \`--max-outstanding-ops ${sp.params['maxOutstandingOps']} --sndbuf ${sp.params['sndBuf']}\`). Outcomes: ${fmt(o.atOnce)} completed at once (kernel buffers and SO_SNDBUF filling), ${fmt(o.pending)} pending, ${fmt(o.wouldBlock)} refused with WSAEWOULDBLOCK (the outstanding-operation limit), ${fmt(o.noBufs)} WSAENOBUFS, ${fmt(o.other)} other. ` +
      `Memory sampled every 50 ms without forced GC: rss first ${mib(sp.rss.first)}, last ${mib(sp.rss.last)}, max ${mib(sp.rss.max)}; live first ${mib(sp.live.first)}, last ${mib(sp.live.last)}, max ${mib(sp.live.max)}. ` +
      `After forced GCs (live): ${sp.checkpoints.map((c) => `${fmt(c.posts)} posts ${mib(c.heapUsed + c.external)}`).join(', ')} (the last one after an idle second). ` +
      `Bound: SO_SNDBUF + limit × (1 KiB payload + 1 KiB per operation) + 1 MiB of one-time costs = ${mib(sp.bound)}; live grew at most ${mib(sp.maxGrowth)}, and ${mib(sp.growthSecondHalf)} over the second half of the posts. Then the holder reads: every pending send completes and the peer receives exactly the bytes of the accepted sends.`);
  }
  if (r.largeSends) {
    const ls = r.largeSends;
    const mem = (f: LargeSendFigures): string =>
      `daemon rss before ${spread(f.rssBefore, 'MiB', 2 ** 20)}, peak ${spread(f.rssPeak, 'MiB', 2 ** 20)}, growth ${spread(f.growth, 'MiB', 2 ** 20)}${f.verificationGrowth === null ? '' : ` (${mib(f.verificationGrowth)} in the first, hashed run)`}`;
    const peak = ls.params['peakFrom'] === 'VmHWM' ? 'VmHWM in `/proc/<pid>/status`, reset just before the call' : `the largest VmRSS in \`/proc/<pid>/status\` sampled every ${ls.params['sampleEveryMs']} ms`;
    L.push(`8. **Large sends** (issue 13). In a daemon of its own (default flags: 64 KiB transport buffer, ${windowText(ls.params['streamWindowBytes'])} stream window), each repetition makes one blocking \`WSPSend\` of ${sizeText(ls.blocking.bytes)} on a blocking TCP socket and one overlapped \`WSPSend\` of ${sizeText(ls.overlapped.bytes)} with a completion routine (run in \`SleepEx(50, TRUE)\`) to the discard peer, beside one raw \`node:net\` write of the same bytes, each timed from the call to the peer holding the last byte (after ${ls.params['warmUpSeconds']} s of warm-up with 64 MiB sends on each side). ` +
      `The daemon's growth is its peak resident set during the send (${peak}) less its rss before the call (taken after two forced collections), and must stay below ${mib(ls.bound)} whatever the size of the send, since the daemon holds only the transport buffer, the window the SDK may send ahead and the pieces in flight. ` +
      'A first run of each send on the fresh daemon has the peer hash what it receives (SHA-256, checked against the bytes sent; its growth counts toward the requirement), while the measured runs only count bytes, as hashing at these rates takes most of a core. ' +
      `Blocking ${sizeText(ls.blocking.bytes)}: ${pairLine(ls.blocking.pair, 'MB/s')}; the call returned after ${spread(ls.blocking.callSeconds, 's')}; ${mem(ls.blocking)}. ` +
      `Overlapped ${sizeText(ls.overlapped.bytes)}: ${pairLine(ls.overlapped.pair, 'MB/s')}; the routine ran after ${spread(ls.overlapped.callSeconds, 's')}; ${mem(ls.overlapped)}. ` +
      (ls.bulkBeside ? `Right after each overlapped send, the same bytes go as scenario 1's bulk sends (64 KiB overlapped \`WSPSend\`s, 32 in flight, in a session with automatic APCs) on the same daemon: ${spread(ls.bulkBeside.mbps, 'MB/s')}; the overlapped send ran at ${spread(ls.bulkBeside.ratio)} x the bulk run beside it (the large-send target is judged on this, not on scenario 1's figure from minutes earlier). ` : '') +
      'Checked in every run: the blocking call returns the full count; the overlapped one pends (WSA_IO_PENDING) and its routine runs exactly once, with no error and the full count; the peer receives exactly that many bytes.');
  }
  if (r.bookkeeping) {
    const b = r.bookkeeping;
    L.push(`10. **What the optional machinery costs** (issue 17). Scenario 3's 100-byte overlapped sends (${fmt(Number(b.params['sendsPerRun']))} per run) in four sessions that differ in one thing each, run in turn within each of ${fmt(Number(b.params['repetitions'] ?? 0))} repetitions, each figure the median of its per-repetition ratio to base (runs a second apart share the machine's slow and fast phases, which move every rate by more than the few per cent measured here): no resume, no fault rule and no trace (base: what "off" costs nothing against); a resumable session, the SDK's default (${fmt(b.ratios.resume)} x base); a fault rule armed on another socket, asked on every send and never firing (${fmt(b.ratios.faultsArmed)} x base); the SDK's call trace on, records dropped (${fmt(b.ratios.tracing)} x base).${b.cpu ? ` CPU per send, the SDK client's and the daemon's summed over the repetitions (the targets are judged on it: a rate counts the time a process waits for a core, and moves between runs by more than the 3 % judged): resume ${fmt(b.cpu.ratios.resume)} x base, a rule armed ${fmt(b.cpu.ratios.faultsArmed)} x, tracing ${fmt(b.cpu.ratios.tracing)} x.` : ''}`);
  }
  if (r.manySessions) {
    const m = r.manySessions;
    L.push(`9. **Many sessions** (issue 17). ${m.params['sessions']} SDK sessions in a load process of their own, each with one TCP socket to the discard peer, send ${m.params['sendsPerSession']} overlapped 64 KiB \`WSPSend\`s each, ${m.params['inFlight']} in flight, all at once, on scenario 1's daemon; meanwhile a bystander session in the benchmark process makes blocking 100-byte \`WSPSend\`s one at a time. Aggregate ${spread(m.aggregate, 'MB/s')} (timed from the load's first send to the peer holding the last session's last byte)${m.oneSession && m.ratio ? `; right before or after each aggregate run (alternating), one of the load's sessions sends the same bytes alone, on fresh sockets: ${spread(m.oneSession, 'MB/s')}, and the aggregate is ${spread(m.ratio)} x that (the target is judged on this, measured in the same phase of the machine, not on scenario 1's figure)` : ''}; the bystander's p50 ${spread(m.bystanderP50, 'us')}, p99 ${spread(m.bystanderP99, 'us')}.${m.cpuPerMb ? ` CPU per MB over the repetitions (/proc schedstat of the daemon, of the load process${m.cpuPerMb.aggregate.peer !== undefined ? ' and of the discard peer' : ''}): all sessions ${cpuText(m.cpuPerMb.aggregate)}, one alone ${cpuText(m.cpuPerMb.alone)}.` : ''}${m.raw ? ` Raw node:net does the same from the benchmark process in every repetition, right after (the same bytes on ${m.params['sessions']} connections at once, and on one connection, in alternating order): ${spread(m.raw.aggregate, 'MB/s')} in all, ${spread(m.raw.one, 'MB/s')} on one connection, ${spread(m.raw.ratio)} x one${m.raw.cpuPerMb ? `; CPU per MB of the writer and of the discard peer: all connections ${fmt(m.raw.cpuPerMb.aggregate.writer)} + ${fmt(m.raw.cpuPerMb.aggregate.peer)} us, one ${fmt(m.raw.cpuPerMb.alone.writer)} + ${fmt(m.raw.cpuPerMb.alone.peer)} us` : ''}.` : ''} The peer's count of every session and connection is checked.`);
  }
  L.push('');
  L.push('## Reading the figures');
  L.push('');
  L.push('- Ratios are spiwire ÷ raw: above 1 is better for throughput, below 1 for latency. A spiwire send crosses loopback twice (client → daemon over the WebSocket, daemon → peer over TCP) on the same two cores, so about half of raw TCP is the physical ceiling for bulk (see "Bulk, the ceiling" below).');
  L.push('- MB is 10^6 bytes; KiB 1,024 bytes; us microseconds.');
  L.push('- The raw baselines are noisy on a shared machine (they are short and fast); the ranges say how much.');
  L.push('- Whole runs differ too. The 2-core test machines go through slower phases in which every spiwire figure drops more than its raw baseline (a spiwire call keeps three processes busy where the baseline keeps two); bulk and small-call latency have been seen a few hundredths either side of their targets from one full run to the next. Judge a target near its limit by more than one run.');
  L.push('');
  L.push('## What the fast path does');
  L.push('');
  for (const line of FAST_PATH) L.push(line);
  L.push('');
  return L.join('\n');
}

/** How the send path is built for speed, and where the time still goes (measured while tuning it). */
const FAST_PATH = [
  '- **Masking: none by default, else native and in place.** Frames are masked and unmasked with ws\'s optional `bufferutil` addon, which ships prebuilt; the daemon logs a warning when it cannot be loaded, and the machine section above says whether it was. The SDK writes its own binary frames, by default with the all-zero masking key (`maskingKeys: \'zero\'`), which makes masking the identity: neither the SDK nor the daemon (ws skips unmasking a zero key) makes a pass over the payload, and a frame of 8 KiB or more goes to the socket straight from the SDK\'s frame buffer, smaller ones copied with their header into one write. With `maskingKeys: \'random\'` (a fresh key per frame, as RFC 6455 asks of browsers) frames from 8 KiB up are masked in place, in native code when bufferutil is loaded; its `nativeMasking` export says whether it was.',
  '- **Binary records, raw payloads.** A frame holds several records, each a header and the bytes it refers to, so payloads are never base64 or JSON arrays (proto/README.md section 3).',
  '- **Compact headers for the hot messages.** The WSPSend request, its reply and `spiwire.completion` are written as fixed binary layouts instead of JSON once the client has used them (proto/README.md, "Compact headers"): encoding and decoding one of them costs about 0.2 us instead of about 1.4 us, which is most of what the small-send rate and UDP gained. The SDK hands a call to the frame builder as id, method and params, and the daemon a reply as id and result: only those parts are checked against the layout, and the JSON envelope is made only for a message that does not fit one (about 35 ns less per record, measured alone).',
  '- **Several calls per frame, both ways.** The SDK packs the calls of one synchronous run into one frame (sent at 64 records or 256 KiB, or on a microtask); the daemon does the same with the replies to one incoming frame, and sends completions once the event loop has run the I/O callbacks of its current round, so that a burst of them shares a frame. An overlapped send that completes at once carries its completion in its reply.',
  '- **Replies first.** A send that fits in the transport buffer is answered in the same turn; the replies of an incoming frame leave before the bytes it corked are written to the peers (next tick), so a caller never waits behind its own data. The replies to frames of 32 KiB or more, and to the second and later frames a session has read in the same round (a burst of small frames), wait instead for the end of the event loop\'s round of I/O, where they leave together with those of the other frames read in the same round: a burst of bulk sends gets one reply write (and wakes the client once) instead of one per frame, which took the daemon\'s read and write system calls on scenario 1 from about 27 to about 22 per MB, and its CPU per MB down by about a tenth on average over twelve alternating runs (1,140 against 1,295 us; noisy, the direction was the same in most pairs). A connection is corked by the first send of a tick and uncorked by one `process.nextTick`, not one per send (that cost the daemon about a tenth of its time on small sends).',
  '- **Fair turns.** A frame\'s calls run for at most 4 ms of a turn of the daemon\'s event loop, and a session alone goes on with further frames for at most 8 ms of it (its next ones then wait for the check phase, by which time other sessions\' calls have been read); once several sessions have worked in a turn and used its time, a new message waits too, and the sessions with work set aside take a go each in the check phase, in order, within one more such slice (whoever gets none keeps its place). A small message that is its session\'s first in the turn goes at once, so a quiet session\'s call is not queued behind bulk senders\' frames (`server/src/turn-budget.ts`). Reading is limited too: every read from a client\'s connection counts, and two sessions at a time read more than 4 KiB in a turn, up to 256 KiB each while other sessions are connected; the others stop reading until the check phase gives them a slot, in order (`server/src/read-slots.ts`).',
  '- **Backpressure end to end.** Bytes count against the socket\'s transport buffer (SO_SNDBUF) until node has handed them to the kernel, whose own buffer is sized to match; beyond that, sends pend, up to the outstanding-operation limit (WSAEWOULDBLOCK) and the session quota (WSAENOBUFS). A send larger than one message goes as a stream, never more than the stream window ahead of what the daemon has taken. Scenario 7 shows memory staying flat, scenario 8 a send of any size costing the daemon a bounded amount.',
  '- **V8 flags for small machines.** `--single-threaded-gc` keeps GC helper threads off cores the client and the peers need; `--no-incremental-marking` stops bulk traffic\'s short-lived buffer memory from starting full marking cycles many times a second. Together they made bulk about 40 % and UDP about 35 % faster on 2 cores.',
  '',
  'Where the time still goes (2 cores, measured with timestamps on the shared clock and with `--cpu-prof`):',
  '',
  '- **Small-call latency.** Most of a round trip is the two loopback writes that wake the other process, the same in the raw baseline. A third process woken by every call was the largest part of the rest: the discard peer spent 20-25 us of CPU per 100-byte call (/proc), on the two cores the client and the daemon were taking turns on, and calls to a sink woken only once 64 KiB wait (SO_RCVLOWAT, the peer of the headline figure) had a p50 about 10 us lower (about 50 against 60 us, beside a raw round trip of 42 us, in alternating runs); the scenario keeps measuring the woken peer beside it. An earlier reading here, that a `WSPGetSockOpt` (no system call) takes as long as the send, was no proof that the send costs nothing: that call travels as JSON, without the compact header of `WSPSend`. What is left is the call itself: per call the daemon spends about 40 us of CPU against the ws echo\'s 23-28 and the SDK client about 34 against the ws client\'s 24-29 (/proc, user and system together). Counted with strace, the daemon makes four system calls per call (read the frame, write the reply, write the 100 bytes to the peer, wait in epoll) where the ws echo makes three; the extra one is the send itself, and it comes after the reply, off the round trip. Timed inside each process on the shared clock (marks in a build made for the purpose, medians over thousands of calls), what lies on the round trip is JavaScript: the daemon takes about 3.7 us from the WebSocket message to writing the reply (decoding the frame about 1, the envelope checks 0.3, the `WSPSend` itself 1, the reply and its frame 1) where the echo takes 0.2, and the SDK about 1 us from the call to writing its frame and 1.6-2 us from reading the reply to the caller\'s `await` going on, where the ws client\'s own work is a few tenths. Those 6-7 us are most of the gap to the raw round trip (about 50 against 42 us in quiet phases); no step among them takes more than about a microsecond, so there is no single cost left to remove. In a resumable session the acknowledgements (one each way every 32 messages) used to cost their receiver 15-25 us each, on a JSON path too cold to be fast; see Resume bookkeeping below. Which core each process lands on moves the p50 too: the same build gave 50 and 66 us in two runs minutes apart, with the raw round trip at 42 and 44. The p99 is scavenges in either process and waiting for a core.',
  '- **Bulk.** The daemon is the busy process (about 90 % of a core), and most of its time is in the kernel: reading the client\'s frames and writing to the peer. Bytes of waiting sends go to the kernel ahead of acceptance, up to 3 x SO_SNDBUF per writev, so the peer is written (and woken) about once per 256 KiB instead of once per 64 KiB; a byte counts as sent only when it would have anyway. A large message is no longer joined into one buffer (that copy, with its allocation, was about a tenth of the daemon in perf samples): it stays in the reads it came in and a WSPSend\'s buffers are views of them (`server/src/sliced-messages.ts`), which halved the daemon\'s scavenges on this path. What is left is V8 collecting the reads themselves, about 1 GB/s of 64 KiB buffers that node allocates: external memory pressure still starts a scavenge every few tens of ms and a full collection of about 15 ms every second or two (`--trace-gc`). Throughput also climbs for a few seconds after the daemon starts, which is why the scenarios warm up for 3 s.',
  '- **Bulk, the ceiling.** CPU per MB sent with 64 KiB sends (scenario 1\'s CPU row and /proc): SDK client about 0.5-0.8 ms, daemon 0.8-1.4 ms (0.8-1.0 in quiet runs since replies to large frames go one write per round) (reading and writing the bytes in the kernel about 0.8; in perf samples about a fifth is the kernel\'s TCP work for the peer\'s side of loopback, run in the daemon as it writes), the discard peer about 0.45; raw TCP needs about 0.3 to write and 0.5 to read. On two cores the rate is at most 2 cores divided by the CPU per MB of all the processes (about 2.1 ms: under 1,000 MB/s); a relay reads and writes every byte once more than raw TCP, which alone puts its ceiling near half of raw. The naive relay\'s own process costs more per MB than the daemon (1.4-1.9 ms, measured alone), since it writes each message to TCP as it comes where the daemon corks several into one write, and that one process on one core holds it to 300-600 MB/s in the runs here. Twice 520 MB/s, about 1,050 MB/s, would need the client, the daemon and the peer together under 1.9 ms per MB. Measured again on 2026-12-07 (commit 96651aa, the daemon alone with 64 KiB sends at 560-640 MB/s, /proc and perf at 2,000 samples a second): the daemon 1.3-1.5 ms per MB, 55 % of it in the kernel (the copy out of the client\'s connection 11 %, the copy into the peer\'s 8.5 %, the rest TCP over loopback) and 45 % in user space, spread over V8\'s builtins and some forty JavaScript functions of 0.3-0.7 us per 64 KiB send each, none above 1.2 % (the same functions cost a fraction of that per small send: the bytes streaming through the caches make each call slower, not any one step); the SDK client 0.8-0.9 ms (its copy into the frame 12 %, the kernel\'s copy 21 %); the peer 0.55-0.7 ms. That is 2.6-3.0 ms per MB in all, at most about 700 MB/s on two cores, while raw TCP moved 1,600-2,000 MB/s in the same phase: 0.5 of it would need the three processes under 2.0-2.5 ms per MB together.',
  '- **UDP.** The datagrams a socket sends in one turn of the daemon\'s event loop leave in one `sendmmsg` per 64, each with its destination unless the socket is connected (`server/src/sockets/datagram-batch.ts`, through koffi), and a run of datagrams of one size to one destination goes in one message of those with UDP_SEGMENT, which the kernel cuts back into the same datagrams. Measured beside each other, with a receiver that kept up (a sender that outruns its receiver gets its drops cheaply and looks faster than it is), node:dgram\'s send costs the sending process about 6 us of CPU per 1 KiB datagram, `sendmmsg` about 2.3-2.6 us in batches of 8 to 64, and one `sendmsg` with UDP generic segmentation offload (UDP_SEGMENT, datagrams of one size) about 1-1.6 us. Before the batches the daemon was the limit: 90-96 % of a core, about 11 us per datagram, 7 of them in node\'s send, 79,000 datagrams/s where raw node:dgram made 146,000 (0.54) in one run. With them the same runs gave 98,000-118,000/s (0.72-0.83): the receiver is then the busiest process (about a core in /proc samples), and it shares the two cores with the daemon and the SDK client, where the raw baseline\'s receiver shares them with the raw sender alone. Segmenting the runs (scenario 4 sends nothing else) took the daemon from 9.6 to 8.9 us of CPU per datagram received, averaged over six alternating pairs of runs (the loopback\'s receive half of each datagram still runs in the sending process), and the ratio from 0.65 to 0.72 in the same runs. The rate follows the CPU a datagram costs all three processes together (scenario 4\'s CPU row; two cores divided by the sum is about the rate), and most of the daemon\'s part is JavaScript, about three quarters in perf samples: a datagram is a whole call to it. Each send\'s outcome is the kernel\'s, known once its batch has gone, and it went through four or five promises (the socket\'s, the session\'s start, the wire result, the reply) and a microtask each, and into the session\'s tables of pending operations (three maps) and out again; the session now sends the batches when it has handled a frame, a send\'s steps run in that call (`server/src/later.ts`), with the frame\'s replies ready when it flushes, and a send that completes with its frame\'s batch never enters the tables (as on Windows, where it completes at once; one that node:dgram had to queue is listed then). The default peer is checked once per connect, not per send (a regular expression per datagram), and the frame decoder reads the two length fields of each record where they lie instead of through a view of a node Buffer each. Counted with cachegrind (the daemon\'s instructions between runs of 20,000 and 200,000 sends, repeatable within a few per cent where times on this machine are not): 22,100-22,700 per datagram before, 17,000 after, where a build that skipped every step after the batch (not a correct one: it answered before the kernel did) needed 16,500. In timed runs the change is hard to see: the machine\'s noise moved the raw writer alone between 6.5 and 11 us per datagram within minutes.',
  '- **Large sends.** Beside bulk sends of the same bytes on the same daemon, a 1 GiB overlapped send keeps up with them (0.93-1.40 x when this was measured), and its CPU per MB is the same as theirs at both ends (client about 0.8 ms, daemon 1.3-1.4 ms, measured alternately). Against scenario 1\'s figure from minutes earlier the ratio moved from 0.70 to 1.30 between two runs of one build: the phase of the machine, not the send, so the target is judged on the bulk run beside each large send. Writing the pieces to the socket straight from the caller\'s memory, without the SDK\'s copy into its frame, was measured and was slower: the kernel\'s copy out of cold memory took 2 s per GiB in `writev` against 0.8 s for the copy and the write together. The daemon\'s growth during the send is mostly garbage, not bytes held: each MB that arrives leaves about 2 MB of short-lived buffers (its socket reads, and the 1 MiB message ws assembles from them), which V8 collects once a few tens of MiB have built up, and the stream window adds what it holds. With a 16 MiB window the hashed first run grew by 55-90 MiB, with the 8 MiB default 43-60 MiB (4 MiB saved a few more); `--stream-window` raises it for links with a long round trip, since a stream moves at most a window per round trip.',
  '- **Small sends.** The SDK keeps its calls and operations in flight in rings of slots (`client-sdk/src/id-table.ts`), not in Maps. With a thousand sends in flight, a Map rebuilt its hash table with every batch; tables that outlived two scavenges were promoted and, from the old generation, kept the next batch alive until it was promoted too, until a full collection ended the chain: 150 MB promoted per 300,000 sends instead of 5, and twice the SDK CPU per send (3 us became 6-7 us) in about half the runs, whichever of them a run fell into. The SDK of 4bcd666 falls into the same chain. Where system calls are cheap (raw 100-byte writes at 650,000-700,000 a second rather than 230,000), the SDK client is the slowest of the three processes: it spent 1.9-2.2 us of CPU per overlapped send, about 12,300 instructions (counted with cachegrind over 300,000 sends, repeatable within about 5 % where times on this machine move by 15 % from run to run). An overlapped call made three promises, each a microtask (the call, the operation\'s settling, the caller\'s byte count and errno); now the reply becomes the caller\'s value in the step that reads it (`RpcConnection.callThen`), one promise per call. A compact reply is read where it lies in the frame, into numbers, without the views, record, message, result and completion objects a decoded record makes; a completion routine is queued as one object holding its arguments; the promise\'s executor and an overlapped call\'s step are functions shared by all calls. About 8,500 instructions per send remain in the client. The daemon now reads a compact header where it lies as well (three views of the frame per send had come to 4 % of its profile): about 10,500 instructions per send instead of 11,600. In alternating runs of scenario 3 in the cheap phase the ratio to raw went from 0.68-0.75 to 0.83-0.84, the client from 1.9-2.1 to 1.6-1.9 us of CPU per send; the daemon, at 1.5-1.8 us, is now about as busy as the client, and its profile is flat (writing to the peer and the client about a sixth, no function above 3 %). Its scavenges take about 0.1 us per send, and a young generation of 32 or 64 MiB instead of the default (fewer, equally long scavenges) saved nothing measurable. Sends under 1 KiB accepted in one turn are copied together and written once at its end (a write to node costs about 250 bytes of bookkeeping, which one-byte sends multiplied by thousands): in alternating runs the daemon spent 1.23-1.50 us per 100-byte send against 1.34-1.99 before, within the noise.',
  '- **A quiet session beside bulk senders (scenario 9).** During the load the daemon\'s event loop is busy all the time (about 80 % of a core, the rest waiting for one among four busy processes on two cores). The time budget alone did not make its turns short: every bulk session with data was read whenever the loop polled (node reads up to 32 x 64 KiB from a connection in one go, and ws joins the messages) before any budget could hold it back, so a turn read 3-5 MB from 20-30 sessions and lasted 5-10 ms at the median, 20-45 ms at p99, and the bystander\'s call waited about a turn to be read: p50 4-7 ms, p99 15-45 ms (runs of the build before the reader slots). With the reader slots a turn reads a few hundred KB from two or three sessions and lasts 0.3-1.3 ms at the median; the bystander\'s p50 is under 1 ms and its p99 4-6 ms. What is left of the p99 is the daemon waiting for a core among four busy processes, scavenges (about 1 ms, up to 8) and full collections: with `--single-threaded-gc` and no incremental marking a mark-compact takes 15-35 ms (`--trace-gc`), a few per run. The slots cost the aggregate a little: the daemon and the load\'s clients wake up more often for fewer bytes each time (CPU per MB about a tenth higher on both, measured with /proc); side by side the ratio to one session moved from 0.83-1.12 to 0.82-0.89 in the runs of the first version, which counted whole messages, and the runs of this one gave 0.76-1.04. What keeps the aggregate under one session alone is CPU per MB, most of it the daemon\'s: 1.4-1.8 x alone in the daemon and about 1.2 x in the load process (scenario 9\'s CPU row). The daemon\'s system calls account for little of it: counted from /proc/<pid>/io it made 17 reads and 20-23 writes per MB with all sessions against 16 and 14.5 alone (the extra writes are smaller writes to the peer\'s 32 connections and completions in more frames); its profile is flat (about a quarter in the kernel\'s copies and loopback, no function above 3 % of the rest). The kernel and a reader pay for many connections by themselves: raw node:net sending the same bytes on 32 connections at once moved 0.59-0.81 of what one connection moved (the medians of five runs of scenario 9, two of them full runs in a busy phase; single repetitions 0.32-1.04), the writer at the same CPU per MB and the discard peer, reading the 32 connections, at 1.2-2.0 x its CPU per MB for one, with as many reads per MB (15-16, each a full 64 KiB, counted in a separate run). The daemon is that reader for the load\'s 32 WebSocket connections, and its CPU per MB grows by about as much (1.2-1.5 x); what spiwire keeps against one session (0.73-0.93 at the median in the same runs) is more than what raw TCP keeps against one connection, partly because the reader slots have the daemon write two or three of the peer\'s connections at a time, not 32 (the peer\'s CPU per MB 0.9-1.4 x beside spiwire). Without the slots (`--reader-slots 0`) the aggregate came to 0.84-0.91 of one session in three runs against 0.69-0.80 with them, alternating, and the bystander\'s p99 to 17-23 ms. The number of slots trades one of scenario 9\'s targets for the other: in alternating runs of three repetitions each (a busy phase of the machine), one slot gave the daemon 1.5-1.8 x its CPU per MB alone, an aggregate of 0.63-0.72 of one session and a bystander p99 of 4.2-4.7 ms; two slots (the default) 1.2-1.4 x, 0.74-0.85 and 4.9-6.6 ms; three 1.1-1.25 x, 0.82-0.89 and 6.3-6.5 ms. Letting a holder keep its slot for 1 or 2 MiB across turns instead of giving it up every turn others wait (a build made for the experiment) moved neither the aggregate nor the CPU per MB beyond the noise, and raised the bystander\'s p99 to 7-8 ms. Counted with perf\'s system-call tracepoints, the daemon made about 42 system calls per MB with all sessions against 35 alone (epoll_ctl about 7.5 per MB in both, from writes the peer\'s socket could not take at once); in cpu-clock samples the extra time is spread over the kernel\'s copies (about a third more per byte with all sessions), waking the peer and the load process, and JavaScript, with no one place to remove. Why a read from one of many connections costs more is not settled: fewer in flight per session (8 or 4 sends instead of 32, a bench-only experiment) left the daemon at about 1.4 x, and smaller socket buffers (SO_RCVBUF and SO_SNDBUF of 128 KiB on raw connections) made one connection and 32 slower alike; this machine\'s virtual CPUs expose no cache-miss counters.',
  '- **Resume bookkeeping.** A resumable session (the SDK default) costs both ends about 0.3-0.4 us per small send more than the same session without resume (scenario 10: 1.06-1.09 x base in CPU per send, two thirds of it in the SDK, where a profile shows a fifth more time in the garbage collector: kept frames and their entries outlive the scavenges that would otherwise find them dead), which no single function shows in the profiles: counting messages, acknowledgements every 32 messages (8 or 4 measured no better) and kept frames are each small. For small calls one at a time, instruction counts (cachegrind on the daemon, repeatable where times on this machine are not) found what the profiles spread thin: each acknowledgement cleared a 20 ms timer and the next message armed a new one, and with no other 20 ms timer node created and dropped a timer list each time, in the slow property paths of V8; the timer now stays armed until it fires, and a call in a resumable session costs the daemon about 54k instructions instead of 75k (49k without resume). A due acknowledgement also rides on the next call instead of going in a frame of its own. The large part on the bulk path is gone: kept frames pin the SDK frame buffer until acknowledged, and every buffer that filled up was replaced by fresh memory (a page fault per 4 KiB) with the frame under construction copied over; buffers are now 1 MiB and reused as the daemon acknowledges them (SDK CPU per MB 1,150-1,450 us down to 880-1,030; 750-900 without resume). In a pipeline, frames of 64 calls go round (each reply frame brings as many completions as its frame had calls); an ack counted among the 64, or a frame buffer filling up mid-run, split a run and left a frame of one call going round too, until 300,000 resumable sends took 5,175 frames instead of 4,757. Neither splits a run any more (4,803-4,816 frames); CPU per send did not move beyond the noise. Scenario 2 measures a resumable session beside one without resume: the p50 is within a few per cent; the p99 was 20-35 % higher, and acknowledgements were most of it. Switching them off in one direction at a time (in a build made for the experiment, 80,000 calls per session in alternating blocks) left 1.19 x with only the daemon\'s acks rare and 1.07 x with only the client\'s, and timing inside the daemon showed why the client\'s cost so much: an ack comes every 32 messages, too seldom for the generic JSON path to stay warm, and decoding one took 7-13 us and validating its params 2.5 us (at times 20) in the middle of a call. Acks are now written and read in their exact JSON spelling without JSON.stringify or JSON.parse (the bytes on the wire are the same; `proto/src/ack-header.ts`), and the daemon skips validating what that layout fixes; in alternating runs the p99 ratio went from 1.24-1.36 to 1.04-1.14 and the p90 gap from 9-13 us to 2-6 us. An ack still costs the daemon about 1-2 us to apply (it frees the kept replies it covers). The ack timer, left armed, fired every 20 ms under steady traffic and acknowledged the few messages counted since the last ack in a message of its own, which woke the other end in the middle of a call; it now acknowledges only once the oldest message not yet acknowledged is 20 ms old, and sends nothing while the counts keep up (p99 ratio 1.165 before, 1.124 after, averaged over twelve alternating runs of 80,000 calls per session). Timed per call on the shared clock and grouped by the call\'s place among the 32 between two acks, the two calls around an ack took 10-15 us more at the median than the others, in code that runs once in 32 calls and is cold each time (the SDK applying the daemon\'s ack about 3 us and packing its own about 3; the daemon writing its ack 3.5-4.5 us, then decoding the client\'s and applying it about 3), and each end also scheduled a turn of its event loop for the ack (the SDK an immediate in case no call followed, the daemon a flush of its own, though the replies flush it anyway). An ack made due by the count now goes with whatever that end sends next, or alone on the timer, and the daemon counts a message after handling it, so that counting stays off the round trip: the calls around an ack now take about 12 us more in all (most of it on one call, 5-10 us) instead of 20-25, and every other call about 1 us more than without resume (counting and keeping messages), a gap that widens toward the tail (3-5 us at p90). In the runs before that change, a build that never acknowledged gave a p99 ratio of 0.94-1.07; acknowledging every 256 messages instead of 32 did not move it (the calls around an ack are rarely the slowest: they sit near the p90, not the p99); acknowledging every message moved the p50 by 2-5 us, since each ack is then a scheduled turn of the event loop in the SDK. The daemon\'s share of the CPU cost, measured again after that change with 600,000 pipelined sends per session in alternating runs of 50,000 (a daemon of its own, `--trace-gc`, /proc): 4-13 % more CPU per send in the resumable session, with the same number of messages each way (about 10,300 per 650,000 sends, 63 calls a frame), the same scavenges (about 100, no full collection) and the same system calls (about 5 reads and 20 writes per 1,000 sends); its profiles differ only in how V8 inlined the same functions, so the cost is spread as thin there as in the SDK.',
  '- **Memory.** An idle connected socket is about 2.8 KiB live (a heap-snapshot diff of a daemon holding 2,000 of them): node\'s net.Socket with its handle, events and stream states about 1.1 KiB; the emulated socket itself (592 B), its transport buffer (216 B), options (208 B), receive buffer, state machine and urgent watch (56 B each); the connection\'s addresses as node and the daemon keep them (about 250 B); slots in the session\'s and daemon\'s tables (about 200 B). The socket is its transport buffer\'s sink and its urgent watch\'s owner, and its connection\'s events go to handlers shared by all sockets: as closures, ten per socket with their contexts, these took about 1 KB more (3.8 KiB a socket). The session\'s share (limits, quota, fault rules, callbacks) is one object per session, and what few sockets need (waits, a child logger, fault signals) is made on first use. A pending overlapped send is about 480 B (a heap-snapshot diff of a daemon holding 20,000 of them): the view of its payload (96 B), the session\'s record of the operation, which is also its completion (88 B), the queued send, which is also its cancellation (64 B), the transport buffer\'s entry (88 B), the one-element buffer list (65 B), map and queue slots (about 46 B) and the bytes of the incoming frame its payload view keeps alive (about 38 B); no closures. The operations a frame starts share one record of its start time: a time in each was a boxed number of 16 B more.',
];
