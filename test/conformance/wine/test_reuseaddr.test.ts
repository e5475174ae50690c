/**
 * Wine's test_reuseaddr and test_ipv6only (dlls/ws2_32/tests/sock.c): binds beside each other on
 * one port, with and without SO_REUSEADDR, SO_EXCLUSIVEADDRUSE and IPV6_V6ONLY. Wine binds a fixed
 * port; these cases bind port 0 first and reuse the port it got. Nothing is sent anywhere but
 * loopback: the any address is only bound to, or listened on.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { accept, addr, af, call, dword, fileDaemon, getName, must, namelen, openSession, readU32, socket, wineCase, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const anyAddr = (f: Family, port: number): S.SockAddr => ({ family: af(f), address: f === 'ipv4' ? '0.0.0.0' : '::', port });

interface BindOptions {
  reuse?: boolean;
  exclusive?: boolean;
  /** IPV6_V6ONLY (AF_INET6 only; Windows' default is on). */
  v6only?: boolean;
}

async function setBool(spi: S.SpiSession, s: number, level: number, opt: number, on: boolean): Promise<[number, number]> {
  return call((e) => spi.WSPSetSockOpt(s, level, opt, dword(on ? 1 : 0), 4, e));
}

async function getByte(spi: S.SpiSession, s: number, level: number, opt: number): Promise<[number, number, number, number]> {
  const buf = dword(2);
  const len = S.out(4);
  const [r, err] = await call((e) => spi.WSPGetSockOpt(s, level, opt, buf, len, e));
  return [r, err, readU32(buf), len.value];
}

/** A TCP socket of family f with the options given, bound to name: [socket, 0 or the bind's error]. */
async function boundTo(spi: S.SpiSession, f: Family, name: S.SockAddr, o: BindOptions = {}): Promise<[number, number]> {
  const s = await socket(spi, f, 'tcp');
  if (o.exclusive) await must('SO_EXCLUSIVEADDRUSE', (e) => spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_EXCLUSIVEADDRUSE, dword(1), 4, e));
  if (o.reuse) await must('SO_REUSEADDR', (e) => spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_REUSEADDR, dword(1), 4, e));
  if (o.v6only !== undefined) await must('IPV6_V6ONLY', (e) => spi.WSPSetSockOpt(s, S.IPPROTO_IPV6, S.IPV6_V6ONLY, dword(o.v6only ? 1 : 0), 4, e));
  const [r, err] = await call((e) => spi.WSPBind(s, name, namelen(f), e));
  return [s, r === 0 ? 0 : err];
}

wineCase(t, 'test_reuseaddr: two sockets cannot bind the any address on one port: the second bind fails with WSAEADDRINUSE', {}, async (c) => {
  const spi = await openSession(t, d);
  const [s1, e1] = await boundTo(spi, c.f, anyAddr(c.f, 0));
  c.equal(e1, 0, 'the first binds');
  const port = (await getName(spi, s1))[2].port;
  const [s2, e2] = await boundTo(spi, c.f, anyAddr(c.f, port));
  c.equal(e2, S.WSAEADDRINUSE, 'the second bind');
  for (const s of [s1, s2]) await spi.WSPCloseSocket(s, S.out(0));
});


/**
 * Wine's two sequences: a listener on one of the any and loopback addresses, then a socket on the
 * other binds its port and listens; a loopback connection goes to the loopback socket. (The daemon
 * keeps one real socket, the any address's, and hands its loopback connections over:
 * port-reservations.ts.)
 */
function sharedPort(name: string, loopbackFirst: boolean): void {
  wineCase(t, name, {}, async (c) => {
    const spi = await openSession(t, d);
    const first = loopbackFirst ? 'loopback' : 'the any address';
    const second = loopbackFirst ? 'the any address' : 'loopback';
    const [s1, e1] = await boundTo(spi, c.f, loopbackFirst ? addr(c.f, 0) : anyAddr(c.f, 0));
    c.equal(e1, 0, `${first} binds`);
    await must('WSPListen', (e) => spi.WSPListen(s1, 1, e));
    const port = (await getName(spi, s1))[2].port;
    const [s2, e2] = await boundTo(spi, c.f, loopbackFirst ? anyAddr(c.f, port) : addr(c.f, port));
    c.equal(e2, 0, `${second} binds the same port`);
    c.same(await call((e) => spi.WSPListen(s2, 1, e)), [0, 0], 'and listens');
    const s3 = await socket(spi, c.f, 'tcp');
    c.same(await call((e) => spi.WSPConnect(s3, addr(c.f, port), namelen(c.f), null, null, null, null, e)), [0, 0], 'a loopback connection');
    c.not(await accept(spi, loopbackFirst ? s1 : s2), S.INVALID_SOCKET, 'is accepted by the loopback socket');
    for (const s of [s1, s2, s3]) await spi.WSPCloseSocket(s, S.out(0));
  });
}

