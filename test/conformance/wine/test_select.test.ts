/**
 * Wine's test_select (dlls/ws2_32/tests/sock.c), its SO_ERROR checks after failed connects (the
 * part Wine runs interactively, since Windows may take seconds to refuse). select() itself has no
 * SPI equivalent: where Wine waits in select() for the connect to end, these cases wait for
 * FD_CONNECT, then drop the selection again.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { closedPort as freePort } from '../../helpers/harness.js';
import { Scenario, accept, addr, call, dword, fileDaemon, getName, must, namelen, openSession, reached, readU32, recv, selectEvents, send, setBlocking, socket, tcpPair, waitEvent, EVENT_BOUND_MS, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

/** A loopback port nothing listens on (Wine uses port 255): a connect to it is refused. */
const closedPort = (f: Family): Promise<number> => freePort(f, 'tcp');

async function soError(spi: S.SpiSession, s: number): Promise<[number, number]> {
  const v = dword(0xdeadbeef);
  const e = S.out(0);
  const r = await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_ERROR, v, S.out(4), e);
  return [r, r === 0 ? readU32(v) : e.value];
}

/** Waits, as Wine's select() does, for the nonblocking connect under way to end (FD_CONNECT), and returns its error code. */
async function connectEnded(spi: S.SpiSession, s: number): Promise<number> {
  const ev = spi.WSACreateEvent();
  await selectEvents(spi, s, ev, S.FD_CONNECT);
  const signalled = await waitEvent(spi, ev, EVENT_BOUND_MS);
  const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
  await must('WSPEnumNetworkEvents', (e) => spi.WSPEnumNetworkEvents(s, ev, ne, e));
  await selectEvents(spi, s, 0, 0);
  if (!signalled || !(ne.lNetworkEvents & S.FD_CONNECT)) throw new Error('the connect did not end');
  return ne.iErrorCode[S.FD_CONNECT_BIT] ?? -1;
}

/** Waits, as Wine's select() on writefds does, for the socket to be connected (FD_WRITE). */
async function writable(spi: S.SpiSession, s: number): Promise<boolean> {
  const ev = spi.WSACreateEvent();
  await selectEvents(spi, s, ev, S.FD_WRITE);
  const signalled = await waitEvent(spi, ev, EVENT_BOUND_MS);
  await selectEvents(spi, s, 0, 0);
  return signalled;
}

interface Ctx {
  spi: S.SpiSession;
  f: Family;
  refused: S.SockAddr;
  /** The socket whose nonblocking connects fail, then succeed. */
  s: number;
}

const failed = new Scenario<Ctx>(async (f) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  return { spi, f, refused: addr(f, await closedPort(f)), s };
});

failed.step(t, 'test_select: after a nonblocking connect is refused, SO_ERROR reads WSAECONNREFUSED, and again on a second read', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.refused, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the connect is under way');
  c.equal(await connectEnded(x.spi, x.s), S.WSAECONNREFUSED, 'it ends refused');
  c.same(await soError(x.spi, x.s), [0, S.WSAECONNREFUSED], 'SO_ERROR');
  c.same(await soError(x.spi, x.s), [0, S.WSAECONNREFUSED], 'SO_ERROR read again: reading does not clear it');
});

failed.step(t, 'test_select: a new connect attempt does not reset SO_ERROR', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.refused, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the socket connects again');
  c.same(await soError(x.spi, x.s), [0, S.WSAECONNREFUSED], 'SO_ERROR still reads the earlier refusal');
});

failed.step(t, 'test_select: a connection that succeeds resets SO_ERROR to 0', {}, async (c, x) => {
  const l = await socket(x.spi, x.f, 'tcp');
  await must('WSPBind', (e) => x.spi.WSPBind(l, addr(x.f, 0), namelen(x.f), e));
  const [, , to] = await getName(x.spi, l);
  await must('WSPListen', (e) => x.spi.WSPListen(l, 1, e));
  // Until the refused attempt before has ended, a connect is WSAEALREADY (Wine waits in select()).
  let started: [number, number] = [0, 0];
  c.ok(await reached(async () => (started = await call((e) => x.spi.WSPConnect(x.s, to, namelen(x.f), null, null, null, null, e)))[1] !== S.WSAEALREADY), 'the earlier attempt ends');
  c.same(started, [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'a connect to a listener is under way');
  c.ok(await writable(x.spi, x.s), 'the socket becomes writable: connected');
  c.same(await soError(x.spi, x.s), [0, 0], 'SO_ERROR');
  for (const s of [x.s, l]) await x.spi.WSPCloseSocket(s, S.out(0));
});

interface Bound {
  spi: S.SpiSession;
  f: Family;
  s: number;
  name: S.SockAddr;
}

const listenAfter = new Scenario<Bound>(async (f) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  await must('WSPBind', (e) => spi.WSPBind(s, addr(f, 0), namelen(f), e));
  // A closed port other than the one just bound (a connect to it from it would connect to
  // itself). The daemon holds the bound port in the kernel (native/port-hold.ts), so the host
  // should not hand it out again; without the C library it is held only on paper.
  const [, , bound] = await getName(spi, s);
  let port = await closedPort(f);
  for (let i = 0; i < 10 && port === bound.port; i++) port = await closedPort(f);
  const refused = addr(f, port);
  const [r, err] = await call((e) => spi.WSPConnect(s, refused, namelen(f), null, null, null, null, e));
  if (r !== S.SOCKET_ERROR || err !== S.WSAEWOULDBLOCK) throw new Error(`WSPConnect: ${r} ${err}`);
  const ended = await connectEnded(spi, s);
  if (ended !== S.WSAECONNREFUSED) throw new Error(`the connect was not refused: FD_CONNECT with ${ended}`);
  return { spi, f, s, name: addr(f, 0) };
});

