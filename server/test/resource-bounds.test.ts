/**
 * What one client can make the daemon hold is bounded (issue 11, defects 3, 4, 9 and 10):
 * a client that stops reading its WebSocket, sessions that end while their peers do not read,
 * sockets up to the open-file limit, and a shutdown while peers read slowly. The daemon runs as
 * its own process (the CLI), so that its memory and descriptors are its own.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { RawSession, rawSocketOf, connectTo, jsonLines, pattern, session, sleep, startCli, tcpSocket, udpSocket, until, within, type Cli, type Msg } from './helpers/raw-client.js';

async function stats(d: Cli): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${d.port}/stats`);
  return (await res.json()) as Record<string, unknown>;
}

async function healthz(port: number): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as Record<string, unknown>;
}

function rssMiB(st: Record<string, unknown>): number {
  return (st['memory'] as { rss: number }).rss / (1024 * 1024);
}

/** Polls cond (up to ms) until it holds; returns its last value. */
function eventually(cond: () => Promise<boolean> | boolean, ms = 10000): Promise<boolean> {
  return until(cond, ms, 25);
}

/** A loopback TCP server whose connections read nothing until told; counts what they got. */
async function stubbornPeer(t: Test): Promise<{ port: number; conns: net.Socket[]; received: () => number; readAll: () => void }> {
  const conns: net.Socket[] = [];
  let received = 0;
  const server = net.createServer({ pauseOnConnect: true }, (c) => {
    conns.push(c);
    c.on('error', () => undefined);
    c.on('data', (b: Buffer) => (received += b.length));
    c.pause();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, conns, received: () => received, readAll: () => conns.forEach((c) => c.resume()) };
}

// ---- defect 3: a client that stops reading ----

/** Requests that each produce a reply of about 700 bytes (a WSAPROTOCOL_INFOW), in frames of 200. */
function infoRequests(h: number, count: number, tag: string): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i += 200) {
    const b = new P.FrameBuilder();
    for (let j = i; j < Math.min(count, i + 200); j++) b.add({ jsonrpc: '2.0', id: `${tag}${j}`, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_PROTOCOL_INFOW, optlen: 1024 } });
    frames.push(b.finish());
  }
  return frames;
}

