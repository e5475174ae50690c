/**
 * WSPSend calls larger than one message go to the daemon as streams (proto/README.md section 9,
 * "Sends larger than a message"): the call carries the first piece, and the rest follows in
 * spiwire.sendData notifications, never more than the window beyond what the daemon says it has
 * taken (spiwire.sendProgress). For the caller it is one ordinary call.
 */
import * as P from '@spiwire/proto';
import type { RpcConnection } from './rpc.js';

/** The default window, for a daemon whose welcome does not say (all daemons that stream do). */
const DEFAULT_WINDOW = 8 * 1024 * 1024;
/**
 * The largest piece: small enough that the daemon's WebSocket never assembles a huge message for
 * it (which would cost that much again in memory), large enough to cost few records.
 */
const MAX_PIECE = 1024 * 1024;

interface Outgoing {
  buffers: readonly Uint8Array[];
  total: number;
  /** Where the next piece starts: buffer index and offset in it. */
  buffer: number;
  offset: number;
  sent: number;
  taken: number;
}

export class SendStreams {
  private nextId = 1;
  private readonly open = new Map<number, Outgoing>();

  constructor(
    private readonly rpc: RpcConnection,
    /** The most bytes one message may carry. */
    private readonly maxPayload: () => number,
  ) {}

  private maxPiece(): number {
    return Math.min(MAX_PIECE, this.maxPayload());
  }

  private get window(): number {
    return this.rpc.welcome.limits.streamWindowBytes ?? DEFAULT_WINDOW;
  }

  /**
   * Splits a send: the params of its WSPSend (stream, total and the first piece as buffers), and
   * the stream the rest goes out on once the daemon opens its window.
   */
  begin(buffers: readonly Uint8Array[], total: number): { stream: number; first: Uint8Array[] } {
    const stream = this.nextId++;
    if (this.nextId > 0xffffffff) this.nextId = 1;
    const out: Outgoing = { buffers, total, buffer: 0, offset: 0, sent: 0, taken: 0 };
    const first = this.take(out, this.maxPiece());
    this.open.set(stream, out);
    return { stream, first };
  }

  /** spiwire.sendProgress: send what the window now allows, or stop. */
  onProgress(params: Record<string, unknown>): void {
    const stream = params['stream'];
    const taken = params['taken'];
    if (!P.isU32(stream) || !P.isU32(taken)) return;
    const out = this.open.get(stream);
    if (!out) return;
    if (params['done'] === true) {
      this.open.delete(stream);
      return;
    }
    out.taken = Math.max(out.taken, taken);
    const limit = Math.min(out.total, out.taken + this.window);
    while (out.sent < limit) {
      const piece = this.take(out, Math.min(this.maxPiece(), limit - out.sent));
      for (const data of piece) this.rpc.notify('spiwire.sendData', { stream, data });
    }
  }

  /**
   * The call returned to its caller while pieces are still to go (a nonblocking send that the
   * Windows policy took whole, to finish in the background): the caller may reuse its buffers now,
   * so what has not been sent is copied. Nothing happens to a stream that is over.
   */
  detach(stream: number): void {
    const out = this.open.get(stream);
    if (!out || out.sent >= out.total) return;
    const rest = new Uint8Array(out.total - out.sent);
    let at = 0;
    for (let i = out.buffer; i < out.buffers.length; i++) {
      const b = out.buffers[i]!;
      const from = i === out.buffer ? out.offset : 0;
      rest.set(b.subarray(from), at);
      at += b.length - from;
    }
    out.buffers = [rest.subarray(0, at)];
    out.buffer = 0;
    out.offset = 0;
  }

  /** The call failed at once, or the connection is gone: the stream ends without more pieces. */
  end(stream: number): void {
    this.open.delete(stream);
  }

  /** The next n bytes at most, as views of the caller's buffers (one per buffer they span). */
  private take(out: Outgoing, n: number): Uint8Array[] {
    const pieces: Uint8Array[] = [];
    let left = n;
    while (left > 0 && out.buffer < out.buffers.length) {
      const b = out.buffers[out.buffer]!;
      const m = Math.min(left, b.length - out.offset);
      if (m > 0) pieces.push(b.subarray(out.offset, out.offset + m));
      out.offset += m;
      out.sent += m;
      left -= m;
      if (out.offset >= b.length) {
        out.buffer++;
        out.offset = 0;
      }
    }
    return pieces;
  }
}
