/**
 * The protocol catalog: the WSAPROTOCOL_INFOW entries spiwire publishes as a Windows TCP/IP
 * provider does, and the exact C layout of the structure (Windows, x86 and x64 alike).
 *
 * Source of the values: ../shared/reference/winsock.md, "Protocol catalog", with spiwire's
 * documented differences:
 *
 * - XP1_IFS_HANDLES (0x20000) is NOT set: spiwire's socket handles are not kernel file handles
 *   (ReadFile / WriteFile on them mean nothing), and a provider whose handles are not IFS handles
 *   clears the bit. So TCP publishes 0x00066 where Windows publishes 0x20066, and UDP 0x00609
 *   where Windows publishes 0x20609. Everything else in dwServiceFlags1 is as Windows has it.
 * - The provider is spiwire, not MSAFD Tcpip: its own GUID (SPIWIRE_PROVIDER_ID), its own catalog
 *   entry ids (SPIWIRE_CATALOG_ENTRY_BASE + 1..4) and its own szProtocol names.
 *
 * dwMessageSize against SO_MAX_MSG_SIZE (UDP), as on Windows:
 * - dwMessageSize is 0xFFBB = 65467 = 65535 - 60 - 8: the largest datagram that fits in one IPv4
 *   packet even with the LARGEST IPv4 header (60 bytes, options included) and the 8-byte UDP
 *   header. It is a property of the protocol, the same for every socket, and Windows publishes
 *   the same 0xFFBB for UDP over IPv6.
 * - SO_MAX_MSG_SIZE is what one socket can send: 65507 = 65535 - 20 - 8 on IPv4 (the usual 20-byte
 *   header, no options), which is what current Windows reports (old ones said 65527), and 65527 =
 *   65535 - 8 on IPv6 (the IPv6 payload length does not count the fixed header). A larger
 *   datagram fails with WSAEMSGSIZE and nothing is sent.
 * So SO_MAX_MSG_SIZE (65507 / 65527) is larger than dwMessageSize (65467): both are right, they
 * answer different questions. For TCP dwMessageSize is 0 (a stream has no message boundaries) and
 * SO_MAX_MSG_SIZE fails with WSAENOPROTOOPT.
 *
 * SO_PROTOCOL_INFOW and SO_PROTOCOL_INFOA: a Windows service provider answers only the W form in
 * WSPGetSockOpt; ws2_32 answers getsockopt(SO_PROTOCOL_INFOA) itself, by asking the provider for
 * SO_PROTOCOL_INFOW and converting szProtocol to the ANSI code page. spiwire emulates the
 * provider, so its WSPGetSockOpt answers SO_PROTOCOL_INFOW (628 bytes) and gives WSAENOPROTOOPT for
 * SO_PROTOCOL_INFOA. A client that plays the ws2_32 part can convert with encodeProtocolInfoA
 * (the 372-byte WSAPROTOCOL_INFOA layout).
 *
 * Pure code: no I/O.
 */
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM, SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE } from './constants.js';

// ---------------------------------------------------------------- XP1_* service flags (winsock2.h)

export const XP1_CONNECTIONLESS = 0x00000001;
export const XP1_GUARANTEED_DELIVERY = 0x00000002;
export const XP1_GUARANTEED_ORDER = 0x00000004;
export const XP1_MESSAGE_ORIENTED = 0x00000008;
export const XP1_PSEUDO_STREAM = 0x00000010;
export const XP1_GRACEFUL_CLOSE = 0x00000020;
export const XP1_EXPEDITED_DATA = 0x00000040;
export const XP1_CONNECT_DATA = 0x00000080;
export const XP1_DISCONNECT_DATA = 0x00000100;
export const XP1_SUPPORT_BROADCAST = 0x00000200;
export const XP1_SUPPORT_MULTIPOINT = 0x00000400;
export const XP1_MULTIPOINT_CONTROL_PLANE = 0x00000800;
export const XP1_MULTIPOINT_DATA_PLANE = 0x00001000;
export const XP1_QOS_SUPPORTED = 0x00002000;
export const XP1_INTERRUPT = 0x00004000;
export const XP1_UNI_SEND = 0x00008000;
export const XP1_UNI_RECV = 0x00010000;
export const XP1_IFS_HANDLES = 0x00020000;
export const XP1_PARTIAL_MESSAGE = 0x00040000;
export const XP1_SAN_SUPPORT_SDP = 0x00080000;

// ---------------------------------------------------------------- PFL_* provider flags (winsock2.h)

