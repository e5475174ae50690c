/**
 * When a TCP socket looks for urgent data. A look is recv(MSG_OOB | MSG_PEEK), a system call; node
 * has no event for urgent data, so the socket watches for SIGURG (native/urgent.ts) while it has
 * something to wait for (a pending MSG_OOB receive, FD_OOB selected) and looks only after a signal.
 * While it does not watch, every look is made: nothing would tell it otherwise.
 *
 * SIGURG names no connection: urgent data on one wakes every watcher. A watcher whose connection
 * received nothing since its last look ignores the signal, so that another connection's urgent
 * byte does not record FD_OOB again for an urgent byte already reported (Wine's test_oob_events).
 */
import { watchUrgent } from '../native/urgent.js';

/** The socket an UrgentWatch serves (its methods, not closures: every TCP socket has a watch). */
export interface UrgentOwner {
  /** Runs on each SIGURG while watching: the socket looks again (its waiters, FD_OOB). */
  urgentSignalled(): void;
  /**
   * Whether the connection received anything since this was last asked (true when it cannot
   * tell): urgent data always comes with a received byte.
   */
  receivedSinceAsked(): boolean;
}

export class UrgentWatch {
  /** Pending MSG_OOB receives (blocking or overlapped) and WSPSelect calls watching exceptfds. */
  private waits = 0;
  /** Set by SIGURG (and when watching starts), cleared when a look finds nothing. */
  private signalled = false;
  private stop: (() => void) | null = null;

  constructor(private readonly owner: UrgentOwner) {}

  /** Whether a look is worth a system call now. */
  get mayHaveData(): boolean {
    return this.stop === null || this.signalled;
  }

  /** A look found nothing: the next one waits for a signal. */
  foundNothing(): void {
    this.signalled = false;
  }

  /**
   * Watches while there is something to wait for on a live connection, and not otherwise.
   * ownerSet: SIGURG for the connection comes to this process (else a timer stands in).
   */
  update(live: boolean, selected: boolean, ownerSet: boolean): void {
    const wanted = live && (this.waits > 0 || selected);
    if (wanted && !this.stop) {
      this.stop = watchUrgent(() => {
        if (!this.owner.receivedSinceAsked()) return;
        this.signalled = true;
        this.owner.urgentSignalled();
      }, ownerSet);
      // Anything that arrived before the watch started is found by the first look; later
      // signals count from here.
      this.owner.receivedSinceAsked();
      this.signalled = true;
    } else if (!wanted && this.stop) {
      this.stop();
      this.stop = null;
    }
  }

  /** Counts a wait (a MSG_OOB receive, a select on exceptfds) from start() until it calls release (once; a throw releases too). */
  hold<T>(refresh: () => void, start: (release: () => void) => T): T {
    this.waits++;
    refresh();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.waits--;
      refresh();
    };
    try {
      return start(release);
    } catch (err) {
      release();
      throw err;
    }
  }
}
