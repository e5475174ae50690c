/**
 * Overlapped UDP sends complete when the session sends the frame's batches of datagrams, after
 * handling the frame's records, and they stay out of the session's tables until then (session.ts,
 * overlapped and listStartsInFrame): as on Windows, where such a send completes at once. What the
 * tables did for them must still hold within the frame: an op id in use is refused, the per-socket
 * limit applies, and a thread's exit cancels no send that completed and answers after the thread's
 * earlier sends. A frame that yields (its turn spent) sends its batches at each stop, so a send
 * completes before the records after the stop are read. A datagram that goes through node:dgram
 * (a destination with an IPv6 scope) keeps its place: the batch does not overtake it, and a
 * close in the same frame waits for it.
 */
import t, { type Test } from 'tap';
import * as dgram from 'node:dgram';
import * as P from '@spiwire/proto';
import type { StartOptions } from '../src/index.js';
import { connectTo, daemon, session, turnAlwaysSpent, udpSocket, within, type Msg, type RawSession } from './helpers/raw-client.js';

/** A UDP receiver on loopback that keeps what it gets, in order. */
async function receiver(t: Test, v6 = false): Promise<{ port: number; got: string[]; waitFor(n: number): Promise<void> }> {
  const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
  await new Promise<void>((r) => sock.bind(0, v6 ? '::1' : '127.0.0.1', r));
  t.teardown(() => sock.close());
  const got: string[] = [];
  let wake: (() => void) | null = null;
  sock.on('message', (m) => {
    got.push(m.toString());
    wake?.();
  });
  const arrived = (n: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const check = (): void => (got.length >= n ? resolve() : void (wake = check));
      check();
    });
  return {
    port: sock.address().port,
    got,
    waitFor: async (n) => {
      if ((await within(arrived(n), 5000, 'late')) === 'late') throw new Error(`${n} datagrams did not arrive (got ${got.length})`);
    },
  };
}

function send(id: string, h: number, text: string, op: number, thread: number): object {
  return { jsonrpc: '2.0', id, method: 'WSPSend', params: { s: h, buffers: [Buffer.from(text)], flags: 0, overlapped: { op, thread } } };
}

for (const spent of [false, true]) {
  const how = spent ? 'a frame yielding after every call: a completed send frees its op id for the next' : 'in one frame: an op id still in use is refused';
  t.test(`${how}; a thread's exit cancels no completed send`, async (t) => {
    if (spent) turnAlwaysSpent(t);
    const d = await daemon(t);
    const s = await session(t, d.url);
    const peer = await receiver(t);
    const h = await udpSocket(s, P.AF_INET, P.WSA_FLAG_OVERLAPPED);
    await connectTo(s, h, peer.port);
    const b = new P.FrameBuilder();
    b.add(send('a', h, 'first', 5, 7));
    b.add(send('b', h, 'same op', 5, 7));
    b.add(send('c', h, 'third', 6, 7));
    b.add({ jsonrpc: '2.0', id: 'exit', method: 'spiwire.threadExit', params: { thread: 7 } });
    s.ws.send(b.finish());
    const reply = (id: string): Promise<Msg> => s.wait((m) => m.id === id);
    const [a, dup, c, exit] = await Promise.all(['a', 'b', 'c', 'exit'].map(reply));
    t.same([a!.result?.['ret'], a!.result?.['bytesSent'], (a!.result?.['completion'] as Record<string, unknown> | undefined)?.['bytes']], [0, 5, 5], 'the first send completed at once, its completion in its reply');
    if (spent) t.same([dup!.result?.['ret'], dup!.result?.['bytesSent']], [0, 7], 'the first had completed when the frame went on: its op id was free again');
    else t.same([dup!.error?.['code'], (dup!.error?.['data'] as Record<string, unknown> | undefined)?.['field']], [P.INVALID_PARAMS, 'overlapped.op'], 'the second with the same op id: INVALID_PARAMS');
    t.same([c!.result?.['ret'], c!.result?.['bytesSent']], [0, 5], 'the third completed at once');
    t.same(exit!.result, { ret: 0, errno: 0, cancelled: 0 }, 'the thread exit found nothing to cancel');
    const accepted = spent ? ['first', 'same op', 'third'] : ['first', 'third'];
    await peer.waitFor(accepted.length);
    t.same(peer.got, accepted, 'the peer received the accepted sends, in order');
    t.equal(s.messages.filter((m) => m.method === 'spiwire.completion').length, 0, 'no completion notification: each went with its reply');
    // The frame is over: op 5 is free again.
    const again = await s.call('WSPSend', { s: h, buffers: [Buffer.from('later')], flags: 0, overlapped: { op: 5, thread: 7 } });
    t.same([again['ret'], again['bytesSent']], [0, 5], 'op 5 may be used again in the next frame');
    await peer.waitFor(accepted.length + 1);
    t.equal(peer.got[accepted.length], 'later', 'and its datagram arrives');
  });
}

/** ::1, port; scopeId 1 (the loopback interface) makes node:dgram send it, not the batch. */
const v6 = (port: number, scopeId = 0): P.SockAddr => ({ family: P.AF_INET6, address: '::1', port, scopeId });

function sendTo(id: string, h: number, text: string, port: number, op: number, scopeId = 0): object {
  return { jsonrpc: '2.0', id, method: 'WSPSendTo', params: { s: h, buffers: [Buffer.from(text)], flags: 0, to: v6(port, scopeId), tolen: 28, overlapped: { op, thread: 7 } } };
}

