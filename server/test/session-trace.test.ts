/**
 * The daemon's side of the call trace (--trace-dir, docs/trace.md) keeps each session's file under
 * its size limit: past it, records are dropped and counted, the origin record stays, and what was
 * written is whole JSON lines. The directory as a whole keeps under its budget and its most files:
 * the oldest traces of ended sessions go first, earlier runs' before this run's, never a live
 * session's, and nothing in the directory that is not a session trace.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SessionTrace } from '../src/session-trace.js';
import { TraceDirectory } from '../src/trace-directory.js';
import * as P from '@spiwire/proto';
import { daemon, session, udpSocket, until } from './helpers/raw-client.js';

t.test('a trace stops growing at its size limit; the drop is logged at info', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const logged: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const limit = 4096;
  const log = pino({ level: 'info' }, sink);
  const trace = new SessionTrace(new TraceDirectory(dir, 1 << 30, log), 'capped', log, limit);
  for (let i = 0; i < 1000; i++) {
    // Ids the client chose, in characters of three UTF-8 bytes each: the limit counts bytes.
    const id = i % 2 ? i : `€${i}`;
    trace.request(id, 'WSPSend', { s: 7, buffers: [new Uint8Array(100)], flags: 0 });
    trace.reply(id, { ret: 0, errno: 0 });
  }
  await trace.close();
  const size = statSync(join(dir, 'capped.jsonl')).size;
  const text = readFileSync(join(dir, 'capped.jsonl'), 'utf8');
  t.ok(size <= limit, `the file is ${size} bytes, within the ${limit} limit`);
  const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines[0]?.['kind'], 'origin', 'the origin record comes first');
  t.ok(lines.length > 10, `records were written until the limit (${lines.length})`);
  const note = logged.find((l) => typeof l['dropped'] === 'number');
  t.equal(note?.['level'], 30, 'the drop is logged at info');
  t.equal(Number(note?.['dropped']) + lines.length - 1, 2000, 'every record was either written or counted as dropped');
});

/** Whole JSON lines, the first an origin record. */
function readTrace(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A session that makes n calls, each a request and a reply record (about 100 bytes each). */
function calls(trace: SessionTrace, n: number): void {
  for (let i = 0; i < n; i++) {
    trace.request(i, 'WSPSend', { s: 7, buffers: [new Uint8Array(10)], flags: 0 });
    trace.reply(i, { ret: 0, errno: 0 });
  }
}

/** Every deletion the directory started has happened (they are asynchronous). */
async function settled(dir: string, expected: string[]): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const names = readdirSync(dir).sort();
    if (JSON.stringify(names) === JSON.stringify([...expected].sort())) return names;
    await new Promise((r) => setImmediate(r));
  }
  return readdirSync(dir).sort();
}

t.test('the directory keeps under its budget: the oldest ended traces go, live ones and other files stay', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-dir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });
  // An earlier run's trace (the oldest), and a file that is not a trace at all.
  const earlier = `${randomUUID()}.jsonl`;
  writeFileSync(join(dir, earlier), `${'x'.repeat(3000)}\n`);
  utimesSync(join(dir, earlier), new Date(1000), new Date(1000));
  writeFileSync(join(dir, 'notes.jsonl'), 'the operator\'s own file\n');

  const budget = 12_000;
  const traces = new TraceDirectory(dir, budget, log);
  t.same(traces.usage, { files: 1, bytes: 3001, deleted: 0 }, "the earlier run's trace counts; the other file does not");

  const ids = [randomUUID(), randomUUID(), randomUUID()];
  const a = new SessionTrace(traces, ids[0]!, log);
  calls(a, 20);
  await a.close();
  const b = new SessionTrace(traces, ids[1]!, log);
  calls(b, 20);
  // A third session writes until the budget is reached: the earlier run's file goes first, then
  // the ended session's; the live one stays whatever it costs.
  const c = new SessionTrace(traces, ids[2]!, log);
  calls(c, 200);
  t.ok(traces.usage.bytes <= budget, `the directory counts ${traces.usage.bytes} bytes, within ${budget}`);
  t.equal(traces.usage.deleted, 2, 'two ended traces deleted to make room');
  await b.close();
  await c.close();
  const names = await settled(dir, ['notes.jsonl', `${ids[1]!}.jsonl`, `${ids[2]!}.jsonl`]);
  t.same(names, ['notes.jsonl', `${ids[1]!}.jsonl`, `${ids[2]!}.jsonl`].sort(), "the earlier run's and the first ended trace are gone; the others stay");
  let onDisk = 0;
  for (const n of names) if (n !== 'notes.jsonl') onDisk += statSync(join(dir, n)).size;
  t.ok(onDisk <= budget, `${onDisk} bytes of traces on disk, within the budget`);
  const last = readTrace(join(dir, `${ids[2]!}.jsonl`));
  t.equal(last[0]?.['kind'], 'origin', 'the trace that hit the budget starts with its origin record');
  t.ok(last.length > 2 && last.length < 401, `and has some of its records (${last.length}), the rest dropped`);
});

