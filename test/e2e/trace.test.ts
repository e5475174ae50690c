/**
 * The call trace (docs/trace.md) against a real workload: overlapped sends with routines on two
 * threads, one with an event object, blocking sends, WSPEventSelect and a fault rule. The records
 * say what happened; the Chrome / Perfetto export has one span per overlapped operation, each
 * begun once and ended once, after it began, on its socket's track; calls sit on their threads'
 * tracks. `spiwire trace export` converts the file the SDK wrote.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as S from '@spiwire/client';
import { daemon, ovSend, pattern, pollUntil, roundTrip, send, tcpBytesBeforeFence, tcpPeer } from '../helpers/harness.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

t.test('a traced workload, exported: every operation one span, from its call to its delivery', async (t) => {
  const d = await daemon(t);
  const records: S.TraceRecord[] = [];
  const spi = await S.connect(d.url, { autoApc: true, trace: (r) => void records.push(r) });
  t.teardown(() => spi.close());
  const peer = await tcpPeer(t, 'ipv4');
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  t.equal(await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e), 0);
  const conn = await peer.nextConnection();
  await spi.faults.add({ match: { socket: s, nth: 2 }, action: { type: 'delay', ms: 20 }, notify: true });
  const worker = spi.createThread();
  const ran: string[] = [];
  const data: Buffer[] = [];
  for (let i = 0; i < 6; i++) {
    data.push(pattern(1000 + i, i + 1));
    const onWorker = i % 2 === 1;
    const r = await ovSend(spi, s, [data[i]!], { routine: () => void ran.push(String(i)), threadId: onWorker ? worker.id : null });
    t.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, `send ${i} started`);
  }
  const ev = spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const r = await ovSend(spi, s, [Buffer.from('event')], { ov });
  t.ok(r.ret === 0 || r.err === S.WSA_IO_PENDING, 'a send with an event object started');
  t.same(await send(spi, s, [Buffer.from('blocking')]), [0, 0, 8], 'a blocking send');
  // Worker routines run when the worker waits alertably.
  t.ok(await pollUntil(() => ran.length >= 3), 'the main thread\'s routines ran');
  await worker.SleepEx(0, true);
  t.ok(await pollUntil(() => ran.length >= 6), 'all routines ran');
  t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 5000, false), S.WSA_WAIT_EVENT_0, 'the event was set');
  await roundTrip(spi);
  const want = Buffer.concat([...data, Buffer.from('event'), Buffer.from('blocking')]);
  t.ok((await tcpBytesBeforeFence(spi, s, conn, want.length)).equals(want), 'the peer got every byte');

  // The records.
  const calls = records.filter((x): x is Extract<S.TraceRecord, { kind: 'call' }> => x.kind === 'call');
  const ovCalls = calls.filter((c) => c.op !== undefined);
  t.equal(ovCalls.length, 7, 'seven overlapped calls, each with its op id');
  t.ok(calls.some((c) => c.fn === 'WSPSend' && c.op === undefined && c.bytes === 8), 'the blocking send, with its byte count');
  const delivered = records.filter((x): x is Extract<S.TraceRecord, { kind: 'deliver' }> => x.kind === 'deliver');
  for (const c of ovCalls) t.equal(delivered.filter((x) => x.op === c.op).length, 1, `op ${c.op}: delivered exactly once`);
  t.same(
    delivered.filter((x) => x.via === 'routine' && x.thread === worker.id.ThreadHandle).length,
    3,
    'three routines delivered on the worker thread',
  );
  t.equal(delivered.filter((x) => x.via === 'event').length, 1, 'one completion delivered by its event');
  t.ok(records.some((x) => x.kind === 'fault' && x.s === s), 'the fault rule that fired is in the trace');

  // The export.
  const chrome = S.toChromeTrace(records);
  const begins = chrome.traceEvents.filter((x) => x.ph === 'b');
  const ends = chrome.traceEvents.filter((x) => x.ph === 'e');
  t.equal(begins.length, 7, 'one span per overlapped operation');
  for (const b of begins) {
    const matching = ends.filter((x) => x.id === b.id);
    t.equal(matching.length, 1, `${b.id}: ended exactly once`);
    t.ok(matching[0]!.ts >= b.ts, `${b.id}: ends after it begins`);
    t.equal(matching[0]!.tid, b.tid, `${b.id}: on its socket's track`);
    t.notOk(matching[0]!.args?.['unfinished'], `${b.id}: finished`);
  }
  const names = chrome.traceEvents.filter((x) => x.ph === 'M').map((x) => String(x.args?.['name']));
  t.ok(names.includes(`socket ${s}`) && names.includes(`thread ${worker.id.ThreadHandle}`), 'tracks for the socket and the threads');
  for (const x of chrome.traceEvents.filter((x) => x.ph === 'X')) t.ok((x.dur ?? -1) >= 0, `${x.name}: a call with a duration`);
});

t.test('the SDK writes a trace file; spiwire trace export converts it', async (t) => {
  const d = await daemon(t);
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'session.jsonl');
  const spi = await S.connect(d.url, { autoApc: true, trace: { to: file, payloads: true } });
  const peer = await tcpPeer(t, 'ipv4');
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e);
  let done = 0;
  await ovSend(spi, s, [Buffer.from('traced')], { routine: () => void done++ });
  t.ok(await pollUntil(() => done === 1));
  await spi.close();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.ok(lines.length >= 4, `the file holds the records (${lines.length} lines)`);
  const sendCall = S.parseTraceLines(readFileSync(file, 'utf8')).find((r) => r.kind === 'call' && r.fn === 'WSPSend');
  t.equal(sendCall?.kind === 'call' ? Buffer.from(sendCall.data ?? '', 'base64').toString() : null, 'traced', 'payloads asked for: the bytes sent, base64');
  const out = join(dir, 'session.json');
  const r = await new Promise<{ code: number; err: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'server/dist/src/main.js'), 'trace', 'export', file, '--out', out], (err, _stdout, stderr) => resolve({ code: err ? 1 : 0, err: stderr }));
  });
  t.equal(r.code, 0, r.err);
  const chrome = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: Array<{ ph: string }> };
  t.equal(chrome.traceEvents.filter((x) => x.ph === 'b').length, 1, 'one span');
  t.equal(chrome.traceEvents.filter((x) => x.ph === 'e').length, 1, 'ended once');
  const bad = await new Promise<{ code: number; err: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'server/dist/src/main.js'), 'trace', 'export', join(root, 'package.json')], (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, err: stderr }));
  });
  t.equal(bad.code, 1, 'a file that is not a trace: exit 1');
  t.match(bad.err, /line 1: not a trace record|line \d+: not JSON/, bad.err);
});

t.test('the daemon writes its side with --trace-dir; both sides export onto one time line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const d = await daemon(t, { traceDir: join(dir, 'daemon') });
  const sdkFile = join(dir, 'sdk.jsonl');
  const spi = await S.connect(d.url, { autoApc: true, trace: sdkFile });
  const peer = await tcpPeer(t, 'ipv4');
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e);
  let done = 0;
  for (let i = 0; i < 3; i++) await ovSend(spi, s, [Buffer.from(`both sides ${i}`)], { routine: () => void done++ });
  t.ok(await pollUntil(() => done === 3));
  const session = spi.welcome.session;
  await spi.close();
  const daemonFile = join(dir, 'daemon', `${session}.jsonl`);
  // The daemon's side is complete once the session has ended there.
  t.ok(await pollUntil(() => {
    try {
      return readFileSync(daemonFile, 'utf8').includes('"kind":"reply"');
    } catch {
      return false;
    }
  }), 'the daemon wrote DIR/<session>.jsonl');
  const daemonRecords = S.parseTraceLines(readFileSync(daemonFile, 'utf8'));
  t.equal(daemonRecords[0]?.kind, 'origin', 'it starts with its origin');
  const sends = daemonRecords.filter((r) => r.kind === 'request' && r.method === 'WSPSend');
  t.equal(sends.length, 3, 'the daemon saw the three WSPSends');
  t.ok(sends.every((r) => r.kind === 'request' && r.bytes === 12 && typeof r.op === 'number'), 'with their byte counts and op ids, never their bytes');
  const chrome = S.toChromeTrace([...S.parseTraceLines(readFileSync(sdkFile, 'utf8')), ...daemonRecords]);
  const pids = new Set(chrome.traceEvents.filter((x) => x.ph !== 'M').map((x) => x.pid));
  t.same([...pids].sort(), [1, 2], 'the SDK and the daemon on one timeline');
  const daemonSends = chrome.traceEvents.filter((x) => x.pid === 2 && x.ph === 'X' && x.name === 'WSPSend');
  t.equal(daemonSends.length, 3, 'each WSPSend a slice in the daemon, from request to reply');
  const sdkSends = chrome.traceEvents.filter((x) => x.pid === 1 && x.ph === 'X' && x.name === 'WSPSend');
  // Same machine, one monotonic clock: the daemon's handling sits inside the SDK's call.
  for (let i = 0; i < 3; i++) t.ok(daemonSends[i]!.ts >= sdkSends[i]!.ts - 1000, `send ${i}: the daemon read it after the SDK made it (within 1 ms of clock rounding)`);
});

t.test('--trace-dir-budget: sessions that come and go in a loop leave the directory within its budget', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-budget-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const budget = 64 * 1024;
  const d = await daemon(t, { traceDir: dir, traceDirBudget: budget });
  const peer = await tcpPeer(t, 'ipv4');
  const e = S.out(0);
  let last = '';
  // A client that opens a session, makes calls and leaves, 40 times: about 4 KiB of trace each.
  for (let round = 0; round < 40; round++) {
    const spi = await S.connect(d.url, { resume: false });
    const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
    await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e);
    for (let i = 0; i < 20; i++) await send(spi, s, [Buffer.from('x')]);
    last = spi.welcome.session;
    await spi.close();
  }
  const lastFile = join(dir, `${last}.jsonl`);
  t.ok(await pollUntil(() => {
    try {
      return readFileSync(lastFile, 'utf8').split('\n').length > 40;
    } catch {
      return false;
    }
  }), "the last session's trace is written whole");
  let total = 0;
  const names = readdirSync(dir);
  for (const n of names) total += statSync(join(dir, n)).size;
  t.ok(total <= budget, `${names.length} traces, ${total} bytes on disk, within the ${budget}-byte budget`);
  t.ok(names.length < 40, 'the oldest traces were deleted to make room');
  t.ok(names.includes(`${last}.jsonl`), 'the newest trace stays');
});
