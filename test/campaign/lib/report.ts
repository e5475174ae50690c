/**
 * The campaign's verdict: one table row per scenario, then the targets, each met or missed. The
 * bounds are stated here, once, and printed with the targets so that a reader of the output knows
 * what "bounded" meant.
 */
import { MEMORY_AFTER_MARGIN_MIB, type Row } from './arena.js';

export const BOUNDS = {
  /** The daemon's RSS may never exceed this, whatever a client does. */
  memoryPeakMiB: 512,
  /** After a scenario the daemon's RSS must come back to within this of where it started. */
  memoryAfterMarginMiB: MEMORY_AFTER_MARGIN_MIB,
  /** The bystander's 99th percentile call latency. */
  bystanderP99Ms: 50,
  /** One frame may keep another session's calls waiting this long (the daemon shares its time between a frame's records). */
  frameBusyMs: 200,
};

export interface Target {
  name: string;
  ok: boolean;
  detail: string;
  /** A time: meaningful on a quiet machine only (the test suite shows it rather than asserting it). */
  timed?: boolean;
}

export interface Report {
  meta: { mode: 'quick' | 'full'; seed: number; startedAt: string; durationMs: number; node: string; commit: string };
  bounds: typeof BOUNDS;
  rows: Row[];
  targets: Target[];
  ok: boolean;
}

const sum = (rows: readonly Row[], f: (r: Row) => number): number => rows.reduce((n, r) => n + f(r), 0);

export function targets(rows: readonly Row[]): Target[] {
  const per = (f: (r: Row) => string | null): string => rows.map(f).filter((x): x is string => x !== null).join('; ');
  const memBad = per((r) => {
    const why: string[] = [];
    if (r.memPeakMiB === null || r.memPeakMiB > BOUNDS.memoryPeakMiB) why.push(`peak ${r.memPeakMiB} MiB`);
    if (r.memAfterMiB === null || r.memBeforeMiB === null || r.memAfterMiB > r.memBeforeMiB + BOUNDS.memoryAfterMarginMiB) why.push(`after ${r.memAfterMiB} MiB vs before ${r.memBeforeMiB} MiB`);
    return why.length ? `${r.scenario}: ${why.join(', ')}` : null;
  });
  const p99Bad = per((r) => (r.bystanderP99Ms === null || r.bystanderP99Ms >= BOUNDS.bystanderP99Ms ? `${r.scenario}: ${r.bystanderP99Ms ?? 'no samples'}${r.bystanderP99Ms === null ? '' : ' ms'}` : null));
  const otherKinds = ['undocumented-reply', 'limit', 'cpu', 'stall', 'allow-list', 'memory', 'other'];
  const other = rows.flatMap((r) => {
    const n = new Map<string, number>();
    for (const f of r.findings) if (otherKinds.includes(f.kind)) n.set(f.kind, (n.get(f.kind) ?? 0) + 1);
    return [...n].map(([k, c]) => `${r.scenario}: ${c} ${k}`);
  });
  const count = (name: string, f: (r: Row) => number): Target => {
    const n = sum(rows, f);
    return { name, ok: n === 0, detail: n === 0 ? '0' : `${n} (${per((r) => (f(r) ? `${r.scenario} ${f(r)}` : null))})` };
  };
  return [
    count('0 crashes', (r) => r.crashes),
    count('0 sessions disturbed', (r) => r.disturbed),
    count('0 bytes lost', (r) => r.bytesLost),
    count('0 bypasses', (r) => r.bypasses),
    count('0 internal errors', (r) => r.internalErrors),
    { name: `daemon memory bounded (peak < ${BOUNDS.memoryPeakMiB} MiB, after <= before + ${BOUNDS.memoryAfterMarginMiB} MiB)`, ok: memBad === '', detail: memBad || 'ok' },
    { name: `bystander p99 < ${BOUNDS.bystanderP99Ms} ms`, ok: p99Bad === '', detail: p99Bad || 'ok', timed: true },
    { ...count(`no frame keeps another session waiting over ${BOUNDS.frameBusyMs} ms`, (r) => r.findings.filter((f) => f.kind === 'slow-frame').length), timed: true },
    { name: '0 other defects (undocumented replies, limits not enforced, allow-list gaps, memory held, CPU burnt while idle, one frame stalling the daemon)', ok: other.length === 0, detail: other.length ? other.join(', ') : '0' },
  ];
}

function cell(v: number | string | null): string {
  return v === null ? '-' : String(v);
}

export function table(report: Report): string {
  const head = ['scenario', 'messages', 'crashes', 'disturbed', 'bytes lost', 'bypasses', 'internal errors', 'mem before MiB', 'mem peak MiB', 'mem after MiB', 'bystander p99 ms', 'seconds'];
  const body = report.rows.map((r) => [
    r.scenario,
    r.messages,
    r.crashes,
    r.disturbed,
    r.bytesLost,
    r.bypasses,
    r.internalErrors,
    r.memBeforeMiB,
    r.memPeakMiB,
    r.memAfterMiB,
    r.bystanderP99Ms,
    (r.durationMs / 1000).toFixed(1),
  ].map(cell));
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const out: string[] = [];
  out.push(`spiwire attack and fault campaign, ${report.meta.mode} run, seed 0x${report.meta.seed.toString(16)}, ${(report.meta.durationMs / 1000).toFixed(1)} s`);
  out.push('');
  out.push(line(head));
  out.push(`|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const b of body) out.push(line(b));
  out.push('');
  out.push('Targets:');
  for (const t of report.targets) out.push(`  [${t.ok ? 'met ' : 'MISS'}] ${t.name}: ${t.detail}`);
  const findings = report.rows.flatMap((r) => r.findings.map((f) => `  ${r.scenario}: [${f.kind}] ${f.detail}`));
  if (findings.length) {
    out.push('');
    out.push('Defects found:');
    out.push(...findings);
  }
  const notes = report.rows.flatMap((r) => r.notes.map((n) => `  ${r.scenario}: ${n}`));
  if (notes.length) {
    out.push('');
    out.push('Expected outcomes seen:');
    out.push(...notes);
  }
  out.push('');
  out.push(report.ok ? 'Every target met.' : `Targets missed: ${report.targets.filter((t) => !t.ok).length} of ${report.targets.length}.`);
  return out.join('\n');
}
