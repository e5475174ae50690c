/**
 * Wine's test_WSASocket (dlls/ws2_32/tests/sock.c), for WSPSocket: Wine's table of address
 * families, types and protocols, the catalog entry given as lpProtocolInfo, and SO_TYPE. The table
 * and the catalog checks are IPv4's, as in Wine. SOCK_RAW, IPX and Bluetooth sockets are not
 * spiwire's: not applicable.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, dword, fileDaemon, openSession, type Check } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const X = 0xdead;

type Row = [af: number, type: number, protocol: number, error: number, want?: [number, number, number]];

const INVALID: Row[] = [
  [X, S.SOCK_STREAM, S.IPPROTO_TCP, S.WSAEAFNOSUPPORT],
  [-1, S.SOCK_STREAM, S.IPPROTO_TCP, S.WSAEAFNOSUPPORT],
  [S.AF_INET, X, S.IPPROTO_TCP, S.WSAESOCKTNOSUPPORT],
  [S.AF_INET, -1, S.IPPROTO_TCP, S.WSAESOCKTNOSUPPORT],
  [S.AF_INET, S.SOCK_STREAM, X, S.WSAEPROTONOSUPPORT],
  [S.AF_INET, S.SOCK_STREAM, -1, S.WSAEPROTONOSUPPORT],
  [X, X, S.IPPROTO_TCP, S.WSAESOCKTNOSUPPORT],
  [X, S.SOCK_STREAM, X, S.WSAEAFNOSUPPORT],
  [S.AF_INET, X, X, S.WSAESOCKTNOSUPPORT],
  [X, S.SOCK_STREAM, S.IPPROTO_UDP, S.WSAEAFNOSUPPORT],
  [S.AF_INET, X, 0, S.WSAESOCKTNOSUPPORT],
  [S.AF_INET, 0, X, S.WSAEPROTONOSUPPORT],
  [S.AF_INET, S.SOCK_STREAM, S.IPPROTO_UDP, S.WSAEPROTONOSUPPORT],
  [S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_TCP, S.WSAEPROTONOSUPPORT],
];
const TCP4: [number, number, number] = [S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP];
const UDP4: [number, number, number] = [S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP];
const INET_ZERO: Row[] = [
  [S.AF_INET, S.SOCK_STREAM, 0, 0, TCP4],
  [S.AF_INET, S.SOCK_DGRAM, 0, 0, UDP4],
  [S.AF_INET, 0, S.IPPROTO_TCP, 0, TCP4],
  [S.AF_INET, 0, S.IPPROTO_UDP, 0, UDP4],
  [S.AF_INET, 0, 0, 0, TCP4],
];
const UNSPEC_OK: Row[] = [
  [S.AF_UNSPEC, S.SOCK_STREAM, S.IPPROTO_TCP, 0, TCP4],
  [S.AF_UNSPEC, 0, S.IPPROTO_TCP, 0, TCP4],
  [S.AF_UNSPEC, 0, S.IPPROTO_UDP, 0, UDP4],
];
const UNSPEC_BAD: Row[] = [
  [S.AF_UNSPEC, S.SOCK_STREAM, X, S.WSAEPROTONOSUPPORT],
  [S.AF_UNSPEC, X, S.IPPROTO_UDP, S.WSAESOCKTNOSUPPORT],
  [S.AF_UNSPEC, 0, X, S.WSAEPROTONOSUPPORT],
];
const UNSPEC_NOPROTO: Row[] = [
  [S.AF_UNSPEC, S.SOCK_STREAM, 0, S.WSAEINVAL],
  [S.AF_UNSPEC, S.SOCK_DGRAM, 0, S.WSAEINVAL],
  [S.AF_UNSPEC, X, 0, S.WSAEINVAL],
  [S.AF_UNSPEC, 0, 0, S.WSAEINVAL],
];

/** [family, type, protocol] of a socket, from SO_PROTOCOL_INFOW. */
async function triple(spi: S.SpiSession, s: number): Promise<[number, number, number]> {
  const buf = new Uint8Array(S.WSAPROTOCOL_INFOW_SIZE);
  await spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, buf, S.out(buf.length), S.out(0));
  const pi = S.decodeProtocolInfoW(buf);
  return [pi.iAddressFamily, pi.iSocketType, pi.iProtocol];
}

async function rows(c: Check, spi: S.SpiSession, table: Row[]): Promise<void> {
  for (const [a, ty, p, error, want] of table) {
    const label = `(${a}, ${ty}, ${p})`;
    const e = S.out(0);
    const s = await spi.WSPSocket(a, ty, p, null, 0, 0, e);
    if (error) {
      c.same([s, e.value], [S.INVALID_SOCKET, error], label);
      continue;
    }
    c.same([s === S.INVALID_SOCKET ? e.value : 0], [0], `${label}: created`);
    if (s === S.INVALID_SOCKET) continue;
    const got = await triple(spi, s);
    // Windows 11 makes AF_UNSPEC sockets IPv6 ones.
    const wantAlt: [number, number, number] | null = a === S.AF_UNSPEC && want ? [S.AF_INET6, want[1], want[2]] : null;
    c.ok(JSON.stringify(got) === JSON.stringify(want) || (wantAlt !== null && JSON.stringify(got) === JSON.stringify(wantAlt)), `${label}: family, type, protocol ${got.join(', ')}`);
    await spi.WSPCloseSocket(s, S.out(0));
  }
}

const sc = new Scenario<{ spi: S.SpiSession }>(async () => ({ spi: await openSession(t, d) }));
const V4 = { families: ['ipv4'] as const };

