/**
 * The frame codec (proto/src/codec.ts): records fed in any slicing, byte references, text frames,
 * base64, and every way a frame can be broken. Random inputs come from a seeded generator; set
 * SPIWIRE_SEED to replay a run (the seed is part of every random test's name).
 */
import t, { type Test } from 'tap';
import {
  BAD_FRAME,
  DEFAULT_DECODE_LIMITS,
  FrameBuilder,
  MAX_HEADER_BYTES,
  MAX_JSON_CONTAINERS,
  MAX_JSON_DEPTH,
  MAX_RECORDS_PER_FRAME,
  PARSE_ERROR,
  ProtocolError,
  base64ToBytes,
  bytesToBase64,
  decodeFrame,
  decodeText,
  encodeFrame,
  encodeText,
  type DecodeLimits,
  type DecodedRecord,
} from '../src/index.js';
import { rng } from './helpers/random.js';
import { cat, enc, hex, norm, rawRecord, u32le } from './helpers/records.js';

// ---------------------------------------------------------------- helpers

const SEED = Number(process.env['SPIWIRE_SEED'] ?? 0x5eed1);

function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

function randBytes(r: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function normRecords(recs: DecodedRecord[]): unknown[] {
  return recs.map((r) => (r.ok ? { ok: true, message: norm(r.message) } : { ok: false, code: r.error.code }));
}

/** Runs fn and returns the ProtocolError it threw; fails the test if it threw anything else or nothing. */
function protocolErrorOf(t: Test, fn: () => unknown, what: string): ProtocolError | null {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    t.fail(`${what}: threw ${(err as Error)?.name}: ${(err as Error)?.message}, not a ProtocolError`);
    return null;
  }
  t.fail(`${what}: did not throw`);
  return null;
}

function expectBadFrame(t: Test, fn: () => unknown, what: string): void {
  const e = protocolErrorOf(t, fn, what);
  if (e) t.equal(e.code, BAD_FRAME, `${what}: BAD_FRAME`);
}


/** A sample of messages covering the shapes the daemon and the SDK exchange. */
function sampleMessages(): object[] {
  const payload = new Uint8Array(300);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  return [
    { jsonrpc: '2.0', id: 1, method: 'WSPSocket', params: { af: 2, type: 1, protocol: 6, g: 0, flags: 1 } },
    { jsonrpc: '2.0', id: 'abc', method: 'WSPSend', params: { s: 256, buffers: [new Uint8Array([1, 2, 3]), new Uint8Array(0), payload], flags: 0 } },
    { jsonrpc: '2.0', id: 2, result: { ret: 0, errno: 0, data: Buffer.from('hello'), bytesRecvd: 5, flags: 0 } },
    { jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 7, s: 260, error: 0, bytes: 0, flags: 0 } },
    { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'bad: ünïcödé ✓ 😀' } },
    { jsonrpc: '2.0', id: 3, method: 'WSPIoctl', params: { s: 256, code: 0x8004667e, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 } },
  ];
}

// ---------------------------------------------------------------- layout

t.test('a record is u32le header length, UTF-8 JSON header, u32le data length, data', async (t) => {
  const msg = { jsonrpc: '2.0', id: 7, method: 'WSPSend', params: { s: 256, buffers: [new Uint8Array([0x68, 0x69]), new Uint8Array([0x61, 0x62, 0x63])], flags: 0 } };
  const frame = encodeFrame(msg);
  const json = '{"jsonrpc":"2.0","id":7,"method":"WSPSend","params":{"s":256,"buffers":[{"$b":[0,2]},{"$b":[2,3]}],"flags":0}}';
  const expected = rawRecord(json, new Uint8Array([0x68, 0x69, 0x61, 0x62, 0x63]));
  t.equal(hex(frame), hex(expected), 'exact bytes');
  t.equal(frame[0], json.length & 0xff, 'the length is little-endian: low byte first');
  t.equal(frame[1], json.length >> 8);
});

t.test('the header length counts UTF-8 bytes, not characters; lengths above 255 use every byte of the u32', async (t) => {
  const text = 'é✓😀'.repeat(100);
  const frame = encodeFrame({ jsonrpc: '2.0', method: 'x', params: { text } });
  const headerLen = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true);
  const json = JSON.stringify({ jsonrpc: '2.0', method: 'x', params: { text } });
  t.equal(headerLen, enc.encode(json).length);
  t.ok(headerLen > json.length, 'more bytes than UTF-16 code units');
  t.ok(headerLen > 256);
  const [rec] = decodeFrame(frame);
  t.same(rec, { ok: true, message: { jsonrpc: '2.0', method: 'x', params: { text } } });
});

t.test('FrameBuilder packs several records into one frame, counts them, and starts empty after finish()', async (t) => {
  const b = new FrameBuilder();
  t.equal(b.recordCount, 0);
  t.equal(b.byteLength, 0);
  const msgs = sampleMessages();
  let expectedLen = 0;
  for (const m of msgs) {
    b.add(m);
    expectedLen += encodeFrame(m).length;
  }
  t.equal(b.recordCount, msgs.length);
  t.equal(b.byteLength, expectedLen);
  const frame = b.finish();
  t.equal(frame.length, expectedLen);
  t.equal(hex(frame), hex(cat(...msgs.map((m) => encodeFrame(m)))), 'the frame is the records back to back');
  t.equal(b.recordCount, 0, 'empty after finish');
  t.equal(b.byteLength, 0);
  const recs = decodeFrame(frame);
  t.same(normRecords(recs), msgs.map((m) => ({ ok: true, message: norm(m) })));
  b.add(msgs[0]!);
  t.equal(hex(b.finish()), hex(encodeFrame(msgs[0]!)), 'a builder is reusable');
});

