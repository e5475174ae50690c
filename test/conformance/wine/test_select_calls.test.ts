/**
 * Wine's test_select (dlls/ws2_32/tests/sock.c), its select() calls, through WSPSelect: which
 * sockets each set reports in each state of a connection, the argument errors, the fd_set rules
 * (a socket named twice, one fd_set passed for two sets), APCs during the wait, and a socket
 * closed while the call waits. Also test_errors' select() after a refused blocking connect, and
 * test_tcp_reset's after a reset, and test_select_after_WSAEventSelect with WSPSelect in place of
 * its WSAPoll (which has no SPI equivalent). Where Wine's timeout expects a socket to become ready, the
 * port gives a longer one: WSPSelect returns as soon as it is, so the wait is on the event.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { closedPort as freePort, select } from '../../helpers/harness.js';
import { EVENT_BOUND_MS, Scenario, type Check, accept, addr, call, dword, fileDaemon, getName, listener, must, namelen, nodePeerPair, openSession, readU32, recv, resetNode, selectEvents, send, setBlocking, socket, tcpPair, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

/** {0, 0}: look and return. */
const POLL: S.timeval = { tv_sec: 0, tv_usec: 0 };
/** Wine's 500 us: short, but a wait all the same. */
const SHORT: S.timeval = { tv_sec: 0, tv_usec: 500 };
/** How long a check that nothing becomes ready gives it (Wine: 1.25 s). */
const QUIET: S.timeval = { tv_sec: 0, tv_usec: 100_000 };
/** The bound of a wait that ends when a socket becomes ready. */
const BOUND: S.timeval = { tv_sec: 5, tv_usec: 0 };

/** The three sets, each holding the sockets given for it. */
function sets(r: number[], w: number[], x: number[]): [S.fd_set, S.fd_set, S.fd_set] {
  return [S.fdSet(...r), S.fdSet(...w), S.fdSet(...x)];
}

/** The sets' contents after a call: [readfds, writefds, exceptfds] as lists. */
function contents(...fds: S.fd_set[]): number[][] {
  return fds.map((s) => s.fd_array.slice(0, s.fd_count));
}

async function soError(spi: S.SpiSession, s: number): Promise<number> {
  const v = dword(0xdeadbeef);
  await must('SO_ERROR', (e) => spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_ERROR, v, S.out(4), e));
  return readU32(v);
}

const closedPort = (f: Family): Promise<number> => freePort(f, 'tcp');
const close = (spi: S.SpiSession, ...socks: number[]): Promise<unknown> => Promise.all(socks.map((s) => spi.WSPCloseSocket(s, S.out(0))));

// ---------------------------------------------------------------- sockets that are not connected

const fresh = new Scenario<{ spi: S.SpiSession; a: number; b: number }>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, a: await socket(spi, f, 'tcp'), b: await socket(spi, f, 'tcp') };
});

fresh.step(t, 'test_select: new TCP sockets are in no set: with a zero timeout select returns 0 at once', {}, async (c, x) => {
  const fds = sets([x.a, x.b], [x.a, x.b], [x.a, x.b]);
  c.same(await select(x.spi, ...fds, POLL), [0, 0], 'select returns 0');
  c.same(contents(...fds), [[], [], []], 'and empties every set');
});

fresh.step(t, 'test_select: with a 500 us timeout, the same: 0', {}, async (c, x) => {
  const fds = sets([x.a, x.b], [x.a, x.b], [x.a, x.b]);
  c.same(await select(x.spi, ...fds, SHORT), [0, 0], 'select returns 0');
  c.same(contents(...fds), [[], [], []], 'no set holds a socket');
});

fresh.step(t, 'test_select: a listening socket closed while a select waits on it for reading wakes the select, which reports it readable', {}, async (c, x) => {
  await must('WSPBind', (e) => x.spi.WSPBind(x.a, addr(c.f, 0), namelen(c.f), e));
  await must('WSPListen', (e) => x.spi.WSPListen(x.a, 5, e));
  const r = S.fdSet(x.a);
  // The daemon takes calls in order: the select waits before the close is handled.
  const waiting = select(x.spi, r, null, null, BOUND);
  c.same(await call((e) => x.spi.WSPCloseSocket(x.a, e)), [0, 0], 'WSPCloseSocket');
  c.same(await waiting, [1, 0], 'select returns 1');
  c.same(contents(r), [[x.a]], 'with the socket in readfds');
  const peek = await recv(x.spi, x.a, 1, S.MSG_PEEK);
  c.same([peek.ret, peek.err], [S.SOCKET_ERROR, S.WSAENOTSOCK], 'a receive on the closed handle fails');
  await close(x.spi, x.b);
});