sc.step(t, 'test_WSASocket: an unknown or invalid address family, type or protocol fails with the error Windows gives', V4, async (c, x) => rows(c, x.spi, INVALID));
sc.step(t, 'test_WSASocket: AF_INET with a type or protocol of 0 creates the socket the other argument names (TCP when both are 0)', V4, async (c, x) => rows(c, x.spi, INET_ZERO));
sc.step(t, 'test_WSASocket: AF_UNSPEC with a protocol creates a socket of that protocol (IPv4, IPv6 on Windows 11)', V4, async (c, x) => rows(c, x.spi, UNSPEC_OK));
sc.step(t, 'test_WSASocket: AF_UNSPEC with an unknown type or protocol fails with WSAESOCKTNOSUPPORT or WSAEPROTONOSUPPORT', V4, async (c, x) => rows(c, x.spi, UNSPEC_BAD));
sc.step(t, 'test_WSASocket: AF_UNSPEC without a protocol fails with WSAEINVAL', V4, async (c, x) => rows(c, x.spi, UNSPEC_NOPROTO));

/** The catalog entries of TCP (Wine asks for {IPPROTO_TCP, IPPROTO_IP}: IPPROTO_IP, 0, ends the list). */
function tcpEntries(c: Check): S.WSAPROTOCOL_INFOW[] {
  const len = S.out(0);
  const e = S.out(0);
  c.same([S.enumProtocols([S.IPPROTO_TCP, 0], null, len, e), e.value], [S.SOCKET_ERROR, S.WSAENOBUFS], 'WSCEnumProtocols with no buffer: WSAENOBUFS');
  const buf = new Uint8Array(len.value);
  const n = S.enumProtocols([S.IPPROTO_TCP, 0], buf, len, e);
  c.ok(n > 0, `WSCEnumProtocols lists ${n} entries`);
  const out: S.WSAPROTOCOL_INFOW[] = [];
  for (let i = 0; i < n; i++) out.push(S.decodeProtocolInfoW(buf, i * S.WSAPROTOCOL_INFOW_SIZE));
  return out;
}

sc.step(t, 'test_WSASocket: FROM_PROTOCOL_INFO for all three arguments takes them from the catalog entry', V4, async (c, x) => {
  const [pi] = tcpEntries(c);
  const e = S.out(0);
  const s = await x.spi.WSPSocket(S.FROM_PROTOCOL_INFO, S.FROM_PROTOCOL_INFO, S.FROM_PROTOCOL_INFO, pi!, 0, 0, e);
  c.ok(s !== S.INVALID_SOCKET, `created (${e.value})`);
  if (s !== S.INVALID_SOCKET) {
    c.same(await triple(x.spi, s), [pi!.iAddressFamily, pi!.iSocketType, pi!.iProtocol], 'the entry\'s family, type, protocol');
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

sc.step(t, 'test_WSASocket: the plain arguments come first: (0, 0, UDP) with an entry of -1s, or of 0s, fails with WSAEAFNOSUPPORT', V4, async (c, x) => {
  for (const v of [-1, 0]) {
    const e = S.out(0);
    const s = await x.spi.WSPSocket(0, 0, S.IPPROTO_UDP, { iAddressFamily: v, iSocketType: v, iProtocol: v }, 0, 0, e);
    c.same([s, e.value], [S.INVALID_SOCKET, S.WSAEAFNOSUPPORT], `entry of ${v}s`);
  }
});

sc.step(t, 'test_WSASocket: (0, 0, 0) with a UDP entry creates a UDP socket (SO_TYPE SOCK_DGRAM)', V4, async (c, x) => {
  const e = S.out(0);
  const s = await x.spi.WSPSocket(0, 0, 0, { iAddressFamily: S.AF_INET, iSocketType: S.SOCK_DGRAM, iProtocol: S.IPPROTO_UDP }, 0, 0, e);
  c.same([s === S.INVALID_SOCKET ? e.value : 0], [0], 'created');
  if (s !== S.INVALID_SOCKET) {
    const v = new Uint8Array(4);
    await x.spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_TYPE, v, S.out(4), S.out(0));
    c.equal(v[0], S.SOCK_DGRAM, 'SO_TYPE');
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

sc.step(t, 'test_WSASocket: SO_TYPE cannot be set: WSAENOPROTOOPT on TCP, WSAEINVAL on UDP', V4, async (c, x) => {
  for (const [label, type, proto, err] of [['TCP', S.SOCK_STREAM, S.IPPROTO_TCP, S.WSAENOPROTOOPT], ['UDP', S.SOCK_DGRAM, S.IPPROTO_UDP, S.WSAEINVAL]] as const) {
    const s = await x.spi.WSPSocket(S.AF_INET, type, proto, null, 0, 0, S.out(0));
    for (const v of [S.SOCK_STREAM, S.SOCK_DGRAM]) {
      const e = S.out(0);
      c.same([await x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_TYPE, dword(v), 4, e), e.value], [S.SOCKET_ERROR, err], `${label}: set SO_TYPE ${v}`);
    }
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

sc.step(t, 'test_WSASocket: (0, 0, TCP) and (0, 0, UDP) create the type of the catalog\'s first entry of that protocol', V4, async (c, x) => {
  for (const [label, proto, type] of [['TCP', S.IPPROTO_TCP, S.SOCK_STREAM], ['UDP', S.IPPROTO_UDP, S.SOCK_DGRAM]] as const) {
    const e = S.out(0);
    const s = await x.spi.WSPSocket(0, 0, proto, null, 0, 0, e);
    c.same([s === S.INVALID_SOCKET ? e.value : 0], [0], `${label}: created`);
    if (s === S.INVALID_SOCKET) continue;
    c.equal((await triple(x.spi, s))[1], type, `${label}: the type`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});
