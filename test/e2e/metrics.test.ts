/**
 * GET /metrics and the inspection endpoints over real sockets (docs/metrics.md, README
 * "Inspecting a running daemon"): the exposition parses as Prometheus text, its counters move
 * with real traffic to a real TCP peer (sessions, calls by function and result code, bytes both
 * ways, pending operations and their completion latency, faults applied), /sessions and
 * /sessions/:id/sockets describe real sessions and sockets, and the token rules hold.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { FILLER_BYTES, connectedTcp, daemon, drainUntil, newSocket, ovSend, overlappedTcp, pattern, recvInto, send, session, tcpPeer, until } from '../helpers/harness.js';
import { parseExposition, sample, type Exposition } from '../helpers/prometheus-text.js';

const TOKEN = 'metrics-secret';

async function get(port: number, path: string, token: string | null = null): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

async function scrape(port: number, token: string | null = null): Promise<Exposition> {
  const r = await get(port, '/metrics', token);
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${r.text}`);
  return parseExposition(r.text);
}

async function json(port: number, path: string, token: string | null = null): Promise<unknown> {
  const r = await get(port, path, token);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}

t.test('/metrics: Prometheus text whose counters move with real traffic', async (t) => {
  const d = await daemon(t);
  const first = await get(d.port, '/metrics');
  t.equal(first.status, 200, 'a daemon without a token serves /metrics to loopback clients');
  t.match(first.type, /^text\/plain; version=0\.0\.4/, 'the Prometheus text content type');
  const empty = parseExposition(first.text);
  for (const [name, type] of [
    ['spiwire_sessions_opened_total', 'counter'],
    ['spiwire_sessions_ended_total', 'counter'],
    ['spiwire_sessions_open', 'gauge'],
    ['spiwire_sockets', 'gauge'],
    ['spiwire_spi_calls_total', 'counter'],
    ['spiwire_sent_bytes_total', 'counter'],
    ['spiwire_received_bytes_total', 'counter'],
    ['spiwire_pending_operations', 'gauge'],
    ['spiwire_completion_latency_seconds', 'histogram'],
    ['spiwire_output_unsent_bytes', 'gauge'],
    ['spiwire_output_unsent_bytes_max', 'gauge'],
    ['spiwire_held_bytes', 'gauge'],
    ['spiwire_held_bytes_ended_sessions', 'gauge'],
    ['spiwire_read_slot_waits_total', 'counter'],
    ['spiwire_read_slot_waiting_sessions', 'gauge'],
    ['spiwire_udp_batch_calls_total', 'counter'],
    ['spiwire_udp_batched_datagrams_total', 'counter'],
    ['spiwire_udp_segmented_datagrams_total', 'counter'],
    ['spiwire_faults_applied_total', 'counter'],
  ]) {
    t.equal(empty.types.get(name!), type, `${name} is a ${type}`);
  }
  t.equal(sample(empty, 'spiwire_sessions_opened_total'), 0);
  t.same([sample(empty, 'spiwire_read_slot_waits_total'), sample(empty, 'spiwire_read_slot_waiting_sessions')], [0, 0], 'no session has waited for a reader slot yet');
  t.equal(sample(empty, 'spiwire_completion_latency_seconds_bucket', { le: '+Inf' }), 0, 'the histogram has its +Inf bucket');

  const spi = await session(t, d);
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  const data = pattern(100_000, 7);
  const [ret, , sent] = await send(spi, s, [data]);
  t.same([ret, sent], [0, data.length], 'the send went through');
  await conn.waitFor(data.length);
  // Bytes the other way: the peer writes, the session reads them all.
  conn.socket.write(Buffer.alloc(5000, 1));
  let got = 0;
  while (got < 5000) {
    const r = await recvInto(spi, s, [5000 - got]);
    if (r.ret !== 0 || r.bytes <= 0) throw new Error(`WSPRecv: ${r.ret} ${r.errno}`);
    got += r.bytes;
  }
  // A call that fails: a handle that is no socket.
  t.same((await send(spi, 0x7ffffff0, [Buffer.from('x')])).slice(0, 2), [S.SOCKET_ERROR, S.WSAENOTSOCK]);

  const m = await scrape(d.port);
  t.equal(sample(m, 'spiwire_sessions_opened_total'), 1, 'one session opened');
  t.equal(sample(m, 'spiwire_sessions_open'), 1, 'one session open');
  t.equal(sample(m, 'spiwire_sockets', { type: 'tcp', state: 'connected' }), 1, 'one connected TCP socket');
  t.equal(sample(m, 'spiwire_spi_calls_total', { function: 'WSPSocket', code: 'NO_ERROR' }), 1);
  t.equal(sample(m, 'spiwire_spi_calls_total', { function: 'WSPConnect', code: 'NO_ERROR' }), 1);
  t.ok((sample(m, 'spiwire_spi_calls_total', { function: 'WSPSend', code: 'NO_ERROR' }) ?? 0) >= 1, 'WSPSend succeeded');
  t.equal(sample(m, 'spiwire_spi_calls_total', { function: 'WSPSend', code: 'WSAENOTSOCK' }), 1, 'the failed send counts under its code');
  t.ok((sample(m, 'spiwire_sent_bytes_total') ?? 0) >= data.length, 'the bytes sent to the peer are counted');
  t.ok((sample(m, 'spiwire_received_bytes_total') ?? 0) >= 5000, 'the bytes received from the peer are counted');

  // The socket closes: its bytes stay in the totals; the session ends: counted as closed.
  await spi.close();
  t.ok(await until(async () => sample(await scrape(d.port), 'spiwire_sessions_ended_total', { reason: 'closed' }) === 1), 'the session ended counts as closed');
  const after = await scrape(d.port);
  t.equal(sample(after, 'spiwire_sessions_open'), 0);
  t.equal(sample(after, 'spiwire_sockets', { type: 'tcp', state: 'connected' }), 0, 'a series seen once stays, at 0');
  t.ok((sample(after, 'spiwire_sent_bytes_total') ?? 0) >= data.length, 'closed sockets keep their bytes in the counter');
});

t.test('with a token: pending operations, latency, faults applied and the inspection endpoints', async (t) => {
  const d = await daemon(t, { token: TOKEN });
  for (const path of ['/metrics', '/sessions', '/sessions/x/sockets']) {
    const none = await get(d.port, path);
    t.equal(none.status, 401, `${path} without the token: 401`);
    t.match(JSON.parse(none.text), { error: /Bearer/ });
    t.equal((await get(d.port, path, 'wrong')).status, 401, `${path} with a wrong token: 401`);
  }

  const spi = await session(t, d, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
  const completions: Array<[number, number]> = [];
  const r = await ovSend(spi, s, [pattern(FILLER_BYTES, 11)], { routine: (err, cb) => void completions.push([err, cb]) });
  t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the filler send is pending behind a peer that does not read');

  const m = await scrape(d.port, TOKEN);
  t.equal(sample(m, 'spiwire_pending_operations'), 1, 'one pending operation');
  t.equal(sample(m, 'spiwire_spi_calls_total', { function: 'WSPSend', code: 'WSA_IO_PENDING' }), 1, 'the pending send counts as WSA_IO_PENDING');

  const sessions = await json(d.port, '/sessions', TOKEN);
  t.ok(S.isSessionsListing(sessions), 'GET /sessions is a session list');
  if (!S.isSessionsListing(sessions)) return;
  t.equal(sessions.sessions.length, 1);
  const info = sessions.sessions[0]!;
  t.match(info, { peer: { address: '127.0.0.1' }, sockets: 1, pendingOperations: 1 });
  t.ok(info.peer.port > 0 && info.ageSeconds >= 0 && !Number.isNaN(Date.parse(info.openedAt)), 'peer port, age and opening time');
  t.ok(info.bytesSent > 0, 'some of the filler is taken already');

  const listing = await json(d.port, `/sessions/${info.id}/sockets`, TOKEN);
  t.ok(S.isSocketsListing(listing), 'GET /sessions/:id/sockets is a socket list');
  if (!S.isSocketsListing(listing)) return;
  t.equal(listing.session, info.id);
  t.equal(listing.sockets.length, 1);
  t.match(listing.sockets[0], { handle: s, type: 'tcp', family: 'ipv4', state: 'connected', overlapped: true, pendingOperations: 1, remote: { address: '127.0.0.1', port: peer.port }, options: { nonBlocking: false, sendPolicy: 'reference' } });
  t.ok(listing.sockets[0]!.sendQueuedBytes > 0, 'the filler waits in the send queue');
  t.ok(listing.sockets[0]!.local !== null && listing.sockets[0]!.local.port > 0, 'the local address');

  const unknown = await get(d.port, '/sessions/no-such-session/sockets', TOKEN);
  t.equal(unknown.status, 404, 'an unknown session: 404');
  t.match(JSON.parse(unknown.text), { error: /no open session/, field: 'id' });

  // The peer reads: the send completes and its routine runs.
  conn.socket.resume();
  await conn.waitFor(FILLER_BYTES, 60_000);
  t.ok(await drainUntil(spi, () => completions.length === 1), 'the completion routine ran');
  t.same(completions, [[0, FILLER_BYTES]]);
  const done = await scrape(d.port, TOKEN);
  t.equal(sample(done, 'spiwire_pending_operations'), 0, 'nothing pending');
  t.equal(sample(done, 'spiwire_completion_latency_seconds_count'), 1, 'one completion latency observed');
  t.ok((sample(done, 'spiwire_completion_latency_seconds_sum') ?? 0) > 0, 'it took some time');
  t.ok((sample(done, 'spiwire_sent_bytes_total') ?? 0) >= FILLER_BYTES, 'the filler counts as sent');

  // Faults: the session's own rule fires first, then the operator's.
  await spi.faults.add({ match: { functions: ['WSPSend'] }, action: { type: 'short', max: 1 }, times: 1 });
  const added = await fetch(`http://127.0.0.1:${d.port}/faults`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'op-short', match: { functions: ['WSPSend'] }, action: { type: 'short', max: 2 }, times: 1 }),
  });
  t.equal(added.status, 201, 'operator rule added');
  t.same((await send(spi, s, [Buffer.from('abcdef')])).slice(0, 3), [0, 0, 1], 'the session rule shortened the send to 1 byte');
  t.same((await send(spi, s, [Buffer.from('abcdef')])).slice(0, 3), [0, 0, 2], 'the operator rule shortened the send to 2 bytes');
  const faults = await scrape(d.port, TOKEN);
  t.equal(sample(faults, 'spiwire_faults_applied_total', { source: 'session', rule: 'session' }), 1, 'the session rule counts as source session');
  t.equal(sample(faults, 'spiwire_faults_applied_total', { source: 'api', rule: 'op-short' }), 1, 'the operator rule counts under its id');
});

t.test('listings come in pages: limit, after and next; sessions and sockets that close between pages', async (t) => {
  const d = await daemon(t);
  const spis = [await session(t, d), await session(t, d), await session(t, d)];
  const ids: string[] = [];
  const page = async (path: string): Promise<unknown> => json(d.port, path);

  const first = await page('/sessions?limit=2');
  if (!S.isSessionsListing(first)) return t.fail('a session list');
  t.equal(first.sessions.length, 2, 'two sessions on the first page');
  t.type(first.next, 'string', 'and a cursor: more follow');
  ids.push(...first.sessions.map((s) => s.id));
  // The second session ends between the pages: the next page neither repeats nor skips.
  await spis[1]!.close();
  t.ok(await until(async () => {
    const all = await page('/sessions');
    return S.isSessionsListing(all) && all.sessions.length === 2;
  }), 'the closed session leaves the listing');
  const second = await page(`/sessions?limit=2&after=${first.next ?? ''}`);
  if (!S.isSessionsListing(second)) return t.fail('a session list');
  t.equal(second.sessions.length, 1, 'the third session alone on the second page');
  t.equal(second.next, undefined, 'no cursor on the last page');
  ids.push(second.sessions[0]!.id);
  t.equal(new Set(ids).size, 3, 'three different sessions, in the order they opened');
  const whole = await page('/sessions');
  t.same(S.isSessionsListing(whole) && whole.sessions.map((s) => s.id), [ids[0], ids[2]], 'the default page holds them all, oldest first');

  // Sockets: five of them, three closed between pages.
  const spi = spis[0]!;
  const handles: number[] = [];
  for (let i = 0; i < 5; i++) handles.push(await newSocket(spi, 'ipv4', i % 2 === 0 ? 'udp' : 'tcp'));
  const sock1 = await page(`/sessions/${ids[0]!}/sockets?limit=2`);
  if (!S.isSocketsListing(sock1)) return t.fail('a socket list');
  t.same(sock1.sockets.map((s) => s.handle), handles.slice(0, 2), 'the first two handles');
  t.equal(sock1.next, String(handles[1]), 'the cursor is the last handle listed');
  const e = S.out(0);
  for (const h of [handles[0]!, handles[2]!, handles[3]!]) t.equal(await spi.WSPCloseSocket(h, e), 0);
  const sock2 = await page(`/sessions/${ids[0]!}/sockets?limit=2&after=${sock1.next ?? ''}`);
  t.same(S.isSocketsListing(sock2) && { handles: sock2.sockets.map((s) => s.handle), next: sock2.next }, { handles: [handles[4]], next: undefined }, 'the rest: the closed ones are gone, none repeated');

  // Mistakes: a clear 400 naming the parameter, and the daemon goes on.
  for (const [query, field] of [
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=1.5', 'limit'],
    ['limit=2&limit=3', 'limit'],
    ['after=x', 'after'],
    ['after=99999999999999999', 'after'],
    ['page=2', 'page'],
  ]) {
    for (const path of ['/sessions', `/sessions/${ids[0]!}/sockets`]) {
      const r = await get(d.port, `${path}?${query}`);
      t.equal(r.status, 400, `${path}?${query}: 400`);
      t.match(JSON.parse(r.text), { error: new RegExp(field === 'page' ? 'not a parameter' : `^${field} must be`), field }, `${path}?${query} names ${field}`);
    }
  }
  t.equal((await get(d.port, '/sessions?limit=1000')).status, 200, 'the largest page');
});
