/**
 * Wine's test_tcp_reset (dlls/ws2_32/tests/sock.c): a receive pending when the peer resets, and
 * what the socket reports afterwards; also Wine's close_with_rst helper (SO_LINGER {1, 0}, then
 * closesocket), which the suite relies on to make a reset. The reset here comes from a node:net
 * peer; spiwire's own SO_LINGER {1, 0} close is the last case. The poll() and select() checks have
 * no SPI equivalent.
 */
import t from 'tap';
import * as net from 'node:net';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, addr, fileDaemon, loopback, must, namelen, nodePeerPair, openSession, ovRecv, ovResult, resetNode, send, socket, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Reset {
  spi: S.SpiSession;
  client: number;
  sock: net.Socket;
  ev: number;
}

const sc = new Scenario<Reset>(async (f: Family) => {
  const spi = await openSession(t, d);
  const { sock, server } = await nodePeerPair(t, spi, f);
  return { spi, client: server, sock, ev: spi.WSACreateEvent() };
});

sc.step(t, 'test_tcp_reset: a receive pending when the peer resets completes with WSAECONNRESET and 0 bytes', {}, async (c, x) => {
  const ov = new S.WSAOVERLAPPED(x.ev);
  const r = await ovRecv(x.spi, x.client, 10, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the receive is pending');
  await resetNode(x.sock);
  c.ok(await waitEvent(x.spi, x.ev, EVENT_BOUND_MS), 'the receive completes');
  const res = await ovResult(x.spi, x.client, ov, false);
  c.same([res.ret, res.err, res.bytes], [S.FALSE, S.WSAECONNRESET, 0], 'WSPGetOverlappedResult: FALSE, WSAECONNRESET, 0 bytes');
});

sc.step(t, 'test_tcp_reset: SO_ERROR reads 0 after the reset', {}, async (c, x) => {
  const v = new Uint8Array(4).fill(0xcc);
  const len = S.out(4);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockOpt(x.client, S.SOL_SOCKET, S.SO_ERROR, v, len, e);
  c.same([r, new DataView(v.buffer).getUint32(0, true)], [0, 0], 'SO_ERROR');
});

sc.step(t, 'test_tcp_reset: an overlapped receive after the reset fails at once with WSAECONNRESET', {}, async (c, x) => {
  const r = await ovRecv(x.spi, x.client, 10, new S.WSAOVERLAPPED(x.ev));
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAECONNRESET], 'overlapped receive');
});

sc.step(t, 'test_tcp_reset: a send after the reset fails with WSAECONNRESET', {}, async (c, x) => {
  const r = await send(x.spi, x.client, 'data\0');
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAECONNRESET], 'send');
  await x.spi.WSPCloseSocket(x.client, S.out(0));
});

// ---- Wine's close_with_rst, done by spiwire.

const rst = new Scenario<{ spi: S.SpiSession; s: number; peer: net.Socket }>(async (f: Family) => {
  const spi = await openSession(t, d);
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, loopback(f), r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const s = await socket(spi, f, 'tcp');
  await must('WSPConnect', (e) => spi.WSPConnect(s, addr(f, (server.address() as net.AddressInfo).port), namelen(f), null, null, null, null, e));
  const peer = await accepted;
  t.teardown(() => {
    peer.destroy();
  });
  return { spi, s, peer };
});

rst.step(t, 'test_tcp_reset: SO_LINGER {1, 0} then closesocket makes the peer see a reset, not the end of the stream', {}, async (c, x) => {
  const seen = new Promise<string>((resolve) => {
    x.peer.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    x.peer.once('end', () => resolve('end (FIN)'));
    setTimeout(() => resolve('nothing'), EVENT_BOUND_MS);
  });
  x.peer.resume();
  // struct linger { u_short l_onoff = 1; u_short l_linger = 0; }
  const linger = new Uint8Array([1, 0, 0, 0]);
  const e = S.out(0);
  c.equal(await x.spi.WSPSetSockOpt(x.s, S.SOL_SOCKET, S.SO_LINGER, linger, 4, e), 0, 'SO_LINGER {1, 0}');
  c.equal(await x.spi.WSPCloseSocket(x.s, e), 0, 'closesocket');
  c.equal(await seen, 'ECONNRESET', 'what the peer sees');
});
