/**
 * Session resume (proto/README.md section 20) against a real daemon, through a proxy that cuts
 * the connection on command: calls in flight across a cut complete exactly once with their real
 * results, peers receive exactly the reported bytes, and the hooks say what happened. Also the
 * refusals: a wrong token, the grace passed, another daemon, and resume turned off.
 */
import * as net from 'node:net';
import { Writable } from 'node:stream';
import t from 'tap';
import type { Test } from 'tap';
import pino from 'pino';
import WebSocket from 'ws';
import * as S from '@spiwire/client';
import { FILLER_BYTES, daemon, ovSend, overlappedTcp, connectedTcp, pattern, send, session, tcpPeer, drainUntil, recvInto, type PeerConnection } from '../helpers/harness.js';
import { cuttingProxy, type CuttingProxy } from '../helpers/cutting-proxy.js';

interface Hooks {
  disconnected: number;
  resumed: number;
  lost: string[];
  /** Resolves at the next resumed. */
  nextResume(): Promise<void>;
  nextLost(): Promise<void>;
}

function hooks(spi: S.SpiSession): Hooks {
  let onResume: Array<() => void> = [];
  let onLost: Array<() => void> = [];
  const h: Hooks = {
    disconnected: 0,
    resumed: 0,
    lost: [],
    nextResume: () => new Promise((r) => onResume.push(r)),
    nextLost: () => new Promise((r) => onLost.push(r)),
  };
  spi.on('disconnected', () => h.disconnected++);
  spi.on('resumed', () => {
    h.resumed++;
    const w = onResume;
    onResume = [];
    for (const f of w) f();
  });
  spi.on('lost', (e) => {
    h.lost.push(e.reason);
    const w = onLost;
    onLost = [];
    for (const f of w) f();
  });
  return h;
}

async function setup(t: Test, grace = 20000, opts: S.ConnectOptions = {}): Promise<{ proxy: CuttingProxy; spi: S.SpiSession; h: Hooks; url: string }> {
  const d = await daemon(t, { limits: { resumeGraceMs: grace } });
  const proxy = await cuttingProxy(t, d.url);
  const spi = await session(t, proxy.url, opts);
  return { proxy, spi, h: hooks(spi), url: d.url };
}

async function peerGets(conn: PeerConnection, expected: Buffer): Promise<boolean> {
  const got = await conn.waitFor(expected.length, 20000);
  // A little longer: nothing more may come.
  await new Promise((r) => setTimeout(r, 50));
  return conn.received().equals(expected);
}

t.test('the welcome offers resume; resume: false gets no offer', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d.url);
  const offer = spi.welcome.resume;
  t.ok(offer, 'an offer');
  t.equal(offer?.graceMs, 30000, 'the default grace');
  t.match(offer?.token, /^[A-Za-z0-9_-]{43}$/, 'a random token');
  t.equal(spi.welcome.limits.replayLimitBytes, 64 * 1024 * 1024);
  const off = await session(t, d.url, { resume: false });
  t.equal(off.welcome.resume, undefined, 'no offer when the client does not ask');
  const d0 = await daemon(t, { limits: { resumeGraceMs: 0 } });
  const none = await session(t, d0.url);
  t.equal(none.welcome.resume, undefined, 'no offer from a daemon with --resume-grace 0');
});

t.test('blocking sends across a cut between frames: the session goes on', async (t) => {
  const { proxy, spi, h } = await setup(t);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('hello ')]), [0, 0, 6]);
  const resumed = h.nextResume();
  proxy.cutNow();
  // Made while the SDK is reconnecting: it waits, then runs once.
  t.same(await send(spi, s, [Buffer.from('world')]), [0, 0, 5], 'a send made during the cut');
  await resumed;
  t.ok(await peerGets(conn, Buffer.from('hello world')), 'the peer got each byte once, in order');
  t.equal(h.disconnected, 1);
  t.equal(h.resumed, 1);
  t.same(h.lost, []);
  t.ok(spi.isOpen);
});

