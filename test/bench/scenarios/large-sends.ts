/**
 * Scenario 8: large sends (issue 13: "a 1 GiB overlapped send and a 256 MiB blocking send work
 * with bounded daemon memory"). A daemon of its own (default flags), the client's SDK session in
 * this process, and the discard peer, which counts what each connection receives. Each repetition
 * makes one blocking WSPSend of 256 MiB on a blocking TCP socket, and one overlapped WSPSend of
 * 1 GiB with a completion routine on an overlapped socket, waited for in SleepEx(50, TRUE); raw:
 * one node:net write of the same bytes to the same peer. A run is timed from the call to the peer
 * holding the last byte.
 *
 * Before the measured runs, one run of each send is made with the peer hashing (SHA-256) what it
 * receives, checked against the bytes sent; the measured runs only count, as hashing at these
 * rates would take most of a core from the two the processes share (--quick mode, with small
 * sizes, hashes its measured runs instead).
 *
 * The daemon's resident set is read from /proc/<pid>/status (lib/rss.ts), after two forced GCs
 * before each call; its peak is the kernel's high-water mark, reset just before the call. Growth
 * (peak - rss before the call) must stay below LARGE_SEND_BOUND: what the daemon holds is the
 * transport buffer, the stream window the SDK may send ahead (8 MiB by default) and the pieces in
 * flight, however large the send.
 */
import { createHash } from 'node:crypto';
import * as S from '@spiwire/client';
import { check, type Check, type Ctx, type Pair } from '../lib/context.js';
import { DaemonProcess } from '../lib/procs.js';
import { endSocket, rawConnect } from '../lib/raw.js';
import { RssProbe, type RssWindow } from '../lib/rss.js';
import { closeSocket, tcpSocket } from '../lib/spi.js';
import { BULK_CHUNK, BULK_IN_FLIGHT, spiwireRun } from './tcp-throughput.js';
import { now, summarize, type Summary } from '../lib/stats.js';
import { WARM_UP_SECONDS, repeatFor } from '../lib/warm-up.js';
import { bigData } from '../../helpers/big-data.js';

const MiB = 2 ** 20;
/** The most the daemon's rss may grow during one large send (a requirement in the report). */
export const LARGE_SEND_BOUND = 96 * MiB;
/** A 1 GiB send at 20 MB/s would still finish inside this: beyond it something is stuck. */
const RUN_TIMEOUT_MS = 120_000;

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

interface Run {
  /** From the call to the peer holding the last byte. */
  seconds: number;
  /** What the peer received, at FIN (sha256 empty when the peer did not hash). */
  bytes: number;
  sha256: string;
}

interface SpiwireRun extends Run {
  /** From the call to its return (blocking) or to its completion routine running (overlapped). */
  callSeconds: number;
  mem: RssWindow;
  checks: Check[];
}

/** Answers once the peer has received bytes on the connection from remotePort: seconds since t0. */
async function peerReached(ctx: Ctx, remotePort: number, bytes: number, t0: number): Promise<number> {
  const r = await ctx.discard.request<{ t: number }>('expect', { port: ctx.discardPort, remotePort, bytes }, RUN_TIMEOUT_MS);
  return ((ctx.sharedClock ? r.t : now()) - t0) / 1e9;
}

async function atEnd(ctx: Ctx, remotePort: number): Promise<{ bytes: number; sha256: string }> {
  const r = await ctx.discard.connectionEnded(ctx.discardPort, remotePort, RUN_TIMEOUT_MS);
  return { bytes: r.bytes, sha256: r.sha256 ?? '' };
}

/** One blocking WSPSend of data on a blocking socket; the daemon's memory watched throughout. */
async function blockingRun(ctx: Ctx, d: DaemonProcess, spi: S.SpiSession, data: Buffer, label: string, hash: boolean): Promise<SpiwireRun> {
  const { s, localPort } = await tcpSocket(spi, ctx.discardPort, { overlapped: false });
  if (hash) await ctx.discard.request('hash', { port: ctx.discardPort, remotePort: localPort });
  await d.stats(true);
  const probe = new RssProbe(d.pid);
  const t0 = now();
  const reached = peerReached(ctx, localPort, data.length, t0);
  const sent = S.out(-1);
  const e = S.out(0);
  const ret = await spi.WSPSend(s, [S.wsabuf(data)], 1, sent, 0, null, null, null, e);
  const callSeconds = (now() - t0) / 1e9;
  // A failed call sends no more: closing ends the peer's wait (it answers at FIN too).
  if (ret !== 0) await closeSocket(spi, s);
  const seconds = await reached;
  const mem = probe.stop();
  if (ret === 0) await closeSocket(spi, s);
  const end = await atEnd(ctx, localPort);
  const checks = [
    check(`${label}: WSPSend returned 0`, 0, ret),
    check(`${label}: WSA error`, 0, e.value),
    check(`${label}: count returned`, data.length, sent.value),
  ];
  return { seconds, callSeconds, ...end, mem, checks };
}

