#!/usr/bin/env node
// Checks the conformance matrix (docs/conformance.md) against a TAP stream saved by
// scripts/run-tests.mjs (.tap/results.tap by default).
//
// Every row whose Status is not "open" must name a test that ran and passed:
//   - "pass":        the test's line is "ok" with no directive (a "# SKIP" or "# TODO" is not a pass);
//   - "pass (root)": the same when this checker runs as root; when it does not, a "# SKIP" is
//                    accepted too (such tests need privileges, e.g. network namespaces, and skip
//                    with a message elsewhere). Any "not ok" fails either way.
// Every "open" row must carry a written reason.
//
// The second matrix, "Wine conformance tests" (cases ported from Wine's dlls/ws2_32/tests/sock.c,
// under test/conformance/wine/), has two more statuses:
//   - "open (todo)":     the named test ran and is marked "# TODO" (spiwire departs from Windows
//                        there), and the row gives the reason; a test that ran without the
//                        directive fails the row: the departure is gone, the row must say pass;
//   - "not applicable":  a part of a Wine test with no SPI equivalent: a reason, and no test.
// And every case of those files that ran must have a row.
//
// The TAP stream is tap's "-R tap" output: each test file is a top-level subtest
// "# Subtest: test/dist/e2e/x.test.js"; tests inside are indented four spaces per level, each
// announced by "# Subtest: NAME" and closed by "ok N - NAME" / "not ok N - NAME" at the same
// indentation (a skipped or todo subtest has only its "ok" line). Compiled paths are mapped back to
// their sources: "A/dist/B.js" is "A/B.ts".
//
// Usage: node scripts/check-conformance.mjs [--tap FILE] [--matrix FILE] [--partial]
//   --partial  rows whose test file did not run at all (a run of a few files) are listed as not
//              run instead of failing.
// Prints one line per failing row and a summary line; exits 1 when any row fails.
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, resolve } from 'node:path';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The separator between the parts of a Test cell: FILE › TOP › SUB ... */
export const SEP = ' › ';

/** Where test sources live; a Test cell's FILE must be one of these. */
export const FILE_PATTERN = /^(?:test\/e2e|test\/conformance\/wine|server\/test|proto\/test|client-sdk\/test)\/[A-Za-z0-9._-]+\.test\.ts$/;

/** Where the Wine port's cases live: each of their cases needs a row. */
export const WINE_DIR = 'test/conformance/wine/';

export const STATUSES = ['pass', 'pass (root)', 'open', 'open (todo)', 'not applicable'];

/** Splits a markdown table line into trimmed cells; "\|" is a literal bar inside a cell. */
function cells(line) {
  const body = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  const out = [];
  let cur = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '\\' && body[i + 1] === '|') {
      cur += '|';
      i++;
    } else if (c === '|') {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  out.push(cur.trim());
  return out;
}

/**
 * Parses a Test cell. Returns null for an empty cell ("", "—", "-"), else
 * { ok: true, file, names } or { ok: false, error }.
 */
export function parseTestCell(cell) {
  const text = cell.trim();
  if (text === '' || text === '—' || text === '-') return null;
  const m = /^`([^`]+)`$/.exec(text);
  if (!m) return { ok: false, error: 'the Test cell must be exactly one test path in backticks' };
  const parts = m[1].split(SEP);
  const file = parts[0].trim();
  const names = parts.slice(1);
  if (!FILE_PATTERN.test(file)) return { ok: false, error: `"${file}" is not a test source path (like test/e2e/x.test.ts)` };
  if (names.length === 0) return { ok: false, error: 'the Test cell names a file but no test in it' };
  if (names.some((n) => n.trim() === '' || n !== n.trim())) return { ok: false, error: 'a test name in the Test cell is empty or has stray spaces' };
  return { ok: true, file, names };
}

/**
 * Reads the matrix: every table row under a header that has the columns ID, Statement (or, in the
 * Wine matrix, Check), Test and Status (and optionally Reason, and Wine function). Returns
 * { rows, problems } where each row is
 * { line, section, id, statement, behaviour, wine, test, status, reason }.
 */
export function parseMatrix(text) {
  const rows = [];
  const problems = [];
  let header = null;
  let section = '';
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const heading = /^#{1,6}\s+(.*)$/.exec(line);
    if (heading) {
      section = heading[1];
      header = null;
      return;
    }
    if (!line.startsWith('|')) {
      header = null;
      return;
    }
    const c = cells(line);
    if (c.every((x) => /^:?-{3,}:?$/.test(x))) return; // the separator under a header
    if (!header) {
      const lower = c.map((x) => x.toLowerCase());
      if (lower.includes('id') && lower.includes('test') && lower.includes('status')) {
        header = {
          id: lower.indexOf('id'),
          statement: lower.includes('statement') ? lower.indexOf('statement') : lower.indexOf('check'),
          wine: lower.indexOf('wine function'),
          behaviour: lower.findIndex((x) => x.startsWith('spiwire')),
          test: lower.indexOf('test'),
          status: lower.indexOf('status'),
          reason: lower.indexOf('reason'),
          width: c.length,
        };
      }
      return; // a table that is not part of the matrix, or its header
    }
    if (c.length !== header.width) problems.push(`line ${i + 1}: ${c.length} cells where the header has ${header.width}`);
    const at = (k) => (header[k] >= 0 ? (c[header[k]] ?? '') : '');
    rows.push({
      line: i + 1,
      section,
      id: at('id').replace(/`/g, ''),
      statement: at('statement'),
      behaviour: at('behaviour'),
      wine: at('wine'),
      test: at('test'),
      status: at('status').replace(/\*/g, '').trim(),
      reason: at('reason'),
    });
  });
  return { rows, problems };
}

