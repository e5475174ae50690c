// A fault rule makes the second WSPSend fail with WSAECONNRESET: the daemon resets the real
// connection, the peer sees RST, and later calls on the socket fail with the same code.
// Run: npm start (in another terminal), then: node examples/fault-error.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
const received = [];
let peerSaw;
const peerEnd = new Promise((r) => (peerSaw = r));
const peer = net.createServer((c) => c.on('data', (b) => received.push(b)).on('error', (e) => peerSaw(e.code)).on('end', () => peerSaw('the end of the stream')));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);

await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'error', code: S.WSAECONNRESET } });

const sent = S.out(0);
for (const text of ['one ', 'two ', 'three']) {
  const ret = await spi.WSPSend(s, [S.wsabuf(text)], 1, sent, 0, null, null, null, errno);
  console.log(`WSPSend(${JSON.stringify(text)}) returned ${ret}${ret === 0 ? `, ${sent.value} bytes` : `, error ${S.wsaErrorName(errno.value)}`}`);
}
// Linux reports a reset that arrives behind unread data as ECONNRESET, or (when the error was
// collected first) as end of stream: either way the connection is gone, without a FIN from the daemon.
console.log(`the peer saw ${await peerEnd} after ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.WSPCloseSocket(s, errno);
await spi.close();
peer.close();
