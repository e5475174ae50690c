/**
 * The ICMP errors a UDP socket's receives have yet to report (Windows reports each one by a
 * receive of its own): kept in order whatever their mix, up to MAX_PENDING_REPORTS; and made
 * only by a receive that finds no datagram waiting, counting one the kernel holds (a nonblocking
 * receive waits the moment node takes to read that one, rather than contradict WSPSelect).
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import * as P from '@spiwire/proto';
import { MAX_PENDING_REPORTS, PendingIcmpReports } from '../src/sockets/icmp-errors.js';
import { dgramFdOf, libc } from '../src/native/libc.js';
import { closedPort, daemon, ipv4, session, udpSocket } from './helpers/raw-client.js';

t.test('reports come out in the order they came, alternating kinds included, up to the limit', async (t) => {
  const r = new PendingIcmpReports();
  t.equal(r.take(), 0, 'none waits at first');
  const expected: number[] = [];
  for (let i = 0; i < MAX_PENDING_REPORTS + 100; i++) {
    const code = i % 3 === 0 ? P.WSAENETRESET : P.WSAECONNRESET;
    r.add(code);
    if (i < MAX_PENDING_REPORTS) expected.push(code);
  }
  r.add(P.WSAECONNRESET, 50);
  const got: number[] = [];
  while (r.pending) got.push(r.take());
  t.equal(got.length, MAX_PENDING_REPORTS, `${MAX_PENDING_REPORTS} kept, the rest dropped`);
  t.same(got, expected, 'in the order they came');
  r.add(P.WSAENETRESET, 2);
  r.add(P.WSAECONNRESET);
  t.same([r.take(), r.take(), r.take(), r.take()], [P.WSAENETRESET, P.WSAENETRESET, P.WSAECONNRESET, 0], 'a count adds that many, and the ring goes round');
  r.add(P.WSAECONNRESET, 3);
  r.clear();
  t.equal(r.pending, false, 'clear() forgets them');
  r.add(P.WSAEFAULT);
  t.equal(r.pending, false, 'another code is not a report');
});

const skip = libc() === null ? 'needs the native calls (koffi) to send a datagram synchronously' : false;

for (const nonblocking of [true, false]) {
  t.test(`a datagram the kernel holds comes before a waiting report, though the daemon has yet to read it (${nonblocking ? 'nonblocking' : 'blocking'} receive)`, { skip }, async (t) => {
    const native = libc()!;
    const d = await daemon(t);
    const s = await session(t, d.url);
    const u = await udpSocket(s);
    t.equal((await s.call('WSPBind', { s: u, name: ipv4(0), namelen: 16 }))['ret'], 0);
    const own = ((await s.call('WSPGetSockName', { s: u, namelen: 16 }))['name'] as P.SockAddr).port;
    if (nonblocking) await s.call('WSPIoctl', { s: u, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
    const lost = await s.call('WSPSendTo', { s: u, buffers: [Buffer.from('lost')], flags: 0, to: ipv4(await closedPort('udp')), tolen: 16 });
    t.equal(lost['ret'], 0, 'the send to the closed port succeeds');
    const ready = await s.call('WSPSelect', { readfds: [u], timeout: { sec: 5, usec: 0 } });
    t.same(ready['readfds'], [u], 'the port unreachable came back: the socket is readable');
    // A peer connected to the socket, whose datagram goes into the kernel synchronously.
    const peer = dgram.createSocket('udp4');
    t.teardown(() => peer.close());
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => peer.connect(own, '127.0.0.1', r));
    const fd = dgramFdOf(peer);
    t.ok(fd !== null, 'the peer has a descriptor');
    // The request goes out first, then the datagram, in one turn: the daemon (in this process)
    // sees both at its next poll, the request first, before node has read the datagram.
    const recv = s.request('WSPRecv', { s: u, lengths: [64], flags: 0 });
    t.equal(native.send(fd!, Buffer.from('fence'), 0), 5, 'the datagram is in the kernel');
    const r = (await recv.response).result!;
    // Nonblocking too: WSPSelect has called the socket readable, so no WSAEWOULDBLOCK either.
    t.same([r['ret'], r['errno'], Buffer.from((r['data'] as Uint8Array | undefined) ?? []).toString()], [0, 0, 'fence'], 'the datagram comes first, at the first receive');
    const second = await s.call('WSPRecv', { s: u, lengths: [64], flags: 0 });
    t.same([second['ret'], second['errno']], [P.SOCKET_ERROR, P.WSAECONNRESET], 'then the port unreachable');
    if (nonblocking) t.equal((await s.call('WSPRecv', { s: u, lengths: [64], flags: 0 }))['errno'], P.WSAEWOULDBLOCK, 'reported once');
  });
}
