/**
 * The protocol catalog: the C layout of WSAPROTOCOL_INFOW (628 bytes on Windows, every offset), the
 * encoder and decoder, the XP1_* / PFL_* values, and each entry against the table in
 * ../shared/reference/winsock.md ("Protocol catalog"), minus XP1_IFS_HANDLES.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import fc from 'fast-check';
import * as P from '../src/index.js';
import * as Catalog from '../src/catalog.js';
import type { WSAPROTOCOL_INFOW } from '../src/catalog.js';

/**
 * Offsets in the C structure, worked out by hand from winsock2.h (all members 4-byte aligned, a
 * GUID is 16 bytes aligned on 4, WSAPROTOCOLCHAIN is int + DWORD[7] = 32 bytes). Deliberately not
 * taken from the code under test.
 */
const OFFSETS = {
  dwServiceFlags1: 0,
  dwServiceFlags2: 4,
  dwServiceFlags3: 8,
  dwServiceFlags4: 12,
  dwProviderFlags: 16,
  ProviderId: 20,
  dwCatalogEntryId: 36,
  ChainLen: 40,
  ChainEntries: 44,
  iVersion: 72,
  iAddressFamily: 76,
  iMaxSockAddr: 80,
  iMinSockAddr: 84,
  iSocketType: 88,
  iProtocol: 92,
  iProtocolMaxOffset: 96,
  iNetworkByteOrder: 100,
  iSecurityScheme: 104,
  dwMessageSize: 108,
  dwProviderReserved: 112,
  szProtocol: 116,
} as const;

/** An entry whose every field has a different value, so a field written at the wrong place shows. */
function distinct(): WSAPROTOCOL_INFOW {
  return {
    dwServiceFlags1: 0x11111101,
    dwServiceFlags2: 0x22222202,
    dwServiceFlags3: 0x33333303,
    dwServiceFlags4: 0xf4444404,
    dwProviderFlags: 0x55555505,
    ProviderId: '{00112233-4455-6677-8899-AABBCCDDEEFF}',
    dwCatalogEntryId: 0x66666606,
    ProtocolChain: { ChainLen: -7, ChainEntries: [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xfffffffe] },
    iVersion: 0x0101,
    iAddressFamily: 0x0202,
    iMaxSockAddr: 0x0303,
    iMinSockAddr: 0x0404,
    iSocketType: 0x0505,
    iProtocol: 0x0606,
    iProtocolMaxOffset: 0x0707,
    iNetworkByteOrder: -2,
    iSecurityScheme: 0x0909,
    dwMessageSize: 0xfffffff0,
    dwProviderReserved: 0x0b0b0b0b,
    szProtocol: 'Ab\u00e9\u{1F600}',
  };
}

t.test('sizes: WSAPROTOCOL_INFOW 628 bytes, WSAPROTOCOL_INFOA 372', async (t) => {
  t.equal(P.WSAPROTOCOL_INFOW_SIZE, 628);
  t.equal(P.WSAPROTOCOL_INFOA_SIZE, 372);
  // 5 DWORDs + GUID + DWORD + chain (4 + 7*4) + 9 ints + 2 DWORDs + WCHAR[256]
  t.equal(5 * 4 + 16 + 4 + (4 + 7 * 4) + 9 * 4 + 2 * 4 + 256 * 2, 628, 'the sum of the C members');
  for (const e of P.PROTOCOL_CATALOG) {
    t.equal(P.encodeProtocolInfoW(e).length, 628, `${e.szProtocol}: 628 bytes`);
    t.equal(P.encodeProtocolInfoA(e).length, 372, `${e.szProtocol}: A form 372 bytes`);
  }
});

