/**
 * IP_TTL, IP_TOS and IPV6_UNICAST_HOPS reach the packets a socket sends: a peer reads each
 * datagram's TTL and TOS (or hop limit) from the kernel, and a raw socket reads TCP segments' IP
 * headers (root only; skipped otherwise). The option values and sizes themselves are checked in
 * the Wine port (test/conformance/wine/test_set_getsockopt.test.ts).
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { FAMILIES, addr, call, connectedTcp, daemon, getOpt, namelen, newSocket, send, sendTo, session, setOpt, sockName, tcpPeer } from '../helpers/harness.js';
import { ipv4HeaderWatch, udpHeaderPeer } from '../helpers/packet-fields.js';

const level = (v6: boolean): number => (v6 ? S.IPPROTO_IPV6 : S.IPPROTO_IP);
const ttlOption = (v6: boolean): number => (v6 ? S.IPV6_UNICAST_HOPS : S.IP_TTL);

for (const f of FAMILIES) {
  const v6 = f === 'ipv6';
  const peerCheck = udpHeaderPeer(v6);
  peerCheck?.close();
  t.test(`${f}: UDP: datagrams leave with Windows' default ${v6 ? 'hop limit' : 'TTL'} of 128, and with the ${v6 ? 'IPV6_UNICAST_HOPS' : 'IP_TTL and IP_TOS'} set`, { skip: peerCheck ? false : 'the C library (koffi, Linux x64/arm64) is not available' }, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const peer = udpHeaderPeer(v6)!;
    t.teardown(() => peer.close());
    const u = await newSocket(spi, f, 'udp');
    t.same(await getOpt(spi, u, ttlOption(v6), 4, level(v6)), [0, 0, 128, 4], 'reads 128 before anything is set');
    const to = addr(f, peer.port);
    t.same(await sendTo(spi, u, [Buffer.from('first')], to, namelen(f)), [0, 0, 5], 'a datagram');
    const first = await peer.next();
    t.same(first && [first.data.toString(), first.fields.ttl, v6 ? 0 : first.fields.tos], ['first', 128, 0], 'the peer sees 128' + (v6 ? '' : ' and TOS 0'));

    t.same(await setOpt(spi, u, ttlOption(v6), 7, 4, level(v6)), [0, 0], 'set to 7');
    if (!v6) t.same(await setOpt(spi, u, S.IP_TOS, 0x28, 1, S.IPPROTO_IP), [0, 0], 'IP_TOS 0x28, one byte');
    t.same(await getOpt(spi, u, ttlOption(v6), 4, level(v6)), [0, 0, 7, 4], 'reads 7');
    t.same(await sendTo(spi, u, [Buffer.from('second')], to, namelen(f)), [0, 0, 6], 'another datagram');
    const second = await peer.next();
    t.same(second && [second.data.toString(), second.fields.ttl, v6 ? 0 : second.fields.tos], ['second', 7, v6 ? 0 : 0x28], 'the peer sees the values set');

    // A connected socket's datagrams, and a burst the daemon sends in one batch, carry them too.
    t.same(await call((e) => spi.WSPConnect(u, to, namelen(f), null, null, null, null, e)), [0, 0], 'WSPConnect to the peer');
    for (let i = 0; i < 3; i++) void send(spi, u, [Buffer.from(`burst ${i}`)]);
    for (let i = 0; i < 3; i++) {
      const got = await peer.next();
      t.same(got && [got.data.toString(), got.fields.ttl], [`burst ${i}`, 7], `burst datagram ${i}`);
    }
    await spi.WSPCloseSocket(u, S.out(0));
  });

  t.test(`${f}: the IP-level options belong to their own family: ${v6 ? 'IP_TTL and IP_TOS on an IPv6 socket' : 'IPV6_UNICAST_HOPS on an IPv4 socket'} give WSAENOPROTOOPT`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    for (const kind of ['tcp', 'udp'] as const) {
      const s = await newSocket(spi, f, kind);
      const other = v6 ? [S.IP_TTL, S.IP_TOS] : [S.IPV6_UNICAST_HOPS];
      for (const opt of other) {
        t.same(await setOpt(spi, s, opt, 5, 4, level(!v6)), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], `${kind}: set ${opt}`);
        t.same((await getOpt(spi, s, opt, 4, level(!v6))).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], `${kind}: get ${opt}`);
      }
      await spi.WSPCloseSocket(s, S.out(0));
    }
  });
}

const watchCheck = ipv4HeaderWatch('tcp');
watchCheck?.close();
t.test('ipv4: TCP: segments leave with TTL 128 and the don\'t-fragment bit, then with the IP_TTL, IP_TOS and IP_DONTFRAGMENT set on the connected socket, and an accepted socket inherits a listener\'s TTL', { skip: watchCheck ? false : 'needs root (a raw socket reads the TCP segments\' IP headers)' }, async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const watch = ipv4HeaderWatch('tcp')!;
  t.teardown(() => watch.close());
  const peer = await tcpPeer(t, 'ipv4');
  const { s } = await connectedTcp(spi, 'ipv4', peer);
  const local = (await sockName(spi, s)).port;
  t.same((await send(spi, s, [Buffer.from('default')])).slice(0, 2), [0, 0], 'a send');
  t.same(await watch.next(local, peer.port), { ttl: 128, tos: 0, df: true }, 'its segment: TTL 128, TOS 0, don\'t fragment (Windows\' TCP default)');
  t.same(await setOpt(spi, s, S.IP_TTL, 33, 4, S.IPPROTO_IP), [0, 0], 'IP_TTL 33');
  t.same(await setOpt(spi, s, S.IP_TOS, 0x20, 4, S.IPPROTO_IP), [0, 0], 'IP_TOS 0x20');
  t.same(await getOpt(spi, s, S.IP_DONTFRAGMENT, 4, S.IPPROTO_IP), [0, 0, 1, 4], 'IP_DONTFRAGMENT reads 1');
  t.same(await setOpt(spi, s, S.IP_DONTFRAGMENT, 0, 4, S.IPPROTO_IP), [0, 0], 'IP_DONTFRAGMENT 0');
  t.same((await send(spi, s, [Buffer.from('set')])).slice(0, 2), [0, 0], 'another send');
  t.same(await watch.next(local, peer.port), { ttl: 33, tos: 0x20, df: false }, 'its segment carries them');

  const l = await newSocket(spi, 'ipv4', 'tcp');
  t.same(await setOpt(spi, l, S.IP_TTL, 44, 4, S.IPPROTO_IP), [0, 0], 'a listener with IP_TTL 44');
  t.same(await call((e) => spi.WSPBind(l, addr('ipv4', 0), 16, e)), [0, 0], 'binds');
  t.same(await call((e) => spi.WSPListen(l, 1, e)), [0, 0], 'listens');
  const lp = (await sockName(spi, l)).port;
  const c = await newSocket(spi, 'ipv4', 'tcp');
  t.same(await call((e) => spi.WSPConnect(c, addr('ipv4', lp), 16, null, null, null, null, e)), [0, 0], 'a client connects');
  const e = S.out(0);
  const a = await spi.WSPAccept(l, null, null, null, 0, e);
  t.not(a, S.INVALID_SOCKET, 'accepted');
  t.same(await getOpt(spi, a, S.IP_TTL, 4, S.IPPROTO_IP), [0, 0, 44, 4], 'the accepted socket reads 44');
  const cp = (await sockName(spi, c)).port;
  t.same((await send(spi, a, [Buffer.from('inherited')])).slice(0, 2), [0, 0], 'it sends');
  t.same(await watch.next(lp, cp), { ttl: 44, tos: 0, df: true }, 'with TTL 44');
  for (const x of [a, c, l, s]) await spi.WSPCloseSocket(x, S.out(0));
});

const udpWatchCheck = ipv4HeaderWatch('udp');
udpWatchCheck?.close();
t.test('ipv4: UDP: datagrams leave without the don\'t-fragment bit (Windows\' UDP default), and with it once IP_DONTFRAGMENT is set', { skip: udpWatchCheck ? false : 'needs root (a raw socket reads the datagrams\' IP headers)' }, async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const watch = ipv4HeaderWatch('udp')!;
  t.teardown(() => watch.close());
  const peer = udpHeaderPeer(false)!;
  t.teardown(() => peer.close());
  const u = await newSocket(spi, 'ipv4', 'udp');
  t.same(await getOpt(spi, u, S.IP_DONTFRAGMENT, 4, S.IPPROTO_IP), [0, 0, 0, 4], 'IP_DONTFRAGMENT reads 0');
  const to = addr('ipv4', peer.port);
  t.same(await sendTo(spi, u, [Buffer.from('fragmentable')], to, 16), [0, 0, 12], 'a datagram');
  const local = (await sockName(spi, u)).port;
  t.same(await watch.next(local, peer.port), { ttl: 128, tos: 0, df: false }, 'without the bit');
  t.same(await setOpt(spi, u, S.IP_DONTFRAGMENT, 0xdead, 4, S.IPPROTO_IP), [0, 0], 'IP_DONTFRAGMENT 0xdead');
  t.same(await getOpt(spi, u, S.IP_DONTFRAGMENT, 4, S.IPPROTO_IP), [0, 0, 1, 4], 'reads 1');
  t.same(await sendTo(spi, u, [Buffer.from('whole')], to, 16), [0, 0, 5], 'another datagram');
  t.same(await watch.next(local, peer.port), { ttl: 128, tos: 0, df: true }, 'with the bit');
  await spi.WSPCloseSocket(u, S.out(0));
});
