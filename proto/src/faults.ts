/**
 * Fault rules (proto/README.md section 19): the rule model a session sends with spiwire.faults.add,
 * its checks, and the codes each function may be made to fail with. Pure data and checks: the
 * daemon applies the rules (server/src/faults/), the SDK types its calls with them.
 */
import { parseAddressText } from './address-text.js';
import { MAX_FAULT_MS, MAX_FAULT_NAME, MAX_FAULT_WINDOW_MS } from './limits.js';
import { WSAECONNABORTED, WSAECONNREFUSED, WSAECONNRESET, WSAEADDRINUSE, WSAEHOSTUNREACH, WSAEMFILE, WSAENETDOWN, WSAENETRESET, WSAENETUNREACH, WSAENOBUFS, WSAETIMEDOUT, WSAEWOULDBLOCK, wsaErrorName } from './wsa-errors.js';

/** The functions a rule can match. The send functions take every action; the others `error` only. */
export const FAULT_FUNCTIONS = ['WSPSend', 'WSPSendTo', 'WSPRecv', 'WSPRecvFrom', 'WSPConnect', 'WSPAccept', 'WSPIoctl'] as const;
export type FaultFunction = (typeof FAULT_FUNCTIONS)[number];

/** The functions a rule matches when match.functions is absent. */
export const FAULT_SEND_FUNCTIONS: readonly FaultFunction[] = ['WSPSend', 'WSPSendTo'];

/** An address filter: the socket's local (or remote) address, its port, or both. */
export interface FaultAddressFilter {
  /** A numeric address, compared as the daemon writes it (for example 127.0.0.1 or ::1). */
  address?: string;
  port?: number;
}

/** Which calls a rule applies to. Every member present must hold. */
export interface FaultMatch {
  /** The socket handle. */
  socket?: number;
  /** The tag the client set on the socket (spiwire.setSocketTag). */
  tag?: string;
  local?: FaultAddressFilter;
  /** The peer (WSPConnect: the address connected to; WSPSendTo on an unconnected socket: lpTo). */
  remote?: FaultAddressFilter;
  /** Default: WSPSend and WSPSendTo. */
  functions?: FaultFunction[];
  /** Only the n-th matching call on the socket (1-based). */
  nth?: number;
  /** Every k-th matching call on the socket (k, 2k, ...). */
  every?: number;
  /** Only once the transport has taken this many bytes of sends on the socket. */
  afterBytes?: number;
  /** The chance that a call the other members select is faulted, drawn from the rule's seeded generator. */
  probability?: number;
  /** Only from startMs to endMs (either may be absent) after the rule was added. */
  window?: FaultWindow;
}

/** A time window, in ms from the moment the rule was added: [startMs, endMs). */
export interface FaultWindow {
  startMs?: number;
  endMs?: number;
}

export type FaultAction =
  /**
   * The transport takes nothing for ms milliseconds, or until drained bytes of what the socket
   * had queued have left it (reached the peer's side). Exactly one of the two.
   */
  | { type: 'block'; ms: number; drained?: undefined }
  | { type: 'block'; drained: number; ms?: undefined }
  /** The transport takes at most max bytes of the call. */
  | { type: 'short'; max: number }
  /** The call's completion (or a blocking call's return) comes ms milliseconds late. */
  | { type: 'delay'; ms: number }
  /** The call fails at once with code. */
  | { type: 'error'; code: number }
  /**
   * Overlapped calls: successful completions are held for windowMs from the first one held, then
   * delivered together in an order drawn from the rule's generator. Bytes leave in call order.
   */
  | { type: 'reorder'; windowMs: number }
  /**
   * Stream sockets: the connection breaks once the stream has carried `at` bytes of sends (or
   * where the call starts, if that is later): the peer receives exactly those bytes, then a reset,
   * and the socket fails with code.
   */
  | { type: 'break'; at: number; code: number }
  /** Stream sockets: the socket drains to the network at bytesPerSecond, each write latencyMs late. */
  | { type: 'link'; bytesPerSecond: number; latencyMs?: number }
  /** Datagram sockets: the datagram is reported sent and never leaves (a lossy network). */
  | { type: 'drop' }
  /** Datagram sockets: the datagram leaves twice. */
  | { type: 'duplicate' };

