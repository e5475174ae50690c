/**
 * The daemon survives bad input and vanishing clients.
 *
 * A storm of bounded, seeded garbage goes to one session of a daemon running as its own process
 * (the CLI), while a second session keeps sending real bytes over a real TCP connection. Every
 * answer must be a documented JSON-RPC error or a normal result, the process must stay up and
 * the second session must be unaffected. Then: a client that disappears mid-call, and handles
 * used across sessions.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as P from '@spiwire/proto';
import { closedPort, connectedSocket, connectOutcome, connectTo, daemon, ipv4, pattern, rawRecord, roundTrip, sendBytes, session, startCli, tcpPeer, tcpSocket, udpSocket, until, within, type Msg, type RawSession } from './helpers/raw-client.js';

async function healthz(port: number): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return (await res.json()) as Record<string, unknown>;
}

// ---- the storm ----

/** xorshift32: the same seed gives the same storm, so a failure can be replayed. */
class Rng {
  private x: number;
  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
  }
  u32(): number {
    this.x ^= this.x << 13;
    this.x >>>= 0;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    this.x >>>= 0;
    return this.x;
  }
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

const DOCUMENTED_ERROR_CODES = new Set([P.PARSE_ERROR, P.INVALID_REQUEST, P.METHOD_NOT_FOUND, P.INVALID_PARAMS, P.INTERNAL_ERROR, P.BAD_FRAME, P.DUPLICATE_ID, P.TOO_MANY_REQUESTS, P.RESUME_REFUSED]);
const NOTIFICATION_NAMES = new Set(Object.keys(P.NOTIFICATIONS));

/** Why a message from the daemon is not a documented error, a normal result or a notification; null when it is fine. */
function badReply(m: Msg): string | null {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return 'not an object';
  if (m.jsonrpc !== '2.0') return 'jsonrpc is not "2.0"';
  if (typeof m.method === 'string') {
    if (!NOTIFICATION_NAMES.has(m.method)) return `undocumented notification ${m.method}`;
    if (m.params === null || typeof m.params !== 'object') return 'notification without params';
    if (m.method === 'spiwire.completion') {
      const err = m.params['error'];
      if (typeof err !== 'number' || (err !== 0 && !P.wsaError(err))) return `completion with undocumented error ${String(err)}`;
    }
    return null;
  }
  if (!('id' in m)) return 'a response without id';
  if (!(m.id === null || typeof m.id === 'string' || (typeof m.id === 'number' && Number.isInteger(m.id)))) return `bad id ${JSON.stringify(m.id)}`;
  const hasResult = m.result !== undefined;
  const hasError = m.error !== undefined;
  if (hasResult === hasError) return 'needs exactly one of result and error';
  if (hasError) {
    const e = m.error!;
    if (typeof e !== 'object' || e === null) return 'error is not an object';
    if (typeof e['code'] !== 'number' || !DOCUMENTED_ERROR_CODES.has(e['code'])) return `undocumented error code ${JSON.stringify(e['code'])}`;
    if (typeof e['message'] !== 'string') return 'error without message';
    if (e['data'] !== undefined && (typeof e['data'] !== 'object' || e['data'] === null)) return 'error data is not an object';
    return null;
  }
  const r = m.result!;
  if (typeof r !== 'object' || r === null) return 'result is not an object';
  if (typeof r['ret'] !== 'number' || !Number.isInteger(r['ret'])) return 'result.ret is not an integer';
  if (typeof r['errno'] !== 'number') return 'result.errno is not a number';
  if (r['errno'] !== 0 && !P.wsaError(r['errno'])) return `result.errno ${r['errno']} is not in the WSA catalogue`;
  return null;
}

const OBJECT_PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'propertyIsEnumerable', 'toLocaleString', '__defineGetter__'];

interface StormTargets {
  handles: number[];
  closedPort: number;
}

/** One storm frame: [payload, isBinary, a short label for the failure report]. */
type Frame = [Buffer | string, boolean, string];

class Storm {
  private n = 0;
  constructor(
    private readonly rng: Rng,
    private readonly tg: StormTargets,
  ) {}

  private id(): unknown {
    const r = this.rng;
    const k = r.int(20);
    if (k === 0) return undefined; // a notification
    if (k === 1) return r.pick([1.5, -0.5, {}, [], true, null, 'dup', 7]);
    if (k === 2) return 'dup'; // reused: duplicate while a call with this id blocks
    return k % 2 ? `s${this.n++}` : 100000 + this.n++;
  }

