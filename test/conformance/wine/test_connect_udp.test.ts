/**
 * Wine's test_connect_udp (dlls/ws2_32/tests/sock.c): a UDP socket's default peer, set with
 * WSPConnect, changed, and dissolved with an AF_UNSPEC address; sends and receives around it.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, addr, call, fileDaemon, getName, must, namelen, openSession, reached, fionread, recv, send, setBlocking, socket, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Udp {
  spi: S.SpiSession;
  client: number;
  server: number;
  to: S.SockAddr;
}

const sc = new Scenario<Udp>(async (f: Family) => {
  const spi = await openSession(t, d);
  const client = await socket(spi, f, 'udp');
  const server = await socket(spi, f, 'udp');
  await setBlocking(spi, client, false);
  await setBlocking(spi, server, false);
  return { spi, client, server, to: addr(f, 0) };
});

const connect = (u: Udp, f: Family, to: S.SockAddr): Promise<[number, number]> => call((e) => u.spi.WSPConnect(u.client, to, namelen(f), null, null, null, null, e));

sc.step(t, 'test_connect_udp: a send on a UDP socket without a default peer fails with WSAENOTCONN', {}, async (c, u) => {
  const r = await send(u.spi, u.client, 'data');
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAENOTCONN], 'send');
});

sc.step(t, 'test_connect_udp: a receive on an unbound UDP socket fails with WSAEINVAL', {}, async (c, u) => {
  const r = await recv(u.spi, u.server, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAEINVAL], 'receive');
});

sc.step(t, 'test_connect_udp: a nonblocking receive on a bound UDP socket with nothing queued fails with WSAEWOULDBLOCK', {}, async (c, u) => {
  await must('WSPBind', (e) => u.spi.WSPBind(u.server, addr(c.f, 0), namelen(c.f), e));
  u.to = (await getName(u.spi, u.server))[2];
  const r = await recv(u.spi, u.server, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'receive');
});

sc.step(t, 'test_connect_udp: WSPConnect sets the default peer; WSPGetPeerName returns it, and the unconnected socket has none', {}, async (c, u) => {
  c.same(await connect(u, c.f, u.to), [0, 0], 'connect');
  const [rp, ep, peer] = await getName(u.spi, u.client, true);
  c.same([rp, ep, peer.address, peer.port], [0, 0, u.to.address, u.to.port], 'WSPGetPeerName on the connected socket');
  const [rn, en] = await getName(u.spi, u.client);
  c.same([rn, en], [0, 0], 'WSPGetSockName on the connected socket');
  const [rs, es] = await getName(u.spi, u.server, true);
  c.same([rs, es], [S.SOCKET_ERROR, S.WSAENOTCONN], 'WSPGetPeerName on the other socket');
});

sc.step(t, 'test_connect_udp: a send to the default peer arrives, 4 bytes; then nothing is queued (WSAEWOULDBLOCK)', {}, async (c, u) => {
  const s = await send(u.spi, u.client, 'data');
  c.same([s.ret, s.sent], [0, 4], 'send');
  await reached(async () => (await fionread(u.spi, u.server)) > 0);
  const r = await recv(u.spi, u.server, 5);
  c.same([r.ret, r.bytes, r.data.toString()], [0, 4, 'data'], 'receive');
  const again = await recv(u.spi, u.server, 5);
  c.same([again.ret, again.err], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'second receive');
});

sc.step(t, 'test_connect_udp: a send on the socket that has no default peer fails with WSAENOTCONN', {}, async (c, u) => {
  const r = await send(u.spi, u.server, 'data');
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAENOTCONN], 'send');
});

sc.step(t, 'test_connect_udp: connecting again, to the same address and to another port, succeeds', {}, async (c, u) => {
  c.same(await connect(u, c.f, u.to), [0, 0], 'the same address');
  c.same(await connect(u, c.f, { ...u.to, port: u.to.port + 1 }), [0, 0], 'the next port');
});

sc.step(t, 'test_connect_udp: WSPConnect with an AF_UNSPEC address dissolves the default peer', {}, async (c, u) => {
  const unspec: S.SockAddr = { family: S.AF_UNSPEC, address: c.f === 'ipv4' ? '0.0.0.0' : '::', port: 0 };
  c.same(await connect(u, c.f, unspec), [0, 0], 'connect(AF_UNSPEC)');
  const [rp, ep] = await getName(u.spi, u.client, true);
  c.same([rp, ep], [S.SOCKET_ERROR, S.WSAENOTCONN], 'WSPGetPeerName afterwards');
  await u.spi.WSPCloseSocket(u.client, S.out(0));
  await u.spi.WSPCloseSocket(u.server, S.out(0));
});
