/**
 * Fault rules over real sockets (proto/README.md section 19, docs/faults.md): each action on TCP
 * and UDP, IPv4 and IPv6, against peers that record exactly what they got; determinism; the
 * refusals; exactly-once completion under block, delay and short.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import * as S from '@spiwire/client';
import {
  FAMILIES,
  addr,
  bindLoopback,
  connectedTcp,
  daemon,
  newSocket,
  overlappedTcp,
  ovSend,
  pattern,
  peerEnding,
  pollUntil,
  recvInto,
  roundTrip,
  send,
  sendTo,
  session,
  setNonBlocking,
  tcpBytesBeforeFence,
  tcpPeer,
  udpDatagramsBeforeFence,
  udpPeer,
  namelen,
  loopback,
  type Family,
} from '../helpers/harness.js';

/** Routines that record (error, cbTransferred) per tag; with autoApc they run as completions arrive. */
class Routines {
  readonly calls: Array<{ tag: string; err: number; cb: number }> = [];
  routine(tag: string): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE {
    return (err, cb) => {
      this.calls.push({ tag, err, cb });
    };
  }
  of(tag: string): Array<{ err: number; cb: number }> {
    return this.calls.filter((c) => c.tag === tag).map(({ err, cb }) => ({ err, cb }));
  }
}

async function enumEvents(spi: S.SpiSession, s: number, ev: number): Promise<number> {
  const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
  await spi.WSPEnumNetworkEvents(s, ev, ne, S.out(0));
  return ne.lNetworkEvents;
}

/** Waits (bounded) until FD_WRITE is recorded on s; the events recorded meanwhile. */
async function waitFdWrite(spi: S.SpiSession, s: number, ev: number, timeoutMs = 10000): Promise<number> {
  let seen = 0;
  const deadline = Date.now() + timeoutMs;
  while (!(seen & S.FD_WRITE) && Date.now() < deadline) {
    await spi.WSAWaitForMultipleEvents(1, [ev], false, 200, false);
    seen |= await enumEvents(spi, s, ev);
  }
  return seen;
}

function expectRefused(t: Test, p: Promise<unknown>, field: string, message: RegExp, what: string): Promise<void> {
  return p.then(
    () => {
      t.fail(`${what}: accepted`);
    },
    (err: unknown) => {
      t.ok(err instanceof S.SpiwireProtocolError, `${what}: a protocol error`);
      if (err instanceof S.SpiwireProtocolError) {
        t.equal(err.code, S.INVALID_PARAMS, `${what}: INVALID_PARAMS`);
        t.equal(err.data?.['field'], field, `${what}: names ${field}`);
        t.match(err.message, message, `${what}: says why`);
      }
    },
  );
}

const ms = (since: number): number => performance.now() - since;

