/**
 * The transport buffer (server/src/sockets/transport-buffer.ts) over a real loopback TCP
 * connection: bytes handed to the kernel ahead of acceptance, and what operations report when
 * they are cancelled with bytes on their way. The checks are on what the peer received, on the
 * counts the operations reported, and on the buffer's own accounting (it feeds the session
 * quota), which must come back to zero.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { TransportBuffer, type SendOp, type StreamSink } from '../../src/internals.js';

const ABORTED = 995; // WSA_OPERATION_ABORTED
const RESET = 10054; // WSAECONNRESET

interface Link {
  client: net.Socket;
  /** Bytes the peer has read so far. */
  received(): Buffer;
  /** The peer starts (or goes on) reading. */
  read(): void;
  /** Resolves once the peer has read n bytes (or the connection ended). */
  until(n: number): Promise<void>;
}

async function link(t: Test, paused: boolean): Promise<Link> {
  const chunks: Buffer[] = [];
  let total = 0;
  let waiter: { n: number; resolve: () => void } | null = null;
  let peer: net.Socket | null = null;
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    peer = s;
    s.on('data', (b: Buffer) => {
      chunks.push(b);
      total += b.length;
      if (waiter && total >= waiter.n) waiter.resolve();
    });
    s.on('end', () => waiter?.resolve());
    s.on('error', () => undefined);
    if (!paused) s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  await new Promise<void>((r) => client.once('connect', () => r()));
  while (peer === null) await new Promise((r) => setImmediate(r));
  t.teardown(() => {
    client.destroy();
    peer?.destroy();
    server.close();
  });
  return {
    client,
    received: () => Buffer.concat(chunks),
    read: () => peer!.resume(),
    until: (n) => (total >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiter = { n, resolve }))),
  };
}

function sinkOf(client: net.Socket, sendDirect?: StreamSink['sendDirect']): StreamSink {
  return {
    write: (chunk, done) => void client.write(chunk, done),
    cork: () => client.cork(),
    uncork: () => client.uncork(),
    ...(sendDirect ? { sendDirect } : {}),
  };
}

/** A MSG_OOB path whose kernel takes 30 bytes of the first send, then has no room. */
function takesThirtyBytesOnce(client: net.Socket): NonNullable<StreamSink['sendDirect']> {
  let calls = 0;
  return (chunk) => {
    if (++calls > 1) return -1;
    client.write(chunk.subarray(0, 30));
    return 30;
  };
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed * 101 + (i >> 9)) & 0xff;
  return b;
}

interface Op extends SendOp {
  data: Uint8Array;
  result: { errno: number; bytes: number } | null;
}

function op(data: Uint8Array, direct = 0, overlapped = true): Op {
  const o: Op = {
    data,
    chunks: [data],
    total: data.length,
    overlapped,
    direct,
    result: null,
    complete(errno, bytes) {
      if (o.result) throw new Error('completed twice');
      o.result = { errno, bytes };
    },
  };
  return o;
}

/** The buffer, a running total of its meter (what the session quota is told), and a hook run after every pump. */
function buffer(sink: StreamSink, cap: number, onProgress: () => void = () => undefined): { tx: TransportBuffer; metered: () => number } {
  let metered = 0;
  const tx = new TransportBuffer({ ...sink, afterPump: () => onProgress() }, cap, (d) => (metered += d));
  return { tx, metered: () => metered };
}

async function until(cond: () => boolean, ms = 10000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
}

const sentPart = (ops: Op[]): Buffer => Buffer.concat(ops.map((o) => o.data.subarray(0, o.result!.bytes)));

