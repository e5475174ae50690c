/**
 * Overlapped WSPSend: completion routines (APCs), events, WSPGetOverlappedResult, the
 * per-socket limit, WSAEINPROGRESS, WSAWaitForMultipleEvents and WPUQueueApc, against real
 * loopback peers. Sends are made to pend deterministically by a "filler" send larger than the
 * kernel buffers, issued while the node:net peer is paused: everything after it queues behind it.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as S from '@spiwire/client';
import {
  FAMILIES,
  FILLER_BYTES,
  addr,
  af,
  connectedTcp,
  daemon,
  drainUntil,
  namelen,
  ovSend,
  overlappedTcp,
  pattern,
  rng,
  allReceived,
  bytesArriving,
  nextTurn,
  roundTrip,
  send,
  session,
  tcpPeer,
  udpPeer,
  pollUntil,
  type Family,
  type OvSendOptions,
  type SendIssuer,
} from '../helpers/harness.js';

const WAIT_IO_COMPLETION = 0xc0;
const FILLER = pattern(FILLER_BYTES, 4242);

interface RoutineCall {
  tag: string;
  err: number;
  cb: number;
  ov: S.WSAOVERLAPPED;
  flags: number;
  /** Which alertable wait ran it (set by the test around each wait). */
  runner: string;
}

/** Where the routines of a test record themselves; runner names the thread currently waiting. */
class Recorder {
  readonly calls: RoutineCall[] = [];
  runner = 'main';
  routine(tag: string): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE {
    return (err, cb, ov, flags) => {
      this.calls.push({ tag, err, cb, ov, flags, runner: this.runner });
    };
  }
  tags(): string[] {
    return this.calls.map((c) => c.tag);
  }
}

interface Setup {
  spi: S.SpiSession;
  s: number;
  conn: Awaited<ReturnType<typeof overlappedTcp>>['conn'];
}

async function setup(t: Test, f: Family, opts: { sndBuf?: number; paused?: boolean; maxOps?: number; autoApc?: boolean } = {}): Promise<Setup> {
  const limits: Record<string, number> = {};
  if (opts.sndBuf !== undefined) limits['defaultSndBuf'] = opts.sndBuf;
  if (opts.maxOps !== undefined) limits['maxOutstandingOpsPerSocket'] = opts.maxOps;
  const d = await daemon(t, { limits });
  const spi = await session(t, d, opts.autoApc ? { autoApc: true } : {});
  const peer = await tcpPeer(t, f, { paused: !!opts.paused });
  const { s, conn } = await overlappedTcp(spi, f, peer);
  return { spi, s, conn };
}

/** Issues the filler send and checks it is pending. */
async function filler(t: Test, issuer: SendIssuer, s: number, opts: OvSendOptions = {}): Promise<S.WSAOVERLAPPED> {
  const r = await ovSend(issuer, s, [FILLER], opts);
  t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the filler send is pending');
  return r.ov;
}

/**
 * Waits until the peer has at least want.length bytes, then checks it has exactly want: with the
 * socket closed and its FIN seen at the peer, nothing more can come.
 */
async function peerGets(t: Test, spi: S.SpiSession, s: number, conn: Setup['conn'], want: Buffer, msg: string): Promise<void> {
  let got: Buffer;
  try {
    got = await conn.waitFor(want.length, 20000);
  } catch (err) {
    t.fail(`${msg}: ${(err as Error).message}`);
    return;
  }
  got = await allReceived(t, spi, s, conn);
  t.equal(got.length, want.length, `${msg}: byte count`);
  t.ok(got.equals(want), `${msg}: exact bytes, in order`);
}

function waitEvents(spi: S.SpiSession, evs: number[], ms: number, waitAll = false, alertable = false): Promise<number> {
  return spi.WSAWaitForMultipleEvents(evs.length, evs, waitAll, ms, alertable);
}

async function overlappedResult(spi: S.SpiSession, s: number, ov: S.WSAOVERLAPPED, wait: boolean): Promise<{ ret: number; err: number; cb: number; flags: number }> {
  const cb = S.out(-1);
  const flags = S.out(-1);
  const e = S.out(0);
  const ret = await spi.WSPGetOverlappedResult(s, ov, cb, wait, flags, e);
  return { ret, err: e.value, cb: cb.value, flags: flags.value };
}

