/**
 * What needs the C library: MSG_OOB as real TCP urgent data, and SO_SNDBUF / SO_RCVBUF sizing the
 * kernel buffers, over real loopback connections to node:net peers.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import { FAMILIES, connectedTcp, daemon, dword, fillConnection, fionread, readDword, recvInto, roundTrip, send, session, setNonBlocking, tcpBytesBeforeFence, tcpPeer, until, within } from '../helpers/harness.js';

const native = libc();

for (const f of FAMILIES) {
  t.test(`${f}: MSG_OOB sends urgent data after every earlier byte (peer with SO_OOBINLINE)`, { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    // The peer reads urgent data inline, so it lands in the ordinary stream at its place.
    const fd = fdOf(conn.socket)!;
    t.equal(native!.setInt(fd, native!.c.SOL_SOCKET, native!.c.SO_OOBINLINE, 1), 0);
    t.same((await send(spi, s, [Buffer.from('normal-1 ')])).slice(0, 2), [0, 0]);
    t.same((await send(spi, s, [Buffer.from('normal-2 ')])).slice(0, 2), [0, 0]);
    const [r, , n] = await send(spi, s, [Buffer.from('!')], S.MSG_OOB);
    t.same([r, n], [0, 1], 'WSPSend with MSG_OOB succeeds');
    t.same((await send(spi, s, [Buffer.from(' after')])).slice(0, 2), [0, 0]);
    t.equal((await conn.waitFor(25)).toString(), 'normal-1 normal-2 ! after', 'the urgent byte follows every normal byte sent before it');
  });

  t.test(`${f}: MSG_OOB data is readable out of band by a peer without SO_OOBINLINE`, { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const fd = fdOf(conn.socket)!;
    t.same((await send(spi, s, [Buffer.from('abc')])).slice(0, 2), [0, 0]);
    t.same((await send(spi, s, [Buffer.from('Z')], S.MSG_OOB)).slice(0, 2), [0, 0]);
    await conn.waitFor(3);
    const oob = Buffer.alloc(1);
    let got = -1;
    // recv(MSG_OOB) fails until the urgent byte is there: polled, with a bound.
    await until(() => (got = native!.recv(fd, oob, native!.c.MSG_OOB)) >= 0, 5000);
    t.equal(got, 1, 'recv(MSG_OOB) at the peer returns the urgent byte');
    t.equal(oob.toString(), 'Z');
    // A fence after the urgent byte: had it gone into the ordinary stream, it would be in front.
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 3)).toString(), 'abc', 'the urgent byte is not in the ordinary stream');
  });

  t.test(`${f}: a MSG_OOB send of several bytes: all are sent, the last one is urgent`, { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const fd = fdOf(conn.socket)!;
    t.same(await send(spi, s, [Buffer.from('UV'), Buffer.from('W')], S.MSG_OOB), [0, 0, 3], 'bytesSent counts every byte');
    await conn.waitFor(2);
    const oob = Buffer.alloc(1);
    let got = -1;
    await until(() => (got = native!.recv(fd, oob, native!.c.MSG_OOB)) >= 0, 5000);
    t.same([got, oob.toString()], [1, 'W'], 'the peer reads the last byte out of band');
    t.equal((await tcpBytesBeforeFence(spi, s, conn, 2)).toString(), 'UV', 'and the others in the normal stream');
  });

  // The daemon reads the normal stream ahead of the client, and the host drops an urgent byte once
  // a read has passed it (proto/README.md, WSPRecv). A pending MSG_OOB receive takes the byte when
  // the SIGURG is handled, which is in time when a read stops at the mark (bytes before the urgent
  // byte arrived with it), and not when a read starts there: that case is a known loss.
  const cases = [
    { gap: 'at once, with the bytes before it', readFirst: false, pause: false, todo: false },
    { gap: 'after a round trip', readFirst: false, pause: true, todo: false },
    { gap: 'at once, the bytes before it already read', readFirst: true, pause: false, todo: true },
  ];
  for (const { gap, readFirst, pause, todo } of cases) {
    t.test(`${f}: a pending MSG_OOB receive takes an urgent byte that normal bytes follow ${gap}`, { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const fd = fdOf(conn.socket)!;
      const urgent = recvInto(spi, s, [4], { flags: S.MSG_OOB });
      // Once this returns, the daemon has the receive waiting.
      await roundTrip(spi);
      conn.socket.write('pre');
      if (readFirst) t.ok(await until(async () => (await fionread(spi, s))[2] === 3, 5000), 'the daemon has read the bytes before the urgent one');
      t.equal(native!.send(fd, Buffer.from('!'), native!.c.MSG_OOB), 1);
      if (pause) await roundTrip(spi);
      conn.socket.write('post');
      const r = await within(urgent, 3000, null);
      t.same(r && [r.ret, r.data.toString(), r.flags], [0, '!', S.MSG_OOB], 'the receive got the urgent byte, flagged MSG_OOB', todo ? { todo: 'the host drops the urgent byte once the daemon reads past it' } : {});
      if (r === null) return;
      const normal = await recvInto(spi, s, [16]);
      const rest = normal.data.toString() === 'pre' ? 'pre' + (await recvInto(spi, s, [16])).data.toString() : normal.data.toString();
      t.equal(rest, 'prepost', 'the normal stream holds the rest');
    });
  }

  t.test(`${f}: MSG_OOB on UDP is WSAEOPNOTSUPP`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const e = S.out(0);
    const s = await spi.WSPSocket(f === 'ipv4' ? S.AF_INET : S.AF_INET6, S.SOCK_DGRAM, 0, null, 0, 0, e);
    const to = { family: f === 'ipv4' ? S.AF_INET : S.AF_INET6, address: f === 'ipv4' ? '127.0.0.1' : '::1', port: 9 };
    t.equal(await spi.WSPSendTo(s, [S.wsabuf('x')], 1, S.out(0), S.MSG_OOB, to, f === 'ipv4' ? 16 : 28, null, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSAEOPNOTSUPP);
  });

  t.test(`${f}: SO_SNDBUF sizes the kernel buffer too: WSAEWOULDBLOCK after a few kilobytes`, { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    const peerFd = fdOf(conn.socket)!;
    native!.setInt(peerFd, native!.c.SOL_SOCKET, native!.c.SO_RCVBUF, 4096);
    const e = S.out(0);
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, dword(4096), 4, e), 0);
    const v = new Uint8Array(4);
    const len = S.out(4);
    t.equal(await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, v, len, e), 0);
    t.equal(readDword(v), 4096, 'reads back what was set');
    await setNonBlocking(spi, s, true);
    let accepted = 0;
    let blocked = false;
    for (let i = 0; i < 200 && !blocked; i++) {
      const [r, err, n] = await send(spi, s, [Buffer.alloc(1024, 1)]);
      if (r === 0) accepted += n;
      else {
        t.equal(err, S.WSAEWOULDBLOCK);
        blocked = true;
      }
    }
    t.ok(blocked, 'the sender blocked');
    t.ok(accepted < 200 * 1024, `only ${accepted} bytes were accepted before WSAEWOULDBLOCK`);
    conn.socket.resume();
    t.equal((await conn.waitFor(accepted)).length, accepted, 'the peer gets every accepted byte once it reads');
  });
}

t.test('SO_LINGER {1, N} stays with the daemon: a close leaving unsent bytes holds up no session, and the bytes still arrive', { skip: native ? false : 'the C library cannot be loaded here' }, async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const other = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  // Small buffers on both sides, so that bytes stay unsent in the daemon's kernel socket.
  native!.setInt(fdOf(conn.socket)!, native!.c.SOL_SOCKET, native!.c.SO_RCVBUF, 4096);
  const e = S.out(0);
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, dword(4096), 4, e), 0);
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_LINGER, new Uint8Array([1, 0, 20, 0]), 4, e), 0, 'SO_LINGER {1, 20}');
  await setNonBlocking(spi, s, true);
  const { sent, full } = await fillConnection(spi, s, Buffer.alloc(1024, 7));
  t.ok(full && sent > 0, `the connection is full: ${sent} bytes taken`);
  // The peer half-closes without reading; the socket sees the FIN (a receive of 0 bytes)...
  conn.socket.end();
  t.ok(await until(async () => {
    const r = await recvInto(spi, s, [16]);
    return r.ret === 0 && r.bytes === 0;
  }), 'a receive returns 0 bytes: the FIN reached the daemon');
  // ...so that WSPCloseSocket ends both directions, and node closes the descriptor at once. With
  // the linger in the kernel, close(2) held the daemon's thread for the 20 seconds.
  const closed = within(spi.WSPCloseSocket(s, e), 5000, 'stuck');
  t.equal(await closed, 0, 'WSPCloseSocket answers at once');
  t.not(await within(roundTrip(other), 5000, 'stuck'), 'stuck', 'and another session is answered at once');
  // A graceful close all the same: every byte taken reaches the peer, then FIN.
  conn.socket.resume();
  await conn.ended;
  t.equal(conn.received().length, sent, 'the peer received every byte the sends took');
});

t.test('TCP options reach the real socket and read back', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const { s } = await connectedTcp(spi, 'ipv4', peer);
  const e = S.out(0);
  for (const [level, name] of [
    [S.SOL_SOCKET, S.SO_KEEPALIVE],
    [S.SOL_SOCKET, S.SO_OOBINLINE],
    [S.SOL_SOCKET, S.SO_DONTROUTE],
    [S.IPPROTO_TCP, S.TCP_NODELAY],
  ] as const) {
    t.equal(await spi.WSPSetSockOpt(s, level, name, dword(1), 4, e), 0, `set ${name}`);
    const v = new Uint8Array(4);
    t.equal(await spi.WSPGetSockOpt(s, level, name, v, S.out(4), e), 0);
    t.equal(readDword(v), 1, `option ${name} reads back TRUE`);
  }
  const linger = new Uint8Array([1, 0, 5, 0]);
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_LINGER, linger, 4, e), 0);
  const lv = new Uint8Array(4);
  t.equal(await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_LINGER, lv, S.out(4), e), 0);
  t.same([...lv], [1, 0, 5, 0], 'SO_LINGER reads back { l_onoff 1, l_linger 5 }');
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_LINGER, linger, 2, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAEFAULT, 'optlen under 4: WSAEFAULT');
  const u = await spi.WSPSocket(S.AF_INET, S.SOCK_DGRAM, 0, null, 0, 0, e);
  t.equal(await spi.WSPSetSockOpt(u, S.IPPROTO_TCP, S.TCP_NODELAY, dword(1), 4, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAENOPROTOOPT, 'TCP_NODELAY on UDP: WSAENOPROTOOPT');
  t.equal(await spi.WSPSetSockOpt(u, S.SOL_SOCKET, S.SO_KEEPALIVE, dword(1), 4, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAENOPROTOOPT, 'SO_KEEPALIVE on UDP: WSAENOPROTOOPT');
});
