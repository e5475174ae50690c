/**
 * A closed TCP socket whose accepted bytes have not reached the kernel yet keeps its connection
 * (and descriptor) until they have (draining.ts): it counts against the session's socket limit
 * and the daemon's, so that closing sockets toward peers that never read cannot run the daemon
 * out of descriptors. Once the bytes are delivered, the room is back. At a shutdown every such
 * connection gets the drain deadline, whatever the linger time of ended sessions.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { collectedLog, connectTo, daemon, session, silentPeer, tcpSocket, until, type RawSession } from './helpers/raw-client.js';

/** Nonblocking 64 KiB sends on h until one is refused; returns the bytes accepted. */
async function fill(s: RawSession, h: number): Promise<number> {
  await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  let sent = 0;
  for (let k = 0; k < 10000; k++) {
    const r = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(65536)], flags: 0 });
    if (r['errno'] === P.WSAEWOULDBLOCK) break;
    sent += r['bytesSent'] as number;
  }
  return sent;
}

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
    // Until the kernel and the transport buffer are full: some bytes are accepted and not yet in
    // the kernel when the socket closes.
    sent += await fill(s, h);
    t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0, `socket ${i + 1} closes with bytes still to deliver`);
  }
  const refused = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 });
  t.same([refused['ret'], refused['errno']], [P.INVALID_SOCKET, P.WSAEMFILE], `with ${MAX} closed sockets still delivering, a new one is WSAEMFILE`);
  // The peers read: everything reported sent arrives, and the room is back.
  peer.resume();
  t.ok(await until(() => peer.received() === sent, 10000), `the peers got every byte reported sent (${peer.received()} of ${sent})`);
  t.ok(await until(async () => (await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 }))['errno'] === 0, 10000), 'once delivered, a new socket can be made');
});

/**
 * A daemon in this process whose log lines the test reads, and a session's socket to a peer that
 * does not read yet, filled until a send was refused: bytes accepted and not in the kernel.
 */
async function socketWithBytesHeld(t: Test, limits: { lingerMs: number; drainMs: number }) {
  const peer = await silentPeer(t);
  const { logger, lines } = collectedLog();
  const d = await daemon(t, { logger, limits });
  const s = await session(t, d.url);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  const sent = await fill(s, h);
  return { d, peer, sent, about: (words: string) => lines.filter((l) => String(l['msg']).includes(words)) };
}

t.test('at shutdown a connection still delivering gets the drain deadline, not the linger time of its ended session', async (t) => {
  const { d, peer, sent, about } = await socketWithBytesHeld(t, { lingerMs: 1, drainMs: 30000 });
  const closed = d.close();
  // The session has ended with the shutdown; a 1 ms linger timer, had it been armed, has fired.
  await new Promise((r) => setTimeout(r, 300));
  peer.resume();
  await closed;
  // The daemon stops once the kernel has every byte; the peer reads the last of them after.
  t.ok(await until(() => peer.received() === sent, 10000), `the peer got every byte reported sent (${peer.received()} of ${sent}): the connection was not reset at the linger time`);
  t.same(about('linger time'), [], 'nothing was given up at the linger time');
  t.same(about('drain deadline'), [], 'nor at the drain deadline');
});

t.test('at shutdown a connection that cannot deliver is reset at the drain deadline and reported at warn level', async (t) => {
  const { d, sent, about } = await socketWithBytesHeld(t, { lingerMs: 1, drainMs: 300 });
  t.ok(sent > 0, 'bytes were accepted');
  await d.close();
  const warned = about('drain deadline');
  t.equal(warned.length, 1, 'one connection reported');
  t.equal(warned[0]?.['level'], 40, 'at warn level');
  t.ok((warned[0]?.['undeliveredBytes'] as number) > 0, `with the bytes it did not deliver (${String(warned[0]?.['undeliveredBytes'])})`);
  t.same(about('linger time'), [], 'not as an ended session\'s connection');
});
