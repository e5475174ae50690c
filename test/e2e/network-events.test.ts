/** WSPEventSelect and WSPEnumNetworkEvents over real sockets: which events are recorded, when, and with which codes. */
import t from 'tap';
import type { Test } from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import { FAMILIES, addr, af, connectedTcp, daemon, fionread, loopback, namelen, roundTrip, send, session, tcpPeer, until, type Family, type PeerConnection } from '../helpers/harness.js';

async function waitEvents(spi: S.SpiSession, s: number, ev: number, want: number, timeoutMs = 5000): Promise<S.WSANETWORKEVENTS> {
  const seen: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: new Array(10).fill(0) };
  const e = S.out(0);
  const deadline = Date.now() + timeoutMs;
  while ((seen.lNetworkEvents & want) !== want && Date.now() < deadline) {
    await spi.WSAWaitForMultipleEvents(1, [ev], false, 200, false);
    const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
    if ((await spi.WSPEnumNetworkEvents(s, ev, ne, e)) !== 0) throw new Error(`WSPEnumNetworkEvents: ${e.value}`);
    seen.lNetworkEvents |= ne.lNetworkEvents;
    ne.iErrorCode.forEach((c, i) => {
      if (ne.lNetworkEvents & (1 << i)) seen.iErrorCode[i] = c;
    });
  }
  return seen;
}

async function enumNow(spi: S.SpiSession, s: number, ev: number): Promise<number> {
  const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
  await spi.WSPEnumNetworkEvents(s, ev, ne, S.out(0));
  return ne.lNetworkEvents;
}

/** A daemon, a session, a TCP connection to a recording peer, and an event object for it. */
async function connectedWithEvent(t: Test, f: Family): Promise<{ spi: S.SpiSession; s: number; conn: PeerConnection; ev: number; e: S.Out }> {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await tcpPeer(t, f);
  const { s, conn } = await connectedTcp(spi, f, peer);
  return { spi, s, conn, ev: spi.WSACreateEvent(), e: S.out(0) };
}

