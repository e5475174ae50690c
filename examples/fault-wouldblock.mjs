// A fault rule makes a nonblocking WSPSend fail with WSAEWOULDBLOCK, as if the send buffer were
// full for 250 ms: FD_WRITE then comes when room is back, and the send goes through.
// Run: npm start (in another terminal), then: node examples/fault-wouldblock.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import * as S from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
const received = [];
const peer = net.createServer((c) => c.on('data', (b) => received.push(b)));
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await S.connect(url, { token: process.env.SPIWIRE_TOKEN });
const errno = S.out(0);
const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, errno);
await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.address().port }, 16, null, null, null, null, errno);

// WSPEventSelect makes the socket nonblocking and reports FD_WRITE through an event object.
const ev = spi.WSACreateEvent();
await spi.WSPEventSelect(s, ev, S.FD_WRITE, errno);
const events = { lNetworkEvents: 0, iErrorCode: [] };
const waitFdWrite = async () => {
  do {
    await spi.WSAWaitForMultipleEvents(1, [ev], false, S.WSA_INFINITE, false);
    await spi.WSPEnumNetworkEvents(s, ev, events, errno);
  } while (!(events.lNetworkEvents & S.FD_WRITE));
};
await waitFdWrite(); // FD_WRITE as the socket is selected: it can send.

// The rule: the first WSPSend on this socket finds the transport taking nothing for 250 ms.
const id = await spi.faults.add({ match: { socket: s, functions: ['WSPSend'], nth: 1 }, action: { type: 'block', ms: 250 } });
console.log(`rule ${id} added`);

const sent = S.out(0);
const message = [S.wsabuf('hello after the hold')];
let ret = await spi.WSPSend(s, message, 1, sent, 0, null, null, null, errno);
console.log(`WSPSend returned ${ret}, error ${S.wsaErrorName(errno.value)}`);

// As after a real WSAEWOULDBLOCK: wait for FD_WRITE, then send again.
const before = Date.now();
await waitFdWrite();
console.log(`FD_WRITE after ${Date.now() - before >= 200 ? 'the hold' : 'too little time'}`);
ret = await spi.WSPSend(s, message, 1, sent, 0, null, null, null, errno);
console.log(`WSPSend returned ${ret}, lpNumberOfBytesSent = ${sent.value}`);

const [rule] = await spi.faults.list();
console.log(`rule ${rule.id} fired ${rule.hits} time(s)`);
await spi.WSPCloseSocket(s, errno);
await new Promise((r) => setTimeout(r, 100));
console.log(`the peer received: ${JSON.stringify(Buffer.concat(received).toString())}`);
await spi.close();
peer.close();
