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
import { now, summarize } from '../lib/stats.js';
import { WARM_UP_SECONDS, warmUp } from '../lib/warm-up.js';

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
}

/**
 * Repeats spiwire and raw runs, alternating which goes first. Full runs start with a warm-up of
 * each side (warmUp), which also sizes the runs: each side sends what it can in about
 * targetSeconds, so a slow or a fast path gets runs of a similar length.
 */
async function compare(ctx: Ctx, name: string, chunk: number, quickCount: number, warmCount: number, targetSeconds: number, window: number, unit: string, rate: (bytes: number, seconds: number) => number, api = ctx.api): Promise<ThroughputResult> {
  const spi = await S.connect(ctx.daemon.url, { autoApc: true });
  const c = { ...ctx, api };
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
    for (let rep = 0; rep < ctx.reps; rep++) {
      const order = rep % 2 === 0 ? ['spiwire', 'raw'] : ['raw', 'spiwire'];
      for (const who of order) {
        const count = who === 'spiwire' ? swCount : rawCount;
        const r = who === 'spiwire' ? await spiwireRun(c, spi, chunk, count, window) : await rawRun(c, chunk, count);
        (who === 'spiwire' ? sw : raw).push(rate(chunk * count, r.seconds));
        checks.push(check(`${name} ${who} run ${rep + 1}: bytes at the peer`, chunk * count, r.bytes));
      }
      ctx.log(`  ${name} rep ${rep + 1}: spiwire ${sw[rep]!.toFixed(0)} ${unit}, raw ${raw[rep]!.toFixed(0)} ${unit}`);
    }
    const a = summarize(sw);
    const b = summarize(raw);
    return {
      params: { chunkBytes: chunk, spiwireSendsPerRun: swCount, rawWritesPerRun: rawCount, inFlight: window, api, warmUpSeconds: ctx.quick ? 0 : WARM_UP_SECONDS },
      pair: { unit, better: 'higher', spiwire: a, raw: b, ratio: a.median / b.median, ratioRuns: sw.map((x, i) => x / raw[i]!) },
      checks,
    };
  } finally {
    await spi.close();
  }
}

/** Scenario 1: 64 KiB overlapped WSPSends, window in flight, against raw 64 KiB writes. MB/s (10^6 bytes). */
export function bulk(ctx: Ctx, window = 32): Promise<ThroughputResult> {
  // Quick: 4 MiB. Full: about 1.5 s per run, sized by warm-up runs of 128 MiB.
  return compare(ctx, 'bulk', 64 * 1024, 64, 2048, 1.5, window, 'MB/s', (bytes, seconds) => bytes / seconds / 1e6);
}

/** Scenario 3: 100-byte overlapped WSPSends, window in flight, against raw 100-byte writes. Sends per second. */
export function smallRate(ctx: Ctx, window = 1024, api = ctx.api): Promise<ThroughputResult> {
  return compare(ctx, 'small-send' + (api === ctx.api ? '' : ` (${api})`), 100, 2000, 20_000, 1.5, window, 'sends/s', (bytes, seconds) => bytes / 100 / seconds, api);
}
