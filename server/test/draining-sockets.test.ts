/**
 * A closed TCP socket whose accepted bytes have not reached the kernel yet keeps its connection
 * (and descriptor) until they have (draining.ts): it counts against the session's socket limit
 * and the daemon's, so that closing sockets toward peers that never read cannot run the daemon
 * out of descriptors. Once the bytes are delivered, the room is back.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectTo, daemon, session, silentPeer, tcpSocket, until } from './helpers/raw-client.js';

t.test('closed sockets still delivering count against maxSockets until their bytes are delivered', async (t) => {
  const peer = await silentPeer(t);
  const MAX = 4;
  const d = await daemon(t, { limits: { maxSocketsPerSession: MAX, drainMs: 100 } });
  const s = await session(t, d.url);
  const port = peer.port;
  let sent = 0;
  for (let i = 0; i < MAX; i++) {
    const h = await tcpSocket(s);
    await connectTo(s, h, port);
    await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
    // Nonblocking sends until the kernel and the transport buffer are full: some bytes are
    // accepted and not yet in the kernel when the socket closes.
    for (let k = 0; k < 10000; k++) {
      const r = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(65536)], flags: 0 });
      if (r['errno'] === P.WSAEWOULDBLOCK) break;
      sent += r['bytesSent'] as number;
    }
    t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0, `socket ${i + 1} closes with bytes still to deliver`);
  }
  const refused = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 });
  t.same([refused['ret'], refused['errno']], [P.INVALID_SOCKET, P.WSAEMFILE], `with ${MAX} closed sockets still delivering, a new one is WSAEMFILE`);
  // The peers read: everything reported sent arrives, and the room is back.
  peer.resume();
  t.ok(await until(() => peer.received() === sent, 10000), `the peers got every byte reported sent (${peer.received()} of ${sent})`);
  t.ok(await until(async () => (await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 }))['errno'] === 0, 10000), 'once delivered, a new socket can be made');
});