t.test('the directory holds at most its number of files; a session without room writes none', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-files-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });
  const traces = new TraceDirectory(dir, 1 << 30, log, 2);
  const ids = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const first = new SessionTrace(traces, ids[0]!, log);
  await first.close();
  const second = new SessionTrace(traces, ids[1]!, log);
  const third = new SessionTrace(traces, ids[2]!, log);
  t.same(await settled(dir, [`${ids[1]!}.jsonl`, `${ids[2]!}.jsonl`]), [`${ids[1]!}.jsonl`, `${ids[2]!}.jsonl`].sort(), 'the ended trace made room for the third');
  const fourth = new SessionTrace(traces, ids[3]!, log);
  calls(fourth, 5);
  await fourth.close();
  t.same(readdirSync(dir).sort(), [`${ids[1]!}.jsonl`, `${ids[2]!}.jsonl`].sort(), 'two live traces fill it: the fourth session writes none');
  await second.close();
  await third.close();
});

t.test('what waits for the disk is bounded across sessions, not only per session', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-waiting-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });
  const maxWaiting = 32 * 1024;
  const traces = new TraceDirectory(dir, 1 << 30, log, 100, maxWaiting);
  const ids = [randomUUID(), randomUUID(), randomUUID()];
  const sessions = ids.map((id) => new SessionTrace(traces, id, log));
  // In one turn nothing reaches the disk: each session alone stays far below its own 8 MiB
  // bound, but together they reach the shared one, and records are dropped.
  for (const s of sessions) calls(s, 400);
  t.ok(traces.waitingBytes <= maxWaiting + 1024, `${traces.waitingBytes} bytes waiting, within ${maxWaiting} (and the origin records)`);
  // Once the disk caught up, there is room again.
  // Each write's callback says when it is done (a slow disk may take many turns).
  await traces.drained();
  t.equal(traces.waitingBytes, 0, 'nothing waits once the writes are done');
  sessions[0]!.request('late', 'WSPSend', { s: 7, buffers: [new Uint8Array(10)], flags: 0 });
  sessions[0]!.reply('late', { ret: 0, errno: 0 });
  await Promise.all(sessions.map((s) => s.close()));
  t.equal(traces.waitingBytes, 0, 'and nothing after the files closed');
  const lines = ids.map((id) => readTrace(join(dir, `${id}.jsonl`)).length);
  const total = lines.reduce((a, b) => a + b, 0);
  t.ok(total < 3 * 801, `records were dropped: ${total} lines of ${3 * 801} written`);
  t.same(readTrace(join(dir, `${ids[0]!}.jsonl`)).slice(-2).map((r) => [r['kind'], r['id']]), [['request', 'late'], ['reply', 'late']], 'the call made after the disk caught up was written');
});