t.test('FrameBuilder.room says when a record would move the frame under construction to new memory', async (t) => {
  const made: number[] = [];
  const needed: number[] = [];
  const b = new FrameBuilder((n, min) => {
    made.push(n);
    needed.push(min);
    return new Uint8Array(n);
  }, 1024);
  t.equal(b.room, 1024, 'a new builder has its whole buffer');
  b.add({ jsonrpc: '2.0', method: 'm', params: { data: new Uint8Array(100) } });
  const first = b.byteLength;
  t.equal(b.room, 1024 - first, 'room goes down by what a record took');
  const kept = b.finish();
  const keptCopy = Uint8Array.from(kept);
  // A record larger than the room, with no frame under construction: new memory, nothing copied
  // over, and the finished frame where it was.
  b.add({ jsonrpc: '2.0', method: 'm', params: { data: new Uint8Array(2000) } });
  t.equal(made.length, 2, 'a second buffer was made');
  t.ok(made[1]! >= 2000, 'large enough for the record');
  t.ok(needed[1]! >= 2000 && needed[1]! < made[1]!, 'the least it needs is the record, told apart from the room it would like');
  t.ok(made[1]! >= needed[1]!);
  t.equal(b.current !== kept.buffer, true, 'the builder writes elsewhere now');
  t.same(kept, keptCopy, 'the finished frame is untouched');
  t.equal(b.room, made[1]! - b.byteLength);
});

t.test('FrameBuilder copies byte strings when a message is added', async (t) => {
  const src = new Uint8Array([1, 2, 3, 4]);
  const b = new FrameBuilder();
  b.add({ jsonrpc: '2.0', method: 'm', params: { data: src } });
  src.fill(9);
  const [rec] = decodeFrame(b.finish());
  t.same(norm((rec as { message: { params: { data: unknown } } }).message.params.data), { bytes: '01020304' });
});

// ---------------------------------------------------------------- byte strings

t.test('Buffer payloads go out as raw bytes, not as Buffer.toJSON number arrays', async (t) => {
  const pool = Buffer.from('xxxxPAYLOADyyyy');
  const view = pool.subarray(4, 11); // byteOffset 4 into a larger buffer
  const msg = { jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0, data: Buffer.from([0, 1, 254, 255]), more: [view, { deep: Buffer.alloc(0) }] } };
  const frame = encodeFrame(msg);
  const headerLen = new DataView(frame.buffer, frame.byteOffset).getUint32(0, true);
  const header = Buffer.from(frame.subarray(4, 4 + headerLen)).toString('utf8');
  t.notMatch(header, /"type":"Buffer"/, 'no toJSON form in the header');
  t.notMatch(header, /"data":\[/, 'no number arrays in the header');
  t.equal(header, '{"jsonrpc":"2.0","id":1,"result":{"ret":0,"errno":0,"data":{"$b":[0,4]},"more":[{"$b":[4,7]},{"deep":{"$b":[11,0]}}]}}');
  const dataLen = new DataView(frame.buffer, frame.byteOffset).getUint32(4 + headerLen, true);
  t.equal(dataLen, 11);
  t.equal(Buffer.from(frame.subarray(8 + headerLen)).toString('latin1'), '\x00\x01\xfe\xffPAYLOAD', 'the data section holds the raw bytes, in order');
  const [rec] = decodeFrame(frame);
  t.ok(rec!.ok);
  const m = (rec as { message: { result: { data: unknown; more: [unknown, { deep: unknown }] } } }).message;
  t.ok(m.result.data instanceof Uint8Array, 'decoded as a byte string');
  t.same(norm(m), norm(msg));
});

t.test('encodeText writes Buffer and Uint8Array payloads as {"$base64": ...}', async (t) => {
  const msg = { jsonrpc: '2.0', id: 'q', method: 'WSPSend', params: { s: 4, buffers: [Buffer.from('hi'), new Uint8Array([0xfb, 0xff])], flags: 0 } };
  const text = encodeText(msg);
  t.equal(text, '{"jsonrpc":"2.0","id":"q","method":"WSPSend","params":{"s":4,"buffers":[{"$base64":"aGk="},{"$base64":"+/8="}],"flags":0}}');
  const rec = decodeText(text);
  t.ok(rec.ok);
  t.same(norm((rec as { message: unknown }).message), norm(msg));
  const bytes = (rec as { message: { params: { buffers: unknown[] } } }).message.params.buffers[1];
  t.ok(bytes instanceof Uint8Array);
});

t.test('a UTF-8 byte order mark before the JSON is skipped, in a text frame as in a binary header', async (t) => {
  const msg = { jsonrpc: '2.0', id: 3, method: 'WSPCloseSocket', params: { s: 256 } };
  const text = decodeText('\ufeff' + JSON.stringify(msg));
  t.same(text.ok && text.message, msg, 'text frame');
  const json = Buffer.from(JSON.stringify(msg));
  const header = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  // headerLength, header, dataLength 0.
  const frame = Buffer.concat([len, header, Buffer.alloc(4)]);
  const [rec] = decodeFrame(frame);
  t.same(rec?.ok && rec.message, msg, 'binary header');
  t.notOk(decodeText('\ufeff\ufeff' + JSON.stringify(msg)).ok, 'only one mark is skipped');
});

