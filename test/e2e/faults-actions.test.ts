/**
 * The fault actions added after the first four (proto/README.md section 19, docs/faults.md):
 * drop and duplicate on UDP, break, link and block-until-drained on TCP, reorder on both, a time
 * window, and error faults on WSPIoctl and on streamed sends. Real sockets, real peers that
 * record what they got.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import {
  FAMILIES,
  addr,
  call,
  daemon,
  namelen,
  newSocket,
  overlappedTcp,
  ovSend,
  pattern,
  peerEnding,
  pollUntil,
  roundTrip,
  send,
  sendTo,
  session,
  setNonBlocking,
  setOpt,
  tcpBytesBeforeFence,
  tcpPeer,
  udpDatagramsBeforeFence,
  udpPeer,
} from '../helpers/harness.js';

/** Completion routines that record (tag, error, cbTransferred) in the order they ran. */
function recorder(): { calls: Array<{ tag: string; err: number; cb: number }>; routine(tag: string): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE } {
  const calls: Array<{ tag: string; err: number; cb: number }> = [];
  return { calls, routine: (tag) => (err, cb) => void calls.push({ tag, err, cb }) };
}

for (const f of FAMILIES) {
  t.test(`${f}: UDP drop: the call reports the datagram sent and the peer never gets it; duplicate: the peer gets it twice`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await udpPeer(t, f);
    const u = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    const to = addr(f, peer.port);
    await spi.faults.add({ match: { socket: u, nth: 2 }, action: { type: 'drop' } });
    await spi.faults.add({ match: { socket: u, nth: 3 }, action: { type: 'duplicate' } });
    t.same(await sendTo(spi, u, [Buffer.from('one')], to, namelen(f)), [0, 0, 3]);
    t.same(await sendTo(spi, u, [Buffer.from('lost')], to, namelen(f)), [0, 0, 4], 'a dropped datagram is reported sent');
    const rec = recorder();
    const e = S.out(0);
    const r = await spi.WSPSendTo(u, [S.wsabuf('twice')], 1, S.out(-7), 0, to, namelen(f), new S.WSAOVERLAPPED(), rec.routine('dup'), null, e);
    t.ok(r === 0 || e.value === S.WSA_IO_PENDING, 'an overlapped duplicated send starts');
    t.ok(await pollUntil(() => rec.calls.length > 0), 'and completes');
    t.same(rec.calls, [{ tag: 'dup', err: 0, cb: 5 }], 'once, with the datagram size');
    t.same(await udpDatagramsBeforeFence(spi, u, f, peer), ['one', 'twice', 'twice'], 'the peer got one, never lost, twice twice');
    t.same((await spi.faults.list()).map((x) => x.hits), [1, 1]);
  });

  t.test(`${f}: break: the peer gets exactly the bytes before the break, then a reset; the sender sees the chosen code`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const data = pattern(5000, 9);
    const ending = peerEnding(conn);
    t.same(await send(spi, s, [data.subarray(0, 1000)]), [0, 0, 1000], 'a send before the rule goes whole');
    await spi.faults.add({ match: { socket: s }, action: { type: 'break', at: 2500, code: S.WSAECONNABORTED } });
    // A blocking send across the break: its first 1500 bytes go, then it fails.
    const r = await send(spi, s, [data.subarray(1000)]);
    t.equal(r[0], S.SOCKET_ERROR, 'the send across the break fails');
    t.equal(r[1], S.WSAECONNABORTED, 'with the chosen code');
    t.equal(await ending, 'reset', 'the peer sees a reset');
    t.ok(conn.received().equals(data.subarray(0, 2500)), `the peer got exactly 2500 bytes, in order (${conn.received().length})`);
    t.same((await send(spi, s, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAECONNABORTED], 'later sends fail with it');
  });

  t.test(`${f}: break with small sends: the sends before byte N go whole, the one that crosses N is cut there`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    await setNonBlocking(spi, s, true);
    const data = Buffer.from('0123456789AB');
    const ending = peerEnding(conn);
    await spi.faults.add({ match: { socket: s }, action: { type: 'break', at: 10, code: S.WSAECONNABORTED } });
    t.same(await send(spi, s, [data.subarray(0, 6)]), [0, 0, 6], 'a send that ends before byte 10 goes whole, and does not break');
    t.same(await send(spi, s, [data.subarray(6)]), [0, 0, 4], 'the send that crosses byte 10 hands over its bytes up to it');
    t.equal(await ending, 'reset', 'then the peer sees a reset');
    t.equal(conn.received().toString(), '0123456789', 'after exactly the first 10 bytes');
    t.same((await send(spi, s, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAECONNABORTED], 'later sends fail with the code');
    t.same((await spi.faults.list()).map((x) => x.hits), [1], 'the rule fired once, on the send that crossed byte 10');
  });

  t.test(`${f}: break on an overlapped send: it completes once with the code; a nonblocking send past the break fails at once`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    const data = pattern(3000, 4);
    await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'break', at: 700, code: S.WSAECONNRESET } });
    const rec = recorder();
    const r = await ovSend(spi, s, [data], { routine: rec.routine('ov') });
    t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pends');
    t.ok(await pollUntil(() => rec.calls.length > 0), 'completes');
    t.same(rec.calls, [{ tag: 'ov', err: S.WSAECONNRESET, cb: 700 }], 'once, with the code and the bytes that went');
    await conn.waitFor(700);
    t.ok(conn.received().equals(data.subarray(0, 700)), 'the peer got the first 700 bytes');
    await roundTrip(spi);
    t.equal(rec.calls.length, 1, 'no second completion');

    const { s: s2 } = await overlappedTcp(spi, f, peer);
    await setNonBlocking(spi, s2, true);
    await spi.faults.add({ match: { socket: s2 }, action: { type: 'break', at: 0, code: S.WSAENETRESET } });
    t.same(await send(spi, s2, [data]), [S.SOCKET_ERROR, S.WSAENETRESET, -1], 'a nonblocking send at the break fails at once');
  });

  t.test(`${f}: link: a slow link fills the send buffer, so a nonblocking sender meets WSAEWOULDBLOCK; every reported byte arrives`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d, { autoApc: true });
    const peer = await tcpPeer(t, f);
    const { s, conn } = await overlappedTcp(spi, f, peer);
    t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0]);
    await setNonBlocking(spi, s, true);
    await spi.faults.add({ match: { socket: s }, action: { type: 'link', bytesPerSecond: 20_000, latencyMs: 5 } });
    const data = pattern(64 * 1024, 2);
    let taken = 0;
    let wouldBlock = 0;
    // Bounded: at most 64 calls, each taking what fits.
    for (let i = 0; i < 64 && taken < data.length; i++) {
      const [ret, err, n] = await send(spi, s, [data.subarray(taken)]);
      if (ret === 0) taken += n;
      else if (err === S.WSAEWOULDBLOCK) {
        wouldBlock++;
        break;
      } else t.fail(`send failed with ${S.wsaErrorName(err)}`);
    }
    t.equal(wouldBlock, 1, 'the sender met WSAEWOULDBLOCK');
    t.ok(taken < data.length, `before the link let everything through (${taken} of ${data.length} taken)`);
    await spi.faults.remove((await spi.faults.list())[0]!.id);
    await setNonBlocking(spi, s, false);
    const got = await tcpBytesBeforeFence(spi, s, conn, taken);
    t.ok(got.equals(data.subarray(0, taken)), 'the peer got exactly the reported bytes, in order');
  });

  for (const end of ['WSPCloseSocket', 'WSPShutdown(SD_SEND)'] as const) {
    t.test(`${f}: link: bytes the link still holds reach the peer before the FIN of a ${end} right after the send`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d, { autoApc: true });
      const peer = await tcpPeer(t, f);
      const { s, conn } = await overlappedTcp(spi, f, peer);
      await spi.faults.add({ match: { socket: s }, action: { type: 'link', bytesPerSecond: 100_000, latencyMs: 200 } });
      const data = pattern(3000, 7);
      // Counted as sent at once (it fits the transport buffer), still in the link for 200 ms.
      t.same(await send(spi, s, [data]), [0, 0, data.length], 'the send reports every byte');
      if (end === 'WSPCloseSocket') t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0], 'closed at once');
      else t.same(await call((e) => spi.WSPShutdown(s, S.SD_SEND, e)), [0, 0], 'shut down at once');
      t.equal(await peerEnding(conn), 'fin', 'the connection ends with FIN, not a reset');
      t.ok(conn.received().equals(data), `the peer got the ${data.length} bytes before it (got ${conn.received().length})`);
    });
  }

  t.test(`${f}: reorder: completions held for the window come in a seeded order; bytes stay in order; the same seed gives the same order`, async (t) => {
    const d = await daemon(t);
    const orders: string[][] = [];
    for (let run = 0; run < 2; run++) {
      const spi = await session(t, d, { autoApc: true });
      const peer = await tcpPeer(t, f);
      const { s, conn } = await overlappedTcp(spi, f, peer);
      await spi.faults.add({ match: { socket: s }, action: { type: 'reorder', windowMs: 200 }, seed: 42 });
      const rec = recorder();
      const data: Buffer[] = [];
      for (let i = 0; i < 8; i++) {
        data.push(pattern(100 + i, i + 1));
        const r = await ovSend(spi, s, [data[i]!], { routine: rec.routine(String(i)) });
        t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], `send ${i} pends`);
      }
      t.ok(await pollUntil(() => rec.calls.length >= 8), 'all complete');
      await roundTrip(spi);
      t.equal(rec.calls.length, 8, 'once each');
      t.ok(rec.calls.every((c) => c.err === 0 && c.cb === 100 + Number(c.tag)), 'each with its own count');
      orders.push(rec.calls.map((c) => c.tag));
      await spi.faults.remove((await spi.faults.list())[0]!.id);
      const got = await tcpBytesBeforeFence(spi, s, conn, data.reduce((n, b) => n + b.length, 0));
      t.ok(got.equals(Buffer.concat(data)), 'the peer got the bytes in submission order');
    }
    t.not(orders[0]!.join(), '0,1,2,3,4,5,6,7', `the completions came out of order (${orders[0]!.join()})`);
    t.same(orders[1], orders[0], 'the same seed and calls: the same order');
  });
}