  private wrong(): unknown {
    const r = this.rng;
    return r.pick<unknown>([null, true, false, 'str', '', -1, 1.5, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, [], {}, [1, 2], [null], { $b: 'x' }, 'x'.repeat(r.int(70000)), { a: { b: { c: [] } } }]);
  }

  private value(type: P.FieldType): unknown {
    const r = this.rng;
    switch (type) {
      case 'handle':
        return r.chance(0.8) ? r.pick(this.tg.handles) : r.pick([0, 1, 4, 0xffffffff, r.u32()]);
      case 'int':
        return r.pick([0, 1, 2, -1, 5, 6, 16, 17, 23, 28, 0x7fffffff, -0x80000000, P.SOL_SOCKET, r.u32() | 0]);
      case 'u32':
        return r.pick([0, 1, 2, 4, 8, 0x8000, 0xffffffff, P.FIONBIO, P.FIONREAD, P.SIOCATMARK, P.SIO_FLUSH, P.SO_SNDBUF, P.SO_RCVBUF, P.SO_TYPE, r.u32()]);
      case 'bool':
        return r.chance(0.5);
      case 'string':
        return r.pick(['', 'x', 'é', 'a'.repeat(300)]);
      case 'bytes':
        return r.chance(0.3) ? new Uint8Array([1, 0, 0, 0]) : r.bytes(r.int(64));
      case 'bytes[]':
        if (r.chance(0.03)) return Array.from({ length: P.MAX_BUFFER_COUNT + 1 }, () => new Uint8Array(0));
        return Array.from({ length: r.int(4) }, () => r.bytes(r.int(64)));
      case 'u32[]':
        if (r.chance(0.03)) return Array.from({ length: P.MAX_BUFFER_COUNT + 1 }, () => 1);
        return Array.from({ length: r.int(4) }, () => r.pick([0, 1, 16, 65536, 0xffffffff]));
      case 'sockaddr':
        // Loopback or not an address at all: nothing in the storm may reach beyond this machine.
        return {
          family: r.pick([P.AF_INET, P.AF_INET6, 0, 999]),
          address: r.pick(['127.0.0.1', '::1', '', 'not-an-address', '127.0.0.1%x', '::1%1']),
          port: r.pick([0, this.tg.closedPort]),
        };
      case 'overlapped':
        return r.pick([null, { op: r.int(8), thread: r.int(4) }, { op: r.u32(), thread: 1 }]);
      case 'resumeOffer':
        return {};
    }
  }

  /** A request for a real method, its params right, missing, mistyped, extra or huge. */
  private fuzzedRequest(): Record<string, unknown> {
    const r = this.rng;
    const method = r.pick(Object.keys(P.METHODS));
    const spec = P.METHOD_SPECS[method]!;
    const params: Record<string, unknown> = {};
    for (const [k, f] of Object.entries(spec.params)) {
      if (r.chance(f.optional ? 0.5 : 0.08)) continue; // missing
      params[k] = r.chance(0.15) ? this.wrong() : this.value(f.type);
    }
    if (r.chance(0.05)) params[r.pick(['extra', 'S', 'buffer', 'namelen2'])] = 1;
    const msg: Record<string, unknown> = { jsonrpc: '2.0', method, params };
    const id = this.id();
    if (id !== undefined) msg['id'] = id;
    return msg;
  }