t.test('a client that stops reading: the daemon stops reading it, stays bounded, and ends it with 4008', async (t) => {
  const d = await startCli(t, ['--output-high-water', String(256 * 1024), '--output-limit', String(8 * 1024 * 1024), '--output-stall-timeout', '1500']);
  const bystander = await session(t, d.url);
  const bh = await udpSocket(bystander);
  const hog = await RawSession.open(d.url);
  t.teardown(() => hog.ws.terminate());
  const h = await udpSocket(hog);
  const before = rssMiB(await stats(d));
  // Stop reading, then send requests whose replies come to about 40 MB.
  (hog.ws as unknown as { _socket: net.Socket })._socket.pause();
  for (const f of infoRequests(h, 60_000, 'q')) hog.ws.send(f);
  let peak = before;
  let bystanderWorst = 0;
  const closed = within(hog.closed, 20000, null);
  let done = false;
  void closed.then(() => (done = true));
  while (!done) {
    peak = Math.max(peak, rssMiB(await stats(d)));
    const t0 = performance.now();
    const r = await bystander.call('WSPGetSockOpt', { s: bh, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
    bystanderWorst = Math.max(bystanderWorst, performance.now() - t0);
    if (r['ret'] !== 0) t.fail('the bystander call failed');
    // Time is the point: the sampling interval of memory and the bystander's latency.
    await sleep(50);
  }
  // Reading again lets the close frame (or the drop) through.
  (hog.ws as unknown as { _socket: net.Socket })._socket.resume();
  const how = await closed;
  t.ok(how && (how.code === P.OUTPUT_BACKLOG_CLOSE_CODE || how.code === 1006), `the session ended (close code ${String(how?.code)})`);
  t.ok(peak - before < 64, `daemon memory grew by ${(peak - before).toFixed(1)} MiB at most (replies would have been ~40 MB)`);
  t.ok(bystanderWorst < 500, `the bystander kept being answered (slowest ${bystanderWorst.toFixed(0)} ms)`);
  const ended = jsonLines(d.stdout()).find((l) => l['msg'] === 'session ended' && String(l['reason']).includes('does not read'));
  t.ok(ended, 'the daemon logged why the session ended');
  t.ok(bystander.isOpen, 'the bystander is still connected');
});

t.test('output waiting for clients is bounded daemon-wide: past --output-budget the session holding the most ends with 4008', async (t) => {
  // Each session alone may keep 64 MiB unsent here; the daemon as a whole only 12 MiB.
  const budget = 12 * 1024 * 1024;
  const d = await startCli(t, ['--output-high-water', String(64 * 1024 * 1024), '--output-limit', String(64 * 1024 * 1024), '--output-budget', String(budget), '--output-stall-timeout', '60000']);
  const bystander = await session(t, d.url);
  const bh = await udpSocket(bystander);
  const hog = await RawSession.open(d.url);
  t.teardown(() => hog.ws.terminate());
  const h = await udpSocket(hog);
  (hog.ws as unknown as { _socket: net.Socket })._socket.pause();
  // Replies of about 40 MB, which the hog does not read.
  for (const f of infoRequests(h, 60_000, 'b')) hog.ws.send(f);
  const how = await within(
    (async () => {
      const c = hog.closed;
      // Reading again once the daemon gave up lets the close frame through.
      await until(() => jsonLines(d.stdout()).some((l) => l['msg'] === 'session ended' && String(l['reason']).includes('budget')), 20000);
      (hog.ws as unknown as { _socket: net.Socket })._socket.resume();
      return c;
    })(),
    25000,
    null,
  );
  t.ok(how && (how.code === P.OUTPUT_BACKLOG_CLOSE_CODE || how.code === 1006), `the hog's session ended (close code ${String(how?.code)})`);
  const ended = jsonLines(d.stdout()).find((l) => l['msg'] === 'session ended' && String(l['reason']).includes('budget'));
  t.match(String(ended?.['reason']), /daemon's budget of 12582912 bytes/, 'the daemon logged that the daemon-wide budget ended it');
  const st = await stats(d);
  t.ok(Number(st['outputWaitingBytes']) <= budget, `output waiting is within the budget afterwards (${String(st['outputWaitingBytes'])})`);
  const r = await bystander.call('WSPGetSockOpt', { s: bh, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'the bystander, which reads, is untouched');
});

t.test('output kept for resumes is bounded daemon-wide: past --replay-budget the session keeping the most is no longer resumable, and goes on', async (t) => {
  const d = await startCli(t, ['--replay-budget', String(4 * 1024 * 1024)]);
  // A resumable session whose client reads everything and never acknowledges it.
  const hog = await RawSession.open(`${d.url}?resumable=1`);
  t.teardown(() => hog.ws.terminate());
  const h = await udpSocket(hog);
  let answered = 0;
  for (const f of infoRequests(h, 8_000, 'k')) {
    hog.ws.send(f);
    answered += 200;
    await hog.wait((m) => m.id === `k${answered - 1}`, 10000);
  }
  const line = jsonLines(d.stdout()).find((l) => l['msg'] === 'session can no longer be resumed');
  t.match(String(line?.['reason']), /daemon's budget of 4194304 bytes/, 'the daemon logged that the replay budget took its resumability');
  t.ok(hog.isOpen, 'the session goes on while connected');
  const r = await hog.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'and answers calls');
});

t.test('a session that loses its resumability while a resume replays its output ends, and its connection is closed with 4008', async (t) => {
  const d = await startCli(t, ['--replay-budget', String(4 * 1024 * 1024)]);
  // A resumable session keeps about 3 MiB of replies its client never acknowledged, in 50,000
  // messages of their own (one text call each), so that replaying them takes many turns.
  const a = await RawSession.open(`${d.url}?resumable=1`);
  const welcome = a.messages.find((m) => m.method === 'spiwire.welcome')!.params as { session: string; resume: { token: string; daemonId: string } };
  const N = 50_000;
  let replies = 0;
  const allAnswered = new Promise<void>((r) => a.ws.on('message', () => ++replies === N && r()));
  for (let i = 0; i < N; i++) a.ws.send(JSON.stringify({ jsonrpc: '2.0', id: `a${i}`, method: 'WSPGetSockOpt', params: { s: 0, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }));
  t.ok(await within(allAnswered.then(() => true), 30000, false), 'every call answered');
  t.notOk(jsonLines(d.stdout()).some((l) => l['msg'] === 'session can no longer be resumed'), 'still resumable: within the budget');
  rawSocketOf(a.ws).destroy();
  // Another resumable session, whose replies are kept too.
  const b = await RawSession.open(`${d.url}?resumable=1`);
  t.teardown(() => b.ws.terminate());
  const h = await udpSocket(b);
  // The resume asks for everything again; as soon as the replay begins, the other session's
  // replies take the daemon past its budget, and the first session keeps the most.
  const resumed = new WebSocket(`${d.url}?${P.RESUME_QUERY}=${welcome.session}&${P.RESUME_DAEMON_QUERY}=${welcome.resume.daemonId}`, [P.SUBPROTOCOL]);
  t.teardown(() => resumed.terminate());
  await new Promise((r, j) => resumed.once('open', r).once('error', j));
  resumed.once('message', () => infoRequests(h, 3_000, 'b').forEach((f) => b.ws.send(f)));
  let replayed = 0;
  resumed.on('message', () => replayed++);
  const closed = new Promise<{ code: number; reason: string }>((r) => resumed.once('close', (code, reason) => r({ code, reason: reason.toString() })));
  resumed.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: welcome.session, token: welcome.resume.token, received: 0, daemonId: welcome.resume.daemonId } }));
  const end = await within(closed, 20000, null);
  t.equal(end?.code, P.OUTPUT_BACKLOG_CLOSE_CODE, `the daemon closed the resumed connection with 4008 (${end?.reason ?? 'still open'})`);
  t.ok(replayed > 1 && replayed < N, `in the middle of the replay (${replayed} of ${N + 1} messages)`);
  t.match(String(jsonLines(d.stdout()).find((l) => l['msg'] === 'session ended')?.['reason']), /in the middle of a replay/, 'the daemon logged why the session ended');
  t.equal((await healthz(d.port))['sessions'], 1, 'the session is gone; the other goes on');
  const r = await b.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'and answers calls');
});