// Random masking keys: frames masked in place are kept for the resume and restored before they go again.
for (const [dir, maskingKeys] of [['up', 'zero'], ['up', 'random'], ['down', 'zero']] as const) {
  t.test(`overlapped sends pending across a cut in the middle of a frame (${dir}, ${maskingKeys} masking keys)`, async (t) => {
    const { proxy, spi, h } = await setup(t, 20000, { maskingKeys });
    const peer = await tcpPeer(t, 'ipv4', { paused: true });
    const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
    const calls: Array<{ tag: number; err: number; cb: number }> = [];
    const routine = (tag: number): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE => (err, cb) => void calls.push({ tag, err, cb });
    const filler = pattern(FILLER_BYTES, 7);
    const first = await ovSend(spi, s, [filler], { routine: routine(0) });
    t.same([first.ret, first.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the filler pends');
    const parts = [pattern(3000, 1), pattern(70000, 2), pattern(5, 3)];
    const cut = proxy.cutAt(dir, { bytes: dir === 'up' ? 1500 : 40 });
    // The second part's frame is larger than 1500 bytes: the cut falls inside it (up); the
    // completions' frame is cut after 40 bytes (down).
    const rs = await Promise.all(parts.map((p, i) => ovSend(spi, s, [p], { routine: routine(i + 1) })));
    for (const r of rs) t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING]);
    conn.socket.resume();
    await cut;
    const expected = Buffer.concat([filler, ...parts]);
    t.ok(await peerGets(conn, expected), 'the peer got exactly the bytes, once, in order');
    t.ok(await drainUntil(spi, () => calls.length >= 4, 400), 'every routine ran');
    await new Promise((r) => setTimeout(r, 100));
    await spi.SleepEx(0, true);
    t.same(calls.map((c) => c.tag).sort(), [0, 1, 2, 3], 'each routine once');
    t.same(calls.map((c) => [c.err, c.cb]).sort((a, b) => a[1]! - b[1]!), [[0, 5], [0, 3000], [0, 70000], [0, FILLER_BYTES]], 'with the full counts');
    t.equal(spi.pendingOperations, 0);
    t.equal(h.resumed, 1, 'resumed once');
  });
}

t.test('a send larger than a message, streamed in pieces, across cuts in both directions', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000, maxFrameBytes: 1 << 20, streamWindowBytes: 2 << 20 } });
  const proxy = await cuttingProxy(t, d.url);
  const spi = await session(t, proxy.url);
  const h = hooks(spi);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  const big = pattern(5 * 1024 * 1024, 77);
  const calls: Array<[number, number]> = [];
  // A piece is cut in the middle on its way up; then the daemon's progress reports on their way down.
  void proxy.cutAt('up', { bytes: 1_500_000 }).then(() => proxy.nextConnection()).then(() => new Promise((r) => setTimeout(r, 20))).then(() => proxy.cutAt('down', { frames: 3 }));
  const r = await ovSend(spi, s, [big], { routine: (err, cb) => void calls.push([err, cb]) });
  t.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, 'the send started');
  t.ok(await peerGets(conn, big), 'the peer got the 5 MiB once, in order');
  t.ok(await drainUntil(spi, () => calls.length > 0, 400));
  await spi.SleepEx(50, true);
  t.same(calls, [[0, big.length]], 'one completion with the full count');
  t.ok(h.resumed >= 1, `resumed (${h.resumed} times)`);
  t.same(h.lost, []);
});

t.test('a blocking receive and network events across a cut, and cuts while reconnecting', async (t) => {
  const { proxy, spi, h } = await setup(t);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const other = await connectedTcp(spi, 'ipv4', peer);
  const ev = spi.WSACreateEvent();
  t.equal(await spi.WSPEventSelect(other.s, ev, S.FD_READ, S.out(0)), 0);
  const recv = recvInto(spi, s, [10]);
  await new Promise((r) => setTimeout(r, 50));
  // The network is down for a while: the first reconnections fail, some of them mid-handshake.
  proxy.setDown(true, 30);
  proxy.cutNow();
  await new Promise((r) => setTimeout(r, 300));
  conn.socket.write('0123456789');
  other.conn.socket.write('event');
  proxy.setDown(true);
  await new Promise((r) => setTimeout(r, 300));
  const resumed = h.nextResume();
  proxy.setDown(false);
  await resumed;
  const r = await recv;
  t.equal(r.ret, 0);
  t.equal(r.data.toString(), '0123456789', 'the blocking receive got its bytes once');
  t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'the event is signalled');
  const ne = { lNetworkEvents: 0, iErrorCode: [] as number[] };
  t.equal(await spi.WSPEnumNetworkEvents(other.s, ev, ne, S.out(0)), 0);
  t.equal(ne.lNetworkEvents, S.FD_READ, 'FD_READ recorded once');
  t.ok(proxy.connections >= 3, 'reconnections were refused before one went through');
  t.equal(h.resumed, 1);
  t.equal(h.disconnected, 1);
});

