/**
 * Request checks (proto/src/messages.ts): the JSON-RPC envelope, the request id, and the params
 * of every method in METHODS, field by field, from the method table itself.
 */
import t, { type Test } from 'tap';
import {
  INVALID_PARAMS,
  INVALID_REQUEST,
  MAX_BUFFER_COUNT,
  METHOD_SPECS as METHODS,
  ProtocolError,
  checkRequestEnvelope,
  requestIdOf,
  validateParams,
  isMethodName,
  type FieldSpec,
  type FieldType,
} from '../src/index.js';

// ---------------------------------------------------------------- helpers

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const many = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));

/** A valid value of each field type. */
const GOOD: Record<FieldType, unknown> = {
  handle: 256,
  int: -5,
  u32: 7,
  bool: true,
  string: 'x',
  bytes: bytes(1, 2, 3),
  'bytes[]': [bytes(1), Buffer.from('two'), new Uint8Array(0)],
  'u32[]': [0, 10, 4294967295],
  timeval: { sec: 1, usec: 250000 },
  sockaddr: { family: 2, address: '127.0.0.1', port: 80 },
  overlapped: { op: 1, thread: 0x1004 },
  completion: { error: 0, bytes: 10, flags: 0 },
  limits: { maxFrameBytes: 1, maxPendingRequests: 1, maxSockets: 1, defaultSndBuf: 1, defaultRcvBuf: 1 },
  eventErrors: { FD_CLOSE: 10054 },
  faultRule: { match: { socket: 256 }, action: { type: 'short', max: 10 } },
  faultRules: [],
  resumeOffer: { token: 't', graceMs: 1000, daemonId: 'd' },
  requestId: 12,
};

/** More valid values of each type, the edges included. */
const ALSO_GOOD: Record<FieldType, unknown[]> = {
  handle: [0, 4, 4294967295],
  int: [0, -2147483648, 2147483647],
  u32: [0, 4294967295],
  bool: [false],
  string: [''],
  bytes: [new Uint8Array(0), Buffer.from('buffer'), new Uint8Array(new ArrayBuffer(8), 2, 3)],
  'bytes[]': [[], many(MAX_BUFFER_COUNT, () => new Uint8Array(0))],
  'u32[]': [[], many(MAX_BUFFER_COUNT, (i) => i)],
  timeval: [
    { sec: 0, usec: 0 },
    { sec: -2147483648, usec: 2147483647 }, // negative fields are WSAEINVAL, the daemon's business
  ],
  sockaddr: [
    { family: 23, address: '::1', port: 0, flowinfo: 0, scopeId: 0 },
    { family: 23, address: 'fe80::1', port: 65535, flowinfo: 4294967295, scopeId: 4294967295 },
    { family: 2, address: 'x'.repeat(64), port: 1 }, // syntax is the daemon's business; 64 characters fit
    { family: 0, address: '', port: 0 },
    { family: 65535, address: '1.2.3.4', port: 9 },
  ],
  overlapped: [
    { op: 0, thread: 0 },
    { op: 4294967295, thread: 4294967295 },
  ],
  completion: [{ error: 10054, bytes: 4294967295, flags: 0x8000 }],
  limits: [{}],
  eventErrors: [{}],
  faultRule: [
    { id: 'r-1', match: {}, action: { type: 'error', code: 10054 }, times: 1, seed: 0, notify: true },
    { match: { tag: 'a.b:c', functions: ['WSPRecv', 'WSPConnect'], every: 3, afterBytes: 0, probability: 1 }, action: { type: 'error', code: 10050 } },
    { match: { local: { port: 0 }, remote: { address: '::1', port: 65535 }, nth: 4294967295, probability: 0 }, action: { type: 'delay', ms: 600000 } },
  ],
  faultRules: [[{ id: 'x', match: {}, action: { type: 'block', ms: 1 }, seed: 1, hits: 0 }]],
  resumeOffer: [{ token: 't', graceMs: 1, daemonId: 'd', url: 'ws://127.0.0.1:1/ws' }],
  requestId: [0, -3, 'call-1', ''],
};