t.test('a reading peer gets every byte in order; each send completes with its total; the accounting ends at zero', async (t) => {
  const l = await link(t, false);
  const { tx, metered } = buffer(sinkOf(l.client), 65536);
  const ops = Array.from({ length: 40 }, (_, i) => op(pattern(65536 + i * 1000, i)));
  for (const o of ops) tx.submit(o);
  t.ok(await until(() => ops.every((o) => o.result !== null)), 'every send completed');
  t.ok(
    ops.every((o) => o.result!.errno === 0 && o.result!.bytes === o.total),
    'each with no error and all its bytes',
  );
  const want = sentPart(ops);
  await l.until(want.length);
  t.ok(l.received().equals(want), `the peer got the ${want.length} bytes in order`);
  t.ok(await until(() => tx.drained), 'drained');
  t.same([tx.used, tx.pendingBytes, metered()], [0, 0, 0], 'nothing held, nothing metered');
});

t.test('a cancellation with bytes handed ahead: whole sends complete, one at most is cut, the peer gets exactly the counts', async (t) => {
  const l = await link(t, true);
  const { tx, metered } = buffer(sinkOf(l.client), 65536);
  // 40000-byte sends do not line up with the 3 x 64 KiB handed ahead: one is cut mid-way.
  const ops = Array.from({ length: 120 }, (_, i) => op(pattern(40000, 100 + i)));
  for (const o of ops) tx.submit(o);
  // Let the kernel fill up: the peer is not reading.
  await new Promise((r) => setTimeout(r, 200));
  const before = ops.filter((o) => o.result !== null).length;
  const cancelled = tx.cancel(ABORTED);
  t.ok(cancelled > 0, `${cancelled} waiting sends were cancelled`);
  t.ok(ops.every((o) => o.result !== null), 'every send has completed');
  const whole = ops.filter((o, i) => i >= before && o.result!.errno === 0).length;
  t.ok(whole > 0, `${whole} sends already handed over whole completed with all their bytes`);
  l.read();
  const cut = ops.filter((o) => o.result!.errno === ABORTED && o.result!.bytes > 0);
  t.ok(cut.length <= 1, `at most one cancelled send reports bytes (${cut.length})`);
  t.ok(
    cut.every((o) => o.result!.bytes < o.total),
    'and only part of its bytes',
  );
  t.ok(
    ops.every((o) => (o.result!.errno === 0 ? o.result!.bytes === o.total : o.result!.errno === ABORTED)),
    'the others completed whole or were aborted',
  );
  const short = ops.findIndex((o) => o.result!.bytes < o.total);
  t.ok(short > 0 && ops.slice(short + 1).every((o) => o.result!.bytes === 0), 'counts: whole sends, then at most one partial one, then none');
  const want = sentPart(ops);
  await l.until(want.length);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(l.received().length, want.length, `the peer got ${want.length} bytes, the sum of the counts`);
  t.ok(l.received().equals(want), 'those bytes, in order');
  t.ok(await until(() => tx.drained), 'drained');
  t.same([tx.used, tx.pendingBytes, metered()], [0, 0, 0], 'nothing held, nothing metered');
});

t.test('while bytes of a cancelled send wait ahead, no new send is accepted before them', async (t) => {
  const l = await link(t, true);
  let watching = false;
  let early = 0;
  let checks = 0;
  // After every pump (each write callback runs one) while the cancelled sends' bytes drain: with
  // the queue empty, pendingBytes is what of them is still on its way to the kernel.
  const { tx, metered } = buffer(sinkOf(l.client), 65536, () => {
    if (!watching) return;
    checks++;
    if (tx.fitsNow(1) && tx.pendingBytes > 0) early++;
  });
  const ops = Array.from({ length: 80 }, (_, i) => op(pattern(65536, 300 + i)));
  for (const o of ops) tx.submit(o);
  await new Promise((r) => setTimeout(r, 200));
  tx.cancel(ABORTED);
  t.ok(tx.pendingBytes > 0, 'bytes of cancelled sends are still on their way');
  t.notOk(tx.fitsNow(1), 'a one-byte send does not fit');
  t.equal(tx.acceptNow([pattern(1, 1)], 1), 0, 'a nonblocking send takes nothing');
  watching = true;
  l.read();
  t.ok(await until(() => tx.drained), 'drained');
  t.ok(checks > 0, `checked after each of ${checks} pumps`);
  t.equal(early, 0, 'never would a new send fit while older bytes were still on their way');
  t.ok(tx.fitsNow(1), 'then it fits');
  t.same([tx.pendingBytes, metered()], [0, 0], 'nothing pending or metered');
});