t.test('reorder: a rule that takes a removed rule\'s id has a batch of its own', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const peer = await tcpPeer(t, 'ipv4');
  const { s } = await overlappedTcp(spi, 'ipv4', peer);
  const rec = recorder();
  // The first rule holds its batch for a minute.
  await spi.faults.add({ id: 'x', match: { socket: s }, action: { type: 'reorder', windowMs: 60_000 } });
  const r1 = await ovSend(spi, s, [Buffer.from('held')], { routine: rec.routine('held') });
  t.same([r1.ret, r1.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the first send is held');
  await spi.faults.remove('x');
  // A new rule with the same id and a window of 1 ms: its send must not wait in the old batch.
  await spi.faults.add({ id: 'x', match: { socket: s }, action: { type: 'reorder', windowMs: 1 } });
  const r2 = await ovSend(spi, s, [Buffer.from('quick')], { routine: rec.routine('quick') });
  t.same([r2.ret, r2.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the second send pends');
  t.ok(await pollUntil(() => rec.calls.length >= 1, 10_000), 'a completion came, well before the first rule\'s minute');
  t.same(rec.calls, [{ tag: 'quick', err: 0, cb: 5 }], 'the new rule\'s send, alone');
  // Closing the socket delivers what the first rule still holds, with success, once.
  t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0], 'WSPCloseSocket');
  t.ok(await pollUntil(() => rec.calls.length >= 2), 'the held send completes');
  await roundTrip(spi);
  t.same(rec.calls.map((c) => [c.tag, c.err]), [['quick', 0], ['held', 0]], 'each send once');
});

t.test('block until drained: the transport takes nothing until the bytes queued before have left; then sends go on', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  const filler = pattern(2 * 1024 * 1024, 5);
  // Bytes that wait in the kernel while the peer reads nothing.
  const rec = recorder();
  await ovSend(spi, s, [filler], { routine: rec.routine('filler') });
  await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'block', drained: 1 } });
  const r1 = await ovSend(spi, s, [Buffer.from('A')], { routine: rec.routine('a') });
  t.ok(r1.ret === 0 || r1.err === S.WSA_IO_PENDING, 'a send before the block');
  const r2 = await ovSend(spi, s, [Buffer.from('B')], { routine: rec.routine('b') });
  t.same([r2.ret, r2.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the send under the block pends');
  conn.socket.resume();
  t.ok(await pollUntil(() => rec.calls.length >= 3, 20000), 'once the peer reads, every send completes');
  t.same(rec.calls.map((c) => [c.tag, c.err]), [['filler', 0], ['a', 0], ['b', 0]], 'in order, each once');
  const got = await tcpBytesBeforeFence(spi, s, conn, filler.length + 2);
  t.ok(got.equals(Buffer.concat([filler, Buffer.from('AB')])), 'the peer got every byte in order');
});

