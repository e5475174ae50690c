/**
 * Wine's test_WSAGetOverlappedResult (dlls/ws2_32/tests/sock.c), for WSPGetOverlappedResult:
 * handles that are not sockets, the result of pending, completed and failed operations, and an
 * OVERLAPPED still marked pending whose event is already signalled, with fWait TRUE.
 *
 * Wine also loops over every NTSTATUS in Internal and checks the error each maps to. spiwire's
 * WSAOVERLAPPED follows the provider conventions of the WSPGetOverlappedResult reference instead
 * (Internal 0x103 while pending, the WSA error in OffsetHigh), so that loop has no equivalent; the
 * cases below check the same outcomes through real operations.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, fileDaemon, nodePeerPair, openSession, ovRecv, ovResult, ovSend, resetNode, socket, tcpPair, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Ctx {
  spi: S.SpiSession;
  f: Family;
}

const sc = new Scenario<Ctx>(async (f: Family) => ({ spi: await openSession(t, d), f }));

sc.step(t, 'test_WSAGetOverlappedResult: a handle that is no socket (0xdeadbeef) fails with WSAENOTSOCK', {}, async (c, x) => {
  const ov = new S.WSAOVERLAPPED();
  const r = await ovResult(x.spi, 0xdeadbeef, ov, false);
  c.same([r.ret, r.err], [S.FALSE, S.WSAENOTSOCK], 'WSPGetOverlappedResult');
});

sc.step(t, 'test_WSAGetOverlappedResult: the handle of a closed socket fails with WSAENOTSOCK', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  await x.spi.WSPCloseSocket(s, S.out(0));
  const r = await ovResult(x.spi, s, new S.WSAOVERLAPPED(), false);
  c.same([r.ret, r.err], [S.FALSE, S.WSAENOTSOCK], 'WSPGetOverlappedResult');
});

sc.step(t, 'test_WSAGetOverlappedResult: a pending operation gives FALSE with WSA_IO_INCOMPLETE when fWait is FALSE', {}, async (c, x) => {
  const { client, server } = await tcpPair(x.spi, x.f);
  const ov = new S.WSAOVERLAPPED(x.spi.WSACreateEvent());
  const r = await ovRecv(x.spi, client, 16, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'a pending receive');
  const res = await ovResult(x.spi, client, ov, false);
  c.same([res.ret, res.err], [S.FALSE, S.WSA_IO_INCOMPLETE], 'WSPGetOverlappedResult');
  await x.spi.WSPCloseSocket(client, S.out(0));
  await x.spi.WSPCloseSocket(server, S.out(0));
});

sc.step(t, 'test_WSAGetOverlappedResult: a completed operation gives TRUE with its byte count', {}, async (c, x) => {
  const { client, server } = await tcpPair(x.spi, x.f);
  const ev = x.spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const r = await ovSend(x.spi, client, 'twelve bytes', ov);
  c.equal(r.ret === 0 || r.err === S.WSA_IO_PENDING, true, 'the send starts');
  c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), 'it completes');
  const res = await ovResult(x.spi, client, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 12], 'WSPGetOverlappedResult: TRUE, 12 bytes');
  await x.spi.WSPCloseSocket(client, S.out(0));
  await x.spi.WSPCloseSocket(server, S.out(0));
});

sc.step(t, 'test_WSAGetOverlappedResult: an operation that failed gives FALSE with its error (a reset: WSAECONNRESET)', {}, async (c, x) => {
  const { sock, server } = await nodePeerPair(t, x.spi, x.f);
  const ev = x.spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const r = await ovRecv(x.spi, server, 16, ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'a pending receive');
  await resetNode(sock);
  c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), 'it completes');
  const res = await ovResult(x.spi, server, ov, true);
  c.same([res.ret, res.err, res.bytes], [S.FALSE, S.WSAECONNRESET, 0], 'WSPGetOverlappedResult');
  await x.spi.WSPCloseSocket(server, S.out(0));
});

// ---- Internal still pending, the event already signalled, fWait TRUE.

interface Manual extends Ctx {
  s: number;
  ov: S.WSAOVERLAPPED;
  apcs: number;
  result: { ret: number; err: number } | null;
}

const manual = new Scenario<Manual>(async (f: Family) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  const ev = spi.WSACreateEvent();
  spi.WSASetEvent(ev);
  const ov = new S.WSAOVERLAPPED(ev);
  ov.Internal = S.WSS_OPERATION_IN_PROGRESS;
  return { spi, f, s, ov, apcs: 0, result: null };
});

manual.step(t, 'test_WSAGetOverlappedResult: Internal still pending, the event signalled, fWait TRUE: TRUE', {}, async (c, x) => {
  const e = S.out(0);
  await x.spi.WPUQueueApc(x.spi.mainThread.id, () => x.apcs++, 0, e);
  const r = await ovResult(x.spi, x.s, x.ov, true);
  x.result = r;
  c.equal(r.ret, S.TRUE, 'WSPGetOverlappedResult returns TRUE');
});

manual.step(t, 'test_WSAGetOverlappedResult: that wait runs no APC; the next alertable wait does', {}, async (c, x) => {
  c.equal(x.apcs, 0, 'no APC ran during WSPGetOverlappedResult');
  await x.spi.SleepEx(0, true);
  c.equal(x.apcs, 1, 'the APC ran during SleepEx(0, TRUE)');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});
