/**
 * The SPI functions around WSPSend: socket creation, bind, listen / accept, connect, names,
 * ioctls, options, close and shutdown, each with its Windows error codes. Real loopback sockets.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import * as S from '@spiwire/client';
import {
  FAMILIES,
  addr,
  af,
  bindLoopback,
  call,
  closedPort,
  connectedTcp,
  daemon,
  emptyAddr,
  fionread,
  getOpt,
  ioctl,
  loopback,
  namelen,
  newSocket,
  pollUntil,
  readDword,
  recvInto,
  roundTrip,
  send,
  sendTo,
  session,
  setNonBlocking,
  setOpt,
  tcpClient,
  tcpPeer,
  udpPeer,
  until,
  type Family,
} from '../helpers/harness.js';

// ------------------------------------------------------------------------------ WSPSocket


/** A session of a fresh daemon with a TCP socket listening on loopback (backlog 5), and its name. */
async function listening(t: Test, f: Family): Promise<{ spi: S.SpiSession; l: number; ln: S.SockAddr }> {
  const d = await daemon(t);
  const spi = await session(t, d);
  const l = await newSocket(spi, f, 'tcp');
  const ln = await bindLoopback(spi, l, f);
  t.same(await call((e) => spi.WSPListen(l, 5, e)), [0, 0]);
  return { spi, l, ln };
}

/** How a client's connection ended ('end', 'close' or 'error'), or 'still open' after 5 s. */
function endOf(socket: net.Socket): Promise<string> {
  return new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('still open'), 5000);
    const done = (how: string) => (): void => {
      clearTimeout(timer);
      resolve(how);
    };
    socket.once('end', done('end'));
    socket.once('close', done('close'));
    socket.once('error', done('error'));
  });
}

t.test('WSPSocket', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const bad: Array<[number, number, number, number, string]> = [
    [99, S.SOCK_STREAM, S.IPPROTO_TCP, S.WSAEAFNOSUPPORT, 'af 99'],
    [S.AF_UNSPEC, S.SOCK_STREAM, 0, S.WSAEINVAL, 'AF_UNSPEC without a protocol'],
    [1, S.SOCK_DGRAM, 0, S.WSAEAFNOSUPPORT, 'AF_UNIX (1)'],
    [S.AF_INET, 5, 0, S.WSAESOCKTNOSUPPORT, 'SOCK_SEQPACKET (5)'],
    [S.AF_INET6, 99, 0, S.WSAESOCKTNOSUPPORT, 'type 99'],
    [S.AF_INET, S.SOCK_STREAM, 99, S.WSAEPROTONOSUPPORT, 'protocol 99'],
    [S.AF_INET6, S.SOCK_DGRAM, 255, S.WSAEPROTONOSUPPORT, 'protocol 255 (raw)'],
    // Windows gives WSAEPROTONOSUPPORT for a protocol that does not fit the type (Wine's test_WSASocket).
    [S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP, S.WSAEPROTONOSUPPORT, 'SOCK_STREAM with IPPROTO_UDP'],
    [S.AF_INET6, S.SOCK_DGRAM, S.IPPROTO_TCP, S.WSAEPROTONOSUPPORT, 'SOCK_DGRAM with IPPROTO_TCP'],
  ];
  for (const [a, ty, p, code, what] of bad) {
    const e = S.out(0);
    const s = await spi.WSPSocket(a, ty, p, null, 0, 0, e);
    t.same([s, e.value], [S.INVALID_SOCKET, code], `${what}: INVALID_SOCKET, ${code}`);
  }
  t.equal(S.INVALID_SOCKET, -1, 'INVALID_SOCKET is -1 in the SDK');

  for (const f of FAMILIES) {
    t.test(`${f}: protocol 0 picks the type's default protocol`, async (t) => {
      const e = S.out(0);
      const st = await spi.WSPSocket(af(f), S.SOCK_STREAM, 0, null, 0, 0, e);
      t.not(st, S.INVALID_SOCKET);
      t.same((await getOpt(spi, st, S.SO_TYPE)).slice(0, 3), [0, 0, S.SOCK_STREAM]);
      const peer = await tcpPeer(t, f);
      const connP = peer.nextConnection();
      t.same(await call((x) => spi.WSPConnect(st, addr(f, peer.port), namelen(f), null, null, null, null, x)), [0, 0], 'it connects over TCP');
      const conn = await connP;
      t.same(await send(spi, st, [Buffer.from('tcp')]), [0, 0, 3]);
      t.equal((await conn.waitFor(3)).toString(), 'tcp');

      const sd = await spi.WSPSocket(af(f), S.SOCK_DGRAM, 0, null, 0, 0, e);
      t.not(sd, S.INVALID_SOCKET);
      t.same((await getOpt(spi, sd, S.SO_TYPE)).slice(0, 3), [0, 0, S.SOCK_DGRAM]);
      const up = await udpPeer(t, f);
      t.same(await sendTo(spi, sd, [Buffer.from('udp')], addr(f, up.port), namelen(f)), [0, 0, 3], 'it sends a UDP datagram');
      await up.waitFor(1);
      t.equal(up.datagrams[0]!.data.toString(), 'udp');
    });
  }
});

// ------------------------------------------------------------------------------ WSPBind

