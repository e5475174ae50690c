/**
 * decodeFrameParts (proto/src/codec.ts): a frame that arrived in parts decodes to the records
 * decodeFrame finds in the joined frame, with the same errors, whatever the cuts; a compact
 * WSPSend's buffers stay views of the parts. splitFrame and splitFrameParts check a frame's
 * structure at once and parse each header only when its record is asked for. Random inputs come from a seeded generator; set
 * SPIWIRE_SEED to replay a run.
 */
import t from 'tap';
import { BAD_FRAME, FrameBuilder, MAX_BUFFER_COUNT, PARSE_ERROR, ProtocolError, decodeFrame, decodeFrameParts, splitFrame, splitFrameParts, type DecodedRecord } from '../src/index.js';
import { rng } from './helpers/random.js';
import { cat, hex, norm, rawRecord } from './helpers/records.js';

const SEED = Number(process.env['SPIWIRE_SEED'] ?? 0xf4a9);

/** Records in a comparable form; a WSPSend's buffers as the one send they make (cuts may split them). */
function comparable(recs: DecodedRecord[]): unknown[] {
  return recs.map((r) => {
    if (!r.ok) return { ok: false, code: r.error.code, message: r.error.message };
    const m = r.message as { method?: string; params?: { buffers?: Uint8Array[] } };
    if (m.method === 'WSPSend' && Array.isArray(m.params?.buffers)) {
      const joined = cat(...m.params.buffers);
      return { ok: true, compact: r.compact === true, message: norm({ ...m, params: { ...m.params, buffers: { send: hex(joined) } } }) };
    }
    return { ok: true, compact: r.compact === true, message: norm(m) };
  });
}

function outcome(fn: () => DecodedRecord[]): { records: unknown[] } | { error: string } {
  try {
    return { records: comparable(fn()) };
  } catch (err) {
    if (err instanceof ProtocolError) return { error: `${err.code}: ${err.message}` };
    return { error: `not a ProtocolError: ${String(err)}` };
  }
}

/** frame cut at the given offsets (in order, duplicates make empty parts). */
function cut(frame: Uint8Array, at: number[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const a of at) {
    parts.push(frame.subarray(from, a));
    from = a;
  }
  parts.push(frame.subarray(from));
  return parts;
}

function randomCuts(r: () => number, length: number): number[] {
  const n = Math.floor(r() * 8);
  return Array.from({ length: n }, () => Math.floor(r() * (length + 1))).sort((a, b) => a - b);
}

