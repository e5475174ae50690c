/**
 * What costs the daemon memory beyond its bytes is counted as such (proto/README.md section 15):
 * an empty datagram waiting for a receive counts 256 bytes against SO_RCVBUF and the received
 * budget; a waiting call's string id counts its length in the bookkeeping budget; the replies a
 * resume remembers for requests sent again count against the replay limit.
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { connectedSocket, daemon, ipv4, rawRecord, session, tcpPeer, udpSocket, until } from './helpers/raw-client.js';

async function stats(url: string): Promise<Record<string, unknown>> {
  return (await (await fetch(url.replace(/^ws/, 'http').replace(/\/ws$/, '/stats'))).json()) as Record<string, unknown>;
}

t.test('empty datagrams count 256 bytes each: a 64 KiB receive buffer holds 256 of them', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const u = await udpSocket(s);
  t.equal((await s.call('WSPBind', { s: u, name: ipv4(0), namelen: 16 }))['ret'], 0);
  const port = ((await s.call('WSPGetSockName', { s: u, namelen: 16 }))['name'] as P.SockAddr).port;
  await s.call('WSPIoctl', { s: u, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  const empty = Buffer.alloc(0);
  // Bursts of empty datagrams until the daemon counts its buffer full (the kernel may drop some
  // of a burst on the way, so there is no fixed number to send).
  const full = 256 * 256;
  let sent = 0;
  const filled = await until(async () => {
    for (let i = 0; i < 64; i++, sent++) await new Promise<void>((resolve) => peer.send(empty, port, '127.0.0.1', () => resolve()));
    return (await stats(d.url))['receivedBytes'] === full;
  }, 10000, 1);
  t.ok(filled, `the daemon counts 64 KiB waiting after ${sent} empty datagrams`);
  t.same((await s.call('WSPIoctl', { s: u, code: P.FIONREAD, input: new Uint8Array(0), outputLength: 4 }))['output'], new Uint8Array([0, 0, 0, 0]), 'FIONREAD counts their bytes: 0');
  const taken: unknown[] = [];
  for (let i = 0; i < 1000; i++) {
    const r = await s.call('WSPRecv', { s: u, lengths: [16], flags: 0 });
    if (r['errno'] === P.WSAEWOULDBLOCK) break;
    taken.push(r['bytesRecvd']);
  }
  t.same(taken, Array.from({ length: 256 }, () => 0), '256 empty datagrams were kept, the rest dropped as by a full buffer');
  t.equal((await stats(d.url))['receivedBytes'], 0, 'and nothing counts once they are received');
});

t.test("a waiting call's string id counts its length", async (t) => {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const { h } = await connectedSocket(s, peer);
  await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'block', ms: 600000 } } });
  const before = (await stats(d.url))['bookkeepingBytes'];
  t.equal(before, 0, 'nothing waits yet');
  const id = 'x'.repeat(100000);
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id, method: 'WSPSend', params: { s: h, buffers: [new Uint8Array([1])], flags: 0 } }));
  t.ok(await until(async () => (await stats(d.url))['bookkeepingBytes'] !== 0), 'the blocking send waits');
  t.equal((await stats(d.url))['bookkeepingBytes'], 2048 + 2 * id.length, 'it counts 2 KiB and two bytes per character of its id');
  await s.call('WSPCloseSocket', { s: h });
  const answer = await s.wait((m) => m.id === id);
  t.equal(answer.result?.['errno'], P.WSAEINTR, 'closing the socket answers it');
  t.equal((await stats(d.url))['bookkeepingBytes'], 0, 'and its cost is given back');
});

t.test('the replies a resume remembers for requests sent again count against the replay limit', async (t) => {
  const REPLIES = 300;
  // 300 replies (JSON, about 100 bytes each) are about 30 KB kept: within a 64 KiB limit.
  // Remembered for a resume, at 192 bytes more each, they pass it.
  const d = await daemon(t, { limits: { resumeGraceMs: 60000, replayLimitBytes: 64 * 1024 } });
  const s = await session(t, `${d.url}?resumable=1`);
  const welcome = s.messages.find((m) => m.method === 'spiwire.welcome')?.params ?? {};
  const offer = welcome['resume'];
  if (!P.isRecord(offer)) throw new Error('no resume offer');
  const h = await udpSocket(s);
  for (let i = 0; i < REPLIES; i++) {
    s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: i, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }));
    await s.wait((m) => m.id === i);
  }
  s.ws.terminate();
  await s.closed;
  const resume = (): Promise<{ code: number; replayed: number }> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`${d.url}?resume=${String(welcome['session'])}&daemon=${String(offer['daemonId'])}`, [P.SUBPROTOCOL]);
      let replayed = 0;
      ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: welcome['session'], token: offer['token'], received: 0, daemonId: offer['daemonId'] } })));
      ws.on('message', (data: Buffer, binary: boolean) => {
        if (binary) replayed += P.decodeFrame(data).filter((r) => r.ok && P.isRecord(r.message) && typeof r.message['id'] === 'number').length;
        // The whole replay came through: the limit did not end it.
        if (replayed === REPLIES) ws.close(1000);
      });
      ws.on('close', (code) => resolve({ code, replayed }));
      ws.on('error', reject);
    });
  const r = await resume();
  t.equal(r.code, P.OUTPUT_BACKLOG_CLOSE_CODE, 'the replay passed the limit with the replies remembered: the session ends with 4008');
  t.ok(r.replayed > 0 && r.replayed < REPLIES + 1, `part of the replay went out first (${r.replayed} replies)`);
});

/** The collector, for live-memory readings of the daemon running in this process. */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

t.test('a waiting send keeps only its own bytes, not the rest of the record data it came in', async (t) => {
  const gc = collector();
  const live = (): number => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  const { h, conn } = await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED);
  conn.socket.pause();
  // A send that fills the buffers and stays queued: every send after it waits behind it.
  const first = Buffer.alloc(8 << 20, 0x30);
  t.equal((await s.call('WSPSend', { s: h, buffers: [first], flags: 0, overlapped: { op: 1, thread: 1 } }))['errno'], P.WSA_IO_PENDING);
  const before = live();
  // Each record carries 4 MiB of data and its send references 1 byte of it (section 3 allows
  // data no reference uses). The session quota counts 1 byte each.
  const records = 32;
  const padding = Buffer.alloc(4 << 20, 0x41);
  for (let i = 0; i < records; i++) {
    // The JSON header, then data of which the header references only one byte.
    s.ws.send(rawRecord(JSON.stringify({ jsonrpc: '2.0', id: `pad-${i}`, method: 'WSPSend', params: { s: h, buffers: [{ $b: [i, 1] }], flags: 0, overlapped: { op: 10 + i, thread: 1 } } }), padding));
    t.equal((await s.wait((m) => m.id === `pad-${i}`)).result?.['errno'], P.WSA_IO_PENDING);
  }
  const grown = live() - before;
  t.ok(grown < 16 << 20, `${records} waiting 1-byte sends hold ${(grown / 2 ** 20).toFixed(1)} MiB, not their ${records * 4} MiB of records`);
  conn.socket.resume();
  const got = await conn.waitFor(first.length + records);
  t.ok(got.equals(Buffer.concat([first, Buffer.alloc(records, 0x41)])), 'and each sends its one byte once the peer reads');
});

