/**
 * The protocol catalog end to end: SO_PROTOCOL_INFOW on real TCP and UDP sockets over IPv4 and
 * IPv6 (loopback) decodes to the socket's entry; optlen 627 is WSAEFAULT with the size needed, a
 * larger optlen is left as it was (both as Wine's tests record Windows doing); setting it is
 * WSAENOPROTOOPT; SO_PROTOCOL_INFOA is WSAENOPROTOOPT (W form only, documented); SO_MAX_MSG_SIZE
 * tells the catalog's story; and WSCEnumProtocols with Windows semantics (all, filtered, a buffer
 * too small gives WSAENOBUFS with the length needed).
 */
import t, { type Test } from 'tap';
import * as S from '@spiwire/client';
import { FAMILIES, addr, af, bindLoopback, connectedTcp, daemon, namelen, newSocket, sendTo, session, tcpPeer, udpPeer, type Family } from '../helpers/harness.js';

const SIZE = 628;

/** What each entry must hold (winsock.md "Protocol catalog", without XP1_IFS_HANDLES). */
function expected(f: Family, kind: 'tcp' | 'udp') {
  const v6 = f === 'ipv6';
  return {
    dwServiceFlags1: kind === 'tcp' ? 0x00066 : 0x00609,
    dwServiceFlags2: 0,
    dwServiceFlags3: 0,
    dwServiceFlags4: 0,
    dwProviderFlags: 0x8,
    ProviderId: '{CA7EF25E-4796-4B76-A8B1-BF7AA11017A8}',
    dwCatalogEntryId: 7787000 + (kind === 'tcp' ? 1 : 3) + (v6 ? 1 : 0),
    ProtocolChain: { ChainLen: 1, ChainEntries: [0, 0, 0, 0, 0, 0, 0] },
    iVersion: 2,
    iAddressFamily: v6 ? 23 : 2,
    iMaxSockAddr: v6 ? 28 : 16,
    iMinSockAddr: v6 ? 28 : 16,
    iSocketType: kind === 'tcp' ? 1 : 2,
    iProtocol: kind === 'tcp' ? 6 : 17,
    iProtocolMaxOffset: 0,
    iNetworkByteOrder: 0,
    iSecurityScheme: 0,
    dwMessageSize: kind === 'tcp' ? 0 : 0xffbb,
    dwProviderReserved: 0,
    szProtocol: `spiwire ${kind.toUpperCase()}/IP${v6 ? 'v6' : ''}`,
  };
}

/** WSPGetSockOpt of SO_PROTOCOL_INFOW into a buffer of bufLen bytes filled with 0xEE. */
async function protocolInfo(spi: S.SpiSession, s: number, optlen = SIZE, bufLen = Math.max(optlen, 0), optname: number = S.SO_PROTOCOL_INFOW) {
  const e = S.out(0);
  const buf = new Uint8Array(bufLen).fill(0xee);
  const len = S.out(optlen);
  const ret = await spi.WSPGetSockOpt(s, S.SOL_SOCKET, optname, buf, len, e);
  return { ret, errno: e.value, buf, optlen: len.value };
}

/** A real socket in a useful state: TCP connected to a loopback peer, UDP bound and connected. */
async function realSocket(t: Test, spi: S.SpiSession, f: Family, kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'tcp') return (await connectedTcp(spi, f, await tcpPeer(t, f))).s;
  const peer = await udpPeer(t, f);
  const s = await newSocket(spi, f, 'udp');
  await bindLoopback(spi, s, f);
  const e = S.out(0);
  const r = await spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, e);
  if (r !== 0) throw new Error(`UDP WSPConnect failed: ${e.value}`);
  return s;
}

