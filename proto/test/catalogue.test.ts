/**
 * The catalogues and the written specification stay in step with the code: every WSA and
 * protocol error is exported, unique and documented; every method, notification and field is in
 * proto/README.md; proto/schema.json is what buildJsonSchema() gives; and the Winsock constants
 * have their Windows values.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import * as P from '../src/index.js';
import * as WsaModule from '../src/wsa-errors.js';
import * as ProtocolModule from '../src/protocol-errors.js';
import * as Limits from '../src/limits.js';

const README_URL = new URL('../../README.md', import.meta.url);
const SCHEMA_URL = new URL('../../schema.json', import.meta.url);

const readme = readFileSync(README_URL, 'utf8');
const lines = readme.split('\n');
const tableRows = lines.filter((l) => l.trimStart().startsWith('|'));

const exported = P as unknown as Record<string, unknown>;

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** True when token appears in line as a whole word or number (so 1004 does not match 10040). */
function hasToken(line: string, token: string | number): boolean {
  return new RegExp(`(?<![\\w.-])${escape(String(token))}(?![\\w.])`).test(line);
}

/** The README lines under the heading whose text (backticks removed) is exactly title. */
function section(title: string): string | null {
  const start = lines.findIndex((l) => /^#{2,6} /.test(l) && l.replace(/^#+ /, '').replace(/`/g, '').trim() === title);
  if (start < 0) return null;
  const level = /^#+/.exec(lines[start]!)![0].length;
  let end = start + 1;
  while (end < lines.length && !(/^#+ /.test(lines[end]!) && /^#+/.exec(lines[end]!)![0].length <= level)) end++;
  return lines.slice(start + 1, end).join('\n');
}

// ---------------------------------------------------------------- WSA errors

t.test('every WSA error in the catalogue is exported with the same value; names and codes are unique', async (t) => {
  t.ok(P.WSA_ERRORS.length >= 30);
  const names = new Set<string>();
  const codes = new Set<number>();
  for (const e of P.WSA_ERRORS) {
    t.equal(exported[e.name], e.code, `${e.name} is exported as ${e.code}`);
    t.notOk(names.has(e.name), `${e.name} appears once`);
    t.notOk(codes.has(e.code), `${e.code} appears once`);
    names.add(e.name);
    codes.add(e.code);
    t.ok(e.meaning.trim().length > 10, `${e.name} has a meaning`);
    t.equal(P.wsaError(e.code), e, `wsaError(${e.code}) finds it`);
    t.equal(P.wsaErrorName(e.code), `${e.name} (${e.code})`);
  }
  t.equal(P.wsaError(12345), undefined);
  t.equal(P.wsaErrorName(0), 'NO_ERROR (0)');
  t.equal(P.wsaErrorName(12345), 'unknown (12345)');
});

t.test('every number wsa-errors.ts exports is in the catalogue', async (t) => {
  const catalogued = new Set(P.WSA_ERRORS.map((e) => e.name));
  for (const [name, v] of Object.entries(WsaModule)) {
    if (typeof v === 'number') t.ok(catalogued.has(name), `${name} (${v}) is catalogued`);
  }
});

/** Transcribed from ../shared/reference/winsock.md ("Return values and error codes"). */
const WINDOWS_WSA_CODES: Record<string, number> = {
  WSAEINTR: 10004,
  WSAEACCES: 10013,
  WSAEFAULT: 10014,
  WSAEINVAL: 10022,
  WSAEWOULDBLOCK: 10035,
  WSAEINPROGRESS: 10036,
  WSAEALREADY: 10037,
  WSAENOTSOCK: 10038,
  WSAEDESTADDRREQ: 10039,
  WSAEMSGSIZE: 10040,
  WSAENOPROTOOPT: 10042,
  WSAEOPNOTSUPP: 10045,
  WSAEADDRINUSE: 10048,
  WSAEADDRNOTAVAIL: 10049,
  WSAENETDOWN: 10050,
  WSAENETUNREACH: 10051,
  WSAENETRESET: 10052,
  WSAECONNABORTED: 10053,
  WSAECONNRESET: 10054,
  WSAENOBUFS: 10055,
  WSAEISCONN: 10056,
  WSAENOTCONN: 10057,
  WSAESHUTDOWN: 10058,
  WSAETIMEDOUT: 10060,
  WSAECONNREFUSED: 10061,
  WSAEHOSTUNREACH: 10065,
  WSA_OPERATION_ABORTED: 995,
  WSA_IO_INCOMPLETE: 996,
  WSA_IO_PENDING: 997,
  WSA_INVALID_HANDLE: 6,
  WSA_INVALID_PARAMETER: 87,
  // Not in the reference table; the Windows SDK (winsock2.h) values.
  WSAEMFILE: 10024,
  WSAEPROTOTYPE: 10041,
  WSAEPROTONOSUPPORT: 10043,
  WSAESOCKTNOSUPPORT: 10044,
  WSAEAFNOSUPPORT: 10047,
};

t.test('WSA codes have their Windows values', async (t) => {
  for (const [name, code] of Object.entries(WINDOWS_WSA_CODES)) {
    t.equal(exported[name], code, `${name} = ${code}`);
    t.equal(P.wsaError(code)?.name, name, `${name} is in the catalogue`);
  }
});

t.test('every WSA error is documented in proto/README.md: name and code in one table row', async (t) => {
  for (const e of P.WSA_ERRORS) {
    t.ok(
      tableRows.some((l) => hasToken(l, e.name) && hasToken(l, e.code)),
      `README has a table row with ${e.name} and ${e.code}`,
    );
  }
});

// ---------------------------------------------------------------- protocol errors

t.test('every protocol error is exported with the same value; names and codes are unique', async (t) => {
  const names = new Set<string>();
  const codes = new Set<number>();
  for (const e of P.PROTOCOL_ERRORS) {
    t.equal(exported[e.name], e.code, `${e.name} is exported as ${e.code}`);
    t.notOk(names.has(e.name), `${e.name} appears once`);
    t.notOk(codes.has(e.code), `${e.code} appears once`);
    names.add(e.name);
    codes.add(e.code);
    t.ok(e.meaning.trim().length > 10, `${e.name} has a meaning`);
    t.ok(Number.isInteger(e.code) && e.code < 0, `${e.name} is a negative integer`);
    t.notOk(P.WSA_ERRORS.some((w) => w.code === e.code), `${e.name} is not also a WSA code`);
  }
  for (const [name, v] of Object.entries(ProtocolModule)) {
    if (typeof v === 'number') t.ok(names.has(name), `${name} (${v}) is catalogued`);
  }
});

t.test('protocol error codes: the JSON-RPC 2.0 ones, and the rest in the server-error range', async (t) => {
  t.equal(P.PARSE_ERROR, -32700);
  t.equal(P.INVALID_REQUEST, -32600);
  t.equal(P.METHOD_NOT_FOUND, -32601);
  t.equal(P.INVALID_PARAMS, -32602);
  t.equal(P.INTERNAL_ERROR, -32603);
  const standard = new Set([-32700, -32600, -32601, -32602, -32603]);
  for (const e of P.PROTOCOL_ERRORS) {
    if (!standard.has(e.code)) t.ok(e.code >= -32099 && e.code <= -32000, `${e.name} (${e.code}) is in -32099..-32000`);
  }
});

t.test('every protocol error is documented in proto/README.md: name and code in one table row', async (t) => {
  for (const e of P.PROTOCOL_ERRORS) {
    t.ok(
      tableRows.some((l) => hasToken(l, e.name) && hasToken(l, e.code)),
      `README has a table row with ${e.name} and ${e.code}`,
    );
  }
});

// ---------------------------------------------------------------- methods and notifications

t.test('every method has a README section naming each parameter and result field', async (t) => {
  for (const [name, m] of Object.entries(P.METHODS)) {
    const text = section(name);
    t.ok(text !== null, `README has a heading "${name}"`);
    if (text === null) continue;
    for (const field of Object.keys(m.params)) t.ok(text.includes(`\`${field}\``), `${name}: parameter \`${field}\` is documented`);
    for (const field of ['ret', 'errno', ...Object.keys(m.result)]) t.ok(text.includes(`\`${field}\``), `${name}: result field \`${field}\` is documented`);
  }
});

t.test('every notification has a README section naming each parameter', async (t) => {
  for (const [name, n] of Object.entries(P.NOTIFICATIONS)) {
    const text = section(name);
    t.ok(text !== null, `README has a heading "${name}"`);
    if (text === null) continue;
    for (const field of Object.keys(n.params)) t.ok(text.includes(`\`${field}\``), `${name}: parameter \`${field}\` is documented`);
  }
  const welcome = section('spiwire.welcome') ?? '';
  for (const k of ['maxFrameBytes', 'maxPendingRequests', 'maxSockets', 'defaultSndBuf', 'defaultRcvBuf']) {
    t.ok(welcome.includes(`\`${k}\``), `spiwire.welcome: limits.${k} is documented`);
  }
});

t.test('the limits are documented with their values', async (t) => {
  for (const [name, v] of Object.entries(Limits)) {
    if (typeof v !== 'number' && typeof v !== 'string') continue;
    t.ok(
      lines.some((l) => hasToken(l, name) && hasToken(l, v)),
      `README has a line with ${name} and ${v}`,
    );
  }
});

// ---------------------------------------------------------------- schema

t.test('proto/schema.json is the output of buildJsonSchema()', async (t) => {
  const onDisk = readFileSync(SCHEMA_URL, 'utf8');
  const fresh = JSON.stringify(P.buildJsonSchema(), null, 2) + '\n';
  t.ok(
    onDisk === fresh,
    'proto/schema.json is out of date with proto/src/messages.ts: regenerate it with `npm run schema` from the repository root ' +
      '(it runs tsc -b, then node scripts/write-schema.mjs, which writes JSON.stringify(buildJsonSchema(), null, 2) + "\\n")',
  );
  const schema = JSON.parse(onDisk) as { methods: Record<string, unknown>; notifications: Record<string, unknown> };
  t.same(Object.keys(schema.methods), Object.keys(P.METHODS), 'one schema entry per method');
  t.same(Object.keys(schema.notifications), Object.keys(P.NOTIFICATIONS), 'one schema entry per notification');
  t.ok(readme.includes('schema.json'), 'the README points to schema.json');
});

/** The schema loaded into a validator as the README tells a client to: the whole document, parts by pointer. */
function validatorFor(pointer: string): ValidateFunction {
  const ajv = new Ajv2020({ strictSchema: false, allErrors: true });
  ajv.addSchema(JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as object);
  const v = ajv.getSchema(`urn:spiwire:protocol:v1#${pointer}`);
  if (!v) throw new Error(`schema.json has nothing at ${pointer}`);
  return v;
}

t.test('schema.json is as strict as the text: byte strings, sockaddr family, whole messages', async (t) => {
  t.match(readme.replace(/\s+/g, ' '), /refer to a part by a JSON pointer from the document's `\$id`, for example `urn:spiwire:protocol:v1#\/notifications\/spiwire\.completion\/message`/, 'the README says how to use the schema');
  const completion = validatorFor('/notifications/spiwire.completion/message');
  const msg = (data: unknown): unknown => ({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 256, error: 0, bytes: 2, flags: 0, data } });
  // Section 3: offset and length are integers from 0 to 4294967295.
  t.ok(completion(msg({ $b: [0, 2] })), '{"$b":[0,2]}');
  t.ok(completion(msg({ $b: [4294967295, 0] })), 'offset 4294967295');
  for (const bad of [[0, 4294967296], [-1, 2], [0, 1.5], [0], [0, 2, 3], ['0', 2]]) t.notOk(completion(msg({ $b: bad })), `{"$b":${JSON.stringify(bad)}} is refused`);
  // Section 4: the schema's base64 is exactly what the codec takes.
  for (const b64 of ['', 'aGk=', 'YWJj', 'YQ==', '+/+/', 'a', 'aGk', 'aG=k', 'a===', 'aGk= ', 'a-_b', 'YQ=\n']) {
    const codec = P.decodeText(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { data: { $base64: b64 } } }));
    t.equal(completion(msg({ $base64: b64 })), codec.ok, `"${JSON.stringify(b64)}": the schema ${codec.ok ? 'accepts' : 'refuses'} it, as the codec does`);
  }
  // Section 7: family is an integer 0..65535.
  const connect = validatorFor('/methods/WSPConnect/params');
  const name = (family: unknown): unknown => ({ s: 256, name: { family, address: '127.0.0.1', port: 1 }, namelen: 16 });
  for (const f of [0, 2, 23, 65535]) t.ok(connect(name(f)), `family ${f} passes`);
  for (const f of [-1, 65536, 2.5, '2']) t.notOk(connect(name(f)), `family ${JSON.stringify(f)} is refused`);
  // Every notification and every reply has a whole-message schema; so has an error response.
  for (const n of Object.keys(P.NOTIFICATIONS)) validatorFor(`/notifications/${n}/message`);
  for (const m of Object.keys(P.METHODS)) validatorFor(`/methods/${m}/response`);
  const welcome = validatorFor('/notifications/spiwire.welcome/message');
  const limits = { maxFrameBytes: 1, maxPendingRequests: 1, maxSockets: 1, defaultSndBuf: 0, defaultRcvBuf: 0 };
  t.ok(welcome({ jsonrpc: '2.0', method: 'spiwire.welcome', params: { session: 'x', version: '0', protocol: 1, limits } }), 'a welcome');
  t.notOk(welcome({ jsonrpc: '2.0', method: 'spiwire.welcome', params: { session: 'x', version: '0', protocol: 1, limits: { ...limits, maxSockets: -1 } } }), 'limits are typed');
  const events = validatorFor('/notifications/spiwire.networkEvents/message');
  t.ok(events({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 256, events: 32, errors: { FD_CLOSE: 10054 } } }), 'network events');
  t.notOk(events({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 256, events: 32, errors: { FD_BOGUS: 1 } } }), 'errors names FD_* events only');
  const error = validatorFor('/errorResponse');
  t.ok(error({ jsonrpc: '2.0', id: null, error: { code: P.DUPLICATE_ID, message: 'in use', data: { id: 7 } } }), 'an error response');
  t.notOk(error({ jsonrpc: '2.0', id: 1, error: { code: -1, message: 'x' } }), 'only catalogued codes');
});

