/**
 * The SDK's connection (src/rpc.ts) against a stand-in daemon on loopback (helpers/fake-daemon.ts):
 * the welcome, calls packed into frames and flushed, replies matched by id, notifications, JSON-RPC
 * errors, and what the SDK does with records it cannot use. Every wait is on an event.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { ConnectionClosedError, RpcConnection, SpiwireProtocolError, type RpcOptions } from '../src/rpc.js';
import { enc, fakeDaemon, frameOf, LIMITS, rawRecord, welcome, type Peer } from './helpers/fake-daemon.js';

async function pair(t: Test, first?: Uint8Array | string, opts: RpcOptions = {}): Promise<{ conn: RpcConnection; peer: Peer }> {
  const d = await fakeDaemon(t, first);
  const [conn, peer] = await Promise.all([RpcConnection.open(d.url, opts), d.peer()]);
  t.teardown(() => conn.terminate());
  return { conn, peer };
}

/** A compact reply header (proto/README.md, section 3): kind 2, flag bits, count 0, id, ret, errno. */
function compactReply(id: number, bits: number): Uint8Array {
  const h = Buffer.alloc(16);
  h[0] = 2;
  h[1] = bits;
  h.writeUInt32LE(id, 4);
  return h;
}

t.test('open: the welcome gives the limits; records packed behind it are read', async (t) => {
  const first = frameOf(welcome({ compactHeaders: true }), P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 1, events: 1 } }));
  const { conn } = await pair(t, first);
  t.equal(conn.welcome.session, 'unit');
  t.same(conn.welcome.limits, LIMITS);
  t.equal(conn.welcome.compactHeaders, true);
  t.ok(conn.isOpen);
});

t.test('open fails when the first message is not spiwire.welcome', async (t) => {
  const d = await fakeDaemon(t, P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.completion', params: {} }));
  await t.rejects(RpcConnection.open(d.url), /the first message was not spiwire.welcome/);
});

t.test('open fails when the welcome carries no limits', async (t) => {
  const d = await fakeDaemon(t, P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.welcome', params: { session: 'x' } }));
  await t.rejects(RpcConnection.open(d.url), /the first message was not spiwire.welcome/);
});

t.test('open fails when no welcome comes in time', async (t) => {
  const d = await fakeDaemon(t, null);
  await t.rejects(RpcConnection.open(d.url, { connectTimeoutMs: 50 }), /no welcome from .* within 50 ms/);
});

t.test('a call is answered by the reply with its id, whatever the order of the replies', async (t) => {
  const { conn, peer } = await pair(t);
  const a = conn.call('WSPListen', { s: 1, backlog: 5 });
  const b = conn.call('WSPShutdown', { s: 1, how: 1 });
  const ra = await peer.request();
  const rb = await peer.request();
  t.same([ra.method, ra.params], ['WSPListen', { s: 1, backlog: 5 }]);
  t.same([rb.method, rb.params], ['WSPShutdown', { s: 1, how: 1 }]);
  t.not(ra.id, rb.id, 'each call has its own id');
  peer.reply(rb, { ret: 7 });
  peer.reply(ra, { ret: 3 });
  t.same(await a, { ret: 3, errno: 0 });
  t.same(await b, { ret: 7, errno: 0 });
});

t.test('calls made together go in one frame; a frame holds at most 64 records', async (t) => {
  const { conn, peer } = await pair(t);
  const calls = [];
  for (let i = 0; i < 65; i++) calls.push(conn.call('WSPListen', { s: i, backlog: 1 }));
  await peer.untilFrames(2);
  t.same(
    peer.frames.map((f) => f.length),
    [64, 1],
    'flushed at 64 records, the rest on the microtask',
  );
  for (let i = 0; i < 65; i++) peer.reply(await peer.request());
  await Promise.all(calls);
});

t.test('a call that would take the frame past maxFrameBytes goes in the next frame', async (t) => {
  const { conn, peer } = await pair(t, welcome({ limits: { ...LIMITS, maxFrameBytes: 200 * 1024 } }));
  const big = new Uint8Array(80 * 1024);
  const calls = [conn.call('WSPSend', { s: 1, buffers: [big], flags: 0 }), conn.call('WSPSend', { s: 1, buffers: [big], flags: 0 })];
  await peer.untilFrames(2);
  t.same(
    peer.frames.map((f) => f.length),
    [1, 1],
    'two frames of one call each',
  );
  for (let i = 0; i < 2; i++) peer.reply(await peer.request(), { bytesSent: big.length });
  await Promise.all(calls);
});

t.test('WSPSend goes with a compact header when the welcome offers them, unless compact is false', async (t) => {
  for (const compact of [true, false]) {
    const { conn, peer } = await pair(t, welcome({ compactHeaders: true }), { compact });
    const call = conn.call('WSPSend', { s: 1, buffers: [enc.encode('hi')], flags: 0 });
    const req = await peer.request();
    t.equal(req.compact, compact, `compact: ${compact}`);
    peer.reply(req, { bytesSent: 2 });
    t.same(await call, { ret: 0, errno: 0, bytesSent: 2 });
  }
});

t.test("the reply listener hears the reply as it is read, before the next record of the frame", async (t) => {
  const { conn, peer } = await pair(t);
  const seen: string[] = [];
  conn.onNotification = (method) => seen.push(method);
  const call = conn.call('WSPSend', { s: 1, buffers: [], flags: 0 }, { replied: () => void seen.push('reply') });
  const req = await peer.request();
  peer.sendBytes(
    frameOf(
      P.encodeFrame({ jsonrpc: '2.0', id: req.id, result: { ret: 0, errno: 0, bytesSent: 0 } }),
      P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 1, error: 0, bytes: 0, flags: 0 } }),
    ),
  );
  await call;
  t.same(seen, ['reply', 'spiwire.completion']);
});

