// A nonblocking sender that waits with WSPSelect (select()) whenever a send would block, against a
// peer that reads slowly: the sends stop with WSAEWOULDBLOCK, select() returns once the peer has
// made room, and every byte arrives in order.
// Run: npm start (in another terminal), then: node examples/select.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
const TOTAL = 1 << 20;

// The peer reads 64 KiB, then pauses 20 ms, until it has everything.
let received = 0;
let inOrder = true;
let allReceived;
const done = new Promise((r) => (allReceived = r));
const peer = net.createServer((c) => {
  c.on('data', (b) => {
    for (let i = 0; i < b.length; i++) if (b[i] !== (received + i) % 251) inOrder = false;
    received += b.length;
    if (received >= TOTAL) allReceived();
    c.pause();
    setTimeout(() => c.resume(), 20);
  });
});
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);
// A 16 KiB send buffer (it sizes the kernel's too), and nonblocking mode (FIONBIO 1).
await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, Uint8Array.of(0, 0x40, 0, 0), 4, errno);
await spi.WSPIoctl(s, S.FIONBIO, Uint8Array.of(1, 0, 0, 0), 4, null, 0, S.out(0), null, null, null, errno);

const data = new Uint8Array(TOTAL).map((_, i) => i % 251);
let offset = 0;
let wouldBlock = 0;
let selects = 0;
while (offset < TOTAL) {
  const sent = S.out(0);
  const ret = await spi.WSPSend(s, [S.wsabuf(data.subarray(offset, offset + 65536))], 1, sent, 0, null, null, null, errno);
  if (ret === 0) {
    offset += sent.value;
    continue;
  }
  if (errno.value !== S.WSAEWOULDBLOCK) throw new Error(`WSPSend: ${S.wsaErrorName(errno.value)}`);
  wouldBlock++;
  // Wait, at most 5 s, until the socket can take a send again.
  const writefds = S.fdSet(s);
  const n = await spi.WSPSelect(0, null, writefds, null, { tv_sec: 5, tv_usec: 0 }, errno);
  selects++;
  if (n !== 1 || !S.FD_ISSET(s, writefds)) throw new Error(`WSPSelect returned ${n}`);
}
console.log(`sent ${offset} bytes; ${wouldBlock} sends found no room and WSPSelect waited for it ${selects} times`);

await done;
console.log(`the peer received ${received} bytes${inOrder ? ', in order' : ', NOT in order'}`);
await spi.WSPCloseSocket(s, errno);
await spi.close();
peer.close();
