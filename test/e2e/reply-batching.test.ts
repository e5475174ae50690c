/**
 * When the daemon's replies leave: at the end of the first small frame of a round of the event
 * loop, at once; those to later frames of the round, and to large frames, together at the round's
 * end (one write and one wake-up of the client for a burst, not a system call per frame). The client here is a plain WebSocket in the daemon's own
 * process: what it writes in one synchronous run is all in the daemon's socket before the daemon
 * reads any of it, so the round is known.
 */
import t from 'tap';
import WebSocket from 'ws';
import * as S from '@spiwire/client';
import { daemon, pattern, tcpPeer } from '../helpers/harness.js';

type Message = Record<string, unknown>;

/** A plain client: each message the daemon sent, as its records (acks left out). */
async function rawClient(url: string): Promise<{ ws: WebSocket; messages: Message[][]; replies(ids: number[]): Promise<Map<number, Message>> }> {
  const ws = new WebSocket(url, [S.SUBPROTOCOL]);
  const messages: Message[][] = [];
  let waiters: Array<() => void> = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    const recs = binary ? S.decodeFrame(data) : [S.decodeText(data.toString())];
    const got: Message[] = [];
    for (const r of recs) if (r.ok && S.isRecord(r.message) && r.message['method'] !== 'spiwire.ack') got.push(r.message);
    messages.push(got);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
  /** Waits for the replies to these ids. */
  const replies = async (ids: number[]): Promise<Map<number, Message>> => {
    for (;;) {
      const found = new Map<number, Message>();
      for (const m of messages.flat()) if (typeof m['id'] === 'number' && ids.includes(m['id'])) found.set(m['id'], m);
      if (found.size === ids.length) return found;
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  return { ws, messages, replies };
}

const call = (id: number, method: string, params: object): Uint8Array => S.encodeFrame({ jsonrpc: '2.0', id, method, params });

t.test('replies to large frames read in one round leave in one message; the first small frame of a round is answered at once, the others of the round together', async (t) => {
  // Room in the transport buffer for every send below, so that each completes in its own call.
  const d = await daemon(t, { limits: { defaultSndBuf: 1024 * 1024 } });
  const peer = await tcpPeer(t, 'ipv4');
  const c = await rawClient(d.url);
  t.teardown(() => c.ws.terminate());
  c.ws.send(call(1, 'WSPSocket', { af: S.AF_INET, type: S.SOCK_STREAM, protocol: S.IPPROTO_TCP, g: 0, flags: 0 }));
  const s = (await c.replies([1])).get(1)!['result'] as { ret: number };
  t.ok(s.ret > 0, `WSPSocket: ${s.ret}`);
  c.ws.send(call(2, 'WSPConnect', { s: s.ret, name: { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, namelen: 16 }));
  t.same((await c.replies([2])).get(2)!['result'], { ret: 0, errno: 0 }, 'WSPConnect');
  const conn = await peer.nextConnection();

  // Three blocking WSPSends of 40 KiB, a frame each, written before the daemon reads any.
  const large = [10, 11, 12];
  const payloads = large.map((id) => pattern(40 * 1024, id));
  let before = c.messages.length;
  for (const [i, id] of large.entries()) c.ws.send(call(id, 'WSPSend', { s: s.ret, buffers: [payloads[i]!], flags: 0 }));
  const got = await c.replies(large);
  for (const id of large) t.match(got.get(id)!['result'], { ret: 0, errno: 0 }, `WSPSend ${id} succeeded`);
  const carrying = c.messages.slice(before).filter((m) => m.some((r) => large.includes(r['id'] as number)));
  t.equal(carrying.length, 1, 'the three replies came in one message');
  const all = Buffer.concat(payloads);
  t.ok((await conn.waitFor(all.length)).equals(all), 'the peer received the three sends, in order');

  // Three small ones, written the same way: the first is answered as soon as it is handled (a lone
  // call's reply never waits), the other two at the end of the round, in one message.
  const small = [20, 21, 22];
  before = c.messages.length;
  for (const id of small) c.ws.send(call(id, 'WSPSend', { s: s.ret, buffers: [Buffer.from(`small-${id}`)], flags: 0 }));
  await c.replies(small);
  const each = c.messages.slice(before).filter((m) => m.some((r) => small.includes(r['id'] as number)));
  t.same(each.map((m) => m.filter((r) => small.includes(r['id'] as number)).map((r) => r['id'])), [[20], [21, 22]], 'the first alone, then the other two in one message');
  t.equal((await conn.waitFor(all.length + 24)).subarray(all.length).toString(), 'small-20small-21small-22', 'and the peer got them after the large ones');
});
