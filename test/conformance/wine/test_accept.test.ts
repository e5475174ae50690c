/**
 * Wine's test_accept and test_connecting_socket (dlls/ws2_32/tests/sock.c): WSPAccept's alertable
 * wait, condition function, cancellation by closesocket and address arguments; and what a socket
 * still connecting answers. test_connecting_socket connects to an address nobody answers (Wine: a
 * remote one; here a loopback listener that never answers, silentListener()), IPv4 only as in Wine;
 * its ConnectEx half is not an SPI function.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, call, emptyAddr, fileDaemon, getName, listener, must, namelen, openSession, reached, recv, send, setBlocking, silentListener, socket, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);


interface Ctx {
  spi: S.SpiSession;
  f: Family;
  l: { s: number; name: S.SockAddr };
  clients: number[];
}

const sc = new Scenario<Ctx>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, f, l: await listener(spi, f), clients: [] };
});

const connectClient = async (x: Ctx): Promise<number> => {
  const s = await socket(x.spi, x.f, 'tcp');
  await must('WSPConnect', (e) => x.spi.WSPConnect(s, x.l.name, namelen(x.f), null, null, null, null, e));
  x.clients.push(s);
  return s;
};

const closeAll = async (x: Ctx, ...more: number[]): Promise<void> => {
  for (const s of [...x.clients.splice(0), ...more]) await x.spi.WSPCloseSocket(s, S.out(0));
};

sc.step(t, 'test_accept: a blocking accept waits alertably: an APC queued to its thread runs during the wait', {}, async (c, x) => {
  const th = x.spi.createThread();
  let apcs = 0;
  await x.spi.WPUQueueApc(th.id, () => {
    apcs++;
    void connectClient(x);
  }, 0, S.out(0));
  const accepting = call((e) => th.WSPAccept(x.l.s, null, null, null, 0, e));
  // Wine's APC makes the connection the accept waits for; if it does not run, one comes anyway.
  if (!(await reached(async () => apcs > 0, 1000))) await connectClient(x);
  const [a] = await accepting;
  c.ok(a !== S.INVALID_SOCKET, 'the connection is accepted');
  c.equal(apcs, 1, 'the APC ran during the accept');
  await th.exit();
  await closeAll(x, a);
});

sc.step(t, 'test_accept: a condition function answering CF_DEFER fails the accept with WSATRY_AGAIN; a later accept takes the connection', {}, async (c, x) => {
  await connectClient(x);
  const [r, err] = await call((e) => x.spi.WSPAccept(x.l.s, null, null, () => S.CF_DEFER, 0, e));
  c.same([r, err], [S.INVALID_SOCKET, S.WSATRY_AGAIN], 'the deferring accept');
  await setBlocking(x.spi, x.l.s, false);
  let a = S.INVALID_SOCKET;
  await reached(async () => (a = (await call((e) => x.spi.WSPAccept(x.l.s, null, null, null, 0, e)))[0]) !== S.INVALID_SOCKET, 1000);
  c.ok(a !== S.INVALID_SOCKET, 'the next accept takes the deferred connection');
  await setBlocking(x.spi, x.l.s, true);
  await closeAll(x, ...(a !== S.INVALID_SOCKET ? [a] : []));
});

sc.step(t, 'test_accept: closing the listening socket makes a blocked accept fail', {}, async (c, x) => {
  const th = x.spi.createThread();
  const accepting = call((e) => th.WSPAccept(x.l.s, null, null, null, 0, e));
  await new Promise((r) => setTimeout(r, 200));
  c.equal(await x.spi.WSPCloseSocket(x.l.s, S.out(0)), 0, 'closesocket');
  const done = await Promise.race([accepting, new Promise<null>((r) => setTimeout(() => r(null), EVENT_BOUND_MS))]);
  c.ok(done !== null && done[0] === S.INVALID_SOCKET, `the accept fails (${done ? done[1] : 'still blocked'})`);
  await th.exit();
  x.l = await listener(x.spi, x.f);
});

sc.step(t, 'test_accept: an addrlen of 0 fails with WSAEFAULT and stays 0', {}, async (c, x) => {
  await connectClient(x);
  const len = S.out(0);
  const [r, err] = await call((e) => x.spi.WSPAccept(x.l.s, emptyAddr(), len, null, 0, e));
  c.same([r, err, len.value], [S.INVALID_SOCKET, S.WSAEFAULT, 0], 'accept');
  await closeAll(x);
});

sc.step(t, 'test_accept: with no address buffers the accept succeeds', {}, async (c, x) => {
  await connectClient(x);
  const [r] = await call((e) => x.spi.WSPAccept(x.l.s, null, null, null, 0, e));
  c.ok(r !== S.INVALID_SOCKET, 'accept');
  await closeAll(x, r);
});

sc.step(t, 'test_accept: with a large addrlen the address is filled and addrlen becomes its size', {}, async (c, x) => {
  const client = await connectClient(x);
  const peer = emptyAddr();
  const len = S.out(128);
  const [r] = await call((e) => x.spi.WSPAccept(x.l.s, peer, len, null, 0, e));
  c.ok(r !== S.INVALID_SOCKET, 'accept');
  const [, , mine] = await getName(x.spi, client);
  c.same([peer.family, peer.address, peer.port, len.value], [mine.family, mine.address, mine.port, namelen(x.f)], 'the connecting socket\'s address and its size');
  await closeAll(x, r);
});

sc.step(t, 'test_accept: an address buffer without a length: the accept succeeds and leaves the buffer untouched', {}, async (c, x) => {
  await connectClient(x);
  const peer = emptyAddr();
  const [r, err] = await call((e) => x.spi.WSPAccept(x.l.s, peer, null, null, 0, e));
  c.same([r === S.INVALID_SOCKET ? err : 0], [0], 'accept');
  c.same(peer, emptyAddr(), 'the buffer is untouched');
  await closeAll(x, ...(r !== S.INVALID_SOCKET ? [r] : []), x.l.s);
});

// ================================================================ test_connecting_socket

// Wine connects to a remote address nobody answers; here a loopback listener that never answers.
const UNREACHABLE: S.SockAddr = await silentListener(t);

const conn = new Scenario<{ spi: S.SpiSession; s: number }>(async (f) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  await must('WSPBind', (e) => spi.WSPBind(s, { family: S.AF_INET, address: '0.0.0.0', port: 0 }, 16, e));
  return { spi, s };
});
const V4 = { families: ['ipv4'] as const };

conn.step(t, 'test_connecting_socket: a nonblocking connect to an address nobody answers starts (WSAEWOULDBLOCK); a second one fails with WSAEALREADY', V4, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, UNREACHABLE, 16, null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'first connect');
  c.same(await call((e) => x.spi.WSPConnect(x.s, UNREACHABLE, 16, null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEALREADY], 'second connect');
});

conn.step(t, 'test_connecting_socket: while connecting, WSPGetSockName gives the family and a port, and WSPGetPeerName succeeds', V4, async (c, x) => {
  const [r, , name] = await getName(x.spi, x.s);
  c.same([r, name.family], [0, S.AF_INET], 'WSPGetSockName');
  c.not(name.port, 0, 'a port');
  const [rp, ep] = await getName(x.spi, x.s, true);
  c.same([rp, ep], [0, 0], 'WSPGetPeerName');
});

conn.step(t, 'test_connecting_socket: while connecting, a receive and a send fail with WSAENOTCONN', V4, async (c, x) => {
  const r = await recv(x.spi, x.s, 4);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAENOTCONN], 'receive');
  const s = await send(x.spi, x.s, 'data\0');
  c.same([s.ret, s.err], [S.SOCKET_ERROR, S.WSAENOTCONN], 'send');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