// ---------------------------------------------------------------- argument errors

const args = new Scenario<{ spi: S.SpiSession; s: number }>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, s: await socket(spi, f, 'tcp') };
});

args.step(t, 'test_select: three NULL sets: WSAEINVAL', {}, async (c, x) => {
  c.same(await select(x.spi, null, null, null, SHORT), [S.SOCKET_ERROR, S.WSAEINVAL], 'select fails');
});

args.step(t, 'test_select: three empty sets: WSAEINVAL', {}, async (c, x) => {
  c.same(await select(x.spi, ...sets([], [], []), SHORT), [S.SOCKET_ERROR, S.WSAEINVAL], 'select fails');
});

args.step(t, 'test_select: INVALID_SOCKET in readfds, writefds or exceptfds: WSAENOTSOCK', {}, async (c, x) => {
  for (const i of [0, 1, 2]) {
    const fds = sets([], [], []);
    S.FD_SET(S.INVALID_SOCKET, fds[i]!);
    c.same(await select(x.spi, ...fds, SHORT), [S.SOCKET_ERROR, S.WSAENOTSOCK], `in set ${i}: select fails`);
    c.same(contents(...fds)[i], [S.INVALID_SOCKET], `in set ${i}: the set is left as it was`);
  }
  await close(x.spi, x.s);
});

// ---------------------------------------------------------------- a connected pair

interface Pair {
  spi: S.SpiSession;
  th: S.SessionThread;
  /** Wine's fdRead and fdWrite. */
  rd: number;
  wr: number;
  apcs: number;
}

const pair = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f);
  return { spi, th: spi.createThread(), rd: p.server, wr: p.client, apcs: 0 };
});

/** Wine's overlapping fd_set pointers: one set holding both sockets, passed as readfds and writefds, comes back with both, 2. */
async function bothInOneSet(c: Check, x: Pair, label: string): Promise<void> {
  const two = S.fdSet(x.wr, x.rd);
  c.same(await select(x.spi, two, two, null, SHORT), [2, 0], label);
  c.ok(S.FD_ISSET(x.wr, two) && S.FD_ISSET(x.rd, two), 'both are in the set');
}

pair.step(t, 'test_select: an APC queued before a select that waits runs during the wait, and the select still times out with 0', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WPUQueueApc(x.th.id, () => x.apcs++, 0, e)), [0, 0], 'WPUQueueApc');
  c.same(await select(x.th, S.fdSet(x.rd), null, null, SHORT), [0, 0], 'select on readfds returns 0');
  c.equal(x.apcs, 1, 'the APC ran');
});

pair.step(t, 'test_select: a select that finds a socket ready at once runs no APC; SleepEx(0, TRUE) runs it', {}, async (c, x) => {
  x.apcs = 0;
  c.same(await call((e) => x.spi.WPUQueueApc(x.th.id, () => x.apcs++, 0, e)), [0, 0], 'WPUQueueApc');
  const w = S.fdSet(x.wr);
  c.same(await select(x.th, null, w, null, SHORT), [1, 0], 'select on writefds returns 1');
  c.ok(S.FD_ISSET(x.wr, w), 'the connected socket is writable');
  c.equal(x.apcs, 0, 'no APC ran');
  await x.th.SleepEx(0, true);
  c.equal(x.apcs, 1, 'SleepEx(0, TRUE) ran it');
});

pair.step(t, 'test_select: a socket named twice in a set is reported once', {}, async (c, x) => {
  const w: S.fd_set = { fd_count: 2, fd_array: [x.wr, x.wr] };
  c.same(await select(x.spi, null, w, null, SHORT), [1, 0], 'select returns 1');
  c.equal(w.fd_count, 1, 'fd_count is 1');
  c.same(w.fd_array, [x.wr, x.wr], 'fd_array[0] is the socket; fd_array[1] is left as it was');
});

pair.step(t, 'test_select: one fd_set passed as readfds and writefds holds each ready socket once', {}, async (c, x) => {
  const one = S.fdSet(x.wr);
  c.same(await select(x.spi, one, one, null, SHORT), [1, 0], 'one writable socket: 1');
  c.ok(S.FD_ISSET(x.wr, one), 'it is in the set');
  await bothInOneSet(c, x, 'two writable sockets: 2');
});

