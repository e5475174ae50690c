/**
 * The acknowledgement's direct spelling (proto/src/ack-header.ts): the bytes FrameBuilder writes
 * for a spiwire.ack are JSON.stringify's, and decoding any header, ack-like or not, gives what the
 * generic JSON path gives (the message, or the same error).
 */
import t from 'tap';
import fc from 'fast-check';
import { FrameBuilder, decodeFrame, isAckOnlyMessage, type DecodedRecord } from '../src/index.js';
import { ackHeaderCount } from '../src/ack-header.js';
import { cat, rawRecord } from './helpers/records.js';

const te = new TextEncoder();
const ackJson = (received: unknown): string => JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received } });

/** The one record of a frame FrameBuilder made with fill. */
function built(fill: (b: FrameBuilder) => void, compact = false): Uint8Array {
  const b = new FrameBuilder();
  b.compact = compact;
  fill(b);
  return b.finish();
}

/** What the generic path makes of a JSON header: JSON.parse, or PARSE_ERROR when that throws. */
function generic(json: string): DecodedRecord {
  try {
    return { ok: true, message: JSON.parse(json) as unknown };
  } catch {
    return { ok: false, error: null as never };
  }
}

t.test('addAck and an ack passed to addCall write exactly the bytes of add() (JSON.stringify)', async (t) => {
  for (const compact of [false, true]) {
    for (const n of [0, 1, 9, 10, 32, 4096, 2 ** 31, 2 ** 32 - 1]) {
      const viaAdd = built((b) => b.add({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received: n } }), compact);
      t.same(built((b) => b.addAck(n), compact), viaAdd, `addAck(${n})${compact ? ', compact builder' : ''}`);
      t.same(built((b) => b.addCall(null, 'spiwire.ack', { received: n }), compact), viaAdd, `addCall ack ${n}`);
      t.same(built((b) => b.addCall(null, 'spiwire.ack', { received: n }), compact), cat(rawRecord(ackJson(n), new Uint8Array(0))), 'the record is the JSON header and no data');
    }
  }
  // Counts the direct spelling does not take go through add(), still as JSON.stringify writes them.
  for (const n of [2 ** 32, 10 ** 15, 2 ** 53 + 2, 1.5, -1]) {
    t.same(built((b) => b.addAck(n)), cat(rawRecord(ackJson(n), new Uint8Array(0))), `addAck(${n}) falls back to add()`);
  }
  t.same(built((b) => b.addCall(null, 'spiwire.ack', { received: 3, extra: 1 })), cat(rawRecord(ackJson(3).replace('3}', '3,"extra":1}'), new Uint8Array(0))), 'other params are not dropped');
});

t.test('an ack frame decodes to the message JSON.parse gives, and counts as ack-only when its count is a u32', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), (n) => {
      const frame = built((b) => b.addAck(n));
      const [rec] = decodeFrame(frame);
      // A u32 count comes from the fixed layout (shaped); a larger one from JSON.parse.
      t.same(rec, { ok: true, message: JSON.parse(ackJson(n)) as unknown, ...(n <= 0xffffffff ? { shaped: true } : {}) });
      // Only the exact spelling of a u32 count is an ack alone (section 20); a larger count is
      // not a valid ack, and its message counts.
      t.equal(isAckOnlyMessage(frame, true), n <= 0xffffffff);
    }),
    { seed: 17, numRuns: 300 },
  );
});

t.test('headers that only look like an ack take the generic path, with its result', async (t) => {
  const start = '{"jsonrpc":"2.0","method":"spiwire.ack","params":{"received":';
  const cases = [
    `${start}}}`, // no digits
    `${start}07}}`, // leading zero: not JSON
    `${start}4294967296}}`, // beyond a u32
    `${start}12345678901}}`, // 11 digits
    `${start}-1}}`,
    `${start}1e3}}`,
    `${start}12 }}`,
    `${start}12}}}`,
    `${start}12}`,
    `${start}"5"}}`,
    `${start.replace('"2.0"', '"1.0"')}5}}`,
    `${start.replace('spiwire.ack', 'spiwire.acx')}5}}`,
    `{"jsonrpc":"2.0","method":"spiwire.ack","params":{"received":5},"id":1}`,
    `{ "jsonrpc":"2.0","method":"spiwire.ack","params":{"received":5}}`,
  ];
  for (const json of cases) {
    t.equal(ackHeaderCount(te.encode(json)), -1, `not the direct spelling: ${json}`);
    const [rec] = decodeFrame(cat(rawRecord(json, new Uint8Array(0))));
    const want = generic(json);
    if (want.ok) t.same(rec, want, `decoded as JSON.parse does: ${json}`);
    else t.equal(rec!.ok, false, `refused as JSON.parse does: ${json}`);
  }
  // The direct spelling with record data: decoded by the generic path (the data is not referenced).
  const [withData] = decodeFrame(cat(rawRecord(ackJson(5), new Uint8Array([1, 2, 3]))));
  t.same(withData, { ok: true, message: JSON.parse(ackJson(5)) as unknown });
  t.equal(ackHeaderCount(te.encode(ackJson(4294967295))), 4294967295, 'the largest u32 is read');
  t.same(decodeFrame(cat(rawRecord(ackJson(7), new Uint8Array(0))))[0], { ok: true, message: JSON.parse(ackJson(7)) as unknown, shaped: true }, 'marked shaped');
});