  /** A well-formed request on a method without addresses: the base for byte mutations. */
  private baseRequest(): Record<string, unknown> {
    const r = this.rng;
    const s = r.pick(this.tg.handles);
    const reqs: Array<[string, Record<string, unknown>]> = [
      ['WSPSend', { s, buffers: [r.bytes(r.int(32))], flags: 0 }],
      ['WSPRecv', { s, lengths: [16], flags: 0, overlapped: { op: r.int(8), thread: 1 } }],
      ['WSPGetSockName', { s, namelen: 16 }],
      ['WSPGetPeerName', { s, namelen: 28 }],
      ['WSPIoctl', { s, code: P.FIONREAD, input: new Uint8Array(0), outputLength: 4 }],
      ['WSPSetSockOpt', { s, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: new Uint8Array([0, 16, 0, 0]), optlen: 4 }],
      ['WSPGetSockOpt', { s, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }],
      ['WSPListen', { s, backlog: 5 }],
      ['spiwire.threadExit', { thread: 3 }],
      ['WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 }],
    ];
    const [method, params] = r.pick(reqs);
    return { jsonrpc: '2.0', id: `m${this.n++}`, method, params };
  }

  private mutate(frame: Uint8Array): Buffer {
    const r = this.rng;
    const b = Buffer.from(frame);
    switch (r.int(6)) {
      case 0: {
        for (let i = 0, k = 1 + r.int(4); i < k; i++) b[r.int(b.length)] = r.u32() & 0xff;
        return b;
      }
      case 1:
        return b.subarray(0, r.int(b.length)); // truncated
      case 2:
        return Buffer.concat([b, r.bytes(1 + r.int(16))]); // trailing garbage
      case 3: {
        const at = r.chance(0.5) ? 0 : Math.max(0, b.length - 4 - r.int(8));
        b.writeUInt32LE(r.pick([0, 1, 0xffffffff, 0x7fffffff, r.u32(), b.length]), Math.min(at, b.length - 4));
        return b;
      }
      case 4: {
        const at = r.int(b.length);
        return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)), b.subarray(at)]);
      }
      default:
        return Buffer.concat([b, b]); // the same request twice: a duplicate id in one frame
    }
  }

  private hugeLengths(): Buffer {
    const r = this.rng;
    const ok = '{"jsonrpc":"2.0","id":"h","method":"WSPGetSockName","params":{"s":1,"namelen":16}}';
    switch (r.int(9)) {
      case 0:
        return rawRecord(ok, new Uint8Array(0), 0xffffffff);
      case 1:
        return rawRecord(ok, new Uint8Array(0), P.MAX_HEADER_BYTES + 1);
      case 2:
        return rawRecord(ok, new Uint8Array(0), 0);
      case 3:
        return rawRecord(ok, new Uint8Array(0), undefined, 0xffffffff);
      case 4:
        return rawRecord(ok, new Uint8Array(4), undefined, 64 * 1024 * 1024 + 1);
      case 5:
        return rawRecord('{"jsonrpc":"2.0","id":"b","method":"WSPSend","params":{"s":1,"buffers":[{"$b":[0,4294967295]}],"flags":0}}', new Uint8Array(8));
      case 6:
        return rawRecord(`{"jsonrpc":"2.0","id":"b2","method":"WSPSend","params":{"s":1,"buffers":[{"$b":${r.pick(['[-1,2]', '[1.5,1]', '"x"', '[0]', '[0,1,2]', '[4294967296,0]', 'null'])}}],"flags":0}}`, new Uint8Array(8));
      case 7: {
        // One record too many.
        const one = rawRecord('{}');
        return Buffer.concat(Array.from({ length: P.MAX_RECORDS_PER_FRAME + 1 }, () => one));
      }
      default:
        // JSON numbers that do not fit: Infinity, -0, exponents.
        return rawRecord(`{"jsonrpc":"2.0","id":${r.pick(['1e400', '-0', '1e2', '9007199254740993', '"x"'])},"method":"WSPGetSockName","params":{"s":${r.pick(['1e400', '-1e400', '4294967296', '-0', '1e-7', '4.0'])},"namelen":16}}`);
    }
  }

  private textFrame(): string {
    const r = this.rng;
    switch (r.int(8)) {
      case 0:
        return r.bytes(r.int(200)).toString('latin1'); // garbage characters
      case 1: {
        const s = P.encodeText(this.fuzzedRequest());
        return s.slice(0, r.int(s.length)); // truncated JSON
      }
      case 2:
        return r.pick(['', ' ', 'null', '1', '"str"', '[]', '[{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":{}}]', '{}', 'true', '{"jsonrpc":"1.0","id":1,"method":"x"}', '{"jsonrpc":"2.0","id":1}', '{"jsonrpc":"2.0","method":7}', '{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":[]}', '{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":"x"}']);
      case 3:
        return `${'['.repeat(10 + r.int(40))}1${']'.repeat(10 + r.int(40))}`; // deep nesting
      case 4:
        return `{"jsonrpc":"2.0","id":"b64","method":"WSPSend","params":{"s":1,"buffers":[{"$base64":${r.pick(['"@@@@"', '"abc"', '5', 'null', '"===="', '"QQ=="'])}}],"flags":0}}`;
      case 5:
        return P.encodeText({ jsonrpc: '2.0', id: `t${this.n++}`, method: r.pick(OBJECT_PROTOTYPE_NAMES), params: r.chance(0.5) ? {} : { a: 1 } });
      default:
        return P.encodeText(this.fuzzedRequest());
    }
  }

  next(): Frame {
    const r = this.rng;
    switch (r.int(8)) {
      case 0:
        return [r.bytes(r.int(600)), true, 'random bytes'];
      case 1:
        return [this.mutate(P.encodeFrame(this.baseRequest())), true, 'mutated frame'];
      case 2: {
        const method = r.chance(0.5) ? r.pick([...OBJECT_PROTOTYPE_NAMES, 'spiwire.welcome', 'spiwire.completion', 'wspsend', 'WSPSend ', '', 'WSPEventSelect', 'x'.repeat(5000)]) : r.bytes(1 + r.int(12)).toString('hex');
        const params = r.chance(0.5) ? {} : { s: 1, anything: [1, 2, 3] };
        return [Buffer.from(P.encodeFrame({ jsonrpc: '2.0', id: `u${this.n++}`, method, params })), true, `unknown method ${method.slice(0, 30)}`];
      }
      case 3:
      case 4: {
        const b = new P.FrameBuilder();
        for (let i = 0, k = 1 + (r.chance(0.2) ? r.int(5) : 0); i < k; i++) b.add(this.fuzzedRequest());
        return [Buffer.from(b.finish()), true, 'fuzzed params'];
      }
      case 5:
        return [this.hugeLengths(), true, 'huge lengths'];
      default:
        return [this.textFrame(), false, 'text frame'];
    }
  }
}

