/** Which messages are counted for session resume (README section 20): all but an ack alone. */
import t from 'tap';
import * as P from '../src/index.js';

function frame(...messages: object[]): Uint8Array {
  const b = new P.FrameBuilder((n) => new Uint8Array(n), 256);
  for (const m of messages) b.add(m);
  return b.finish();
}

const ack = { jsonrpc: '2.0', method: 'spiwire.ack', params: { received: 7 } };

t.test('a frame holding only spiwire.ack is not counted; anything else is', async (t) => {
  t.ok(P.isAckOnlyMessage(frame(ack), true), 'an ack alone');
  t.ok(P.isAckOnlyMessage(new TextEncoder().encode(JSON.stringify(ack)), false), 'an ack alone as text');
  t.notOk(P.isAckOnlyMessage(frame(ack, { jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 1, data: new Uint8Array(3) } }), true), 'an ack with another record');
  t.notOk(P.isAckOnlyMessage(frame({ ...ack, id: 1 }), true), 'an ack with an id (a request, answered)');
  t.notOk(P.isAckOnlyMessage(frame({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 1, error: 0, bytes: 1, flags: 0 } }), true), 'another notification');
  t.notOk(P.isAckOnlyMessage(frame({ jsonrpc: '2.0', method: 'WSPSend', params: { s: 1, buffers: [new Uint8Array(1000)], flags: 0 } }), true), 'a large frame is never looked into');
  const compact = new P.FrameBuilder((n) => new Uint8Array(n), 256);
  compact.compact = true;
  compact.add({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 1, error: 0, bytes: 1, flags: 0 } });
  const completion = compact.finish();
  t.ok(completion[4]! < 0x09, 'a compact completion (its header starts with its kind)');
  t.notOk(P.isAckOnlyMessage(completion, true), 'is counted');
  t.notOk(P.isAckOnlyMessage(new Uint8Array([1, 2, 3]), true), 'garbage');
  t.notOk(P.isAckOnlyMessage(new Uint8Array([255, 255, 255, 255, 0, 0, 0, 0]), true), 'a length beyond the message');
  t.notOk(P.isAckOnlyMessage(new TextEncoder().encode('{"method":"spiwire.ack"'), false), 'bad JSON');
});

t.test('the rule is exact (section 20): one spelling, the bytes ackHeader writes, with no data', async (t) => {
  const enc = new TextEncoder();
  const record = (header: string, data = new Uint8Array(0)): Uint8Array => {
    const h = enc.encode(header);
    const out = new Uint8Array(8 + h.length + data.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, h.length, true);
    out.set(h, 4);
    v.setUint32(4 + h.length, data.length, true);
    out.set(data, 8 + h.length);
    return out;
  };
  const plain = '{"jsonrpc":"2.0","method":"spiwire.ack","params":{"received":7}}';
  t.ok(P.isAckOnlyMessage(record(plain), true), 'the exact spelling, as the one record');
  t.ok(P.isAckOnlyMessage(enc.encode(plain), false), 'and as a text frame');
  t.ok(P.isAckOnlyMessage(record(plain.replace('7', '4294967295')), true), 'the largest count');
  for (const [what, header] of [
    ['a space', plain.replace('"method":', '"method": ')],
    ['another key order', '{"method":"spiwire.ack","jsonrpc":"2.0","params":{"received":7}}'],
    ['the method spelled with an escape', plain.replace('spiwire.ack', 'spiwire\\u002eack')],
    ['an escaped method beside a plain "spiwire.ack" string', '{"jsonrpc":"2.0","method":"spiwire\\u002eack","params":{"received":7},"x":"spiwire.ack"}'],
    ['a leading zero', plain.replace('7', '07')],
    ['a count past a u32', plain.replace('7', '4294967296')],
    ['an id', '{"jsonrpc":"2.0","id":1,"method":"spiwire.ack","params":{"received":7}}'],
  ] as const) t.notOk(P.isAckOnlyMessage(record(header), true), `${what}: counted`);
  t.notOk(P.isAckOnlyMessage(record(plain, new Uint8Array(1)), true), 'a record with data: counted');
  t.notOk(P.isAckOnlyMessage(enc.encode(`\ufeff${plain}`), false), 'a text frame with a byte order mark: counted');
});

t.test('ReceiveCounter: the timer acknowledges only a message that has waited the delay, not one younger', async (t) => {
  const call = P.encodeFrame({ jsonrpc: '2.0', id: 1, method: 'WSPListen', params: { s: 1, backlog: 1 } });
  // Long beside the 100 ms pause below, so that a slow machine cannot make the timer fire first.
  const delayMs = 1000;
  let asked = 0;
  let wake: () => void = () => undefined;
  const counter = new P.ReceiveCounter(() => {
    asked++;
    wake();
  }, delayMs);
  t.teardown(() => counter.stop());
  const nextAsk = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  // The first message arms the timer; the ACK_EVERY-th, 100 ms later, is acknowledged by count.
  counter.count(call, true);
  await new Promise((resolve) => setTimeout(resolve, 100));
  for (let i = 1; i < P.ACK_EVERY; i++) counter.count(call, true);
  t.equal(asked, 1, 'due by count');
  t.equal(counter.take(), P.ACK_EVERY);
  // One more message: the timer, armed by the first, fires about 900 ms after it.
  const later = nextAsk();
  const countedAt = performance.now();
  counter.count(call, true);
  await later;
  // Timers fire late, never early (libuv's clock is in whole milliseconds: 1 ms of slack).
  t.ok(performance.now() - countedAt >= delayMs - 1, `acknowledged ${(performance.now() - countedAt).toFixed(1)} ms after it was counted, not before the delay`);
  t.equal(asked, 2, 'asked once, when the message had waited the delay');
  t.equal(counter.take(), P.ACK_EVERY + 1);
});

t.test('ReceiveCounter: an ack every ACK_EVERY messages at once, else one ACK_DELAY_MS after the first not acknowledged', async (t) => {
  const call = P.encodeFrame({ jsonrpc: '2.0', id: 1, method: 'WSPListen', params: { s: 1, backlog: 1 } });
  let asked = 0;
  let wake: () => void = () => undefined;
  const counter = new P.ReceiveCounter(() => {
    asked++;
    wake();
  });
  t.teardown(() => counter.stop());
  const nextAsk = (): Promise<void> => new Promise((resolve) => (wake = resolve));
  for (let i = 0; i < P.ACK_EVERY - 1; i++) counter.count(call, true);
  t.equal(asked, 0, 'not yet due');
  counter.count(call, true);
  t.equal(asked, 1, 'due at the ACK_EVERY-th message, at once');
  t.equal(counter.take(), P.ACK_EVERY);
  t.equal(counter.take(), null, 'nothing new to acknowledge');
  // The timer armed by the first message is still running; one more message is acknowledged by a timer.
  const later = nextAsk();
  counter.count(call, true);
  await later;
  t.equal(asked, 2, 'asked once more, for the one message');
  t.equal(counter.take(), P.ACK_EVERY + 1);
  counter.count(P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received: 3 } }), true);
  t.equal(counter.received, P.ACK_EVERY + 1, 'an ack alone is not counted');
});