t.test('a silent partition: the SDK notices by its heartbeat, and its resume takes the session over from the connection the daemon still holds', async (t) => {
  const { proxy, spi, h } = await setup(t);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('before ')]), [0, 0, 7]);
  const resumed = h.nextResume();
  proxy.blackhole();
  // Sent into the void: it is kept, and sent again on the new connection.
  const during = send(spi, s, [Buffer.from('during')]);
  await resumed;
  t.same(await during, [0, 0, 6]);
  t.ok(await peerGets(conn, Buffer.from('before during')), 'the peer got each byte once');
  t.equal(h.resumed, 1);
});

t.test('a resume with a wrong token is refused; the session is still resumable with the right one', async (t) => {
  const { proxy, spi, h, url } = await setup(t);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const offer = spi.welcome.resume!;
  proxy.setDown(true);
  proxy.cutNow();
  const answer = await rawResume(url, { session: spi.welcome.session, token: 'x'.repeat(43), received: 0, daemonId: offer.daemonId });
  t.equal(answer.error?.code, S.RESUME_REFUSED);
  t.equal(answer.error?.data?.['reason'], 'bad-token');
  t.equal(answer.closeCode, S.RESUME_REFUSED_CLOSE_CODE);
  const other = await rawResume(url, { session: spi.welcome.session, token: offer.token, received: 0, daemonId: 'another-daemon' });
  t.equal(other.error?.data?.['reason'], 'not-here', 'a resume meant for another daemon is refused');
  t.equal(other.error?.data?.['daemonId'], offer.daemonId, 'naming this daemon');
  const unknown = await rawResume(url, { session: 'no-such-session', token: offer.token, received: 0, daemonId: offer.daemonId });
  t.equal(unknown.error?.data?.['reason'], 'unknown-session');
  const resumed = h.nextResume();
  proxy.setDown(false);
  await resumed;
  t.same(await send(spi, s, [Buffer.from('after')]), [0, 0, 5]);
  t.ok(await peerGets(conn, Buffer.from('after')));
});

t.test('after the grace the session is lost: calls fail with WSAENETDOWN, pending operations complete once', async (t) => {
  const { proxy, spi, h } = await setup(t, 500);
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s } = await overlappedTcp(spi, 'ipv4', peer);
  const calls: number[] = [];
  const first = await ovSend(spi, s, [pattern(FILLER_BYTES, 9)], { routine: (err) => void calls.push(err) });
  t.equal(first.err, S.WSA_IO_PENDING);
  const lost = h.nextLost();
  proxy.setDown(true);
  proxy.cutNow();
  const blocked = send(spi, s, [Buffer.from('x')]);
  await lost;
  t.same(await blocked, [S.SOCKET_ERROR, S.WSAENETDOWN, -1], 'a call waiting across the cut fails with WSAENETDOWN');
  t.same(await send(spi, s, [Buffer.from('y')]), [S.SOCKET_ERROR, S.WSAENETDOWN, -1], 'and so do later calls');
  t.ok(await drainUntil(spi, () => calls.length > 0, 40));
  t.same(calls, [S.WSAENETDOWN], 'the pending send completes once, with WSAENETDOWN');
  t.equal(h.lost.length, 1);
  t.notOk(spi.isOpen);
});

