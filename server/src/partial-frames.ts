/**
 * Bytes of WebSocket messages that have begun to arrive and not ended, counted over the whole
 * daemon. ws keeps every byte of a message until its last one comes, up to maxFrameBytes per
 * connection, and no other limit counts those bytes: a client that starts a large message on each
 * of many connections and trickles the rest in would hold maxFrameBytes times maxSessions (tens of
 * GiB by default). Past the budget, one connection is closed: the one whose current message began
 * to arrive longest ago, since a slow trickle is the oldest, while a client sending at any real
 * speed finishes messages all the time, and each finished message starts its clock again. Not a
 * connection whose client is ahead of the daemon, though: one in the middle of a message's last
 * frame (FIN) with the rest of it, or at least AHEAD_BYTES of it, waiting unread in the kernel,
 * because the daemon is behind (its reader slots and turns hold sessions back). Else a client that
 * sends a large message just before others start theirs would be the one closed while the daemon
 * reads its message in turns. When every unfinished message is such a one, the one that began
 * last goes: it took the total past the budget.
 *
 * The close sends close code 1013 (try again later) with a reason and FIN, then reads and drops
 * what the client still sends until it closes (or CLOSE_DRAIN_MS), so that ws holds and runs
 * nothing more of it. The daemon counts that as a broken connection: a resumable session waits
 * for its client to resume (the SDK resumes after 1013), any other ends.
 */
import type { Socket } from 'node:net';
import * as ws from 'ws';
import type { WebSocket } from 'ws';
import { fdOf, libc } from './native/libc.js';

/** The close code of a connection closed for the budget: RFC 6455's "try again later". */
export const PARTIAL_FRAMES_CLOSE_CODE = 1013;

/** What ws's receiver holds of a message still arriving (fields of ws 8's Receiver class). */
interface ReceiverState {
  /** Bytes read from the connection and not yet taken into a message. */
  _bufferedBytes: number;
  /** Payload of the earlier fragments of a fragmented message. */
  _messageLength: number;
  /** The reads not yet taken, one Buffer each. */
  _buffers: unknown[];
  /** The earlier fragments of a fragmented message, one Buffer each. */
  _fragments: unknown[];
  /** Where the receiver is in the frame: GET_DATA once the header is read and the payload comes. */
  _state?: unknown;
  /** The current frame's FIN bit and payload length, once its header is read. */
  _fin?: unknown;
  _payloadLength?: unknown;
}

/** ws 8's receiver state while a frame's payload arrives. */
const GET_DATA = 4;

function isReceiverState(r: unknown): r is ReceiverState {
  const x = r as Partial<ReceiverState> | undefined;
  return x !== undefined && typeof x._bufferedBytes === 'number' && typeof x._messageLength === 'number' && Array.isArray(x._buffers) && Array.isArray(x._fragments);
}

/**
 * What one buffered read or fragment costs beyond its bytes: the Buffer object, its ArrayBuffer
 * and the backing store's record. A client that sends a message one byte per TCP segment, or in
 * one-byte fragments, holds far more than its bytes, and that must count too.
 */
const PER_BUFFER_BYTES = 256;

/** How long a connection closed for the budget may take to answer the close frame and end. */
const CLOSE_DRAIN_MS = 2000;

/** One WebSocket connection as the budget sees it. */
class Arrival {
  /** Bytes (and per-read costs) ws holds for the connection's unfinished message; 0 when none. */
  held = 0;
  /** performance.now() when the unfinished message began to arrive. */
  since = 0;

  constructor(
    readonly ws: WebSocket,
    readonly receiver: ReceiverState,
    readonly socket: Socket,
  ) {}
}

export class PartialFrames {
  private heldTotal = 0;
  /** Connections holding part of a message. */
  private readonly arriving = new Set<Arrival>();
  /** Connections closed for the budget since the daemon started. */
  closedForBudget = 0;

  /**
   * budget: the most bytes all connections together may hold of messages still arriving; at
   * least twice maxFrameBytes (config.ts checks), so that one message of the largest size alone
   * never passes it. closed: told of each connection closed for the budget, for the log.
   */
  constructor(
    readonly budget: number,
    private readonly closed: (info: { held: number; ageMs: number; total: number }) => void,
  ) {
    // Checked once, at startup: a ws whose receiver lacks these fields (a major version later)
    // would count nothing and leave the daemon without the bound.
    const Receiver = (ws as unknown as { Receiver?: new () => unknown }).Receiver;
    if (Receiver === undefined || !isReceiverState(new Receiver())) throw new Error('the ws receiver has no _bufferedBytes, _messageLength or _buffers: the partial-frame budget cannot count this ws version');
  }