t.test('WSPBind', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: namelen too small -> WSAEFAULT`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      for (const kind of ['tcp', 'udp'] as const) {
        const s = await newSocket(spi, f, kind);
        t.same(await call((e) => spi.WSPBind(s, addr(f, 0), namelen(f) - 1, e)), [S.SOCKET_ERROR, S.WSAEFAULT], `${kind}: namelen ${namelen(f) - 1}`);
        t.same(await call((e) => spi.WSPGetSockName(s, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAEINVAL], `${kind}: still unbound`);
      }
    });

    t.test(`${f}: address in use -> WSAEADDRINUSE`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      // A plain node:net server holds a port.
      const peer = await tcpPeer(t, f);
      const s1 = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPBind(s1, addr(f, peer.port), namelen(f), e)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'TCP port held by another process socket');
      // Two emulated sockets.
      const a = await newSocket(spi, f, 'tcp');
      const an = await bindLoopback(spi, a, f);
      const b = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPBind(b, addr(f, an.port), namelen(f), e)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'TCP port bound by another emulated socket');
      // UDP.
      const up = await udpPeer(t, f);
      const u = await newSocket(spi, f, 'udp');
      t.same(await call((e) => spi.WSPBind(u, addr(f, up.port), namelen(f), e)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'UDP port held by a node:dgram socket');
      t.same(await call((e) => spi.WSPBind(u, addr(f, 0), namelen(f), e)), [0, 0], 'the socket can still bind elsewhere after the failure');
    });

    t.test(`${f}: a non-local address -> WSAEADDRNOTAVAIL (bind only)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const foreign = f === 'ipv4' ? '192.0.2.1' : '2001:db8::1';
      for (const kind of ['tcp', 'udp'] as const) {
        const s = await newSocket(spi, f, kind);
        t.same(await call((e) => spi.WSPBind(s, { family: af(f), address: foreign, port: 0 }, namelen(f), e)), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], `${kind}: ${foreign}`);
      }
    });

    t.test(`${f}: binding twice -> WSAEINVAL`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      for (const kind of ['tcp', 'udp'] as const) {
        const s = await newSocket(spi, f, kind);
        await bindLoopback(spi, s, f);
        t.same(await call((e) => spi.WSPBind(s, addr(f, 0), namelen(f), e)), [S.SOCKET_ERROR, S.WSAEINVAL], kind);
      }
    });
  }
});

// ------------------------------------------------------------------------------ WSPListen / WSPAccept

