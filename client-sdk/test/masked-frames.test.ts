/**
 * The SDK's own client frames (src/masked-frames.ts): a real ws server on loopback must read
 * every length encoding (7-bit, 16-bit, 64-bit) back to the original bytes, also while ws writes
 * its own control frames (pongs) to the same socket, and the JavaScript mask must match the XOR
 * that RFC 6455 defines.
 */
import t, { type Test } from 'tap';
import { createServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { createRequire } from 'node:module';
import { maskInJs, writeMaskedBinaryFrame } from '../src/masked-frames.js';
import { nativeMasking } from '../src/index.js';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

interface Pair {
  client: WebSocket;
  socket: Socket;
  received: Array<{ data: Buffer; isBinary: boolean }>;
  /** Resolves once the server has received count messages. */
  until(count: number): Promise<void>;
  server: WebSocket;
}

async function connect(t: Test): Promise<Pair> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const received: Pair['received'] = [];
  let waiter: { count: number; resolve: () => void } | null = null;
  const serverSide = new Promise<WebSocket>((resolve) =>
    wss.once('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary) => {
        received.push({ data, isBinary });
        if (waiter && received.length >= waiter.count) waiter.resolve();
      });
      resolve(ws);
    }),
  );
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  let socket: Socket | null = null;
  client.once('upgrade', (res) => (socket = res.socket));
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve());
    client.once('error', reject);
  });
  const server = await serverSide;
  t.teardown(async () => {
    client.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  });
  t.ok(socket, 'ws reported its socket with the upgrade response');
  return {
    client,
    socket: socket!,
    received,
    server,
    until: (count) =>
      received.length >= count
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            waiter = { count, resolve };
          }),
  };
}

t.test('every length encoding reaches a ws server intact', async (t) => {
  const p = await connect(t);
  // 7-bit lengths up to 125, 16-bit from 126 to 65535, 64-bit from 65536; 47/48 straddle the
  // size where the native mask takes over from the JavaScript one, 8191/8192 the size from which
  // frames are masked in place instead of copied.
  const sizes = [0, 1, 3, 47, 48, 125, 126, 127, 4093, 8191, 8192, 65535, 65536, 65537, (1 << 20) + 3];
  const sent = sizes.map((n, i) => pattern(n, i));
  for (const b of sent) writeMaskedBinaryFrame(p.socket, Buffer.from(b));
  await p.until(sizes.length);
  t.equal(p.received.length, sizes.length, 'one message per frame');
  for (let i = 0; i < sizes.length; i++) {
    t.ok(p.received[i]!.isBinary, `${sizes[i]} bytes: a binary message`);
    t.ok(p.received[i]!.data.equals(sent[i]!), `${sizes[i]} bytes: the same bytes`);
  }
});

t.test('a large payload is masked in place, with a new key per frame; a small one is left as it is', async (t) => {
  const p = await connect(t);
  const keys = new Set<string>();
  const original = pattern(16384, 9);
  for (let i = 0; i < 16; i++) {
    const frame = Buffer.from(original);
    writeMaskedBinaryFrame(p.socket, frame);
    // Recover the key from the first four bytes: payload XOR original.
    const key = Buffer.from([0, 1, 2, 3].map((j) => frame[j]! ^ original[j]!));
    for (let j = 0; j < frame.length; j++) if ((frame[j]! ^ key[j & 3]!) !== original[j]) t.fail(`byte ${j} of frame ${i} is not the original XOR the key`);
    keys.add(key.toString('hex'));
  }
  const small = pattern(100, 10);
  const smallCopy = Buffer.from(small);
  writeMaskedBinaryFrame(p.socket, smallCopy);
  t.ok(smallCopy.equals(small), 'a small payload is copied into the frame, not masked where it is');
  await p.until(17);
  t.ok(p.received.slice(0, 16).every((m) => m.data.equals(original)), 'the server unmasked every large frame to the original');
  t.ok(p.received[16]!.data.equals(small), 'and the small one');
  t.ok(keys.size >= 15, `a fresh key per frame (${keys.size} distinct of 16)`);
});

