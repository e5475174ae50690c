/**
 * Wine's test_reuseaddr and test_ipv6only (dlls/ws2_32/tests/sock.c): their checks that need none
 * of SO_REUSEADDR, SO_EXCLUSIVEADDRUSE or IPV6_V6ONLY, which spiwire does not have. Wine binds a
 * fixed port; these cases bind port 0 first and reuse the port it got. Nothing is sent anywhere
 * but loopback: the any address is only bound to, or listened on.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { accept, addr, af, call, fileDaemon, getName, must, namelen, openSession, socket, wineCase, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const anyAddr = (f: Family, port: number): S.SockAddr => ({ family: af(f), address: f === 'ipv4' ? '0.0.0.0' : '::', port });

async function boundTo(spi: S.SpiSession, f: Family, name: S.SockAddr): Promise<[number, number]> {
  const s = await socket(spi, f, 'tcp');
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

const SHARED_PORT = 'Windows lets an any-address and a loopback listener share a port without options; spiwire: WSAEADDRINUSE. Deliberate: binds follow the host stack, and Linux refuses the second bind';

/** Wine's two sequences: a listener on one of the any and loopback addresses, then a socket on the other binds its port and listens; a loopback connection goes to the loopback socket. */
function sharedPort(name: string, loopbackFirst: boolean): void {
  wineCase(t, name, { todo: SHARED_PORT }, async (c) => {
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
    const loopbackSocket = loopbackFirst ? s1 : e2 === 0 ? s2 : null;
    if (loopbackSocket !== null) c.not(await accept(spi, loopbackSocket), S.INVALID_SOCKET, 'is accepted by the loopback socket');
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
