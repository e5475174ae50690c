/**
 * Each WSPSend error code, produced by the situation that produces it on Windows
 * (../shared/reference/winsock.md), with lpErrno checked and, where it matters, what the peer
 * actually received. Real sockets on loopback only.
 */
import t, { type Test } from 'tap';
import * as S from '@spiwire/client';
import {
  FAMILIES,
  addr,
  allReceived,
  call,
  closedPort,
  connectedTcp,
  daemon,
  datagramsBeforeFence,
  namelen,
  newSocket,
  pattern,
  peerFinished,
  recvInto,
  send,
  sendTo,
  session,
  setNonBlocking,
  setOpt,
  getOpt,
  bytesArriving,
  nextTurn,
  roundTrip,
  tcpBytesBeforeFence,
  tcpPeer,
  udpDatagramsBeforeFence,
  udpPeer,
  until,
  within,
  type Family,
  type PeerConnection,
  type UdpPeer,
} from '../helpers/harness.js';

const MARK = Buffer.from('marker');

/** Sends a marker and checks that the marker, and only the marker, is what the peer has received. */
async function onlyMarkerArrives(t: Test, spi: S.SpiSession, s: number, conn: PeerConnection, what: string): Promise<void> {
  const [r, e, n] = await send(spi, s, [MARK]);
  t.same([r, e, n], [0, 0, MARK.length], 'a valid send afterwards still works');
  await conn.waitFor(MARK.length);
  // A fence after the marker: bytes of the failed sends would have come before it.
  const got = await tcpBytesBeforeFence(spi, s, conn, MARK.length);
  t.equal(got.toString('latin1'), MARK.toString('latin1'), `nothing of the failed send reached the peer (${what})`);
}

/** Sends a marker datagram and checks it is the only datagram the peer got. */
async function onlyMarkerDatagram(t: Test, spi: S.SpiSession, s: number, peer: UdpPeer, what: string): Promise<void> {
  const [r, e, n] = await send(spi, s, [MARK]);
  t.same([r, e, n], [0, 0, MARK.length], 'a valid datagram afterwards still goes out');
  await peer.waitFor(1);
  // A fence datagram after the marker: any datagram of the failed sends would have come before it.
  const got = await datagramsBeforeFence(peer, async (fence) => send(spi, s, [fence]));
  t.equal(got.length, 1, `only one datagram arrived (${what})`);
  t.equal(got[0], MARK.toString('latin1'));
}

/** A UDP socket of the session connected (WSPConnect) to the peer. */
async function connectedUdp(spi: S.SpiSession, f: Family, peer: UdpPeer): Promise<number> {
  const s = await newSocket(spi, f, 'udp');
  const [r, e] = await call((x) => spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, x));
  if (r !== 0) throw new Error(`UDP WSPConnect failed: ${e}`);
  return s;
}

// ------------------------------------------------------------------------------ WSAENOTSOCK