pair.step(t, 'test_select: data sent makes the receiver readable; in a set passed twice, still 2 entries', {}, async (c, x) => {
  c.same((await send(x.spi, x.wr, 'test')).ret, 0, 'the writer sends "test"');
  const r = S.fdSet(x.rd);
  c.same(await select(x.spi, r, null, null, BOUND), [1, 0], 'select on readfds returns 1');
  c.ok(S.FD_ISSET(x.rd, r), 'the receiver is readable');
  await bothInOneSet(c, x, 'readfds = writefds: 2');
});

pair.step(t, 'test_select: sending until select finds the writer not writable; then only the receiver is reported', {}, async (c, x) => {
  // Wine's blocking send of 1 KiB into a buffer with a few bytes of room would wait here for the
  // reader (the reference send policy takes a blocking send whole); a nonblocking one takes what fits.
  await setBlocking(x.spi, x.wr, false);
  const chunk = new Uint8Array(1024);
  let sends = 0;
  let writable = true;
  for (let i = 0; i < 200_000 && writable; i++) {
    const w = S.fdSet(x.wr);
    // 50 ms, not Wine's 500 us: the kernel's buffers go on taking bytes from the transport buffer
    // for a moment after it fills, and the checks below need the writer to stay full.
    const [ret] = await select(x.spi, null, w, null, { tv_sec: 0, tv_usec: 50_000 });
    writable = ret === 1;
    if (!writable) break;
    const r = await send(x.spi, x.wr, chunk);
    if (r.ret !== 0 || r.sent === 0) break;
    sends++;
  }
  c.ok(!writable && sends > 0, `select said not writable after ${sends} sends, each of which sent bytes`);
  const two = S.fdSet(x.wr, x.rd);
  c.same(await select(x.spi, two, two, null, SHORT), [1, 0], 'readfds = writefds: 1');
  c.ok(!S.FD_ISSET(x.wr, two) && S.FD_ISSET(x.rd, two), 'the receiver (readable) only');
});

pair.step(t, 'test_select: the receiver sends back: both are reported again', {}, async (c, x) => {
  c.same((await send(x.spi, x.rd, 'test')).ret, 0, 'the receiver sends "test"');
  const w = S.fdSet(x.wr);
  c.same(await select(x.spi, w, null, null, BOUND), [1, 0], 'the writer becomes readable');
  await bothInOneSet(c, x, 'readfds = writefds: 2');
  await close(x.spi, x.rd, x.wr);
});

const many = new Scenario<{ spi: S.SpiSession; sockets: number[] }>(async (f) => {
  const spi = await openSession(t, d);
  const sockets: number[] = [];
  for (let i = 0; i < 100; i++) {
    const p = await tcpPair(spi, f);
    sockets.push(p.client, p.server);
  }
  return { spi, sockets };
});

many.step(t, 'test_select: 200 connected sockets in writefds: 200, in the order given', {}, async (c, x) => {
  const w: S.fd_set = { fd_count: x.sockets.length, fd_array: [...x.sockets] };
  c.same(await select(x.spi, null, w, null, SHORT), [200, 0], 'select returns 200');
  c.same(contents(w)[0], x.sockets, 'every socket, in order');
  await close(x.spi, ...x.sockets);
});

// ---------------------------------------------------------------- a connection's states

interface Conn {
  spi: S.SpiSession;
  f: Family;
  listen: number;
  name: S.SockAddr;
  /** Wine's fdWrite (the connector) and fdRead (the accepted socket). */
  wr: number;
  rd: number;
}

const conn = new Scenario<Conn>(async (f) => {
  const spi = await openSession(t, d);
  const l = await listener(spi, f);
  return { spi, f, listen: l.s, name: l.name, wr: 0, rd: 0 };
});

conn.step(t, 'test_select: a listening socket with nothing to accept is in no set', {}, async (c, x) => {
  const fds = sets([x.listen], [x.listen], [x.listen]);
  c.same(await select(x.spi, ...fds, QUIET), [0, 0], 'select returns 0');
});