t.test('a storm of bad input: documented errors only, the daemon stays up, another session keeps working', async (t) => {
  const SEED = 0x5eed1234;
  const FRAMES = 3000;
  const BATCH = 100;
  t.comment(`storm seed 0x${SEED.toString(16)}, ${FRAMES} frames`);
  // Only loopback destinations: even a fuzzed call cannot reach beyond this machine.
  const d = await startCli(t, ['--allow', '127.0.0.0/8,[::1]']);

  // Session B and its peer, set up before the storm.
  const peer = await tcpPeer(t);
  const b = await session(t, d.url);
  const { h: hb, conn } = await connectedSocket(b, peer);

  // Session A: a few sockets of its own so that fuzzed calls reach real code paths.
  const a = await session(t, d.url);
  const sink = await tcpPeer(t);
  const aTcp = await tcpSocket(a);
  await connectTo(a, aTcp, sink.port);
  const aUdp = await udpSocket(a);
  t.equal((await a.call('WSPBind', { s: aUdp, name: ipv4(0), namelen: 16 }))['ret'], 0, 'A binds its UDP socket');
  const aIdle = await tcpSocket(a);
  const aOv = await tcpSocket(a, P.WSA_FLAG_OVERLAPPED);
  const storm = new Storm(new Rng(SEED), { handles: [aTcp, aUdp, aIdle, aOv, hb], closedPort: await closedPort() });

  const expected: Buffer[] = [];
  const labels = new Map<string, number>();
  const started = Date.now();
  let sent = 0;
  let bSends = 0;
  for (let batch = 0; batch * BATCH < FRAMES && Date.now() - started < 25000; batch++) {
    for (let i = 0; i < BATCH && sent < FRAMES; i++, sent++) {
      const [payload, binary, label] = storm.next();
      labels.set(label.split(' ').slice(0, 2).join(' '), (labels.get(label.split(' ').slice(0, 2).join(' ')) ?? 0) + 1);
      if (!a.isOpen) break;
      a.ws.send(payload, { binary });
    }
    if (!a.isOpen) break;
    // Everything before the sentinel has been read once its answer arrives (frames are handled in order).
    const sentinel = a.request('WSPGetSockName', { s: 1, namelen: 16 }, 10000);
    const ans = await sentinel.response.catch((err: Error) => ({ error: { message: err.message } }) as Msg);
    if (!ans.result) {
      t.fail(`batch ${batch}: the sentinel was not answered: ${JSON.stringify(ans.error)}`);
      break;
    }
    // B works throughout: real bytes over a real TCP connection.
    const chunk = pattern(1000 + batch * 37, batch + 1);
    const r = await sendBytes(b, hb, chunk);
    if (r['ret'] !== 0 || r['bytesSent'] !== chunk.length) {
      t.fail(`batch ${batch}: session B's WSPSend failed: ${JSON.stringify(r)}`);
      break;
    }
    expected.push(chunk);
    bSends++;
  }
  const elapsed = Date.now() - started;
  t.comment(`sent ${sent} frames in ${elapsed} ms: ${[...labels].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  t.equal(sent, FRAMES, 'every storm frame was sent');
  t.ok(elapsed < 25000, `the storm finished in ${elapsed} ms`);
  t.ok(a.isOpen, 'session A is still open: bad input is answered, not punished with a disconnect');

  // Every reply is a documented error, a normal result or a documented notification.
  t.same(a.undecodable, [], 'every frame from the daemon decodes');
  const problems = new Map<string, { count: number; example: string }>();
  let errors = 0;
  let results = 0;
  for (const m of a.messages) {
    if (m.error) errors++;
    else if (m.result) results++;
    const why = badReply(m);
    if (!why) continue;
    const p = problems.get(why) ?? { count: 0, example: JSON.stringify(m).slice(0, 300) };
    p.count++;
    problems.set(why, p);
  }
  t.comment(`session A received ${a.messages.length} messages: ${errors} errors, ${results} results`);
  t.ok(errors > FRAMES / 2, 'most of the storm was answered with protocol errors');
  t.ok(results > 0, 'some fuzzed calls were valid and got SPI results');
  const codes = new Set(a.messages.filter((m) => m.error).map((m) => m.error!['code']));
  // DUPLICATE_ID needs an unanswered call with the same id, which random frames rarely leave: a test below provokes it.
  for (const c of [P.PARSE_ERROR, P.INVALID_REQUEST, P.METHOD_NOT_FOUND, P.INVALID_PARAMS, P.BAD_FRAME]) t.ok(codes.has(c), `the storm drew error ${c}`);
  t.same(Object.fromEntries(problems), {}, 'no reply is outside the documented set');

  // The process is up, healthy, and B's bytes arrived exactly.
  t.equal(d.proc.exitCode, null, 'the daemon process is still running');
  t.equal(d.proc.signalCode, null, 'and was not killed by a signal');
  const h = await healthz(d.port);
  t.equal(h['status'], 'ok', '/healthz is ok');
  t.equal(h['sessions'], 2, 'both sessions are still there');
  const want = Buffer.concat(expected);
  t.ok(bSends > 0, `session B sent ${bSends} chunks during the storm`);
  const got = await conn.waitFor(want.length);
  t.equal(got.length, want.length, 'the peer received as many bytes as B sent');
  t.ok(got.equals(want), 'the peer received exactly B\'s bytes, in order');
  const fatal = d.lines().filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 60);
  t.same(fatal, [], 'no fatal log line');
  const failed = d.lines().filter((l) => l['msg'] === 'method failed');
  if (failed.length) t.comment(`${failed.length} "method failed" log lines (INTERNAL_ERROR), e.g. ${JSON.stringify(failed[0]).slice(0, 300)}`);
});

t.test('method names that are Object.prototype members are METHOD_NOT_FOUND (-32601)', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  for (const method of OBJECT_PROTOTYPE_NAMES) {
    for (const params of [{}, { a: 1 }]) {
      const binary = s.request(method, params);
      const m = await binary.response;
      t.equal(m.error?.['code'], P.METHOD_NOT_FOUND, `binary ${method} ${JSON.stringify(params)}: -32601`, { got: m });
      const id = `text-${method}-${Object.keys(params).length}`;
      s.ws.send(P.encodeText({ jsonrpc: '2.0', id, method, params }));
      const tm = await s.wait((x) => x.id === id);
      t.equal(tm.error?.['code'], P.METHOD_NOT_FOUND, `text ${method} ${JSON.stringify(params)}: -32601`, { got: tm });
    }
  }
  t.ok(s.isOpen, 'the session stays open');
});

t.test('params named after Object.prototype members are INVALID_PARAMS like any unknown param', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const plain = await s.request('WSPGetSockName', { s: 4, namelen: 16, bogus: 1 }).response;
  t.equal(plain.error?.['code'], P.INVALID_PARAMS, 'an unknown param is -32602');
  for (const extra of ['toString', 'constructor', 'hasOwnProperty', 'valueOf']) {
    const m = await s.request('WSPGetSockName', { s: 4, namelen: 16, [extra]: 1 }).response;
    t.equal(m.error?.['code'], P.INVALID_PARAMS, `params.${extra} is -32602`, { got: m });
  }
});

t.test('protocol violations below JSON-RPC close only the offending connection', async (t) => {
  const d = await daemon(t);
  const good = await session(t, d.url);
  const hg = await udpSocket(good);

  // Invalid UTF-8 in a text frame: the WebSocket layer closes with 1007.
  const bad = await session(t, d.url);
  bad.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
  const closed = await within(bad.closed, 5000, null);
  t.equal(closed?.code, 1007, 'invalid UTF-8 text closes that session with 1007');

  // Not HTTP at all on the daemon's port.
  const raw = net.connect({ host: '127.0.0.1', port: d.port });
  raw.on('error', () => undefined);
  const rawAnswer = await new Promise<string>((resolve) => {
    let got = '';
    const timer = setTimeout(() => {
      raw.destroy();
      resolve(got);
    }, 3000);
    raw.on('data', (c: Buffer) => (got += c.toString('latin1')));
    raw.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    raw.on('connect', () => raw.write(Buffer.concat([pattern(512, 9), Buffer.from('\r\n\r\n')])));
  });
  t.ok(rawAnswer === '' || /^HTTP\/1\.1 4\d\d /.test(rawAnswer), `garbage instead of HTTP is refused or dropped (${JSON.stringify(rawAnswer.split('\r\n')[0])})`);

  const r = await good.call('WSPGetSockOpt', { s: hg, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'the other session is untouched');
  const h = await healthz(d.port);
  t.equal(h['sessions'], 1, 'only the good session remains');
});

// ---- vanishing clients ----

function waitUntil(cond: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<boolean> {
  return until(cond, timeoutMs, 25);
}

t.test('a client that vanishes mid-call: its sockets close, other sessions keep working, /healthz forgets it', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const w = await session(t, d.url);
  const hw = await udpSocket(w);

  const v = await session(t, d.url);
  const { h: hv, conn } = await connectedSocket(v, peer);
  const listener = await tcpSocket(v);
  t.equal((await v.call('WSPBind', { s: listener, name: ipv4(0), namelen: 16 }))['ret'], 0, 'V binds its listener');
  t.equal((await v.call('WSPListen', { s: listener, backlog: 4 }))['ret'], 0, 'V listens');
  const name = (await v.call('WSPGetSockName', { s: listener, namelen: 16 }))['name'] as P.SockAddr;
  t.ok(name.port > 0, `the listener is on port ${name.port}`);
  t.equal(await connectOutcome(name.port), 'connected', 'the listener accepts before the client vanishes');
  const { h: ovSock, conn: conn2 } = await connectedSocket(v, peer, P.WSA_FLAG_OVERLAPPED);

  // Calls in flight: a blocking WSPRecv (the peer sends nothing), a blocking WSPAccept (after the
  // one queued connection is taken) and a pending overlapped WSPRecv.
  const first = await v.call('WSPAccept', { s: listener });
  t.not(first['ret'], P.INVALID_SOCKET, 'the queued connection was accepted');
  const recv = v.request('WSPRecv', { s: hv, lengths: [100], flags: 0 });
  const accept = v.request('WSPAccept', { s: listener });
  const ov = await v.call('WSPRecv', { s: ovSock, lengths: [100], flags: 0, overlapped: { op: 1, thread: 1 } });
  t.equal(ov['errno'], P.WSA_IO_PENDING, 'the overlapped receive is pending');
  // An answer sent by now would be ahead of the round trip's.
  await roundTrip(v);
  t.notOk(v.messages.some((m) => m.id === recv.id || m.id === accept.id), 'WSPRecv and WSPAccept are blocked');
  const before = await healthz(d.port);
  t.same(before, { status: 'ok', sessions: 2, sockets: 5, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 }, 'two sessions; V holds four sockets (one of them accepted), W one');

  v.ws.terminate();
  recv.response.catch(() => undefined);
  accept.response.catch(() => undefined);

  const how = await within(conn.gone, 5000, 'still open');
  t.not(how, 'still open', `the peer of the blocked WSPRecv sees its connection end (${how})`);
  const how2 = await within(conn2.gone, 5000, 'still open');
  t.not(how2, 'still open', `the peer of the overlapped WSPRecv sees its connection end (${how2})`);
  t.ok(await waitUntil(async () => (await connectOutcome(name.port)) === 'ECONNREFUSED'), 'the listening socket is closed: connects are refused');
  t.ok(await waitUntil(async () => (await healthz(d.port))['sessions'] === 1), '/healthz shows the session gone');
  t.same(await healthz(d.port), { status: 'ok', sessions: 1, sockets: 1, heldBytes: 0, heldBytesOfEndedSessions: 0, drainingConnections: 0, partialFrameBytes: 0 }, 'only W and its socket remain');

  // W keeps working, including over a new TCP connection.
  t.equal((await w.call('WSPGetSockOpt', { s: hw, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }))['ret'], 0, 'W\'s socket still answers');
  const { h: hw2, conn: conn3 } = await connectedSocket(w, peer);
  const data = pattern(50000, 77);
  const r = await sendBytes(w, hw2, data);
  t.same([r['ret'], r['bytesSent']], [0, data.length], 'W sends over a new connection');
  t.ok((await conn3.waitFor(data.length)).equals(data), 'the peer receives exactly W\'s bytes');
});

t.test('a socket handle of another session is WSAENOTSOCK (10038) and stays untouched', async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const a = await session(t, d.url);
  const b = await session(t, d.url);
  const { h: ha, conn } = await connectedSocket(a, peer);
  const hb = await udpSocket(b);
  t.not(ha, hb, 'handles are unique across sessions');

  const foreign: Array<[string, Record<string, unknown>]> = [
    ['WSPSend', { s: ha, buffers: [Buffer.from('not yours')], flags: 0 }],
    ['WSPSendTo', { s: ha, buffers: [Buffer.from('not yours')], flags: 0, to: null, tolen: 0 }],
    ['WSPRecv', { s: ha, lengths: [10], flags: 0 }],
    ['WSPGetSockName', { s: ha, namelen: 16 }],
    ['WSPGetPeerName', { s: ha, namelen: 16 }],
    ['WSPGetSockOpt', { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }],
    ['WSPSetSockOpt', { s: ha, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: new Uint8Array([0, 0, 0, 0]), optlen: 4 }],
    ['WSPIoctl', { s: ha, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 }],
    ['WSPShutdown', { s: ha, how: P.SD_BOTH }],
    ['WSPListen', { s: ha, backlog: 1 }],
    ['WSPAccept', { s: ha }],
    ['WSPConnect', { s: ha, name: ipv4(peer.port), namelen: 16 }],
    ['WSPBind', { s: ha, name: ipv4(0), namelen: 16 }],
    ['WSPCloseSocket', { s: ha }],
  ];
  for (const [method, params] of foreign) {
    const r = await b.call(method, params);
    t.same([r['ret'], r['errno']], [method === 'WSPAccept' ? P.INVALID_SOCKET : P.SOCKET_ERROR, P.WSAENOTSOCK], `${method} on A's handle from B: WSAENOTSOCK`);
  }
  // A's socket is untouched: still connected, still blocking, its buffers as they were.
  const sent = await sendBytes(a, ha, Buffer.from('mine'));
  t.same([sent['ret'], sent['bytesSent']], [0, 4], 'A can still send on it');
  t.equal((await conn.waitFor(4)).toString(), 'mine', 'the peer received only A\'s bytes');
  // A fence from A after its bytes: anything sent on the connection before would be in front of it.
  const fence = Buffer.from('|fence|');
  await sendBytes(a, ha, fence);
  await conn.waitFor(4 + fence.length).catch(() => undefined);
  t.equal(conn.received().toString(), `mine${fence.toString()}`, 'nothing from B arrived');
  const peerName = await a.call('WSPGetPeerName', { s: ha, namelen: 16 });
  t.equal(peerName['ret'], 0, 'A\'s socket is still connected');

  // And the other way round, and after close.
  const r = await a.call('WSPGetSockOpt', { s: hb, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['errno'], P.WSAENOTSOCK, 'B\'s handle from A: WSAENOTSOCK');
  t.equal((await a.call('WSPCloseSocket', { s: ha }))['ret'], 0, 'A closes its socket');
  t.equal((await a.call('WSPGetSockName', { s: ha, namelen: 16 }))['errno'], P.WSAENOTSOCK, 'a closed handle is WSAENOTSOCK for its own session');
  t.equal((await b.call('WSPGetSockName', { s: ha, namelen: 16 }))['errno'], P.WSAENOTSOCK, 'and for the other');
});

/** A listening TCP socket on 127.0.0.1 (a blocking WSPAccept on it keeps its id in use) and its port. */
async function listener(t: Test, a: RawSession): Promise<{ l: number; port: number }> {
  const l = await tcpSocket(a);
  t.equal((await a.call('WSPBind', { s: l, name: ipv4(0), namelen: 16 }))['ret'], 0);
  t.equal((await a.call('WSPListen', { s: l, backlog: 1 }))['ret'], 0);
  const name = await a.call('WSPGetSockName', { s: l, namelen: 16 });
  return { l, port: (name['name'] as P.SockAddr).port };
}

t.test('a request id still in use by an unanswered call gets DUPLICATE_ID (-32002); the first call is unaffected', async (t) => {
  const d = await daemon(t);
  const a = await session(t, d.url);
  const { l, port } = await listener(t, a);
  // A blocking WSPAccept stays unanswered until a connection comes.
  // The daemon handles the two frames in the order they are sent (proto/README.md section 6): the
  // first is blocked, its id in use, when the second comes.
  a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 'dup', method: 'WSPAccept', params: { s: l } }));
  a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 'dup', method: 'WSPAccept', params: { s: l } }));
  const err = await a.wait((m) => m.error !== undefined && m.error['code'] === P.DUPLICATE_ID);
  t.equal(err.id, null, 'the refusal carries id null, so it cannot be taken for the running call\'s reply');
  t.same(err.error!['data'], { id: 'dup', record: 0 }, 'and names the duplicate id in data.id, and its record in data.record');
  const c = net.connect(port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const ok = await a.wait((m) => m.id === 'dup' && m.result !== undefined);
  t.ok((ok.result!['ret'] as number) > 0, 'the first call still completes with a SOCKET');
  t.equal(a.messages.filter((m) => m.id === 'dup').length, 1, 'the only message with the id is the running call\'s reply');
});

