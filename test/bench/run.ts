#!/usr/bin/env node
/**
 * The benchmark of issue 5: `npm run bench` (about four minutes on two cores) or
 * `node test/dist/bench/run.js --quick` (a few seconds, correctness only).
 *
 * The daemon runs as its own process, the client here, the peers in their own processes; every
 * spiwire figure is measured beside its raw baseline in the same run. Output: a table on stdout,
 * bench-results/results.json, and, for a full run given --write-docs, docs/performance.md and
 * docs/performance.svg (running the benchmark never dirties the working tree otherwise).
 *
 * Flags: --quick, --reps N, --scale-reps N, --only 1,3,6 (scenario numbers), --api spi|hook,
 * --json PATH, --write-docs (--no-docs, the default, is accepted), --cpu-prof (profiles of the daemons in bench-results/prof/),
 * --from-json PATH (no measuring: the table, page and chart again from saved results).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import type { Api, Check, Ctx } from './lib/context.js';
import { markdown, svg, table, targets, type Meta, type Report, type Results } from './report.js';
import { DaemonProcess, PeerProcess, ROOT, killChildren } from './lib/procs.js';
import { now } from './lib/stats.js';
import { bulk, smallRate } from './scenarios/tcp-throughput.js';
import { latency } from './scenarios/latency.js';
import { udp as udpScenario } from './scenarios/udp.js';
import { completion } from './scenarios/completion.js';
import { scale } from './scenarios/scale.js';
import { slowPeer } from './scenarios/slow-peer.js';
import { largeSends } from './scenarios/large-sends.js';
import { manySessions } from './scenarios/many-sessions.js';
import { bookkeeping } from './scenarios/bookkeeping.js';
import { DAEMON_NODE_FLAGS } from '@spiwire/server/node-flags';
import { nativeMasking } from '@spiwire/client';

interface Args {
  quick: boolean;
  reps: number | null;
  scaleReps: number | null;
  only: Set<number> | null;
  api: Api;
  json: string | null;
  docs: boolean;
  cpuProf: boolean;
  fromJson: string | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, reps: null, scaleReps: null, only: null, api: 'spi', json: null, docs: false, cpuProf: false, fromJson: null };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${f} needs a value`);
      return v;
    };
    if (f === '--quick') a.quick = true;
    else if (f === '--reps') a.reps = Number(val());
    else if (f === '--scale-reps') a.scaleReps = Number(val());
    else if (f === '--only') a.only = new Set(val().split(',').map(Number));
    else if (f === '--api') {
      const v = val();
      if (v !== 'spi' && v !== 'hook') throw new Error('--api is spi or hook');
      a.api = v;
    } else if (f === '--json') a.json = val();
    else if (f === '--no-docs') a.docs = false;
    else if (f === '--write-docs') a.docs = true;
    else if (f === '--cpu-prof') a.cpuProf = true;
    else if (f === '--from-json') a.fromJson = val();
    else throw new Error(`unknown flag ${f}`);
  }
  return a;
}

function hardNofile(): number {
  const v = execFileSync('/bin/sh', ['-c', 'ulimit -Hn']).toString().trim();
  return v === 'unlimited' ? 1 << 20 : Number(v);
}

function gitInfo(): { commit: string; dirty: string[] } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT }).toString().trim();
    const status = execFileSync('git', ['status', '--porcelain', '--', 'server', 'client-sdk', 'proto'], { cwd: ROOT }).toString();
    const dirty = [...new Set(status.split('\n').filter(Boolean).map((l) => l.slice(3).split('/').slice(0, 2).join('/')))];
    return { commit, dirty };
  } catch {
    return { commit: 'unknown', dirty: [] };
  }
}



/** What a full run measures: the page is written only from results that hold all of it. */
const ALL_SCENARIOS: ReadonlyArray<keyof Results> = ['bulk', 'latency', 'smallSendRate', 'smallSendRateHook', 'udp', 'completion', 'scale', 'slowPeer', 'largeSends', 'manySessions', 'bookkeeping'];

