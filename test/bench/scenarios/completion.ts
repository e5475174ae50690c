/**
 * Scenario 5: completion latency, from the transport consuming an operation to its completion
 * routine running in the SDK. One overlapped 100-byte WSPSend at a time on TCP to the discarding
 * peer, on a socket with SO_SNDBUF 0: nothing is buffered, so every send pends (WSA_IO_PENDING)
 * until the kernel has taken its last byte, and that moment, the transport consuming the
 * operation, is what sends its spiwire.completion. (With a buffer the send would complete inside
 * the call, before its bytes even leave the daemon, and there would be no later moment to time.)
 * Per send, on one clock (CLOCK_MONOTONIC, shared by the processes):
 *   - consumed:  the discarding peer reads the send's bytes (the kernel has them: the earliest
 *                outside sign of consumption; loopback delivery and the peer's wake-up make it a
 *                little late, so the figure errs low);
 *   - notified:  the WebSocket frame carrying the completion reaches the SDK (a listener placed
 *                ahead of the SDK's own on its WebSocket);
 *   - routine:   the completion routine starts.
 * Reported: consumed -> routine (the headline), notified -> routine (the SDK's share), and
 * issued -> routine (the whole overlapped call, round trip included). Two ways of running
 * routines: the automatic APC mode, and a thread waiting in SleepEx(INFINITE, alertable).
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { closeSocket, tcpSocket } from '../lib/spi.js';
import { now, percentile, summarize, type Summary } from '../lib/stats.js';

const SIZE = 100;

interface Sample {
  issued: number;
  notified: number;
  routine: number;
  atOnce: boolean;
}

export interface Percentiles {
  p50: Summary;
  p99: Summary;
}

export interface CompletionVariant {
  consumedToRoutine: Percentiles | null;
  notifiedToRoutine: Percentiles;
  issuedToRoutine: Percentiles;
}

export interface CompletionResult {
  params: Record<string, number | string | boolean>;
  autoApc: CompletionVariant;
  sleepEx: CompletionVariant;
  checks: Check[];
}

async function variant(ctx: Ctx, mode: 'autoApc' | 'sleepEx', samples: number, warmup: number, checks: Check[]): Promise<CompletionVariant> {
  const spi = await S.connect(ctx.daemon.url, { autoApc: mode === 'autoApc' });
  const thread = spi.createThread();
  // The frame that carries the completion notification is the last frame to arrive before the
  // routine runs: one send at a time, nothing else is in flight. A listener ahead of the SDK's own
  // notes its arrival.
  let notified = 0;
  const ws = (spi.connection as unknown as { ws?: { prependListener?: (ev: string, f: () => void) => void } }).ws;
  if (typeof ws?.prependListener !== 'function') throw new Error('cannot observe the SDK WebSocket (RpcConnection.ws)');
  ws.prependListener('message', () => (notified = now()));
  const { s, localPort } = await tcpSocket(spi, ctx.discardPort, { sndBuf: 0 });
  await ctx.discard.request('stamps', { port: ctx.discardPort, remotePort: localPort });
  const bufs = [S.wsabuf(Buffer.alloc(SIZE, 0x63))];
  const e = S.out(0);
  let sends = 0;
  let routines = 0;
  let routineBytes = 0;
  const one = async (): Promise<Sample> => {
    let ran!: () => void;
    let routineAt = 0;
    const done = new Promise<void>((r) => (ran = r));
    const routine = (err: number, bytes: number): void => {
      routineAt = now();
      routines++;
      if (err === 0) routineBytes += bytes;
      ran();
    };
    const waiting = mode === 'sleepEx' ? thread.SleepEx(S.INFINITE, true) : null;
    const issued = now();
    const ret = await spi.WSPSend(s, bufs, 1, null, 0, new S.WSAOVERLAPPED(), routine, mode === 'sleepEx' ? thread.id : null, e);
    if (ret !== 0 && e.value !== S.WSA_IO_PENDING) throw new Error(`WSPSend failed: ${S.wsaErrorName(e.value)}`);
    sends++;
    await done;
    if (waiting) await waiting;
    return { issued, notified, routine: routineAt, atOnce: ret === 0 };
  };
  const all: Sample[] = [];
  const perRep: Sample[][] = [];
  try {
    for (let i = 0; i < warmup; i++) all.push(await one());
    for (let rep = 0; rep < ctx.reps; rep++) {
      const mine: Sample[] = [];
      for (let i = 0; i < samples; i++) mine.push(await one());
      perRep.push(mine);
      all.push(...mine);
    }
  } finally {
    await closeSocket(spi, s);
  }
  const end = await ctx.discard.connectionEnded(ctx.discardPort, localPort);
  const stamps = end.stamps;
  await thread.exit();
  await spi.close();
  checks.push(check(`completion ${mode}: bytes at the peer`, sends * SIZE, end.bytes));
  checks.push(check(`completion ${mode}: routines run, each with 100 bytes`, sends * SIZE, routineBytes));
  checks.push(check(`completion ${mode}: sends that pended until the kernel had their bytes`, sends, all.filter((x) => !x.atOnce).length));
  // When did the peer read each send's last byte? (stamps are [time, cumulative bytes] pairs)
  const consumedAt = new Array<number>(all.length).fill(NaN);
  let j = 0;
  for (let i = 0; i < all.length; i++) {
    const need = (i + 1) * SIZE;
    while (j < stamps.length && stamps[j + 1]! < need) j += 2;
    if (j < stamps.length) consumedAt[i] = stamps[j]!;
  }
  const pct = (f: (x: Sample, i: number) => number): Percentiles => {
    const p50: number[] = [];
    const p99: number[] = [];
    let offset = warmup;
    for (const rep of perRep) {
      const xs = rep.map((x, i) => f(x, offset + i) / 1e3).filter((v) => Number.isFinite(v));
      offset += rep.length;
      p50.push(percentile(xs, 50));
      p99.push(percentile(xs, 99));
    }
    return { p50: summarize(p50), p99: summarize(p99) };
  };
  const v: CompletionVariant = {
    consumedToRoutine: ctx.sharedClock ? pct((x, i) => x.routine - consumedAt[i]!) : null,
    notifiedToRoutine: pct((x) => x.routine - x.notified),
    issuedToRoutine: pct((x) => x.routine - x.issued),
  };
  const c = v.consumedToRoutine;
  ctx.log(`  completion ${mode}: consumed->routine p50 ${c ? c.p50.median.toFixed(0) : '?'} us p99 ${c ? c.p99.median.toFixed(0) : '?'} us; notified->routine p50 ${v.notifiedToRoutine.p50.median.toFixed(0)} us; issued->routine p50 ${v.issuedToRoutine.p50.median.toFixed(0)} us`);
  return v;
}

export async function completion(ctx: Ctx): Promise<CompletionResult> {
  const samples = ctx.quick ? 50 : 2000;
  const warmup = ctx.quick ? 10 : 300;
  const checks: Check[] = [];
  const autoApc = await variant(ctx, 'autoApc', samples, warmup, checks);
  const sleepEx = await variant(ctx, 'sleepEx', samples, warmup, checks);
  return { params: { bytes: SIZE, samplesPerRep: samples, warmup, sharedClock: ctx.sharedClock }, autoApc, sleepEx, checks };
}
