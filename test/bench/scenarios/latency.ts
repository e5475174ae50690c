/**
 * Scenario 2: small-call latency. A blocking, nonoverlapped WSPSend of 100 bytes on a blocking
 * TCP socket to a discarding peer, one call at a time (the call returns once the daemon's
 * transport buffer took the bytes: one request/reply over the WebSocket plus the daemon's work),
 * against a raw WebSocket request/response of 100 bytes with ws, to a ws echo server in its own
 * process. Each repetition takes its own samples after a warm-up; p50 and p99 per repetition.
 *
 * The peer is a sink the kernel wakes once 64 KiB wait (SO_RCVLOWAT), or at the end: a discard
 * process woken by every call's 100 bytes spends about 22 us of CPU on each, a third busy process
 * on the two cores the client and the daemon share, which the raw ws round trip does not have.
 * The same session's calls to a sink woken by every segment are measured beside them and reported.
 *
 * The headline session is the SDK's default, resumable. A second session without resume makes the
 * same calls in the same repetitions (interleaved with the first), so that what resume costs a
 * round trip is measured beside the rate and CPU figures of scenario 10 (issue 17: no figure more
 * than 3 % worse with resume), and so that the figure can be compared with builds older than resume.
 */
import WebSocket from 'ws';
import * as S from '@spiwire/client';
import { check, type Check, type Ctx, type Pair } from '../lib/context.js';
import { closeSocket, tcpSocket } from '../lib/spi.js';
import { now, percentile, summarize } from '../lib/stats.js';
import { WARM_UP_SECONDS, repeatFor } from '../lib/warm-up.js';

const SIZE = 100;
/** The sink's SO_RCVLOWAT: the peer wakes once per 655 calls instead of once per call. */
const SINK_LOWAT = 64 * 1024;

async function spiwireSamples(ctx: Ctx, spi: S.SpiSession, s: number, n: number): Promise<number[]> {
  const bufs = [S.wsabuf(Buffer.alloc(SIZE, 0x61))];
  const sent = S.out(0);
  const e = S.out(0);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const ret = await spi.WSPSend(s, bufs, 1, sent, 0, null, null, null, e);
    out[i] = (now() - t0) / 1e3;
    if (ret !== 0 || sent.value !== SIZE) throw new Error(`blocking WSPSend: ret ${ret}, ${S.wsaErrorName(e.value)}, sent ${sent.value}`);
  }
  return out;
}

/** Bytes the ws echo sent back, over every sample. */
let echoedBytes = 0;

function wsSamples(ws: WebSocket, n: number): Promise<number[]> {
  const buf = Buffer.alloc(SIZE, 0x61);
  const out: number[] = new Array(n);
  let i = 0;
  let t0 = 0;
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer): void => {
      echoedBytes += data.length;
      if (data.length !== SIZE) return reject(new Error(`ws echo returned ${data.length} bytes`));
      out[i++] = (now() - t0) / 1e3;
      if (i === n) {
        ws.off('message', onMessage);
        resolve(out);
        return;
      }
      t0 = now();
      ws.send(buf, { binary: true });
    };
    ws.on('message', onMessage);
    t0 = now();
    ws.send(buf, { binary: true });
  });
}

export interface LatencyResult {
  params: Record<string, number | string>;
  /** The resumable session (the SDK's default) against the raw ws round trip. */
  p50: Pair;
  p99: Pair;
  /** The resumable session against the same calls in a session without resume (absent in results of older runs). */
  resume?: { p50: Pair; p99: Pair };
  /**
   * The resumable session's calls to a discard peer woken by every segment, against the raw ws
   * round trip (absent in results of runs whose peer was that one).
   */
  wokenPeer?: { p50: Pair; p99: Pair };
  checks: Check[];
}

