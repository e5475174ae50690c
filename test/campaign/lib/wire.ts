/**
 * A raw wire client for the campaign: a plain `ws` WebSocket speaking the protocol with the proto
 * codec, with nothing in between that would tidy up what a hostile client sends. It judges every
 * message the daemon sends (lib/replies.ts), keeps counts rather than the messages themselves (a
 * campaign sends hundreds of thousands), and remembers a label per tracked request id so that an
 * INTERNAL_ERROR can be traced back to what provoked it.
 */
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { classify, type Msg, type Verdict } from './replies.js';

export interface Defect {
  label: string;
  detail: string;
}

export interface WireStats {
  sent: number;
  verdicts: Record<Verdict, number>;
  internal: Defect[];
  undocumented: Defect[];
}

export function newStats(): WireStats {
  return { sent: 0, verdicts: { result: 0, error: 0, notification: 0, internal: 0, undocumented: 0 }, internal: [], undocumented: [] };
}

/** Adds b's counts to a (defect lists are capped at 50 examples each). */
export function mergeStats(a: WireStats, b: WireStats): void {
  a.sent += b.sent;
  for (const k of Object.keys(a.verdicts) as Verdict[]) a.verdicts[k] += b.verdicts[k];
  for (const d of b.internal) if (a.internal.length < 50) a.internal.push(d);
  for (const d of b.undocumented) if (a.undocumented.length < 50) a.undocumented.push(d);
}

type IdKey = string;
const keyOf = (id: unknown): IdKey => `${typeof id}:${String(id)}`;

interface Waiter {
  resolve: (m: Msg | null) => void;
  timer: NodeJS.Timeout | null;
}

export interface RequestOpts {
  /** Reject after this long (resolve null); 0: wait as long as the connection lives. */
  timeoutMs?: number;
  label?: string;
  /** Send as a text frame (byte strings in base64). */
  text?: boolean;
}

let idSeq = 0;