export const PFL_MULTIPLE_PROTO_ENTRIES = 0x00000001;
export const PFL_RECOMMENDED_PROTO_ENTRY = 0x00000002;
export const PFL_HIDDEN = 0x00000004;
export const PFL_MATCHES_PROTOCOL_ZERO = 0x00000008;
export const PFL_NETWORKDIRECT_PROVIDER = 0x00000010;

// ---------------------------------------------------------------- other structure constants

/** ProtocolChain.ChainLen of a layered protocol (0) and of a base protocol (1). */
export const LAYERED_PROTOCOL = 0;
export const BASE_PROTOCOL = 1;
/** Length of ProtocolChain.ChainEntries. */
export const MAX_PROTOCOL_CHAIN = 7;
/** szProtocol holds at most WSAPROTOCOL_LEN characters and a NUL (WCHAR / CHAR [256]). */
export const WSAPROTOCOL_LEN = 255;
/** iNetworkByteOrder values. */
export const BIGENDIAN = 0x0000;
export const LITTLEENDIAN = 0x0001;
/** iSecurityScheme: no security. */
export const SECURITY_PROTOCOL_NONE = 0x0000;

/** sizeof(WSAPROTOCOL_INFOW) and sizeof(WSAPROTOCOL_INFOA) on Windows (x86 and x64: no pointers). */
export const WSAPROTOCOL_INFOW_SIZE = 628;
export const WSAPROTOCOL_INFOA_SIZE = 372;

/**
 * The GUID of the spiwire provider (ProviderId of every spiwire entry). Fixed for good: a random
 * version-4 GUID chosen once for spiwire, so that a rig can tell spiwire's entries from Windows'
 * MSAFD Tcpip ones ({E70F1AA0-AB8B-11CF-8CA3-00805F48A192}).
 */
export const SPIWIRE_PROVIDER_ID = '{CA7EF25E-4796-4B76-A8B1-BF7AA11017A8}';
/** dwCatalogEntryId of the entries is this plus 1 (TCP/IPv4) to 4 (UDP/IPv6). */
export const SPIWIRE_CATALOG_ENTRY_BASE = 7787000;

/** Service flags spiwire publishes: Windows' values without XP1_IFS_HANDLES. */
export const SPIWIRE_TCP_SERVICE_FLAGS = XP1_GUARANTEED_DELIVERY | XP1_GUARANTEED_ORDER | XP1_GRACEFUL_CLOSE | XP1_EXPEDITED_DATA; // 0x00066
export const SPIWIRE_UDP_SERVICE_FLAGS = XP1_CONNECTIONLESS | XP1_MESSAGE_ORIENTED | XP1_SUPPORT_BROADCAST | XP1_SUPPORT_MULTIPOINT; // 0x00609
/** dwMessageSize of UDP: 65535 - 60 (largest IPv4 header) - 8 (UDP header) = 65467. */
export const UDP_CATALOG_MESSAGE_SIZE = 0xffbb;

// ---------------------------------------------------------------- the structure

/** WSAPROTOCOLCHAIN: int ChainLen; DWORD ChainEntries[MAX_PROTOCOL_CHAIN]. */
export interface WSAPROTOCOLCHAIN {
  ChainLen: number;
  /** Exactly MAX_PROTOCOL_CHAIN (7) DWORDs. */
  ChainEntries: number[];
}

/**
 * WSAPROTOCOL_INFOW, field for field. DWORD fields are unsigned 32-bit, int fields signed 32-bit;
 * ProviderId is a GUID in registry form, "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}" (braces optional
 * on input, any case); szProtocol is at most WSAPROTOCOL_LEN (255) UTF-16 code units.
 */
export interface WSAPROTOCOL_INFOW {
  dwServiceFlags1: number;
  dwServiceFlags2: number;
  dwServiceFlags3: number;
  dwServiceFlags4: number;
  dwProviderFlags: number;
  ProviderId: string;
  dwCatalogEntryId: number;
  ProtocolChain: WSAPROTOCOLCHAIN;
  iVersion: number;
  iAddressFamily: number;
  iMaxSockAddr: number;
  iMinSockAddr: number;
  iSocketType: number;
  iProtocol: number;
  iProtocolMaxOffset: number;
  iNetworkByteOrder: number;
  iSecurityScheme: number;
  dwMessageSize: number;
  dwProviderReserved: number;
  szProtocol: string;
}