t.test('WSAENOTSOCK', async (t) => {
  t.test('an unknown handle', async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    // Daemon handles are multiples of 4 from 0x100 up; none of these was ever handed out.
    for (const h of [0, 0x101, 0x7ffffff0, 0xfffffffc, S.INVALID_SOCKET]) {
      t.same(await send(spi, h, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1], `handle ${h}`);
    }
  });

  for (const f of FAMILIES) {
    t.test(`${f}: a closed handle (TCP, connected before it was closed)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await send(spi, s, [Buffer.from('before')]), [0, 0, 6]);
      t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('after')]), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1]);
      t.equal(await peerFinished(conn.socket), 'end', 'the peer saw the graceful close');
      t.equal(conn.received().toString(), 'before', 'the peer got the bytes sent before the close, nothing after');
    });

    t.test(`${f}: closed with accepted bytes still queued: they all reach the peer, then FIN`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f, { paused: true });
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await setOpt(spi, s, S.SO_SNDBUF, 8192), [0, 0]);
      await setNonBlocking(spi, s, true);
      const chunk = pattern(64 * 1024, 37);
      const accepted: Buffer[] = [];
      let full = false;
      for (let i = 0; i < 5000 && !full; i++) {
        const [r, e, n] = await send(spi, s, [chunk]);
        if (r === 0) accepted.push(chunk.subarray(0, n));
        else {
          t.equal(e, S.WSAEWOULDBLOCK);
          full = true;
        }
      }
      t.ok(full, 'the buffers filled');
      t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1]);
      conn.socket.resume();
      t.equal(await peerFinished(conn.socket, 20000), 'end', 'the peer saw FIN');
      const want = Buffer.concat(accepted);
      t.ok(conn.received().equals(want), `the peer got every accepted byte (${conn.received().length} of ${want.length}) before FIN`);
    });

    t.test(`${f}: a closed handle (UDP)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await connectedUdp(spi, f, peer);
      t.same(await call((e) => spi.WSPCloseSocket(s, e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('after')]), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1]);
      t.same(await sendTo(spi, s, [Buffer.from('after')], addr(f, peer.port), namelen(f)), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1]);
      // A fence from another socket of the session: a datagram of the refused calls would be ahead of it.
      const fenceSocket = await newSocket(spi, f, 'udp');
      t.same(await udpDatagramsBeforeFence(spi, fenceSocket, f, peer), [], 'no datagram left');
    });

    t.test(`${f}: another session's handle`, async (t) => {
      const d = await daemon(t);
      const a = await session(t, d);
      const b = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(a, f, peer);
      t.same(await send(b, s, [Buffer.from('intruder')]), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1], 'WSPSend from session B');
      t.same(await call((e) => b.WSPCloseSocket(s, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'session B cannot close it either');
      const udpPeerB = await udpPeer(t, f);
      const u = await connectedUdp(a, f, udpPeerB);
      t.same(await sendTo(b, u, [Buffer.from('intruder')], addr(f, udpPeerB.port), namelen(f)), [S.SOCKET_ERROR, S.WSAENOTSOCK, -1], 'WSPSendTo from session B');
      await onlyMarkerArrives(t, a, s, conn, 'session A still owns the socket');
      await onlyMarkerDatagram(t, a, u, udpPeerB, 'session A still owns the UDP socket');
    });
  }
});

// ------------------------------------------------------------------------------ WSAENOTCONN

t.test('WSAENOTCONN', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: TCP socket never connected (fresh, and bound)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const s = await newSocket(spi, f, 'tcp');
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'fresh socket');
      t.same(await call((e) => spi.WSPBind(s, addr(f, 0), namelen(f), e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'bound socket');
      t.same(await sendTo(spi, s, [Buffer.from('x')], addr(f, 9), namelen(f)), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'WSPSendTo does not connect a stream socket');
    });

    t.test(`${f}: TCP socket that is listening, or whose connect was refused`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const l = await newSocket(spi, f, 'tcp');
      t.same(await call((e) => spi.WSPBind(l, addr(f, 0), namelen(f), e)), [0, 0]);
      t.same(await call((e) => spi.WSPListen(l, 5, e)), [0, 0]);
      t.same(await send(spi, l, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'listening socket');
      const r = await newSocket(spi, f, 'tcp');
      const port = await closedPort(f, 'tcp');
      t.same(await call((e) => spi.WSPConnect(r, addr(f, port), namelen(f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED]);
      t.same(await send(spi, r, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'after a refused connect');
    });

    t.test(`${f}: TCP socket whose nonblocking connect is still in progress`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const s = await newSocket(spi, f, 'tcp');
      await setNonBlocking(spi, s, true);
      // Deterministic: both calls are issued in the same tick, so the SDK packs them into one
      // frame and the daemon handles the send right after starting the connect, before the
      // kernel can report the connection as established (that takes an event-loop turn).
      const ce = S.out(0);
      const connectP = spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, ce);
      const sendP = send(spi, s, [Buffer.from('too-early')]);
      t.equal(await connectP, S.SOCKET_ERROR);
      t.equal(ce.value, S.WSAEWOULDBLOCK, 'nonblocking connect: WSAEWOULDBLOCK');
      t.same(await sendP, [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'send while connecting: WSAENOTCONN');
      const conn = await peer.nextConnection();
      // Once the connection is up, sends work; the early bytes never went anywhere.
      let r: [number, number, number] = [S.SOCKET_ERROR, 0, -1];
      await until(async () => {
        r = await send(spi, s, [MARK]);
        return r[0] === 0 || r[1] !== S.WSAENOTCONN;
      }, 5000);
      t.same(r, [0, 0, MARK.length], 'after the connect completes the send succeeds');
      await conn.waitFor(MARK.length);
      t.equal((await tcpBytesBeforeFence(spi, s, conn, MARK.length)).toString(), MARK.toString(), 'the peer got only the later send');
    });

    t.test(`${f}: UDP WSPSend without a default peer`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await newSocket(spi, f, 'udp');
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'unbound');
      t.same(await call((e) => spi.WSPBind(s, addr(f, 0), namelen(f), e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'bound, not connected');
      // A fence sent to the peer with WSPSendTo from the same socket: nothing came before it.
      t.same(await udpDatagramsBeforeFence(spi, s, f, peer), []);
    });
  }
});