t.test('on a broken connection a cancelled send counts only accepted bytes, not bytes handed ahead', async (t) => {
  const l = await link(t, true);
  const { tx, metered } = buffer(sinkOf(l.client), 100);
  const a = op(pattern(100, 1));
  const b = op(pattern(300, 2));
  tx.submit(a);
  tx.submit(b);
  t.same(a.result, { errno: 0, bytes: 100 }, 'the first send fits the buffer and completes at once');
  t.equal(b.result, null, 'the second waits, its bytes handed ahead');
  t.equal(tx.cancel(RESET, () => true, 'broken'), 1, 'the connection breaks: the second send is failed');
  t.same(b.result, { errno: RESET, bytes: 0 }, 'with no bytes: none of them was accepted');
  l.client.destroy();
  t.ok(await until(() => metered() === 0), 'the accounting comes back to zero once the writes are done');
  t.equal(tx.pendingBytes, 0);
});

t.test('a MSG_OOB send the kernel took in part, then cancelled, reports that part', async (t) => {
  const l = await link(t, false);
  const { tx, metered } = buffer(sinkOf(l.client, takesThirtyBytesOnce(l.client)), 65536);
  const d = op(pattern(100, 3), 1);
  tx.submit(d);
  t.equal(d.result, null, 'the send waits for room for the rest');
  t.equal(tx.cancel(ABORTED), 1, 'cancelled');
  t.same(d.result, { errno: ABORTED, bytes: 30 }, 'it reports the 30 bytes the kernel took');
  await l.until(30);
  t.ok(l.received().equals(Buffer.from(d.data.subarray(0, 30))), 'the peer got those 30 bytes');
  t.same([tx.pendingBytes, metered()], [0, 0], 'nothing pending or metered');
});

t.test('one cancellation made of two calls (overlapped, then blocking sends) cuts one send, not two', async (t) => {
  const l = await link(t, true);
  const { tx, metered } = buffer(sinkOf(l.client, takesThirtyBytesOnce(l.client)), 65536);
  const oob = op(pattern(100, 4), 1);
  const blocking = op(pattern(5 * 65536, 5), 0, false);
  tx.submit(oob);
  tx.submit(blocking);
  t.equal(blocking.result, null, 'the blocking send waits behind the MSG_OOB one, nothing of it handed over');
  // As close() and SIO_FLUSH do: overlapped sends, then blocking ones, in two calls.
  tx.cancel(ABORTED, (o) => o.overlapped);
  tx.cancel(10004 /* WSAEINTR */, (o) => !o.overlapped);
  t.same(oob.result, { errno: ABORTED, bytes: 30 }, 'the MSG_OOB send is cut after the 30 bytes the kernel took');
  t.same(blocking.result, { errno: 10004, bytes: 0 }, 'the blocking send is cancelled whole: nothing was handed over between the calls');
  l.read();
  await l.until(30);
  await new Promise((r) => setTimeout(r, 50));
  t.ok(l.received().equals(Buffer.from(oob.data.subarray(0, 30))), 'the peer got those 30 bytes and nothing else');
  t.same([tx.pendingBytes, metered()], [0, 0], 'nothing pending or metered');
});