t.test('a trace that failed (its directory removed) gives its place back when the session ends', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-failed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let failures = 0;
  let onFailure: () => void = () => undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (String((JSON.parse(chunk.toString()) as Record<string, unknown>)['msg']).includes('cannot be written')) {
        failures++;
        onFailure();
      }
      done();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const traces = new TraceDirectory(dir, 1 << 30, log, 3);
  rmSync(dir, { recursive: true, force: true });
  // More sessions than the directory may hold files, each ended after its file failed to open.
  for (let i = 0; i < 5; i++) {
    const trace = new SessionTrace(traces, randomUUID(), log);
    const failed = new Promise<void>((r) => (onFailure = r));
    if (failures <= i) await failed;
    await trace.close();
  }
  t.equal(failures, 5, 'each session logged that its trace cannot be written');
  // The directory is back: a new session gets a trace file with all its records.
  mkdirSync(dir);
  const id = randomUUID();
  const trace = new SessionTrace(traces, id, log);
  calls(trace, 10);
  await trace.close();
  t.equal(readTrace(join(dir, `${id}.jsonl`)).length, 21, 'the origin record and 20 more: nothing dropped, the file made');
});

t.test('the daemon traces protocol errors as replies, not a duplicate id as a request, and byte counts as numbers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-trace-errors-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const d = await daemon(t, { traceDir: dir });
  const s = await session(t, d.url);
  const sid = String(s.messages.find((m) => m.method === 'spiwire.welcome')!.params!['session']);
  const h = await udpSocket(s);
  t.equal((await s.call('WSPBind', { s: h, name: { family: P.AF_INET, address: '127.0.0.1', port: 0 }, namelen: 16 }))['ret'], 0);
  // A receive that blocks (nothing comes): its id stays in use.
  const blocked = s.request('WSPRecv', { s: h, lengths: [10], flags: 0 }, 20_000);
  await s.wait((m) => m.method === 'spiwire.waiting');
  // The same id again: DUPLICATE_ID, answered with id null.
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: blocked.id, method: 'WSPGetSockName', params: { s: h, namelen: 128 } }));
  // Bad params (a length JSON reads as Infinity), answered with INVALID_PARAMS.
  s.ws.send(`{"jsonrpc":"2.0","id":"bad","method":"WSPRecv","params":{"s":${h},"lengths":[1e400],"flags":0}}`);
  const bad = await s.wait((m) => m.id === 'bad');
  // An unknown method is a request all the same; a message without "jsonrpc" is not one.
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 'nomethod', method: 'WSPNothing', params: {} }));
  s.ws.send(P.encodeFrame({ id: 'badenv', method: 'WSPGetSockName', params: { s: h, namelen: 128 } } as unknown as P.Request));
  await s.wait((m) => m.id === 'badenv');
  t.equal((bad.error as { code?: number } | undefined)?.code, P.INVALID_PARAMS, 'the bad call: INVALID_PARAMS');
  t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0, 'closing the socket ends the blocked receive');
  await blocked.response;
  await s.close();
  // The trace reaches the disk as the session ends. The blocked call's reply comes after every
  // record checked below: once it is there, so are they (read whole lines only: a line being
  // written fails to parse, and the next look reads it again).
  let records: Array<Record<string, unknown>> = [];
  const written = (): boolean => {
    try {
      records = readTrace(join(dir, `${sid}.jsonl`));
    } catch {
      return false;
    }
    return records.some((r) => r['kind'] === 'reply' && r['id'] === blocked.id);
  };
  t.ok(await until(written, 5000, 10), 'the trace was written');
  const about = (id: string): Array<[unknown, unknown]> => records.filter((r) => r['id'] === id).map((r) => [r['kind'], r['error']]);
  t.same(about(blocked.id), [['request', undefined], ['reply', undefined]], 'the running call: one request, one reply; the duplicate left no record');
  t.same(about('bad'), [['request', undefined], ['reply', P.INVALID_PARAMS]], 'the refused call: its request and a reply with the error code');
  t.same(about('nomethod'), [['request', undefined], ['reply', P.METHOD_NOT_FOUND]], 'an unknown method: likewise');
  t.same(about('badenv'), [], 'a message that is not a request: nothing');
  const badRequest = records.find((r) => r['id'] === 'bad' && r['kind'] === 'request')!;
  t.equal(typeof badRequest['bytes'], 'number', `its byte count is a number (${String(badRequest['bytes'])})`);
  const badReply = records.find((r) => r['id'] === 'bad' && r['kind'] === 'reply')!;
  t.same([badReply['ret'], badReply['errno']], [-1, 0], 'with ret -1 and errno 0');
});