sharedPort('test_reuseaddr: an any-address listener first, then a loopback socket binds the same port, listens and takes a loopback connection', false);
sharedPort('test_reuseaddr: a loopback listener first, then an any-address socket binds the same port and listens; a loopback connection goes to the loopback socket', true);

wineCase(t, 'test_ipv6only: with IPV6_V6ONLY on by default, an IPv4 socket binds 0.0.0.0 on the port an IPv6 socket holds on [::]', { families: ['ipv6'] }, async (c) => {
  const spi = await openSession(t, d);
  const [v6, e6] = await boundTo(spi, 'ipv6', anyAddr('ipv6', 0));
  c.equal(e6, 0, 'the IPv6 socket binds [::]');
  const port = (await getName(spi, v6))[2].port;
  const [v4, e4] = await boundTo(spi, 'ipv4', anyAddr('ipv4', port));
  c.equal(e4, 0, 'the IPv4 socket binds 0.0.0.0 on the same port');
  for (const s of [v4, v6]) await spi.WSPCloseSocket(s, S.out(0));
});

wineCase(t, 'test_reuseaddr: a socket with SO_REUSEADDR may not bind the address of one without: WSAEACCES', {}, async (c) => {
  const spi = await openSession(t, d);
  const [s1, e1] = await boundTo(spi, c.f, addr(c.f, 0));
  c.equal(e1, 0, 'the first binds loopback');
  const port = (await getName(spi, s1))[2].port;
  const [s2, e2] = await boundTo(spi, c.f, addr(c.f, port), { reuse: true });
  c.equal(e2, S.WSAEACCES, 'the second, with SO_REUSEADDR, fails');
  for (const s of [s1, s2]) await spi.WSPCloseSocket(s, S.out(0));
});

wineCase(t, 'test_reuseaddr: SO_REUSEADDR reads 0 by default; two sockets that both set it bind one address, and one that did not still fails', {}, async (c) => {
  const spi = await openSession(t, d);
  const [s1, e1] = await boundTo(spi, c.f, addr(c.f, 0), { reuse: true });
  c.equal(e1, 0, 'the first binds loopback with SO_REUSEADDR');
  const port = (await getName(spi, s1))[2].port;
  const s2 = await socket(spi, c.f, 'tcp');
  const [r, err, v] = await getByte(spi, s2, S.SOL_SOCKET, S.SO_REUSEADDR);
  c.same([r, err, v], [0, 0, 0], 'a fresh socket reads SO_REUSEADDR 0, all 4 bytes written');
  const [r2] = await call((e) => spi.WSPBind(s2, addr(c.f, port), namelen(c.f), e));
  c.equal(r2, S.SOCKET_ERROR, 'without the option its bind fails');
  c.same(await setBool(spi, s2, S.SOL_SOCKET, S.SO_REUSEADDR, true), [0, 0], 'the failed bind left it unbound: it sets SO_REUSEADDR');
  c.same(await call((e) => spi.WSPBind(s2, addr(c.f, port), namelen(c.f), e)), [0, 0], 'and binds the same address');
  c.same((await getName(spi, s2))[2].port, port, 'on the same port');
  for (const s of [s1, s2]) await spi.WSPCloseSocket(s, S.out(0));
});

wineCase(t, 'test_reuseaddr: SO_REUSEADDR and SO_EXCLUSIVEADDRUSE cannot both be on: the later setsockopt fails with WSAEINVAL, in either order', {}, async (c) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, c.f, 'tcp');
  c.same(await setBool(spi, s, S.SOL_SOCKET, S.SO_REUSEADDR, true), [0, 0], 'SO_REUSEADDR on');
  c.same(await setBool(spi, s, S.SOL_SOCKET, S.SO_EXCLUSIVEADDRUSE, true), [S.SOCKET_ERROR, S.WSAEINVAL], 'then SO_EXCLUSIVEADDRUSE');
  await setBool(spi, s, S.SOL_SOCKET, S.SO_REUSEADDR, false);
  c.same(await setBool(spi, s, S.SOL_SOCKET, S.SO_EXCLUSIVEADDRUSE, true), [0, 0], 'SO_REUSEADDR off: SO_EXCLUSIVEADDRUSE on');
  c.same(await setBool(spi, s, S.SOL_SOCKET, S.SO_REUSEADDR, true), [S.SOCKET_ERROR, S.WSAEINVAL], 'then SO_REUSEADDR');
  c.same((await getByte(spi, s, S.SOL_SOCKET, S.SO_EXCLUSIVEADDRUSE)).slice(0, 3), [0, 0, 1], 'SO_EXCLUSIVEADDRUSE reads 1');
  c.same((await getByte(spi, s, S.SOL_SOCKET, S.SO_REUSEADDR)).slice(0, 3), [0, 0, 0], 'SO_REUSEADDR reads 0');
  await spi.WSPCloseSocket(s, S.out(0));
});

