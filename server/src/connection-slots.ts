/**
 * The daemon's HTTP connection slots: one per session, plus HTTP_HEADROOM for health checks,
 * /version, inspection and upgrades under way. Beyond them a client could take descriptors the
 * daemon keeps for its sockets and logs.
 *
 * A full table does not shut new clients out. A new connection takes the slot of the one idle
 * longest: a connection that has not finished its TLS handshake or a request's headers, a kept-
 * alive connection between requests, or a resume handshake whose message has not come. Failing
 * those, the oldest request still under way (a body trickled in). A session's connection is never
 * taken. Without this, one local client holding every slot with connections that send nothing
 * would refuse every newcomer until the handshake timeout closed them, and again after it.
 *
 * Connections are known by their peer's address and port, which the raw TCP socket and a TLS
 * socket over it share (the request of a TLS connection carries the TLS socket).
 */
import type { Socket } from 'node:net';

/** HTTP connections allowed beyond maxSessions: health checks, /version, upgrades under way. */
export const HTTP_HEADROOM = 64;

type SlotState = 'idle' | 'busy' | 'held';

interface Slot {
  socket: Socket;
  state: SlotState;
  /** Requests begun and not yet answered: more than one when a client pipelines them. */
  requests: number;
}

/** The key a connection is known by: the peer's address and port. */
function keyOf(socket: Socket): string | undefined {
  const address = socket.remoteAddress;
  return address === undefined ? undefined : `${address} ${socket.remotePort ?? 0}`;
}

export class ConnectionSlots {
  private readonly slots = new Map<string, Slot>();
  /** Connections a newcomer may take the place of, oldest first (Maps keep insertion order). */
  private readonly idle = new Map<string, Slot>();
  private readonly busy = new Map<string, Slot>();
  /** Connections closed to make room for a newer one. */
  evicted = 0;
  /** New connections closed at once: every slot held by a session. */
  refused = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.slots.size;
  }

  /** A new connection (the server's 'connection' event, before any TLS): takes a slot, or is closed. */
  admit(socket: Socket): void {
    const key = keyOf(socket);
    // (No address: the connection closed before it was seen.)
    if (key === undefined || socket.destroyed) return void socket.destroy();
    if (this.slots.size >= this.capacity && !this.evictOne()) {
      this.refused++;
      return void socket.destroy();
    }
    const slot: Slot = { socket, state: 'idle', requests: 0 };
    this.slots.set(key, slot);
    this.idle.set(key, slot);
    socket.once('close', () => {
      if (this.slots.get(key) !== slot) return;
      this.slots.delete(key);
      this.idle.delete(key);
      this.busy.delete(key);
    });
  }

  /** A request (or upgrade) began on this connection. */
  requestBegan(socket: Socket): void {
    const slot = this.slotOf(socket);
    if (slot === undefined) return;
    slot.requests++;
    this.move(socket, 'busy');
  }

  /** A request's response went out (or the request was dropped): idle again once none is under way. */
  requestEnded(socket: Socket): void {
    const slot = this.slotOf(socket);
    if (slot === undefined) return;
    slot.requests = Math.max(0, slot.requests - 1);
    if (slot.requests === 0) this.move(socket, 'idle');
  }

  /** An upgraded connection waits for its client: a resume handshake until its message comes. */
  waiting(socket: Socket): void {
    this.move(socket, 'idle');
  }

  /** This connection carries a session now: its slot is never taken. */
  hold(socket: Socket): void {
    const key = keyOf(socket);
    const slot = this.slotOf(socket);
    if (slot === undefined || key === undefined) return;
    slot.state = 'held';
    this.idle.delete(key);
    this.busy.delete(key);
  }

  private slotOf(socket: Socket): Slot | undefined {
    const key = keyOf(socket);
    return key === undefined ? undefined : this.slots.get(key);
  }

  private move(socket: Socket, state: 'idle' | 'busy'): void {
    const key = keyOf(socket);
    const slot = this.slotOf(socket);
    // A session's connection stays held, whatever order the server's listeners run in.
    if (slot === undefined || key === undefined || slot.state === 'held') return;
    this.idle.delete(key);
    this.busy.delete(key);
    slot.state = state;
    // Set again at the end: the order is of when each last became idle or busy.
    (state === 'idle' ? this.idle : this.busy).set(key, slot);
  }

  /** Closes the connection idle longest, else the oldest request under way; false if every slot is a session's. */
  private evictOne(): boolean {
    for (const queue of [this.idle, this.busy]) {
      const first = queue.entries().next();
      if (first.done === true) continue;
      const [key, slot] = first.value;
      this.slots.delete(key);
      queue.delete(key);
      this.evicted++;
      slot.socket.destroy();
      return true;
    }
    return false;
  }
}
