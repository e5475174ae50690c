/**
 * The time the daemon spends on client calls in one turn of the event loop, and the queue of
 * sessions whose work was set aside for later.
 *
 * A session works through a frame only while it has time left, then sets the rest aside (and
 * reads nothing more meanwhile). A lone session gets a slice per frame, as many frames as arrive
 * until the turn has run LONE_TURN_SLICES slices: other sessions' calls may be waiting unread in
 * the kernel, and a burst of thousands of small frames from one read must not hold them back
 * for long. Once a second session works in the same turn, the turn's time is shared, and once it
 * is used up, a message that has not started waits too. Set-aside work is resumed in the check
 * phase, in the order it was set aside, for one more slice of time: whoever does not get a go
 * then keeps its place for the next turn. Without the queue, every session set aside resumed in
 * the same check phase, and 32 bulk senders held each turn for all their frames (10 ms and more)
 * while a bystander's one small call waited behind them.
 */

/** Work set aside by a session: takeTurn() does at least one piece of it (or defers again). */
export interface SetAside {
  takeTurn(): void;
}

/** A message this small (a call without a large payload) may go at once even when the turn's time is up. */
export const QUICK_MESSAGE_BYTES = 4096;

/** How many of its slices a lone session's frames may take in one turn before the next waits for the check phase. */
export const LONE_TURN_SLICES = 2;

export class TurnBudget {
  /** performance.now() at which the current turn's shared time is up; -1 between turns. */
  private endsAt = -1;
  private owner: object | null = null;
  private shared = false;
  /** Sessions with work set aside, oldest first; each is in it at most once (it defers once per go). */
  private queue: SetAside[] = [];
  private drainScheduled = false;
  /** Counts turns: a session's quickTurn says in which it had its quick go. */
  private turn = 0;

  /** performance.now() when the current turn began. */
  private startedAt = 0;

  constructor(
    /** A lone session's slice: per frame, and per check phase when it alone has work set aside. */
    private readonly ms: number,
    /** The clock (performance.now; a unit test drives its own, so that no check hangs on the machine's speed). */
    private readonly now: () => number = () => performance.now(),
    /**
     * The time of a turn several sessions share. Shorter than a lone session's slice: every turn
     * also reads each busy session's next frame, and a quiet session's call waits for the turn.
     */
    private readonly sharedMs: number = ms,
  ) {}

  /** owner starts (or goes on with) its work in this turn; the turn ends at the loop's check phase. */
  begin(owner: object): void {
    if (this.endsAt < 0) {
      this.turn++;
      this.startedAt = this.now();
      this.endsAt = this.startedAt + this.ms;
      this.owner = owner;
      this.shared = false;
      setImmediate(this.end);
    } else if (owner !== this.owner && !this.shared) {
      this.shared = true;
      this.endsAt = Math.min(this.endsAt, this.startedAt + this.sharedMs);
    }
  }

  /** The time is up for work that began at since (on the same clock): set the rest aside. */
  spent(since: number): boolean {
    const now = this.now();
    return this.shared ? now > this.endsAt : now - since > this.ms;
  }

  /**
   * Whether a message of size bytes from owner, which has not started yet, waits for the check
   * phase: the turn is shared (or would be, with owner in it) and its time is up. A lone
   * session's frames are held back only once the turn has run LONE_TURN_SLICES of its slices,
   * and a small message goes at once if it is its session's first in this turn: a quiet
   * session's one call is not queued behind the bulk senders' frames, and each session gets at
   * most one such go per turn.
   */
  holdsBack(owner: { quickTurn: number }, bytes: number): boolean {
    if (this.endsAt < 0) return false;
    if (!this.shared && owner === this.owner) return this.now() - this.startedAt > LONE_TURN_SLICES * this.ms;
    if (this.now() <= this.endsAt) return false;
    if (bytes <= QUICK_MESSAGE_BYTES && owner.quickTurn !== this.turn) {
      owner.quickTurn = this.turn;
      return false;
    }
    return true;
  }

  /** w has work set aside: it resumes in a check phase, after those set aside before it. */
  defer(w: SetAside): void {
    this.queue.push(w);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(this.drain);
    }
  }

  /** Counts the turns of the event loop in which sessions worked (a session flushes its first frame's replies at once in each). */
  get current(): number {
    return this.turn;
  }

  /** How many sessions wait for a go (for tests). */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * The check phase: the sessions set aside resume in turn, within one shared slice (at least one
   * of them goes). Those that defer again, or get no go, wait for the next turn, in order.
   */
  private readonly drain = (): void => {
    this.drainScheduled = false;
    const queue = this.queue;
    this.queue = [];
    this.endsAt = this.now() + (queue.length > 1 ? this.sharedMs : this.ms);
    this.owner = null;
    this.shared = true;
    let i = 0;
    try {
      while (i < queue.length && (i === 0 || this.now() <= this.endsAt)) queue[i++]!.takeTurn();
    } finally {
      // Those without a go keep their place ahead of those that deferred again during this drain.
      if (i < queue.length) this.queue = queue.slice(i).concat(this.queue);
      if (this.queue.length > 0 && !this.drainScheduled) {
        this.drainScheduled = true;
        setImmediate(this.drain);
      }
      this.end();
    }
  };

  private readonly end = (): void => {
    this.endsAt = -1;
    this.owner = null;
    // Left set, spent() would find every check before the next begin() out of time.
    this.shared = false;
  };
}