// ------------------------------------------------------------------------------ WSAESHUTDOWN

t.test('WSAESHUTDOWN', async (t) => {
  for (const f of FAMILIES) {
    for (const how of [S.SD_SEND, S.SD_BOTH]) {
      const hn = how === S.SD_SEND ? 'SD_SEND' : 'SD_BOTH';
      t.test(`${f}: TCP after ${hn}: WSAESHUTDOWN, and the peer sees FIN after every earlier byte`, async (t) => {
        const d = await daemon(t);
        const spi = await session(t, d);
        const peer = await tcpPeer(t, f);
        const { s, conn } = await connectedTcp(spi, f, peer);
        const data = pattern(200000, 11);
        t.same(await send(spi, s, [data.subarray(0, 70000), data.subarray(70000)]), [0, 0, data.length]);
        t.same(await call((e) => spi.WSPShutdown(s, how, e)), [0, 0]);
        t.same(await send(spi, s, [Buffer.from('late')]), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1]);
        t.same(await send(spi, s, [Buffer.from('later')]), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1], 'and it stays so');
        t.equal(await peerFinished(conn.socket, 10000), 'end', 'the peer saw FIN');
        t.ok(conn.received().equals(data), `the peer got exactly the ${data.length} earlier bytes before FIN`);
      });

      t.test(`${f}: TCP ${hn} while a blocking send is still in flight: that send completes, FIN follows its last byte`, async (t) => {
        const d = await daemon(t);
        const spi = await session(t, d);
        const peer = await tcpPeer(t, f, { paused: true });
        const { s, conn } = await connectedTcp(spi, f, peer);
        t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0]);
        // Larger than what the loopback kernel buffers absorb while the peer does not read.
        const data = pattern(8 * 1024 * 1024, 19);
        let settled = false;
        const inFlight = send(spi, s, [data]).finally(() => (settled = true));
        t.ok(await bytesArriving(conn), 'the send is under way: bytes reach the peer');
        t.same(await call((e) => spi.WSPShutdown(s, how, e)), [0, 0]);
        // The daemon answered the shutdown after anything it had answered before: the send had not.
        await nextTurn();
        t.notOk(settled, 'the 8 MiB send is still in flight');
        t.same(await send(spi, s, [Buffer.from('late')]), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1], 'a new send: WSAESHUTDOWN');
        conn.socket.resume();
        t.same(await inFlight, [0, 0, data.length], 'the send issued before the shutdown completes');
        t.equal(await peerFinished(conn.socket, 20000), 'end', 'the peer saw FIN');
        t.ok(conn.received().equals(data), `the peer got all ${data.length} bytes before FIN, in order`);
      });

      t.test(`${f}: UDP after ${hn}: WSAESHUTDOWN for WSPSend and WSPSendTo, nothing sent`, async (t) => {
        const d = await daemon(t);
        const spi = await session(t, d);
        const peer = await udpPeer(t, f);
        const s = await connectedUdp(spi, f, peer);
        t.same(await send(spi, s, [Buffer.from('first')]), [0, 0, 5]);
        t.same(await call((e) => spi.WSPShutdown(s, how, e)), [0, 0]);
        t.same(await send(spi, s, [Buffer.from('late')]), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1]);
        t.same(await sendTo(spi, s, [Buffer.from('late')], addr(f, peer.port), namelen(f)), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1]);
        // An unconnected socket too, through WSPSendTo.
        const u = await newSocket(spi, f, 'udp');
        t.same(await sendTo(spi, u, [Buffer.from('u1')], addr(f, peer.port), namelen(f)), [0, 0, 2]);
        t.same(await call((e) => spi.WSPShutdown(u, how, e)), [0, 0]);
        t.same(await sendTo(spi, u, [Buffer.from('u2')], addr(f, peer.port), namelen(f)), [S.SOCKET_ERROR, S.WSAESHUTDOWN, -1]);
        await peer.waitFor(2);
        // A fence from a third socket: a datagram of the refused calls would be ahead of it.
        const fenceSocket = await newSocket(spi, f, 'udp');
        t.same(
          (await udpDatagramsBeforeFence(spi, fenceSocket, f, peer)).sort(),
          ['first', 'u1'],
          'the peer got only the datagrams sent before the shutdown',
        );
      });
    }
  }
});

