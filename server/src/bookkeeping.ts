/**
 * The daemon's own memory for what waits: a call still running (a blocking send waiting for
 * room, a WSPSelect) and a pending overlapped operation. The quotas and budgets of held-bytes.ts
 * count the bytes of sends, not this, and the per-session limits (maxPendingRequests, and
 * maxOutstandingOpsPerSocket for each of thousands of sockets) let one session hold millions of
 * operations: 2 million one-byte overlapped sends cost the daemon 1 GiB of heap for 78 MB of
 * requests, and four times that reaches V8's heap limit, which ends the process. The budget
 * counts an estimate of that memory for all sessions together; past it, a session holding more
 * than its fair share gets TOO_MANY_REQUESTS for new calls until what waits has ended.
 */

import { fairShareOf } from './held-bytes.js';

/** What a pending overlapped operation costs the daemon, about: its record, queued send and buffer list (docs/performance.md, Memory). */
export const OPERATION_BOOKKEEPING_BYTES = 512;
/** What a call still running costs the daemon, about: its request, promise chain and reply (60,000 blocking sends: 104 MiB). */
export const WAITING_CALL_BOOKKEEPING_BYTES = 2048;

/** The least fair share: 512 operations or 128 waiting calls, whatever the number of sessions. */
const MIN_FAIR_SHARE = 256 * 1024;

/** Daemon-wide. */
export class Bookkeeping {
  /** Counted for every live session. */
  total = 0;
  /** What any one session may hold whatever the others hold: the budget shared out among the sessions there may be. */
  readonly fairShare: number;

  constructor(
    readonly budget: number,
    maxSessions = 1,
  ) {
    this.fairShare = fairShareOf(budget, maxSessions, MIN_FAIR_SHARE);
  }
}

/** One session's part. */
export class SessionBookkeeping {
  held = 0;
  private ended = false;

  constructor(private readonly daemon: Bookkeeping) {}

  /** Whether the session may start another call: the daemon is within its budget, or the session holds no more than its fair share. */
  get admitsMore(): boolean {
    return this.daemon.total < this.daemon.budget || this.held <= this.daemon.fairShare;
  }

  readonly add = (delta: number): void => {
    if (this.ended) return;
    this.held += delta;
    this.daemon.total += delta;
  };

  /** The session ended: what waited is answered or dropped with it, and counts no more. */
  sessionEnded(): void {
    if (this.ended) return;
    this.ended = true;
    this.daemon.total -= this.held;
    this.held = 0;
  }
}