t.test("frames and ws's own pongs share the socket without mixing", async (t) => {
  const p = await connect(t);
  let pongs = 0;
  p.server.on('pong', () => pongs++);
  const sent: Buffer[] = [];
  const PINGS = 100;
  for (let i = 0; i < 400; i++) {
    if (i % 4 === 0 && i / 4 < PINGS) p.server.ping(Buffer.from(`ping ${i}`));
    const b = pattern(1 + ((i * 7919) % 70000), i);
    sent.push(b);
    writeMaskedBinaryFrame(p.socket, Buffer.from(b));
    // Let the pings arrive and ws answer them between the frames.
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  await p.until(sent.length);
  const deadline = Date.now() + 5000;
  while (pongs < PINGS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(pongs, PINGS, 'ws answered every ping');
  t.equal(p.received.length, sent.length, 'every frame arrived');
  t.ok(
    p.received.every((m, i) => m.data.equals(sent[i]!)),
    'in order and intact',
  );
});

t.test('zero keys: the key on the wire is 0, the payload goes as it is and a ws server reads it back', async (t) => {
  const p = await connect(t);
  const sizes = [0, 5, 125, 126, 8191, 8192, 65536, (1 << 20) + 3];
  const sent = sizes.map((n, i) => pattern(n, 40 + i));
  for (const b of sent) {
    const payload = Buffer.from(b);
    t.equal(writeMaskedBinaryFrame(p.socket, payload, 'zero'), null, `${b.length} bytes: nothing to restore`);
    t.ok(payload.equals(b), `${b.length} bytes: the caller's bytes are left as they were`);
  }
  await p.until(sizes.length);
  t.ok(p.received.every((m, i) => m.isBinary && m.data.equals(sent[i]!)), 'every frame arrived intact');
});

t.test('the bytes on the wire: mask bit set, the key zero or random, the payload XOR the key', async (t) => {
  // A plain TCP server: it sees the frame exactly as the SDK wrote it.
  const chunks: Buffer[] = [];
  let total = 0;
  let want = 0;
  let arrived: () => void = () => undefined;
  const server = createServer((c) =>
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      if (total >= want) arrived();
    }),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const sock = netConnect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  t.teardown(() => {
    sock.destroy();
    server.close();
  });
  const frameOf = async (payload: Buffer, keys: 'zero' | 'random'): Promise<Buffer> => {
    const before = total;
    want = before + 8 + payload.length;
    const done = new Promise<void>((r) => (arrived = r));
    writeMaskedBinaryFrame(sock, Buffer.from(payload), keys);
    await done;
    return Buffer.concat(chunks).subarray(before, want);
  };
  for (const n of [200, 20000]) {
    const payload = pattern(n, n);
    for (const keys of ['zero', 'random'] as const) {
      const f = await frameOf(payload, keys);
      t.equal(f[0], 0x82, `${n} bytes, ${keys}: FIN and binary`);
      t.equal(f[1], 0x80 | 126, `${n} bytes, ${keys}: the mask bit and a 16-bit length`);
      t.equal(f.readUInt16BE(2), n, `${n} bytes, ${keys}: the length`);
      const key = f.subarray(4, 8);
      const body = f.subarray(8);
      if (keys === 'zero') {
        t.same([...key], [0, 0, 0, 0], `${n} bytes: the key is zero`);
        t.ok(body.equals(payload), `${n} bytes: the payload is sent as it is`);
      } else {
        t.not(key.readUInt32BE(0), 0, `${n} bytes: a random key (zero once in 2^32)`);
        let ok = true;
        for (let i = 0; i < n; i++) if ((body[i]! ^ key[i & 3]!) !== payload[i]) ok = false;
        t.ok(ok, `${n} bytes: the payload XOR the key`);
      }
    }
  }
});

t.test('the JavaScript mask is the XOR of RFC 6455, section 5.3, at any offset', async (t) => {
  const src = pattern(1000, 3);
  const key = Buffer.from([0x12, 0x00, 0xff, 0x81]);
  const out = Buffer.alloc(1010, 0xee);
  maskInJs(src, key, out, 7, src.length);
  let same = true;
  for (let i = 0; i < src.length; i++) if (out[7 + i] !== (src[i]! ^ key[i % 4]!)) same = false;
  t.ok(same, 'every byte is source XOR key[i mod 4], written from the offset');
  t.equal(out[6], 0xee, 'nothing written before the offset');
  t.equal(out[1007], 0xee, 'nothing written after the length');
  maskInJs(out.subarray(7, 1007), key, out, 7, src.length);
  t.ok(out.subarray(7, 1007).equals(src), 'masking twice in place restores the bytes');
});

t.test('nativeMasking says whether bufferutil could be loaded', async (t) => {
  let loadable = true;
  try {
    createRequire(import.meta.url)('bufferutil');
  } catch {
    loadable = false;
  }
  t.equal(nativeMasking, loadable, `bufferutil ${loadable ? 'loads' : 'does not load'} here, and the SDK says so`);
});