export type FaultActionType = FaultAction['type'];
export const FAULT_ACTION_TYPES: readonly FaultActionType[] = ['block', 'short', 'delay', 'error', 'reorder', 'break', 'link', 'drop', 'duplicate'];

/** The codes a break action may leave the socket with: reset by the peer, aborted, keep-alive failure. */
export const FAULT_BREAK_CODES: readonly number[] = [WSAECONNRESET, WSAECONNABORTED, WSAENETRESET];

/** Actions that only a stream socket can carry out, and those only a datagram socket can. */
export const FAULT_STREAM_ACTIONS: readonly FaultActionType[] = ['block', 'short', 'break', 'link'];
export const FAULT_DATAGRAM_ACTIONS: readonly FaultActionType[] = ['drop', 'duplicate'];

export interface FaultRule {
  /** Chosen by the client (letters, digits, . _ : -), or given by the daemon when absent. */
  id?: string;
  match: FaultMatch;
  action: FaultAction;
  /** How many times the rule fires at most (default: no limit). */
  times?: number;
  /** The seed of the rule's generator (default 1). */
  seed?: number;
  /** Send spiwire.faultApplied to the session each time the rule fires. */
  notify?: boolean;
}

/** A rule as spiwire.faults.list reports it: its id and seed filled in, and how often it fired. */
export interface FaultRuleStatus extends FaultRule {
  id: string;
  seed: number;
  hits: number;
}

/**
 * What an injected code does to the socket, by kind of socket. 'reset': the real TCP connection is
 * reset (the peer sees RST) and later calls fail with the code; 'transient': this call fails and
 * nothing else changes. null: the code cannot come from this function on that kind of socket (the
 * rule leaves such sockets alone).
 */
export type FaultEffect = 'reset' | 'transient';
export interface FaultCodeUse {
  readonly stream: FaultEffect | null;
  readonly datagram: FaultEffect | null;
}

const both = (e: FaultEffect): FaultCodeUse => ({ stream: e, datagram: 'transient' });
const streamOnly = (e: FaultEffect): FaultCodeUse => ({ stream: e, datagram: null });
const transient: FaultCodeUse = { stream: 'transient', datagram: 'transient' };

const SEND_CODES: ReadonlyArray<readonly [number, FaultCodeUse]> = [
  [WSAENETDOWN, both('reset')],
  // On a datagram socket: the time to live expired (WSPSendTo's reference).
  [WSAENETRESET, both('reset')],
  [WSAECONNABORTED, streamOnly('reset')],
  // On a datagram socket: an earlier datagram drew an ICMP port unreachable.
  [WSAECONNRESET, both('reset')],
  [WSAENOBUFS, transient],
  [WSAEWOULDBLOCK, transient],
];

const RECV_CODES: ReadonlyArray<readonly [number, FaultCodeUse]> = [
  [WSAENETDOWN, both('reset')],
  [WSAENETRESET, both('reset')],
  [WSAECONNABORTED, streamOnly('reset')],
  [WSAECONNRESET, both('reset')],
  [WSAETIMEDOUT, streamOnly('reset')],
  [WSAEWOULDBLOCK, transient],
];

/**
 * The codes a rule may make each function fail with: those of the function's reference error list
 * (the WSPSend, WSPSendTo, WSPRecv, WSPRecvFrom, WSPConnect and WSPAccept pages, and
 * docs/conformance.md for WSPSend) that describe the network, the connection or the system. Codes
 * that describe the call's own arguments or a state the caller set up itself (WSAEFAULT,
 * WSAEINVAL, WSAENOTSOCK, WSAENOTCONN, WSAESHUTDOWN, WSAEOPNOTSUPP, WSAEMSGSIZE, WSAEACCES, ...)
 * cannot follow from a valid call, nor can WSA_IO_PENDING and WSA_OPERATION_ABORTED, which are not
 * immediate failures. WSAEWOULDBLOCK applies to nonblocking and overlapped calls only.
 */
