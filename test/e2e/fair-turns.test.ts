/**
 * Many sessions at once (server/src/turn-budget.ts, server/src/read-slots.ts): once the sessions
 * working in one turn of the daemon's event loop have used its time, new messages wait for the
 * check phase and set-aside work resumes there in order; and only a few sessions at a time read
 * large messages, the others stopping until their turn. Whatever is held back and resumed, each
 * session's sends reach its peer whole and in order, every call is answered once, a quiet session
 * beside bulk senders keeps being answered, and a session cut off while it waits to be read
 * resumes and goes on.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import * as S from '@spiwire/client';
import { Socket } from '@spiwire/client';
import { TurnBudget } from '@spiwire/server/internals';
import { daemon, loopback, roundTrip, send, session, tcpPeer, connectedTcp, until, type PeerConnection } from '../helpers/harness.js';
import { cuttingProxy } from '../helpers/cutting-proxy.js';
import { parseExposition, sample } from '../helpers/prometheus-text.js';

async function readSlotMetrics(port: number): Promise<{ waits: number; waiting: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const e = parseExposition(text);
  return { waits: sample(e, 'spiwire_read_slot_waits_total') ?? 0, waiting: sample(e, 'spiwire_read_slot_waiting_sessions') ?? 0 };
}

const SESSIONS = 8;
const SENDS = 32;
const SIZE = 64 * 1024;

/** Send i of session k: every byte says which session and which send it belongs to. */
function chunk(k: number, i: number): Buffer {
  const b = Buffer.alloc(SIZE, (k * 37 + i) & 0xff);
  b.writeUInt32BE(k, 0);
  b.writeUInt32BE(i, 4);
  return b;
}

t.test('bulk senders in many sessions and a quiet session beside them: every byte in order, every call answered', async (t) => {
  // Count what the budget does, on the real object (a wrapper that calls through).
  let deferred = 0;
  const defer = TurnBudget.prototype.defer;
  TurnBudget.prototype.defer = function (this: TurnBudget, w) {
    deferred++;
    defer.call(this, w);
  };
  t.teardown(() => {
    TurnBudget.prototype.defer = defer;
  });
  const d = await daemon(t);
  const peer = await tcpPeer(t, 'ipv4');
  const loads: Array<{ sock: Socket; conn: PeerConnection }> = [];
  for (let k = 0; k < SESSIONS; k++) {
    const spi = await session(t, d);
    const sock = await Socket.open(spi, { family: 'ipv4', type: 'tcp' });
    const connP = peer.nextConnection();
    await sock.connect(loopback('ipv4'), peer.port);
    loads.push({ sock, conn: await connP });
  }
  const quiet = await session(t, d);
  const q = await connectedTcp(quiet, 'ipv4', peer);
  let loadDone = false;
  const load = Promise.all(loads.map(({ sock }, k) => Promise.all(Array.from({ length: SENDS }, (_, i) => sock.send(chunk(k, i)))))).finally(() => (loadDone = true));
  // The quiet session's blocking 100-byte sends, one at a time, until the load is done.
  let calls = 0;
  const failures: number[] = [];
  const small = Buffer.alloc(100, 0x51);
  while (!loadDone) {
    const [r, err, n] = await send(quiet, q.s, [small]);
    if (r !== 0 || n !== 100) failures.push(err);
    calls++;
  }
  t.same(failures, [], 'every quiet send succeeded with its 100 bytes');
  const sent = await load;
  t.ok(sent.every((ns) => ns.length === SENDS && ns.every((n) => n === SIZE)), `each of ${SESSIONS} x ${SENDS} sends completed with ${SIZE} bytes`);
  for (let k = 0; k < SESSIONS; k++) {
    const got = await loads[k]!.conn.waitFor(SENDS * SIZE, 20000);
    const want = Buffer.concat(Array.from({ length: SENDS }, (_, i) => chunk(k, i)));
    t.ok(got.equals(want), `session ${k}: its peer got its ${SENDS} sends whole and in order`);
  }
  t.ok(calls > 0, `the quiet session was answered ${calls} times while the load ran`);
  const quietBytes = await q.conn.waitFor(calls * 100, 10000);
  t.equal(quietBytes.length, calls * 100, "the quiet session's bytes all arrived");
  t.ok(deferred > 0, `work was set aside and resumed ${deferred} times`);
  const slots = await readSlotMetrics(d.port);
  t.ok(slots.waits > 0, `sessions stopped reading for others ${slots.waits} times (spiwire_read_slot_waits_total)`);
  // The slots change hands in the daemon's check phase: a session queued during the load's last
  // reads gets its slot, or gives it up, a turn or two after the last reply has gone out.
  t.ok(await until(async () => (await readSlotMetrics(d.port)).waiting === 0, 5000, 1), 'with the load done, no session is left waiting for a reader slot');
  for (const { sock } of loads) await sock.close();
  await quiet.WSPCloseSocket(q.s, S.out(0));
});