async function tcpSocket(spi: S.SpiSession, f: Family): Promise<number> {
  const e = S.out(0);
  return spi.WSPSocket(af(f), S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
}

for (const f of FAMILIES) {
  t.test(`${f}: FD_CONNECT (error 0) and FD_WRITE after a nonblocking connect; the socket became nonblocking`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const s = await tcpSocket(spi, f);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_CONNECT | S.FD_WRITE | S.FD_READ | S.FD_CLOSE, e), 0);
    t.equal(await spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSAEWOULDBLOCK, 'WSPEventSelect made the socket nonblocking');
    const seen = await waitEvents(spi, s, ev, S.FD_CONNECT | S.FD_WRITE);
    t.ok(seen.lNetworkEvents & S.FD_CONNECT, 'FD_CONNECT recorded');
    t.equal(seen.iErrorCode[S.FD_CONNECT_BIT], 0, 'with error 0');
    t.ok(seen.lNetworkEvents & S.FD_WRITE, 'FD_WRITE recorded once connected');
  });

  t.test(`${f}: FD_CONNECT carries WSAECONNREFUSED when the connect fails`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, loopback(f), r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const s = await tcpSocket(spi, f);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_CONNECT, e), 0);
    await spi.WSPConnect(s, addr(f, port), namelen(f), null, null, null, null, e);
    const seen = await waitEvents(spi, s, ev, S.FD_CONNECT);
    t.equal(seen.iErrorCode[S.FD_CONNECT_BIT], S.WSAECONNREFUSED);
  });

  t.test(`${f}: FD_READ is recorded when data arrives, again when more arrives, and again after a receive that leaves data`, async (t) => {
    const { spi, s, conn, ev, e } = await connectedWithEvent(t, f);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_READ, e), 0);
    conn.socket.write('first');
    t.ok((await waitEvents(spi, s, ev, S.FD_READ)).lNetworkEvents & S.FD_READ, 'FD_READ recorded');
    conn.socket.write('second');
    // Once FIONREAD counts 'second' the daemon has handled its arrival, and any FD_READ it recorded
    // then reached the SDK before the FIONREAD reply. (FIONREAD re-enables nothing.)
    t.ok(await until(async () => (await fionread(spi, s))[2] >= 11, 5000), 'the second write reached the emulated socket');
    // Wine's test_read_events: Windows records FD_READ for new data even before a receive.
    t.ok(await enumNow(spi, s, ev) & S.FD_READ, 'recorded again for the new data');
    t.equal(await enumNow(spi, s, ev) & S.FD_READ, 0, 'and only once');
    const buf = new Uint8Array(4);
    t.equal(await spi.WSPRecv(s, [S.wsabuf(buf)], 1, S.out(0), S.out(0), null, null, null, e), 0);
    t.ok((await waitEvents(spi, s, ev, S.FD_READ)).lNetworkEvents & S.FD_READ, 'data left after the receive: FD_READ again');
  });

  t.test(`${f}: FD_WRITE is re-enabled only by a send that failed with WSAEWOULDBLOCK`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_WRITE, e), 0);
    t.ok((await waitEvents(spi, s, ev, S.FD_WRITE)).lNetworkEvents & S.FD_WRITE, 'FD_WRITE at selection: the socket can send');
    let blocked = false;
    for (let i = 0; i < 2000 && !blocked; i++) {
      const [r, err] = await send(spi, s, [Buffer.alloc(65536, 1)]);
      if (r !== 0) {
        t.equal(err, S.WSAEWOULDBLOCK);
        blocked = true;
      }
    }
    t.ok(blocked, 'the sender filled the buffers');
    t.equal(await enumNow(spi, s, ev) & S.FD_WRITE, 0, 'no FD_WRITE while nothing can be sent');
    conn.socket.resume();
    t.ok((await waitEvents(spi, s, ev, S.FD_WRITE, 20000)).lNetworkEvents & S.FD_WRITE, 'FD_WRITE once room appears after WSAEWOULDBLOCK');
  });

  t.test(`${f}: FD_CLOSE with 0 after a graceful close, with WSAECONNABORTED after a reset`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const e = S.out(0);
    const a = await connectedTcp(spi, f, peer);
    const b = await connectedTcp(spi, f, peer);
    const evA = spi.WSACreateEvent();
    const evB = spi.WSACreateEvent();
    t.equal(await spi.WSPEventSelect(a.s, evA, S.FD_CLOSE, e), 0);
    t.equal(await spi.WSPEventSelect(b.s, evB, S.FD_CLOSE, e), 0);
    a.conn.socket.end();
    b.conn.socket.resetAndDestroy();
    const seenA = await waitEvents(spi, a.s, evA, S.FD_CLOSE);
    const seenB = await waitEvents(spi, b.s, evB, S.FD_CLOSE);
    t.equal(seenA.iErrorCode[S.FD_CLOSE_BIT], 0, 'graceful: FD_CLOSE with 0');
    // Windows reports a reset in FD_CLOSE as WSAECONNABORTED (Wine's test_close_events).
    t.equal(seenB.iErrorCode[S.FD_CLOSE_BIT], S.WSAECONNABORTED, 'reset: FD_CLOSE with WSAECONNABORTED');
  });

  t.test(`${f}: an FD_CLOSE recorded and not yet enumerated survives a new WSPEventSelect that keeps it`, async (t) => {
    const { spi, s, conn, ev, e } = await connectedWithEvent(t, f);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_READ | S.FD_CLOSE, e), 0);
    conn.socket.end();
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'FD_CLOSE recorded; not enumerated');
    t.equal(spi.WSAResetEvent(ev), S.TRUE);
    // do_test's event_client drops FD_READ once it has read everything; the FD_CLOSE recorded in
    // the meantime is still reported (Wine: pending events survive WSAEventSelect and set the event).
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_CLOSE, e), 0);
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 0, false), S.WSA_WAIT_EVENT_0, 'the reselection set the event object again');
    const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
    t.equal(await spi.WSPEnumNetworkEvents(s, ev, ne, e), 0);
    t.equal(ne.lNetworkEvents, S.FD_CLOSE, 'FD_CLOSE reported; FD_READ, no longer selected, is not');
    t.equal(ne.iErrorCode[S.FD_CLOSE_BIT], 0, 'with 0');
    t.equal(await enumNow(spi, s, ev), 0, 'and only once');
  });

  t.test(`${f}: an event recorded before a selection of 0 is reported once selected again`, async (t) => {
    const { spi, s, conn, ev, e } = await connectedWithEvent(t, f);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_READ, e), 0);
    conn.socket.write('data');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'FD_READ recorded');
    t.equal(await spi.WSPEventSelect(s, 0, 0, e), 0);
    t.equal(spi.WSAResetEvent(ev), S.TRUE);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_READ, e), 0);
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 0, false), S.WSA_WAIT_EVENT_0, 'selecting it again set the event object');
    t.equal(await enumNow(spi, s, ev), S.FD_READ, 'FD_READ reported');
    t.equal(await enumNow(spi, s, ev), 0, 'once');
  });

  t.test(`${f}: FD_ACCEPT on a listening socket, re-enabled by WSPAccept`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const e = S.out(0);
    const l = await tcpSocket(spi, f);
    t.equal(await spi.WSPBind(l, addr(f, 0), namelen(f), e), 0);
    t.equal(await spi.WSPListen(l, 5, e), 0);
    const name = { family: 0, address: '', port: 0 };
    await spi.WSPGetSockName(l, name, S.out(namelen(f)), e);
    const ev = spi.WSACreateEvent();
    t.equal(await spi.WSPEventSelect(l, ev, S.FD_ACCEPT, e), 0);
    const c1 = net.connect(name.port, loopback(f));
    t.teardown(() => c1.destroy());
    t.ok((await waitEvents(spi, l, ev, S.FD_ACCEPT)).lNetworkEvents & S.FD_ACCEPT, 'FD_ACCEPT when a connection waits');
    const c2 = net.connect(name.port, loopback(f));
    t.teardown(() => c2.destroy());
    // c2 is in the kernel's accept queue once it is connected; the round trip lets the daemon take it.
    await once(c2, 'connect');
    await roundTrip(spi);
    const a = await spi.WSPAccept(l, null, null, null, 0, e);
    t.not(a, S.INVALID_SOCKET);
    t.ok((await waitEvents(spi, l, ev, S.FD_ACCEPT)).lNetworkEvents & S.FD_ACCEPT, 'another waits: FD_ACCEPT again after the accept');
  });

  t.test(`${f}: FD_OOB when urgent data arrives; WSPRecv with MSG_OOB reads it`, { skip: libc() ? false : 'the C library cannot be loaded here' }, async (t) => {
    const native = libc()!;
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(s, ev, S.FD_OOB, e), 0);
    const fd = fdOf(conn.socket)!;
    t.equal(native.send(fd, Buffer.from('U'), native.c.MSG_OOB), 1, 'the peer sends one urgent byte');
    t.ok((await waitEvents(spi, s, ev, S.FD_OOB)).lNetworkEvents & S.FD_OOB, 'FD_OOB recorded');
    const mark = new Uint8Array(4);
    t.equal(await spi.WSPIoctl(s, S.SIOCATMARK, null, 0, mark, 4, S.out(0), null, null, null, e), 0);
    t.equal(mark[0], 0, 'SIOCATMARK is FALSE while urgent data waits');
    const buf = new Uint8Array(1);
    const flags = S.out(S.MSG_OOB);
    const n = S.out(0);
    t.equal(await spi.WSPRecv(s, [S.wsabuf(buf)], 1, n, flags, null, null, null, e), 0);
    t.equal(Buffer.from(buf).toString(), 'U', 'MSG_OOB receive returns the urgent byte');
    t.equal(await spi.WSPIoctl(s, S.SIOCATMARK, null, 0, mark, 4, S.out(0), null, null, null, e), 0);
    t.equal(mark[0], 1, 'SIOCATMARK is TRUE again');
  });
}

