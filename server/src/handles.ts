/**
 * SOCKET handles, daemon-wide. Handles look like Windows kernel handles (multiples of 4) and are
 * never reused while the daemon runs, so a stale or foreign handle is always WSAENOTSOCK.
 */
import type { EmulatedSocket } from './sockets/emulated-socket.js';

const FIRST_HANDLE = 0x100;
const HANDLE_STEP = 4;
/** Handles stay below 2^32 so they fit a 32-bit SOCKET. */
const LAST_HANDLE = 0xfffffff0;

/** Bytes a socket moved: sent (taken by the transport) and received (from the network). */
export interface ByteTotals {
  sent: number;
  received: number;
}

export class HandleTable {
  private next = FIRST_HANDLE;
  private readonly sockets = new Map<number, EmulatedSocket>();
  /**
   * The bytes of sockets no longer in the table, daemon-wide and by owner while the owner lives:
   * metrics and inspection add the open sockets' own counters to them at read time, so that
   * nothing is counted on the send and receive paths.
   */
  private readonly closedBytes: ByteTotals = { sent: 0, received: 0 };
  private readonly closedBytesByOwner = new Map<string, ByteTotals>();

  allocate(): number | null {
    if (this.next > LAST_HANDLE) return null;
    const h = this.next;
    this.next += HANDLE_STEP;
    return h;
  }

  add(socket: EmulatedSocket): void {
    this.sockets.set(socket.handle, socket);
  }

  remove(handle: number): void {
    const s = this.sockets.get(handle);
    if (!s) return;
    this.sockets.delete(handle);
    const sent = s.bytesTaken;
    const received = s.bytesReceived;
    this.closedBytes.sent += sent;
    this.closedBytes.received += received;
    let mine = this.closedBytesByOwner.get(s.owner);
    if (!mine) {
      mine = { sent: 0, received: 0 };
      this.closedBytesByOwner.set(s.owner, mine);
    }
    mine.sent += sent;
    mine.received += received;
  }

  /** The owner is gone: its closed sockets' bytes stay in the daemon's totals only. */
  forgetOwner(owner: string): void {
    this.closedBytesByOwner.delete(owner);
  }

  /** Open sockets, in the order they were made. */
  values(): IterableIterator<EmulatedSocket> {
    return this.sockets.values();
  }

  /** Bytes of every socket since the daemon started. */
  bytesTotals(): ByteTotals {
    return addUp(this.closedBytes, this.sockets.values());
  }

  /**
   * Bytes of one owner's sockets: its closed ones, and the open ones it gives (its own list, so
   * that listing every session costs one pass over the sockets, not one per session).
   */
  ownerBytes(owner: string, open: Iterable<EmulatedSocket>): ByteTotals {
    return addUp(this.closedBytesByOwner.get(owner), open);
  }

  /** The socket when it exists, is open and belongs to the session; otherwise null. */
  lookup(handle: number, owner: string): EmulatedSocket | null {
    const s = this.sockets.get(handle);
    return s && s.owner === owner && !s.closed ? s : null;
  }

  get size(): number {
    return this.sockets.size;
  }
}

/** closed (what closed sockets moved) plus the open sockets' own counters. */
function addUp(closed: ByteTotals | undefined, open: Iterable<EmulatedSocket>): ByteTotals {
  const t: ByteTotals = { sent: closed?.sent ?? 0, received: closed?.received ?? 0 };
  for (const s of open) {
    t.sent += s.bytesTaken;
    t.received += s.bytesReceived;
  }
  return t;
}
