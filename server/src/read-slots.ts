/**
 * How much the daemon reads from bulk-sending sessions in one turn of the event loop.
 *
 * The TurnBudget limits the time spent on calls, but not what a turn reads: every connection with
 * data when the loop polls is read (node reads up to 32 x 64 KiB from each in one go) and its
 * messages reassembled before any budget can hold them back. With 32 bulk senders a turn read
 * 3-5 MB and lasted 5-10 ms, and a quiet session's call waited about that long to be read at all.
 *
 * So reading large messages takes one of a few reader slots. A session whose message was large
 * (more than QUICK_MESSAGE_BYTES) takes a free slot, or, when all are taken, stops reading after
 * that message and queues. In the check phase, holders that read in the turn go to the back of
 * the queue (and stop reading) while as many from its front take their slots; a holder that read
 * nothing leaves its slot. A holder also stops for the rest of a turn once it has read
 * TURN_BYTES in it, unless it is the only session connected (nobody would be waiting on it).
 * Small messages need no slot: a quiet session is read in every turn.
 *
 * A stopped session has read at most one more chunk (node's read in progress), which waits in
 * its socket; the rest stays in the kernel and its client sees TCP backpressure.
 */

/** A session as the slots see it. */
export interface SlotReader {
  /** Stops (true) or restarts (false) reading the connection, as far as the slots are concerned. */
  holdReading(hold: boolean): void;
}

/** Sessions reading large messages at once. */
export const READER_SLOTS = 2;
/** What a slot holder reads in one turn, when other sessions are connected, before it waits for the next. */
export const TURN_BYTES = 256 * 1024;

export class ReadSlots {
  /** Sessions with a connection to read. */
  private readonly connected = new Set<SlotReader>();
  /** Slot holders, with the bytes each read in the current turn (-1: none yet). */
  private readonly holders = new Map<SlotReader, number>();
  /** Holders that read their share of this turn and wait for the check phase. */
  private resting: SlotReader[] = [];
  /** Sessions waiting for a slot, oldest first; each is in it at most once. */
  private queue: SlotReader[] = [];
  private scheduled = false;
  /** Times a session stopped reading for the slots: queued, or its share of a turn read. */
  waits = 0;

  constructor(
    private readonly slots: number = READER_SLOTS,
    private readonly turnBytes: number = TURN_BYTES,
    /** Above this a message is large (turn-budget.ts's QUICK_MESSAGE_BYTES in the daemon). */
    private readonly largeAbove: number = 4096,
  ) {}

  /** reader has a connection now (opened, or resumed). */
  join(reader: SlotReader): void {
    this.connected.add(reader);
  }

  /** reader's connection is gone (closed, or its session ended): it holds and waits for nothing. */
  forget(reader: SlotReader): void {
    this.connected.delete(reader);
    this.holders.delete(reader);
    this.resting = this.resting.filter((r) => r !== reader);
    this.queue = this.queue.filter((r) => r !== reader);
  }

  /**
   * reader received a message of bytes bytes. Returns false when it stops reading now: it was
   * queued for a slot, or read its share of the turn; holdReading(false) says when to go on.
   */
  noteMessage(reader: SlotReader, bytes: number): boolean {
    if (bytes <= this.largeAbove) return true;
    const read = this.holders.get(reader);
    if (read === undefined) {
      if (this.queue.includes(reader) || this.resting.includes(reader)) return false;
      this.schedule();
      if (this.holders.size >= this.slots) {
        this.queue.push(reader);
        this.waits++;
        reader.holdReading(true);
        return false;
      }
    }
    const now = Math.max(read ?? 0, 0) + bytes;
    this.holders.set(reader, now);
    if (now < this.turnBytes || this.connected.size <= 1) return true;
    this.resting.push(reader);
    this.waits++;
    reader.holdReading(true);
    return false;
  }

  /** Sessions waiting for a slot (for tests). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Sessions holding a slot (for tests). */
  get holding(): number {
    return this.holders.size;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.rotate);
  }

  /** The check phase: holders that read make room for those waiting; the others leave. */
  private readonly rotate = (): void => {
    this.scheduled = false;
    const resting = new Set(this.resting);
    this.resting = [];
    for (const [reader, read] of this.holders) {
      if (read < 0) this.holders.delete(reader);
      else if (this.queue.length > 0) {
        this.holders.delete(reader);
        this.queue.push(reader);
        if (!resting.has(reader)) {
          this.waits++;
          reader.holdReading(true);
        }
      } else {
        this.holders.set(reader, -1);
        if (resting.has(reader)) reader.holdReading(false);
      }
    }
    while (this.holders.size < this.slots && this.queue.length > 0) {
      const next = this.queue.shift()!;
      this.holders.set(next, -1);
      next.holdReading(false);
    }
    if (this.holders.size > 0) this.schedule();
  };
}
