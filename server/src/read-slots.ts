/**
 * How much the daemon reads from bulk-sending sessions in one turn of the event loop.
 *
 * The TurnBudget limits the time spent on calls, but not what a turn reads: every connection with
 * data when the loop polls is read (node reads up to 32 x 64 KiB from each in one go) and its
 * messages reassembled before any budget can hold them back. With 32 bulk senders a turn read
 * 3-5 MB and lasted 5-10 ms, and a quiet session's call waited about that long to be read at all.
 *
 * So reading in bulk takes one of a few reader slots. Every read from a session's connection is
 * counted; a session that has read more than a small message (QUICK_MESSAGE_BYTES) in a turn
 * takes a free slot or, when all are taken, stops reading and queues. In the check phase, as many
 * holders as there are sessions waiting (the oldest holders first, and only those that read in
 * the turn) go to the back of the queue and stop reading, and the front of the queue takes the
 * free slots; a holder that read nothing leaves its slot. A holder also stops for the rest of a
 * turn once it has read TURN_BYTES in it, unless it is the only session connected (nobody would
 * wait on it). A quiet session reads in every turn.
 *
 * A stopped session has read at most one more chunk (node's read in progress), which waits in its
 * socket; the rest stays in the kernel, and TCP flow control holds its client back. Stopping
 * loses and reorders nothing: it only delays the reads.
 */

import { QUICK_MESSAGE_BYTES } from './turn-budget.js';

/** A session as the slots see it. */
export interface SlotReader {
  /** Stops (true) or restarts (false) reading the connection, as far as the slots are concerned. */
  holdReading(hold: boolean): void;
}

/** Sessions reading in bulk at once. */
export const READER_SLOTS = 2;
/** What a slot holder reads in one turn, when other sessions are connected, before it waits for the next. */
export const TURN_BYTES = 256 * 1024;

/**
 * One connected session: where it stands, and what it read in the turn it last read in.
 * idle: no slot and not waiting; holding: a slot; resting: a slot, but its share of the turn is
 * read; queued: waiting for a slot.
 */
interface Reader {
  state: 'idle' | 'holding' | 'resting' | 'queued';
  turn: number;
  bytes: number;
}

export class ReadSlots {
  /** Connected sessions. A session that reconnects gets a new entry, so stale queue places are told apart. */
  private readonly readers = new Map<SlotReader, Reader>();
  /** Holders, holding or resting, oldest first. */
  private readonly holders = new Set<SlotReader>();
  /** Sessions waiting for a slot, oldest first; places whose entry is gone or moved on are skipped. */
  private queue: Array<{ who: SlotReader; entry: Reader }> = [];
  private queued = 0;
  private turn = 0;
  private scheduled = false;
  /** Times a session stopped reading for the slots: queued, rotated out, or its share of a turn read. */
  waits = 0;

  constructor(
    /** 0: no limit, every session reads as much as node gives it. */
    private readonly slots: number = READER_SLOTS,
    private readonly turnBytes: number = TURN_BYTES,
    /** Up to this many bytes a turn, a session reads without a slot. */
    private readonly freeBytes: number = QUICK_MESSAGE_BYTES,
  ) {}

  /** who has a connection now (opened, or resumed). */
  join(who: SlotReader): void {
    this.forget(who);
    this.readers.set(who, { state: 'idle', turn: -1, bytes: 0 });
  }

  /** who's connection is gone (closed, or its session ended): it holds and waits for nothing. */
  forget(who: SlotReader): void {
    const r = this.readers.get(who);
    if (r === undefined) return;
    if (r.state === 'queued') this.queued--;
    this.readers.delete(who);
    this.holders.delete(who);
  }

  /**
   * who read bytes bytes from its connection. Returns false when it stops reading now (queued for
   * a slot, or its share of the turn read); holdReading(false) says when to go on.
   */
  noteRead(who: SlotReader, bytes: number): boolean {
    if (this.slots === 0) return true;
    const r = this.readers.get(who);
    if (r === undefined) return true;
    // The check phase ends the turn (rotate advances the count): without it, reads of later turns
    // would add up with this one's whenever nobody held or waited for a slot.
    this.schedule();
    if (r.turn !== this.turn) {
      r.turn = this.turn;
      r.bytes = 0;
    }
    r.bytes += bytes;
    if (r.state === 'resting' || r.state === 'queued') return false;
    if (r.state === 'idle') {
      if (r.bytes <= this.freeBytes) return true;
      if (this.holders.size >= this.slots) {
        this.enqueue(who, r);
        return false;
      }
      r.state = 'holding';
      this.holders.add(who);
    }
    if (r.bytes < this.turnBytes || this.readers.size <= 1) return true;
    r.state = 'resting';
    this.waits++;
    who.holdReading(true);
    return false;
  }

  /** Sessions waiting for a slot. */
  get waiting(): number {
    return this.queued;
  }

  /** Sessions holding a slot (for tests). */
  get holding(): number {
    return this.holders.size;
  }

  private enqueue(who: SlotReader, r: Reader): void {
    const wasResting = r.state === 'resting';
    r.state = 'queued';
    this.queued++;
    this.queue.push({ who, entry: r });
    if (wasResting) return;
    this.waits++;
    who.holdReading(true);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.rotate);
  }

  /** The check phase: holders that read make room for those waiting; holders that did not leave. */
  private readonly rotate = (): void => {
    this.scheduled = false;
    const ended = this.turn++;
    // As many make room as wait: none of them is given its slot back in this same go.
    let makeRoom = this.queued;
    for (const who of this.holders) {
      const r = this.readers.get(who)!;
      const read = r.turn === ended && r.bytes > 0;
      if (!read) {
        this.holders.delete(who);
        r.state = 'idle';
      } else if (makeRoom > 0) {
        makeRoom--;
        this.holders.delete(who);
        this.enqueue(who, r);
      } else if (r.state === 'resting') {
        r.state = 'holding';
        who.holdReading(false);
      }
    }
    let i = 0;
    while (this.holders.size < this.slots && i < this.queue.length) {
      const { who, entry } = this.queue[i++]!;
      if (this.readers.get(who) !== entry || entry.state !== 'queued') continue;
      entry.state = 'holding';
      this.queued--;
      this.holders.add(who);
      who.holdReading(false);
    }
    this.queue = i === 0 ? this.queue : this.queue.slice(i);
    // Holders must be looked at again next turn (whether they read); reads schedule the rest.
    if (this.holders.size > 0 || this.queued > 0) this.schedule();
    // Places left by sessions that went away: dropped once they outnumber the live ones.
    if (this.queue.length > 2 * this.queued + 64) this.queue = this.queue.filter(({ who, entry }) => this.readers.get(who) === entry && entry.state === 'queued');
  };
}