export const FAULT_ERROR_CODES: Readonly<Record<FaultFunction, ReadonlyMap<number, FaultCodeUse>>> = {
  WSPSend: new Map(SEND_CODES),
  WSPSendTo: new Map([...SEND_CODES, [WSAENETUNREACH, { stream: null, datagram: 'transient' }], [WSAEHOSTUNREACH, { stream: null, datagram: 'transient' }]]),
  WSPRecv: new Map(RECV_CODES),
  WSPRecvFrom: new Map(RECV_CODES),
  // A connect that fails leaves the socket unconnected, as it was before the call.
  WSPConnect: new Map([
    [WSAECONNREFUSED, streamOnly('transient')],
    [WSAETIMEDOUT, streamOnly('transient')],
    [WSAEADDRINUSE, streamOnly('transient')],
    [WSAENETUNREACH, transient],
    [WSAEHOSTUNREACH, transient],
    [WSAENETDOWN, transient],
    [WSAENOBUFS, transient],
  ]),
  // A failed accept takes no connection: the one waiting stays queued.
  WSPAccept: new Map([
    [WSAENETDOWN, streamOnly('transient')],
    [WSAENOBUFS, streamOnly('transient')],
    [WSAEMFILE, streamOnly('transient')],
    [WSAEWOULDBLOCK, streamOnly('transient')],
  ]),
  // WSPIoctl's page lists these two of the network's own; the control code is not carried out.
  WSPIoctl: new Map([
    [WSAENETDOWN, transient],
    [WSAEWOULDBLOCK, transient],
  ]),
};

/** A problem with a rule: the field at fault (a path under rule) and what is wrong with it. */
export interface FaultRuleProblem {
  field: string;
  what: string;
}

const NAME_RE = /^[A-Za-z0-9._:-]+$/;

function isObj(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function unknownKey(v: Record<string, unknown>, allowed: readonly string[]): string | undefined {
  return Object.keys(v).find((k) => !allowed.includes(k));
}

function nameProblem(v: unknown): string | null {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_FAULT_NAME || !NAME_RE.test(v)) {
    return `must be 1 to ${MAX_FAULT_NAME} letters, digits or . _ : -`;
  }
  return null;
}

/** A tag given to spiwire.setSocketTag: why it is refused, or null. */
export function socketTagProblem(tag: string): string | null {
  return nameProblem(tag);
}

function addressFilterProblem(v: unknown, field: string): FaultRuleProblem | null {
  if (!isObj(v)) return { field, what: 'must be an object {address?, port?}' };
  const extra = unknownKey(v, ['address', 'port']);
  if (extra !== undefined) return { field: `${field}.${extra}`, what: 'is not a field of an address filter' };
  if (v['address'] === undefined && v['port'] === undefined) return { field, what: 'must give address, port or both' };
  if (v['address'] !== undefined && (typeof v['address'] !== 'string' || v['address'].length === 0 || v['address'].length > 64 || parseAddressText(v['address']) === null)) {
    return { field: `${field}.address`, what: 'must be a numeric address string (dotted IPv4 or IPv6 text, no host names)' };
  }
  if (v['port'] !== undefined && !isInt(v['port'], 0, 65535)) return { field: `${field}.port`, what: 'must be an integer from 0 to 65535' };
  return null;
}

function isFaultFunction(v: unknown): v is FaultFunction {
  return typeof v === 'string' && (FAULT_FUNCTIONS as readonly string[]).includes(v);
}

/** The functions a rule matches: match.functions, or the send functions. */
export function faultFunctionsOf(match: FaultMatch): readonly FaultFunction[] {
  return match.functions ?? FAULT_SEND_FUNCTIONS;
}

