/**
 * WSPSelect beyond Wine's cases (test/conformance/wine/test_select_calls.test.ts): a wait that
 * ends when real peers act (a reader making room, a datagram, an ICMP port unreachable), the
 * checks the SDK makes on the caller's fd_set and timeval, other sessions' handles, the limit on
 * sockets watched, and the daemon stopping under a waiting call.
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import * as S from '@spiwire/client';
import { UdpSocket } from '@spiwire/server/internals';
import { FAMILIES, addr, bindLoopback, call, closedPort, connectedTcp, daemon, fillConnection, fionread, loopback, namelen, newSocket, recvInto, roundTrip, select, send, sendTo, session, setNonBlocking, setOpt, tcpPeer, udpPeer, until, within } from '../helpers/harness.js';

const BOUND: S.timeval = { tv_sec: 5, tv_usec: 0 };

for (const f of FAMILIES) {
  t.test(`${f}: a select waiting for a full socket to be writable returns once the peer reads`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0], 'SO_SNDBUF 4096');
    await setNonBlocking(spi, s, true);
    const { sent, full } = await fillConnection(spi, s, new Uint8Array(4096).fill(7));
    t.ok(full, `full after ${sent} bytes: a 50 ms select finds it not writable`);
    const w = S.fdSet(s);
    // No timeout: only the room the reader makes can end this select (bounded here by a timer).
    const waiting = select(spi, null, w, null, null);
    conn.socket.resume();
    t.same(await within(waiting, 10_000, 'still waiting'), [1, 0], 'the select returns 1 once the peer reads');
    t.ok(S.FD_ISSET(s, w), 'with the socket in writefds');
    await conn.waitFor(sent);
    t.equal(conn.received().length, sent, 'the peer got every byte the sends reported');
  });

  t.test(`${f}: UDP: a select on readfds returns when a datagram arrives, and when an ICMP port unreachable waits to be reported`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const u = await newSocket(spi, f, 'udp');
    const name = await bindLoopback(spi, u, f);
    const r = S.fdSet(u);
    t.same(await select(spi, r, null, null, { tv_sec: 0, tv_usec: 1000 }), [0, 0], 'nothing yet: 0');
    const waiting = select(spi, S.fdSet(u), null, null, BOUND);
    const peer = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
    t.teardown(() => peer.close());
    peer.send(Buffer.from('datagram'), name.port, loopback(f));
    t.same(await waiting, [1, 0], 'a datagram: 1');
    const got = await recvInto(spi, u, [64]);
    t.equal(Buffer.from(got.data).toString(), 'datagram', 'the receive takes it');

    const closed = addr(f, await closedPort(f, 'udp'));
    t.same((await sendTo(spi, u, [Buffer.from('x')], closed, namelen(f))).slice(0, 2), [0, 0], 'a datagram to a closed port');
    const unreachable = S.fdSet(u);
    t.same(await select(spi, unreachable, null, null, BOUND), [1, 0], 'the port unreachable makes it readable');
    const failed = await recvInto(spi, u, [64]);
    t.same([failed.ret, failed.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the receive reports it');
    t.same(await select(spi, S.fdSet(u), null, null, { tv_sec: 0, tv_usec: 0 }), [0, 0], 'and it is not readable after that');
  });

  t.test(`${f}: after its own SD_RECEIVE a TCP socket is writable only, and after SD_SEND still writable`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s } = await connectedTcp(spi, f, peer);
    const all = (): [S.fd_set, S.fd_set, S.fd_set] => [S.fdSet(s), S.fdSet(s), S.fdSet(s)];
    t.same(await call((e) => spi.WSPShutdown(s, S.SD_RECEIVE, e)), [0, 0], 'SD_RECEIVE');
    const a = all();
    t.same(await select(spi, ...a, { tv_sec: 0, tv_usec: 0 }), [1, 0], 'select returns 1');
    t.same(a.map((x) => x.fd_count), [0, 1, 0], 'in writefds only');
    t.same(await call((e) => spi.WSPShutdown(s, S.SD_SEND, e)), [0, 0], 'SD_SEND too');
    const b = all();
    t.same(await select(spi, ...b, { tv_sec: 0, tv_usec: 0 }), [1, 0], 'select returns 1');
    t.same(b.map((x) => x.fd_count), [0, 1, 0], 'still in writefds only (Wine\'s test_WSAPoll: POLLWRNORM)');
  });

  t.test(`${f}: with SO_SNDBUF 0 a connected TCP socket is writable while nothing is on its way to the kernel`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    t.same(await setOpt(spi, s, S.SO_SNDBUF, 0), [0, 0], 'SO_SNDBUF 0');
    const w = S.fdSet(s);
    t.same(await select(spi, null, w, null, BOUND), [1, 0], 'writable: a send would go straight to the kernel');
    const ev = spi.WSACreateEvent();
    t.same(await call((e) => spi.WSPEventSelect(s, ev, S.FD_WRITE, e)), [0, 0], 'WSPEventSelect(FD_WRITE)');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'FD_WRITE is recorded too');
    t.same(await send(spi, s, [Buffer.from('zero')]), [0, 0, 4], 'and a send takes the bytes');
    t.equal((await conn.waitFor(4)).toString(), 'zero', 'the peer gets it');
  });

  t.test(`${f}: a connection deferred with CF_DEFER keeps its listening socket readable until WSPAccept takes it`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const l = await newSocket(spi, f, 'tcp');
    const name = await bindLoopback(spi, l, f);
    t.same(await call((e) => spi.WSPListen(l, 5, e)), [0, 0], 'listening');
    const c = await newSocket(spi, f, 'tcp');
    t.same(await call((e) => spi.WSPConnect(c, name, namelen(f), null, null, null, null, e)), [0, 0], 'a client connects');
    t.same(await call(async (e) => spi.WSPAccept(l, null, null, () => S.CF_DEFER, 0, e)), [S.INVALID_SOCKET, S.WSATRY_AGAIN], 'the condition function defers it: WSATRY_AGAIN');
    const r = S.fdSet(l);
    t.same(await select(spi, r, null, null, BOUND), [1, 0], 'select: 1 at once');
    t.ok(S.FD_ISSET(l, r), 'the listening socket is readable: the connection still waits');
    const accepted = await call((e) => spi.WSPAccept(l, null, null, null, 0, e));
    t.ok(accepted[0] !== S.INVALID_SOCKET, 'WSPAccept takes it');
    t.same(await select(spi, S.fdSet(l), null, null, { tv_sec: 0, tv_usec: 0 }), [0, 0], 'then the listening socket is not readable');
  });

  t.test(`${f}: another session's socket is not a socket of this one: WSAENOTSOCK`, async (t) => {
    const d = await daemon(t);
    const a = await session(t, d);
    const b = await session(t, d);
    const peer = await udpPeer(t, f);
    const theirs = await newSocket(b, f, 'udp');
    t.same(await select(a, null, S.fdSet(theirs), null, BOUND), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'select in the other session fails');
    t.same(await select(b, null, S.fdSet(theirs), null, BOUND), [1, 0], 'the owner sees it writable');
    t.same((await sendTo(b, theirs, [Buffer.from('still mine')], addr(f, peer.port), namelen(f))).slice(0, 2), [0, 0], 'and sends on it');
    await peer.waitFor(1);
  });
}

t.test('a select waiting for data reads past the received-bytes budget, as a waiting receive does', async (t) => {
  // A budget of 256 KiB for two sessions: 128 KiB each. Six sockets holding 64 KiB unread put the
  // session over its share, and all its sockets stop reading, except one a receive (or select)
  // waits on with nothing to take.
  const d = await daemon(t, { limits: { receivedBudgetBytes: 256 * 1024, maxSessions: 2 } });
  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const full: number[] = [];
  for (let i = 0; i < 6; i++) {
    const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
    conn.socket.write(Buffer.alloc(64 * 1024, i));
    full.push(s);
  }
  const unread = async (): Promise<number> => (await Promise.all(full.map((s) => fionread(spi, s)))).reduce((n, [, , b]) => n + b, 0);
  t.ok(await until(async () => (await unread()) > 256 * 1024), 'the sockets hold more than the budget: the session is over its share');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  await setNonBlocking(spi, s, true);
  conn.socket.write('first');
  const r = S.fdSet(s);
  t.same(await select(spi, r, null, null, BOUND), [1, 0], 'a select on readfds returns 1: the socket reads for it');
  t.ok(S.FD_ISSET(s, r), 'the socket is readable');
  t.equal((await recvInto(spi, s, [16])).data.toString(), 'first', 'and the receive gets the bytes');
  conn.socket.write('second');
  const again = S.fdSet(s);
  t.same(await select(spi, again, null, null, BOUND), [1, 0], 'again, with nothing left to take');
  t.equal((await recvInto(spi, s, [16])).data.toString(), 'second', 'and the receive gets the new bytes');
});

t.test('the SDK checks the caller\'s fd_set and timeval as the caller\'s memory', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  const bad = (r: unknown, timeout: unknown): Promise<[number, number]> => call((e) => spi.WSPSelect(0, r as S.fd_set, null, null, timeout as S.timeval, e));
  t.same(await bad({ fd_count: 2, fd_array: [u] }, null), [S.SOCKET_ERROR, S.WSAEFAULT], 'fd_count beyond fd_array: WSAEFAULT');
  t.same(await bad({ fd_count: -1, fd_array: [u] }, null), [S.SOCKET_ERROR, S.WSAEFAULT], 'a negative fd_count: WSAEFAULT');
  t.same(await bad([u], null), [S.SOCKET_ERROR, S.WSAEFAULT], 'an array for an fd_set: WSAEFAULT');
  t.same(await bad(S.fdSet(u), { tv_sec: 1 }), [S.SOCKET_ERROR, S.WSAEFAULT], 'a timeval without tv_usec: WSAEFAULT');
  t.same(await bad(S.fdSet(u), { tv_sec: 2 ** 31, tv_usec: 0 }), [S.SOCKET_ERROR, S.WSAEFAULT], 'tv_sec beyond a C long: WSAEFAULT');
  t.same(await bad(S.fdSet(u), { tv_sec: -1, tv_usec: 0 }), [S.SOCKET_ERROR, S.WSAEINVAL], 'a negative tv_sec: WSAEINVAL (the daemon)');
  t.same(await bad(S.fdSet(u), { tv_sec: 0, tv_usec: -1 }), [S.SOCKET_ERROR, S.WSAEINVAL], 'a negative tv_usec: WSAEINVAL');
  const big: S.fd_set = { fd_count: S.FD_SETSIZE + 1, fd_array: new Array<number>(S.FD_SETSIZE + 1).fill(u) };
  t.same(await bad(big, null), [S.SOCKET_ERROR, S.WSAENOBUFS], `more than FD_SETSIZE (${S.FD_SETSIZE}) sockets: WSAENOBUFS`);
  const full = S.fdSet();
  for (let i = 0; i < S.FD_SETSIZE + 5; i++) S.FD_SET(i, full);
  t.equal(full.fd_count, S.FD_SETSIZE, 'FD_SET stops at FD_SETSIZE, as the C macro does');
  const set = S.fdSet(1, 2, 3);
  S.FD_CLR(2, set);
  t.same(set.fd_array.slice(0, set.fd_count), [1, 3], 'FD_CLR moves the later entries down');
  t.same(await select(spi, null, S.fdSet(u), null, { tv_sec: 0, tv_usec: 0 }), [1, 0], 'the session still answers: the UDP socket is writable');
});

t.test(`a session's waiting selects watch at most ${S.MAX_SELECT_WATCHES} sockets; one more fails with WSAENOBUFS, and a close releases them`, async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const socks: number[] = [];
  for (let i = 0; i < 16; i++) socks.push(await newSocket(spi, 'ipv4', 'udp'));
  const calls = S.MAX_SELECT_WATCHES / socks.length;
  // Unbound UDP sockets have nothing to read: each select waits, watching 16 sockets.
  const waiting = Array.from({ length: calls }, () => select(spi, S.fdSet(...socks), null, null, null));
  t.same(await select(spi, S.fdSet(...socks), null, null, null), [S.SOCKET_ERROR, S.WSAENOBUFS], 'the next one fails at once');
  t.same(await select(spi, S.fdSet(...socks), null, null, { tv_sec: 0, tv_usec: 0 }), [0, 0], 'a select that does not wait still runs');
  t.same(await call((e) => spi.WSPCloseSocket(socks[0]!, e)), [0, 0], 'closing a socket they name');
  const results = await Promise.all(waiting);
  t.ok(results.every((r) => r[0] === 1 && r[1] === 0), `each of the ${calls} waiting selects returns 1: the closed socket, readable`);
  // Every watch was given back: the same number of selects wait again, and one more is refused.
  socks[0] = await newSocket(spi, 'ipv4', 'udp');
  const refill = Array.from({ length: calls }, () => select(spi, S.fdSet(...socks), null, null, null));
  t.same(await select(spi, S.fdSet(...socks), null, null, null), [S.SOCKET_ERROR, S.WSAENOBUFS], `${calls} selects wait again; the next one is refused`);
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  const name = await bindLoopback(spi, socks[1]!, 'ipv4');
  peer.send(Buffer.from('x'), name.port, '127.0.0.1');
  const ended = await Promise.all(refill);
  t.ok(ended.every((r) => r[0] === 1 && r[1] === 0), 'a datagram to a socket they all name ends them all');
});

t.test('a busy socket that many selects watch for something else asks itself once per change, not once per select', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  const name = await bindLoopback(spi, u, 'ipv4');
  t.same(await call((e) => spi.WSPShutdown(u, S.SD_SEND, e)), [0, 0], 'SD_SEND: the socket is never writable again');
  await setNonBlocking(spi, u, true);
  const SELECTS = 2000;
  const waiting = Array.from({ length: SELECTS }, () => select(spi, null, S.fdSet(u), null, null));
  // The daemon takes calls in order: once this one is answered, every select waits.
  await roundTrip(spi);
  // Counts the daemon's questions to UDP sockets (the daemon runs in this process).
  const original = UdpSocket.prototype.selectReady;
  let asked = 0;
  UdpSocket.prototype.selectReady = function (this: UdpSocket, wanted: number): number {
    asked++;
    return original.call(this, wanted);
  };
  t.teardown(() => {
    UdpSocket.prototype.selectReady = original;
  });
  const DATAGRAMS = 100;
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  for (let i = 0; i < DATAGRAMS; i++) peer.send(Buffer.from(`d${i}`), name.port, '127.0.0.1');
  let got = 0;
  t.ok(await until(async () => {
    for (;;) {
      const r = await recvInto(spi, u, [16]);
      if (r.ret !== 0) return got === DATAGRAMS;
      got++;
    }
  }), `the socket received the ${DATAGRAMS} datagrams`);
  t.ok(asked > 0 && asked <= 3 * DATAGRAMS, `the socket was asked ${asked} times for ${DATAGRAMS} datagrams and ${SELECTS} waiting selects`);
  t.same(await call((e) => spi.WSPCloseSocket(u, e)), [0, 0], 'closing it');
  const results = await Promise.all(waiting);
  t.ok(results.every((r) => r[0] === S.SOCKET_ERROR && r[1] === S.WSAENOTSOCK), 'ends every select: WSAENOTSOCK (writefds only)');
});

t.test('the daemon stopping ends a waiting select with WSAENETDOWN', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  const waiting = select(spi, S.fdSet(u), null, null, null);
  // Handled in order: the select waits before the daemon begins to stop.
  t.same(await select(spi, null, S.fdSet(u), null, null), [1, 0], 'the session answers while one select waits');
  await d.close();
  t.same(await waiting, [S.SOCKET_ERROR, S.WSAENETDOWN], 'the waiting select fails with WSAENETDOWN');
});
