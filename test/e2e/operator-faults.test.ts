/**
 * The operator's fault rules over real sockets (docs/faults.md, "For operators"): rules added over
 * HTTP reach sessions already open and connected; a rule for one session touches no other; hit
 * counts, removal and reset; the refusals of the API; the --faults file at startup, its SIGHUP
 * reload and its errors; and the `spiwire faults` command against a real daemon process.
 */
import t, { type Test } from 'tap';
import * as http from 'node:http';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as S from '@spiwire/client';
import { closedPort, connectedTcp, daemon, peerEnding, send, session, tcpPeer } from '../helpers/harness.js';

const MAIN = fileURLToPath(new URL('../../../server/dist/src/main.js', import.meta.url));
const TOKEN = 'operator-secret';

/** The environment without SPIWIRE_* settings, so that only what a test gives counts. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SPIWIRE_')) env[k] = v;
  return { ...env, ...extra };
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-opfaults-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface HttpAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** An HTTP request to the daemon; the token is TOKEN unless given (null: none). */
async function api(port: number, method: string, path: string, opts: { token?: string | null; body?: string } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, ...(opts.body === undefined ? {} : { body: opts.body }) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

const addRule = (port: number, rule: unknown): Promise<HttpAnswer> => api(port, 'POST', '/faults', { body: JSON.stringify(rule) });

async function listing(port: number): Promise<S.FaultsListing> {
  const a = await api(port, 'GET', '/faults');
  if (a.status !== 200) throw new Error(`GET /faults: ${a.status}`);
  return a.body as unknown as S.FaultsListing;
}

t.test('a rule added over HTTP reaches a session already connected: WSAECONNRESET, and the peer sees the reset', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  const spi = await session(t, d, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('before')]), [0, 0, 6], 'a send before any rule');
  await conn.waitFor(6);
  const added = await addRule(d.port, { match: { functions: ['WSPSend'] }, action: { type: 'error', code: S.WSAECONNRESET }, times: 1 });
  t.same(added, { status: 201, body: { id: 'op-1' } }, '201 with the id');
  const ending = peerEnding(conn);
  const [ret, errno] = await send(spi, s, [Buffer.from('after')]);
  t.same([ret, errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the next send fails with WSAECONNRESET');
  t.equal(await ending, 'reset', 'the peer sees RST');
  t.equal(conn.received().toString(), 'before', 'and nothing after the fault');
  const l = await listing(d.port);
  t.same(l.rules.map((r) => [r.id, r.session, r.source, r.hits]), [['op-1', null, 'api', 1]], 'GET /faults counts the hit');
});

t.test('a rule for one session: a short count there, whole sends elsewhere; notify tells that session', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  const a = await session(t, d, { token: TOKEN });
  const b = await session(t, d, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4');
  const ca = await connectedTcp(a, 'ipv4', peer);
  const cb = await connectedTcp(b, 'ipv4', peer);
  const sessionA = a.welcome.session;
  t.type(sessionA, 'string');
  const added = await addRule(d.port, { session: sessionA, id: 'slicer', match: {}, action: { type: 'short', max: 3 }, notify: true });
  t.equal(added.status, 201);
  const applied: S.FaultApplied[] = [];
  a.faults.onApplied((x) => applied.push(x));
  t.same(await send(a, ca.s, [Buffer.from('hello')]), [0, 0, 3], 'session A: 3 of 5 bytes taken');
  t.same(applied, [{ id: 'slicer', s: ca.s, function: 'WSPSend', action: 'short' }], 'A was told, before the reply');
  t.same(await send(a, ca.s, [Buffer.from('lo')]), [0, 0, 2], 'the rest');
  t.equal((await ca.conn.waitFor(5)).toString(), 'hello', "A's peer got exactly hel + lo");
  t.same(await send(b, cb.s, [Buffer.from('world')]), [0, 0, 5], 'session B: the whole send');
  t.equal((await cb.conn.waitFor(5)).toString(), 'world');
  const l = await listing(d.port);
  t.same(l.rules.map((r) => [r.id, r.session, r.hits]), [['slicer', sessionA, 2]]);
});