t.test('SD_RECEIVE alone does not stop sends', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await call((e) => spi.WSPShutdown(s, S.SD_RECEIVE, e)), [0, 0]);
      t.same(await send(spi, s, [Buffer.from('still-sending')]), [0, 0, 13]);
      t.equal((await conn.waitFor(13)).toString(), 'still-sending');
      const up = await udpPeer(t, f);
      const u = await connectedUdp(spi, f, up);
      t.same(await call((e) => spi.WSPShutdown(u, S.SD_RECEIVE, e)), [0, 0]);
      t.same(await send(spi, u, [Buffer.from('dgram')]), [0, 0, 5]);
      await up.waitFor(1);
      t.equal(up.datagrams[0]?.data.toString(), 'dgram');
    });
  }
});

// ------------------------------------------------------------------------------ WSAECONNRESET

t.test('WSAECONNRESET', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: the peer resets the connection`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await send(spi, s, [Buffer.from('hello')]), [0, 0, 5]);
      await conn.waitFor(5);
      // A blocking WSPRecv returns once the emulated socket has seen the reset.
      const seen = recvInto(spi, s, [16]);
      conn.socket.resetAndDestroy();
      const rr = await within(seen, 10000, null);
      t.same(rr && [rr.ret, rr.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the reset reached the emulated socket (a blocking WSPRecv fails with WSAECONNRESET)');
      let successes = 0;
      let failure: [number, number, number] | null = null;
      for (let i = 0; i < 10 && !failure; i++) {
        const r = await send(spi, s, [Buffer.from('after-reset')]);
        if (r[0] === 0) successes++;
        else failure = r;
      }
      t.ok(successes <= 1, `at most one send succeeded after the reset (saw ${successes})`);
      t.same(failure, [S.SOCKET_ERROR, S.WSAECONNRESET, -1], 'the send fails with WSAECONNRESET');
    });

    t.test(`${f}: the peer resets under a blocking send: that send fails with WSAECONNRESET`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f, { paused: true });
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0]);
      const data = pattern(8 * 1024 * 1024, 41);
      let settled = false;
      const inFlight = send(spi, s, [data]).finally(() => (settled = true));
      t.ok(await bytesArriving(conn), 'the send is under way: bytes reach the peer');
      await roundTrip(spi);
      t.notOk(settled, 'the 8 MiB send is still blocked');
      conn.socket.resetAndDestroy();
      const [ret, err, count] = await inFlight;
      t.same([ret, err], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the blocked send: WSAECONNRESET');
      t.ok(count >= 0 && count < data.length, `with the ${count} bytes that reached the transport before the reset`);
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAECONNRESET, -1], 'the next send too');
    });

    t.test(`${f}: the peer closes gracefully: the next send succeeds, a later one gets WSAECONNRESET (EPIPE)`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      conn.socket.end();
      // WSPRecv returns 0 once the FIN has reached the emulated socket.
      const fin = await recvInto(spi, s, [16]);
      t.same([fin.ret, fin.bytes], [0, 0], 'the emulated socket saw the FIN');
      const closed = peerFinished(conn.socket);
      conn.socket.destroy();
      t.equal(await closed, 'close', 'the peer socket is fully closed');
      t.same(await send(spi, s, [Buffer.from('first-after-fin')]), [0, 0, 15], 'the first send after a graceful close succeeds (rule 8)');
      let failure: [number, number, number] | null = null;
      // The peer answers the first send with a reset; polled (bounded) until it has come back.
      await until(async () => {
        const r = await send(spi, s, [Buffer.from('x')]);
        if (r[0] !== 0) failure = r;
        return failure !== null;
      }, 10000);
      t.same(failure, [S.SOCKET_ERROR, S.WSAECONNRESET, -1], 'a later send fails with WSAECONNRESET (Linux EPIPE maps here)');
      // A receive now finds the connection aborted, as Wine's test_shutdown records Windows doing.
      const after = await recvInto(spi, s, [16]);
      t.same([after.ret, after.errno], [S.SOCKET_ERROR, S.WSAECONNABORTED], 'and a receive fails with WSAECONNABORTED');
    });
  }
});

// ------------------------------------------------------------------------------ WSAEFAULT

t.test('WSAEFAULT: the caller does not own the memory it names; nothing reaches the peer', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: TCP`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const e = S.out(0);
      const sent = S.out(-1);
      t.equal(await spi.WSPSend(s, [S.wsabuf('one'), S.wsabuf('two')], 3, sent, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'dwBufferCount beyond lpBuffers.length');
      e.value = 0;
      t.equal(await spi.WSPSend(s, [S.wsabuf('ok-'), { len: 9, buf: Buffer.from('short') }], 2, sent, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'a WSABUF len beyond its buf');
      e.value = 0;
      t.equal(await spi.WSPSend(s, [S.wsabuf('no-count')], 1, null, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'lpNumberOfBytesSent NULL without an OVERLAPPED');
      e.value = 0;
      t.equal(await spi.WSPSend(s, null, 1, sent, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'lpBuffers NULL with a nonzero count');
      t.equal(sent.value, -1, 'lpNumberOfBytesSent untouched by the failed calls');
      await onlyMarkerArrives(t, spi, s, conn, 'WSAEFAULT');
    });

    t.test(`${f}: UDP`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await connectedUdp(spi, f, peer);
      const e = S.out(0);
      const sent = S.out(-1);
      t.equal(await spi.WSPSend(s, [S.wsabuf('one')], 2, sent, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'dwBufferCount beyond lpBuffers.length');
      e.value = 0;
      t.equal(await spi.WSPSend(s, [{ len: 6, buf: Buffer.from('four') }], 1, sent, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'a WSABUF len beyond its buf');
      e.value = 0;
      t.equal(await spi.WSPSend(s, [S.wsabuf('no-count')], 1, null, 0, null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEFAULT, 'lpNumberOfBytesSent NULL without an OVERLAPPED');
      const u = await newSocket(spi, f, 'udp');
      t.same(await sendTo(spi, u, [Buffer.from('short-tolen')], addr(f, peer.port), namelen(f) - 1), [S.SOCKET_ERROR, S.WSAEFAULT, -1], 'WSPSendTo with iTolen one byte short');
      await onlyMarkerDatagram(t, spi, s, peer, 'WSAEFAULT');
    });
  }
});

t.test('WSAEADDRNOTAVAIL: WSPSendTo to the any address', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const u = await newSocket(spi, f, 'udp');
      const any = { family: f === 'ipv4' ? S.AF_INET : S.AF_INET6, address: f === 'ipv4' ? '0.0.0.0' : '::', port: peer.port };
      t.same(await sendTo(spi, u, [Buffer.from('nowhere')], any, namelen(f)), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL, -1]);
      t.same(await udpDatagramsBeforeFence(spi, u, f, peer), [], 'nothing arrived (the any address is not loopback)');
    });
  }
});

