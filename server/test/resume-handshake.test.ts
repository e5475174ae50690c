/**
 * The resume handshake against hostile and mistaken input (proto/README.md section 20): every
 * refusal is RESUME_REFUSED with a documented reason and close code 4009, the session it names is
 * untouched, and nothing is logged at error level.
 */
import t from 'tap';
import pino from 'pino';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { startServer } from '../src/index.js';
import { collectedLog, HandWebSocket, maskedFrame } from './helpers/raw-client.js';

interface Answer {
  messages: Array<Record<string, unknown>>;
  closeCode: number;
}

/** Opens url, sends each of sends (text or binary), and collects what comes back until the close. */
function exchange(url: string, sends: Array<string | Uint8Array>, closeAfterMs = 0): Promise<Answer> {
  const ws = new WebSocket(url, [P.SUBPROTOCOL]);
  const messages: Array<Record<string, unknown>> = [];
  return new Promise((resolve, reject) => {
    ws.on('open', () => {
      for (const m of sends) ws.send(m, { binary: typeof m !== 'string' });
      if (closeAfterMs > 0) setTimeout(() => ws.close(1000), closeAfterMs);
    });
    ws.on('message', (data: Buffer, binary: boolean) => {
      const recs = binary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
      for (const r of recs) if (r.ok && P.isRecord(r.message)) messages.push(r.message);
    });
    ws.on('close', (code) => resolve({ messages, closeCode: code }));
    ws.on('error', reject);
  });
}

function reasonOf(a: Answer): unknown {
  const e = a.messages[0]?.['error'];
  return P.isRecord(e) && P.isRecord(e['data']) && e['code'] === P.RESUME_REFUSED ? e['data']['reason'] : undefined;
}

