/**
 * Wine's test_set_getsockopt (dlls/ws2_32/tests/sock.c), for the options spiwire has (README
 * "Socket options"): values read back, option lengths (Wine's test_optsize table, restricted to
 * those options), invalid levels and pointers, SO_ERROR, and SO_PROTOCOL_INFOW. The options
 * spiwire does not have (SO_OPENTYPE, SO_BSP_STATE, the IPPROTO_IP options and the IPPROTO_IPV6
 * ones but IPV6_V6ONLY, SO_PROTOCOL_INFOA) are not applicable.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, dword, fileDaemon, openSession, readU32, send, setBlocking, socket, syncRecv, tcpPair, type Check, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const SO_RCVTIMEO = 0x1006;

async function setOpt(spi: S.SpiSession, s: number, level: number, opt: number, val: Uint8Array | null, optlen: number): Promise<[number, number]> {
  const e = S.out(0);
  const r = await spi.WSPSetSockOpt(s, level, opt, val, optlen, e);
  return [r, e.value];
}

/** getsockopt into a buffer of bufLen bytes prefilled with 0xdeadbeef: [ret, err, first DWORD, optlen after]. */
async function getOpt(spi: S.SpiSession, s: number, level: number, opt: number, optlen: number, bufLen = Math.max(4, optlen)): Promise<[number, number, number, number]> {
  const e = S.out(0);
  const buf = new Uint8Array(bufLen);
  for (let i = 0; i < bufLen; i += 4) buf.set(dword(0xdeadbeef).subarray(0, Math.min(4, bufLen - i)), i);
  const len = S.out(optlen);
  const r = await spi.WSPGetSockOpt(s, level, opt, buf, len, e);
  return [r, e.value, readU32(buf), len.value];
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16)}`;

// ================================================================ values read back

interface One {
  spi: S.SpiSession;
  s: number;
  f: Family;
}

const main = new Scenario<One>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, s: await socket(spi, f, 'tcp'), f };
});

main.step(t, 'test_set_getsockopt: SO_SNDBUF set to 4096 reads back 4096', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_SNDBUF, dword(4096), 4), [0, 0], 'set');
  const [r, , v] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_SNDBUF, 4);
  c.same([r, v], [0, 4096], 'get');
});

main.step(t, 'test_set_getsockopt: SO_RCVTIMEO and SO_SNDTIMEO read back what was set: 63000, 0 and 997000', {}, async (c, x) => {
  for (const [name, opt] of [['SO_RCVTIMEO', S.SO_RCVTIMEO], ['SO_SNDTIMEO', S.SO_SNDTIMEO]] as const) {
    for (const v of [63000, 0, 997000]) {
      c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, opt, dword(v), 4), [0, 0], `${name} set to ${v}`);
      const [r, , got, len] = await getOpt(x.spi, x.s, S.SOL_SOCKET, opt, 4);
      c.same([r, got, len], [0, v, 4], `${name} reads back ${v}`);
    }
  }
});

main.step(t, 'test_set_getsockopt: SO_RCVBUF set to 4096 reads back 4096, and 0 reads back 0', {}, async (c, x) => {
  for (const n of [4096, 0]) {
    c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_RCVBUF, dword(n), 4), [0, 0], `set ${n}`);
    const [r, , v] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_RCVBUF, 4);
    c.same([r, v], [0, n], `get after ${n}`);
  }
});

main.step(t, 'test_set_getsockopt: SO_LINGER {0, 0}, {0, 73}, {1, 0} and {5, 189} read back (l_linger when l_onoff is set)', {}, async (c, x) => {
  for (const [onoff, secs] of [[0, 0], [0, 73], [1, 0], [5, 189]] as const) {
    const v = new Uint8Array(4);
    new DataView(v.buffer).setUint16(0, onoff, true);
    new DataView(v.buffer).setUint16(2, secs, true);
    c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_LINGER, v, 4), [0, 0], `set {${onoff}, ${secs}}`);
    const [r, , got] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_LINGER, 4);
    c.equal(r, 0, `get after {${onoff}, ${secs}}`);
    c.equal((got & 0xffff) !== 0, onoff !== 0, `l_onoff after {${onoff}, ${secs}}`);
    if (onoff) c.equal(got >>> 16, secs, `l_linger after {${onoff}, ${secs}}`);
  }
});

main.step(t, 'test_set_getsockopt: SO_LINGER with a null optval fails with WSAEFAULT, with optlen 4 and with 0', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_LINGER, null, 4), [S.SOCKET_ERROR, S.WSAEFAULT], 'optlen 4');
  c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_LINGER, null, 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'optlen 0');
});

const nodelay = async (x: One): Promise<number> => (await getOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, 4))[2] & 0xff;

main.step(t, 'test_set_getsockopt: TCP_NODELAY takes an optlen of 1 and reads back 1', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(1), 1), [0, 0], 'set with optlen 1');
  c.equal(await nodelay(x), 1, 'reads back 1');
  await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(0), 4);
});

main.step(t, 'test_set_getsockopt: TCP_NODELAY takes an optlen of 4 and of 42', {}, async (c, x) => {
  for (const len of [4, 42]) {
    const v = new Uint8Array(42);
    v[0] = 1;
    c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, v, len), [0, 0], `set with optlen ${len}`);
    c.equal(await nodelay(x), 1, `reads back 1 after optlen ${len}`);
    await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(0), 4);
  }
});

main.step(t, 'test_set_getsockopt: TCP_NODELAY with an optlen of 0 fails with WSAEFAULT and leaves the value', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(1), 0), [S.SOCKET_ERROR, S.WSAEFAULT], 'set with optlen 0');
  c.equal(await nodelay(x), 0, 'still 0');
});

main.step(t, 'test_set_getsockopt: TCP_NODELAY with an optlen of -1 fails with WSAEFAULT (or WSAENOBUFS) and leaves the value', {}, async (c, x) => {
  const [r, err] = await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(1), -1);
  c.equal(r, S.SOCKET_ERROR, 'set with optlen -1 fails');
  c.ok(err === S.WSAEFAULT || err === S.WSAENOBUFS, `with WSAEFAULT or WSAENOBUFS (${err})`);
  c.equal(await nodelay(x), 0, 'still 0');
});

main.step(t, 'test_set_getsockopt: TCP_NODELAY set to 0x100 in 4 bytes reads back 0 (the option is one byte)', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(0x100), 4), [0, 0], 'set 0x100');
  c.equal(await nodelay(x), 0, 'reads back 0');
  await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_NODELAY, dword(0), 4);
});

main.step(t, 'test_set_getsockopt: TCP_KEEPALIVE set to 3600 reads back 3600', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_KEEPALIVE, dword(3600), 4), [0, 0], 'set');
  const [r, , v] = await getOpt(x.spi, x.s, S.IPPROTO_TCP, S.TCP_KEEPALIVE, 4);
  c.same([r, v], [0, 3600], 'get');
});

main.step(t, 'test_set_getsockopt: TCP_KEEPCNT and TCP_KEEPINTVL set to 5 read back 5', {}, async (c, x) => {
  for (const [name, opt] of [['TCP_KEEPCNT', S.TCP_KEEPCNT], ['TCP_KEEPINTVL', S.TCP_KEEPINTVL]] as const) {
    c.same(await setOpt(x.spi, x.s, S.IPPROTO_TCP, opt, dword(5), 4), [0, 0], `set ${name}`);
    const [r, , v] = await getOpt(x.spi, x.s, S.IPPROTO_TCP, opt, 4);
    c.same([r, v], [0, 5], `get ${name}`);
  }
});

main.step(t, 'test_set_getsockopt: an optval that is no buffer (SO_DONTROUTE) fails with WSAEFAULT', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_DONTROUTE, null, 1), [S.SOCKET_ERROR, S.WSAEFAULT], 'set');
});

main.step(t, 'test_set_getsockopt: an invalid level (0xffffffff, 0x8000) fails with WSAEINVAL', {}, async (c, x) => {
  for (const level of [-1, 0x8000]) c.same(await setOpt(x.spi, x.s, level, SO_RCVTIMEO, dword(63000), 4), [S.SOCKET_ERROR, S.WSAEINVAL], `level ${hex(level)}`);
});

main.step(t, 'test_set_getsockopt: SO_ERROR can be set, and getsockopt then reads the value set (1234)', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_ERROR, dword(1234), 4), [0, 0], 'set 1234');
  const [r, err, v] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_ERROR, 4);
  c.same([r, err, v], [0, 0, 1234], 'get');
});

main.step(t, 'test_set_getsockopt: getsockopt of SO_ERROR with an optlen of 1 fails with WSAEFAULT', {}, async (c, x) => {
  const [r, err] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_ERROR, 1);
  c.same([r, err], [S.SOCKET_ERROR, S.WSAEFAULT], 'get');
});

main.step(t, 'test_set_getsockopt: getsockopt on a closed socket fails with WSAENOTSOCK and leaves the value', {}, async (c, x) => {
  await x.spi.WSPCloseSocket(x.s, S.out(0));
  const [r, err, v] = await getOpt(x.spi, x.s, S.SOL_SOCKET, S.SO_ERROR, 4);
  c.same([r, err, hex(v)], [S.SOCKET_ERROR, S.WSAENOTSOCK, '0xdeadbeef'], 'get');
});

// ================================================================ a short SO_RCVBUF

interface Pair {
  spi: S.SpiSession;
  src: number;
  dst: number;
}

const shortRcv = new Scenario<Pair>(async (f) => {
  const spi = await openSession(t, d);
  const { client: src, server: dst } = await tcpPair(spi, f);
  await setBlocking(spi, src, false);
  await setBlocking(spi, dst, false);
  return { spi, src, dst };
});

shortRcv.step(t, 'test_set_getsockopt: with SO_SNDBUF 0 on the sender and SO_RCVBUF 1024 on the receiver, three nonblocking sends of 4096 bytes take 4096 each, and three receives get them', {}, async (c, x) => {
  c.same(await setOpt(x.spi, x.src, S.SOL_SOCKET, S.SO_SNDBUF, dword(0), 4), [0, 0], 'SO_SNDBUF 0');
  const [, , dflt] = await getOpt(x.spi, x.dst, S.SOL_SOCKET, S.SO_RCVBUF, 4);
  c.ok(dflt >= 3 * 4096, `the default SO_RCVBUF (${dflt}) holds three sends`);
  c.same(await setOpt(x.spi, x.dst, S.SOL_SOCKET, S.SO_RCVBUF, dword(1024), 4), [0, 0], 'SO_RCVBUF 1024');
  c.equal((await getOpt(x.spi, x.dst, S.SOL_SOCKET, S.SO_RCVBUF, 4))[2], 1024, 'reads back 1024');
  const buf = new Uint8Array(4096);
  for (let i = 0; i < 3; i++) {
    const r = await send(x.spi, x.src, buf);
    c.same([r.ret, r.err, r.sent], [0, 0, 4096], `send ${i + 1}`);
  }
  for (let i = 0; i < 3; i++) {
    let got = 0;
    while (got < 4096) {
      const r = await syncRecv(x.spi, x.dst, 4096 - got);
      if (r.n <= 0) break;
      got += r.n;
    }
    c.equal(got, 4096, `receive ${i + 1}`);
  }
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dst, S.out(0));
});

// ================================================================ option lengths (Wine's test_optsize)

interface OptRow {
  name: string;
  type: 'tcp' | 'udp';
  level: number;
  opt: number;
  /** Setting with fewer than 4 bytes works. */
  shortLen: boolean;
  /** The size getsockopt reports after setting 1, 2 and 4 bytes. */
  sizes: [number, number, number];
  /** What getsockopt leaves in the 0xdeadbeef DWORD for lengths 1, 2 and 4 (0: the bytes set). */
  values: [number, number, number];
  /** 0x100 is accepted. */
  large: boolean;
  /** A BOOL (SOL_SOCKET options that take an optlen of 0). */
  bool: boolean;
  /** An option of one address family's sockets only. */
  family?: Family;
}

const ROWS: OptRow[] = [
  { name: 'SO_BROADCAST', type: 'udp', level: S.SOL_SOCKET, opt: S.SO_BROADCAST, shortLen: true, sizes: [1, 1, 4], values: [0, 0xdead0001, 0], large: true, bool: true },
  { name: 'SO_LINGER', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_LINGER, shortLen: false, sizes: [1, 2, 4], values: [0xdeadbe00, 0xdead0000, 0], large: true, bool: false },
  { name: 'SO_OOBINLINE', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_OOBINLINE, shortLen: true, sizes: [1, 1, 4], values: [0, 0xdead0001, 0], large: true, bool: true },
  { name: 'SO_RCVBUF', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_RCVBUF, shortLen: false, sizes: [1, 2, 4], values: [0xdeadbe00, 0xdead0000, 0], large: true, bool: false },
  { name: 'SO_KEEPALIVE', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_KEEPALIVE, shortLen: true, sizes: [1, 1, 1], values: [0, 0, 0], large: true, bool: false },
  { name: 'SO_DONTROUTE', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_DONTROUTE, shortLen: true, sizes: [1, 1, 1], values: [0, 0, 0], large: true, bool: false },
  { name: 'SO_SNDBUF', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_SNDBUF, shortLen: false, sizes: [1, 2, 4], values: [0xdeadbe00, 0xdead0000, 0], large: true, bool: false },
  { name: 'SO_RCVTIMEO', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_RCVTIMEO, shortLen: false, sizes: [1, 2, 4], values: [0, 0, 0], large: true, bool: false },
  { name: 'SO_SNDTIMEO', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_SNDTIMEO, shortLen: false, sizes: [1, 2, 4], values: [0, 0, 0], large: true, bool: false },
  { name: 'TCP_NODELAY', type: 'tcp', level: S.IPPROTO_TCP, opt: S.TCP_NODELAY, shortLen: true, sizes: [1, 1, 1], values: [0, 0, 0], large: true, bool: false },
  { name: 'TCP_KEEPALIVE', type: 'tcp', level: S.IPPROTO_TCP, opt: S.TCP_KEEPALIVE, shortLen: false, sizes: [0, 0, 4], values: [0, 0, 0], large: true, bool: false },
  { name: 'TCP_KEEPCNT', type: 'tcp', level: S.IPPROTO_TCP, opt: S.TCP_KEEPCNT, shortLen: false, sizes: [0, 0, 4], values: [0, 0, 0], large: false, bool: false },
  { name: 'TCP_KEEPINTVL', type: 'tcp', level: S.IPPROTO_TCP, opt: S.TCP_KEEPINTVL, shortLen: false, sizes: [0, 0, 4], values: [0, 0, 0], large: true, bool: false },
  { name: 'SO_DONTLINGER', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_DONTLINGER, shortLen: true, sizes: [1, 1, 4], values: [0, 0xdead0001, 0], large: true, bool: true },
  { name: 'SO_REUSEADDR', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_REUSEADDR, shortLen: true, sizes: [1, 1, 4], values: [0, 0xdead0001, 0], large: true, bool: true },
  { name: 'SO_EXCLUSIVEADDRUSE', type: 'tcp', level: S.SOL_SOCKET, opt: S.SO_EXCLUSIVEADDRUSE, shortLen: true, sizes: [1, 1, 4], values: [0, 0xdead0001, 0], large: true, bool: true },
  // Wine's row is an AF_INET6 UDP socket; Windows takes the option on AF_INET sockets too (test_ipv6only).
  { name: 'IPV6_V6ONLY', type: 'udp', level: S.IPPROTO_IPV6, opt: S.IPV6_V6ONLY, shortLen: true, sizes: [1, 1, 1], values: [0, 0, 0], large: true, bool: false },
  { name: 'IP_TOS', type: 'udp', level: S.IPPROTO_IP, opt: S.IP_TOS, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: false, bool: false, family: 'ipv4' },
  { name: 'IP_TTL', type: 'udp', level: S.IPPROTO_IP, opt: S.IP_TTL, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: false, bool: false, family: 'ipv4' },
  { name: 'IPV6_UNICAST_HOPS', type: 'udp', level: S.IPPROTO_IPV6, opt: S.IPV6_UNICAST_HOPS, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: false, bool: false, family: 'ipv6' },
  { name: 'IPV6_DONTFRAG', type: 'tcp', level: S.IPPROTO_IPV6, opt: S.IPV6_DONTFRAG, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: true, bool: true, family: 'ipv6' },
  { name: 'IP_MULTICAST_LOOP', type: 'udp', level: S.IPPROTO_IP, opt: S.IP_MULTICAST_LOOP, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: true, bool: true, family: 'ipv4' },
  { name: 'IP_MULTICAST_TTL', type: 'udp', level: S.IPPROTO_IP, opt: S.IP_MULTICAST_TTL, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: false, bool: false, family: 'ipv4' },
  { name: 'IPV6_MULTICAST_HOPS', type: 'udp', level: S.IPPROTO_IPV6, opt: S.IPV6_MULTICAST_HOPS, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: false, bool: false, family: 'ipv6' },
  { name: 'IPV6_MULTICAST_LOOP', type: 'udp', level: S.IPPROTO_IPV6, opt: S.IPV6_MULTICAST_LOOP, shortLen: true, sizes: [1, 1, 4], values: [0, 0, 0], large: true, bool: true, family: 'ipv6' },
];

const sizes = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

/** Runs fn for every option of the table, each on a fresh socket of its kind. */
async function eachRow(c: Check, ctx: { spi: S.SpiSession; f: Family }, fn: (row: OptRow, s: number) => Promise<void>): Promise<void> {
  for (const row of ROWS) {
    if (row.family && row.family !== ctx.f) continue;
    const s = await socket(ctx.spi, ctx.f, row.type);
    try {
      await fn(row, s);
    } finally {
      await ctx.spi.WSPCloseSocket(s, S.out(0));
    }
  }
  void c;
}

/** 0xdeadbeef with its low n bytes replaced by those of the DWORD 1. */
const withLowBytesOfOne = (n: number): number => (n >= 4 ? 1 : ((0xdeadbeef & ~((1 << (8 * n)) - 1)) | 1) >>> 0);

sizes.step(t, 'test_set_getsockopt: option lengths: an 8-byte optval is accepted, and getsockopt of 8 bytes reports the option\'s own size', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const [r0] = await getOpt(x.spi, s, row.level, row.opt, 4);
    c.equal(r0, 0, `${row.name}: getsockopt of 4 bytes`);
    const v64 = new Uint8Array([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    c.same(await setOpt(x.spi, s, row.level, row.opt, v64, 8), [0, 0], `${row.name}: setsockopt of 8 bytes`);
    const [r, , , len] = await getOpt(x.spi, s, row.level, row.opt, 8);
    c.same([r, len], [0, row.sizes[2]], `${row.name}: getsockopt of 8 bytes reports ${row.sizes[2]}`);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: setsockopt with an optlen of -1 succeeds for 4-byte SOL_SOCKET options, fails with WSAENOBUFS (or WSAEFAULT) for the others', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const succeeds = row.sizes[2] !== 1 && row.level === S.SOL_SOCKET;
    const [r, err] = await setOpt(x.spi, s, row.level, row.opt, dword(1), -1);
    if (succeeds) c.same([r, err], [0, 0], `${row.name}: succeeds`);
    else c.ok(r === S.SOCKET_ERROR && (err === S.WSAENOBUFS || err === S.WSAEFAULT), `${row.name}: fails with WSAENOBUFS or WSAEFAULT (${r}, ${err})`);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: getsockopt with an optlen of -1 fails with WSAEFAULT and leaves optlen', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const [r, err, , len] = await getOpt(x.spi, s, row.level, row.opt, -1, 4);
    c.same([r, err, len], [S.SOCKET_ERROR, S.WSAEFAULT, -1], row.name);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: setsockopt with an optlen of 0 succeeds for SOL_SOCKET BOOL options, fails with WSAEFAULT for the others', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const want = row.level === S.SOL_SOCKET && row.bool ? [0, 0] : [S.SOCKET_ERROR, S.WSAEFAULT];
    c.same(await setOpt(x.spi, s, row.level, row.opt, dword(1), 0), want, row.name);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: getsockopt with an optlen of 0 fails with WSAEFAULT', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const [r, err] = await getOpt(x.spi, s, row.level, row.opt, 0, 4);
    c.same([r, err], [S.SOCKET_ERROR, S.WSAEFAULT], row.name);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: 0x100 in 4 bytes is accepted and read back as the option\'s size gives it (TCP_KEEPCNT and the TTL, TOS and hop options: WSAEINVAL)', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    const [r, err] = await setOpt(x.spi, s, row.level, row.opt, dword(0x100), 4);
    if (!row.large) {
      c.same([r, err], [S.SOCKET_ERROR, S.WSAEINVAL], `${row.name}: setsockopt refuses 0x100`);
      return;
    }
    c.same([r, err], [0, 0], `${row.name}: setsockopt of 0x100`);
    const want = row.sizes[2] === 1 ? 0xdeadbe00 : row.bool ? 1 : 0x100;
    const [gr, , v, len] = await getOpt(x.spi, s, row.level, row.opt, 4);
    c.same([gr, hex(v), len], [0, hex(want), row.sizes[2]], `${row.name}: getsockopt`);
  });
});

sizes.step(t, 'test_set_getsockopt: option lengths: setsockopt and getsockopt with an optlen of 1, 2 and 4', {}, async (c, x) => {
  await eachRow(c, x, async (row, s) => {
    for (let j = 0; j < 3; j++) {
      const size = 1 << j;
      const works = row.shortLen || size === 4;
      const wantValue = row.values[j] || (works ? withLowBytesOfOne(row.sizes[j]) : 0xdeadbeef);
      const wantErr = works ? [0, 0] : [S.SOCKET_ERROR, S.WSAEFAULT];
      c.same(await setOpt(x.spi, s, row.level, row.opt, dword(1), size), wantErr, `${row.name}, optlen ${size}: setsockopt`);
      const [r, err, v, len] = await getOpt(x.spi, s, row.level, row.opt, size, 4);
      c.same([r, err, hex(v), len], [...wantErr, hex(wantValue), row.sizes[j]], `${row.name}, optlen ${size}: getsockopt`);
    }
  });
});

// ================================================================ SO_PROTOCOL_INFOW

const info = new Scenario<One>(async (f) => {
  const spi = await openSession(t, d);
  return { spi, s: await socket(spi, f, 'tcp'), f };
});

info.step(t, 'test_set_getsockopt: SO_PROTOCOL_INFOW on INVALID_SOCKET fails with WSAENOTSOCK and leaves optlen', {}, async (c, x) => {
  const len = S.out(S.WSAPROTOCOL_INFOW_SIZE);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockOpt(S.INVALID_SOCKET, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, new Uint8Array(S.WSAPROTOCOL_INFOW_SIZE), len, e);
  c.same([r, e.value, len.value], [S.SOCKET_ERROR, S.WSAENOTSOCK, S.WSAPROTOCOL_INFOW_SIZE], 'getsockopt');
});

info.step(t, 'test_set_getsockopt: SO_PROTOCOL_INFOW without optval or without optlen fails with WSAEFAULT', {}, async (c, x) => {
  for (const [label, buf, len] of [['no optval, no optlen', null, null], ['no optlen', new Uint8Array(S.WSAPROTOCOL_INFOW_SIZE), null], ['no optval', null, S.out(S.WSAPROTOCOL_INFOW_SIZE)]] as const) {
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(x.s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, buf as unknown as Uint8Array, len, e);
    c.same([r, e.value], [S.SOCKET_ERROR, S.WSAEFAULT], label);
  }
});

info.step(t, 'test_set_getsockopt: SO_PROTOCOL_INFOW with half the size fails with WSAEFAULT and sets optlen to the full size', {}, async (c, x) => {
  const half = S.WSAPROTOCOL_INFOW_SIZE / 2;
  const len = S.out(half);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockOpt(x.s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, new Uint8Array(half), len, e);
  c.same([r, e.value, len.value], [S.SOCKET_ERROR, S.WSAEFAULT, S.WSAPROTOCOL_INFOW_SIZE], 'getsockopt');
});

info.step(t, 'test_set_getsockopt: SO_PROTOCOL_INFOW with twice the size succeeds and leaves optlen', {}, async (c, x) => {
  const twice = S.WSAPROTOCOL_INFOW_SIZE * 2;
  const len = S.out(twice);
  const e = S.out(0);
  const r = await x.spi.WSPGetSockOpt(x.s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, new Uint8Array(twice), len, e);
  c.same([r, e.value, len.value], [0, 0, twice], 'getsockopt');
  await x.spi.WSPCloseSocket(x.s, S.out(0));
});

info.step(t, 'test_set_getsockopt: SO_PROTOCOL_INFOW of TCP and UDP sockets: the structure\'s size, family, type and protocol', {}, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    const buf = new Uint8Array(S.WSAPROTOCOL_INFOW_SIZE);
    const len = S.out(S.WSAPROTOCOL_INFOW_SIZE);
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_PROTOCOL_INFOW, buf, len, e);
    c.same([r, len.value], [0, S.WSAPROTOCOL_INFOW_SIZE], `${kind}: getsockopt`);
    const pi = S.decodeProtocolInfoW(buf);
    const want = kind === 'tcp' ? [S.SOCK_STREAM, S.IPPROTO_TCP] : [S.SOCK_DGRAM, S.IPPROTO_UDP];
    c.same([pi.iAddressFamily, pi.iSocketType, pi.iProtocol], [x.f === 'ipv4' ? S.AF_INET : S.AF_INET6, ...want], `${kind}: family, type, protocol`);
    c.ok(pi.szProtocol.length > 0, `${kind}: the protocol name is filled`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

// ================================================================ test_sockopt_validity

const validity = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

validity.step(t, 'test_sockopt_validity: an unknown option (-1) at IPPROTO_IP (IPv4) or IPPROTO_IPV6 (IPv6), on TCP and UDP, fails with WSAENOPROTOOPT', {}, async (c, x) => {
  const level = x.f === 'ipv4' ? S.IPPROTO_IP : S.IPPROTO_IPV6;
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    const [r, err] = await getOpt(x.spi, s, level, -1, 256);
    c.same([r, err], [S.SOCKET_ERROR, S.WSAENOPROTOOPT], `${kind}: getsockopt`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

validity.step(t, 'test_sockopt_validity: IPV6_V6ONLY on IPv6 TCP and UDP sockets: getsockopt into 256 bytes succeeds, and setting back what it read succeeds', { families: ['ipv6'] }, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    const buf = new Uint8Array(256);
    const len = S.out(256);
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(s, S.IPPROTO_IPV6, S.IPV6_V6ONLY, buf, len, e);
    c.same([r, e.value], [0, 0], `${kind}: getsockopt`);
    c.same(await setOpt(x.spi, s, S.IPPROTO_IPV6, S.IPV6_V6ONLY, buf.subarray(0, len.value), len.value), [0, 0], `${kind}: setsockopt of the ${len.value} byte(s) read`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

validity.step(t, 'test_sockopt_validity: IP_TOS, IP_TTL and IP_DONTFRAGMENT (IPv4), IPV6_UNICAST_HOPS and IPV6_DONTFRAG (IPv6) on TCP and UDP sockets: getsockopt into 256 bytes succeeds, and setting back what it read succeeds', {}, async (c, x) => {
  const opts: Array<[string, number, number]> =
    x.f === 'ipv4'
      ? [['IP_TOS', S.IPPROTO_IP, S.IP_TOS], ['IP_TTL', S.IPPROTO_IP, S.IP_TTL], ['IP_DONTFRAGMENT', S.IPPROTO_IP, S.IP_DONTFRAGMENT]]
      : [['IPV6_UNICAST_HOPS', S.IPPROTO_IPV6, S.IPV6_UNICAST_HOPS], ['IPV6_DONTFRAG', S.IPPROTO_IPV6, S.IPV6_DONTFRAG]];
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    for (const [name, level, opt] of opts) {
      const buf = new Uint8Array(256);
      const len = S.out(256);
      const e = S.out(0);
      const r = await x.spi.WSPGetSockOpt(s, level, opt, buf, len, e);
      c.same([r, e.value], [0, 0], `${kind} ${name}: getsockopt`);
      c.same(await setOpt(x.spi, s, level, opt, buf.subarray(0, len.value), len.value), [0, 0], `${kind} ${name}: setsockopt of the ${len.value} byte(s) read`);
    }
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

// ================================================================ IP_DONTFRAGMENT

const dontFrag = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

dontFrag.step(t, 'test_set_getsockopt: IP_DONTFRAGMENT (IPV6_DONTFRAG on IPv6) is 0 on a UDP socket and 1 on a TCP socket; 1 and 0xdead read back 1, 0 reads back 0', {}, async (c, x) => {
  const [level, opt] = x.f === 'ipv4' ? [S.IPPROTO_IP, S.IP_DONTFRAGMENT] : [S.IPPROTO_IPV6, S.IPV6_DONTFRAG];
  const read = async (s: number): Promise<[number, number, number]> => {
    const [r, err, v] = await getOpt(x.spi, s, level, opt, 4);
    return [r, err, v];
  };
  const udp = await socket(x.spi, x.f, 'udp');
  c.same(await read(udp), [0, 0, 0], 'UDP: 0');
  c.same(await setOpt(x.spi, udp, level, opt, dword(1), 4), [0, 0], 'UDP: set 1');
  c.same(await read(udp), [0, 0, 1], 'UDP: reads 1');
  c.same(await setOpt(x.spi, udp, level, opt, dword(0xdead), 4), [0, 0], 'UDP: set 0xdead');
  c.same(await read(udp), [0, 0, 1], 'UDP: reads 1');
  const tcp = await socket(x.spi, x.f, 'tcp');
  c.same(await read(tcp), [0, 0, 1], 'TCP: 1');
  c.same(await setOpt(x.spi, tcp, level, opt, dword(0), 4), [0, 0], 'TCP: set 0');
  c.same(await read(tcp), [0, 0, 0], 'TCP: reads 0');
  for (const s of [udp, tcp]) await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ IP_MULTICAST_TTL and IP_HDRINCL

const ipOpts = new Scenario<{ spi: S.SpiSession; f: Family }>(async (f) => ({ spi: await openSession(t, d), f }));

ipOpts.step(t, 'test_set_getsockopt: IP_MULTICAST_TTL set with 1, 2, 3 and 4 bytes takes those bytes (0xffffff0a, 0xffff000b, 0xff00000c, 0x0000000d read back 0x0a to 0x0d)', { families: ['ipv4'] }, async (c, x) => {
  const s = await socket(x.spi, x.f, 'udp');
  const cases: Array<[number, number, number]> = [
    [0xffffff0a, 1, 0x0a],
    [0xffff000b, 2, 0x0b],
    [0xff00000c, 3, 0x0c],
    [0x0000000d, 4, 0x0d],
  ];
  for (const [value, optlen, want] of cases) {
    c.same(await setOpt(x.spi, s, S.IPPROTO_IP, S.IP_MULTICAST_TTL, dword(value), optlen), [0, 0], `set ${hex(value)} with optlen ${optlen}`);
    const [r, err, v] = await getOpt(x.spi, s, S.IPPROTO_IP, S.IP_MULTICAST_TTL, 4);
    c.same([r, err, hex(v)], [0, 0, hex(want)], `reads ${hex(want)}`);
  }
  await x.spi.WSPCloseSocket(s, S.out(0));
});

ipOpts.step(t, 'test_set_getsockopt: IP_HDRINCL on TCP and UDP sockets fails with WSAEINVAL, set or got, and leaves the output', { families: ['ipv4'] }, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    c.same(await setOpt(x.spi, s, S.IPPROTO_IP, S.IP_HDRINCL, dword(1), 4), [S.SOCKET_ERROR, S.WSAEINVAL], `${kind}: setsockopt`);
    const [r, err, v] = await getOpt(x.spi, s, S.IPPROTO_IP, S.IP_HDRINCL, 4);
    c.same([r, err, hex(v)], [S.SOCKET_ERROR, S.WSAEINVAL, hex(0xdeadbeef)], `${kind}: getsockopt`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

validity.step(t, 'test_sockopt_validity: IPV6_HDRINCL on IPv6 TCP and UDP sockets: getsockopt fails with WSAEINVAL (todo_wine: Windows\' value), and setsockopt as for IP_HDRINCL', { families: ['ipv6'] }, async (c, x) => {
  for (const kind of ['tcp', 'udp'] as const) {
    const s = await socket(x.spi, x.f, kind);
    const [r, err, v] = await getOpt(x.spi, s, S.IPPROTO_IPV6, S.IPV6_HDRINCL, 4);
    c.same([r, err, hex(v)], [S.SOCKET_ERROR, S.WSAEINVAL, hex(0xdeadbeef)], `${kind}: getsockopt fails and leaves the output`);
    c.same(await setOpt(x.spi, s, S.IPPROTO_IPV6, S.IPV6_HDRINCL, dword(1), 4), [S.SOCKET_ERROR, S.WSAEINVAL], `${kind}: setsockopt`);
    await x.spi.WSPCloseSocket(s, S.out(0));
  }
});

validity.step(t, 'test_sockopt_validity: on TCP sockets the datagram options (multicast IF, TTL and loop, packet information, received TTL and TOS) fail with WSAEINVAL; on UDP the multicast IF, TTL and loop read and set back', {}, async (c, x) => {
  const level = x.f === 'ipv4' ? S.IPPROTO_IP : S.IPPROTO_IPV6;
  const tcp = await socket(x.spi, x.f, 'tcp');
  // The IPv6 twins share the numbers.
  for (const opt of [S.IP_MULTICAST_IF, S.IP_MULTICAST_TTL, S.IP_MULTICAST_LOOP, S.IP_PKTINFO, S.IP_RECVTTL, S.IP_RECVTOS]) {
    const [r, err] = await getOpt(x.spi, tcp, level, opt, 256);
    c.same([r, err], [S.SOCKET_ERROR, S.WSAEINVAL], `TCP: getsockopt of ${opt}`);
  }
  await x.spi.WSPCloseSocket(tcp, S.out(0));
  const udp = await socket(x.spi, x.f, 'udp');
  for (const opt of [S.IP_MULTICAST_IF, S.IP_MULTICAST_TTL, S.IP_MULTICAST_LOOP]) {
    const buf = new Uint8Array(256);
    const len = S.out(256);
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(udp, level, opt, buf, len, e);
    c.same([r, e.value], [0, 0], `UDP: getsockopt of ${opt}`);
    c.same(await setOpt(x.spi, udp, level, opt, buf.subarray(0, len.value), len.value), [0, 0], `UDP: setsockopt of ${opt} with what it read`);
  }
  await x.spi.WSPCloseSocket(udp, S.out(0));
});