conn.step(t, 'test_select: a connection waiting makes the listening socket readable', {}, async (c, x) => {
  x.wr = await socket(x.spi, c.f, 'tcp');
  await setBlocking(x.spi, x.wr, false);
  const [r, err] = await call((e) => x.spi.WSPConnect(x.wr, x.name, namelen(c.f), null, null, null, null, e));
  c.ok(r === 0 || err === S.WSAEWOULDBLOCK, 'a nonblocking connect');
  const fds = sets([x.listen], [x.listen], [x.listen]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.same(contents(...fds), [[x.listen], [], []], 'the listening socket, in readfds');
  x.rd = await accept(x.spi, x.listen);
});

conn.step(t, 'test_select: both ends of the connection are writable, and SO_ERROR of the connector is 0', {}, async (c, x) => {
  const all = [x.listen, x.rd, x.wr];
  const fds = sets(all, all, all);
  c.same(await select(x.spi, ...fds, BOUND), [2, 0], 'select returns 2');
  c.ok(S.FD_ISSET(x.wr, fds[1]) && S.FD_ISSET(x.rd, fds[1]), 'the connector and the accepted socket, in writefds');
  c.equal(await soError(x.spi, x.wr), 0, 'SO_ERROR');
  await setBlocking(x.spi, x.rd, false);
});

conn.step(t, 'test_select: data received makes the receiver readable, not exceptional', {}, async (c, x) => {
  c.same((await send(x.spi, x.wr, '1234')).ret, 0, 'the connector sends "1234"');
  const fds = sets([x.listen, x.rd], [x.listen], [x.listen, x.rd]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.rd, fds[0]) && !S.FD_ISSET(x.rd, fds[2]), 'in readfds, not in exceptfds');
  const all = sets([x.rd], [x.rd], [x.rd]);
  c.same(await select(x.spi, ...all, BOUND), [2, 0], 'all three sets: 2');
  c.same(contents(...all), [[x.rd], [x.rd], []], 'readable and writable');
  const got = await recv(x.spi, x.rd, 1024);
  c.same([got.ret, Buffer.from(got.data).toString()], [0, '1234'], 'the receive returns the data');
});

conn.step(t, 'test_select: an urgent byte puts the receiver in exceptfds', {}, async (c, x) => {
  c.same((await send(x.spi, x.wr, 'A', S.MSG_OOB)).ret, 0, 'the connector sends "A" with MSG_OOB');
  const fds = sets([x.listen, x.rd], [x.listen], [x.listen, x.rd]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.rd, fds[2]), 'in exceptfds');
  const got = await recv(x.spi, x.rd, 1024, S.MSG_OOB);
  c.same([got.ret, Buffer.from(got.data).toString()], [0, 'A'], 'a MSG_OOB receive returns it');
});

conn.step(t, 'test_select: with SO_OOBINLINE, an urgent byte makes the receiver readable instead', {}, async (c, x) => {
  await must('SO_OOBINLINE', (e) => x.spi.WSPSetSockOpt(x.rd, S.SOL_SOCKET, S.SO_OOBINLINE, dword(1), 4, e));
  c.same((await send(x.spi, x.wr, 'A', S.MSG_OOB)).ret, 0, 'the connector sends "A" with MSG_OOB');
  const fds = sets([x.listen, x.rd], [x.listen], [x.listen, x.rd]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.rd, fds[0]), 'in readfds');
  const oob = await recv(x.spi, x.rd, 1024, S.MSG_OOB);
  c.same([oob.ret, oob.err], [S.SOCKET_ERROR, S.WSAEINVAL], 'a MSG_OOB receive fails');
  const got = await recv(x.spi, x.rd, 1024);
  c.same([got.ret, Buffer.from(got.data).toString()], [0, 'A'], 'a plain receive returns it');
});

conn.step(t, 'test_select: the peer closing makes the connector readable, and a receive returns 0', {}, async (c, x) => {
  await close(x.spi, x.rd);
  const fds = sets([x.listen, x.wr], [x.listen], [x.listen]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.wr, fds[0]), 'the connector, in readfds');
  const got = await recv(x.spi, x.wr, 1024);
  c.same([got.ret, got.err, got.bytes], [0, 0, 0], 'the receive returns 0 bytes');
  await close(x.spi, x.wr);
});

// ---------------------------------------------------------------- failed connects

interface Refused {
  spi: S.SpiSession;
  f: Family;
  s: number;
  refused: S.SockAddr;
  listen: number;
  name: S.SockAddr;
}

const refusedConn = new Scenario<Refused>(async (f) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  const l = await listener(spi, f);
  return { spi, f, s, refused: addr(f, await closedPort(f)), listen: l.s, name: l.name };
});