for (const f of FAMILIES) {
  for (const kind of ['tcp', 'udp'] as const) {
    t.test(`${f} ${kind}: SO_PROTOCOL_INFOW`, async (t) => {
      const d = await daemon(t);
      const spi = await session(t, d);
      const s = await realSocket(t, spi, f, kind);
      const want = expected(f, kind);

      const r = await protocolInfo(spi, s);
      t.same([r.ret, r.errno, r.optlen], [0, 0, SIZE], 'succeeds, optlen 628');
      t.same(S.decodeProtocolInfoW(r.buf), want, `decodes to the ${want.szProtocol} entry`);
      t.same(r.buf, S.encodeProtocolInfoW(S.catalogEntryFor(af(f), kind === 'tcp' ? S.SOCK_STREAM : S.SOCK_DGRAM, 0)!), 'the exact bytes of the catalog entry');

      const big = await protocolInfo(spi, s, 1000);
      t.same([big.ret, big.optlen], [0, 1000], 'a larger optlen is left as it was (Windows)');
      t.ok(big.buf.subarray(SIZE).every((x) => x === 0xee), 'nothing written past the structure');

      const short = await protocolInfo(spi, s, SIZE - 1, SIZE);
      t.same([short.ret, short.errno, short.optlen], [S.SOCKET_ERROR, S.WSAEFAULT, SIZE], 'optlen 627: WSAEFAULT, optlen set to the size needed (Windows)');
      t.ok(short.buf.every((x) => x === 0xee), 'optval untouched');
      const four = await protocolInfo(spi, s, 4);
      t.same([four.ret, four.errno], [S.SOCKET_ERROR, S.WSAEFAULT], 'optlen 4 (a DWORD): WSAEFAULT');

      const e = S.out(0);
      t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, r.buf, SIZE, e), S.SOCKET_ERROR, 'set: SOCKET_ERROR');
      t.equal(e.value, S.WSAENOPROTOOPT, 'set: WSAENOPROTOOPT');

      const a = await protocolInfo(spi, s, 372, 628, S.SO_PROTOCOL_INFOA);
      t.same([a.ret, a.errno], [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'SO_PROTOCOL_INFOA: WSAENOPROTOOPT (the provider offers the W form only)');
      const ea = S.out(0);
      t.same([await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOA, new Uint8Array(372), 372, ea), ea.value], [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'set SO_PROTOCOL_INFOA: WSAENOPROTOOPT');

      const tcpLevel = S.out(0);
      const l = await spi.WSPGetSockOpt(s, S.IPPROTO_TCP, S.SO_PROTOCOL_INFOW, new Uint8Array(SIZE), S.out(SIZE), tcpLevel);
      t.same([l, tcpLevel.value], [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'at level IPPROTO_TCP: WSAENOPROTOOPT');
    });
  }

  t.test(`${f}: fresh sockets, protocol 0, and a socket made from a catalog entry`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    for (const kind of ['tcp', 'udp'] as const) {
      const type = kind === 'tcp' ? S.SOCK_STREAM : S.SOCK_DGRAM;
      const e = S.out(0);
      const s0 = await spi.WSPSocket(af(f), type, 0, null, 0, 0, e);
      t.not(s0, S.INVALID_SOCKET, `${kind}: WSPSocket with protocol 0`);
      const r0 = await protocolInfo(spi, s0);
      t.equal(r0.ret, 0);
      t.same(S.decodeProtocolInfoW(r0.buf), expected(f, kind), `${kind}: protocol 0, not yet bound or connected: the ${kind} entry`);

      // WSPSocket(FROM_PROTOCOL_INFO x3, entry): the entry is all it takes to make the socket.
      const entry = S.decodeProtocolInfoW(r0.buf);
      const s1 = await spi.WSPSocket(S.FROM_PROTOCOL_INFO, S.FROM_PROTOCOL_INFO, S.FROM_PROTOCOL_INFO, entry, 0, 0, e);
      t.not(s1, S.INVALID_SOCKET, `${kind}: WSPSocket from the decoded entry`);
      t.same((await protocolInfo(spi, s1)).buf, r0.buf, `${kind}: that socket reports the same entry`);
    }
  });

  t.test(`${f}: SO_MAX_MSG_SIZE tells the catalog's story`, async (t) => {
    const d = await daemon(t);
    const spi = await session(t, d);
    const tcp = await newSocket(spi, f, 'tcp');
    const udp = await newSocket(spi, f, 'udp');
    const max = f === 'ipv4' ? 65507 : 65527;
    const get = async (s: number) => {
      const e = S.out(0);
      const v = new Uint8Array(4);
      const ret = await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_MAX_MSG_SIZE, v, S.out(4), e);
      return [ret, e.value, new DataView(v.buffer).getUint32(0, true)];
    };
    const tcpInfo = S.decodeProtocolInfoW((await protocolInfo(spi, tcp)).buf);
    const udpInfo = S.decodeProtocolInfoW((await protocolInfo(spi, udp)).buf);
    t.equal(tcpInfo.dwMessageSize, 0, 'TCP: dwMessageSize 0 (a stream)');
    t.same((await get(tcp)).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'TCP: SO_MAX_MSG_SIZE is WSAENOPROTOOPT');
    t.equal(udpInfo.dwMessageSize, 0xffbb, 'UDP: dwMessageSize 0xFFBB (65467, room for the largest IPv4 header)');
    t.same(await get(udp), [0, 0, max], `UDP: SO_MAX_MSG_SIZE ${max}, larger than dwMessageSize`);

    // Both numbers are true on the real socket: a datagram of dwMessageSize bytes and one of
    // SO_MAX_MSG_SIZE bytes reach a loopback peer whole; one byte more is WSAEMSGSIZE.
    const peer = await udpPeer(t, f);
    await bindLoopback(spi, udp, f);
    const to = addr(f, peer.port);
    for (const n of [udpInfo.dwMessageSize, max]) {
      const [ret, err, sent] = await sendTo(spi, udp, [new Uint8Array(n).fill(0x5a)], to, namelen(f));
      t.same([ret, err, sent], [0, 0, n], `a ${n}-byte datagram is sent`);
    }
    await peer.waitFor(2);
    t.same(peer.datagrams.map((x) => x.data.length), [udpInfo.dwMessageSize, max], 'the peer received both, whole');
    const [ret, err] = await sendTo(spi, udp, [new Uint8Array(max + 1)], to, namelen(f));
    t.same([ret, err], [S.SOCKET_ERROR, S.WSAEMSGSIZE], `${max + 1} bytes: WSAEMSGSIZE`);
  });
}