/*
 * Byte offsets in the C structure. Every member is 4-byte aligned (the GUID's alignment is that of
 * its first member, an unsigned long), so there is no padding anywhere:
 *
 *     0 dwServiceFlags1     4 dwServiceFlags2     8 dwServiceFlags3    12 dwServiceFlags4
 *    16 dwProviderFlags    20 ProviderId (16)    36 dwCatalogEntryId
 *    40 ProtocolChain.ChainLen                   44 ProtocolChain.ChainEntries[7] (28)
 *    72 iVersion           76 iAddressFamily     80 iMaxSockAddr       84 iMinSockAddr
 *    88 iSocketType        92 iProtocol          96 iProtocolMaxOffset 100 iNetworkByteOrder
 *   104 iSecurityScheme   108 dwMessageSize     112 dwProviderReserved
 *   116 szProtocol: WCHAR[256] = 512 bytes (W, total 628) or CHAR[256] = 256 bytes (A, total 372)
 */
const OFF_SERVICE_FLAGS1 = 0;
const OFF_PROVIDER_FLAGS = 16;
const OFF_PROVIDER_ID = 20;
const OFF_CATALOG_ENTRY_ID = 36;
const OFF_CHAIN_LEN = 40;
const OFF_CHAIN_ENTRIES = 44;
const OFF_VERSION = 72;
const OFF_MESSAGE_SIZE = 108;
const OFF_PROVIDER_RESERVED = 112;
const OFF_SZ_PROTOCOL = 116;

/** The int fields from iVersion to iSecurityScheme, in order, 4 bytes each from offset 72. */
const INT_FIELDS = ['iVersion', 'iAddressFamily', 'iMaxSockAddr', 'iMinSockAddr', 'iSocketType', 'iProtocol', 'iProtocolMaxOffset', 'iNetworkByteOrder', 'iSecurityScheme'] as const;
const SERVICE_FLAGS = ['dwServiceFlags1', 'dwServiceFlags2', 'dwServiceFlags3', 'dwServiceFlags4'] as const;