t.test('a daemon that stops while a session waits for its resume: the resume meets 503 and the SDK loses the session at once, not after the grace', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 60000, drainMs: 20000 } });
  const proxy = await cuttingProxy(t, d.url);
  const spi = await session(t, proxy.url);
  const h = hooks(spi);
  // Bytes the daemon holds for a peer that does not read keep it stopping (draining) for a while,
  // answering upgrades with 503 meanwhile.
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  t.equal((await ovSend(spi, s, [pattern(FILLER_BYTES, 21)])).err, S.WSA_IO_PENDING, 'a send waits for the peer');
  const disconnected = new Promise<void>((r) => spi.on('disconnected', () => r()));
  proxy.setDown(true);
  proxy.cutNow();
  await disconnected;
  const lost = h.nextLost();
  const stopping = d.close();
  proxy.setDown(false);
  t.equal(await Promise.race([lost.then(() => 'lost'), stopping.then(() => 'stopped')]), 'lost', 'the session is lost while the daemon is still stopping');
  t.equal(h.resumed, 0, 'never resumed');
  t.match(h.lost[0], /the daemon is shutting down/, 'the reason says why');
  conn.socket.resume();
  await stopping;
});

t.test('close() while reconnecting ends the session on the daemon now, not after the grace', async (t) => {
  const { proxy, spi, h } = await setup(t, 30000);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('bye')]), [0, 0, 3]);
  const disconnected = new Promise<void>((r) => spi.on('disconnected', () => r()));
  proxy.setDown(true);
  proxy.cutNow();
  await disconnected;
  proxy.setDown(false);
  const started = performance.now();
  await spi.close();
  t.equal(await Promise.race([conn.ended.then(() => 'FIN'), new Promise((r) => setTimeout(() => r('no FIN'), 5000))]), 'FIN', 'the peer sees FIN');
  t.ok(performance.now() - started < 5000, 'well within the grace');
  t.equal(conn.received().toString(), 'bye');
  t.same([h.resumed, h.lost], [0, []], 'neither resumed nor lost: closed');
});

t.test('resume: false: a cut ends the session as before', async (t) => {
  const d = await daemon(t);
  const proxy = await cuttingProxy(t, d.url);
  const spi = await session(t, proxy.url, { resume: false });
  const h = hooks(spi);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  proxy.cutNow();
  await conn.ended;
  t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENETDOWN, -1]);
  t.equal(h.disconnected + h.resumed + h.lost.length, 0, 'no hooks');
});

/** What a rig's run produced: every call's result, every completion, and the echo it read back. */
interface RigResult {
  calls: Array<[number, number]>;
  routines: Array<[number, number, number]>;
  events: Array<[number, number, number]>;
  shutdown: number;
  echoed: string;
}

/**
 * A test rig as docker-compose.yml's (test/rig/compose-rig.ts): overlapped sends with routines and
 * with events to a TCP echo peer, WSPShutdown, then WSPRecv until the echo's FIN. During calls
 * 10 to 30, while cut is given, the connection to the daemon is down for 5 seconds.
 */
async function rigRun(t: Test, url: string, echoPort: number, cut: CuttingProxy | null, onSession: (spi: S.SpiSession) => void = () => undefined): Promise<RigResult> {
  const spi = await session(t, url);
  onSession(spi);
  const sizes = Array.from({ length: 40 }, (_, i) => 500 + ((i * 7919) % 60000));
  const sent = sizes.map((n, i) => pattern(n, 1000 + i));
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  if ((await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: echoPort }, 16, null, null, null, null, e)) !== 0) throw new Error(`connect: ${e.value}`);
  const routines: Array<[number, number, number]> = [];
  const evs: Array<{ i: number; ov: S.WSAOVERLAPPED; ev: number }> = [];
  const calls: Array<[number, number]> = [];
  let back: Promise<void> | null = null;
  for (let i = 0; i < sent.length; i++) {
    if (cut && i === 10) {
      cut.setDown(true);
      cut.cutNow();
      back = new Promise((r) => setTimeout(r, 5000)).then(() => cut.setDown(false));
    }
    const withRoutine = i % 2 === 0;
    const ev = withRoutine ? 0 : spi.WSACreateEvent();
    const ov = new S.WSAOVERLAPPED(ev || undefined);
    const r = await ovSend(spi, s, [sent[i]!], withRoutine ? { ov, routine: (err, cb) => void routines.push([i, err, cb]) } : { ov });
    // A send completes at once or pends, depending on timing: either way it succeeded.
    calls.push([r.ret === 0 || r.err === S.WSA_IO_PENDING ? 0 : r.err, 0]);
    if (!withRoutine) evs.push({ i, ov, ev });
  }
  await back;
  await drainUntil(spi, () => routines.length >= 20, 400);
  const events: Array<[number, number, number]> = [];
  for (const x of evs) {
    const cb = S.out(0);
    const er = S.out(0);
    const ok = await spi.WSPGetOverlappedResult(s, x.ov, cb, true, S.out(0), er);
    events.push([x.i, ok === S.TRUE ? 0 : er.value, cb.value]);
  }
  const shutdown = await spi.WSPShutdown(s, S.SD_SEND, e);
  const echo: Buffer[] = [];
  for (;;) {
    const r = await recvInto(spi, s, [65536]);
    if (r.ret !== 0) throw new Error(`recv: ${r.errno}`);
    if (r.bytes === 0) break;
    echo.push(Buffer.from(r.data));
  }
  const all = Buffer.concat(sent);
  const got = Buffer.concat(echo);
  return {
    calls,
    routines: routines.sort((a, b) => a[0] - b[0]),
    events,
    shutdown,
    echoed: got.equals(all) ? `all ${all.length} bytes, in order` : `${got.length} bytes, not the ${all.length} sent`,
  };
}

