/**
 * Wine's receive tests (dlls/ws2_32/tests/sock.c), grouped: test_WSARecv,
 * test_nonblocking_async_recv and test_simultaneous_async_recv. The completion-port part of
 * test_WSARecv (a completion routine refused on a socket bound to a port) has no SPI equivalent,
 * nor has test_write_watch (GetWriteWatch) nor test_timeout (SO_RCVTIMEO is not one of spiwire's
 * options).
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, dword, fileDaemon, fionread, nodePeerPair, openSession, ovRecv, ovResult, reached, recv, resetNode, send, setBlocking, tcpPair, waitEvent, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Pair {
  spi: S.SpiSession;
  src: number;
  dest: number;
  f: Family;
}

const pair = async (f: Family, flags?: number): Promise<Pair> => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f, flags);
  return { spi, src: p.client, dest: p.server, f };
};

// ================================================================ test_WSARecv

const wr = new Scenario<Pair>((f) => pair(f));

wr.step(t, 'test_WSARecv: a receive that completes at once runs no APC; the next alertable wait does', {}, async (c, x) => {
  c.equal((await send(x.spi, x.src, 'ab')).ret, 0, 'the peer sends 2 bytes');
  await reached(async () => (await fionread(x.spi, x.dest)) >= 2);
  let apcs = 0;
  await x.spi.WPUQueueApc(x.spi.mainThread.id, () => apcs++, 0, S.out(0));
  const r = await recv(x.spi, x.dest, 1);
  c.same([r.ret, r.bytes], [0, 1], 'receive of 1 byte');
  c.equal(apcs, 0, 'no APC ran during the receive');
  await x.spi.SleepEx(0, true);
  c.equal(apcs, 1, 'the APC ran at SleepEx(0, TRUE)');
});

wr.step(t, 'test_WSARecv: receives of 1, then 4 bytes; then 9 bytes across two buffers of 4 and 5', {}, async (c, x) => {
  const one = await recv(x.spi, x.dest, 1);
  c.same([one.ret, one.bytes, one.data.toString()], [0, 1, 'b'], 'the second byte');
  c.equal((await send(x.spi, x.src, 'test')).ret, 0, 'the peer sends 4 bytes');
  const four = await recv(x.spi, x.dest, 4);
  c.same([four.ret, four.bytes], [0, 4], 'receive of 4 bytes');
  c.equal((await send(x.spi, x.src, 'deadbeefs')).ret, 0, 'the peer sends 9 bytes');
  await reached(async () => (await fionread(x.spi, x.dest)) >= 9);
  const b0 = new Uint8Array(4);
  const b1 = new Uint8Array(5);
  const got = S.out(0);
  const e = S.out(0);
  const r = await x.spi.WSPRecv(x.dest, [S.wsabuf(b0), S.wsabuf(b1)], 2, got, S.out(0), null, null, null, e);
  c.same([r, got.value, Buffer.from(b0).toString(), Buffer.from(b1).toString()], [0, 9, 'dead', 'beefs'], 'two buffers');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

interface Reset {
  spi: S.SpiSession;
  dest: number;
  sock: import('node:net').Socket;
}

const wrReset = new Scenario<Reset>(async (f) => {
  const spi = await openSession(t, d);
  const { sock, server } = await nodePeerPair(t, spi, f);
  return { spi, dest: server, sock };
});

wrReset.step(t, 'test_WSARecv: two overlapped receives pending (one without a byte count) complete when the peer resets: WSAECONNRESET, 0 bytes', {}, async (c, x) => {
  const ev1 = x.spi.WSACreateEvent();
  const ev2 = x.spi.WSACreateEvent();
  const ov1 = new S.WSAOVERLAPPED(ev1);
  const ov2 = new S.WSAOVERLAPPED(ev2);
  const r1 = await ovRecv(x.spi, x.dest, 20, ov1, { count: false });
  const r2 = await ovRecv(x.spi, x.dest, 20, ov2);
  c.same([r1.ret, r1.err, r2.ret, r2.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING, S.SOCKET_ERROR, S.WSA_IO_PENDING], 'both are pending');
  await resetNode(x.sock);
  for (const [label, ev, ov] of [['first', ev1, ov1], ['second', ev2, ov2]] as const) {
    c.ok(await waitEvent(x.spi, ev, EVENT_BOUND_MS), `the ${label} completes`);
    const res = await ovResult(x.spi, x.dest, ov, false);
    c.same([res.ret, res.err, res.bytes], [S.FALSE, S.WSAECONNRESET, 0], `the ${label}: FALSE, WSAECONNRESET, 0 bytes`);
  }
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

const wrRoutine = new Scenario<Pair>((f) => pair(f));

wrRoutine.step(t, 'test_WSARecv: an overlapped receive with a completion routine and an event: the routine runs once at an alertable wait, the event is not signalled', {}, async (c, x) => {
  const ev = x.spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  let calls = 0;
  const r = await ovRecv(x.spi, x.dest, 20, ov, { count: false, routine: () => void calls++ });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pending');
  c.equal((await send(x.spi, x.src, 'test message\0')).ret, 0, 'the peer sends');
  const deadline = Date.now() + EVENT_BOUND_MS;
  let res = 0;
  while (calls === 0 && Date.now() < deadline) res = await x.spi.SleepEx(1000, true);
  c.same([res, calls], [S.WAIT_IO_COMPLETION, 1], 'SleepEx returns WAIT_IO_COMPLETION after one routine call');
  c.ok(!(await waitEvent(x.spi, ev, 1)), 'the event is not signalled');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

const wrAlert = new Scenario<Pair>((f) => pair(f, 0));

wrAlert.step(t, 'test_WSARecv: a blocking receive waits alertably: an APC queued to its thread runs during the wait', {}, async (c, x) => {
  const th = x.spi.createThread();
  let apcs = 0;
  const recvDone = recv(th, x.dest, 32);
  // Wine's APC sends the bytes the receive waits for; here the APC counts, and the bytes follow
  // once it ran, or after a second if it does not run during the wait.
  await x.spi.WPUQueueApc(th.id, () => {
    apcs++;
    void send(x.spi, x.src, 'test');
  }, 0, S.out(0));
  if (!(await reached(async () => apcs > 0, 1000))) await send(x.spi, x.src, 'test');
  const r = await recvDone;
  c.same([r.ret, r.bytes], [0, 4], 'the receive gets the 4 bytes');
  c.equal(apcs, 1, 'the APC ran during the blocking receive');
  await th.exit();
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

// ================================================================ test_nonblocking_async_recv

interface Nb extends Pair {
  ev: number;
}

const nb = new Scenario<Nb>(async (f) => {
  const x = await pair(f);
  await setBlocking(x.spi, x.src, false);
  await setBlocking(x.spi, x.dest, false);
  return { ...x, ev: x.spi.WSACreateEvent() };
});

nb.step(t, 'test_nonblocking_async_recv: on a nonblocking socket a receive fails with WSAEWOULDBLOCK', {}, async (c, x) => {
  const r = await recv(x.spi, x.src, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'receive');
});

nb.step(t, 'test_nonblocking_async_recv: an overlapped receive on a nonblocking socket pends; Internal 0x103, InternalHigh untouched', {}, async (c, x) => {
  const ov = new S.WSAOVERLAPPED();
  ov.Internal = 0xdeadbeef;
  ov.InternalHigh = 0xdeadbeef;
  const r = await ovRecv(x.spi, x.src, 5, ov, { count: false });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pending');
  c.same([ov.Internal, ov.InternalHigh], [S.WSS_OPERATION_IN_PROGRESS, 0xdeadbeef], 'Internal, InternalHigh');
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  await reached(async () => !ov.pending);
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes, Buffer.from(r.buf.subarray(0, 4)).toString()], [S.TRUE, 4, 'data'], 'it completes with the 4 bytes');
});

nb.step(t, 'test_nonblocking_async_recv: with an event: pending, the event not signalled until the peer sends; then 4 bytes', {}, async (c, x) => {
  x.spi.WSAResetEvent(x.ev);
  const ov = new S.WSAOVERLAPPED(x.ev);
  const r = await ovRecv(x.spi, x.src, 5, ov, { count: false });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pending');
  c.ok(!(await waitEvent(x.spi, x.ev, 0)), 'not signalled');
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  c.ok(await waitEvent(x.spi, x.ev, EVENT_BOUND_MS), 'signalled');
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 4], 'WSPGetOverlappedResult');
});

nb.step(t, 'test_nonblocking_async_recv: with data already there, an overlapped receive gets the 4 bytes', {}, async (c, x) => {
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  await reached(async () => (await fionread(x.spi, x.src)) >= 4);
  x.spi.WSAResetEvent(x.ev);
  const ov = new S.WSAOVERLAPPED(x.ev);
  const r = await ovRecv(x.spi, x.src, 5, ov, { count: false });
  c.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, 'succeeds or pends');
  c.ok(await waitEvent(x.spi, x.ev, EVENT_BOUND_MS), 'signalled');
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 4], 'WSPGetOverlappedResult');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

// A socket made without WSA_FLAG_OVERLAPPED: Windows runs an overlapped receive as a blocking one.
// spiwire does so under its Windows send policy (SO_SPIWIRE_SEND_POLICY 1), which is set here.

const plain = new Scenario<Nb>(async (f) => {
  const x = await pair(f, 0);
  await setBlocking(x.spi, x.src, false);
  await setBlocking(x.spi, x.dest, false);
  await x.spi.WSPSetSockOpt(x.src, S.SOL_SOCKET, S.SO_SPIWIRE_SEND_POLICY, dword(S.SPIWIRE_SEND_POLICY_WINDOWS), 4, S.out(0));
  return { ...x, ev: x.spi.WSACreateEvent() };
});

plain.step(t, 'test_nonblocking_async_recv: on a nonblocking socket made without WSA_FLAG_OVERLAPPED a receive fails with WSAEWOULDBLOCK', {}, async (c, x) => {
  const r = await recv(x.spi, x.src, 5);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'receive');
});

plain.step(t, 'test_nonblocking_async_recv: there an overlapped receive blocks until the peer sends, then returns 0 with the 4 bytes (Windows send policy)', {}, async (c, x) => {
  const th = x.spi.createThread();
  const ov = new S.WSAOVERLAPPED();
  let finished = false;
  const pending = ovRecv(th, x.src, 5, ov, { count: false }).then((r) => {
    finished = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 200));
  c.ok(!finished, 'still blocked while nothing was sent (200 ms)');
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  const r = await pending;
  c.same([r.ret, Buffer.from(r.buf.subarray(0, 4)).toString()], [0, 'data'], 'the receive returns 0 with the bytes');
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 4], 'WSPGetOverlappedResult');
  await th.exit();
});

plain.step(t, 'test_nonblocking_async_recv: there, with data already there, an overlapped receive returns 0 with the 4 bytes (Windows send policy)', {}, async (c, x) => {
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  await reached(async () => (await fionread(x.spi, x.src)) >= 4);
  const ov = new S.WSAOVERLAPPED();
  const r = await ovRecv(x.spi, x.src, 5, ov, { count: false });
  c.equal(r.ret, 0, 'returns 0');
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 4], 'WSPGetOverlappedResult');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

const refPlain = new Scenario<Nb>(async (f) => {
  const x = await pair(f, 0);
  await setBlocking(x.spi, x.src, false);
  return { ...x, ev: x.spi.WSACreateEvent() };
});

refPlain.step(t, 'test_nonblocking_async_recv: with the default (reference) send policy, an overlapped receive on a socket made without WSA_FLAG_OVERLAPPED waits, then returns 0 with the 4 bytes', {
  todo: 'deliberate: under spiwire\'s default policy, the reference page\'s, an OVERLAPPED on a socket made without WSA_FLAG_OVERLAPPED is WSAEINVAL; Windows\' behaviour is the Windows policy (SO_SPIWIRE_SEND_POLICY 1), which the cases before this one check',
}, async (c, x) => {
  c.equal((await send(x.spi, x.dest, 'data')).ret, 0, 'the peer sends 4 bytes');
  await reached(async () => (await fionread(x.spi, x.src)) >= 4);
  const ov = new S.WSAOVERLAPPED();
  const r = await ovRecv(x.spi, x.src, 5, ov, { count: false });
  c.same([r.ret, r.err], [0, 0], 'returns 0');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

// ================================================================ test_simultaneous_async_recv

const sim = new Scenario<Pair>((f) => pair(f));

sim.step(t, 'test_simultaneous_async_recv: two pending receives of 16 bytes: the first gets the first 16 bytes sent, the second the next 16', {}, async (c, x) => {
  const msg = Buffer.from('-- Lorem ipsum dolor sit amet -\0', 'latin1');
  const evs = [x.spi.WSACreateEvent(), x.spi.WSACreateEvent()];
  const ovs = evs.map((ev) => new S.WSAOVERLAPPED(ev));
  const rs = [];
  for (const ov of ovs) rs.push(await ovRecv(x.spi, x.src, 16, ov, { count: false }));
  c.same(rs.map((r) => [r.ret, r.err]), [[S.SOCKET_ERROR, S.WSA_IO_PENDING], [S.SOCKET_ERROR, S.WSA_IO_PENDING]], 'both pending');
  c.equal((await send(x.spi, x.dest, msg)).sent, 32, 'the peer sends 32 bytes');
  for (let i = 0; i < 2; i++) {
    c.ok(await waitEvent(x.spi, evs[i]!, EVENT_BOUND_MS), `receive ${i + 1} completes`);
    const res = await ovResult(x.spi, x.src, ovs[i]!, false);
    c.same([res.ret, res.bytes, Buffer.from(rs[i]!.buf).toString('latin1')], [S.TRUE, 16, msg.subarray(i * 16, i * 16 + 16).toString('latin1')], `receive ${i + 1}`);
  }
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});
