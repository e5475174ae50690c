/**
 * Messages that begin and never end (a slowloris on the WebSocket): the daemon counts what ws holds
 * of unfinished messages over every connection and, past --partial-frames-budget, closes the
 * connection whose message began first with 1013. The daemon runs as its own process, so its
 * memory is its own.
 */
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { RawSession, rawSocketOf, session, startCli, udpSocket, until, type Cli } from './helpers/raw-client.js';

const MAX_FRAME = 1024 * 1024;
const BUDGET = 4 * 1024 * 1024;
/** Bytes of its message each hog sends: six of them pass the budget. */
const PART = 700_000;

async function stats(d: Cli): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://127.0.0.1:${d.port}/stats`)).json()) as Record<string, unknown>;
}

const partialBytes = async (d: Cli): Promise<number> => Number((await stats(d))['partialFrameBytes']);


/**
 * A frame as a client writes it: its first byte (FIN and opcode), a 64-bit length, the masking key
 * (all zero), then `part` bytes of its payload (all of it when not given).
 */
function frame(first: number, length: number, part = length): Buffer {
  const header = Buffer.alloc(14);
  header[0] = first;
  header[1] = 0x80 | 127; // masked, 64-bit length
  header.writeBigUInt64BE(BigInt(length), 2);
  // bytes 10..13: the masking key, all zero
  return Buffer.concat([header, Buffer.alloc(part, 0x5a)]);
}

/** The start of a binary message of MAX_FRAME - 16 bytes and `part` bytes of it, and nothing more. */
function beginMessage(ws: WebSocket, part: number): void {
  rawSocketOf(ws).write(frame(0x82, MAX_FRAME - 16, part));
}

/** Opens n sessions, which the test's teardown ends; each index goes to closes when its connection closes. */
async function openSessions(t: Test, d: Cli, n: number, closes: number[]): Promise<RawSession[]> {
  const all: RawSession[] = [];
  t.teardown(() => all.forEach((h) => h.ws.terminate()));
  for (let i = 0; i < n; i++) {
    const h = await RawSession.open(d.url);
    all.push(h);
    void h.closed.then(() => closes.push(i));
  }
  return all;
}

async function startDaemon(t: Test): Promise<Cli> {
  return startCli(t, ['--max-frame-bytes', String(MAX_FRAME), '--partial-frames-budget', String(BUDGET), '--resume-grace', '20000']);
}

t.test('unfinished messages on many connections: the oldest are closed with 1013, the daemon holds no more than the budget', async (t) => {
  const d = await startDaemon(t);
  const bystander = await session(t, d.url);
  const bh = await udpSocket(bystander);
  const hogs: RawSession[] = [];
  t.teardown(() => hogs.forEach((h) => h.ws.terminate()));
  const closes: Array<{ index: number; code: number; reason: string }> = [];
  for (let i = 0; i < 10; i++) {
    const h = await RawSession.open(d.url);
    hogs.push(h);
    void h.closed.then((c) => closes.push({ index: i, ...c }));
    beginMessage(h.ws, PART);
    // Each hog's bytes are in before the next begins, so that the order of arrival is known.
    const arrived = async (): Promise<boolean> => {
      const st = await stats(d);
      return Number(st['partialFrameBytes']) >= (i + 1 - Number(st['partialFrameCloses'])) * PART;
    };
    t.ok(await until(arrived, 5000), `hog ${i}'s bytes are counted`);
    t.ok((await partialBytes(d)) <= BUDGET, `after hog ${i}, the daemon holds no more than the budget`);
  }
  t.ok(await until(() => closes.length >= 5, 5000), 'at least five hogs were closed');
  closes.sort((a, b) => a.index - b.index);
  t.same(
    closes.map((c) => c.index),
    closes.map((_, i) => i),
    'the hogs closed are the first ones, whose messages began first',
  );
  for (const c of closes) {
    t.equal(c.code, 1013, `hog ${c.index}: close code 1013`);
    t.match(c.reason, /partial-frame budget/, `hog ${c.index}: the reason names the budget`);
  }
  t.ok(closes.length <= 6, `no more were closed than needed (${closes.length})`);
  t.ok(hogs.slice(closes.length).every((h) => h.isOpen), 'the later hogs are still connected');
  const st = await stats(d);
  t.ok(Number(st['partialFrameBytes']) >= (10 - closes.length) * PART, 'the open hogs are still counted');
  // The bystander never noticed.
  const r = await bystander.call('WSPGetSockOpt', { s: bh, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'a bystander session still gets answers');
  const metrics = await (await fetch(`http://127.0.0.1:${d.port}/metrics`)).text();
  t.match(metrics, new RegExp(`spiwire_partial_frame_closes_total ${closes.length}\\b`), 'the metric counts the closes');
  // A hog that finishes its message no longer counts (the daemon takes the message and answers
  // that its bytes are not a frame; the session goes on).
  const last = hogs[9]!;
  rawSocketOf(last.ws).write(Buffer.alloc(MAX_FRAME - 16 - PART, 0));
  t.ok(await until(async () => (await partialBytes(d)) <= (10 - closes.length - 1) * (PART + 4096), 5000), 'a finished message no longer counts');
  t.ok(d.lines().every((l) => Number(l['level']) < 50), 'nothing was logged at error level');
});

t.test('a resumable session closed for the budget waits for its client, which resumes it', async (t) => {
  const d = await startDaemon(t);
  const first = await RawSession.open(`${d.url}?resumable=1`);
  t.teardown(() => first.ws.terminate());
  const welcome = await first.wait((m) => m.method === 'spiwire.welcome');
  const params = welcome.params as Record<string, unknown>;
  const offer = params['resume'] as Record<string, unknown>;
  const sid = String(params['session']);
  beginMessage(first.ws, PART);
  t.ok(await until(async () => (await partialBytes(d)) >= PART, 5000), 'its unfinished message is counted');
  const hogs: RawSession[] = [];
  t.teardown(() => hogs.forEach((h) => h.ws.terminate()));
  const closed = first.closed;
  for (let i = 0; i < 6; i++) {
    const h = await RawSession.open(d.url);
    hogs.push(h);
    beginMessage(h.ws, PART);
  }
  const c = await closed;
  t.equal(c.code, 1013, 'the oldest, the resumable session, got 1013');
  const health = (await (await fetch(`http://127.0.0.1:${d.port}/healthz`)).json()) as Record<string, unknown>;
  t.ok(Number(health['sessions']) >= 1, 'its session still counts while it waits');
  // Resume as the spec says (section 20): a new connection naming the session, then spiwire.resume.
  const again = new WebSocket(`${d.url}?resume=${sid}&daemon=${String(offer['daemonId'])}`, [P.SUBPROTOCOL]);
  t.teardown(() => again.terminate());
  const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
    again.on('open', () => again.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: sid, token: offer['token'], received: 0, daemonId: offer['daemonId'] } })));
    again.on('message', (data: Buffer, binary: boolean) => {
      const recs = binary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
      for (const r of recs) if (r.ok && P.isRecord(r.message)) resolve(r.message);
    });
    again.on('close', (code) => reject(new Error(`closed with ${code} before an answer`)));
  });
  t.equal(answer['method'], 'spiwire.resumed', 'the session was resumed');
});

