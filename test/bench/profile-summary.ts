#!/usr/bin/env node
/**
 * Summarises V8 CPU profiles (from `npm run bench -- --cpu-prof`, in bench-results/prof/): the
 * functions with the most self time, and self time per file.
 *   node test/dist/bench/profile-summary.js bench-results/prof/CPU.*.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
const files = args.filter((a, i) => !a.startsWith('--') && (topAt < 0 || i !== topAt + 1));

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const n of p.nodes) {
    const t = self.get(n.id) ?? 0;
    total += t;
    const url = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|server|proto|client-sdk)\//, '$1/');
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + t);
    const f = url || `(${n.callFrame.functionName})`;
    byFile.set(f, (byFile.get(f) ?? 0) + t);
  }
  const show = (title: string, m: Map<string, number>): void => {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  };
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
  show('self time by function', byFn);
  show('self time by file', byFile);
}
