/**
 * sliced-messages.ts over a real WebSocket connection on loopback: a large binary message
 * arrives as the reads that carried it (several parts, nothing joined), unmasked, byte for byte
 * what the client sent; text, small and fragmented messages arrive as before.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';
import { binaryMessage, MessageParts, sliceBinaryMessages, SLICE_MIN_BYTES } from '../src/sliced-messages.js';

interface Received {
  data: Buffer | ArrayBuffer | Buffer[];
  isBinary: boolean;
}

async function pair(t: Test): Promise<{ client: WebSocket; next: () => Promise<Received>; sliced: boolean }> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  await new Promise<void>((r) => server.once('listening', () => r()));
  const got: Received[] = [];
  let wake: (() => void) | null = null;
  const connected = new Promise<boolean>((resolve) =>
    server.once('connection', (ws) => {
      const sliced = sliceBinaryMessages(ws);
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
        got.push({ data, isBinary });
        wake?.();
      });
      resolve(sliced);
    }),
  );
  const { port } = server.address() as { port: number };
  const client = new WebSocket(`ws://127.0.0.1:${port}/`);
  t.teardown(() => client.terminate());
  await new Promise((r, j) => client.once('open', r).once('error', j));
  const sliced = await connected;
  const next = async (): Promise<Received> => {
    while (got.length === 0) await new Promise<void>((r) => (wake = r));
    return got.shift()!;
  };
  return { client, next, sliced };
}

t.test('a large binary message comes as several views of the reads, unmasked, the bytes sent', async (t) => {
  const { client, next, sliced } = await pair(t);
  t.ok(sliced, "ws's receiver has the fields the sliced path needs");
  const payload = randomBytes(300_000);
  client.send(payload, { binary: true });
  const m = await next();
  t.ok(m.isBinary, 'binary');
  t.ok(Array.isArray(m.data) && m.data.length > 1, `in ${Array.isArray(m.data) ? m.data.length : 1} parts (reads of 64 KiB at most)`);
  const parts = m.data as Buffer[];
  t.ok(parts.some((p) => p.byteOffset > 0 || p.length < p.buffer.byteLength), 'views into the reads, not fresh copies');
  t.ok(Buffer.concat(parts).equals(payload), 'the parts, in order, are the bytes the client sent');
  const message = binaryMessage(m.data);
  t.ok(message instanceof MessageParts && message.length === payload.length, 'the session keeps it in parts');
});

t.test('small binary, text and fragmented messages arrive whole, as before', async (t) => {
  const { client, next } = await pair(t);
  const small = randomBytes(SLICE_MIN_BYTES - 1);
  client.send(small, { binary: true });
  const a = await next();
  t.ok(binaryMessage(a.data) instanceof Buffer && (binaryMessage(a.data) as Buffer).equals(small), 'a message under SLICE_MIN_BYTES: one buffer');
  const text = 'x'.repeat(200_000);
  client.send(text);
  const b = await next();
  t.equal(b.isBinary, false, 'text');
  t.ok(Buffer.isBuffer(b.data) && (b.data as Buffer).toString() === text, 'a large text message is one buffer, its UTF-8 checked by ws');
  // Many small fragments: kept apart they would cost an object per few bytes, so they are joined.
  const pieces = Array.from({ length: 40 }, () => randomBytes(1000));
  pieces.forEach((p, i) => client.send(p, { binary: true, fin: i === pieces.length - 1 }));
  const c = await next();
  const joined = binaryMessage(c.data);
  t.ok(joined instanceof Buffer && joined.equals(Buffer.concat(pieces)), 'a message of 40 small fragments: joined into one buffer');
  // A large message in large fragments stays in parts.
  const big = [randomBytes(100_000), randomBytes(120_000)];
  client.send(big[0], { binary: true, fin: false });
  client.send(big[1], { binary: true, fin: true });
  const d = await next();
  const kept = binaryMessage(d.data);
  t.ok(kept instanceof MessageParts, 'a message of two large fragments: parts');
  t.ok(Buffer.concat((kept as MessageParts).parts).equals(Buffer.concat(big)), 'with the bytes of both fragments, in order');
  // A ping between the fragments is ws's to answer; the message around it is unchanged.
  const around = [randomBytes(90_000), randomBytes(70_000)];
  const pong = new Promise<void>((r) => client.once('pong', () => r()));
  client.send(around[0], { binary: true, fin: false });
  client.ping();
  client.send(around[1], { binary: true, fin: true });
  await pong;
  const e = binaryMessage((await next()).data);
  t.ok(e instanceof MessageParts && Buffer.concat(e.parts).equals(Buffer.concat(around)), 'a large fragmented message with a ping between its fragments: whole, in order');
});
