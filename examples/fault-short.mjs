// A fault rule makes WSPSend take fewer bytes than offered (a partial count), and the caller's
// loop sends the rest, as a correct caller of a nonblocking send must.
// Run: npm start (in another terminal), then: node examples/fault-short.mjs [ws://127.0.0.1:7787/ws]
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
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);

// Every send on this socket takes at most 4 bytes.
await spi.faults.add({ match: { socket: s }, action: { type: 'short', max: 4 } });

const message = Buffer.from('hello, partial counts');
const sent = S.out(0);
let offset = 0;
while (offset < message.length) {
  const ret = await spi.WSPSend(s, [S.wsabuf(message.subarray(offset))], 1, sent, 0, null, null, null, errno);
  if (ret !== 0) throw new Error(`WSPSend failed: ${S.wsaErrorName(errno.value)}`);
  console.log(`WSPSend took ${sent.value} of ${message.length - offset} bytes`);
  offset += sent.value;
}
await spi.WSPShutdown(s, S.SD_SEND, errno);
await ended;
console.log(`the peer received: ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.WSPCloseSocket(s, errno);
await spi.close();
peer.close();
