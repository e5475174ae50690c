/**
 * A session's fault rules (proto/README.md section 19): which calls they match, when they fire,
 * and what each firing is. The sockets ask decide() at the point of a call where the call has
 * passed its own checks, and carry out the action themselves on the real socket.
 *
 * A session's calls also answer to the operator's rules (operator-rules.ts), after its own.
 * With no rule anywhere, `armed` is false and that is all a socket's call looks at.
 */
import type { Logger } from 'pino';
import * as P from '@spiwire/proto';
import { FAULT_ERROR_CODES, INVALID_PARAMS, ProtocolError, faultFunctionsOf, type FaultAction, type FaultAddressFilter, type FaultEffect, type FaultFunction, type FaultRule, type FaultRuleStatus, type SockAddr } from '@spiwire/proto';
import { SeededRandom } from './prng.js';
import { scopeIdOf } from '../sockets/sockaddr.js';

/** How the call was made. */
export type CallMode = 'nonblocking' | 'blocking' | 'overlapped';

/** One call, as a rule sees it. */
export interface FaultCall {
  readonly fn: FaultFunction;
  readonly mode: CallMode;
  /** The far end when it is not the socket's peer: WSPSendTo's lpTo, WSPConnect's name. */
  readonly remote?: SockAddr | null;
  /** A send larger than one message, whose bytes come in pieces (proto/README.md, streamed sends). */
  readonly streamed?: boolean;
  /** Where a TCP send ends in the socket's stream of sends (taken and queued bytes before it, then its own): for break. */
  readonly endsAt?: number;
}

/** What a rule needs to know of a socket. */
export interface FaultTarget {
  readonly handle: number;
  readonly type: number;
  readonly tag: string | null;
  /** Bytes of sends the transport has taken on the socket since it was made. */
  readonly bytesTaken: number;
  readonly log: Logger;
  localName(): SockAddr | null;
  peerName(): SockAddr | null;
}

/** A rule that fired on a call: what the socket is to do. */
export interface AppliedFault {
  readonly id: string;
  readonly action: FaultAction;
  /** For an error action: what the code does to this kind of socket. */
  readonly effect: FaultEffect | null;
  /** The rule's seeded generator (a reorder action's shuffles draw from it). */
  readonly random: SeededRandom;
}

/** What a socket asks of its session's rules. */
export interface FaultHook {
  /** False while the session has no rule: a call then asks nothing more. */
  readonly armed: boolean;
  decide(sock: FaultTarget, call: FaultCall): AppliedFault | null;
}

/** A hook for sockets of no session's rules (tests of the sockets on their own). */
export const NO_FAULTS: FaultHook = { armed: false, decide: () => null };

/** Without a seed a rule draws from this one, so that it is reproducible all the same. */
export const DEFAULT_FAULT_SEED = 1;

export class ActiveRule {
  hits = 0;
  readonly functions: readonly FaultFunction[];
  readonly rng: SeededRandom;
  /** When the rule was added (match.window counts from here). */
  private readonly added = performance.now();
  /** Matching calls so far, by socket. */
  private readonly calls = new Map<number, number>();
  private readonly local: AddressFilter | null;
  private readonly remote: AddressFilter | null;

  constructor(
    readonly spec: FaultRule & { id: string; seed: number },
    /** An operator rule limited to one session: its id (null: every session, or a session's own rule). */
    readonly session: string | null = null,
    /** Who set the rule, for the debug line: the session itself, or the operator ('api', 'file'). */
    readonly source: string = 'session',
  ) {
    this.functions = faultFunctionsOf(spec.match);
    this.rng = new SeededRandom(spec.seed);
    this.local = spec.match.local ? new AddressFilter(spec.match.local) : null;
    this.remote = spec.match.remote ? new AddressFilter(spec.match.remote) : null;
  }

  /** Whether the call is one the rule applies to (and counts). */
  matches(sock: FaultTarget, call: FaultCall): boolean {
    const m = this.spec.match;
    if (!this.functions.includes(call.fn)) return false;
    if (m.socket !== undefined && m.socket !== sock.handle) return false;
    if (m.tag !== undefined && m.tag !== sock.tag) return false;
    if (this.local && !this.local.matches(sock.localName())) return false;
    // WSPAccept has no far end until it has taken a connection.
    if (this.remote && (call.fn === 'WSPAccept' || !this.remote.matches(call.remote ?? sock.peerName()))) return false;
    return applies(this.spec.action, sock, call);
  }

  /** Counts a matching call on the socket; returns its number there (1 for the first). */
  count(handle: number): number {
    const n = (this.calls.get(handle) ?? 0) + 1;
    this.calls.set(handle, n);
    return n;
  }

