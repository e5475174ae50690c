/**
 * Graceful stop: daemon.close() when embedded, SIGTERM / SIGINT for the CLI, and the CLI's exits
 * for --help, bad flags and a refused start.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import * as P from '@spiwire/proto';
import { startServer, type Daemon } from '../src/index.js';
import { SETTINGS } from '../src/internals.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RawSession, connectedSocket, cleanEnv, reapOnExit, connectOutcome, ipv4, jsonLines, roundTrip, run, session, startCli, tcpPeer, tcpSocket, until, within, type Msg } from './helpers/raw-client.js';

/**
 * A WebSocket client written by hand on a raw TCP socket: it completes the upgrade, then never
 * answers anything, the close handshake included. Resolves once the 101 response has arrived.
 */
async function unresponsiveClient(t: Test, port: number, path = '/ws'): Promise<{ socket: net.Socket; gone: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  t.teardown(() => {
    socket.destroy();
  });
  const gone = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no 101 within 5 s')), 5000);
    let head = '';
    const onData = (c: Buffer): void => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      clearTimeout(timer);
      if (head.startsWith('HTTP/1.1 101')) resolve();
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
    };
    socket.on('data', onData);
    socket.once('connect', () => {
      socket.write(
        [
          `GET ${path} HTTP/1.1`,
          `Host: 127.0.0.1:${port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
          `Sec-WebSocket-Protocol: ${P.SUBPROTOCOL}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
  });
  // Read (and ignore) whatever comes next, so TCP flow control does not get in the way.
  socket.resume();
  return { socket, gone };
}

// ---- (a) embedded ----

t.test('daemon.close(): blocked calls answer WSAENETDOWN, peers see their connections closed, new sessions are refused', async (t) => {
  const d: Daemon = await startServer({ port: 0 });
  let closed = false;
  t.teardown(() => (closed ? undefined : d.close()));
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);

  // A blocking WSPRecv on an emulated TCP socket whose peer sends nothing.
  const { h, conn } = await connectedSocket(s, peer);
  const recv = s.request('WSPRecv', { s: h, lengths: [100], flags: 0 }, 10000);
  // A blocking WSPAccept on a listening socket.
  const l = await tcpSocket(s);
  t.equal((await s.call('WSPBind', { s: l, name: ipv4(0), namelen: 16 }))['ret'], 0, 'bind the listener');
  t.equal((await s.call('WSPListen', { s: l, backlog: 1 }))['ret'], 0, 'listen');
  const lport = ((await s.call('WSPGetSockName', { s: l, namelen: 16 }))['name'] as P.SockAddr).port;
  const accept = s.request('WSPAccept', { s: l }, 10000);
  // A pending overlapped WSPRecv.
  const { h: ovs, conn: ovConn } = await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED);
  const ov = await s.call('WSPRecv', { s: ovs, lengths: [100], flags: 0, overlapped: { op: 42, thread: 1 } });
  t.same([ov['ret'], ov['errno']], [P.SOCKET_ERROR, P.WSA_IO_PENDING], 'the overlapped receive is pending');
  // An answer sent by now would be ahead of the round trip's.
  await roundTrip(s);
  t.notOk(s.messages.some((m) => m.id === recv.id || m.id === accept.id), 'WSPRecv and WSPAccept are blocked before close()');

  const closing = d.close();
  closed = true;

  const r = await recv.response;
  t.same(r.result, { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN }, 'the blocked WSPRecv answers SOCKET_ERROR with lpErrno WSAENETDOWN (10050)');
  t.equal(r.result?.['errno'], 10050, 'lpErrno is 10050');
  const a = await accept.response;
  t.same(a.result, { ret: P.INVALID_SOCKET, errno: P.WSAENETDOWN }, 'the blocked WSPAccept answers INVALID_SOCKET with WSAENETDOWN');
  const completion = await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 42);
  t.equal(completion.params?.['error'], P.WSAENETDOWN, 'the pending overlapped WSPRecv completes with WSAENETDOWN');
  t.equal(completion.params?.['s'], ovs, 'the completion names the socket');

  const wsClosed = await within(s.closed, 5000, null);
  t.equal(wsClosed?.code, 1001, 'the session ends with 1001 (going away)');
  t.ok(s.messages.indexOf(r) >= 0 && s.messages.indexOf(completion) >= 0, 'the answers arrived before the close');
  t.not(await within(conn.gone, 5000, 'still open'), 'still open', 'the peer of the blocked WSPRecv sees its connection closed');
  t.not(await within(ovConn.gone, 5000, 'still open'), 'still open', 'the peer of the overlapped WSPRecv sees its connection closed');

  t.equal(await within(closing.then(() => 'closed'), 5000, 'timeout'), 'closed', 'close() resolves');
  t.equal(await within(d.close().then(() => 'closed'), 1000, 'timeout'), 'closed', 'a second close() resolves too');

  const again = await RawSession.open(d.url).then(
    (x) => {
      void x.close();
      return 'opened';
    },
    (err: NodeJS.ErrnoException) => err.code ?? err.message,
  );
  t.equal(again, 'ECONNREFUSED', 'a new session afterwards is refused: nothing listens any more');
  t.equal(await connectOutcome(d.port), 'ECONNREFUSED', 'the daemon port is closed');
  t.equal(await connectOutcome(lport), 'ECONNREFUSED', 'the emulated listening socket is closed');
});

