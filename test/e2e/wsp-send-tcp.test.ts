/** WSPSend without lpOverlapped on TCP, IPv4 and IPv6, against plain node:net peers. */
import t from 'tap';
import * as S from '@spiwire/client';
import { FAMILIES, connectedTcp, daemon, pattern, send, session, setNonBlocking, tcpBytesBeforeFence, tcpPeer, until } from '../helpers/harness.js';

for (const f of FAMILIES) {
  t.test(`${f}: gather: the first dwBufferCount buffers, in order, form one send`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    const sent = S.out(0);
    const bufs = [S.wsabuf('alpha-'), S.wsabuf('beta-XXXX', 5), S.wsabuf('gamma'), S.wsabuf('not sent')];
    const r = await spi.WSPSend(s, bufs, 3, sent, 0, null, null, null, e);
    t.equal(r, 0);
    t.equal(sent.value, 16);
    t.equal((await conn.waitFor(16)).toString(), 'alpha-beta-gamma');
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 16)).toString(), 'alpha-beta-gamma', 'nothing beyond dwBufferCount arrives');
  });

  t.test(`${f}: blocking send larger than SO_SNDBUF returns once every byte is accepted`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 4096 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const data = pattern(1024 * 1024, 7);
    const [r, , n] = await send(spi, s, [data.subarray(0, 300000), data.subarray(300000)]);
    t.equal(r, 0);
    t.equal(n, data.length);
    t.ok((await conn.waitFor(data.length)).equals(data), 'peer received exactly the bytes, in order');
  });

  t.test(`${f}: nonblocking send against a peer that stops reading: partial, WSAEWOULDBLOCK, then success after drain`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    await setNonBlocking(spi, s, true);
    const chunk = pattern(64 * 1024, 3);
    const expected: Buffer[] = [];
    let partials = 0;
    let wouldBlock = false;
    // Bounded: the kernel buffers on loopback hold a few MiB at most.
    for (let i = 0; i < 4000 && !wouldBlock; i++) {
      const [r, err, n] = await send(spi, s, [chunk.subarray(0, 20000), chunk.subarray(20000)]);
      if (r === 0) {
        t.ok(n > 0 && n <= chunk.length);
        if (n < chunk.length) partials++;
        expected.push(chunk.subarray(0, n));
      } else {
        t.equal(err, S.WSAEWOULDBLOCK, 'a full transport buffer gives WSAEWOULDBLOCK');
        t.equal(r, S.SOCKET_ERROR);
        wouldBlock = true;
      }
    }
    t.ok(wouldBlock, 'the transport buffer filled');
    t.ok(partials >= 1, `saw ${partials} partial count(s) before WSAEWOULDBLOCK`);
    const [r2, e2] = await send(spi, s, [chunk]);
    t.same([r2, e2], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'still WSAEWOULDBLOCK while the peer does not read');
    conn.socket.resume();
    let accepted = false;
    // Polled, with a bound: the buffers drain once the peer reads.
    await until(async () => {
      const [r3, , n3] = await send(spi, s, [Buffer.from('after-drain')]);
      if (r3 === 0) {
        accepted = true;
        expected.push(Buffer.from('after-drain').subarray(0, n3));
      }
      return accepted;
    }, 10000);
    t.ok(accepted, 'sends succeed again once the peer drains');
    const want = Buffer.concat(expected);
    const got = await conn.waitFor(want.length, 20000);
    t.ok(got.equals(want), `peer received exactly the ${want.length} bytes reported, in order`);
  });

  t.test(`${f}: two emulated sockets talk through WSPAccept, WSPSend and WSPRecv`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const e = S.out(0);
    const af = f === 'ipv4' ? S.AF_INET : S.AF_INET6;
    const host = f === 'ipv4' ? '127.0.0.1' : '::1';
    const nl = f === 'ipv4' ? 16 : 28;
    const l = await spi.WSPSocket(af, S.SOCK_STREAM, 0, null, 0, 0, e);
    t.equal(await spi.WSPBind(l, { family: af, address: host, port: 0 }, nl, e), 0);
    t.equal(await spi.WSPListen(l, 5, e), 0);
    const name = { family: 0, address: '', port: 0 };
    t.equal(await spi.WSPGetSockName(l, name, S.out(nl), e), 0);
    t.ok(name.port > 0);
    const c = await spi.WSPSocket(af, S.SOCK_STREAM, 0, null, 0, 0, e);
    const acceptP = spi.WSPAccept(l, { family: 0, address: '', port: 0 }, S.out(nl), null, 0, e);
    t.equal(await spi.WSPConnect(c, name, nl, null, null, null, null, e), 0);
    const a = await acceptP;
    t.not(a, S.INVALID_SOCKET);
    const sent = S.out(0);
    t.equal(await spi.WSPSend(c, [S.wsabuf('ping'), S.wsabuf('pong')], 2, sent, 0, null, null, null, e), 0);
    const buf = new Uint8Array(3);
    const buf2 = new Uint8Array(10);
    const got = S.out(0);
    const flags = S.out(0);
    let total = '';
    while (total.length < 8) {
      t.equal(await spi.WSPRecv(a, [S.wsabuf(buf), S.wsabuf(buf2)], 2, got, flags, null, null, null, e), 0);
      const joined = Buffer.concat([buf, buf2]).subarray(0, got.value);
      total += joined.toString();
    }
    t.equal(total, 'pingpong');
  });
}

