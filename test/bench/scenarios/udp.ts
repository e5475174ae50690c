/**
 * Scenario 4: UDP. 1 KiB overlapped WSPSends on a connected UDP socket (WSPConnect sets the
 * default peer) against raw node:dgram sends on a connected socket, to the same receiver process,
 * which counts datagrams. Both senders use the same flow control so loss stays low: at most
 * WINDOW datagrams sent and not yet counted by the receiver (it reports its count every 128),
 * and at most INFLIGHT sends awaiting their completion. The rate is datagrams received divided by
 * the time from the first send to the last datagram's arrival; only received datagrams count.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx, type Pair } from '../lib/context.js';
import { DgramPipeline, rawUdp } from '../lib/raw.js';
import { SendPipeline, closeSocket, udpSocket } from '../lib/spi.js';
import { now, summarize, type Summary } from '../lib/stats.js';
import { WARM_UP_SECONDS, warmUp } from '../lib/warm-up.js';
import { cpuOf, selfCpu } from './tcp-throughput.js';

const SIZE = 1024;
const WINDOW = 1024;
const INFLIGHT = 256;
const EVERY = 128;

interface Run {
  rate: number;
  received: number;
  bytes: number;
}

/** Runs send(gate, wake) against a fresh receiver; waits for every datagram or for 300 ms of silence. */
async function measure(ctx: Ctx, count: number, send: (port: number, gate: () => boolean, onCredit: (f: () => void) => void) => Promise<void>): Promise<Run> {
  const { port } = await ctx.udp.request<{ port: number }>('udpBind', { every: EVERY, rcvbuf: 4 * 1024 * 1024 });
  let received = 0;
  let wake: () => void = () => undefined;
  const off = ctx.udp.on('udp', (m) => {
    if (m['port'] !== port) return;
    received = m['count'] as number;
    wake();
  });
  let sent = 0;
  // Datagrams written off as lost: without this a lossy run would stall the window for ever.
  let forgiven = 0;
  let lastProgress = now();
  // Called only just before a send: allows it while fewer than WINDOW datagrams are unaccounted for.
  const gate = (): boolean => {
    if (sent - received - forgiven >= WINDOW) return false;
    sent++;
    return true;
  };
  let stalledAt = -1;
  const watchdog = setInterval(() => {
    if (now() - lastProgress < 50e6 || sent - received - forgiven < WINDOW) return;
    void ctx.udp.request<{ count: number }>('udpStats', { port }).then((st) => {
      received = st.count;
      if (stalledAt === st.count) forgiven = sent - received;
      stalledAt = st.count;
      lastProgress = now();
      wake();
    });
  }, 25);
  const offProgress = ctx.udp.on('udp', () => (lastProgress = now()));
  try {
    const t0 = now();
    await send(port, gate, (f) => (wake = f)).finally(() => {
      clearInterval(watchdog);
      offProgress();
    });
    let st = await ctx.udp.request<{ count: number; bytes: number; last: number }>('udpStats', { port });
    let quietSince = now();
    let last = st.count;
    while (st.count < count && now() - quietSince < 300e6) {
      await new Promise((r) => setTimeout(r, 5));
      st = await ctx.udp.request<{ count: number; bytes: number; last: number }>('udpStats', { port });
      if (st.count !== last) {
        last = st.count;
        quietSince = now();
      }
    }
    const end = ctx.sharedClock ? st.last : now();
    return { rate: st.count / ((end - t0) / 1e9), received: st.count, bytes: st.bytes };
  } finally {
    off();
    await ctx.udp.request('udpClose', { port });
  }
}

function spiwireRun(ctx: Ctx, spi: S.SpiSession, count: number): Promise<Run> {
  return measure(ctx, count, async (port, gate, onCredit) => {
    const s = await udpSocket(spi, port);
    const p = new SendPipeline(spi, ctx.api, s, Buffer.alloc(SIZE, 0x75), count, INFLIGHT, gate);
    onCredit(() => p.pump());
    await p.run();
    await closeSocket(spi, s);
  });
}

function rawRun(ctx: Ctx, count: number): Promise<Run> {
  return measure(ctx, count, async (port, gate, onCredit) => {
    const sock = await rawUdp(port);
    const p = new DgramPipeline(sock, Buffer.alloc(SIZE, 0x75), count, INFLIGHT, gate);
    onCredit(() => p.pump());
    await p.run();
    await new Promise<void>((r) => sock.close(() => r()));
  });
}

export interface UdpResult {
  params: Record<string, number | string>;
  pair: Pair;
  /** Datagrams lost per run (sent, not received), as a fraction. */
  loss: { spiwire: Summary; raw: Summary };
  /**
   * CPU (us) and system calls per datagram received, summed over the measured runs: for spiwire
   * the SDK client (this process), the daemon and the receiver; for raw the writer (this process)
   * and the receiver. Null where /proc is missing.
   */
  cost: { spiwire: UdpCost; raw: UdpCost } | null;
  checks: Check[];
}

