/**
 * Closed TCP connections that still deliver bytes WSPSend accepted. A close is graceful, as on
 * Windows: accepted bytes go on to the peer, then FIN. Such connections are tracked here so that
 * the daemon can bound how long it delivers for clients that are gone (the linger time after
 * their session ended), and so that a shutdown waits for them (up to the drain deadline) instead
 * of dropping bytes it reported as sent. A connection given up on is reset, so that its peer
 * learns the stream is incomplete rather than seeing a FIN after a truncated stream.
 */
import type { Logger } from 'pino';
import { trimSoon } from './memory-trim.js';

export interface Drainable {
  readonly handle: number;
  /** The session that owned the socket. */
  readonly owner: string;
  /** Bytes accepted for the peer that the kernel does not have yet. */
  undelivered(): number;
  /** Resolves once the kernel has every byte, or the connection ended. */
  readonly delivered: Promise<void>;
  /** Resets the connection and drops what it still holds; returns how many bytes that was. */
  abandon(): number;
  /** The peer's address, for the log. */
  peerText(): string;
}

export class Draining {
  private readonly entries = new Map<Drainable, NodeJS.Timeout | null>();
  /** How many of them each session owns: they hold descriptors, and count against its socket limit. */
  private readonly perSession = new Map<string, number>();
  /** Once the daemon shuts down, the drain deadline bounds every connection, not the linger time. */
  private shuttingDown = false;

  constructor(
    private readonly log: Logger,
    private readonly lingerMs: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Connections of this session still delivering after their close. */
  ofSession(session: string): number {
    return this.perSession.get(session) ?? 0;
  }

  add(sock: Drainable): void {
    if (this.entries.has(sock)) return;
    this.entries.set(sock, null);
    this.perSession.set(sock.owner, this.ofSession(sock.owner) + 1);
    void sock.delivered.then(() => this.forget(sock));
  }

  /** A session ended: its connections get the linger time to finish, then they are reset. */
  sessionEnded(session: string): void {
    if (this.shuttingDown) return;
    for (const [sock, timer] of this.entries) {
      if (sock.owner !== session || timer) continue;
      const t = setTimeout(() => this.giveUp(sock, 'linger'), this.lingerMs);
      t.unref();
      this.entries.set(sock, t);
    }
  }

  /**
   * The daemon begins to shut down: linger timers stop, so that every connection, the ended
   * sessions' ones included, gets the drain deadline (drainAll), and one given up on is reported
   * as the shutdown's (at warn level), not as an ended session's.
   */
  beginShutdown(): void {
    this.shuttingDown = true;
    for (const [sock, timer] of this.entries) {
      if (!timer) continue;
      clearTimeout(timer);
      this.entries.set(sock, null);
    }
  }

  /** Shutdown: waits up to ms for every connection to deliver, then resets the rest. */
  async drainAll(ms: number): Promise<void> {
    if (this.entries.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, ms)));
    await Promise.race([Promise.all([...this.entries.keys()].map((s) => s.delivered)), deadline]);
    clearTimeout(timer);
    for (const sock of [...this.entries.keys()]) this.giveUp(sock, 'shutdown');
  }

  private giveUp(sock: Drainable, why: 'linger' | 'shutdown'): void {
    if (!this.entries.has(sock)) return;
    this.forget(sock);
    const peer = sock.peerText();
    const bytes = sock.abandon();
    trimSoon();
    if (bytes === 0) return;
    // The peer is not reading (or is gone): a fact about the network, not a daemon fault. At a
    // shutdown the operator should hear of it; after a session ended, the client cannot.
    const fields = { session: sock.owner, s: sock.handle, peer, undeliveredBytes: bytes };
    if (why === 'shutdown') this.log.warn(fields, 'shutdown: a connection did not deliver its accepted bytes before the drain deadline; reset');
    else this.log.info(fields, 'an ended session\'s connection did not deliver its accepted bytes within the linger time; reset');
  }

  private forget(sock: Drainable): void {
    if (!this.entries.has(sock)) return;
    const timer = this.entries.get(sock);
    if (timer) clearTimeout(timer);
    this.entries.delete(sock);
    const n = this.ofSession(sock.owner) - 1;
    if (n > 0) this.perSession.set(sock.owner, n);
    else this.perSession.delete(sock.owner);
  }
}