function bytes(r: () => number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

/** A frame of a few records: compact and JSON WSPSends, other calls with byte strings, a reply. */
function randomFrame(r: () => number): Uint8Array {
  const b = new FrameBuilder();
  b.compact = r() < 0.7;
  const records = 1 + Math.floor(r() * 4);
  for (let i = 0; i < records; i++) {
    const kind = r();
    if (kind < 0.6) {
      const buffers = Array.from({ length: Math.floor(r() * 5) }, () => bytes(r, r() < 0.3 ? 0 : Math.floor(r() * 3000)));
      b.add({ jsonrpc: '2.0', id: i + 1, method: 'WSPSend', params: { s: 256 + i, buffers, flags: 0 } });
    } else if (kind < 0.8) {
      b.add({ jsonrpc: '2.0', id: i + 1, method: 'WSPIoctl', params: { s: 256, code: 0x8004667e, input: bytes(r, Math.floor(r() * 600)), outputLength: 4 } });
    } else {
      b.add({ jsonrpc: '2.0', id: i + 1, result: { ret: 0, errno: 0, data: bytes(r, Math.floor(r() * 900)), bytesRecvd: 3, flags: 0 } });
    }
  }
  return b.finish();
}

t.test(`the same records and errors as decodeFrame, cut anywhere (seed ${SEED})`, async (t) => {
  const r = rng(SEED);
  let compared = 0;
  let broken = 0;
  for (let i = 0; i < 400; i++) {
    let frame = randomFrame(r);
    // A quarter are spoiled: cut short, a byte changed, or garbage appended.
    const spoil = r();
    if (spoil < 0.1) frame = frame.subarray(0, Math.floor(r() * frame.length));
    else if (spoil < 0.2) {
      frame = Uint8Array.from(frame);
      frame[Math.floor(r() * frame.length)] = Math.floor(r() * 256);
    } else if (spoil < 0.25) frame = cat(frame, bytes(r, 1 + Math.floor(r() * 12)));
    const whole = outcome(() => decodeFrame(frame));
    const parts = cut(frame, randomCuts(r, frame.length));
    const inParts = outcome(() => decodeFrameParts(parts));
    if ('error' in whole) broken++;
    if (JSON.stringify(whole) !== JSON.stringify(inParts)) {
      t.same(inParts, whole, `frame ${i} (${frame.length} bytes) in ${parts.length} parts`);
      return;
    }
    compared++;
  }
  t.equal(compared, 400, `400 frames decoded alike, ${broken} of them refused whole`);
  t.ok(broken > 0 && broken < 400, 'both good and refused frames were among them');
});

t.test('splitFrame checks the whole structure at once and parses each header when asked, whole or in parts', async (t) => {
  const headers = ['{"jsonrpc":"2.0","id":1,"method":"m"}', 'not json', '{"jsonrpc":"2.0","id":3,"method":"m","params":{"b":{"$b":[1,2]}}}'];
  const data = [new Uint8Array(0), new Uint8Array([1, 2, 3]), new Uint8Array([7, 8, 9])];
  const frame = cat(...headers.map((h, i) => rawRecord(h, data[i])));
  for (const [what, split] of [
    ['whole', () => splitFrame(frame)],
    ['in parts cut inside headers and lengths', () => splitFrameParts(cut(frame, [3, 20, 45, 60]))],
  ] as const) {
    const f = split();
    t.equal(f.length, 3, `${what}: three records`);
    t.same([f.size(0), f.size(1), f.size(2)], headers.map((h, i) => h.length + data[i]!.length), `${what}: each record's header and data bytes`);
    // Asked out of order: a record's parse does not depend on the others.
    const third = f.record(2);
    t.same(third.ok ? norm(third.message) : null, { jsonrpc: '2.0', id: 3, method: 'm', params: { b: { bytes: '0809' } } }, `${what}: the third record, asked first`);
    const second = f.record(1);
    t.equal(second.ok ? null : second.error.code, PARSE_ERROR, `${what}: a header that is not JSON spoils its record only, when it is parsed`);
    t.ok(f.record(0).ok, `${what}: the first record`);
  }
  // A truncated last record spoils the frame before any header is parsed, whatever the headers hold.
  const truncated = cat(rawRecord('not json'), rawRecord('{}', new Uint8Array(4)).subarray(0, 12));
  t.throws(() => splitFrame(truncated), new ProtocolError(BAD_FRAME, 'frame ends inside a record (truncated)'), 'truncated: BAD_FRAME from the split');
  t.throws(() => splitFrameParts(cut(truncated, [5, 13])), new ProtocolError(BAD_FRAME, 'frame ends inside a record (truncated)'), 'truncated, in parts: the same');
});

t.test('an empty frame in parts is BAD_FRAME, as whole', async (t) => {
  t.same(outcome(() => decodeFrameParts([new Uint8Array(0), new Uint8Array(0)])), outcome(() => decodeFrame(new Uint8Array(0))));
});

t.test("a compact WSPSend's buffers are views of the parts, split where the parts are cut", async (t) => {
  const payload = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 31) & 0xff);
  const b = new FrameBuilder();
  b.compact = true;
  b.add({ jsonrpc: '2.0', id: 9, method: 'WSPSend', params: { s: 300, buffers: [payload.subarray(0, 70_000), payload.subarray(70_000)], flags: 0 } });
  const frame = b.finish();
  // Reads of 64 KiB, as node makes them.
  const parts = cut(frame, [65536, 131072, 196608].filter((a) => a < frame.length));
  const [rec] = decodeFrameParts(parts);
  t.ok(rec?.ok && rec.compact, 'one compact record');
  const buffers = ((rec as { message: { params: { buffers: Uint8Array[] } } }).message.params.buffers);
  t.ok(buffers.length > 2, `the two WSABUFs came out as ${buffers.length} views`);
  t.ok(buffers.every((v) => parts.some((p) => p.buffer === v.buffer)), 'every one a view of a part: nothing copied');
  t.equal(hex(cat(...buffers)), hex(payload), 'together, the bytes of the send, in order');
});

t.test(`a WSPSend of ${MAX_BUFFER_COUNT} buffers cut into parts is joined rather than pass ${MAX_BUFFER_COUNT} buffers`, async (t) => {
  const buffers = Array.from({ length: MAX_BUFFER_COUNT }, (_, i) => Uint8Array.of(i & 0xff, 7));
  const b = new FrameBuilder();
  b.compact = true;
  b.add({ jsonrpc: '2.0', id: 1, method: 'WSPSend', params: { s: 300, buffers, flags: 0 } });
  const frame = b.finish();
  const parts = cut(frame, [frame.length - 1500, frame.length - 700, frame.length - 3]);
  const [rec] = decodeFrameParts(parts);
  const out = (rec as { message: { params: { buffers: Uint8Array[] } } }).message.params.buffers;
  t.equal(out.length, MAX_BUFFER_COUNT, `still ${MAX_BUFFER_COUNT} buffers`);
  t.equal(hex(cat(...out)), hex(cat(...buffers)), 'the same bytes');
});