/** Wrong values of each type: each must be refused with the field named. */
const BAD: Record<FieldType, unknown[]> = {
  handle: [-1, 4294967296, 1.5, '256', true, [], {}, bytes(1), NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER],
  int: [2147483648, -2147483649, 0.5, '1', false, [1], {}, bytes(), NaN, Infinity],
  u32: [-1, 4294967296, 2.5, '0', true, [0], {}, NaN, -Infinity],
  bool: [0, 1, 'true', [], {}],
  string: [0, true, [], {}, bytes(0x61)],
  bytes: ['aGk=', [1, 2], { $b: [0, 1] }, { $base64: 'aGk=' }, 0, true, {}, [bytes(1)]],
  'bytes[]': [bytes(1), 'x', {}, [bytes(1), 'x'], [[1, 2]], [{ $b: [0, 1] }], [null], many(MAX_BUFFER_COUNT + 1, () => new Uint8Array(0)), 5],
  'u32[]': [[-1], [1.5], ['1'], [4294967296], [null], [[1]], 7, '1,2', {}, many(MAX_BUFFER_COUNT + 1, () => 1)],
  timeval: [0, 'x', [], true], // shapes within: below, with their sub-field names
  sockaddr: [], // shapes are tested separately, with their sub-field names
  overlapped: [],
  completion: [1, [], { error: 0, bytes: 1 }, { error: -1, bytes: 0, flags: 0 }, { error: 0, bytes: 0, flags: 0, x: 1 }],
  limits: [1, 'x', [], true],
  eventErrors: [1, 'x', [], true],
  faultRule: [1, 'x', [], true, bytes(1)], // shapes within a rule: proto/test/faults.test.ts
  faultRules: [1, 'x', {}, true],
  resumeOffer: [1, 'x', [], true],
  requestId: [1.5, true, null, [], {}, NaN],
};

/** validateParams for a method named at run time (every name here is a method of the table). */
function validate(method: string, params: Record<string, unknown>): void {
  if (!isMethodName(method)) throw new Error(`no method ${method}`);
  validateParams(method, params);
}

function spec(method: string): (typeof METHODS)[string] {
  const s = METHODS[method];
  if (!s) throw new Error(`no method ${method}`);
  return s;
}

/** A valid params object for a method, built from its table. */
function validParams(method: string): Record<string, unknown> {
  const p: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(spec(method).params)) p[k] = structuredClone(GOOD[f.type]);
  return p;
}

function fieldOfError(fn: () => void): { code: number; field: unknown; message: string } | 'passed' | string {
  try {
    fn();
    return 'passed';
  } catch (err) {
    if (!(err instanceof ProtocolError)) return `threw ${String(err)}`;
    return { code: err.code, field: err.data?.['field'], message: err.message };
  }
}

function expectInvalid(t: Test, method: string, params: Record<string, unknown>, field: string, what: string): void {
  const r = fieldOfError(() => validate(method, params));
  if (typeof r === 'string') {
    t.fail(`${method}: ${what}: ${r}`);
    return;
  }
  t.same({ code: r.code, field: r.field }, { code: INVALID_PARAMS, field }, `${method}: ${what}: INVALID_PARAMS naming ${field}`);
  t.match(r.message, `params.${field}`, `${method}: ${what}: the message names params.${field}`);
}

function expectValid(t: Test, method: string, params: Record<string, unknown>, what: string): void {
  const r = fieldOfError(() => validate(method, params));
  t.equal(r, 'passed', `${method}: ${what}: accepted${typeof r === 'object' ? ` (got ${r.message})` : ''}`);
}

function show(v: unknown): string {
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (Array.isArray(v)) return v.length > 4 ? `array(${v.length})` : `[${v.map(show).join(',')}]`;
  if (typeof v === 'number' || v === undefined) return String(v);
  return JSON.stringify(v);
}

// ---------------------------------------------------------------- validateParams, from the table

t.test('the method table is well formed', async (t) => {
  const types = Object.keys(GOOD);
  t.ok(Object.keys(METHODS).length >= 16, 'the methods are there');
  for (const [name, m] of Object.entries(METHODS)) {
    t.ok(m.summary.length > 0, `${name}: summary`);
    for (const [k, f] of [...Object.entries(m.params), ...Object.entries(m.result)] as Array<[string, FieldSpec]>) {
      t.ok(types.includes(f.type), `${name}.${k}: known type ${f.type}`);
      t.ok(f.doc.length > 0, `${name}.${k}: documented`);
    }
    t.notOk('ret' in m.result || 'errno' in m.result, `${name}: ret and errno are implicit in every result`);
  }
});

