/**
 * The daemon's front door over real HTTP and WebSocket on loopback: the upgrade checks
 * (subprotocol, bearer token, Origin), the non-loopback guard, the HTTP endpoints, and the frame
 * size limit. Clients are plain `ws` WebSockets speaking the wire protocol with the proto codec.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as P from '@spiwire/proto';
import { WebSocket } from 'ws';
import { startServer, VERSION, type Daemon } from '../src/index.js';
import { bearerToken, isLoopbackHost, tokenMatches } from '../src/internals.js';
import { RawSession, rawSocketOf, connectedSocket, daemon, pattern, roundTrip, sendBytes, session, startCli, tcpPeer, until, upgrade, within, type UpgradeResult } from './helpers/raw-client.js';
import { NOT_FOUND_ERROR, OTHER_UPGRADE_WITH_BODY } from '../src/app.js';

function httpBase(d: { port: number }): string {
  return `http://127.0.0.1:${d.port}`;
}

async function getJson(url: string): Promise<{ status: number; type: string; body: Record<string, unknown> }> {
  const res = await fetch(url);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, unknown> };
}

function refusedWith(t: Test, r: UpgradeResult, status: number, what: string): void {
  if (r.kind === 'open') {
    t.fail(`${what}: the session opened; expected HTTP ${status}`);
    void r.session.close();
    return;
  }
  if (r.kind === 'error') {
    t.fail(`${what}: ${r.error.message}; expected HTTP ${status}`);
    return;
  }
  t.equal(r.status, status, what);
  t.doesNotThrow(() => JSON.parse(r.body), `${what}: the refusal body is JSON`);
}

// ---- upgrade checks ----

t.test('the subprotocol must be offered: without it 400, with it the session opens', async (t) => {
  const d = await daemon(t);
  refusedWith(t, await upgrade(d.url, { protocols: [] }), 400, 'no subprotocol');
  refusedWith(t, await upgrade(d.url, { protocols: ['spiwire.v0'] }), 400, 'another version');
  refusedWith(t, await upgrade(d.url, { protocols: ['chat', 'superchat'] }), 400, 'unrelated subprotocols');
  const s = await session(t, d.url, { protocols: ['chat', P.SUBPROTOCOL] });
  t.equal(s.ws.protocol, P.SUBPROTOCOL, 'spiwire.v1 is the negotiated subprotocol when offered among others');
  const welcome = await s.wait((m) => m.method === 'spiwire.welcome');
  t.equal(s.messages[0], welcome, 'the welcome is the first message');
  t.equal(welcome.params?.['protocol'], P.PROTOCOL_VERSION);
  t.equal(welcome.params?.['version'], VERSION);
  t.type(welcome.params?.['session'], 'string');
  const h = await getJson(`${httpBase(d)}/healthz`);
  t.equal(h.body['sessions'], 1, 'refused upgrades left no session behind');
});

t.test('with a token: missing or wrong token 401, the right one opens a session', async (t) => {
  const token = 'correct horse battery staple';
  const d = await daemon(t, { token });
  refusedWith(t, await upgrade(d.url), 401, 'no Authorization header');
  refusedWith(t, await upgrade(d.url, { token: 'wrong' }), 401, 'a wrong token of another length');
  refusedWith(t, await upgrade(d.url, { token: token.replace(/e$/, 'E') }), 401, 'a wrong token of the same length');
  refusedWith(t, await upgrade(d.url, { token: `${token}x` }), 401, 'the token with one more character');
  refusedWith(t, await upgrade(d.url, { token: token.slice(0, -1) }), 401, 'a prefix of the token');
  refusedWith(t, await upgrade(d.url, { headers: { authorization: `Basic ${Buffer.from(`u:${token}`).toString('base64')}` } }), 401, 'Basic auth');
  refusedWith(t, await upgrade(d.url, { headers: { authorization: token } }), 401, 'the token without the Bearer scheme');
  refusedWith(t, await upgrade(d.url, { headers: { authorization: 'Bearer' } }), 401, '"Bearer" alone');
  refusedWith(t, await upgrade(d.url, { protocols: [] }), 401, 'no token and no subprotocol: the token check answers first');
  const s = await session(t, d.url, { token });
  t.ok(s.messages.some((m) => m.method === 'spiwire.welcome'), 'spiwire.welcome arrives');
  const r = await s.request('WSPGetSockName', { s: 4, namelen: 16 }).response;
  t.same(r.result, { ret: P.SOCKET_ERROR, errno: P.WSAENOTSOCK }, 'the session answers calls');
  await session(t, d.url, { headers: { authorization: `bearer   ${token}  ` } });
  t.pass('the scheme is case-insensitive and surrounding blanks are ignored');
  refusedWith(t, await upgrade(d.url, { token, protocols: [] }), 400, 'right token without the subprotocol: 400');
  const h = await getJson(`${httpBase(d)}/healthz`);
  t.equal(h.body['sessions'], 2, 'only the two authorised sessions exist');
});

t.test('Origin: an unknown browser Origin is 403, an allowed one opens, none opens', async (t) => {
  const allowed = 'http://allowed.example:8080';
  const d = await daemon(t, { allowedOrigins: [allowed] });
  refusedWith(t, await upgrade(d.url, { headers: { origin: 'http://evil.example' } }), 403, 'an unknown Origin');
  refusedWith(t, await upgrade(d.url, { headers: { origin: 'http://allowed.example' } }), 403, 'the allowed host on another port');
  refusedWith(t, await upgrade(d.url, { headers: { origin: `${allowed}/` } }), 403, 'a different spelling is not the same Origin');
  refusedWith(t, await upgrade(d.url, { headers: { origin: 'null' } }), 403, 'the opaque Origin "null"');
  await session(t, d.url, { headers: { origin: allowed } });
  await session(t, d.url);
  t.pass('the allowed Origin and a client without Origin both open sessions');
  const none = await daemon(t);
  refusedWith(t, await upgrade(none.url, { headers: { origin: `http://127.0.0.1:${none.port}` } }), 403, 'by default no Origin is allowed, not even the daemon\'s own');
});

t.test('Origin and token together: the Origin is checked as well as the token', async (t) => {
  const token = 'tok';
  const allowed = 'https://app.example';
  const d = await daemon(t, { token, allowedOrigins: [allowed] });
  refusedWith(t, await upgrade(d.url, { token, headers: { origin: 'https://other.example' } }), 403, 'right token, wrong Origin');
  refusedWith(t, await upgrade(d.url, { token: 'nope', headers: { origin: allowed } }), 401, 'allowed Origin, wrong token');
  await session(t, d.url, { token, headers: { origin: allowed } });
  t.pass('right token and allowed Origin open');
});

// ---- listening beyond loopback ----

t.test('a non-loopback host without a token is refused with a clear error', async (t) => {
  for (const host of ['0.0.0.0', '::']) {
    for (const [what, token] of [['without a token', undefined], ['with an empty token', '']] as const) {
      let error: unknown = null;
      try {
        const d = await startServer({ host, port: 0, ...(token === undefined ? {} : { token }) });
        // It should not have started; if it did, do not leave it listening beyond loopback.
        await d.close();
      } catch (err) {
        error = err;
      }
      t.ok(error instanceof Error, `${host} ${what}: startServer rejects`);
      t.match((error as Error | null)?.message, new RegExp(`refusing to listen on ${host.replace(/\./g, '\\.')} without a token`), `${host} ${what}: the message says why`);
    }
  }
});

t.test('a non-loopback host with a token starts; reached via 127.0.0.1, the token is required', async (t) => {
  const token = 'wide-open-needs-this';
  const d = await daemon(t, { host: '0.0.0.0', token });
  t.equal(d.host, '0.0.0.0', 'the daemon reports its host');
  t.ok(d.port > 0, 'and a real port');
  const local = `ws://127.0.0.1:${d.port}/ws`;
  refusedWith(t, await upgrade(local), 401, 'no token');
  const s = await session(t, local, { token });
  t.ok(s.isOpen, 'the session opened through 127.0.0.1');
});

t.test('loopback hosts need no token', async (t) => {
  for (const host of ['127.0.0.1', '::1', 'localhost']) {
    let d: Daemon | null = null;
    try {
      d = await startServer({ host, port: 0 });
    } catch (err) {
      if (host === '::1' && /EADDRNOTAVAIL|EAFNOSUPPORT/.test(String(err))) {
        t.comment('no ::1 on this host');
        continue;
      }
      throw err;
    }
    t.teardown(() => d!.close());
    t.ok(d.port > 0, `${host} starts without a token`);
  }
});

t.test('isLoopbackHost', async (t) => {
  for (const h of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '0:0:0:0:0:0:0:1', 'localhost']) t.equal(isLoopbackHost(h), true, h);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', '128.0.0.1', '1.127.0.0', '127.example.com', 'localhost.example.com', '::2', '']) t.equal(isLoopbackHost(h), false, h);
});

// ---- token helpers ----

t.test('tokenMatches: equal strings only; different lengths are false, never a throw', async (t) => {
  t.equal(tokenMatches('secret', 'secret'), true);
  const cases: Array<[string, string | undefined]> = [
    ['secret', 'secreT'],
    ['secret', 'secret '],
    ['secret', 'secre'],
    ['secret', ''],
    ['secret', undefined],
    ['secret', 'x'.repeat(100000)],
    ['x'.repeat(100000), 'secret'],
    ['é', 'e\u0301'],
    ['a', 'a\u0000'],
  ];
  for (const [a, b] of cases) {
    let r: boolean | 'threw' = 'threw';
    t.doesNotThrow(() => (r = tokenMatches(a, b)), `(${a.length} chars, ${b === undefined ? 'undefined' : `${b.length} chars`}) does not throw`);
    t.equal(r, false, 'and is false');
  }
});

t.test('bearerToken', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc');
  t.equal(bearerToken('bearer   abc  '), 'abc');
  t.equal(bearerToken('BEARER a b'), 'a b');
  t.equal(bearerToken('Basic abc'), undefined);
  t.equal(bearerToken('Bearer'), undefined);
  t.equal(bearerToken('Bearer '), undefined);
  t.equal(bearerToken(''), undefined);
  t.equal(bearerToken(undefined), undefined);
});

// ---- HTTP endpoints ----

t.test('GET /healthz and GET /version answer JSON with the documented fields', async (t) => {
  const d = await daemon(t);
  const h0 = await getJson(`${httpBase(d)}/healthz`);
  t.equal(h0.status, 200);
  t.match(h0.type, /^application\/json/);
  t.same(h0.body, { status: 'ok', sessions: 0, sockets: 0, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 });

  const s = await session(t, d.url);
  const r = await s.request('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags: 0 }).response;
  t.equal(r.result?.['errno'], 0, 'a socket was created');
  const h1 = await getJson(`${httpBase(d)}/healthz`);
  t.same(h1.body, { status: 'ok', sessions: 1, sockets: 1, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 }, 'the session and its socket are counted');

  const v = await getJson(`${httpBase(d)}/version`);
  t.equal(v.status, 200);
  t.match(v.type, /^application\/json/);
  t.same(v.body, { name: 'spiwire', version: VERSION, protocol: P.PROTOCOL_VERSION, subprotocol: P.SUBPROTOCOL, node: process.version });
  t.match(v.body['version'], /^\d+\.\d+\.\d+/, 'a semver version');

  await s.close();
  let sessions = -1;
  for (let i = 0; i < 100 && sessions !== 0; i++) {
    sessions = (await getJson(`${httpBase(d)}/healthz`)).body['sessions'] as number;
    if (sessions !== 0) await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(sessions, 0, 'a closed session is no longer counted');
  t.equal((await getJson(`${httpBase(d)}/healthz`)).body['sockets'], 0, 'nor its socket');

  const missing = await fetch(`${httpBase(d)}/nope`);
  t.equal(missing.status, 404, 'other paths are 404');
  await missing.body?.cancel();
});

t.test('connections that never send a whole request are closed after --handshake-timeout; then others get in', async (t) => {
  // Two sessions allowed: 66 connections in all (maxSessions + 64) are enough to shut others out.
  const d = await daemon(t, { limits: { maxSessions: 2, handshakeTimeoutMs: 500 } });
  const stalled: Array<{ sock: net.Socket; answer: Promise<string> }> = [];
  for (let i = 0; i < 66; i++) {
    const sock = net.connect(d.port, '127.0.0.1');
    // Half of them send nothing, half stop in the middle of their headers.
    if (i % 2 === 1) sock.on('connect', () => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
    let got = '';
    sock.on('data', (b: Buffer) => (got += b.toString()));
    sock.on('error', () => undefined);
    stalled.push({ sock, answer: new Promise((r) => sock.once('close', () => r(got))) });
  }
  t.teardown(() => stalled.forEach(({ sock }) => sock.destroy()));
  await Promise.all(stalled.map(({ sock }) => new Promise((r) => (sock.readyState === 'open' ? r(null) : sock.once('connect', r)))));
  const answers = await within(Promise.all(stalled.map((x) => x.answer)), 10000, null);
  t.ok(answers, 'the daemon closed every one of them');
  t.ok(answers?.every((a) => a.startsWith('HTTP/1.1 408 ') && a.endsWith('{"error":"the request took too long"}')), 'each with 408 and the one-member error');
  const h = await getJson(`${httpBase(d)}/healthz`);
  t.equal(h.status, 200, 'a health check gets in afterwards');
});

/** A connection to the daemon from localAddress that has sent these bytes (none: an idle one); closed in t's teardown. */
async function openConnection(t: Test, port: number, bytes = '', localAddress = '127.0.0.1'): Promise<{ sock: net.Socket; closed: () => boolean; answer: Promise<string> }> {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress });
  t.teardown(() => sock.destroy());
  sock.on('error', () => undefined);
  let closed = false;
  let got = '';
  sock.on('data', (b: Buffer) => (got += b.toString()));
  const answer = new Promise<string>((r) => sock.once('close', () => r(got)));
  void answer.then(() => (closed = true));
  await new Promise((r) => sock.once('connect', r));
  if (bytes !== '') sock.write(bytes);
  return { sock, closed: () => closed, answer };
}

