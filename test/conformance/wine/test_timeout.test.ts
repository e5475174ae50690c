/**
 * Wine's test_timeout (dlls/ws2_32/tests/sock.c): SO_RCVTIMEO on a connected pair made with
 * WSA_FLAG_OVERLAPPED (Wine's tcp_socketpair). A blocking receive that finds nothing within the
 * timeout fails with WSAETIMEDOUT, each call on its own; an overlapped receive is not bound by it.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, call, dword, fileDaemon, must, openSession, ovRecv, readU32, recv, send, tcpPair, waitEvent, EVENT_BOUND_MS } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Pair {
  spi: S.SpiSession;
  client: number;
  server: number;
  ov: S.WSAOVERLAPPED | null;
}

const pair = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)), ov: null };
});

async function rcvTimeo(spi: S.SpiSession, s: number): Promise<[number, number, number]> {
  const v = dword(0xdeadbeef);
  const len = S.out(4);
  const r = await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_RCVTIMEO, v, len, S.out(0));
  return [r, readU32(v), len.value];
}

pair.step(t, 'test_timeout: SO_RCVTIMEO is 0 by default, and reads back 100 once set', {}, async (c, x) => {
  c.same(await rcvTimeo(x.spi, x.client), [0, 0, 4], 'the default: 0, in 4 bytes');
  await must('SO_RCVTIMEO', (e) => x.spi.WSPSetSockOpt(x.client, S.SOL_SOCKET, S.SO_RCVTIMEO, dword(100), 4, e));
  c.same(await rcvTimeo(x.spi, x.client), [0, 100, 4], 'after setting 100');
});

pair.step(t, 'test_timeout: a blocking receive with nothing to read fails with WSAETIMEDOUT, and so does a WSARecv right after', {}, async (c, x) => {
  const r = await recv(x.spi, x.client, 1);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAETIMEDOUT], 'recv');
  const got = S.out(0xdeadbeef);
  const again = await call((e) => x.spi.WSPRecv(x.client, [S.wsabuf(new Uint8Array(1))], 1, got, S.out(0), null, null, null, e));
  c.same(again, [S.SOCKET_ERROR, S.WSAETIMEDOUT], 'WSARecv, not overlapped');
  c.equal(got.value, 0xdeadbeef, 'its byte count is left alone');
});

pair.step(t, 'test_timeout: an overlapped receive is not bound by the timeout, and takes a byte sent later', {}, async (c, x) => {
  const ev = x.spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const r = await ovRecv(x.spi, x.client, 1, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'WSARecv pends');
  c.equal(await waitEvent(x.spi, ev, 200), false, 'still pending after 200 ms, twice the timeout');
  c.same((await send(x.spi, x.server, 'a')).ret, 0, 'the peer sends one byte');
  c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), 'the receive completes');
  const bytes = S.out(0);
  c.same(await call((e) => x.spi.WSPGetOverlappedResult(x.client, ov, bytes, false, S.out(0), e)), [S.TRUE, 0], 'WSPGetOverlappedResult');
  c.equal(bytes.value, 1, 'with 1 byte');
  for (const s of [x.client, x.server]) await x.spi.WSPCloseSocket(s, S.out(0));
});
