/**
 * The life of an emulated socket as an explicit state machine. Each transport has a table of the
 * moves it allows; every move goes through move(), which refuses anything else and returns
 * whether it happened, so callers branch on it. Entry actions run in one place (the onEnter the
 * socket gives), and every move is traced at debug level.
 *
 * TCP: a socket is created, may be bound, then either listens or connects. A connection runs
 * until one side finishes: send-shut after our FIN (WSPShutdown SD_SEND, or a close that still
 * delivers), peer-finished after the peer's FIN, finished once both have; broken when the
 * connection failed (the error is kept); closed after WSPCloseSocket, from anywhere, for good.
 *
 * UDP: created, bound (explicitly or by the first send), connected to a default peer (which a
 * connect to the any address dissolves, back to bound), closed.
 */

export type TcpState = 'created' | 'bound' | 'listening' | 'connecting' | 'connected' | 'send-shut' | 'peer-finished' | 'finished' | 'broken' | 'closed';

export type UdpState = 'created' | 'bound' | 'connected' | 'closed';

/** The moves each state allows. Staying in the same state is always allowed (and does nothing). */
export type MoveTable<S extends string> = { readonly [K in S]: readonly S[] };

export const TCP_MOVES: MoveTable<TcpState> = {
  created: ['bound', 'connecting', 'closed'],
  bound: ['listening', 'connecting', 'closed'],
  // A connect that fails goes back to where it started: created, or bound.
  connecting: ['connected', 'created', 'bound', 'closed'],
  listening: ['closed'],
  connected: ['send-shut', 'peer-finished', 'broken', 'closed'],
  'send-shut': ['finished', 'broken', 'closed'],
  'peer-finished': ['finished', 'broken', 'closed'],
  finished: ['broken', 'closed'],
  broken: ['closed'],
  closed: [],
};

export const UDP_MOVES: MoveTable<UdpState> = {
  created: ['bound', 'closed'],
  bound: ['connected', 'closed'],
  // A connect to the any address with port 0 dissolves the association.
  connected: ['bound', 'closed'],
  closed: [],
};

/** States in which a TCP connection exists (data may flow in at least one direction). */
export const TCP_CONNECTED_STATES: ReadonlySet<TcpState> = new Set(['connected', 'send-shut', 'peer-finished', 'finished', 'broken']);

export interface StateTrace {
  debug(obj: object, msg: string): void;
}

/** The socket a state machine belongs to. */
export interface StateOwner<S extends string> {
  /** Named in the trace of each move. */
  readonly handle: number;
  /** Entry actions, run after each move into a new state. */
  entered(state: S, from: S): void;
}

export class SocketStateMachine<S extends string> {
  private state: S;

  constructor(
    private readonly moves: MoveTable<S>,
    initial: S,
    /** The session's logger: one for all its sockets, each move traced with the socket's handle. */
    private readonly trace: StateTrace,
    private readonly owner: StateOwner<S>,
  ) {
    this.state = initial;
  }

  get current(): S {
    return this.state;
  }

  /** In one of these states. (Up to three, and no rest array: the send path asks on every call.) */
  is(a: S, b?: S, c?: S): boolean {
    const s = this.state;
    return s === a || s === b || s === c;
  }

  /** True when next is a legal move from the current state (or the current state itself). */
  allows(next: S): boolean {
    return next === this.state || this.moves[this.state].includes(next);
  }

  /** Moves to next when the table allows it; returns whether the socket is now in next. */
  move(next: S): boolean {
    const from = this.state;
    if (next === from) return true;
    if (!this.moves[from].includes(next)) {
      this.trace.debug({ s: this.owner.handle, from, to: next }, 'socket state move refused');
      return false;
    }
    this.state = next;
    this.trace.debug({ s: this.owner.handle, from, to: next }, 'socket state');
    this.owner.entered(next, from);
    return true;
  }
}
