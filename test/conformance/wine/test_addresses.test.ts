/**
 * Wine's small tests of addresses and connections (dlls/ws2_32/tests/sock.c), grouped: test_bind,
 * test_listen, test_getsockname, test_getpeername, test_errors, test_connect (its connect() checks;
 * ConnectEx is not an SPI function), test_WSASendTo and test_broadcast. Wine runs most of them
 * on IPv4 only; here each runs on 127.0.0.1 and ::1, with 192.0.2.0 and 2001:db8::1 (documentation
 * addresses, not of this machine) where Wine uses an address that is not local.
 */
import t from 'tap';
import { networkInterfaces } from 'node:os';
import * as S from '@spiwire/client';
import { closedPort } from '../../helpers/harness.js';
import { Scenario, accept, addr, af, call, emptyAddr, fileDaemon, getName, listener, must, namelen, openSession, setBlocking, socket, tcpPair, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const notLocal = (f: Family): S.SockAddr => ({ family: af(f), address: f === 'ipv4' ? '192.0.2.0' : '2001:db8::1', port: 0 });
const anyAddr = (f: Family): S.SockAddr => ({ family: af(f), address: f === 'ipv4' ? '0.0.0.0' : '::', port: 0 });

interface Ctx {
  spi: S.SpiSession;
  f: Family;
}

const ctx = async (f: Family): Promise<Ctx> => ({ spi: await openSession(t, d), f });
const bind = (x: Ctx, s: number, name: S.SockAddr | null, len: number): Promise<[number, number]> => call((e) => x.spi.WSPBind(s, name, len, e));

// ================================================================ test_bind

const bindSc = new Scenario<Ctx>(ctx);

bindSc.step(t, 'test_bind: no address fails with WSAEFAULT (namelen 0 and namelen of a sockaddr)', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s, null, 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'NULL, 0');
  c.same(await bind(x, s, null, namelen(x.f)), [S.SOCKET_ERROR, S.WSAEFAULT], 'NULL, full size');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

bindSc.step(t, 'test_bind: an address with namelen 0 fails with WSAEFAULT', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s, addr(x.f, 0), 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'namelen 0');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

bindSc.step(t, 'test_bind: an unknown address family (0xdead) fails with WSAEAFNOSUPPORT', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s, { family: 0xdead, address: '127.0.0.1', port: 0 }, 16), [S.SOCKET_ERROR, S.WSAEAFNOSUPPORT], 'family 0xdead');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

bindSc.step(t, 'test_bind: a namelen one byte short fails with WSAEFAULT', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s, addr(x.f, 0), namelen(x.f) - 1), [S.SOCKET_ERROR, S.WSAEFAULT], 'namelen - 1');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

bindSc.step(t, 'test_bind: an address that is not local fails with WSAEADDRNOTAVAIL (TCP and UDP)', {}, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    c.same(await bind(x, s, notLocal(x.f), namelen(x.f)), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], kind);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

bindSc.step(t, 'test_bind: loopback succeeds (TCP and UDP); a second bind of the socket fails with WSAEINVAL', {}, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    c.same(await bind(x, s, addr(x.f, 0), namelen(x.f)), [0, 0], `${kind}: first bind`);
    c.same(await bind(x, s, addr(x.f, 0), namelen(x.f)), [S.SOCKET_ERROR, S.WSAEINVAL], `${kind}: second bind`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

bindSc.step(t, 'test_bind: a second socket bound to the first one\'s address fails with WSAEADDRINUSE', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  await bind(x, s, addr(x.f, 0), namelen(x.f));
  const [, , name] = await getName(x.spi, s);
  const s2 = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s2, name, namelen(x.f)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'second socket');
  await x.spi.WSPCloseSocket(s, S.out(0));
  await x.spi.WSPCloseSocket(s2, S.out(0));
});