for (const f of FAMILIES) {
  // ------------------------------------------------------------------ short

  t.test(`${f}: short: nonblocking, blocking and overlapped sends take K bytes; the peer gets exactly those`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const data = pattern(1000, 3);
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'short', max: 300 } });
    await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'short', max: 10 } });
    await spi.faults.add({ match: { socket: s, nth: 3 }, action: { type: 'short', max: 999 } });

    await setNonBlocking(spi, s, true);
    t.same(await send(spi, s, [data.subarray(0, 600), data.subarray(600)]), [0, 0, 300], 'nonblocking: 0 with a count of 300, across WSABUFs');
    await setNonBlocking(spi, s, false);
    t.same(await send(spi, s, [data]), [0, 0, 10], 'blocking: 10');
    const rec = new Routines();
    const r = await ovSend(spi, s, [data], { routine: rec.routine('ov') });
    t.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, 'overlapped: completed or pending');
    t.ok(await pollUntil(() => rec.calls.length > 0), 'the routine ran');
    t.same(rec.of('ov'), [{ err: 0, cb: 999 }], 'overlapped: completes once with 999');
    const got = await tcpBytesBeforeFence(spi, s, conn, 300 + 10 + 999);
    t.ok(got.equals(Buffer.concat([data.subarray(0, 300), data.subarray(0, 10), data.subarray(0, 999)])), 'the peer got the reported bytes, in order, nothing after them');
    t.same(
      (await spi.faults.list()).map((x) => x.hits),
      [1, 1, 1],
      'each rule fired once',
    );
    await roundTrip(spi);
    t.equal(rec.calls.length, 1, 'no second completion');
  });

  // ------------------------------------------------------------------ block

  t.test(`${f}: block: a nonblocking send gets WSAEWOULDBLOCK; FD_WRITE comes when the hold ends; nothing of it is sent`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_WRITE, e), 0);
    t.ok((await waitFdWrite(spi, s, ev)) & S.FD_WRITE, 'FD_WRITE at selection');
    // The checks "during the hold" take three round trips after it starts: a hold much longer
    // than they take even on a loaded machine keeps them inside it.
    const blockMs = 1500;
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'block', ms: blockMs } });
    const before = performance.now();
    t.same((await send(spi, s, [Buffer.from('held')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'WSAEWOULDBLOCK');
    t.same((await send(spi, s, [Buffer.from('again')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'a send during the hold: WSAEWOULDBLOCK too (the buffer takes nothing)');
    await roundTrip(spi);
    t.equal((await enumEvents(spi, s, ev)) & S.FD_WRITE, 0, 'FD_WRITE not recorded during the hold');
    t.ok((await waitFdWrite(spi, s, ev)) & S.FD_WRITE, 'FD_WRITE recorded once room is there again');
    t.ok(ms(before) >= blockMs - 5, `not before the hold ended (${ms(before).toFixed(0)} ms)`);
    t.same(await send(spi, s, [Buffer.from('after')]), [0, 0, 5], 'then the send goes');
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 5)).toString(), 'after', 'the peer got only what was reported sent');
  });

  t.test(`${f}: block: a blocking send waits out the hold, then goes whole`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    await spi.faults.add({ match: { socket: s }, action: { type: 'block', ms: 200 }, times: 1 });
    const data = pattern(5000, 4);
    const before = performance.now();
    t.same(await send(spi, s, [data]), [0, 0, 5000], 'the whole count');
    t.ok(ms(before) >= 195, `after the hold (${ms(before).toFixed(0)} ms)`);
    t.ok((await tcpBytesBeforeFence(spi, s, conn, 5000)).equals(data), 'the peer got every byte');
  });

  t.test(`${f}: block: overlapped sends pend through the hold and complete once each, in order`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    // Long enough that the checks "not yet" (two sends and a round trip) fall inside it on a loaded machine.
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'block', ms: 1500 } });
    const rec = new Routines();
    const a = await ovSend(spi, s, [Buffer.from('first;')], { routine: rec.routine('a') });
    const b = await ovSend(spi, s, [Buffer.from('second;')], { routine: rec.routine('b') });
    t.same([a.ret, a.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the faulted send pends');
    t.same([b.ret, b.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the next one queues behind it');
    await roundTrip(spi);
    t.equal(rec.calls.length, 0, 'neither completed yet');
    t.equal(conn.socket.bytesRead, 0, 'the peer has nothing yet');
    t.ok(await pollUntil(() => rec.calls.length === 2), 'both complete');
    t.same(rec.calls, [
      { tag: 'a', err: 0, cb: 6 },
      { tag: 'b', err: 0, cb: 7 },
    ]);
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 13)).toString(), 'first;second;', 'in submission order');
    await roundTrip(spi);
    t.equal(rec.calls.length, 2, 'exactly once each');
  });

  // ------------------------------------------------------------------ delay

  t.test(`${f}: delay: an overlapped send that fits pends; the bytes go at once; the completion waits (and a close delivers it)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    await spi.faults.add({ match: { socket: s }, action: { type: 'delay', ms: 60000 } });
    const rec = new Routines();
    const r = await ovSend(spi, s, [Buffer.from('on the wire')], { routine: rec.routine('d') });
    t.same([r.ret, r.err, r.sent?.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING, -7], 'WSA_IO_PENDING, count not written');
    await conn.waitFor(11);
    t.equal(conn.received().toString(), 'on the wire', 'the peer has the bytes');
    await roundTrip(spi);
    t.equal(rec.calls.length, 0, 'the completion is held back');
    t.equal(await spi.WSPCloseSocket(s, S.out(0)), 0);
    t.ok(await pollUntil(() => rec.calls.length > 0), 'closing the socket delivers it');
    t.same(rec.calls, [{ tag: 'd', err: 0, cb: 11 }], 'once, with its real result');
    await roundTrip(spi);
    t.equal(rec.calls.length, 1, 'exactly once');
  });

  t.test(`${f}: delay: a blocking send returns late; a thread exit delivers a held overlapped completion`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'delay', ms: 200 } });
    const before = performance.now();
    t.same(await send(spi, s, [Buffer.from('late')]), [0, 0, 4], 'the blocking send succeeds');
    t.ok(ms(before) >= 195, `200 ms later (${ms(before).toFixed(0)} ms)`);
    await spi.faults.add({ match: { socket: s }, action: { type: 'delay', ms: 60000 } });
    const thread = spi.createThread();
    // An event, not a routine: a thread that exited runs no routine.
    const ov = new S.WSAOVERLAPPED();
    ov.hEvent = spi.WSACreateEvent();
    const r = await ovSend(thread, s, [Buffer.from('+held')], { ov });
    t.equal(r.err, S.WSA_IO_PENDING);
    await conn.waitFor(9);
    await roundTrip(spi);
    t.equal(ov.Internal, S.WSS_OPERATION_IN_PROGRESS, 'held');
    await thread.exit();
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ov.hEvent], false, 10000, false), S.WSA_WAIT_EVENT_0, 'the thread exit delivers it');
    t.same([ov.Internal, ov.InternalHigh], [0, 5], 'with its real result (the bytes were taken)');
    t.equal(conn.received().toString(), 'late+held');
  });

  // ------------------------------------------------------------------ error

  t.test(`${f}: error WSAECONNRESET: the peer sees RST; later sends and receives fail with it`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'error', code: S.WSAECONNRESET } });
    t.same(await send(spi, s, [Buffer.from('before')]), [0, 0, 6]);
    await conn.waitFor(6);
    const ending = peerEnding(conn);
    t.same(await send(spi, s, [Buffer.from('never')]), [S.SOCKET_ERROR, S.WSAECONNRESET, -1], 'the call fails at once, count untouched');
    t.equal(await ending, 'reset', 'the peer saw the connection reset');
    t.equal(conn.received().toString(), 'before', 'the peer got only what was reported sent');
    t.same((await send(spi, s, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAECONNRESET], 'a later send fails with WSAECONNRESET');
    const rr = await recvInto(spi, s, [16]);
    t.same([rr.ret, rr.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'so does a receive');
    t.same(
      (await spi.faults.list()).map((x) => x.hits),
      [1],
      'one hit (the later calls failed on their own)',
    );
  });

  t.test(`${f}: error on an overlapped send: fails at once, no completion ever; WSAECONNABORTED resets`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'error', code: S.WSAENOBUFS } });
    await spi.faults.add({ match: { socket: s, nth: 3 }, action: { type: 'error', code: S.WSAECONNABORTED } });
    const rec = new Routines();
    const a = await ovSend(spi, s, [Buffer.from('no')], { routine: rec.routine('a') });
    t.same([a.ret, a.err, a.sent?.value, a.ov.Internal === S.WSS_OPERATION_IN_PROGRESS], [S.SOCKET_ERROR, S.WSAENOBUFS, -7, false], 'WSAENOBUFS, nothing pending');
    const b = await ovSend(spi, s, [Buffer.from('yes')], { routine: rec.routine('b') });
    t.equal(b.ret === 0 || b.err === S.WSA_IO_PENDING, true, 'the next send goes (WSAENOBUFS is transient)');
    await conn.waitFor(3);
    const ending = peerEnding(conn);
    const c = await ovSend(spi, s, [Buffer.from('gone')], { routine: rec.routine('c') });
    t.same([c.ret, c.err], [S.SOCKET_ERROR, S.WSAECONNABORTED], 'WSAECONNABORTED at once');
    t.equal(await ending, 'reset', 'the peer saw RST');
    await roundTrip(spi);
    t.same(
      rec.calls.map((x) => x.tag),
      ['b'],
      'only the send that went completed',
    );
    t.equal(conn.received().toString(), 'yes');
  });

  t.test(`${f}: error WSAEWOULDBLOCK on a nonblocking send re-enables FD_WRITE, recorded at once (there is room)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const ev = spi.WSACreateEvent();
    await spi.WSPEventSelect(s, ev, S.FD_WRITE, S.out(0));
    t.ok((await waitFdWrite(spi, s, ev)) & S.FD_WRITE, 'FD_WRITE at selection');
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'error', code: S.WSAEWOULDBLOCK } });
    t.same((await send(spi, s, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK]);
    t.ok((await waitFdWrite(spi, s, ev)) & S.FD_WRITE, 'FD_WRITE recorded again');
    t.same(await send(spi, s, [Buffer.from('ok')]), [0, 0, 2]);
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 2)).toString(), 'ok');
  });

  t.test(`${f}: error on WSPRecv (reset), WSPConnect (refused) and WSPAccept (no socket): each as Windows would leave the socket`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    // WSPConnect: refused at once, the socket unconnected; the next connect is the real one.
    const c = await newSocket(spi, f, 'tcp');
    await spi.faults.add({ match: { socket: c, functions: ['WSPConnect'], nth: 1 }, action: { type: 'error', code: S.WSAECONNREFUSED } });
    const e = S.out(0);
    t.equal(await spi.WSPConnect(c, addr(f, peer.port), namelen(f), null, null, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSAECONNREFUSED, 'WSAECONNREFUSED');
    t.same((await send(spi, c, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOTCONN], 'not connected');
    const next = peer.nextConnection();
    t.equal(await spi.WSPConnect(c, addr(f, peer.port), namelen(f), null, null, null, null, e), 0, 'the next connect connects');
    const conn = await next;
    // WSPRecv: WSAECONNRESET resets the real connection.
    await spi.faults.add({ match: { socket: c, functions: ['WSPRecv'] }, action: { type: 'error', code: S.WSAECONNRESET } });
    const ending = peerEnding(conn);
    const rr = await recvInto(spi, c, [8]);
    t.same([rr.ret, rr.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'WSPRecv fails with WSAECONNRESET');
    t.equal(await ending, 'reset', 'the peer saw RST');

    // WSPAccept: WSAEMFILE takes no connection; the next accept gets it.
    const l = await newSocket(spi, f, 'tcp');
    const bound = await bindLoopback(spi, l, f);
    t.equal(await spi.WSPListen(l, 5, e), 0);
    await spi.faults.add({ match: { socket: l, functions: ['WSPAccept'], nth: 1 }, action: { type: 'error', code: S.WSAEMFILE } });
    const client = net.connect({ host: loopback(f), port: bound.port });
    t.teardown(() => client.destroy());
    await once(client, 'connect');
    t.equal(await spi.WSPAccept(l, null, null, null, 0, e), S.INVALID_SOCKET);
    t.equal(e.value, S.WSAEMFILE, 'WSAEMFILE');
    const a = await spi.WSPAccept(l, null, null, null, 0, e);
    t.not(a, S.INVALID_SOCKET, 'the connection stayed queued: the next accept takes it');
    t.same(await send(spi, a, [Buffer.from('hi')]), [0, 0, 2]);
    const got = await new Promise<string>((resolve) => client.once('data', (b: Buffer) => resolve(b.toString())));
    t.equal(got, 'hi');
  });

  // ------------------------------------------------------------------ UDP

  t.test(`${f}: UDP: error is transient (no datagram leaves), delay holds an overlapped completion, block and short are refused`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await udpPeer(t, f);
    const u = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    const to = addr(f, peer.port);
    await spi.faults.add({ match: { socket: u, functions: ['WSPSendTo'], nth: 2 }, action: { type: 'error', code: S.WSAECONNRESET } });
    t.same(await sendTo(spi, u, [Buffer.from('one')], to, namelen(f)), [0, 0, 3]);
    t.same(await sendTo(spi, u, [Buffer.from('two')], to, namelen(f)), [S.SOCKET_ERROR, S.WSAECONNRESET, -1], 'WSAECONNRESET (an earlier ICMP port unreachable)');
    t.same(await sendTo(spi, u, [Buffer.from('three')], to, namelen(f)), [0, 0, 5], 'the socket carries on');
    t.same(await udpDatagramsBeforeFence(spi, u, f, peer), ['one', 'three'], 'the failed datagram never left');

    await spi.faults.add({ match: { socket: u }, action: { type: 'delay', ms: 60000 } });
    const rec = new Routines();
    const e = S.out(0);
    const ov = new S.WSAOVERLAPPED();
    const r = await spi.WSPSendTo(u, [S.wsabuf('late')], 1, S.out(-7), 0, to, namelen(f), ov, rec.routine('u'), null, e);
    t.same([r, e.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pends');
    await peer.waitFor(4);
    t.equal(peer.datagrams[3]?.data.toString(), 'late', 'the datagram went at once');
    await roundTrip(spi);
    t.equal(rec.calls.length, 0, 'its completion is held');
    await spi.WSPCloseSocket(u, e);
    t.ok(await pollUntil(() => rec.calls.length > 0));
    t.same(rec.calls, [{ tag: 'u', err: 0, cb: 4 }], 'delivered once at close');

    const u2 = await newSocket(spi, f, 'udp');
    await expectRefused(t, spi.faults.add({ match: { socket: u2 }, action: { type: 'block', ms: 5 } }), 'rule.action.type', /no meaning for the datagram socket/, 'block on a UDP socket');
    await expectRefused(t, spi.faults.add({ match: { socket: u2 }, action: { type: 'short', max: 5 } }), 'rule.action.type', /no meaning for the datagram socket/, 'short on a UDP socket');
    // A rule that names no socket leaves datagram sockets alone.
    await spi.faults.add({ match: {}, action: { type: 'short', max: 1 } });
    t.same(await sendTo(spi, u2, [Buffer.from('whole')], to, namelen(f)), [0, 0, 5], 'a datagram goes whole');
    const before = performance.now();
    await spi.faults.add({ match: { socket: u2, nth: 1 }, action: { type: 'delay', ms: 200 } });
    t.same(await sendTo(spi, u2, [Buffer.from('slow')], to, namelen(f)), [0, 0, 4], 'a blocking WSPSendTo under delay succeeds');
    t.ok(ms(before) >= 195, `200 ms later (${ms(before).toFixed(0)} ms)`);
  });

  // ------------------------------------------------------------------ tags and notifications

  t.test(`${f}: a rule by tag applies to tagged sockets only; an accepted connection has its listener's tag; faultApplied precedes the reply`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s: a, conn: ca } = await connectedTcp(spi, f, peer);
    const { s: b, conn: cb } = await connectedTcp(spi, f, peer);
    await spi.faults.tagSocket(a, 'db');
    await spi.faults.add({ id: 'db-short', match: { tag: 'db' }, action: { type: 'short', max: 2 }, notify: true });
    const applied: S.FaultApplied[] = [];
    spi.faults.onApplied((x) => applied.push(x));
    const p = send(spi, a, [Buffer.from('abcdef')]);
    let seenBeforeReply = -1;
    void p.then(() => (seenBeforeReply = applied.length));
    t.same(await p, [0, 0, 2], 'the tagged socket: short');
    t.equal(seenBeforeReply, 1, 'the notification came before the reply');
    t.same(applied, [{ id: 'db-short', s: a, function: 'WSPSend', action: 'short' }]);
    t.same(await send(spi, b, [Buffer.from('abcdef')]), [0, 0, 6], 'the untagged socket: whole');
    await spi.faults.tagSocket(a, null);
    t.same(await send(spi, a, [Buffer.from('gh')]), [0, 0, 2], 'untagged again');
    t.equal((await tcpBytesBeforeFence(spi, a, ca, 4)).toString(), 'abgh');
    t.equal((await tcpBytesBeforeFence(spi, b, cb, 6)).toString(), 'abcdef');

    const l = await newSocket(spi, f, 'tcp');
    const bound = await bindLoopback(spi, l, f);
    await spi.WSPListen(l, 5, S.out(0));
    await spi.faults.tagSocket(l, 'db');
    const client = net.connect({ host: loopback(f), port: bound.port });
    t.teardown(() => client.destroy());
    await once(client, 'connect');
    const accepted = await spi.WSPAccept(l, null, null, null, 0, S.out(0));
    t.same(await send(spi, accepted, [Buffer.from('xyz')]), [0, 0, 2], 'the accepted connection is tagged db too');
    let wrongTag = false;
    await spi.faults.tagSocket(accepted, 'bad tag!').catch((err: unknown) => (wrongTag = err instanceof S.SpiwireProtocolError && err.code === S.INVALID_PARAMS));
    t.ok(wrongTag, 'a tag with a space is INVALID_PARAMS');
    let notSock = 0;
    await spi.faults.tagSocket(4, 'x').catch((err: unknown) => (notSock = err instanceof S.WinsockError ? err.code : -1));
    t.equal(notSock, S.WSAENOTSOCK, 'a handle that is no socket: WSAENOTSOCK');
  });
}

