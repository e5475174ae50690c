/**
 * Bytes the daemon holds on behalf of sends: accepted by WSPSend (or queued behind older sends)
 * and not yet in the kernel. Each session has a quota; the daemon has a budget for all of them
 * together, which also covers sessions that have ended while their connections still deliver.
 * Without it a client could reconnect again and again, each time leaving a quota's worth behind.
 */

/**
 * What any one session may hold of a daemon-wide budget whatever the others hold: the budget
 * shared out among the sessions there may be (at least `least`, 64 KiB unless said). Without it a
 * few sessions that fill the budget would leave every other session without a byte.
 */
export function fairShareOf(budget: number, maxSessions: number, least = 64 * 1024): number {
  return Math.max(least, Math.floor(budget / Math.max(1, maxSessions)));
}

/** Daemon-wide. */
export class HeldBytes {
  /** Held for every session, live or ended. */
  total = 0;
  /** Of which, held for sessions that have ended. */
  ofEndedSessions = 0;
  /** See fairShareOf: what any one session may hold whatever the others hold. */
  readonly fairShare: number;

  constructor(
    readonly budget: number,
    maxSessions = 1,
  ) {
    this.fairShare = fairShareOf(budget, maxSessions);
  }
}

/** One session's share. */
export class SessionQuota {
  held = 0;
  private ended = false;

  constructor(
    readonly limit: number,
    private readonly daemon: HeldBytes = new HeldBytes(Infinity),
  ) {}

  /**
   * True when taking n more bytes would pass the session's quota, or the daemon's budget while
   * the session holds more than its fair share (WSAENOBUFS).
   */
  exceeds(n: number): boolean {
    const after = this.held + n;
    return after > this.limit || (this.daemon.total + n > this.daemon.budget && after > this.daemon.fairShare);
  }

  readonly add = (delta: number): void => {
    this.held += delta;
    this.daemon.total += delta;
    if (this.ended) this.daemon.ofEndedSessions += delta;
  };

  /** The session ended: what it still holds counts as held for ended sessions until delivered. */
  sessionEnded(): void {
    if (this.ended) return;
    this.ended = true;
    this.daemon.ofEndedSessions += this.held;
  }
}

/**
 * Bytes sockets have received from the network and no receive has taken yet, all sessions. Each
 * socket holds at most SO_RCVBUF of them, but a session may have thousands of sockets. Past the
 * budget, a socket of a session holding more than its fair share stops reading from the kernel
 * (TCP flow control then holds its peer back, and a datagram that does not fit is dropped, as
 * the kernel would) until the daemon is within its budget again. Nothing is lost.
 */
export class ReceivedBytes {
  total = 0;
  readonly fairShare: number;
  /** Sockets that stopped reading for the budget: each resumes once there is room. */
  private readonly waiting = new Set<() => void>();

  constructor(
    readonly budget: number,
    maxSessions = 1,
  ) {
    this.fairShare = fairShareOf(budget, maxSessions);
  }

  /** Sessions with sockets reading from the network: told when the daemon goes past its budget. */
  private readonly sessions = new Set<SessionReceived>();

  watch(s: SessionReceived): void {
    this.sessions.add(s);
  }

  unwatch(s: SessionReceived): void {
    this.sessions.delete(s);
  }

  change(delta: number): void {
    const wasOver = this.total > this.budget;
    this.total += delta;
    // Past the budget: the sessions over their share stop reading now, not one read per socket later.
    if (!wasOver && this.total > this.budget) for (const s of this.sessions) s.stopIfFull();
    if (delta < 0 && this.waiting.size > 0 && this.total <= this.budget) {
      const resume = [...this.waiting];
      this.waiting.clear();
      for (const f of resume) f();
    }
  }

  whenRoom(resume: () => void): void {
    this.waiting.add(resume);
  }
}

/** A socket reading from the network, as the received budget sees it. */
export interface BudgetReader {
  /** The session went over: stop reading unless a receive waits with nothing to take. */
  budgetExceeded(): void;
}

/**
 * One session's received bytes, against the daemon's budget. When the session goes over (the
 * daemon past its budget, the session past its share), every one of its sockets that reads is
 * told at once (readers): each had gone on to take one more read before it looked, up to 64 KiB
 * a socket, and a session with a thousand sockets held 125 times the budget. (The sockets
 * themselves are kept, not closures: an idle socket's memory is counted in bytes.)
 */
export class SessionReceived {
  held = 0;
  /** Sockets reading from the network. */
  private readonly readers = new Set<BudgetReader>();
  /** The readers were told; they are told again once the daemon has had room. */
  private stopped = false;

  constructor(private readonly daemon: ReceivedBytes = new ReceivedBytes(Infinity)) {}

  readonly add = (delta: number): void => {
    this.held += delta;
    this.daemon.change(delta);
    if (delta > 0) this.stopIfFull();
  };

  /** A socket reads from the network: told when the session goes over, until notReading. */
  reading(reader: BudgetReader): void {
    if (this.readers.size === 0) this.daemon.watch(this);
    this.readers.add(reader);
  }

  notReading(reader: BudgetReader): void {
    if (this.readers.delete(reader) && this.readers.size === 0) this.daemon.unwatch(this);
  }

  stopIfFull(): void {
    if (this.stopped || this.readers.size === 0 || !this.full) return;
    this.stopped = true;
    this.daemon.whenRoom(() => (this.stopped = false));
    for (const reader of [...this.readers]) reader.budgetExceeded();
  }

  /** The daemon is past its budget and this session holds more than its fair share: stop reading. */
  get full(): boolean {
    return this.daemon.total > this.daemon.budget && this.held > this.daemon.fairShare;
  }

  whenRoom(resume: () => void): void {
    this.daemon.whenRoom(resume);
  }
}
