/**
 * Sends larger than one WebSocket message (proto/README.md section 9, "Sends larger than a
 * message"). The client opens a stream with WSPSend {stream, total, buffers: first piece}; the
 * rest follows in spiwire.sendData pieces. The real send starts with the first piece, and the
 * daemon tells the client how far it has got (spiwire.sendProgress {taken}): the client may have
 * sent up to taken + the window, so the daemon holds at most a window of pieces per stream, and
 * the session quota bounds them all. A stream closes (done: true) when the send is complete,
 * failed, cancelled or has taken all it will; pieces that arrive after are dropped.
 */
import * as P from '@spiwire/proto';
import type { SessionQuota } from './held-bytes.js';
import type { PieceSink } from './sockets/emulated-socket.js';

interface OpenStream {
  total: number;
  /** Bytes the client has sent (the first piece included). */
  received: number;
  /** Bytes the transport has taken. */
  taken: number;
  /** taken when the client was last told. */
  reported: number;
  /** The client has been told something (the first report says the send has started). */
  announced: boolean;
  pieces: PieceSink | null;
  /** Fails the send (a window or quota breach): completes the operation with the code. */
  fail: ((errno: number) => void) | null;
}

export class SendStreams {
  private readonly open = new Map<number, OpenStream>();

  constructor(
    /** How many bytes past taken the client may send. */
    private readonly window: number,
    private readonly quota: SessionQuota,
    private readonly notify: (params: P.NotificationParams<'spiwire.sendProgress'>) => void,
  ) {}

  has(id: number): boolean {
    return this.open.has(id);
  }

  /**
   * Registers stream id before its send starts, so that the send's progress can be reported;
   * attach() then gives it the handle for the pieces still to come.
   */
  begin(id: number, total: number, firstBytes: number): (taken: number) => void {
    const st: OpenStream = { total, received: firstBytes, taken: 0, reported: 0, announced: false, pieces: null, fail: null };
    this.open.set(id, st);
    return (taken) => {
      // Bytes handed ahead may be counted after the send ended (it failed, timed out, was
      // cancelled): the stream's last report, done, stays its last.
      if (this.open.get(id) !== st) return;
      st.taken = taken;
      // Every byte taken: the stream is done. Otherwise report often enough that the client
      // keeps a window's worth in flight, not once per write.
      if (taken === st.total) this.close(id);
      else if (taken - st.reported >= this.window / 4) this.report(id, st, false);
    };
  }

  /** The send started: pieces go to sink (null: it takes no more, the stream closes). */
  attach(id: number, sink: PieceSink | null, fail: ((errno: number) => void) | null): void {
    const st = this.open.get(id);
    if (!st) return;
    if (!sink || st.received >= st.total) {
      this.close(id);
      return;
    }
    st.pieces = sink;
    st.fail = fail;
    // The first report says the send has started, unless the send's own start already reported
    // this very count (it took a quarter of the window at once): no report repeats the last.
    if (!st.announced || st.taken !== st.reported) this.report(id, st, false);
  }

  /** The call was refused before its send started: the stream goes without a report. */
  forget(id: number): void {
    this.open.delete(id);
  }

  /** The send is over (completed, failed or cancelled): no more pieces. */
  close(id: number): void {
    const st = this.open.get(id);
    if (!st) return;
    this.open.delete(id);
    this.report(id, st, true);
  }

  /** The next piece. Pieces of closed streams are dropped; a client past its window or the quota fails its send. */
  data(id: number, piece: Uint8Array): void {
    const st = this.open.get(id);
    if (!st || !st.pieces) return;
    const breach = st.received + piece.length > st.total ? 'more bytes than the total' : st.received + piece.length - st.taken > this.window ? 'more than the window beyond what was taken' : this.quota.exceeds(piece.length) ? 'the session quota' : null;
    if (breach) {
      // A client that does not keep to the stream's rules loses that send, nothing else.
      st.fail?.(P.WSAENOBUFS);
      this.close(id);
      return;
    }
    st.received += piece.length;
    if (!st.pieces(piece)) this.close(id);
  }

  /** Everything ends (the session, or the socket, is gone). */
  closeAll(): void {
    for (const id of [...this.open.keys()]) this.close(id);
  }

  private report(id: number, st: OpenStream, done: boolean): void {
    st.reported = st.taken;
    st.announced = true;
    this.notify({ stream: id, taken: st.taken, done });
  }
}
