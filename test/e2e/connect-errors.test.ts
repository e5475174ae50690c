/**
 * The SDK's connect() over real sockets: a port with nothing listening, a plain HTTP server, a
 * TCP server that hangs up, a WebSocket server without spiwire's subprotocol, and a daemon with a
 * token each end in one SpiwireConnectError whose message says what is wrong (never a raw stack).
 */
import t, { type Test } from 'tap';
import * as http from 'node:http';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import * as S from '@spiwire/client';
import { closedPort, daemon } from '../helpers/harness.js';

async function refusal(p: Promise<unknown>): Promise<S.SpiwireConnectError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof S.SpiwireConnectError) return err;
    throw err;
  }
  throw new Error('connect() succeeded');
}

async function listening<T extends net.Server>(t: Test, server: T): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

t.test('nothing listening: "cannot reach ... connection refused (is it running?)"', async (t) => {
  const port = await closedPort('ipv4', 'tcp');
  const url = `ws://127.0.0.1:${port}/ws`;
  const e = await refusal(S.connect(url));
  t.equal(e.kind, 'unreachable');
  t.equal(e.message, `cannot reach the spiwire daemon at ${url}: connection refused (is it running?)`);
});

t.test('a URL that is not one: bad-url', async (t) => {
  const e = await refusal(S.connect('not a url'));
  t.equal(e.kind, 'bad-url');
  t.match(e.message, /is not a daemon URL/);
});

t.test('maskingKeys other than zero or random: a TypeError naming the option, before any connection', async (t) => {
  const port = await closedPort('ipv4', 'tcp');
  await t.rejects(S.connect(`ws://127.0.0.1:${port}/ws`, { maskingKeys: 'none' as 'zero' }), { name: 'TypeError', message: /maskingKeys is 'zero' or 'random'/ });
});

t.test('a plain HTTP server: "is not a spiwire daemon"', async (t) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<h1>hello</h1>');
  });
  // Upgrade requests are answered like any other request when no 'upgrade' listener exists.
  const port = await listening(t, server);
  const url = `ws://127.0.0.1:${port}/ws`;
  const e = await refusal(S.connect(url));
  t.equal(e.kind, 'not-spiwire');
  t.equal(e.message, `${url} is not a spiwire daemon: it answered the WebSocket upgrade with HTTP 200`);
});

t.test('an HTTP server answering 401 without a spiwire body: not a spiwire daemon', async (t) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(401, { 'www-authenticate': 'Basic' });
    res.end('go away');
  });
  const port = await listening(t, server);
  const e = await refusal(S.connect(`ws://127.0.0.1:${port}/ws`));
  t.equal(e.kind, 'not-spiwire');
  t.equal(e.status, 401);
});

t.test('a TCP server that hangs up: not a spiwire daemon', async (t) => {
  const server = net.createServer((c) => c.destroy());
  const port = await listening(t, server);
  const e = await refusal(S.connect(`ws://127.0.0.1:${port}/ws`));
  t.equal(e.kind, 'not-spiwire');
  t.match(e.message, /is not a spiwire daemon: the WebSocket handshake failed/);
});

t.test('a WebSocket server that is not spiwire: not a spiwire daemon', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => false });
  wss.on('connection', (ws) => ws.send('hello'));
  await new Promise<void>((r) => wss.once('listening', () => r()));
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())));
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const e = await refusal(S.connect(`ws://127.0.0.1:${address.port}/ws`));
  t.equal(e.kind, 'not-spiwire');
  t.match(e.message, /is not a spiwire daemon/);
});

t.test('a daemon with a token: no token and a wrong token are told apart, the right one opens', async (t) => {
  const d = await daemon(t, { token: 'connect-secret' });
  const none = await refusal(S.connect(d.url));
  t.equal(none.kind, 'token');
  t.equal(none.status, 401);
  t.equal(none.message, `the daemon at ${d.url} requires a token (HTTP 401): pass it with the token option`);
  const wrong = await refusal(S.connect(d.url, { token: 'nope' }));
  t.equal(wrong.kind, 'token');
  t.equal(wrong.message, `the daemon at ${d.url} refused the token (HTTP 401): check the token option`);
  const spi = await S.connect(d.url, { token: 'connect-secret' });
  t.ok(spi, 'the right token opens a session');
  await spi.close();
});

t.test('a daemon that refuses for another reason: its own words are quoted', async (t) => {
  const d = await daemon(t, { limits: { maxSessions: 1 } });
  const spi = await S.connect(d.url);
  t.teardown(() => spi.close());
  const e = await refusal(S.connect(d.url));
  t.equal(e.kind, 'refused');
  t.equal(e.status, 503);
  t.match(e.message, /refused the session \(HTTP 503\): the daemon has its maximum of 1 sessions/);
});