export async function latency(ctx: Ctx): Promise<LatencyResult> {
  const samples = ctx.quick ? 50 : 4000;
  const warmBatch = ctx.quick ? 10 : 500;
  let warmup = 0;
  const sink = await ctx.discard.request<{ port: number; rcvLowat: number | null }>('tcpListen', { mode: 'discard', rcvLowat: SINK_LOWAT });
  const spi = await S.connect(ctx.daemon.url);
  const { s, localPort } = await tcpSocket(spi, sink.port, { overlapped: false });
  const woken = await tcpSocket(spi, ctx.discardPort, { overlapped: false });
  const plain = await S.connect(ctx.daemon.url, { resume: false });
  const plainSocket = await tcpSocket(plain, sink.port, { overlapped: false });
  const ws = new WebSocket(`ws://127.0.0.1:${ctx.wsPort}/`, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  const sw50: number[] = [];
  const sw99: number[] = [];
  const raw50: number[] = [];
  const raw99: number[] = [];
  const plain50: number[] = [];
  const plain99: number[] = [];
  const woken50: number[] = [];
  const woken99: number[] = [];
  let calls = 0;
  let plainCalls = 0;
  let wokenCalls = 0;
  let echoes = 0;
  echoedBytes = 0;
  try {
    // Warm both sides up, alternately, for WARM_UP_SECONDS (one batch in quick mode).
    await repeatFor(ctx.quick ? 0 : WARM_UP_SECONDS, async () => {
      await spiwireSamples(ctx, spi, s, warmBatch);
      await spiwireSamples(ctx, plain, plainSocket.s, warmBatch);
      await spiwireSamples(ctx, spi, woken.s, warmBatch);
      await wsSamples(ws, warmBatch);
      warmup += warmBatch;
    });
    calls += warmup;
    plainCalls += warmup;
    wokenCalls += warmup;
    echoes += warmup;
    for (let rep = 0; rep < ctx.reps; rep++) {
      // Each side's samples come in two halves around the others', nested, so that no side is
      // always first or last: resumable, without resume, woken peer, raw ws, woken peer, without
      // resume, resumable.
      const half = Math.floor(samples / 2);
      const a1 = await spiwireSamples(ctx, spi, s, half);
      const c1 = await spiwireSamples(ctx, plain, plainSocket.s, half);
      const w1 = await spiwireSamples(ctx, spi, woken.s, half);
      const b = await wsSamples(ws, samples);
      const w2 = await spiwireSamples(ctx, spi, woken.s, samples - half);
      const c2 = await spiwireSamples(ctx, plain, plainSocket.s, samples - half);
      const a2 = await spiwireSamples(ctx, spi, s, samples - half);
      const a = [...a1, ...a2];
      const c = [...c1, ...c2];
      const w = [...w1, ...w2];
      calls += samples;
      plainCalls += samples;
      wokenCalls += samples;
      echoes += samples;
      sw50.push(percentile(a, 50));
      sw99.push(percentile(a, 99));
      raw50.push(percentile(b, 50));
      raw99.push(percentile(b, 99));
      plain50.push(percentile(c, 50));
      plain99.push(percentile(c, 99));
      woken50.push(percentile(w, 50));
      woken99.push(percentile(w, 99));
      ctx.log(`  latency rep ${rep + 1}: spiwire p50 ${sw50[rep]!.toFixed(0)} us p99 ${sw99[rep]!.toFixed(0)} us (without resume ${plain50[rep]!.toFixed(0)} / ${plain99[rep]!.toFixed(0)} us; woken peer ${woken50[rep]!.toFixed(0)} / ${woken99[rep]!.toFixed(0)} us); raw ws p50 ${raw50[rep]!.toFixed(0)} us p99 ${raw99[rep]!.toFixed(0)} us`);
    }
  } finally {
    ws.close();
    await closeSocket(spi, s);
    await closeSocket(spi, woken.s);
    await closeSocket(plain, plainSocket.s);
  }
  const end = await ctx.discard.connectionEnded(sink.port, localPort);
  const plainEnd = await ctx.discard.connectionEnded(sink.port, plainSocket.localPort);
  const wokenEnd = await ctx.discard.connectionEnded(ctx.discardPort, woken.localPort);
  const lowatFailed = (await ctx.discard.request<{ lowatFailed: number }>('listenerStats', { port: sink.port })).lowatFailed;
  await spi.close();
  await plain.close();
  const pair = (a: number[], b: number[]): Pair => {
    const x = summarize(a);
    const y = summarize(b);
    return { unit: 'us', better: 'lower', spiwire: x, raw: y, ratio: x.median / y.median, ratioRuns: a.map((v, i) => v / b[i]!) };
  };
  return {
    params: { bytes: SIZE, samplesPerRep: samples, warmup, warmUpSeconds: ctx.quick ? 0 : WARM_UP_SECONDS, sinkRcvLowat: sink.rcvLowat ?? 'not set' },
    p50: pair(sw50, raw50),
    p99: pair(sw99, raw99),
    resume: { p50: pair(sw50, plain50), p99: pair(sw99, plain99) },
    wokenPeer: { p50: pair(woken50, raw50), p99: pair(woken99, raw99) },
    checks: [
      check('latency: bytes at the peer (every blocking WSPSend)', calls * SIZE, end.bytes),
      check('latency: bytes at the peer (every blocking WSPSend of the session without resume)', plainCalls * SIZE, plainEnd.bytes),
      check('latency: bytes at the peer woken by every segment (every blocking WSPSend to it)', wokenCalls * SIZE, wokenEnd.bytes),
      check('latency: sink connections whose SO_RCVLOWAT could not be set', 0, lowatFailed),
      check('latency: bytes echoed by the raw ws peer', echoes * SIZE, echoedBytes),
    ],
  };
}
