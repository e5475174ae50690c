// Overlapped WSPSend with a completion routine that runs on the issuing thread's alertable wait,
// and one with an event read back through WSPGetOverlappedResult.
// Run: npm start (in another terminal), then: node examples/overlapped.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
let bytesAtPeer = 0;
const peer = net.createServer((c) => c.on('data', (b) => (bytesAtPeer += b.length)));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);

// 1. A completion routine, queued as an APC to the thread named by lpThreadId.
const thread = spi.createThread();
let completions = 0;
const routine = (dwError, cbTransferred, lpOverlapped, dwFlags) => {
  completions++;
  console.log(`routine: dwError=${dwError} cbTransferred=${cbTransferred} dwFlags=${dwFlags}`);
};
for (let i = 0; i < 4; i++) {
  const ov = new S.WSAOVERLAPPED();
  const ret = await thread.WSPSend(s, [S.wsabuf(Buffer.alloc(100_000, i))], 1, null, 0, ov, routine, thread.id, errno);
  console.log(`send ${i}: ${ret === 0 ? 'completed at once' : S.wsaErrorName(errno.value)}`);
}
// Routines run only in an alertable wait: SleepEx returns WAIT_IO_COMPLETION (0xC0) after running them.
while (completions < 4) console.log(`SleepEx -> 0x${(await thread.SleepEx(1000, true)).toString(16)}`);

// 2. An event, then WSPGetOverlappedResult.
const hEvent = spi.WSACreateEvent();
const ov = new S.WSAOVERLAPPED(hEvent);
await spi.WSPSend(s, [S.wsabuf('done')], 1, null, 0, ov, null, null, errno);
const which = await spi.WSAWaitForMultipleEvents(1, [hEvent], false, S.WSA_INFINITE, false);
const transferred = S.out(0);
const flags = S.out(0);
const ok = await spi.WSPGetOverlappedResult(s, ov, transferred, false, flags, errno);
console.log(`event ${which} signalled; WSPGetOverlappedResult -> ${ok}, ${transferred.value} bytes`);

await spi.WSPCloseSocket(s, errno);
await new Promise((r) => setTimeout(r, 200));
console.log(`the peer received ${bytesAtPeer} bytes`);
await spi.close();
peer.close();
