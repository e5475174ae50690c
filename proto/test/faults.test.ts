/**
 * The fault rule model (proto/src/faults.ts): what faultRuleProblem accepts, which field it names
 * for what it refuses, and the per-function table of codes a rule may inject.
 */
import t from 'tap';
import * as P from '../src/index.js';
import { FAULT_ERROR_CODES, FAULT_FUNCTIONS, faultRuleProblem, validateParams, ProtocolError, INVALID_PARAMS } from '../src/index.js';

const good = { match: { socket: 256 }, action: { type: 'block', ms: 50 } };

t.test('well-formed rules pass', async (t) => {
  const rules: unknown[] = [
    good,
    { id: 'slow.link:1', match: {}, action: { type: 'delay', ms: 1 } },
    { match: { tag: 'db', nth: 3 }, action: { type: 'short', max: 1 }, times: 1, seed: 42, notify: false },
    { match: { functions: ['WSPSend'], every: 2, afterBytes: 1000, probability: 0.5 }, action: { type: 'error', code: P.WSAENOBUFS } },
    { match: { functions: ['WSPRecv', 'WSPRecvFrom'] }, action: { type: 'error', code: P.WSAETIMEDOUT } },
    { match: { functions: ['WSPConnect'], remote: { address: '127.0.0.1', port: 80 } }, action: { type: 'error', code: P.WSAECONNREFUSED } },
    { match: { local: { address: '::' }, remote: { address: '0:0:0:0:0:0:0:1' } }, action: { type: 'error', code: P.WSAECONNRESET } },
    { match: { remote: { address: 'fe80::1%4' } }, action: { type: 'error', code: P.WSAECONNRESET } },
    { match: { remote: { address: '::ffff:127.0.0.1' } }, action: { type: 'error', code: P.WSAECONNRESET } },
    { match: { functions: ['WSPAccept'], local: { port: 9000 } }, action: { type: 'error', code: P.WSAEMFILE } },
    { match: { functions: ['WSPSendTo'] }, action: { type: 'error', code: P.WSAEHOSTUNREACH } },
  ];
  for (const r of rules) t.equal(faultRuleProblem(r), null, JSON.stringify(r));
});