// ------------------------------------------------------------------------------ WSAEOPNOTSUPP

t.test('WSAEOPNOTSUPP: flags the transport does not offer; nothing is sent', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: UDP: MSG_OOB, MSG_PARTIAL, unknown bits`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await connectedUdp(spi, f, peer);
      for (const [flags, name] of [
        [S.MSG_OOB, 'MSG_OOB'],
        [S.MSG_PARTIAL, 'MSG_PARTIAL'],
        [0x100000, 'unknown bit 0x100000'],
        [S.MSG_PARTIAL | S.MSG_DONTROUTE, 'MSG_PARTIAL | MSG_DONTROUTE'],
      ] as const) {
        t.same(await send(spi, s, [Buffer.from('flagged')], flags), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP, -1], `WSPSend ${name}`);
        t.same(await sendTo(spi, s, [Buffer.from('flagged')], null, 0, flags), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP, -1], `WSPSendTo ${name}`);
      }
      await onlyMarkerDatagram(t, spi, s, peer, 'WSAEOPNOTSUPP');
    });

    t.test(`${f}: TCP: MSG_PARTIAL, unknown bits`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      for (const [flags, name] of [
        [S.MSG_PARTIAL, 'MSG_PARTIAL'],
        [0x100000, 'unknown bit 0x100000'],
        [0x80000000, 'unknown bit 0x80000000'],
      ] as const) {
        t.same(await send(spi, s, [Buffer.from('flagged')], flags), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP, -1], `WSPSend ${name}`);
      }
      // A control code Windows does not know (Wine's test_unsupported_ioctls), on the same connection.
      const e = S.out(0);
      t.equal(await spi.WSPIoctl(s, 0x12345678, null, 0, new Uint8Array(16), 16, S.out(0), null, null, null, e), S.SOCKET_ERROR);
      t.equal(e.value, S.WSAEOPNOTSUPP, 'WSPIoctl with an unknown code');
      await onlyMarkerArrives(t, spi, s, conn, 'WSAEOPNOTSUPP');
    });
  }
});

// ------------------------------------------------------------------------------ WSAEMSGSIZE

t.test('WSAEMSGSIZE: a datagram over SO_MAX_MSG_SIZE fails and nothing is sent', async (t) => {
  for (const f of FAMILIES) {
    const max = f === 'ipv4' ? 65507 : 65527;
    t.test(`${f}: ${max + 1} fails, ${max} succeeds and arrives whole`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      peer.socket.setRecvBufferSize(1 << 20);
      const s = await connectedUdp(spi, f, peer);
      const big = pattern(max + 1, 5);
      t.same(await send(spi, s, [big.subarray(0, 30000), big.subarray(30000)]), [S.SOCKET_ERROR, S.WSAEMSGSIZE, -1], `WSPSend of ${max + 1} bytes`);
      t.same(await sendTo(spi, s, [big], null, 0), [S.SOCKET_ERROR, S.WSAEMSGSIZE, -1], `WSPSendTo of ${max + 1} bytes`);
      const u = await newSocket(spi, f, 'udp');
      t.same(await sendTo(spi, u, [big], addr(f, peer.port), namelen(f)), [S.SOCKET_ERROR, S.WSAEMSGSIZE, -1], 'unconnected WSPSendTo too');
      const exact = big.subarray(0, max);
      t.same(await send(spi, s, [exact.subarray(0, 1000), exact.subarray(1000)]), [0, 0, max], `WSPSend of ${max} bytes`);
      await peer.waitFor(1);
      const got = await datagramsBeforeFence(peer, async (fence) => send(spi, s, [fence]));
      t.equal(got.length, 1, 'exactly one datagram arrived');
      t.ok(peer.datagrams[0]!.data.equals(exact), `the peer got exactly the ${max} bytes`);
    });
  }
});

// ------------------------------------------------------------------------------ WSAEWOULDBLOCK

t.test('WSAEWOULDBLOCK: nonblocking send with a full transport buffer', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: SO_SNDBUF 4096 set with WSPSetSockOpt, peer not reading`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f, { paused: true });
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0]);
      t.same((await getOpt(spi, s, S.SO_SNDBUF)).slice(0, 3), [0, 0, 4096]);
      await setNonBlocking(spi, s, true);
      const chunk = pattern(32 * 1024, 9);
      const accepted: Buffer[] = [];
      let blocked: [number, number, number] | null = null;
      let badCounts = 0;
      // Bounded: the kernel buffers on loopback hold a few MiB at most.
      for (let i = 0; i < 5000 && !blocked; i++) {
        const r = await send(spi, s, [chunk]);
        if (r[0] === 0) {
          if (!(r[2] > 0 && r[2] <= chunk.length)) badCounts++;
          accepted.push(chunk.subarray(0, r[2]));
        } else blocked = r;
      }
      t.equal(badCounts, 0, `every success (${accepted.length}) reported a count between 1 and the buffer size`);
      t.same(blocked, [S.SOCKET_ERROR, S.WSAEWOULDBLOCK, -1], 'the transport buffer filled: WSAEWOULDBLOCK');
      t.same(await send(spi, s, [chunk]), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK, -1], 'and again while the peer does not read');
      conn.socket.resume();
      const want = Buffer.concat(accepted);
      const got = await conn.waitFor(want.length, 20000);
      // Closed, the socket sends FIN after its last accepted byte: then the peer has everything.
      t.equal((await allReceived(t, spi, s, conn)).length, want.length, 'the peer got no byte beyond those reported');
      t.ok(got.subarray(0, want.length).equals(want), `the peer got exactly the ${want.length} accepted bytes, in order`);
    });
  }
});