t.test('byte references anywhere in nested params decode to the right slices', async (t) => {
  const data = enc.encode('0123456789abcdef');
  const header = JSON.stringify({
    jsonrpc: '2.0',
    id: 5,
    method: 'm',
    params: {
      top: { $b: [0, 4] },
      list: [{ $b: [4, 2] }, [{ $b: [6, 0] }, { x: { $b: [10, 6] } }]],
      same: [{ $b: [0, 16] }, { $b: [0, 16] }],
      overlap: { $b: [3, 5] },
      atEnd: { $b: [16, 0] },
      notRef: { $b: [0, 1], other: 1 },
      text: '$b',
      numbers: [0, 4],
    },
  });
  const [rec] = decodeFrame(rawRecord(header, data));
  t.ok(rec!.ok, 'record decoded');
  const p = (rec as { message: { params: Record<string, unknown> } }).message.params;
  t.same(norm(p), {
    top: { bytes: hex(enc.encode('0123')) },
    list: [{ bytes: hex(enc.encode('45')) }, [{ bytes: '' }, { x: { bytes: hex(enc.encode('abcdef')) } }]],
    same: [{ bytes: hex(data) }, { bytes: hex(data) }],
    overlap: { bytes: hex(enc.encode('34567')) },
    atEnd: { bytes: '' },
    // Only an object with the single key "$b" is a reference.
    notRef: { $b: [0, 1], other: 1 },
    text: '$b',
    numbers: [0, 4],
  });
});

t.test('a top-level byte reference and references in a result both decode', async (t) => {
  const [a, b] = decodeFrame(cat(rawRecord('{"$b":[1,2]}', new Uint8Array([9, 8, 7])), rawRecord('[{"$b":[0,1]},{"$b":[0,0]}]', new Uint8Array([5]))));
  t.same(norm((a as { message: unknown }).message), { bytes: '0807' });
  t.same(norm((b as { message: unknown }).message), [{ bytes: '05' }, { bytes: '' }]);
});

t.test('zero-length data: records without byte strings and with empty byte strings', async (t) => {
  const noBytes = encodeFrame({ jsonrpc: '2.0', id: 1, method: 'WSPCloseSocket', params: { s: 256 } });
  const headerLen = new DataView(noBytes.buffer, noBytes.byteOffset).getUint32(0, true);
  t.equal(noBytes.length, 8 + headerLen, 'no data bytes');
  t.same(Array.from(noBytes.subarray(4 + headerLen)), [0, 0, 0, 0], 'data length 0');
  const empties = encodeFrame({ jsonrpc: '2.0', id: 2, method: 'WSPSend', params: { s: 256, buffers: [new Uint8Array(0), Buffer.alloc(0)], flags: 0 } });
  const frame = cat(noBytes, empties, noBytes);
  const records = decodeFrame(frame);
  t.equal(records.length, 3);
  t.same(norm((records[1] as { message: { params: unknown } }).message.params), { s: 256, buffers: [{ bytes: '' }, { bytes: '' }], flags: 0 });
});

// ---------------------------------------------------------------- base64

t.test('base64 round trips for every length 0..20', async (t) => {
  const r = rng(SEED + 1);
  for (let n = 0; n <= 20; n++) {
    for (const bytes of [randBytes(r, n), new Uint8Array(n).fill(0xff), new Uint8Array(n), Uint8Array.from({ length: n }, (_, i) => i * 13)]) {
      const s = bytesToBase64(bytes);
      t.equal(s, Buffer.from(bytes).toString('base64'), `length ${n}: standard padded base64`);
      t.equal(s.length % 4, 0);
      t.equal(hex(base64ToBytes(s)), hex(bytes), `length ${n}: decodes back`);
      const rec = decodeText(encodeText({ jsonrpc: '2.0', method: 'm', params: { v: bytes } }));
      t.ok(rec.ok, `length ${n}: text frame decodes`);
      t.equal(hex((rec as { message: { params: { v: Uint8Array } } }).message.params.v), hex(bytes), `length ${n}: text frame round trip`);
    }
  }
});

t.test('text frames decode {"$base64": ...} anywhere and leave other objects alone', async (t) => {
  const rec = decodeText('{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"$base64":""},"b":[[{"$base64":"AAEC"}]],"c":{"$base64":"YQ==","x":1},"d":{"$b":[0,1]}}}');
  t.ok(rec.ok);
  t.same(norm((rec as { message: { params: unknown } }).message.params), {
    a: { bytes: '' },
    b: [[{ bytes: '000102' }]],
    c: { $base64: 'YQ==', x: 1 },
    d: { $b: [0, 1] }, // binary references mean nothing in a text frame
  });
});

// ---------------------------------------------------------------- broken frames

t.test('an empty frame is BAD_FRAME', async (t) => {
  expectBadFrame(t, () => decodeFrame(new Uint8Array(0)), 'empty frame');
});