t.test("another connection's urgent byte does not record FD_OOB again for one already reported; a new one on the same connection does", { skip: libc() ? false : 'the C library cannot be loaded here' }, async (t) => {
  // SIGURG names no connection: every socket watching for urgent data hears every signal.
  const native = libc()!;
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const a = await connectedTcp(spi, 'ipv4', peer);
  const b = await connectedTcp(spi, 'ipv4', peer);
  const evA = spi.WSACreateEvent();
  const evB = spi.WSACreateEvent();
  const e = S.out(0);
  t.equal(await spi.WSPEventSelect(a.s, evA, S.FD_OOB, e), 0);
  t.equal(await spi.WSPEventSelect(b.s, evB, S.FD_OOB, e), 0);
  t.equal(native.send(fdOf(a.conn.socket)!, Buffer.from('A'), native.c.MSG_OOB), 1, "A's peer sends an urgent byte");
  t.ok((await waitEvents(spi, a.s, evA, S.FD_OOB)).lNetworkEvents & S.FD_OOB, 'FD_OOB recorded on A (its byte stays unread)');
  t.equal(native.send(fdOf(b.conn.socket)!, Buffer.from('B'), native.c.MSG_OOB), 1, "B's peer sends an urgent byte");
  t.ok((await waitEvents(spi, b.s, evB, S.FD_OOB)).lNetworkEvents & S.FD_OOB, 'FD_OOB recorded on B');
  // The daemon looks at each signal twice, the second time 5 ms later: ten times that is ample.
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await enumNow(spi, a.s, evA), 0, "B's byte recorded nothing on A");
  t.equal(native.send(fdOf(a.conn.socket)!, Buffer.from('C'), native.c.MSG_OOB), 1, "A's peer sends another urgent byte");
  t.ok((await waitEvents(spi, a.s, evA, S.FD_OOB)).lNetworkEvents & S.FD_OOB, 'FD_OOB recorded on A again');
});