t.test('while close() waits for a slow client: new sessions get 503 and /healthz says stopping', async (t) => {
  const d: Daemon = await startServer({ port: 0 });
  let closed = false;
  t.teardown(() => (closed ? undefined : d.close()));
  const slow = await unresponsiveClient(t, d.port);
  const health0 = (await (await fetch(`http://127.0.0.1:${d.port}/healthz`)).json()) as Record<string, unknown>;
  t.same(health0, { status: 'ok', sessions: 1, sockets: 0, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 }, 'the hand-made client holds a session');

  const started = Date.now();
  // close() marks the daemon as stopping at once, then waits (up to 2 s) for the slow client.
  const closing = d.close();
  closed = true;
  const res = await fetch(`http://127.0.0.1:${d.port}/healthz`);
  const health = (await res.json()) as Record<string, unknown>;
  t.equal(health['status'], 'stopping', '/healthz reports stopping during shutdown');
  const refused = await RawSession.open(d.url).then(
    (x) => {
      void x.close();
      return 'opened';
    },
    (err: Error & { status?: number; code?: string }) => err.status ?? err.code ?? err.message,
  );
  t.equal(refused, 503, 'an upgrade during shutdown is refused with 503');

  t.equal(await within(closing.then(() => 'closed'), 6000, 'timeout'), 'closed', 'close() finishes although the client never answers the close handshake');
  const took = Date.now() - started;
  t.ok(took < 5000, `close() took ${took} ms`);
  t.not(await within(slow.gone.then(() => 'gone'), 3000, 'still open'), 'still open', 'the unresponsive client was disconnected');
});

t.test('daemon.close() with no sessions resolves promptly and is idempotent', async (t) => {
  const d = await startServer({ port: 0 });
  const started = Date.now();
  await Promise.all([d.close(), d.close()]);
  t.ok(Date.now() - started < 2000, 'prompt');
  t.equal(await connectOutcome(d.port), 'ECONNREFUSED', 'the port is closed');
});