bindSc.step(t, 'test_bind: IPv6 loopback: a scope id naming no interface fails with WSAEADDRNOTAVAIL; scope 0 binds and getsockname gives it; the old 24-byte sockaddr_in6 is WSAEFAULT', { families: ['ipv6'] }, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  const loop = addr(x.f, 0);
  c.same(await bind(x, s, loop, 24), [S.SOCKET_ERROR, S.WSAEFAULT], 'bind with namelen 24');
  c.same(await bind(x, s, { ...loop, scopeId: 0xabacab }, namelen(x.f)), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], 'bind with scope id 0xabacab');
  c.same(await bind(x, s, { ...loop, scopeId: 0 }, namelen(x.f)), [0, 0], 'bind with scope id 0');
  const e = S.out(0);
  c.same([await x.spi.WSPGetSockName(s, emptyAddr(), S.out(24), e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], 'getsockname with namelen 24');
  const [r, , name] = await getName(x.spi, s);
  c.same([r, name.family, name.address, name.port !== 0, name.scopeId ?? 0], [0, S.AF_INET6, '::1', true, 0], 'getsockname: ::1, a port, scope 0');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

/**
 * The machine's adapters that are up, as Wine's test_bind walks them (GetAdaptersAddresses):
 * node lists the interfaces that are up and running. Left out: veth pairs, which come and go with
 * containers, and interfaces whose names node cannot take as an IPv6 zone (docker_gwbridge;
 * proto/README.md, WSPBind).
 */
function adapterAddresses(f: Family): Array<{ name: string; address: string; scopeId: number }> {
  const want = f === 'ipv4' ? 'IPv4' : 'IPv6';
  return Object.entries(networkInterfaces())
    .filter(([name]) => !name.startsWith('veth') && /^[0-9a-zA-Z.:-]+$/.test(name))
    .flatMap(([name, list]) => (list ?? []).filter((a) => a.family === want).map((a) => ({ name, address: a.address, scopeId: a.family === 'IPv6' ? (a.scopeid ?? 0) : 0 })));
}

bindSc.step(t, "test_bind: every unicast address of the machine's adapters binds (TCP); an IPv6 one also with scope 0, and getsockname then gives its adapter's scope id", {}, async (c, x) => {
  for (const a of adapterAddresses(x.f)) {
    const name: S.SockAddr = x.f === 'ipv4' ? { family: S.AF_INET, address: a.address, port: 0 } : { family: S.AF_INET6, address: a.address, port: 0, scopeId: a.scopeId };
    const what = `${a.name} ${a.address}${a.scopeId ? ` (scope ${a.scopeId})` : ''}`;
    const s = await socket(x.spi, x.f, 'tcp');
    c.same(await bind(x, s, name, namelen(x.f)), [0, 0], `${what}: bind`);
    await x.spi.WSPCloseSocket(s, S.out(0));
    if (x.f === 'ipv4') continue;
    const s6 = await socket(x.spi, x.f, 'tcp');
    c.same(await bind(x, s6, name, 24), [S.SOCKET_ERROR, S.WSAEFAULT], `${what}: bind with the old 24-byte sockaddr_in6`);
    c.same(await bind(x, s6, { ...name, scopeId: 0xabacab }, namelen(x.f)), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], `${what}: bind with scope id 0xabacab`);
    c.same(await bind(x, s6, { ...name, scopeId: 0 }, namelen(x.f)), [0, 0], `${what}: bind with scope id 0`);
    const e = S.out(0);
    c.same([await x.spi.WSPGetSockName(s6, emptyAddr(), S.out(24), e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], `${what}: getsockname with namelen 24`);
    const [r, , got] = await getName(x.spi, s6);
    c.same([r, got.family, got.address, got.port !== 0, got.scopeId ?? 0], [0, S.AF_INET6, a.address, true, a.scopeId], `${what}: getsockname gives the address, a port and the adapter's scope id`);
    await x.spi.WSPCloseSocket(s6, S.out(0));
  }
});

// ================================================================ test_listen

const listenSc = new Scenario<Ctx & { a: number; b: number; name: S.SockAddr }>(async (f) => ({ ...(await ctx(f)), a: -1, b: -1, name: emptyAddr() }));

listenSc.step(t, 'test_listen: listen on a handle that is no socket (0, 0xdeadbeef) fails with WSAENOTSOCK', {}, async (c, x) => {
  for (const h of [0, 0xdeadbeef]) c.same(await call((e) => x.spi.WSPListen(h, 0, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], `handle ${h}`);
});

listenSc.step(t, 'test_listen: listen on a UDP socket fails with WSAEOPNOTSUPP', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'udp');
  c.same(await call((e) => x.spi.WSPListen(s, 1, e)), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], 'listen');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

listenSc.step(t, 'test_listen: listen on an unbound TCP socket fails with WSAEINVAL (backlog -2, 1, SOMAXCONN)', {}, async (c, x) => {
  x.a = await socket(x.spi, x.f, 'tcp');
  x.b = await socket(x.spi, x.f, 'tcp');
  for (const backlog of [-2, 1, 0x7fffffff]) c.same(await call((e) => x.spi.WSPListen(x.a, backlog, e)), [S.SOCKET_ERROR, S.WSAEINVAL], `backlog ${backlog}`);
});

listenSc.step(t, 'test_listen: listen on a bound socket succeeds, and a second listen succeeds too', {}, async (c, x) => {
  await must('WSPBind', (e) => x.spi.WSPBind(x.a, addr(x.f, 0), namelen(x.f), e));
  x.name = (await getName(x.spi, x.a))[2];
  c.same(await call((e) => x.spi.WSPListen(x.a, 0, e)), [0, 0], 'listen');
  c.same(await call((e) => x.spi.WSPListen(x.a, 0x7fffffff, e)), [0, 0], 'listen again');
});

listenSc.step(t, 'test_listen: listen on the other, unbound, socket still fails with WSAEINVAL', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPListen(x.b, 0x7fffffff, e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'listen');
});

