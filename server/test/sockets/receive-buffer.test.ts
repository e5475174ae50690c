/**
 * The receive buffer of a TCP socket (server/src/sockets/receive-buffer.ts), fed by a real loopback
 * connection whose peer writes one byte at a time with Nagle off, as a hostile peer would: the
 * small reads share slabs instead of each keeping a Buffer of its own, and every byte comes out
 * once, in order, whatever sizes the receives take and peek.
 */
import t from 'tap';
import * as net from 'node:net';
import { ReceiveBuffer } from '../../src/internals.js';

/** A connection whose peer writes data in writes of `sizes` bytes, one per turn; each read goes to onRead; resolves with the number of reads. */
async function feed(data: Buffer, sizes: (i: number) => number, onRead: (chunk: Buffer) => void): Promise<number> {
  const server = net.createServer((peer) => {
    peer.setNoDelay(true);
    let at = 0;
    let i = 0;
    const next = (): void => {
      if (at >= data.length) return void peer.end();
      const n = Math.min(sizes(i++), data.length - at);
      peer.write(data.subarray(at, at + n), () => setImmediate(next));
      at += n;
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const client = net.connect(port, '127.0.0.1');
  let reads = 0;
  client.on('data', (chunk: Buffer) => {
    reads++;
    onRead(chunk);
  });
  await new Promise<void>((resolve) => client.on('end', resolve));
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return reads;
}

t.test('one-byte reads share slabs, and come out whole and in order', async (t) => {
  let counted = 0;
  const rx = new ReceiveBuffer((d) => (counted += d));
  const data = Buffer.alloc(20000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 255;
  const reads = await feed(data, () => 1, (chunk) => rx.push(chunk));
  t.equal(rx.size, data.length, 'every byte is held');
  t.equal(counted, data.length, 'and counted');
  t.ok(reads > 1000, `the peer's one-byte writes came in many reads (${reads})`);
  t.ok(rx.pieces <= 8, `held in a few slabs (${rx.pieces} pieces), not a Buffer per read`);
  // Out in sizes that cross slab boundaries, with peeks in between.
  const out: Buffer[] = [];
  const peeksDiffering: number[] = [];
  let k = 0;
  while (rx.size > 0) {
    const want = [1, 3, 255, 256, 700, 4096, 9000][k++ % 7]!;
    const peeked = Buffer.from(rx.take(want, true));
    const taken = Buffer.from(rx.take(want, false));
    if (!peeked.equals(taken)) peeksDiffering.push(want);
    out.push(taken);
  }
  t.same(peeksDiffering, [], 'each peek showed what the next receive took');
  t.ok(Buffer.concat(out).equals(data), 'what the receives took is what the peer wrote');
  t.equal(counted, 0, 'and the count is back to zero');
});

t.test('small and large reads mixed, taken as they arrive', async (t) => {
  const rx = new ReceiveBuffer();
  const data = Buffer.alloc(300000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 13 + (i >> 10)) & 255;
  const sizes = [1, 2, 900, 1023, 1024, 5000, 17, 64000, 3];
  const out: Buffer[] = [];
  let k = 0;
  // A receive after every third read, of varying size: some take part of a slab, some more.
  await feed(data, (i) => sizes[i % sizes.length]!, (chunk) => {
    rx.push(chunk);
    if (k++ % 3 === 2) out.push(Buffer.from(rx.take([5, 1500, 20000][k % 3]!, false)));
  });
  while (rx.size > 0) out.push(Buffer.from(rx.take(65536, false)));
  t.ok(Buffer.concat(out).equals(data), 'every byte once, in order');
});