t.test('each refusal names the field at fault', async (t) => {
  const cases: Array<[unknown, string]> = [
    [null, ''],
    [[good], ''],
    [{ ...good, extra: 1 }, 'extra'],
    [{ ...good, id: '' }, 'id'],
    [{ ...good, id: 'has space' }, 'id'],
    [{ ...good, id: 'x'.repeat(65) }, 'id'],
    [{ action: good.action }, 'match'],
    [{ match: 1, action: good.action }, 'match'],
    [{ match: { sock: 1 }, action: good.action }, 'match.sock'],
    [{ match: { socket: -1 }, action: good.action }, 'match.socket'],
    [{ match: { tag: '' }, action: good.action }, 'match.tag'],
    [{ match: { local: {} }, action: good.action }, 'match.local'],
    [{ match: { remote: { port: 70000 } }, action: good.action }, 'match.remote.port'],
    [{ match: { remote: { address: 1 } }, action: good.action }, 'match.remote.address'],
    [{ match: { remote: { address: 'localhost' } }, action: good.action }, 'match.remote.address'],
    [{ match: { local: { address: '127.1' } }, action: good.action }, 'match.local.address'],
    ...[':', ':::::::::', '1:2:3:4:5:6:7:8:9', '1.2.3.4:80', '999.999.999.999', '::256.1.1.1', '::1.2.3.4.5', '..:', '::1%1', '::1%lo', 'fe80::1%-/', 'fe80::1%4%4', '010.0.0.1', '1.2.3.04'].map(
      (address): [unknown, string] => [{ match: { remote: { address } }, action: good.action }, 'match.remote.address'],
    ),
    [{ match: { local: { host: 'x' } }, action: good.action }, 'match.local.host'],
    [{ match: { functions: [] }, action: good.action }, 'match.functions'],
    [{ match: { functions: 'WSPSend' }, action: good.action }, 'match.functions'],
    [{ match: { functions: ['WSPSend', 'send'] }, action: good.action }, 'match.functions.1'],
    [{ match: { functions: ['WSPSend', 'WSPSend'] }, action: good.action }, 'match.functions.1'],
    [{ match: { nth: 0 }, action: good.action }, 'match.nth'],
    [{ match: { every: 1.5 }, action: good.action }, 'match.every'],
    [{ match: { nth: 1, every: 2 }, action: good.action }, 'match.every'],
    [{ match: { afterBytes: -1 }, action: good.action }, 'match.afterBytes'],
    [{ match: { probability: 1.01 }, action: good.action }, 'match.probability'],
    [{ match: { probability: '0.5' }, action: good.action }, 'match.probability'],
    [{ match: {} }, 'action'],
    [{ match: {}, action: 'block' }, 'action'],
    [{ match: {}, action: { type: 'explode' } }, 'action.type'],
    [{ match: {}, action: { type: 'drop', ms: 1 } }, 'action.ms'],
    [{ match: {}, action: { type: 'block', ms: 5, drained: 10 } }, 'action.drained'],
    [{ match: {}, action: { type: 'block', drained: 0 } }, 'action.drained'],
    [{ match: {}, action: { type: 'reorder' } }, 'action.windowMs'],
    [{ match: {}, action: { type: 'link', bytesPerSecond: 0 } }, 'action.bytesPerSecond'],
    [{ match: {}, action: { type: 'link', bytesPerSecond: 10, latencyMs: -1 } }, 'action.latencyMs'],
    [{ match: {}, action: { type: 'break', at: 10, code: P.WSAENOBUFS } }, 'action.code'],
    [{ match: {}, action: { type: 'break', code: P.WSAECONNRESET } }, 'action.at'],
    [{ match: { functions: ['WSPRecv'] }, action: { type: 'drop' } }, 'action.type'],
    [{ match: { functions: ['WSPIoctl'] }, action: { type: 'error', code: P.WSAECONNRESET } }, 'action.code'],
    [{ match: { window: {} }, action: good.action }, 'match.window'],
    [{ match: { window: { startMs: 10, endMs: 10 } }, action: good.action }, 'match.window.endMs'],
    [{ match: { window: { from: 1 } }, action: good.action }, 'match.window.from'],
    [{ match: {}, action: { type: 'block' } }, 'action.ms'],
    [{ match: {}, action: { type: 'block', ms: 0 } }, 'action.ms'],
    [{ match: {}, action: { type: 'delay', ms: P.MAX_FAULT_MS + 1 } }, 'action.ms'],
    [{ match: {}, action: { type: 'block', ms: 5, max: 1 } }, 'action.max'],
    [{ match: {}, action: { type: 'short', max: 0 } }, 'action.max'],
    [{ match: {}, action: { type: 'error' } }, 'action.code'],
    [{ match: {}, action: { type: 'error', code: P.WSAECONNRESET, ms: 1 } }, 'action.ms'],
    [{ match: { functions: ['WSPRecv'] }, action: { type: 'short', max: 5 } }, 'action.type'],
    [{ match: { functions: ['WSPSend', 'WSPAccept'] }, action: { type: 'delay', ms: 5 } }, 'action.type'],
    [{ ...good, times: 0 }, 'times'],
    [{ ...good, seed: -1 }, 'seed'],
    [{ ...good, seed: 2 ** 32 }, 'seed'],
    [{ ...good, notify: 1 }, 'notify'],
  ];
  for (const [rule, field] of cases) {
    t.equal(faultRuleProblem(rule)?.field, field, `${JSON.stringify(rule)} -> ${field || '(the rule)'}`);
  }
});

t.test('every action type has a well-formed example', async (t) => {
  const examples = [
    { type: 'block', ms: 5 },
    { type: 'block', drained: 1000 },
    { type: 'short', max: 3 },
    { type: 'delay', ms: 5 },
    { type: 'error', code: P.WSAECONNRESET },
    { type: 'reorder', windowMs: 20 },
    { type: 'break', at: 100, code: P.WSAECONNABORTED },
    { type: 'link', bytesPerSecond: 1000, latencyMs: 5 },
    { type: 'drop' },
    { type: 'duplicate' },
  ];
  t.same([...new Set(examples.map((a) => a.type))].sort(), [...P.FAULT_ACTION_TYPES].sort());
  for (const action of examples) t.equal(faultRuleProblem({ match: { window: { startMs: 0, endMs: 100 } }, action }), null, JSON.stringify(action));
  t.equal(faultRuleProblem({ match: { functions: ['WSPIoctl'] }, action: { type: 'error', code: P.WSAENETDOWN } }), null);
});