for (const method of Object.keys(METHODS)) {
  t.test(`${method}: params`, async (t) => {
    const fields = Object.entries(spec(method).params);
    expectValid(t, method, validParams(method), 'a valid params object');

    for (const [k, f] of fields) {
      for (const v of ALSO_GOOD[f.type]) expectValid(t, method, { ...validParams(method), [k]: v }, `${k} = ${show(v)}`);

      const without = validParams(method);
      delete without[k];
      if (f.optional) expectValid(t, method, without, `${k} absent (optional)`);
      else expectInvalid(t, method, without, k, `${k} missing`);

      if (f.nullable) expectValid(t, method, { ...validParams(method), [k]: null }, `${k} null (nullable)`);
      else expectInvalid(t, method, { ...validParams(method), [k]: null }, k, `${k} null`);

      for (const v of BAD[f.type]) expectInvalid(t, method, { ...validParams(method), [k]: v }, k, `${k} = ${show(v)}`);
    }

    for (const extra of ['extra', 'S', 'ret', 'errno', 'id', 'params', '']) {
      expectInvalid(t, method, { ...validParams(method), [extra]: 1 }, extra, `unknown field ${JSON.stringify(extra)}`);
    }
    // The unknown field is named even when it comes first and a required field is also missing.
    expectInvalid(t, method, { bogus: 1 }, 'bogus', 'only an unknown field');
  });
}

/** Bad sockaddr values and the field each one must name, relative to the parameter. */
const BAD_SOCKADDRS: Array<[unknown, string]> = [
  [[2, '127.0.0.1', 80], ''],
  ['127.0.0.1:80', ''],
  [80, ''],
  [bytes(2, 0, 0, 80), '.0'],
  [{ address: '127.0.0.1', port: 80 }, '.family'],
  [{ family: '2', address: '127.0.0.1', port: 80 }, '.family'],
  [{ family: -1, address: '127.0.0.1', port: 80 }, '.family'],
  [{ family: 65536, address: '127.0.0.1', port: 80 }, '.family'],
  [{ family: 2.5, address: '127.0.0.1', port: 80 }, '.family'],
  [{ family: 2, port: 80 }, '.address'],
  [{ family: 2, address: 2130706433, port: 80 }, '.address'],
  [{ family: 2, address: null, port: 80 }, '.address'],
  [{ family: 2, address: 'x'.repeat(65), port: 80 }, '.address'],
  [{ family: 2, address: '127.0.0.1' }, '.port'],
  [{ family: 2, address: '127.0.0.1', port: -1 }, '.port'],
  [{ family: 2, address: '127.0.0.1', port: 65536 }, '.port'],
  [{ family: 2, address: '127.0.0.1', port: '80' }, '.port'],
  [{ family: 2, address: '127.0.0.1', port: 80.5 }, '.port'],
  [{ family: 23, address: '::1', port: 80, flowinfo: -1 }, '.flowinfo'],
  [{ family: 23, address: '::1', port: 80, flowinfo: 4294967296 }, '.flowinfo'],
  [{ family: 23, address: '::1', port: 80, flowinfo: null }, '.flowinfo'],
  [{ family: 23, address: '::1', port: 80, scopeId: '1' }, '.scopeId'],
  [{ family: 23, address: '::1', port: 80, scopeId: 4294967296 }, '.scopeId'],
  [{ family: 2, address: '127.0.0.1', port: 80, zone: 1 }, '.zone'],
  [{ family: 2, address: '127.0.0.1', port: 80, sin_port: 80 }, '.sin_port'],
];

/** Bad overlapped values and the field each one must name, relative to the parameter. */
const BAD_OVERLAPPEDS: Array<[unknown, string]> = [
  [[1, 2], ''],
  [1, ''],
  ['1', ''],
  [true, ''],
  [{}, '.op'],
  [{ thread: 1 }, '.op'],
  [{ op: 1 }, '.thread'],
  [{ op: -1, thread: 1 }, '.op'],
  [{ op: 4294967296, thread: 1 }, '.op'],
  [{ op: '1', thread: 1 }, '.op'],
  [{ op: 1.5, thread: 1 }, '.op'],
  [{ op: null, thread: 1 }, '.op'],
  [{ op: 1, thread: -1 }, '.thread'],
  [{ op: 1, thread: 4294967296 }, '.thread'],
  [{ op: 1, thread: { ThreadHandle: 1 } }, '.thread'],
  [{ op: 1, thread: 1, hEvent: 0 }, '.hEvent'],
  [{ op: 1, thread: 1, Internal: 0 }, '.Internal'],
];