/**
 * One overlapped WSPSend of data with a completion routine, on an overlapped socket. The call must
 * pend; the thread then waits alertably (SleepEx(50, TRUE)) until the routine has run, and once
 * more after the peer has every byte, so that a second completion would show.
 */
async function overlappedRun(ctx: Ctx, d: DaemonProcess, spi: S.SpiSession, data: Buffer, label: string, hash: boolean): Promise<SpiwireRun> {
  const { s, localPort } = await tcpSocket(spi, ctx.discardPort);
  if (hash) await ctx.discard.request('hash', { port: ctx.discardPort, remotePort: localPort });
  await d.stats(true);
  const probe = new RssProbe(d.pid);
  const calls: Array<{ error: number; bytes: number; t: number }> = [];
  const ov = new S.WSAOVERLAPPED();
  const e = S.out(0);
  const t0 = now();
  const reached = peerReached(ctx, localPort, data.length, t0);
  const ret = await spi.WSPSend(s, [S.wsabuf(data)], 1, null, 0, ov, (error, bytes) => void calls.push({ error, bytes, t: now() }), null, e);
  const pended = ret === S.SOCKET_ERROR && e.value === S.WSA_IO_PENDING;
  const deadline = now() + RUN_TIMEOUT_MS * 1e6;
  while (pended && calls.length === 0 && now() < deadline) await spi.SleepEx(50, true);
  // No completion: closing ends the peer's wait (it answers at FIN too).
  const stuck = calls.length === 0;
  if (stuck) await closeSocket(spi, s);
  const seconds = await reached;
  const mem = probe.stop();
  await spi.SleepEx(0, true);
  if (!stuck) await closeSocket(spi, s);
  const end = await atEnd(ctx, localPort);
  const first = calls[0];
  const checks = [
    check(`${label}: WSPSend returned SOCKET_ERROR`, S.SOCKET_ERROR, ret),
    check(`${label}: WSA error is WSA_IO_PENDING (it pended)`, S.WSA_IO_PENDING, e.value),
    check(`${label}: completion routine calls`, 1, calls.length),
    check(`${label}: completion error`, 0, first?.error ?? -1),
    check(`${label}: completion count`, data.length, first?.bytes ?? -1),
  ];
  return { seconds, callSeconds: first ? (first.t - t0) / 1e9 : NaN, ...end, mem, checks };
}

/** Raw: one node:net write of data to the same peer, timed to the peer holding the last byte. */
async function rawRun(ctx: Ctx, data: Buffer, hash: boolean): Promise<Run> {
  const sock = await rawConnect(ctx.discardPort);
  const localPort = sock.localPort!;
  if (hash) await ctx.discard.request('hash', { port: ctx.discardPort, remotePort: localPort });
  const t0 = now();
  const reached = peerReached(ctx, localPort, data.length, t0);
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.write(data, (err) => (err ? reject(err) : resolve()));
  });
  const seconds = await reached;
  await endSocket(sock);
  return { seconds, ...(await atEnd(ctx, localPort)) };
}

export interface LargeSendFigures {
  bytes: number;
  /** MB/s (10^6 bytes) to the peer: the spiwire send against one raw node:net write of the same bytes. */
  pair: Pair;
  /** Seconds from the call to its return or its completion routine. */
  callSeconds: Summary;
  /** The daemon's rss before the call, at its peak during it, and the growth (peak - before), bytes. */
  rssBefore: Summary;
  rssPeak: Summary;
  growth: Summary;
  /** Growth during the hashed verification run on the fresh daemon (null in --quick mode, which has none). */
  verificationGrowth: number | null;
  /** The largest growth of all: the requirement's value. */
  maxGrowth: number;
  peakFrom: string;
}