  /** Whether the rule fires on the n-th matching call of the socket (draws from the generator last). */
  fires(n: number, sock: FaultTarget): boolean {
    const m = this.spec.match;
    if (this.spec.times !== undefined && this.hits >= this.spec.times) return false;
    if (m.nth !== undefined && n !== m.nth) return false;
    if (m.every !== undefined && n % m.every !== 0) return false;
    if (m.afterBytes !== undefined && sock.bytesTaken < m.afterBytes) return false;
    if (m.window) {
      const t = performance.now() - this.added;
      if ((m.window.startMs !== undefined && t < m.window.startMs) || (m.window.endMs !== undefined && t >= m.window.endMs)) return false;
    }
    return m.probability === undefined || this.rng.chance(m.probability);
  }

  forget(handle: number): void {
    this.calls.delete(handle);
  }
}

/** Whether a rule's action has a meaning for this call (a call it has none for is not counted). */
function applies(action: FaultAction, sock: FaultTarget, call: FaultCall): boolean {
  switch (action.type) {
    case 'short':
    case 'break':
      // A streamed send's pieces are on their way already: it is taken whole or fails.
      if (call.streamed) return false;
      // A break comes at byte `at`: a send that ends before it is not the one that breaks.
      if (action.type === 'break' && call.endsAt !== undefined && call.endsAt < action.at) return false;
      return sock.type === P.SOCK_STREAM;
    case 'block':
    case 'link':
      // A datagram goes whole or not at all, and no transport buffer holds it.
      return sock.type === P.SOCK_STREAM;
    case 'drop':
    case 'duplicate':
      return sock.type === P.SOCK_DGRAM;
    case 'delay':
      // A nonblocking call returns at once whatever happens.
      return call.mode !== 'nonblocking';
    case 'reorder':
      // Only completions can come in another order than the calls.
      return call.mode === 'overlapped';
    case 'error':
      // A blocking call never gives WSAEWOULDBLOCK.
      if (action.code === P.WSAEWOULDBLOCK && call.mode === 'blocking') return false;
      return effectOf(action.code, call.fn, sock.type) !== null;
  }
}

function effectOf(code: number, fn: FaultFunction, type: number): FaultEffect | null {
  const use = FAULT_ERROR_CODES[fn].get(code);
  if (!use) return null;
  return type === P.SOCK_STREAM ? use.stream : use.datagram;
}

/**
 * A rule's address filter, read once when the rule is added. Addresses compare in one spelling
 * (::1 is 0:0:0:0:0:0:0:1). A filter without a scope matches the address on any interface; one
 * with a scope ("%eth0" or "%4") only where the call's address has that interface, whether its
 * sockaddr wrote it as a suffix or as scopeId.
 */
class AddressFilter {
  private readonly port: number | undefined;
  private readonly address: string | undefined;
  private readonly scope: string | undefined;

  constructor(filter: FaultAddressFilter) {
    this.port = filter.port;
    // Validation (proto faultRuleProblem) let only numeric text through.
    const text = filter.address === undefined ? undefined : P.parseAddressText(filter.address);
    this.address = text?.canonical;
    this.scope = text?.scope;
  }

  matches(name: SockAddr | null): boolean {
    if (!name) return false;
    if (this.port !== undefined && this.port !== name.port) return false;
    if (this.address === undefined) return true;
    const text = P.parseAddressText(name.address);
    if (!text || text.canonical !== this.address) return false;
    if (this.scope === undefined) return true;
    const wanted = scopeIdOf(this.scope);
    return wanted !== 0 && wanted === (text.scope !== undefined ? scopeIdOf(text.scope) : (name.scopeId ?? 0));
  }
}

/**
 * Why an action cannot apply to socket s of the given type (SOCK_STREAM, SOCK_DGRAM), or null: the
 * stream-only actions (block, short, break, link) on a datagram socket, the datagram-only ones
 * (drop, duplicate) on a stream socket. A session's rules and the operator's are checked alike.
 */
export function actionMismatch(kind: P.FaultActionType, type: number, s: number): string | null {
  if (type === P.SOCK_DGRAM && P.FAULT_STREAM_ACTIONS.includes(kind)) return `${kind} has no meaning for the datagram socket ${s}: a datagram is sent whole or not at all, and no transport buffer holds it`;
  if (type === P.SOCK_STREAM && P.FAULT_DATAGRAM_ACTIONS.includes(kind)) return `${kind} has no meaning for the stream socket ${s}: TCP neither loses nor repeats bytes it reported sent`;
  return null;
}

function invalidRule(field: string, what: string): ProtocolError {
  return new ProtocolError(INVALID_PARAMS, `spiwire.faults.add: params.rule.${field} ${what}`, { field: `rule.${field}` });
}

/** Rules that apply beyond one session: the operator's (DaemonFaults in operator-rules.ts). */
export interface SharedFaultRules {
  /** False while there is no such rule: the hot path reads only this. */
  readonly armed: boolean;
  /** In the order they were added; a rule with a session applies to that session's sockets only. */
  readonly active: readonly ActiveRule[];
  socketClosed(handle: number): void;
  /** Told of every rule that fires, the session's own included (for the daemon's metrics). */
  applied(source: string, rule: string): void;
}