// ------------------------------------------------------------------ determinism

t.test('determinism: the same rules, seeds and calls give the same faulted calls, run after run', async (t) => {
  const d = await daemon(t);
  const run = async (seed: number): Promise<{ outcomes: string[]; peerGot: Buffer; expected: Buffer }> => {
    const spi = await session(t, d);
    const peer = await tcpPeer(t, 'ipv4');
    const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
    await spi.faults.add({ match: { socket: s, probability: 0.3 }, action: { type: 'error', code: S.WSAENOBUFS }, seed });
    await spi.faults.add({ match: { socket: s, probability: 0.3 }, action: { type: 'short', max: 7 }, seed: seed + 1 });
    const outcomes: string[] = [];
    const expected: Buffer[] = [];
    for (let i = 0; i < 60; i++) {
      const data = pattern(20 + i, i + 1);
      const [ret, errno, sent] = await send(spi, s, [data]);
      outcomes.push(ret === 0 ? `sent ${sent}` : `errno ${errno}`);
      if (ret === 0) expected.push(data.subarray(0, sent));
    }
    const want = Buffer.concat(expected);
    for (const r of await spi.faults.list()) await spi.faults.remove(r.id);
    return { outcomes, peerGot: await tcpBytesBeforeFence(spi, s, conn, want.length), expected: want };
  };
  const first = await run(2024);
  const second = await run(2024);
  t.same(second.outcomes, first.outcomes, 'the same outcome for every call');
  t.ok(
    first.outcomes.some((o) => o === 'errno 10055'),
    'some calls failed',
  );
  t.ok(
    first.outcomes.some((o) => o === 'sent 7'),
    'some were short',
  );
  t.ok(first.peerGot.equals(first.expected), 'the peer got exactly what was reported sent, in order (first run)');
  t.ok(second.peerGot.equals(second.expected), '(second run)');
  const other = await run(99);
  t.notSame(other.outcomes, first.outcomes, 'another seed, other faults');
});