export interface LargeSendsResult {
  params: Record<string, number | string>;
  blocking: LargeSendFigures;
  overlapped: LargeSendFigures;
  /**
   * The same bytes as the overlapped send in scenario 1's bulk sends (64 KiB overlapped WSPSends,
   * 32 in flight), on the same daemon, run next to each overlapped send: MB/s, and the overlapped
   * send's rate over it in each repetition (absent from runs saved before it was measured).
   */
  bulkBeside?: { mbps: Summary; ratio: Summary };
  /** The most the daemon's rss may grow during one send (a requirement; not judged in --quick mode). */
  bound: number;
  checks: Check[];
}

class Collect {
  readonly sw: number[] = [];
  readonly raw: number[] = [];
  readonly call: number[] = [];
  readonly before: number[] = [];
  readonly peak: number[] = [];
  readonly growth: number[] = [];
  peakFrom = '';

  constructor(
    readonly bytes: number,
    readonly verificationGrowth: number | null,
  ) {}

  figures(): LargeSendFigures {
    const a = summarize(this.sw);
    const b = summarize(this.raw);
    return {
      bytes: this.bytes,
      pair: { unit: 'MB/s', better: 'higher', spiwire: a, raw: b, ratio: a.median / b.median, ratioRuns: this.sw.map((x, i) => x / this.raw[i]!) },
      callSeconds: summarize(this.call),
      rssBefore: summarize(this.before),
      rssPeak: summarize(this.peak),
      growth: summarize(this.growth),
      verificationGrowth: this.verificationGrowth,
      maxGrowth: Math.max(...this.growth, ...(this.verificationGrowth === null ? [] : [this.verificationGrowth])),
      peakFrom: this.peakFrom,
    };
  }
}

