/**
 * The two send policies (SO_SPIWIRE_SEND_POLICY, or the daemon's --send-policy): the WSPSend
 * reference page's partial writes, and what Windows does in practice (winsock.md, observation 1).
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { FAMILIES, connectedTcp, daemon, dword, pattern, readDword, send, session, setNonBlocking, tcpPeer } from '../helpers/harness.js';

async function setPolicy(spi: S.SpiSession, s: number, policy: number): Promise<void> {
  const e = S.out(0);
  if ((await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SPIWIRE_SEND_POLICY, dword(policy), 4, e)) !== 0) throw new Error(`set policy: ${e.value}`);
}

for (const f of FAMILIES) {
  t.test(`${f}: Windows policy: a nonblocking send takes the whole buffer or fails with WSAEWOULDBLOCK, never a short count`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    await setPolicy(spi, s, S.SPIWIRE_SEND_POLICY_WINDOWS);
    await setNonBlocking(spi, s, true);
    const chunk = pattern(100_000, 5);
    const accepted: Buffer[] = [];
    let wouldBlock = 0;
    for (let i = 0; i < 400 && wouldBlock < 3; i++) {
      const [r, err, n] = await send(spi, s, [chunk.subarray(0, 30_000), chunk.subarray(30_000)]);
      if (r === 0) {
        t.equal(n, chunk.length, 'the whole buffer, never a short count');
        accepted.push(chunk);
      } else {
        t.equal(err, S.WSAEWOULDBLOCK);
        wouldBlock++;
      }
    }
    t.ok(wouldBlock > 0, 'earlier data still queued gives WSAEWOULDBLOCK');
    t.ok(accepted.length > 0);
    conn.socket.resume();
    const want = Buffer.concat(accepted);
    t.ok((await conn.waitFor(want.length, 30000)).equals(want), `the peer gets exactly the ${want.length} bytes reported, in order`);
  });

  t.test(`${f}: Windows policy: background data keeps flowing after WSPCloseSocket, then FIN`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192, sendPolicy: S.SPIWIRE_SEND_POLICY_WINDOWS } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    const v = new Uint8Array(4);
    t.equal(await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_SPIWIRE_SEND_POLICY, v, S.out(4), e), 0);
    t.equal(readDword(v), S.SPIWIRE_SEND_POLICY_WINDOWS, 'the daemon default applies to new sockets');
    await setNonBlocking(spi, s, true);
    const data = pattern(8 * 1024 * 1024, 9);
    const [r, , n] = await send(spi, s, [data]);
    t.same([r, n], [0, data.length], 'the whole 8 MiB is accepted at once');
    // The close is answered: the daemon has closed the socket with the data still queued.
    t.equal(await spi.WSPCloseSocket(s, e), 0);
    conn.socket.resume();
    t.ok((await conn.waitFor(data.length, 30000)).equals(data), 'every byte arrives after the close');
    await conn.ended;
    t.pass('then FIN');
  });

  t.test(`${f}: Windows policy: SIO_FLUSH leaves background data alone, its bytes having been answered as sent`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192, sendPolicy: S.SPIWIRE_SEND_POLICY_WINDOWS } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    // A small transport buffer (and kernel buffer): most of the send waits in the daemon.
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, dword(512), 4, e), 0);
    await setNonBlocking(spi, s, true);
    const data = pattern(1_000_000, 11);
    const [r, , n] = await send(spi, s, [data]);
    t.same([r, n], [0, data.length], 'the whole send is answered as sent, most of it in the background');
    t.equal(await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, e), 0, 'SIO_FLUSH');
    conn.socket.resume();
    t.ok((await conn.waitFor(data.length, 30000)).equals(data), 'every byte reported sent arrives');
    const tail = Buffer.from('<tail>');
    t.same(await send(spi, s, [tail]), [0, 0, tail.length], 'a later send');
    t.equal(await spi.WSPCloseSocket(s, e), 0);
    await conn.ended;
    t.ok(conn.received().equals(Buffer.concat([data, tail])), 'the peer has the send, then the later one, then FIN: nothing lost or out of order');
  });

  t.test(`${f}: Windows policy: a nonblocking send larger than a message returns at once, and the caller may reuse its buffer`, async (t) => {
    // A 256 KiB frame limit makes a 4 MiB send a stream, and a 512 KiB stream window keeps most of
    // it on the caller's side until the daemon has taken what went before: after the call returned.
    const d = await daemon(t, { limits: { defaultSndBuf: 8192, maxFrameBytes: 256 * 1024, streamWindowBytes: 512 * 1024, sendPolicy: S.SPIWIRE_SEND_POLICY_WINDOWS } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    await setNonBlocking(spi, s, true);
    const data = pattern(4 * 1024 * 1024, 13);
    const want = Buffer.from(data);
    const [r, , n] = await send(spi, s, [data]);
    t.same([r, n], [0, data.length], 'the whole 4 MiB is accepted at once');
    // The call has returned: the buffer is the caller's again (Winsock copied it, as send() does).
    data.fill(0x21);
    conn.socket.resume();
    t.ok((await conn.waitFor(want.length, 30000)).equals(want), 'the peer gets the bytes as they were at the call, not the ones written after it');
  });

  t.test(`${f}: Windows policy: shutdown(SD_SEND) sends FIN only after the queue drains`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    await setPolicy(spi, s, S.SPIWIRE_SEND_POLICY_WINDOWS);
    await setNonBlocking(spi, s, true);
    const data = pattern(8 * 1024 * 1024, 11);
    t.same((await send(spi, s, [data])).slice(0, 2), [0, 0]);
    const e = S.out(0);
    t.equal(await spi.WSPShutdown(s, S.SD_SEND, e), 0);
    let endedEarly = false;
    void conn.ended.then(() => (endedEarly = conn.received().length < data.length));
    conn.socket.resume();
    t.ok((await conn.waitFor(data.length, 30000)).equals(data));
    await conn.ended;
    t.notOk(endedEarly, 'FIN came after the last byte');
  });

  t.test(`${f}: reference policy (the default): short counts on a nonblocking send, and an unknown policy value is WSAEINVAL`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    const v = new Uint8Array(4);
    t.equal(await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_SPIWIRE_SEND_POLICY, v, S.out(4), e), 0);
    t.equal(readDword(v), S.SPIWIRE_SEND_POLICY_REFERENCE);
    await setNonBlocking(spi, s, true);
    let short = false;
    for (let i = 0; i < 400 && !short; i++) {
      const [r, , n] = await send(spi, s, [Buffer.alloc(100_000, 1)]);
      if (r === 0 && n < 100_000) short = true;
      if (r !== 0) break;
    }
    t.ok(short, 'a short count appears');
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SPIWIRE_SEND_POLICY, dword(7), 4, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSAEINVAL, 'an unknown policy value is WSAEINVAL');
  });

  t.test(`${f}: an overlapped call on a socket without WSA_FLAG_OVERLAPPED: WSAEINVAL (reference), a blocking call that still completes (Windows)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    const e = S.out(0);
    const ev = spi.WSACreateEvent();
    const ov = new S.WSAOVERLAPPED(ev);
    t.equal(await spi.WSPSend(s, [S.wsabuf('ref')], 1, null, 0, ov, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSAEINVAL, 'reference policy: WSAEINVAL');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 100, false), S.WSA_WAIT_TIMEOUT, 'and no completion');
    await setPolicy(spi, s, S.SPIWIRE_SEND_POLICY_WINDOWS);
    const sent = S.out(-1);
    t.equal(await spi.WSPSend(s, [S.wsabuf('windows')], 1, sent, 0, ov, null, null, e), 0, 'Windows policy: completes as a blocking call');
    t.equal(sent.value, 7);
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 2000, false), S.WSA_WAIT_EVENT_0, 'the event is signalled');
    const n = S.out(0);
    t.equal(await spi.WSPGetOverlappedResult(s, ov, n, false, S.out(0), e), S.TRUE);
    t.equal(n.value, 7);
    t.equal((await conn.waitFor(7)).toString(), 'windows');
  });
}
