/**
 * What IPV6_V6ONLY and SO_REUSEADDR do to real traffic (the option values themselves are checked
 * in the Wine ports, test/conformance/wine/test_reuseaddr.test.ts): a dual-stack IPv6 socket
 * serving real IPv4 peers over TCP and UDP, the default IPv6-only socket refusing them, and UDP
 * sockets sharing a port.
 */
import t from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import * as S from '@spiwire/client';
import { call, getOpt, newSocket, pattern, recvInto, select, send, sendTo, session, daemon, setOpt, sockName } from '../helpers/harness.js';

const ANY6: S.SockAddr = { family: S.AF_INET6, address: '::', port: 0, flowinfo: 0, scopeId: 0 };
const NAMELEN6 = 28;
const BOUND: S.timeval = { tv_sec: 5, tv_usec: 0 };

async function accept(spi: S.SpiSession, l: number): Promise<{ s: number; from: S.SockAddr }> {
  const from: S.SockAddr = { family: 0, address: '', port: 0 };
  const e = S.out(0);
  const s = await spi.WSPAccept(l, from, S.out(28), null, 0, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPAccept failed: ${e.value}`);
  return { s, from };
}

/** Connects a node:net IPv4 client to 127.0.0.1:port: its socket, or the error code it met. */
function connect4(port: number): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port, family: 4 });
    c.once('connect', () => resolve(c));
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.test('TCP: with IPV6_V6ONLY off, a listener on [::] takes a real IPv4 client, sees it as ::ffff:127.0.0.1, and its sends reach it', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const l = await newSocket(spi, 'ipv6', 'tcp');
  t.same(await setOpt(spi, l, S.IPV6_V6ONLY, 0, 4, S.IPPROTO_IPV6), [0, 0], 'IPV6_V6ONLY off');
  t.same(await call((e) => spi.WSPBind(l, ANY6, NAMELEN6, e)), [0, 0], 'binds [::]');
  t.same(await call((e) => spi.WSPListen(l, 4, e)), [0, 0], 'listens');
  const port = (await sockName(spi, l)).port;
  const client = await connect4(port);
  if (typeof client === 'string') throw new Error(`the IPv4 client could not connect: ${client}`);
  t.teardown(() => client.destroy());
  const received: Buffer[] = [];
  client.on('data', (b: Buffer) => received.push(b));
  const { s, from } = await accept(spi, l);
  t.same([from.family, from.address, from.port], [S.AF_INET6, '::ffff:127.0.0.1', client.localPort], 'the peer as Windows gives it: a mapped IPv6 address');
  const data = pattern(100_000, 3);
  t.same(await send(spi, s, [data]), [0, 0, data.length], 'a send of 100,000 bytes');
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  t.same(await call((e) => spi.WSPShutdown(s, S.SD_SEND, e)), [0, 0], 'then FIN');
  await ended;
  t.ok(Buffer.concat(received).equals(data), 'the IPv4 client received exactly those bytes');
  for (const x of [s, l]) await spi.WSPCloseSocket(x, S.out(0));
});

t.test('TCP: with IPV6_V6ONLY on (the default), an IPv4 client is refused by a listener on [::], and one on 0.0.0.0 shares the port', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const l6 = await newSocket(spi, 'ipv6', 'tcp');
  t.same(await getOpt(spi, l6, S.IPV6_V6ONLY, 4, S.IPPROTO_IPV6), [0, 0, 1, 1], 'IPV6_V6ONLY reads 1');
  t.same(await call((e) => spi.WSPBind(l6, ANY6, NAMELEN6, e)), [0, 0], 'binds [::]');
  t.same(await call((e) => spi.WSPListen(l6, 4, e)), [0, 0], 'listens');
  const port = (await sockName(spi, l6)).port;
  t.equal(await connect4(port), 'ECONNREFUSED', 'an IPv4 client is refused: nothing listens for IPv4');
  const l4 = await newSocket(spi, 'ipv4', 'tcp');
  t.same(await call((e) => spi.WSPBind(l4, { family: S.AF_INET, address: '0.0.0.0', port }, 16, e)), [0, 0], 'an IPv4 socket binds 0.0.0.0 on the same port');
  t.same(await call((e) => spi.WSPListen(l4, 4, e)), [0, 0], 'and listens');
  const client = await connect4(port);
  t.type(client, net.Socket, 'now the IPv4 client connects');
  if (typeof client !== 'string') {
    t.teardown(() => client.destroy());
    const { from } = await accept(spi, l4);
    t.same([from.family, from.address], [S.AF_INET, '127.0.0.1'], 'to the IPv4 listener');
  }
  for (const x of [l4, l6]) await spi.WSPCloseSocket(x, S.out(0));
});

t.test('UDP: with IPV6_V6ONLY off, a socket on [::] receives a real IPv4 datagram and answers it at its mapped address', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv6', 'udp');
  t.same(await setOpt(spi, u, S.IPV6_V6ONLY, 0, 4, S.IPPROTO_IPV6), [0, 0], 'IPV6_V6ONLY off');
  t.same(await call((e) => spi.WSPBind(u, ANY6, NAMELEN6, e)), [0, 0], 'binds [::]');
  t.same(await setOpt(spi, u, S.IPV6_V6ONLY, 1, 4, S.IPPROTO_IPV6), [S.SOCKET_ERROR, S.WSAEINVAL], 'IPV6_V6ONLY can no longer change');
  const port = (await sockName(spi, u)).port;
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', resolve));
  const answer = new Promise<Buffer>((resolve) => peer.once('message', (m) => resolve(m)));
  peer.send(Buffer.from('ping over IPv4'), port, '127.0.0.1');
  const got = await recvInto(spi, u, [64], { withFrom: true });
  t.same([got.ret, Buffer.from(got.data).toString(), got.from.family, got.from.address, got.from.port], [0, 'ping over IPv4', S.AF_INET6, '::ffff:127.0.0.1', peer.address().port], 'the datagram, from a mapped address');
  t.same(await sendTo(spi, u, [Buffer.from('pong')], got.from, NAMELEN6), [0, 0, 4], 'a datagram back to that address');
  t.equal((await answer).toString(), 'pong', 'the IPv4 peer received it');
  await spi.WSPCloseSocket(u, S.out(0));
});

t.test('UDP: SO_REUSEADDR lets two sockets bind one port, a socket asking to share a port held without it gets WSAEACCES, and a datagram to the port arrives', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const bindTo = async (port: number, reuse: boolean): Promise<[number, number, number]> => {
    const u = await newSocket(spi, 'ipv4', 'udp');
    if (reuse) t.same(await setOpt(spi, u, S.SO_REUSEADDR, 1), [0, 0], 'SO_REUSEADDR');
    const [r, err] = await call((e) => spi.WSPBind(u, { family: S.AF_INET, address: '127.0.0.1', port }, 16, e));
    return [u, r, err];
  };
  const [plain, r0] = await bindTo(0, false);
  t.equal(r0, 0, 'a socket without the option binds');
  const held = (await sockName(spi, plain)).port;
  const [, r1, e1] = await bindTo(held, false);
  t.same([r1, e1], [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'another without it: WSAEADDRINUSE');
  const [, r2, e2] = await bindTo(held, true);
  t.same([r2, e2], [S.SOCKET_ERROR, S.WSAEACCES], 'another with it: WSAEACCES');

  const [a, ra] = await bindTo(0, true);
  t.equal(ra, 0, 'a socket with SO_REUSEADDR binds');
  const port = (await sockName(spi, a)).port;
  const [b, rb, eb] = await bindTo(port, true);
  t.same([rb, eb], [0, 0], 'a second with SO_REUSEADDR binds the same address and port');
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  peer.send(Buffer.from('shared'), port, '127.0.0.1');
  const readable = S.fdSet(a, b);
  const [n] = await select(spi, readable, null, null, BOUND);
  t.ok(n >= 1, 'one of them has the datagram');
  const which = S.FD_ISSET(a, readable) ? a : b;
  const got = await recvInto(spi, which, [64]);
  t.equal(Buffer.from(got.data).toString(), 'shared', 'and receives it');
});

t.test('sharing stays within a session: another session cannot bind under a listener\'s wildcard, nor join its SO_REUSEADDR address, on TCP or UDP', async (t) => {
  const d = await daemon(t);
  const a = await session(t, d);
  const b = await session(t, d);
  const bindIn = async (spi: S.SpiSession, kind: 'tcp' | 'udp', address: string, port: number, reuse: boolean): Promise<[number, number, number]> => {
    const s = await newSocket(spi, 'ipv4', kind);
    if (reuse) t.same(await setOpt(spi, s, S.SO_REUSEADDR, 1), [0, 0], 'SO_REUSEADDR');
    const [r, err] = await call((e) => spi.WSPBind(s, { family: S.AF_INET, address, port }, 16, e));
    return [s, r, err];
  };
  // A listens on the wildcard; within A a loopback socket could share the port (Wine's test_reuseaddr), B may not.
  const [wild, rw] = await bindIn(a, 'tcp', '0.0.0.0', 0, false);
  t.equal(rw, 0, 'session A binds 0.0.0.0');
  t.same(await call((e) => a.WSPListen(wild, 4, e)), [0, 0], 'and listens');
  const port = (await sockName(a, wild)).port;
  const [, rb, eb] = await bindIn(b, 'tcp', '127.0.0.1', port, false);
  t.same([rb, eb], [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'session B cannot bind 127.0.0.1 on that port');
  const client = await connect4(port);
  t.type(client, net.Socket, 'a loopback client connects');
  if (typeof client !== 'string') {
    t.teardown(() => client.destroy());
    const { s } = await accept(a, wild);
    t.ok(s > 0, 'and reaches session A\'s listener');
  }

  for (const kind of ['tcp', 'udp'] as const) {
    const [first, r1] = await bindIn(a, kind, '127.0.0.1', 0, true);
    t.equal(r1, 0, `${kind}: session A binds loopback with SO_REUSEADDR`);
    const shared = (await sockName(a, first)).port;
    const [, r2, e2] = await bindIn(b, kind, '127.0.0.1', shared, true);
    t.same([r2, e2], [S.SOCKET_ERROR, S.WSAEADDRINUSE], `${kind}: session B, with SO_REUSEADDR too, cannot join it`);
    const [, r3, e3] = await bindIn(a, kind, '127.0.0.1', shared, true);
    t.same([r3, e3], [0, 0], `${kind}: another socket of session A can`);
  }
});

t.test('TCP: two listeners with SO_REUSEADDR on one address: real clients reach the first, then the second once the first closes', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const listen = async (port: number): Promise<number> => {
    const l = await newSocket(spi, 'ipv4', 'tcp');
    t.same(await setOpt(spi, l, S.SO_REUSEADDR, 1), [0, 0], 'SO_REUSEADDR');
    t.same(await call((e) => spi.WSPBind(l, { family: S.AF_INET, address: '127.0.0.1', port }, 16, e)), [0, 0], 'binds');
    t.same(await call((e) => spi.WSPListen(l, 4, e)), [0, 0], 'listens');
    return l;
  };
  const l1 = await listen(0);
  const port = (await sockName(spi, l1)).port;
  const l2 = await listen(port);
  const c1 = await connect4(port);
  if (typeof c1 === 'string') throw new Error(`first client: ${c1}`);
  t.teardown(() => c1.destroy());
  const first = await accept(spi, l1);
  t.same(await select(spi, S.fdSet(l2), null, null, { tv_sec: 0, tv_usec: 0 }), [0, 0], 'the second listener has nothing to accept');
  t.same(await call((e) => spi.WSPCloseSocket(l1, e)), [0, 0], 'the first listener closes');
  // The second opens its real socket as the first closes: a client may meet the gap between.
  let c2: net.Socket | string = 'ECONNREFUSED';
  for (let i = 0; i < 50 && typeof c2 === 'string'; i++) c2 = await connect4(port);
  if (typeof c2 === 'string') throw new Error(`second client: ${c2}`);
  t.teardown(() => (c2 as net.Socket).destroy());
  const received: Buffer[] = [];
  c2.on('data', (b: Buffer) => received.push(b));
  const second = await accept(spi, l2);
  t.same(await send(spi, second.s, [Buffer.from('from the second listener')]), [0, 0, 24], 'the accepted socket sends');
  await new Promise<void>((resolve) => (c2 as net.Socket).once('data', () => resolve()));
  t.equal(Buffer.concat(received).toString(), 'from the second listener', 'the second client received it');
  for (const x of [first.s, second.s, l2]) await spi.WSPCloseSocket(x, S.out(0));
});

t.test('binds and a listen of one port issued at once, from several threads, all succeed as they would one at a time; a real client reaches the listener', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const sharing = async (): Promise<number> => {
    const s = await newSocket(spi, 'ipv4', 'tcp');
    t.same(await setOpt(spi, s, S.SO_REUSEADDR, 1), [0, 0]);
    return s;
  };
  const x = await sharing();
  t.same(await call((e) => spi.WSPBind(x, { family: S.AF_INET, address: '127.0.0.1', port: 0 }, 16, e)), [0, 0], 'the first binds');
  const port = (await sockName(spi, x)).port;
  const at = { family: S.AF_INET, address: '127.0.0.1', port };
  // The daemon asks the host about the port for each bind: those questions, and the listen's
  // real socket, must not refuse one another.
  const others = [await sharing(), await sharing(), await sharing(), await sharing()];
  const threads = others.map(() => spi.createThread());
  const listener = spi.createThread();
  const results = await Promise.all([
    ...others.map(async (s, i) => {
      const e = S.out(0);
      return [await threads[i]!.WSPBind(s, at, 16, e), e.value];
    }),
    (async () => {
      const e = S.out(0);
      return [await listener.WSPListen(x, 4, e), e.value];
    })(),
  ]);
  t.same(results, [[0, 0], [0, 0], [0, 0], [0, 0], [0, 0]], 'four binds and the listen: all 0');
  const c = await connect4(port);
  if (typeof c === 'string') throw new Error(`client: ${c}`);
  t.teardown(() => c.destroy());
  const received: Buffer[] = [];
  c.on('data', (b: Buffer) => received.push(b));
  const a = await accept(spi, x);
  t.same(await send(spi, a.s, [Buffer.from('bound together')]), [0, 0, 14]);
  await new Promise<void>((resolve) => c.once('data', () => resolve()));
  t.equal(Buffer.concat(received).toString(), 'bound together', 'the client reached the listener');
  for (const s of [a.s, x, ...others]) await spi.WSPCloseSocket(s, S.out(0));
});

t.test('UDP: two binds of one port with SO_REUSEADDR from two sessions at once: exactly one holds the port, and a datagram to it reaches that one', async (t) => {
  const d = await daemon(t);
  const [spiA, spiB] = [await session(t, d), await session(t, d)];
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', () => resolve()));
  const port = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const bindOne = async (spi: S.SpiSession): Promise<[number, number, number]> => {
    const s = await newSocket(spi, 'ipv4', 'udp');
    await setOpt(spi, s, S.SO_REUSEADDR, 1);
    const [ret, err] = await call((e) => spi.WSPBind(s, { family: S.AF_INET, address: '127.0.0.1', port }, 16, e));
    return [s, ret, err];
  };
  const [a, b] = await Promise.all([bindOne(spiA), bindOne(spiB)]);
  const codes = [a[2], b[2]].sort((x, y) => x - y);
  t.same(codes, [0, S.WSAEADDRINUSE], 'one binds, the other session is refused');
  const [holder, s] = a[2] === 0 ? [spiA, a[0]] : [spiB, b[0]];
  const sender = dgram.createSocket('udp4');
  t.teardown(() => sender.close());
  sender.send(Buffer.from('to the holder'), port, '127.0.0.1');
  const got = await recvInto(holder, s, [100]);
  t.equal(got.data.toString(), 'to the holder', 'the holder received the datagram');
});

t.test('another program\'s port stays its own: a second daemon cannot bind or listen on an address a first daemon\'s listener holds, or under it', async (t) => {
  const d1 = await daemon(t);
  const d2 = await daemon(t);
  const a = await session(t, d1);
  const b = await session(t, d2);
  const l = await newSocket(a, 'ipv4', 'tcp');
  t.same(await setOpt(a, l, S.SO_REUSEADDR, 1), [0, 0], 'the first daemon\'s socket sets SO_REUSEADDR');
  t.same(await call((e) => a.WSPBind(l, { family: S.AF_INET, address: '127.0.0.1', port: 0 }, 16, e)), [0, 0], 'binds loopback');
  t.same(await call((e) => a.WSPListen(l, 4, e)), [0, 0], 'and listens');
  const port = (await sockName(a, l)).port;
  for (const address of ['127.0.0.1', '0.0.0.0']) {
    const s = await newSocket(b, 'ipv4', 'tcp');
    t.same(await setOpt(b, s, S.SO_REUSEADDR, 1), [0, 0], `the second daemon's socket sets SO_REUSEADDR too (${address})`);
    t.same(await call((e) => b.WSPBind(s, { family: S.AF_INET, address, port }, 16, e)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], `and cannot bind ${address} on the port`);
  }
  const client = await connect4(port);
  if (typeof client === 'string') throw new Error(`client: ${client}`);
  t.teardown(() => client.destroy());
  t.ok((await accept(a, l)).s > 0, 'a client still reaches the first daemon\'s listener');
});