for (const f of FAMILIES) {
  t.test(`${f}: data arriving after WSPShutdown(SD_RECEIVE) resets the connection, as on Windows`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    t.equal(await spi.WSPShutdown(s, S.SD_RECEIVE, e), 0);
    const peerError = new Promise<string>((resolve) => {
      conn.socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      conn.socket.on('close', () => resolve('closed'));
    });
    conn.socket.write('too late');
    t.match(await peerError, /ECONNRESET|EPIPE|closed/, 'the peer sees its connection reset');
    let last: [number, number, number] = [0, 0, 0];
    // Polled, with a bound, until the daemon has seen its own reset come back.
    await until(async () => (last = await send(spi, s, [Buffer.from('x')]))[0] !== 0, 10000, 20);
    t.same(last.slice(0, 2), [S.SOCKET_ERROR, S.WSAECONNRESET], 'sends then fail with WSAECONNRESET');
  });

  t.test(`${f}: a receive already waiting at SD_RECEIVE takes the next bytes; what it leaves resets the connection and is dropped`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    // A blocking receive of 4 bytes, already waiting when SD_RECEIVE comes.
    const buf = new Uint8Array(4);
    const got = S.out(0);
    const receiving = spi.WSPRecv(s, [S.wsabuf(buf)], 1, got, S.out(0), null, null, null, S.out(0));
    // Calls of one session run in order: the receive waits in the daemon before SD_RECEIVE runs.
    t.equal(await spi.WSPShutdown(s, S.SD_RECEIVE, e), 0, 'SD_RECEIVE succeeds while the receive waits');
    const peerError = new Promise<string>((resolve) => {
      conn.socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      conn.socket.on('close', () => resolve('closed'));
    });
    conn.socket.write('abcdefgh');
    t.equal(await receiving, 0, 'the waiting receive completes');
    t.same([got.value, Buffer.from(buf).toString()], [4, 'abcd'], 'with the first 4 of the peer\'s bytes');
    t.match(await peerError, /ECONNRESET|EPIPE|closed/, 'the 4 bytes it left reset the connection');
    const n = new Uint8Array(4);
    t.equal(await spi.WSPIoctl(s, S.FIONREAD, null, 0, n, 4, S.out(0), null, null, null, e), 0);
    t.equal(Buffer.from(n).readUInt32LE(0), 0, 'FIONREAD: the bytes no receive may take are gone');
  });
}
