/**
 * How often the daemon looks at the clock while it works through a frame (session.ts,
 * handleRecords): after each record that is not compact, since one such record can cost
 * milliseconds (a WSPSelect over a thousand sockets, a large JSON header), and once every 32
 * compact ones. Made visible by a turn budget whose time is always spent: a frame then yields
 * after each clock look, and its replies leave in as many messages.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectedSocket, daemon, session, tcpPeer, turnAlwaysSpent, udpSocket } from './helpers/raw-client.js';

t.test('with the turn always spent, a frame of JSON calls yields after each one: one reply per message', async (t) => {
  turnAlwaysSpent(t);
  const d = await daemon(t);
  const s = await session(t, d.url);
  const h = await udpSocket(s);
  const messages: number[] = [];
  s.ws.on('message', (data: Buffer, binary: boolean) => {
    if (!binary) return;
    const ids = P.decodeFrame(data).flatMap((r) => (r.ok && P.isRecord(r.message) && typeof r.message['id'] === 'string' && r.message['id'].startsWith('turn-') ? [1] : []));
    if (ids.length > 0) messages.push(ids.length);
  });
  const b = new P.FrameBuilder();
  for (let i = 0; i < 10; i++) b.add({ jsonrpc: '2.0', id: `turn-${i}`, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } });
  s.ws.send(b.finish());
  const last = await s.wait((m) => m.id === 'turn-9');
  t.same(last.result?.['ret'], 0, 'the last call is answered');
  t.same(messages, Array.from({ length: 10 }, () => 1), 'ten messages of one reply each: the frame yielded after every call');
});

t.test('with the turn always spent, spiwire.threadExit cancels 64 operations a turn: completions in as many messages', async (t) => {
  turnAlwaysSpent(t);
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const { h } = await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED);
  // Every send on the socket waits: the fault holds them for ten minutes.
  await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'block', ms: 600000 } } });
  const OPS = 1024;
  const b = new P.FrameBuilder();
  for (let i = 0; i < OPS; i++) b.add({ jsonrpc: '2.0', id: `send-${i}`, method: 'WSPSend', params: { s: h, buffers: [new Uint8Array([i & 255])], flags: 0, overlapped: { op: i + 1, thread: 9 } } });
  s.ws.send(b.finish());
  await s.wait((m) => m.id === `send-${OPS - 1}`);
  t.equal(s.messages.filter((m) => typeof m.id === 'string' && m.id.startsWith('send-') && m.result?.['errno'] === P.WSA_IO_PENDING).length, OPS, 'every send pends');
  const perMessage: number[] = [];
  s.ws.on('message', (data: Buffer, binary: boolean) => {
    if (!binary) return;
    const n = P.decodeFrame(data).filter((r) => r.ok && P.isRecord(r.message) && r.message['method'] === 'spiwire.completion').length;
    if (n > 0) perMessage.push(n);
  });
  const exit = await s.call('spiwire.threadExit', { thread: 9 }, 10000);
  t.same(exit, { ret: 0, errno: 0, cancelled: OPS }, 'threadExit cancels them all');
  const aborted = s.messages.filter((m) => m.method === 'spiwire.completion' && m.params?.['error'] === P.WSA_OPERATION_ABORTED).map((m) => m.params?.['op']);
  t.same(aborted, Array.from({ length: OPS }, (_, i) => i + 1), 'each completes once with WSA_OPERATION_ABORTED, oldest first');
  // (Without the turns they would go 256 to a message, as many records as one may hold before it is sent.)
  t.same(perMessage, Array.from({ length: OPS / 64 }, () => 64), 'their completions went out a turn at a time, 64 in each');
});