/** Undoes tap's escaping of test names ("\#" for "#", "\\" for "\"). */
function unescapeName(s) {
  return s.replace(/\\([\\#])/g, '$1');
}

/** Maps a compiled test path back to its source: "A/dist/B.js" -> "A/B.ts". */
export function sourceOf(path) {
  const p = path.replace(/^\.\//, '');
  const m = /^(.*?)\/?dist\/(.*)\.(?:m|c)?js$/.exec(p);
  return m ? `${m[1] ? `${m[1]}/` : ''}${m[2]}.ts` : p;
}

/**
 * Parses a tap "-R tap" stream into a Map from the path key (FILE › NAME › ...) to the list of
 * results seen for it: { ok, directive: '' | 'SKIP' | 'TODO', reason }.
 * Also returns the set of source files that appear as top-level subtests.
 */
export function parseTap(text) {
  const results = new Map();
  const files = new Set();
  const open = []; // open[level] = the name announced by "# Subtest:" at that level
  let yamlIndent = -1; // inside a YAML diagnostic block opened at this indentation
  for (const raw of text.split(/\r?\n/)) {
    if (yamlIndent >= 0) {
      const ind = raw.length - raw.trimStart().length;
      if (raw.trim() === '...' && ind === yamlIndent) yamlIndent = -1;
      continue;
    }
    const lead = /^( *)/.exec(raw)[1].length;
    const body = raw.slice(lead);
    if (body === '---' && lead % 4 === 2) {
      yamlIndent = lead;
      continue;
    }
    if (lead % 4 !== 0) continue;
    const level = lead / 4;
    const sub = /^# Subtest: (.*)$/.exec(body);
    if (sub) {
      open.length = level;
      open[level] = unescapeName(sub[1]);
      continue;
    }
    const res = /^(not )?ok \d+(?: - (.*))?$/.exec(body);
    if (!res) continue;
    let rest = res[2] ?? '';
    let directive = '';
    let reason = '';
    const cut = rest.indexOf(' # ');
    if (cut >= 0) {
      const tail = rest.slice(cut + 3);
      rest = rest.slice(0, cut);
      const d = /^(SKIP|TODO)\b\s*(.*)$/i.exec(tail);
      if (d) {
        directive = d[1].toUpperCase();
        reason = d[2];
      }
    }
    const name = unescapeName(rest);
    let path;
    if (open.length > level && open[level] === name) {
      // The result line of the subtest announced at this level.
      path = open.slice(0, level + 1);
      open.length = level;
    } else if (directive && open.length >= level) {
      // A skipped or todo subtest: tap prints its result line only.
      path = [...open.slice(0, level), name];
    } else continue; // an assertion
    if ([...path].includes(undefined)) continue; // a block whose parents were never announced
    if (level === 0) {
      path = [sourceOf(name)];
      files.add(path[0]);
    } else path[0] = sourceOf(path[0]);
    const key = path.join(SEP);
    if (!results.has(key)) results.set(key, []);
    results.get(key).push({ ok: !res[1], directive, reason });
  }
  return { results, files };
}

/** True when this process runs as root (privileged tests are expected to run, not skip). */
export function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Checks every row against the TAP results. Returns { failures: [{ row, why }], counts, notRun }.
 * options: { partial: boolean, root: boolean }
 */
export function check(matrixText, tapText, options = {}) {
  const { partial = false, root = isRoot() } = options;
  const { rows, problems } = parseMatrix(matrixText);
  const { results, files } = parseTap(tapText);
  const failures = problems.map((p) => ({ row: null, why: p }));
  const counts = Object.fromEntries(STATUSES.map((st) => [st, 0]));
  const notRun = [];
  const seen = new Map();
  /** The tests the rows name, for the check that every Wine case has a row. */
  const named = new Set();
  for (const row of rows) {
    const label = `${row.id || '(no id)'} (line ${row.line})`;
    const fail = (why) => failures.push({ row, why: `${label}: ${why}` });
    if (!row.id) fail('no ID');
    else if (seen.has(row.id)) fail(`ID also used on line ${seen.get(row.id)}`);
    else seen.set(row.id, row.line);
    if (!STATUSES.includes(row.status)) {
      fail(`unknown status "${row.status}" (use ${STATUSES.map((s) => `"${s}"`).join(', ')})`);
      continue;
    }
    counts[row.status]++;
    const cell = parseTestCell(row.test);
    if (cell && !cell.ok) {
      fail(cell.error);
      continue;
    }
    if (cell) named.add([cell.file, ...cell.names].join(SEP));
    const hasReason = row.reason.replace(/[—\-\s]/g, '') !== '';
    if (row.status === 'open') {
      if (!hasReason) fail('open without a written reason');
      continue;
    }
    if (row.status === 'not applicable') {
      if (!hasReason) fail('not applicable without a written reason');
      if (cell) fail('not applicable, yet it names a test');
      continue;
    }
    if (row.status === 'open (todo)' && !hasReason) fail('open (todo) without a written reason');
    if (!cell) {
      fail(`status "${row.status}" but no test named`);
      continue;
    }
    const key = [cell.file, ...cell.names].join(SEP);
    const got = results.get(key);
    if (!got) {
      if (!files.has(cell.file)) {
        if (partial) {
          notRun.push(row);
          continue;
        }
        fail(`its test file did not run: ${cell.file}`);
      } else fail(`no such test in the TAP output: ${key}`);
      continue;
    }
    if (row.status === 'open (todo)') {
      // "not ok # TODO" counts as a todo too: the failures of a todo case are not the run's.
      if (!got.some((r) => r.directive === 'TODO')) fail(`not marked TODO in the TAP output (the departure is gone: make the row "pass"): ${key}`);
      else if (got.some((r) => r.directive !== 'TODO')) fail(`reported both as TODO and not: ${key}`);
      continue;
    }
    const bad = got.find((r) => !r.ok);
    const skipped = got.find((r) => r.ok && r.directive === 'SKIP');
    const todo = got.find((r) => r.ok && r.directive === 'TODO');
    if (bad) fail(`not ok: ${key}`);
    else if (todo) fail(`marked TODO, not a pass: ${key}`);
    else if (skipped) {
      if (row.status === 'pass (root)' && !root) continue;
      fail(`skipped (${skipped.reason || 'no reason given'}), not a pass${row.status === 'pass (root)' ? ' (this run is root, so it must run)' : ''}: ${key}`);
    }
  }
  // Every case of the Wine port that ran has a row (a new case needs its row in the matrix).
  for (const key of results.keys()) {
    const parts = key.split(SEP);
    if (parts.length === 2 && parts[0].startsWith(WINE_DIR) && !named.has(key)) failures.push({ row: null, why: `a Wine case without a row in the matrix: ${key}` });
  }
  return { rows, failures, counts, notRun };
}

function main(argv) {
  let tapPath = resolve(ROOT, '.tap/results.tap');
  let matrixPath = resolve(ROOT, 'docs/conformance.md');
  let partial = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--tap') tapPath = resolve(argv[++i]);
    else if (a === '--matrix') matrixPath = resolve(argv[++i]);
    else if (a === '--partial') partial = true;
    else {
      process.stderr.write(`check-conformance: unknown argument ${a}\n`);
      return 2;
    }
  }
  let matrixText;
  let tapText;
  try {
    matrixText = readFileSync(matrixPath, 'utf8');
    tapText = readFileSync(tapPath, 'utf8');
  } catch (err) {
    process.stdout.write(`conformance: FAILED: ${err.message}\n`);
    return 1;
  }
  let outcome;
  try {
    outcome = check(matrixText, tapText, { partial });
  } catch (err) {
    process.stdout.write(`conformance: FAILED: ${err.stack ?? err}\n`);
    return 1;
  }
  const { rows, failures, counts, notRun } = outcome;
  for (const f of failures) process.stdout.write(`conformance: FAIL ${f.why}\n`);
  const summary = `${rows.length} rows (${counts.pass} pass, ${counts['pass (root)']} pass (root), ${counts.open} open, ${counts['open (todo)']} open (todo), ${counts['not applicable']} not applicable)`;
  const extra = notRun.length ? `, ${notRun.length} not run in this partial run` : '';
  if (failures.length) {
    process.stdout.write(`conformance: FAILED: ${failures.length} failing row(s) of ${summary}${extra}\n`);
    return 1;
  }
  process.stdout.write(`conformance: ok: ${summary}${extra}; every non-open row's test passed\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
