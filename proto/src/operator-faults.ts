/**
 * Operator fault rules (proto/README.md section 19.9, docs/faults.md "For operators"): the rules an
 * operator sets on the daemon over HTTP (GET/POST/DELETE /faults) or declares in a --faults file.
 * The same FaultRule as a session's, with the session it is limited to (absent: every session,
 * those opened later included) and where it came from.
 */
import { faultRuleProblem, type FaultRule, type FaultRuleProblem, type FaultRuleStatus } from './faults.js';

/** The most operator rules a daemon holds, API and file together (a session's own cap is MAX_FAULT_RULES). */
export const MAX_OPERATOR_FAULT_RULES = 256;

/** The largest body POST /faults takes, in bytes. */
export const MAX_OPERATOR_FAULT_BODY = 64 * 1024;

/** Where an operator rule came from: POST /faults, or the --faults file. */
export type OperatorFaultSource = 'api' | 'file';

/** Generated ids: `op-N` for rules added over HTTP, `file-N` for rules[N] of the file. */
export const OPERATOR_RULE_ID_PREFIX = 'op-';
export const FILE_RULE_ID_PREFIX = 'file-';

/** A rule as an operator gives it: a FaultRule and, optionally, the one session it applies to. */
export interface OperatorFaultRule extends FaultRule {
  /** A session id (spiwire.welcome's `session`); absent: every session, including later ones. */
  session?: string;
}

/** An operator rule as GET /faults reports it. */
export interface OperatorFaultRuleStatus extends FaultRuleStatus {
  /** null: every session. */
  session: string | null;
  source: OperatorFaultSource;
}

/** The body of GET /faults: the operator's rules, then each open session's own rules (read-only here). */
export interface FaultsListing {
  rules: OperatorFaultRuleStatus[];
  sessions: Array<{ session: string; rules: FaultRuleStatus[] }>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sessionProblem(v: unknown): string | null {
  if (typeof v !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(v)) return 'must be a session id (letters, digits and -, at most 64)';
  return null;
}

/**
 * Checks an operator rule: the fields of a FaultRule (faultRuleProblem, whose field names are kept)
 * plus `session`. A rule naming match.socket needs a session, since handles belong to sessions.
 */
export function operatorFaultRuleProblem(v: unknown): FaultRuleProblem | null {
  if (!isRecord(v)) return { field: '', what: 'must be an object {id?, session?, match, action, times?, seed?, notify?}' };
  const { session, ...rule } = v;
  if (session !== undefined) {
    const p = sessionProblem(session);
    if (p) return { field: 'session', what: p };
  }
  const p = faultRuleProblem(rule);
  if (p) return p;
  const match = rule['match'];
  if (session === undefined && isRecord(match) && match['socket'] !== undefined) {
    return { field: 'match.socket', what: 'needs session: a socket handle belongs to one session' };
  }
  return null;
}

/** Whether v is a well-formed operator rule (operatorFaultRuleProblem finds nothing). */
export function isOperatorFaultRule(v: unknown): v is OperatorFaultRule {
  return operatorFaultRuleProblem(v) === null;
}