t.test('a rig that loses its connection for 5 seconds in the middle finishes with the same results as without the cut', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  const echo = net.createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => echo.close(() => r())));
  const echoAddr = echo.address();
  const echoPort = typeof echoAddr === 'object' && echoAddr ? echoAddr.port : 0;
  const plain = await rigRun(t, d.url, echoPort, null);
  const proxy = await cuttingProxy(t, d.url);
  const started = performance.now();
  const seen: { h?: Hooks } = {};
  const cut = await rigRun(t, proxy.url, echoPort, proxy, (spi) => (seen.h = hooks(spi)));
  t.ok(performance.now() - started >= 5000, 'the cut lasted 5 seconds');
  t.same(seen.h && [seen.h.disconnected, seen.h.resumed, seen.h.lost], [1, 1, []], 'one drop, one resume, nothing lost');
  t.same(cut, plain, 'the same results');
  t.equal(plain.routines.length, 20);
  t.equal(plain.events.length, 20);
  t.ok(plain.routines.every(([, err]) => err === 0) && plain.events.every(([, err]) => err === 0), 'every send succeeded, with its full count');
  t.match(plain.echoed, /^all \d+ bytes, in order$/);
});

/** A pino logger that keeps the parsed lines, to check what the daemon logged and at which level. */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

t.test('past the replay bound while waiting for a resume, the session ends; the SDK loses it', async (t) => {
  const { logger, lines } = capturingLogger();
  const d = await daemon(t, { logger, limits: { resumeGraceMs: 20000, replayLimitBytes: 10000 } });
  const proxy = await cuttingProxy(t, d.url);
  const spi = await session(t, proxy.url);
  const h = hooks(spi);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const recv = recvInto(spi, s, [65536]);
  await new Promise((r) => setTimeout(r, 50));
  proxy.setDown(true);
  proxy.cutNow();
  // The receive's reply, 64 KiB, is more than the session may keep for its client.
  conn.socket.write(Buffer.alloc(65536, 1));
  await conn.ended;
  const lost = h.nextLost();
  proxy.setDown(false);
  await lost;
  t.match(h.lost[0], /unknown-session/, 'the resume finds no session');
  t.same([(await recv).ret, (await recv).errno], [S.SOCKET_ERROR, S.WSAENETDOWN], 'the call in flight fails with WSAENETDOWN');
  t.ok(lines.some((l) => l['msg'] === 'session can no longer be resumed' && l['level'] === 30), 'the reason is logged at info');
  t.ok(lines.some((l) => l['msg'] === 'session ended'), 'the session ended');
  t.notOk(lines.some((l) => Number(l['level']) >= 50), 'no error lines');
});

/** A port that is free now, for a daemon that must know its own URL before it starts. */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

