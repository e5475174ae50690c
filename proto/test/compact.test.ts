/**
 * Compact record headers (proto/src/compact.ts, proto/README.md section 3 "Compact headers"):
 * the worked examples byte for byte, round trips against the JSON form, the messages that must
 * stay JSON, and every way a compact header can be broken.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { FrameBuilder, PARSE_ERROR, compactReplyFields, decodeFrame, splitFrame, type CompactReply, type DecodedRecord } from '../src/index.js';
import { rng } from './helpers/random.js';
import { cat, norm, rawRecord, u32le } from './helpers/records.js';

const SEED = Number(process.env['SPIWIRE_SEED'] ?? 0xc0de5);

function frameOf(message: object, compact: boolean): Uint8Array {
  const b = new FrameBuilder();
  b.compact = compact;
  b.add(message);
  return b.finish();
}

function only(frame: Uint8Array): DecodedRecord {
  const recs = decodeFrame(frame);
  if (recs.length !== 1) throw new Error(`${recs.length} records`);
  return recs[0]!;
}

/** The hex dump lines of the README's compact worked example, as bytes. */
function readmeDump(after: string): number[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf(after);
  if (start < 0) throw new Error(`README has no "${after}"`);
  const bytes: number[] = [];
  for (const line of readme.slice(start + after.length).split('\n').slice(1)) {
    const m = /^ {4}[0-9a-f]{4} {2}((?:[0-9a-f]{2} )*[0-9a-f]{2})/.exec(line);
    if (!m) {
      if (bytes.length > 0) break;
      continue;
    }
    for (const h of m[1]!.split(' ')) bytes.push(parseInt(h, 16));
  }
  return bytes;
}

const hi = new TextEncoder().encode('hi');
const abc = new TextEncoder().encode('abc');

t.test('the worked examples of the README are what the builder writes', async (t) => {
  const call = { jsonrpc: '2.0', id: 7, method: 'WSPSend', params: { s: 256, buffers: [hi, abc], flags: 0 } };
  const reply = { jsonrpc: '2.0', id: 7, result: { ret: 0, errno: 0, bytesSent: 5 } };
  t.same([...frameOf(call, true)], readmeDump('with a compact\nheader'), 'the WSPSend call');
  t.same([...frameOf(reply, true)], readmeDump('and its reply'), 'its reply');
  t.equal(frameOf(call, true).length, 37);
});

t.test('a builder writes JSON unless told to write compact headers', async (t) => {
  const call = { jsonrpc: '2.0', id: 7, method: 'WSPSend', params: { s: 256, buffers: [hi], flags: 0 } };
  const f = frameOf(call, false);
  t.equal(f[4], '{'.charCodeAt(0));
  t.notOk(only(f).ok && (only(f) as { compact?: boolean }).compact, 'a JSON record is not marked compact');
  const c = only(frameOf(call, true));
  t.ok(c.ok && c.compact, 'a compact record is marked compact');
});

