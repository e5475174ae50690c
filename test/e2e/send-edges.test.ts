/**
 * Rows of the conformance matrix that need a test of their own: MSG_DONTROUTE on its own, MSG_OOB
 * without the C library, a send from a receive's completion routine, Windows-policy background
 * data after its thread exits, WSPGetOverlappedResult(fWait TRUE) without an event, SO_SNDBUF 0, and
 * UDP sends through node:dgram without it.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import { FAMILIES, addr, allReceived, af, connectedTcp, daemon, dword, namelen, pattern, send, session, setNonBlocking, tcpPeer, udpPeer } from '../helpers/harness.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

for (const f of FAMILIES) {
  t.test(`${f}: MSG_DONTROUTE alone is accepted and the bytes arrive (TCP and UDP)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer);
    t.same(await send(spi, s, [Buffer.from('direct')], S.MSG_DONTROUTE), [0, 0, 6]);
    t.equal((await conn.waitFor(6)).toString(), 'direct');
    const up = await udpPeer(t, f);
    const e = S.out(0);
    const u = await spi.WSPSocket(af(f), S.SOCK_DGRAM, 0, null, 0, 0, e);
    const sent = S.out(0);
    t.equal(await spi.WSPSendTo(u, [S.wsabuf('dgram')], 1, sent, S.MSG_DONTROUTE, addr(f, up.port), namelen(f), null, null, null, e), 0);
    await up.waitFor(1);
    t.equal(up.datagrams[0]!.data.toString(), 'dgram');
  });

  t.test(`${f}: a completion routine of an overlapped WSPRecv posts a WSPSend`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    const thread = spi.createThread();
    const e = S.out(0);
    const buf = new Uint8Array(16);
    let sendRet: number | null = null;
    const routine = async (err: number, n: number): Promise<void> => {
      t.equal(err, 0);
      // Answer what was received, from inside the receive's routine.
      sendRet = await spi.WSPSend(s, [S.wsabuf(Buffer.from(`re:${Buffer.from(buf.subarray(0, n)).toString()}`))], 1, null, 0, new S.WSAOVERLAPPED(), null, null, S.out(0));
    };
    const r = await thread.WSPRecv(s, [S.wsabuf(buf)], 1, null, S.out(0), new S.WSAOVERLAPPED(), routine, thread.id, e);
    t.ok(r === 0 || e.value === S.WSA_IO_PENDING);
    conn.socket.write('ping');
    for (let i = 0; i < 50 && sendRet === null; i++) await thread.SleepEx(100, true);
    t.ok(sendRet === 0 || sendRet === S.SOCKET_ERROR, 'the routine ran and its send returned');
    t.equal((await conn.waitFor(7)).toString(), 're:ping', 'the peer got the answer sent from the routine');
  });

  t.test(`${f}: Windows policy: background data keeps flowing after the issuing thread exits`, async (t) => {
    const d = await daemon(t, { limits: { defaultSndBuf: 8192, sendPolicy: S.SPIWIRE_SEND_POLICY_WINDOWS } });
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer);
    const thread = spi.createThread();
    await setNonBlocking(spi, s, true);
    const data = pattern(4 * 1024 * 1024, 13);
    const sent = S.out(0);
    t.equal(await thread.WSPSend(s, [S.wsabuf(data)], 1, sent, 0, null, null, thread.id, S.out(0)), 0);
    t.equal(sent.value, data.length, 'the whole buffer was accepted');
    await thread.exit();
    conn.socket.resume();
    t.ok((await conn.waitFor(data.length, 30000)).equals(data), 'every byte arrives after the thread exited');
  });

  t.test(`${f}: WSPGetOverlappedResult with fWait TRUE on a pending operation without an event: WSAEINVAL`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f);
    const { s } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    const e = S.out(0);
    const ov = new S.WSAOVERLAPPED();
    // A receive with no data to come stays pending.
    t.equal(await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(8))], 1, null, S.out(0), ov, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING);
    const err = S.out(0);
    t.equal(await spi.WSPGetOverlappedResult(s, ov, S.out(0), true, S.out(0), err), S.FALSE);
    t.equal(err.value, S.WSAEINVAL, 'fWait TRUE needs an event');
    t.equal(await spi.WSPGetOverlappedResult(s, ov, S.out(0), false, S.out(0), err), S.FALSE);
    t.equal(err.value, S.WSA_IO_INCOMPLETE, 'still pending');
  });

  t.test(`${f}: with SO_SNDBUF 0 an overlapped send stays pending until the peer reads`, { skip: libc() ? false : 'the C library cannot be loaded here' }, async (t) => {
    const native = libc()!;
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await tcpPeer(t, f, { paused: true });
    const { s, conn } = await connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
    // A peer with a small receive window, so the kernel cannot swallow the send either.
    native.setInt(fdOf(conn.socket)!, native.c.SOL_SOCKET, native.c.SO_RCVBUF, 4096);
    const e = S.out(0);
    t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, dword(0), 4, e), 0);
    const ev = spi.WSACreateEvent();
    const ov = new S.WSAOVERLAPPED(ev);
    const data = pattern(256 * 1024, 17);
    t.equal(await spi.WSPSend(s, [S.wsabuf(data)], 1, null, 0, ov, null, null, e), S.SOCKET_ERROR);
    t.equal(e.value, S.WSA_IO_PENDING, 'pending at once');
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 500, false), S.WSA_WAIT_TIMEOUT, 'and still pending while the peer does not read');
    t.equal(ov.Internal, S.WSS_OPERATION_IN_PROGRESS);
    conn.socket.resume();
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 10000, false), S.WSA_WAIT_EVENT_0, 'completes once the peer reads');
    t.ok((await conn.waitFor(data.length)).equals(data));
  });
}

/** A daemon in a process of its own without the C library (SPIWIRE_NO_NATIVE=1); its URL. */
async function daemonWithoutNative(t: Test): Promise<string> {
  const child = spawn(process.execPath, ['server/dist/src/main.js', '--port', '0', '--log-level', 'info'], {
    cwd: root,
    env: { ...process.env, SPIWIRE_NO_NATIVE: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    child.kill('SIGTERM');
  });
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no url from the daemon')), 10000);
    child.stdout!.on('data', (b: Buffer) => {
      const m = /"url":"([^"]+)"/.exec(b.toString());
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
}

t.test('MSG_OOB on TCP fails with WSAEOPNOTSUPP when the C library is not available (SPIWIRE_NO_NATIVE=1)', async (t) => {
  const spi = await session(t, await daemonWithoutNative(t));
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same((await send(spi, s, [Buffer.from('!')], S.MSG_OOB)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP]);
  t.same(await send(spi, s, [Buffer.from('normal')]), [0, 0, 6], 'ordinary sends still work');
  await conn.waitFor(6);
  // Closed, the socket sends FIN after its last byte: then the peer has everything it will get.
  t.equal((await allReceived(t, spi, s, conn)).toString(), 'normal', 'nothing of the refused send reached the peer');
});

for (const f of FAMILIES) {
  t.test(`${f}: without the C library, a frame of overlapped UDP sends goes through node:dgram, each completing at once, once`, async (t) => {
    // node:dgram reports each datagram in a callback of its own, after the frame: every send's
    // outcome (and reply) comes from there, not from the batch the session sends after a frame.
    const spi = await session(t, await daemonWithoutNative(t));
    const peer = await udpPeer(t, f);
    peer.socket.setRecvBufferSize(4 * 1024 * 1024);
    const e = S.out(0);
    const s = await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
    t.equal(await spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, e), 0, 'connected');
    const payloads = Array.from({ length: 64 }, (_, i) => pattern(1 + ((i * 131) % 1500), i + 5));
    const routines = payloads.map(() => 0);
    const results = await Promise.all(
      payloads.map(async (p, i) => {
        const sent = S.out(0);
        const err = S.out(0);
        const ret = await spi.WSPSend(s, [S.wsabuf(p)], 1, sent, 0, new S.WSAOVERLAPPED(), () => {
          routines[i]!++;
        }, null, err);
        return [ret, ret === 0 ? sent.value : err.value];
      }),
    );
    t.same(results, payloads.map((p) => [0, p.length]), 'every send completed at once with its full count');
    await peer.waitFor(payloads.length);
    t.equal(peer.datagrams.findIndex((dg, i) => !dg.data.equals(payloads[i]!)), -1, 'the peer received each datagram whole, in the order sent');
    await spi.SleepEx(0, true);
    t.same(routines, payloads.map(() => 1), 'each completion routine ran once');
  });
}