/** Bad timeval values and the field each one must name, relative to the parameter. */
const BAD_TIMEVALS: Array<[unknown, string]> = [
  [{}, '.sec'],
  [{ usec: 0 }, '.sec'],
  [{ sec: 1 }, '.usec'],
  [{ sec: 1, usec: 0.5 }, '.usec'],
  [{ sec: 2147483648, usec: 0 }, '.sec'],
  [{ sec: 0, usec: -2147483649 }, '.usec'],
  [{ sec: '1', usec: 0 }, '.sec'],
  [{ sec: 0, usec: null }, '.usec'],
  [{ sec: 0, usec: 0, nsec: 0 }, '.nsec'],
  [{ tv_sec: 0, tv_usec: 0 }, '.tv_sec'],
  [bytes(1), '.0'],
];

const methodsWith = (type: FieldType): Array<[string, string]> =>
  Object.entries(METHODS).flatMap(([m, s]) => Object.entries(s.params).filter(([, f]) => f.type === type).map(([k]) => [m, k] as [string, string]));

t.test('bad sockaddr shapes are refused, naming the sub-field', async (t) => {
  const where = methodsWith('sockaddr');
  t.same(
    where.map(([m, k]) => `${m}.${k}`).sort(),
    ['WSPBind.name', 'WSPConnect.name', 'WSPSendTo.to'],
    'the methods that take a sockaddr',
  );
  for (const [method, key] of where) {
    for (const [v, sub] of BAD_SOCKADDRS) expectInvalid(t, method, { ...validParams(method), [key]: v }, `${key}${sub}`, `${key} = ${show(v)}`);
  }
});

t.test('bad overlapped shapes are refused, naming the sub-field', async (t) => {
  const where = methodsWith('overlapped');
  t.same(
    where.map(([m, k]) => `${m}.${k}`).sort(),
    ['WSPIoctl.overlapped', 'WSPRecv.overlapped', 'WSPRecvFrom.overlapped', 'WSPSend.overlapped', 'WSPSendTo.overlapped'],
    'the methods that can be overlapped',
  );
  for (const [method, key] of where) {
    for (const [v, sub] of BAD_OVERLAPPEDS) expectInvalid(t, method, { ...validParams(method), [key]: v }, `${key}${sub}`, `${key} = ${show(v)}`);
  }
});

t.test('bad timeval shapes are refused, naming the sub-field', async (t) => {
  const where = methodsWith('timeval');
  t.same(
    where.map(([m, k]) => `${m}.${k}`),
    ['WSPSelect.timeout'],
    'the methods that take a timeval',
  );
  for (const [method, key] of where) {
    for (const [v, sub] of BAD_TIMEVALS) expectInvalid(t, method, { ...validParams(method), [key]: v }, `${key}${sub}`, `${key} = ${show(v)}`);
  }
});

// ---------------------------------------------------------------- validateParams, by hand

/** Calls as the SDK makes them, written out, so a change to the table shows up here too. */
const REAL_CALLS: Record<string, Record<string, unknown>> = {
  'spiwire.sendData': { stream: 1, data: Buffer.alloc(100) },
  WSPSocket: { af: 23, type: 2, protocol: 17, g: 0, flags: 1 },
  WSPBind: { s: 256, name: { family: 2, address: '0.0.0.0', port: 0 }, namelen: 16 },
  WSPListen: { s: 256, backlog: 5 },
  WSPAccept: { s: 256 },
  WSPConnect: { s: 260, name: { family: 23, address: '::1', port: 7, flowinfo: 0, scopeId: 0 }, namelen: 28 },
  WSPSend: { s: 260, buffers: [bytes(1, 2), bytes(3)], flags: 0 },
  WSPSendTo: { s: 264, buffers: [bytes(1)], flags: 0, to: null, tolen: 0, overlapped: null },
  WSPRecv: { s: 260, lengths: [4096, 10], flags: 2, overlapped: { op: 3, thread: 4100 } },
  WSPRecvFrom: { s: 264, lengths: [65507], flags: 0 },
  WSPShutdown: { s: 260, how: 1 },
  WSPCloseSocket: { s: 260 },
  WSPGetSockName: { s: 256, namelen: 16 },
  WSPGetPeerName: { s: 256, namelen: 28 },
  WSPIoctl: { s: 256, code: 0x8004667e, input: bytes(1, 0, 0, 0), outputLength: 0 },
  WSPSetSockOpt: { s: 256, level: 0xffff, optname: 0x1001, optval: bytes(0, 16, 0, 0), optlen: 4 },
  WSPGetSockOpt: { s: 256, level: 0xffff, optname: 0x1008, optlen: 4 },
  'spiwire.threadExit': { thread: 4100 },
  'spiwire.setSocketTag': { s: 260, tag: 'upstream' },
  'spiwire.faults.add': { rule: { match: { socket: 260, functions: ['WSPSend'], nth: 2 }, action: { type: 'error', code: 10054 }, notify: true } },
  'spiwire.faults.remove': { id: 'f1' },
  'spiwire.faults.list': {},
  'spiwire.ack': { received: 412 },
  'spiwire.resume': { session: '1725ff90-ece0-48f7-aa30-a7bd56f1b5d8', token: 'kq1Yb0yT4bq7nV3m1Z8o0f3kJ2n4d5s6t7u8v9w0x1y', received: 17, daemonId: '0b6c3e52-7f1a-4d3e-9a57-2a8f5b1c9d40' },
  WSPEventSelect: { s: 260, events: 0x23 },
  WSPSelect: { readfds: [260, 264], writefds: null, exceptfds: [260], timeout: { sec: 1, usec: 250000 } },
};

