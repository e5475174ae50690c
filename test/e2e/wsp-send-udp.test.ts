/**
 * WSPSend / WSPSendTo on UDP, IPv4 and IPv6, against plain node:dgram peers and between two
 * emulated sockets. What the peer received is checked datagram by datagram.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import * as S from '@spiwire/client';
import { parseExposition, sample } from '../helpers/prometheus-text.js';
import {
  FAMILIES,
  addr,
  bindLoopback,
  call,
  closedPort,
  daemon,
  emptyAddr,
  getOpt,
  ioctlBool,
  loopback,
  namelen,
  newSocket,
  pattern,
  recvInto,
  roundTrip,
  send,
  sendTo,
  session,
  setOpt,
  datagramsBeforeFence,
  setNonBlocking,
  sleep,
  sockName,
  udpDatagramsBeforeFence,
  udpPeer,
  ovSend,
  until,
  within,
  type Family,
} from '../helpers/harness.js';

/**
 * The CPU time (us) of this process's main thread, where the event loop runs: on Linux from
 * /proc/thread-self/stat (in clock ticks), so that V8's own threads, which may finish a collection
 * or compile code of earlier tests meanwhile, do not count; elsewhere the whole process's.
 */
function loopCpuUs(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'latin1');
    // Fields after the command (which may hold spaces): state is the 3rd, utime the 14th, stime the 15th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / TICKS_PER_SECOND;
  } catch {
    const u = process.cpuUsage();
    return u.user + u.system;
  }
}
const TICKS_PER_SECOND = 100;

/**
 * The event loop (daemon and client in one) uses next to nothing for 400 ms. An unread UDP error
 * queue makes epoll report its descriptor forever and libuv spin on it: a whole core.
 */
async function staysIdle(t: Test): Promise<void> {
  const before = loopCpuUs();
  const start = process.hrtime.bigint();
  await sleep(400);
  const used = loopCpuUs() - before;
  const wallUs = Number(process.hrtime.bigint() - start) / 1000;
  t.ok(used < wallUs / 4, `CPU of the event loop's thread while idle: ${Math.round(used / 1000)} ms in ${Math.round(wallUs / 1000)} ms`);
}

/** Nonblocking receives on s until one finds something other than WSAEWOULDBLOCK, polled for at most 5 s. */
async function nextNonblockingRecv(spi: S.SpiSession, s: number): ReturnType<typeof recvInto> {
  let r = await recvInto(spi, s, [64]);
  await until(async () => {
    if (r.errno !== S.WSAEWOULDBLOCK) return true;
    r = await recvInto(spi, s, [64]);
    return false;
  }, 5000);
  return r;
}

/** A session with a nonblocking UDP socket bound to loopback (own), and a closed UDP port to draw ICMP port unreachables. */
async function nonblockingBesideClosedPort(t: Test, f: Family): Promise<{ spi: S.SpiSession; port: number; u: number; own: S.SockAddr }> {
  const d = await daemon(t);
  const spi = await session(t, d);
  const port = await closedPort(f, 'udp');
  const u = await newSocket(spi, f, 'udp');
  const own = await bindLoopback(spi, u, f);
  await setNonBlocking(spi, u, true);
  return { spi, port, u, own };
}

/** The daemon's counts of sendmmsg calls, the datagrams they sent, and those sent in segmented runs (datagram-batch.ts). */
async function batchCounts(port: number): Promise<{ calls: number; datagrams: number; segmented: number }> {
  const e = parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  return {
    calls: sample(e, 'spiwire_udp_batch_calls_total') ?? -1,
    datagrams: sample(e, 'spiwire_udp_batched_datagrams_total') ?? -1,
    segmented: sample(e, 'spiwire_udp_segmented_datagrams_total') ?? -1,
  };
}

/**
 * A connected overlapped UDP socket sends payloads in one burst to a fresh peer: checks that every
 * send completed with its full count and that the peer got each whole, alone and in order; returns
 * what the daemon's batch counters moved by.
 */
async function burstToPeer(t: Test, f: Family, payloads: Buffer[]): Promise<{ calls: number; datagrams: number; segmented: number }> {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await udpPeer(t, f);
  // Room for the whole burst at the peer, so that the kernel drops none of it.
  peer.socket.setRecvBufferSize(4 * 1024 * 1024);
  const s = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
  await udpConnect(spi, s, f, peer.port);
  const before = await batchCounts(d.port);
  const sent = await sendBurst(spi, s, payloads);
  t.same(sent, payloads.map((p) => p.length), 'every send completed with its full count');
  await peer.waitFor(payloads.length);
  t.same(peer.datagrams.map((dg) => dg.data.length), payloads.map((p) => p.length), 'one datagram per WSPSend, each its own size');
  t.equal(peer.datagrams.findIndex((dg, i) => !dg.data.equals(payloads[i]!)), -1, 'the peer received each datagram whole, in the order sent');
  const after = await batchCounts(d.port);
  return { calls: after.calls - before.calls, datagrams: after.datagrams - before.datagrams, segmented: after.segmented - before.segmented };
}

