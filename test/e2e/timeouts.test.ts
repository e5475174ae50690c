/**
 * SO_SNDTIMEO and SO_RCVTIMEO with real peers: a blocking send into a full connection and a
 * blocking receive with nothing to read fail with WSAETIMEDOUT, each call on its own, and the
 * connection goes on; the bytes a timed-out send reports are the bytes the peer gets. As on
 * Windows, the options bind only sockets made with WSA_FLAG_OVERLAPPED (Wine's test_timeout,
 * test/conformance/wine/test_timeout.test.ts, covers the receive as Windows records it).
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import * as S from '@spiwire/client';
import { FAMILIES, bindLoopback, connectedTcp, daemon, fillConnection, loopback, newSocket, recvInto, send, session, setNonBlocking, setOpt, tcpPeer, within } from '../helpers/harness.js';

for (const f of FAMILIES) {
  t.test(`${f}: a blocking send into a full connection fails with WSAETIMEDOUT after SO_SNDTIMEO; the peer gets every byte reported sent, and the connection goes on`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0], 'SO_SNDBUF 4096');
    await setNonBlocking(spi, s, true);
    const { sent } = await fillConnection(spi, s, new Uint8Array(4096).fill(3));
    await setNonBlocking(spi, s, false);
    t.same(await setOpt(spi, s, S.SO_SNDTIMEO, 200), [0, 0], 'SO_SNDTIMEO 200');
    const started = performance.now();
    const [ret, err, n] = await send(spi, s, [new Uint8Array(65536).fill(4)]);
    t.same([ret, err], [S.SOCKET_ERROR, S.WSAETIMEDOUT], 'the blocking send fails with WSAETIMEDOUT');
    t.ok(performance.now() - started >= 195, 'not before the timeout');
    const reported = n > 0 ? n : 0;
    conn.socket.resume();
    const [ret2, , n2] = await send(spi, s, [Buffer.from('after')]);
    t.same([ret2, n2], [0, 5], 'a later send goes through once the peer reads');
    const all = await conn.waitFor(sent + reported + 5);
    t.equal(all.length, sent + reported + 5, `the peer got the ${sent} bytes before, the ${reported} the timed-out send reported, and the later 5`);
    t.equal(all.subarray(all.length - 5).toString(), 'after', 'in order');
    t.ok(all.subarray(sent, sent + reported).every((b) => b === 4), 'the timed-out send\'s bytes are its own');
  });

  t.test(`${f}: SO_RCVTIMEO on TCP: each blocking receive times out on its own; data that comes later is read`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    t.same(await setOpt(spi, s, S.SO_RCVTIMEO, 50), [0, 0], 'SO_RCVTIMEO 50');
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const r = await recvInto(spi, s, [16]);
      t.same([r.ret, r.errno], [S.SOCKET_ERROR, S.WSAETIMEDOUT], `receive ${i + 1}: WSAETIMEDOUT`);
      t.ok(performance.now() - started >= 45, `receive ${i + 1} waited its own 50 ms`);
    }
    conn.socket.write('late');
    const r = await recvInto(spi, s, [16]);
    t.same([r.ret, r.data.toString()], [0, 'late'], 'then the data that came is read');
  });

  t.test(`${f}: SO_RCVTIMEO on UDP: a blocking receive times out; the next one gets a datagram sent later`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const u = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    const name = await bindLoopback(spi, u, f);
    t.same(await setOpt(spi, u, S.SO_RCVTIMEO, 50), [0, 0], 'SO_RCVTIMEO 50');
    const r = await recvInto(spi, u, [16]);
    t.same([r.ret, r.errno], [S.SOCKET_ERROR, S.WSAETIMEDOUT], 'WSAETIMEDOUT');
    const peer = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
    t.teardown(() => peer.close());
    peer.send(Buffer.from('dgram'), name.port, loopback(f));
    const r2 = await recvInto(spi, u, [16]);
    t.same([r2.ret, r2.data.toString()], [0, 'dgram'], 'the datagram');
  });

  t.test(`${f}: without WSA_FLAG_OVERLAPPED the timeouts never take effect, as on Windows`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer, 0);
    t.same(await setOpt(spi, s, S.SO_RCVTIMEO, 50), [0, 0], 'SO_RCVTIMEO 50 is taken and reads back');
    t.same(await setOpt(spi, s, S.SO_SNDTIMEO, 50), [0, 0], 'SO_SNDTIMEO 50 too');
    const pending = recvInto(spi, s, [16]);
    t.equal(await within(pending, 300, 'still waiting'), 'still waiting', 'a receive still waits after 300 ms, six times the timeout');
    conn.socket.write('data');
    const r = await pending;
    t.same([r.ret, r.data.toString()], [0, 'data'], 'and returns the data when it comes');
    // A blocking send of more than the connection holds while the peer does not read.
    const big = new Uint8Array(8 << 20).fill(9);
    const sending = send(spi, s, [big]);
    t.equal(await within(sending, 300, 'still waiting'), 'still waiting', 'a blocking send into the full connection still waits after 300 ms');
    conn.socket.resume();
    t.same(await sending, [0, 0, big.length], 'and completes once the peer reads');
    await conn.waitFor(big.length);
  });

  t.test(`${f}: with SO_SNDBUF 0, SO_SNDTIMEO ends a blocking send the kernel has not taken whole; the peer gets exactly the bytes reported`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    t.same(await setOpt(spi, s, S.SO_SNDBUF, 0), [0, 0], 'SO_SNDBUF 0: bytes go to the kernel as it takes them');
    t.same(await setOpt(spi, s, S.SO_SNDTIMEO, 100), [0, 0], 'SO_SNDTIMEO 100');
    const big = new Uint8Array(4 << 20).fill(7);
    const started = performance.now();
    const [ret, err, n] = await send(spi, s, [big]);
    t.same([ret, err], [S.SOCKET_ERROR, S.WSAETIMEDOUT], 'the send fails with WSAETIMEDOUT');
    t.ok(performance.now() - started >= 95, 'at the timeout');
    t.ok(n > 0 && n < big.length, `reporting the ${n} bytes the kernel took`);
    conn.socket.resume();
    const [ret2] = await send(spi, s, [Buffer.from('!')]);
    t.equal(ret2, 0, 'a later send goes');
    const all = await conn.waitFor(n + 1);
    t.equal(all.length, n + 1, 'the peer gets those bytes and the later one, no more');
    t.equal(all[n], 0x21, 'in order');
  });
}