// ------------------------------------------------------------------ refusals and the cap

t.test('refusals: impossible codes, bad fields, unknown sockets and ids; the cap of 64 rules; list with hits', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  await expectRefused(t, spi.faults.add({ match: {}, action: { type: 'error', code: S.WSAEISCONN } }), 'rule.action.code', /WSAEISCONN \(10056\) is not a code WSPSend can fail with/, 'WSAEISCONN for WSPSend');
  await expectRefused(t, spi.faults.add({ match: { functions: ['WSPAccept'] }, action: { type: 'error', code: S.WSAECONNRESET } }), 'rule.action.code', /not a code WSPAccept can fail with/, 'WSAECONNRESET for WSPAccept');
  await expectRefused(t, spi.faults.add({ match: { functions: ['WSPRecv'] }, action: { type: 'delay', ms: 5 } }), 'rule.action.type', /only error applies/, 'delay for WSPRecv');
  await expectRefused(t, spi.faults.add({ match: { nth: 0 }, action: { type: 'short', max: 1 } }), 'rule.match.nth', /integer from 1/, 'nth 0');
  await expectRefused(t, spi.faults.add({ match: { socket: 4 }, action: { type: 'short', max: 1 } }), 'rule.match.socket', /not a socket of this session/, 'an unknown socket');
  await expectRefused(t, spi.faults.remove('nope'), 'id', /not the id of a rule/, 'removing an unknown id');
  // The rule cap.
  const ids: string[] = [];
  for (let i = 0; i < S.MAX_FAULT_RULES; i++) ids.push(await spi.faults.add({ match: { tag: `t${i}` }, action: { type: 'short', max: 1 } }));
  await expectRefused(t, spi.faults.add({ match: {}, action: { type: 'short', max: 1 } }), 'rule', /already has 64 fault rules/, 'rule 65');
  // The cap is checked before anything else: a malformed 65th rule gets the cap's answer too.
  await expectRefused(t, spi.faults.add({ match: { nth: 0 }, action: { type: 'error', code: S.WSAEISCONN } }), 'rule', /already has 64 fault rules/, 'a malformed rule 65');
  await spi.faults.remove(ids[0]!);
  t.ok(await spi.faults.add({ id: 'again', match: {}, action: { type: 'short', max: 1 } }), 'room again after a remove');
  const list = await spi.faults.list();
  t.equal(list.length, 64);
  t.same(list.at(-1), { id: 'again', match: {}, action: { type: 'short', max: 1 }, seed: 1, hits: 0 });
  // Another session sees none of them and is not faulted by them.
  const other = await session(t, d);
  t.same(await other.faults.list(), [], "another session's list is empty");
});