t.test('list, delete and reset: operator rules go, sessions keep their own', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  const spi = await session(t, d, { token: TOKEN });
  await spi.faults.add({ id: 'own', match: { nth: 9 }, action: { type: 'short', max: 1 } });
  for (let i = 0; i < 3; i++) t.equal((await addRule(d.port, { match: { nth: 9 }, action: { type: 'short', max: 1 } })).status, 201);
  t.equal((await addRule(d.port, { session: spi.welcome.session, match: { nth: 9 }, action: { type: 'short', max: 1 } })).status, 201);
  let l = await listing(d.port);
  t.same(l.rules.map((r) => r.id), ['op-1', 'op-2', 'op-3', 'op-4']);
  t.same(l.sessions, [{ session: spi.welcome.session, rules: [{ id: 'own', match: { nth: 9 }, action: { type: 'short', max: 1 }, seed: 1, hits: 0 }] }], "each session's own rules, with its id");
  t.equal((await api(d.port, 'DELETE', '/faults/op-2')).status, 204, 'DELETE: 204');
  t.same(await api(d.port, 'POST', `/faults/reset?session=${spi.welcome.session}`), { status: 200, body: { removed: 1 } }, "reset of one session's rules");
  t.same(await api(d.port, 'POST', '/faults/reset'), { status: 200, body: { removed: 2 } }, 'reset of all');
  l = await listing(d.port);
  t.same(l.rules, []);
  t.same(await spi.faults.list().then((r) => r.map((x) => x.id)), ['own'], "the session's own rule stays");
});