// ------------------------------------------------------------------------------ WSAEACCES

t.test('WSAEACCES: WSPSendTo 255.255.255.255 without SO_BROADCAST', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await udpPeer(t, 'ipv4');
  const s = await newSocket(spi, 'ipv4', 'udp');
  t.same((await getOpt(spi, s, S.SO_BROADCAST)).slice(0, 3), [0, 0, 0], 'SO_BROADCAST is off');
  const bcast = { family: S.AF_INET, address: '255.255.255.255', port: peer.port };
  t.same(await sendTo(spi, s, [Buffer.from('to-everyone')], bcast, 16), [S.SOCKET_ERROR, S.WSAEACCES, -1], 'unbound socket');
  const b = await newSocket(spi, 'ipv4', 'udp');
  t.same(await call((e) => spi.WSPBind(b, addr('ipv4', 0), 16, e)), [0, 0]);
  t.same(await sendTo(spi, b, [Buffer.from('to-everyone')], bcast, 16), [S.SOCKET_ERROR, S.WSAEACCES, -1], 'bound socket');
  // The socket is still usable for unicast.
  t.same(await sendTo(spi, b, [MARK], addr('ipv4', peer.port), 16), [0, 0, MARK.length]);
  await peer.waitFor(1);
  t.same(await udpDatagramsBeforeFence(spi, b, 'ipv4', peer), [MARK.toString()], 'only the unicast datagram arrived');
});