refusedConn.step(t, 'test_select: a refused nonblocking connect puts the socket in exceptfds only; SO_ERROR reads WSAECONNREFUSED', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.refused, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the connect is under way');
  const fds = sets([x.s], [x.s], [x.s]);
  const timeout = { ...BOUND };
  c.same(await select(x.spi, ...fds, timeout), [1, 0], 'select returns 1');
  c.same(contents(...fds), [[], [], [x.s]], 'in exceptfds');
  c.same(timeout, BOUND, 'the timeout is left as it was');
  c.equal(await soError(x.spi, x.s), S.WSAECONNREFUSED, 'SO_ERROR');
  c.equal(await soError(x.spi, x.s), S.WSAECONNREFUSED, 'SO_ERROR again');
  const again = sets([x.s], [x.s], [x.s]);
  c.same(await select(x.spi, ...again, BOUND), [1, 0], 'a second select: 1');
  c.ok(S.FD_ISSET(x.s, again[2]), 'still in exceptfds');
});

refusedConn.step(t, 'test_select: a new attempt refused again: exceptfds, and SO_ERROR still WSAECONNREFUSED', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.refused, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the socket connects again');
  c.equal(await soError(x.spi, x.s), S.WSAECONNREFUSED, 'SO_ERROR');
  const fds = sets([x.s], [x.s], [x.s]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.s, fds[2]), 'in exceptfds');
});

refusedConn.step(t, 'test_select: then a connect to a listener makes it writable, and SO_ERROR 0', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.name, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'a connect to a listener is under way');
  const fds = sets([x.s], [x.s], [x.s]);
  c.same(await select(x.spi, ...fds, BOUND), [1, 0], 'select returns 1');
  c.same(contents(...fds), [[], [x.s], []], 'in writefds');
  c.equal(await soError(x.spi, x.s), 0, 'SO_ERROR');
  await close(x.spi, x.s, x.listen);
});

const listenAfter = new Scenario<{ spi: S.SpiSession; f: Family; s: number }>(async (f) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  await must('WSPBind', (e) => spi.WSPBind(s, addr(f, 0), namelen(f), e));
  return { spi, f, s };
});