t.test('behind a load balancer: a resume that reaches another daemon is refused (not-here); --resume-url reaches the right one', async (t) => {
  const other = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  // Without a resume URL: the balancer now sends new connections to the other daemon.
  const a = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  const lb = await cuttingProxy(t, a.url);
  const spi = await session(t, lb.url);
  const h = hooks(spi);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  lb.retarget(other.url);
  const lost = h.nextLost();
  lb.cutNow();
  await lost;
  t.match(h.lost[0], /not-here/, 'refused: the session is held by another daemon');
  t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENETDOWN, -1]);
  // The refused resume changed nothing on the daemon that answered, and the session's own daemon ends it after its grace.
  t.equal(((await (await fetch(other.url.replace('ws:', 'http:').replace('/ws', '/healthz'))).json()) as { sessions: number }).sessions, 0);
  void conn;

  // With --resume-url, the SDK reconnects to the daemon itself.
  const port = await freePort();
  const b = await daemon(t, { port, resumeUrl: `ws://127.0.0.1:${port}/ws`, limits: { resumeGraceMs: 20000 } });
  const lb2 = await cuttingProxy(t, b.url);
  const spi2 = await session(t, lb2.url);
  t.equal(spi2.welcome.resume?.url, `ws://127.0.0.1:${port}/ws`, 'the welcome names the daemon\'s own URL');
  const h2 = hooks(spi2);
  const c2 = await connectedTcp(spi2, 'ipv4', peer);
  lb2.retarget(other.url);
  const resumed = h2.nextResume();
  lb2.cutNow();
  await resumed;
  t.same(await send(spi2, c2.s, [Buffer.from('direct')]), [0, 0, 6]);
  t.ok(await peerGets(c2.conn, Buffer.from('direct')));
  t.same(h2.lost, []);
});

t.test('a request sent again by id after a resume gets its original reply, and runs once', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  const stats = async (): Promise<number> => ((await (await fetch(d.url.replace('ws:', 'http:').replace('/ws', '/stats'))).json()) as { sockets: number }).sockets;
  const first = await rawSession(`${d.url}?resumable=1`);
  const welcome = first.messages[0]!['params'];
  if (!S.isRecord(welcome) || !S.isRecord(welcome['resume'])) throw new Error('no resume offer');
  const offer = welcome['resume'];
  const create = JSON.stringify({ jsonrpc: '2.0', id: 'sock-1', method: 'WSPSocket', params: { af: S.AF_INET, type: S.SOCK_STREAM, protocol: S.IPPROTO_TCP, g: 0, flags: 0 } });
  first.ws.send(create);
  const reply = await first.next();
  const handle = S.isRecord(reply['result']) ? reply['result']['ret'] : undefined;
  t.type(handle, 'number');
  // Gone before acknowledging anything: the reply is kept for a resume.
  first.ws.terminate();
  await new Promise((r) => setTimeout(r, 100));
  const u = new URL(d.url);
  u.searchParams.set('resume', String(welcome['session']));
  u.searchParams.set('daemon', String(offer['daemonId']));
  const second = await rawSession(u.toString(), JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: welcome['session'], token: offer['token'], received: 0, daemonId: offer['daemonId'] } }));
  const resumed = second.messages[0]!;
  t.equal(resumed['method'], 'spiwire.resumed');
  t.same(S.isRecord(resumed['params']) ? resumed['params']['received'] : undefined, 1, 'the daemon had received the request');
  const replayed = await second.next();
  t.same(replayed, reply, 'the reply the client had not acknowledged comes again');
  // A client that does not follow the counts sends the request again, by id.
  second.ws.send(create);
  const again = await second.next();
  t.same(again, reply, 'the original reply, not a second run');
  t.equal(await stats(), 1, 'one socket only');
  second.ws.close(1000);
});

