/**
 * How often the daemon looks at the clock while it works through a frame (session.ts,
 * handleRecords): after each record that is not compact, since one such record can cost
 * milliseconds (a WSPSelect over a thousand sockets, a large JSON header), and once every 32
 * compact ones. Made visible by a turn budget whose time is always spent: a frame then yields
 * after each clock look, and its replies leave in as many messages.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { TurnBudget } from '../src/internals.js';
import { daemon, session, udpSocket } from './helpers/raw-client.js';

t.test('with the turn always spent, a frame of JSON calls yields after each one: one reply per message', async (t) => {
  const spent = TurnBudget.prototype.spent;
  TurnBudget.prototype.spent = () => true;
  t.teardown(() => {
    TurnBudget.prototype.spent = spent;
  });
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
