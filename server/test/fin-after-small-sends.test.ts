/**
 * Small sends accepted in one turn are written together at its end (transport-buffer.ts); a
 * WSPShutdown(SD_SEND) or a graceful WSPCloseSocket in the same frame sends FIN, which must come
 * after them: the peer gets every byte reported sent, then the end of the stream.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectedSocket, daemon, session, tcpPeer } from './helpers/raw-client.js';

for (const how of ['WSPShutdown', 'WSPCloseSocket'] as const) {
  t.test(`${how} in the frame of 2,000 one-byte sends: the peer gets them all, then FIN`, async (t) => {
    const d = await daemon(t);
    const peer = await tcpPeer(t);
    const s = await session(t, d.url);
    const { h, conn } = await connectedSocket(s, peer);
    const N = 2000;
    const b = new P.FrameBuilder();
    for (let i = 0; i < N; i++) b.add({ jsonrpc: '2.0', id: `b-${i}`, method: 'WSPSend', params: { s: h, buffers: [new Uint8Array([i & 255])], flags: 0 } });
    b.add(how === 'WSPShutdown' ? { jsonrpc: '2.0', id: 'end', method: 'WSPShutdown', params: { s: h, how: P.SD_SEND } } : { jsonrpc: '2.0', id: 'end', method: 'WSPCloseSocket', params: { s: h } });
    s.ws.send(b.finish());
    const end = await s.wait((m) => m.id === 'end');
    t.equal(end.result?.['ret'], 0, `${how} succeeds`);
    const sent = s.messages.filter((m) => typeof m.id === 'string' && m.id.startsWith('b-') && m.result?.['bytesSent'] === 1).length;
    t.equal(sent, N, 'every send reported its byte sent');
    t.equal(await conn.gone, 'end', 'the peer sees the end of the stream');
    t.same([...conn.received()], Array.from({ length: N }, (_, i) => i & 255), 'after every byte, in order');
  });
}
