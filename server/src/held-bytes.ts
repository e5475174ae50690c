/**
 * Bytes the daemon holds on behalf of sends: accepted by WSPSend (or queued behind older sends)
 * and not yet in the kernel. Each session has a quota; the daemon has a budget for all of them
 * together, which also covers sessions that have ended while their connections still deliver.
 * Without it a client could reconnect again and again, each time leaving a quota's worth behind.
 */

/** Daemon-wide. */
export class HeldBytes {
  /** Held for every session, live or ended. */
  total = 0;
  /** Of which, held for sessions that have ended. */
  ofEndedSessions = 0;
  /**
   * What any one session may hold whatever the others hold: the budget shared out among the
   * sessions there may be (at least 64 KiB). Without it a few sessions that fill the budget
   * would leave every other session unable to send a byte.
   */
  readonly fairShare: number;

  constructor(
    readonly budget: number,
    maxSessions = 1,
  ) {
    this.fairShare = Math.max(64 * 1024, Math.floor(budget / Math.max(1, maxSessions)));
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