t.test("a text client's count agrees with the daemon's: an ack alone is not counted, even when a text reply follows it", async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  // Counts what it receives as section 20 says: everything but the first message (the welcome or
  // spiwire.resumed) and a message whose only record is a spiwire.ack.
  const client = (url: string) => {
    const ws = new WebSocket(url, [S.SUBPROTOCOL]);
    const state = { counted: 0, messages: [] as Array<Record<string, unknown>>, waiters: [] as Array<() => void> };
    let seen = 0;
    ws.on('message', (data: Buffer, binary: boolean) => {
      const recs = binary ? S.decodeFrame(data) : [S.decodeText(data.toString())];
      if (seen++ > 0 && !S.isAckOnlyMessage(data, binary)) state.counted++;
      for (const r of recs) if (r.ok && S.isRecord(r.message) && r.message['method'] !== 'spiwire.ack') state.messages.push(r.message);
      const w = state.waiters;
      state.waiters = [];
      for (const f of w) f();
    });
    const opened = new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
    const next = async (): Promise<Record<string, unknown>> => {
      while (state.messages.length === 0) await new Promise<void>((r) => state.waiters.push(r));
      return state.messages.shift()!;
    };
    return { ws, state, opened, next };
  };
  const first = client(`${d.url}?resumable=1`);
  await first.opened;
  const welcome = (await first.next())['params'];
  if (!S.isRecord(welcome) || !S.isRecord(welcome['resume'])) throw new Error('no resume offer');
  const offer = welcome['resume'];
  // One text request at a time, past the daemon's ack schedule: its ack of the 32nd is packed
  // ahead of that request's text reply.
  const call = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'WSPCloseSocket', params: { s: 999999 } });
  const n = S.ACK_EVERY + 8;
  for (let id = 1; id <= n; id++) {
    first.ws.send(call(id));
    t.equal((await first.next())['id'], id, `reply ${id}`);
  }
  t.equal(first.state.counted, n, 'one counted message per reply');
  first.ws.terminate();
  const u = new URL(d.url);
  u.searchParams.set('resume', String(welcome['session']));
  u.searchParams.set('daemon', String(offer['daemonId']));
  const resume = JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: welcome['session'], token: offer['token'], received: first.state.counted, daemonId: offer['daemonId'] } });
  const second = client(u.toString());
  await second.opened;
  second.ws.send(resume);
  const resumed = await second.next();
  t.equal(resumed['method'], 'spiwire.resumed', 'resumed with the count section 20 gives');
  second.ws.send(call(n + 1));
  t.equal((await second.next())['id'], n + 1, 'nothing sent again: the daemon counted what the client counted');
  second.ws.close(1000);
});

/** A plain WebSocket client that reads messages (binary frames or text) as JSON-RPC objects. */
async function rawSession(url: string, first?: string): Promise<{ ws: WebSocket; messages: Array<Record<string, unknown>>; next(): Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(url, [S.SUBPROTOCOL]);
  const messages: Array<Record<string, unknown>> = [];
  let read = 0;
  let waiters: Array<() => void> = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    const recs = binary ? S.decodeFrame(data) : [S.decodeText(data.toString())];
    for (const r of recs) if (r.ok && S.isRecord(r.message) && r.message['method'] !== 'spiwire.ack') messages.push(r.message);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  if (first !== undefined) ws.send(first);
  const next = async (): Promise<Record<string, unknown>> => {
    while (messages.length <= read) await new Promise<void>((r) => waiters.push(r));
    return messages[read++]!;
  };
  await next();
  return { ws, messages, next };
}

interface RawAnswer {
  error?: { code: number; message: string; data?: Record<string, unknown> };
  method?: string;
  closeCode: number;
}

/** A hand-made resume, to look at the daemon's refusals. */
function rawResume(url: string, params: Record<string, unknown>): Promise<RawAnswer> {
  const u = new URL(url);
  u.searchParams.set('resume', String(params['session']));
  u.searchParams.set('daemon', String(params['daemonId']));
  const ws = new WebSocket(u, [S.SUBPROTOCOL]);
  return new Promise((resolve, reject) => {
    let answer: RawAnswer = { closeCode: 0 };
    ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params })));
    ws.on('message', (data: Buffer, binary: boolean) => {
      const rec = binary ? S.decodeFrame(data)[0] : S.decodeText(data.toString());
      if (rec?.ok && S.isRecord(rec.message)) {
        const m = rec.message;
        const error = m['error'];
        answer = { ...answer, ...(S.isRecord(error) ? { error: { code: Number(error['code']), message: String(error['message']), data: S.isRecord(error['data']) ? error['data'] : {} } } : {}), ...(typeof m['method'] === 'string' ? { method: m['method'] } : {}) };
      }
    });
    ws.on('close', (code) => resolve({ ...answer, closeCode: code }));
    ws.on('error', reject);
  });
}