t.test('every proper prefix of a one-record frame is BAD_FRAME', async (t) => {
  for (const m of sampleMessages()) {
    const frame = encodeFrame(m);
    let wrong = 0;
    for (let n = 0; n < frame.length; n++) {
      try {
        decodeFrame(frame.subarray(0, n));
        wrong++;
        if (wrong <= 3) t.fail(`prefix of ${n}/${frame.length} bytes decoded`);
      } catch (err) {
        if (!(err instanceof ProtocolError) || err.code !== BAD_FRAME) {
          wrong++;
          if (wrong <= 3) t.fail(`prefix of ${n}/${frame.length} bytes: ${String(err)}`);
        }
      }
    }
    t.equal(wrong, 0, `all ${frame.length} prefixes refused`);
    t.equal(decodeFrame(frame).length, 1, 'the whole frame decodes');
  }
});

t.test('a prefix of a several-record frame is BAD_FRAME unless it ends on a record boundary', async (t) => {
  const msgs = sampleMessages();
  const b = new FrameBuilder();
  const ends = new Map<number, number>();
  msgs.forEach((m, i) => {
    b.add(m);
    ends.set(b.byteLength, i + 1);
  });
  const frame = b.finish();
  let wrong = 0;
  for (let n = 1; n < frame.length; n++) {
    const whole = ends.get(n);
    try {
      const recs = decodeFrame(frame.subarray(0, n));
      if (whole === undefined || recs.length !== whole) wrong++;
    } catch (err) {
      if (whole !== undefined || !(err instanceof ProtocolError) || err.code !== BAD_FRAME) wrong++;
    }
  }
  t.equal(wrong, 0);
});

t.test('trailing bytes after the last record are BAD_FRAME', async (t) => {
  const frame = encodeFrame(sampleMessages()[0]!);
  for (let extra = 1; extra <= 7; extra++) expectBadFrame(t, () => decodeFrame(cat(frame, new Uint8Array(extra))), `${extra} trailing zero bytes`);
});

t.test('header length 0 is BAD_FRAME', async (t) => {
  expectBadFrame(t, () => decodeFrame(cat(u32le(0), u32le(0))), 'header length 0');
  const good = encodeFrame(sampleMessages()[0]!);
  expectBadFrame(t, () => decodeFrame(cat(good, u32le(0), u32le(0))), 'header length 0 in the second record');
});

t.test('header length above MAX_HEADER_BYTES is refused as soon as the length is read', async (t) => {
  t.equal(MAX_HEADER_BYTES, 1024 * 1024);
  for (const n of [MAX_HEADER_BYTES + 1, 0x7fffffff, 0xffffffff]) {
    expectBadFrame(t, () => decodeFrame(u32le(n)), `header length ${n}`);
  }
});

t.test('a header of exactly MAX_HEADER_BYTES is accepted', async (t) => {
  const base = '{"jsonrpc":"2.0","method":"m","params":{"pad":""}}';
  const json = base.replace('""', `"${'a'.repeat(MAX_HEADER_BYTES - base.length)}"`);
  t.equal(enc.encode(json).length, MAX_HEADER_BYTES);
  const recs = decodeFrame(rawRecord(json));
  t.equal(recs.length, 1);
  t.ok(recs[0]!.ok);
  expectBadFrame(t, () => decodeFrame(rawRecord(json + ' ')), 'one byte more');
});

t.test('custom limits: header, data and record count', async (t) => {
  const limits: DecodeLimits = { maxHeaderBytes: 20, maxDataBytes: 10, maxRecords: 3 };
  const h = '{"$b":[0,0]}'; // 12 bytes
  t.equal(decodeFrame(rawRecord(h.padEnd(20, ' '), new Uint8Array(10)), limits).length, 1, '20-byte header and 10 data bytes fit');
  expectBadFrame(t, () => decodeFrame(rawRecord(h.padEnd(21, ' ')), limits), '21-byte header');
  expectBadFrame(t, () => decodeFrame(rawRecord(h, new Uint8Array(11)), limits), '11 data bytes');
  const rec = rawRecord(h);
  t.equal(decodeFrame(cat(rec, rec, rec), limits).length, 3);
  expectBadFrame(t, () => decodeFrame(cat(rec, rec, rec, rec), limits), 'four records');
});

t.test('data length above the limit is refused as soon as the length is read', async (t) => {
  t.equal(DEFAULT_DECODE_LIMITS.maxDataBytes, 64 * 1024 * 1024);
  const h = enc.encode('{}');
  for (const n of [DEFAULT_DECODE_LIMITS.maxDataBytes + 1, 0xffffffff]) {
    expectBadFrame(t, () => decodeFrame(cat(u32le(h.length), h, u32le(n))), `data length ${n}`);
  }
  // At the limit the length itself is fine; the frame is only truncated.
  const e = protocolErrorOf(t, () => decodeFrame(cat(u32le(h.length), h, u32le(DEFAULT_DECODE_LIMITS.maxDataBytes))), 'data length at the limit, no data');
  t.match(e?.message ?? '', /truncated/);
});

t.test('more records than MAX_RECORDS_PER_FRAME is BAD_FRAME', async (t) => {
  t.equal(MAX_RECORDS_PER_FRAME, 4096);
  const rec = rawRecord('0');
  const full = new Uint8Array(rec.length * (MAX_RECORDS_PER_FRAME + 1));
  for (let i = 0; i <= MAX_RECORDS_PER_FRAME; i++) full.set(rec, i * rec.length);
  t.equal(decodeFrame(full.subarray(0, rec.length * MAX_RECORDS_PER_FRAME)).length, MAX_RECORDS_PER_FRAME, 'exactly the maximum');
  expectBadFrame(t, () => decodeFrame(full), 'one record more');
});