async function boundV6(s: RawSession): Promise<number> {
  const h = await udpSocket(s, P.AF_INET6, P.WSA_FLAG_OVERLAPPED);
  const r = await s.call('WSPBind', { s: h, name: v6(0), namelen: 28 });
  if (r['ret'] !== 0) throw new Error(`WSPBind failed: ${String(r['errno'])}`);
  return h;
}

/** A daemon (with limits), a session, an IPv6 receiver and a bound overlapped IPv6 UDP socket. */
async function v6Setup(t: Test, limits: StartOptions['limits'] = {}): Promise<{ s: RawSession; peer: Awaited<ReturnType<typeof receiver>>; h: number }> {
  const d = await daemon(t, { limits });
  const s = await session(t, d.url);
  const peer = await receiver(t, true);
  return { s, peer, h: await boundV6(s) };
}

const replies = (s: RawSession, ids: string[]): Promise<Msg[]> => Promise.all(ids.map((id) => s.wait((m) => m.id === id)));

t.test('a datagram node:dgram sends (scoped destination) then batched ones, in one frame: they arrive in order', async (t) => {
  const { s, peer, h } = await v6Setup(t);
  const b = new P.FrameBuilder();
  const ids = ['0', '1', '2', '3', '4'];
  for (const [i, id] of ids.entries()) b.add(sendTo(id, h, id, peer.port, i + 1, i === 0 ? 1 : 0));
  s.ws.send(b.finish());
  t.same((await replies(s, ids)).map((m) => m.result?.['ret']), [0, 0, 0, 0, 0], 'each completed at once');
  await peer.waitFor(ids.length);
  t.same(peer.got, ids, 'in the order sent: the batch did not overtake the one in node\'s address lookup');
});

t.test('WSPCloseSocket right after a datagram node:dgram sends, in one frame: the send is answered and its datagram goes', async (t) => {
  const { s, peer, h } = await v6Setup(t);
  const b = new P.FrameBuilder();
  b.add(sendTo('send', h, 'last', peer.port, 9, 1));
  b.add({ jsonrpc: '2.0', id: 'close', method: 'WSPCloseSocket', params: { s: h } });
  s.ws.send(b.finish());
  const [send, close] = await replies(s, ['send', 'close']);
  t.same([send!.result?.['ret'], send!.result?.['bytesSent']], [0, 4], 'the send completed at once');
  t.equal(close!.result?.['ret'], 0, 'the close succeeded');
  await peer.waitFor(1);
  t.same(peer.got, ['last'], 'the datagram went before the socket did');
  const h2 = await boundV6(s);
  const again = await s.call('WSPSendTo', { s: h2, buffers: [Buffer.from('next')], flags: 0, to: v6(peer.port), tolen: 28, overlapped: { op: 9, thread: 7 } });
  t.equal(again['ret'], 0, 'op 9 is free again');
});

t.test('the per-socket limit of pending operations holds for a frame of sends that node:dgram queues', async (t) => {
  const LIMIT = 8;
  const N = 200;
  const { s, peer, h } = await v6Setup(t, { maxOutstandingOpsPerSocket: LIMIT });
  const b = new P.FrameBuilder();
  const ids = Array.from({ length: N }, (_, i) => `s${i}`);
  // The first names a scope: it goes through node:dgram, and the others follow it there.
  for (const [i, id] of ids.entries()) b.add(sendTo(id, h, id, peer.port, 1000 + i, i === 0 ? 1 : 0));
  s.ws.send(b.finish());
  const answers = await replies(s, ids);
  const accepted = answers.filter((m) => m.result?.['ret'] === 0).map((m) => m.id as string);
  const refused = answers.filter((m) => m.result?.['errno'] === P.WSAEWOULDBLOCK).length;
  t.equal(accepted.length + refused, N, 'each send completed at once or was refused with WSAEWOULDBLOCK');
  t.ok(refused > 0, `past ${LIMIT} operations under way on the socket, WSAEWOULDBLOCK (${refused} of ${N})`);
  await peer.waitFor(accepted.length);
  t.same(peer.got, accepted, 'the peer received exactly the accepted ones, in order');
});

t.test("spiwire.threadExit after the thread's datagram sends, in one frame: answered after them", async (t) => {
  const { s, peer, h } = await v6Setup(t);
  for (const scope of [0, 1]) {
    const how = scope === 0 ? 'batched' : 'through node:dgram';
    const before = s.messages.length;
    const b = new P.FrameBuilder();
    b.add(sendTo(`send${scope}`, h, how, peer.port, 5 + scope, scope));
    b.add({ jsonrpc: '2.0', id: `exit${scope}`, method: 'spiwire.threadExit', params: { thread: 7 } });
    s.ws.send(b.finish());
    const [send, exit] = await replies(s, [`send${scope}`, `exit${scope}`]);
    t.same(send!.result?.['ret'], 0, `${how}: the send completed at once`);
    t.same(exit!.result, { ret: 0, errno: 0, cancelled: 0 }, `${how}: nothing to cancel`);
    t.same(s.messages.slice(before).map((m) => m.id), [`send${scope}`, `exit${scope}`], `${how}: the send's reply (its completion) came before the thread exit's answer`);
  }
  await peer.waitFor(2);
});