t.test('real calls, written out, pass', async (t) => {
  for (const [method, params] of Object.entries(REAL_CALLS)) {
    t.ok(method in METHODS, `${method} is a method`);
    if (method in METHODS) expectValid(t, method, params, 'as the SDK sends it');
  }
  for (const method of Object.keys(METHODS)) t.ok(method in REAL_CALLS, `${method} has a written-out call in this test`);
});

t.test('nullable and optional fields: SendTo to null, SetSockOpt optval null, overlapped absent or null', async (t) => {
  expectValid(t, 'WSPSendTo', { s: 1, buffers: [], flags: 0, to: null, tolen: 0 }, 'to null');
  expectInvalid(t, 'WSPSendTo', { s: 1, buffers: [], flags: 0, tolen: 0 }, 'to', 'to absent (nullable, not optional)');
  expectValid(t, 'WSPSetSockOpt', { s: 1, level: 0xffff, optname: 0x1001, optval: null, optlen: 0 }, 'optval null');
  expectInvalid(t, 'WSPSetSockOpt', { s: 1, level: 0xffff, optname: 0x1001, optlen: 0 }, 'optval', 'optval absent');
  for (const m of ['WSPSend', 'WSPSendTo', 'WSPRecv', 'WSPRecvFrom', 'WSPIoctl']) {
    const p = validParams(m);
    delete p['overlapped'];
    expectValid(t, m, p, 'overlapped absent');
    expectValid(t, m, { ...p, overlapped: null }, 'overlapped null');
  }
});

t.test('the first bad field is the one named', async (t) => {
  expectInvalid(t, 'WSPBind', { s: -1, name: null, namelen: 'x' }, 's', 'three bad fields, table order');
  expectInvalid(t, 'WSPBind', { s: 1, name: { family: 2, address: 'a', port: 1 }, namelen: 'x', zzz: 1 }, 'zzz', 'unknown fields are reported first');
});

// A params object from JSON.parse can carry keys that are also names on Object.prototype.
t.test('params named like Object.prototype members are unknown fields too', async (t) => {
  for (const key of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'isPrototypeOf']) {
    const params = JSON.parse(`{"s":256,${JSON.stringify(key)}:1}`) as Record<string, unknown>;
    t.ok(Object.keys(params).includes(key), `${key} is an own key of the parsed params`);
    expectInvalid(t, 'WSPCloseSocket', params, key, `unknown field ${key}`);
  }
});

// ---------------------------------------------------------------- checkRequestEnvelope

function envelopeError(msg: unknown): number | 'passed' | string {
  try {
    checkRequestEnvelope(msg);
    return 'passed';
  } catch (err) {
    return err instanceof ProtocolError ? err.code : `threw ${String(err)}`;
  }
}

