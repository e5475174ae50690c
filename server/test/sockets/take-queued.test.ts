/**
 * A listening socket that closes while the kernel holds connections node has not accepted yet
 * hands them on (native-options.ts, takeQueuedConnections) instead of letting the close reset
 * them: the daemon does so when a listener gives its port over to another (port-reservations.ts).
 */
import t from 'tap';
import * as net from 'node:net';
import { spawnSync } from 'node:child_process';
import { takeQueuedConnections } from '../../src/sockets/native-options.js';
import { libc } from '../../src/native/libc.js';

const skip = libc()?.accept ? false : 'needs accept4 through the C library (Linux)';

t.test('connections the kernel completed and node has not accepted are taken, open and whole', { skip }, async (t) => {
  const server = net.createServer({ pauseOnConnect: true }, () => t.fail('node accepted a connection itself'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  // A child process connects three clients, each sending its number, and exits once all three
  // are connected. spawnSync blocks this process meanwhile, so node accepts none of them: they
  // wait in the kernel's queue.
  const child = spawnSync(process.execPath, ['-e', `
    const net = require('net');
    let n = 0;
    for (let i = 0; i < 3; i++) {
      const c = net.connect(${port}, '127.0.0.1', () => c.write(String(i), () => { if (++n === 3) process.exit(0); }));
    }
    setTimeout(() => process.exit(1), 5000);
  `], { timeout: 10000 });
  t.equal(child.status, 0, 'the three clients connected and sent');
  const taken = takeQueuedConnections(server);
  server.close();
  t.equal(taken.length, 3, 'all three are taken from the queue');
  // Nothing is read from the kernel before someone resumes them (WSPAccept): urgent data and the
  // accepted socket's options depend on the bytes staying there.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  t.same(taken.map((c) => c.bytesRead), [0, 0, 0], 'none has read a byte while paused');
  const received = await Promise.all(
    taken.map(
      (c) =>
        new Promise<string>((resolve) => {
          let text = '';
          c.on('data', (b: Buffer) => (text += b.toString()));
          c.on('end', () => resolve(text));
          c.resume();
        }),
    ),
  );
  t.same(received.sort(), ['0', '1', '2'], 'each with what its client sent, then its FIN');
  t.same(takeQueuedConnections(server), [], 'a closed server has none');
});
