// A fault rule makes overlapped WSPSends complete out of order: their completions are held for
// 100 ms and delivered in an order drawn from the rule's seed, while the bytes reach the peer in
// the order they were sent. The same seed gives the same order every run.
// Run: npm start (in another terminal), then: node examples/fault-reorder.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
const received = [];
let peerDone;
const ended = new Promise((r) => (peerDone = r));
const peer = net.createServer((c) => c.on('data', (b) => received.push(b)).on('end', peerDone));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);

await spi.faults.add({ match: { socket: s }, action: { type: 'reorder', windowMs: 100 }, seed: 7 });

const order = [];
for (const word of ['a', 'b', 'c', 'd', 'e']) {
  await spi.WSPSend(s, [S.wsabuf(word)], 1, S.out(0), 0, new S.WSAOVERLAPPED(), () => order.push(word), null, errno);
}
while (order.length < 5) await spi.SleepEx(S.WSA_INFINITE, true);
console.log(`completions in the order: ${order.join(' ')}`);
await spi.WSPShutdown(s, S.SD_SEND, errno);
await ended;
console.log(`the peer received: ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.WSPCloseSocket(s, errno);
await spi.close();
peer.close();