/** One side of a row of Wine's tests_exclusive table: the family and address, SO_EXCLUSIVEADDRUSE. */
interface Side {
  v6: boolean;
  address: string;
  exclusive: boolean;
}

const v4 = (address: string, exclusive = false): Side => ({ v6: false, address, exclusive });
const v6 = (address: string, exclusive = false): Side => ({ v6: true, address, exclusive });

/** Wine's tests_exclusive: [first bind, second bind, the second's error (0: it binds)]. Every IPv6 socket has IPV6_V6ONLY off. */
const EXCLUSIVE_TABLE: Array<[Side, Side, number]> = [
  [v4('0.0.0.0', true), v4('127.0.0.1'), S.WSAEACCES],
  [v6('::', true), v4('127.0.0.1'), S.WSAEACCES],
  [v4('0.0.0.0'), v4('127.0.0.1', true), 0],
  [v4('0.0.0.0', true), v4('127.0.0.1', true), S.WSAEACCES],
  [v4('127.0.0.1', true), v4('0.0.0.0'), 0],
  [v4('127.0.0.1'), v4('0.0.0.0', true), S.WSAEADDRINUSE],
  [v4('127.0.0.1'), v6('::', true), S.WSAEADDRINUSE],
  [v6('::1'), v4('0.0.0.0', true), 0],
  [v6('::1', true), v4('127.0.0.1', true), 0],
  [v6('::ffff:127.0.0.1'), v4('0.0.0.0', true), S.WSAEADDRINUSE],
  [v6('::', true), v4('0.0.0.0'), S.WSAEACCES],
  [v6('::'), v4('0.0.0.0', true), 0],
  [v4('0.0.0.0'), v4('0.0.0.0', true), S.WSAEADDRINUSE],
  [v4('0.0.0.0'), v4('0.0.0.0'), S.WSAEADDRINUSE],
  [v6('::'), v4('0.0.0.0'), 0],
  [v6('::ffff:0.0.0.0'), v4('0.0.0.0'), S.WSAEADDRINUSE],
  [v6('::ffff:127.0.0.1'), v4('127.0.0.1'), S.WSAEADDRINUSE],
  [v4('127.0.0.1'), v6('::ffff:127.0.0.1'), S.WSAEADDRINUSE],
  [v4('127.0.0.1', true), v4('127.0.0.1'), S.WSAEADDRINUSE],
  [v4('127.0.0.1'), v4('127.0.0.1', true), S.WSAEADDRINUSE],
];

const sideText = (x: Side): string => `${x.v6 ? `[${x.address}]` : x.address}${x.exclusive ? ' exclusive' : ''}`;

wineCase(t, 'test_reuseaddr: the tests_exclusive table: SO_EXCLUSIVEADDRUSE, wildcards, dual-stack and mapped IPv6 addresses beside IPv4 on one port', { families: ['ipv4'] }, async (c) => {
  const spi = await openSession(t, d);
  for (const [first, second, want] of EXCLUSIVE_TABLE) {
    const label = `${sideText(first)}, then ${sideText(second)}`;
    const bindSide = async (x: Side, port: number): Promise<[number, number]> => {
      const f: Family = x.v6 ? 'ipv6' : 'ipv4';
      return boundTo(spi, f, { ...addr(f, port), address: x.address }, { exclusive: x.exclusive, ...(x.v6 ? { v6only: false } : {}) });
    };
    const [s1, e1] = await bindSide(first, 0);
    c.equal(e1, 0, `${label}: the first binds`);
    const port = (await getName(spi, s1))[2].port;
    const [s2, e2] = await bindSide(second, port);
    c.equal(e2, want, `${label}: the second ${want === 0 ? 'binds' : `fails with ${want}`}`);
    for (const s of [s1, s2]) await spi.WSPCloseSocket(s, S.out(0));
  }
});

wineCase(t, 'test_ipv6only: IPV6_V6ONLY reads 1 on a fresh IPv6 socket (one byte, optlen 1)', { families: ['ipv6'] }, async (c) => {
  const spi = await openSession(t, d);
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(spi, 'ipv6', kind);
    c.same(await getByte(spi, s, S.IPPROTO_IPV6, S.IPV6_V6ONLY), [0, 0, 1, 1], `${kind}: 2 becomes 1, optlen 1`);
    await spi.WSPCloseSocket(s, S.out(0));
  }
});