for (const f of FAMILIES) {
  t.test(`${f}: an overlapped send on a socket created without WSA_FLAG_OVERLAPPED: WSAEINVAL, no completion`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer, 0);
    const rec = new Recorder();
    const r1 = await ovSend(spi, s, [Buffer.from('routine')], { routine: rec.routine('r') });
    t.same([r1.ret, r1.err, r1.sent!.value], [S.SOCKET_ERROR, S.WSAEINVAL, -7], 'routine form: WSAEINVAL, count untouched');
    const ev = spi.WSACreateEvent();
    const r2 = await ovSend(spi, s, [Buffer.from('event')], { ov: new S.WSAOVERLAPPED(ev) });
    t.same([r2.ret, r2.err, r2.sent!.value], [S.SOCKET_ERROR, S.WSAEINVAL, -7], 'event form: WSAEINVAL, count untouched');
    t.equal(spi.pendingOperations, 0, 'nothing pending');
    t.not(r1.ov.Internal, S.WSS_OPERATION_IN_PROGRESS);
    t.not(r2.ov.Internal, S.WSS_OPERATION_IN_PROGRESS);
    t.equal(await spi.SleepEx(150, true), 0, 'an alertable wait finds no completion');
    t.equal(rec.calls.length, 0, 'no routine ran');
    t.equal(await waitEvents(spi, [ev], 50), S.WSA_WAIT_TIMEOUT, 'the event was never signalled');
    const [ret, , n] = await send(spi, s, [Buffer.from('plain')]);
    t.same([ret, n], [0, 5], 'the socket still sends normally');
    await peerGets(t, spi, s, conn, Buffer.from('plain'), 'only the non-overlapped bytes arrive');
  });

  t.test(`${f}: lpOverlapped and lpCompletionRoutine both null on an overlapped socket: a normal send`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const e = S.out(0);
    const sent = S.out(-7);
    const data = pattern(3000, 5);
    const ret = await spi.WSPSend(s, [S.wsabuf(data.subarray(0, 1000)), S.wsabuf(data.subarray(1000))], 2, sent, 0, null, null, null, e);
    t.same([ret, sent.value], [0, 3000]);
    t.equal(spi.pendingOperations, 0);
    t.equal(await spi.SleepEx(50, true), 0, 'no completion is queued for a non-overlapped call');
    await peerGets(t, spi, s, conn, data, 'peer');
  });

  t.test(`${f}: immediate completion: 0 and the count, routine queued but never run inside the call`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const rec = new Recorder();
    const data = pattern(1000, 11);
    const r = await ovSend(spi, s, [data.subarray(0, 400), data.subarray(400)], { routine: rec.routine('a') });
    t.same([r.ret, r.sent!.value], [0, 1000], 'returns 0 and fills lpNumberOfBytesSent');
    t.equal(rec.calls.length, 0, 'the routine has not run when the call returned');
    t.equal(r.ov.Internal, 0, 'Internal no longer 0x103');
    t.equal(r.ov.InternalHigh, 1000, 'InternalHigh holds the count');
    t.equal(r.ov.OffsetHigh, 0, 'OffsetHigh holds no error');
    // A round trip to the daemon and a turn of the event loop: anything that could run the routine
    // on its own (a message, a timer of 0, an immediate) has had its chance.
    await roundTrip(spi);
    t.equal(rec.calls.length, 0, 'nor later, without an alertable wait');
    t.equal(spi.mainThread.queuedApcs, 1, 'it waits in the main thread\'s APC queue');
    t.equal(await spi.SleepEx(2000, true), WAIT_IO_COMPLETION, 'SleepEx alertable returns WAIT_IO_COMPLETION');
    t.equal(rec.calls.length, 1, 'the routine ran once');
    const c = rec.calls[0]!;
    t.same([c.err, c.cb, c.flags], [0, 1000, 0], 'routine(0, 1000, ov, 0)');
    t.equal(c.ov, r.ov, 'lpOverlapped is the caller\'s WSAOVERLAPPED');
    t.equal(await spi.SleepEx(50, true), 0, 'a second alertable wait finds nothing');
    t.equal(rec.calls.length, 1, 'exactly once');
    await peerGets(t, spi, s, conn, data, 'peer');
  });

  t.test(`${f}: immediate completion with an event: signalled by the time the call returns`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const ev = spi.WSACreateEvent();
    const data = pattern(777, 12);
    const r = await ovSend(spi, s, [data], { ov: new S.WSAOVERLAPPED(ev) });
    t.same([r.ret, r.sent!.value], [0, 777]);
    t.equal(await waitEvents(spi, [ev], 0), S.WSA_WAIT_EVENT_0, 'the event is signalled');
    const res = await overlappedResult(spi, s, r.ov, false);
    t.same([res.ret, res.cb, res.flags], [S.TRUE, 777, 0], 'WSPGetOverlappedResult: TRUE, 777 bytes, flags 0');
    await peerGets(t, spi, s, conn, data, 'peer');
  });

  t.test(`${f}: UDP: an overlapped send completes at once and still queues its routine`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const e = S.out(0);
    const s = await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
    t.not(s, S.INVALID_SOCKET);
    t.equal(await spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, e), 0);
    const rec = new Recorder();
    const r = await ovSend(spi, s, [Buffer.from('dgram-'), Buffer.from('one')], { routine: rec.routine('u') });
    t.same([r.ret, r.sent!.value], [0, 9]);
    t.equal(rec.calls.length, 0, 'not run inside the call');
    t.equal(await spi.SleepEx(2000, true), WAIT_IO_COMPLETION);
    t.same(rec.calls.map((c) => [c.err, c.cb, c.flags]), [[0, 9, 0]]);
    await peer.waitFor(1);
    t.equal(peer.datagrams[0]!.data.toString(), 'dgram-one', 'one gathered datagram');
    // An unconnected UDP socket: WSPSend fails at once (WSAENOTCONN), no completion.
    const u = await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
    const ev = spi.WSACreateEvent();
    const bad = await ovSend(spi, u, [Buffer.from('x')], { ov: new S.WSAOVERLAPPED(ev) });
    t.same([bad.ret, bad.err, bad.sent!.value], [S.SOCKET_ERROR, S.WSAENOTCONN, -7]);
    t.equal(await waitEvents(spi, [ev], 100), S.WSA_WAIT_TIMEOUT, 'no event for a call that failed at once');
  });

  t.test(`${f}: pending: WSA_IO_PENDING, count not written, Internal 0x103, completes when the transport takes the bytes`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const rec = new Recorder();
    const fillOv = await filler(t, spi, s, { routine: rec.routine('filler'), sentinel: -5 });
    const tail = pattern(3000, 13);
    const r = await ovSend(spi, s, [tail], { routine: rec.routine('tail'), sentinel: -9 });
    t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'queued behind the filler: WSA_IO_PENDING');
    t.equal(r.sent!.value, -9, 'lpNumberOfBytesSent is not written while pending');
    t.equal(r.ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'Internal is 0x103 while pending');
    t.equal(fillOv.Internal, S.WSS_OPERATION_IN_PROGRESS, 'the filler too');
    t.ok(await bytesArriving(conn), 'the filler is under way: bytes reach the peer');
    // Any completion the daemon had sent by now is in: the round trip comes after it.
    await roundTrip(spi);
    t.equal(await spi.SleepEx(100, true), 0, 'no completion while the peer does not read');
    t.equal(rec.calls.length, 0);
    t.equal(r.ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'still pending');
    const poll = await overlappedResult(spi, s, fillOv, false);
    t.same([poll.ret, poll.err], [S.FALSE, S.WSA_IO_INCOMPLETE], 'polling a pending operation: FALSE, WSA_IO_INCOMPLETE');
    t.equal(spi.pendingOperations, 2);
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 2), 'both routines ran');
    t.same(rec.calls.map((c) => [c.tag, c.err, c.cb, c.flags]), [
      ['filler', 0, FILLER_BYTES, 0],
      ['tail', 0, 3000, 0],
    ], 'completions in submission order with the full counts');
    t.equal(rec.calls[1]!.ov, r.ov);
    t.same([r.ov.Internal, r.ov.InternalHigh, r.ov.OffsetHigh], [0, 3000, 0], 'Internal 0, InternalHigh = bytes, OffsetHigh = 0');
    t.same([fillOv.InternalHigh, fillOv.OffsetHigh], [FILLER_BYTES, 0]);
    t.equal(r.sent!.value, -9, 'lpNumberOfBytesSent is never written for a pending operation');
    t.equal(spi.pendingOperations, 0);
    await peerGets(t, spi, s, conn, Buffer.concat([FILLER, tail]), 'peer');
  });

  t.test(`${f}: pending with events; WSPGetOverlappedResult fWait TRUE waits for the completion`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const evF = spi.WSACreateEvent();
    const ev2 = spi.WSACreateEvent();
    const fillOv = await filler(t, spi, s, { ov: new S.WSAOVERLAPPED(evF) });
    const tail = pattern(4096, 14);
    const r = await ovSend(spi, s, [tail.subarray(0, 10), tail.subarray(10)], { ov: new S.WSAOVERLAPPED(ev2) });
    t.same([r.ret, r.err, r.sent!.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING, -7]);
    t.equal(await waitEvents(spi, [evF, ev2], 100), S.WSA_WAIT_TIMEOUT, 'neither event is signalled while pending');
    let settled = false;
    const waiting = overlappedResult(spi, s, fillOv, true).then((x) => {
      settled = true;
      return x;
    });
    await roundTrip(spi);
    t.notOk(settled, 'fWait TRUE keeps waiting while the operation is pending');
    conn.socket.resume();
    const res = await waiting;
    t.same([res.ret, res.cb, res.flags], [S.TRUE, FILLER_BYTES, 0], 'TRUE with the byte count');
    t.equal(await waitEvents(spi, [ev2], 10000), S.WSA_WAIT_EVENT_0, 'the second event is signalled');
    const res2 = await overlappedResult(spi, s, r.ov, false);
    t.same([res2.ret, res2.cb], [S.TRUE, 4096]);
    t.equal(r.sent!.value, -7, 'count never written');
    await peerGets(t, spi, s, conn, Buffer.concat([FILLER, tail]), 'peer');
  });

  t.test(`${f}: a pending operation that fails returns FALSE with its own error from WSPGetOverlappedResult`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const ev = spi.WSACreateEvent();
    const ov = await filler(t, spi, s, { ov: new S.WSAOVERLAPPED(ev) });
    const ev2 = spi.WSACreateEvent();
    const r2 = await ovSend(spi, s, [Buffer.from('behind')], { ov: new S.WSAOVERLAPPED(ev2) });
    t.equal(r2.err, S.WSA_IO_PENDING);
    conn.socket.resetAndDestroy();
    t.equal(await waitEvents(spi, [ev, ev2], 10000, true), S.WSA_WAIT_EVENT_0, 'both events are signalled');
    const res = await overlappedResult(spi, s, ov, true);
    t.equal(res.ret, S.FALSE, 'FALSE');
    t.ok(res.err === S.WSAECONNRESET || res.err === S.WSAECONNABORTED, `the operation's own error (got ${res.err})`);
    t.equal(ov.OffsetHigh, res.err, 'OffsetHigh holds the same error');
    t.ok(res.cb >= 0 && res.cb < FILLER_BYTES, 'a partial count at most');
    const res2 = await overlappedResult(spi, s, r2.ov, false);
    t.same([res2.ret, res2.err, res2.cb], [S.FALSE, res.err, 0], 'the queued one fails with the same error and no bytes');
  });

  t.test(`${f}: immediate failure (WSAESHUTDOWN, WSAEOPNOTSUPP): no routine and no event, ever`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const rec = new Recorder();
    const evA = spi.WSACreateEvent();
    const evB = spi.WSACreateEvent();
    const p1 = await ovSend(spi, s, [Buffer.from('partial')], { flags: S.MSG_PARTIAL, routine: rec.routine('partial') });
    t.same([p1.ret, p1.err, p1.sent!.value], [S.SOCKET_ERROR, S.WSAEOPNOTSUPP, -7], 'MSG_PARTIAL: WSAEOPNOTSUPP');
    const p2 = await ovSend(spi, s, [Buffer.from('partial')], { flags: S.MSG_PARTIAL, ov: new S.WSAOVERLAPPED(evA) });
    t.same([p2.ret, p2.err, p2.sent!.value], [S.SOCKET_ERROR, S.WSAEOPNOTSUPP, -7]);
    const [ok] = await send(spi, s, [Buffer.from('visible')]);
    t.equal(ok, 0);
    const e = S.out(0);
    t.equal(await spi.WSPShutdown(s, S.SD_SEND, e), 0);
    const s1 = await ovSend(spi, s, [Buffer.from('late')], { routine: rec.routine('shut') });
    t.same([s1.ret, s1.err, s1.sent!.value], [S.SOCKET_ERROR, S.WSAESHUTDOWN, -7], 'after SD_SEND: WSAESHUTDOWN');
    const s2 = await ovSend(spi, s, [Buffer.from('late')], { ov: new S.WSAOVERLAPPED(evB) });
    t.same([s2.ret, s2.err, s2.sent!.value], [S.SOCKET_ERROR, S.WSAESHUTDOWN, -7]);
    t.equal(spi.pendingOperations, 0);
    for (const r of [p1, p2, s1, s2]) t.not(r.ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'not left pending');
    t.equal(await spi.SleepEx(250, true), 0, 'an alertable wait finds nothing');
    t.equal(rec.calls.length, 0, 'no routine ran');
    t.equal(await waitEvents(spi, [evA, evB], 100), S.WSA_WAIT_TIMEOUT, 'no event was signalled');
    await conn.ended;
    t.equal(conn.received().toString(), 'visible', 'the peer got only the one good send, then FIN');
  });

  t.test(`${f}: lpNumberOfBytesSent may be null with an overlapped`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const rec = new Recorder();
    // Immediate completion first (the transport buffer is empty), then a pending one.
    const a = await ovSend(spi, s, [Buffer.from('abc')], { routine: rec.routine('a'), sentinel: null });
    t.same([a.ret, a.sent], [0, null], 'immediate: 0');
    await filler(t, spi, s, { routine: rec.routine('f'), sentinel: null });
    const b = await ovSend(spi, s, [Buffer.from('defg')], { routine: rec.routine('b'), sentinel: null });
    t.same([b.ret, b.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pending');
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 3));
    t.same(rec.calls.map((c) => [c.tag, c.err, c.cb]), [
      ['a', 0, 3],
      ['f', 0, FILLER_BYTES],
      ['b', 0, 4],
    ]);
    await peerGets(t, spi, s, conn, Buffer.concat([Buffer.from('abc'), FILLER, Buffer.from('defg')]), 'peer');
  });

  t.test(`${f}: the buffers are captured at call time: later changes by the caller do not reach the peer`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    // Immediate: mutate synchronously right after the call returned its promise.
    const imm = pattern(2000, 21);
    const immOrig = Buffer.from(imm);
    const immBufs = [S.wsabuf(imm.subarray(0, 500)), S.wsabuf(imm.subarray(500))];
    const e0 = S.out(0);
    const p0 = spi.WSPSend(s, immBufs, 2, S.out(0), 0, new S.WSAOVERLAPPED(), null, null, e0);
    imm.fill(0xee);
    immBufs[0]!.len = 1;
    t.equal(await p0, 0, 'immediate');
    const rec = new Recorder();
    await filler(t, spi, s, { routine: rec.routine('f') });
    // Pending 1: mutate synchronously after the call.
    const a = pattern(5000, 22);
    const aOrig = Buffer.from(a);
    const aBufs = [S.wsabuf(a.subarray(0, 1234)), S.wsabuf(a.subarray(1234))];
    const e1 = S.out(0);
    const p1 = spi.WSPSend(s, aBufs, 2, S.out(-7), 0, new S.WSAOVERLAPPED(), rec.routine('a'), null, e1);
    a.fill(0x11);
    aBufs[1]!.buf = Buffer.alloc(10, 0x22);
    aBufs[1]!.len = 10;
    t.same([await p1, e1.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING]);
    // Pending 2: mutate after the call resolved, while the operation is still pending.
    const b = pattern(7000, 23);
    const bOrig = Buffer.from(b);
    const r2 = await ovSend(spi, s, [b.subarray(0, 3000), b.subarray(3000)], { routine: rec.routine('b') });
    t.same([r2.ret, r2.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING]);
    t.equal(r2.ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'still pending when the caller reuses its buffer');
    b.fill(0x33);
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 3));
    t.same(rec.calls.map((c) => [c.tag, c.err, c.cb]), [
      ['f', 0, FILLER_BYTES],
      ['a', 0, 5000],
      ['b', 0, 7000],
    ]);
    await peerGets(t, spi, s, conn, Buffer.concat([immOrig, FILLER, aOrig, bOrig]), 'the peer got the bytes as they were at call time');
  });

  t.test(`${f}: FIFO: many pending sends of random sizes reach the peer in call order`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 16384, paused: true });
    const rec = new Recorder();
    await filler(t, spi, s, { routine: rec.routine('f') });
    const rand = rng(0xf1f0 + (f === 'ipv4' ? 0 : 1));
    const expected: Buffer[] = [FILLER];
    const sizes: number[] = [];
    for (let i = 0; i < 40; i++) {
      const size = i === 7 ? 0 : rand(50001);
      const data = pattern(size, 1000 + i);
      const count = 1 + rand(4);
      const parts: Buffer[] = [];
      let at = 0;
      for (let k = 0; k < count; k++) {
        const end = k === count - 1 ? size : Math.min(size, at + rand(size - at + 1));
        parts.push(data.subarray(at, end));
        at = end;
      }
      const r = await ovSend(spi, s, parts, { routine: rec.routine(`op${i}`) });
      t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], `op${i} (${size} bytes in ${count} buffers) pends behind older sends`);
      expected.push(data);
      sizes.push(size);
    }
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 41, 400), 'every routine ran');
    t.same(rec.tags(), ['f', ...sizes.map((_, i) => `op${i}`)], 'completions in submission order');
    t.same(rec.calls.slice(1).map((c) => c.cb), sizes, 'each with its full size');
    t.ok(rec.calls.every((c) => c.err === 0));
    await peerGets(t, spi, s, conn, Buffer.concat(expected), 'peer');
  });

  t.test(`${f}: routines never run outside an alertable wait`, async (t) => {
    const { spi, s } = await setup(t, f);
    const rec = new Recorder();
    const r = await ovSend(spi, s, [Buffer.from('x')], { routine: rec.routine('x') });
    t.equal(r.ret, 0);
    t.equal(await spi.SleepEx(100, false), 0, 'a non-alertable SleepEx returns 0');
    t.equal(rec.calls.length, 0, 'and runs no routine');
    const ev = spi.WSACreateEvent();
    t.equal(await waitEvents(spi, [ev], 60, false, false), S.WSA_WAIT_TIMEOUT, 'a non-alertable WSAWaitForMultipleEvents times out');
    t.equal(rec.calls.length, 0, 'and runs no routine');
    t.equal(await waitEvents(spi, [ev], 2000, false, true), S.WSA_WAIT_IO_COMPLETION, 'an alertable WSAWaitForMultipleEvents returns WSA_WAIT_IO_COMPLETION');
    t.equal(rec.calls.length, 1, 'having run the routine');
  });

  t.test(`${f}: routines run on the thread lpThreadId names, captured at call time`, async (t) => {
    const { spi, s } = await setup(t, f);
    const rec = new Recorder();
    const t1 = spi.createThread();
    const t2 = spi.createThread();
    const id1 = { ...t1.id };
    t.equal((await ovSend(spi, s, [Buffer.from('a')], { routine: rec.routine('for-t1'), threadId: id1 })).ret, 0);
    // Changing the caller's WSATHREADID after the call does not move the routine.
    id1.ThreadHandle = t2.id.ThreadHandle;
    t.equal((await ovSend(spi, s, [Buffer.from('b')], { routine: rec.routine('for-t2'), threadId: t2.id })).ret, 0);
    t.equal((await ovSend(t1, s, [Buffer.from('c')], { routine: rec.routine('issued-by-t1') })).ret, 0);
    t.equal((await ovSend(spi, s, [Buffer.from('d')], { routine: rec.routine('main') })).ret, 0);
    // Completed at once: each routine was queued when its reply arrived, before the call returned.
    t.same([spi.mainThread.queuedApcs, t1.queuedApcs, t2.queuedApcs], [1, 2, 1], 'every routine is queued on its thread');
    rec.runner = 'main';
    t.equal(await spi.SleepEx(200, true), WAIT_IO_COMPLETION);
    rec.runner = 't2';
    t.equal(await t2.SleepEx(200, true), WAIT_IO_COMPLETION);
    rec.runner = 't1';
    t.equal(await t1.SleepEx(200, true), WAIT_IO_COMPLETION);
    rec.runner = 'none';
    t.same(
      rec.calls.map((c) => [c.tag, c.runner]),
      [
        ['main', 'main'],
        ['for-t2', 't2'],
        ['for-t1', 't1'],
        ['issued-by-t1', 't1'],
      ],
      'each thread ran only its own routines',
    );
    t.equal(await spi.SleepEx(30, true), 0);
    t.equal(await t1.SleepEx(30, true), 0);
    t.equal(await t2.SleepEx(30, true), 0);
  });

  t.test(`${f}: a routine that posts the next send: a chain of 50 sends, all in order`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const chunks = Array.from({ length: 50 }, (_, i) => pattern(1 + ((i * 7919) % 6000), 500 + i));
    const seen: number[] = [];
    const errors: number[] = [];
    const post = async (i: number): Promise<number> => {
      const r = await ovSend(spi, s, [chunks[i]!], { routine: routineFor(i) });
      if (r.ret !== 0 && r.err !== S.WSA_IO_PENDING) errors.push(r.err);
      return r.ret;
    };
    function routineFor(i: number): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE {
      return async (err, cb) => {
        seen.push(i);
        if (err !== 0 || cb !== chunks[i]!.length) errors.push(err || -1);
        if (i + 1 < chunks.length) await post(i + 1);
      };
    }
    await post(0);
    t.ok(await drainUntil(spi, () => seen.length >= 50, 500), `all 50 routines ran (${seen.length})`);
    t.same(seen, chunks.map((_, i) => i), 'in order');
    t.same(errors, [], 'no failures');
    await peerGets(t, spi, s, conn, Buffer.concat(chunks), 'peer');
  });

  t.test(`${f}: a chain on a created thread, each routine posting the next with thread.WSPSend`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const th = spi.createThread();
    const chunks = Array.from({ length: 50 }, (_, i) => pattern(1 + ((i * 104729) % 3000), 900 + i));
    const seen: Array<[number, string]> = [];
    let runner = 'none';
    const routineFor = (i: number): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE => async () => {
      seen.push([i, runner]);
      if (i + 1 < chunks.length) await ovSend(th, s, [chunks[i + 1]!], { routine: routineFor(i + 1) });
    };
    await ovSend(th, s, [chunks[0]!], { routine: routineFor(0) });
    runner = 'main';
    t.equal(await spi.SleepEx(50, true), 0, 'the main thread runs none of them');
    for (let k = 0; k < 500 && seen.length < 50; k++) {
      runner = 'th';
      await th.SleepEx(50, true);
    }
    t.equal(seen.length, 50);
    t.ok(seen.every(([i, r], k) => i === k && r === 'th'), 'all 50, in order, on the thread');
    await peerGets(t, spi, s, conn, Buffer.concat(chunks), 'peer');
  });

  t.test(`${f}: routines of one socket never nest or overlap, across threads`, async (t) => {
    const { spi, s } = await setup(t, f);
    const t1 = spi.createThread();
    const t2 = spi.createThread();
    const log: string[] = [];
    let end1 = 0;
    let start2 = 0;
    // The slow routine runs until the test lets it finish, once t2's wait has had its chance.
    let finishSlow!: () => void;
    const slowDone = new Promise<void>((r) => (finishSlow = r));
    const slow: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = async () => {
      log.push('slow:start');
      await slowDone;
      log.push('slow:end');
      end1 = Date.now();
    };
    const fast: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = () => {
      start2 = Date.now();
      log.push('fast');
    };
    t.equal((await ovSend(spi, s, [Buffer.from('1')], { routine: slow, threadId: t1.id })).ret, 0);
    t.equal((await ovSend(spi, s, [Buffer.from('2')], { routine: fast, threadId: t2.id })).ret, 0);
    t.same([t1.queuedApcs, t2.queuedApcs], [1, 1], 'both routines are queued once the calls returned');
    const w1 = t1.SleepEx(5000, true);
    t.ok(await pollUntil(() => log.length > 0, 2000), 'the slow routine started');
    const w2 = t2.SleepEx(5000, true);
    // t2's alertable wait would run the fast routine now, or on a message, timer or immediate.
    await roundTrip(spi);
    t.same(log, ['slow:start'], 'the fast routine waits while the slow one runs');
    finishSlow();
    t.same(await Promise.all([w1, w2]), [WAIT_IO_COMPLETION, WAIT_IO_COMPLETION]);
    t.same(log, ['slow:start', 'slow:end', 'fast'], 'the second routine started only after the first finished');
    t.ok(start2 >= end1, 'by the clock too');
  });

  t.test(`${f}: an alertable wait inside a routine runs no further routine of the same socket`, async (t) => {
    const { spi, s } = await setup(t, f);
    const log: string[] = [];
    const first: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = async () => {
      log.push('first:start');
      log.push(`inner-wait:${await spi.SleepEx(100, true)}`);
      log.push('first:end');
    };
    const second: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = () => {
      log.push('second');
    };
    t.equal((await ovSend(spi, s, [Buffer.from('1')], { routine: first })).ret, 0);
    t.equal((await ovSend(spi, s, [Buffer.from('2')], { routine: second })).ret, 0);
    t.equal(spi.mainThread.queuedApcs, 2, 'both routines are queued once the calls returned');
    t.equal(await spi.SleepEx(5000, true), WAIT_IO_COMPLETION);
    t.same(log, ['first:start', 'inner-wait:0', 'first:end', 'second'], 'no nesting');
  });

  t.test(`${f}: hEvent is ignored when a completion routine is given`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const rec = new Recorder();
    const ev1 = spi.WSACreateEvent();
    const ev2 = spi.WSACreateEvent();
    const r1 = await ovSend(spi, s, [Buffer.from('imm')], { ov: new S.WSAOVERLAPPED(ev1), routine: rec.routine('imm') });
    t.equal(r1.ret, 0, 'immediate');
    await filler(t, spi, s, { ov: new S.WSAOVERLAPPED(ev2), routine: rec.routine('f') });
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 2), 'both routines ran');
    t.same(rec.tags(), ['imm', 'f']);
    t.equal(await waitEvents(spi, [ev1, ev2], 100), S.WSA_WAIT_TIMEOUT, 'neither event was signalled');
  });

  t.test(`${f}: with a routine, WSPGetOverlappedResult(fWait TRUE) fails with WSAEINVAL without an event, else waits on the event`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true });
    const rec = new Recorder();
    const first = await filler(t, spi, s, { routine: rec.routine('f') });
    const cb = S.out(-1);
    const flags = S.out(-1);
    const e = S.out(0);
    t.same([await spi.WSPGetOverlappedResult(s, first, cb, true, flags, e), e.value], [S.FALSE, S.WSAEINVAL], 'no event to wait on: WSAEINVAL, at once');
    t.ok(first.pending, 'the operation is still pending');
    const ev = spi.WSACreateEvent();
    const tail = pattern(5000, 41);
    const second = await ovSend(spi, s, [tail], { ov: new S.WSAOVERLAPPED(ev), routine: rec.routine('t') });
    t.equal(second.err, S.WSA_IO_PENDING, 'a second send with a routine and an event pends behind it');
    // The wait is on the client's event, which the operation never signals: it ends when the
    // client sets the event itself, and reads what the OVERLAPPED holds then.
    const worker = spi.createThread();
    let returned = false;
    const waited = worker.WSPGetOverlappedResult(s, second.ov, cb, true, flags, e).then((r) => {
      returned = true;
      return r;
    });
    await roundTrip(spi);
    t.notOk(returned, 'the wait goes on while the event is unset');
    t.equal(spi.WSASetEvent(ev), S.TRUE);
    t.equal(await waited, S.TRUE, 'the event set: the call returns TRUE');
    t.equal(cb.value, 0, 'with the count the OVERLAPPED holds: none yet');
    t.ok(second.ov.pending, 'the operation itself is still pending');
    t.equal(spi.WSAResetEvent(ev), S.TRUE);
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 2), 'both routines ran');
    t.same(rec.calls.map((c) => [c.tag, c.err, c.cb]), [
      ['f', 0, FILLER.length],
      ['t', 0, tail.length],
    ], 'each once, with its full count');
    t.equal(await waitEvents(spi, [ev], 100), S.WSA_WAIT_TIMEOUT, 'the completion did not signal the event');
    await conn.waitFor(FILLER.length + tail.length);
    t.ok(conn.received().subarray(FILLER.length).equals(tail), 'the peer received the filler, then the second send');
  });

  t.test(`${f}: too many outstanding operations on a socket: WSAEWOULDBLOCK, and no completion for it`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true, maxOps: 3 });
    const rec = new Recorder();
    await filler(t, spi, s, { routine: rec.routine('f') });
    const a = pattern(1500, 31);
    const b = pattern(2500, 32);
    t.equal((await ovSend(spi, s, [a], { routine: rec.routine('a') })).err, S.WSA_IO_PENDING);
    t.equal((await ovSend(spi, s, [b], { routine: rec.routine('b') })).err, S.WSA_IO_PENDING);
    const ev = spi.WSACreateEvent();
    const refused = await ovSend(spi, s, [Buffer.from('refused')], { routine: rec.routine('refused') });
    t.same([refused.ret, refused.err, refused.sent!.value], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK, -7], 'the fourth: WSAEWOULDBLOCK');
    const refused2 = await ovSend(spi, s, [Buffer.from('refused')], { ov: new S.WSAOVERLAPPED(ev) });
    t.same([refused2.ret, refused2.err], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'with an event too');
    t.not(refused.ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'the refused one is not pending');
    t.equal(spi.pendingOperations, 3, 'the SDK tracks only the three accepted operations');
    // Cancelling frees the slots: three more may pend again, the fourth is refused again.
    const e = S.out(0);
    t.equal(await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, e), 0);
    t.ok(await drainUntil(spi, () => rec.calls.length >= 3), 'the flushed three completed');
    t.same(rec.calls.map((c) => [c.tag, c.err]), [
      ['f', S.WSA_OPERATION_ABORTED],
      ['a', S.WSA_OPERATION_ABORTED],
      ['b', S.WSA_OPERATION_ABORTED],
    ]);
    const fillerSent = rec.calls[0]!.cb;
    const c = pattern(3000, 33);
    const d = pattern(100, 34);
    const g = pattern(200, 35);
    for (const [tag, data] of [['c', c], ['d', d], ['g', g]] as const) {
      const r = await ovSend(spi, s, [data], { routine: rec.routine(tag) });
      t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], `${tag} pends (the kernel buffers are still full)`);
    }
    const refused3 = await ovSend(spi, s, [Buffer.from('refused')], { routine: rec.routine('refused3') });
    t.equal(refused3.err, S.WSAEWOULDBLOCK, 'the limit still holds after the cancellations');
    conn.socket.resume();
    t.ok(await drainUntil(spi, () => rec.calls.length >= 6), 'the three new operations completed');
    t.equal(await spi.SleepEx(200, true), 0, 'nothing else completes');
    t.same(rec.tags(), ['f', 'a', 'b', 'c', 'd', 'g'], 'no completion for a refused operation');
    t.equal(await waitEvents(spi, [ev], 50), S.WSA_WAIT_TIMEOUT, 'the refused event-form operation never signals');
    t.equal(spi.pendingOperations, 0);
    const r = await ovSend(spi, s, [Buffer.from('after')], { routine: rec.routine('after') });
    t.equal(r.ret, 0, 'a new operation is accepted once the others completed');
    await peerGets(t, spi, s, conn, Buffer.concat([FILLER.subarray(0, fillerSent), c, d, g, Buffer.from('after')]), 'peer: never the refused bytes');
  });

  t.test(`${f}: WSAEINPROGRESS: a thread may not start a blocking call while its own is running`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const x = await connectedTcp(spi, f, peer, 0);
    const y = await connectedTcp(spi, f, peer, 0);
    const a = spi.createThread();
    const b = spi.createThread();
    const buf = new Uint8Array(16);
    const got = S.out(-1);
    const eR = S.out(0);
    let recvDone = false;
    const recvP = a.WSPRecv(x.s, [S.wsabuf(buf)], 1, got, S.out(0), null, null, null, eR).then((r) => {
      recvDone = true;
      return r;
    });
    await roundTrip(spi);
    t.notOk(recvDone, 'the blocking receive waits for data');
    const e = S.out(0);
    const sent = S.out(-7);
    t.equal(await a.WSPSend(y.s, [S.wsabuf('from-a')], 1, sent, 0, null, null, null, e), S.SOCKET_ERROR, 'the same thread: SOCKET_ERROR');
    t.equal(e.value, S.WSAEINPROGRESS, 'WSAEINPROGRESS');
    t.equal(sent.value, -7, 'count untouched');
    const e2 = S.out(0);
    const r2 = S.out(0);
    t.equal(await a.WSPRecv(y.s, [S.wsabuf(new Uint8Array(4))], 1, r2, S.out(0), null, null, null, e2), S.SOCKET_ERROR, 'a second blocking receive too');
    t.equal(e2.value, S.WSAEINPROGRESS);
    const eb = S.out(0);
    const sb = S.out(0);
    t.equal(await b.WSPSend(y.s, [S.wsabuf('from-b')], 1, sb, 0, null, null, null, eb), 0, 'another thread is not affected');
    x.conn.socket.write('wake');
    t.equal(await recvP, 0);
    t.equal(Buffer.from(buf.subarray(0, got.value)).toString(), 'wake');
    const e3 = S.out(0);
    const s3 = S.out(0);
    t.equal(await a.WSPSend(y.s, [S.wsabuf('|a-again')], 1, s3, 0, null, null, null, e3), 0, 'once its call returned, the thread may block again');
    await peerGets(t, spi, y.s, y.conn, Buffer.from('from-b|a-again'), 'the refused send sent nothing');
  });

  t.test(`${f}: autoApc: routines run without alertable waits, after the call resolved`, async (t) => {
    const { spi, s, conn } = await setup(t, f, { sndBuf: 8192, paused: true, autoApc: true });
    const rec = new Recorder();
    const r = await ovSend(spi, s, [Buffer.from('auto')], { routine: rec.routine('imm') });
    t.equal(r.ret, 0);
    t.equal(rec.calls.length, 0, 'not run inside the call');
    t.ok(await pollUntil(() => rec.calls.length === 1, 2000), 'ran without any wait');
    await filler(t, spi, s, { routine: rec.routine('f') });
    t.ok(await bytesArriving(conn), 'the filler is under way: bytes reach the peer');
    // A completion sent by now would be in, and its routine (run on an immediate) would have run.
    await roundTrip(spi);
    t.equal(rec.calls.length, 1, 'a pending one has not run');
    conn.socket.resume();
    t.ok(await pollUntil(() => rec.calls.length === 2, 15000), 'ran at completion without any wait');
    t.same(rec.calls.map((c) => [c.tag, c.err, c.cb]), [
      ['imm', 0, 4],
      ['f', 0, FILLER_BYTES],
    ]);
    let ctx = -1;
    const e = S.out(0);
    t.equal(await spi.WPUQueueApc(spi.mainThread.id, (c) => (ctx = c), 77, e), 0);
    t.ok(await pollUntil(() => ctx === 77, 2000), 'WPUQueueApc runs without a wait too');
  });
}

