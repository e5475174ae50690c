/**
 * The time the daemon spends on client calls in one turn of the event loop. A session works
 * through a frame only while it has time left, then sets the rest aside for the next turn (and
 * reads nothing more meanwhile). A lone session gets a slice per frame, as many frames as arrive;
 * once a second session works in the same turn, the turn's time is shared: 32 busy sessions
 * would otherwise hold the loop for 32 slices, and a call from a quiet session would wait behind
 * all of them.
 */
export class TurnBudget {
  /** performance.now() at which the current turn's shared time is up; -1 between turns. */
  private endsAt = -1;
  private owner: object | null = null;
  private shared = false;

  constructor(
    private readonly ms: number,
    /** The clock (performance.now; a unit test drives its own, so that no check hangs on the machine's speed). */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** owner starts (or goes on with) its work in this turn; the turn ends at the loop's check phase. */
  begin(owner: object): void {
    if (this.endsAt < 0) {
      this.endsAt = this.now() + this.ms;
      this.owner = owner;
      this.shared = false;
      setImmediate(this.end);
    } else if (owner !== this.owner) this.shared = true;
  }

  /** The time is up for work that began at since (on the same clock): set the rest aside. */
  spent(since: number): boolean {
    const now = this.now();
    return this.shared ? now > this.endsAt : now - since > this.ms;
  }

  private readonly end = (): void => {
    this.endsAt = -1;
    this.owner = null;
  };
}