t.test('block until drained on a socket that holds nothing: no hold, the send goes at once', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  await setNonBlocking(spi, s, true);
  await spi.faults.add({ match: { socket: s }, action: { type: 'block', drained: 1000 } });
  t.same(await send(spi, s, [Buffer.from('now')]), [0, 0, 3], 'a nonblocking send is taken, not WSAEWOULDBLOCK');
  t.equal((await conn.waitFor(3)).toString(), 'now', 'and the peer gets it');
  t.same((await spi.faults.list()).map((x) => x.hits), [1], 'the rule fired');
});

t.test('match.window: a rule that opens later leaves the first calls alone', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const peer = await udpPeer(t, 'ipv4');
  const u = await newSocket(spi, 'ipv4', 'udp');
  const to = addr('ipv4', peer.port);
  await spi.faults.add({ match: { socket: u, window: { startMs: 600_000 } }, action: { type: 'drop' } });
  await spi.faults.add({ match: { socket: u, window: { endMs: 600_000 }, nth: 2 }, action: { type: 'drop' } });
  t.same(await sendTo(spi, u, [Buffer.from('a')], to, namelen('ipv4')), [0, 0, 1]);
  t.same(await sendTo(spi, u, [Buffer.from('b')], to, namelen('ipv4')), [0, 0, 1]);
  t.same(await udpDatagramsBeforeFence(spi, u, 'ipv4', peer), ['a'], 'only the rule whose window is open fired');
  t.same((await spi.faults.list()).map((x) => x.hits), [0, 1]);
});