t.test('bad resumes are refused with a documented reason; the session stays resumable', async (t) => {
  const { logger, lines } = collectedLog('debug');
  const d = await startServer({ port: 0, logger, limits: { resumeGraceMs: 60000 } });
  t.teardown(() => d.close());
  // A resumable session, then its connection breaks.
  const first = new WebSocket(`${d.url}?resumable=1`, [P.SUBPROTOCOL]);
  const welcome = await new Promise<Record<string, unknown>>((resolve) =>
    first.once('message', (data: Buffer) => {
      const r = P.decodeFrame(data)[0];
      resolve(r?.ok && P.isRecord(r.message) && P.isRecord(r.message['params']) ? r.message['params'] : {});
    }),
  );
  const offer = welcome['resume'];
  if (!P.isRecord(offer)) throw new Error('no resume offer');
  const session = String(welcome['session']);
  const daemonId = String(offer['daemonId']);
  const token = String(offer['token']);
  first.terminate();
  await new Promise((r) => setTimeout(r, 100));
  const url = `${d.url}?resume=${session}&daemon=${daemonId}`;
  const resume = (params: Record<string, unknown>): string => JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params });
  const good = { session, token, received: 0, daemonId };

  const cases: Array<[string, Array<string | Uint8Array>, string]> = [
    ['not JSON', ['{"jsonrpc":'], 'bad-request'],
    ['a bad binary frame', [new Uint8Array([9, 0, 0, 0, 1])], 'bad-request'],
    ['another method first', [JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'WSPSocket', params: { af: 2, type: 1, protocol: 6, g: 0, flags: 0 } })], 'bad-request'],
    ['params missing', [resume({ session, token })], 'bad-request'],
    ['a string count', [resume({ ...good, received: '0' })], 'bad-request'],
    ['a count beyond what was sent', [resume({ ...good, received: 5 })], 'bad-count'],
    ['a wrong token', [resume({ ...good, token: token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) })], 'bad-token'],
    ['an empty token', [resume({ ...good, token: '' })], 'bad-token'],
    ['another daemon', [resume({ ...good, daemonId: 'elsewhere' })], 'not-here'],
    ['an unknown session', [resume({ ...good, session: 'nope' })], 'unknown-session'],
  ];
  for (const [what, sends, reason] of cases) {
    const a = await exchange(url, sends);
    t.equal(reasonOf(a), reason, `${what}: ${reason}`);
    t.equal(a.closeCode, P.RESUME_REFUSED_CLOSE_CODE, `${what}: closed with 4009`);
    t.equal(a.messages[0]?.['id'], null, `${what}: with id null`);
  }
  // spiwire.resume inside a session: refused with its id, and the session goes on.
  const inside = await exchange(`${d.url}`, [JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'spiwire.resume', params: good })], 300);
  const refusal = inside.messages.find((m) => m['id'] === 9);
  t.equal(P.isRecord(refusal?.['error']) ? refusal['error']['code'] : undefined, P.RESUME_REFUSED, 'inside a session: RESUME_REFUSED');
  const refusalData = P.isRecord(refusal?.['error']) ? refusal['error']['data'] : undefined;
  t.same(refusalData, { reason: 'not-first', daemonId }, 'with the reason and this daemon\'s id, as every refusal');
  t.equal(inside.closeCode, 1000, 'and the session goes on');

  // A resume that arrives after the refusal for saying nothing in time (the close handshake
  // still under way) is not applied: the session stays untouched and resumable.
  const late = await new Promise<Answer>((resolve, reject) => {
    const ws = new WebSocket(url, [P.SUBPROTOCOL]);
    const messages: Array<Record<string, unknown>> = [];
    ws.on('message', (data: Buffer) => {
      const r = P.decodeFrame(data)[0];
      if (!r?.ok || !P.isRecord(r.message)) return;
      messages.push(r.message);
      if (messages.length === 1) ws.send(resume(good));
    });
    ws.on('close', (code) => resolve({ messages, closeCode: code }));
    ws.on('error', reject);
  });
  t.same([reasonOf(late), late.closeCode], ['bad-request', P.RESUME_REFUSED_CLOSE_CODE], `nothing within ${P.RESUME_HANDSHAKE_MS} ms: bad-request, 4009`);
  t.notOk(late.messages.some((m) => m['method'] === 'spiwire.resumed'), 'the resume sent after the refusal is not applied');

  // After all that, the right resume still works. It carries an id here: accepted, and ignored
  // (section 20: the answer is spiwire.resumed, never a response to the resume).
  const ok = await exchange(url, [JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'spiwire.resume', params: good })], 300);
  t.equal(ok.messages[0]?.['method'], 'spiwire.resumed', 'the session was untouched by the refusals');
  t.notOk(ok.messages.some((m) => m['id'] === 7), 'no response to the id the resume carried');
  t.notOk(lines.some((l) => Number(l['level']) >= 50), 'nothing at error level');
});

t.test('a session whose client sent a close frame cannot be resumed, even before the closing handshake ends', async (t) => {
  const d = await startServer({ port: 0, logger: pino({ level: 'silent' }), limits: { resumeGraceMs: 60000 } });
  t.teardown(() => d.close());
  const first = await HandWebSocket.open(t, Number(new URL(d.url).port), '/ws?resumable=1');
  const [welcomeFrame] = await first.frames(1);
  const w = P.decodeFrame(welcomeFrame!.payload)[0];
  const welcome = w?.ok && P.isRecord(w.message) && P.isRecord(w.message['params']) ? w.message['params'] : {};
  const offer = welcome['resume'] as Record<string, unknown>;
  const session = String(welcome['session']);
  // The client ends the session with 1000 and keeps its TCP connection open: the daemon has
  // read the close frame once its own comes back, and the closing handshake is not over.
  first.send(maskedFrame(0x8, new Uint8Array([0x03, 0xe8])));
  await first.frameOf(0x8);
  const resume = JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session, token: offer['token'], received: 0, daemonId: offer['daemonId'] } });
  const a = await exchange(`${d.url}?resume=${session}&daemon=${String(offer['daemonId'])}`, [resume]);
  t.same([reasonOf(a), a.closeCode], ['unknown-session', P.RESUME_REFUSED_CLOSE_CODE], 'refused: unknown-session, 4009');
  t.notOk(a.messages.some((m) => m['method'] === 'spiwire.resumed'), 'not resumed');
});
