#!/usr/bin/env node
/**
 * `npm run campaign`: the attack and fault campaign against the daemon (campaign.ts).
 *
 *   node test/dist/campaign/run.js [--quick] [--seed N] [--only fuzz,faults] [--json FILE]
 *
 * Prints one row per scenario and the targets; exits 1 when a target is missed, 2 when the run
 * itself could not finish (it gives up after 5 minutes in --quick mode, 40 minutes otherwise,
 * killing every daemon it started).
 */
import { writeFileSync } from 'node:fs';
import { DEFAULT_SEED, runCampaign, SCENARIOS } from './campaign.js';
import { killAllDaemons } from './lib/daemon.js';
import { table } from './lib/report.js';

interface Args {
  quick: boolean;
  seed: number;
  only: string[] | undefined;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { quick: false, seed: DEFAULT_SEED, only: undefined, json: null };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${f} needs a value`);
      return v;
    };
    if (f === '--quick') a.quick = true;
    else if (f === '--seed') a.seed = Number(val());
    else if (f === '--only') a.only = val().split(',').map((x) => x.trim());
    else if (f === '--json') a.json = val();
    else throw new Error(`unknown flag ${f} (flags: --quick, --seed N, --only ${SCENARIOS.map((s) => s.name).join(',')}, --json FILE)`);
  }
  if (!Number.isInteger(a.seed)) throw new Error('--seed must be an integer');
  for (const o of a.only ?? []) if (!SCENARIOS.some((s) => s.name === o)) throw new Error(`--only: no scenario ${o}`);
  return a;
}

async function main(): Promise<void> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const limitMs = args.quick ? 300_000 : 2_400_000;
  const watchdog = setTimeout(() => {
    process.stderr.write(`campaign: gave up after ${limitMs / 1000} s\n`);
    killAllDaemons();
    process.exit(2);
  }, limitMs);
  watchdog.unref();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAllDaemons();
      process.exit(130);
    });
  }
  const report = await runCampaign({ quick: args.quick, seed: args.seed, ...(args.only ? { only: args.only } : {}) });
  clearTimeout(watchdog);
  process.stdout.write(`${table(report)}\n`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
  process.exit(report.ok ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`campaign failed: ${(err as Error)?.stack ?? String(err)}\n`);
  killAllDaemons();
  process.exit(2);
});