listenAfter.step(t, 'test_select: a bound socket whose nonblocking connect was refused, selected in exceptfds alone: 1', {}, async (c, x) => {
  const refused = addr(c.f, await closedPort(c.f));
  c.same(await call((e) => x.spi.WSPConnect(x.s, refused, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the connect is under way');
  c.same(await select(x.spi, null, null, S.fdSet(x.s), BOUND), [1, 0], 'select returns 1');
});

listenAfter.step(t, 'test_select: listening there, it takes a connection, and select still reports the refusal in exceptfds', {}, async (c, x) => {
  const [, , name] = await getName(x.spi, x.s);
  c.same(await call((e) => x.spi.WSPListen(x.s, 1, e)), [0, 0], 'WSPListen');
  const client = await socket(x.spi, c.f, 'tcp');
  c.same(await call((e) => x.spi.WSPConnect(client, name, namelen(c.f), null, null, null, null, e)), [0, 0], 'a client connects');
  const server = await accept(x.spi, x.s);
  c.equal(await soError(x.spi, x.s), S.WSAECONNREFUSED, 'SO_ERROR');
  const fds = sets([x.s], [x.s], [x.s]);
  c.same(await select(x.spi, ...fds, POLL), [1, 0], 'select returns 1');
  c.ok(S.FD_ISSET(x.s, fds[2]), 'in exceptfds');
  await close(x.spi, server, client, x.s);
});

const syncFail = new Scenario<{ spi: S.SpiSession }>(async () => ({ spi: await openSession(t, d) }));

syncFail.step(t, 'test_select: after a blocking connect is refused, the socket is in exceptfds', {}, async (c, x) => {
  const s = await socket(x.spi, c.f, 'tcp');
  const refused = addr(c.f, await closedPort(c.f));
  c.same(await call((e) => x.spi.WSPConnect(s, refused, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'the connect fails');
  const fds = sets([s], [s], [s]);
  c.same(await select(x.spi, ...fds, POLL), [1, 0], 'select returns 1');
  c.same(contents(...fds), [[], [], [s]], 'in exceptfds');
  c.equal(await soError(x.spi, s), 0, 'SO_ERROR is 0');
  await close(x.spi, s);
});

syncFail.step(t, 'test_errors: after a blocking connect is refused, select on writefds times out with 0', {}, async (c, x) => {
  const s = await socket(x.spi, c.f, 'tcp');
  const refused = addr(c.f, await closedPort(c.f));
  c.same(await call((e) => x.spi.WSPConnect(s, refused, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'the connect fails');
  c.same(await select(x.spi, null, S.fdSet(s), null, { tv_sec: 0, tv_usec: 50_000 }), [0, 0], 'select returns 0');
  await close(x.spi, s);
});

// ---------------------------------------------------------------- closed sockets

const closing = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

closing.step(t, 'test_select: a set naming a closed socket: WSAENOTSOCK, and the sets are left as they were', {}, async (c, x) => {
  const p = await tcpPair(x.spi, c.f);
  await close(x.spi, p.server);
  const fds = sets([p.client, p.server], [], [p.client, p.server]);
  c.same(await select(x.spi, fds[0], null, fds[2], BOUND), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'select fails');
  c.same([fds[0].fd_count, fds[2].fd_count], [2, 2], 'each set still holds two sockets');
  await close(x.spi, p.client);
});

closing.step(t, 'test_select: a socket in readfds and exceptfds closed while the select waits: 1, in readfds', {}, async (c, x) => {
  const p = await tcpPair(x.spi, c.f);
  const r = S.fdSet(p.client);
  const e = S.fdSet(p.client);
  const waiting = select(x.spi, r, null, e, BOUND);
  await close(x.spi, p.client);
  c.same(await waiting, [1, 0], 'select returns 1');
  c.same(contents(r, e), [[p.client], []], 'the socket, in readfds');
  await close(x.spi, p.server);
});

closing.step(t, 'test_select: a socket in exceptfds alone closed while the select waits: WSAENOTSOCK', {}, async (c, x) => {
  const p = await tcpPair(x.spi, c.f);
  const e = S.fdSet(p.client);
  const waiting = select(x.spi, null, null, e, BOUND);
  await close(x.spi, p.client);
  c.same(await waiting, [S.SOCKET_ERROR, S.WSAENOTSOCK], 'select fails');
  await close(x.spi, p.server);
});

closing.step(t, 'test_select: a new UDP socket, not bound, is writable', {}, async (c, x) => {
  const u = await socket(x.spi, c.f, 'udp');
  const fds = sets([u], [u], [u]);
  c.same(await select(x.spi, ...fds, { tv_sec: 0, tv_usec: 250_000 }), [1, 0], 'select returns 1');
  c.same(contents(...fds), [[], [u], []], 'in writefds');
  await close(x.spi, u);
});

// ---------------------------------------------------------------- a reset

const reset = new Scenario<{ spi: S.SpiSession; server: number }>(async (f) => {
  const spi = await openSession(t, d);
  const p = await nodePeerPair(t, spi, f);
  await resetNode(p.sock);
  return { spi, server: p.server };
});

reset.step(t, 'test_tcp_reset: after the peer resets the connection, select reports the socket readable and writable, not exceptional', {}, async (c, x) => {
  const fds = sets([x.server], [x.server], [x.server]);
  c.same(await select(x.spi, fds[0], null, null, BOUND), [1, 0], 'readfds alone: readable once the reset arrives');
  const all = sets([x.server], [x.server], [x.server]);
  c.same(await select(x.spi, ...all, POLL), [2, 0], 'all three sets: 2');
  c.same(contents(...all), [[x.server], [x.server], []], 'readfds and writefds');
});

reset.step(t, 'test_tcp_reset: exceptfds alone: 0', {}, async (c, x) => {
  c.same(await select(x.spi, null, null, S.fdSet(x.server), POLL), [0, 0], 'select returns 0');
  await close(x.spi, x.server);
});

// ---------------------------------------------------------------- after WSPEventSelect

const afterEvents = new Scenario<{ spi: S.SpiSession; client: number; server: number }>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)) };
});

afterEvents.step(t, 'test_select_after_WSAEventSelect: a socket selected for FD_READ with data waiting is readable and writable, and the select does not signal its event again', {}, async (c, x) => {
  const ev = x.spi.WSACreateEvent();
  await selectEvents(x.spi, x.client, ev, S.FD_READ);
  c.same((await send(x.spi, x.server, 'test')).ret, 0, 'the peer sends "test"');
  c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), 'FD_READ signals the event');
  // Wine's event is auto-reset: its wait took the signal. This one is manual-reset.
  x.spi.WSAResetEvent(ev);
  const fds = sets([x.client], [x.client], []);
  c.same(await select(x.spi, ...fds, POLL), [2, 0], 'select returns 2');
  c.same(contents(...fds), [[x.client], [x.client], []], 'readable and writable');
  c.equal(await waitEvent(x.spi, ev, 100), false, 'the event is not signalled again (waited 100 ms)');
  await close(x.spi, x.client, x.server);
});