function matchProblem(v: unknown): FaultRuleProblem | null {
  if (!isObj(v)) return { field: 'match', what: 'must be an object' };
  const extra = unknownKey(v, ['socket', 'tag', 'local', 'remote', 'functions', 'nth', 'every', 'afterBytes', 'probability', 'window']);
  if (extra !== undefined) return { field: `match.${extra}`, what: 'is not a field of match' };
  if (v['socket'] !== undefined && !isInt(v['socket'], 0, 0xffffffff)) return { field: 'match.socket', what: 'must be a socket handle (an integer from 0 to 4294967295)' };
  if (v['tag'] !== undefined) {
    const p = nameProblem(v['tag']);
    if (p) return { field: 'match.tag', what: p };
  }
  for (const side of ['local', 'remote'] as const) {
    if (v[side] !== undefined) {
      const p = addressFilterProblem(v[side], `match.${side}`);
      if (p) return p;
    }
  }
  const fns = v['functions'];
  if (fns !== undefined) {
    if (!Array.isArray(fns) || fns.length === 0) return { field: 'match.functions', what: `must be a non-empty array of ${FAULT_FUNCTIONS.join(', ')}` };
    for (let i = 0; i < fns.length; i++) {
      const f: unknown = fns[i];
      if (!isFaultFunction(f)) return { field: `match.functions.${i}`, what: `must be one of ${FAULT_FUNCTIONS.join(', ')}` };
      if (fns.indexOf(f) !== i) return { field: `match.functions.${i}`, what: `names ${f} twice` };
    }
  }
  for (const k of ['nth', 'every'] as const) {
    if (v[k] !== undefined && !isInt(v[k], 1, 0xffffffff)) return { field: `match.${k}`, what: 'must be an integer from 1 to 4294967295' };
  }
  if (v['nth'] !== undefined && v['every'] !== undefined) return { field: 'match.every', what: 'cannot be given with match.nth (one picks a single call, the other a series)' };
  if (v['afterBytes'] !== undefined && !isInt(v['afterBytes'], 0, Number.MAX_SAFE_INTEGER)) return { field: 'match.afterBytes', what: 'must be a non-negative integer' };
  const p = v['probability'];
  if (p !== undefined && (typeof p !== 'number' || !Number.isFinite(p) || p < 0 || p > 1)) return { field: 'match.probability', what: 'must be a number from 0 to 1' };
  const w = v['window'];
  if (w !== undefined) {
    if (!isObj(w)) return { field: 'match.window', what: 'must be an object {startMs?, endMs?}' };
    const wx = unknownKey(w, ['startMs', 'endMs']);
    if (wx !== undefined) return { field: `match.window.${wx}`, what: 'is not a field of a window' };
    if (w['startMs'] === undefined && w['endMs'] === undefined) return { field: 'match.window', what: 'must give startMs, endMs or both' };
    for (const k of ['startMs', 'endMs'] as const) {
      if (w[k] !== undefined && !isInt(w[k], 0, MAX_FAULT_WINDOW_MS)) return { field: `match.window.${k}`, what: `must be an integer from 0 to ${MAX_FAULT_WINDOW_MS}` };
    }
    if (isInt(w['startMs'], 0, MAX_FAULT_WINDOW_MS) && isInt(w['endMs'], 0, MAX_FAULT_WINDOW_MS) && w['endMs'] <= w['startMs']) return { field: 'match.window.endMs', what: 'must be later than startMs' };
  }
  return null;
}

