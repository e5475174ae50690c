// The promise API: a Socket whose send() resolves with the byte count at completion.
// Run: npm start (in another terminal), then: node examples/promise-api.mjs [ws://127.0.0.1:7787/ws]
import net from 'node:net';
import { connect, Socket } from '@spiwire/client';

const url = process.argv[2] ?? process.env.SPIWIRE_URL ?? 'ws://127.0.0.1:7787/ws';
const peer = net.createServer((c) => c.pipe(c)); // an echo peer
await new Promise((r) => peer.listen(0, '127.0.0.1', r));

const spi = await connect(url, { token: process.env.SPIWIRE_TOKEN });
const sock = await Socket.open(spi, { family: 'ipv4', type: 'tcp' });
await sock.connect('127.0.0.1', peer.address().port);

const sends = [sock.send(Buffer.from('one ')), sock.send([Buffer.from('two '), Buffer.from('three')])];
console.log('bytes sent:', await Promise.all(sends));
let echoed = '';
while (echoed.length < 13) echoed += Buffer.from(await sock.recv(64)).toString();
console.log('echoed:', echoed);

await sock.close();
for await (const c of sock.completions()) console.log('completion:', c);
await spi.close();
peer.close();
