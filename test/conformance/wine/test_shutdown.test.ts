/**
 * Wine's test_shutdown (dlls/ws2_32/tests/sock.c): WSPShutdown on TCP and UDP sockets, what each
 * direction refuses afterwards, what the peer sees, and overlapped receives across a shutdown.
 * test_shutdown_completion_port checks that shutdown, WSASendDisconnect and WSARecvDisconnect
 * queue no completion-port packet (spiwire has no completion ports: not applicable); its calls of
 * the Disconnect functions on a connected socket are ported (they succeed).
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, accept, addr, call, fileDaemon, getName, listener, must, namelen, openSession, ovRecv, recv, send, setBlocking, socket, syncRecv, tcpPair, waitEvent, ovResult, EVENT_BOUND_MS, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const shut = (spi: S.SpiSession, s: number, how: number): Promise<[number, number]> => call((e) => spi.WSPShutdown(s, how, e));

// ---- the main sequence: a client shuts down its sending side, then both sides the rest.

interface Main {
  spi: S.SpiSession;
  l: { s: number; name: S.SockAddr };
  client: number;
  server: number;
}

const main = new Scenario<Main>(async (f: Family) => {
  const spi = await openSession(t, d);
  const l = await listener(spi, f);
  const client = await socket(spi, f, 'tcp');
  return { spi, l, client, server: -1 };
});

main.step(t, 'test_shutdown: SD_SEND and SD_RECEIVE on a socket that is not connected fail with WSAENOTCONN', {}, async (c, m) => {
  c.same(await shut(m.spi, m.client, S.SD_SEND), [S.SOCKET_ERROR, S.WSAENOTCONN], 'SD_SEND');
  c.same(await shut(m.spi, m.client, S.SD_RECEIVE), [S.SOCKET_ERROR, S.WSAENOTCONN], 'SD_RECEIVE');
  await must('WSPConnect', (e) => m.spi.WSPConnect(m.client, m.l.name, namelen(c.f), null, null, null, null, e));
  m.server = await accept(m.spi, m.l.s);
  await setBlocking(m.spi, m.client, false);
});

main.step(t, 'test_shutdown: SD_SEND succeeds, and succeeds again', {}, async (c, m) => {
  c.same(await shut(m.spi, m.client, S.SD_SEND), [0, 0], 'first SD_SEND');
  c.same(await shut(m.spi, m.client, S.SD_SEND), [0, 0], 'second SD_SEND');
});

main.step(t, 'test_shutdown: a send after SD_SEND fails with WSAESHUTDOWN', {}, async (c, m) => {
  const r = await send(m.spi, m.client, 'test\0');
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'send');
});

main.step(t, 'test_shutdown: the peer of SD_SEND reads the end of the stream, 0 bytes, and 0 again', {}, async (c, m) => {
  const a = await recv(m.spi, m.server, 5);
  c.same([a.ret, a.bytes], [0, 0], 'first receive');
  const b = await recv(m.spi, m.server, 5);
  c.same([b.ret, b.bytes], [0, 0], 'second receive');
});

main.step(t, 'test_shutdown: after SD_RECEIVE a receive fails with WSAESHUTDOWN', {}, async (c, m) => {
  c.same(await shut(m.spi, m.server, S.SD_RECEIVE), [0, 0], 'SD_RECEIVE');
  const r = await recv(m.spi, m.server, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'receive');
});

main.step(t, 'test_shutdown: a socket shut for receiving still sends, and its peer gets the bytes', {}, async (c, m) => {
  const r = await send(m.spi, m.server, 'test\0');
  c.same([r.ret, r.sent], [0, 5], 'send of 5 bytes');
  const got = await syncRecv(m.spi, m.client, 5);
  c.equal(got.n, 5, 'the peer receives 5 bytes');
  c.equal(got.data.toString('latin1'), 'test\0', 'the bytes sent');
});

main.step(t, 'test_shutdown: SD_RECEIVE on the other side: receives fail with WSAESHUTDOWN, twice', {}, async (c, m) => {
  c.same(await shut(m.spi, m.client, S.SD_RECEIVE), [0, 0], 'SD_RECEIVE');
  const a = await recv(m.spi, m.client, 5);
  c.same([a.ret, a.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'first receive');
  const b = await recv(m.spi, m.client, 5);
  c.same([b.ret, b.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'second receive');
});

main.step(t, 'test_shutdown: SD_SEND on the second side: its sends fail with WSAESHUTDOWN', {}, async (c, m) => {
  c.same(await shut(m.spi, m.server, S.SD_SEND), [0, 0], 'SD_SEND');
  const r = await send(m.spi, m.server, 'test\0');
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'send');
});

main.step(t, 'test_shutdown: names survive the shutdown: WSPGetPeerName and WSPGetSockName still answer', {}, async (c, m) => {
  const [rp, ep, peer] = await getName(m.spi, m.client, true);
  c.same([rp, ep], [0, 0], 'client WSPGetPeerName');
  c.same([peer.address, peer.port], [m.l.name.address, m.l.name.port], 'the client peer is the server address');
  const [rn, en, mine] = await getName(m.spi, m.client);
  c.same([rn, en], [0, 0], 'client WSPGetSockName');
  const [rs, es, speer] = await getName(m.spi, m.server, true);
  c.same([rs, es], [0, 0], 'server WSPGetPeerName');
  c.same([speer.address, speer.port], [mine.address, mine.port], 'the server peer is the client address');
});

main.step(t, 'test_shutdown: WSPConnect on a shut-down connected socket fails with WSAEISCONN', {}, async (c, m) => {
  c.same(await call((e) => m.spi.WSPConnect(m.client, m.l.name, namelen(c.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEISCONN], 'connect');
});

main.step(t, 'test_shutdown: an unknown how (0xdeadbeef) fails with WSAEINVAL', {}, async (c, m) => {
  c.same(await shut(m.spi, m.client, 0xdeadbeef), [S.SOCKET_ERROR, S.WSAEINVAL], 'shutdown(0xdeadbeef)');
  await m.spi.WSPCloseSocket(m.client, S.out(0));
  await m.spi.WSPCloseSocket(m.server, S.out(0));
});

// ---- SD_BOTH.

interface Pair {
  spi: S.SpiSession;
  client: number;
  server: number;
}

const both = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)) };
});

both.step(t, 'test_shutdown: after SD_BOTH receives and sends fail with WSAESHUTDOWN', {}, async (c, p) => {
  c.same(await shut(p.spi, p.client, S.SD_BOTH), [0, 0], 'SD_BOTH');
  const r = await recv(p.spi, p.client, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'receive');
  const s = await send(p.spi, p.client, 'test\0');
  c.same([s.ret, s.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'send');
});

both.step(t, 'test_shutdown: the peer of SD_BOTH reads the end of the stream, 0 bytes', {}, async (c, p) => {
  const r = await recv(p.spi, p.server, 5);
  c.same([r.ret, r.bytes], [0, 0], 'receive');
});

both.step(t, 'test_shutdown: SD_BOTH on the second side: its receives and sends fail with WSAESHUTDOWN', {}, async (c, p) => {
  c.same(await shut(p.spi, p.server, S.SD_BOTH), [0, 0], 'SD_BOTH');
  const r = await recv(p.spi, p.server, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'receive');
  const s = await send(p.spi, p.server, 'test\0');
  c.same([s.ret, s.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'send');
});

both.step(t, 'test_shutdown: names survive SD_BOTH on both sides', {}, async (c, p) => {
  const [rp, ep, peer] = await getName(p.spi, p.client, true);
  const [rs, es, sname] = await getName(p.spi, p.server);
  c.same([rp, ep], [0, 0], 'client WSPGetPeerName');
  c.same([rs, es], [0, 0], 'server WSPGetSockName');
  c.same([peer.address, peer.port], [sname.address, sname.port], 'the client peer is the server address');
  const [rn, en, mine] = await getName(p.spi, p.client);
  const [rq, eq, speer] = await getName(p.spi, p.server, true);
  c.same([rn, en], [0, 0], 'client WSPGetSockName');
  c.same([rq, eq], [0, 0], 'server WSPGetPeerName');
  c.same([speer.address, speer.port], [mine.address, mine.port], 'the server peer is the client address');
  await p.spi.WSPCloseSocket(p.client, S.out(0));
  await p.spi.WSPCloseSocket(p.server, S.out(0));
});

// ---- sending to a peer that has shut down and closed.

const closedPeer = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)) };
});

closedPeer.step(t, 'test_shutdown: a send to a peer that shut down its sending side and closed still succeeds', {}, async (c, p) => {
  c.same(await shut(p.spi, p.client, S.SD_SEND), [0, 0], 'peer SD_SEND');
  await p.spi.WSPCloseSocket(p.client, S.out(0));
  const r = await send(p.spi, p.server, 'test\0');
  c.same([r.ret, r.sent], [0, 5], 'send');
});

closedPeer.step(t, 'test_shutdown: the receive after sending to the closed peer fails with WSAECONNABORTED', {}, async (c, p) => {
  const r = await recv(p.spi, p.server, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAECONNABORTED], 'receive');
  await p.spi.WSPCloseSocket(p.server, S.out(0));
});

// ---- overlapped receives across a shutdown.

interface Pending extends Pair {
  ev: number;
  ov: S.WSAOVERLAPPED;
  buf: Uint8Array;
}

const pending = new Scenario<Pending>(async (f) => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f);
  await setBlocking(spi, p.client, false);
  const ev = spi.WSACreateEvent();
  return { spi, ...p, ev, ov: new S.WSAOVERLAPPED(ev), buf: new Uint8Array(0) };
});

pending.step(t, 'test_shutdown: with an overlapped receive pending, SD_RECEIVE succeeds and a plain receive fails with WSAESHUTDOWN', {}, async (c, p) => {
  const r = await ovRecv(p.spi, p.client, 5, p.ov);
  p.buf = r.buf;
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the overlapped receive is pending');
  c.same(await shut(p.spi, p.client, S.SD_RECEIVE), [0, 0], 'SD_RECEIVE');
  const plain = await recv(p.spi, p.client, 5);
  c.same([plain.ret, plain.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'plain receive');
});

pending.step(t, 'test_shutdown: the overlapped receive pending at SD_RECEIVE completes with the peer\'s next bytes', {}, async (c, p) => {
  const s = await send(p.spi, p.server, 'test\0');
  c.same([s.ret, s.sent], [0, 5], 'peer sends 5 bytes');
  c.ok(await waitEvent(p.spi, p.ev, EVENT_BOUND_MS), 'the receive completes');
  const res = await ovResult(p.spi, p.client, p.ov, false);
  c.same([res.ret, res.err, res.bytes], [S.TRUE, 0, 5], 'WSPGetOverlappedResult: TRUE, 5 bytes');
  c.equal(Buffer.from(p.buf).toString('latin1'), 'test\0', 'the bytes');
});

pending.step(t, 'test_shutdown: an overlapped receive after SD_RECEIVE fails at once with WSAESHUTDOWN', {}, async (c, p) => {
  const ov = new S.WSAOVERLAPPED(p.ev);
  const r = await ovRecv(p.spi, p.client, 5, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'overlapped receive');
});

pending.step(t, 'test_shutdown: an overlapped receive pending on the peer completes with 0 bytes at SD_SEND', {}, async (c, p) => {
  const ov = new S.WSAOVERLAPPED(p.ev);
  const r = await ovRecv(p.spi, p.server, 5, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the peer\'s overlapped receive is pending');
  c.same(await shut(p.spi, p.client, S.SD_SEND), [0, 0], 'SD_SEND');
  c.ok(await waitEvent(p.spi, p.ev, EVENT_BOUND_MS), 'the receive completes');
  const res = await ovResult(p.spi, p.server, ov, false);
  c.same([res.ret, res.err, res.bytes], [S.TRUE, 0, 0], 'WSPGetOverlappedResult: TRUE, 0 bytes');
  await p.spi.WSPCloseSocket(p.client, S.out(0));
  await p.spi.WSPCloseSocket(p.server, S.out(0));
});

// ---- a listening socket, and UDP.

const listening = new Scenario<{ spi: S.SpiSession; l: number }>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, l: (await listener(spi, f)).s };
});

listening.step(t, 'test_shutdown: SD_SEND and SD_RECEIVE on a listening socket fail with WSAENOTCONN', {}, async (c, p) => {
  c.same(await shut(p.spi, p.l, S.SD_SEND), [S.SOCKET_ERROR, S.WSAENOTCONN], 'SD_SEND');
  c.same(await shut(p.spi, p.l, S.SD_RECEIVE), [S.SOCKET_ERROR, S.WSAENOTCONN], 'SD_RECEIVE');
});

interface Udp {
  spi: S.SpiSession;
  client: number;
  server: number;
  to: S.SockAddr;
}

const udp = new Scenario<Udp>(async (f) => {
  const spi = await openSession(t, d);
  const client = await socket(spi, f, 'udp');
  const server = await socket(spi, f, 'udp');
  await must('WSPBind', (e) => spi.WSPBind(server, addr(f, 0), namelen(f), e));
  const [, , to] = await getName(spi, server);
  await setBlocking(spi, server, false);
  return { spi, client, server, to };
});

udp.step(t, 'test_shutdown: UDP: after SD_RECEIVE a receive fails with WSAESHUTDOWN', {}, async (c, u) => {
  c.same(await shut(u.spi, u.server, S.SD_RECEIVE), [0, 0], 'SD_RECEIVE');
  const e = S.out(0);
  const got = S.out(0);
  const from = { family: 0, address: '', port: 0 };
  const r = await u.spi.WSPRecvFrom(u.server, [S.wsabuf(new Uint8Array(5))], 1, got, S.out(0), from, S.out(28), null, null, null, e);
  c.same([r, e.value], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'WSPRecvFrom');
});

udp.step(t, 'test_shutdown: UDP: SD_SEND succeeds twice, then a send fails with WSAESHUTDOWN', {}, async (c, u) => {
  const sendTo = async (): Promise<[number, number]> => call((e) => u.spi.WSPSendTo(u.client, [S.wsabuf('test\0')], 1, S.out(0), 0, u.to, namelen(c.f), null, null, null, e));
  c.same(await sendTo(), [0, 0], 'WSPSendTo before the shutdown');
  c.same(await shut(u.spi, u.client, S.SD_SEND), [0, 0], 'first SD_SEND');
  c.same(await shut(u.spi, u.client, S.SD_SEND), [0, 0], 'second SD_SEND');
  c.same(await sendTo(), [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'WSPSendTo after SD_SEND');
});

// ---- test_shutdown_completion_port: the Disconnect functions on a connected socket.

const disconnect = new Scenario<{ spi: S.SpiSession; client: number; server: number }>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)) };
});

disconnect.step(t, 'test_shutdown: (test_shutdown_completion_port) WSASendDisconnect then WSARecvDisconnect with no disconnect data, on a connected TCP socket, each return 0', {}, async (c, p) => {
  c.same(await call((e) => p.spi.WSPSendDisconnect(p.client, null, e)), [0, 0], 'WSPSendDisconnect(NULL)');
  c.same(await call((e) => p.spi.WSPRecvDisconnect(p.client, null, e)), [0, 0], 'WSPRecvDisconnect(NULL)');
  const r = await recv(p.spi, p.server, 16);
  c.same([r.ret, r.bytes], [0, 0], 'the peer reads the end of the stream');
  for (const s of [p.client, p.server]) await p.spi.WSPCloseSocket(s, S.out(0));
});