t.test('checkRequestEnvelope accepts requests and notifications', async (t) => {
  for (const id of [0, 1, -1, 2147483647, 4294967296, 'a', '', 'ü-ñ', '1']) {
    const msg = { jsonrpc: '2.0', id, method: 'WSPAccept', params: { s: 1 } };
    t.same(checkRequestEnvelope(msg), msg, `id ${JSON.stringify(id)}: the same message`);
  }
  const note = { jsonrpc: '2.0', method: 'WSPCloseSocket', params: { s: 1 } };
  t.same(checkRequestEnvelope(note), note, 'a notification (no id)');
  t.notOk('id' in checkRequestEnvelope(note), 'no id is added to a notification');
  const noParams: Record<string, unknown> = { jsonrpc: '2.0', id: 3, method: 'm' };
  t.same(checkRequestEnvelope(noParams), { jsonrpc: '2.0', id: 3, method: 'm', params: {} }, 'absent params become {}');
  t.equal(envelopeError({ jsonrpc: '2.0', id: 1, method: 'NoSuchMethod', params: {} }), 'passed', 'an unknown method is not an envelope error');
  t.equal(envelopeError({ jsonrpc: '2.0', method: '', params: {} }), 'passed', 'an empty method name is a string');
});

t.test('checkRequestEnvelope refuses what is not a JSON-RPC 2.0 request (INVALID_REQUEST)', async (t) => {
  const base = { jsonrpc: '2.0', id: 1, method: 'WSPAccept', params: { s: 1 } };
  const cases: Array<[string, unknown]> = [
    ['null', null],
    ['a number', 42],
    ['a string', '{"jsonrpc":"2.0"}'],
    ['a boolean', true],
    ['a batch array', [base]],
    ['an empty batch', []],
    ['a byte string', bytes(1)],
    ['jsonrpc missing', { id: 1, method: 'm', params: {} }],
    ['jsonrpc "1.0"', { ...base, jsonrpc: '1.0' }],
    ['jsonrpc 2.0 as a number', { ...base, jsonrpc: 2.0 }],
    ['jsonrpc "2"', { ...base, jsonrpc: '2' }],
    ['method missing', { jsonrpc: '2.0', id: 1, params: {} }],
    ['method a number', { ...base, method: 7 }],
    ['method null', { ...base, method: null }],
    ['method an array', { ...base, method: ['WSPAccept'] }],
    ['a response, not a request', { jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0 } }],
    ['id null', { ...base, id: null }],
    ['id fractional', { ...base, id: 1.5 }],
    ['id boolean', { ...base, id: true }],
    ['id object', { ...base, id: { n: 1 } }],
    ['id array', { ...base, id: [1] }],
    ['id NaN', { ...base, id: NaN }],
    ['id Infinity', { ...base, id: Infinity }],
    ['params null', { ...base, params: null }],
    ['params an array (by-position)', { ...base, params: [1] }],
    ['params a string', { ...base, params: 's' }],
    ['params a number', { ...base, params: 0 }],
    ['params true', { ...base, params: true }],
  ];
  for (const [what, msg] of cases) t.equal(envelopeError(msg), INVALID_REQUEST, what);
});

// A {"$b":[...]} in place of params decodes to a Uint8Array, which is an object but not by-name params.
t.test('params that decoded to a byte string are not by-name params (INVALID_REQUEST)', async (t) => {
  t.equal(envelopeError({ jsonrpc: '2.0', id: 1, method: 'WSPAccept', params: bytes(1, 2, 3) }), INVALID_REQUEST, 'a 3-byte string');
  t.equal(envelopeError({ jsonrpc: '2.0', id: 1, method: 'WSPAccept', params: new Uint8Array(0) }), INVALID_REQUEST, 'an empty byte string');
});

// ---------------------------------------------------------------- requestIdOf

t.test('requestIdOf: integer and string ids, null for the rest', async (t) => {
  const cases: Array<[unknown, unknown]> = [
    [{ jsonrpc: '2.0', id: 5, method: 'm' }, 5],
    [{ id: 0 }, 0],
    [{ id: -7 }, -7],
    [{ id: 'abc' }, 'abc'],
    [{ id: '' }, ''],
    [{ jsonrpc: '1.0', id: 9, method: 3 }, 9], // the envelope is wrong, the id still usable
    [{ id: 1.5 }, null],
    [{ id: null }, null],
    [{ id: true }, null],
    [{ id: { n: 1 } }, null],
    [{ id: [1] }, null],
    [{ id: NaN }, null],
    [{ id: Infinity }, null],
    [{ jsonrpc: '2.0', method: 'm' }, null],
    [{}, null],
    [null, null],
    [undefined, null],
    [42, null],
    ['{"id":1}', null],
    [[{ id: 1 }], null],
  ];
  for (const [msg, id] of cases) t.equal(requestIdOf(msg), id, `${show(msg)} -> ${show(id)}`);
});