function actionProblem(v: unknown, functions: readonly FaultFunction[]): FaultRuleProblem | null {
  if (!isObj(v)) return { field: 'action', what: `must be an object {type, ...} with type one of ${FAULT_ACTION_TYPES.join(', ')}` };
  const type = v['type'];
  const only = (keys: readonly string[]): FaultRuleProblem | null => {
    const extra = unknownKey(v, ['type', ...keys]);
    return extra === undefined ? null : { field: `action.${extra}`, what: `is not a field of a ${String(type)} action` };
  };
  const sendOnly = (): FaultRuleProblem | null => {
    const other = functions.find((f) => !FAULT_SEND_FUNCTIONS.includes(f));
    return other ? { field: 'action.type', what: `${String(type)} applies to WSPSend and WSPSendTo only; match.functions names ${other} (only error applies to it)` } : null;
  };
  const int = (k: string, min: number, max: number): FaultRuleProblem | null => (isInt(v[k], min, max) ? null : { field: `action.${k}`, what: `must be an integer from ${min} to ${max}` });
  switch (type) {
    case 'block':
      if (v['ms'] === undefined && v['drained'] === undefined) return { field: 'action.ms', what: 'or action.drained must be given: how long the transport takes nothing, or how many queued bytes must leave first' };
      if (v['ms'] !== undefined && v['drained'] !== undefined) return { field: 'action.drained', what: 'cannot be given with action.ms (a block lasts a time or until bytes drain, not both)' };
      return (v['ms'] !== undefined ? int('ms', 1, MAX_FAULT_MS) : int('drained', 1, 0xffffffff)) ?? only(['ms', 'drained']) ?? sendOnly();
    case 'delay':
      return int('ms', 1, MAX_FAULT_MS) ?? only(['ms']) ?? sendOnly();
    case 'reorder':
      return int('windowMs', 1, MAX_FAULT_MS) ?? only(['windowMs']) ?? sendOnly();
    case 'short':
      return int('max', 1, 0xffffffff) ?? only(['max']) ?? sendOnly();
    case 'break': {
      const bad = int('at', 0, Number.MAX_SAFE_INTEGER) ?? only(['at', 'code']) ?? sendOnly();
      if (bad) return bad;
      if (!isInt(v['code'], 0, 0xffffffff) || !FAULT_BREAK_CODES.includes(v['code'])) {
        return { field: 'action.code', what: `must be the code the broken connection fails with: ${FAULT_BREAK_CODES.map(wsaErrorName).join(', ')}` };
      }
      return null;
    }
    case 'link':
      return int('bytesPerSecond', 1, 0xffffffff) ?? (v['latencyMs'] === undefined ? null : int('latencyMs', 0, MAX_FAULT_MS)) ?? only(['bytesPerSecond', 'latencyMs']) ?? sendOnly();
    case 'drop':
    case 'duplicate':
      return only([]) ?? sendOnly();
    case 'error': {
      if (!isInt(v['code'], 0, 0xffffffff)) return { field: 'action.code', what: 'must be a WSA error code (an integer)' };
      const code = v['code'];
      for (const f of functions) {
        if (!FAULT_ERROR_CODES[f].has(code)) {
          const can = [...FAULT_ERROR_CODES[f].keys()].map(wsaErrorName).join(', ');
          return { field: 'action.code', what: `${wsaErrorName(code)} is not a code ${f} can fail with; a rule may make ${f} fail with ${can}` };
        }
      }
      return only(['code']);
    }
    default:
      return { field: 'action.type', what: `must be one of ${FAULT_ACTION_TYPES.join(', ')}` };
  }
}

/** A rule as spiwire.faults.list reports it: a well-formed rule with its id and seed, and its hit count. */
export function isFaultRuleStatus(v: unknown): v is FaultRuleStatus {
  if (!isObj(v)) return false;
  const { hits, ...rule } = v;
  return typeof hits === 'number' && Number.isInteger(hits) && hits >= 0 && typeof rule['id'] === 'string' && typeof rule['seed'] === 'number' && faultRuleProblem(rule) === null;
}

/**
 * Checks a rule as it comes from a client: the first problem found, or null when the rule is
 * well formed. What depends on the session (a socket handle that must exist, the rule cap, a
 * duplicate id) is the daemon's to check.
 */
export function faultRuleProblem(v: unknown): FaultRuleProblem | null {
  if (!isObj(v)) return { field: '', what: 'must be an object {id?, match, action, times?, seed?, notify?}' };
  const extra = unknownKey(v, ['id', 'match', 'action', 'times', 'seed', 'notify']);
  if (extra !== undefined) return { field: extra, what: 'is not a field of a fault rule' };
  if (v['id'] !== undefined) {
    const p = nameProblem(v['id']);
    if (p) return { field: 'id', what: p };
  }
  if (v['match'] === undefined) return { field: 'match', what: 'is missing' };
  const m = matchProblem(v['match']);
  if (m) return m;
  if (v['action'] === undefined) return { field: 'action', what: 'is missing' };
  const match = v['match'] as FaultMatch;
  const a = actionProblem(v['action'], faultFunctionsOf(match));
  if (a) return a;
  if (v['times'] !== undefined && !isInt(v['times'], 1, 0xffffffff)) return { field: 'times', what: 'must be an integer from 1 to 4294967295' };
  if (v['seed'] !== undefined && !isInt(v['seed'], 0, 0xffffffff)) return { field: 'seed', what: 'must be an integer from 0 to 4294967295' };
  if (v['notify'] !== undefined && typeof v['notify'] !== 'boolean') return { field: 'notify', what: 'must be a boolean' };
  return null;
}