t.test('a routine running on a thread issues its WSPSend calls from that thread', async (t) => {
  // On Windows a completion routine runs on the thread whose alertable wait ran it, so a WSPSend
  // it makes is issued by that thread and, without lpThreadId, its routine goes to that thread.
  // The answer must not depend on how or when the routine got to run.
  const { spi, s } = await setup(t, 'ipv4');
  const th = spi.createThread();
  const ev = spi.WSACreateEvent();
  const modes = ['SleepEx, already queued', 'SleepEx, arrives during the wait', 'WSAWaitForMultipleEvents, already queued', 'WSAWaitForMultipleEvents, arrives during the wait'];
  for (const mode of modes) {
    // Which thread's wait is running: the inner routine records it.
    let runner = 'none';
    let innerOn: string | null = null;
    const inner: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = () => {
      innerOn = runner;
    };
    const outer: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = async () => {
      await ovSend(spi, s, [Buffer.from('inner')], { routine: inner });
    };
    const wait = (): Promise<number> => (mode.startsWith('SleepEx') ? th.SleepEx(500, true) : th.WSAWaitForMultipleEvents(1, [ev], false, 500, true));
    if (mode.endsWith('already queued')) {
      t.equal((await ovSend(th, s, [Buffer.from('outer')], { routine: outer })).ret, 0);
      t.equal(th.queuedApcs, 1, `${mode}: the outer routine is queued once the call returned`);
      runner = 'thread';
      t.equal(await wait(), WAIT_IO_COMPLETION, `${mode}: the outer routine ran`);
    } else {
      runner = 'thread';
      const w = wait();
      t.equal((await ovSend(th, s, [Buffer.from('outer')], { routine: outer })).ret, 0);
      t.equal(await w, WAIT_IO_COMPLETION, `${mode}: the outer routine ran`);
    }
    // The inner send completes at once: its routine is queued (or has run) once its reply is in.
    await pollUntil(() => innerOn !== null || th.queuedApcs + spi.mainThread.queuedApcs > 0, 5000);
    runner = 'main';
    await spi.SleepEx(20, true);
    runner = 'thread';
    await th.SleepEx(20, true);
    runner = 'none';
    t.equal(innerOn, 'thread', `${mode}: the inner routine ran on the thread, not on ${innerOn ?? 'no thread'}`);
  }
});