wineCase(t, 'test_ipv6only: an IPv4 socket takes IPV6_V6ONLY before bind, binds 0.0.0.0 beside [::] on one port, and cannot change it after', { families: ['ipv6'] }, async (c) => {
  const spi = await openSession(t, d);
  const [s6, e6] = await boundTo(spi, 'ipv6', anyAddr('ipv6', 0));
  c.equal(e6, 0, 'the IPv6 socket binds [::] (IPV6_V6ONLY on)');
  const port = (await getName(spi, s6))[2].port;
  const s4 = await socket(spi, 'ipv4', 'tcp');
  c.same((await getByte(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY)).slice(0, 3), [0, 0, 1], 'the IPv4 socket reads 1');
  c.same(await setBool(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY, false), [0, 0], 'sets 0');
  c.same((await getByte(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY)).slice(0, 3), [0, 0, 0], 'reads 0');
  c.same(await setBool(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY, true), [0, 0], 'sets 1');
  c.same(await call((e) => spi.WSPBind(s4, anyAddr('ipv4', port), namelen('ipv4'), e)), [0, 0], 'binds 0.0.0.0 on the port [::] holds');
  c.equal((await setBool(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY, false))[0], S.SOCKET_ERROR, 'after bind, setting 0 fails');
  c.equal((await setBool(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY, true))[0], S.SOCKET_ERROR, 'and setting 1, the same value, fails too');
  c.same((await getByte(spi, s4, S.IPPROTO_IPV6, S.IPV6_V6ONLY)).slice(0, 3), [0, 0, 1], 'it still reads 1');
  for (const s of [s4, s6]) await spi.WSPCloseSocket(s, S.out(0));
});

wineCase(t, 'test_ipv6only: an exclusive dual-stack [::] keeps an IPv4 socket with SO_REUSEADDR off 0.0.0.0 on its port: WSAEACCES', { families: ['ipv6'] }, async (c) => {
  const spi = await openSession(t, d);
  const [s6, e6] = await boundTo(spi, 'ipv6', anyAddr('ipv6', 0), { v6only: false, exclusive: true });
  c.equal(e6, 0, 'the dual-stack socket binds [::] exclusively');
  c.same((await getByte(spi, s6, S.IPPROTO_IPV6, S.IPV6_V6ONLY)).slice(0, 3), [0, 0, 0], 'IPV6_V6ONLY still reads 0 after bind');
  const port = (await getName(spi, s6))[2].port;
  const [s4, e4] = await boundTo(spi, 'ipv4', anyAddr('ipv4', port), { reuse: true });
  c.equal(e4, S.WSAEACCES, 'the IPv4 bind');
  for (const s of [s4, s6]) await spi.WSPCloseSocket(s, S.out(0));
});

wineCase(t, 'test_reuseaddr: sockets with SO_REUSEADDR on one address all bind and listen, one even while another listens; each connection goes to the oldest listener left', {}, async (c) => {
  const spi = await openSession(t, d);
  const [s1, e1] = await boundTo(spi, c.f, addr(c.f, 0), { reuse: true });
  c.equal(e1, 0, 'the first binds');
  const port = (await getName(spi, s1))[2].port;
  const [s2, e2] = await boundTo(spi, c.f, addr(c.f, port), { reuse: true });
  c.equal(e2, 0, 'the second binds the same address');
  c.same(await call((e) => spi.WSPListen(s1, 1, e)), [0, 0], 'the first listens');
  c.same(await call((e) => spi.WSPListen(s2, 1, e)), [0, 0], 'the second listens');
  const connectOnce = async (): Promise<number> => {
    const s = await socket(spi, c.f, 'tcp');
    const [r] = await call((e) => spi.WSPConnect(s, addr(c.f, port), namelen(c.f), null, null, null, null, e));
    c.equal(r, 0, 'a client connects');
    return s;
  };
  const a = await connectOnce();
  c.not(await accept(spi, s1), S.INVALID_SOCKET, 'the first listener takes the connection');
  await spi.WSPCloseSocket(s1, S.out(0));
  const b = await connectOnce();
  c.not(await accept(spi, s2), S.INVALID_SOCKET, 'with it closed, the second takes the next');
  const [s3, e3] = await boundTo(spi, c.f, addr(c.f, port), { reuse: true });
  c.equal(e3, 0, 'a third binds the address while the second listens on it');
  c.same(await call((e) => spi.WSPListen(s3, 1, e)), [0, 0], 'and listens');
  await spi.WSPCloseSocket(s2, S.out(0));
  const x = await connectOnce();
  c.not(await accept(spi, s3), S.INVALID_SOCKET, 'with the second closed, the third takes the next');
  for (const s of [s3, a, b, x]) await spi.WSPCloseSocket(s, S.out(0));
});
