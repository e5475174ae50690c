/**
 * A session's fault rules (server/src/faults/rules.ts) without a network: which calls a rule
 * matches and counts, when it fires, several rules on one call, the checks made when a rule is
 * added, the cap, the hit counts, the debug line and the notification.
 */
import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import * as P from '@spiwire/proto';
import { SessionFaults, type CallMode, type FaultCall, type FaultTarget } from '../../src/faults/rules.js';

function logCapture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'trace' }, dest), lines };
}

const quiet = pino({ level: 'silent' });

function target(handle: number, opts: Partial<{ type: number; tag: string | null; bytesTaken: number; local: P.SockAddr | null; peer: P.SockAddr | null; log: pino.Logger }> = {}): FaultTarget & { bytesTaken: number; tag: string | null } {
  return {
    handle,
    type: opts.type ?? P.SOCK_STREAM,
    tag: opts.tag ?? null,
    bytesTaken: opts.bytesTaken ?? 0,
    log: opts.log ?? quiet,
    localName: () => opts.local ?? { family: P.AF_INET, address: '127.0.0.1', port: 5000 },
    peerName: () => opts.peer ?? { family: P.AF_INET, address: '127.0.0.1', port: 80 },
  };
}

const send = (mode: CallMode = 'blocking'): FaultCall => ({ fn: 'WSPSend', mode });

function faults(notify: (p: unknown) => void = () => undefined, max?: number): SessionFaults {
  return new SessionFaults(quiet, notify, max);
}

const noSockets = (): number | null => null;
const streams = (): number => P.SOCK_STREAM;

/** Which of n calls (1-based) the rules fire on. */
function firing(f: SessionFaults, sock: FaultTarget, n: number, call: FaultCall = send()): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (f.decide(sock, call)) out.push(i);
  return out;
}

