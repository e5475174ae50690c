/**
 * The operator's fault rules (server/src/faults/operator-rules.ts) with sessions' own rules, without
 * a network: the order and counting across both lists, session scoping, the checks of an add, file
 * replacement, reset, and what a session's end takes away.
 */
import t, { type Test } from 'tap';
import { pino } from 'pino';
import * as P from '@spiwire/proto';
import { SessionFaults, type FaultCall, type FaultTarget } from '../../src/faults/rules.js';
import { DaemonFaults, OperatorFaultError, type SessionDirectory } from '../../src/faults/operator-rules.js';

const quiet = pino({ level: 'silent' });

function target(handle: number, type: number = P.SOCK_STREAM): FaultTarget {
  return {
    handle,
    type,
    tag: null,
    bytesTaken: 0,
    log: quiet,
    localName: () => ({ family: P.AF_INET, address: '127.0.0.1', port: 5000 }),
    peerName: () => ({ family: P.AF_INET, address: '127.0.0.1', port: 80 }),
  };
}

const send: FaultCall = { fn: 'WSPSend', mode: 'blocking' };

/** Sessions A (sockets 256 stream, 260 datagram) and B (socket 264). */
const directory: SessionDirectory = {
  has: (s) => s === 'A' || s === 'B',
  socketType: (s, h) => (s === 'A' && h === 256 ? P.SOCK_STREAM : s === 'A' && h === 260 ? P.SOCK_DGRAM : s === 'B' && h === 264 ? P.SOCK_STREAM : null),
};

function refusal(t: Test, fn: () => unknown, status: number, field: string | undefined, what: string): void {
  try {
    fn();
    t.fail(`${what}: not refused`);
  } catch (err) {
    t.ok(err instanceof OperatorFaultError, `${what}: an OperatorFaultError`);
    if (err instanceof OperatorFaultError) {
      t.equal(err.status, status, `${what}: HTTP ${status}`);
      t.equal(err.field, field, `${what}: field ${field}`);
    }
  }
}

t.test('no rule anywhere: not armed; an operator rule arms every session, open or later', async (t) => {
  const daemon = new DaemonFaults(quiet);
  const a = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, daemon, 'A');
  t.equal(a.armed, false);
  t.equal(a.decide(target(256), send), null);
  const id = daemon.add({ match: {}, action: { type: 'short', max: 1 } }, directory);
  t.equal(id, 'op-1', 'generated ids are op-N');
  t.equal(a.armed, true, 'a session already open');
  const later = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, daemon, 'B');
  t.equal(later.armed, true, 'a session opened after');
  t.same(later.decide(target(264), send)?.action, { type: 'short', max: 1 });
  t.ok(daemon.remove(id));
  t.equal(a.armed, false, 'disarmed once the last operator rule goes');
  t.equal(daemon.remove(id), false, 'an unknown id');
});

t.test("a session's own rules come first; every matching rule counts the call", async (t) => {
  const daemon = new DaemonFaults(quiet);
  const notes: unknown[] = [];
  const a = new SessionFaults(quiet, (p) => notes.push(p), P.MAX_FAULT_RULES, daemon, 'A');
  daemon.add({ id: 'op-every', match: {}, action: { type: 'error', code: P.WSAENOBUFS }, notify: true }, directory);
  a.add({ id: 'own-2nd', match: { nth: 2 }, action: { type: 'short', max: 1 } }, () => P.SOCK_STREAM);
  const sock = target(256);
  t.equal(a.decide(sock, send)?.id, 'op-every', '1st call: only the operator rule fires');
  t.equal(a.decide(sock, send)?.id, 'own-2nd', "2nd call: the session's own rule wins");
  t.same(
    daemon.list().map((r) => [r.id, r.hits]),
    [['op-every', 1]],
    'the operator rule was counted, not fired, on the 2nd call',
  );
  t.same(notes, [{ id: 'op-every', s: 256, function: 'WSPSend', action: 'error' }], "an operator rule with notify tells the socket's session");

  const nth = new DaemonFaults(quiet);
  const b = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, nth, 'B');
  b.add({ match: {}, action: { type: 'short', max: 1 } }, () => P.SOCK_STREAM);
  nth.add({ match: { nth: 2 }, action: { type: 'error', code: P.WSAENOBUFS } }, directory);
  b.decide(target(264), send);
  b.decide(target(264), send);
  t.equal(b.decide(target(264), send)?.id, 'f1', 'the operator nth rule counted calls the own rule fired on, so it never fires after');
  t.equal(nth.list()[0]?.hits, 0);
});

