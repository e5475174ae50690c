/**
 * Scenario 10: what the optional machinery costs on the small-send path (issue 17). The same
 * 100-byte overlapped WSPSends as scenario 3, in sessions that differ in one thing each:
 *   - base: resume off, no fault rule, no trace (the leanest session);
 *   - resume: a resumable session (the SDK's default): messages counted, kept until acknowledged;
 *   - faults armed: a fault rule on another socket, so every send asks the rules and none fires;
 *   - tracing: the SDK's call trace on, records handed to a function that drops them.
 * The variants run in turn within each repetition (rotating which goes first), and each figure is
 * the median over the repetitions of its rate divided by base's in the same repetition: runs a
 * second apart share the machine's phase, which on a shared 2-core machine moves every rate by
 * more than the few per cent measured here. "Off" costs are the ratios of base to itself: resume
 * off, no rules and no trace are base.
 */
import * as S from '@spiwire/client';
import { check, type Check, type Ctx } from '../lib/context.js';
import { tcpSocket } from '../lib/spi.js';
import { summarize, type Summary } from '../lib/stats.js';
import { cpuOf, selfCpu, spiwireRun } from './tcp-throughput.js';

export type Variant = 'base' | 'resume' | 'faultsArmed' | 'tracing';
const VARIANTS: readonly Variant[] = ['base', 'resume', 'faultsArmed', 'tracing'];

export interface BookkeepingResult {
  params: Record<string, number | string>;
  /** sends/s per variant. */
  rates: Record<Variant, Summary>;
  /** Median over the repetitions of the variant's rate / base's rate in the same repetition. */
  ratios: Record<Variant, number>;
  /** Those per-repetition ratios (absent from results saved before they were kept). */
  ratioRuns?: Record<Variant, number[]>;
  /**
   * CPU time per send, summed over the repetitions (this process as the SDK client, the daemon
   * from /proc ticks), and each variant's total over base's: steadier than the rates, which count
   * the time a process waits for a core. Null where /proc is missing; absent from older results.
   */
  cpu?: { clientUs: Record<Variant, number>; daemonUs: Record<Variant, number>; ratios: Record<Variant, number> } | null;
  checks: Check[];
}

async function sessionFor(ctx: Ctx, v: Variant): Promise<S.SpiSession> {
  const spi = await S.connect(ctx.daemon.url, { autoApc: true, resume: v === 'resume', ...(v === 'tracing' ? { trace: () => undefined } : {}) });
  if (v === 'faultsArmed') {
    // A rule on a socket that sends nothing: the rules are asked on every send, and never fire.
    const { s } = await tcpSocket(spi, ctx.discardPort);
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'short', max: 1 } });
  }
  return spi;
}

export async function bookkeeping(ctx: Ctx): Promise<BookkeepingResult> {
  // Many short repetitions rather than a few long ones: the pairing is what steadies the ratio.
  const count = ctx.quick ? 2000 : 50_000;
  const reps = ctx.quick ? ctx.reps : Math.max(9, 2 * ctx.reps);
  const checks: Check[] = [];
  const runs: Record<Variant, number[]> = { base: [], resume: [], faultsArmed: [], tracing: [] };
  const zero = (): Record<Variant, number> => ({ base: 0, resume: 0, faultsArmed: 0, tracing: 0 });
  const clientCpu = zero();
  const daemonCpu = zero();
  let cpuOk = cpuOf(ctx.daemon.pid) !== null;
  const sessions = new Map<Variant, S.SpiSession>();
  try {
    for (const v of VARIANTS) sessions.set(v, await sessionFor(ctx, v));
    // Warm each session's path before measuring (JIT, buffers), unless quick.
    if (!ctx.quick) for (const v of VARIANTS) await spiwireRun(ctx, sessions.get(v)!, 100, 20_000, 1024);
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < VARIANTS.length; i++) {
        const v = VARIANTS[(i + rep) % VARIANTS.length]!;
        const c0 = selfCpu();
        const d0 = cpuOk ? cpuOf(ctx.daemon.pid) : null;
        const r = await spiwireRun(ctx, sessions.get(v)!, 100, count, 1024);
        const d1 = d0 === null ? null : cpuOf(ctx.daemon.pid);
        clientCpu[v] += selfCpu() - c0;
        if (d0 === null || d1 === null) cpuOk = false;
        else daemonCpu[v] += d1 - d0;
        runs[v].push(count / r.seconds);
        checks.push(check(`bookkeeping ${v} run ${rep + 1}: bytes at the peer`, 100 * count, r.bytes));
      }
      ctx.log(`  bookkeeping rep ${rep + 1}: ${VARIANTS.map((v) => `${v} ${runs[v][rep]!.toFixed(0)}/s`).join(', ')}`);
    }
  } finally {
    for (const spi of sessions.values()) await spi.close();
  }
  const rates = { base: summarize(runs.base), resume: summarize(runs.resume), faultsArmed: summarize(runs.faultsArmed), tracing: summarize(runs.tracing) };
  const paired = (v: Variant): number[] => runs[v].map((x, i) => x / runs.base[i]!);
  const ratioRuns = { base: paired('base'), resume: paired('resume'), faultsArmed: paired('faultsArmed'), tracing: paired('tracing') };
  const ratio = (v: Variant): number => summarize(ratioRuns[v]).median;
  const sends = count * reps;
  const perSend = (x: Record<Variant, number>): Record<Variant, number> => ({ base: x.base / sends, resume: x.resume / sends, faultsArmed: x.faultsArmed / sends, tracing: x.tracing / sends });
  const both = (v: Variant): number => clientCpu[v] + daemonCpu[v];
  const cpu = cpuOk
    ? { clientUs: perSend(clientCpu), daemonUs: perSend(daemonCpu), ratios: { base: 1, resume: both('resume') / both('base'), faultsArmed: both('faultsArmed') / both('base'), tracing: both('tracing') / both('base') } }
    : null;
  return {
    params: { sendBytes: 100, sendsPerRun: count, inFlight: 1024, repetitions: reps },
    rates,
    ratios: { base: 1, resume: ratio('resume'), faultsArmed: ratio('faultsArmed'), tracing: ratio('tracing') },
    ratioRuns,
    cpu,
    checks,
  };
}