/** A whole binary message of n bytes as a client writes it. */
const wholeMessage = (n: number): Buffer => frame(0x82, n);

t.test('a client that keeps finishing messages is not closed for tricklers: each finished message starts its clock again', async (t) => {
  const d = await startDaemon(t);
  const busy = await RawSession.open(d.url);
  t.teardown(() => busy.ws.terminate());
  const raw = rawSocketOf(busy.ws);
  // 600 KB messages written back to back in 100,000-byte pieces: reads rarely end between two
  // messages, so the busy connection nearly always holds part of one.
  const stream = Buffer.concat(Array.from({ length: 40 }, () => wholeMessage(600_000)));
  let offset = 0;
  const pump = async (): Promise<void> => {
    while (offset < stream.length && busy.isOpen) {
      raw.write(stream.subarray(offset, offset + 100_000));
      offset += 100_000;
      await new Promise((r) => setImmediate(r));
    }
  };
  const pumping = pump();
  const closes: number[] = [];
  for (const h of await openSessions(t, d, 8, closes)) {
    beginMessage(h.ws, PART);
    await new Promise((r) => setTimeout(r, 20));
  }
  await pumping;
  t.ok(await until(() => closes.length > 0, 5000), `tricklers were closed (${closes.length})`);
  t.ok(busy.isOpen, 'the busy client, which finishes its messages, is still connected');
  const st = await stats(d);
  t.ok(Number(st['partialFrameBytes']) <= BUDGET, 'the daemon holds no more than the budget');
});

t.test('tricklers that send empty fragments do not keep their clocks young: a steady client is not the one closed', async (t) => {
  const d = await startDaemon(t);
  const closes: number[] = [];
  const tricklers = await openSessions(t, d, 5, closes);
  // A first fragment of 750 KB each (binary, not FIN): five hold 3.75 MB, under the 4 MiB budget
  // until the steady client's messages arrive.
  for (const h of tricklers) rawSocketOf(h.ws).write(frame(0x02, 750_000));
  // Then, every few ms, each sends an empty continuation frame (not FIN), in two writes.
  const emptyFragment = Buffer.from([0x00, 0x80, 0, 0, 0, 0]);
  let rounds = 0;
  const timer = setInterval(() => {
    if (++rounds > 200) return clearInterval(timer);
    for (const h of tricklers) {
      if (!h.isOpen) continue;
      const raw = rawSocketOf(h.ws);
      raw.write(emptyFragment.subarray(0, 3));
      setTimeout(() => raw.write(emptyFragment.subarray(3)), 2);
    }
  }, 5);
  t.teardown(() => clearInterval(timer));
  await new Promise((r) => setTimeout(r, 100));
  // The steady client: whole messages of 600 KB, in 100,000-byte pieces.
  const steady = await RawSession.open(d.url);
  t.teardown(() => steady.ws.terminate());
  const raw = rawSocketOf(steady.ws);
  const stream = Buffer.concat(Array.from({ length: 10 }, () => wholeMessage(600_000)));
  for (let off = 0; off < stream.length && steady.isOpen; off += 100_000) {
    raw.write(stream.subarray(off, off + 100_000));
    await new Promise((r) => setTimeout(r, 5));
  }
  t.ok(await until(() => closes.length > 0, 5000), `tricklers were closed (${closes.length})`);
  t.ok(steady.isOpen, 'the steady client is still connected');
});

t.test('a message in one-byte fragments counts a cost per fragment, not one byte each', async (t) => {
  const d = await startDaemon(t);
  const h = await RawSession.open(d.url);
  t.teardown(() => h.ws.terminate());
  const frames: Buffer[] = [];
  for (let i = 0; i < 2000; i++) {
    // Not FIN; binary first, continuation after; masked with the zero key; one payload byte.
    frames.push(Buffer.from([i === 0 ? 0x02 : 0x00, 0x80 | 1, 0, 0, 0, 0, 0x5a]));
  }
  rawSocketOf(h.ws).write(Buffer.concat(frames));
  t.ok(await until(async () => (await partialBytes(d)) >= 2000 * 256, 5000), 'the 2,000 fragments count at least 256 bytes each');
});
