/**
 * Compact record headers between a client and the daemon (proto/README.md section 3, "Compact
 * headers"): a client that writes only JSON only ever reads JSON; once a client sends a compact
 * WSPSend, its replies come compact; the bytes reach the peer either way; a broken compact
 * record is refused alone and the session goes on.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectedSocket, connectTo, daemon, session, tcpPeer, tcpSocket, type Msg, type RawSession } from './helpers/raw-client.js';

/** Sends one request in a frame of its own, compact when it has a compact form; resolves with the reply. */
function call(s: RawSession, compact: boolean, msg: { id: number; method: string; params: Record<string, unknown> }): Promise<Msg> {
  const b = new P.FrameBuilder();
  b.compact = compact;
  b.add({ jsonrpc: '2.0', ...msg });
  s.ws.send(b.finish());
  return s.wait((m) => m.id === msg.id && (m.result !== undefined || m.error !== undefined));
}

t.test('JSON clients get JSON; a compact WSPSend turns the replies compact; the peer gets every byte in order', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const { h, conn } = await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED);

  const welcome = await s.wait((m) => m.method === 'spiwire.welcome');
  t.equal(welcome.params?.['compactHeaders'], true, 'the welcome says the daemon reads compact headers');

  const first = await call(s, false, { id: 1, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('json;')], flags: 0 } });
  t.same(first.result, { ret: 0, errno: 0, bytesSent: 5 });
  t.equal(s.compactRecords, 0, 'a JSON client gets JSON replies');

  const second = await call(s, true, { id: 2, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('com'), Buffer.from('pact;')], flags: 0 } });
  t.same(second.result, { ret: 0, errno: 0, bytesSent: 8 });
  t.equal(s.compactRecords, 1, 'the reply to a compact call is compact');

  const third = await call(s, true, { id: 3, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('ov;')], flags: 0, overlapped: { op: 77, thread: 4 } } });
  t.same(third.result, { ret: 0, errno: 0, bytesSent: 3, completion: { error: 0, bytes: 3, flags: 0 } }, 'an immediate overlapped completion rides in the compact reply');
  t.equal(s.compactRecords, 2);

  // Replies without a compact shape stay JSON on a compact session.
  const name = await call(s, false, { id: 4, method: 'WSPGetSockName', params: { s: h, namelen: 16 } });
  t.equal(name.result?.['ret'], 0);
  t.equal(s.compactRecords, 2, 'a reply with a sockaddr is JSON');

  t.equal((await conn.waitFor(16)).toString(), 'json;compact;ov;', 'the peer received every byte, in order');
});

t.test('a broken compact record is PARSE_ERROR with id null; the rest of its frame and the session go on', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const { h, conn } = await connectedSocket(s, peer);
  const good = new P.FrameBuilder();
  good.compact = true;
  good.add({ jsonrpc: '2.0', id: 5, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('after')], flags: 0 } });
  const goodFrame = good.finish();
  // A WSPSend header claiming one 9-byte buffer over 2 bytes of data.
  const bad = Buffer.alloc(4 + 20 + 4 + 2);
  bad.writeUInt32LE(20, 0);
  bad.set([1, 0, 1, 0], 4);
  bad.writeUInt32LE(4, 8);
  bad.writeUInt32LE(h, 12);
  bad.writeUInt32LE(0, 16);
  bad.writeUInt32LE(9, 20);
  bad.writeUInt32LE(2, 24);
  s.ws.send(Buffer.concat([bad, goodFrame]));
  const err = await s.wait((m) => m.id === null && m.error !== undefined);
  t.equal(err.error?.['code'], P.PARSE_ERROR);
  t.match(String(err.error?.['message']), /^compact header: /);
  const ok = await s.wait((m) => m.id === 5);
  t.same(ok.result, { ret: 0, errno: 0, bytesSent: 5 });
  t.equal((await conn.waitFor(5)).toString(), 'after', 'only the good record\'s bytes reached the peer');
  t.equal(s.undecodable.length, 0, 'the daemon sent nothing undecodable');
});

t.test('a pending send completes with a compact spiwire.completion; a failed call gets a compact reply with ret -1', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  const notConnected = await call(s, true, { id: 1, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('x')], flags: 0 } });
  t.same(notConnected.result, { ret: -1, errno: P.WSAENOTCONN }, 'ret -1 survives the signed field');
  t.equal(s.compactRecords, 1);
  await connectTo(s, h, peer.port);
  const conn = await peer.next();
  // SO_SNDBUF 0: nothing is buffered, so the send pends until the kernel has its bytes.
  t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: new Uint8Array(4), optlen: 4 }), { ret: 0, errno: 0 });
  const pending = await call(s, true, { id: 2, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('pending')], flags: 0, overlapped: { op: 9, thread: 4 } } });
  t.same(pending.result, { ret: -1, errno: P.WSA_IO_PENDING });
  const done = await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 9);
  t.same(done.params, { op: 9, s: h, error: 0, bytes: 7, flags: 0 });
  t.equal(s.compactRecords, 3, 'the reply and the completion both came compact');
  t.equal((await conn.waitFor(7)).toString(), 'pending');
});

t.test('a compact WSPSend with more than 1024 buffers is INVALID_PARAMS, answered by id, as in JSON', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const h = await tcpSocket(s);
  // The builder would write this call as JSON (it is not a valid compact shape): build it by hand.
  const n = P.MAX_BUFFER_COUNT + 1;
  const header = Buffer.alloc(16 + 4 * n);
  header.set([1, 0, n & 0xff, n >> 8], 0);
  header.writeUInt32LE(41, 4);
  header.writeUInt32LE(h, 8);
  header.writeUInt32LE(0, 12);
  const frame = Buffer.alloc(4 + header.length + 4);
  frame.writeUInt32LE(header.length, 0);
  header.copy(frame, 4);
  s.ws.send(frame);
  const m = await s.wait((x) => x.id === 41);
  t.equal(m.error?.['code'], P.INVALID_PARAMS);
  t.match(String(m.error?.['message']), /params\.buffers must be an array of at most 1024 byte strings/);
});