export class Wire {
  readonly stats: WireStats = newStats();
  readonly closed: Promise<{ code: number; reason: string }>;
  closeInfo: { code: number; reason: string } | null = null;
  welcome: Record<string, unknown> = {};
  /** Sees every notification (completions, network events) after it is judged. */
  onNotification: ((m: Msg) => void) | null = null;
  /** Sees every response (result or error) after it is judged and its waiter is answered. */
  onResponse: ((m: Msg) => void) | null = null;
  private readonly waiters = new Map<IdKey, Waiter>();
  private readonly labels = new Map<IdKey, string>();

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onData(data, isBinary));
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.values()) {
          if (w.timer) clearTimeout(w.timer);
          w.resolve(null);
        }
        this.waiters.clear();
        resolve(this.closeInfo);
      }),
    );
  }

  /** Opens a session and waits for spiwire.welcome; throws with `status` set on an HTTP refusal. */
  static open(url: string, timeoutMs = 5000): Promise<Wire> {
    const ws = new WebSocket(url, [P.SUBPROTOCOL], { perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 });
    const w = new Wire(ws);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error('no welcome within the time limit'));
      }, timeoutMs);
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        ws.terminate();
        reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode }));
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      w.welcomed = (params) => {
        clearTimeout(timer);
        w.welcome = params;
        resolve(w);
      };
      void w.closed.then((c) => {
        clearTimeout(timer);
        reject(new Error(`closed (${c.code}) before the welcome`));
      });
    });
  }

  private welcomed: ((params: Record<string, unknown>) => void) | null = null;

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The session's limits from spiwire.welcome. */
  limit(name: string): number | undefined {
    const l = this.welcome['limits'] as Record<string, unknown> | undefined;
    return typeof l?.[name] === 'number' ? l[name] : undefined;
  }

  private onData(data: Buffer, isBinary: boolean): void {
    let recs: P.DecodedRecord[];
    try {
      recs = isBinary ? P.decodeFrame(data, { ...P.DEFAULT_DECODE_LIMITS, maxDataBytes: 1024 * 1024 * 1024 }) : [P.decodeText(data.toString('utf8'))];
    } catch (err) {
      this.stats.verdicts.undocumented++;
      this.defect('undocumented', 'frame from the daemon', `undecodable frame: ${(err as Error).message}`);
      return;
    }
    for (const r of recs) {
      if (!r.ok) {
        this.stats.verdicts.undocumented++;
        this.defect('undocumented', 'record from the daemon', `undecodable record: ${r.error.message}`);
        continue;
      }
      this.judge(r.message as Msg);
    }
  }

  private judge(m: Msg): void {
    const { verdict, why } = classify(m);
    this.stats.verdicts[verdict]++;
    const hasId = m && typeof m === 'object' && 'id' in m && m.method === undefined;
    const key = hasId ? keyOf(m.id) : null;
    const label = (key && this.labels.get(key)) ?? (hasId && m.id === null ? 'a record answered with id null' : 'untracked');
    if (verdict === 'internal') this.defect('internal', label, why ?? '');
    if (verdict === 'undocumented') this.defect('undocumented', label, `${why}: ${JSON.stringify(m).slice(0, 300)}`);
    if (typeof m?.method === 'string') {
      if (m.method === 'spiwire.welcome' && this.welcomed) {
        const cb = this.welcomed;
        this.welcomed = null;
        cb(m.params ?? {});
      }
      this.onNotification?.(m);
      return;
    }
    if (key) {
      this.labels.delete(key);
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        if (w.timer) clearTimeout(w.timer);
        w.resolve(m);
      }
    }
    this.onResponse?.(m);
  }

  private defect(kind: 'internal' | 'undocumented', label: string, detail: string): void {
    const list = kind === 'internal' ? this.stats.internal : this.stats.undocumented;
    if (list.length < 50) list.push({ label, detail });
  }

  /** A fresh request id, unique in this process. */
  static id(): string {
    return `c${++idSeq}`;
  }

  /** Remembers what a request with this id was, for the defect report. */
  track(id: unknown, label: string): void {
    if (this.labels.size > 20000) this.labels.clear();
    this.labels.set(keyOf(id), label);
  }

  /** Sends raw bytes or text as one WebSocket message (counted as one message). */
  sendRaw(payload: Uint8Array | string, binary: boolean): void {
    if (!this.isOpen) return;
    this.stats.sent++;
    this.ws.send(payload, { binary });
  }

  /** Waits for the response to id (null on time-out or close). */
  waitFor(id: unknown, timeoutMs = 10000): Promise<Msg | null> {
    if (!this.isOpen) return Promise.resolve(null);
    const key = keyOf(id);
    return new Promise((resolve) => {
      const w: Waiter = { resolve, timer: null };
      if (timeoutMs > 0) {
        w.timer = setTimeout(() => {
          this.waiters.delete(key);
          resolve(null);
        }, timeoutMs);
      }
      this.waiters.set(key, w);
    });
  }

  /** Sends a request in its own frame and resolves with its response (null on time-out or close). */
  request(method: string, params: Record<string, unknown>, opts: RequestOpts = {}): Promise<Msg | null> {
    const id = Wire.id();
    this.track(id, opts.label ?? method);
    const p = this.waitFor(id, opts.timeoutMs ?? 10000);
    const msg = { jsonrpc: '2.0', id, method, params };
    this.sendRaw(opts.text ? P.encodeText(msg) : P.encodeFrame(msg), !opts.text);
    return p;
  }

  /** A request whose SPI result is wanted: the result, or null on a protocol error, time-out or close. */
  async call(method: string, params: Record<string, unknown>, opts: RequestOpts = {}): Promise<Record<string, unknown> | null> {
    const m = await this.request(method, params, opts);
    return m?.result ?? null;
  }

  /** Sends a notification (no id): the daemon runs it and answers nothing. */
  notify(method: string, params: Record<string, unknown>): void {
    this.sendRaw(P.encodeFrame({ jsonrpc: '2.0', method, params }), true);
  }

  /** Sends several messages as the records of one binary frame. */
  sendRecords(messages: readonly object[]): void {
    const b = new P.FrameBuilder();
    for (const m of messages) b.add(m);
    this.sendRaw(b.finish(), true);
  }

  private get socket(): Socket | null {
    return ((this.ws as unknown as { _socket?: Socket })._socket as Socket | undefined) ?? null;
  }

  /** Stops reading from the connection: the daemon's replies pile up on its side. */
  pauseReading(): void {
    this.socket?.pause();
  }

  resumeReading(): void {
    this.socket?.resume();
  }

  /** Writes bytes straight to the TCP connection under the WebSocket (for broken frames). */
  writeRawTcp(bytes: Uint8Array): void {
    this.socket?.write(bytes);
  }

  /** Closes normally (1000), or drops the connection when the close handshake does not finish within ms. */
  async close(ms = 2000): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    try {
      this.ws.close(1000);
    } catch {
      /* not open yet */
    }
    const timer = setTimeout(() => this.ws.terminate(), ms);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection without a close handshake (FIN). */
  /** The TCP connection under the WebSocket, for bytes that are not whole frames. */
  get rawSocket(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** Drops the connection with a TCP reset (RST). */
  reset(): void {
    const s = this.socket;
    if (s && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else this.ws.terminate();
  }
}