listenSc.step(t, 'test_listen: binding another socket to a listening socket\'s address fails with WSAEADDRINUSE', {}, async (c, x) => {
  await x.spi.WSPCloseSocket(x.b, S.out(0));
  const s = await socket(x.spi, x.f, 'tcp');
  c.same(await bind(x, s, x.name, namelen(x.f)), [S.SOCKET_ERROR, S.WSAEADDRINUSE], 'bind');
  await x.spi.WSPCloseSocket(s, S.out(0));
  await x.spi.WSPCloseSocket(x.a, S.out(0));
});

listenSc.step(t, 'test_listen: SO_ACCEPTCONN reads 0 on a bound socket and 1 once it listens, and cannot be set (WSAENOPROTOOPT)', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  await must('WSPBind', (e) => x.spi.WSPBind(s, addr(x.f, 0), namelen(x.f), e));
  const read = async (): Promise<[number, number, number]> => {
    const v = new Uint8Array([0xad, 0xde, 0, 0]);
    const [r, err] = await call((e) => x.spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_ACCEPTCONN, v, S.out(4), e));
    return [r, err, new DataView(v.buffer).getUint32(0, true)];
  };
  const trySet = async (when: string): Promise<void> => {
    for (const v of [1, 0]) c.same(await call((e) => x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_ACCEPTCONN, Uint8Array.of(v, 0, 0, 0), 4, e)), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], `${when}: setting ${v}`);
  };
  c.same(await read(), [0, 0, 0], 'bound: 0');
  await trySet('bound');
  await must('WSPListen', (e) => x.spi.WSPListen(s, 0, e));
  await must('WSPListen', (e) => x.spi.WSPListen(s, 0x7fffffff, e));
  c.same(await read(), [0, 0, 1], 'listening: 1');
  await trySet('listening');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ test_getsockname

const nameSc = new Scenario<Ctx & { s: number }>(async (f) => {
  const x = await ctx(f);
  return { ...x, s: await socket(x.spi, f, 'tcp') };
});