// ---------------------------------------------------------------- constants

/**
 * Windows values, transcribed from ../shared/reference/winsock.md ("Constants" and the notes
 * under it). INVALID_SOCKET is ~0: all 32 bits set, which JavaScript's ~0 writes as -1.
 */
const WINDOWS_CONSTANTS: Record<string, number> = {
  SOCKET_ERROR: -1,
  INVALID_SOCKET: -1,
  AF_INET: 2,
  AF_INET6: 23,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  IPPROTO_TCP: 6,
  IPPROTO_UDP: 17,
  SOL_SOCKET: 0xffff,
  MSG_OOB: 0x1,
  MSG_PEEK: 0x2,
  MSG_DONTROUTE: 0x4,
  MSG_PARTIAL: 0x8000,
  WSA_FLAG_OVERLAPPED: 0x01,
  SO_DONTROUTE: 0x10,
  SO_BROADCAST: 0x20,
  SO_OOBINLINE: 0x100,
  SO_SNDBUF: 0x1001,
  SO_RCVBUF: 0x1002,
  SO_ERROR: 0x1007,
  SO_TYPE: 0x1008,
  SO_MAX_MSG_SIZE: 0x2003,
  SO_PROTOCOL_INFOA: 0x2004,
  SO_PROTOCOL_INFOW: 0x2005,
  SD_RECEIVE: 0,
  SD_SEND: 1,
  SD_BOTH: 2,
  FIONBIO: 0x8004667e,
  FIONREAD: 0x4004667f,
  SIOCATMARK: 0x40047307,
  SIO_FLUSH: 0x28000004,
  FD_READ: 0x01,
  FD_WRITE: 0x02,
  FD_OOB: 0x04,
  FD_ACCEPT: 0x08,
  FD_CONNECT: 0x10,
  FD_CLOSE: 0x20,
  SOCKADDR_IN_SIZE: 16,
  SOCKADDR_IN6_SIZE: 28,
  WSS_OPERATION_IN_PROGRESS: 0x103,
  WAIT_IO_COMPLETION: 0xc0,
  WSA_WAIT_IO_COMPLETION: 0xc0,
  WSA_WAIT_EVENT_0: 0,
  WSA_WAIT_TIMEOUT: 0x102,
  WSA_INFINITE: 0xffffffff,
  UDP_MAX_MSG_SIZE_V4: 65507,
};