/** Nonblocking receives of up to 1 MiB each until total bytes came (bounded): the bytes in order. */
async function readAll(spi: S.SpiSession, s: number, total: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  const buf = new Uint8Array(1 << 20);
  await until(async () => {
    const n = S.out(0);
    if ((await spi.WSPRecv(s, [S.wsabuf(buf)], 1, n, S.out(0), null, null, null, S.out(0))) === 0) {
      parts.push(Buffer.from(buf.subarray(0, n.value)));
      got += n.value;
    }
    return got >= total;
  }, 10000, 5);
  return Buffer.concat(parts);
}

t.test('SO_OOBINLINE turned on while the daemon holds received bytes keeps the stream in order', { skip: libc() ? false : 'the C library cannot be loaded here' }, async (t) => {
  // The daemon stops reading once it holds a receive buffer's worth; bytes node already read
  // then wait ahead of the kernel's read position, and no byte read from the kernel may pass them.
  const native = libc()!;
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const e = S.out(0);
  t.equal(await spi.WSPIoctl(s, S.FIONBIO, Uint8Array.of(1, 0, 0, 0), 4, null, 0, S.out(0), null, null, null, e), 0);
  const fd = fdOf(conn.socket)!;

  await t.test('after an urgent byte was read out of band', async (t) => {
    const head = Buffer.alloc(150000, 0x41);
    conn.socket.write(head);
    await until(async () => (await fionread(spi, s))[2] >= 65536);
    t.equal(native.send(fd, Buffer.from('U'), native.c.MSG_OOB), 1, 'the peer sends an urgent byte');
    conn.socket.write('BBBB');
    const oob = new Uint8Array(1);
    t.ok(await until(async () => (await spi.WSPRecv(s, [S.wsabuf(oob)], 1, S.out(0), S.out(S.MSG_OOB), null, null, null, S.out(0))) === 0), 'a MSG_OOB receive takes it');
    t.equal(String.fromCharCode(oob[0]!), 'U');
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_OOBINLINE, Uint8Array.of(1, 0, 0, 0), 4, e), 0, 'SO_OOBINLINE on');
    const got = await readAll(spi, s, head.length + 4);
    t.equal(got.length, head.length + 4, 'every ordinary byte, and not the urgent one again');
    t.ok(got.equals(Buffer.concat([head, Buffer.from('BBBB')])), 'in order');
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_OOBINLINE, Uint8Array.of(0, 0, 0, 0), 4, e), 0, 'SO_OOBINLINE off again');
  });

  await t.test('turned on in the same frame as the receive that makes room', async (t) => {
    const data = Buffer.alloc(300000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    conn.socket.write(data);
    await until(async () => (await fionread(spi, s))[2] >= 65536);
    const first = new Uint8Array(1 << 20);
    const n = S.out(0);
    // Not awaited in between: the SDK packs both calls into one frame.
    const [r1, r2] = await Promise.all([
      spi.WSPRecv(s, [S.wsabuf(first)], 1, n, S.out(0), null, null, null, S.out(0)),
      spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_OOBINLINE, Uint8Array.of(1, 0, 0, 0), 4, S.out(0)),
    ]);
    t.same([r1, r2], [0, 0], 'both calls succeed');
    const rest = await readAll(spi, s, data.length - n.value);
    t.ok(Buffer.concat([Buffer.from(first.subarray(0, n.value)), rest]).equals(data), 'every byte, in order');
  });
});