t.test('WSAWaitForMultipleEvents: WSA_WAIT_EVENT_0 + i, WSA_WAIT_TIMEOUT, fWaitAll, WSA_WAIT_IO_COMPLETION', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const evs = [spi.WSACreateEvent(), spi.WSACreateEvent(), spi.WSACreateEvent()];
  t.equal(await waitEvents(spi, evs, 30), S.WSA_WAIT_TIMEOUT, 'none signalled: WSA_WAIT_TIMEOUT (0x102)');
  t.equal(S.WSA_WAIT_TIMEOUT, 0x102);
  t.equal(spi.WSASetEvent(evs[2]!), S.TRUE);
  t.equal(await waitEvents(spi, evs, 0), S.WSA_WAIT_EVENT_0 + 2, 'WSA_WAIT_EVENT_0 + 2');
  t.equal(spi.WSASetEvent(evs[1]!), S.TRUE);
  t.equal(await waitEvents(spi, evs, 0), S.WSA_WAIT_EVENT_0 + 1, 'the lowest signalled index');
  t.equal(await waitEvents(spi, evs, 0), S.WSA_WAIT_EVENT_0 + 1, 'manual reset: still signalled');
  t.equal(await waitEvents(spi, evs, 30, true), S.WSA_WAIT_TIMEOUT, 'fWaitAll with one unsignalled: timeout');
  const all = waitEvents(spi, evs, 5000, true);
  // The wait registers at once; one turn of the event loop and it is blocked when the event comes.
  await nextTurn();
  spi.WSASetEvent(evs[0]!);
  t.equal(await all, S.WSA_WAIT_EVENT_0, 'fWaitAll: WSA_WAIT_EVENT_0 once all are signalled');
  for (const e of evs) t.equal(spi.WSAResetEvent(e), S.TRUE);
  t.equal(await waitEvents(spi, evs, 20), S.WSA_WAIT_TIMEOUT, 'reset');
  const later = waitEvents(spi, evs, 5000);
  await nextTurn();
  spi.WSASetEvent(evs[1]!);
  t.equal(await later, S.WSA_WAIT_EVENT_0 + 1, 'a wait in progress returns when an event is set');
  spi.WSAResetEvent(evs[1]!);
  // Alertable: an APC queued to the waiting thread ends the wait with WSA_WAIT_IO_COMPLETION.
  let ctx = 0;
  const w = waitEvents(spi, evs, 5000, false, true);
  await nextTurn();
  t.equal(await spi.WPUQueueApc(spi.mainThread.id, (c) => (ctx = c), 0x1234, S.out(0)), 0);
  t.equal(await w, S.WSA_WAIT_IO_COMPLETION, 'WSA_WAIT_IO_COMPLETION (0xC0)');
  t.equal(ctx, 0x1234);
  for (const e of evs) t.equal(spi.WSACloseEvent(e), S.TRUE);
});

t.test('WPUQueueApc runs its function with dwContext at the next alertable wait of that thread', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const th = spi.createThread();
  const ran: Array<[number, string]> = [];
  let runner = 'none';
  const e = S.out(0);
  t.equal(await spi.WPUQueueApc(th.id, (c) => ran.push([c, runner]), 0xdead, e), 0);
  t.equal(await spi.WPUQueueApc(th.id, (c) => ran.push([c, runner]), 0xbeef, e), 0);
  runner = 'th-not-alertable';
  t.equal(await th.SleepEx(30, false), 0);
  runner = 'main-alertable';
  t.equal(await spi.SleepEx(30, true), 0, 'another thread\'s alertable wait does not run it');
  t.same(ran, [], 'not run yet');
  runner = 'th';
  t.equal(await th.SleepEx(1000, true), WAIT_IO_COMPLETION);
  t.same(ran, [
    [0xdead, 'th'],
    [0xbeef, 'th'],
  ], 'both, in order, with their contexts');
  t.equal(await th.SleepEx(20, true), 0, 'once');
});