t.test('WSPIoctl: an error rule fails the call at once (overlapped too: no completion); the control code is not carried out', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const s = await newSocket(spi, 'ipv4', 'tcp', S.WSA_FLAG_OVERLAPPED);
  await spi.faults.add({ match: { socket: s, functions: ['WSPIoctl'], nth: 1 }, action: { type: 'error', code: S.WSAENETDOWN } });
  const e = S.out(0);
  const ret = await spi.WSPIoctl(s, S.FIONBIO, new Uint8Array([1, 0, 0, 0]), 4, null, 0, S.out(0), null, null, null, e);
  t.same([ret, e.value], [S.SOCKET_ERROR, S.WSAENETDOWN], 'FIONBIO fails with WSAENETDOWN');
  await spi.faults.add({ match: { socket: s, functions: ['WSPIoctl'] }, action: { type: 'error', code: S.WSAEWOULDBLOCK } });
  const rec = recorder();
  const ov = new S.WSAOVERLAPPED();
  const r2 = await spi.WSPIoctl(s, S.FIONREAD, null, 0, new Uint8Array(4), 4, S.out(0), ov, rec.routine('io'), null, e);
  t.same([r2, e.value], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'an overlapped WSPIoctl fails at once');
  await roundTrip(spi);
  t.equal(rec.calls.length, 0, 'and posts no completion');
});