t.test('a bulk sender cut off while sessions wait for reader slots resumes, and every byte of every session arrives once', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000 } });
  const peer = await tcpPeer(t, 'ipv4');
  const proxy = await cuttingProxy(t, d.url);
  const loads: Array<{ spi: S.SpiSession; sock: Socket; conn: PeerConnection }> = [];
  for (let k = 0; k < 5; k++) {
    // Session 0 goes through the proxy that cuts; the others straight to the daemon.
    const spi = await session(t, k === 0 ? proxy.url : d.url);
    const sock = await Socket.open(spi, { family: 'ipv4', type: 'tcp' });
    const connP = peer.nextConnection();
    await sock.connect(loopback('ipv4'), peer.port);
    loads.push({ spi, sock, conn: await connP });
  }
  const resumed = new Promise<void>((r) => loads[0]!.spi.on('resumed', () => r()));
  const lost: string[] = [];
  loads[0]!.spi.on('lost', (e) => lost.push(e.reason));
  const sends = 48;
  const load = Promise.all(loads.map(({ sock }, k) => Promise.all(Array.from({ length: sends }, (_, i) => sock.send(chunk(k, i))))));
  // Cut once most of the senders wait for a slot: session 0 is then likely one of them.
  t.ok(await until(async () => (await readSlotMetrics(d.port)).waiting >= 2, 20000, 2), 'sessions queue for reader slots under the load');
  proxy.cutNow();
  await resumed;
  const sent = await load;
  t.same(lost, [], 'session 0 was not lost');
  t.ok(sent.every((ns) => ns.length === sends && ns.every((n) => n === SIZE)), 'every send of every session completed once with all its bytes');
  for (let k = 0; k < loads.length; k++) {
    const want = Buffer.concat(Array.from({ length: sends }, (_, i) => chunk(k, i)));
    const got = await loads[k]!.conn.waitFor(want.length, 20000);
    t.ok(got.equals(want), `session ${k}: its peer got every byte once, in order`);
  }
  // After the cut, session 0 reads again: a small call of its own is answered.
  const [r, , n] = await send(loads[0]!.spi, loads[0]!.sock.handle, [Buffer.from('after')]);
  t.same([r, n], [0, 5], 'session 0 answers a call after its resume');
  t.equal((await readSlotMetrics(d.port)).waiting, 0, 'nobody is left waiting for a slot');
});

t.test('--reader-slots 0: bulk senders are read as they come, and nobody waits for a slot', async (t) => {
  const d = await daemon(t, { limits: { readerSlots: 0 } });
  const peer = await tcpPeer(t, 'ipv4');
  const loads: Array<{ sock: Socket; conn: PeerConnection }> = [];
  for (let k = 0; k < 4; k++) {
    const spi = await session(t, d);
    const sock = await Socket.open(spi, { family: 'ipv4', type: 'tcp' });
    const connP = peer.nextConnection();
    await sock.connect(loopback('ipv4'), peer.port);
    loads.push({ sock, conn: await connP });
  }
  await Promise.all(loads.map(({ sock }, k) => Promise.all(Array.from({ length: SENDS }, (_, i) => sock.send(chunk(k, i))))));
  for (let k = 0; k < loads.length; k++) {
    const want = Buffer.concat(Array.from({ length: SENDS }, (_, i) => chunk(k, i)));
    t.ok((await loads[k]!.conn.waitFor(want.length, 20000)).equals(want), `session ${k}: every byte once, in order`);
  }
  t.same(await readSlotMetrics(d.port), { waits: 0, waiting: 0 }, 'no session stopped for the slots');
});

/**
 * A TCP peer in a process of its own that reads as fast as the kernel gives (one in this process
 * reads slower, and the daemon's writes then wait for room, which hides what is tested below).
 * Says how many bytes, and their hash, once the connection ends.
 */
async function discardProcess(t: Test): Promise<{ port: number; result: Promise<{ bytes: number; sha256: string }> }> {
  const code = `const net = require('net'); const crypto = require('crypto');
    const s = net.createServer((c) => { const h = crypto.createHash('sha256'); let n = 0;
      c.on('data', (b) => { n += b.length; h.update(b); });
      c.on('end', () => { process.stdout.write(JSON.stringify({ bytes: n, sha256: h.digest('hex') }) + '\\n'); s.close(); c.end(); }); });
    s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill());
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const port = Number((await lines.next()).value);
  return { port, result: lines.next().then((l) => JSON.parse(String(l.value)) as { bytes: number; sha256: string }) };
}

t.test('a send through a one-byte SO_SNDBUF (a few bytes a write) holds up no other session', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d, { autoApc: true });
  const other = await session(t, d);
  const peer = await discardProcess(t);
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  t.equal(await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, new Uint8Array([1, 0, 0, 0]), 4, e), 0, 'SO_SNDBUF 1');
  t.equal(await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e), 0, 'connected to the peer');
  const data = Buffer.alloc(1_000_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  let sendDone = false;
  const completion = new Promise<[number, number]>((resolve) => {
    void spi.WSPSend(s, [S.wsabuf(data)], 1, S.out(-1), 0, new S.WSAOVERLAPPED(), (error, bytes) => {
      sendDone = true;
      resolve([error, bytes]);
    }, null, e);
  });
  // Node calls back a write the kernel took at once on the next tick; pumping from there chained
  // ticks for the whole megabyte (a quarter of a million writes of 4 bytes), and the daemon read
  // nothing else until the send was done.
  let answered = 0;
  for (let i = 0; i < 100_000 && !sendDone; i++) {
    await roundTrip(other);
    if (!sendDone) answered++;
  }
  t.ok(answered >= 10, `another session is answered while the send goes: ${answered} calls`);
  t.same(await completion, [0, data.length], 'the send completes');
  t.equal(await spi.WSPCloseSocket(s, e), 0);
  t.same(await peer.result, { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') }, 'and the peer gets every byte, in order');
});
