/**
 * Cancellation of pending overlapped operations: WSPCloseSocket, SIO_FLUSH, thread exit, end of
 * the session and a dropped connection. Every pending operation completes exactly once, through
 * the method its caller chose (completion routine, or event + WSPGetOverlappedResult). Also
 * overlapped WSPRecv on TCP and UDP.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as dgram from 'node:dgram';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import {
  FAMILIES,
  FILLER_BYTES,
  addr,
  af,
  allReceived,
  bytesArriving,
  daemon,
  drainUntil,
  emptyAddr,
  loopback,
  namelen,
  ovSend,
  overlappedTcp,
  pattern,
  roundTrip,
  session,
  sleep,
  tcpPeer,
  type Family,
  type OvSendOptions,
  type PeerConnection,
  type SendIssuer,
} from '../helpers/harness.js';

const FILLER = pattern(FILLER_BYTES, 777);

interface Done {
  tag: string;
  err: number;
  cb: number;
  ov: S.WSAOVERLAPPED;
  runner: string;
}

class Recorder {
  readonly calls: Done[] = [];
  runner = 'main';
  routine(tag: string): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE {
    return (err, cb, ov) => {
      this.calls.push({ tag, err, cb, ov, runner: this.runner });
    };
  }
  count(tag: string): number {
    return this.calls.filter((c) => c.tag === tag).length;
  }
  get(tag: string): Done | undefined {
    return this.calls.find((c) => c.tag === tag);
  }
}

async function setup(t: Test, f: Family): Promise<{ spi: S.SpiSession; s: number; conn: PeerConnection }> {
  const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
  // A dropped connection must end the session here (no resume), as a vanished client's does.
  const spi = await session(t, d, { resume: false });
  const peer = await tcpPeer(t, f, { paused: true });
  const { s, conn } = await overlappedTcp(spi, f, peer);
  return { spi, s, conn };
}

async function pending(t: Test, issuer: SendIssuer, s: number, data: Uint8Array, opts: OvSendOptions, what: string): Promise<S.WSAOVERLAPPED> {
  const r = await ovSend(issuer, s, [data], opts);
  t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], `${what} is pending`);
  return r.ov;
}

async function result(spi: S.SpiSession, s: number, ov: S.WSAOVERLAPPED, wait = false): Promise<[number, number, number]> {
  const cb = S.out(-1);
  const e = S.out(0);
  const ret = await spi.WSPGetOverlappedResult(s, ov, cb, wait, S.out(0), e);
  return [ret, e.value, cb.value];
}

/** Resumes the peer and waits for FIN (or close); returns what it received. */
async function peerFinal(t: Test, conn: PeerConnection): Promise<Buffer> {
  conn.socket.resume();
  const closed = new Promise<void>((r) => conn.socket.once('close', () => r()));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), 20000)));
  const how = await Promise.race([conn.ended.then(() => 'end'), closed.then(() => 'close'), timeout]);
  clearTimeout(timer);
  t.not(how, 'timeout', `the peer saw the connection end (${how})`);
  // Node emits every 'data' before 'end' (and before 'close'): what came is all there is.
  return conn.received();
}