t.test(`random WSPSend calls, replies and completions decode the same from both forms (seed ${SEED})`, async (t) => {
  const r = rng(SEED);
  const u32 = (): number => Math.floor(r() * 0x100000000);
  const pick = (): number => (r() < 0.3 ? [0, 1, 0xffffffff, 0x7fffffff][Math.floor(r() * 4)]! : u32());
  let matched = 0;
  let inPlaceMatched = 0;
  for (let i = 0; i < 300; i++) {
    const kind = i % 3;
    let msg: Record<string, unknown>;
    if (kind === 0) {
      const buffers = Array.from({ length: Math.floor(r() * 6) }, () => Uint8Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 256)));
      const params: Record<string, unknown> = { s: pick(), buffers, flags: pick() };
      if (r() < 0.5) params['overlapped'] = { op: pick(), thread: pick() };
      msg = { jsonrpc: '2.0', id: pick(), method: 'WSPSend', params };
    } else if (kind === 1) {
      const result: Record<string, unknown> = { ret: Math.floor(r() * 0x100000000) - 0x80000000, errno: pick() };
      if (r() < 0.5) result['bytesSent'] = pick();
      if (r() < 0.5) result['completion'] = { error: pick(), bytes: pick(), flags: pick() };
      msg = { jsonrpc: '2.0', id: pick(), result };
    } else {
      msg = { jsonrpc: '2.0', method: 'spiwire.completion', params: { op: pick(), s: pick(), error: pick(), bytes: pick(), flags: pick() } };
    }
    const json = only(frameOf(msg, false));
    const compactFrame = frameOf(msg, true);
    const compact = only(compactFrame);
    if (compactFrame[4]! < 1 || compactFrame[4]! > 3 || !json.ok || !compact.ok || !compact.compact) {
      t.fail(`message ${i} was not written or read in compact form: ${JSON.stringify(norm(msg))}`);
      continue;
    }
    // One assertion per difference only, so that 300 messages do not flood the output.
    if (JSON.stringify(norm(compact.message)) !== JSON.stringify(norm(json.message))) t.same(norm(compact.message), norm(json.message), `message ${i}`);
    else matched++;
    // A reply read in place (the SDK's path) gives the fields the message has; nothing else is
    // read in place, and neither is the JSON form of a reply.
    const f = compactReplyFields();
    const inPlace = splitFrame(compactFrame).compactReply(0, f);
    if (inPlace !== (kind === 1)) t.fail(`message ${i}: read in place ${inPlace}, kind ${kind}`);
    else if (inPlace && JSON.stringify(norm(replyMessage(f))) !== JSON.stringify(norm(json.message))) t.same(norm(replyMessage(f)), norm(json.message), `message ${i} read in place`);
    else inPlaceMatched++;
    if (splitFrame(frameOf(msg, false)).compactReply(0, f)) t.fail(`message ${i}: its JSON form was read in place`);
  }
  t.equal(matched, 300, 'every message decodes to the same object from both forms');
  t.equal(inPlaceMatched, 300, 'every compact reply, and nothing else, reads in place to the same fields');
});

/** The message a reply read in place stands for. */
function replyMessage(f: CompactReply): object {
  const result: Record<string, unknown> = { ret: f.ret, errno: f.errno };
  if (f.bytesSent >= 0) result['bytesSent'] = f.bytesSent;
  if (f.hasCompletion) result['completion'] = { error: f.error, bytes: f.bytes, flags: f.flags };
  return { jsonrpc: '2.0', id: f.id, result };
}

t.test('messages without exactly a compact shape are written as JSON', async (t) => {
  const b = [hi];
  const cases: Array<[string, object]> = [
    ['a string id', { jsonrpc: '2.0', id: 'x', method: 'WSPSend', params: { s: 1, buffers: b, flags: 0 } }],
    ['a negative id', { jsonrpc: '2.0', id: -1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 0 } }],
    ['a fractional socket', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1.5, buffers: b, flags: 0 } }],
    ['flags out of range', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 2 ** 32 } }],
    ['a missing flags', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b } }],
    ['an extra parameter', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 0, to: null } }],
    ['a buffer that is not bytes', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: ['hi'], flags: 0 } }],
    ['overlapped: null (its JSON form names it)', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 0, overlapped: null } }],
    ['params of a class', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: new (class P { s = 1; buffers = b; flags = 0; })() }],
    ['a message with an inherited id', Object.assign(Object.create({ id: 1 }) as object, { jsonrpc: '2.0', result: { ret: 0, errno: 0 } })],
    ['an overlapped with an extra member', { jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 0, overlapped: { op: 1, thread: 4, x: 1 } } }],
    ['another method', { jsonrpc: '2.0', id: 1, method: 'WSPSendTo', params: { s: 1, buffers: b, flags: 0, to: null, tolen: 0 } }],
    ['a wrong jsonrpc', { jsonrpc: '1.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: b, flags: 0 } }],
    ['a result with another member', { jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0, name: { family: 2 } } }],
    ['a ret beyond int32', { jsonrpc: '2.0', id: 1, result: { ret: 2 ** 31, errno: 0 } }],
    ['a completion with an extra member', { jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0, completion: { error: 0, bytes: 1, flags: 0, x: 1 } } }],
    ['an error reply', { jsonrpc: '2.0', id: 1, error: { code: -32600, message: 'no' } }],
    ['a completion carrying data', { jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 1, error: 0, bytes: 2, flags: 0, data: hi } }],
    ['another notification', { jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 1, events: 2, errors: [] } }],
  ];
  for (const [what, msg] of cases) {
    const f = frameOf(msg, true);
    t.equal(f[4], '{'.charCodeAt(0), `${what}: JSON header`);
    const rec = only(f);
    t.ok(rec.ok && !rec.compact, `${what}: decodes as JSON`);
  }
});

