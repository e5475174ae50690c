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
  t.notOk(P.isAckOnlyMessage(new Uint8Array([1, 2, 3]), true), 'garbage');
  t.notOk(P.isAckOnlyMessage(new Uint8Array([255, 255, 255, 255, 0, 0, 0, 0]), true), 'a length beyond the message');
  t.notOk(P.isAckOnlyMessage(new TextEncoder().encode('{"method":"spiwire.ack"'), false), 'bad JSON');
});
