/**
 * A resume's replay while the rest of a frame set aside before the drop is still being handled
 * (session.ts, replay and acknowledged). That rest is counted as received, so the client does not
 * send it again: the daemon goes on with it during the replay, and its replies are kept behind the
 * replayed ones. When it holds a spiwire.ack above the count the resume gave (a client that lies
 * about what it received), the acknowledged messages are freed while the replay walks them: the
 * replay must skip them, and must not lose its place when the kept messages are compacted.
 *
 * Made deterministic by a turn budget whose time is always spent: the rest goes one record per
 * turn, the replay one message per turn, so the ack arrives with the replay far behind it.
 */
import t from 'tap';
import * as dgram from 'node:dgram';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { daemon, session, turnAlwaysSpent, udpSocket, type RawSession } from './helpers/raw-client.js';
import type { Test } from 'tap';

/** A resumable session on an embedded daemon whose turn is always spent, and what resuming it needs. */
async function resumableSession(t: Test): Promise<{ url: string; s: RawSession; resume: Record<string, unknown> }> {
  turnAlwaysSpent(t);
  const d = await daemon(t, { limits: { resumeGraceMs: 60000 } });
  const s = await session(t, `${d.url}?resumable=1`);
  const welcome = s.messages.find((m) => m.method === 'spiwire.welcome')?.params ?? {};
  const offer = welcome['resume'];
  if (!P.isRecord(offer)) throw new Error('no resume offer');
  return { url: d.url, s, resume: { session: welcome['session'], token: offer['token'], received: 0, daemonId: offer['daemonId'] } };
}

/** Sends the rest of a frame (its calls, then an ack of `acked` messages); the connection then drops without a close handshake. */
async function setAsideThenDrop(s: RawSession, calls: Array<Record<string, unknown>>, acked: number): Promise<void> {
  const frame = new P.FrameBuilder();
  for (const c of calls) frame.add(c);
  frame.add({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received: acked } });
  // The frame reaches the kernel whole before the drop.
  await new Promise<void>((resolve, reject) => s.ws.send(frame.finish(), (err) => (err ? reject(err) : resolve())));
  s.ws.terminate();
  await s.closed;
}

/** Resumes on a new connection saying nothing was received; onRecord sees each record that comes. */
function resumeFromZero(t: Test, url: string, resume: Record<string, unknown>, onRecord: (r: P.DecodedRecord, binary: boolean, size: number) => void): WebSocket {
  const ws = new WebSocket(`${url}?resume=${String(resume['session'])}&daemon=${String(resume['daemonId'])}`, [P.SUBPROTOCOL]);
  t.teardown(() => ws.terminate());
  ws.on('message', (data: Buffer, binary: boolean) => {
    for (const r of binary ? P.decodeFrame(data) : [P.decodeText(data.toString('utf8'))]) onRecord(r, binary, data.length);
  });
  ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: resume })));
  return ws;
}