// ---- (b) the CLI ----

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`CLI: ${signal} stops the daemon gracefully and exits 0`, async (t) => {
    const d = await startCli(t);
    t.match(d.url, /^ws:\/\/127\.0\.0\.1:\d+\/ws$/, 'listens on loopback');
    const startLine = jsonLines(d.stdout()).find((l) => typeof l['url'] === 'string')!;
    t.equal(startLine['tokenRequired'], false, 'the start line says no token is required');
    const peer = await tcpPeer(t);
    const s = await session(t, d.url);
    const { h, conn } = await connectedSocket(s, peer);
    const recv = s.request('WSPRecv', { s: h, lengths: [10], flags: 0 }, 10000);
    // The receive is blocked at the daemon before the signal: the round trip follows it.
    await roundTrip(s);
    t.notOk(s.messages.some((m) => m.id === recv.id), 'the WSPRecv is blocked');

    const started = Date.now();
    t.ok(d.proc.kill(signal), `${signal} sent`);
    const exit = await within(d.exited, 5000, null);
    t.ok(exit, `the process exited within 5 s (${Date.now() - started} ms)`);
    t.same(exit, { code: 0, signal: null }, 'exit code 0');
    const r = await recv.response.catch((e: Error) => ({ error: { message: e.message } }) as Msg);
    t.same(r.result, { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN }, 'the blocked WSPRecv was answered with WSAENETDOWN before the exit');
    const wsClosed = await within(s.closed, 2000, null);
    t.equal(wsClosed?.code, 1001, 'the session was closed with 1001');
    t.not(await within(conn.gone, 2000, 'still open'), 'still open', 'the peer sees its connection closed');
    const lines = jsonLines(d.stdout());
    t.ok(lines.some((l) => l['msg'] === 'shutting down' && l['signal'] === signal), `a "shutting down" line names ${signal}`);
    t.ok(lines.some((l) => l['msg'] === 'stopped'), 'a "stopped" line');
    t.same(lines.filter((l) => 'unparsed' in l), [], 'stdout holds only JSON log lines');
    t.equal(await connectOutcome(d.port), 'ECONNREFUSED', 'nothing listens any more');
  });
}

t.test('close() also ends connections without a session: a resume handshake never sent, a refused resume never answered', async (t) => {
  const d: Daemon = await startServer({ port: 0 });
  let closed = false;
  t.teardown(() => (closed ? undefined : d.close()));
  // A resume connection whose spiwire.resume never comes (the daemon would wait 10 s for it).
  const silent = await unresponsiveClient(t, d.port, '/ws?resume=nobody&daemon=nowhere');
  // A resume connection refused at once (its first message is not a frame), whose client never
  // answers the 4009 close and keeps its side open.
  const refused = await unresponsiveClient(t, d.port, '/ws?resume=nobody&daemon=nowhere');
  const frames: Buffer[] = [];
  refused.socket.on('data', (c: Buffer) => frames.push(c));
  // A masked binary frame by hand (mask key 0): the 5 bytes 09 00 00 00 01, no frame of the spec.
  refused.socket.write(Buffer.from([0x82, 0x85, 0, 0, 0, 0, 9, 0, 0, 0, 1]));
  t.ok(await until(() => Buffer.concat(frames).includes(Buffer.from([0x0f, 0xa9])), 5000), 'the daemon sent its close frame, code 4009');

  const started = Date.now();
  const closing = d.close();
  closed = true;
  t.equal(await within(closing.then(() => 'closed'), 6000, 'timeout'), 'closed', 'close() finishes although neither client answers');
  const took = Date.now() - started;
  t.ok(took < 5000, `close() took ${took} ms`);
  t.not(await within(silent.gone, 1000, 'still open'), 'still open', 'the silent resume connection was dropped');
  t.not(await within(refused.gone, 1000, 'still open'), 'still open', 'the refused one too');
});

t.test('CLI: SIGTERM with a client that never answers the close handshake still exits 0 promptly', async (t) => {
  const d = await startCli(t);
  await unresponsiveClient(t, d.port);
  const started = Date.now();
  d.proc.kill('SIGTERM');
  const exit = await within(d.exited, 8000, null);
  t.same(exit, { code: 0, signal: null }, `exit code 0 after ${Date.now() - started} ms`);
  t.ok(Date.now() - started < 5000, 'within 5 s');
});

for (const reader of ['stops reading', 'is gone'] as const) {
  t.test(`CLI: SIGTERM stops the daemon when the reader of its standard output ${reader}`, async (t) => {
    const d = await startCli(t, ['--log-level', 'debug']);
    if (reader === 'stops reading') d.proc.stdout!.pause();
    else d.proc.stdout!.destroy();
    // Plenty of log lines: each session logs its start and end, at debug more.
    for (let i = 0; i < 300; i++) {
      const s = await RawSession.open(d.url);
      s.ws.send(Buffer.from([1, 2, 3]));
      await s.close();
    }
    const r = await within(fetch(`http://127.0.0.1:${d.port}/healthz`).then((x) => x.status), 5000, 'no answer');
    t.equal(r, 200, 'the daemon still answers /healthz');
    d.proc.kill('SIGTERM');
    const exit = await within(d.exited, 8000, null);
    t.same(exit, { code: 0, signal: null }, 'it exits 0 within 8 s');
  });
}