t.test('WSPListen / WSPAccept', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: nonblocking accept with none waiting -> WSAEWOULDBLOCK; then one arrives`, async (t) => {
      const { spi, l, ln } = await listening(t, f);
      await setNonBlocking(spi, l, true);
      const e = S.out(0);
      t.equal(await spi.WSPAccept(l, null, null, null, 0, e), S.INVALID_SOCKET);
      t.equal(e.value, S.WSAEWOULDBLOCK, 'WSAEWOULDBLOCK');
      const client = await tcpClient(t, f, ln.port);
      let a = S.INVALID_SOCKET;
      await until(async () => {
        a = await spi.WSPAccept(l, null, null, null, 0, e);
        return a !== S.INVALID_SOCKET || e.value !== S.WSAEWOULDBLOCK;
      }, 5000);
      t.not(a, S.INVALID_SOCKET, 'the waiting connection is accepted');
      t.same(await send(spi, a, [Buffer.from('hi')]), [0, 0, 2]);
      t.equal((await client.waitFor(2)).toString(), 'hi');
    });

    t.test(`${f}: lpfnCondition returning CF_REJECT -> WSAECONNREFUSED; CF_ACCEPT fills addr and addrlen`, async (t) => {
      const { spi, l, ln } = await listening(t, f);

      const rejected = await tcpClient(t, f, ln.port);
      const seen: Array<{ who: S.SockAddr; data: number }> = [];
      const e = S.out(0);
      const addr1 = emptyAddr();
      const len1 = S.out(28);
      const r = await spi.WSPAccept(
        l,
        addr1,
        len1,
        (who, data) => {
          seen.push({ who: { ...who }, data });
          return S.CF_REJECT;
        },
        0x1234,
        e,
      );
      t.same([r, e.value], [S.INVALID_SOCKET, S.WSAECONNREFUSED], 'CF_REJECT: INVALID_SOCKET, WSAECONNREFUSED');
      t.equal(seen.length, 1, 'the condition function ran once');
      t.equal(seen[0]?.data, 0x1234, 'with dwCallbackData');
      t.equal(seen[0]?.who.address, loopback(f), 'callerId is the connecting address');
      t.equal(seen[0]?.who.port, rejected.socket.localPort, 'callerId is the connecting port');
      const ended = await endOf(rejected.socket);
      t.not(ended, 'still open', `the rejected client's connection was closed (${ended})`);

      const accepted = await tcpClient(t, f, ln.port);
      const addr2 = emptyAddr();
      const len2 = S.out(28);
      const a = await spi.WSPAccept(l, addr2, len2, () => S.CF_ACCEPT, 0, e);
      t.not(a, S.INVALID_SOCKET, 'CF_ACCEPT: accepted');
      t.equal(len2.value, namelen(f), `addrlen is ${namelen(f)}`);
      t.equal(addr2.family, af(f));
      t.equal(addr2.address, loopback(f));
      t.equal(addr2.port, accepted.socket.localPort, 'addr is the client');
      t.same(await send(spi, a, [Buffer.from('welcome')]), [0, 0, 7]);
      t.equal((await accepted.waitFor(7)).toString(), 'welcome');
      const pn = emptyAddr();
      t.same(await call((x) => spi.WSPGetPeerName(a, pn, S.out(28), x)), [0, 0]);
      t.equal(pn.port, accepted.socket.localPort, 'WSPGetPeerName of the accepted socket agrees');
    });

    t.test(`${f}: lpfnCondition returning CF_DEFER -> WSATRY_AGAIN; the next accept takes that connection; closing the listener closes a deferred one`, async (t) => {
      const { spi, l, ln } = await listening(t, f);
      const first = await tcpClient(t, f, ln.port);
      const e = S.out(0);
      t.same([await spi.WSPAccept(l, null, null, () => S.CF_DEFER, 0, e), e.value], [S.INVALID_SOCKET, S.WSATRY_AGAIN], 'CF_DEFER: INVALID_SOCKET, WSATRY_AGAIN');
      const second = await tcpClient(t, f, ln.port);
      // The deferred connection comes first, to a condition function that sees it again.
      const seen: number[] = [];
      const addr = emptyAddr();
      const a = await spi.WSPAccept(l, addr, S.out(28), (who) => (seen.push(who.port), S.CF_ACCEPT), 0, e);
      t.same(seen, [first.socket.localPort], 'the condition function sees the deferred connection');
      t.equal(addr.port, first.socket.localPort, 'the accept takes it');
      t.same(await send(spi, a, [Buffer.from('first')]), [0, 0, 5]);
      t.equal((await first.waitFor(5)).toString(), 'first', 'its client gets the bytes');
      // The second one deferred, then the listener closed: its connection is closed too.
      t.same([await spi.WSPAccept(l, null, null, () => S.CF_DEFER, 0, e), e.value], [S.INVALID_SOCKET, S.WSATRY_AGAIN], 'the second one deferred');
      t.same(await call((x) => spi.WSPCloseSocket(l, x)), [0, 0]);
      const ended = await endOf(second.socket);
      t.not(ended, 'still open', `the deferred client's connection was closed with the listener (${ended})`);
    });

    t.test(`${f}: WSPAccept without a condition function fills addr; addrlen too small -> WSAEFAULT`, async (t) => {
      const { spi, l, ln } = await listening(t, f);
      const c1 = await tcpClient(t, f, ln.port);
      const e = S.out(0);
      const a1 = emptyAddr();
      const l1 = S.out(namelen(f));
      const s1 = await spi.WSPAccept(l, a1, l1, null, 0, e);
      t.not(s1, S.INVALID_SOCKET);
      t.same([a1.address, a1.port, l1.value], [loopback(f), c1.socket.localPort, namelen(f)]);
      await tcpClient(t, f, ln.port);
      const s2 = await spi.WSPAccept(l, emptyAddr(), S.out(namelen(f) - 1), null, 0, e);
      t.same([s2, e.value], [S.INVALID_SOCKET, S.WSAEFAULT], 'addrlen one byte short');
      const u = await newSocket(spi, f, 'udp');
      t.same(await call((x) => spi.WSPListen(u, 5, x)), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], 'WSPListen on UDP: WSAEOPNOTSUPP');
      const notListening = await newSocket(spi, f, 'tcp');
      t.equal(await spi.WSPAccept(notListening, null, null, null, 0, e), S.INVALID_SOCKET);
      t.equal(e.value, S.WSAEINVAL, 'WSPAccept on a socket that is not listening: WSAEINVAL');
    });
  }
});

// ------------------------------------------------------------------------------ WSPConnect

