/**
 * A stand-in daemon on loopback for the SDK's unit tests; not a test file itself. It is a real ws
 * server speaking the spiwire framing: it greets with spiwire.welcome, decodes what the SDK sends,
 * and answers with whatever the test writes, well-formed or not. Everything is awaited on events
 * (a request arriving, a frame arriving, the connection closing), never on time.
 */
import type { Test } from 'tap';
import { WebSocketServer, type WebSocket } from 'ws';
import * as P from '@spiwire/proto';

export const enc = new TextEncoder();

export const LIMITS = { maxFrameBytes: 1 << 24, maxPendingRequests: 1024, maxSockets: 64, defaultSndBuf: 65536, defaultRcvBuf: 65536 };

export function welcome(extra: Record<string, unknown> = {}): Uint8Array {
  return P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.welcome', params: { session: 'unit', version: '0.0.0', protocol: 1, limits: LIMITS, ...extra } });
}

/** One record built by hand: the header bytes are used as given, so they can be anything. */
export function rawRecord(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = typeof header === 'string' ? enc.encode(header) : header;
  const out = Buffer.alloc(8 + h.length + data.length);
  out.writeUInt32LE(h.length, 0);
  out.set(h, 4);
  out.writeUInt32LE(data.length, 4 + h.length);
  out.set(data, 8 + h.length);
  return out;
}

/** Several records (each a whole frame of one record, or built with rawRecord) as one frame. */
export function frameOf(...records: Uint8Array[]): Uint8Array {
  return Buffer.concat(records);
}

export interface Request {
  id: number;
  method: string;
  params: Record<string, unknown>;
  /** The header came compact (proto/README.md, section 3). */
  compact: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object';
}

/** The SDK's end of one connection, seen from the daemon's side. */
export class Peer {
  /** The requests of each frame received, frame by frame. */
  readonly frames: Request[][] = [];
  /** Each spiwire.ack received: its count, and the index in frames of the frame that held it. */
  readonly acks: Array<{ frame: number; received: number }> = [];
  private readonly queue: Request[] = [];
  private waiters: Array<() => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
      const frame: Request[] = [];
      for (const r of recs) {
        if (!r.ok || !isRecord(r.message)) continue;
        const { id, method, params } = r.message;
        if (method === 'spiwire.ack' && id === undefined && isRecord(params)) this.acks.push({ frame: this.frames.length, received: Number(params['received']) });
        if (typeof id !== 'number' || typeof method !== 'string' || !isRecord(params)) continue;
        frame.push({ id, method, params, compact: r.compact === true });
      }
      this.frames.push(frame);
      this.queue.push(...frame);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Resolves once something arrived that satisfies ready (checked at once and after each frame). */
  private until(ready: () => boolean): Promise<void> {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (ready()) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** The next request not yet taken, in arrival order. */
  async request(): Promise<Request> {
    await this.until(() => this.queue.length > 0);
    const r = this.queue.shift();
    if (!r) throw new Error('no request');
    return r;
  }

  /** Resolves once count frames have arrived. */
  untilFrames(count: number): Promise<void> {
    return this.until(() => this.frames.length >= count);
  }

  /** Sends one message as a frame of one record. */
  send(message: object): void {
    this.ws.send(P.encodeFrame(message));
  }

  /** Sends bytes as one binary WebSocket message, exactly as given. */
  sendBytes(frame: Uint8Array): void {
    this.ws.send(frame);
  }

  /** Answers a request with an SPI result. */
  reply(req: Request, result: Record<string, unknown> = {}): void {
    this.send({ jsonrpc: '2.0', id: req.id, result: { ret: 0, errno: 0, ...result } });
  }
}

export interface FakeDaemon {
  url: string;
  /** The next connection to arrive (greeted unless the daemon was made with greet: false). */
  peer(): Promise<Peer>;
}

/**
 * Starts a fake daemon on 127.0.0.1; first is what it sends as its first message (a welcome by
 * default). It closes with the test.
 */
export async function fakeDaemon(t: Test, first: Uint8Array | string | null = welcome()): Promise<FakeDaemon> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (p) => (p.has(P.SUBPROTOCOL) ? P.SUBPROTOCOL : false) });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const peers: Peer[] = [];
  let waiting: ((p: Peer) => void) | null = null;
  wss.on('connection', (ws) => {
    const peer = new Peer(ws);
    if (first !== null) ws.send(first);
    if (waiting) {
      waiting(peer);
      waiting = null;
    } else peers.push(peer);
  });
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  });
  const address = wss.address();
  if (address === null || typeof address === 'string') throw new Error('the server has no TCP address');
  return {
    url: `ws://127.0.0.1:${address.port}`,
    peer: () => {
      const p = peers.shift();
      return p ? Promise.resolve(p) : new Promise<Peer>((resolve) => (waiting = resolve));
    },
  };
}