t.test('notifications go to onNotification; an error the daemon could not attribute comes as spiwire.unattributedError', async (t) => {
  const { conn, peer } = await pair(t);
  const seen: Array<[string, Record<string, unknown>]> = [];
  let notified!: () => void;
  const both = new Promise<void>((resolve) => (notified = resolve));
  conn.onNotification = (method, params) => {
    seen.push([method, params]);
    if (seen.length === 2) notified();
  };
  peer.send({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 4, events: 1, errors: {} } });
  peer.send({ jsonrpc: '2.0', id: null, error: { code: P.BAD_FRAME, message: 'bad frame' } });
  await both;
  t.same(seen, [
    ['spiwire.networkEvents', { s: 4, events: 1, errors: {} }],
    ['spiwire.unattributedError', { code: P.BAD_FRAME, message: 'bad frame' }],
  ]);
});

t.test('a JSON-RPC error fails its call with SpiwireProtocolError; the connection goes on', async (t) => {
  const { conn, peer } = await pair(t);
  const call = conn.call('WSPListen', { s: 1, backlog: 1 });
  const req = await peer.request();
  peer.send({ jsonrpc: '2.0', id: req.id, error: { code: P.INVALID_PARAMS, message: 'WSPListen: params.backlog is missing', data: { field: 'backlog' } } });
  const err = await call.then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof SpiwireProtocolError, 'SpiwireProtocolError');
  if (err instanceof SpiwireProtocolError) t.same([err.code, err.message, err.data], [P.INVALID_PARAMS, 'WSPListen: params.backlog is missing', { field: 'backlog' }]);
  const next = conn.call('WSPListen', { s: 1, backlog: 1 });
  peer.reply(await peer.request());
  t.same(await next, { ret: 0, errno: 0 });
});

// A record the SDK cannot decode may have been a reply: its call must not wait for ever. The
// well-formed reply to a second call, sent after it, shows whether the first call was left waiting.
for (const [what, record] of [
  ['a header that is not JSON', (id: number) => rawRecord(`{"jsonrpc":"2.0","id":${id},"result":{"ret":0,`)],
  ['a compact reply header with unknown flag bits', (id: number) => rawRecord(compactReply(id, 0x80))],
  ['a reply without an id', () => rawRecord('{"jsonrpc":"2.0","result":{"ret":0,"errno":0}}')],
] as const) {
  t.test(`a record the SDK cannot decode (${what}) in place of a reply closes the connection and fails the call`, async (t) => {
    const { conn, peer } = await pair(t);
    let closedWith = '';
    conn.onClose = (reason) => (closedWith = reason);
    const first = conn.call('WSPListen', { s: 1, backlog: 1 });
    const second = conn.call('WSPListen', { s: 2, backlog: 1 });
    const a = await peer.request();
    const b = await peer.request();
    peer.sendBytes(record(a.id));
    peer.reply(b);
    const outcome = await Promise.race([
      first.then(
        () => 'answered',
        (err: unknown) => err,
      ),
      second.then(
        () => 'left waiting',
        () => 'left waiting',
      ),
    ]);
    if (!(outcome instanceof ConnectionClosedError)) {
      t.fail(`the call should fail with ConnectionClosedError, but was ${String(outcome)}`);
      return;
    }
    t.match(outcome.message, /the daemon sent a record the SDK cannot decode/);
    t.match(closedWith, /cannot decode/, 'onClose gives the reason');
    t.notOk(conn.isOpen, 'the connection is closed');
    await t.rejects(second, ConnectionClosedError, 'calls after the bad record fail too');
    await t.rejects(conn.call('WSPListen', { s: 1, backlog: 1 }), ConnectionClosedError, 'and so do new calls');
    await peer.closed;
  });
}