t.test('with every connection slot taken, a newcomer takes the place of the connection silent longest; sessions keep theirs', async (t) => {
  // Two sessions allowed: 66 connection slots. The handshake timeout is far off: nothing here
  // waits for it.
  const d = await daemon(t, { limits: { maxSessions: 2, handshakeTimeoutMs: 120_000 } });
  const peer = await tcpPeer(t);
  const a = await session(t, d.url);
  const { h: ha, conn: ca } = await connectedSocket(a, peer);
  const idle: Array<{ sock: net.Socket; closed: boolean }> = [];
  t.teardown(() => idle.forEach(({ sock }) => sock.destroy()));
  // One at a time, so that the daemon takes them in this order: 65 connections fill the slots
  // the session left. Every other one stops in the middle of its headers.
  for (let i = 0; i < 65; i++) {
    const sock = net.connect(d.port, '127.0.0.1');
    sock.on('error', () => undefined);
    const entry = { sock, closed: false };
    sock.once('close', () => (entry.closed = true));
    await new Promise((r) => sock.once('connect', r));
    if (i % 2 === 1) sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    idle.push(entry);
  }
  const closedOnes = (): number[] => idle.flatMap((e, i) => (e.closed ? [i] : []));
  // A health check gets in at once, in the place of the oldest.
  const h = await within(getJson(`${httpBase(d)}/healthz`), 5000, null);
  t.equal(h?.status, 200, 'a health check gets in with every slot taken');
  t.ok(await until(() => idle[0]!.closed), 'the oldest idle connection was closed to make room');
  t.same(closedOnes(), [0], 'and only it');
  // A second session gets in too, in the place of the next oldest.
  const b = await session(t, d.url);
  const { h: hb, conn: cb } = await connectedSocket(b, peer);
  t.ok(await until(() => idle[1]!.closed), 'the next oldest made room for the session');
  t.same(closedOnes(), [0, 1], 'and only it');
  // A flood of newcomers that send nothing takes the idle slots, never the sessions'.
  for (let i = 0; i < 100; i++) await openConnection(t, d.port);
  t.ok(await until(() => closedOnes().length === 65), 'every one of the first idle connections made room in the end');
  const bytes = pattern(3000, 7);
  await sendBytes(a, ha, bytes.subarray(0, 1000));
  await sendBytes(b, hb, bytes.subarray(1000));
  t.same(Buffer.concat([await ca.waitFor(1000), await cb.waitFor(2000)]), bytes, 'both sessions still send: the peer got every byte, unchanged');
  const st = await getJson(`${httpBase(d)}/stats`);
  t.ok(Number(st.body['httpConnections']) <= 66, `never more than 66 connections (${String(st.body['httpConnections'])})`);
  t.ok(Number(st.body['evictedConnections']) >= 65 + 2, `evictions counted (${String(st.body['evictedConnections'])})`);
});