t.test('the refusals: 401, 403, 400 with the field, 404, 409, 413, 415', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  const rule = JSON.stringify({ match: {}, action: { type: 'short', max: 1 } });
  t.equal((await api(d.port, 'GET', '/faults', { token: null })).status, 401, 'no token');
  t.equal((await api(d.port, 'POST', '/faults', { token: 'wrong', body: rule })).status, 401, 'a wrong token');
  t.equal((await api(d.port, 'POST', '/faults', { token: 'wrong', body: '{bad' })).status, 401, 'the token is checked before the body');
  const bad = await api(d.port, 'POST', '/faults', { body: '{bad' });
  t.equal(bad.status, 400, 'bad JSON');
  t.equal(bad.body['field'], '');
  // JSON with a __proto__ or constructor member is JSON: the member is refused by name, as an
  // unknown field, the way spiwire.faults.add and the --faults file name it.
  const proto = await api(d.port, 'POST', '/faults', { body: '{"__proto__":{},"match":{},"action":{"type":"short","max":1}}' });
  t.same([proto.status, proto.body['field']], [400, '__proto__'], 'a __proto__ member: 400 naming it');
  const ctor = await api(d.port, 'POST', '/faults', { body: '{"match":{"constructor":{"prototype":{}}},"action":{"type":"short","max":1}}' });
  t.same([ctor.status, ctor.body['field']], [400, 'match.constructor'], 'a constructor member: 400 naming it');
  t.same(await addRule(d.port, { match: {}, action: { type: 'error', code: S.WSAEFAULT } }).then((a) => [a.status, a.body['field']]), [400, 'action.code'], 'a code WSPSend cannot fail with');
  t.same(await addRule(d.port, { match: { socket: 256 }, action: { type: 'short', max: 1 } }).then((a) => [a.status, a.body['field']]), [400, 'match.socket'], 'a socket without a session');
  t.same(await addRule(d.port, { session: 'no-such-session', match: {}, action: { type: 'short', max: 1 } }).then((a) => [a.status, a.body['field']]), [404, 'session'], 'an unknown session');
  t.equal((await api(d.port, 'DELETE', '/faults/op-9')).status, 404, 'DELETE of an unknown id');
  t.equal((await api(d.port, 'POST', '/faults/reset?session=nobody')).status, 404, 'reset of an unknown session');
  t.equal((await addRule(d.port, { id: 'x', match: {}, action: { type: 'short', max: 1 } })).status, 201);
  t.same(await addRule(d.port, { id: 'x', match: {}, action: { type: 'short', max: 1 } }).then((a) => [a.status, a.body['field']]), [409, 'id'], 'a repeated id');
  const big = await api(d.port, 'POST', '/faults', { body: JSON.stringify({ id: 'y', match: {}, action: { type: 'short', max: 1 }, pad: 'x'.repeat(S.MAX_OPERATOR_FAULT_BODY) }) });
  t.equal(big.status, 413, 'a body over the limit');
  const typed = async (contentType: string, body: string, method = 'POST', path = '/faults'): Promise<HttpAnswer> => {
    const res = await fetch(`http://127.0.0.1:${d.port}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType }, body });
    const text = await res.text();
    return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
  };
  for (const type of ['text/plain', 'application/vnd.api+json']) {
    const a = await typed(type, rule);
    t.same([a.status, a.body['error']], [415, 'a rule is sent as application/json'], `a rule sent as ${type}: 415`);
  }
  const malformed = await typed('foo', 'x', 'DELETE', '/faults/x');
  t.same([malformed.status, malformed.body['field']], [400, ''], 'DELETE with a Content-Type that does not parse: 400');
  t.equal((await typed('application/json', '', 'DELETE', '/faults/x')).status, 204, 'DELETE labelled application/json with an empty body removes the rule');
  t.equal((await addRule(d.port, { id: 'x', match: {}, action: { type: 'short', max: 1 } })).status, 201);
  const typo = await api(d.port, 'POST', '/faults/reset?sesion=abc');
  t.same([typo.status, typo.body['field']], [400, 'sesion'], 'reset with a misspelt parameter: 400 naming it');
  t.same((await listing(d.port)).rules.map((r) => r.id), ['x'], 'and nothing was removed');
  // An action with no meaning for the socket named: as a session's own rules are checked.
  const spi = await session(t, d.url, { token: TOKEN });
  const e = S.out(0);
  const udp = await spi.WSPSocket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, 0, e);
  const tcp = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
  const sessionId = spi.welcome.session;
  for (const [s, action] of [
    [udp, { type: 'break', at: 10, code: S.WSAECONNRESET }],
    [udp, { type: 'link', bytesPerSecond: 1000 }],
    [udp, { type: 'block', ms: 100 }],
    [tcp, { type: 'drop' }],
    [tcp, { type: 'duplicate' }],
  ] as const) {
    const a = await addRule(d.port, { session: sessionId, match: { socket: s }, action });
    t.same([a.status, a.body['field']], [400, 'action.type'], `${action.type} on the ${s === udp ? 'UDP' : 'TCP'} socket named: 400`);
  }

  const open = await daemon(t);
  const off = await api(open.port, 'GET', '/faults', { token: null });
  t.equal(off.status, 403, 'a daemon without a token: 403');
  t.match(off.body['error'], /--token/, 'saying how to turn it on');
  t.equal((await api(open.port, 'POST', '/faults', { token: null, body: rule })).status, 403);
});

// ---------------------------------------------------------------- the daemon as a process

interface DaemonProcess {
  proc: ChildProcess;
  port: number;
  url: string;
  /** Resolves with the next log line whose msg is msg. */
  nextLog(msg: string): Promise<Record<string, unknown>>;
}

async function daemonProcess(t: Test, args: string[]): Promise<DaemonProcess> {
  const proc = spawn(process.execPath, [MAIN, '--port', '0', '--token', TOKEN, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('close', () => r()));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  const lines: Array<Record<string, unknown>> = [];
  let waiters: Array<() => void> = [];
  let partial = '';
  proc.stdout!.on('data', (c: Buffer) => {
    partial += c.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as Record<string, unknown>);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  let seen = 0;
  const nextLog = (msg: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const look = (): void => {
        for (; seen < lines.length; seen++) {
          const l = lines[seen]!;
          if (l['msg'] === msg) {
            seen++;
            resolve(l);
            return;
          }
        }
        if (proc.exitCode !== null) reject(new Error(`the daemon exited before logging ${msg}`));
        else waiters.push(look);
      };
      look();
    });
  const started = await nextLog('fault rules loaded; SIGHUP reloads the file').catch(() => null);
  const url = lines.find((l) => typeof l['url'] === 'string')?.['url'];
  if (typeof url !== 'string') throw new Error(`the daemon did not start${started ? '' : ' (no fault file line)'}`);
  return { proc, port: Number(new URL(url).port), url, nextLog };
}

t.test('--faults FILE: loaded at startup, reloaded on SIGHUP, an invalid file keeps the old rules', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'faults.json');
  writeFileSync(file, JSON.stringify([{ match: { functions: ['WSPSend'] }, action: { type: 'short', max: 2 } }], null, 2));
  const d = await daemonProcess(t, ['--faults', file]);
  const l = await listing(d.port);
  t.same(l.rules.map((r) => [r.id, r.source, r.session]), [['file-0', 'file', null]], 'the file rule, as file-0');
  const spi = await session(t, d.url, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('abcdef')]), [0, 0, 2], 'the file rule applies: 2 bytes taken');
  await conn.waitFor(2);

  writeFileSync(file, JSON.stringify([{ id: 'nobufs', match: { functions: ['WSPSend'] }, action: { type: 'error', code: S.WSAENOBUFS } }]));
  let logged = d.nextLog('fault file reloaded');
  d.proc.kill('SIGHUP');
  t.match(await logged, { level: 30, rules: 1 }, 'the reload is logged');
  t.same((await send(spi, s, [Buffer.from('xyz')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOBUFS], 'the new rule applies to the open session');
  t.same((await listing(d.port)).rules.map((r) => [r.id, r.hits]), [['nobufs', 1]], 'the old rule is gone');

  writeFileSync(file, '[\n  {"match": {}, "action": {"type": "short", "max": 0}}\n]\n');
  logged = d.nextLog('fault file not reloaded; the previous rules stay');
  d.proc.kill('SIGHUP');
  const warn = await logged;
  t.equal(warn['level'], 40, 'a warning');
  t.equal(warn['problem'], `${file}:2:45: rules[0].action.max: must be an integer from 1 to 4294967295`, 'naming the line, the column and the field');
  t.same((await listing(d.port)).rules.map((r) => [r.id, r.hits]), [['nobufs', 1]], 'the previous rules stay');
  t.same((await send(spi, s, [Buffer.from('xyz')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOBUFS], 'and still apply');
  t.equal(conn.received().toString(), 'ab', 'the peer got only what was reported sent');
});

/** Runs the command to its end: its exit code and output. */
function run(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<{ code: number | null; out: string; err: string }> {
  const proc = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, out, err })));
}

t.test('--faults with a bad file: exit 2 naming the file, line, column and field', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'faults.json');
  writeFileSync(file, '[\n  {\n    "match": {},\n    "action": { "type": "error", "code": 10014 }\n  }\n]\n');
  const r = await run(['--port', '0', '--faults', file]);
  t.equal(r.code, 2, 'exit code 2');
  t.match(r.err, new RegExp(`^--faults: ${file.replace(/[.]/g, '\\.')}:4:34: rules\\[0\\]\\.action\\.code: WSAEFAULT \\(10014\\) is not a code WSPSend can fail with`), r.err);
  writeFileSync(file, '[\n  {"match": {}\n');
  const syntax = await run(['--port', '0', '--faults', file]);
  t.equal(syntax.code, 2);
  t.equal(syntax.err, `--faults: ${file}:3:1: the file ends inside an object (a } is missing)\n`, 'a JSON syntax error has its line and column too');
});

t.test('--faults, --token-file, --tls-cert naming a FIFO, a device or a huge file: refused at start, and on SIGHUP the old rules stay', async (t) => {
  const dir = tempDir(t);
  const fifo = join(dir, 'faults.fifo');
  execFileSync('mkfifo', [fifo]);
  const huge = join(dir, 'huge.json');
  // Valid JSON past the 1 MiB a configuration file may have.
  writeFileSync(huge, `[${' '.repeat(1024 * 1024)}]`);
  for (const [flag, path, why] of [
    ['--faults', fifo, 'not a regular file (a FIFO)'],
    ['--token-file', fifo, 'not a regular file (a FIFO)'],
    ['--faults', '/dev/zero', 'not a regular file (a device)'],
    ['--tls-cert', '/dev/zero', 'not a regular file (a device)'],
    ['--faults', huge, `${1024 * 1024 + 2} bytes, more than the 1048576 such a file may have`],
  ] as const) {
    const extra = flag === '--tls-cert' ? ['--tls-key', huge] : [];
    // Each would block the start (a FIFO without a writer) or fill memory (/dev/zero) if read.
    const r = await run(['--port', '0', flag, path, ...extra]);
    t.equal(r.code, 2, `${flag} ${path}: exit code 2`);
    t.match(r.err, why, `${flag} ${path}: says why (${r.err.trim()})`);
  }
  const file = join(dir, 'faults.json');
  writeFileSync(file, JSON.stringify([{ id: 'kept', match: { functions: ['WSPSend'] }, action: { type: 'short', max: 2 } }]));
  const d = await daemonProcess(t, ['--faults', file]);
  for (const [target, why] of [
    [fifo, 'not a regular file (a FIFO)'],
    ['/dev/zero', 'not a regular file (a device)'],
    [huge, 'more than the 1048576'],
  ] as const) {
    rmSync(file);
    symlinkSync(target, file);
    const logged = d.nextLog('fault file not reloaded; the previous rules stay');
    d.proc.kill('SIGHUP');
    const warn = await logged;
    t.equal(warn['level'], 40, `the file a symlink to ${target}: a warning`);
    t.match(String(warn['problem']), why, 'saying why');
    // The daemon still answers: the reload did not block it.
    t.same((await listing(d.port)).rules.map((r) => r.id), ['kept'], 'and the previous rules stay');
  }
});

t.test('spiwire faults add, list, rm, reset against a daemon process; the clear failures', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'faults.json');
  writeFileSync(file, '[]');
  const d = await daemonProcess(t, ['--faults', file]);
  const base = `http://127.0.0.1:${d.port}`;
  const cli = (...args: string[]): ReturnType<typeof run> => run(['faults', ...args, '--url', base, '--token', TOKEN]);

  const added = await cli('add', JSON.stringify({ match: { functions: ['WSPRecv'] }, action: { type: 'error', code: S.WSAECONNRESET } }));
  t.same([added.code, added.out, added.err], [0, 'op-1\n', ''], 'add prints the id');
  writeFileSync(join(dir, 'rule.json'), JSON.stringify({ id: 'from-file', match: {}, action: { type: 'delay', ms: 50 } }));
  const fromFile = await run(['faults', 'add', '--file', join(dir, 'rule.json'), '--json'], cleanEnv({ SPIWIRE_URL: d.url, SPIWIRE_TOKEN: TOKEN }));
  t.same([fromFile.code, JSON.parse(fromFile.out)], [0, { id: 'from-file' }], 'add --file, with the URL and token from the environment (a ws:// URL is taken)');

  const list = await cli('list', '--json');
  t.equal(list.code, 0);
  const parsed = JSON.parse(list.out) as S.FaultsListing;
  t.same(parsed.rules.map((r) => [r.id, r.source, r.hits]), [['op-1', 'api', 0], ['from-file', 'api', 0]], 'list --json');
  const table = await cli('list');
  t.match(table.out, /^ID\s+SESSION\s+SOURCE\s+FUNCTIONS\s+ACTION\s+HITS\nop-1\s+all\s+api\s+WSPRecv\s+error WSAECONNRESET \(10054\)\s+0\n/, 'list: a table');

  const badRule = await cli('add', JSON.stringify({ match: {}, action: { type: 'short', max: 0 } }));
  t.equal(badRule.code, 1);
  t.match(badRule.err, /^spiwire faults: the daemon refused the rule \(field action\.max\): /, 'a bad rule names the field');
  t.same(await cli('rm', 'op-1').then((r) => [r.code, r.out]), [0, 'removed op-1\n'], 'rm');
  t.match(await cli('rm', 'op-1').then((r) => [r.code, r.err]), [1, /no operator rule has the id "op-1"/], 'rm of an unknown id');
  t.same(await cli('reset').then((r) => [r.code, r.out]), [0, 'removed 1 operator rule\n'], 'reset');

  const wrong = await run(['faults', 'list', '--url', base, '--token', 'wrong'], cleanEnv());
  t.same([wrong.code, wrong.err], [1, 'spiwire faults: the daemon refused the token: give its token with --token or SPIWIRE_TOKEN\n'], 'a wrong token');
  const usage = await cli('frobnicate');
  t.equal(usage.code, 2, 'an unknown command: exit 2');

  const port = await closedPort('ipv4', 'tcp');
  const none = await run(['faults', 'list', '--url', `http://127.0.0.1:${port}`]);
  t.same([none.code, none.err], [1, `spiwire faults: cannot reach http://127.0.0.1:${port}: connection refused: is the daemon running? (start it with \`npm start\` or \`spiwire\`)\n`], 'nothing listening');

  const open = await daemon(t);
  const off = await run(['faults', 'list', '--url', `http://127.0.0.1:${open.port}`]);
  t.same([off.code, off.err], [1, 'spiwire faults: the daemon has no token, so its operator fault API is off: restart it with --token (or SPIWIRE_TOKEN)\n'], 'a daemon without a token');

  const other = http.createServer((_req, res) => res.writeHead(404).end('nope'));
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => other.close(() => r())));
  const otherPort = (other.address() as { port: number }).port;
  const notOurs = await run(['faults', 'list', '--url', `http://127.0.0.1:${otherPort}`]);
  t.same([notOurs.code, notOurs.err], [1, `spiwire faults: http://127.0.0.1:${otherPort} is not a spiwire daemon (GET /version did not name spiwire)\n`], 'not a spiwire daemon');
});