export async function largeSends(ctx: Ctx): Promise<LargeSendsResult> {
  // Quick: 16 MiB blocking, 64 MiB overlapped, correctness only.
  const blockingBytes = ctx.quick ? 16 * MiB : 256 * MiB;
  const overlappedBytes = ctx.quick ? 64 * MiB : 1024 * MiB;
  const data = bigData(Math.max(blockingBytes, overlappedBytes), 0x2545f491);
  const blockingData = data.subarray(0, blockingBytes);
  const overlappedData = data.subarray(0, overlappedBytes);
  const want = { blocking: sha256(blockingData), overlapped: sha256(overlappedData) };
  const d = await DaemonProcess.start({ cpuProfDir: ctx.cpuProfDir });
  // No automatic APC mode: the completion routine runs in SleepEx, as a Winsock client's would.
  const spi = await S.connect(d.url);
  // Scenario 1's kind of session, for the bulk runs beside the overlapped sends.
  const bulkSpi = await S.connect(d.url, { autoApc: true });
  try {
    const checks: Check[] = [];
    const shaCheck = (label: string, r: Run, sha: string): Check => check(`${label}: SHA-256 at the peer is that of the bytes sent`, 1, r.sha256 === sha ? 1 : 0);
    // Full runs: one hashed run of each send first, on the fresh daemon (its memory counts too).
    const verification: Record<'blocking' | 'overlapped', number | null> = { blocking: null, overlapped: null };
    if (!ctx.quick) {
      for (const kind of ['blocking', 'overlapped'] as const) {
        const bytes = kind === 'blocking' ? blockingData : overlappedData;
        const label = `large sends ${kind} ${fmtMiB(bytes.length)} verification run`;
        const r = kind === 'blocking' ? await blockingRun(ctx, d, spi, bytes, label, true) : await overlappedRun(ctx, d, spi, bytes, label, true);
        const growth = r.mem.peak - r.mem.before;
        verification[kind] = growth;
        checks.push(...r.checks, check(`${label}: bytes at the peer`, bytes.length, r.bytes), shaCheck(label, r, want[kind]));
        ctx.log(`  ${label} (hashed): ${(bytes.length / r.seconds / 1e6).toFixed(0)} MB/s; daemon rss ${fmtMiB(r.mem.before)} -> peak ${fmtMiB(r.mem.peak)} (+${fmtMiB(growth)})`);
      }
      // Then warm both paths up (throughput through the daemon climbs for a few seconds) with 64 MiB sends.
      const warm = data.subarray(0, 64 * MiB);
      await repeatFor(WARM_UP_SECONDS, async () => void (await overlappedRun(ctx, d, spi, warm, 'large sends warm-up', false)));
      await repeatFor(WARM_UP_SECONDS, async () => void (await rawRun(ctx, warm, false)));
    }
    const blocking = new Collect(blockingBytes, verification.blocking);
    const overlapped = new Collect(overlappedBytes, verification.overlapped);
    const mbps = (bytes: number, seconds: number): number => bytes / seconds / 1e6;
    const bulkRates: number[] = [];
    for (let rep = 0; rep < ctx.reps; rep++) {
      const order = rep % 2 === 0 ? ['spiwire', 'raw'] : ['raw', 'spiwire'];
      for (const [kind, c, bytes, sha] of [
        ['blocking', blocking, blockingData, want.blocking],
        ['overlapped', overlapped, overlappedData, want.overlapped],
      ] as const) {
        const name = `large sends ${kind} ${fmtMiB(bytes.length)}`;
        for (const who of order) {
          const label = `${name} ${who} run ${rep + 1}`;
          const peerChecks = (r: Run): Check[] => [check(`${label}: bytes at the peer`, bytes.length, r.bytes), ...(ctx.quick ? [shaCheck(label, r, sha)] : [])];
          if (who === 'raw') {
            const r = await rawRun(ctx, bytes, ctx.quick);
            checks.push(...peerChecks(r));
            c.raw.push(mbps(bytes.length, r.seconds));
            continue;
          }
          const r = kind === 'blocking' ? await blockingRun(ctx, d, spi, bytes, label, ctx.quick) : await overlappedRun(ctx, d, spi, bytes, label, ctx.quick);
          checks.push(...r.checks, ...peerChecks(r));
          c.sw.push(mbps(bytes.length, r.seconds));
          c.call.push(r.callSeconds);
          c.before.push(r.mem.before);
          c.peak.push(r.mem.peak);
          c.growth.push(r.mem.peak - r.mem.before);
          c.peakFrom = r.mem.peakFrom;
        }
        ctx.log(`  ${name} rep ${rep + 1}: spiwire ${c.sw[rep]!.toFixed(0)} MB/s, raw ${c.raw[rep]!.toFixed(0)} MB/s; daemon rss ${fmtMiB(c.before[rep]!)} -> peak ${fmtMiB(c.peak[rep]!)} (+${fmtMiB(c.growth[rep]!)})`);
      }
      // Right after the overlapped send, in the same phase of the machine: its bytes as bulk sends.
      const r = await spiwireRun(ctx, bulkSpi, BULK_CHUNK, overlappedBytes / BULK_CHUNK, BULK_IN_FLIGHT);
      checks.push(check(`large sends bulk beside run ${rep + 1}: bytes at the peer`, overlappedBytes, r.bytes));
      bulkRates.push(mbps(overlappedBytes, r.seconds));
      ctx.log(`  the same bytes as bulk sends, rep ${rep + 1}: ${bulkRates[rep]!.toFixed(0)} MB/s`);
    }
    const overlappedFigures = overlapped.figures();
    const bulkBeside = { mbps: summarize(bulkRates), ratio: summarize(overlappedFigures.pair.spiwire.runs.map((x, i) => x / bulkRates[i]!)) };
    return {
      params: {
        blockingBytes,
        overlappedBytes,
        daemonFlags: d.flags.filter((f, i, a) => f !== '--port' && a[i - 1] !== '--port').join(' '),
        sampleEveryMs: 50,
        // As the daemon's welcome gives it: how far the SDK may send ahead of what it has taken.
        streamWindowBytes: spi.welcome.limits.streamWindowBytes ?? 0,
        peakFrom: overlapped.peakFrom,
        warmUpSeconds: ctx.quick ? 0 : WARM_UP_SECONDS,
        peerHashes: ctx.quick ? 'every run' : 'one verification run of each send, before the measured ones',
      },
      blocking: blocking.figures(),
      overlapped: overlappedFigures,
      bulkBeside,
      bound: LARGE_SEND_BOUND,
      checks,
    };
  } finally {
    await bulkSpi.close();
    await spi.close();
    await d.stop();
  }
}

function fmtMiB(bytes: number): string {
  return bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)} MiB`;
}
