/**
 * A daemon-wide bound on bytes that each session already keeps within a bound of its own: output
 * waiting for a client, output kept for a resume. Per-session bounds times maxSessions would be
 * tens of GiB; past the shared budget, the member holding the most is told, and gives up what it
 * holds (ends, or stops keeping it). The largest is found by a scan, only when over the budget.
 */
export class SharedBudget<T> {
  private totalBytes = 0;
  private readonly members = new Map<T, number>();

  constructor(
    readonly budget: number,
    /** The budget is passed and member holds the most: it must release what it holds (forget()). */
    private readonly over: (member: T) => void,
  ) {}

  /** Bytes held now, all members. */
  get total(): number {
    return this.totalBytes;
  }

  /** member holds n bytes more (or fewer, n < 0). */
  change(member: T, n: number): void {
    this.members.set(member, (this.members.get(member) ?? 0) + n);
    this.totalBytes += n;
    if (this.totalBytes <= this.budget) return;
    let largest: T | null = null;
    let most = -1;
    for (const [m, held] of this.members) {
      if (held > most) {
        largest = m;
        most = held;
      }
    }
    if (largest !== null) this.over(largest);
  }

  /** member holds nothing any more (it ended, or dropped what it kept). */
  forget(member: T): void {
    const n = this.members.get(member);
    if (n === undefined) return;
    this.members.delete(member);
    this.totalBytes -= n;
  }
}
