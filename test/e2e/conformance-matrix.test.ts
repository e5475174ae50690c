/**
 * The conformance matrix (docs/conformance.md), checked statically and fast: every row has a
 * unique ID and a known status, every Test cell is well formed and names a test file that exists
 * and subtests its source declares, and every open row says why. That catches a typo when one file
 * is run on its own; `npm test` then checks, from the TAP output of the whole run, that each named
 * test really ran and passed (scripts/check-conformance.mjs, which this test also uses to parse).
 * The second matrix, "Wine conformance tests" (IDs WINE-...), is checked the same way, with its
 * own columns (Wine function, Check) and statuses ("open (todo)", "not applicable").
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = new URL('../../../', import.meta.url);
const rootPath = (p: string): string => fileURLToPath(new URL(p, ROOT));

interface Row {
  line: number;
  section: string;
  id: string;
  statement: string;
  behaviour: string;
  wine: string;
  test: string;
  status: string;
  reason: string;
}
type TestCell = { ok: true; file: string; names: string[] } | { ok: false; error: string } | null;
interface Checker {
  SEP: string;
  STATUSES: string[];
  parseMatrix(text: string): { rows: Row[]; problems: string[] };
  parseTestCell(cell: string): TestCell;
  check(matrix: string, tap: string, options?: { partial?: boolean; root?: boolean }): { failures: { why: string }[] };
}

// A computed specifier: the checker is a plain .mjs script outside the TypeScript projects.
const checkerUrl = new URL('scripts/check-conformance.mjs', ROOT).href;
const checker = (await import(checkerUrl)) as Checker;

const matrix = readFileSync(rootPath('docs/conformance.md'), 'utf8');
const { rows, problems } = checker.parseMatrix(matrix);
const label = (r: Row): string => `${r.id || '(no id)'} (docs/conformance.md:${r.line})`;

/** The sources named by Test cells, read once. */
const sources = new Map<string, string | null>();
function source(file: string): string | null {
  if (!sources.has(file)) sources.set(file, existsSync(rootPath(file)) ? readFileSync(rootPath(file), 'utf8') : null);
  return sources.get(file)!;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The test names a source builds from template literals (`t.test(`...`, ...)`, and in the Wine
 * port `x.step(t, `...`, ...)` and `wineCase(t, `...`, ...)`), as anchored patterns.
 */
const templateCache = new Map<string, RegExp[]>();
function templates(src: string): RegExp[] {
  let found = templateCache.get(src);
  if (!found) {
    found = [];
    for (const m of src.matchAll(/(?:\bt\.test|\.step|\bwineCase)\(\s*(?:t\s*,\s*)?`((?:[^`\\]|\\.)*)`/g)) {
      const body = m[1]!;
      if (!body.includes('${')) continue;
      const parts = body.split(/\$\{[^}]*\}/).map((p) => escapeRegExp(p.replace(/\\(.)/g, '$1')));
      found.push(new RegExp(`^${parts.join('.+?')}$`));
    }
    templateCache.set(src, found);
  }
  return found;
}

/**
 * Whether the source declares a test named `name`: the name literally (as written, or with quote
 * escapes undone); a name matching a template literal given to t.test; a name built from a
 * `${f}: ...` template, by the part after "ipv4: " or "ipv6: "; or a bare family name for
 * `t.test(f, ...)`.
 */
function declares(src: string, name: string): boolean {
  if (src.includes(name)) return true;
  if (src.replace(/\\(['"`\\])/g, '$1').includes(name)) return true;
  if (templates(src).some((re) => re.test(name))) return true;
  const fam = /^ipv[46]: (.+)$/.exec(name);
  if (fam && src.includes(`}: ${fam[1]!}`)) return true;
  return (name === 'ipv4' || name === 'ipv6') && /t\.test\(\s*f\s*,/.test(src);
}

t.test('the matrix parses: tables of one width, a good number of rows', async (t) => {
  t.same(problems, [], 'no malformed table rows');
  t.ok(rows.length >= 100, `${rows.length} rows`);
  for (const prefix of ['P-', 'RV-', 'F-', 'E-', 'R-', 'W-', 'C-', 'WINE-']) t.ok(rows.some((r) => r.id.startsWith(prefix)), `rows with IDs ${prefix}...`);
});