/** An overlapped UDP socket bound to loopback; returns it with its port. */
async function boundUdp(spi: S.SpiSession, f: Family): Promise<{ s: number; port: number }> {
  const e = S.out(0);
  const s = await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket: ${e.value}`);
  if ((await spi.WSPBind(s, addr(f, 0), namelen(f), e)) !== 0) throw new Error(`WSPBind: ${e.value}`);
  const name = emptyAddr();
  if ((await spi.WSPGetSockName(s, name, S.out(namelen(f)), e)) !== 0) throw new Error(`WSPGetSockName: ${e.value}`);
  return { s, port: name.port };
}

for (const f of FAMILIES) {
  t.test(`${f}: WSPCloseSocket completes every pending operation once with WSA_OPERATION_ABORTED, by the caller's method`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const rec = new Recorder();
    const th = spi.createThread();
    const evA = spi.WSACreateEvent();
    const evC = spi.WSACreateEvent();
    const ovF = await pending(t, spi, s, FILLER, { routine: rec.routine('F') }, 'the filler (routine, main thread)');
    const ovA = await pending(t, spi, s, pattern(1000, 1), { ov: new S.WSAOVERLAPPED(evA) }, 'A (event)');
    const ovB = await pending(t, th, s, pattern(2000, 2), { routine: rec.routine('B') }, 'B (routine, issued by a thread)');
    const ovC = await pending(t, spi, s, pattern(3000, 3), { ov: new S.WSAOVERLAPPED(evC) }, 'C (event, waited on)');
    let cSettled = false;
    const waitC = result(spi, s, ovC, true).then((r) => {
      cSettled = true;
      return r;
    });
    // C's completion, had the daemon sent one by now, would be in: the round trip comes after it.
    await roundTrip(spi);
    t.notOk(cSettled, 'WSPGetOverlappedResult(fWait TRUE) waits');
    t.equal(spi.pendingOperations, 4);
    const e = S.out(0);
    t.equal(await spi.WSPCloseSocket(s, e), 0, 'WSPCloseSocket succeeds');
    t.same(await waitC, [S.FALSE, S.WSA_OPERATION_ABORTED, 0], 'the waiter gets FALSE / WSA_OPERATION_ABORTED');
    t.equal(await spi.WSAWaitForMultipleEvents(2, [evA, evC], true, 5000, false), S.WSA_WAIT_EVENT_0, 'both events are signalled');
    t.same(await result(spi, s, ovA), [S.FALSE, S.WSA_OPERATION_ABORTED, 0], 'A: FALSE / WSA_OPERATION_ABORTED, no bytes');
    t.equal(ovA.OffsetHigh, S.WSA_OPERATION_ABORTED);
    rec.runner = 'main';
    t.ok(await drainUntil(spi, () => rec.count('F') > 0), 'the filler routine ran on the main thread');
    rec.runner = 'th';
    t.ok(await drainUntil(th, () => rec.count('B') > 0), 'B ran on its thread');
    const F = rec.get('F')!;
    const B = rec.get('B')!;
    t.same([F.err, F.runner, F.ov === ovF], [S.WSA_OPERATION_ABORTED, 'main', true]);
    t.same([B.err, B.cb, B.runner, B.ov === ovB], [S.WSA_OPERATION_ABORTED, 0, 'th', true]);
    t.ok(F.cb >= 0 && F.cb < FILLER_BYTES, `the filler reports the ${F.cb} bytes it got into the transport`);
    for (const ov of [ovF, ovA, ovB, ovC]) t.not(ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'no longer pending');
    // Exactly once.
    rec.runner = 'main';
    t.equal(await spi.SleepEx(100, true), 0);
    rec.runner = 'th';
    t.equal(await th.SleepEx(100, true), 0);
    t.same([rec.count('F'), rec.count('B'), rec.calls.length], [1, 1, 2], 'each routine ran exactly once');
    t.equal(spi.pendingOperations, 0);
    const got = await peerFinal(t, conn);
    t.equal(got.length, F.cb, 'the peer got exactly the accepted part of the filler');
    t.ok(got.equals(FILLER.subarray(0, F.cb)), 'and nothing of the cancelled operations');
    t.equal((await ovSend(spi, s, [Buffer.from('x')], {})).err, S.WSAENOTSOCK, 'the handle is gone');
  });

  t.test(`${f}: SIO_FLUSH completes queued sends with WSA_OPERATION_ABORTED and the socket keeps working`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const rec = new Recorder();
    const th = spi.createThread();
    const ev = spi.WSACreateEvent();
    const head = pattern(500, 9);
    const imm = await ovSend(spi, s, [head], { routine: rec.routine('imm') });
    t.equal(imm.ret, 0, 'an operation that already completed is not affected');
    await pending(t, spi, s, FILLER, { routine: rec.routine('F') }, 'filler');
    const ovA = await pending(t, spi, s, pattern(4000, 10), { ov: new S.WSAOVERLAPPED(ev) }, 'A (event)');
    await pending(t, th, s, pattern(5000, 11), { routine: rec.routine('B') }, 'B (routine on a thread)');
    const e = S.out(0);
    const returned = S.out(-1);
    t.equal(await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, returned, null, null, null, e), 0, 'SIO_FLUSH succeeds');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0);
    t.same(await result(spi, s, ovA), [S.FALSE, S.WSA_OPERATION_ABORTED, 0], 'A: WSA_OPERATION_ABORTED');
    t.ok(await drainUntil(spi, () => rec.count('F') > 0 && rec.count('imm') > 0));
    t.ok(await drainUntil(th, () => rec.count('B') > 0));
    t.same([rec.get('imm')!.err, rec.get('imm')!.cb], [0, 500], 'the immediate one completed normally');
    t.equal(rec.get('F')!.err, S.WSA_OPERATION_ABORTED);
    t.same([rec.get('B')!.err, rec.get('B')!.cb], [S.WSA_OPERATION_ABORTED, 0]);
    t.equal(spi.pendingOperations, 0);
    const fillerSent = rec.get('F')!.cb;
    // The socket keeps working.
    conn.socket.resume();
    const after = pattern(20000, 12);
    const r = await ovSend(spi, s, [after.subarray(0, 7000), after.subarray(7000)], { routine: rec.routine('after') });
    t.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, 'a new overlapped send is accepted');
    t.ok(await drainUntil(spi, () => rec.count('after') > 0));
    t.same([rec.get('after')!.err, rec.get('after')!.cb], [0, 20000]);
    const sent = S.out(0);
    t.equal(await spi.WSPSend(s, [S.wsabuf('tail')], 1, sent, 0, null, null, null, e), 0, 'a blocking send too');
    const want = Buffer.concat([head, FILLER.subarray(0, fillerSent), after, Buffer.from('tail')]);
    const got = await conn.waitFor(want.length, 20000).catch(() => conn.received());
    // Closed, the socket sends FIN after its last byte: then the peer has all it will get.
    t.equal((await allReceived(t, spi, s, conn)).length, want.length, 'byte count at the peer');
    t.ok(got.equals(want), 'the peer got the accepted part of the filler, then the new sends; nothing of A or B');
    t.same([rec.count('F'), rec.count('B'), rec.count('imm'), rec.count('after')], [1, 1, 1, 1], 'exactly once each');
  });

  t.test(`${f}: thread exit cancels the pending operations that thread issued, and only those`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const rec = new Recorder();
    const t1 = spi.createThread();
    const t2 = spi.createThread();
    const evF = spi.WSACreateEvent();
    const evA = spi.WSACreateEvent();
    const evB = spi.WSACreateEvent();
    const ovF = await pending(t, spi, s, FILLER, { ov: new S.WSAOVERLAPPED(evF) }, 'F (main)');
    const ovA = await pending(t, t1, s, pattern(1000, 20), { ov: new S.WSAOVERLAPPED(evA) }, 'A (thread 1, event)');
    const bData = pattern(2000, 21);
    const ovB = await pending(t, t2, s, bData, { ov: new S.WSAOVERLAPPED(evB) }, 'B (thread 2, event)');
    const ovD = await pending(t, t1, s, pattern(3000, 22), { routine: rec.routine('D'), threadId: t2.id }, 'D (thread 1, routine on thread 2)');
    const ovE = await pending(t, t1, s, pattern(4000, 23), { routine: rec.routine('E') }, 'E (thread 1, routine on thread 1)');
    t.equal(spi.pendingOperations, 5);
    await t1.exit();
    t.equal(await spi.WSAWaitForMultipleEvents(1, [evA], false, 5000, false), S.WSA_WAIT_EVENT_0, 'A\'s event is signalled');
    t.same([ovA.Internal, ovA.OffsetHigh, ovA.InternalHigh], [0, S.WSA_OPERATION_ABORTED, 0], 'A: OffsetHigh = WSA_OPERATION_ABORTED');
    t.same(await result(spi, s, ovA), [S.FALSE, S.WSA_OPERATION_ABORTED, 0]);
    t.equal(ovE.OffsetHigh, S.WSA_OPERATION_ABORTED, 'E is cancelled too');
    t.not(ovE.Internal, S.WSS_OPERATION_IN_PROGRESS);
    rec.runner = 't2';
    t.ok(await drainUntil(t2, () => rec.count('D') > 0), 'D\'s routine runs on thread 2');
    t.same([rec.get('D')!.err, rec.get('D')!.cb, rec.get('D')!.runner], [S.WSA_OPERATION_ABORTED, 0, 't2']);
    t.equal(ovF.Internal, S.WSS_OPERATION_IN_PROGRESS, 'the main thread\'s F is still pending');
    t.equal(ovB.Internal, S.WSS_OPERATION_IN_PROGRESS, 'thread 2\'s B is still pending');
    t.equal(await spi.WSAWaitForMultipleEvents(2, [evF, evB], false, 50, false), S.WSA_WAIT_TIMEOUT, 'their events are not signalled');
    t.equal(spi.pendingOperations, 2);
    conn.socket.resume();
    t.equal(await spi.WSAWaitForMultipleEvents(2, [evF, evB], true, 20000, false), S.WSA_WAIT_EVENT_0, 'F and B complete');
    t.same(await result(spi, s, ovF), [S.TRUE, 0, FILLER_BYTES]);
    t.same(await result(spi, s, ovB), [S.TRUE, 0, 2000]);
    rec.runner = 'main';
    t.equal(await spi.SleepEx(50, true), 0);
    rec.runner = 't2';
    t.equal(await t2.SleepEx(50, true), 0);
    t.same(rec.calls.map((c) => c.tag), ['D'], 'E\'s routine (for the exited thread) never ran; D ran once');
    const want = Buffer.concat([FILLER, bData]);
    await conn.waitFor(want.length, 20000).catch(() => undefined);
    t.equal((await allReceived(t, spi, s, conn)).length, want.length);
    t.ok(conn.received().equals(want), 'the peer got F and B only');
  });

  t.test(`${f}: many threads with pending receives interleaved; every other one exits: exactly its receives are cancelled, and the rest get the peer's bytes`, async (t) => {
    const { spi, s, conn } = await setup(t, f);
    const THREADS = 60;
    const PER_THREAD = 3;
    const threads = Array.from({ length: THREADS }, () => spi.createThread());
    const order: string[] = [];
    const ovs = new Map<string, S.WSAOVERLAPPED>();
    // Issued round robin: thread 0's first, thread 1's first, ..., then each one's second.
    for (let k = 0; k < PER_THREAD; k++) {
      for (let i = 0; i < THREADS; i++) {
        const ov = new S.WSAOVERLAPPED();
        const e = S.out(0);
        const tag = `${i}.${k}`;
        const ret = await threads[i]!.WSPRecv(s, [S.wsabuf(new Uint8Array(1))], 1, S.out(0), S.out(0), ov, (err) => void order.push(`${tag}:${err}`), null, e);
        if (ret !== S.SOCKET_ERROR || e.value !== S.WSA_IO_PENDING) throw new Error(`receive ${tag}: ${ret} ${e.value}`);
        ovs.set(tag, ov);
      }
    }
    t.equal(spi.pendingOperations, THREADS * PER_THREAD);
    // The exiting threads' routines are never run (they are gone); their OVERLAPPEDs say what happened.
    for (let i = 0; i < THREADS; i += 2) await threads[i]!.exit();
    t.equal(spi.pendingOperations, (THREADS / 2) * PER_THREAD, 'the other threads\' receives still pend');
    for (const [tag, ov] of ovs) {
      const exited = Number(tag.split('.')[0]) % 2 === 0;
      if (exited) t.equal(ov.OffsetHigh, S.WSA_OPERATION_ABORTED, `${tag}: aborted`);
      else if (ov.Internal !== S.WSS_OPERATION_IN_PROGRESS) t.fail(`${tag} is no longer pending`);
    }
    // The peer writes one byte per remaining receive: they complete in the order they were issued.
    const remaining = (THREADS / 2) * PER_THREAD;
    conn.socket.write(Buffer.alloc(remaining, 0x61));
    for (let i = 1; i < THREADS; i += 2) await drainUntil(threads[i]!, () => order.filter((o) => o.startsWith(`${i}.`)).length === PER_THREAD);
    t.equal(order.length, remaining, 'one routine per remaining receive, each on its thread');
    t.ok(order.every((o) => o.endsWith(':0')), 'each with success');
    const issued = [...ovs.keys()].filter((tag) => Number(tag.split('.')[0]) % 2 === 1);
    t.same([...ovs.entries()].filter(([tag]) => issued.includes(tag)).map(([, ov]) => ov.InternalHigh), new Array<number>(remaining).fill(1), 'one byte each');
  });

  t.test(`${f}: a send whose call is still in flight when its thread exits is cancelled too`, async (t) => {
    // The daemon receives the WSPSend before the exit, answers it WSA_IO_PENDING, then handles the
    // exit: the operation was pending on behalf of that thread when it exited.
    const { spi, s, conn } = await setup(t, f);
    const evF = spi.WSACreateEvent();
    const ovF = await pending(t, spi, s, FILLER, { ov: new S.WSAOVERLAPPED(evF) }, 'the filler (main)');
    const th = spi.createThread();
    const ev = spi.WSACreateEvent();
    const sending = ovSend(th, s, [Buffer.from('must-not-arrive')], { ov: new S.WSAOVERLAPPED(ev) });
    const exiting = th.exit();
    const r = await sending;
    await exiting;
    t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the send was pending');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 2000, false), S.WSA_WAIT_EVENT_0, 'the exit signals its event');
    t.same([r.ov.OffsetHigh, r.ov.InternalHigh], [S.WSA_OPERATION_ABORTED, 0], 'OffsetHigh = WSA_OPERATION_ABORTED');
    conn.socket.resume();
    t.equal(await spi.WSAWaitForMultipleEvents(1, [evF], false, 20000, false), S.WSA_WAIT_EVENT_0);
    t.same(await result(spi, s, ovF), [S.TRUE, 0, FILLER_BYTES], 'the main thread\'s send completed normally');
    // Had the daemon kept the aborted send queued, it would have completed right behind the filler:
    // that completion would be in by the end of a round trip.
    await roundTrip(spi);
    t.same(await result(spi, s, r.ov), [S.FALSE, S.WSA_OPERATION_ABORTED, 0], 'the exited thread\'s send stays aborted');
    t.equal(await spi.WSPCloseSocket(s, S.out(0)), 0);
    const got = await peerFinal(t, conn);
    t.equal(got.length, FILLER_BYTES, 'the peer got the filler and nothing of the exited thread\'s send');
  });

  for (const how of ['close', 'terminate'] as const) {
    const code = how === 'close' ? S.WSA_OPERATION_ABORTED : S.WSAENETDOWN;
    t.test(`${f}: a session that ends (${how}) completes its pending operations locally with ${code}; the daemon closes its sockets`, async (t) => {
      const { spi, s, conn } = await setup(t, f);
      const rec = new Recorder();
      const th = spi.createThread();
      const ev = spi.WSACreateEvent();
      const ovF = await pending(t, spi, s, FILLER, { routine: rec.routine('F') }, 'filler (routine)');
      const ovA = await pending(t, spi, s, pattern(100, 30), { ov: new S.WSAOVERLAPPED(ev) }, 'A (event)');
      await pending(t, th, s, pattern(100, 31), { routine: rec.routine('B') }, 'B (routine on a thread)');
      const evR = spi.WSACreateEvent();
      const rBuf = new Uint8Array(16).fill(0xaa);
      const er = S.out(0);
      const ovR = new S.WSAOVERLAPPED(evR);
      t.equal(await spi.WSPRecv(s, [S.wsabuf(rBuf)], 1, S.out(-1), S.out(0), ovR, null, null, er), S.SOCKET_ERROR);
      t.equal(er.value, S.WSA_IO_PENDING, 'a receive is pending too');
      t.equal(spi.pendingOperations, 4);
      if (how === 'close') await spi.close();
      else spi.connection.terminate();
      t.equal(await spi.WSAWaitForMultipleEvents(2, [ev, evR], true, 5000, false), S.WSA_WAIT_EVENT_0, 'the events are signalled');
      t.same(await result(spi, s, ovA), [S.FALSE, code, 0], `A: FALSE / ${code}`);
      t.same(await result(spi, s, ovR), [S.FALSE, code, 0], `the receive: FALSE / ${code}`);
      t.ok(await drainUntil(spi, () => rec.count('F') > 0, 40), 'the main thread\'s routine runs at its alertable wait');
      t.ok(await drainUntil(th, () => rec.count('B') > 0, 40), 'the thread\'s routine runs at its alertable wait');
      t.same([rec.get('F')!.err, rec.get('B')!.err], [code, code]);
      t.equal(ovF.OffsetHigh, code);
      t.equal(spi.pendingOperations, 0, 'nothing left pending');
      t.equal(await spi.SleepEx(50, true), 0);
      t.equal(await th.SleepEx(50, true), 0);
      t.equal(rec.calls.length, 2, 'exactly once');
      await peerFinal(t, conn);
    });
  }

  t.test(`${f}: overlapped WSPRecv on TCP: pending until data arrives, fills the caller's WSABUFs; close cancels it`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const rec = new Recorder();
    const b1 = new Uint8Array(4).fill(0xaa);
    const b2 = new Uint8Array(8).fill(0xbb);
    const got = S.out(-7);
    const flags = S.out(0);
    const e = S.out(0);
    const ov = new S.WSAOVERLAPPED();
    t.equal(await spi.WSPRecv(s, [S.wsabuf(b1), S.wsabuf(b2)], 2, got, flags, ov, rec.routine('r1'), null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING, 'no data yet: pending');
    t.equal(got.value, -7, 'lpNumberOfBytesRecvd untouched while pending');
    t.equal(ov.Internal, S.WSS_OPERATION_IN_PROGRESS);
    await roundTrip(spi);
    t.equal(await spi.SleepEx(50, true), 0, 'still no completion');
    conn.socket.write('0123456789');
    t.ok(await drainUntil(spi, () => rec.calls.length > 0), 'the routine ran once data arrived');
    const c = rec.calls[0]!;
    t.same([c.err, c.cb, c.ov === ov], [0, 10, true]);
    t.equal(Buffer.from(b1).toString(), '0123', 'first WSABUF');
    t.same(Buffer.from(b2), Buffer.from([...Buffer.from('456789'), 0xbb, 0xbb]), 'second WSABUF, rest untouched');
    // Event form, completed by data, read with WSPGetOverlappedResult(fWait TRUE).
    const ev = spi.WSACreateEvent();
    const ov2 = new S.WSAOVERLAPPED(ev);
    const b3 = new Uint8Array(32);
    t.equal(await spi.WSPRecv(s, [S.wsabuf(b3)], 1, S.out(-1), S.out(0), ov2, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    const waiting = result(spi, s, ov2, true);
    // The receive is pending at the daemon and the waiter blocked before the data comes.
    await roundTrip(spi);
    conn.socket.write('event-form');
    t.same(await waiting, [S.TRUE, 0, 10]);
    t.equal(Buffer.from(b3.subarray(0, 10)).toString(), 'event-form');
    // A pending receive of each form, cancelled by close.
    const ev3 = spi.WSACreateEvent();
    const ov3 = new S.WSAOVERLAPPED(ev3);
    t.equal(await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(8))], 1, S.out(-1), S.out(0), ov3, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    const ov4 = new S.WSAOVERLAPPED();
    t.equal(await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(8))], 1, S.out(-1), S.out(0), ov4, rec.routine('r4'), null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    t.equal(await spi.WSPCloseSocket(s, e), 0);
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev3], false, 5000, false), S.WSA_WAIT_EVENT_0);
    // A receive that the close ends completes with WSAECONNABORTED on Windows (Wine's test_iocp).
    t.same(await result(spi, s, ov3), [S.FALSE, S.WSAECONNABORTED, 0], 'event form: WSAECONNABORTED');
    t.ok(await drainUntil(spi, () => rec.count('r4') > 0));
    t.same([rec.get('r4')!.err, rec.get('r4')!.cb], [S.WSAECONNABORTED, 0], 'routine form: WSAECONNABORTED');
    t.equal(await spi.SleepEx(50, true), 0);
    t.equal(rec.calls.length, 2, 'exactly once each');
    t.equal(spi.pendingOperations, 0);
  });

  t.test(`${f}: overlapped WSPRecv on UDP: pending until a datagram arrives; close cancels it`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const { s, port } = await boundUdp(spi, f);
    const sender = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
    t.teardown(() => sender.close());
    const rec = new Recorder();
    const b1 = new Uint8Array(5);
    const b2 = new Uint8Array(10);
    const got = S.out(-7);
    const flags = S.out(0);
    const e = S.out(0);
    const ov = new S.WSAOVERLAPPED();
    t.equal(await spi.WSPRecv(s, [S.wsabuf(b1), S.wsabuf(b2)], 2, got, flags, ov, rec.routine('u1'), null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    t.equal(got.value, -7);
    await roundTrip(spi);
    t.equal(await spi.SleepEx(50, true), 0, 'no completion without a datagram');
    sender.send(Buffer.from('hello-udp!!'), port, loopback(f));
    t.ok(await drainUntil(spi, () => rec.calls.length > 0), 'completed when the datagram arrived');
    t.same([rec.calls[0]!.err, rec.calls[0]!.cb], [0, 11]);
    t.equal(Buffer.concat([b1, b2]).subarray(0, 11).toString(), 'hello-udp!!', 'spread over both WSABUFs');
    const ev = spi.WSACreateEvent();
    const ov2 = new S.WSAOVERLAPPED(ev);
    t.equal(await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(64))], 1, S.out(-1), S.out(0), ov2, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    const ov3 = new S.WSAOVERLAPPED();
    t.equal(await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(64))], 1, S.out(-1), S.out(0), ov3, rec.routine('u3'), null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    t.equal(await spi.WSPCloseSocket(s, e), 0);
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0);
    t.same(await result(spi, s, ov2), [S.FALSE, S.WSA_OPERATION_ABORTED, 0]);
    t.ok(await drainUntil(spi, () => rec.count('u3') > 0));
    t.equal(rec.get('u3')!.err, S.WSA_OPERATION_ABORTED);
    t.equal(await spi.SleepEx(50, true), 0);
    t.equal(rec.calls.length, 2, 'exactly once each');
    t.equal(spi.pendingOperations, 0);
  });
}