t.test('WSCEnumProtocols', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const ALL = [expected('ipv4', 'tcp'), expected('ipv6', 'tcp'), expected('ipv4', 'udp'), expected('ipv6', 'udp')];
  const decodeAll = (b: Uint8Array, n: number) => Array.from({ length: n }, (_, i) => S.decodeProtocolInfoW(b, i * SIZE));

  t.test('null buffer: WSAENOBUFS and the length needed for all four', async (t) => {
    const len = S.out(0);
    const e = S.out(0);
    t.equal(await spi.WSCEnumProtocols(null, null, len, e), S.SOCKET_ERROR);
    t.same([e.value, len.value], [S.WSAENOBUFS, 4 * SIZE], 'WSAENOBUFS, lpdwBufferLength 2512');
  });

  t.test('a buffer one byte too small: WSAENOBUFS, the length needed, the buffer untouched', async (t) => {
    const buf = new Uint8Array(4 * SIZE - 1).fill(0xee);
    const len = S.out(buf.length);
    const e = S.out(0);
    t.equal(await spi.WSCEnumProtocols(null, buf, len, e), S.SOCKET_ERROR);
    t.same([e.value, len.value], [S.WSAENOBUFS, 4 * SIZE]);
    t.ok(buf.every((x) => x === 0xee), 'nothing written');
    const small = S.out(SIZE);
    const e2 = S.out(0);
    t.equal(await spi.WSCEnumProtocols(null, new Uint8Array(5000), small, e2), S.SOCKET_ERROR, 'a big buffer but lpdwBufferLength 628');
    t.same([e2.value, small.value], [S.WSAENOBUFS, 4 * SIZE], 'lpdwBufferLength is what counts');
  });

  t.test('all entries, back to back, then the second call succeeds with the length it was told', async (t) => {
    const len = S.out(0);
    await spi.WSCEnumProtocols(null, null, len, S.out(0));
    const buf = new Uint8Array(len.value + 10).fill(0xee);
    const e = S.out(12345);
    const n = await spi.WSCEnumProtocols(null, buf, len, e);
    t.equal(n, 4, 'four entries');
    t.equal(e.value, 12345, 'lpErrno untouched on success');
    t.equal(len.value, 4 * SIZE, 'lpdwBufferLength unchanged on success');
    t.same(decodeAll(buf, 4), ALL, 'TCP/IPv4, TCP/IPv6, UDP/IPv4, UDP/IPv6 with the reference values');
    t.ok(buf.subarray(4 * SIZE).every((x) => x === 0xee), 'nothing written past the entries');
  });

  t.test('filtered by protocol', async (t) => {
    const cases: Array<[number[], typeof ALL, string]> = [
      [[S.IPPROTO_UDP], [ALL[2]!, ALL[3]!], 'UDP only'],
      [[S.IPPROTO_TCP], [ALL[0]!, ALL[1]!], 'TCP only'],
      [[S.IPPROTO_UDP, S.IPPROTO_TCP], ALL, 'both, in catalog order whatever the list order'],
      [[S.IPPROTO_TCP, 0, S.IPPROTO_UDP], [ALL[0]!, ALL[1]!], 'the list ends at its first 0, as the C array does'],
      [[99, S.IPPROTO_UDP], [ALL[2]!, ALL[3]!], 'an unknown protocol matches nothing'],
    ];
    for (const [filter, want, what] of cases) {
      const len = S.out(0);
      const e = S.out(0);
      t.equal(await spi.WSCEnumProtocols(filter, null, len, e), S.SOCKET_ERROR, `${what}: sizing call`);
      t.same([e.value, len.value], [S.WSAENOBUFS, want.length * SIZE], `${what}: needs ${want.length} x 628`);
      const buf = new Uint8Array(len.value);
      const n = await spi.WSCEnumProtocols(filter, buf, len, e);
      t.equal(n, want.length, `${what}: ${want.length} entries`);
      t.same(decodeAll(buf, n), want, `${what}: the right entries`);
    }
    const len = S.out(0);
    const e = S.out(0);
    t.equal(await spi.WSCEnumProtocols([99], new Uint8Array(0), len, e), 0, 'nothing matches, an empty buffer: 0 entries');
    t.equal(await spi.WSCEnumProtocols([], new Uint8Array(0), len, e), 0, 'an empty list (just the terminator): 0 entries');
    t.same([await spi.WSCEnumProtocols([99], null, len, e), e.value, len.value], [S.SOCKET_ERROR, S.WSAENOBUFS, 0], 'nothing matches, null buffer: WSAENOBUFS with 0, as Windows');
  });

  t.test("the caller's own memory", async (t) => {
    const e = S.out(0);
    t.same([await spi.WSCEnumProtocols(null, new Uint8Array(100), S.out(4 * SIZE), e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], 'lpdwBufferLength beyond the buffer: WSAEFAULT');
    t.same([await spi.WSCEnumProtocols(null, null, null as unknown as S.Out, e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], 'no lpdwBufferLength: WSAEFAULT');
    t.same([await spi.WSCEnumProtocols(6 as unknown as number[], null, S.out(0), e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], 'lpiProtocols not an array: WSAEFAULT');
    t.same([await spi.WSCEnumProtocols([6.5], null, S.out(0), e), e.value], [S.SOCKET_ERROR, S.WSAEINVAL], 'a protocol that is not an int: WSAEINVAL');
    await t.rejects(spi.WSCEnumProtocols(null, null, S.out(0), null as unknown as S.Out), TypeError, 'no lpErrno: a programming error');
  });

  t.test('every entry is what SO_PROTOCOL_INFOW gives on a real socket of its kind', async (t) => {
    const len = S.out(4 * SIZE);
    const buf = new Uint8Array(len.value);
    t.equal(await spi.WSCEnumProtocols(null, buf, len, S.out(0)), 4);
    for (let i = 0; i < 4; i++) {
      const info = S.decodeProtocolInfoW(buf, i * SIZE);
      const e = S.out(0);
      const s = await spi.WSPSocket(info.iAddressFamily, info.iSocketType, info.iProtocol, null, 0, 0, e);
      t.not(s, S.INVALID_SOCKET, `${info.szProtocol}: socket made`);
      const r = await protocolInfo(spi, s);
      t.same(r.buf, buf.subarray(i * SIZE, (i + 1) * SIZE), `${info.szProtocol}: same 628 bytes from the daemon`);
    }
  });

  t.test('decodeProtocolInfoW and enumProtocols come with @spiwire/client', async (t) => {
    t.type(S.decodeProtocolInfoW, 'function');
    t.type(S.enumProtocols, 'function');
    const len = S.out(0);
    t.equal(S.enumProtocols(null, null, len, S.out(0)), S.SOCKET_ERROR);
    t.equal(len.value, 4 * SIZE, 'enumProtocols works without a session');
  });
});