t.test('IDs are well formed and unique; statuses are known', async (t) => {
  const seen = new Map<string, number>();
  for (const r of rows) {
    const wine = r.id.startsWith('WINE-');
    t.match(r.id, wine ? /^WINE-[A-Za-z0-9_]+-[1-9][0-9]*$/ : /^(P|RV|F|E|R|W|C)-[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*$/, `${label(r)}: ID form`);
    if (seen.has(r.id)) t.fail(`${label(r)}: ID already used on line ${seen.get(r.id)}`);
    seen.set(r.id, r.line);
    t.ok(checker.STATUSES.includes(r.status), `${label(r)}: status "${r.status}" is one of ${checker.STATUSES.join(', ')}`);
    if (wine) {
      // The Wine matrix: the function and the check; its statuses are its own.
      t.not(r.wine.trim(), '', `${label(r)}: names the Wine function`);
      t.not(r.statement.trim(), '', `${label(r)}: says what is checked`);
      t.ok(['pass', 'open (todo)', 'not applicable'].includes(r.status), `${label(r)}: a status of the Wine matrix`);
    } else {
      t.not(r.statement.trim(), '', `${label(r)}: has a statement`);
      t.not(r.behaviour.trim(), '', `${label(r)}: says what spiwire does`);
      t.ok(['pass', 'pass (root)', 'open'].includes(r.status), `${label(r)}: a status of the first matrix`);
    }
  }
  t.equal(seen.size, rows.length, `${rows.length} distinct IDs`);
});

t.test('every open row has a written reason; every other row names a test', async (t) => {
  const reasoned = (r: Row): boolean => r.reason.replace(/[—\-\s]/g, '').length > 10;
  for (const r of rows) {
    if (r.status === 'open') t.ok(reasoned(r), `${label(r)}: open, with a reason`);
    else if (r.status === 'not applicable') {
      t.ok(reasoned(r), `${label(r)}: not applicable, with a reason`);
      t.equal(checker.parseTestCell(r.test), null, `${label(r)}: not applicable, so no test`);
    } else {
      if (r.status === 'open (todo)') t.ok(reasoned(r), `${label(r)}: open (todo), with a reason`);
      t.ok(checker.parseTestCell(r.test), `${label(r)}: ${r.status}, with a test`);
    }
  }
});

t.test('a Wine row names a case of the Wine port, named after its Wine function', async (t) => {
  for (const r of rows) {
    if (!r.id.startsWith('WINE-')) continue;
    const cell = checker.parseTestCell(r.test);
    if (!cell || !cell.ok) continue;
    t.match(cell.file, /^test\/conformance\/wine\//, `${label(r)}: a file of the port`);
    t.equal(cell.names.length, 1, `${label(r)}: one case, no deeper subtest`);
    // "do_test (simple_server ...)": the function is the first word.
    const fn = r.wine.trim().split(/[\s,]+/)[0]!;
    t.ok(cell.names[0]!.startsWith(`${fn}:`) || cell.names[0]!.startsWith(`${fn} `), `${label(r)}: the case's name starts with ${fn}`);
    t.ok(r.id.startsWith(`WINE-${fn.replace(/^test_/, '')}-`), `${label(r)}: the ID is named after ${fn}`);
  }
});

t.test("every Test cell is well formed and names a test its file declares", async (t) => {
  for (const r of rows) {
    const cell = checker.parseTestCell(r.test);
    if (cell === null) continue;
    if (!cell.ok) {
      t.fail(`${label(r)}: ${cell.error}`);
      continue;
    }
    const src = source(cell.file);
    if (src === null) {
      t.fail(`${label(r)}: ${cell.file} does not exist`);
      continue;
    }
    for (const name of cell.names) t.ok(declares(src, name), `${label(r)}: ${cell.file} declares "${name}"`);
  }
});

t.test('every statement group is covered', async (t) => {
  const ids = new Set(rows.map((r) => r.id));
  const has = (prefix: string): boolean => [...ids].some((id) => id === prefix || id.startsWith(`${prefix}-`) || new RegExp(`^${escapeRegExp(prefix)}[a-z]$`).test(id));
  for (const p of ['s', 'lpBuffers', 'dwBufferCount', 'lpNumberOfBytesSent', 'dwFlags', 'lpOverlapped', 'lpCompletionRoutine', 'lpThreadId', 'lpErrno']) t.ok(has(`P-${p}`), `parameter ${p}`);
  for (const f of ['MSG_DONTROUTE', 'MSG_OOB', 'MSG_PARTIAL']) t.ok(has(`F-${f}`), `flag ${f}`);
  // The error table of the LPWSPSEND page, in its order, and WSA_IO_PENDING from its return value.
  for (const e of [
    'WSAENETDOWN', 'WSAEACCES', 'WSAEINPROGRESS', 'WSAEFAULT', 'WSAENETRESET', 'WSAENOBUFS', 'WSAENOTCONN', 'WSAENOTSOCK',
    'WSAEOPNOTSUPP', 'WSAESHUTDOWN', 'WSAEWOULDBLOCK', 'WSAEMSGSIZE', 'WSAEINVAL', 'WSAECONNABORTED', 'WSAECONNRESET',
    'WSA_OPERATION_ABORTED', 'WSA_IO_PENDING',
  ]) t.ok(has(`E-${e}`), `error code ${e}`);
  // winsock.md, "What real Windows does that the reference page does not say": rules 1 to 12.
  for (let n = 1; n <= 12; n++) t.ok(has(`W-${n}`), `observed Windows behaviour ${n}`);
});

t.test('the checker applies the Wine matrix statuses to a TAP run', async (t) => {
  // A miniature run and matrix: one passing case, one todo case, one case without a row.
  const tap = [
    '# Subtest: test/dist/conformance/wine/x.test.js',
    '    # Subtest: test_a: passes',
    '        ok 1 - fine',
    '        1..1',
    '    ok 1 - test_a: passes',
    '    # Subtest: test_a: departs',
    '        not ok 1 - differs # TODO Windows: 1; spiwire: 2',
    '        1..1',
    '    ok 2 - test_a: departs # TODO Windows: 1; spiwire: 2',
    '    # Subtest: test_a: unlisted',
    '        1..0',
    '    ok 3 - test_a: unlisted',
    '    1..3',
    'ok 1 - test/dist/conformance/wine/x.test.js',
    '1..1',
    '',
  ].join('\n');
  const file = 'test/conformance/wine/x.test.ts';
  const row = (id: string, check: string, test: string, status: string, reason: string): string =>
    `| ${id} | test_a | ${check} | ${test ? `\`${file}${checker.SEP}${test}\`` : '—'} | ${status} | ${reason} |`;
  const matrix = (...rowLines: string[]): string =>
    ['## Wine', '', '| ID | Wine function | Check | Test | Status | Reason |', '|---|---|---|---|---|---|', ...rowLines, ''].join('\n');
  const pass = row('WINE-a-1', 'passes', 'test_a: passes', 'pass', '');
  const todo = row('WINE-a-2', 'departs', 'test_a: departs', 'open (todo)', 'Windows: 1; spiwire: 2');
  const unlisted = row('WINE-a-3', 'unlisted', 'test_a: unlisted', 'pass', '');
  const na = row('WINE-a-4', 'select', '', 'not applicable', 'select has no SPI equivalent');
  const whys = (m: string): string[] => checker.check(m, tap, { root: false }).failures.map((f) => f.why);

  t.same(whys(matrix(pass, todo, unlisted, na)), [], 'every case has its row, and each row holds');
  const missing = whys(matrix(pass, todo, na));
  t.equal(missing.length, 1, 'a case without a row fails');
  t.match(missing[0], /a Wine case without a row in the matrix: test\/conformance\/wine\/x\.test\.ts › test_a: unlisted/);
  t.match(whys(matrix(row('WINE-a-1', 'passes', 'test_a: passes', 'open (todo)', 'Windows: 1; spiwire: 2'), todo, unlisted, na)).join('\n'),
    /not marked TODO/, 'an open (todo) row whose case passes without TODO fails: the departure is gone');
  t.not(whys(matrix(pass, row('WINE-a-2', 'departs', 'test_a: departs', 'pass', ''), unlisted, na)).length, 0, 'a todo case is not a pass');
  t.match(whys(matrix(pass, row('WINE-a-2', 'departs', 'test_a: departs', 'open (todo)', ''), unlisted, na)).join('\n'),
    /open \(todo\) without a written reason/, 'an open (todo) row needs a reason');
  t.match(whys(matrix(pass, todo, unlisted, row('WINE-a-4', 'select', '', 'not applicable', ''))).join('\n'),
    /not applicable without a written reason/, 'a not applicable row needs a reason');
  t.match(whys(matrix(pass, todo, unlisted, row('WINE-a-4', 'select', 'test_a: passes', 'not applicable', 'why'))).join('\n'),
    /not applicable, yet it names a test/, 'a not applicable row names no test');
});