nameSc.step(t, 'test_getsockname: an unbound socket fails with WSAEINVAL and leaves the address', {}, async (c, x) => {
  const name = anyAddr(x.f);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockName(x.s, name, S.out(namelen(x.f)), e);
  c.same([r, e.value], [S.SOCKET_ERROR, S.WSAEINVAL], 'WSPGetSockName');
  c.same(name, anyAddr(x.f), 'the address is untouched');
});

nameSc.step(t, 'test_getsockname: bound to the any address and port 0: the any address and a port', {}, async (c, x) => {
  await must('WSPBind', (e) => x.spi.WSPBind(x.s, anyAddr(x.f), namelen(x.f), e));
  const [r, err, name, len] = await getName(x.spi, x.s);
  c.same([r, err, len], [0, 0, namelen(x.f)], 'WSPGetSockName');
  c.same([name.family, name.address], [af(x.f), anyAddr(x.f).address], 'the family and the any address');
  c.not(name.port, 0, 'a port was chosen');
});

nameSc.step(t, 'test_getsockname: a namelen one byte short fails with WSAEFAULT and is left as it was', {}, async (c, x) => {
  const len = S.out(namelen(x.f) - 1);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockName(x.s, emptyAddr(), len, e);
  c.same([r, e.value, len.value], [S.SOCKET_ERROR, S.WSAEFAULT, namelen(x.f) - 1], 'WSPGetSockName');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

// ================================================================ test_getpeername

const peerSc = new Scenario<Ctx & { s: number; to: S.SockAddr }>(async (f) => {
  const x = await ctx(f);
  return { ...x, s: await socket(x.spi, f, 'udp'), to: addr(f, await closedPort(f, 'udp')) };
});

const peerName = (x: Ctx & { s: number }, name: S.SockAddr | null, len: S.Out | null): Promise<[number, number]> => call((e) => x.spi.WSPGetPeerName(x.s, name, len, e));

peerSc.step(t, 'test_getpeername: a handle that is no socket fails with WSAENOTSOCK', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPGetPeerName(S.INVALID_SOCKET, null, null, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'WSPGetPeerName');
});

peerSc.step(t, 'test_getpeername: an unconnected UDP socket fails with WSAENOTCONN, even with no buffers', {}, async (c, x) => {
  c.same(await peerName(x, null, null), [S.SOCKET_ERROR, S.WSAENOTCONN], 'WSPGetPeerName');
});

peerSc.step(t, 'test_getpeername: a WSPSendTo does not connect: still WSAENOTCONN', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPSendTo(x.s, [S.wsabuf('hello world\0')], 1, S.out(0), 0, x.to, namelen(x.f), null, null, null, e)), [0, 0], 'WSPSendTo');
  c.same(await peerName(x, null, null), [S.SOCKET_ERROR, S.WSAENOTCONN], 'WSPGetPeerName');
});

peerSc.step(t, 'test_getpeername: once connected, no name buffer, or none for the length, fails with WSAEFAULT', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, x.to, namelen(x.f), null, null, null, null, e)), [0, 0], 'WSPConnect');
  c.same(await peerName(x, null, null), [S.SOCKET_ERROR, S.WSAEFAULT], 'no name, no length');
  c.same(await peerName(x, emptyAddr(), null), [S.SOCKET_ERROR, S.WSAEFAULT], 'no length');
});

peerSc.step(t, 'test_getpeername: a length of 0 fails with WSAEFAULT and stays 0', {}, async (c, x) => {
  for (const [label, name] of [['no name', null], ['a name', emptyAddr()]] as const) {
    const len = S.out(0);
    c.same([...(await peerName(x, name, len)), len.value], [S.SOCKET_ERROR, S.WSAEFAULT, 0], label);
  }
});

