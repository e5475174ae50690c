/**
 * The daemon's side of the call trace (--trace-dir, docs/trace.md) keeps each session's file under
 * its size limit: past it, records are dropped and counted, the origin record stays, and what was
 * written is whole JSON lines.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SessionTrace } from '../src/session-trace.js';

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
  const trace = new SessionTrace(dir, 'capped', pino({ level: 'info' }, sink), limit);
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