for (const [what, reply] of [
  ['neither result nor error', (id: number) => ({ jsonrpc: '2.0', id })],
  ['a result that is not an object', (id: number) => ({ jsonrpc: '2.0', id, result: 'done' })],
  ['an error without a code', (id: number) => ({ jsonrpc: '2.0', id, error: { message: 'no code' } })],
  ['an error that is not an object', (id: number) => ({ jsonrpc: '2.0', id, error: 'boom' })],
  ['both a result and an error', (id: number) => ({ jsonrpc: '2.0', id, result: { ret: 0, errno: 0 }, error: { code: 1, message: 'x' } })],
] as const) {
  t.test(`a reply with ${what} fails its call with SpiwireProtocolError; the connection goes on`, async (t) => {
    const { conn, peer } = await pair(t);
    const call = conn.call('WSPListen', { s: 1, backlog: 1 });
    const req = await peer.request();
    peer.send(reply(req.id));
    const err = await call.then(
      (r) => r,
      (e: unknown) => e,
    );
    if (!(err instanceof SpiwireProtocolError)) {
      t.fail(`the call should fail with SpiwireProtocolError, but gave ${JSON.stringify(err)}`);
      return;
    }
    t.equal(err.code, P.INVALID_REQUEST);
    t.match(err.message, /is not a JSON-RPC response/);
    t.same(err.data, { id: req.id });
    t.ok(conn.isOpen, 'the connection stays open');
    const next = conn.call('WSPListen', { s: 1, backlog: 1 });
    peer.reply(await peer.request());
    t.same(await next, { ret: 0, errno: 0 });
  });
}

t.test('a frame that is not a sequence of records closes the connection; pending calls fail', async (t) => {
  const { conn, peer } = await pair(t);
  const call = conn.call('WSPListen', { s: 1, backlog: 1 });
  await peer.request();
  peer.sendBytes(new Uint8Array([1, 0, 0]));
  await t.rejects(call, { name: 'ConnectionClosedError', message: /the daemon sent a bad frame/ });
  t.notOk(conn.isOpen);
});

t.test('close: pending calls fail with ConnectionClosedError, onClose runs once, later calls fail at once', async (t) => {
  const { conn, peer } = await pair(t);
  const reasons: string[] = [];
  conn.onClose = (reason) => reasons.push(reason);
  const call = conn.call('WSPListen', { s: 1, backlog: 1 });
  await peer.request();
  await conn.close();
  await t.rejects(call, ConnectionClosedError);
  t.equal(reasons.length, 1, 'onClose ran once');
  t.match(reasons[0], /connection closed \(1000/);
  await t.rejects(conn.call('WSPListen', { s: 1, backlog: 1 }), ConnectionClosedError);
  t.same(await peer.closed, { code: 1000, reason: 'client closed the session' });
});

t.test('the daemon closing the connection fails the pending calls', async (t) => {
  const { conn, peer } = await pair(t);
  const call = conn.call('WSPListen', { s: 1, backlog: 1 });
  await peer.request();
  peer.ws.close(1001, 'going away');
  await t.rejects(call, { name: 'ConnectionClosedError', message: /connection closed \(1001 going away\)/ });
});

/**
 * A resumable session with the stand-in daemon. Its acknowledgement timer waits 60 s unless the
 * test says otherwise, so that only the count makes an ack due: the tests below count frames, and
 * on a loaded machine their round trips can outlast the default 20 ms.
 */
function resumable(t: Test, opts: RpcOptions = {}): Promise<{ conn: RpcConnection; peer: Peer }> {
  return pair(t, welcome({ resume: { token: 't'.repeat(43), graceMs: 20000, daemonId: 'unit-daemon' } }), { ackDelayMs: 60_000, ...opts });
}

t.test('resumable: with fewer replies than an ack takes, the timer acknowledges them in a frame of its own', async (t) => {
  const { conn, peer } = await resumable(t, { ackDelayMs: 5 });
  await callsOneByOne(conn, peer, 3, () => conn.call('WSPListen', { s: 1, backlog: 1 }));
  await peer.untilFrames(4);
  t.same(peer.frames[3], [], 'a frame holding only the ack');
  t.same(peer.acks, [{ frame: 3, received: 3 }], 'with the count of the three replies');
});

/** count calls one at a time, each answered: with P.ACK_EVERY, the last reply makes an ack due. */
async function callsOneByOne(conn: RpcConnection, peer: Peer, count: number, call: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < count; i++) {
    const c = call();
    peer.reply(await peer.request());
    await c;
  }
}