t.test('exactly once under block, delay and short: many overlapped sends, every completion once, the peer gets what they report', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const peer = await tcpPeer(t, 'ipv6');
  const { s, conn } = await overlappedTcp(spi, 'ipv6', peer);
  await spi.faults.add({ match: { socket: s, every: 5 }, action: { type: 'block', ms: 20 } });
  await spi.faults.add({ match: { socket: s, every: 3 }, action: { type: 'short', max: 50 } });
  await spi.faults.add({ match: { socket: s, probability: 0.2 }, action: { type: 'delay', ms: 30 }, seed: 5 });
  const rec = new Routines();
  const n = 120;
  const data: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    data.push(pattern(100 + ((i * 37) % 400), i + 7));
    const r = await ovSend(spi, s, [data[i]!], { routine: rec.routine(String(i)) });
    if (!(r.ret === 0 || r.err === S.WSA_IO_PENDING)) t.fail(`send ${i} did not start: ${r.err}`);
  }
  t.ok(await pollUntil(() => rec.calls.length >= n, 20000), 'every send completed');
  await roundTrip(spi);
  t.equal(rec.calls.length, n, 'no completion twice');
  const counts = new Map<string, number>();
  for (const c of rec.calls) counts.set(c.tag, (counts.get(c.tag) ?? 0) + 1);
  t.ok(
    [...counts.values()].every((c) => c === 1),
    'once each',
  );
  const expected = Buffer.concat(data.map((b, i) => b.subarray(0, rec.of(String(i))[0]!.cb)));
  for (const r of await spi.faults.list()) await spi.faults.remove(r.id);
  t.ok(
    rec.calls.every((c) => c.err === 0),
    'all succeeded',
  );
  t.ok((await tcpBytesBeforeFence(spi, s, conn, expected.length)).equals(expected), 'the peer got exactly the reported bytes of each send, in submission order');
  t.ok(
    rec.calls.some((c) => c.cb === 50),
    'some sends were short',
  );
});
