// A nonoverlapped WSPSend to a real TCP peer, the SPI way: out parameters, lpErrno, SOCKET_ERROR.
// Run: npm start (in another terminal), then: node examples/send-hello.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';

// A plain node:net peer that prints what it receives.
const received = [];
const peer = net.createServer((c) => c.on('data', (b) => received.push(b)));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, errno);
if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket failed: ${S.wsaErrorName(errno.value)}`);

const peerAddr = { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port };
if ((await spi.WSPConnect(s, peerAddr, 16, null, null, null, null, errno)) === S.SOCKET_ERROR) {
  throw new Error(`WSPConnect failed: ${S.wsaErrorName(errno.value)}`);
}

// Gather: two WSABUFs form one send; only the first dwBufferCount (2) entries are used.
const sent = S.out(0);
const buffers = [S.wsabuf('hello, '), S.wsabuf('winsock'), S.wsabuf('ignored')];
const ret = await spi.WSPSend(s, buffers, 2, sent, 0, null, null, null, errno);
console.log(`WSPSend returned ${ret}, lpNumberOfBytesSent = ${sent.value}`);

await spi.WSPCloseSocket(s, errno);
await new Promise((r) => setTimeout(r, 100));
console.log(`the peer received: ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.close();
peer.close();