/** Not in the reference; the values of the Windows SDK headers (winsock2.h, ws2def.h, ws2spi.h, winbase.h). */
const WINDOWS_SDK_CONSTANTS: Record<string, number> = {
  AF_UNSPEC: 0,
  SOCK_RAW: 3,
  IPPROTO_IP: 0,
  IPPROTO_IPV6: 41,
  MSG_WAITALL: 0x8,
  SO_DEBUG: 0x1,
  SO_ACCEPTCONN: 0x2,
  SO_REUSEADDR: 0x4,
  SO_KEEPALIVE: 0x8,
  SO_LINGER: 0x80,
  TCP_NODELAY: 0x1,
  WSA_WAIT_FAILED: 0xffffffff,
  INFINITE: 0xffffffff,
  WSA_MAXIMUM_WAIT_EVENTS: 64,
  CF_ACCEPT: 0,
  CF_REJECT: 1,
  CF_DEFER: 2,
  FD_QOS: 0x40,
  FD_GROUP_QOS: 0x80,
  FD_ROUTING_INTERFACE_CHANGE: 0x100,
  FD_ADDRESS_LIST_CHANGE: 0x200,
  FD_ALL_EVENTS: 0x3ff,
  TRUE: 1,
  FALSE: 0,
};

t.test('Winsock constants have their Windows values (reference table)', async (t) => {
  t.ok(Object.keys(WINDOWS_CONSTANTS).length >= 30);
  for (const [name, v] of Object.entries(WINDOWS_CONSTANTS)) t.equal(exported[name], v, `${name} = 0x${(v >>> 0).toString(16)} (${v})`);
  t.equal((P.INVALID_SOCKET as number) >>> 0, 0xffffffff, 'INVALID_SOCKET has all 32 bits set');
  t.ok(P.FIONBIO > 0 && P.FIONREAD > 0, 'ioctl codes are unsigned (DWORD) values');
});

t.test('Winsock constants have their Windows values (SDK headers)', async (t) => {
  for (const [name, v] of Object.entries(WINDOWS_SDK_CONSTANTS)) t.equal(exported[name], v, `${name} = ${v}`);
});