t.test('network events reach the originating session only', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const other = await session(t, d);
  let foreign = 0;
  const prev = other.connection.onNotification;
  other.connection.onNotification = (m, p) => {
    if (m === 'spiwire.networkEvents') foreign++;
    prev(m, p);
  };
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const ev = spi.WSACreateEvent();
  t.equal(await spi.WSPEventSelect(s, ev, S.FD_READ | S.FD_WRITE | S.FD_CLOSE, S.out(0)), 0);
  conn.socket.end('bye');
  const seen = await waitEvents(spi, s, ev, S.FD_READ | S.FD_WRITE);
  t.ok(seen.lNetworkEvents & S.FD_READ);
  // Had the daemon sent the events to the other session too, they would be ahead of this reply.
  await roundTrip(other);
  t.equal(foreign, 0, 'the other session saw none of them');
});

t.test('an accepted socket inherits the listening socket\'s WSPEventSelect (events and event object)', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const e = S.out(0);
  const l = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
  t.equal(await spi.WSPBind(l, addr('ipv4', 0), 16, e), 0);
  t.equal(await spi.WSPListen(l, 5, e), 0);
  const name = { family: 0, address: '', port: 0 };
  await spi.WSPGetSockName(l, name, S.out(16), e);
  const ev = spi.WSACreateEvent();
  t.equal(await spi.WSPEventSelect(l, ev, S.FD_ACCEPT | S.FD_READ, e), 0);
  const c = net.connect(name.port, '127.0.0.1');
  t.teardown(() => c.destroy());
  await waitEvents(spi, l, ev, S.FD_ACCEPT);
  const a = await spi.WSPAccept(l, null, null, null, 0, e);
  t.not(a, S.INVALID_SOCKET);
  c.write('hello');
  const seen = await waitEvents(spi, a, ev, S.FD_READ);
  t.ok(seen.lNetworkEvents & S.FD_READ, 'FD_READ recorded for the accepted socket on the listener\'s event object');
  const buf = new Uint8Array(8);
  t.equal(await spi.WSPRecv(a, [S.wsabuf(buf)], 1, S.out(0), S.out(0), null, null, null, e), 0, 'and the accepted socket is nonblocking-ready');
});