t.test('any other refusal of a request reusing a running call\'s id carries id null too, with the id in data.id', async (t) => {
  const d = await daemon(t);
  const a = await session(t, d.url);
  const { l, port } = await listener(t, a);
  // The blocking accept keeps id 3 in use; the checks of the envelope and of the method come
  // before the id's (section 6), so these two are refused for what they are, not as duplicates.
  a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 3, method: 'WSPAccept', params: { s: l } }));
  a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 3, method: 'noSuchMethod', params: {} }));
  a.ws.send(P.encodeFrame({ jsonrpc: '1.0', id: 3, method: 'WSPAccept', params: { s: l } }));
  const unknown = await a.wait((m) => m.error !== undefined && m.error['code'] === P.METHOD_NOT_FOUND);
  const envelope = await a.wait((m) => m.error !== undefined && m.error['code'] === P.INVALID_REQUEST);
  for (const [what, m] of [['METHOD_NOT_FOUND', unknown], ['INVALID_REQUEST', envelope]] as const) {
    t.equal(m.id, null, `${what}: id null, not the running call's id`);
    t.equal((m.error!['data'] as Record<string, unknown>)['id'], 3, `${what}: the id in data.id`);
  }
  const c = net.connect(port, '127.0.0.1');
  t.teardown(() => c.destroy());
  const ok = await a.wait((m) => m.id === 3 && m.result !== undefined);
  t.ok((ok.result!['ret'] as number) > 0, 'the running call completes with a SOCKET');
  t.equal(a.messages.filter((m) => m.id === 3).length, 1, 'the only message with id 3 is its reply');
  // With the id free again, the same mistakes are answered with their id, as JSON-RPC has it.
  a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 3, method: 'noSuchMethod', params: {} }));
  const later = await a.wait((m) => m.id === 3 && m.error !== undefined);
  t.equal(later.error!['code'], P.METHOD_NOT_FOUND, 'an unknown method with a free id: answered with the id');
});
