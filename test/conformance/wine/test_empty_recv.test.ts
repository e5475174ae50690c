/**
 * Wine's test_empty_recv (dlls/ws2_32/tests/sock.c): receives with no buffers and with one
 * zero-length buffer, overlapped and not.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, fileDaemon, fionread, openSession, ovResult, reached, recv, send, tcpPair, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Ctx {
  spi: S.SpiSession;
  client: number;
  server: number;
  ev: number;
  ov: S.WSAOVERLAPPED;
}

const sc = new Scenario<Ctx>(async (f: Family) => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f);
  const ev = spi.WSACreateEvent();
  return { spi, ...p, ev, ov: new S.WSAOVERLAPPED(ev) };
});

async function ovRecvBufs(x: Ctx, bufs: S.WSABUF[] | null, count: number, withCount = false): Promise<[number, number, number]> {
  const e = S.out(0);
  const got = S.out(0xdeadbeef);
  const r = await x.spi.WSPRecv(x.client, bufs, count, withCount ? got : null, S.out(0), x.ov, null, null, e);
  return [r, e.value, got.value];
}

sc.step(t, 'test_empty_recv: an overlapped receive with no buffers (count 0) fails with WSAEINVAL', {}, async (c, x) => {
  const [r, err] = await ovRecvBufs(x, null, 0);
  c.same([r, err], [S.SOCKET_ERROR, S.WSAEINVAL], 'WSPRecv(NULL, 0)');
});

sc.step(t, 'test_empty_recv: an overlapped receive with a buffer but a count of 0 fails with WSAEINVAL', {}, async (c, x) => {
  const [r, err] = await ovRecvBufs(x, [S.wsabuf(new Uint8Array(5), 0)], 0);
  c.same([r, err], [S.SOCKET_ERROR, S.WSAEINVAL], 'WSPRecv(buffer, 0)');
});

sc.step(t, 'test_empty_recv: an overlapped receive into one zero-length buffer pends until data comes', {}, async (c, x) => {
  x.spi.WSAResetEvent(x.ev);
  const [r, err] = await ovRecvBufs(x, [S.wsabuf(new Uint8Array(5), 0)], 1);
  c.same([r, err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'WSPRecv(one buffer of 0 bytes)');
});

sc.step(t, 'test_empty_recv: that receive completes with 0 bytes when the peer sends', {}, async (c, x) => {
  const s = await send(x.spi, x.server, 'data\0');
  c.same([s.ret, s.sent], [0, 5], 'the peer sends 5 bytes');
  c.ok(await waitEvent(x.spi, x.ev, EVENT_BOUND_MS), 'the receive completes');
  const res = await ovResult(x.spi, x.client, x.ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 0], 'WSPGetOverlappedResult: TRUE, 0 bytes');
});

sc.step(t, 'test_empty_recv: with data waiting, an overlapped receive into one zero-length buffer returns 0 at once with 0 bytes', {}, async (c, x) => {
  await reached(async () => (await fionread(x.spi, x.client)) >= 5);
  const [r, err, n] = await ovRecvBufs(x, [S.wsabuf(new Uint8Array(5), 0)], 1, true);
  c.same([r, err, n], [0, 0, 0], 'WSPRecv(one buffer of 0 bytes)');
});

sc.step(t, 'test_empty_recv: a receive of 0 bytes returns 0', {}, async (c, x) => {
  const r = await recv(x.spi, x.client, 0);
  c.same([r.ret, r.bytes], [0, 0], 'receive of 0 bytes');
});

sc.step(t, 'test_empty_recv: the data is all still there', {}, async (c, x) => {
  const r = await recv(x.spi, x.client, 5);
  c.same([r.ret, r.bytes, r.data.toString('latin1')], [0, 5, 'data\0'], 'receive of 5 bytes');
  await x.spi.WSPCloseSocket(x.client, S.out(0));
  await x.spi.WSPCloseSocket(x.server, S.out(0));
});
