/**
 * The SDK and compact record headers (proto/README.md section 3, "Compact headers"): it writes
 * them to a daemon whose welcome says it reads them, never when connected with compact: false,
 * and never to a daemon that does not say so (an older daemon would refuse them). Bytes reach
 * a real peer in every case.
 */
import t, { type Test } from 'tap';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import * as S from '@spiwire/client';
import { connectedTcp, daemon, send, session, tcpPeer } from '../helpers/harness.js';

/** Counts the records the SDK receives, and how many of them came compact. */
function watch(spi: S.SpiSession): { all: number; compact: number } {
  const seen = { all: 0, compact: 0 };
  const ws = (spi.connection as unknown as { ws: WebSocket }).ws;
  ws.prependListener('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    for (const r of S.decodeFrame(data)) {
      seen.all++;
      if (r.ok && r.compact) seen.compact++;
    }
  });
  return seen;
}

async function sendAndCheck(t: Test, spi: S.SpiSession): Promise<void> {
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  t.same(await send(spi, s, [Buffer.from('ab'), Buffer.from('cd')]), [0, 0, 4]);
  t.equal((await conn.waitFor(4)).toString(), 'abcd');
}

t.test('by default the SDK writes compact headers to this daemon, and gets compact replies', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  t.equal(spi.welcome.compactHeaders, true);
  const seen = watch(spi);
  await sendAndCheck(t, spi);
  t.ok(seen.compact >= 1, `compact replies arrived (${seen.compact} of ${seen.all} records)`);
});

t.test('with compact: false every header stays JSON, both ways', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { compact: false });
  const seen = watch(spi);
  await sendAndCheck(t, spi);
  t.ok(seen.all >= 3, `records arrived (${seen.all})`);
  t.equal(seen.compact, 0, 'no compact record');
});

t.test('a daemon whose welcome does not offer compact headers is sent JSON only', async (t) => {
  // A stand-in for a daemon from before compact headers: it answers WSPSend and notes the form.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has(S.SUBPROTOCOL) ? S.SUBPROTOCOL : false) });
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())));
  await new Promise((r) => wss.once('listening', r));
  const forms: string[] = [];
  wss.on('connection', (ws) => {
    const limits = { maxFrameBytes: 1 << 24, maxPendingRequests: 1024, maxSockets: 64, defaultSndBuf: 65536, defaultRcvBuf: 65536 };
    ws.send(S.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.welcome', params: { session: 'old', version: '0.0.1', protocol: 1, limits } }));
    ws.on('message', (data: Buffer) => {
      for (const r of S.decodeFrame(data)) {
        if (!r.ok) continue;
        forms.push(r.compact ? 'compact' : 'json');
        const m = r.message as { id: number; params: { buffers: Uint8Array[] } };
        const bytes = m.params.buffers.reduce((n, b) => n + b.length, 0);
        ws.send(S.encodeFrame({ jsonrpc: '2.0', id: m.id, result: { ret: 0, errno: 0, bytesSent: bytes } }));
      }
    });
  });
  const spi = await S.connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  t.teardown(() => spi.close());
  t.equal(spi.welcome.compactHeaders, undefined);
  const e = S.out(0);
  const sent = S.out(0);
  t.equal(await spi.WSPSend(7, [S.wsabuf(Buffer.from('xyz'))], 1, sent, 0, null, null, null, e), 0);
  t.equal(sent.value, 3);
  t.same(forms, ['json'], 'the call went as JSON');
});