function u32(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be a DWORD (an integer from 0 to 0xFFFFFFFF), got ${String(v)}`);
  return v;
}

function i32(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`${name} must be an int (a signed 32-bit integer), got ${String(v)}`);
  return v;
}

const GUID_RE = /^\{?([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})\}?$/i;

/** Writes a GUID: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE, then Data4's 8 bytes in order. */
function writeGuid(dv: DataView, at: number, guid: string): void {
  const m = typeof guid === 'string' ? GUID_RE.exec(guid) : null;
  if (!m || guid.startsWith('{') !== guid.endsWith('}')) throw new RangeError(`ProviderId must be a GUID like {XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}, got ${String(guid)}`);
  dv.setUint32(at, parseInt(m[1]!, 16), true);
  dv.setUint16(at + 4, parseInt(m[2]!, 16), true);
  dv.setUint16(at + 6, parseInt(m[3]!, 16), true);
  const data4 = m[4]! + m[5]!;
  for (let i = 0; i < 8; i++) dv.setUint8(at + 8 + i, parseInt(data4.slice(2 * i, 2 * i + 2), 16));
}

function readGuid(dv: DataView, at: number): string {
  const hex = (n: number, width: number): string => n.toString(16).toUpperCase().padStart(width, '0');
  let data4 = '';
  for (let i = 0; i < 8; i++) data4 += hex(dv.getUint8(at + 8 + i), 2);
  return `{${hex(dv.getUint32(at, true), 8)}-${hex(dv.getUint16(at + 4, true), 4)}-${hex(dv.getUint16(at + 6, true), 4)}-${data4.slice(0, 4)}-${data4.slice(4)}}`;
}

/** Everything before szProtocol (116 bytes), shared by the W and A layouts. */
function writeHead(dv: DataView, info: WSAPROTOCOL_INFOW): void {
  SERVICE_FLAGS.forEach((name, i) => dv.setUint32(OFF_SERVICE_FLAGS1 + 4 * i, u32(name, info[name]), true));
  dv.setUint32(OFF_PROVIDER_FLAGS, u32('dwProviderFlags', info.dwProviderFlags), true);
  writeGuid(dv, OFF_PROVIDER_ID, info.ProviderId);
  dv.setUint32(OFF_CATALOG_ENTRY_ID, u32('dwCatalogEntryId', info.dwCatalogEntryId), true);
  const chain = info.ProtocolChain;
  if (!chain || typeof chain !== 'object') throw new RangeError('ProtocolChain must be an object { ChainLen, ChainEntries }');
  dv.setInt32(OFF_CHAIN_LEN, i32('ProtocolChain.ChainLen', chain.ChainLen), true);
  if (!Array.isArray(chain.ChainEntries) || chain.ChainEntries.length !== MAX_PROTOCOL_CHAIN) throw new RangeError(`ProtocolChain.ChainEntries must hold exactly ${MAX_PROTOCOL_CHAIN} DWORDs`);
  chain.ChainEntries.forEach((v, i) => dv.setUint32(OFF_CHAIN_ENTRIES + 4 * i, u32(`ProtocolChain.ChainEntries[${i}]`, v), true));
  INT_FIELDS.forEach((name, i) => dv.setInt32(OFF_VERSION + 4 * i, i32(name, info[name]), true));
  dv.setUint32(OFF_MESSAGE_SIZE, u32('dwMessageSize', info.dwMessageSize), true);
  dv.setUint32(OFF_PROVIDER_RESERVED, u32('dwProviderReserved', info.dwProviderReserved), true);
}

function checkName(s: unknown): string {
  if (typeof s !== 'string') throw new RangeError('szProtocol must be a string');
  if (s.length > WSAPROTOCOL_LEN) throw new RangeError(`szProtocol holds at most ${WSAPROTOCOL_LEN} characters and its NUL, got ${s.length}`);
  if (s.includes('\0')) throw new RangeError('szProtocol must not contain NUL: it ends the C string');
  return s;
}

/**
 * The 628 bytes of WSAPROTOCOL_INFOW as Windows lays it out: little-endian DWORDs and ints, the
 * GUID, the 32-byte WSAPROTOCOLCHAIN, and szProtocol as UTF-16LE, NUL-terminated and zero-filled
 * to 256 WCHARs. Throws RangeError for a value that does not fit its C field.
 */
export function encodeProtocolInfoW(info: WSAPROTOCOL_INFOW): Uint8Array {
  const b = new Uint8Array(WSAPROTOCOL_INFOW_SIZE);
  const dv = new DataView(b.buffer);
  writeHead(dv, info);
  const name = checkName(info.szProtocol);
  for (let i = 0; i < name.length; i++) dv.setUint16(OFF_SZ_PROTOCOL + 2 * i, name.charCodeAt(i), true);
  return b;
}

/**
 * The 372 bytes of WSAPROTOCOL_INFOA: the same head as the W form, then szProtocol as CHAR[256].
 * This is the conversion ws2_32 makes for getsockopt(SO_PROTOCOL_INFOA); characters outside ASCII
 * become '?', as the ANSI conversion's default character would (spiwire's names are ASCII).
 */
export function encodeProtocolInfoA(info: WSAPROTOCOL_INFOW): Uint8Array {
  const b = new Uint8Array(WSAPROTOCOL_INFOA_SIZE);
  const dv = new DataView(b.buffer);
  writeHead(dv, info);
  const name = checkName(info.szProtocol);
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    b[OFF_SZ_PROTOCOL + i] = c < 0x80 ? c : 0x3f;
  }
  return b;
}

/**
 * Reads one WSAPROTOCOL_INFOW from bytes at offset (WSCEnumProtocols writes them back to back, so
 * entry i is at offset i * WSAPROTOCOL_INFOW_SIZE). szProtocol is read up to its NUL (or all 256
 * WCHARs if there is none). Throws RangeError when fewer than 628 bytes are there.
 */
export function decodeProtocolInfoW(bytes: Uint8Array, offset = 0): WSAPROTOCOL_INFOW {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('decodeProtocolInfoW needs a Uint8Array');
  if (!Number.isInteger(offset) || offset < 0 || bytes.length - offset < WSAPROTOCOL_INFOW_SIZE) {
    throw new RangeError(`decodeProtocolInfoW needs ${WSAPROTOCOL_INFOW_SIZE} bytes at offset ${offset}, the buffer has ${bytes.length}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, WSAPROTOCOL_INFOW_SIZE);
  const units: number[] = [];
  for (let i = 0; i <= WSAPROTOCOL_LEN; i++) {
    const c = dv.getUint16(OFF_SZ_PROTOCOL + 2 * i, true);
    if (c === 0) break;
    units.push(c);
  }
  const int = (i: number): number => dv.getInt32(OFF_VERSION + 4 * i, true);
  return {
    dwServiceFlags1: dv.getUint32(0, true),
    dwServiceFlags2: dv.getUint32(4, true),
    dwServiceFlags3: dv.getUint32(8, true),
    dwServiceFlags4: dv.getUint32(12, true),
    dwProviderFlags: dv.getUint32(OFF_PROVIDER_FLAGS, true),
    ProviderId: readGuid(dv, OFF_PROVIDER_ID),
    dwCatalogEntryId: dv.getUint32(OFF_CATALOG_ENTRY_ID, true),
    ProtocolChain: {
      ChainLen: dv.getInt32(OFF_CHAIN_LEN, true),
      ChainEntries: Array.from({ length: MAX_PROTOCOL_CHAIN }, (_, i) => dv.getUint32(OFF_CHAIN_ENTRIES + 4 * i, true)),
    },
    iVersion: int(0),
    iAddressFamily: int(1),
    iMaxSockAddr: int(2),
    iMinSockAddr: int(3),
    iSocketType: int(4),
    iProtocol: int(5),
    iProtocolMaxOffset: int(6),
    iNetworkByteOrder: int(7),
    iSecurityScheme: int(8),
    dwMessageSize: dv.getUint32(OFF_MESSAGE_SIZE, true),
    dwProviderReserved: dv.getUint32(OFF_PROVIDER_RESERVED, true),
    szProtocol: String.fromCharCode(...units),
  };
}