/**
 * The daemon's received bytes once they have reached atLeast and stay put between two looks (on
 * a loaded machine the reads may pause for a moment on their way there).
 */
async function receivedOnceSteady(d: Cli, atLeast: number): Promise<number> {
  let held = 0;
  await until(async () => {
    const now = Number((await stats(d))['receivedBytes']);
    const steady = now === held;
    held = now;
    return steady && now >= atLeast;
  }, 20000, 200);
  return held;
}

t.test('received bytes no receive took are bounded daemon-wide: sockets stop reading, and nothing is lost', async (t) => {
  const budget = 8 * 1024 * 1024;
  // Fair share: the budget over 4 sessions, 2 MiB.
  const d = await startCli(t, ['--received-budget', String(budget), '--max-sessions', '4']);
  const perSocket = 1024 * 1024;
  const sockets = 20;
  // A peer that writes 1 MiB of a known pattern to each connection, then waits.
  const written: number[] = [];
  const server = net.createServer((c) => {
    c.on('error', () => undefined);
    const i = written.length;
    written.push(0);
    c.write(pattern(perSocket, i), () => (written[i] = perSocket));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const s = await session(t, d.url);
  const hs: number[] = [];
  for (let i = 0; i < sockets; i++) {
    const h = await tcpSocket(s);
    await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_RCVBUF, optval: Buffer.from([0, 0, 16, 0]), optlen: 4 });
    await connectTo(s, h, port);
    hs.push(h);
  }
  // Nobody reads: the daemon takes what the budget allows, then stops reading those sockets.
  const held = await receivedOnceSteady(d, budget);
  t.ok(held <= budget + 64 * 1024, `the daemon holds ${held} received bytes, within the budget (${budget}) and one read`);
  t.ok(held >= budget, 'and takes up to the budget');
  // Now read every socket to its end: every byte the peer wrote arrives, in order.
  for (let i = 0; i < sockets; i++) {
    const chunks: Buffer[] = [];
    let got = 0;
    while (got < perSocket) {
      const r = await s.call('WSPRecv', { s: hs[i]!, lengths: [perSocket - got], flags: 0 }, 10000);
      if (r['ret'] !== 0) throw new Error(`WSPRecv failed: ${String(r['errno'])}`);
      const data = Buffer.from(r['data'] as Uint8Array);
      chunks.push(data);
      got += data.length;
    }
    t.ok(Buffer.concat(chunks).equals(pattern(perSocket, i)), `socket ${i}: all ${perSocket} bytes, intact`);
  }
  t.equal(Number((await stats(d))['receivedBytes']), 0, 'nothing is held once everything was read');
});