t.test('WSPConnect', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: refused, already connected, any address`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const port = await closedPort(f, 'tcp');
      const s = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPConnect(s, addr(f, port), namelen(f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'a port just closed: WSAECONNREFUSED');

      const peer = await tcpPeer(t, f);
      const { s: c } = await connectedTcp(spi, f, peer);
      t.same(await call((e) => spi.WSPConnect(c, addr(f, peer.port), namelen(f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEISCONN], 'already connected: WSAEISCONN');

      // A second WSPConnect while a nonblocking one is in progress: both calls go out in the same
      // tick, so the daemon handles the second right after starting the first.
      const nb = await newSocket(spi, f, 'tcp');
      await setNonBlocking(spi, nb, true);
      const e1 = S.out(0);
      const e2 = S.out(0);
      const p1 = spi.WSPConnect(nb, addr(f, peer.port), namelen(f), null, null, null, null, e1);
      const p2 = spi.WSPConnect(nb, addr(f, peer.port), namelen(f), null, null, null, null, e2);
      t.same([await p1, e1.value], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'nonblocking connect: WSAEWOULDBLOCK');
      t.same([await p2, e2.value], [S.SOCKET_ERROR, S.WSAEALREADY], 'connect again while in progress: WSAEALREADY');
      await peer.nextConnection();
      let last: [number, number] = [0, 0];
      t.ok(
        await until(async () => {
          last = await call((e) => spi.WSPConnect(nb, addr(f, peer.port), namelen(f), null, null, null, null, e));
          return last[1] !== S.WSAEALREADY;
        }, 5000),
      );
      t.same(last, [S.SOCKET_ERROR, S.WSAEISCONN], 'once connected: WSAEISCONN');

      const l = await newSocket(spi, f, 'tcp');
      await bindLoopback(spi, l, f);
      t.same(await call((e) => spi.WSPListen(l, 5, e)), [0, 0]);
      t.same(await call((e) => spi.WSPConnect(l, addr(f, peer.port), namelen(f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'a listening socket: WSAEINVAL');

      const any = f === 'ipv4' ? '0.0.0.0' : '::';
      const z = await newSocket(spi, f, 'tcp');
      t.same(
        await call((e) => spi.WSPConnect(z, { family: af(f), address: any, port: peer.port }, namelen(f), null, null, null, null, e)),
        [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL],
        `the any address (${any}): WSAEADDRNOTAVAIL`,
      );
      const zu = await newSocket(spi, f, 'udp');
      t.same(
        await call((e) => spi.WSPConnect(zu, { family: af(f), address: any, port: 9 }, namelen(f), null, null, null, null, e)),
        [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL],
        'UDP to the any address with a port: WSAEADDRNOTAVAIL',
      );
    });
  }
});

t.test('WSPSendTo on a connected stream socket ignores lpTo', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const other = await tcpPeer(t, f);
      const from: number[] = [];
      other.server.on('connection', (c) => from.push(c.remotePort ?? -1));
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await sendTo(spi, s, [Buffer.from('via-sendto')], addr(f, other.port), namelen(f)), [0, 0, 10]);
      t.equal((await conn.waitFor(10)).toString(), 'via-sendto', 'the bytes went down the connection');
      // A connection of the test's own to lpTo, made afterwards: lpTo accepts in order, so once it
      // has accepted this one it would have accepted one the daemon had made.
      const own = net.connect(other.port, loopback(f));
      t.teardown(() => own.destroy());
      await once(own, 'connect');
      await pollUntil(() => from.includes(own.localPort!), 5000);
      t.same(from, [own.localPort], 'nothing went to lpTo (the one connection it accepted is the test\'s own)');
    });
  }
});

// ------------------------------------------------------------------------------ names

t.test('WSPGetSockName / WSPGetPeerName', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const u = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPGetSockName(u, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'unbound: WSAEINVAL');
      t.same(await call((e) => spi.WSPGetPeerName(u, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'not connected: WSAENOTCONN');
      const bn = await bindLoopback(spi, u, f);
      t.same([bn.family, bn.address], [af(f), loopback(f)]);
      const small = S.out(namelen(f) - 1);
      t.same(await call((e) => spi.WSPGetSockName(u, emptyAddr(), small, e)), [S.SOCKET_ERROR, S.WSAEFAULT], 'namelen too small: WSAEFAULT');
      t.same(await call((e) => spi.WSPGetPeerName(u, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'bound, not connected: WSAENOTCONN');

      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const local = emptyAddr();
      const ll = S.out(28);
      t.same(await call((e) => spi.WSPGetSockName(s, local, ll, e)), [0, 0]);
      t.same([local.address, local.port, ll.value], [loopback(f), conn.socket.remotePort, namelen(f)], 'WSPGetSockName: the local end the peer sees');
      const remote = emptyAddr();
      const rl = S.out(28);
      t.same(await call((e) => spi.WSPGetPeerName(s, remote, rl, e)), [0, 0]);
      t.same([remote.address, remote.port, rl.value], [loopback(f), peer.port, namelen(f)], 'WSPGetPeerName: the peer');
      t.same(await call((e) => spi.WSPGetPeerName(s, emptyAddr(), S.out(namelen(f) - 1), e)), [S.SOCKET_ERROR, S.WSAEFAULT], 'peer name, namelen too small: WSAEFAULT');

      const udp = await newSocket(spi, f, 'udp');
      t.same(await call((e) => spi.WSPGetSockName(udp, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'UDP unbound: WSAEINVAL');
      t.same(await call((e) => spi.WSPGetPeerName(udp, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'UDP without a default peer: WSAENOTCONN');
    });
  }
});

// ------------------------------------------------------------------------------ WSPIoctl

t.test('WSPIoctl FIONBIO and FIONREAD', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: FIONBIO switches WSPRecv between WSAEWOULDBLOCK and waiting`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      await setNonBlocking(spi, s, true);
      const r1 = await recvInto(spi, s, [16]);
      t.same([r1.ret, r1.errno], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'nonblocking, nothing waiting: WSAEWOULDBLOCK');
      await setNonBlocking(spi, s, false);
      let done = false;
      const pending = recvInto(spi, s, [16]).finally(() => (done = true));
      await roundTrip(spi);
      t.notOk(done, 'blocking again: WSPRecv waits');
      conn.socket.write('wake');
      const r2 = await pending;
      t.same([r2.ret, r2.bytes, r2.data.toString()], [0, 4, 'wake']);
      const e = S.out(0);
      t.equal(await spi.WSPIoctl(s, S.FIONBIO, new Uint8Array(2), 2, null, 0, S.out(0), null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'FIONBIO with cbInBuffer 2: WSAEFAULT');
    });

    t.test(`${f}: FIONREAD counts the bytes waiting on TCP`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await fionread(spi, s), [0, 0, 0], 'nothing waiting: 0');
      conn.socket.write(Buffer.alloc(10, 1));
      let v = 0;
      t.ok(await until(async () => (v = (await fionread(spi, s))[2]) === 10, 5000), `FIONREAD reaches 10 (last ${v})`);
      conn.socket.write(Buffer.alloc(25, 2));
      t.ok(await until(async () => (v = (await fionread(spi, s))[2]) === 35, 5000), `FIONREAD counts both writes: 35 (last ${v})`);
      const r = await recvInto(spi, s, [8]);
      t.same([r.ret, r.bytes], [0, 8]);
      t.same(await fionread(spi, s), [0, 0, 27], 'after reading 8: 27');
      const e = S.out(0);
      t.equal(await spi.WSPIoctl(s, S.FIONREAD, null, 0, new Uint8Array(2), 2, S.out(0), null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'FIONREAD with cbOutBuffer 2: WSAEFAULT');
    });

    t.test(`${f}: FIONREAD gives every byte waiting on UDP, as the ioctlsocket reference says for message sockets`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await newSocket(spi, f, 'udp');
      const name = await bindLoopback(spi, s, f);
      t.same(await fionread(spi, s), [0, 0, 0]);
      const sendPeer = (b: Buffer): Promise<void> => new Promise((resolve, reject) => peer.socket.send(b, name.port, loopback(f), (err) => (err ? reject(err) : resolve())));
      await sendPeer(Buffer.alloc(7, 7));
      await sendPeer(Buffer.alloc(30, 3));
      let v = 0;
      t.ok(await until(async () => (v = (await fionread(spi, s))[2]) !== 0, 5000), 'a datagram arrived');
      // The second one too: both were in the kernel before the first FIONREAD (loopback). A count
      // stuck at the first datagram's 7 fails below, once the bound is over.
      await until(async () => (await fionread(spi, s))[2] === 37, 5000);
      t.same(await fionread(spi, s), [0, 0, 37], 'both datagrams: 37 bytes pending (one recv still returns only the first)');
      const r = await recvInto(spi, s, [64]);
      t.same([r.ret, r.bytes], [0, 7]);
      t.same(await fionread(spi, s), [0, 0, 30], 'then the second: 30');
    });
  }
});