t.test('a code the function cannot produce is refused with both named', async (t) => {
  const p = faultRuleProblem({ match: { functions: ['WSPSend'] }, action: { type: 'error', code: P.WSAEISCONN } });
  t.equal(p?.field, 'action.code');
  t.match(p?.what, /WSAEISCONN \(10056\) is not a code WSPSend can fail with/);
  t.match(p?.what, /WSAECONNRESET \(10054\)/, 'the message lists the codes that are allowed');
  // WSAECONNREFUSED is a connect code: fine for WSPConnect, refused for the sends (the default functions).
  t.equal(faultRuleProblem({ match: { functions: ['WSPConnect'] }, action: { type: 'error', code: P.WSAECONNREFUSED } }), null);
  t.match(faultRuleProblem({ match: {}, action: { type: 'error', code: P.WSAECONNREFUSED } })?.what, /is not a code WSPSend can fail with/);
  // With several functions every one of them must be able to produce the code.
  t.match(faultRuleProblem({ match: { functions: ['WSPRecv', 'WSPAccept'] }, action: { type: 'error', code: P.WSAECONNRESET } })?.what, /not a code WSPAccept can fail with/);
  for (const code of [P.WSAEFAULT, P.WSAEINVAL, P.WSAENOTSOCK, P.WSAENOTCONN, P.WSAESHUTDOWN, P.WSAEOPNOTSUPP, P.WSAEMSGSIZE, P.WSA_IO_PENDING, P.WSA_OPERATION_ABORTED, 0, 12345]) {
    t.equal(faultRuleProblem({ match: {}, action: { type: 'error', code } })?.field, 'action.code', `${P.wsaErrorName(code)} is refused for the sends`);
  }
});

t.test('the code table: every function, every code catalogued, the reset codes only where a connection exists', async (t) => {
  for (const f of FAULT_FUNCTIONS) {
    const table = FAULT_ERROR_CODES[f];
    t.ok(table.size > 0, `${f} has codes`);
    for (const [code, use] of table) {
      t.ok(P.wsaError(code), `${f}: ${code} is in the WSA catalogue`);
      t.ok(use.stream !== null || use.datagram !== null, `${f}: ${P.wsaErrorName(code)} applies to some socket`);
      if (use.stream === 'reset') t.ok(['WSPSend', 'WSPSendTo', 'WSPRecv', 'WSPRecvFrom'].includes(f), `${f}: a reset only where data moves on a connection`);
    }
  }
  t.same(FAULT_ERROR_CODES.WSPSend.get(P.WSAECONNRESET), { stream: 'reset', datagram: 'transient' });
  t.same(FAULT_ERROR_CODES.WSPSend.get(P.WSAENOBUFS), { stream: 'transient', datagram: 'transient' });
  t.equal(FAULT_ERROR_CODES.WSPSend.get(P.WSAECONNABORTED)?.datagram, null, 'no aborted circuit on a datagram socket');
});

t.test('spiwire.faults.add validates its rule through the method table, naming params.rule.<field>', async (t) => {
  try {
    validateParams('spiwire.faults.add', { rule: { match: { nth: 0 }, action: good.action } });
    t.fail('accepted');
  } catch (err) {
    t.ok(err instanceof ProtocolError);
    if (err instanceof ProtocolError) {
      t.equal(err.code, INVALID_PARAMS);
      t.equal(err.data?.['field'], 'rule.match.nth');
      t.match(err.message, /spiwire\.faults\.add: params\.rule\.match\.nth must be an integer from 1/);
    }
  }
});

t.test('isFaultRuleStatus: a listed rule is a well-formed rule with its id, seed and hits', async (t) => {
  const listed = { id: 'r1', match: { functions: ['WSPSend'] }, action: { type: 'error', code: P.WSAECONNRESET }, seed: 1, hits: 2 };
  t.ok(P.isFaultRuleStatus(listed), 'as the daemon lists it');
  const without = (k: string): Record<string, unknown> => Object.fromEntries(Object.entries(listed).filter(([key]) => key !== k));
  t.notOk(P.isFaultRuleStatus(without('hits')), 'without hits');
  t.notOk(P.isFaultRuleStatus(without('id')), 'without an id');
  t.notOk(P.isFaultRuleStatus(without('seed')), 'without a seed');
  t.notOk(P.isFaultRuleStatus({ ...listed, hits: -1 }), 'a negative hit count');
  t.notOk(P.isFaultRuleStatus({ ...listed, action: { type: 'nonsense' } }), 'a rule that is not well formed');
  t.notOk(P.isFaultRuleStatus({ ...listed, extra: true }), 'a field rules do not have');
  t.notOk(P.isFaultRuleStatus([listed]), 'not an object');
});