// ------------------------------------------------------------------------------ WSAENETDOWN

t.test('WSAENETDOWN: the daemon shuts down under a blocking send', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f, { paused: true });
      const { s, conn } = await connectedTcp(spi, f, peer);
      t.same(await setOpt(spi, s, S.SO_SNDBUF, 4096), [0, 0]);
      const data = pattern(4 * 1024 * 1024, 13);
      let settled = false;
      const sendP = send(spi, s, [data]).finally(() => (settled = true));
      t.ok(await bytesArriving(conn), 'the send is under way: bytes reach the peer');
      await roundTrip(spi);
      t.notOk(settled, 'the 4 MiB send is still blocked while the peer does not read');
      const closing = d.close();
      const [ret, err, count] = await sendP;
      t.same([ret, err], [S.SOCKET_ERROR, S.WSAENETDOWN], 'the blocked send fails with WSAENETDOWN');
      t.ok(count >= 0 && count < data.length, `with the ${count} bytes that reached the transport`);
      await closing;
      t.same(await send(spi, s, [Buffer.from('x')]), [S.SOCKET_ERROR, S.WSAENETDOWN, -1], 'later calls on the session: WSAENETDOWN');
      conn.socket.resume();
      const how = await peerFinished(conn.socket, 10000);
      t.not(how, 'timeout', `the peer connection ended (${how})`);
      const got = conn.received();
      t.ok(got.length < data.length, `the peer did not get the whole send (${got.length} bytes)`);
      t.ok(got.equals(data.subarray(0, got.length)), 'what the peer got is a prefix of the data, in order');
      t.ok(got.length >= count, `every byte reported (${count}) reached the peer (${got.length})`);
    });
  }
});