t.test('a header that is not UTF-8 spoils only its own record (PARSE_ERROR)', async (t) => {
  const bad: Array<[string, number[]]> = [
    ['0xff', [0xff]],
    ['overlong NUL', [0x7b, 0x22, 0xc0, 0x80, 0x22, 0x3a, 0x31, 0x7d]],
    ['UTF-16 surrogate in UTF-8', [0x22, 0xed, 0xa0, 0x80, 0x22]],
    ['truncated sequence', [0x22, 0xe2, 0x82, 0x22]],
    ['Latin-1 text', [0x22, 0xe9, 0x22]],
  ];
  const good = encodeFrame(sampleMessages()[0]!);
  for (const [what, bytes] of bad) {
    const recs = decodeFrame(cat(good, rawRecord(Uint8Array.from(bytes), new Uint8Array([1, 2])), good));
    t.equal(recs.length, 3, `${what}: three records`);
    t.same(normRecords(recs), [{ ok: true, message: norm(sampleMessages()[0]) }, { ok: false, code: PARSE_ERROR }, { ok: true, message: norm(sampleMessages()[0]) }], `${what}: later records still decode`);
    const err = (recs[1] as { error: unknown }).error;
    t.ok(err instanceof ProtocolError, `${what}: the record error is a ProtocolError`);
  }
});

t.test('a header that is not JSON spoils only its own record (PARSE_ERROR)', async (t) => {
  const good = encodeFrame(sampleMessages()[3]!);
  for (const h of ['{', 'nope', "{'a':1}", '{}x', ' ', '{"a":1,}', '[1,]', 'NaN', '{"a":01}', '\u0000']) {
    const records = decodeFrame(cat(rawRecord(h), good));
    t.same(normRecords(records), [{ ok: false, code: PARSE_ERROR }, { ok: true, message: norm(sampleMessages()[3]) }], `${JSON.stringify(h)}`);
  }
});

t.test('a header that is JSON but not an object is still a record (the envelope check is not the codec\'s)', async (t) => {
  const recs = decodeFrame(cat(rawRecord('42'), rawRecord('"s"'), rawRecord('null'), rawRecord('[1,2]')));
  t.same(normRecords(recs), [
    { ok: true, message: 42 },
    { ok: true, message: 's' },
    { ok: true, message: null },
    { ok: true, message: [1, 2] },
  ]);
});

function nested(depth: number, leaf = '0', objects = false): string {
  let s = leaf;
  for (let i = 0; i < depth; i++) s = objects && i % 2 ? `{"k":${s}}` : `[${s}]`;
  return s;
}

t.test(`JSON nesting: ${MAX_JSON_DEPTH} levels pass, one more is PARSE_ERROR (binary and text)`, async (t) => {
  t.equal(MAX_JSON_DEPTH, 16);
  for (const objects of [false, true]) {
    const ok = nested(MAX_JSON_DEPTH, '0', objects);
    const deep = nested(MAX_JSON_DEPTH + 1, '0', objects);
    t.same(normRecords(decodeFrame(rawRecord(ok))), [{ ok: true, message: JSON.parse(ok) }], `${MAX_JSON_DEPTH} levels`);
    t.same(normRecords(decodeFrame(cat(rawRecord(deep), rawRecord('1')))), [{ ok: false, code: PARSE_ERROR }, { ok: true, message: 1 }], `${MAX_JSON_DEPTH + 1} levels`);
    t.ok(decodeText(ok).ok, `text: ${MAX_JSON_DEPTH} levels`);
    const tr = decodeText(deep);
    t.same(tr.ok ? 'ok' : tr.error.code, PARSE_ERROR, `text: ${MAX_JSON_DEPTH + 1} levels`);
  }
  // An empty array or object at the last level is still a level.
  t.same(normRecords(decodeFrame(rawRecord(nested(MAX_JSON_DEPTH, '[]')))), [{ ok: false, code: PARSE_ERROR }]);
  // A byte reference counts its own two levels.
  t.same(normRecords(decodeFrame(rawRecord(nested(MAX_JSON_DEPTH - 2, '{"$b":[0,0]}')))), [{ ok: true, message: JSON.parse(nested(MAX_JSON_DEPTH - 2, '"X"'), (_k, v) => (v === 'X' ? { bytes: '' } : v)) }]);
  t.same(normRecords(decodeFrame(rawRecord(nested(MAX_JSON_DEPTH - 1, '{"$b":[0,0]}')))), [{ ok: false, code: PARSE_ERROR }]);
});