// ---------------------------------------------------------------- the catalog

function entry(n: number, af: number, type: number, protocol: number, szProtocol: string): Readonly<WSAPROTOCOL_INFOW> {
  const tcp = protocol === IPPROTO_TCP;
  const addrSize = af === AF_INET6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE;
  const info: WSAPROTOCOL_INFOW = {
    dwServiceFlags1: tcp ? SPIWIRE_TCP_SERVICE_FLAGS : SPIWIRE_UDP_SERVICE_FLAGS,
    dwServiceFlags2: 0,
    dwServiceFlags3: 0,
    dwServiceFlags4: 0,
    // socket(af, type, 0) picks this entry, as it picks Windows' TCP/IP and UDP/IP entries.
    dwProviderFlags: PFL_MATCHES_PROTOCOL_ZERO,
    ProviderId: SPIWIRE_PROVIDER_ID,
    dwCatalogEntryId: SPIWIRE_CATALOG_ENTRY_BASE + n,
    ProtocolChain: Object.freeze({ ChainLen: BASE_PROTOCOL, ChainEntries: Object.freeze([0, 0, 0, 0, 0, 0, 0]) as number[] }),
    iVersion: 2,
    iAddressFamily: af,
    iMaxSockAddr: addrSize,
    iMinSockAddr: addrSize,
    iSocketType: type,
    iProtocol: protocol,
    iProtocolMaxOffset: 0,
    iNetworkByteOrder: BIGENDIAN,
    iSecurityScheme: SECURITY_PROTOCOL_NONE,
    dwMessageSize: tcp ? 0 : UDP_CATALOG_MESSAGE_SIZE,
    dwProviderReserved: 0,
    szProtocol,
  };
  return Object.freeze(info);
}

/**
 * The four entries spiwire publishes, in this order (WSCEnumProtocols returns them in it):
 * TCP/IPv4, TCP/IPv6, UDP/IPv4, UDP/IPv6. Frozen: copy an entry before changing it.
 */
export const PROTOCOL_CATALOG: readonly Readonly<WSAPROTOCOL_INFOW>[] = Object.freeze([
  entry(1, AF_INET, SOCK_STREAM, IPPROTO_TCP, 'spiwire TCP/IP'),
  entry(2, AF_INET6, SOCK_STREAM, IPPROTO_TCP, 'spiwire TCP/IPv6'),
  entry(3, AF_INET, SOCK_DGRAM, IPPROTO_UDP, 'spiwire UDP/IP'),
  entry(4, AF_INET6, SOCK_DGRAM, IPPROTO_UDP, 'spiwire UDP/IPv6'),
]);

/**
 * The catalog entry for a socket's (af, type, protocol), or undefined when spiwire has none.
 * Protocol 0 matches the entry of the type's default protocol (PFL_MATCHES_PROTOCOL_ZERO).
 */
export function catalogEntryFor(af: number, type: number, protocol: number): Readonly<WSAPROTOCOL_INFOW> | undefined {
  return PROTOCOL_CATALOG.find((e) => e.iAddressFamily === af && e.iSocketType === type && (e.iProtocol === protocol || (protocol === 0 && (e.dwProviderFlags & PFL_MATCHES_PROTOCOL_ZERO) !== 0)));
}