t.test('a rule for one session touches no other', async (t) => {
  const daemon = new DaemonFaults(quiet);
  const a = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, daemon, 'A');
  const b = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, daemon, 'B');
  daemon.add({ session: 'A', match: {}, action: { type: 'short', max: 1 } }, directory);
  t.not(a.decide(target(256), send), null, 'session A');
  t.equal(b.decide(target(264), send), null, 'session B');
  t.same(daemon.list()[0], { id: 'op-1', session: 'A', source: 'api', match: {}, action: { type: 'short', max: 1 }, seed: 1, hits: 1 });
});

t.test('the checks of an add', async (t) => {
  const daemon = new DaemonFaults(quiet, 2);
  refusal(t, () => daemon.add({ session: 'C', match: {}, action: { type: 'short', max: 1 } }, directory), 404, 'session', 'an unknown session');
  refusal(t, () => daemon.add({ session: 'A', match: { socket: 264 }, action: { type: 'short', max: 1 } }, directory), 400, 'match.socket', "another session's socket");
  refusal(t, () => daemon.add({ session: 'A', match: { socket: 260 }, action: { type: 'short', max: 1 } }, directory), 400, 'action.type', 'short on a datagram socket');
  refusal(t, () => daemon.add({ id: 'file-3', match: {}, action: { type: 'short', max: 1 } }, directory), 400, 'id', 'an id of the file rules');
  daemon.add({ id: 'x', match: {}, action: { type: 'short', max: 1 } }, directory);
  refusal(t, () => daemon.add({ id: 'x', match: {}, action: { type: 'short', max: 1 } }, directory), 409, 'id', 'a duplicate id');
  t.equal(daemon.add({ session: 'A', match: { socket: 256 }, action: { type: 'short', max: 1 } }, directory), 'op-1');
  refusal(t, () => daemon.add({ match: {}, action: { type: 'short', max: 1 } }, directory), 409, undefined, 'one rule over the cap');
  t.ok(P.operatorFaultRuleProblem({ match: { socket: 256 }, action: { type: 'short', max: 1 } })?.field === 'match.socket', 'match.socket needs session (proto check)');
  t.equal(P.operatorFaultRuleProblem({ session: 'no spaces', match: {}, action: { type: 'short', max: 1 } })?.field, 'session');
  t.equal(P.operatorFaultRuleProblem({ match: {}, action: { type: 'error', code: P.WSAEFAULT } })?.field, 'action.code', "faultRuleProblem's field names are kept");
});

t.test('file rules: replaced all at once with fresh counts; HTTP rules stay; reset and session end', async (t) => {
  const daemon = new DaemonFaults(quiet);
  const a = new SessionFaults(quiet, () => undefined, P.MAX_FAULT_RULES, daemon, 'A');
  daemon.add({ match: { functions: ['WSPRecv'] }, action: { type: 'error', code: P.WSAENETDOWN } }, directory);
  daemon.replaceFileRules([{ match: {}, action: { type: 'short', max: 1 } }, { id: 'named', session: 'A', match: {}, action: { type: 'short', max: 2 } }]);
  a.decide(target(256), send);
  t.same(
    daemon.list().map((r) => [r.id, r.source, r.session, r.hits]),
    [
      ['op-1', 'api', null, 0],
      ['file-0', 'file', null, 1],
      ['named', 'file', 'A', 0],
    ],
  );
  daemon.replaceFileRules([{ match: {}, action: { type: 'short', max: 1 } }]);
  t.same(
    daemon.list().map((r) => [r.id, r.hits]),
    [
      ['op-1', 0],
      ['file-0', 0],
    ],
    'the new file rules replace the old, counts from 0; the HTTP rule stays',
  );
  refusal(t, () => daemon.replaceFileRules([{ id: 'op-1', match: {}, action: { type: 'short', max: 1 } }]), 409, 'rules[0].id', 'an id of an HTTP rule');
  t.same(
    daemon.list().map((r) => r.id),
    ['op-1', 'file-0'],
    'a refused replacement changes nothing',
  );

  daemon.add({ session: 'A', match: {}, action: { type: 'short', max: 1 } }, directory);
  daemon.replaceFileRules([{ session: 'A', match: {}, action: { type: 'short', max: 1 } }]);
  daemon.sessionEnded('A');
  t.same(
    daemon.list().map((r) => r.id),
    ['op-1', 'file-0'],
    "a session's end takes the HTTP rules for it; its file rules stay declared",
  );
  t.equal(daemon.reset('A'), 1, 'reset of one session');
  t.equal(daemon.reset(), 1, 'reset of all');
  t.equal(daemon.armed, false);
});