/** --from-json PATH: the table, the page and the chart again from saved results, without measuring. */
function fromJson(args: Args): void {
  const report = JSON.parse(readFileSync(args.fromJson!, 'utf8')) as Report;
  if (report.meta.mode === 'full') report.targets = targets(report.results);
  process.stdout.write(`${table(report)}\n`);
  // The page describes every scenario: a saved run of some of them (--only) cannot rewrite it.
  const missing = ALL_SCENARIOS.filter((k) => report.results[k] === undefined);
  if (args.docs && missing.length > 0) {
    process.stderr.write(`bench: ${args.fromJson} lacks ${missing.join(', ')} (a run with --only?): docs/performance.md left as it is\n`);
    process.exitCode = 1;
    return;
  }
  if (report.meta.mode === 'full' && args.docs) {
    writeFileSync(join(ROOT, 'docs', 'performance.svg'), svg(report));
    writeFileSync(join(ROOT, 'docs', 'performance.md'), markdown(report, 'performance.svg'));
    process.stdout.write('wrote docs/performance.md and docs/performance.svg\n');
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.fromJson) return fromJson(args);
  // Whatever hangs, the run ends: 15 minutes (2 in --quick mode) and the children are killed.
  const limitMs = args.quick ? 120_000 : 900_000;
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: gave up after ${limitMs / 1000} s\n`);
    killChildren();
    process.exit(2);
  }, limitMs);
  const started = now();
  const loadStart = os.loadavg();
  const log = (m: string): void => void process.stderr.write(`${m}\n`);
  const cpuProfDir = args.cpuProf ? join(ROOT, 'bench-results', 'prof') : null;
  if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });

  // --gc-stats: scenario 1 reads the daemon's allocations per MB from /stats.
  const daemon = await DaemonProcess.start({ cpuProfDir, flags: ['--gc-stats', '1'] });
  const peers = await Promise.all(['discard', 'udp', 'ws-echo', 'holder'].map((r) => PeerProcess.start(r)));
  const [discard, udp, ws, holder] = peers as [PeerProcess, PeerProcess, PeerProcess, PeerProcess];
  const results: Results = {};
  let ctx: Ctx | null = null;
  let daemonOutput = '';
  try {
    const discardPort = (await discard.request<{ port: number }>('tcpListen', { mode: 'discard' })).port;
    const wsPort = (await ws.request<{ port: number }>('wsEcho')).port;
    // The peers' clock must be ours: process.hrtime is CLOCK_MONOTONIC, shared by every process here.
    const t1 = now();
    const tp = (await discard.request<{ t: number }>('hrtime')).t;
    const t2 = now();
    ctx = {
      quick: args.quick,
      reps: args.reps ?? (args.quick ? 1 : 5),
      scaleReps: args.scaleReps ?? (args.quick ? 1 : 3),
      api: args.api,
      daemon,
      discard,
      discardPort,
      udp,
      ws,
      wsPort,
      holder,
      sharedClock: t1 <= tp && tp <= t2,
      nofileHard: hardNofile(),
      cpuProfDir,
      log,
    };
    const want = (n: number): boolean => args.only === null || args.only.has(n);
    if (want(1)) {
      log('1 bulk');
      results.bulk = await bulk(ctx);
    }
    if (want(2)) {
      log('2 small-call latency');
      results.latency = await latency(ctx);
    }
    if (want(3)) {
      log('3 small-send rate');
      results.smallSendRate = await smallRate(ctx);
      log('3b small-send rate through the startOperation hook');
      results.smallSendRateHook = await smallRate(ctx, 1024, ctx.api === 'hook' ? 'spi' : 'hook');
    }
    if (want(4)) {
      log('4 UDP');
      results.udp = await udpScenario(ctx);
    }
    if (want(5)) {
      log('5 completion latency');
      results.completion = await completion(ctx);
    }
    if (want(6)) {
      log('6 scale');
      results.scale = await scale(ctx);
    }
    if (want(7)) {
      log('7 slow peer');
      results.slowPeer = await slowPeer(ctx);
    }
    if (want(8)) {
      log('8 large sends');
      results.largeSends = await largeSends(ctx);
    }
    if (want(9)) {
      log('9 many sessions');
      results.manySessions = await manySessions(ctx);
    }
    if (want(10)) {
      log('10 the cost of resume, armed fault rules and tracing');
      results.bookkeeping = await bookkeeping(ctx);
    }
  } finally {
    daemonOutput = daemon.output;
    await daemon.stop();
    await Promise.all(peers.map((p) => p.stop()));
  }
  const cpus = os.cpus();
  const meta: Meta = {
    date: new Date().toISOString(),
    mode: args.quick ? 'quick' : 'full',
    reps: ctx.reps,
    scaleReps: ctx.scaleReps,
    api: ctx.api,
    seconds: (now() - started) / 1e9,
    node: process.versions.node,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    cpus: { count: cpus.length, model: cpus[0]?.model.trim() ?? 'unknown', mhz: cpus[0]?.speed ?? 0 },
    memoryBytes: os.totalmem(),
    loadavg: { start: loadStart, end: os.loadavg() },
    git: gitInfo(),
    bufferutil: nativeMasking,
    daemonFlags: daemon.flags.filter((f, i, a) => f !== '--port' && a[i - 1] !== '--port'),
    daemonNodeFlags: [...DAEMON_NODE_FLAGS],
    daemonOutput: daemonOutput.replace(/bench-nofile=\S+\n?/, '').slice(0, 4000),
    sharedClock: ctx.sharedClock,
    nofileHard: ctx.nofileHard,
  };
  const all: Check[] = Object.values(results).flatMap((r: { checks: Check[] }) => r.checks);
  const failed = all.filter((c) => !c.ok);
  const report: Report = { meta, targets: args.quick ? [] : targets(results), checks: { total: all.length, passed: all.length - failed.length, failed }, results };
  const json = args.json ?? join(ROOT, 'bench-results', args.quick ? 'results-quick.json' : 'results.json');
  mkdirSync(dirname(json), { recursive: true });
  writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`${table(report)}\nresults: ${json}\n`);
  // Only a complete, full run rewrites the committed page and chart, and only when asked.
  if (!args.quick && args.docs && args.only === null) {
    writeFileSync(join(ROOT, 'docs', 'performance.svg'), svg(report));
    writeFileSync(join(ROOT, 'docs', 'performance.md'), markdown(report, 'performance.svg'));
    process.stdout.write('wrote docs/performance.md and docs/performance.svg\n');
  } else if (!args.quick && args.only === null) process.stdout.write('docs/performance.md left as it is (--write-docs rewrites it from this run)\n');
  if (failed.length) process.exitCode = 1;
  clearTimeout(watchdog);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  killChildren();
  process.exit(1);
});
