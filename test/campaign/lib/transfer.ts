/**
 * A stream of bytes sent through the daemon to a loopback peer with byte accounting: what the
 * daemon reported as sent (WSPSend ret 0 with bytesSent, or an overlapped send's completion with
 * error 0) must arrive at the peer, in order and unchanged. Byte i of stream `seed` is
 * streamBytes(seed, i, 1), so the peer's bytes are checked against what was sent without keeping
 * a copy.
 */
import * as P from '@spiwire/proto';
import type { PeerConn } from './peers.js';
import type { Msg } from './replies.js';
import { streamBytes, waitUntil } from './util.js';
import type { Wire } from './wire.js';

export interface Verdict {
  /** Bytes the daemon reported sent. */
  reported: number;
  /** Bytes the peer received. */
  received: number;
  /** Reported bytes that did not arrive, or arrived changed. */
  lost: number;
  /** Where the peer's bytes first differ from the stream, or null. */
  mismatchAt: number | null;
  /** Bytes of cancelled or failed overlapped sends that the daemon said it had already taken (they should arrive too). */
  partial: number;
}

export class Transfer {
  /** Bytes handed to the daemon so far (the next send starts here). */
  offset = 0;
  reported = 0;
  partial = 0;
  private nextOp = 1;
  private readonly ops = new Map<number, number>();
  readonly outcomes = new Map<string, number>();

  constructor(
    readonly w: Wire,
    readonly s: number,
    readonly conn: PeerConn,
    readonly seed: number,
  ) {
    const prev = w.onNotification;
    w.onNotification = (m: Msg) => {
      prev?.(m);
      if (m.method !== 'spiwire.completion' || m.params?.['s'] !== s) return;
      const op = m.params['op'] as number;
      const len = this.ops.get(op);
      if (len === undefined) return;
      this.ops.delete(op);
      const err = m.params['error'] as number;
      const bytes = m.params['bytes'] as number;
      this.count(err === 0 ? 'completed later' : `completed later with ${P.wsaError(err)?.name ?? err}`);
      if (err === 0) this.reported += bytes;
      else this.partial += bytes;
    };
  }

  private count(what: string): void {
    this.outcomes.set(what, (this.outcomes.get(what) ?? 0) + 1);
  }

  /** Sends the next n bytes of the stream; overlapped or blocking. Resolves with the reply (null: none). */
  async send(n: number, overlapped: boolean, timeoutMs = 30000): Promise<Msg | null> {
    const data = streamBytes(this.seed, this.offset, n);
    this.offset += n;
    const params: Record<string, unknown> = { s: this.s, buffers: [data], flags: 0 };
    let op = 0;
    if (overlapped) {
      op = this.nextOp++;
      params['overlapped'] = { op, thread: 1 };
      this.ops.set(op, n);
    }
    const m = await this.w.request('WSPSend', params, { timeoutMs, label: overlapped ? 'overlapped WSPSend' : 'blocking WSPSend' });
    const r = m?.result;
    if (!r) {
      this.count(m ? 'protocol error' : 'no reply');
      return m;
    }
    if (r['ret'] === 0) {
      const c = r['completion'] as { error: number; bytes: number } | undefined;
      this.count(c ? 'completed at once' : 'sent');
      this.reported += c ? c.bytes : ((r['bytesSent'] as number) ?? 0);
      if (op) this.ops.delete(op);
    } else if (r['errno'] === P.WSA_IO_PENDING) {
      this.count('pending');
    } else {
      this.count(P.wsaError(r['errno'] as number)?.name ?? `errno ${String(r['errno'])}`);
      if (op) this.ops.delete(op);
    }
    return m;
  }

  /** Waits (up to ms) for the peer to hold every reported byte or for its connection to end, then judges. */
  async verdict(ms: number): Promise<Verdict> {
    await waitUntil(() => this.conn.received >= this.reported + this.partial || this.conn.ended !== null, ms);
    // A connection that ended may still deliver what the socket had buffered.
    await waitUntil(() => this.conn.received >= this.reported + this.partial, this.conn.ended ? 500 : 0);
    const got = Buffer.concat(this.conn.chunks);
    const want = streamBytes(this.seed, 0, Math.min(got.length, this.offset));
    let mismatchAt: number | null = null;
    if (got.length > this.offset) mismatchAt = this.offset;
    else if (!got.equals(want)) for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) { mismatchAt = i; break; }
    const good = mismatchAt ?? got.length;
    return { reported: this.reported, received: got.length, lost: Math.max(0, this.reported - good), mismatchAt, partial: this.partial };
  }

  summary(): string {
    return [...this.outcomes].map(([k, v]) => `${v} ${k}`).join(', ');
  }
}