// ------------------------------------------------------------------------------ WSAEINVAL

t.test('WSAEINVAL', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const l = await newSocket(spi, f, 'tcp');
      t.same(await call((x) => spi.WSPListen(l, 5, x)), [S.SOCKET_ERROR, S.WSAEINVAL], 'WSPListen on an unbound socket');
      // The failed calls changed nothing: the connection still carries data.
      await onlyMarkerArrives(t, spi, s, conn, 'WSAEINVAL');
    });
  }
});

// ------------------------------------------------------------------------------ WSAENOBUFS

t.test('no WSAENOBUFS for size: one WSPSend larger than the session frame limit is an ordinary call', async (t) => {
  for (const f of FAMILIES) {
    t.test(`${f}: TCP`, async (t) => {
      const d = await daemon(t, { limits: { maxFrameBytes: 256 * 1024 } });
      const spi = await session(t, d);
      t.equal(spi.welcome.limits.maxFrameBytes, 256 * 1024, 'the daemon announced the small frame limit');
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const big = pattern(1024 * 1024, 17);
      t.same(await send(spi, s, [big]), [0, 0, big.length], '1 MiB in one buffer: the full count');
      t.same(await send(spi, s, [big.subarray(0, 512 * 1024), big.subarray(512 * 1024)]), [0, 0, big.length], '1 MiB over two buffers: the full count');
      t.ok(spi.isOpen, 'the session is open');
      const got = await conn.waitFor(2 * big.length, 10000);
      t.ok(got.equals(Buffer.concat([big, big])), 'the peer received every byte, in order');
    });

    t.test(`${f}: UDP WSPSendTo: a datagram that large is WSAEMSGSIZE, not WSAENOBUFS`, async (t) => {
      const d = await daemon(t, { limits: { maxFrameBytes: 256 * 1024 } });
      const spi = await session(t, d);
      const peer = await udpPeer(t, f);
      const s = await connectedUdp(spi, f, peer);
      t.same(await sendTo(spi, s, [pattern(1024 * 1024, 3)], null, 0), [S.SOCKET_ERROR, S.WSAEMSGSIZE, -1]);
      await onlyMarkerDatagram(t, spi, s, peer, 'WSAEMSGSIZE');
    });
  }
});

t.test('frame limit: sends each under it, issued in the same tick, all succeed and keep the session', async (t) => {
  for (const f of FAMILIES) {
    t.test(f, async (t) => {
      const d = await daemon(t, { limits: { maxFrameBytes: 256 * 1024 } });
      const spi = await session(t, d);
      const peer = await tcpPeer(t, f);
      const { s, conn } = await connectedTcp(spi, f, peer);
      const a = pattern(150 * 1024, 23);
      const b = pattern(150 * 1024, 29);
      // Each call alone is well under the limit (WSAENOBUFS is for one oversized call), so
      // neither may fail, whatever the SDK does to carry them to the daemon.
      const pa = send(spi, s, [a]);
      const pb = send(spi, s, [b]);
      const ra = await pa;
      const rb = await pb;
      t.same(ra, [0, 0, a.length], 'first send succeeds');
      t.same(rb, [0, 0, b.length], 'second send succeeds');
      t.ok(spi.isOpen, 'the session is still open');
      const want = Buffer.concat([a, b]);
      // (When a send failed the test has failed already; no need to wait for bytes then.)
      if (ra[0] === 0 && rb[0] === 0) await conn.waitFor(want.length, 5000).catch(() => undefined);
      const got = conn.received();
      t.ok(got.equals(want), `the peer got both sends in order (${got.length} of ${want.length} bytes)`);
    });
  }
});