/** A frame of one record with the given header and data, then a good JSON record after it. */
function withGoodRecord(header: number[], data: number[] = []): Uint8Array {
  const good = frameOf({ jsonrpc: '2.0', id: 9, method: 'WSPCloseSocket', params: { s: 1 } }, false);
  return cat(rawRecord(Uint8Array.from(header), Uint8Array.from(data)), good);
}

const le = (n: number): number[] => [...u32le(n)];

t.test('a broken compact header spoils only its own record, as PARSE_ERROR', async (t) => {
  const send = (bits: number, count: number, lengths: number[], extra: number[] = []): number[] => [1, bits, count, 0, ...le(7), ...le(1), ...le(0), ...extra, ...lengths.flatMap(le)];
  const cases: Array<[string, number[], number[]?]> = [
    ['a kind of 0', [0, 0, 0, 0, ...le(1), ...le(0), ...le(0)]],
    ['an unknown kind', [4, 0, 0, 0, ...le(1), ...le(0), ...le(0)]],
    ['a header shorter than 4 bytes', [1, 0]],
    ['unknown flag bits in a send', send(2, 0, [])],
    ['a send one byte short', send(0, 1, [2]).slice(0, -1), [1, 2]],
    ['a send one byte long', [...send(0, 1, [2]), 0], [1, 2]],
    ['buffer lengths beyond the data', send(0, 2, [2, 3]), [1, 2, 3]],
    ['buffer lengths short of the data', send(0, 1, [2]), [1, 2, 3]],
    ['an overlapped send without room for op and thread', send(1, 0, [])],
    ['unknown flag bits in a reply', [2, 4, 0, 0, ...le(7), ...le(0), ...le(0)]],
    ['a reply missing its bytesSent', [2, 1, 0, 0, ...le(7), ...le(0), ...le(0)]],
    ['a reply with data', [2, 0, 0, 0, ...le(7), ...le(0), ...le(0)], [1]],
    ['a reply with a count', [2, 0, 1, 0, ...le(7), ...le(0), ...le(0)]],
    ['a completion with flag bits', [3, 1, 0, 0, ...le(1), ...le(1), ...le(0), ...le(1), ...le(0)]],
    ['a completion with data', [3, 0, 0, 0, ...le(1), ...le(1), ...le(0), ...le(1), ...le(0)], [1]],
    ['a completion one field short', [3, 0, 0, 0, ...le(1), ...le(1), ...le(0), ...le(1)]],
  ];
  for (const [what, header, data] of cases) {
    const recs = decodeFrame(withGoodRecord(header, data));
    t.equal(recs.length, 2, `${what}: both records come out`);
    const [bad, good] = recs;
    t.ok(bad && !bad.ok && bad.error.code === PARSE_ERROR && /^compact header: /.test(bad.error.message), `${what}: PARSE_ERROR (${bad && !bad.ok ? bad.error.message : 'decoded'})`);
    t.ok(good?.ok, `${what}: the next record is untouched`);
    t.notOk(splitFrame(withGoodRecord(header, data)).compactReply(0, compactReplyFields()), `${what}: not read in place, so that its error comes out`);
  }
});