t.test('every field is at its C offset, little-endian', async (t) => {
  const info = distinct();
  for (const [encode, what] of [
    [P.encodeProtocolInfoW, 'W'],
    [P.encodeProtocolInfoA, 'A'],
  ] as const) {
    const b = encode(info);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const u = (o: number): number => dv.getUint32(o, true);
    const i = (o: number): number => dv.getInt32(o, true);
    t.equal(u(OFFSETS.dwServiceFlags1), 0x11111101, `${what} dwServiceFlags1 @0`);
    t.equal(u(OFFSETS.dwServiceFlags2), 0x22222202, `${what} dwServiceFlags2 @4`);
    t.equal(u(OFFSETS.dwServiceFlags3), 0x33333303, `${what} dwServiceFlags3 @8`);
    t.equal(u(OFFSETS.dwServiceFlags4), 0xf4444404, `${what} dwServiceFlags4 @12 (unsigned)`);
    t.equal(u(OFFSETS.dwProviderFlags), 0x55555505, `${what} dwProviderFlags @16`);
    t.same(
      [...b.subarray(OFFSETS.ProviderId, OFFSETS.ProviderId + 16)],
      [0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
      `${what} ProviderId @20: Data1 LE, Data2 LE, Data3 LE, Data4 as is`,
    );
    t.equal(u(OFFSETS.dwCatalogEntryId), 0x66666606, `${what} dwCatalogEntryId @36`);
    t.equal(i(OFFSETS.ChainLen), -7, `${what} ProtocolChain.ChainLen @40 (int)`);
    t.same(
      Array.from({ length: 7 }, (_, k) => u(OFFSETS.ChainEntries + 4 * k)),
      [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xfffffffe],
      `${what} ProtocolChain.ChainEntries @44..71`,
    );
    t.equal(i(OFFSETS.iVersion), 0x0101, `${what} iVersion @72`);
    t.equal(i(OFFSETS.iAddressFamily), 0x0202, `${what} iAddressFamily @76`);
    t.equal(i(OFFSETS.iMaxSockAddr), 0x0303, `${what} iMaxSockAddr @80`);
    t.equal(i(OFFSETS.iMinSockAddr), 0x0404, `${what} iMinSockAddr @84`);
    t.equal(i(OFFSETS.iSocketType), 0x0505, `${what} iSocketType @88`);
    t.equal(i(OFFSETS.iProtocol), 0x0606, `${what} iProtocol @92`);
    t.equal(i(OFFSETS.iProtocolMaxOffset), 0x0707, `${what} iProtocolMaxOffset @96`);
    t.equal(i(OFFSETS.iNetworkByteOrder), -2, `${what} iNetworkByteOrder @100 (int)`);
    t.equal(i(OFFSETS.iSecurityScheme), 0x0909, `${what} iSecurityScheme @104`);
    t.equal(u(OFFSETS.dwMessageSize), 0xfffffff0, `${what} dwMessageSize @108`);
    t.equal(u(OFFSETS.dwProviderReserved), 0x0b0b0b0b, `${what} dwProviderReserved @112`);
  }
  const w = P.encodeProtocolInfoW(info);
  const name = Buffer.from(w.subarray(OFFSETS.szProtocol));
  t.equal(name.length, 512, 'szProtocol is WCHAR[256]: the last 512 bytes');
  t.same([...name.subarray(0, 10)], [0x41, 0, 0x62, 0, 0xe9, 0, 0x3d, 0xd8, 0x00, 0xde], 'szProtocol @116 as UTF-16LE, surrogate pair included');
  t.ok(name.subarray(10).every((x) => x === 0), 'NUL-terminated, zero-filled to the end');
  const a = P.encodeProtocolInfoA(info);
  t.same([...a.subarray(116, 122)], [0x41, 0x62, 0x3f, 0x3f, 0x3f, 0], 'A: CHAR[256] @116, non-ASCII as ?, then NUL');
  t.ok(a.subarray(121).every((x) => x === 0), 'A: zero-filled');
});

t.test('the catalog entries encode to the bytes the C structure would hold', async (t) => {
  const tcp4 = P.encodeProtocolInfoW(P.catalogEntryFor(P.AF_INET, P.SOCK_STREAM, P.IPPROTO_TCP)!);
  const hex = Buffer.from(tcp4.subarray(0, 116)).toString('hex');
  t.equal(
    hex,
    '66000000' + '00000000'.repeat(3) + '08000000' +
      '5ef27eca' + '9647' + '764b' + 'a8b1bf7aa11017a8' +
      (7787001).toString(16).padStart(8, '0').match(/../g)!.reverse().join('') +
      '01000000' + '00000000'.repeat(7) +
      '02000000' + '02000000' + '10000000' + '10000000' + '01000000' + '06000000' + '00000000' + '00000000' + '00000000' +
      '00000000' + '00000000',
    'TCP/IPv4 head, byte for byte',
  );
  t.equal(Buffer.from(tcp4.subarray(116, 116 + 30)).toString('utf16le'), 'spiwire TCP/IP\0', 'szProtocol');
  const udp6 = P.encodeProtocolInfoW(P.catalogEntryFor(P.AF_INET6, P.SOCK_DGRAM, P.IPPROTO_UDP)!);
  t.same([...udp6.subarray(0, 4)], [0x09, 0x06, 0x00, 0x00], 'UDP/IPv6 dwServiceFlags1 0x00000609');
  t.same([...udp6.subarray(108, 112)], [0xbb, 0xff, 0x00, 0x00], 'UDP/IPv6 dwMessageSize 0xFFBB');
  t.same([...udp6.subarray(80, 88)], [28, 0, 0, 0, 28, 0, 0, 0], 'UDP/IPv6 iMaxSockAddr = iMinSockAddr = 28');
});

t.test('round trip: decode(encode(x)) is x', async (t) => {
  for (const e of P.PROTOCOL_CATALOG) t.same(P.decodeProtocolInfoW(P.encodeProtocolInfoW(e)), e, e.szProtocol);
  t.same(P.decodeProtocolInfoW(P.encodeProtocolInfoW(distinct())), distinct(), 'every field distinct, a surrogate pair in the name');
  const long = { ...distinct(), szProtocol: 'x'.repeat(255) };
  t.same(P.decodeProtocolInfoW(P.encodeProtocolInfoW(long)), long, '255 characters (the most)');
  const lower = { ...distinct(), ProviderId: '00112233-4455-6677-8899-aabbccddeeff' };
  t.equal(P.decodeProtocolInfoW(P.encodeProtocolInfoW(lower)).ProviderId, '{00112233-4455-6677-8899-AABBCCDDEEFF}', 'GUID without braces, lower case: decoded in registry form');

  const dword = fc.integer({ min: 0, max: 0xffffffff });
  const int = fc.integer({ min: -0x80000000, max: 0x7fffffff });
  const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9A-F]{${n}}$`));
  const guid = fc.tuple(hex(8), hex(4), hex(4), hex(4), hex(12)).map((p) => `{${p.join('-')}}`);
  const name = fc.string({ maxLength: 255, unit: 'binary' }).filter((s) => !s.includes('\0') && s.length <= 255);
  const info: fc.Arbitrary<WSAPROTOCOL_INFOW> = fc.record({
    dwServiceFlags1: dword,
    dwServiceFlags2: dword,
    dwServiceFlags3: dword,
    dwServiceFlags4: dword,
    dwProviderFlags: dword,
    ProviderId: guid,
    dwCatalogEntryId: dword,
    ProtocolChain: fc.record({ ChainLen: int, ChainEntries: fc.array(dword, { minLength: 7, maxLength: 7 }) }),
    iVersion: int,
    iAddressFamily: int,
    iMaxSockAddr: int,
    iMinSockAddr: int,
    iSocketType: int,
    iProtocol: int,
    iProtocolMaxOffset: int,
    iNetworkByteOrder: int,
    iSecurityScheme: int,
    dwMessageSize: dword,
    dwProviderReserved: dword,
    szProtocol: name,
  });
  fc.assert(
    fc.property(info, fc.nat(40), (x, pad) => {
      const enc = P.encodeProtocolInfoW(x);
      if (enc.length !== 628) return false;
      // Decoding at an offset inside a larger buffer (as WSCEnumProtocols output is read).
      const big = new Uint8Array(pad + 628 + 3).fill(0xcc);
      big.set(enc, pad);
      const back = P.decodeProtocolInfoW(big, pad);
      return JSON.stringify(back) === JSON.stringify(x);
    }),
    { numRuns: 300 },
  );
});

t.test('encoder refuses values that do not fit their C field; decoder refuses short buffers', async (t) => {
  const bad: Array<[string, Partial<WSAPROTOCOL_INFOW>]> = [
    ['negative DWORD', { dwServiceFlags1: -1 }],
    ['DWORD over 32 bits', { dwMessageSize: 0x100000000 }],
    ['fractional int', { iVersion: 2.5 }],
    ['int over 31 bits', { iAddressFamily: 0x80000000 }],
    ['not a GUID', { ProviderId: 'spiwire' }],
    ['GUID with one brace', { ProviderId: '{00112233-4455-6677-8899-AABBCCDDEEFF' }],
    ['6 chain entries', { ProtocolChain: { ChainLen: 1, ChainEntries: [0, 0, 0, 0, 0, 0] } }],
    ['8 chain entries', { ProtocolChain: { ChainLen: 1, ChainEntries: [0, 0, 0, 0, 0, 0, 0, 0] } }],
    ['256-character name', { szProtocol: 'y'.repeat(256) }],
    ['NUL in the name', { szProtocol: 'a\0b' }],
  ];
  for (const [what, patch] of bad) {
    t.throws(() => P.encodeProtocolInfoW({ ...distinct(), ...patch }), RangeError, `W: ${what}`);
    t.throws(() => P.encodeProtocolInfoA({ ...distinct(), ...patch }), RangeError, `A: ${what}`);
  }
  const enc = P.encodeProtocolInfoW(distinct());
  t.throws(() => P.decodeProtocolInfoW(enc.subarray(0, 627)), RangeError, '627 bytes');
  t.throws(() => P.decodeProtocolInfoW(enc, 1), RangeError, '628 bytes at offset 1');
  // A name without its NUL (all 256 WCHARs used) is read whole rather than past the structure.
  const full = new Uint8Array(enc);
  for (let k = 0; k < 256; k++) new DataView(full.buffer).setUint16(116 + 2 * k, 0x7a, true);
  t.equal(P.decodeProtocolInfoW(full).szProtocol, 'z'.repeat(256), 'unterminated szProtocol: 256 characters');
});

t.test('XP1_* and PFL_* have their Windows values (winsock2.h)', async (t) => {
  const xp1: Record<string, number> = {
    XP1_CONNECTIONLESS: 0x1,
    XP1_GUARANTEED_DELIVERY: 0x2,
    XP1_GUARANTEED_ORDER: 0x4,
    XP1_MESSAGE_ORIENTED: 0x8,
    XP1_PSEUDO_STREAM: 0x10,
    XP1_GRACEFUL_CLOSE: 0x20,
    XP1_EXPEDITED_DATA: 0x40,
    XP1_CONNECT_DATA: 0x80,
    XP1_DISCONNECT_DATA: 0x100,
    XP1_SUPPORT_BROADCAST: 0x200,
    XP1_SUPPORT_MULTIPOINT: 0x400,
    XP1_MULTIPOINT_CONTROL_PLANE: 0x800,
    XP1_MULTIPOINT_DATA_PLANE: 0x1000,
    XP1_QOS_SUPPORTED: 0x2000,
    XP1_INTERRUPT: 0x4000,
    XP1_UNI_SEND: 0x8000,
    XP1_UNI_RECV: 0x10000,
    XP1_IFS_HANDLES: 0x20000,
    XP1_PARTIAL_MESSAGE: 0x40000,
    XP1_SAN_SUPPORT_SDP: 0x80000,
  };
  const pfl: Record<string, number> = {
    PFL_MULTIPLE_PROTO_ENTRIES: 0x1,
    PFL_RECOMMENDED_PROTO_ENTRY: 0x2,
    PFL_HIDDEN: 0x4,
    PFL_MATCHES_PROTOCOL_ZERO: 0x8,
    PFL_NETWORKDIRECT_PROVIDER: 0x10,
  };
  const other: Record<string, number> = {
    BASE_PROTOCOL: 1,
    LAYERED_PROTOCOL: 0,
    MAX_PROTOCOL_CHAIN: 7,
    WSAPROTOCOL_LEN: 255,
    BIGENDIAN: 0,
    LITTLEENDIAN: 1,
    SECURITY_PROTOCOL_NONE: 0,
  };
  const exported = P as unknown as Record<string, unknown>;
  for (const [name, v] of Object.entries({ ...xp1, ...pfl, ...other })) t.equal(exported[name], v, `${name} = 0x${v.toString(16)}`);
  for (const [name, v] of Object.entries(Catalog)) {
    if (name.startsWith('XP1_')) t.equal(xp1[name], v, `${name} is a known XP1 bit`);
    if (name.startsWith('PFL_')) t.equal(pfl[name], v, `${name} is a known PFL bit`);
  }
});

/** ../shared/reference/winsock.md, "Protocol catalog": what Windows publishes. */
const WINDOWS = {
  tcp: { dwServiceFlags1: 0x20066, dwMessageSize: 0 },
  udp: { dwServiceFlags1: 0x20609, dwMessageSize: 0xffbb },
};

t.test('each entry: the reference values, minus XP1_IFS_HANDLES', async (t) => {
  const expected = [
    { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, kind: 'tcp', addr: 16, name: 'spiwire TCP/IP' },
    { af: P.AF_INET6, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, kind: 'tcp', addr: 28, name: 'spiwire TCP/IPv6' },
    { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, kind: 'udp', addr: 16, name: 'spiwire UDP/IP' },
    { af: P.AF_INET6, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, kind: 'udp', addr: 28, name: 'spiwire UDP/IPv6' },
  ] as const;
  t.equal(P.PROTOCOL_CATALOG.length, 4, 'four entries');
  expected.forEach((x, i) => {
    const e = P.PROTOCOL_CATALOG[i]!;
    const win = WINDOWS[x.kind];
    t.test(x.name, async (t) => {
      t.equal(e.iAddressFamily, x.af, 'iAddressFamily');
      t.equal(e.iSocketType, x.type, 'iSocketType');
      t.equal(e.iProtocol, x.protocol, 'iProtocol');
      t.equal(e.dwServiceFlags1, win.dwServiceFlags1 & ~0x20000, `dwServiceFlags1 0x${(win.dwServiceFlags1 & ~0x20000).toString(16)}`);
      t.equal(e.dwServiceFlags1 & 0x20000, 0, 'XP1_IFS_HANDLES not set (handles are not kernel file handles)');
      t.equal(e.dwServiceFlags1 & 0x40000, 0, 'XP1_PARTIAL_MESSAGE not set');
      t.equal(e.dwServiceFlags1, x.kind === 'tcp' ? 0x00066 : 0x00609);
      t.equal(e.iMaxSockAddr, x.addr, 'iMaxSockAddr');
      t.equal(e.iMinSockAddr, x.addr, 'iMinSockAddr');
      t.equal(e.dwMessageSize, win.dwMessageSize, 'dwMessageSize');
      t.same([e.dwServiceFlags2, e.dwServiceFlags3, e.dwServiceFlags4], [0, 0, 0], 'dwServiceFlags2..4 are 0');
      t.equal(e.dwProviderFlags, 0x8, 'PFL_MATCHES_PROTOCOL_ZERO');
      t.equal(e.ProviderId, '{CA7EF25E-4796-4B76-A8B1-BF7AA11017A8}', 'the spiwire provider GUID');
      t.equal(e.dwCatalogEntryId, 7787001 + i, 'catalog entry id');
      t.same(e.ProtocolChain, { ChainLen: 1, ChainEntries: [0, 0, 0, 0, 0, 0, 0] }, 'a base protocol');
      t.equal(e.iVersion, 2, 'iVersion 2');
      t.equal(e.iNetworkByteOrder, 0, 'BIGENDIAN');
      t.equal(e.iSecurityScheme, 0, 'SECURITY_PROTOCOL_NONE');
      t.equal(e.iProtocolMaxOffset, 0, 'no header room asked');
      t.equal(e.dwProviderReserved, 0);
      t.equal(e.szProtocol, x.name, 'szProtocol');
      t.ok(Object.isFrozen(e) && Object.isFrozen(e.ProtocolChain) && Object.isFrozen(e.ProtocolChain.ChainEntries), 'frozen');
    });
  });
  t.equal(new Set(P.PROTOCOL_CATALOG.map((e) => e.dwCatalogEntryId)).size, 4, 'distinct catalog entry ids');
  t.equal(0xffbb, 65535 - 60 - 8, 'dwMessageSize: the largest IPv4 header (60) and the UDP header (8) taken off');
  t.ok(P.UDP_MAX_MSG_SIZE_V4 > P.UDP_CATALOG_MESSAGE_SIZE && P.UDP_MAX_MSG_SIZE_V6 > P.UDP_CATALOG_MESSAGE_SIZE, 'SO_MAX_MSG_SIZE (65507 / 65527) exceeds dwMessageSize, as on Windows');
});

t.test('catalogEntryFor', async (t) => {
  const [tcp4, tcp6, udp4, udp6] = P.PROTOCOL_CATALOG;
  t.equal(P.catalogEntryFor(P.AF_INET, P.SOCK_STREAM, P.IPPROTO_TCP), tcp4);
  t.equal(P.catalogEntryFor(P.AF_INET6, P.SOCK_STREAM, P.IPPROTO_TCP), tcp6);
  t.equal(P.catalogEntryFor(P.AF_INET, P.SOCK_DGRAM, P.IPPROTO_UDP), udp4);
  t.equal(P.catalogEntryFor(P.AF_INET6, P.SOCK_DGRAM, P.IPPROTO_UDP), udp6);
  t.equal(P.catalogEntryFor(P.AF_INET, P.SOCK_STREAM, 0), tcp4, 'protocol 0: the type default (PFL_MATCHES_PROTOCOL_ZERO)');
  t.equal(P.catalogEntryFor(P.AF_INET6, P.SOCK_DGRAM, 0), udp6, 'protocol 0: the type default (PFL_MATCHES_PROTOCOL_ZERO)');
  t.equal(P.catalogEntryFor(P.AF_INET, P.SOCK_STREAM, P.IPPROTO_UDP), undefined, 'stream with UDP');
  t.equal(P.catalogEntryFor(P.AF_INET6, P.SOCK_DGRAM, P.IPPROTO_TCP), undefined, 'datagram with TCP');
  t.equal(P.catalogEntryFor(P.AF_UNSPEC, P.SOCK_STREAM, P.IPPROTO_TCP), undefined, 'AF_UNSPEC');
  t.equal(P.catalogEntryFor(P.AF_INET, P.SOCK_RAW, 0), undefined, 'SOCK_RAW');
});

t.test('proto/README.md names every export of catalog.ts in its "Protocol catalog" section', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const lines = readme.split('\n');
  const start = lines.findIndex((l) => /^## (\d+\. )?Protocol catalog$/.test(l));
  t.ok(start >= 0, 'README has a "Protocol catalog" section');
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  const text = lines.slice(start, end < 0 ? undefined : end).join('\n');
  const names = Object.keys(Catalog);
  t.ok(names.length >= 40);
  for (const name of names) t.ok(new RegExp(`\\b${name}\\b`).test(text), `${name} is named`);
  t.ok(/\b628\b/.test(text) && /\b372\b/.test(text), 'the sizes are given');
});
