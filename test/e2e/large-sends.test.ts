/**
 * A send of any size is one Winsock call (issue 13, section 2): through the SDK, a blocking
 * 256 MiB WSPSend returns the full count and an overlapped 1 GiB WSPSend pends and completes once
 * with the full count, while the daemon (its own process) grows by a bounded amount; the peer
 * checks every byte by hash. A cancelled large send reports exactly what the peer got.
 * SPIWIRE_LARGE_SEND_MIB scales the overlapped one (default 1024).
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as S from '@spiwire/client';
import { daemon, drainUntil, fionread, overlappedTcp, connectedTcp, session, tcpPeer, type PeerConnection } from '../helpers/harness.js';
import { maxRecvBytes } from '@spiwire/server/internals';
import { bigData } from '../helpers/big-data.js';

const MiB = 1024 * 1024;
/**
 * What a large send may add to the daemon, whatever its size: the 8 MiB stream window, the pieces
 * in flight and the garbage they leave before a collection. The benchmark's scenario 8 holds the
 * daemon to the same bound.
 */
const GROWTH_BOUND = 96 * MiB;
const MAIN = fileURLToPath(new URL('../../../server/dist/src/main.js', import.meta.url));

/** The daemon as its own process, so that its memory is its own; stopped in teardown. */
async function daemonProcess(t: Test): Promise<{ url: string; rss: () => Promise<number> }> {
  const proc = spawn(process.execPath, [MAIN, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    proc.kill('SIGKILL');
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    proc.once('exit', (code) => reject(new Error(`the daemon exited (${code})`)));
  });
  const port = new URL(url).port;
  return {
    url,
    rss: async () => ((await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as { memory: { rss: number } }).memory.rss,
  };
}

/** Hashes what a peer connection receives, without keeping it; resolves at n bytes. */
function hashReceived(conn: PeerConnection, n: number): { done: Promise<{ bytes: number; sha: string }>; bytes: () => number } {
  const h = createHash('sha256');
  let bytes = 0;
  const sock: net.Socket = conn.socket;
  sock.removeAllListeners('data');
  const done = new Promise<{ bytes: number; sha: string }>((resolve) => {
    const onData = (c: Buffer): void => {
      h.update(c);
      bytes += c.length;
      if (bytes >= n) {
        sock.off('data', onData);
        resolve({ bytes, sha: h.digest('hex') });
      }
    };
    sock.on('data', onData);
  });
  sock.resume();
  return { done, bytes: () => bytes };
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

t.test('a blocking 256 MiB WSPSend: one call, the full count, every byte at the peer, the daemon bounded', async (t) => {
  const d = await daemonProcess(t);
  const spi = await session(t, d.url);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const data = bigData(256 * MiB, 1);
  const recv = hashReceived(conn, data.length);
  const before = await d.rss();
  let peak = before;
  const sampler = setInterval(() => void d.rss().then((r) => (peak = Math.max(peak, r)), () => undefined), 100);
  t.teardown(() => clearInterval(sampler));
  const sent = S.out(-1);
  const e = S.out(0);
  const ret = await spi.WSPSend(s, [S.wsabuf(data.subarray(0, 100 * MiB)), S.wsabuf(data.subarray(100 * MiB))], 2, sent, 0, null, null, null, e);
  t.same([ret, sent.value], [0, data.length], `WSPSend returned 0 with ${sent.value} bytes`);
  const got = await recv.done;
  clearInterval(sampler);
  t.equal(got.bytes, data.length, 'the peer received every byte');
  t.equal(got.sha, sha(data), 'exactly the bytes sent, in order');
  t.ok(peak - before < GROWTH_BOUND, `the daemon grew by ${((peak - before) / MiB).toFixed(0)} MiB for a 256 MiB send`);
});

t.test('an overlapped 1 GiB WSPSend: pending, one completion with the full count, the daemon bounded', async (t) => {
  const size = Number(process.env['SPIWIRE_LARGE_SEND_MIB'] ?? 1024) * MiB;
  const d = await daemonProcess(t);
  const spi = await session(t, d.url);
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  const data = bigData(size, 2);
  const before = await d.rss();
  let peak = before;
  const sampler = setInterval(() => void d.rss().then((r) => (peak = Math.max(peak, r)), () => undefined), 100);
  t.teardown(() => clearInterval(sampler));
  const calls: Array<[number, number]> = [];
  const ov = new S.WSAOVERLAPPED();
  const e = S.out(0);
  const ret = await spi.WSPSend(s, [S.wsabuf(data)], 1, null, 0, ov, (err, cb) => void calls.push([err, cb]), null, e);
  t.same([ret, e.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the call pends');
  const recv = hashReceived(conn, data.length);
  t.ok(await drainUntil(spi, () => calls.length > 0, 2000, 50), 'the completion routine ran');
  const got = await recv.done;
  clearInterval(sampler);
  await spi.SleepEx(0, true);
  t.same(calls, [[0, data.length]], 'exactly one completion, with the full count');
  t.equal(got.sha, sha(data), `the peer received all ${got.bytes} bytes, in order`);
  t.ok(peak - before < GROWTH_BOUND, `the daemon grew by ${((peak - before) / MiB).toFixed(0)} MiB for a ${size / MiB} MiB send`);
});

t.test('a large overlapped send cancelled by WSPCloseSocket: one completion, and the peer got exactly its count', async (t) => {
  const d = await daemonProcess(t);
  const spi = await session(t, d.url);
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  const data = bigData(96 * MiB, 3);
  const calls: Array<[number, number]> = [];
  const ov = new S.WSAOVERLAPPED();
  const e = S.out(0);
  t.equal(await spi.WSPSend(s, [S.wsabuf(data)], 1, null, 0, ov, (err, cb) => void calls.push([err, cb]), null, e), S.SOCKET_ERROR);
  // Let the first pieces go, then close with the rest still to come.
  conn.socket.resume();
  const received: Buffer[] = [];
  let n = 0;
  await new Promise<void>((r) => {
    const on = (c: Buffer): void => {
      received.push(c);
      n += c.length;
      if (n > 20 * MiB) {
        conn.socket.off('data', on);
        conn.socket.pause();
        r();
      }
    };
    conn.socket.on('data', on);
  });
  t.equal(await spi.WSPCloseSocket(s, e), 0);
  t.ok(await drainUntil(spi, () => calls.length > 0, 400, 50), 'the routine ran');
  await spi.SleepEx(0, true);
  t.equal(calls.length, 1, 'one completion');
  const [err, count] = calls[0]!;
  t.equal(err, S.WSA_OPERATION_ABORTED, 'aborted');
  t.ok(count >= n && count < data.length, `it reports ${count} bytes`);
  conn.socket.on('data', (c: Buffer) => received.push(c));
  conn.socket.resume();
  await new Promise<void>((r) => conn.socket.once('end', () => r()));
  const all = Buffer.concat(received);
  t.equal(all.length, count, 'the peer received exactly the reported bytes');
  t.ok(all.equals(data.subarray(0, count)), 'in order');
});

t.test('a large WSPRecv buffer: each receive returns what one reply carries, every byte in order, the socket holds no more', async (t) => {
  // A small frame limit makes the bound visible with a few MiB.
  const d = await daemon(t, { limits: { maxFrameBytes: 1 * MiB } });
  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const e = S.out(0);
  // SO_RCVBUF far beyond the frame limit: the daemon still holds at most one reply's worth.
  const big = new Uint8Array(4);
  new DataView(big.buffer).setUint32(0, 256 * MiB, true);
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_RCVBUF, big, 4, e), 0, 'SO_RCVBUF 256 MiB');
  const data = bigData(8 * MiB, 4);
  const written = new Promise<void>((r) => conn.socket.write(data, () => r()));
  const buf = new Uint8Array(64 * MiB);
  const parts: Buffer[] = [];
  let total = 0;
  let largest = 0;
  let held = 0;
  const limit = maxRecvBytes(1 * MiB);
  for (let i = 0; i < 10_000 && total < data.length; i++) {
    const n = S.out(0);
    const fl = S.out(0);
    const r = await spi.WSPRecv(s, [S.wsabuf(buf)], 1, n, fl, null, null, null, e);
    if (r !== 0) throw new Error(`WSPRecv failed: ${e.value}`);
    largest = Math.max(largest, n.value);
    parts.push(Buffer.from(buf.subarray(0, n.value)));
    total += n.value;
    const [io, , unread] = await fionread(spi, s);
    if (io === 0) held = Math.max(held, unread);
  }
  await written;
  t.equal(total, data.length, 'every byte arrived through 64 MiB receive buffers');
  t.ok(Buffer.concat(parts).equals(data), 'in order');
  t.ok(largest <= limit && largest > 0, `no receive returned more than one reply carries (${largest} <= ${limit})`);
  t.ok(held <= limit + 64 * 1024, `the socket never held much more than that unread (${held})`);
});