t.test('npm start: SIGTERM to npm stops the daemon too (no orphan left running)', async (t) => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const npm = spawn('npm', ['start', '--', '--port', '0'], { cwd: root, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  reapOnExit(npm);
  let out = '';
  npm.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const npmExited = new Promise<void>((r) => npm.once('close', () => r()));
  let daemonPid = 0;
  t.teardown(async () => {
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
    if (daemonPid && alive(daemonPid)) process.kill(daemonPid, 'SIGKILL');
    await npmExited;
  });
  const started = await within(
    new Promise<Record<string, unknown>>((resolve) => {
      const look = (): void => {
        const line = jsonLines(out).find((l) => typeof l['url'] === 'string');
        if (line) resolve(line);
      };
      npm.stdout!.on('data', look);
    }),
    60000,
    null,
  );
  t.ok(started, 'the daemon started under npm start');
  daemonPid = Number(started?.['pid']);
  t.ok(daemonPid > 0 && daemonPid !== npm.pid, `the daemon runs as process ${daemonPid}`);
  npm.kill('SIGTERM');
  await within(npmExited, 10000, null);
  // Not our child: no exit event, so polled (every 50 ms, bounded).
  const gone = await until(() => !alive(daemonPid), 10000, 50);
  t.ok(gone, 'the daemon process has exited');
  t.ok(jsonLines(out).some((l) => l['msg'] === 'stopped'), 'after a graceful stop');
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('CLI: --help prints the usage and exits 0', async (t) => {
  const r = run(t, ['--help']);
  const exit = await within(r.exited, 10000, null);
  const text = r.stdout() + r.stderr();
  t.match(text, /usage: spiwire/, 'prints the usage');
  for (const s of SETTINGS) {
    t.ok(text.includes(s.flag), `mentions ${s.flag}`);
    t.ok(text.includes(s.env), `mentions ${s.env}`);
  }
  t.equal(exit?.code, 0, 'asking for help is not an error: exit code 0', { exit, stderr: r.stderr().slice(0, 80) });
});

t.test('CLI: a bad flag or a bad value exits 2 with the reason on stderr', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /unknown flag --bogus/],
    [['--port', 'abc'], /--port must be a non-negative integer/],
    [['--port'], /--port needs a value/],
    [['stray'], /unknown flag stray/],
  ];
  for (const [args, why] of cases) {
    const r = run(t, args);
    const exit = await within(r.exited, 10000, null);
    t.equal(exit?.code, 2, `${args.join(' ')}: exit code 2`);
    t.match(r.stderr(), why, `${args.join(' ')}: stderr says why`);
  }
  const envRun = run(t, [], { SPIWIRE_PORT: 'nope' });
  const envExit = await within(envRun.exited, 10000, null);
  t.equal(envExit?.code, 2, 'a bad environment value: exit code 2');
  t.match(envRun.stderr(), /SPIWIRE_PORT/, 'stderr names the variable');
});

t.test('CLI: --host 0.0.0.0 without a token exits non-zero with a clear message, without listening', async (t) => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  for (const host of ['0.0.0.0', '::']) {
    const r = run(t, ['--host', host, '--port', String(port), '--log-level', 'info']);
    const exit = await within(r.exited, 10000, null);
    t.ok(exit && exit.code !== 0 && exit.code !== null, `${host}: exit code ${exit?.code} is non-zero`);
    const text = r.stdout() + r.stderr();
    t.match(text, new RegExp(`refusing to listen on ${host.replace(/\./g, '\\.')} without a token`), `${host}: the output says why`);
    t.notOk(jsonLines(r.stdout()).some((l) => typeof l['url'] === 'string'), `${host}: it never logged a url`);
  }
});

t.test('CLI: a port already in use exits non-zero with the reason', async (t) => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => busy.close(() => r())));
  const port = (busy.address() as net.AddressInfo).port;
  const r = run(t, ['--port', String(port)]);
  const exit = await within(r.exited, 10000, null);
  t.ok(exit && exit.code !== 0 && exit.code !== null, `exit code ${exit?.code} is non-zero`);
  t.match(r.stdout() + r.stderr(), /EADDRINUSE/, 'the output names EADDRINUSE');
});
