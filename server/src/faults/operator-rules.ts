/**
 * The operator's fault rules (docs/faults.md, "For operators"): rules for every session, or for one
 * session named by its id, set over HTTP (app.ts, /faults) or declared in a --faults file
 * (fault-file.ts). They apply to sessions already open and to later ones: every SessionFaults asks
 * them after its own rules (rules.ts, SharedFaultRules).
 *
 * The list is replaced, never changed in place, so a reload swaps every file rule at once.
 */
import type { Logger } from 'pino';
import * as P from '@spiwire/proto';
import { ActiveRule, actionMismatch, DEFAULT_FAULT_SEED, type SharedFaultRules } from './rules.js';

/** A refusal of an operator request, with the HTTP status it answers and the field at fault. */
export class OperatorFaultError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** What the operator rules need to know of the open sessions. */
export interface SessionDirectory {
  /** Whether a session with this id is open. */
  has(session: string): boolean;
  /** The type of a socket of that session (null: no such socket). */
  socketType(session: string, handle: number): number | null;
}

export class DaemonFaults implements SharedFaultRules {
  active: readonly ActiveRule[] = [];
  private nextId = 1;

  constructor(
    private readonly log: Logger,
    readonly maxRules: number = P.MAX_OPERATOR_FAULT_RULES,
    /** Told of every firing of any rule, a session's own included (the daemon's metrics count them). */
    readonly applied: (source: string, rule: string) => void = () => undefined,
  ) {}

  get armed(): boolean {
    return this.active.length > 0;
  }

  /** Adds a rule from POST /faults (checked by operatorFaultRuleProblem) and returns its id. */
  add(input: P.OperatorFaultRule, sessions: SessionDirectory): string {
    const { session, ...rule } = input;
    if (this.active.length >= this.maxRules) throw new OperatorFaultError(409, `the daemon already holds ${this.maxRules} operator fault rules, the most it may; remove some first`);
    if (rule.id !== undefined) {
      if (rule.id.startsWith(P.FILE_RULE_ID_PREFIX)) throw new OperatorFaultError(400, `id ${JSON.stringify(rule.id)}: ids beginning ${P.FILE_RULE_ID_PREFIX} are kept for the rules of the --faults file`, 'id');
      if (this.find(rule.id)) throw new OperatorFaultError(409, `id ${JSON.stringify(rule.id)} is already the id of an operator rule`, 'id');
    }
    if (session !== undefined) {
      if (!sessions.has(session)) throw new OperatorFaultError(404, `no open session has the id ${session}`, 'session');
      const s = rule.match.socket;
      if (s !== undefined) {
        const type = sessions.socketType(session, s);
        if (type === null) throw new OperatorFaultError(400, `match.socket: ${s} is not a socket of session ${session}`, 'match.socket');
        const mismatch = actionMismatch(rule.action.type, type, s);
        if (mismatch) throw new OperatorFaultError(400, `action.type: ${mismatch}`, 'action.type');
      }
    }
    let id = rule.id;
    while (id === undefined || this.find(id)) id = `${P.OPERATOR_RULE_ID_PREFIX}${this.nextId++}`;
    this.active = [...this.active, activeRule({ ...rule, id }, session, 'api')];
    this.log.debug({ rule: id, session: session ?? null }, 'operator fault rule added');
    return id;
  }

  /** Removes one rule; false when no operator rule has that id. */
  remove(id: string): boolean {
    const next = this.active.filter((r) => r.spec.id !== id);
    if (next.length === this.active.length) return false;
    this.active = next;
    this.log.debug({ rule: id }, 'operator fault rule removed');
    return true;
  }

  /** Removes every operator rule (file ones too, until the next reload), or those of one session; how many went. */
  reset(session?: string): number {
    const before = this.active.length;
    this.active = session === undefined ? [] : this.active.filter((r) => r.session !== session);
    const removed = before - this.active.length;
    this.log.debug({ session: session ?? null, removed }, 'operator fault rules reset');
    return removed;
  }

  /** Whether some operator rule is limited to this session. */
  hasSession(session: string): boolean {
    return this.active.some((r) => r.session === session);
  }

  /**
   * Puts the rules of a --faults file (checked by readFaultFile) in place of the previous file's,
   * all at once; rules added over HTTP stay. rules[N] of the file is `file-N` unless it has
   * an id. Throws OperatorFaultError (nothing changed) when the result would break the cap or
   * repeat an id.
   */
  replaceFileRules(rules: readonly P.OperatorFaultRule[]): void {
    const kept = this.active.filter((r) => r.source !== 'file');
    if (kept.length + rules.length > this.maxRules) {
      throw new OperatorFaultError(400, `${rules.length} rules with the ${kept.length} added over HTTP pass the cap of ${this.maxRules} operator rules`);
    }
    const ids = new Set(kept.map((r) => r.spec.id));
    const loaded = rules.map((input, i) => {
      const { session, ...rule } = input;
      const id = rule.id ?? `${P.FILE_RULE_ID_PREFIX}${i}`;
      if (ids.has(id)) throw new OperatorFaultError(409, `rules[${i}].id: ${JSON.stringify(id)} is already the id of another operator rule`, `rules[${i}].id`);
      ids.add(id);
      return activeRule({ ...rule, id }, session, 'file');
    });
    this.active = [...kept, ...loaded];
  }

  list(): P.OperatorFaultRuleStatus[] {
    return this.active.map((r) => {
      const { id, match, action, times, seed, notify } = structuredClone(r.spec);
      return { id, session: r.session, source: r.source === 'file' ? 'file' : 'api', match, action, ...(times === undefined ? {} : { times }), seed, ...(notify === undefined ? {} : { notify }), hits: r.hits };
    });
  }

  socketClosed(handle: number): void {
    for (const r of this.active) r.forget(handle);
  }

  /** A session ended: the rules added over HTTP for it alone go with it (file rules stay declared). */
  sessionEnded(session: string): void {
    if (this.active.some((r) => r.session === session && r.source === 'api')) {
      this.active = this.active.filter((r) => !(r.session === session && r.source === 'api'));
    }
  }

  private find(id: string): ActiveRule | undefined {
    return this.active.find((r) => r.spec.id === id);
  }
}

function activeRule(rule: P.FaultRule & { id: string }, session: string | undefined, source: P.OperatorFaultSource): ActiveRule {
  return new ActiveRule({ ...rule, seed: rule.seed ?? DEFAULT_FAULT_SEED }, session ?? null, source);
}
