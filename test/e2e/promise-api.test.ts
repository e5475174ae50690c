/**
 * The promise API of @spiwire/client: Socket.open / connect / send / recv / sendTo, the
 * completions() iterator, and failures as WinsockError, against real loopback peers.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as dgram from 'node:dgram';
import * as S from '@spiwire/client';
import { Socket, WinsockError, type Completion } from '@spiwire/client';
import { FAMILIES, FILLER_BYTES, bytesArriving, bytesBeforeFence, daemon, fionread, loopback, pattern, roundTrip, session, tcpPeer, udpPeer, until, type Family } from '../helpers/harness.js';

const FILLER = pattern(FILLER_BYTES, 31337);

/** The next value of an iterator, or 'timeout'. */
async function nextOf<T>(it: AsyncIterator<T>, ms = 5000): Promise<IteratorResult<T> | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)));
  try {
    return await Promise.race([it.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Takes n completions from the iterator (fails the test on a timeout or an early end). */
async function take(t: Test, it: AsyncIterator<Completion>, n: number): Promise<Completion[]> {
  const out: Completion[] = [];
  for (let i = 0; i < n; i++) {
    const r = await nextOf(it);
    if (r === 'timeout' || r.done) {
      t.fail(`completion ${i + 1} of ${n}: ${r === 'timeout' ? 'timed out' : 'the iterator ended'}`);
      break;
    }
    out.push(r.value);
  }
  return out;
}

/** Settles a promise into a comparable shape. */
async function outcome(p: Promise<unknown>): Promise<{ ok: unknown } | { code: number; name: string; isWinsockError: boolean }> {
  try {
    return { ok: await p };
  } catch (err) {
    const e = err as WinsockError;
    return { code: e.code, name: e.name, isWinsockError: e instanceof WinsockError };
  }
}

async function tcpSocket(t: Test, spi: S.SpiSession, f: Family): Promise<Socket> {
  const sock = await Socket.open(spi, { family: f, type: 'tcp' });
  t.teardown(() => sock.close().catch(() => undefined));
  return sock;
}

for (const f of FAMILIES) {
  t.test(`${f}: open, connect, send resolves with the byte count; the peer gets the bytes`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const sock = await tcpSocket(t, spi, f);
    t.type(sock.handle, 'number');
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const a = pattern(1000, 1);
    const b = pattern(70000, 2);
    t.equal(await sock.send(a), 1000, 'one buffer');
    t.equal(await sock.send([b.subarray(0, 10), b.subarray(10, 40000), b.subarray(40000)]), 70000, 'three buffers, gathered');
    t.equal(await sock.send(new Uint8Array(0)), 0, 'an empty send');
    const want = Buffer.concat([a, b]);
    const got = await conn.waitFor(want.length);
    // A fence sent after the empty send: anything more would have come before it.
    const before = await bytesBeforeFence(conn, want.length, (fence) => sock.send(fence));
    t.ok(before.equals(want) && got.length === want.length, 'exact bytes in order');
    const local = await sock.localAddress();
    t.equal(local.family, f === 'ipv4' ? S.AF_INET : S.AF_INET6);
    t.equal(local.port, conn.socket.remotePort, 'localAddress is the peer\'s remote port');
  });

  t.test(`${f}: send resolves only at completion, in order, for pending sends`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const sock = await tcpSocket(t, spi, f);
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const order: string[] = [];
    const pF = sock.send(FILLER).then((n) => (order.push('filler'), n));
    const x = pattern(5000, 3);
    const pX = sock.send(x).then((n) => (order.push('x'), n));
    t.ok(await bytesArriving(conn), 'the filler is under way: bytes reach the peer');
    // A completion sent by now would be in, and its send resolved: the round trip comes after it.
    await roundTrip(spi);
    t.same(order, [], 'nothing resolved while the peer does not read');
    conn.socket.resume();
    t.same(await Promise.all([pF, pX]), [FILLER_BYTES, 5000]);
    t.same(order, ['filler', 'x'], 'resolved in submission order');
    const it = sock.completions();
    t.same(await take(t, it, 2), [
      { kind: 'send', error: 0, bytes: FILLER_BYTES },
      { kind: 'send', error: 0, bytes: 5000 },
    ], 'completions() yields both, in order');
    const want = Buffer.concat([FILLER, x]);
    await conn.waitFor(want.length, 20000);
    t.ok(conn.received().equals(want), 'the peer got both, in order');
  });

  t.test(`${f}: recv returns what the peer sent; an empty result when the peer closed`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const sock = await tcpSocket(t, spi, f);
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const pending = sock.recv(100);
    let settled = false;
    void pending.then(() => (settled = true));
    await roundTrip(spi);
    t.notOk(settled, 'recv waits for data');
    conn.socket.write('hello, spiwire');
    t.equal(Buffer.from(await pending).toString(), 'hello, spiwire');
    conn.socket.write('0123456789');
    // All ten bytes are at the daemon before the first receive.
    await until(async () => (await fionread(spi, sock.handle))[2] >= 10, 5000);
    t.equal(Buffer.from(await sock.recv(4)).toString(), '0123', 'at most maxBytes');
    t.equal(Buffer.from(await sock.recv(100)).toString(), '456789', 'the rest');
    conn.socket.end();
    const last = await sock.recv(100);
    t.equal(last.length, 0, 'an empty result after the peer\'s FIN');
  });

  t.test(`${f}: completions() yields every completion in order and ends after close()`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const sock = await tcpSocket(t, spi, f);
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const it = sock.completions();
    t.equal(await sock.send(Buffer.from('one')), 3);
    t.equal(await sock.send([Buffer.from('two'), Buffer.from('-2')]), 5);
    const r = sock.recv(16);
    conn.socket.write('reply');
    t.equal(Buffer.from(await r).toString(), 'reply');
    t.equal(await sock.send(Buffer.from('three')), 5);
    t.same(await take(t, it, 4), [
      { kind: 'send', error: 0, bytes: 3 },
      { kind: 'send', error: 0, bytes: 5 },
      { kind: 'recv', error: 0, bytes: 5 },
      { kind: 'send', error: 0, bytes: 5 },
    ]);
    // next() registers its reader at once: it is waiting when the socket closes.
    const waiting = nextOf(it, 5000);
    await sock.close();
    const end = await waiting;
    t.ok(end !== 'timeout' && end.done, 'a waiting next() ends when the socket is closed');
    const again = await nextOf(it, 1000);
    t.ok(again !== 'timeout' && again.done, 'and stays ended');
    // A for-await loop over a closed socket's completions terminates.
    let n = 0;
    for await (const c of sock.completions()) {
      n++;
      if (n > 100 || !c) break;
    }
    t.equal(n, 0, 'nothing more to iterate');
    await conn.waitFor(13);
    t.equal(conn.received().toString(), 'onetwo-2three');
  });

  t.test(`${f}: a failed send rejects with WinsockError carrying the WSA code, and yields no completion`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const sock = await tcpSocket(t, spi, f);
    t.same(await outcome(sock.send(Buffer.from('early'))), { code: S.WSAENOTCONN, name: 'WinsockError', isWinsockError: true }, 'before connect: WSAENOTCONN (10057)');
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const it = sock.completions();
    t.equal(await sock.send(Buffer.from('ok')), 2);
    const e = S.out(0);
    t.equal(await spi.WSPShutdown(sock.handle, S.SD_SEND, e), 0);
    const failed = await outcome(sock.send(Buffer.from('late')));
    t.same(failed, { code: S.WSAESHUTDOWN, name: 'WinsockError', isWinsockError: true }, 'after SD_SEND: WSAESHUTDOWN (10058)');
    try {
      await sock.send(Buffer.from('late'));
      t.fail('should reject');
    } catch (err) {
      t.match((err as Error).message, /WSAESHUTDOWN/, 'the message names the error');
      t.equal((err as WinsockError).call, 'WSPSend');
    }
    t.same(await take(t, it, 1), [{ kind: 'send', error: 0, bytes: 2 }], 'the good send completed');
    t.equal(await nextOf(it, 200), 'timeout', 'the failed sends produced no completion');
    await conn.ended;
    t.equal(conn.received().toString(), 'ok');
  });

  t.test(`${f}: pending sends reject with WSA_OPERATION_ABORTED on close()`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const sock = await tcpSocket(t, spi, f);
    const connP = peer.nextConnection();
    await sock.connect(loopback(f), peer.port);
    const conn = await connP;
    const it = sock.completions();
    const ps = [sock.send(FILLER), sock.send(pattern(3000, 4)), sock.send(pattern(10, 5))].map(outcome);
    const pr = outcome(sock.recv(10));
    // The daemon has answered the four calls (pending) before the close: the round trip follows them.
    await roundTrip(spi);
    t.equal(spi.pendingOperations, 4, 'the three sends and the receive are pending');
    await sock.close();
    const results = await Promise.all(ps);
    for (const r of results) t.same(r, { code: S.WSA_OPERATION_ABORTED, name: 'WinsockError', isWinsockError: true }, 'rejected with 995');
    // A TCP receive pending at the close completes with WSAECONNABORTED, as Windows' (Wine's test_iocp).
    t.same(await pr, { code: S.WSAECONNABORTED, name: 'WinsockError', isWinsockError: true }, 'the pending recv with 10053');
    const all: Completion[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await nextOf(it, 2000);
      if (r === 'timeout' || r.done) break;
      all.push(r.value);
    }
    t.equal(all.length, 4, 'four completions, then the end');
    t.same(all.map((c) => c.error).sort(), [S.WSA_OPERATION_ABORTED, S.WSA_OPERATION_ABORTED, S.WSA_OPERATION_ABORTED, S.WSAECONNABORTED].sort(), 'all aborted: the sends with 995, the receive with 10053');
    t.same(all.filter((c) => c.kind === 'send').map((c) => c.bytes).slice(1), [0, 0], 'the queued sends got no bytes out');
    const fillerBytes = all.find((c) => c.kind === 'send')!.bytes;
    conn.socket.resume();
    await conn.ended;
    t.ok(conn.received().equals(FILLER.subarray(0, fillerBytes)), `the peer got exactly the ${fillerBytes} accepted bytes of the first send`);
  });

  t.test(`${f}: UDP: sendTo resolves with the byte count; recv returns one datagram`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const sock = await Socket.open(spi, { family: f, type: 'udp' });
    t.teardown(() => sock.close().catch(() => undefined));
    const it = sock.completions();
    t.equal(await sock.sendTo([Buffer.from('da'), Buffer.from('tagram')], loopback(f), peer.port), 8);
    t.equal(await sock.sendTo(Buffer.from('second'), loopback(f), peer.port), 6);
    await peer.waitFor(2);
    t.same(peer.datagrams.map((x) => x.data.toString()), ['datagram', 'second'], 'two datagrams, gathered');
    const local = await sock.localAddress();
    t.equal(peer.datagrams[0]!.from.port, local.port, 'sent from the socket\'s auto-bound port');
    const r = sock.recv(4);
    const sender = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
    t.teardown(() => sender.close());
    // The receive is pending at the daemon before the datagram comes.
    await roundTrip(spi);
    sender.send(Buffer.from('ping'), local.port, loopback(f));
    t.equal(Buffer.from(await r).toString(), 'ping');
    t.same(await take(t, it, 3), [
      { kind: 'send', error: 0, bytes: 8 },
      { kind: 'send', error: 0, bytes: 6 },
      { kind: 'recv', error: 0, bytes: 4 },
    ]);
    await sock.close();
    const end = await nextOf(it, 1000);
    t.ok(end !== 'timeout' && end.done, 'ends after close');
  });
}
