#!/usr/bin/env node
// Runs the whole suite with tap (TAP output), then prints one plain closing line
// "N passed, N failed, N skipped" counting the tests inside every test file.
// Extra arguments go to tap, for example: npm test -- test/dist/e2e/wsp-send-tcp.test.js
// The TAP stream is also saved to .tap/results.tap; once tap is done, scripts/check-conformance.mjs
// checks docs/conformance.md against it, and counts as one more passed or failed test.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/**
 * A directory given as an argument becomes the test files under it (*.test.js). Handed a
 * directory, tap picks files by its plugins, and on the first run after `npm ci` its default set
 * (with @tapjs/typescript, which package.json turns off) is still the built one: that run takes
 * every *.test.d.ts that tsc writes beside the tests for a test, and each fails to load.
 */
function testFiles(arg) {
  let isDir = false;
  try {
    isDir = statSync(arg).isDirectory();
  } catch {
    return [arg];
  }
  if (!isDir) return [arg];
  const found = [];
  for (const entry of readdirSync(arg, { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.test.js')) found.push(join(entry.parentPath ?? entry.path, entry.name));
  }
  return found.sort();
}
const tapArgs = process.argv.slice(2).flatMap(testFiles);

const tapDir = new URL('../.tap/', import.meta.url);
mkdirSync(tapDir, { recursive: true });
const tapFile = fileURLToPath(new URL('results.tap', tapDir));
const saved = createWriteStream(tapFile);

const child = spawn(process.execPath, [new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url).pathname, '-R', 'tap', ...tapArgs], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let passed = 0;
let failed = 0;
let skipped = 0;
// Every failing test, with the diagnostics tap prints under it, repeated after the closing counts:
// CI keeps only the tail of a long log, and the tail must name what failed.
const failures = [];
let capturing = null;
// A test inside a file is a TAP line at exactly one level of indentation (4 spaces).
const line = /^ {4}(not )?ok \d+ - .*?(# (SKIP|TODO)\b.*)?$/;
const rl = createInterface({ input: child.stdout });
rl.on('line', (l) => {
  process.stdout.write(`${l}\n`);
  saved.write(`${l}\n`);
  // A failing line's YAML diagnostics follow it, from "---" to "...".
  if (capturing) {
    const yaml = l.trim();
    if ((capturing.inYaml || yaml === '---') && capturing.lines.length < 25) {
      capturing.inYaml = yaml !== '...';
      capturing.lines.push(l);
      if (capturing.inYaml) return void countLine(l);
    }
    capturing = null;
  }
  const failing = /^\s*not ok \d+ - (.*)$/.exec(l);
  if (failing && !/# (SKIP|TODO)\b/.test(failing[1])) {
    capturing = { lines: [l], inYaml: false };
    failures.push(capturing);
  }
  countLine(l);
});
function countLine(l) {
  const m = line.exec(l);
  if (!m) return;
  if (m[3]) skipped++;
  else if (m[1]) failed++;
  else passed++;
}
child.on('close', (code) => {
  rl.close();
  // A file that crashed or timed out has a top-level "not ok" and may report no inner line.
  if (code !== 0 && failed === 0) failed = 1;
  saved.end(() => {
    // The conformance matrix: every row names a test that ran and passed. With files given to
    // tap, rows whose file did not run are not held against it (--partial).
    const args = [fileURLToPath(new URL('check-conformance.mjs', import.meta.url)), '--tap', tapFile];
    if (process.argv.length > 2) args.push('--partial');
    const check = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (check.status === 0) passed++;
    else failed++;
    if (failures.length > 0) {
      process.stdout.write(`\n== failures (${failures.length} TAP lines; full stream in .tap/results.tap)\n`);
      for (const f of failures) process.stdout.write(`${f.lines.join('\n')}\n`);
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    process.exit(check.status === 0 ? (code ?? 1) : code || 1);
  });
});