/** No operator rules (a SessionFaults on its own, in tests). */
export const NO_SHARED_FAULTS: SharedFaultRules = { armed: false, active: [], socketClosed: () => undefined, applied: () => undefined };

export class SessionFaults implements FaultHook {
  private readonly rules: ActiveRule[] = [];
  private nextId = 1;

  constructor(
    private readonly log: Logger,
    private readonly notify: (params: P.NotificationParams<'spiwire.faultApplied'>) => void,
    private readonly maxRules: number = P.MAX_FAULT_RULES,
    /** The operator's rules, consulted after the session's own. */
    private readonly shared: SharedFaultRules = NO_SHARED_FAULTS,
    /** This session's id, which an operator rule's `session` names. */
    private readonly sessionId = '',
  ) {}

  /** Two reads: a call on a daemon with no rule anywhere asks nothing more. */
  get armed(): boolean {
    return this.rules.length > 0 || this.shared.armed;
  }

  /**
   * Adds a rule (already checked by faultRuleProblem) and returns its id. socketType tells the
   * type of a socket of the session (null: no such socket), for the checks that need one.
   */
  add(rule: FaultRule, socketType: (s: number) => number | null): string {
    this.checkRoom();
    if (rule.id !== undefined && this.find(rule.id)) throw invalidRule('id', `${JSON.stringify(rule.id)} is already the id of a rule of this session`);
    const s = rule.match.socket;
    if (s !== undefined) {
      const type = socketType(s);
      if (type === null) throw invalidRule('match.socket', `${s} is not a socket of this session`);
      const mismatch = actionMismatch(rule.action.type, type, s);
      if (mismatch) throw invalidRule('action.type', mismatch);
    }
    let id = rule.id;
    while (id === undefined || this.find(id)) id = `f${this.nextId++}`;
    this.rules.push(new ActiveRule({ ...rule, id, seed: rule.seed ?? DEFAULT_FAULT_SEED }));
    this.log.debug({ rule: id }, 'fault rule added');
    return id;
  }

  /** Refuses a rule beyond the cap: checked before anything else of spiwire.faults.add, its params included. */
  checkRoom(): void {
    if (this.rules.length >= this.maxRules) {
      throw new ProtocolError(INVALID_PARAMS, `spiwire.faults.add: the session already has ${this.maxRules} fault rules, the most it may hold; remove one first`, { field: 'rule' });
    }
  }

  remove(id: string): void {
    const at = this.rules.findIndex((r) => r.spec.id === id);
    if (at < 0) throw new ProtocolError(INVALID_PARAMS, `spiwire.faults.remove: params.id ${JSON.stringify(id)} is not the id of a rule of this session`, { field: 'id' });
    this.rules.splice(at, 1);
    this.log.debug({ rule: id }, 'fault rule removed');
  }

  list(): FaultRuleStatus[] {
    return this.rules.map((r) => {
      const { id, match, action, times, seed, notify } = structuredClone(r.spec);
      return { id, match, action, ...(times === undefined ? {} : { times }), seed, ...(notify === undefined ? {} : { notify }), hits: r.hits };
    });
  }

  /** A socket of the session closed: its counts go (handles are never reused). */
  socketClosed(handle: number): void {
    for (const r of this.rules) r.forget(handle);
    this.shared.socketClosed(handle);
  }

  /**
   * A call that passed its own checks: every rule that matches it counts it, and the first of them
   * (the session's own in the order they were added, then the operator's in theirs) whose
   * condition holds fires. Returns what it fired, or null.
   */
  decide(sock: FaultTarget, call: FaultCall): AppliedFault | null {
    let fired = this.pick(this.rules, sock, call, null);
    if (this.shared.armed) fired = this.pick(this.shared.active, sock, call, fired);
    if (!fired) return null;
    fired.hits++;
    const { id, action } = fired.spec;
    this.shared.applied(fired.source, id);
    sock.log.debug({ rule: id, source: fired.source, function: call.fn, action: action.type, hit: fired.hits }, 'fault applied');
    if (fired.spec.notify) this.notify({ id, s: sock.handle, function: call.fn, action: action.type });
    return { id, action, effect: action.type === 'error' ? effectOf(action.code, call.fn, sock.type) : null, random: fired.rng };
  }

  /** Counts the call for every rule of `rules` that matches it; the first that fires, unless one already did. */
  private pick(rules: readonly ActiveRule[], sock: FaultTarget, call: FaultCall, fired: ActiveRule | null): ActiveRule | null {
    for (const r of rules) {
      if (r.session !== null && r.session !== this.sessionId) continue;
      if (!r.matches(sock, call)) continue;
      const n = r.count(sock.handle);
      if (fired === null && r.fires(n, sock)) fired = r;
    }
    return fired;
  }

  private find(id: string): ActiveRule | undefined {
    return this.rules.find((r) => r.spec.id === id);
  }
}