t.test(`JSON size: ${MAX_JSON_CONTAINERS} arrays and objects pass, one more is PARSE_ERROR, judged on the text (binary and text)`, async (t) => {
  t.equal(MAX_JSON_CONTAINERS, 8192);
  // An array of n - 1 empty arrays and objects, alternating: n containers in all, two levels deep.
  const many = (n: number): string => `[${Array.from({ length: n - 1 }, (_, i) => (i % 2 ? '{}' : '[]')).join(',')}]`;
  t.same(normRecords(decodeFrame(rawRecord(many(MAX_JSON_CONTAINERS)))), [{ ok: true, message: JSON.parse(many(MAX_JSON_CONTAINERS)) }], `${MAX_JSON_CONTAINERS}`);
  t.same(normRecords(decodeFrame(cat(rawRecord(many(MAX_JSON_CONTAINERS + 1)), rawRecord('1')))), [{ ok: false, code: PARSE_ERROR }, { ok: true, message: 1 }], `${MAX_JSON_CONTAINERS + 1}: refused, the next record still read`);
  t.ok(decodeText(many(MAX_JSON_CONTAINERS)).ok, `text: ${MAX_JSON_CONTAINERS}`);
  const tr = decodeText(many(MAX_JSON_CONTAINERS + 1));
  t.same(tr.ok ? 'ok' : [tr.error.code, /more than 8192 arrays and objects/.test(tr.error.message)], [PARSE_ERROR, true], `text: ${MAX_JSON_CONTAINERS + 1}`);
  // Counted before parsing: unclosed, so not JSON at all, and yet refused for its size.
  const unclosed = `[${'{},'.repeat(MAX_JSON_CONTAINERS)}`;
  const r = decodeFrame(rawRecord(unclosed))[0]!;
  t.same(r.ok ? 'ok' : [r.error.code, /arrays and objects/.test(r.error.message)], [PARSE_ERROR, true], 'refused unparsed');
  // Brackets inside strings are not arrays.
  t.ok(decodeFrame(rawRecord(JSON.stringify({ a: '[]'.repeat(MAX_JSON_CONTAINERS + 1) })))[0]!.ok, 'brackets in a string pass');
});

t.test('nesting is judged on the text before parsing: brackets in strings do not count, too deep is refused unparsed', async (t) => {
  // Seventeen levels opened and never closed: not JSON at all, yet refused for its depth, which
  // shows the depth was checked before JSON.parse built anything.
  const unclosed = '['.repeat(MAX_JSON_DEPTH + 1);
  for (const r of [decodeFrame(rawRecord(unclosed))[0]!, decodeText(unclosed)]) {
    t.same(r.ok ? 'ok' : [r.error.code, /nested deeper/.test(r.error.message)], [PARSE_ERROR, true], 'refused as too deep');
  }
  // Brackets inside strings (with escaped quotes) are not nesting.
  const text = JSON.stringify({ a: '[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{{{{{{{' });
  t.ok(decodeFrame(rawRecord(text))[0]!.ok, 'brackets in a string pass (binary)');
  t.ok(decodeText(text).ok, 'brackets in a string pass (text)');
});

t.test('the depth check steps over strings whole: escaped quotes and backslashes before a quote, in long strings too', async (t) => {
  const pad = 'x'.repeat(100_000);
  const deep = (inner: string): string => `{"a":${JSON.stringify(inner)},"b":${nested(MAX_JSON_DEPTH)}}`;
  const cases: Array<[string, string]> = [
    ['brackets and escaped quotes inside a long string', `${pad}[[[[[[[[[[[[[[[[[[[\"{{{{{{{{{{{{{{{{{{{{${pad}`],
    ['a string ending in an escaped backslash', `${pad}\\`],
    ['a string ending in a backslash and an escaped quote', `${pad}\\\"`],
  ];
  for (const [what, inner] of cases) {
    // The outer object is one level, so the nesting beside the string reaches one level too many.
    const text = deep(inner);
    const r = decodeFrame(rawRecord(text))[0]!;
    t.same(r.ok ? 'ok' : r.error.code, PARSE_ERROR, `${what}: the nesting after it is still counted (binary)`);
    const tr = decodeText(text);
    t.same(tr.ok ? 'ok' : tr.error.code, PARSE_ERROR, `${what}: the same in a text frame`);
    const shallow = `{"a":${JSON.stringify(inner)},"b":${nested(MAX_JSON_DEPTH - 1)}}`;
    t.ok(decodeFrame(rawRecord(shallow))[0]!.ok, `${what}: within the limit it parses (binary)`);
    t.ok(decodeText(shallow).ok, `${what}: within the limit it parses (text)`);
  }
  // An unterminated string: not JSON, and not mistaken for nesting either.
  const open = `{"a":"${pad}[[[[[[[[[[[[[[[[[[[[`;
  const u = decodeText(open);
  t.same(u.ok ? 'ok' : [u.error.code, /nested deeper/.test(u.error.message)], [PARSE_ERROR, false], 'an unterminated string is a JSON error, not a depth error');
});

t.test('large base64 strings decode as the small ones do (node\'s decoder past 16384 characters)', async (t) => {
  for (const n of [12_287, 12_288, 12_289, 100_000]) {
    const bytes = new Uint8Array(n);
    for (let i = 0; i < n; i++) bytes[i] = (i * 131 + 7) & 0xff;
    const s = bytesToBase64(bytes);
    const back = base64ToBytes(s);
    t.equal(hex(back.subarray(0, 64)) + hex(back.subarray(back.length - 64)), hex(bytes.subarray(0, 64)) + hex(bytes.subarray(bytes.length - 64)), `${n} bytes: both ends`);
    t.ok(Buffer.from(back).equals(Buffer.from(bytes)), `${n} bytes: every byte`);
    t.equal(back.byteLength, back.buffer.byteLength, `${n} bytes: the result owns its memory`);
  }
  // The unused bits of the last character are ignored, as the small decoder does.
  const long = 'A'.repeat(20_000);
  t.same(hex(base64ToBytes(`${long}QR==`).subarray(-1)), hex(base64ToBytes(`${long}QQ==`).subarray(-1)), 'QR== reads as QQ==');
  t.same(hex(base64ToBytes('QR==')), hex(base64ToBytes('QQ==')), 'and so does the small decoder');
});