/** A real client of host:port that sends text once connected, or the error code its connect met. */
function clientSending(host: string, port: number, text: string): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port });
    c.once('connect', () => {
      c.write(text);
      resolve(c);
    });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

for (const loopbackFirst of [false, true]) {
  t.test(`TCP: an any-address and a loopback listener share a port (${loopbackFirst ? 'loopback' : 'any address'} first): each real client reaches the most specific one, and either may close`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const any = await newSocket(spi, 'ipv4', 'tcp');
    const lo = await newSocket(spi, 'ipv4', 'tcp');
    const [first, second] = loopbackFirst ? [lo, any] : [any, lo];
    const addressOf = (s: number, port: number): S.SockAddr => ({ family: S.AF_INET, address: s === lo ? '127.0.0.1' : '0.0.0.0', port });
    t.same(await call((e) => spi.WSPBind(first, addressOf(first, 0), 16, e)), [0, 0], 'the first binds');
    t.same(await call((e) => spi.WSPListen(first, 4, e)), [0, 0], 'and listens');
    const port = (await sockName(spi, first)).port;
    t.same(await call((e) => spi.WSPBind(second, addressOf(second, port), 16, e)), [0, 0], 'the second binds the same port, without options');
    t.same(await call((e) => spi.WSPListen(second, 4, e)), [0, 0], 'and listens');

    const clients: net.Socket[] = [];
    t.teardown(() => clients.forEach((c) => c.destroy()));
    /** A client of host, accepted by listener l: what it sent arrives there. */
    const reaches = async (host: string, l: number, what: string): Promise<void> => {
      const c = await clientSending(host, port, what);
      if (typeof c === 'string') return void t.fail(`${what}: the connect to ${host} failed with ${c}`);
      clients.push(c);
      const { s } = await accept(spi, l);
      const got = await recvInto(spi, s, [64]);
      t.equal(got.data.toString(), what, `${what} (to ${host}) was accepted by the ${l === lo ? 'loopback' : 'any-address'} listener`);
      await spi.WSPCloseSocket(s, S.out(0));
    };
    await reaches('127.0.0.1', lo, 'to loopback');
    await reaches('127.0.0.2', any, 'to another loopback address');

    // The second closes, then the first goes on alone with every client it should get.
    t.same(await call((e) => spi.WSPCloseSocket(second, e)), [0, 0], 'the second closes');
    if (first === any) {
      await reaches('127.0.0.1', any, 'to loopback, the loopback listener gone');
    } else {
      await reaches('127.0.0.1', lo, 'to loopback, the any-address listener gone');
      t.equal(await clientSending('127.0.0.2', port, 'nobody'), 'ECONNREFUSED', 'and another loopback address is refused');
    }
    await spi.WSPCloseSocket(first, S.out(0));
  });
}

