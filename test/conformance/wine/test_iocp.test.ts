/**
 * Wine's test_iocp (dlls/ws2_32/tests/sock.c): an overlapped receive that pends until data comes,
 * and what closesocket does to a pending receive (and to a socket with nothing pending). Windows
 * reports through a completion port; here the completion is observed through an event and the
 * WSAOVERLAPPED, or a completion routine. The CloseHandle / NtClose variants, the window messages
 * and the receive left behind by an exited thread (which Windows keeps only because the socket is
 * bound to a completion port) have no SPI equivalent.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, fileDaemon, openSession, ovRecv, recv, send, syncRecv, tcpPair, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Pair {
  spi: S.SpiSession;
  src: number;
  dst: number;
}

const pair = async (f: Family): Promise<Pair> => {
  const spi = await openSession(t, d);
  const { client: src, server: dst } = await tcpPair(spi, f);
  return { spi, src, dst };
};

const reads = new Scenario<Pair>(pair);

reads.step(t, 'test_iocp: a send of 12 bytes and a receive of them', {}, async (c, x) => {
  const s = await send(x.spi, x.dst, 'Hello World!');
  c.same([s.ret, s.sent], [0, 12], 'send');
  const r = await recv(x.spi, x.src, 512);
  c.same([r.ret, r.bytes, r.data.toString()], [0, 12, 'Hello World!'], 'receive');
});

reads.step(t, 'test_iocp: an overlapped receive pends, completes once when 12 bytes come, and nothing more', {}, async (c, x) => {
  const ev = x.spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const r = await ovRecv(x.spi, x.src, 512, ov);
  c.same([r.ret, r.err, r.count], [S.SOCKET_ERROR, S.WSA_IO_PENDING, 0xdeadbeef], 'pending, count untouched');
  c.ok(!(await waitEvent(x.spi, ev, 100)), 'no completion before the data (100 ms)');
  const s = await send(x.spi, x.dst, 'Hello World!');
  c.same([s.ret, s.sent], [0, 12], 'the peer sends 12 bytes');
  c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), 'the receive completes');
  c.same([ov.Internal, ov.InternalHigh], [0, 12], 'Internal 0, InternalHigh 12');
  c.equal(Buffer.from(r.buf.subarray(0, 12)).toString(), 'Hello World!', 'the bytes');
  x.spi.WSAResetEvent(ev);
  c.ok(!(await waitEvent(x.spi, ev, 100)), 'no second completion (100 ms)');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dst, S.out(0));
});

// ---- closesocket with a receive pending.

const closing = new Scenario<Pair>(pair);

closing.step(t, 'test_iocp: closesocket completes a pending receive once, with WSAECONNABORTED and 0 bytes', {}, async (c, x) => {
  const calls: Array<[number, number]> = [];
  const ov = new S.WSAOVERLAPPED();
  const r = await ovRecv(x.spi, x.src, 512, ov, { routine: (err, bytes) => void calls.push([err, bytes]) });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the receive is pending');
  await x.spi.SleepEx(100, true);
  c.equal(calls.length, 0, 'no completion before the close (100 ms)');
  c.equal(await x.spi.WSPCloseSocket(x.src, S.out(0)), 0, 'closesocket');
  const deadline = Date.now() + EVENT_BOUND_MS;
  while (calls.length === 0 && Date.now() < deadline) await x.spi.SleepEx(50, true);
  await x.spi.SleepEx(100, true);
  c.same(calls, [[S.WSAECONNABORTED, 0]], 'one completion: WSAECONNABORTED, 0 bytes');
  c.equal(ov.InternalHigh, 0, 'InternalHigh 0');
  await x.spi.WSPCloseSocket(x.dst, S.out(0));
});

const idle = new Scenario<Pair>(pair);

idle.step(t, 'test_iocp: closesocket with nothing pending completes nothing', {}, async (c, x) => {
  c.equal(await x.spi.WSPCloseSocket(x.src, S.out(0)), 0, 'closesocket');
  c.equal(await x.spi.SleepEx(100, true), 0, 'an alertable wait finds no completion to run (100 ms)');
  const r = await syncRecv(x.spi, x.dst, 16);
  c.equal(r.n, 0, 'the peer reads the end of the stream');
  await x.spi.WSPCloseSocket(x.dst, S.out(0));
});