/** Overlapped WSPSendTo of each payload to the peer on ports[i], all issued at once; resolves with each one's bytes sent, or its error. */
async function sendToBurst(spi: S.SpiSession, s: number, f: Family, payloads: Buffer[], ports: number[]): Promise<number[]> {
  return Promise.all(
    payloads.map(async (p, i) => {
      const ov = new S.WSAOVERLAPPED();
      const n = S.out(0);
      const e = S.out(0);
      const ret = await spi.WSPSendTo(s, [S.wsabuf(p)], 1, n, 0, addr(f, ports[i]!), namelen(f), ov, null, null, e);
      if (ret === 0) return n.value;
      if (e.value !== S.WSA_IO_PENDING) return -e.value;
      return (await spi.WSPGetOverlappedResult(s, ov, n, true, S.out(0), e)) ? n.value : -e.value;
    }),
  );
}

/**
 * An unconnected overlapped UDP socket sends payloads[i] to peer to[i] (0 or 1, two fresh peers)
 * in one burst of WSPSendTo: checks every full count and that each peer got its own datagrams
 * whole and in order; returns what the daemon's batch counters moved by.
 */
async function burstToTwoPeers(t: Test, f: Family, payloads: Buffer[], to: number[]): Promise<{ calls: number; datagrams: number; segmented: number }> {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peers = [await udpPeer(t, f), await udpPeer(t, f)];
  for (const p of peers) p.socket.setRecvBufferSize(4 * 1024 * 1024);
  const s = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
  await bindLoopback(spi, s, f);
  const before = await batchCounts(d.port);
  const sent = await sendToBurst(spi, s, f, payloads, to.map((k) => peers[k]!.port));
  t.same(sent, payloads.map((p) => p.length), 'every WSPSendTo completed with its full count');
  for (const [k, peer] of peers.entries()) {
    const mine = payloads.filter((_, i) => to[i] === k);
    await peer.waitFor(mine.length);
    t.equal(peer.datagrams.length, mine.length, `peer ${k + 1} got ${mine.length} datagrams`);
    t.equal(peer.datagrams.findIndex((dg, i) => !dg.data.equals(mine[i]!)), -1, `peer ${k + 1}: each of its own, whole, in the order sent`);
  }
  const after = await batchCounts(d.port);
  return { calls: after.calls - before.calls, datagrams: after.datagrams - before.datagrams, segmented: after.segmented - before.segmented };
}

/** Overlapped WSPSends of each payload, all issued at once (one frame); resolves with each one's bytes sent, or its error. */
async function sendBurst(spi: S.SpiSession, s: number, payloads: Buffer[]): Promise<number[]> {
  const results = await Promise.all(payloads.map((p) => ovSend(spi, s, [p])));
  return Promise.all(
    results.map(async (r) => {
      if (r.ret === 0) return r.sent!.value;
      if (r.err !== S.WSA_IO_PENDING) return -r.err;
      const bytes = S.out(0);
      const e = S.out(0);
      return (await spi.WSPGetOverlappedResult(s, r.ov, bytes, true, S.out(0), e)) ? bytes.value : -e.value;
    }),
  );
}

/** Connects a UDP socket of the session to loopback:port (sets its default peer). */
async function udpConnect(spi: S.SpiSession, s: number, f: Family, port: number): Promise<void> {
  const [r, e] = await call((x) => spi.WSPConnect(s, addr(f, port), namelen(f), null, null, null, null, x));
  if (r !== 0) throw new Error(`UDP WSPConnect failed: ${e}`);
}