t.test('very deep JSON (a whole megabyte of brackets) is PARSE_ERROR, not a crash', async (t) => {
  const n = MAX_HEADER_BYTES / 2;
  const h = '['.repeat(n) + ']'.repeat(n);
  const recs = decodeFrame(rawRecord(h));
  t.same(normRecords(recs), [{ ok: false, code: PARSE_ERROR }]);
  const tr = decodeText(h);
  t.equal(tr.ok ? 'ok' : tr.error.code, PARSE_ERROR);
});

t.test('byte references outside the record data are BAD_FRAME for that record only', async (t) => {
  const data = new Uint8Array(4);
  const good = rawRecord('{"$b":[0,4]}', data);
  for (const ref of ['[0,5]', '[4,1]', '[5,0]', '[3,2]', '[4294967295,1]', '[1,4294967295]']) {
    const recs = decodeFrame(cat(rawRecord(`{"jsonrpc":"2.0","id":1,"params":{"a":[{"$b":${ref}}]}}`, data), good));
    t.same(normRecords(recs), [{ ok: false, code: BAD_FRAME }, { ok: true, message: { bytes: '00000000' } }], `ref ${ref}`);
  }
  t.same(normRecords(decodeFrame(rawRecord('{"$b":[0,1]}'))), [{ ok: false, code: BAD_FRAME }], 'any reference into empty data');
});

t.test('malformed byte references are BAD_FRAME for that record only', async (t) => {
  const data = new Uint8Array(8);
  const good = rawRecord('{"ok":true}');
  for (const ref of ['[0]', '[]', '[0,1,2]', '[-1,1]', '[0,-1]', '[0.5,1]', '[0,1.5]', '["0",1]', '[0,"1"]', '[null,1]', '[true,1]', '"0,1"', 'null', '{}', '5', '[0,4294967296]', '[1e300,0]', '[[0],1]']) {
    const recs = decodeFrame(cat(rawRecord(`{"params":{"x":{"$b":${ref}}}}`, data), good));
    t.same(normRecords(recs), [{ ok: false, code: BAD_FRAME }, { ok: true, message: { ok: true } }], `$b ${ref}`);
  }
});

t.test('a header both too deep and with a bad byte reference is PARSE_ERROR, whichever comes first', async (t) => {
  const data = new Uint8Array(4);
  const deep = nested(MAX_JSON_DEPTH, '1');
  for (const ref of ['"x"', '[0,5]']) {
    for (const h of [`{"a":{"$b":${ref}},"b":${deep}}`, `{"b":${deep},"a":{"$b":${ref}}}`]) {
      t.same(normRecords(decodeFrame(rawRecord(h, data))), [{ ok: false, code: PARSE_ERROR }], h.slice(0, 40));
    }
  }
  // With the depth in bounds, the bad reference is what is wrong.
  t.same(normRecords(decodeFrame(rawRecord(`{"a":{"$b":[0,5]},"b":${nested(MAX_JSON_DEPTH - 2, '1')}}`, data))), [{ ok: false, code: BAD_FRAME }]);
});

t.test('bad base64 in a text frame is PARSE_ERROR', async (t) => {
  for (const s of ['"abc"', '"a==="', '"===="', '"ab=c"', '"YQ==YQ=="', '"YQ== "', '"YQ==\\n"', '"Y Q=="', '"YQ-_"', '"é==="', '123', 'null', '["YQ=="]', '{"x":"YQ=="}']) {
    const rec = decodeText(`{"jsonrpc":"2.0","method":"m","params":{"v":{"$base64":${s}}}}`);
    t.equal(rec.ok ? 'ok' : rec.error.code, PARSE_ERROR, `$base64 ${s}`);
  }
  for (const s of ['""', '"YQ=="', '"YWI="', '"YWJj"', '"+/+/"']) {
    t.ok(decodeText(`{"v":{"$base64":${s}}}`).ok, `$base64 ${s} is fine`);
  }
});

t.test('a text frame that is not JSON is PARSE_ERROR', async (t) => {
  for (const s of ['', '{', 'hello', '{"a":1} {"b":2}', '[1,2']) {
    const rec = decodeText(s);
    t.equal(rec.ok ? 'ok' : rec.error.code, PARSE_ERROR, JSON.stringify(s));
  }
});

// ---------------------------------------------------------------- garbage and mutations

/** How often each path was taken, so a fuzz run that never reaches the JSON or reference checks fails. */
interface Paths {
  frameErrors: number;
  okRecords: number;
  parseErrors: number;
  refErrors: number;
}

function newPaths(): Paths {
  return { frameErrors: 0, okRecords: 0, parseErrors: 0, refErrors: 0 };
}

/** decodeFrame outcome in a comparable form; fails the test on anything but records or a ProtocolError. */
function outcome(t: Test, frame: Uint8Array, what: string, paths: Paths = newPaths()): string {
  try {
    const recs = decodeFrame(frame);
    for (const r of recs) {
      if (r.ok) paths.okRecords++;
      else if (r.error.code === PARSE_ERROR) paths.parseErrors++;
      else if (r.error.code === BAD_FRAME) paths.refErrors++;
      if (r.ok) continue;
      if (!(r.error instanceof ProtocolError) || (r.error.code !== PARSE_ERROR && r.error.code !== BAD_FRAME)) {
        t.fail(`${what}: record error ${String(r.error)}`);
      }
    }
    return JSON.stringify(normRecords(recs));
  } catch (err) {
    if (err instanceof ProtocolError) {
      if (err.code !== BAD_FRAME) t.fail(`${what}: thrown code ${err.code}`);
      paths.frameErrors++;
      return 'BAD_FRAME';
    }
    t.fail(`${what}: threw ${String(err)} (${hex(frame).slice(0, 200)})`);
    return 'other';
  }
}

