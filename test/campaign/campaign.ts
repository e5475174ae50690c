/**
 * The attack and fault campaign against the spiwire daemon, as a function: runCampaign() runs
 * every scenario (each against its own daemon process, with a bystander session beside it) and
 * returns the report that run.ts prints and test/e2e/campaign-smoke.test.ts checks.
 */
import { execFileSync } from 'node:child_process';
import type { Options, Row } from './lib/arena.js';
import { killAllDaemons, ROOT } from './lib/daemon.js';
import { targets, BOUNDS, type Report } from './lib/report.js';
import { fuzz } from './scenarios/fuzz.js';
import { exhaustion } from './scenarios/exhaustion.js';
import { allowList } from './scenarios/allow-list.js';
import { faults } from './scenarios/faults.js';

export const DEFAULT_SEED = 0x5eed2024;

export const SCENARIOS: ReadonlyArray<{ name: string; run: (o: Options) => Promise<Row> }> = [
  { name: 'fuzz', run: fuzz },
  { name: 'exhaustion', run: exhaustion },
  { name: 'allow-list', run: allowList },
  { name: 'faults', run: faults },
];

export interface CampaignOptions {
  /** The short version (under ~90 s on two cores); otherwise the full one. */
  quick: boolean;
  seed?: number;
  /** Run only these scenarios (by name). */
  only?: readonly string[];
  /** Progress lines; default: stderr. */
  log?: (line: string) => void;
}

function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

export async function runCampaign(o: CampaignOptions): Promise<Report> {
  const opts: Options = { quick: o.quick, seed: (o.seed ?? DEFAULT_SEED) >>> 0, log: o.log ?? ((l) => process.stderr.write(`${l}\n`)) };
  const started = Date.now();
  const rows: Row[] = [];
  try {
    for (const s of SCENARIOS) {
      if (o.only && !o.only.includes(s.name)) continue;
      opts.log(`== ${s.name}`);
      const row = await s.run(opts);
      opts.log(`== ${s.name} done in ${(row.durationMs / 1000).toFixed(1)} s`);
      rows.push(row);
    }
  } finally {
    killAllDaemons();
  }
  const t = targets(rows);
  return {
    meta: { mode: o.quick ? 'quick' : 'full', seed: opts.seed, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started, node: process.version, commit: commit() },
    bounds: BOUNDS,
    rows,
    targets: t,
    ok: t.every((x) => x.ok),
  };
}