t.test('connection slots: the connection whose last sign of life is oldest makes room, whatever it is doing; a pipelined upgrade is closed', async (t) => {
  // One session allowed: 65 slots. (With a token, the fault API reads a request's body.)
  const d = await daemon(t, { token: 'tok', limits: { maxSessions: 1, handshakeTimeoutMs: 120_000 } });
  const a = await session(t, d.url, { token: 'tok' });
  const health = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  // A kept-alive connection, answered once: for now the oldest sign of life.
  const keptAlive = await openConnection(t, d.port, health);
  await new Promise((r) => keptAlive.sock.once('data', r));
  // 62 requests under way: POST /faults whose bodies never come whole. Each asks for a 100
  // Continue, which node sends as it takes the request: the daemon has read its headers.
  const trickle = 'POST /faults HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n';
  const busy: Array<Awaited<ReturnType<typeof openConnection>>> = [];
  const requestUnderWay = async (): Promise<void> => {
    const c = await openConnection(t, d.port, trickle);
    await new Promise<void>((r) => c.sock.once('data', () => r()));
    c.sock.write('{');
    busy.push(c);
  };
  for (let i = 0; i < 62; i++) await requestUnderWay();
  // The kept-alive connection asks again: its sign of life is now newer than every request's.
  keptAlive.sock.write(health);
  await new Promise((r) => keptAlive.sock.once('data', r));
  // A resume handshake that never sends its spiwire.resume: the 65th slot.
  const resume = new WebSocket(`${d.url}?${P.RESUME_QUERY}=nobody`, [P.SUBPROTOCOL], { headers: { authorization: 'Bearer tok' } });
  t.teardown(() => resume.terminate());
  await new Promise((r, j) => resume.once('open', r).once('error', j));
  let resumeClosed = false;
  resume.once('close', () => (resumeClosed = true));
  const closedOnes = (): number[] => busy.flatMap((c, i) => (c.closed() ? [i] : []));
  const once = `GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
  const first = await openConnection(t, d.port, once);
  t.match(await first.answer, /^HTTP\/1\.1 200 /, 'a health check gets in with every slot taken');
  t.ok(await until(() => busy[0]!.closed()), 'in the place of the oldest request under way: a trickle is no sign of life');
  t.same(closedOnes(), [0], 'and only it');
  t.notOk(keptAlive.closed() || resumeClosed, 'the kept-alive connection (asked since) and the resume handshake (newer) stay');
  // An idle newcomer, then a health check: the next oldest request makes room, not the newcomer.
  const idle = await openConnection(t, d.port);
  const second = await openConnection(t, d.port, once);
  t.match(await second.answer, /^HTTP\/1\.1 200 /, 'the next health check gets in');
  t.ok(await until(() => closedOnes().length === 2), 'the next oldest request under way made room');
  t.same(closedOnes(), [0, 1], 'it and no other');
  t.notOk(idle.closed(), 'the idle newcomer stays');
  // A request and an upgrade pipelined in one write: the request is answered, and the connection
  // closed (nothing could ever answer the upgrade on it).
  const key = Buffer.alloc(16, 7).toString('base64');
  const pipelined = await openConnection(t, d.port, `${health}GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Protocol: ${P.SUBPROTOCOL}\r\nAuthorization: Bearer tok\r\n\r\n`);
  t.match(await within(pipelined.answer, 5000, 'still open'), /^HTTP\/1\.1 200 /, 'the daemon answered the request and closed the connection with the pipelined upgrade');
  await roundTrip(a);
  t.pass('the session was never closed');
});

t.test('connection slots know a connection by both ends: one client port to two of the daemon\'s addresses', async (t) => {
  // The daemon listens on every address; the client uses one port of its own for a connection
  // to 127.0.0.2 and for a session through 127.0.0.1. One session allowed: 65 slots.
  const d = await daemon(t, { host: '0.0.0.0', token: 'tok', limits: { maxSessions: 1, handshakeTimeoutMs: 120_000 } });
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const clientPort = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const other = net.connect({ port: d.port, host: '127.0.0.2', localAddress: '127.0.0.1', localPort: clientPort });
  t.teardown(() => other.destroy());
  other.on('error', () => undefined);
  let otherClosed = false;
  other.once('close', () => (otherClosed = true));
  await new Promise((r) => other.once('connect', r));
  const ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, [P.SUBPROTOCOL], { headers: { authorization: 'Bearer tok' }, localAddress: '127.0.0.1', localPort: clientPort } as WebSocket.ClientOptions);
  t.teardown(() => ws.terminate());
  const a = new RawSession(ws);
  await a.wait((m) => m.method === 'spiwire.welcome');
  t.equal(rawSocketOf(ws).localPort, clientPort, 'the session came from the same client port');
  // A flood of idle connections: the other connection is counted and makes room like any other.
  for (let i = 0; i < 70; i++) await openConnection(t, d.port);
  t.ok(await until(() => otherClosed), 'the other connection, the oldest, made room');
  await roundTrip(a);
  t.pass('the session kept its slot');
});

t.test('connection slots: a flood spread over many addresses, each holding few, makes room oldest first', async (t) => {
  // One session allowed: 65 slots; 100 connections, each from an address of its own (127.0.1.x).
  const d = await daemon(t, { limits: { maxSessions: 1, handshakeTimeoutMs: 120_000 } });
  const a = await session(t, d.url);
  const spread: Array<Awaited<ReturnType<typeof openConnection>>> = [];
  for (let i = 1; i <= 100; i++) spread.push(await openConnection(t, d.port, '', `127.0.1.${i}`));
  t.ok(await until(() => spread.filter((c) => c.closed()).length === 100 - 64), 'as many closed as went past the slots');
  t.ok(spread.slice(0, 36).every((c) => c.closed()), 'the oldest ones');
  const newest = spread[99]!;
  newest.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(await newest.answer, /^HTTP\/1\.1 200 /, 'the newest is answered');
  await roundTrip(a);
  t.pass('the session kept its slot');
});

// ---- upgrades elsewhere ----

t.test('a WebSocket upgrade on any path but /ws is refused before the handshake (404), token or not', async (t) => {
  for (const token of [undefined, 'sekrit-token']) {
    const d = await daemon(t, token ? { token } : {});
    for (const path of ['/healthz', '/version', '/stats', '/nope', '/ws/']) {
      const url = `ws://127.0.0.1:${d.port}${path}`;
      refusedWith(t, await upgrade(url), 404, `${token ? 'with' : 'without'} a token configured, ${path}: 404`);
      if (token) refusedWith(t, await upgrade(url, { token }), 404, `with the right token, ${path}: still 404`);
    }
    // /ws itself is unchanged.
    const r = await upgrade(d.url, token ? { token } : {});
    t.equal(r.kind, 'open', '/ws still opens a session');
    if (r.kind === 'open') await r.session.close();
  }
});