for (const f of FAMILIES) {
  t.test(`${f}: many 64 KiB sends to a peer that stopped reading, then WSPCloseSocket: the counts add up to what the peer gets`, async (t) => {
    // The daemon hands bytes of waiting sends to the kernel ahead of acceptance (several
    // SO_SNDBUF at a time). Whatever it cannot take back must be counted as sent: the peer
    // receives exactly the bytes the completions report, in order, and nothing else.
    const d = await daemon(t, { limits: { defaultSndBuf: 65536 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const SIZE = 65536;
    const datas: Uint8Array[] = [];
    const sends = [];
    for (let i = 0; i < 96; i++) {
      const data = pattern(SIZE, 4000 + i);
      datas.push(data);
      sends.push(await ovSend(spi, s, [data], {}));
    }
    // Time is the point: the peer's kernel buffers fill, so the close meets sends in every state.
    await sleep(200);
    t.equal(await spi.WSPCloseSocket(s, S.out(0)), 0, 'WSPCloseSocket succeeds');
    const counts: number[] = [];
    for (const r of sends) {
      if (r.ret === 0) {
        counts.push(r.sent!.value);
        continue;
      }
      t.equal(r.err, S.WSA_IO_PENDING, 'a send that did not complete at once is pending');
      const [ret, err, cb] = await result(spi, s, r.ov, true);
      if (ret === S.TRUE) t.equal(cb, SIZE, 'a completed send reports all its bytes');
      else t.equal(err, S.WSA_OPERATION_ABORTED, 'a send still waiting at the close is aborted');
      counts.push(cb);
    }
    const firstShort = counts.findIndex((c) => c < SIZE);
    t.ok(firstShort > 0, `some sends completed (${firstShort}) and some were aborted`);
    t.ok(counts.slice(firstShort + 1).every((c) => c === 0), 'after the first short count, no send reports bytes');
    const got = await peerFinal(t, conn);
    const want = Buffer.concat(datas.map((b, i) => b.subarray(0, counts[i])));
    t.equal(got.length, want.length, `the peer got exactly the ${want.length} bytes reported sent`);
    t.ok(got.equals(want), 'in order and intact');
  });
}

for (const f of FAMILIES) {
  t.test(`${f}: SO_SNDBUF 0, three overlapped sends to a peer that does not read, then WSPCloseSocket: each completes exactly once`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    // A small receive buffer on the peer (inherited from its listener) so that the kernels on
    // both sides cannot swallow the first send: loopback autotuning would take 32 MiB.
    const native = libc();
    const listenFd = fdOf(peer.server);
    if (native && listenFd !== null) native.setInt(listenFd, native.c.SOL_SOCKET, native.c.SO_RCVBUF, 65536);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const e = S.out(0);
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, new Uint8Array(4), 4, e), 0, 'SO_SNDBUF 0');
    const rec = new Recorder();
    // The first send alone is more than the kernels hold; the next two wait behind it.
    const sizes = [4 * 1024 * 1024, 64 * 1024, 1000];
    const data = sizes.map((n, i) => pattern(n, 40 + i));
    for (const [i, b] of data.entries()) await pending(t, spi, s, b, { routine: rec.routine(`S${i}`) }, `send ${i}`);
    t.ok(await bytesArriving(conn), 'the first send is under way: bytes reach the peer');
    // A completion sent by now would be in: the round trip comes after it.
    await roundTrip(spi);
    t.equal(spi.pendingOperations, 3, 'all three are pending');
    t.equal(await spi.WSPCloseSocket(s, e), 0, 'WSPCloseSocket succeeds');
    t.ok(await drainUntil(spi, () => rec.calls.length >= 3), `every operation completed (${rec.calls.length} of 3)`);
    await spi.SleepEx(50, true);
    t.same(sizes.map((_, i) => rec.count(`S${i}`)), [1, 1, 1], 'each exactly once');
    t.equal(spi.pendingOperations, 0, 'nothing is left pending');
    // The peer gets exactly what the operations reported, in order.
    const got = await peerFinal(t, conn);
    const expected = Buffer.concat(sizes.map((_, i) => data[i]!.subarray(0, rec.get(`S${i}`)!.err === 0 ? sizes[i] : rec.get(`S${i}`)!.cb)));
    t.equal(got.length, expected.length, `the peer received ${got.length} bytes, the reported ${expected.length}`);
    t.ok(got.equals(expected), 'exactly the reported bytes, in order');
  });
}