  /** Bytes held now for messages still arriving, all connections. */
  get total(): number {
    return this.heldTotal;
  }

  /** Counts what ws holds of socket's messages, from the moment it upgraded to the close. */
  watch(socketWs: WebSocket, socket: Socket): void {
    const receiver = (socketWs as unknown as { _receiver?: unknown })._receiver;
    if (!isReceiverState(receiver)) return;
    const a = new Arrival(socketWs, receiver, socket);
    // ws's own 'data' listener was added when the connection upgraded: this one runs after the
    // receiver has taken the chunk and emitted every message it completed.
    socket.on('data', () => this.update(a));
    socket.once('close', () => this.forget(a));
    // A finished message starts the connection's clock again: what follows began at most now.
    // (Not a fall in the bytes held: a zero-length fragment frees a read's cost without
    // finishing anything, and a trickler sending those would keep its clock young.)
    socketWs.on('message', () => {
      a.since = performance.now();
    });
  }

  private update(a: Arrival): void {
    const r = a.receiver;
    const held = r._bufferedBytes + r._messageLength + (r._buffers.length + r._fragments.length) * PER_BUFFER_BYTES;
    if (held === a.held) return;
    this.heldTotal += held - a.held;
    if (a.held === 0) {
      a.since = performance.now();
      this.arriving.add(a);
    }
    else if (held === 0) this.arriving.delete(a);
    a.held = held;
    while (this.heldTotal > this.budget && this.arriving.size > 0) this.close(this.chooseOne());
  }

  /** The connection to close for the budget (the header comment says how it is chosen). */
  private chooseOne(): Arrival {
    let oldest: Arrival | null = null;
    let newest: Arrival | null = null;
    for (const a of this.arriving) {
      if (newest === null || a.since > newest.since) newest = a;
      if ((oldest === null || a.since < oldest.since) && !clientIsAhead(a)) oldest = a;
    }
    // (arriving is not empty: newest is set.)
    return oldest ?? newest!;
  }

  private forget(a: Arrival): void {
    this.heldTotal -= a.held;
    a.held = 0;
    this.arriving.delete(a);
  }

  private close(chosen: Arrival): void {
    const { held, since } = chosen;
    this.forget(chosen);
    this.closedForBudget++;
    this.closed({ held, ageMs: Math.round(performance.now() - since), total: this.heldTotal });
    const socket = chosen.socket;
    try {
      chosen.ws.close(PARTIAL_FRAMES_CLOSE_CODE, 'partial-frame budget: the daemon holds too many unfinished messages');
    } catch {
      // The connection was closing already: ending the socket below is all that is left.
    }
    // From here what the client sends is read and dropped: ws gets none of it (no request runs,
    // nothing more is held), and the kernel is not left with unread bytes, which would turn the
    // close into a reset that can destroy the close frame on its way. FIN follows the close
    // frame; the socket goes when the client ends its side, or after CLOSE_DRAIN_MS.
    socket.removeAllListeners('data');
    socket.on('data', () => undefined);
    socket.resume();
    socket.end();
    const timer = setTimeout(() => socket.destroy(), CLOSE_DRAIN_MS);
    timer.unref();
    socket.once('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
  }
}

/**
 * Bytes of a message's frame waiting unread in the kernel that show its client is ahead of the
 * daemon: a read's worth (node reads 64 KiB at a time). A trickle never has that much waiting,
 * except while the daemon holds its connection back: until its next turn to read, or, when its
 * client does not read what the daemon sends, until the output stall limit closes it.
 */
const AHEAD_BYTES = 64 * 1024;

/**
 * Whether the client is ahead of the daemon in its unfinished message: the current frame is the
 * message's last (FIN), its header has been read, and the rest of its payload, or AHEAD_BYTES of
 * it, waits in the kernel (for TLS, as ciphertext). False where the native calls are missing:
 * then the oldest message goes, whoever holds it back.
 */
function clientIsAhead(a: Arrival): boolean {
  const r = a.receiver;
  if (r._state !== GET_DATA || r._fin !== true || typeof r._payloadLength !== 'number') return false;
  const missing = r._payloadLength - r._bufferedBytes;
  const lib = libc();
  const fd = fdOf(a.socket);
  if (missing <= 0 || lib === null || fd === null) return false;
  return (lib.queued(fd) ?? 0) >= Math.min(missing, AHEAD_BYTES);
}