t.test('no rule: not armed, nothing fires', async (t) => {
  const f = faults();
  t.equal(f.armed, false);
  t.equal(f.decide(target(256), send()), null);
  const id = f.add({ match: {}, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  t.equal(f.armed, true);
  f.remove(id);
  t.equal(f.armed, false, 'disarmed once the last rule goes');
});

t.test('nth, every, times, afterBytes', async (t) => {
  const nth = faults();
  nth.add({ match: { nth: 3 }, action: { type: 'short', max: 1 } }, noSockets);
  t.same(firing(nth, target(256), 8), [3], 'nth 3: the third call only');

  const every = faults();
  every.add({ match: { every: 3 }, action: { type: 'short', max: 1 } }, noSockets);
  t.same(firing(every, target(256), 10), [3, 6, 9], 'every 3');

  const times = faults();
  times.add({ match: { every: 2 }, action: { type: 'short', max: 1 }, times: 2 }, noSockets);
  t.same(firing(times, target(256), 10), [2, 4], 'every 2, at most twice');

  const after = faults();
  after.add({ match: { afterBytes: 100 }, action: { type: 'short', max: 1 } }, noSockets);
  const sock = target(256);
  t.equal(after.decide(sock, send()), null, 'under 100 bytes taken');
  sock.bytesTaken = 100;
  t.not(after.decide(sock, send()), null, 'at 100 bytes');
});

t.test('counts are per socket and start when the rule is added; a closed socket forgets its count', async (t) => {
  const f = faults();
  f.add({ match: { nth: 2 }, action: { type: 'short', max: 1 } }, noSockets);
  const a = target(256);
  const b = target(260);
  t.equal(f.decide(a, send()), null, 'a: 1st');
  t.equal(f.decide(b, send()), null, 'b: 1st');
  t.not(f.decide(a, send()), null, 'a: 2nd');
  t.not(f.decide(b, send()), null, 'b: 2nd');
  f.socketClosed(256);
  t.equal(f.decide(a, send()), null, 'a counts from 1 again (handles are never reused; this only frees memory)');
});

t.test('the filters: socket, tag, local, remote, functions', async (t) => {
  const f = faults();
  f.add({ match: { socket: 256 }, action: { type: 'error', code: P.WSAENOBUFS } }, streams);
  t.not(f.decide(target(256), send()), null, 'socket 256');
  t.equal(f.decide(target(260), send()), null, 'not socket 260');

  const g = faults();
  g.add({ match: { tag: 'db' }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  t.not(g.decide(target(256, { tag: 'db' }), send()), null, 'tag db');
  t.equal(g.decide(target(256, { tag: 'web' }), send()), null, 'tag web');
  t.equal(g.decide(target(256), send()), null, 'no tag');

  const h = faults();
  h.add({ match: { local: { port: 5000 }, remote: { address: '::1', port: 443 } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  const v6 = { family: P.AF_INET6, address: '::1', port: 443 };
  t.not(h.decide(target(256, { peer: v6 }), send()), null, 'local port and remote address and port');
  t.equal(h.decide(target(256, { peer: { ...v6, port: 444 } }), send()), null, 'another remote port');
  t.equal(h.decide(target(256, { peer: v6, local: { family: P.AF_INET6, address: '::1', port: 5001 } }), send()), null, 'another local port');
  t.not(h.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: v6 }), null, "WSPSendTo's lpTo is the remote end");
  const spelled = faults();
  spelled.add({ match: { remote: { address: '0:0:0:0:0:0:0:1' } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  t.not(spelled.decide(target(256, { peer: v6 }), send()), null, '0:0:0:0:0:0:0:1 matches ::1: one address, two spellings');
  t.equal(spelled.decide(target(256, { peer: { ...v6, address: '::2' } }), send()), null, 'and not ::2');

  // Scopes: lo is an interface on every Linux machine (index 1); elsewhere the names differ.
  if (process.platform === 'linux') {
    const ll = { family: P.AF_INET6, address: 'fe80::1', port: 80 };
    const byName = faults();
    byName.add({ match: { remote: { address: 'fe80::1%lo' } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
    t.not(byName.decide(target(256, { peer: { ...ll, scopeId: 1 } }), send()), null, 'a %lo filter matches a peer name whose scopeId is lo\'s index');
    t.not(byName.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: { ...ll, address: 'fe80::1%1' } }), null, 'and a WSPSendTo written with %1');
    t.not(byName.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: { ...ll, address: 'FE80:0::1%lo' } }), null, 'and one written with %lo, in another spelling');
    t.equal(byName.decide(target(256, { peer: { ...ll, scopeId: 0 } }), send()), null, 'not a name without a scope');
    t.equal(byName.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: { ...ll, address: 'fe80::1%999999' } }), null, 'nor one on another interface');
    const byIndex = faults();
    byIndex.add({ match: { remote: { address: 'fe80::1%1' } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
    t.not(byIndex.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: { ...ll, address: 'fe80::1%lo' } }), null, 'a %1 filter matches a WSPSendTo written with %lo');
    const anyScope = faults();
    anyScope.add({ match: { remote: { address: 'fe80::1' } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
    t.not(anyScope.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking', remote: { ...ll, address: 'fe80::1%1' } }), null, 'a filter without a scope matches a %-suffixed WSPSendTo');
    t.not(anyScope.decide(target(256, { peer: { ...ll, scopeId: 1 } }), send()), null, 'and a peer name with a scopeId');
    const unknown = faults();
    unknown.add({ match: { remote: { address: 'fe80::1%nosuchif0' } }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
    t.equal(unknown.decide(target(256, { peer: { ...ll, scopeId: 0 } }), send()), null, 'a filter naming no interface matches nothing, not scope 0');
  }

  const k = faults();
  k.add({ match: { functions: ['WSPRecv', 'WSPAccept'], remote: { port: 80 } }, action: { type: 'error', code: P.WSAENETDOWN } }, noSockets);
  t.equal(k.decide(target(256), send()), null, 'WSPSend is not among the functions');
  t.not(k.decide(target(256), { fn: 'WSPRecv', mode: 'blocking' }), null, 'WSPRecv is');
  t.equal(k.decide(target(256), { fn: 'WSPAccept', mode: 'blocking' }), null, 'WSPAccept has no remote end');

  const dflt = faults();
  dflt.add({ match: {}, action: { type: 'error', code: P.WSAENETDOWN } }, noSockets);
  t.not(dflt.decide(target(256), { fn: 'WSPSendTo', mode: 'blocking' }), null, 'the default functions: WSPSendTo');
  t.equal(dflt.decide(target(256), { fn: 'WSPRecv', mode: 'blocking' }), null, 'the default functions: not WSPRecv');
});

t.test('an action matches only calls it has a meaning for, and those it does not are not counted', async (t) => {
  const udp = target(260, { type: P.SOCK_DGRAM });
  const block = faults();
  block.add({ match: { nth: 1 }, action: { type: 'block', ms: 10 } }, noSockets);
  t.equal(block.decide(udp, send()), null, 'block: no datagram socket');
  t.not(block.decide(target(256), send()), null, 'block: the first call of a stream socket');

  const delay = faults();
  delay.add({ match: { nth: 2 }, action: { type: 'delay', ms: 10 } }, noSockets);
  t.same(firing(delay, udp, 1, send('nonblocking')), [], 'delay: a nonblocking call neither fires nor counts');
  t.same(firing(delay, udp, 2, send('overlapped')), [2], 'so the second overlapped call is the 2nd');

  const wouldBlock = faults();
  wouldBlock.add({ match: {}, action: { type: 'error', code: P.WSAEWOULDBLOCK } }, noSockets);
  t.equal(wouldBlock.decide(target(256), send('blocking')), null, 'WSAEWOULDBLOCK: never a blocking call');
  t.not(wouldBlock.decide(target(256), send('nonblocking')), null, 'WSAEWOULDBLOCK: a nonblocking call');
  t.not(wouldBlock.decide(target(256), send('overlapped')), null, 'WSAEWOULDBLOCK: an overlapped call');

  const aborted = faults();
  aborted.add({ match: {}, action: { type: 'error', code: P.WSAECONNABORTED } }, noSockets);
  t.equal(aborted.decide(udp, send()), null, 'WSAECONNABORTED: no circuit on a datagram socket');
  const fired = aborted.decide(target(256), send());
  t.same({ id: fired?.id, action: fired?.action, effect: fired?.effect }, { id: 'f1', action: { type: 'error', code: P.WSAECONNABORTED }, effect: 'reset' }, 'a reset on a stream socket');

  const reset = faults();
  reset.add({ match: {}, action: { type: 'error', code: P.WSAECONNRESET } }, noSockets);
  t.equal(reset.decide(udp, send())?.effect, 'transient', 'WSAECONNRESET on a datagram socket is transient');

  for (const action of [{ type: 'drop' }, { type: 'duplicate' }] as const) {
    const f = faults();
    f.add({ match: {}, action }, noSockets);
    t.equal(f.decide(target(256), send()), null, `${action.type}: no stream socket`);
    t.not(f.decide(udp, send()), null, `${action.type}: a datagram socket`);
  }
  for (const action of [{ type: 'break', at: 5, code: P.WSAECONNRESET }, { type: 'link', bytesPerSecond: 100 }, { type: 'short', max: 1 }] as const) {
    const f = faults();
    f.add({ match: {}, action }, noSockets);
    t.equal(f.decide(udp, send()), null, `${action.type}: no datagram socket`);
    t.not(f.decide(target(256), send()), null, `${action.type}: a stream socket`);
  }
  const streamed = faults();
  streamed.add({ match: { nth: 2 }, action: { type: 'short', max: 1 } }, noSockets);
  t.equal(streamed.decide(target(256), { fn: 'WSPSend', mode: 'blocking', streamed: true }), null, 'short: not a streamed send (and not counted)');
  t.equal(streamed.decide(target(256), send()), null, 'so the next plain send is the 1st');
  t.not(streamed.decide(target(256), send()), null, 'and the one after the 2nd');
  const reorder = faults();
  reorder.add({ match: {}, action: { type: 'reorder', windowMs: 5 } }, noSockets);
  t.equal(reorder.decide(target(256), send('blocking')), null, 'reorder: never a blocking call');
  t.not(reorder.decide(target(256), send('overlapped')), null, 'reorder: an overlapped call');
});

t.test('match.window: the rule fires only inside its window, counted from when it was added', async (t) => {
  const f = faults();
  f.add({ match: { window: { startMs: 60_000 } }, action: { type: 'block', ms: 5 } }, noSockets);
  t.equal(f.decide(target(256), send()), null, 'before the window opens');
  const g = faults();
  g.add({ match: { window: { endMs: 60_000 } }, action: { type: 'block', ms: 5 } }, noSockets);
  t.not(g.decide(target(256), send()), null, 'inside the window');
  const h = faults();
  h.add({ match: { window: { startMs: 0, endMs: 30 } }, action: { type: 'block', ms: 5 } }, noSockets);
  const until = performance.now() + 40;
  // Bounded: the window ends 30 ms after the rule was added.
  while (performance.now() < until) await new Promise((r) => setTimeout(r, 5));
  t.equal(h.decide(target(256), send()), null, 'after the window closed');
});

t.test('probability: the same seed and calls give the same faults; the draw comes last', async (t) => {
  const run = (seed: number): number[] => {
    const f = faults();
    f.add({ match: { probability: 0.3 }, action: { type: 'error', code: P.WSAENOBUFS }, seed }, noSockets);
    return firing(f, target(256), 200);
  };
  const a = run(11);
  t.same(run(11), a, 'seed 11 twice');
  t.notSame(run(12), a, 'seed 12 differs');
  t.ok(a.length > 30 && a.length < 90, `about 30% of 200 calls (${a.length})`);

  // Without a seed: seed 1, reproducible all the same.
  const f = faults();
  f.add({ match: { probability: 0.5 }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  const g = faults();
  g.add({ match: { probability: 0.5 }, action: { type: 'error', code: P.WSAENOBUFS }, seed: 1 }, noSockets);
  t.same(firing(f, target(256), 50), firing(g, target(256), 50));
  t.equal(f.list()[0]?.seed, 1, 'the list shows the seed in force');

  // A draw is made only for calls that passed the other conditions: every 2 with p 1 fires on each even call.
  const h = faults();
  h.add({ match: { every: 2, probability: 1 }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  t.same(firing(h, target(256), 6), [2, 4, 6]);
});

t.test('several rules: each counts, the first added that fires acts, one fault per call', async (t) => {
  const f = faults();
  const a = f.add({ match: { every: 2 }, action: { type: 'error', code: P.WSAENOBUFS } }, noSockets);
  const b = f.add({ match: { nth: 2 }, action: { type: 'short', max: 1 } }, noSockets);
  const c = f.add({ match: { nth: 3 }, action: { type: 'delay', ms: 5 } }, noSockets);
  const sock = target(256);
  const seen = [1, 2, 3, 4].map(() => f.decide(sock, send())?.id ?? null);
  t.same(seen, [null, a, c, a], 'call 2: a (added first) wins over b; call 3: c');
  t.same(
    f.list().map((r) => [r.id, r.hits]),
    [
      [a, 2],
      [b, 0],
      [c, 1],
    ],
    'hits: b lost its only call to a',
  );
});

t.test('add: ids, refusals that need the session, the cap', async (t) => {
  const f = faults(undefined, 3);
  t.equal(f.add({ id: 'mine', match: {}, action: { type: 'short', max: 1 } }, noSockets), 'mine');
  t.equal(f.add({ match: {}, action: { type: 'short', max: 1 } }, noSockets), 'f1');
  t.throws(() => f.add({ id: 'mine', match: {}, action: { type: 'short', max: 1 } }, noSockets), { code: P.INVALID_PARAMS, data: { field: 'rule.id' } }, 'a duplicate id');
  t.throws(() => f.add({ match: { socket: 300 }, action: { type: 'short', max: 1 } }, noSockets), { code: P.INVALID_PARAMS, data: { field: 'rule.match.socket' }, message: /300 is not a socket of this session/ });
  const dgram = (): number => P.SOCK_DGRAM;
  t.throws(() => f.add({ match: { socket: 300 }, action: { type: 'block', ms: 5 } }, dgram), { data: { field: 'rule.action.type' }, message: /datagram/ });
  t.throws(() => f.add({ match: { socket: 300 }, action: { type: 'short', max: 5 } }, dgram), { data: { field: 'rule.action.type' }, message: /short has no meaning/ });
  t.equal(f.add({ match: { socket: 300 }, action: { type: 'delay', ms: 5 } }, dgram), 'f2', 'delay on a datagram socket is fine');
  t.throws(() => f.add({ match: {}, action: { type: 'short', max: 1 } }, noSockets), { code: P.INVALID_PARAMS, data: { field: 'rule' }, message: /already has 3 fault rules/ }, 'the cap');
  f.remove('f1');
  t.equal(f.add({ match: {}, action: { type: 'short', max: 1 } }, noSockets), 'f3', 'room again once one is removed; ids are not reused');
  t.throws(() => f.remove('f1'), { code: P.INVALID_PARAMS, data: { field: 'id' } }, 'removing twice');
  t.same(
    f.list().map((r) => r.id),
    ['mine', 'f2', 'f3'],
    'in the order added',
  );
  t.equal(new SessionFaults(quiet, () => undefined).add({ match: {}, action: { type: 'short', max: 1 } }, noSockets), 'f1');
  const full = new SessionFaults(quiet, () => undefined);
  for (let i = 0; i < P.MAX_FAULT_RULES; i++) full.add({ match: {}, action: { type: 'short', max: 1 } }, noSockets);
  t.throws(() => full.add({ match: {}, action: { type: 'short', max: 1 } }, noSockets), { message: /already has 64 fault rules/ }, 'MAX_FAULT_RULES by default');
});

t.test('list: the rule as added with id, seed and hits; a copy', async (t) => {
  const f = faults();
  f.add({ id: 'r', match: { tag: 'x', nth: 1 }, action: { type: 'error', code: P.WSAECONNRESET }, times: 1, notify: true }, noSockets);
  f.decide(target(256, { tag: 'x' }), send());
  const l = f.list();
  t.same(l, [{ id: 'r', match: { tag: 'x', nth: 1 }, action: { type: 'error', code: P.WSAECONNRESET }, times: 1, seed: 1, notify: true, hits: 1 }]);
  l[0]!.match.nth = 99;
  t.equal(f.list()[0]!.match.nth, 1, 'changing the list changes no rule');
});

t.test('a fault applied: one debug line, and a notification when asked for', async (t) => {
  const { log, lines } = logCapture();
  const notes: unknown[] = [];
  const f = new SessionFaults(quiet, (p) => notes.push(p));
  f.add({ id: 'loud', match: { nth: 1 }, action: { type: 'short', max: 2 }, notify: true }, noSockets);
  f.add({ id: 'silent', match: { nth: 2 }, action: { type: 'short', max: 2 } }, noSockets);
  const sock = target(264, { log });
  f.decide(sock, send());
  f.decide(sock, send());
  f.decide(sock, send());
  t.same(notes, [{ id: 'loud', s: 264, function: 'WSPSend', action: 'short' }], 'only the rule with notify');
  const applied = lines.filter((l) => l['msg'] === 'fault applied');
  t.equal(applied.length, 2, 'one line per fault');
  t.ok(
    applied.every((l) => l['level'] === 20),
    'at debug level',
  );
  t.same(
    applied.map((l) => [l['rule'], l['function'], l['action']]),
    [
      ['loud', 'WSPSend', 'short'],
      ['silent', 'WSPSend', 'short'],
    ],
  );
});
