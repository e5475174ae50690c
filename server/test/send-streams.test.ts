/**
 * Sends larger than one WebSocket message (issue 13, section 2; proto/README.md section 9): the
 * client streams the bytes in pieces within the window the daemon grants, the real send starts
 * with the first piece, and the daemon holds at most a window of pieces. Driven here with the raw
 * wire client, as a client in another language would do it.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { SendStreams } from '../src/send-streams.js';
import { connectTo, connectedSocket, pattern, session, startCli, tcpPeer, tcpSocket, type Cli, type PeerConn, type RawSession } from './helpers/raw-client.js';

const MiB = 1024 * 1024;

function frame(...msgs: object[]): Uint8Array {
  const b = new P.FrameBuilder();
  for (const m of msgs) b.add(m);
  return b.finish();
}

/**
 * Streams data as stream `id`: the first piece goes with `call` (the WSPSend params), the rest as
 * spiwire.sendData within the window, as spiwire.sendProgress allows. Resolves with the call's
 * reply and how many bytes were sent in pieces.
 */
async function streamSend(s: RawSession, id: number, data: Uint8Array, piece: number, window: number, params: Record<string, unknown>, reqId: string): Promise<{ reply: Promise<unknown>; sentBytes: () => number; done: Promise<void> }> {
  let sent = Math.min(piece, data.length);
  s.ws.send(frame({ jsonrpc: '2.0', id: reqId, method: 'WSPSend', params: { ...params, buffers: [data.subarray(0, sent)], stream: id, total: data.length } }));
  const reply = s.wait((m) => m.id === reqId, 60000);
  reply.catch(() => undefined);
  let taken = 0;
  let closed = false;
  let seen = 0;
  const done = (async () => {
    while (!closed) {
      // Send what the window allows, then wait for the next progress report.
      while (!closed && sent < data.length && sent - taken < window) {
        const n = Math.min(piece, data.length - sent, window - (sent - taken));
        s.ws.send(frame({ jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: id, data: data.subarray(sent, sent + n) } }));
        sent += n;
      }
      const progress = s.messages.filter((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === id);
      if (progress.length > seen) {
        const last = progress[progress.length - 1]!;
        seen = progress.length;
        taken = last.params!['taken'] as number;
        closed = last.params!['done'] === true;
        continue;
      }
      await s.wait((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === id && s.messages.filter((x) => x.method === 'spiwire.sendProgress' && x.params?.['stream'] === id).length > seen, 60000);
    }
  })();
  return { reply, sentBytes: () => sent, done };
}

/** A daemon with these frame and window limits, a session, and a TCP socket of it connected to a peer. */
async function streamRig(t: Test, maxFrame: number, window: number, flags = 0): Promise<{ d: Cli; s: RawSession; h: number; conn: PeerConn }> {
  const d = await startCli(t, ['--max-frame-bytes', String(maxFrame), '--stream-window', String(window)]);
  const s = await session(t, d.url);
  return { d, s, ...(await connectedSocket(s, await tcpPeer(t), flags)) };
}

t.test('a blocking 128 MiB WSPSend in pieces: the full count, every byte at the peer, memory bounded by the window', async (t) => {
  const { d, s, h, conn } = await streamRig(t, MiB, 4 * MiB);
  const welcome = s.messages.find((m) => m.method === 'spiwire.welcome')!;
  t.equal((welcome.params!['limits'] as Record<string, number>)['streamWindowBytes'], 4 * MiB, 'the welcome gives the window');
  const data = pattern(Number(process.env["SPIWIRE_STREAM_TEST_MIB"] ?? 128) * MiB, 11);
  const rssBefore = ((await (await fetch(`http://127.0.0.1:${d.port}/stats`)).json()) as { memory: { rss: number } }).memory.rss;
  let peak = rssBefore;
  const sampler = setInterval(() => {
    void fetch(`http://127.0.0.1:${d.port}/stats`)
      .then((r) => r.json())
      .then((j) => (peak = Math.max(peak, (j as { memory: { rss: number } }).memory.rss)))
      .catch(() => undefined);
  }, 50);
  t.teardown(() => clearInterval(sampler));
  const run = await streamSend(s, 1, data, MiB - 4096, 4 * MiB, { s: h, flags: 0 }, 'big');
  const got = await conn.waitFor(data.length, 60000);
  const reply = (await run.reply) as { result: Record<string, unknown> };
  await run.done;
  clearInterval(sampler);
  t.same([reply.result['ret'], reply.result['bytesSent']], [0, data.length], 'WSPSend returns the full count');
  t.ok(got.equals(data), 'the peer received every byte, in order');
  t.equal(run.sentBytes(), data.length, 'every piece was sent');
  // Holding the whole send would take at least its size; what the daemon holds is the window and
  // the pieces in flight, plus garbage (socket reads, assembled messages) that V8 collects late
  // when the machine is busy: 34-38 MiB alone, 56 once under heavy parallel load.
  t.ok(peak - rssBefore < (data.length * 5) / 8, `the daemon grew by ${((peak - rssBefore) / MiB).toFixed(1)} MiB for a ${data.length / MiB} MiB send (SPIWIRE_STREAM_TEST_MIB sets the size)`);
});

t.test('progress reports never repeat a count: a first piece taken at once is reported once', async (t) => {
  const window = 64 * 1024;
  const { s, h, conn } = await streamRig(t, window, window);
  // The first piece, 40,000 bytes, is more than a quarter of the window and fits at once.
  const data = pattern(150_000, 14);
  const run = await streamSend(s, 5, data, 40_000, window, { s: h, flags: 0 }, 'rep');
  const reply = (await run.reply) as { result: Record<string, unknown> };
  await run.done;
  t.same([reply.result['ret'], reply.result['bytesSent']], [0, data.length], 'the full count');
  t.ok((await conn.waitFor(data.length)).equals(data), 'every byte at the peer, in order');
  const reports = s.messages.filter((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === 5).map((m) => [m.params!['taken'] as number, m.params!['done'] as boolean] as const);
  t.same(reports[0], [40_000, false], 'the first report: the first piece, taken');
  t.same(reports[reports.length - 1], [data.length, true], 'the last: all of it, done');
  t.ok(reports.slice(1).every(([taken], i) => taken > reports[i]![0]), `each report a larger count than the one before (${reports.map(([n]) => n).join(', ')})`);
});

t.test('a nonblocking streamed send under the reference policy: the last report counts what the first piece gave', async (t) => {
  const window = 64 * 1024;
  const { s, h, conn } = await streamRig(t, window, window);
  const fionbio = await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  t.equal(fionbio['ret'], 0, 'FIONBIO 1');
  // The first piece fits the transport buffer whole; the send takes it and no more.
  const data = pattern(150_000, 15);
  const run = await streamSend(s, 6, data, 40_000, window, { s: h, flags: 0 }, 'nb');
  const reply = (await run.reply) as { result: Record<string, unknown> };
  await run.done;
  t.same([reply.result['ret'], reply.result['bytesSent']], [0, 40_000], 'the count of the first piece');
  const reports = s.messages.filter((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === 6).map((m) => [m.params!['taken'], m.params!['done']]);
  t.same(reports[reports.length - 1], [40_000, true], 'the last report: those 40,000 bytes taken, done');
  t.ok((await conn.waitFor(40_000)).equals(data.subarray(0, 40_000)), 'the peer got exactly them');
});

t.test('an overlapped streamed send cancelled by WSPCloseSocket completes once with what reached the transport', async (t) => {
  const { s, h, conn } = await streamRig(t, MiB, 2 * MiB, P.WSA_FLAG_OVERLAPPED);
  conn.socket.pause();
  const data = pattern(32 * MiB, 12);
  const run = await streamSend(s, 7, data, MiB - 4096, 2 * MiB, { s: h, flags: 0, overlapped: { op: 1, thread: 1 } }, 'ov');
  const reply = (await run.reply) as { result: Record<string, unknown> };
  t.equal(reply.result['errno'], P.WSA_IO_PENDING, 'the send is pending');
  // Wait until the daemon has taken some of it, then close.
  await s.wait((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === 7 && (m.params['taken'] as number) > 0, 20000);
  await s.call('WSPCloseSocket', { s: h });
  const completion = await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 1, 20000);
  await run.done;
  t.equal(completion.params!['error'], P.WSA_OPERATION_ABORTED, 'completed with WSA_OPERATION_ABORTED');
  const reported = completion.params!['bytes'] as number;
  t.ok(reported > 0 && reported < data.length, `it reports ${reported} bytes`);
  conn.socket.resume();
  await new Promise<void>((r) => conn.socket.once('end', () => r()));
  const got = conn.received();
  t.equal(got.length, reported, 'the peer received exactly the reported bytes');
  t.ok(got.equals(data.subarray(0, reported)), 'in order');
  t.equal(s.messages.filter((m) => m.method === 'spiwire.completion').length, 1, 'one completion');
  const progress = s.messages.filter((m) => m.method === 'spiwire.sendProgress' && m.params?.['stream'] === 7);
  t.equal(progress[progress.length - 1]!.params!['done'], true, 'the stream was closed (done)');
});

t.test('a client that sends past its window loses that send (WSAENOBUFS), nothing else', async (t) => {
  const { d, s, h, conn } = await streamRig(t, MiB, MiB);
  conn.socket.pause();
  const data = pattern(16 * MiB, 13);
  const piece = MiB / 2;
  s.ws.send(frame({ jsonrpc: '2.0', id: 'greedy', method: 'WSPSend', params: { s: h, flags: 0, buffers: [data.subarray(0, piece)], stream: 3, total: data.length } }));
  // Everything at once, ignoring the window.
  for (let at = piece; at < data.length; at += piece) s.ws.send(frame({ jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 3, data: data.subarray(at, at + piece) } }));
  const reply = await s.wait((m) => m.id === 'greedy', 20000);
  t.equal(reply.result?.['errno'], P.WSAENOBUFS, 'the send fails with WSAENOBUFS');
  const sent = reply.result?.['bytesSent'];
  t.ok(sent === undefined || (typeof sent === 'number' && sent < data.length), 'with at most a partial count');
  const r = await s.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(r['ret'], 0, 'the session and its socket keep working');
  t.equal(d.proc.exitCode, null, 'the daemon is up');
});

t.test('stream rules are checked: total required, not below the first piece, ids not reused while open', async (t) => {
  const d = await startCli(t, ['--max-frame-bytes', String(MiB)]);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  const bad = [
    [{ s: h, flags: 0, buffers: [new Uint8Array(10)], stream: 1 }, 'total'],
    [{ s: h, flags: 0, buffers: [new Uint8Array(10)], stream: 1, total: 5 }, 'total'],
  ] as const;
  for (const [params, field] of bad) {
    const m = await s.request('WSPSend', params).response;
    t.same([m.error?.['code'], (m.error?.['data'] as Record<string, unknown> | undefined)?.['field']], [P.INVALID_PARAMS, field], `INVALID_PARAMS naming ${field}`);
  }
  // A UDP socket has no sends that large.
  const u = (await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 }))['ret'];
  const m = await s.call('WSPSend', { s: u, flags: 0, buffers: [new Uint8Array(10)], stream: 9, total: 2 * MiB });
  t.equal(m['errno'], P.WSAEMSGSIZE, 'UDP: WSAEMSGSIZE');
  // Pieces of a stream that is not open are dropped without a word.
  s.ws.send(frame({ jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 12345, data: new Uint8Array(100) } }));
  const after = await s.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(after['ret'], 0, 'a stray piece changes nothing');
});