t.test('an empty send behind sends handed over whole completes with them', async (t) => {
  const l = await link(t, true);
  // Fill the kernel and node's queue first, so that nothing handed over later moves.
  const prefill = Buffer.alloc(16 * 1024 * 1024, 7);
  l.client.write(prefill);
  t.ok(await until(() => l.client.writableLength > 0), 'the connection is full');
  const { tx, metered } = buffer(sinkOf(l.client), 65536);
  const first = op(pattern(65536, 6));
  const whole1 = op(pattern(65536, 7));
  const empty = op(new Uint8Array(0));
  const whole2 = op(pattern(65536, 8));
  for (const o of [first, whole1, empty, whole2]) tx.submit(o);
  t.same(first.result, { errno: 0, bytes: 65536 }, 'the first send fits the buffer');
  t.ok([whole1, empty, whole2].every((o) => o.result === null), 'the others wait, their bytes handed ahead');
  tx.cancel(ABORTED);
  t.same(whole1.result, { errno: 0, bytes: 65536 }, 'handed over whole: done');
  t.same(empty.result, { errno: 0, bytes: 0 }, 'the empty send between them: done too');
  t.same(whole2.result, { errno: 0, bytes: 65536 }, 'handed over whole: done');
  l.read();
  const want = Buffer.concat([prefill, first.data, whole1.data, whole2.data]);
  await l.until(want.length);
  t.ok(l.received().equals(want), 'the peer got every byte of them, in order');
  t.ok(await until(() => tx.drained), 'drained');
  t.same([tx.pendingBytes, metered()], [0, 0], 'nothing pending or metered');
});

t.test('thousands of waiting sends cancelled one at a time by their entries: each exactly once, the rest go in order', async (t) => {
  const l = await link(t, false);
  const { tx, metered } = buffer(sinkOf(l.client), 65536);
  // Held (a block fault): nothing is accepted or handed over while the sends queue up.
  tx.hold(60_000);
  const ops = Array.from({ length: 5000 }, (_, i) => op(pattern(10, i)));
  const entries = ops.map((o) => tx.submit(o));
  t.equal(tx.pendingOps, 5000, 'all 5000 wait');
  // Every other one, oldest first: more than the queue keeps dead before it compacts.
  let aborted = 0;
  for (let i = 0; i < ops.length; i += 2) aborted += tx.cancelQueued(ABORTED, entries[i]!);
  t.equal(aborted, 2500, 'each cancellation aborted its send');
  t.ok(ops.every((o, i) => (i % 2 === 0 ? o.result?.errno === ABORTED && o.result.bytes === 0 : o.result === null)), 'exactly the cancelled ones completed, with WSA_OPERATION_ABORTED and no bytes');
  t.equal(tx.cancelQueued(ABORTED, entries[0]!), 0, 'a second cancellation of one of them does nothing');
  t.notOk(tx.append(entries[0]!, new Uint8Array(1)), 'nor does a piece for it');
  t.equal(tx.pendingOps, 2500, '2500 still wait');
  let asked = 0;
  t.equal(tx.cancel(ABORTED, () => (asked++, false)), 0, 'a cancellation that matches none cancels none');
  t.equal(asked, 2500, 'and asks about the waiting ones only, once each');
  tx.release();
  const rest = ops.filter((_, i) => i % 2 === 1);
  const want = Buffer.concat(rest.map((o) => o.data));
  await l.until(want.length);
  t.ok(await until(() => rest.every((o) => o.result !== null)), 'the others completed');
  t.ok(rest.every((o) => o.result!.errno === 0 && o.result!.bytes === 10), 'each with its 10 bytes');
  t.ok(l.received().equals(want), 'the peer got their bytes, in order, and none of the cancelled ones');
  t.ok(await until(() => tx.drained), 'drained');
  t.same([tx.pendingOps, tx.pendingBytes, metered()], [0, 0, 0], 'nothing waits, nothing is held or metered');
});