export interface UdpCost {
  /** The sending side: the SDK client, or the raw writer. */
  senderUs: number;
  /** The daemon (spiwire only; 0 for raw). */
  daemonUs: number;
  receiverUs: number;
}

/** The CPU time of one run's participants, taken before and after it. */
function costProbe(ctx: Ctx, daemon: boolean): () => { sender: number; daemon: number; receiver: number } | null {
  const rpid = ctx.udp.child.pid!;
  const take = (): { sender: number; daemon: number | null; receiver: number | null } => ({
    sender: selfCpu(),
    daemon: daemon ? cpuOf(ctx.daemon.pid) : 0,
    receiver: cpuOf(rpid),
  });
  const a = take();
  return () => {
    const b = take();
    if (a.daemon === null || b.daemon === null || a.receiver === null || b.receiver === null) return null;
    return { sender: b.sender - a.sender, daemon: b.daemon - a.daemon, receiver: b.receiver - a.receiver };
  };
}

export async function udp(ctx: Ctx): Promise<UdpResult> {
  const spi = await S.connect(ctx.daemon.url, { autoApc: true });
  try {
    // Quick: 2,000 datagrams. Full: warm-up runs of 10,000 per side (warmUp) size runs of about 1.5 s.
    let swCount = 2000;
    let rawCount = 2000;
    if (!ctx.quick) {
      const warm = 10_000;
      swCount = await warmUp(warm, 1.5, async () => (await spiwireRun(ctx, spi, warm)).rate);
      rawCount = await warmUp(warm, 1.5, async () => (await rawRun(ctx, warm)).rate);
    }
    const sw: number[] = [];
    const raw: number[] = [];
    const swLoss: number[] = [];
    const rawLoss: number[] = [];
    const checks: Check[] = [];
    const sums = { spiwire: { sender: 0, daemon: 0, receiver: 0, n: 0 }, raw: { sender: 0, daemon: 0, receiver: 0, n: 0 } };
    let costOk = true;
    for (let rep = 0; rep < ctx.reps; rep++) {
      const order = rep % 2 === 0 ? ['spiwire', 'raw'] : ['raw', 'spiwire'];
      for (const who of order) {
        const count = who === 'spiwire' ? swCount : rawCount;
        const probe = costProbe(ctx, who === 'spiwire');
        const r = who === 'spiwire' ? await spiwireRun(ctx, spi, count) : await rawRun(ctx, count);
        const c = probe();
        if (c === null) costOk = false;
        else {
          const t = who === 'spiwire' ? sums.spiwire : sums.raw;
          t.sender += c.sender;
          t.daemon += c.daemon;
          t.receiver += c.receiver;
          t.n += r.received;
        }
        (who === 'spiwire' ? sw : raw).push(r.rate);
        (who === 'spiwire' ? swLoss : rawLoss).push(1 - r.received / count);
        // Loopback with flow control loses nothing in practice; what did arrive must be whole datagrams.
        checks.push(check(`udp ${who} run ${rep + 1}: bytes at the receiver = 1 KiB x datagrams received`, r.received * SIZE, r.bytes));
        if (ctx.quick) checks.push(check(`udp ${who} run ${rep + 1}: datagrams received`, count, r.received));
      }
      ctx.log(`  udp rep ${rep + 1}: spiwire ${sw[rep]!.toFixed(0)}/s (loss ${(swLoss[rep]! * 100).toFixed(2)}%), raw ${raw[rep]!.toFixed(0)}/s (loss ${(rawLoss[rep]! * 100).toFixed(2)}%)`);
    }
    const a = summarize(sw);
    const b = summarize(raw);
    return {
      params: { datagramBytes: SIZE, spiwireDatagramsPerRun: swCount, rawDatagramsPerRun: rawCount, window: WINDOW, inFlight: INFLIGHT, api: ctx.api, warmUpSeconds: ctx.quick ? 0 : WARM_UP_SECONDS },
      pair: { unit: 'datagrams/s', better: 'higher', spiwire: a, raw: b, ratio: a.median / b.median, ratioRuns: sw.map((x, i) => x / raw[i]!) },
      loss: { spiwire: summarize(swLoss), raw: summarize(rawLoss) },
      cost: costOk && sums.spiwire.n > 0 && sums.raw.n > 0 ? { spiwire: perDatagram(sums.spiwire), raw: perDatagram(sums.raw) } : null,
      checks,
    };
  } finally {
    await spi.close();
  }
}

function perDatagram(t: { sender: number; daemon: number; receiver: number; n: number }): UdpCost {
  return { senderUs: t.sender / t.n, daemonUs: t.daemon / t.n, receiverUs: t.receiver / t.n };
}
