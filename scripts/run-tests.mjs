#!/usr/bin/env node
// Runs the whole suite with tap (TAP output), then prints one plain closing line
// "N passed, N failed, N skipped" counting the tests inside every test file.
// Extra arguments go to tap, for example: npm test -- test/dist/e2e/wsp-send-tcp.test.js
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const child = spawn(process.execPath, [new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url).pathname, '-R', 'tap', ...process.argv.slice(2)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let passed = 0;
let failed = 0;
let skipped = 0;
// A test inside a file is a TAP line at exactly one level of indentation (4 spaces).
const line = /^ {4}(not )?ok \d+ - .*?(# (SKIP|TODO)\b.*)?$/;
const rl = createInterface({ input: child.stdout });
rl.on('line', (l) => {
  process.stdout.write(`${l}\n`);
  const m = line.exec(l);
  if (!m) return;
  if (m[3]) skipped++;
  else if (m[1]) failed++;
  else passed++;
});
child.on('close', (code) => {
  rl.close();
  // A file that crashed or timed out has a top-level "not ok" and may report no inner line.
  if (code !== 0 && failed === 0) failed = 1;
  process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  process.exit(code ?? 1);
});
