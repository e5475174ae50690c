/**
 * What the daemon may answer (proto/README.md sections 8, 12, 13 and 14): a result whose errno is
 * 0 or a catalogued WSA code, a protocol error with a catalogued code, or a documented
 * notification. INTERNAL_ERROR (-32603) is catalogued but always a defect: the daemon failed
 * inside. Anything else is an undocumented reply, also a defect.
 */
import * as P from '@spiwire/proto';

export interface Msg {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: Record<string, unknown>;
}

export type Verdict = 'result' | 'error' | 'notification' | 'internal' | 'undocumented';

const ERROR_CODES = new Set([P.PARSE_ERROR, P.INVALID_REQUEST, P.METHOD_NOT_FOUND, P.INVALID_PARAMS, P.BAD_FRAME, P.DUPLICATE_ID, P.TOO_MANY_REQUESTS, P.RESUME_REFUSED]);
const NOTIFICATIONS = new Set(Object.keys(P.NOTIFICATIONS));

const isWsa = (n: unknown): boolean => typeof n === 'number' && (n === 0 || P.wsaError(n) !== undefined);

/** The verdict on one message from the daemon, and why when it is undocumented. */
export function classify(m: Msg): { verdict: Verdict; why?: string } {
  const bad = (why: string): { verdict: Verdict; why: string } => ({ verdict: 'undocumented', why });
  if (m === null || typeof m !== 'object' || Array.isArray(m)) return bad('not an object');
  if (m.jsonrpc !== '2.0') return bad('jsonrpc is not "2.0"');
  if (typeof m.method === 'string') {
    if (!NOTIFICATIONS.has(m.method)) return bad(`undocumented notification ${m.method}`);
    if (m.params === null || typeof m.params !== 'object') return bad('notification without params');
    if (m.method === 'spiwire.completion' && !isWsa(m.params['error'])) return bad(`completion error ${String(m.params['error'])} is not a WSA code`);
    return { verdict: 'notification' };
  }
  if (!('id' in m)) return bad('a response without id');
  if (!(m.id === null || typeof m.id === 'string' || (typeof m.id === 'number' && Number.isInteger(m.id)))) return bad(`bad id ${JSON.stringify(m.id)}`);
  if ((m.result !== undefined) === (m.error !== undefined)) return bad('needs exactly one of result and error');
  if (m.error !== undefined) {
    const e = m.error;
    if (typeof e !== 'object' || e === null) return bad('error is not an object');
    if (e['code'] === P.INTERNAL_ERROR) return { verdict: 'internal', why: String(e['message']) };
    if (typeof e['code'] !== 'number' || !ERROR_CODES.has(e['code'])) return bad(`undocumented error code ${JSON.stringify(e['code'])}`);
    if (typeof e['message'] !== 'string') return bad('error without message');
    return { verdict: 'error' };
  }
  const r = m.result!;
  if (typeof r !== 'object' || r === null) return bad('result is not an object');
  if (typeof r['ret'] !== 'number' || !Number.isInteger(r['ret'])) return bad('result.ret is not an integer');
  if (!isWsa(r['errno'])) return bad(`result.errno ${String(r['errno'])} is not in the WSA catalogue`);
  return { verdict: 'result' };
}

/** Close codes a hostile client may be answered with: 1000/1001 normal and going away, 1007 invalid UTF-8, 1009 too big, 4008 output bound (the daemon stops serving a client that does not read). */
export const EXPECTED_ATTACKER_CLOSES = new Set([1000, 1001, 1005, 1007, 1009, 4008]);