t.test('small sends accepted in one turn leave in a few writes, in order, with small and large ones mixed', async (t) => {
  const l = await link(t, true);
  let writes = 0;
  const sink = sinkOf(l.client);
  const counting: StreamSink = { ...sink, write: (chunk, done) => (writes++, sink.write(chunk, done)) };
  const { tx, metered } = buffer(counting, 64 * 1024 * 1024);
  // 40,000 one-byte sends, a large one in the middle, then more small ones: all in one turn.
  const sends: Uint8Array[] = [];
  for (let i = 0; i < 40000; i++) sends.push(pattern(1, i));
  sends.splice(20000, 0, pattern(5000, 7));
  for (let i = 0; i < 3000; i++) sends.push(pattern(300, i));
  let accepted = 0;
  for (const s of sends) accepted += tx.acceptNow([s], s.length);
  const total = sends.reduce((n, s) => n + s.length, 0);
  t.equal(accepted, total, 'every send is accepted at once');
  t.ok(writes < 100, `within the turn only full slabs and the large send are written (${writes} writes so far)`);
  await new Promise((r) => process.nextTick(r));
  t.ok(writes < 200, `the turn's small sends went out in a few writes, not one each (${writes} for ${sends.length} sends)`);
  l.read();
  await l.until(total);
  t.ok(l.received().equals(Buffer.concat(sends)), 'the peer got every byte, in the order of the sends');
  await new Promise((r) => setImmediate(r));
  t.equal(metered(), 0, 'and nothing is metered once the kernel has them');
});

t.test('a send that waits, goes ahead or sits in node keeps only its own bytes, not the message its view came from', async (t) => {
  const l = await link(t, true);
  const sink = sinkOf(l.client);
  // The kernel full: node queues what is written from now on.
  for (let i = 0; i < 1000 && l.client.writableLength === 0; i++) {
    l.client.write(Buffer.alloc(256 * 1024));
    await new Promise((r) => setImmediate(r));
  }
  t.ok(l.client.writableLength > 0, 'the kernel is full');
  /** A 1-byte view of a 4 MiB message, as a send in a record with unreferenced data is. */
  const pinned = (i: number): Uint8Array => Buffer.alloc(4 << 20, i).subarray(i, i + 1);
  const heldBy = (chunks: readonly Uint8Array[]): number => chunks.reduce((n, c) => n + c.buffer.byteLength, 0);

  // Waiting behind a send the buffer cannot take, or handed ahead of acceptance (the 6 KiB
  // after a 4 KiB buffer, then the small sends whole): plain and streamed.
  const { tx } = buffer(sink, 4096);
  tx.submit(op(pattern(10 * 1024, 1)));
  const waiting = Array.from({ length: 8 }, (_, i) => op(pinned(i)));
  const streamed = Array.from({ length: 4 }, (_, i): Op => ({ ...op(pinned(10 + i)), streamed: true, total: 2 }));
  for (const o of [...waiting, ...streamed]) tx.submit(o);
  t.ok([...waiting, ...streamed].every((o) => o.result === null), 'they wait');
  t.ok(waiting.every((o) => heldBy(o.chunks) < 64 * 1024), `waiting sends hold ${heldBy(waiting.flatMap((o) => o.chunks))} bytes for 8 bytes`);
  t.ok(streamed.every((o) => heldBy(o.chunks) < 64 * 1024), 'and streamed ones, in their own list too');

  // Accepted at once, the first small send of a turn: handed to node as it came, it sits in
  // node's queue while the kernel is full.
  const { tx: roomy } = buffer(sink, 1 << 20);
  for (let i = 0; i < 8; i++) {
    t.equal(roomy.acceptNow([pinned(20 + i)], 1), 1);
    await new Promise((r) => setImmediate(r));
  }
  const queued = (l.client as unknown as { _writableState: { getBuffer(): Array<{ chunk: Uint8Array }> } })._writableState.getBuffer().map((e) => e.chunk);
  t.ok(heldBy(queued) < 16 << 20, `node's queue holds ${(heldBy(queued) / 2 ** 20).toFixed(1)} MiB, not 32 MiB of messages`);
});
