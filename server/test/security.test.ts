/**
 * The daemon's front door over real HTTP and WebSocket on loopback: the upgrade checks
 * (subprotocol, bearer token, Origin), the non-loopback guard, the HTTP endpoints, and the frame
 * size limit. Clients are plain `ws` WebSockets speaking the wire protocol with the proto codec.
 */
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { startServer, VERSION, type Daemon, type StartOptions } from '../src/index.js';
import { bearerToken, isLoopbackHost, tokenMatches } from '../src/internals.js';

// ---- a minimal wire client ----

interface Msg {
  jsonrpc?: string;
  id?: P.RequestId | null;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: P.ErrorObject;
}

interface ConnectOpts {
  protocols?: string[];
  token?: string;
  headers?: Record<string, string>;
}

type UpgradeResult = { kind: 'refused'; status: number; body: string } | { kind: 'open'; session: RawSession } | { kind: 'error'; error: Error };

class RawSession {
  readonly messages: Msg[] = [];
  readonly undecodable: string[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<{ check: () => boolean; fail: (err: Error) => void }>();
  private nextId = 1;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        const recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString('utf8'))];
        for (const r of recs) {
          if (r.ok) this.messages.push(r.message as Msg);
          else this.undecodable.push(r.error.message);
        }
      } catch (err) {
        this.undecodable.push((err as Error).message);
      }
      for (const w of [...this.waiters]) if (w.check()) this.waiters.delete(w);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        for (const w of this.waiters) w.fail(new Error(`connection closed (${code})`));
        this.waiters.clear();
        resolve({ code, reason: reason.toString() });
      }),
    );
    ws.on('error', () => undefined);
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The first message (already received or still to come) that pred accepts. */
  /** The first message (already received or still to come) that pred accepts; rejects on time-out or when the connection closes. */
  wait(pred: (m: Msg) => boolean, timeoutMs = 5000): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const found = this.messages.find(pred);
      if (found) return resolve(found);
      if (this.ws.readyState === WebSocket.CLOSED) return reject(new Error('connection closed'));
      const w = {
        check: (): boolean => {
          const m = this.messages.find(pred);
          if (!m) return false;
          clearTimeout(timer);
          resolve(m);
          return true;
        },
        fail: (err: Error): void => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Sends one request in a binary frame and waits for its response. */
  call(method: string, params: Record<string, unknown>, timeoutMs = 5000): Promise<Msg> {
    const id = `sec-${this.nextId++}`;
    this.ws.send(P.encodeFrame({ jsonrpc: '2.0', id, method, params }));
    return this.wait((m) => m.id === id && (m.result !== undefined || m.error !== undefined), timeoutMs);
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    this.ws.close(1000);
    const t = setTimeout(() => this.ws.terminate(), 1000);
    return this.closed.then(() => clearTimeout(t));
  }
}

/** Attempts a WebSocket upgrade; resolves with the HTTP refusal, or an open session once spiwire.welcome arrived. */
function upgrade(url: string, opts: ConnectOpts = {}): Promise<UpgradeResult> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  const ws = new WebSocket(url, opts.protocols ?? [P.SUBPROTOCOL], { headers, perMessageDeflate: false });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve({ kind: 'error', error: new Error('no answer within 5 s') });
    }, 5000);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ kind: 'refused', status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      resolve({ kind: 'error', error });
    });
    ws.once('open', () => {
      const s = new RawSession(ws);
      s.wait((m) => m.method === 'spiwire.welcome').then(
        () => {
          clearTimeout(timer);
          resolve({ kind: 'open', session: s });
        },
        (error: Error) => {
          clearTimeout(timer);
          ws.terminate();
          resolve({ kind: 'error', error });
        },
      );
    });
  });
}

async function opened(t: Test, url: string, opts: ConnectOpts = {}): Promise<RawSession> {
  const r = await upgrade(url, opts);
  if (r.kind !== 'open') throw new Error(`expected a session, got ${r.kind === 'refused' ? `HTTP ${r.status} ${r.body}` : r.error.message}`);
  t.teardown(() => r.session.close());
  return r.session;
}

async function daemon(t: Test, opts: StartOptions = {}): Promise<Daemon> {
  const d = await startServer({ port: 0, ...opts });
  t.teardown(() => d.close());
  return d;
}

/** p's value, or fallback when p takes longer than ms; the timer never outlives p. */
function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function httpBase(d: Daemon): string {
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
  const s = await opened(t, d.url, { protocols: ['chat', P.SUBPROTOCOL] });
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
  const s = await opened(t, d.url, { token });
  t.ok(s.messages.some((m) => m.method === 'spiwire.welcome'), 'spiwire.welcome arrives');
  const r = await s.call('WSPGetSockName', { s: 4, namelen: 16 });
  t.same(r.result, { ret: P.SOCKET_ERROR, errno: P.WSAENOTSOCK }, 'the session answers calls');
  await opened(t, d.url, { headers: { authorization: `bearer   ${token}  ` } });
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
  await opened(t, d.url, { headers: { origin: allowed } });
  await opened(t, d.url);
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
  await opened(t, d.url, { token, headers: { origin: allowed } });
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
  const s = await opened(t, local, { token });
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
  t.same(h0.body, { status: 'ok', sessions: 0, sockets: 0 });

  const s = await opened(t, d.url);
  const r = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags: 0 });
  t.equal(r.result?.['errno'], 0, 'a socket was created');
  const h1 = await getJson(`${httpBase(d)}/healthz`);
  t.same(h1.body, { status: 'ok', sessions: 1, sockets: 1 }, 'the session and its socket are counted');

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

// ---- frame size ----

t.test('a frame larger than maxFrameBytes closes that WebSocket with 1009; other sessions are untouched', async (t) => {
  const maxFrameBytes = 4096;
  const d = await daemon(t, { limits: { maxFrameBytes } });
  const a = await opened(t, d.url);
  const b = await opened(t, d.url);
  const c = await opened(t, d.url);
  const welcome = await a.wait((m) => m.method === 'spiwire.welcome');
  t.equal((welcome.params?.['limits'] as Record<string, unknown>)['maxFrameBytes'], maxFrameBytes, 'the welcome announces the limit');

  const sock = await b.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 });
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
  const r = await b.call('WSPGetSockOpt', { s: handle, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r.result?.['ret'], 0, 'session B still answers, and its socket is still there');
  let h: Record<string, unknown> = {};
  for (let i = 0; i < 100; i++) {
    h = (await getJson(`${httpBase(d)}/healthz`)).body;
    if (h['sessions'] === 1) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  t.same(h, { status: 'ok', sessions: 1, sockets: 1 }, 'only session B and its socket remain');
});
