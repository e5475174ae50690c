/**
 * The --faults file (server/src/faults/fault-file.ts): valid files, and every kind of problem
 * reported as FILE:LINE:COLUMN: FIELD: WHAT, with the line and column of the field at fault.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { FaultFileError, parseFaultFile, readFaultFile } from '../../src/faults/fault-file.js';

function problem(t: Test, text: string, want: string | RegExp, what: string): void {
  try {
    parseFaultFile('f.json', text);
    t.fail(`${what}: accepted`);
  } catch (err) {
    t.ok(err instanceof FaultFileError, `${what}: a FaultFileError`);
    if (typeof want === 'string') t.equal(err instanceof Error ? err.message : '', want, what);
    else t.match(err instanceof Error ? err.message : '', want, what);
  }
}

t.test('a valid file: the rules, session and ids kept as written', async (t) => {
  const text = '\uFEFF[\n  {"match": {"nth": 3}, "action": {"type": "short", "max": 100}},\n  {"id": "db", "session": "abc-1", "match": {"socket": 256}, "action": {"type": "error", "code": 10054}, "notify": true}\n]\n';
  t.same(parseFaultFile('f.json', text), [
    { match: { nth: 3 }, action: { type: 'short', max: 100 } },
    { id: 'db', session: 'abc-1', match: { socket: 256 }, action: { type: 'error', code: 10054 }, notify: true },
  ]);
  t.same(parseFaultFile('f.json', '[]'), [], 'an empty array: no rule');
});

t.test('syntax errors: line and column of the mistake', async (t) => {
  problem(t, '[\n  {"match": {}, "action": {"type": "short" "max": 1}}\n]', 'f.json:2:44: expected , or } after a member', 'a missing comma');
  problem(t, '[\n  {"match": {},\n', 'f.json:3:1: expected a member name in double quotes', 'a truncated file');
  problem(t, '[{"match": {}, }]', 'f.json:1:16: expected a member name in double quotes', 'a trailing comma');
  problem(t, '[{match: {}}]', 'f.json:1:3: expected a member name in double quotes', 'an unquoted name');
  problem(t, '[{"id": "a\nb"}]', 'f.json:1:9: unterminated string', 'a line break in a string');
  problem(t, '[1] x', 'f.json:1:5: unexpected text after the end of the JSON value', 'text after the array');
  problem(t, '', 'f.json:1:1: the file ends where a value should be', 'an empty file');
  problem(t, '[01]', 'f.json:1:3: expected , or ] after an element', 'a number with a leading zero');
  problem(t, '['.repeat(100000), 'f.json:1:34: values nested more than 32 deep', 'deep nesting is refused, not a stack overflow');
});

t.test('rule problems: the field, on its own line', async (t) => {
  const text = [
    '[',
    '  { "match": { "nth": 1 }, "action": { "type": "short", "max": 1 } },',
    '  {',
    '    "match": { "functions": ["WSPSend", "WSPBogus"] },',
    '    "action": { "type": "error", "code": 10054 }',
    '  },',
    '  {',
    '    "match": {},',
    '    "action": {',
    '      "type": "error",',
    '      "code": 10014',
    '    }',
    '  }',
    ']',
  ].join('\n');
  problem(t, text, /^f\.json:4:41: rules\[1\]\.match\.functions\[1\]: must be one of WSPSend/, 'an array element inside a rule');
  const fixed = text.replace('"WSPBogus"', '"WSPRecv"');
  problem(t, fixed, /^f\.json:11:7: rules\[2\]\.action\.code: WSAEFAULT \(10014\) is not a code WSPSend can fail with/, 'a code the function cannot fail with');
  problem(t, '{"rules": []}', 'f.json:1:1: must be a JSON array of fault rules', 'an object instead of an array');
  problem(t, '[\n  {"action": {"type": "short", "max": 1}}\n]', 'f.json:2:3: rules[0].match: is missing', 'a missing member: the rule itself');
  problem(t, '[\n  {"match": {"socket": 256}, "action": {"type": "short", "max": 1}}\n]', 'f.json:2:14: rules[0].match.socket: needs session: a socket handle belongs to one session', 'a socket without a session');
  problem(t, '[\n  {"match": {}, "action": {"type": "short", "max": 1}, "bogus": 1}\n]', 'f.json:2:56: rules[0].bogus: is not a field of a fault rule', 'an unknown member');
  problem(t, '[\n  7\n]', /^f\.json:2:3: rules\[0\]: must be an object/, 'not an object');
  problem(t, '[{"id": "a", "match": {}, "action": {"type": "short", "max": 1}},\n {"id": "a", "match": {}, "action": {"type": "short", "max": 1}}]', 'f.json:2:3: rules[1].id: "a" is already the id of rules[0]', 'a repeated id');
  const many = `[${Array.from({ length: P.MAX_OPERATOR_FAULT_RULES + 1 }, () => '{"match": {}, "action": {"type": "short", "max": 1}}').join(',\n')}]`;
  problem(t, many, new RegExp(`^f\\.json:${P.MAX_OPERATOR_FAULT_RULES + 1}:1: ${P.MAX_OPERATOR_FAULT_RULES + 1} rules, more than the ${P.MAX_OPERATOR_FAULT_RULES}`), 'one rule over the cap');
});

t.test('a file that cannot be read', async (t) => {
  t.throws(() => readFaultFile('/nonexistent/faults.json'), { message: /^\/nonexistent\/faults\.json: cannot read: / });
});