for (const f of FAMILIES) {
  const max = f === 'ipv4' ? 65507 : 65527;

  t.test(`${f}: WSPSend after WSPConnect: one datagram per call, the gathered bytes, from WSPGetSockName's port`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, peer.port);
    const name = await sockName(spi, s);
    t.equal(name.family, f === 'ipv4' ? S.AF_INET : S.AF_INET6);
    t.ok(name.port > 0, 'WSPConnect bound the socket');
    const e = S.out(0);
    const sent = S.out(-1);
    t.equal(await spi.WSPSend(s, [S.wsabuf('alpha-'), S.wsabuf('beta-XXXX', 5), S.wsabuf('gamma'), S.wsabuf('unused')], 3, sent, 0, null, null, null, e), 0);
    t.equal(sent.value, 16);
    t.same(await send(spi, s, [Buffer.from('second')]), [0, 0, 6]);
    const third = pattern(40000, 21);
    t.same(await send(spi, s, [third.subarray(0, 1), third.subarray(1, 20000), third.subarray(20000)]), [0, 0, third.length]);
    await peer.waitFor(3);
    // A fence datagram from the same socket: any other datagram would have come before it.
    t.equal((await datagramsBeforeFence(peer, async (fence) => send(spi, s, [fence]))).length, 3, 'exactly one datagram per WSPSend');
    t.equal(peer.datagrams[0]!.data.toString(), 'alpha-beta-gamma', 'the first dwBufferCount buffers, gathered');
    t.equal(peer.datagrams[1]!.data.toString(), 'second');
    t.ok(peer.datagrams[2]!.data.equals(third), 'a 40000-byte datagram gathered from three buffers');
    for (const dg of peer.datagrams.slice(0, 3)) {
      t.equal(dg.from.port, name.port, 'source port is the one WSPGetSockName reports');
      t.equal(dg.from.address, loopback(f));
    }
  });

  t.test(`${f}: WSPSendTo auto-binds but does not connect`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    t.same(await call((e) => spi.WSPGetSockName(s, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'unbound before the first send');
    t.same(await sendTo(spi, s, [Buffer.from('one')], addr(f, peer.port), namelen(f)), [0, 0, 3]);
    const name = await sockName(spi, s);
    t.ok(name.port > 0, `WSPGetSockName works after WSPSendTo (port ${name.port})`);
    t.equal(name.family, f === 'ipv4' ? S.AF_INET : S.AF_INET6);
    const pn = emptyAddr();
    t.same(await call((e) => spi.WSPGetPeerName(s, pn, S.out(28), e)), [S.SOCKET_ERROR, S.WSAENOTCONN], 'WSPGetPeerName: no default peer');
    t.same(await send(spi, s, [Buffer.from('nope')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'WSPSend still needs a default peer');
    t.same(await sendTo(spi, s, [Buffer.from('two')], addr(f, peer.port), namelen(f)), [0, 0, 3]);
    await peer.waitFor(2);
    t.same(
      await udpDatagramsBeforeFence(spi, s, f, peer),
      ['one', 'two'],
      'the peer got the two WSPSendTo datagrams and nothing else',
    );
    t.same(
      peer.datagrams.slice(0, 2).map((x) => x.from.port),
      [name.port, name.port],
      'both from the auto-bound port',
    );
  });

  t.test(`${f}: WSPSendTo on a connected socket ignores lpTo`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const a = await udpPeer(t, f);
    const b = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, a.port);
    t.same(await sendTo(spi, s, [Buffer.from('meant-for-b')], addr(f, b.port), namelen(f)), [0, 0, 11]);
    t.same(await sendTo(spi, s, [Buffer.from('null-to')], null, 0), [0, 0, 7]);
    await a.waitFor(2);
    t.same(
      await datagramsBeforeFence(a, async (fence) => send(spi, s, [fence])),
      ['meant-for-b', 'null-to'],
      'both went to the default peer',
    );
    // A fence to b from another socket: a datagram sent to b before would be ahead of it.
    const other = await newSocket(spi, f, 'udp');
    t.equal((await udpDatagramsBeforeFence(spi, other, f, b)).length, 0, 'the address in lpTo got nothing');
  });

  t.test(`${f}: WSPConnect again changes the default peer; the any address with port 0 dissolves it`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const a = await udpPeer(t, f);
    const b = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, a.port);
    t.same(await send(spi, s, [Buffer.from('to-a')]), [0, 0, 4]);
    await udpConnect(spi, s, f, b.port);
    t.same(await send(spi, s, [Buffer.from('to-b')]), [0, 0, 4]);
    const pn = emptyAddr();
    t.same(await call((e) => spi.WSPGetPeerName(s, pn, S.out(28), e)), [0, 0]);
    t.equal(pn.port, b.port, 'WSPGetPeerName: the new default peer');
    const any = { family: f === 'ipv4' ? S.AF_INET : S.AF_INET6, address: f === 'ipv4' ? '0.0.0.0' : '::', port: 0 };
    t.same(await call((e) => spi.WSPConnect(s, any, namelen(f), null, null, null, null, e)), [0, 0], 'connect to the any address, port 0');
    t.same(await send(spi, s, [Buffer.from('to-nobody')]), [S.SOCKET_ERROR, S.WSAENOTCONN, -1], 'WSPSend: no default peer any more');
    t.same(await call((e) => spi.WSPGetPeerName(s, emptyAddr(), S.out(28), e)), [S.SOCKET_ERROR, S.WSAENOTCONN]);
    t.same(await sendTo(spi, s, [Buffer.from('to-a-again')], addr(f, a.port), namelen(f)), [0, 0, 10], 'WSPSendTo works unconnected');
    await a.waitFor(2);
    await b.waitFor(1);
    // Fences to both peers, sent with WSPSendTo from the (now unconnected) socket.
    t.same(await udpDatagramsBeforeFence(spi, s, f, a), ['to-a', 'to-a-again']);
    t.same(await udpDatagramsBeforeFence(spi, s, f, b), ['to-b']);
  });

  t.test(`${f}: an ICMP port unreachable does not fail later sends`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, port);
    const results: Array<[number, number, number]> = [];
    const unreachable: Array<number | null> = [];
    for (let i = 0; i < 6; i++) {
      results.push(await send(spi, s, [Buffer.from(`ping-${i}`)]));
      // The port unreachable has come back before the next send: the daemon reports it on a
      // blocking receive (which clears it, as Windows does).
      const r = await within(recvInto(spi, s, [64]), 5000, null);
      unreachable.push(r && r.errno);
    }
    t.same(unreachable, results.map(() => S.WSAECONNRESET), 'each port unreachable came back before the next send');
    t.same(
      results,
      results.map(() => [0, 0, 6]),
      'every WSPSend to the closed port returned 0 with the full count',
    );
    const u = await newSocket(spi, f, 'udp');
    const viaTo: Array<[number, number, number]> = [];
    const viaToUnreachable: Array<number | null> = [];
    for (let i = 0; i < 3; i++) {
      viaTo.push(await sendTo(spi, u, [Buffer.from('x')], addr(f, port), namelen(f)));
      const r = await within(recvInto(spi, u, [64]), 5000, null);
      viaToUnreachable.push(r && r.errno);
    }
    t.same(viaToUnreachable, viaTo.map(() => S.WSAECONNRESET), 'an unconnected socket is told too, before each next send');
    t.same(
      viaTo,
      viaTo.map(() => [0, 0, 1]),
      'WSPSendTo to the closed port keeps returning 0 too',
    );
  });

  t.test(`${f}: WSPSendTo from an unconnected socket to a closed port: the next receive reports WSAECONNRESET once, after the datagrams waiting, with FD_READ`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const u = await newSocket(spi, f, 'udp');
    const own = await bindLoopback(spi, u, f);
    const ev = spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(u, ev, S.FD_READ, e), 0, 'WSPEventSelect(FD_READ)');
    t.same(await sendTo(spi, u, [Buffer.from('lost')], addr(f, port), namelen(f)), [0, 0, 4], 'the send succeeds');
    // Windows signals FD_READ for the port unreachable: the receive that follows reports it.
    t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'the event is signalled');
    const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
    t.equal(await spi.WSPEnumNetworkEvents(u, ev, ne, e), 0);
    t.equal(ne.lNetworkEvents & S.FD_READ, S.FD_READ, 'FD_READ recorded');
    t.equal(ne.iErrorCode[S.FD_READ_BIT], 0, 'with error 0');
    // A datagram to itself after the unreachable: a datagram waiting is returned first.
    t.same(await sendTo(spi, u, [Buffer.from('self')], own, namelen(f)), [0, 0, 4]);
    const first = await recvInto(spi, u, [64], { withFrom: true });
    t.same([first.ret, first.errno, first.data.toString()], [0, 0, 'self'], 'the datagram waiting comes first');
    const second = await recvInto(spi, u, [64]);
    t.same([second.ret, second.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'then the port unreachable, as WSAECONNRESET');
    const third = await recvInto(spi, u, [64]);
    t.same([third.ret, third.errno], [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'reported once');
    const peer = await udpPeer(t, f);
    t.same(await sendTo(spi, u, [Buffer.from('alive')], addr(f, peer.port), namelen(f)), [0, 0, 5], 'the socket still sends');
    await peer.waitFor(1);
    t.equal(peer.datagrams[0]?.data.toString(), 'alive', 'and the peer receives it');
  });

  t.test(`${f}: each ICMP port unreachable is reported by a receive of its own, as on Windows`, async (t) => {
    const { spi, port, u, own } = await nonblockingBesideClosedPort(t, f);
    const ev = await spi.WSACreateEvent();
    const e = S.out(0);
    t.equal(await spi.WSPEventSelect(u, ev, S.FD_READ, e), 0, 'WSPEventSelect(FD_READ)');
    const fdRead = async (): Promise<boolean> => {
      const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
      t.equal(await spi.WSPEnumNetworkEvents(u, ev, ne, e), 0);
      return (ne.lNetworkEvents & S.FD_READ) !== 0;
    };
    for (const text of ['one', 'two', 'three']) t.same(await sendTo(spi, u, [Buffer.from(text)], addr(f, port), namelen(f)), [0, 0, text.length], `WSPSendTo '${text}' to a closed port succeeds`);
    // The unreachables come back before the datagram sent to itself after them.
    t.same(await sendTo(spi, u, [Buffer.from('fence')], own, namelen(f)), [0, 0, 5]);
    const first = await nextNonblockingRecv(spi, u);
    t.same([first.ret, first.data.toString()], [0, 'fence'], 'the datagram waiting comes first');
    t.ok(await fdRead(), 'FD_READ recorded');
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      codes.push((await recvInto(spi, u, [64])).errno);
      await roundTrip(spi);
      if (i < 2) t.ok(await fdRead(), `FD_READ recorded again after report ${i + 1}: another waits`);
    }
    t.same(codes, [S.WSAECONNRESET, S.WSAECONNRESET, S.WSAECONNRESET], 'then three receives report WSAECONNRESET, one per unreachable');
    t.equal((await recvInto(spi, u, [64])).errno, S.WSAEWOULDBLOCK, 'and the next finds nothing');
  });

  t.test(`${f}: ICMP errors nobody receives leave the daemon idle (the kernel's error queue is read)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const u = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    const own = await bindLoopback(spi, u, f);
    const c = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    await udpConnect(spi, c, f, port);
    // Bursts (one batch each) and single sends, unconnected and connected; nothing is received,
    // so every unreachable stays with the kernel unless the daemon reads it.
    for (let round = 0; round < 5; round++) {
      const burst = Array.from({ length: 20 }, (_, i) => (i % 2 ? ovSend(spi, c, [Buffer.from('c')]).then((r) => r.ret) : sendTo(spi, u, [Buffer.from('u')], addr(f, port), namelen(f)).then((r) => r[0])));
      t.same(await Promise.all(burst), burst.map(() => 0), `round ${round}: every send succeeds`);
    }
    // The last unreachables are back once a datagram sent to itself after them is. Receives
    // until then may report them already.
    t.same(await sendTo(spi, u, [Buffer.from('fence')], own, namelen(f)), [0, 0, 5]);
    let resets = 0;
    for (let i = 0; i < 10; i++) {
      const r = await within(recvInto(spi, u, [64]), 5000, null);
      if (r?.errno === S.WSAECONNRESET) resets++;
      else {
        t.equal(r?.data.toString(), 'fence', 'the fence came back');
        break;
      }
    }
    await staysIdle(t);
    await setNonBlocking(spi, u, true);
    if ((await recvInto(spi, u, [64])).errno === S.WSAECONNRESET) resets++;
    t.ok(resets >= 1, `the unconnected socket reported the unreachables (${resets} receives)`);
  });

  t.test(`${f}: a burst mixing a closed port and a live peer: the unreachable is reported, the peer gets its datagrams, the daemon stays idle`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const peer = await udpPeer(t, f);
    const u = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    await bindLoopback(spi, u, f);
    // One frame, one batch: the closed port's datagram, then the peer's, of another size so that
    // they go as separate messages of one sendmmsg. The unreachable comes back while that call
    // runs, and the peer's message takes the pending error, which sendmmsg drops: only the
    // kernel's error queue still tells of it.
    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      const burst = [sendTo(spi, u, [Buffer.from('x')], addr(f, port), namelen(f)), sendTo(spi, u, [Buffer.from(`p${round}`)], addr(f, peer.port), namelen(f))];
      t.same(await Promise.all(burst), [[0, 0, 1], [0, 0, 2]], `round ${round}: both sends succeed`);
    }
    await peer.waitFor(rounds);
    t.same(peer.datagrams.map((x) => x.data.toString()), Array.from({ length: rounds }, (_, i) => `p${i}`), 'the peer got every datagram, in order');
    const r = await within(recvInto(spi, u, [64]), 5000, null);
    t.same(r && [r.ret, r.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the next receive reports the port unreachable');
    await staysIdle(t);
  });

  t.test(`${f}: SIO_UDP_CONNRESET FALSE stops the reports, TRUE brings them back, SIO_UDP_NETRESET leaves them; TCP sockets refuse both`, async (t) => {
    const { spi, port, u, own } = await nonblockingBesideClosedPort(t, f);
    // One byte, as .NET callers pass it.
    t.same(await ioctlBool(spi, u, S.SIO_UDP_CONNRESET, 0, 1), [0, 0], 'SIO_UDP_CONNRESET FALSE, a one-byte BOOLEAN');
    // The unreachable comes back before the datagram sent to itself after it; once that datagram
    // is read, a report would be next.
    const probe = async (label: string): Promise<number> => {
      t.same(await sendTo(spi, u, [Buffer.from('lost')], addr(f, port), namelen(f)), [0, 0, 4]);
      t.same(await sendTo(spi, u, [Buffer.from(label)], own, namelen(f)), [0, 0, label.length]);
      const r = await nextNonblockingRecv(spi, u);
      t.equal(r.data.toString(), label, `${label}: its own datagram`);
      return (await recvInto(spi, u, [64])).errno;
    };
    t.equal(await probe('off'), S.WSAEWOULDBLOCK, 'with FALSE: nothing is reported');
    t.same(await ioctlBool(spi, u, S.SIO_UDP_CONNRESET, 1), [0, 0], 'SIO_UDP_CONNRESET TRUE, a four-byte BOOL');
    t.equal(await probe('on'), S.WSAECONNRESET, 'with TRUE: WSAECONNRESET again');
    // SIO_UDP_NETRESET is for times exceeded (broken-paths.test.ts): it leaves port unreachables reported.
    t.same(await ioctlBool(spi, u, S.SIO_UDP_NETRESET, 0, 1), [0, 0], 'SIO_UDP_NETRESET FALSE, a one-byte BOOLEAN');
    t.equal(await probe('netreset-off'), S.WSAECONNRESET, 'with SIO_UDP_NETRESET FALSE: still WSAECONNRESET');
    t.same(await ioctlBool(spi, u, S.SIO_UDP_CONNRESET, 1, 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'no input: WSAEFAULT');
    t.same(await ioctlBool(spi, u, S.SIO_UDP_NETRESET, 1, 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'SIO_UDP_NETRESET, no input: WSAEFAULT');
    const tcp = await newSocket(spi, f, 'tcp');
    t.same(await ioctlBool(spi, tcp, S.SIO_UDP_CONNRESET, 0), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], 'a TCP socket: WSAEOPNOTSUPP');
    t.same(await ioctlBool(spi, tcp, S.SIO_UDP_NETRESET, 0), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], 'SIO_UDP_NETRESET on a TCP socket: WSAEOPNOTSUPP');
  });

  t.test(`${f}: after an ICMP port unreachable the next receive reports WSAECONNRESET (the send does not)`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, port);
    t.same(await send(spi, s, [Buffer.from('probe')]), [0, 0, 5], 'the send itself succeeds');
    await setNonBlocking(spi, s, true);
    // Nonblocking receives find nothing (WSAEWOULDBLOCK) until the port unreachable is back.
    const r = await nextNonblockingRecv(spi, s);
    // WSARecv / recv on Windows: "On a UDP-datagram socket this error indicates a previous send
    // operation resulted in an ICMP Port Unreachable message." The daemon means to do this too.
    t.same([r.ret, r.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'WSPRecv: WSAECONNRESET');
    t.same(await send(spi, s, [Buffer.from('again')]), [0, 0, 5], 'and sends still succeed');
  });

  t.test(`${f}: zero-length datagrams`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    await udpConnect(spi, s, f, peer.port);
    const e = S.out(0);
    const sent = S.out(-1);
    t.equal(await spi.WSPSend(s, [], 0, sent, 0, null, null, null, e), 0, 'WSPSend with dwBufferCount 0');
    t.equal(sent.value, 0);
    t.same(await send(spi, s, [new Uint8Array(0)]), [0, 0, 0], 'WSPSend with one empty buffer');
    t.same(await send(spi, s, [new Uint8Array(0), new Uint8Array(0)]), [0, 0, 0], 'WSPSend with two empty buffers');
    const u = await newSocket(spi, f, 'udp');
    t.same(await sendTo(spi, u, [new Uint8Array(0)], addr(f, peer.port), namelen(f)), [0, 0, 0], 'WSPSendTo of an empty datagram');
    await peer.waitFor(4);
    t.equal((await datagramsBeforeFence(peer, async (fence) => send(spi, s, [fence]))).length, 4, 'one datagram per call');
    t.same(
      peer.datagrams.slice(0, 4).map((x) => x.data.length),
      [0, 0, 0, 0],
      'each one empty',
    );
  });

  t.test(`${f}: two emulated UDP sockets exchange datagrams with WSPSendTo / WSPRecvFrom`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const a = await newSocket(spi, f, 'udp');
    const b = await newSocket(spi, f, 'udp');
    const an = await bindLoopback(spi, a, f);
    const bn = await bindLoopback(spi, b, f);
    t.same(await sendTo(spi, a, [Buffer.from('pi'), Buffer.from('ng')], bn, namelen(f)), [0, 0, 4]);
    const r1 = await recvInto(spi, b, [3, 10], { withFrom: true });
    t.same([r1.ret, r1.errno, r1.bytes], [0, 0, 4]);
    t.equal(r1.data.toString(), 'ping', 'scattered over the two buffers');
    t.equal(r1.fromlen, namelen(f), `lpFromlen is ${namelen(f)}`);
    t.equal(r1.from.family, f === 'ipv4' ? S.AF_INET : S.AF_INET6);
    t.equal(r1.from.address, loopback(f));
    t.equal(r1.from.port, an.port, 'lpFrom is the sender');
    t.same(await sendTo(spi, b, [Buffer.from('pong')], r1.from, r1.fromlen), [0, 0, 4], 'reply to lpFrom');
    const r2 = await recvInto(spi, a, [64], { withFrom: true });
    t.same([r2.ret, r2.bytes, r2.data.toString()], [0, 4, 'pong']);
    t.equal(r2.from.port, bn.port);
    t.equal(r2.fromlen, namelen(f));
    // Datagram boundaries are kept: three sends, three receives.
    for (const m of ['x', 'yy', 'zzz']) t.same(await sendTo(spi, a, [Buffer.from(m)], bn, namelen(f)), [0, 0, m.length]);
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push((await recvInto(spi, b, [64])).data.toString());
    t.same(got, ['x', 'yy', 'zzz']);
  });

  t.test(`${f}: a datagram larger than the receive buffers: WSAEMSGSIZE with the first part delivered`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp');
    const name = await bindLoopback(spi, s, f);
    const big = pattern(100, 31);
    await new Promise<void>((resolve, reject) => peer.socket.send(big, name.port, loopback(f), (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve, reject) => peer.socket.send(Buffer.from('next'), name.port, loopback(f), (err) => (err ? reject(err) : resolve())));
    const r = await recvInto(spi, s, [20, 30]);
    t.same([r.ret, r.errno], [S.SOCKET_ERROR, S.WSAEMSGSIZE], 'WSAEMSGSIZE');
    t.ok(r.raw.equals(big.subarray(0, 50)), 'the buffers hold the first 50 bytes of the datagram');
    const n = await recvInto(spi, s, [64]);
    t.same([n.ret, n.bytes, n.data.toString()], [0, 4, 'next'], 'the rest was discarded: the next receive gets the next datagram');
  });

  t.test(`${f}: SO_MAX_MSG_SIZE`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const u = await newSocket(spi, f, 'udp');
    t.same((await getOpt(spi, u, S.SO_MAX_MSG_SIZE)).slice(0, 3), [0, 0, max], `UDP reads ${max}`);
    const tcp = await newSocket(spi, f, 'tcp');
    t.same((await getOpt(spi, tcp, S.SO_MAX_MSG_SIZE)).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'TCP: WSAENOPROTOOPT');
  });

  t.test(`${f}: a burst of overlapped WSPSends in one frame leaves in order, batched into few system calls`, async (t) => {
    // Sizes from 0 to 3000 bytes, each datagram's content its own.
    const payloads = Array.from({ length: 150 }, (_, i) => pattern((i * 97) % 3001, i + 1));
    const moved = await burstToPeer(t, f, payloads);
    if (process.platform === 'linux') {
      t.equal(moved.datagrams, payloads.length, 'all of them went through sendmmsg');
      t.ok(moved.calls <= payloads.length / 8, `in ${moved.calls} system calls`);
    }
  });

  t.test(`${f}: runs of one size leave as segmented messages, and still arrive one datagram per WSPSend`, async (t) => {
    // Runs, each datagram's content its own: a shorter one ends a run, an empty one never joins
    // one, 9000-byte datagrams make runs of 7 (65,507 bytes at most), 100-byte ones of 64 at most.
    const sizes = [
      ...Array<number>(40).fill(1000), 600, 0, ...Array<number>(30).fill(700),
      ...Array<number>(10).fill(9000), 2, 2, 2, ...Array<number>(70).fill(100), 1,
    ];
    const moved = await burstToPeer(t, f, sizes.map((n, i) => pattern(n, i + 3)));
    t.comment(`${moved.segmented} of ${sizes.length} went in segmented runs, in ${moved.calls} system calls`);
    if (process.platform === 'linux') {
      t.equal(moved.datagrams, sizes.length, 'all of them went through sendmmsg');
      t.ok(moved.segmented >= sizes.length / 2, 'most of them in segmented runs (UDP_SEGMENT)');
    }
  });

  t.test(`${f}: WSPSendTo bursts to two peers in one frame: each peer gets its own, in order, in few system calls`, async (t) => {
    const N = 120;
    const payloads = Array.from({ length: N }, (_, i) => pattern(1 + ((i * 53) % 1400), i + 7));
    // Alternating destinations, all issued at once: one frame.
    const moved = await burstToTwoPeers(t, f, payloads, payloads.map((_, i) => i % 2));
    if (process.platform === 'linux') {
      t.equal(moved.datagrams, N, 'all of them went through sendmmsg, each with its destination');
      t.ok(moved.calls <= N / 8, `in ${moved.calls} system calls`);
    }
  });

  t.test(`${f}: WSPSendTo runs to one peer, then another, then the first: segmented, each peer gets its own in order`, async (t) => {
    const to = [0, 1, 0].flatMap((k) => Array<number>(25).fill(k));
    const moved = await burstToTwoPeers(t, f, to.map((_, i) => pattern(800, i + 11)), to);
    if (process.platform === 'linux') t.ok(moved.segmented >= 60, `${moved.segmented} of 75 went in segmented runs`);
  });

  t.test(`${f}: sends and the close in one frame: the datagrams go before the socket does, each send completes once`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = await udpPeer(t, f);
    const s = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    await udpConnect(spi, s, f, peer.port);
    const payloads = Array.from({ length: 20 }, (_, i) => Buffer.from(`last-words-${i}`));
    const e = S.out(0);
    const [sent, closed] = await Promise.all([sendBurst(spi, s, payloads), spi.WSPCloseSocket(s, e)]);
    t.equal(closed, 0, 'WSPCloseSocket in the same frame succeeds');
    t.same(sent, payloads.map((p) => p.length), 'every send issued before the close completed with its full count');
    await peer.waitFor(payloads.length);
    t.same(
      peer.datagrams.map((dg) => dg.data.toString()),
      payloads.map((p) => p.toString()),
      'the peer received them all, in order',
    );
  });

  t.test(`${f}: a connect takes effect for the sends after it in the same frame, as Windows' synchronous connect does`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const [b, c] = [await udpPeer(t, f), await udpPeer(t, f)];
    const s = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    await udpConnect(spi, s, f, b.port);
    // One synchronous run: one frame. Connect to C, send; dissolve the association (AF_UNSPEC),
    // send to B by name; connect to C again, send naming B (ignored: the default peer wins).
    const peerAfter = [emptyAddr(), emptyAddr()];
    const calls = Promise.all([
      call((e) => spi.WSPConnect(s, addr(f, c.port), namelen(f), null, null, null, null, e)),
      call((e) => spi.WSPGetPeerName(s, peerAfter[0]!, S.out(28), e)),
      send(spi, s, [Buffer.from('to C after connect')]),
      ovSend(spi, s, [Buffer.from('overlapped, to C')]),
      call((e) => spi.WSPConnect(s, { family: S.AF_UNSPEC, address: '', port: 0 }, 2, null, null, null, null, e)),
      call((e) => spi.WSPGetPeerName(s, peerAfter[1]!, S.out(28), e)),
      sendTo(spi, s, [Buffer.from('to B by name')], addr(f, b.port), namelen(f)),
      call((e) => spi.WSPConnect(s, addr(f, c.port), namelen(f), null, null, null, null, e)),
      sendTo(spi, s, [Buffer.from('to C, B named')], addr(f, b.port), namelen(f)),
    ]);
    const [c1, p1, s1, o1, c2, p2, s2, c3, s3] = await calls;
    t.same([c1, c2, c3], [[0, 0], [0, 0], [0, 0]], 'the three connects succeed');
    t.same([p1, peerAfter[0]!.port], [[0, 0], c.port], 'WSPGetPeerName after the first connect: C');
    t.same(p2, [S.SOCKET_ERROR, S.WSAENOTCONN], 'after the AF_UNSPEC connect: no default peer');
    t.same([s1[0], s1[2], s2[0], s3[0]], [0, 18, 0, 0], 'the sends succeed');
    t.ok(o1.ret === 0 || o1.err === S.WSA_IO_PENDING, 'the overlapped send starts');
    await c.waitFor(3);
    await b.waitFor(1);
    t.same(c.datagrams.map((dg) => dg.data.toString()), ['to C after connect', 'overlapped, to C', 'to C, B named'], 'C got the sends made while it was the default peer, in order');
    t.same(b.datagrams.map((dg) => dg.data.toString()), ['to B by name'], 'B only the one sent to it by name, with no default peer');
  });

  t.test(`${f}: a burst to a closed port: every send succeeds, the next receive reports WSAECONNRESET`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const port = await closedPort(f, 'udp');
    const s = await newSocket(spi, f, 'udp', S.WSA_FLAG_OVERLAPPED);
    await udpConnect(spi, s, f, port);
    // Each datagram's port unreachable comes back at once on loopback and fails the next one's
    // send in the kernel: the daemon sends that one again, as Windows never fails the send.
    const payloads = Array.from({ length: 40 }, (_, i) => Buffer.from(`burst-${i}`));
    const sent = await sendBurst(spi, s, payloads);
    t.same(sent, payloads.map((p) => p.length), 'every WSPSend completed with its full count');
    const r = await within(recvInto(spi, s, [64]), 5000, null);
    t.same(r && [r.ret, r.errno], [S.SOCKET_ERROR, S.WSAECONNRESET], 'the next receive: WSAECONNRESET');
    // In one frame: a send, an option (which sends the batch so far), more sends. The first
    // datagram's port unreachable is still pending when the next batch starts, and fails its
    // first send in the kernel: that datagram is sent again, not reported failed.
    const [a, opt, b, c] = await Promise.all([
      sendBurst(spi, s, [Buffer.from('before')]),
      setOpt(spi, s, S.SO_SNDBUF, 65536),
      sendBurst(spi, s, [Buffer.from('after-1')]),
      sendBurst(spi, s, [Buffer.from('after-2')]),
    ]);
    t.same([a, opt, b, c], [[6], [0, 0], [7], [7]], 'the sends around the option all succeed');
  });
}

t.test('ipv6: WSPSendTo naming a scope that no interface has: WSAEADDRNOTAVAIL, nothing reported sent', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const s = await newSocket(spi, 'ipv6', 'udp');
  // An index no interface of this machine has (the daemon reads them from /sys/class/net).
  const unknown = 9999;
  for (const to of [{ family: S.AF_INET6, address: 'fe80::1', port: 9, scopeId: unknown }, { family: S.AF_INET6, address: `fe80::1%${unknown}`, port: 9 }]) {
    const [ret, err, sent] = await sendTo(spi, s, [Buffer.from('nowhere')], to, namelen('ipv6'));
    t.same([ret, err, sent], [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL, -1], `to ${JSON.stringify(to)}`);
  }
});