/** A TCP peer that writes bytes to each connection it accepts, then waits. */
async function writingPeer(t: Test, bytes: number): Promise<number> {
  const server = net.createServer((c) => {
    c.on('error', () => undefined);
    c.write(Buffer.alloc(bytes, 0x61));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

t.test('past the received budget every socket of a session over its share stops at once: not one more read each', async (t) => {
  const budget = 1024 * 1024;
  const d = await startCli(t, ['--received-budget', String(budget), '--max-sessions', '4']);
  const port = await writingPeer(t, 64 * 1024);
  const s = await session(t, d.url);
  const before = (await stats(d))['memory'] as Record<string, number>;
  // 200 connections whose peers each send 64 KiB at once, and nobody receives: before, each
  // socket took one more read after the session went over, 12.5 MiB in all, and node read one
  // more into its own stream buffer, which no count saw.
  const sockets = 200;
  for (let i = 0; i < sockets; i++) await connectTo(s, await tcpSocket(s), port);
  const held = await receivedOnceSteady(d, budget);
  t.ok(held >= budget && held <= budget + 64 * 1024, `${held} bytes held: the budget (${budget}) and one read at most`);
  const after = (await stats(d))['memory'] as Record<string, number>;
  const grown = after['arrayBuffers']! - before['arrayBuffers']!;
  t.ok(grown < budget + 4 * 1024 * 1024, `the daemon's buffers grew by ${(grown / 2 ** 20).toFixed(1)} MiB, not the ${(sockets * 64) / 1024} MiB its peers sent`);
});

t.test('past the received budget a UDP receive waiting on an empty socket still gets its datagram, as a TCP one does', async (t) => {
  const budget = 1024 * 1024;
  const d = await startCli(t, ['--received-budget', String(budget), '--max-sessions', '4']);
  const port = await writingPeer(t, 256 * 1024);
  const s = await session(t, d.url);
  // Sockets nobody reads (each holds up to its SO_RCVBUF, 64 KiB) take the session past its share.
  for (let i = 0; i < 24; i++) await connectTo(s, await tcpSocket(s), port);
  t.ok(await until(async () => Number((await stats(d))['receivedBytes']) >= budget, 20000, 50), 'the session holds the budget');
  const u = await udpSocket(s);
  t.equal((await s.call('WSPBind', { s: u, name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 }))['ret'], 0);
  const uport = ((await s.call('WSPGetSockName', { s: u, namelen: 16 }))['name'] as P.SockAddr).port;
  const recv = s.call('WSPRecvFrom', { s: u, lengths: [64], flags: 0 }, 10000);
  const sender = dgram.createSocket('udp4');
  t.teardown(() => sender.close());
  // Sent until the receive is answered (a datagram sent before the receive was registered would be dropped).
  let answered = false;
  void recv.then(() => (answered = true));
  for (let i = 0; i < 100 && !answered; i++) {
    sender.send('hello', uport, '127.0.0.1');
    await within(recv, 50, null);
  }
  const r = await recv;
  t.same([r['ret'], r['bytesRecvd']], [0, 5], 'the waiting receive gets the datagram');
});

t.test('a client that pauses and then reads again gets every reply once; nothing is lost', async (t) => {
  const d = await startCli(t, ['--output-high-water', String(128 * 1024), '--output-stall-timeout', '20000']);
  const s = await RawSession.open(d.url);
  t.teardown(() => s.close());
  const h = await udpSocket(s);
  const sock = (s.ws as unknown as { _socket: net.Socket })._socket;
  sock.pause();
  const n = 8000;
  for (const f of infoRequests(h, n, 'p')) s.ws.send(f);
  // Time is the point: the client stays paused a while (no event tells when the daemon has
  // stopped reading it; the kernel buffers absorb all the requests).
  await sleep(500);
  const st = await stats(d);
  t.ok((st['pendingRequests'] as number) >= 0, 'the daemon answers /stats while the client is not reading');
  sock.resume();
  const all = await eventually(() => s.messages.filter((m: Msg) => typeof m.id === 'string' && m.id.startsWith('p')).length >= n, 20000);
  t.ok(all, 'every request was answered once the client read again');
  const ids = new Set(s.messages.filter((m: Msg) => typeof m.id === 'string' && m.id.startsWith('p')).map((m) => m.id));
  t.equal(ids.size, n, `exactly ${n} distinct replies`);
  t.ok(s.messages.filter((m: Msg) => typeof m.id === 'string' && m.id.startsWith('p')).every((m) => m.result?.['ret'] === 0), 'all of them results');
  t.ok(s.isOpen, 'the session is still open');
});

t.test('one frame whose replies pass the high water mark: the rest of it waits for the client to read, and the output stays bounded', async (t) => {
  const highWater = 128 * 1024;
  // An output limit the frame's replies (about 40 MB) would pass many times over if the frame
  // were handled to its end while the client does not read.
  const d = await startCli(t, ['--output-high-water', String(highWater), '--output-limit', String(4 * 1024 * 1024), '--output-stall-timeout', '20000']);
  const s = await RawSession.open(d.url);
  t.teardown(() => s.close());
  // A full set of rules, with long ids: each spiwire.faults.list reply is about 10 KB.
  const h = await tcpSocket(s);
  for (let j = 0; j < P.MAX_FAULT_RULES; j++) await s.call('spiwire.faults.add', { rule: { id: `rule-${j}-${'x'.repeat(40)}`, match: { socket: h }, action: { type: 'block', ms: 600000 } } });
  const sock = (s.ws as unknown as { _socket: net.Socket })._socket;
  sock.pause();
  const n = P.MAX_RECORDS_PER_FRAME;
  const b = new P.FrameBuilder();
  for (let j = 0; j < n; j++) b.add({ jsonrpc: '2.0', id: `f${j}`, method: 'spiwire.faults.list', params: {} });
  s.ws.send(b.finish());
  // The kernel's buffers take what they can; then the output waits in the daemon.
  t.ok(await eventually(async () => ((await stats(d))['outputWaitingBytes'] as number) > highWater, 20000), 'the output passed the high water mark');
  let most = 0;
  // Time is the point: the output must stay where it stopped while the client does not read.
  for (let i = 0; i < 10; i++) {
    most = Math.max(most, (await stats(d))['outputWaitingBytes'] as number);
    await sleep(50);
  }
  // The mark, plus the packed replies that passed it (sent every 256 KiB) and one record's.
  t.ok(most <= highWater + 256 * 1024 + 4096, `the output stopped growing: at most ${most} bytes waited`);
  sock.resume();
  const all = await eventually(() => s.messages.filter((m: Msg) => typeof m.id === 'string' && m.id.startsWith('f')).length >= n, 30000);
  t.ok(all, 'every call of the frame was answered once the client read again');
  const replies = s.messages.filter((m: Msg) => typeof m.id === 'string' && m.id.startsWith('f'));
  t.equal(new Set(replies.map((m) => m.id)).size, n, `exactly ${n} distinct replies`);
  t.same(replies.slice(0, 3).map((m) => m.id), ['f0', 'f1', 'f2'], 'in order');
  t.equal(replies[n - 1]?.id, `f${n - 1}`, 'the last one last');
  t.ok(s.isOpen, 'the session is still open');
});

// ---- defect 4: held bytes of ended sessions ----

t.test('bytes held for ended sessions count against a daemon budget, show in /healthz, and are released after the linger time', async (t) => {
  const MiB = 1024 * 1024;
  const d = await startCli(t, ['--session-quota', String(32 * MiB), '--held-bytes-budget', String(40 * MiB), '--linger-timeout', '1500', '--sndbuf', String(4 * MiB)]);
  const peer = await stubbornPeer(t);
  const chunk = pattern(4 * MiB, 3);
  /** Overlapped sends of 4 MiB until one is refused or count are pending; returns the bytes taken and the refusal. */
  const fill = async (s: RawSession, count: number): Promise<{ taken: number; refused: number }> => {
    const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
    await connectTo(s, h, peer.port);
    let taken = 0;
    for (let k = 0; k < count; k++) {
      const r = await s.call('WSPSend', { s: h, buffers: [chunk], flags: 0, overlapped: { op: k + 1, thread: 1 } });
      if (r['ret'] !== 0 && r['errno'] !== P.WSA_IO_PENDING) return { taken, refused: r['errno'] as number };
      taken += chunk.length;
    }
    return { taken, refused: 0 };
  };
  // Short sessions, each leaving behind what the kernel did not take, with a peer that does not read.
  for (let i = 0; i < 3; i++) {
    const s = await RawSession.open(d.url);
    await fill(s, 4);
    await s.close();
  }
  t.ok(await eventually(async () => (await healthz(d.port))['sessions'] === 0), 'the sessions are gone');
  const h1 = await healthz(d.port);
  const leftBehind = h1['heldBytesOfEndedSessions'] as number;
  t.ok(leftBehind > 8 * MiB, `/healthz shows bytes held for ended sessions (${leftBehind})`);
  t.equal(h1['heldBytes'], leftBehind, 'all of what is held is theirs');
  t.ok((h1['drainingConnections'] as number) > 0, `and the connections still delivering (${String(h1['drainingConnections'])})`);
  const st = await stats(d);
  t.equal(st['heldBytesOfEndedSessions'], leftBehind, '/stats shows the same');
  // A live session may not take more than the budget leaves, though its own quota would allow it.
  const live = await session(t, d.url);
  const r = await fill(live, 8);
  t.equal(r.refused, P.WSAENOBUFS, 'a send beyond the daemon budget is refused with WSAENOBUFS');
  t.ok(r.taken < 32 * MiB && r.taken + leftBehind <= 40 * MiB + 4 * MiB, `the live session got ${r.taken / MiB} MiB, less than its quota of 32 MiB`);
  // Its fair share (the budget over --max-sessions, at least 64 KiB) stays available whatever the others hold.
  const small = await tcpSocket(live);
  await connectTo(live, small, peer.port);
  const few = await live.call('WSPSend', { s: small, buffers: [pattern(1000, 4)], flags: 0 });
  t.same([few['ret'], few['bytesSent']], [0, 1000], `a small send within the fair share still goes (errno ${String(few['errno'])})`);
  await live.close();
  // After the linger time the connections are reset and the bytes released.
  t.ok(await eventually(async () => (await healthz(d.port))['heldBytes'] === 0, 10000), 'released after the linger time');
  t.equal((await healthz(d.port))['heldBytesOfEndedSessions'], 0);
  t.ok(jsonLines(d.stdout()).some((l) => String(l['msg']).includes('linger') && (l['undeliveredBytes'] as number) > 0), 'each reset connection is logged with its undelivered bytes');
  // And a new session can send again.
  const s = await session(t, d.url);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  const sent = await s.call('WSPSend', { s: h, buffers: [pattern(1000, 9)], flags: 0 });
  t.same([sent['ret'], sent['bytesSent']], [0, 1000], 'a new session sends');
});

// ---- defect 9: descriptors ----

t.test('sockets are capped below the open-file limit: health checks and other sessions keep working', async (t) => {
  // The CLI under a low open-file limit, so the test stays quick.
  const { url, port } = await startCli(t, [], 400);
  const hog = await session(t, url);
  const welcome = hog.messages.find((m) => m.method === 'spiwire.welcome')!;
  const maxSockets = (welcome.params?.['limits'] as Record<string, number>)['maxSockets']!;
  t.ok(maxSockets < 400, `the per-session cap (${maxSockets}) is below the open-file limit`);
  let made = 0;
  for (let i = 0; i < 500; i++) {
    const r = await hog.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 });
    if (r['ret'] === P.INVALID_SOCKET) {
      t.equal(r['errno'], P.WSAEMFILE, `socket ${i + 1}: WSAEMFILE`);
      break;
    }
    const b = await hog.call('WSPBind', { s: r['ret'], name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 });
    if (b['ret'] !== 0) t.fail(`bind ${i}: ${String(b['errno'])}`);
    made++;
  }
  t.equal(made, maxSockets, `one session made and bound ${made} sockets, its cap`);
  t.equal((await healthz(port))['status'], 'ok', '/healthz answers');
  const other = await session(t, url);
  const u = await udpSocket(other);
  const b = await other.call('WSPBind', { s: u, name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 });
  t.equal(b['ret'], 0, 'another session still makes and binds a socket');
  // Fill the daemon-wide cap from a third session too: still nothing breaks.
  const third = await session(t, url);
  let refused = false;
  for (let i = 0; i < 500 && !refused; i++) {
    const r = await third.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 });
    if (r['ret'] === P.INVALID_SOCKET) refused = r['errno'] === P.WSAEMFILE;
    else await third.call('WSPBind', { s: r['ret'], name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 });
  }
  t.ok(refused, 'the daemon-wide cap answers WSAEMFILE');
  t.equal((await healthz(port))['status'], 'ok', '/healthz still answers');
  const late = await RawSession.open(url);
  t.ok(late.isOpen, 'a new session still opens');
  await late.close();
});