// 600: the freed slots are emptied in place; 1500 (more than 1024): the kept messages are compacted too.
for (const KEPT of [600, 1500]) t.test(`an ack of ${KEPT} replies in a set-aside frame during the replay: nothing replayed twice, empty or out of place`, async (t) => {
  const { url, s, resume } = await resumableSession(t);
  const h = await udpSocket(s);
  // KEPT replies the client never acknowledges, then a frame of REST calls ending in an ack of them.
  const REST = 300;
  const getType = (id: string): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } });
  for (let i = 0; i < KEPT; i++) {
    s.ws.send(P.encodeFrame(getType(`kept-${i}`)));
    await s.wait((m) => m.id === `kept-${i}`);
  }
  // Counted so far (section 20; the welcome is not): the WSPSocket reply and the KEPT replies.
  await setAsideThenDrop(s, Array.from({ length: REST }, (_, i) => getType(`rest-${i}`)), 1 + KEPT);

  // The resume says nothing was received: everything kept is replayed, while the rest goes on.
  const ids: string[] = [];
  const undecodable: string[] = [];
  let lastIn = (): void => undefined;
  const allIn = new Promise<void>((resolve) => (lastIn = resolve));
  const ws = resumeFromZero(t, url, resume, (r, binary, size) => {
    if (!r.ok) undecodable.push(`${binary ? 'binary' : 'text'} message of ${size} bytes: ${r.error.message}`);
    else if (P.isRecord(r.message) && typeof r.message['id'] === 'string') ids.push(r.message['id']);
    if (ids.includes(`rest-${REST - 1}`)) lastIn();
  });
  await Promise.race([allIn, new Promise((_, reject) => ws.on('close', (code) => reject(new Error(`closed (${code}) before the last reply`))))]);

  t.same(undecodable, [], 'every replayed message decodes (none sent as an emptied slot)');
  const rest = ids.filter((id) => id.startsWith('rest-'));
  t.same(rest, Array.from({ length: REST }, (_, i) => `rest-${i}`), 'every reply to the set-aside calls arrives once, in order');
  const kept = ids.filter((id) => id.startsWith('kept-'));
  t.ok(kept.length > 0 && kept.length < KEPT, `the replay was overtaken by the ack: ${kept.length} of ${KEPT} kept replies went out before it`);
  t.same(kept, Array.from({ length: kept.length }, (_, i) => `kept-${i}`), 'those in order from the first, each once');
  t.ok(ids.lastIndexOf(kept[kept.length - 1]!) < ids.indexOf('rest-0'), 'and all of them before the replies to the set-aside calls');
});

t.test('an ack below the replay, in a set-aside frame: replies noted before it still answer requests sent again', async (t) => {
  const { url, s, resume } = await resumableSession(t);
  // A UDP peer counts the datagrams: a request run twice sends twice.
  const peer = dgram.createSocket('udp4');
  t.teardown(() => peer.close());
  let datagrams = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  peer.on('message', () => {
    datagrams++;
    for (const w of waiters.splice(0)) if (datagrams >= w.n) w.resolve();
    else waiters.push(w);
  });
  await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', resolve));
  const to = { family: P.AF_INET, address: '127.0.0.1', port: peer.address().port };
  const gotDatagrams = (n: number): Promise<void> => (datagrams >= n ? Promise.resolve() : new Promise((resolve) => waiters.push({ n, resolve })));
  const h = await udpSocket(s);
  const sendTo = (id: string): Record<string, unknown> => ({ jsonrpc: '2.0', id, method: 'WSPSendTo', params: { s: h, buffers: [new Uint8Array([1])], flags: 0, to, tolen: 16 } });
  const KEPT = 600;
  for (let i = 0; i < KEPT; i++) {
    s.ws.send(P.encodeFrame(sendTo(`kept-${i}`)));
    await s.wait((m) => m.id === `kept-${i}`);
  }
  await gotDatagrams(KEPT);
  // The rest of a frame: 300 calls, then an ack of the first 100 messages, which the replay
  // (one message a turn, as the rest goes one record a turn) will have passed by then.
  const REST = 300;
  await setAsideThenDrop(s, Array.from({ length: REST }, (_, i) => ({ jsonrpc: '2.0', id: `rest-${i}`, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } })), 100);

  const ids: string[] = [];
  const ws = resumeFromZero(t, url, resume, (r) => {
    if (r.ok && P.isRecord(r.message) && typeof r.message['id'] === 'string') ids.push(r.message['id']);
  });
  const idArrived = (id: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => void (ids.includes(id) && resolve());
      ws.on('message', check);
      ws.on('close', () => reject(new Error(`closed before ${id}`)));
      check();
    });
  await idArrived(`rest-${REST - 1}`);
  t.ok(ids.includes('kept-150'), 'kept-150 was replayed (before the ack came)');
  // kept-150 sent again: its reply was noted in the replay, so it is answered without a second
  // datagram; a marker sent after it shows that nothing else arrived first.
  ws.send(P.encodeFrame(sendTo('kept-150')));
  ws.send(P.encodeFrame(sendTo('marker')));
  await idArrived('marker');
  await gotDatagrams(KEPT + 1);
  t.equal(datagrams, KEPT + 1, 'the peer got the marker and nothing more: kept-150 did not run again');
  t.equal(ids.filter((id) => id === 'kept-150').length, 2, 'and kept-150 was answered (again) with its original reply');
});