/** Garbage that often gets past the length checks, so the JSON and reference paths are exercised too. */
function garbageFrame(r: () => number): Uint8Array {
  const kind = r();
  if (kind < 0.3) return randBytes(r, randInt(r, 0, 64));
  const parts: Uint8Array[] = [];
  const records = randInt(r, 1, 4);
  const alphabet = '{}[]",:$b0123456789-.e truenfalsl\\u$base64AQ=';
  for (let i = 0; i < records; i++) {
    let h = '';
    const hl = randInt(r, 1, 40);
    for (let j = 0; j < hl; j++) h += alphabet[randInt(r, 0, alphabet.length - 1)];
    if (r() < 0.3) h = `{"$b":[${randInt(r, 0, 6)},${randInt(r, 0, 6)}]}`;
    const hb = enc.encode(h);
    const data = randBytes(r, randInt(r, 0, 5));
    const lie = r() < 0.2 ? randInt(r, -3, 3) : 0;
    parts.push(u32le(Math.max(0, hb.length + lie)), hb, u32le(r() < 0.1 ? randInt(r, 0, 0xffffffff) : data.length), data);
  }
  return cat(...parts);
}

function mutate(r: () => number, frame: Uint8Array): Uint8Array {
  const b = Array.from(frame);
  const edits = randInt(r, 1, 4);
  for (let i = 0; i < edits; i++) {
    const op = randInt(r, 0, 5);
    const at = randInt(r, 0, Math.max(0, b.length - 1));
    switch (op) {
      case 0: // flip a bit
        if (b.length) b[at] = b[at]! ^ (1 << randInt(r, 0, 7));
        break;
      case 1: // overwrite a byte
        if (b.length) b[at] = randInt(r, 0, 255);
        break;
      case 2: // insert bytes
        b.splice(at, 0, ...randBytes(r, randInt(r, 1, 4)));
        break;
      case 3: // delete bytes
        b.splice(at, randInt(r, 1, 4));
        break;
      case 4: // truncate
        b.length = at;
        break;
      case 5: // duplicate a run
        b.splice(at, 0, ...b.slice(at, at + randInt(r, 1, 16)));
        break;
    }
  }
  return Uint8Array.from(b);
}

t.test(`random garbage frames: records or a ProtocolError, never anything else (seed ${SEED})`, async (t) => {
  const r = rng(SEED + 2);
  const started = Date.now();
  const paths = newPaths();
  for (let i = 0; i < 4000; i++) {
    const frame = garbageFrame(r);
    outcome(t, frame, `garbage #${i}`, paths);
  }
  t.ok(paths.frameErrors > 0 && paths.okRecords > 0 && paths.parseErrors > 0 && paths.refErrors > 0, `every path reached: ${JSON.stringify(paths)}`);
  t.ok(Date.now() - started < 30000, 'no input makes the decoder slow');
});

t.test(`random mutations of valid frames: records or a ProtocolError, never anything else (seed ${SEED})`, async (t) => {
  const r = rng(SEED + 3);
  const b = new FrameBuilder();
  const msgs = sampleMessages();
  const valid = [...msgs.map((m) => encodeFrame(m)), (msgs.forEach((m) => b.add(m)), b.finish())];
  const started = Date.now();
  const paths = newPaths();
  for (let i = 0; i < 4000; i++) {
    const frame = mutate(r, valid[i % valid.length]!);
    outcome(t, frame, `mutation #${i}`, paths);
  }
  t.ok(paths.frameErrors > 0 && paths.okRecords > 0 && paths.parseErrors > 0, `frame errors, good records and parse errors all seen: ${JSON.stringify(paths)}`);
  t.ok(Date.now() - started < 30000, 'no input makes the decoder slow');
});

t.test('random valid messages with byte strings round-trip through binary and text frames', async (t) => {
  const r = rng(SEED + 4);
  const value = (depth: number): unknown => {
    const k = r();
    if (depth >= 5 || k < 0.3) {
      const p = r();
      if (p < 0.3) return randBytes(r, randInt(r, 0, 12));
      if (p < 0.5) return randInt(r, -1e6, 1e6);
      if (p < 0.6) return r() < 0.5;
      if (p < 0.7) return null;
      return 'str' + randInt(r, 0, 99);
    }
    if (k < 0.6) return Array.from({ length: randInt(r, 0, 4) }, () => value(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = randInt(r, 0, 4); i > 0; i--) o['k' + randInt(r, 0, 9)] = value(depth + 1);
    return o;
  };
  let bad = 0;
  for (let i = 0; i < 500; i++) {
    const msg = { jsonrpc: '2.0', id: i, method: 'm', params: { v: value(0) } };
    const want = JSON.stringify(norm(msg));
    const [rec] = decodeFrame(encodeFrame(msg));
    const tr = decodeText(encodeText(msg));
    if (!rec?.ok || JSON.stringify(norm(rec.message)) !== want || !tr.ok || JSON.stringify(norm(tr.message)) !== want) bad++;
  }
  t.equal(bad, 0, '500 random messages');
});