t.test('resumable: an acknowledgement due on a reply rides on the next call', async (t) => {
  const { conn, peer } = await resumable(t);
  // One call at a time: each reply is a counted message; the 32nd makes an ack due (P.ACK_EVERY).
  await callsOneByOne(conn, peer, P.ACK_EVERY, () => conn.call('WSPListen', { s: 1, backlog: 1 }));
  const next = conn.call('WSPListen', { s: 99, backlog: 1 });
  await peer.untilFrames(P.ACK_EVERY + 1);
  t.equal(peer.frames.length, P.ACK_EVERY + 1, 'no frame of its own for the ack');
  t.same(peer.acks, [{ frame: P.ACK_EVERY, received: P.ACK_EVERY }], 'the ack came with the next call');
  t.same(peer.frames[P.ACK_EVERY]!.map((r) => r.params['s']), [99]);
  peer.reply(await peer.request());
  await next;
});

t.test('resumable: an acknowledgement due on a reply with no call after it goes alone, on the timer', async (t) => {
  const ackDelayMs = 300;
  const { conn, peer } = await resumable(t, { ackDelayMs });
  const firstCall = performance.now();
  await callsOneByOne(conn, peer, P.ACK_EVERY, () => conn.call('WSPListen', { s: 1, backlog: 1 }));
  const framesBefore = peer.frames.length;
  // No call follows: the ack waits for the timer (on a loaded machine the timer may already have
  // sent one for the first replies; the last ack must still cover all of them).
  await peer.untilFrames(framesBefore + 1);
  t.same(peer.frames[framesBefore], [], 'a frame holding only the ack');
  t.same(peer.acks[peer.acks.length - 1], { frame: framesBefore, received: P.ACK_EVERY }, 'with the count of every reply');
  // The oldest reply it covers came after the first call: the ack cannot have gone sooner.
  const waited = performance.now() - firstCall;
  t.ok(waited >= ackDelayMs - 1, `not at the end of the loop's turn but on the timer (${waited.toFixed(0)} ms after the first call)`);
  await conn.close();
});

t.test('resumable: an acknowledgement packed with a run of calls does not split the run', async (t) => {
  const { conn, peer } = await resumable(t);
  await callsOneByOne(conn, peer, P.ACK_EVERY, () => conn.call('WSPListen', { s: 1, backlog: 1 }));
  // An ack is due: it rides with the next run of 64 calls (a pipeline's completions bring such
  // runs), and the 64 still leave as one frame. Had the ack counted, the 64th call would have
  // gone in a frame of its own, which a pipeline then keeps sending round.
  const run = [];
  for (let i = 0; i < 64; i++) run.push(conn.call('WSPListen', { s: 100 + i, backlog: 1 }));
  await peer.untilFrames(P.ACK_EVERY + 1);
  // A later call, in a run of its own: any frame the run left behind would arrive before it.
  const after = conn.call('WSPListen', { s: 999, backlog: 1 });
  await peer.untilFrames(P.ACK_EVERY + 2);
  t.same(peer.acks, [{ frame: P.ACK_EVERY, received: P.ACK_EVERY }], 'the ack came with the run');
  t.equal(peer.frames[P.ACK_EVERY]!.length, 64, 'the whole run in that frame');
  t.same(peer.frames[P.ACK_EVERY + 1]!.map((r) => r.params['s']), [999], 'the next frame holds the later call');
  for (let i = 0; i < 65; i++) peer.reply(await peer.request());
  await Promise.all([...run, after]);
});

t.test('resumable: a small frame under construction moves to the next buffer instead of being cut where one fills', async (t) => {
  const { conn, peer } = await resumable(t);
  // Unacknowledged frames stay in the SDK's 1 MiB frame buffer: ten of about 100 KB fill most of it.
  const big = new Uint8Array(100_000).fill(0x61);
  await callsOneByOne(conn, peer, 10, () => conn.call('WSPSend', { s: 1, buffers: [big], flags: 0 }));
  // Two calls of 30 KB in one run: the second does not fit the room left.
  const a = new Uint8Array(30_000).fill(0x62);
  const b = new Uint8Array(30_000).fill(0x63);
  const run = [conn.call('WSPSend', { s: 2, buffers: [a], flags: 0 }), conn.call('WSPSend', { s: 3, buffers: [b], flags: 0 })];
  await peer.untilFrames(11);
  // A later call, in a run of its own: any frame the run left behind would arrive before it.
  const after = conn.call('WSPListen', { s: 999, backlog: 1 });
  await peer.untilFrames(12);
  const frame = peer.frames[10]!;
  t.same(
    frame.map((r) => r.params['s']),
    [2, 3],
    'both calls of the run in one frame',
  );
  t.same(
    frame.map((r) => Buffer.from((r.params['buffers'] as Uint8Array[])[0]!)),
    [Buffer.from(a), Buffer.from(b)],
    'with their bytes intact after the move',
  );
  t.same(peer.frames[11]!.map((r) => r.params['s']), [999], 'the next frame holds the later call');
  for (let i = 0; i < 3; i++) peer.reply(await peer.request());
  await Promise.all([...run, after]);
});
