/**
 * The short version of the benchmark, for CI: `node test/dist/bench/run.js --quick` runs every
 * scenario at tiny sizes against a real daemon and real peers, and must move exactly the expected
 * bytes and datagrams. Correctness only: no timing is judged here.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Check {
  what: string;
  expected: number;
  actual: number;
  ok: boolean;
}

t.test('npm run bench -- --quick: every scenario runs and moves the expected bytes', { timeout: 150_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const json = join(dir, 'results.json');
  const r = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(process.execPath, ['test/dist/bench/run.js', '--quick', '--json', json], { cwd: root, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` });
    });
  });
  t.equal(r.code, 0, r.out.slice(-4000));
  const report = JSON.parse(readFileSync(json, 'utf8')) as {
    meta: { mode: string };
    checks: { total: number; passed: number; failed: Check[] };
    results: Record<string, { checks: Check[] } & Record<string, unknown>>;
  };
  t.equal(report.meta.mode, 'quick');
  const scenarios = ['bulk', 'latency', 'smallSendRate', 'smallSendRateHook', 'udp', 'completion', 'scale', 'slowPeer', 'largeSends', 'manySessions', 'bookkeeping'];
  t.same(Object.keys(report.results).sort(), [...scenarios].sort(), 'every scenario ran');
  t.same(report.checks.failed, [], 'no check failed');
  t.equal(report.checks.passed, report.checks.total);

  const checks = (name: string): Check[] => report.results[name]?.checks ?? [];
  const expectEvery = (name: string, match: RegExp, expected: number, count: number): void => {
    const cs = checks(name).filter((c) => match.test(c.what));
    t.equal(cs.length, count, `${name}: ${count} checks matching ${match}`);
    for (const c of cs) {
      t.equal(c.expected, expected, `${c.what}: expected ${expected}`);
      t.equal(c.actual, expected, `${c.what}: got ${c.actual}`);
    }
  };
  // One repetition in quick mode: one spiwire run and one raw run per throughput scenario.
  expectEvery('bulk', /^bulk (spiwire|raw) run \d+: bytes at the peer/, 64 * 64 * 1024, 2);
  // The relays: the naive one always, websockify when Debian's package is installed.
  expectEvery('bulk', /^bulk naive relay run \d+: bytes at the peer/, 64 * 64 * 1024, 1);
  expectEvery('bulk', /^bulk websockify run \d+: bytes at the peer/, 64 * 64 * 1024, existsSync('/usr/bin/websockify') ? 1 : 0);
  t.match(r.out, /machine: raw 100-byte node:net writes [\d,]+\/s, raw bulk node:net [\d.,]+ MB\/s/, 'the machine line');
  expectEvery('smallSendRate', /bytes at the peer/, 2000 * 100, 2);
  // Quick: 2000 sends of 100 bytes in each of the four sessions.
  expectEvery('bookkeeping', /bytes at the peer/, 2000 * 100, 4);
  // Quick: 4 sessions of 16 sends of 64 KiB; then one of them alone sends the same 64 sends, the others none.
  expectEvery('manySessions', /^many sessions run \d+: bytes at the peer/, 16 * 64 * 1024, 4);
  expectEvery('manySessions', /one session alone: bytes at the peer \(session 1\)/, 4 * 16 * 64 * 1024, 1);
  expectEvery('manySessions', /one session alone: bytes at the peer \(session [234]\)/, 0, 3);
  // Raw node:net beside them: the same bytes on 4 connections, then on one.
  expectEvery('manySessions', /^many sessions run \d+, raw, 4 connections: bytes at the peer/, 16 * 64 * 1024, 4);
  expectEvery('manySessions', /^many sessions run \d+, raw, one connection: bytes at the peer/, 4 * 16 * 64 * 1024, 1);
  expectEvery('smallSendRateHook', /bytes at the peer/, 2000 * 100, 2);
  expectEvery('udp', /run \d+: datagrams received$/, 2000, 2);
  expectEvery('udp', /bytes at the receiver/, 2000 * 1024, 2);
  // 10 warm-up calls and 50 samples, 100 bytes each, in each of two sessions (resumable, and without resume).
  // The sink woken once 64 KiB wait (two sessions) and the peer woken by every send.
  expectEvery('latency', /bytes at the peer/, 60 * 100, 3);
  expectEvery('latency', /SO_RCVLOWAT could not be set/, 0, 1);
  expectEvery('latency', /bytes echoed/, 60 * 100, 1);
  expectEvery('completion', /bytes at the peer/, 60 * 100, 2);
  expectEvery('completion', /sends that pended until the kernel had their bytes/, 60, 2);
  expectEvery('scale', /50 sockets run 1/, 50, 2);
  expectEvery('scale', /200 sockets run 1/, 200, 2);
  expectEvery('scale', /100 ops run 1: operations pending/, 100, 1);
  expectEvery('scale', /1000 ops run 1: operations pending/, 1000, 1);
  // Quick: the 64 MiB overlapped send's bytes again as 64 KiB bulk sends beside it.
  expectEvery('largeSends', /bulk beside run \d+: bytes at the peer/, 64 * 1024 * 1024, 1);
  expectEvery('slowPeer', /slow peer: posts$/, 2000, 1);
  const sp = checks('slowPeer').find((c) => /bytes at the peer/.test(c.what));
  t.ok(sp && sp.ok && sp.actual > 0, 'slow peer: the peer got exactly the accepted bytes');
});
