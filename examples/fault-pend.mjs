// Fault rules make overlapped WSPSends pend: block holds the transport for a while (the send
// completes once its bytes are taken), delay sends the bytes at once but holds the completion.
// Run: npm start (in another terminal), then: node examples/fault-pend.mjs [ws://127.0.0.1:7787/ws]
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

await spi.faults.add({ match: { socket: s, nth: 1 }, action: { type: 'block', ms: 200 } });
await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'delay', ms: 300 } });

const done = [];
const routine = (name) => (err, cb) => done.push(`${name}: dwError=${err} cbTransferred=${cb}`);
for (const [name, text] of [['first', 'held '], ['second', 'late']]) {
  const ret = await spi.WSPSend(s, [S.wsabuf(text)], 1, S.out(0), 0, new S.WSAOVERLAPPED(), routine(name), null, errno);
  console.log(`${name} WSPSend returned ${ret}, error ${S.wsaErrorName(errno.value)}`);
}
// Completion routines run in an alertable wait, as on Windows.
while (done.length < 2) await spi.SleepEx(S.WSA_INFINITE, true);
for (const line of done) console.log(line);
await spi.WSPShutdown(s, S.SD_SEND, errno);
await ended;
console.log(`the peer received: ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.WSPCloseSocket(s, errno);
await spi.close();
peer.close();