t.test('a streamed call refused before its send starts leaves no stream open: no progress, and its id may be used again', async (t) => {
  const d = await startCli(t, ['--max-frame-bytes', String(MiB)]);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const streamed = (h: number, stream: number, op: number): Promise<Record<string, unknown>> =>
    s.call('WSPSend', { s: h, flags: 0, buffers: [new Uint8Array(10)], stream, total: 2 * MiB, overlapped: { op, thread: 1 } });
  // An OVERLAPPED on a socket made without WSA_FLAG_OVERLAPPED: WSAEINVAL (the reference policy).
  const { h: plain } = await connectedSocket(s, peer);
  const refused = await streamed(plain, 7, 1);
  t.same([refused['ret'], refused['errno']], [-1, P.WSAEINVAL], 'refused with WSAEINVAL');
  // An op id that a pending receive holds: INVALID_PARAMS.
  const { h: ov } = await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED);
  const recv = await s.call('WSPRecv', { s: ov, lengths: [16], flags: 0, overlapped: { op: 2, thread: 1 } });
  t.equal(recv['errno'], P.WSA_IO_PENDING, 'a receive holds op 2');
  const dup = await s.request('WSPSend', { s: ov, flags: 0, buffers: [new Uint8Array(10)], stream: 8, total: 2 * MiB, overlapped: { op: 2, thread: 1 } }).response;
  t.same([dup.error?.['code'], (dup.error?.['data'] as Record<string, unknown> | undefined)?.['field']], [P.INVALID_PARAMS, 'overlapped.op'], 'refused with INVALID_PARAMS');
  // Both ids are free again: a blocking streamed send under each is taken, not refused as open.
  for (const id of [7, 8]) {
    const r = await s.call('WSPSend', { s: plain, flags: 0, buffers: [new Uint8Array(10)], stream: id, total: 10 });
    t.same([r['ret'], r['bytesSent']], [0, 10], `stream ${id}: a new send under the same id`);
  }
  const progress = s.messages.filter((m) => m.method === 'spiwire.sendProgress').map((m) => m.params);
  t.same(progress, [{ stream: 7, taken: 10, done: true }, { stream: 8, taken: 10, done: true }], 'the refused calls got no progress; each new send one, done');
});

t.test('a stream that ended reports nothing more: done stays its last report', async (t) => {
  const reports: Array<{ stream: number; taken: number; done: boolean }> = [];
  const quota = { exceeds: () => false } as unknown as ConstructorParameters<typeof SendStreams>[1];
  const streams = new SendStreams(1024, quota, (p) => reports.push(p));
  const progress = streams.begin(7, 4096, 512);
  streams.attach(7, () => true, () => undefined);
  progress(512);
  streams.close(7);
  t.same(reports.at(-1), { stream: 7, taken: 512, done: true }, 'the send ended: done');
  const before = reports.length;
  progress(1024);
  progress(4096);
  t.equal(reports.length, before, 'bytes counted afterwards report nothing');
});