/** Opens raw TCP connections to port that send nothing: idle HTTP connections, each a slot and a descriptor. */
async function idleConnections(t: Test, port: number, n: number): Promise<net.Socket[]> {
  const conns: net.Socket[] = [];
  t.teardown(() => conns.forEach((c) => c.destroy()));
  for (let i = 0; i < n; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    conns.push(c);
    await new Promise<void>((r) => c.once('connect', () => r()).once('close', () => r()));
  }
  return conns;
}

t.test('every allowance taken at once fits the open-file limit: sessions, their traces, sockets and HTTP connections', async (t) => {
  // A limit this low is where the allowances used to add up to more than the process may open:
  // the daemon then failed calls with errors of its own instead of WSAEMFILE or a 503.
  const traceDir = mkdtempSync(join(tmpdir(), 'spiwire-fd-traces-'));
  t.teardown(() => rmSync(traceDir, { recursive: true, force: true }));
  const d = await startCli(t, ['--trace-dir', traceDir], 256);
  const sessions: RawSession[] = [];
  let refusal: unknown = null;
  for (let i = 0; i < 300 && refusal === null; i++) {
    try {
      sessions.push(await session(t, d.url));
    } catch (err) {
      refusal = err;
    }
  }
  t.equal((refusal as { status?: number } | null)?.status, 503, `sessions up to the limit (${sessions.length}), then 503`);
  // Every session makes and binds UDP sockets (one descriptor each) until the daemon-wide cap.
  let made = 0;
  const refusedWith = new Set<number>();
  for (const s of sessions) {
    for (let i = 0; i < 300; i++) {
      const r = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 });
      if (r['ret'] === P.INVALID_SOCKET) {
        refusedWith.add(r['errno'] as number);
        break;
      }
      const b = await s.call('WSPBind', { s: r['ret'], name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 });
      if (b['ret'] !== 0) refusedWith.add(b['errno'] as number);
      else made++;
    }
  }
  t.same([...refusedWith], [P.WSAEMFILE], `${made} sockets bound; past the cap, WSAEMFILE and nothing else`);
  // The HTTP headroom, taken by connections that never send a request.
  await idleConnections(t, d.port, 64);
  const open = readdirSync(`/proc/${d.proc.pid!}/fd`).length;
  t.ok(open < 256 - 16, `${open} descriptors open of 256, with room to spare`);
  const health = await fetch(`http://127.0.0.1:${d.port}/healthz`);
  t.equal(health.status, 200, '/healthz answers with everything taken');
  const st = (await health.json()) as Record<string, unknown>;
  t.equal(st['sessions'], sessions.length, 'every session is still open');
  for (const s of sessions) t.ok(s.isOpen, 'and its connection with it');
  // Every session still answers a call, and each trace still takes records.
  const probes = await Promise.all(sessions.map((s) => s.call('WSPGetSockOpt', { s: 999999, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 })));
  t.same([...new Set(probes.map((r) => r['errno']))], [P.WSAENOTSOCK], 'each session answers its calls');
  const errors = d.lines().filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 50);
  t.same(errors, [], 'nothing logged at error level');
  const warnings = d.lines().filter((l) => l['level'] === 40 && /EMFILE|too many open files/i.test(JSON.stringify(l)));
  t.same(warnings, [], 'and nothing ran out of descriptors');
});