peerSc.step(t, 'test_getpeername: a large enough length gives the connected address and its size', {}, async (c, x) => {
  const name = emptyAddr();
  const len = S.out(128);
  c.same(await peerName(x, name, len), [0, 0], 'WSPGetPeerName');
  c.same([name.family, name.address, name.port, len.value], [x.to.family, x.to.address, x.to.port, namelen(x.f)], 'the address and its size');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

// ================================================================ test_errors and test_connect

const connSc = new Scenario<Ctx>(ctx);

connSc.step(t, 'test_errors: a connect to a port nobody listens on fails with WSAECONNREFUSED', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  const port = await closedPort(x.f, 'tcp');
  c.same(await call((e) => x.spi.WSPConnect(s, addr(x.f, port), namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'connect');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

connSc.step(t, 'test_connect: WSPConnect on a listening socket fails with WSAEINVAL', {}, async (c, x) => {
  const l = await listener(x.spi, x.f);
  c.same(await call((e) => x.spi.WSPConnect(l.s, l.name, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEINVAL], 'connect');
  await x.spi.WSPCloseSocket(l.s, S.out(0));
});

connSc.step(t, 'test_connect: WSPConnect on either end of a connection fails with WSAEISCONN', {}, async (c, x) => {
  const l = await listener(x.spi, x.f);
  const { client, server } = await tcpPair(x.spi, x.f);
  for (const [label, s] of [['the connecting end', client], ['the accepted end', server]] as const) c.same(await call((e) => x.spi.WSPConnect(s, l.name, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEISCONN], label);
  for (const s of [client, server, l.s]) await x.spi.WSPCloseSocket(s, S.out(0));
});

connSc.step(t, 'test_connect: after a refused connect, a nonblocking connect to a listener starts (WSAEWOULDBLOCK) and is accepted', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  const refused = await call(async (e) => x.spi.WSPConnect(s, addr(x.f, await closedPort(x.f, 'tcp')), namelen(x.f), null, null, null, null, e));
  c.same(refused, [S.SOCKET_ERROR, S.WSAECONNREFUSED], 'the first connect is refused');
  await setBlocking(x.spi, s, false);
  const l = await listener(x.spi, x.f);
  c.same(await call((e) => x.spi.WSPConnect(s, l.name, namelen(x.f), null, null, null, null, e)), [S.SOCKET_ERROR, S.WSAEWOULDBLOCK], 'the second connect starts');
  const a = await accept(x.spi, l.s);
  c.ok(a !== S.INVALID_SOCKET, 'the connection is accepted');
  for (const h of [a, s, l.s]) await x.spi.WSPCloseSocket(h, S.out(0));
});

// ================================================================ test_WSASendTo

const sendToSc = new Scenario<Ctx & { s: number; to: S.SockAddr }>(async (f) => {
  const x = await ctx(f);
  return { ...x, s: await socket(x.spi, f, 'udp'), to: addr(f, await closedPort(f, 'udp')) };
});

sendToSc.step(t, 'test_WSASendTo: WSPSendTo on INVALID_SOCKET fails with WSAENOTSOCK', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPSendTo(S.INVALID_SOCKET, [S.wsabuf('hello world\0')], 1, null, 0, x.to, namelen(x.f), null, null, null, e)), [S.SOCKET_ERROR, S.WSAENOTSOCK], 'WSPSendTo');
});

sendToSc.step(t, 'test_WSASendTo: WSPGetSockName of a new UDP socket fails with WSAEINVAL', {}, async (c, x) => {
  const [r, err] = await getName(x.spi, x.s);
  c.same([r, err], [S.SOCKET_ERROR, S.WSAEINVAL], 'WSPGetSockName');
});

sendToSc.step(t, 'test_WSASendTo: WSPSendTo without lpNumberOfBytesSent (and no OVERLAPPED) fails with WSAEFAULT', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPSendTo(x.s, [S.wsabuf('hello world\0')], 1, null, 0, x.to, namelen(x.f), null, null, null, e)), [S.SOCKET_ERROR, S.WSAEFAULT], 'WSPSendTo');
});