t.test('TCP: a loopback listener under an any-address one gets a burst as large as its own backlog, whatever the other\'s', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const any = await newSocket(spi, 'ipv4', 'tcp');
  const lo = await newSocket(spi, 'ipv4', 'tcp');
  t.same(await call((e) => spi.WSPBind(any, { family: S.AF_INET, address: '0.0.0.0', port: 0 }, 16, e)), [0, 0]);
  t.same(await call((e) => spi.WSPListen(any, 1, e)), [0, 0], 'the any-address listener has a backlog of 1');
  const port = (await sockName(spi, any)).port;
  t.same(await call((e) => spi.WSPBind(lo, { family: S.AF_INET, address: '127.0.0.1', port }, 16, e)), [0, 0]);
  t.same(await call((e) => spi.WSPListen(lo, 100, e)), [0, 0], 'the loopback one 100');
  const BURST = 40;
  const clients = await Promise.all(Array.from({ length: BURST }, (_, i) => clientSending('127.0.0.1', port, `client ${i}`)));
  t.teardown(() => clients.forEach((c) => typeof c !== 'string' && c.destroy()));
  t.same(clients.filter((c) => typeof c === 'string'), [], 'every client connects');
  const got: string[] = [];
  for (let i = 0; i < BURST; i++) {
    const { s } = await accept(spi, lo);
    got.push((await recvInto(spi, s, [64])).data.toString());
    await spi.WSPCloseSocket(s, S.out(0));
  }
  t.same(got.sort(), Array.from({ length: BURST }, (_, i) => `client ${i}`).sort(), `the loopback listener accepts all ${BURST}, each with its bytes`);
  for (const x of [lo, any]) await spi.WSPCloseSocket(x, S.out(0));
});

t.test('TCP: a bind beside a listener that covers its address still has the address checked by the host', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const any6 = await newSocket(spi, 'ipv6', 'tcp');
  t.same(await call((e) => spi.WSPBind(any6, ANY6, NAMELEN6, e)), [0, 0], '[::] binds (IPV6_V6ONLY on)');
  t.same(await call((e) => spi.WSPListen(any6, 4, e)), [0, 0], 'and listens');
  const port = (await sockName(spi, any6)).port;
  // An IPv6-only socket cannot bind an IPv4-mapped address: the host says so, listener or not.
  const mapped = await newSocket(spi, 'ipv6', 'tcp');
  t.same(await call((e) => spi.WSPBind(mapped, { ...ANY6, address: '::ffff:127.0.0.1', port }, NAMELEN6, e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'a mapped address on the listening port is WSAEINVAL');
  for (const x of [mapped, any6]) await spi.WSPCloseSocket(x, S.out(0));
});