// ---- defect 10: shutdown delivers what was reported sent ----

t.test('SIGTERM with a slow peer: every byte WSPSend reported reaches the peer', async (t) => {
  const d = await startCli(t);
  const s = await session(t, d.url);
  const peer = await stubbornPeer(t);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  let reported = 0;
  const chunk = pattern(256 * 1024, 5);
  for (let i = 0; i < 400; i++) {
    const r = await s.call('WSPSend', { s: h, buffers: [chunk], flags: 0 });
    if (r['ret'] !== 0) break;
    reported += r['bytesSent'] as number;
  }
  t.ok(reported > 0, `WSPSend reported ${reported} bytes sent before the buffers filled`);
  d.proc.kill('SIGTERM');
  // The peer starts reading slowly only after the signal has taken effect: the daemon closed the
  // session (1001), and drains the connections next.
  const closed = await within(s.closed, 10000, null);
  t.equal(closed?.code, 1001, 'the session was closed for the shutdown');
  const conn = peer.conns[0]!;
  conn.resume();
  const gone = new Promise<void>((r) => conn.once('end', () => r()));
  const exit = await within(d.exited, 25000, null);
  t.same(exit, { code: 0, signal: null }, 'the daemon exits 0');
  await within(gone, 10000, null);
  t.equal(peer.received(), reported, `the peer received every reported byte (${peer.received()} of ${reported})`);
});

