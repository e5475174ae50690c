/**
 * Overlapped UDP sends complete when the session sends the frame's batches of datagrams, after
 * handling the frame's records, and they stay out of the session's tables until then (session.ts,
 * overlapped and listStartsInFrame): as on Windows, where such a send completes at once. What the
 * tables did for them must still hold within the frame: an op id in use is refused, and a thread's
 * exit does not cancel a send that completed. A frame that yields (its turn spent) sends its
 * batches at each stop, so a send completes before the records after the stop are read.
 */
import t, { type Test } from 'tap';
import * as dgram from 'node:dgram';
import * as P from '@spiwire/proto';
import { connectTo, daemon, session, turnAlwaysSpent, udpSocket, within, type Msg } from './helpers/raw-client.js';

/** A UDP receiver on loopback that keeps what it gets, in order. */
async function receiver(t: Test): Promise<{ port: number; got: string[]; waitFor(n: number): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
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
