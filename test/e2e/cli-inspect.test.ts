/**
 * `spiwire status`, `spiwire sessions` and `spiwire sockets` as child processes against a real
 * daemon with real sessions and sockets: the tables, --json, and the one-line errors (nothing
 * listening, a wrong token, a server that is not spiwire, an unknown session, a usage mistake).
 */
import t from 'tap';
import * as http from 'node:http';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as S from '@spiwire/client';
import { closedPort, connectedTcp, daemon, send, session, tcpPeer } from '../helpers/harness.js';

const MAIN = fileURLToPath(new URL('../../../server/dist/src/main.js', import.meta.url));
const TOKEN = 'cli-secret';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SPIWIRE_')) env[k] = v;
  return env;
}

function cli(args: string[]): Promise<Run> {
  const proc = spawn(process.execPath, [MAIN, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, out, err })));
}

t.test('status, sessions and sockets against a daemon with sessions and sockets', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  const url = `http://127.0.0.1:${d.port}`;
  const spi = await session(t, d, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  await send(spi, s, [Buffer.alloc(3000, 7)]);
  await conn.waitFor(3000);
  const base = ['--url', url, '--token', TOKEN];

  const status = await cli(['status', ...base]);
  t.equal(status.code, 0, status.err);
  t.match(status.out, new RegExp(`^spiwire \\S+ \\(protocol \\d+, node v[\\d.]+\\) at ${url}: ok\\n`));
  t.match(status.out, /sessions 1, sockets 1/);
  const statusJson = await cli(['status', ...base, '--json']);
  t.match(JSON.parse(statusJson.out), { url, version: { name: 'spiwire' }, health: { status: 'ok' }, stats: { sessions: 1, sockets: 1 } });

  const sessions = await cli(['sessions', ...base]);
  t.equal(sessions.code, 0, sessions.err);
  const lines = sessions.out.trim().split('\n');
  t.match(lines[0], /^SESSION\s+PEER\s+AGE\s+SOCKETS\s+PENDING\s+SENT\s+RECEIVED\s+HELD\s+UNSENT$/);
  t.equal(lines.length, 2, 'one session row');
  const sessionsJson = await cli(['sessions', ...base, '--json']);
  const listing: unknown = JSON.parse(sessionsJson.out);
  t.ok(S.isSessionsListing(listing));
  if (!S.isSessionsListing(listing)) return;
  const id = listing.sessions[0]!.id;
  t.match(lines[1], new RegExp(`^${id}\\s+127\\.0\\.0\\.1:\\d+\\s+\\d+s\\s+1\\s+0\\s+3000\\s+0\\s+0\\s+0$`));

  const sockets = await cli(['sockets', id, ...base]);
  t.equal(sockets.code, 0, sockets.err);
  const rows = sockets.out.trim().split('\n');
  t.match(rows[0], /^HANDLE\s+TYPE\s+STATE\s+LOCAL\s+REMOTE/);
  t.match(rows[1], new RegExp(`^0x${s.toString(16)}\\s+tcp/ipv4\\s+connected\\s+127\\.0\\.0\\.1:\\d+\\s+127\\.0\\.0\\.1:${peer.port}\\s`));
  const socketsJson = await cli(['sockets', id, ...base, '--json']);
  t.match(JSON.parse(socketsJson.out), { session: id, sockets: [{ handle: s, state: 'connected', bytesSent: 3000 }] });

  const unknown = await cli(['sockets', 'nope', ...base]);
  t.equal(unknown.code, 1);
  t.equal(unknown.err, 'spiwire sockets: no open session has the id "nope" (spiwire sessions lists them)\n');

  const wrong = await cli(['sessions', '--url', url, '--token', 'wrong']);
  t.equal(wrong.code, 1);
  t.equal(wrong.err, 'spiwire sessions: the daemon refused the token: give its token with --token or SPIWIRE_TOKEN\n');
  const missing = await cli(['status', '--url', url]);
  t.equal(missing.code, 1);
  t.match(missing.err, /^spiwire status: the daemon refused the token/);
});

t.test('a daemon without a token answers without one; an empty daemon says so', async (t) => {
  const d = await daemon(t);
  const r = await cli(['sessions', '--url', d.url]);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, 'no sessions\n', 'the ws:// URL the daemon prints is taken too');
});

t.test('a listing longer than a page: the command reads every page', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const e = S.out(0);
  const handles: number[] = [];
  for (let i = 0; i < S.INSPECTION_PAGE_MAX + 5; i++) handles.push(await spi.WSPSocket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, 0, e));
  const sessions = await cli(['sessions', '--url', d.url, '--json']);
  const listing: unknown = JSON.parse(sessions.out);
  if (!S.isSessionsListing(listing)) return t.fail('a session list');
  const id = listing.sessions[0]!.id;
  t.equal(listing.sessions[0]!.sockets, handles.length, 'the session counts every socket');
  const json = await cli(['sockets', id, '--url', d.url, '--json']);
  t.equal(json.code, 0, json.err);
  const all: unknown = JSON.parse(json.out);
  t.same(S.isSocketsListing(all) && { handles: all.sockets.map((s) => s.handle), next: all.next }, { handles, next: undefined }, 'every socket once, in handle order, from two pages');
  const text = await cli(['sockets', id, '--url', d.url]);
  t.equal(text.out.trim().split('\n').length, handles.length + 1, 'a table row for each, under one header');
});

t.test('one-line errors: nothing listening, not a spiwire daemon, usage mistakes', async (t) => {
  const port = await closedPort('ipv4', 'tcp');
  const down = await cli(['status', '--url', `http://127.0.0.1:${port}`]);
  t.equal(down.code, 1);
  t.equal(down.err, `spiwire status: cannot reach http://127.0.0.1:${port}: connection refused: is the daemon running? (start it with \`npm start\` or \`spiwire\`)\n`);

  const server = http.createServer((_req, res) => res.end('{"name":"something else"}'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const other = address.port;
  const notSpiwire = await cli(['sessions', '--url', `http://127.0.0.1:${other}`]);
  t.equal(notSpiwire.code, 1);
  t.equal(notSpiwire.err, `spiwire sessions: http://127.0.0.1:${other} is not a spiwire daemon (GET /version did not name spiwire)\n`);

  const noId = await cli(['sockets']);
  t.equal(noId.code, 2);
  t.match(noId.err, /^spiwire sockets: sockets needs the id of a session/);
  t.match(noId.err, /usage: spiwire status \| sessions \| sockets SESSION/);
  const extra = await cli(['status', 'x']);
  t.equal(extra.code, 2);
  t.match(extra.err, /^spiwire status: status takes no argument; got 1/);
  const badUrl = await cli(['status', '--url', 'ftp://x']);
  t.equal(badUrl.code, 2);
  t.match(badUrl.err, /--url: ftp:\/\/x must be an http:\/\/ \(or ws:\/\/\) URL/);
  const help = await cli(['sessions', '--help']);
  t.equal(help.code, 0);
  t.match(help.out, /--json/);
});