t.test('SIGTERM with a peer that never reads: the daemon exits by the drain deadline and logs what it could not deliver', async (t) => {
  const d = await startCli(t, ['--drain-timeout', '500']);
  const s = await session(t, d.url);
  const peer = await stubbornPeer(t);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  const chunk = pattern(1024 * 1024, 6);
  for (let i = 0; i < 100; i++) {
    const r = await s.call('WSPSend', { s: h, buffers: [chunk], flags: 0 });
    if (r['ret'] !== 0) break;
  }
  const started = Date.now();
  d.proc.kill('SIGTERM');
  const exit = await within(d.exited, 8000, null);
  t.same(exit, { code: 0, signal: null }, `exits 0 after ${Date.now() - started} ms`);
  const line = jsonLines(d.stdout()).find((l) => String(l['msg']).includes('drain deadline'));
  t.ok(line && (line['undeliveredBytes'] as number) > 0, `the connection is logged with its undelivered bytes (${String(line?.['undeliveredBytes'])})`);
  // The connection was reset (SO_LINGER 0), so the kernel sent no FIN after a truncated stream;
  // a peer that reads only later may still see its buffered bytes end in EOF (Linux).
  const ended = await within(
    new Promise<string>((r) => {
      peer.conns[0]!.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
      peer.conns[0]!.once('end', () => r('end'));
      peer.conns[0]!.resume();
    }),
    5000,
    'still open',
  );
  t.not(ended, 'still open', `the peer's connection is over (${ended})`);
});
