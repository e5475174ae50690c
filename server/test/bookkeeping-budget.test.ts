/**
 * The daemon's memory for what waits has a budget of its own (bookkeeping.ts, proto/README.md
 * section 15, bookkeepingBudgetBytes): 512 bytes per pending overlapped operation and 2048 per
 * call still running, all sessions together. Past it, a session holding more than its share
 * gets TOO_MANY_REQUESTS for new calls; another session goes on within its share; what ends
 * gives the room back. Here the budget is 1 MiB (2048 operations) and the share 256 KiB.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectedSocket, daemon, session, tcpPeer, until, type Msg, type RawSession } from './helpers/raw-client.js';

const BUDGET = 1024 * 1024;
const SHARE = 256 * 1024;

async function stats(url: string): Promise<Record<string, unknown>> {
  return (await (await fetch(url.replace(/^ws/, 'http').replace(/\/ws$/, '/stats'))).json()) as Record<string, unknown>;
}

/** Posts n calls of make(i), each in a message of its own, and waits for every answer. */
async function post(s: RawSession, prefix: string, n: number, make: (i: number) => { method: string; params: Record<string, unknown> }): Promise<Msg[]> {
  for (let i = 0; i < n; i++) s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: `${prefix}-${i}`, ...make(i) }));
  const answers: Msg[] = [];
  for (let i = 0; i < n; i++) answers.push(await s.wait((m) => m.id === `${prefix}-${i}` && (m.result !== undefined || m.error !== undefined), 20000));
  return answers;
}

const refused = (m: Msg): boolean => m.error?.['code'] === P.TOO_MANY_REQUESTS;
const pending = (m: Msg): boolean => m.result?.['errno'] === P.WSA_IO_PENDING;

t.test('past the bookkeeping budget, the session above its share is refused, another goes on, and closing gives the room back', async (t) => {
  const d = await daemon(t, { limits: { bookkeepingBudgetBytes: BUDGET, maxSessions: 8 } });
  const peer = await tcpPeer(t);
  const a = await session(t, d.url);
  const b = await session(t, d.url);
  // Every send on these sockets waits: the fault holds them for ten minutes.
  const holdSends = async (s: RawSession, h: number): Promise<void> => {
    await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'block', ms: 600000 } } });
  };
  const { h: ha } = await connectedSocket(a, peer, P.WSA_FLAG_OVERLAPPED);
  const { h: ha2 } = await connectedSocket(a, peer, P.WSA_FLAG_OVERLAPPED);
  const { h: hb } = await connectedSocket(b, peer, P.WSA_FLAG_OVERLAPPED);
  await holdSends(a, ha);
  await holdSends(a, ha2);
  await holdSends(b, hb);
  const one = new Uint8Array([7]);
  const overlappedSend = (s: number, op: number): { method: string; params: Record<string, unknown> } => ({ method: 'WSPSend', params: { s, buffers: [one], flags: 0, overlapped: { op, thread: 1 } } });

  // Session a: 2048 operations fill the budget (1,024 on each socket, under the per-socket limit).
  const first = await post(a, 'a', BUDGET / 512 + 10, (i) => overlappedSend(i % 2 === 0 ? ha : ha2, i + 1));
  t.equal(first.filter(pending).length, BUDGET / 512, 'the operations that fit the budget pend');
  t.ok(first.slice(BUDGET / 512).every(refused), 'the ones after are refused with TOO_MANY_REQUESTS');
  t.match(String(first[BUDGET / 512]?.error?.['message']), /budget for waiting calls and pending operations \(1048576 bytes\) is spent/, 'and the refusal names the budget');
  t.equal((await stats(d.url))['bookkeepingBytes'], BUDGET, '/stats shows the budget taken');
  const other = await post(a, 'a-other', 1, () => ({ method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }));
  t.ok(refused(other[0]!), 'any new call of that session is refused meanwhile');

  // Session b goes on while it holds no more than its share (256 KiB): 513 operations, since
  // the 513th is asked for with 512 held; then it is refused too.
  const mine = await post(b, 'b', SHARE / 512 + 2, (i) => overlappedSend(hb, i + 1));
  t.equal(mine.filter(pending).length, SHARE / 512 + 1, "another session's operations pend up to its share");
  t.ok(refused(mine[SHARE / 512 + 1]!), 'and the next is refused');

  // WSPCloseSocket is never refused: it aborts a's operations on one socket, and their room is back.
  const closed = await a.call('WSPCloseSocket', { s: ha });
  t.equal(closed['ret'], 0, 'WSPCloseSocket goes through');
  const abortedOps = (): number => a.messages.filter((m) => m.method === 'spiwire.completion' && m.params?.['error'] === P.WSA_OPERATION_ABORTED).length;
  t.ok(await until(() => abortedOps() === BUDGET / 1024), `each aborted operation completes with WSA_OPERATION_ABORTED (${abortedOps()} of ${BUDGET / 1024})`);
  t.equal((await stats(d.url))['bookkeepingBytes'], BUDGET / 2 + SHARE + 512, 'the aborted operations no longer count');
  const again = await post(a, 'a-again', 1, () => ({ method: 'WSPGetSockOpt', params: { s: ha2, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }));
  t.equal(again[0]?.result?.['ret'], 0, 'the session is served again');

  // Waiting calls count 2 KiB each (and a string id its length): blocking sends on a blocking
  // socket held by the fault.
  const { h: blocking } = await connectedSocket(a, peer);
  await holdSends(a, blocking);
  // Calls are let in while the daemon is within its budget: as many as it takes to reach it.
  const held = (await stats(d.url))['bookkeepingBytes'] as number;
  // (Numeric ids: a string id counts its length too.)
  const n = Math.ceil((BUDGET - held) / 2048);
  for (let i = 0; i <= n; i++) a.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 5000 + i, method: 'WSPSend', params: { s: blocking, buffers: [one], flags: 0 } }));
  const last = await a.wait((m) => m.id === 5000 + n, 20000);
  t.ok(refused(last), `after ${n} waiting calls the next is refused`);
  t.equal((await stats(d.url))['bookkeepingBytes'], held + n * 2048, 'the waiting calls took the rest of the budget');

  // The session's end gives back all it held.
  await a.close();
  await b.close();
  t.ok(await until(async () => (await stats(d.url))['bookkeepingBytes'] === 0), 'nothing counts once the sessions ended');
});