t.test('a compact header that is well formed decodes even beside JSON records', async (t) => {
  const f = withGoodRecord([1, 1, 1, 0, ...le(3), ...le(5), ...le(0x8000), ...le(11), ...le(4), ...le(2)], [0x68, 0x69]);
  const [first, second] = decodeFrame(f);
  t.ok(first?.ok && first.compact);
  t.same(norm(first?.ok ? first.message : null), norm({ jsonrpc: '2.0', id: 3, method: 'WSPSend', params: { s: 5, buffers: [hi], flags: 0x8000, overlapped: { op: 11, thread: 4 } } }));
  t.ok(second?.ok && !second.compact);
});

t.test('addCall, addReply and addNotification write what add() writes for the same envelope, compact or not', async (t) => {
  const r = rng(SEED ^ 0x5eed);
  const u32 = (): number => Math.floor(r() * 0x100000000);
  const messages: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 100; i++) {
    const result: Record<string, unknown> = { ret: Math.floor(r() * 0x100000000) - 0x80000000, errno: u32() };
    if (r() < 0.5) result['bytesSent'] = u32();
    if (r() < 0.5) result['completion'] = { error: u32(), bytes: u32(), flags: u32() };
    messages.push({ jsonrpc: '2.0', id: u32(), result });
    messages.push({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: u32(), s: u32(), error: u32(), bytes: u32(), flags: u32() } });
    const params: Record<string, unknown> = { s: u32(), buffers: Array.from({ length: Math.floor(r() * 4) }, () => Uint8Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 256))), flags: u32() };
    if (r() < 0.5) params['overlapped'] = { op: u32(), thread: u32() };
    messages.push({ jsonrpc: '2.0', id: u32(), method: 'WSPSend', params });
  }
  // Shapes that stay JSON either way.
  messages.push({ jsonrpc: '2.0', id: 'x', result: { ret: 0, errno: 0 } });
  messages.push({ jsonrpc: '2.0', id: null, result: { ret: 0, errno: 0 } });
  messages.push({ jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0, name: { family: 2 } } });
  messages.push({ jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0, completion: { error: 0, bytes: 1, flags: 0, x: 1 } } });
  messages.push({ jsonrpc: '2.0', id: 1, result: new (class R { ret = 0; errno = 0; })() });
  messages.push({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 1, error: 0, bytes: 2, flags: 0, data: hi } });
  messages.push({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 1, events: 2, errors: {} } });
  messages.push({ jsonrpc: '2.0', id: 'x', method: 'WSPSend', params: { s: 1, buffers: [hi], flags: 0 } });
  messages.push({ jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 1, buffers: [hi], flags: 0, overlapped: null } });
  messages.push({ jsonrpc: '2.0', id: 1, method: 'WSPSendTo', params: { s: 1, buffers: [hi], flags: 0, to: null, tolen: 0 } });
  messages.push({ jsonrpc: '2.0', id: 1, method: 'WSPCloseSocket', params: { s: 1 } });
  messages.push({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received: 3 } });
  let same = 0;
  for (const compact of [true, false]) {
    for (const m of messages) {
      const direct = new FrameBuilder();
      direct.compact = compact;
      if ('result' in m) direct.addReply(m['id'] as number | string | null, m['result'] as object);
      else if ('id' in m) direct.addCall(m['id'] as number | string, m['method'] as string, m['params'] as object);
      else if (m['method'] === 'spiwire.completion' || m['method'] === 'spiwire.networkEvents') direct.addNotification(m['method'], m['params'] as object);
      else direct.addCall(null, m['method'] as string, m['params'] as object);
      const a = Buffer.from(direct.finish());
      const b = Buffer.from(frameOf(m, compact));
      if (a.equals(b)) same++;
      else t.same([...a], [...b], `${compact ? 'compact' : 'JSON'}: ${JSON.stringify(norm(m))}`);
    }
  }
  t.equal(same, 2 * messages.length, 'byte for byte the same in every case');
});
