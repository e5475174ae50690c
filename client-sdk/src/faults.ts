/**
 * Fault rules of the session (proto/README.md section 19): spi.faults.add(rule), remove(id),
 * list(), tagSocket(s, tag), and the spiwire.faultApplied notifications of rules added with
 * notify. The rules act in the daemon, on the session's own sockets; nothing here changes how
 * the SPI functions behave.
 */
import * as P from '@spiwire/proto';
import type { RpcConnection } from './rpc.js';
import { isResult } from './marshal.js';
import { WinsockError } from './socket.js';

/** A rule fired on a call (spiwire.faultApplied, for rules added with notify: true). */
export interface FaultApplied {
  /** The rule's id. */
  id: string;
  /** The socket of the call. */
  s: number;
  function: P.FaultFunction;
  action: P.FaultActionType;
}

function isFaultApplied(v: Record<string, unknown>): v is Record<string, unknown> & FaultApplied {
  return (
    typeof v['id'] === 'string' &&
    P.isU32(v['s']) &&
    (P.FAULT_FUNCTIONS as readonly unknown[]).includes(v['function']) &&
    (P.FAULT_ACTION_TYPES as readonly unknown[]).includes(v['action'])
  );
}

export class SessionFaults {
  private readonly listeners = new Set<(applied: FaultApplied) => void>();

  constructor(private readonly rpc: RpcConnection) {}

  /** A method of the table, its params typed by it; each caller checks the fields of the reply it uses. */
  private call<M extends P.MethodName>(method: M, params: P.Params<M>): Promise<Record<string, unknown>> {
    return this.rpc.call(method, params);
  }

  /**
   * Adds a rule; resolves with its id (the one given, or the daemon's). A rule the daemon refuses
   * (a bad field, a code the function cannot produce, one rule too many) rejects with
   * SpiwireProtocolError, code INVALID_PARAMS, data.field naming the field.
   */
  async add(rule: P.FaultRule): Promise<string> {
    const { id } = await this.call('spiwire.faults.add', { rule });
    if (typeof id !== 'string') throw new TypeError('spiwire.faults.add: the daemon answered without an id');
    return id;
  }

  /** Removes a rule; an unknown id rejects with SpiwireProtocolError (INVALID_PARAMS). */
  async remove(id: string): Promise<void> {
    await this.call('spiwire.faults.remove', { id });
  }

  /** The session's rules in the order they were added, each with hits: how many times it fired. */
  async list(): Promise<P.FaultRuleStatus[]> {
    const { rules = [] } = await this.call('spiwire.faults.list', {});
    if (!Array.isArray(rules) || !rules.every(P.isFaultRuleStatus)) throw new TypeError('spiwire.faults.list: the daemon answered with something other than a list of rules');
    return rules;
  }

  /**
   * Sets the tag rules match with match.tag (null clears it). A handle that is not a socket of
   * the session rejects with WinsockError (WSAENOTSOCK); a bad tag with SpiwireProtocolError.
   */
  async tagSocket(s: number, tag: string | null): Promise<void> {
    const r = await this.call('spiwire.setSocketTag', { s, tag });
    if (!isResult(r)) throw new TypeError('spiwire.setSocketTag: the daemon answered without ret and errno');
    if (r.ret !== 0) throw new WinsockError(r.errno, 'spiwire.setSocketTag');
  }

  /** Calls listener for every spiwire.faultApplied; returns the function that stops it. */
  onApplied(listener: (applied: FaultApplied) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** @internal A spiwire.faultApplied from the daemon. */
  applied(params: Record<string, unknown>): void {
    if (!isFaultApplied(params)) return;
    const applied: FaultApplied = { id: params.id, s: params.s, function: params.function, action: params.action };
    for (const l of [...this.listeners]) l(applied);
  }
}