// ---- malformed requests ----

/** One raw HTTP/1.1 request on its own connection: the status and the body, as bytes on the wire. */
function rawHttp(port: number, head: string, body = ''): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.end(`${head}\r\n${body ? `content-length: ${Buffer.byteLength(body)}\r\n` : ''}connection: close\r\n\r\n${body}`));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

t.test('malformed and unknown requests are refused with {"error": ...} alone, never at error level', async (t) => {
  const d = await startCli(t, ['--log-level', 'debug', '--token', 'sekrit-token']);
  const host = 'host: 127.0.0.1';
  const upgradeHead = (headers: string): string => `GET /ws HTTP/1.1\r\n${host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nauthorization: Bearer sekrit-token\r\n${headers}`;
  const key = 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==';
  const cases: Array<[string, string, string, number]> = [
    ['HEAD of a GET endpoint', `HEAD /healthz HTTP/1.1\r\n${host}`, '', 404],
    ['a body that is not the JSON it claims, to a path that takes none', `POST /healthz HTTP/1.1\r\n${host}\r\ncontent-type: application/json`, '{bad', 404],
    ['the same to an unknown path', `POST /nope HTTP/1.1\r\n${host}\r\ncontent-type: application/json`, '{bad', 404],
    ['a body that is not JSON, to POST /faults', `POST /faults HTTP/1.1\r\n${host}\r\nauthorization: Bearer sekrit-token\r\ncontent-type: application/json`, '{bad', 400],
    ['a body over the limit, to POST /faults', `POST /faults HTTP/1.1\r\n${host}\r\nauthorization: Bearer sekrit-token\r\ncontent-type: application/json`, `"${'a'.repeat(P.MAX_OPERATOR_FAULT_BODY)}"`, 413],
    ['a path that is not a URL', `GET /%E0%A4%A HTTP/1.1\r\n${host}`, '', 400],
    ['headers too large', `GET /healthz HTTP/1.1\r\n${host}\r\nx-big: ${'a'.repeat(20000)}`, '', 431],
    ['a line that is not HTTP', 'NOT HTTP AT ALL', '', 400],
    // node hands CONNECT to an event of its own, and dropped the connection unanswered.
    ['CONNECT to a host and port', `CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: 127.0.0.1:80`, '', 404],
    ['CONNECT to a path', `CONNECT /healthz HTTP/1.1\r\n${host}`, '', 404],
    ['an upgrade with Sec-WebSocket-Version 12', upgradeHead(`sec-websocket-version: 12\r\n${key}\r\nsec-websocket-protocol: spiwire.v1`), '', 400],
    ['an upgrade with a short Sec-WebSocket-Key', upgradeHead('sec-websocket-version: 13\r\nsec-websocket-key: c2hvcnQ=\r\nsec-websocket-protocol: spiwire.v1'), '', 400],
    // ws takes "websocket" alone, and refused a list in plain text.
    ['an upgrade listing websocket among other protocols', upgradeHead(`sec-websocket-version: 13\r\n${key}\r\nsec-websocket-protocol: spiwire.v1`).replace('upgrade: websocket', 'upgrade: foo, websocket'), '', 400],
    ['an upgrade offering a subprotocol twice', upgradeHead(`sec-websocket-version: 13\r\n${key}\r\nsec-websocket-protocol: spiwire.v1, spiwire.v1`), '', 400],
    ['an upgrade of /ws with POST (a method /ws does not take)', upgradeHead(`sec-websocket-version: 13\r\n${key}\r\nsec-websocket-protocol: spiwire.v1`).replace('GET /ws', 'POST /ws'), '', 404],
    ['an HTTP version the parser does not take', `GET /healthz HTTP/1.2\r\n${host}`, '', 400],
  ];
  for (const [what, head, body, status] of cases) {
    const r = await rawHttp(d.port, head, body);
    t.equal(r.status, status, `${what}: ${status}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(r.body);
    } catch {
      parsed = r.body;
    }
    // (HEAD has no body; the fault endpoints' own refusals may name a field, section 19.)
    if (head.startsWith('HEAD')) continue;
    const allowed = head.startsWith('POST /faults') ? ['error', 'field'] : ['error'];
    t.ok(P.isRecord(parsed) && typeof parsed['error'] === 'string' && Object.keys(parsed).every((k) => allowed.includes(k)), `${what}: the body is {"error": ...} (${r.body.slice(0, 80)})`);
  }
  // An HTTP/1.1 request without Host is served, as an upgrade without one is (node's own refusal
  // was a 400 with no body).
  const postUpgrade = await rawHttp(d.port, upgradeHead(`sec-websocket-version: 13\r\n${key}\r\nsec-websocket-protocol: spiwire.v1`).replace('GET /ws', 'POST /ws'));
  t.same(JSON.parse(postUpgrade.body), { error: NOT_FOUND_ERROR }, 'a POST upgrade of /ws: no such endpoint (the path is right, the method is not)');
  const http10 = await rawHttp(d.port, 'GET /healthz HTTP/1.0');
  t.same([http10.status, (JSON.parse(http10.body) as Record<string, unknown>)['status']], [200, 'ok'], 'an HTTP/1.0 request is served');
  const hostless = await rawHttp(d.port, 'GET /healthz HTTP/1.1');
  t.same([hostless.status, (JSON.parse(hostless.body) as Record<string, unknown>)['status']], [200, 'ok'], 'GET /healthz without Host: 200 and the health');
  // A session id longer than the router's default limit is still looked up: unknown, 404 naming it.
  const long = await rawHttp(d.port, `GET /sessions/${'x'.repeat(200)}/sockets HTTP/1.1\r\n${host}\r\nauthorization: Bearer sekrit-token`);
  t.same([long.status, (JSON.parse(long.body) as Record<string, unknown>)['field']], [404, 'id'], 'a 200-character session id: 404, field id');
  t.same(d.lines().filter((l) => (l['level'] as number) >= 40), [], 'nothing logged above debug');
  t.ok((await getJson(`${httpBase(d)}/healthz`)).status === 200, 'and the daemon answers as before');
});

t.test('an upgrade to another protocol (h2c) is ignored: the request is answered in HTTP/1.1, then the connection closes', async (t) => {
  const d = await startCli(t, ['--log-level', 'debug', '--token', 'sekrit-token']);
  // What java.net.http.HttpClient sends on every http:// request unless told to use HTTP/1.1.
  const h2c = 'host: 127.0.0.1\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA';
  const version = await rawHttp(d.port, `GET /version HTTP/1.1\r\n${h2c}`);
  t.same([version.status, (JSON.parse(version.body) as Record<string, unknown>)['name']], [200, 'spiwire'], 'GET /version: 200, the version');
  const stats = await rawHttp(d.port, `GET /stats HTTP/1.1\r\n${h2c}\r\nauthorization: Bearer sekrit-token`);
  t.equal(stats.status, 200, 'GET /stats with the token: 200');
  t.equal((await rawHttp(d.port, `GET /stats HTTP/1.1\r\n${h2c}`)).status, 401, 'and without it: 401, as without the upgrade');
  const ws = await rawHttp(d.port, `GET /ws HTTP/1.1\r\n${h2c}`);
  t.same([ws.status, JSON.parse(ws.body)], [426, { error: '/ws takes WebSocket upgrades only' }], 'GET /ws: 426, as a plain request');
  const unknown = await rawHttp(d.port, `GET /nope HTTP/1.1\r\n${h2c}`);
  t.same([unknown.status, JSON.parse(unknown.body)], [404, { error: NOT_FOUND_ERROR }], 'an unknown path: 404, no such endpoint');
  // With a body nothing would read it (node has handed the connection over): refused.
  const posted = await rawHttp(d.port, `POST /faults HTTP/1.1\r\n${h2c}\r\nauthorization: Bearer sekrit-token\r\ncontent-type: application/json`, '{"match":{},"action":{"type":"error","errno":10054}}');
  t.same([posted.status, JSON.parse(posted.body)], [400, { error: OTHER_UPGRADE_WITH_BODY }], 'a request with a body: 400, saying why');
  const rules = await rawHttp(d.port, 'GET /faults HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer sekrit-token');
  t.same((JSON.parse(rules.body) as Record<string, unknown>)['rules'], [], 'and its rule was not added');
  t.same(d.lines().filter((l) => (l['level'] as number) >= 40), [], 'nothing logged above debug');
});

t.test('a client that resets right after a request node hands over (h2c, CONNECT, a pipelined upgrade) does not stop the daemon', async (t) => {
  const d = await startCli(t, ['--log-level', 'debug']);
  const host = 'host: 127.0.0.1';
  const key = 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==';
  const cases: Array<[string, string]> = [
    ['an h2c upgrade answered as a request', `GET /stats HTTP/1.1\r\n${host}\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n`],
    ['an h2c upgrade with a body (the 400)', `POST /faults HTTP/1.1\r\n${host}\r\nconnection: Upgrade\r\nupgrade: h2c\r\ncontent-length: 2\r\n\r\n{}`],
    ['CONNECT', 'CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: 127.0.0.1:80\r\n\r\n'],
    ['an upgrade pipelined behind a request', `GET /metrics HTTP/1.1\r\n${host}\r\n\r\nGET /ws HTTP/1.1\r\n${host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n${key}\r\nsec-websocket-protocol: spiwire.v1\r\n\r\n`],
  ];
  for (const [what, raw] of cases) {
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((resolve) => {
        const c = net.connect(d.port, '127.0.0.1', () => {
          c.write(raw);
          // Reset once the daemon has answered (or at once, every other time): its write meets ECONNRESET.
          if (i % 2 === 0) c.resetAndDestroy();
          else c.once('data', () => c.resetAndDestroy());
        });
        c.on('error', () => undefined);
        c.on('close', () => resolve());
      });
    }
    t.equal((await getJson(`${httpBase(d)}/healthz`)).status, 200, `${what}, then a reset, ten times: the daemon answers`);
  }
  t.equal(d.proc.exitCode, null, 'and is still running');
  t.same(d.lines().filter((l) => (l['level'] as number) >= 40), [], 'nothing logged above debug');
});

t.test('a connection whose h2c upgrade was answered is closed by the daemon, even when its client stays half open', async (t) => {
  const d = await startCli(t, []);
  const connections = async (): Promise<number> => Number((await getJson(`${httpBase(d)}/stats`)).body['httpConnections']);
  const before = await connections();
  // A client that keeps its side open after the daemon's FIN. Node has handed the connection
  // over, so nothing on the server would time it out: it held a descriptor and a slot for good.
  const c = net.connect({ port: d.port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => c.destroy());
  c.on('error', () => undefined);
  await new Promise((r) => c.once('connect', r));
  let answer = '';
  c.on('data', (b: Buffer) => (answer += b.toString()));
  const ended = new Promise<void>((r) => c.once('end', () => r()));
  c.write('GET /version HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n');
  await ended;
  t.match(answer, /^HTTP\/1\.1 200 /, 'answered, then FIN');
  t.ok(await until(async () => (await connections()) <= before, 5000, 50), 'and the daemon let go of the connection');
});

// ---- log levels ----

t.test('client mistakes never log above debug, and at debug they are rate-limited', async (t) => {
  const d = await startCli(t, ['--log-level', 'debug']);
  const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]); // "{", invalid UTF-8, "}"
  const garbage = Buffer.from([1, 2, 3]);
  for (let i = 0; i < 60; i++) {
    const s = await RawSession.open(d.url);
    s.ws.send(garbage); // a bad binary frame: BAD_FRAME
    s.ws.send(bad, { binary: false });
    const closed = await within(s.closed, 5000, null);
    if (closed?.code !== 1007) t.fail(`invalid UTF-8 closed the connection with ${String(closed?.code)}, not 1007`);
  }
  const s = await session(t, d.url);
  for (let i = 0; i < 300; i++) s.ws.send(garbage);
  await s.request('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 }).response;
  // Upgrades on other paths and bad tokens are client mistakes too.
  await upgrade(`ws://127.0.0.1:${d.port}/healthz`);
  const lines = d.lines();
  const loud = lines.filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 40);
  t.same(loud, [], 'no line at warn level or above');
  const mistakes = lines.filter((l) => l['msg'] === 'websocket error' || String(l['msg']).startsWith('bad frame') || String(l['msg']).startsWith('websocket error'));
  t.ok(mistakes.length > 0, `client mistakes are logged at debug (${mistakes.length} lines)`);
  t.ok(mistakes.length < 200, `and rate-limited: ${mistakes.length} lines for 420 mistakes`);
  t.equal(d.proc.exitCode, null, 'the daemon keeps running');
});

// ---- frame size ----

/** A text message of exactly n bytes: a WSPSend of bytes in base64, padded with spaces (JSON white space). */
function textSendOf(id: string, s: number, data: Buffer, n: number): string {
  const json = JSON.stringify({ jsonrpc: '2.0', id, method: 'WSPSend', params: { s, buffers: [{ $base64: data.toString('base64') }], flags: 0 } });
  if (json.length > n) throw new Error(`${json.length} bytes of JSON do not fit in ${n}`);
  return json + ' '.repeat(n - json.length);
}

t.test('a text message over MAX_TEXT_BYTES closes with 1009 at its frame header; one of exactly that size is a call like any other', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const a = await session(t, d.url);
  const { h, conn } = await connectedSocket(a, peer);

  // The largest text message: its bytes reach the peer, the reply comes in a text frame.
  const data = pattern(Math.floor((P.MAX_TEXT_BYTES - 200) / 4) * 3, 7);
  a.ws.send(textSendOf('big-text', h, data, P.MAX_TEXT_BYTES));
  const reply = await a.wait((m) => m.id === 'big-text', 10000);
  t.same(reply.result, { ret: 0, errno: 0, bytesSent: data.length }, `a WSPSend in a text message of exactly ${P.MAX_TEXT_BYTES} bytes sends all ${data.length} bytes`);
  t.ok((await conn.waitFor(data.length)).equals(data), 'and the peer receives them in order');

  // One byte more, announced by a frame header alone: refused before any payload is sent.
  const b = await session(t, d.url);
  const header = Buffer.alloc(14);
  header[0] = 0x81; // FIN, text
  header[1] = 0x80 | 127; // masked, 64-bit length
  header.writeBigUInt64BE(BigInt(P.MAX_TEXT_BYTES + 1), 2);
  (b.ws as unknown as { _socket: import('node:net').Socket })._socket.write(header);
  const closedB = await within(b.closed, 5000, null);
  t.equal(closedB?.code, 1009, 'a text frame header announcing MAX_TEXT_BYTES + 1: close code 1009, with no payload sent');

  // A text message in fragments is counted whole.
  const c = await session(t, d.url);
  const half = 'x'.repeat(P.MAX_TEXT_BYTES / 2 + 1);
  c.ws.send(half, { fin: false });
  c.ws.send(half, { fin: true });
  const closedC = await within(c.closed, 5000, null);
  t.equal(closedC?.code, 1009, 'two text fragments of half the limit plus one byte each: close code 1009');

  // Binary messages are bounded by maxFrameBytes alone, and the first session went on.
  const big = pattern(4 * P.MAX_TEXT_BYTES, 9);
  const sent = await sendBytes(a, h, big);
  t.same(sent, { ret: 0, errno: 0, bytesSent: big.length }, 'a binary WSPSend of four times MAX_TEXT_BYTES is taken whole');
  t.ok((await conn.waitFor(data.length + big.length)).subarray(data.length).equals(big), 'and the peer receives it after the text message\'s bytes');
  t.same((await getJson(`${httpBase(d)}/healthz`)).body['partialFrameBytes'], 0, 'no part of a refused message is held');
});

t.test('a frame larger than maxFrameBytes closes that WebSocket with 1009; other sessions are untouched', async (t) => {
  const maxFrameBytes = 4096;
  const d = await daemon(t, { limits: { maxFrameBytes } });
  const a = await session(t, d.url);
  const b = await session(t, d.url);
  const c = await session(t, d.url);
  const welcome = await a.wait((m) => m.method === 'spiwire.welcome');
  t.equal((welcome.params?.['limits'] as Record<string, unknown>)['maxFrameBytes'], maxFrameBytes, 'the welcome announces the limit');

  const sock = await b.request('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 }).response;
  const handle = sock.result?.['ret'] as number;
  t.equal(sock.result?.['errno'], 0);

  // Exactly at the limit is still a frame: garbage, so a BAD_FRAME error, not a close.
  a.ws.send(Buffer.alloc(maxFrameBytes, 0xff));
  const bad = await a.wait((m) => m.error !== undefined);
  t.equal(bad.error?.code, P.BAD_FRAME, 'a frame of exactly maxFrameBytes is decoded (and refused as garbage)');
  t.ok(a.isOpen, 'and the session stays open');

  // One byte over: the WebSocket layer refuses the message.
  a.ws.send(Buffer.alloc(maxFrameBytes + 1, 0xff));
  const closedA = await within(a.closed, 5000, null);
  t.equal(closedA?.code, 1009, 'binary frame over the limit: close code 1009 (message too big)');

  // A text frame over the limit as well.
  c.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'WSPGetSockName', params: { s: 4, namelen: 16, pad: 'x'.repeat(maxFrameBytes) } }));
  const closedC = await within(c.closed, 5000, null);
  t.equal(closedC?.code, 1009, 'text frame over the limit: close code 1009');

  t.ok(b.isOpen, 'session B is still open');
  const r = await b.request('WSPGetSockOpt', { s: handle, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }).response;
  t.equal(r.result?.['ret'], 0, 'session B still answers, and its socket is still there');
  let h: Record<string, unknown> = {};
  for (let i = 0; i < 100; i++) {
    h = (await getJson(`${httpBase(d)}/healthz`)).body;
    if (h['sessions'] === 1) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  t.same(h, { status: 'ok', sessions: 1, sockets: 1, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 }, 'only session B and its socket remain');
});
