/**
 * spiwire.waiting (proto/README.md section 12): a blocking call that has to wait is announced
 * before its reply, once; a call that completes at once is not. The SDK runs a thread's APCs only
 * in such a wait, as Windows' Winsock waits alertably in a blocking call.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { connectTo, connectedSocket, daemon, session, tcpPeer, tcpSocket, type Msg, type PeerConn, type RawSession } from './helpers/raw-client.js';

/** A session with a TCP socket connected to a loopback peer, and the peer's side. */
async function connected(t: Test): Promise<{ s: RawSession; h: number; conn: PeerConn }> {
  const d = await daemon(t);
  const s = await session(t, d.url);
  return { s, ...(await connectedSocket(s, await tcpPeer(t))) };
}

const waitingFor = (s: RawSession, id: number | string): Msg[] => s.messages.filter((m) => m.method === 'spiwire.waiting' && (m.params as { id: unknown }).id === id);

t.test('a blocking receive with no data is announced as waiting, before its reply; one with data is not', async (t) => {
  const { s, h, conn } = await connected(t);

  const waits = s.request('WSPRecv', { s: h, lengths: [16], flags: 0 });
  await s.wait((m) => m.method === 'spiwire.waiting' && (m.params as { id: unknown }).id === waits.id);
  t.same(waitingFor(s, waits.id).length, 1, 'spiwire.waiting names the receive');
  conn.socket.write('hello');
  const reply = await waits.response;
  t.equal(reply.result?.['ret'], 0, 'the receive completes with the peer\'s bytes');
  const order = s.messages.indexOf(waitingFor(s, waits.id)[0]!) < s.messages.findIndex((m) => m.id === waits.id);
  t.ok(order, 'the notification came before the reply');
  t.same(waitingFor(s, waits.id).length, 1, 'once');

  conn.socket.write('more');
  await t.resolves(
    (async () => {
      // Data is there once FIONREAD says so; the receive then completes without waiting.
      for (let i = 0; i < 200; i++) {
        const r = await s.call('WSPIoctl', { s: h, code: P.FIONREAD, input: new Uint8Array(0), outputLength: 4 });
        if (Buffer.from(r['output'] as Uint8Array).readUInt32LE(0) >= 4) return;
      }
      throw new Error('the bytes never arrived');
    })(),
  );
  const quick = s.request('WSPRecv', { s: h, lengths: [16], flags: 0 });
  const r = await quick.response;
  t.equal(r.result?.['ret'], 0, 'the second receive completes');
  t.same(waitingFor(s, quick.id), [], 'with no spiwire.waiting');
});

t.test('a blocking connect waits, after the socket\'s setup; an overlapped call run as a blocking one is not announced', async (t) => {
  const d = await daemon(t, { limits: { sendPolicy: 1 } });
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s);
  const c = s.request('WSPConnect', { s: h, name: { family: P.AF_INET, address: '127.0.0.1', port: peer.port }, namelen: 16 });
  t.equal((await c.response).result?.['ret'], 0, 'the connect succeeds');
  t.same(waitingFor(s, c.id).length, 1, 'and was announced as waiting, before its reply');
  t.ok(s.messages.indexOf(waitingFor(s, c.id)[0]!) < s.messages.findIndex((m) => m.id === c.id), 'in that order');
  const conn = await peer.next();
  // Windows policy: an OVERLAPPED on a socket made without WSA_FLAG_OVERLAPPED runs as a blocking call.
  const ov = s.request('WSPRecv', { s: h, lengths: [8], flags: 0, overlapped: { op: 1, thread: 0 } });
  conn.socket.write('x');
  const r = await ov.response;
  t.equal(r.result?.['ret'], 0, 'the overlapped receive, run as a blocking one, completes');
  t.same(waitingFor(s, ov.id), [], 'without spiwire.waiting: it is an overlapped call');
});

t.test('a blocking send that waits for room is announced', async (t) => {
  const { s, h, conn } = await connected(t);
  // The peer does not read: a send larger than SO_SNDBUF and the kernel's buffers waits for room.
  conn.socket.pause();
  const big = Buffer.alloc(8 * 1024 * 1024, 0x41);
  const send = s.request('WSPSend', { s: h, buffers: [big], flags: 0 }, 30000);
  await s.wait((m) => m.method === 'spiwire.waiting' && (m.params as { id: unknown }).id === send.id, 10000);
  t.pass('the send that waits for room was announced');
  conn.socket.resume();
  const r = await send.response;
  t.same([r.result?.['ret'], r.result?.['bytesSent']], [0, big.length], 'then it completes, every byte sent');
  await conn.waitFor(big.length, 20000);
  t.equal(conn.received().length, big.length, 'the peer got every byte');
});

t.test('a blocking accept with nothing queued waits; a nonblocking one does not announce anything', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const l = await tcpSocket(s);
  t.equal((await s.call('WSPBind', { s: l, name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 }))['ret'], 0);
  t.equal((await s.call('WSPListen', { s: l, backlog: 5 }))['ret'], 0);
  const name = (await s.call('WSPGetSockName', { s: l, namelen: 16 }))['name'] as P.SockAddr;
  const accepting = s.request('WSPAccept', { s: l });
  await s.wait((m) => m.method === 'spiwire.waiting');
  t.same(waitingFor(s, accepting.id).length, 1, 'the accept waits');
  const c = await tcpSocket(s);
  await connectTo(s, c, name.port);
  const a = await accepting.response;
  t.not(a.result?.['ret'], P.INVALID_SOCKET, 'then takes the connection');
  t.equal((await s.call('WSPIoctl', { s: l, code: P.FIONBIO, input: Buffer.from([1, 0, 0, 0]), outputLength: 0 }))['ret'], 0);
  const nb = s.request('WSPAccept', { s: l });
  t.equal((await nb.response).result?.['errno'], P.WSAEWOULDBLOCK, 'a nonblocking accept fails at once');
  t.same(waitingFor(s, nb.id), [], 'and is not announced');
});