/** The bytes that arrived at a socket, dropped ones included, from GET /sessions/:id/sockets (the daemon's one session). */
async function arrivedAt(d: { port: number }, handle: number): Promise<number> {
  const get = async (path: string): Promise<unknown> => (await fetch(`http://127.0.0.1:${d.port}${path}`)).json();
  const listing = await get('/sessions');
  if (!S.isSessionsListing(listing) || listing.sessions.length !== 1) throw new Error('expected one session');
  const sockets = await get(`/sessions/${listing.sessions[0]!.id}/sockets`);
  if (!S.isSocketsListing(sockets)) throw new Error('not a socket listing');
  return sockets.sockets.find((x) => x.handle === handle)?.bytesReceived ?? -1;
}

t.test('WSPIoctl SIO_ENABLE_CIRCULAR_QUEUEING, SIO_IDEAL_SEND_BACKLOG_QUERY and SIO_BASE_HANDLE', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: with circular queueing a full UDP receive buffer keeps the newest datagrams, without it the oldest`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const plain = await newSocket(spi, f, 'udp');
      const circular = await newSocket(spi, f, 'udp');
      t.same((await ioctl(spi, circular, S.SIO_ENABLE_CIRCULAR_QUEUEING, null)).slice(0, 3), [0, 0, 0], 'SIO_ENABLE_CIRCULAR_QUEUEING: 0, no output');
      const ports: number[] = [];
      for (const s of [plain, circular]) {
        // A receive buffer of 64 KiB holds 64 of the 1 KiB datagrams.
        t.same(await setOpt(spi, s, S.SO_RCVBUF, 65536), [0, 0]);
        ports.push((await bindLoopback(spi, s, f)).port);
      }
      const SIZE = 1024;
      const COUNT = 80;
      const BATCH = 16;
      const datagram = (seq: number): Buffer => {
        const b = Buffer.alloc(SIZE, seq & 0xff);
        b.writeUInt32LE(seq, 0);
        return b;
      };
      // In batches the kernel's own buffer takes whole, each waited for at the daemon.
      for (let first = 0; first < COUNT; first += BATCH) {
        for (let seq = first; seq < first + BATCH; seq++) {
          for (const port of ports) await new Promise<void>((resolve, reject) => peer.socket.send(datagram(seq), port, loopback(f), (err) => (err ? reject(err) : resolve())));
        }
        const want = (first + BATCH) * SIZE;
        t.ok(await until(async () => (await arrivedAt(d, plain)) === want && (await arrivedAt(d, circular)) === want, 5000), `datagrams ${first} to ${first + BATCH - 1} reached both sockets`);
      }
      await setNonBlocking(spi, plain, true);
      await setNonBlocking(spi, circular, true);
      for (const [s, name, firstKept] of [[plain, 'without', 0], [circular, 'with', COUNT - 64]] as const) {
        t.same(await fionread(spi, s), [0, 0, 64 * SIZE], `${name} circular queueing: 64 KiB wait`);
        const seqs: number[] = [];
        for (let i = 0; i < 64; i++) {
          const r = await recvInto(spi, s, [SIZE]);
          if (r.ret !== 0 || r.bytes !== SIZE) break;
          seqs.push(r.data.readUInt32LE(0));
        }
        t.same(seqs, Array.from({ length: 64 }, (_, i) => firstKept + i), `${name} circular queueing: datagrams ${firstKept} to ${firstKept + 63}, in order`);
        t.same((await recvInto(spi, s, [SIZE])).errno, S.WSAEWOULDBLOCK, `${name} circular queueing: and no more`);
      }
    });

    t.test(`${f}: a TCP socket refuses SIO_ENABLE_CIRCULAR_QUEUEING; SIO_IDEAL_SEND_BACKLOG_QUERY and SIO_BASE_HANDLE check their output size first`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s } = await connectedTcp(spi, f, peer);
      t.same((await ioctl(spi, s, S.SIO_ENABLE_CIRCULAR_QUEUEING, null)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], 'circular queueing: a stream has no messages to push out');
      const isb = await ioctl(spi, s, S.SIO_IDEAL_SEND_BACKLOG_QUERY, null, 4);
      t.same([...isb.slice(0, 3), readDword(isb[3])], [0, 0, 4, 0x10000], 'the ideal send backlog of a connected socket: 0x10000, 4 bytes');
      t.same((await ioctl(spi, s, S.SIO_IDEAL_SEND_BACKLOG_QUERY, null, 3)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEFAULT], 'a 3-byte output: WSAEFAULT');
      const u = await newSocket(spi, f, 'udp');
      t.same((await ioctl(spi, u, S.SIO_IDEAL_SEND_BACKLOG_QUERY, null, 3)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEFAULT], 'on UDP too, the size comes first');
      const base = await ioctl(spi, s, S.SIO_BASE_HANDLE, null, 8);
      t.same([...base.slice(0, 3), new DataView(base[3].buffer).getBigUint64(0, true)], [0, 0, 8, BigInt(s)], 'the base handle: the socket, 8 bytes');
      t.same((await ioctl(spi, s, S.SIO_BASE_HANDLE, null, 4)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEFAULT], 'a 4-byte output (a SOCKET of x86): WSAEFAULT');
    });
  }
});

// ------------------------------------------------------------------------------ options

t.test('WSPSetSockOpt / WSPGetSockOpt', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: SO_SNDBUF and SO_RCVBUF read back what was set, 0 included`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      for (const kind of ['tcp', 'udp'] as const) {
        const s = await newSocket(spi, f, kind);
        for (const opt of [S.SO_SNDBUF, S.SO_RCVBUF]) {
          const on = opt === S.SO_SNDBUF ? 'SO_SNDBUF' : 'SO_RCVBUF';
          for (const v of [12345, 0, 1 << 20]) {
            t.same(await setOpt(spi, s, opt, v), [0, 0], `${kind} ${on} = ${v}`);
            t.same(await getOpt(spi, s, opt), [0, 0, v, 4], `${kind} ${on} reads ${v}, optlen 4`);
          }
          t.same(await setOpt(spi, s, opt, 4096, 3), [S.SOCKET_ERROR, S.WSAEFAULT], `${kind} ${on}: set with optlen 3: WSAEFAULT`);
          t.same((await getOpt(spi, s, opt))[2], 1 << 20, `${kind} ${on}: the failed set changed nothing`);
          t.same((await getOpt(spi, s, opt, 3)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEFAULT], `${kind} ${on}: get with optlen 3: WSAEFAULT`);
        }
      }
    });

    t.test(`${f}: SO_SNDBUF set on a connected TCP socket still reads back, and data flows`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await setOpt(spi, s, S.SO_SNDBUF, 0), [0, 0]);
      t.same((await getOpt(spi, s, S.SO_SNDBUF)).slice(0, 3), [0, 0, 0]);
      t.same(await send(spi, s, [Buffer.from('unbuffered')]), [0, 0, 10]);
      t.equal((await conn.waitFor(10)).toString(), 'unbuffered');
    });

    t.test(`${f}: SO_BROADCAST on UDP (set and read only: nothing is broadcast)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const s = await newSocket(spi, f, 'udp');
      t.same(await getOpt(spi, s, S.SO_BROADCAST), [0, 0, 0, 4], 'off by default');
      t.same(await setOpt(spi, s, S.SO_BROADCAST, 1), [0, 0]);
      t.same((await getOpt(spi, s, S.SO_BROADCAST)).slice(0, 3), [0, 0, 1], 'on');
      t.same(await setOpt(spi, s, S.SO_BROADCAST, 0), [0, 0]);
      t.same((await getOpt(spi, s, S.SO_BROADCAST)).slice(0, 3), [0, 0, 0], 'off again');
      // A BOOL of any length, as Windows takes it (Wine's test_optsize): 2 bytes set it too.
      t.same(await setOpt(spi, s, S.SO_BROADCAST, 1, 2), [0, 0], 'optlen 2: taken');
      t.same((await getOpt(spi, s, S.SO_BROADCAST)).slice(0, 3), [0, 0, 1], 'on again');
    });

    t.test(`${f}: SO_TYPE`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const tcp = await newSocket(spi, f, 'tcp');
      const udp = await newSocket(spi, f, 'udp');
      t.same(await getOpt(spi, tcp, S.SO_TYPE), [0, 0, S.SOCK_STREAM, 4]);
      t.same(await getOpt(spi, udp, S.SO_TYPE), [0, 0, S.SOCK_DGRAM, 4]);
      t.same(await setOpt(spi, tcp, S.SO_TYPE, S.SOCK_DGRAM), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'SO_TYPE is read-only: WSAENOPROTOOPT');
      t.same((await getOpt(spi, tcp, S.SO_TYPE)).slice(0, 3), [0, 0, S.SOCK_STREAM], 'unchanged');
    });

    t.test(`${f}: SO_ERROR reports a failed nonblocking connect, and keeps it when read, as Windows does`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const s = await newSocket(spi, f, 'tcp');
      t.same(await getOpt(spi, s, S.SO_ERROR), [0, 0, 0, 4], 'a fresh socket: 0');
      await setNonBlocking(spi, s, true);
      const port = await closedPort(f, 'tcp');
      t.same(await call((e) => spi.WSPConnect(s, addr(f, port), namelen(f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK]);
      let v = 0;
      t.ok(await until(async () => (v = (await getOpt(spi, s, S.SO_ERROR))[2]) !== 0, 5000), 'SO_ERROR becomes nonzero');
      t.equal(v, S.WSAECONNREFUSED, 'SO_ERROR: WSAECONNREFUSED');
      t.same(await getOpt(spi, s, S.SO_ERROR), [0, 0, S.WSAECONNREFUSED, 4], 'reading SO_ERROR did not clear it');
    });
  }
});

// ------------------------------------------------------------------------------ close, shutdown, FIN

t.test('WSPCloseSocket, then every call -> WSAENOTSOCK', async (t) => {
  for (const f of FAMILIES) {
    for (const kind of ['tcp', 'udp'] as const) {
      t.test(`${f} ${kind}`, async (t) => {
        const d = await daemon(t);
        const spi = await session(t, d);
        const s = await newSocket(spi, f, kind);
        await bindLoopback(spi, s, f);
        t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0]);
        const N = S.WSAENOTSOCK;
        const buf = [S.wsabuf(new Uint8Array(8))];
        const calls: Array<[string, (e: S.Out) => Promise<number>, number]> = [
          ['WSPSend', (e) => spi.WSPSend(s, [S.wsabuf('x')], 1, S.out(0), 0, null, null, null, e), S.SOCKET_ERROR],
          ['WSPSendTo', (e) => spi.WSPSendTo(s, [S.wsabuf('x')], 1, S.out(0), 0, addr(f, 9), namelen(f), null, null, null, e), S.SOCKET_ERROR],
          ['WSPRecv', (e) => spi.WSPRecv(s, buf, 1, S.out(0), S.out(0), null, null, null, e), S.SOCKET_ERROR],
          ['WSPRecvFrom', (e) => spi.WSPRecvFrom(s, buf, 1, S.out(0), S.out(0), emptyAddr(), S.out(28), null, null, null, e), S.SOCKET_ERROR],
          ['WSPBind', (e) => spi.WSPBind(s, addr(f, 0), namelen(f), e), S.SOCKET_ERROR],
          ['WSPListen', (e) => spi.WSPListen(s, 5, e), S.SOCKET_ERROR],
          ['WSPAccept', (e) => spi.WSPAccept(s, null, null, null, 0, e), S.INVALID_SOCKET],
          ['WSPConnect', (e) => spi.WSPConnect(s, addr(f, 9), namelen(f), null, null, null, null, e), S.SOCKET_ERROR],
          ['WSPShutdown', (e) => spi.WSPShutdown(s, S.SD_BOTH, e), S.SOCKET_ERROR],
          ['WSPGetSockName', (e) => spi.WSPGetSockName(s, emptyAddr(), S.out(28), e), S.SOCKET_ERROR],
          ['WSPGetPeerName', (e) => spi.WSPGetPeerName(s, emptyAddr(), S.out(28), e), S.SOCKET_ERROR],
          ['WSPIoctl', (e) => spi.WSPIoctl(s, S.FIONREAD, null, 0, new Uint8Array(4), 4, S.out(0), null, null, null, e), S.SOCKET_ERROR],
          ['WSPSetSockOpt', (e) => spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, new Uint8Array(4), 4, e), S.SOCKET_ERROR],
          ['WSPGetSockOpt', (e) => spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_TYPE, new Uint8Array(4), S.out(4), e), S.SOCKET_ERROR],
          ['WSPCloseSocket', (e) => spi.WSPCloseSocket(s, e), S.SOCKET_ERROR],
        ];
        for (const [name, fn, ret] of calls) t.same(await call(fn), [ret, N], name);
      });
    }
  }
});

t.test('WSPShutdown with a bad how -> WSAEINVAL', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      for (const how of [3, -1, 0x7fffffff]) t.same(await call((e) => spi.WSPShutdown(s, how, e)), [S.SOCKET_ERROR, S.WSAEINVAL], `TCP how ${how}`);
      const up = await udpPeer(t, f);
      const u = await newSocket(spi, f, 'udp');
      t.same(await call((e) => spi.WSPConnect(u, addr(f, up.port), namelen(f), null, null, null, null, e)), [0, 0]);
      t.same(await call((e) => spi.WSPShutdown(u, 3, e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'UDP how 3');
      // Nothing was shut down by the bad calls.
      t.same(await send(spi, s, [Buffer.from('still-open')]), [0, 0, 10]);
      t.equal((await conn.waitFor(10)).toString(), 'still-open');
      t.same(await send(spi, u, [Buffer.from('udp-open')]), [0, 0, 8]);
      await up.waitFor(1);
      t.equal(up.datagrams[0]?.data.toString(), 'udp-open');
      // On a TCP socket that was never connected, Windows says WSAENOTCONN for a valid how.
      const nc = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPShutdown(nc, S.SD_SEND, e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'TCP not connected: WSAENOTCONN');
    });
  }
});

t.test('WSPSendDisconnect and WSPRecvDisconnect: shutdown of one side, and no disconnect data on TCP', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const data = S.wsabuf('bye');
      t.same(await call((e) => spi.WSPSendDisconnect(s, data, e)), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'disconnect data: WSAENOPROTOOPT');
      t.same(await call((e) => spi.WSPSendDisconnect(0x7ffffffc, data, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'not a socket comes first: WSAENOTSOCK');
      t.same(await call((e) => spi.WSPSendDisconnect(s, 'x' as unknown as S.WSABUF, e)), [S.SOCKET_ERROR, S.WSAEFAULT], 'a WSABUF that is not one: WSAEFAULT');
      t.same(await send(spi, s, [Buffer.from('last ')]), [0, 0, 5], 'nothing was shut down: a send still goes');
      t.same(await call((e) => spi.WSPSendDisconnect(s, S.wsabuf(new Uint8Array(0)), e)), [0, 0], 'WSPSendDisconnect with an empty WSABUF: no data');
      await conn.ended;
      t.equal(conn.received().toString(), 'last ', 'the peer read the bytes before it, then the end of the stream');
      t.same(await send(spi, s, [Buffer.from('late')]), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1], 'a send afterwards: WSAESHUTDOWN');
      conn.socket.write('still open');
      let text = '';
      for (let i = 0; i < 50 && text.length < 10; i++) {
        const r = await recvInto(spi, s, [16]);
        if (r.ret !== 0 || r.bytes === 0) break;
        text += r.data.toString();
      }
      t.equal(text, 'still open', 'the receiving side still reads');
      const inbound = S.wsabuf(new Uint8Array(8));
      t.same(await call((e) => spi.WSPRecvDisconnect(s, inbound, e)), [0, 0], 'WSPRecvDisconnect with a buffer for disconnect data');
      t.equal(inbound.len, 8, 'which it leaves alone: no disconnect data on TCP');
      const after = await recvInto(spi, s, [16]);
      t.same([after.ret, after.errno], [S.SOCKET_ERROR, S.WSAESHUTDOWN], 'a receive afterwards: WSAESHUTDOWN');
      const nc = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPSendDisconnect(nc, null, e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'a socket never connected: WSAENOTCONN');
      t.same(await call((e) => spi.WSPRecvDisconnect(0x7ffffffc, null, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'not a socket: WSAENOTSOCK');
    });
  }
});

t.test('WSPRecv returns 0 after the peer FIN', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      conn.socket.end('last words');
      let text = '';
      let last = -1;
      for (let i = 0; i < 20 && last !== 0; i++) {
        const r = await recvInto(spi, s, [4]);
        t.equal(r.ret, 0);
        last = r.bytes;
        text += r.data.toString();
      }
      t.equal(text, 'last words', 'every byte before the FIN');
      t.equal(last, 0, 'then WSPRecv returns 0 with 0 bytes');
      const again = await recvInto(spi, s, [4]);
      t.same([again.ret, again.bytes], [0, 0], 'and again 0');
      // Half-close: this side can still send.
      t.same(await send(spi, s, [Buffer.from('reply')]), [0, 0, 5]);
      t.equal((await conn.waitFor(5)).toString(), 'reply');
    });
  }
});

for (const f of FAMILIES) {
  t.test(`${f}: WSPGetSockName and WSPGetPeerName in the same frame as the bind or connect before them see what it did`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    /** Issues the step and WSPGetSockName / WSPGetPeerName in one synchronous run (one frame). */
    const withNames = async (s: number, step: (e: S.Out) => Promise<number>): Promise<[[number, number], [number, number], number, number]> => {
      const [local, remote] = [emptyAddr(), emptyAddr()];
      const [r, sn, pn] = await Promise.all([call(step), call((e) => spi.WSPGetSockName(s, local, S.out(28), e)), call((e) => spi.WSPGetPeerName(s, remote, S.out(28), e))]);
      if (r[0] !== 0) throw new Error(`the step failed: ${r[1]}`);
      return [sn, pn, local.port, remote.port];
    };
    for (const kind of ['tcp', 'udp'] as const) {
      const s = await newSocket(spi, f, kind);
      const [sn, pn, port] = await withNames(s, (e) => spi.WSPBind(s, addr(f, 0), namelen(f), e));
      t.same(sn, [0, 0], `${kind}: WSPGetSockName right after WSPBind succeeds`);
      t.ok(port > 0, `${kind}: with the port the bind took (${port})`);
      t.same(pn, [S.SOCKET_ERROR, S.WSAENOTCONN], `${kind}: no peer`);
    }
    // A UDP connect binds the socket and sets its default peer, both before it returns on Windows.
    const u = await newSocket(spi, f, 'udp');
    const [sn, pn, local, remote] = await withNames(u, (e) => spi.WSPConnect(u, addr(f, peer.port), namelen(f), null, null, null, null, e));
    t.same([sn, pn], [[0, 0], [0, 0]], 'UDP: both succeed right after WSPConnect');
    t.ok(local > 0, `UDP: the port the connect bound (${local})`);
    t.equal(remote, peer.port, 'UDP: the peer the connect set');
  });
}