listenAfter.step(t, 'test_select: a bound socket whose nonblocking connect was refused still has its name', {}, async (c, x) => {
  const [r, , name] = await getName(x.spi, x.s);
  c.equal(r, 0, 'WSPGetSockName succeeds');
  c.ok(name.port !== 0, 'with the port it was bound to');
  x.name = name;
});

listenAfter.step(t, 'test_select: it can listen there, and accept a connection', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPListen(x.s, 1, e)), [0, 0], 'WSPListen');
  const client = await socket(x.spi, x.f, 'tcp');
  c.same(await call((e) => x.spi.WSPConnect(client, x.name, namelen(x.f), null, null, null, null, e)), [0, 0], 'a client connects to that name');
  const server = await accept(x.spi, x.s);
  c.not(server, S.INVALID_SOCKET, 'WSPAccept takes it');
  for (const s of [server, client]) await x.spi.WSPCloseSocket(s, S.out(0));
});

listenAfter.step(t, 'test_select: once listening, SO_ERROR still reads the refusal', {}, async (c, x) => {
  c.same(await soError(x.spi, x.s), [0, S.WSAECONNREFUSED], 'SO_ERROR');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

const blocking = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

blocking.step(t, 'test_select: after a blocking connect is refused, SO_ERROR reads 0', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  const refused = addr(x.f, await closedPort(x.f));
  c.same(await call((e) => x.spi.WSPConnect(s, refused, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'the connect fails');
  c.same(await soError(x.spi, s), [0, 0], 'SO_ERROR');
  c.same(await soError(x.spi, s), [0, 0], 'SO_ERROR read again');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

// ---------------------------------------------------------------- urgent data, out of band and inline

interface Pair {
  spi: S.SpiSession;
  f: Family;
  client: number;
  server: number;
}

const urgent = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f);
  await setBlocking(spi, p.server, false);
  return { spi, f, ...p };
});

/** A receive of up to 16 bytes: [ret, error, the bytes as text]. */
async function recvText(x: Pair, flags: number, boundMs = 0): Promise<[number, number, string]> {
  let r: Awaited<ReturnType<typeof recv>> = await recv(x.spi, x.server, 16, flags);
  // Wine waits in select() for the bytes to arrive; here a receive that would block is retried.
  if (boundMs > 0 && r.err === S.WSAEWOULDBLOCK) await reached(async () => (r = await recv(x.spi, x.server, 16, flags)).err !== S.WSAEWOULDBLOCK, boundMs);
  return [r.ret, r.err, Buffer.from(r.data).toString('latin1')];
}

urgent.step(t, 'test_select: an urgent byte is read with a MSG_OOB receive', {}, async (c, x) => {
  c.same((await send(x.spi, x.client, '1234')).ret, 0, 'the peer sends 1234');
  c.same(await recvText(x, 0, EVENT_BOUND_MS), [0, 0, '1234'], 'a receive returns it');
  c.same((await send(x.spi, x.client, 'A', S.MSG_OOB)).ret, 0, 'the peer sends "A" with MSG_OOB');
  c.same(await recvText(x, S.MSG_OOB, EVENT_BOUND_MS), [0, 0, 'A'], 'a MSG_OOB receive returns it');
});

urgent.step(t, 'test_select: with SO_OOBINLINE, a MSG_OOB receive fails with WSAEINVAL and the urgent byte is read inline', {}, async (c, x) => {
  await must('SO_OOBINLINE', (e) => x.spi.WSPSetSockOpt(x.server, S.SOL_SOCKET, S.SO_OOBINLINE, dword(1), 4, e));
  c.same((await send(x.spi, x.client, 'A', S.MSG_OOB)).ret, 0, 'the peer sends "A" with MSG_OOB');
  c.same(await recvText(x, S.MSG_OOB), [S.SOCKET_ERROR, S.WSAEINVAL, ''], 'a MSG_OOB receive');
  c.same(await recvText(x, 0, EVENT_BOUND_MS), [0, 0, 'A'], 'a plain receive returns it');
});

urgent.step(t, 'test_select: after that inline read, a receive finds nothing (WSAEWOULDBLOCK)', {}, async (c, x) => {
  c.same(await recvText(x, 0), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK, ''], 'the receive');
});
