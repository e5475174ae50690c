/**
 * The daemon's HTTP connection slots: one per session, plus HTTP_HEADROOM for health checks,
 * /version, inspection and upgrades under way. Beyond them a client could take descriptors the
 * daemon keeps for its sockets and logs.
 *
 * A full table does not shut new clients out. A new connection takes the slot of the connection
 * whose last sign of life is oldest: when it opened, or when its last request began or was
 * answered. That is a connection that never finished its TLS handshake or a request's headers, a
 * kept-alive connection long idle, a resume handshake whose message never came, or a request
 * whose body has been trickling in. A session's connection is never taken. A newcomer that sends
 * its request at once is the newest of all: to push it out before the daemon reads its request,
 * a client would have to open more connections than the headroom in that moment. (Taking idle
 * connections before requests under way instead let a client that holds the slots with trickled
 * requests push each newcomer out with a single connection of its own.)
 *
 * Every client counts alike, whatever its address: a rule that took first from the address
 * holding the most let a client aim at another's connection by opening a few from that address
 * (any local process can use any 127.x.y.z) and spreading the rest thinly over others.
 *
 * Connections are known by both ends' addresses and ports, which the raw TCP socket and a TLS
 * socket over it share (the request of a TLS connection carries the TLS socket).
 */
import type { Socket } from 'node:net';

/** HTTP connections allowed beyond maxSessions: health checks, /version, upgrades under way. */
export const HTTP_HEADROOM = 64;

interface Slot {
  socket: Socket;
  /** keyOf(socket), taken when the connection opened. */
  key: string;
  /** A session's connection: never taken. */
  held: boolean;
  /** Requests begun and not yet answered: more than one when a client pipelines them. */
  requests: number;
  /** Runs once requests comes to 0 (a refused upgrade's close). */
  whenAnswered: (() => void) | null;
}

/**
 * The key a connection is known by: both ends' addresses and ports. (The peer's alone is not
 * unique: a daemon listening on several addresses can have two connections from one client port.)
 */
function keyOf(socket: Socket): string | undefined {
  const remote = socket.remoteAddress;
  const local = socket.localAddress;
  return remote === undefined || local === undefined ? undefined : `${remote} ${socket.remotePort ?? 0} ${local} ${socket.localPort ?? 0}`;
}

export class ConnectionSlots {
  private readonly slots = new Map<string, Slot>();
  /** Connections a newcomer may take the place of, by last sign of life, oldest first (a Map keeps insertion order). */
  private readonly takeable = new Map<string, Slot>();
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
    const slot: Slot = { socket, key, held: false, requests: 0, whenAnswered: null };
    // The same two ends again before the earlier connection's close was seen (a client port
    // reused at once after a reset): the earlier one is forgotten, its close changes nothing, and
    // the new one goes to the newest end of the queue.
    this.takeable.delete(key);
    this.slots.set(key, slot);
    this.takeable.set(key, slot);
    socket.once('close', () => {
      if (this.slots.get(key) !== slot) return;
      this.slots.delete(key);
      this.takeable.delete(key);
    });
  }

  /** A request began on this connection. */
  requestBegan(socket: Socket): void {
    const slot = this.touch(socket);
    if (slot !== undefined) slot.requests++;
  }

  /** A request's response went out, or the request was dropped. */
  requestEnded(socket: Socket): void {
    const slot = this.touch(socket);
    if (slot === undefined) return;
    slot.requests = Math.max(0, slot.requests - 1);
    if (slot.requests > 0 || slot.whenAnswered === null) return;
    const then = slot.whenAnswered;
    slot.whenAnswered = null;
    then();
  }

  /**
   * An upgrade request: true to go on with it. When another request on the connection is still
   * unanswered (the client pipelined the upgrade behind it), the connection is closed once that is
   * answered: node has handed the connection over, so nothing else would ever close it, and the
   * upgrade cannot be answered on a connection still answering.
   */
  upgradeBegan(socket: Socket): boolean {
    const slot = this.touch(socket);
    if (slot === undefined || slot.requests === 0) return true;
    slot.whenAnswered = () => socket.destroy();
    return false;
  }

  /** An upgraded connection waits for its client: a resume handshake until its message comes. */
  waiting(socket: Socket): void {
    this.touch(socket);
  }

  /** This connection carries a session now: its slot is never taken. */
  hold(socket: Socket): void {
    const slot = this.slotOf(socket);
    if (slot === undefined) return;
    slot.held = true;
    this.takeable.delete(slot.key);
  }

  private slotOf(socket: Socket): Slot | undefined {
    const key = keyOf(socket);
    return key === undefined ? undefined : this.slots.get(key);
  }

  /** Moves the connection to the newest end of the queue (a sign of life); its slot, if it has one. */
  private touch(socket: Socket): Slot | undefined {
    const slot = this.slotOf(socket);
    if (slot === undefined || slot.held) return slot;
    this.takeable.delete(slot.key);
    this.takeable.set(slot.key, slot);
    return slot;
  }

  /** Closes the connection whose last sign of life is oldest; false if every slot is a session's. */
  private evictOne(): boolean {
    const first = this.takeable.values().next();
    if (first.done === true) return false;
    const slot = first.value;
    this.slots.delete(slot.key);
    this.takeable.delete(slot.key);
    this.evicted++;
    slot.socket.destroy();
    return true;
  }
}