sendToSc.step(t, 'test_WSASendTo: WSPSendTo succeeds and binds the socket: WSPGetSockName then gives the family and a port', {}, async (c, x) => {
  c.same(await call((e) => x.spi.WSPSendTo(x.s, [S.wsabuf('hello world\0')], 1, S.out(0), 0, x.to, namelen(x.f), null, null, null, e)), [0, 0], 'WSPSendTo');
  const [r, , name] = await getName(x.spi, x.s);
  c.equal(r, 0, 'WSPGetSockName');
  c.equal(name.family, af(x.f), 'the family');
  c.not(name.port, 0, 'a port');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

// ================================================================ test_broadcast

const BCAST: S.SockAddr = { family: S.AF_INET, address: '255.255.255.255', port: 12345 };

const bc = new Scenario<Ctx & { s: number }>(async (f) => {
  const x = await ctx(f);
  const s = await socket(x.spi, f, 'udp');
  // Bound to loopback first (Wine's test does not bind): a limited broadcast from a loopback
  // source goes out on lo only, so no datagram of these tests leaves the machine.
  await must('WSPBind', (e) => x.spi.WSPBind(s, addr(f, 0), namelen(f), e));
  return { ...x, s };
});

const bcastTo = (x: Ctx & { s: number }): Promise<[number, number]> => call((e) => x.spi.WSPSendTo(x.s, [S.wsabuf('test')], 1, S.out(0), 0, BCAST, 16, null, null, null, e));
const broadcastOpt = (x: Ctx & { s: number }, on: number): Promise<[number, number]> => call((e) => x.spi.WSPSetSockOpt(x.s, S.SOL_SOCKET, S.SO_BROADCAST, new Uint8Array([on, 0, 0, 0]), 4, e));

bc.step(t, 'test_broadcast: WSPSendTo 255.255.255.255 fails without SO_BROADCAST, succeeds with it, fails again once it is cleared', { families: ['ipv4'] }, async (c, x) => {
  c.equal((await bcastTo(x))[0], S.SOCKET_ERROR, 'without SO_BROADCAST');
  c.same(await broadcastOpt(x, 1), [0, 0], 'SO_BROADCAST 1');
  c.same(await bcastTo(x), [0, 0], 'with SO_BROADCAST');
  c.same(await broadcastOpt(x, 0), [0, 0], 'SO_BROADCAST 0');
  c.equal((await bcastTo(x))[0], S.SOCKET_ERROR, 'cleared again');
});

bc.step(t, 'test_broadcast: WSPConnect to 255.255.255.255 succeeds without SO_BROADCAST, which still reads 0', { families: ['ipv4'] }, async (c, x) => {
  c.same(await call((e) => x.spi.WSPConnect(x.s, BCAST, 16, null, null, null, null, e)), [0, 0], 'WSPConnect');
  const v = new Uint8Array(4).fill(1);
  const e = S.out(0);
  c.same([await x.spi.WSPGetSockOpt(x.s, S.SOL_SOCKET, S.SO_BROADCAST, v, S.out(4), e), v[0]], [0, 0], 'SO_BROADCAST');
});

bc.step(t, 'test_broadcast: connected to the broadcast address, WSPSendTo fails and WSPSend succeeds', { families: ['ipv4'] }, async (c, x) => {
  c.equal((await bcastTo(x))[0], S.SOCKET_ERROR, 'WSPSendTo');
  c.same(await call((e) => x.spi.WSPSend(x.s, [S.wsabuf('test')], 1, S.out(0), 0, null, null, null, e)), [0, 0], 'WSPSend');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

bc.step(t, 'test_broadcast: IPv6 WSPSendTo to the multicast address ff01::1 succeeds', { families: ['ipv6'] }, async (c, x) => {
  c.same(await call((e) => x.spi.WSPSendTo(x.s, [S.wsabuf('test')], 1, S.out(0), 0, { family: S.AF_INET6, address: 'ff01::1', port: 12345 }, 28, null, null, null, e)), [0, 0], 'WSPSendTo');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});
