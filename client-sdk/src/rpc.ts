/**
 * The SDK's connection to the daemon: JSON-RPC requests packed several to a binary frame and
 * flushed on a microtask, replies matched by id, notifications handed to a listener.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { unmask, writeMaskedBinaryFrame, type MaskingKeys } from './masked-frames.js';
import { IdTable } from './id-table.js';
import { addressLookup, addressOrderError, type AddressOrder } from './addresses.js';

/**
 * A JSON-RPC error from the daemon (the request itself was malformed or impossible), or a reply
 * from the daemon that is not a JSON-RPC response (code INVALID_REQUEST, data {id}).
 */
export class SpiwireProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'SpiwireProtocolError';
  }
}

/** The reply to call id, which cannot stand for the call's result. */
function badReply(id: number, why: string): SpiwireProtocolError {
  return new SpiwireProtocolError(P.INVALID_REQUEST, `the daemon's reply to call ${id} is not a JSON-RPC response: ${why}`, { id });
}

/** The session's connection is gone; SPI calls turn this into WSAENETDOWN. */
export class ConnectionClosedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ConnectionClosedError';
  }
}

/** Why connect() could not open a session; the message says it in one line. */
export type ConnectFailureKind = 'unreachable' | 'token' | 'not-spiwire' | 'refused' | 'timeout' | 'bad-url' | 'tls';

/**
 * connect() could not open a session: the daemon is not running or not reachable, refused the
 * token, refused the session for another reason (its message is quoted), is not a spiwire daemon,
 * or did not answer in time. The message names the URL and what to do.
 */
export class SpiwireConnectError extends Error {
  constructor(
    readonly kind: ConnectFailureKind,
    message: string,
    /** The HTTP status of a refused upgrade. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'SpiwireConnectError';
  }
}

export interface RpcOptions {
  token?: string | undefined;
  headers?: Record<string, string> | undefined;
  /** How long to wait for the connection and the welcome message, in ms (default 10000). */
  connectTimeoutMs?: number | undefined;
  /**
   * Send WSPSend calls with compact record headers (proto/README.md, section 3, "Compact
   * headers") when the daemon's welcome says it reads them; the daemon then answers compactly
   * too. Default true; false keeps every header JSON (easier to read in a packet capture).
   */
  compact?: boolean | undefined;
  /**
   * For a wss:// daemon whose certificate the system does not trust (a self-signed or private
   * CA): the PEM certificate(s) to trust. The server's certificate is always verified, against
   * these or the system's CAs; NODE_EXTRA_CA_CERTS works too.
   */
  ca?: string | Buffer | Array<string | Buffer> | undefined;
  /**
   * Resume the session when its connection drops (proto/README.md section 20): the SDK
   * reconnects by itself within the daemon's grace period, and calls in flight go on as if
   * nothing happened. Default true; false: a dropped connection ends the session (WSAENETDOWN).
   */
  resume?: boolean | undefined;
  /**
   * How long after a counted message from the daemon an acknowledgement goes when no count has
   * made one due (default P.ACK_DELAY_MS, 20 ms). For tests that count frames and must not see
   * the timer's acknowledgement on a slow machine.
   */
  ackDelayMs?: number | undefined;
  /**
   * The masking keys of the SDK's frames (masked-frames.ts). Default 'zero': the all-zero key,
   * so that neither end spends a pass over every byte on masking; the daemon accepts any key.
   * 'random' picks a fresh random key per frame (RFC 6455 section 5.3), for a path through an
   * HTTP intermediary that must not see unmasked client bytes.
   */
  maskingKeys?: MaskingKeys | undefined;
  /**
   * When the daemon's host name resolves to several addresses (a farm's replicas behind Docker
   * swarm's dnsrr or a headless Kubernetes Service): which one to try first (addresses.ts).
   * Default 'shuffle', a random one, so that clients spread over the replicas; 'system' keeps
   * getaddrinfo's order; a number n picks the n-th in numeric order (modulo their count), so
   * that clients numbered 0, 1, 2, ... spread evenly. With Node's autoSelectFamily (on by default
   * since Node 20) the others are tried in turn if it fails; without it, only the first is.
   */
  addressOrder?: AddressOrder | undefined;
}

/** What the connection's hooks receive: why it dropped, or why it could not be resumed. */
export interface ConnectionEvent {
  reason: string;
}

/** The hooks of a resumable connection (RpcConnection.events, SpiSession.on). */
export interface ConnectionEvents {
  /** The connection dropped; the SDK is reconnecting. Calls wait. */
  disconnected: [ConnectionEvent];
  /** The session was resumed on a new connection; everything goes on. */
  resumed: [ConnectionEvent];
  /** The session could not be resumed (grace passed, daemon restarted, refused): calls fail with WSAENETDOWN. */
  lost: [ConnectionEvent];
}

export interface Welcome {
  session: string;
  version: string;
  protocol: number;
  limits: P.WelcomeLimits;
  /** The daemon reads compact record headers (absent from daemons that do not). */
  compactHeaders?: boolean;
  /** Present when the session can be resumed (section 20). */
  resume?: P.ResumeOffer;
}

/** Bytes of messages the daemon has not acknowledged that may be on the wire; more wait for its acks. */
const SEND_WINDOW_BYTES = 64 * 1024 * 1024;
/** Reconnection backoff: the first wait, and the longest (each with jitter). */
const RECONNECT_FIRST_MS = 50;
const RECONNECT_MAX_MS = 2000;
/**
 * A resumable connection is pinged this often; one that brought nothing (no message, no pong)
 * for a whole period is taken for broken and dropped, and the session resumed. A cut that sends
 * no reset would otherwise go unnoticed until the next write failed, maybe after the grace.
 */
const HEARTBEAT_MS = 5000;
/** Spare frame buffers kept for reuse at most. */
const MAX_SPARE = 4;
/** The size of a resumable session's frame buffers (more when one record needs it). */
const RESUME_BUFFER = 1024 * 1024;
/** A frame under construction smaller than this moves to the next buffer when the current one is full; a larger one is sent. */
const MOVE_FRAME_BELOW = 64 * 1024;
/** Room for a record's header when deciding whether it fits the frame buffer (a guess: too small only costs a copy). */
const RECORD_SLACK = 512;
/** How long close() tries to reach the daemon to end a session that is reconnecting. */
const FAREWELL_MS = 2000;
/** Close codes after which a session is resumed: the connection broke, or a proxy on the way went away. */
const RESUMABLE_CLOSE_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

/** A counted message the daemon has not acknowledged; key: it was masked in place with it. */
interface Kept {
  data: Uint8Array;
  key: Uint8Array | null;
  /** A message of sendRaw, sent as it is through ws (text when a string). */
  raw?: Uint8Array | string;
}

/** The client's side of a resumable session (section 20). */
interface ResumeState {
  offer: P.ResumeOffer;
  /** Counted messages received from the daemon, and when to acknowledge them. */
  incoming: P.ReceiveCounter;
  /** Counted messages produced, acknowledged by the daemon, and written to the current connection. */
  sent: number;
  acked: number;
  written: number;
  /** Bytes of the messages written and not yet acknowledged. */
  inFlight: number;
  /** Messages acked + 1 .. sent, oldest first, from kept[head]. */
  kept: Kept[];
  head: number;
}

function isResumeOffer(v: unknown): v is P.ResumeOffer {
  return isRecord(v) && typeof v['token'] === 'string' && typeof v['daemonId'] === 'string' && typeof v['graceMs'] === 'number' && v['graceMs'] > 0 && (v['url'] === undefined || typeof v['url'] === 'string');
}

function resumeUrl(base: string, session: string, daemonId: string): string {
  const u = new URL(base);
  u.searchParams.delete(P.RESUMABLE_QUERY);
  u.searchParams.set(P.RESUME_QUERY, session);
  u.searchParams.set(P.RESUME_DAEMON_QUERY, daemonId);
  return u.toString();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A resume attempt the daemon answered with a refusal: no use trying again. */
class ResumeRefused extends Error {}

/** A frame is sent as soon as it holds this much, without waiting for the microtask. */
const FLUSH_AT = 256 * 1024;
/**
 * ... or as soon as it holds this many records: the daemon starts on them while more are packed,
 * instead of the two ends taking turns on one huge frame each.
 */
const FLUSH_RECORDS = 64;
/** Room for one call's JSON header beside its bytes. */
const HEADER_ROOM = 64 * 1024;

/** The bytes a call's params carry (byte strings at the top level or in a top-level array). */
function payloadSize(params: Record<string, unknown>): number {
  let n = 0;
  for (const k in params) {
    const v = params[k];
    if (v instanceof Uint8Array) n += v.length;
    else if (Array.isArray(v)) for (const x of v) if (x instanceof Uint8Array) n += x.length;
  }
  return n;
}

/** Told of a call's reply as it is read, before any later record of the same frame. */
export interface ReplyListener {
  replied(r: Record<string, unknown>): void;
  /**
   * The reply carried the call's completion, read in place from a compact reply: told right
   * after replied(), whose r then has no completion member. A listener without it gets the
   * completion in r, as from any other reply.
   */
  completed?(error: number, bytes: number, flags: number): void;
  /** The call has begun to wait in the daemon (spiwire.waiting), before its reply. */
  waiting?(): void;
}

/**
 * What a call's caller makes of its reply, run as the reply is read: raw is the reply's result, or
 * undefined with err when the call failed (a JSON-RPC error, or the connection closing), and ctx
 * what the caller gave with it. What it returns, or throws, settles the call's promise: a caller
 * that only maps the reply costs one promise and one microtask per call, not one per step, and,
 * with ctx, no closure.
 */
export type ReplyStep<T, C = unknown> = (raw: Record<string, unknown> | undefined, err: Error | undefined, ctx: C) => T;

/** A call waiting for its reply (one shape for all calls: a class). */
class Pending {
  resolve: (v: unknown) => void = noop;
  reject: (e: Error) => void = noop;

  constructor(
    readonly listener: ReplyListener | undefined,
    readonly step: ReplyStep<unknown, unknown> | undefined,
    readonly ctx: unknown,
  ) {}
}

function noop(): void {}

/** The call whose promise is being made: its executor is one function for all, not a closure per call. */
let making: Pending | null = null;

function takeResolvers(resolve: (v: unknown) => void, reject: (e: Error) => void): void {
  making!.resolve = resolve;
  making!.reject = reject;
}

/** Settles a pending call with its reply (raw) or its failure (err), through its step when it has one. */
function settle(p: Pending, raw: Record<string, unknown> | undefined, err: Error | undefined): void {
  if (p.step === undefined) {
    if (err !== undefined) p.reject(err);
    else p.resolve(raw);
    return;
  }
  let v: unknown;
  try {
    v = p.step(raw, err, p.ctx);
  } catch (e) {
    p.reject(e instanceof Error ? e : new Error(String(e)));
    return;
  }
  p.resolve(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object';
}

/** The members of the welcome the SDK relies on: the limits, with the frame size among them. */
function isWelcome(v: unknown): v is Welcome {
  return isRecord(v) && isRecord(v['limits']) && typeof v['limits']['maxFrameBytes'] === 'number';
}

function isErrorObject(v: unknown): v is P.ErrorObject {
  return isRecord(v) && typeof v['code'] === 'number' && typeof v['message'] === 'string';
}

function errorName(code: number): string {
  return P.PROTOCOL_ERRORS.find((e) => e.code === code)?.name ?? String(code);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class RpcConnection {
  private nextId = 1;
  private readonly pending = new IdTable<Pending>();
  /**
   * Buffers of the frame builder whose frames the daemon has all acknowledged, for the builder to
   * write into again: kept frames stop it from reusing its buffer in place (recycle()).
   */
  private readonly spare: Uint8Array[] = [];
  private readonly out = new P.FrameBuilder((n, min) => this.frameBuffer(n, min), 64 * 1024);
  private flushScheduled = false;
  private closedReason: string | null = null;
  onNotification: (method: string, params: Record<string, unknown>) => void = () => undefined;
  onClose: (reason: string) => void = () => undefined;
  /** disconnected, resumed, lost (ConnectionEvents): the session's resume, as it happens. */
  readonly events = new EventEmitter<ConnectionEvents>();
  /** null: the session cannot be resumed (not offered, or turned off). */
  private resume: ResumeState | null = null;
  /** The frame being packed holds nothing but a spiwire.ack: it is not counted. */
  private ackOnly = false;
  /** An acknowledgement is due and rides on the next call packed before the loop's next turn (ack()). */
  private ackWaiting = false;
  /**
   * Acknowledgements in the frame being packed. They do not count towards FLUSH_RECORDS: in a
   * pipeline each reply frame brings as many completions as there were calls in the frame it
   * answers, so frames of FLUSH_RECORDS calls go round and round; an ack that counted pushed the
   * call that filled its frame into one of its own, a frame of one call that then went round too,
   * another with every ack, until small sends in a resumable session made 9 % more frames.
   */
  private acksPacked = 0;
  /** The connection is down and the SDK is reconnecting. */
  private reconnecting = false;
  /** The application closed (or dropped) the session: a close is the end. */
  private leaving = false;
  /** The WebSocket of a resume attempt under way, ended by close(). */
  private attempt: WebSocket | null = null;
  /** Something came from the daemon since the last heartbeat. */
  private heard = true;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly maskingKeys: MaskingKeys;

  private constructor(
    private ws: WebSocket,
    /** The connection under ws: the SDK writes its binary frames to it itself (masked-frames.ts). */
    private socket: Socket,
    readonly welcome: Welcome,
    private readonly url: string,
    private readonly opts: RpcOptions,
  ) {
    this.maskingKeys = opts.maskingKeys ?? 'zero';
    this.listen(ws);
    if (opts.resume !== false && isResumeOffer(welcome.resume)) {
      this.resume = { offer: { ...welcome.resume }, incoming: new P.ReceiveCounter(this.sendAck, opts.ackDelayMs), sent: 0, acked: 0, written: 0, inFlight: 0, kept: [], head: 0 };
      this.heartbeat = setInterval(this.beat, HEARTBEAT_MS);
      this.heartbeat.unref();
    }
  }

  /** Pings the daemon; drops a connection that brought nothing for a whole period (then resumes). */
  private readonly beat = (): void => {
    if (this.reconnecting || this.closedReason !== null || this.ws.readyState !== WebSocket.OPEN) return;
    if (!this.heard) {
      this.ws.terminate();
      return;
    }
    this.heard = false;
    this.ws.ping();
  };

  private listen(ws: WebSocket): void {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (ws !== this.ws) return;
      this.heard = true;
      this.onMessage(data, isBinary);
    });
    ws.on('pong', () => {
      if (ws === this.ws) this.heard = true;
    });
    ws.on('close', (code, reason) => {
      if (ws === this.ws) this.connectionClosed(code, reason.toString());
    });
    // 'close' follows; a session that can be resumed waits for it.
    ws.on('error', (err) => {
      if (ws === this.ws && this.resume === null) this.closed(`connection error: ${err.message}`);
    });
  }

  private static headers(opts: RpcOptions): Record<string, string> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
    return headers;
  }

  /** ws's options for every connection of a session: the first, resumes, the farewell. */
  private static wsOptions(opts: RpcOptions): WebSocket.ClientOptions & { lookup: ReturnType<typeof addressLookup> } {
    return {
      headers: RpcConnection.headers(opts),
      perMessageDeflate: false,
      maxPayload: 1024 * 1024 * 1024,
      // ws writes the control frames (and a few others) itself: the same masking keys for those.
      ...(opts.maskingKeys === 'random' ? {} : { generateMask: (mask: Buffer): void => void mask.fill(0) }),
      // A wss:// daemon is verified on every connection, resumes included.
      ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
      // ws hands its options to net.connect and tls.connect, which take a lookup.
      lookup: addressLookup(opts.addressOrder),
    };
  }

  static open(url: string, opts: RpcOptions = {}): Promise<RpcConnection> {
    if (opts.maskingKeys !== undefined && opts.maskingKeys !== 'zero' && opts.maskingKeys !== 'random') {
      return Promise.reject(new TypeError(`maskingKeys is 'zero' or 'random', not ${JSON.stringify(opts.maskingKeys)}`));
    }
    const badOrder = addressOrderError(opts.addressOrder);
    if (badOrder) return Promise.reject(badOrder);
    let ws: WebSocket;
    try {
      let target = url;
      if (opts.resume !== false) {
        const u = new URL(url);
        u.searchParams.set(P.RESUMABLE_QUERY, '1');
        target = u.toString();
      }
      ws = new WebSocket(target, [P.SUBPROTOCOL], RpcConnection.wsOptions(opts));
    } catch (err) {
      return Promise.reject(new SpiwireConnectError('bad-url', `${JSON.stringify(url)} is not a daemon URL (for example ws://127.0.0.1:7787/ws): ${messageOf(err)}`));
    }
    ws.binaryType = 'nodebuffer';
    let socket: Socket | null = null;
    ws.once('upgrade', (res) => (socket = res.socket ?? null));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new SpiwireConnectError('timeout', `no welcome from ${url} within ${opts.connectTimeoutMs ?? 10000} ms: is it a spiwire daemon?`));
      }, opts.connectTimeoutMs ?? 10000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          ws.terminate();
          fail(refusedUpgrade(url, res.statusCode ?? 0, body, opts.token !== undefined));
        });
      });
      ws.once('error', (err) => fail(unreachable(url, err)));
      ws.once('message', (data: Buffer, isBinary: boolean) => {
        clearTimeout(timer);
        ws.off('error', fail);
        try {
          const recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
          const first = recs[0];
          const msg = first?.ok && isRecord(first.message) ? first.message : undefined;
          const welcome = msg?.['params'];
          if (msg?.['method'] !== 'spiwire.welcome' || !isWelcome(welcome)) throw new SpiwireConnectError('not-spiwire', `${url} is not a spiwire daemon: the first message was not spiwire.welcome`);
          // ws reports its socket with the upgrade response, before the connection opens.
          if (socket === null) throw new Error('ws did not report the connection under the WebSocket');
          const conn = new RpcConnection(ws, socket, welcome, url, opts);
          // Compact headers only to a daemon that says it reads them (an older one would refuse them).
          conn.out.compact = opts.compact !== false && welcome.compactHeaders === true;
          // Any records packed after the welcome are handled normally.
          for (const r of recs.slice(1)) if (conn.isOpen) conn.handle(r);
          resolve(conn);
        } catch (err) {
          ws.terminate();
          // A frame that does not decode: whatever answered is not a spiwire daemon.
          reject(err instanceof SpiwireConnectError || !(err instanceof P.ProtocolError) ? err : new SpiwireConnectError('not-spiwire', `${url} is not a spiwire daemon: its first message does not decode (${err.message})`));
        }
      });
    });
  }

  get isOpen(): boolean {
    return this.closedReason === null;
  }

  /**
   * Sends a request; the params are encoded (and their bytes copied) before this returns.
   * listener, when given, hears the reply synchronously as it is read, before any later record of the
   * same frame (an operation's completion, for instance) is handled.
   */
  call(method: string, params: Record<string, unknown>, listener?: ReplyListener): Promise<Record<string, unknown>> {
    return this.callThen(method, params, listener, undefined, undefined) as Promise<Record<string, unknown>>;
  }

  /**
   * call(), with step making the caller's value of the reply (or of the failure) as it is read,
   * given ctx. A call made on a closed connection fails the same way, through step, before this
   * returns.
   */
  callThen<T, C>(method: string, params: Record<string, unknown>, listener: ReplyListener | undefined, step: ReplyStep<T, C> | undefined, ctx: C): Promise<T> {
    const entry = new Pending(listener, step as ReplyStep<unknown, unknown> | undefined, ctx);
    making = entry;
    const p = new Promise<unknown>(takeResolvers) as Promise<T>;
    making = null;
    if (this.closedReason !== null) {
      settle(entry, undefined, new ConnectionClosedError(this.closedReason));
      return p;
    }
    const id = this.nextId++;
    if (this.nextId > 0x7fffffff) this.nextId = 1;
    this.pending.set(id, entry);
    this.enqueue(id, method, params);
    return p;
  }

  /** Sends a notification (a call without id: nothing comes back), packed like calls are. */
  notify(method: string, params: Record<string, unknown>): void {
    if (this.closedReason === null) this.enqueue(null, method, params);
  }

  /** Adds a message to the frame being packed, which leaves when full or at the end of the tick. */
  private enqueue(id: number | null, method: string, params: Record<string, unknown>, ack = false): void {
    if (this.out.recordCount > 0) {
      const bytes = payloadSize(params);
      // Never let packing push a frame past the daemon's limit: flush first when this call would.
      if (this.out.byteLength + bytes + HEADER_ROOM > this.welcome.limits.maxFrameBytes) this.flush();
      // Kept frames stay where they were packed: a record that would not fit the buffer's room
      // starts a new frame, in a new buffer, instead of a large frame so far being copied over
      // there. A small one is copied: ending it early would split the calls of one run (see
      // acksPacked), and the split would go round the pipeline.
      else if (this.resume !== null && bytes + RECORD_SLACK > this.out.room && this.out.byteLength >= MOVE_FRAME_BELOW) this.flush();
    }
    // (After the flushes above: a frame holding only an ack is flushed as one, not counted.)
    if (this.ackWaiting) this.packAck();
    this.ackOnly = false;
    this.out.addCall(id, method, params);
    if (ack) this.acksPacked++;
    if (this.out.byteLength >= FLUSH_AT || this.out.recordCount - this.acksPacked >= FLUSH_RECORDS) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends raw bytes as one WebSocket message, for tests of the daemon's input handling. */
  sendRaw(data: Uint8Array | string): void {
    this.flush();
    const r = this.resume;
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    // Counted like any message (the daemon counts it), unless it is an ack alone.
    if (r !== null && !P.isAckOnlyMessage(bytes, typeof data !== 'string')) {
      r.sent++;
      r.kept.push({ data: bytes, key: null, raw: data });
      this.pump();
      return;
    }
    this.ws.send(data);
  }

  private flush(): void {
    this.flushScheduled = false;
    this.acksPacked = 0;
    if (this.out.recordCount === 0) return;
    const frame = this.out.finish();
    const r = this.resume;
    if (r !== null && !this.ackOnly) {
      // Counted: kept until the daemon acknowledges it, and written in turn (pump).
      r.sent++;
      r.kept.push({ data: frame, key: null });
      this.pump();
      return;
    }
    this.ackOnly = false;
    if (this.reconnecting || this.ws.readyState !== WebSocket.OPEN) return;
    writeMaskedBinaryFrame(this.socket, frame, this.maskingKeys);
    // Usually the kernel took the frame at once; then the builder may write the next frame over
    // it. Otherwise the socket still holds it, and the builder writes after it (or in a new buffer).
    // Frames kept for a resume live in the builder's buffer: it is reused only when none is left.
    if (this.socket.writableLength === 0 && (r === null || r.head === r.kept.length)) this.out.recycle();
  }

  /**
   * Memory for the frame builder (n wanted, min needed). Without resume the builder writes over
   * its buffer again once the socket has taken every frame, so it gets the room it asks for. With
   * resume, kept frames pin its buffers until acknowledged: buffers of one generous size (or of one
   * record's, for a 1 MiB piece of a large send) go back to spare as the daemon acknowledges them
   * and are taken again by the next record that fits, instead of fresh memory, which costs a page
   * fault per 4 KiB on the bulk path.
   */
  private frameBuffer(n: number, min: number): Uint8Array {
    if (this.resume === null) return Buffer.allocUnsafe(n);
    for (let i = 0; i < this.spare.length; i++) {
      const b = this.spare[i]!;
      if (b.byteLength >= min) {
        this.spare.splice(i, 1);
        return b;
      }
    }
    return Buffer.allocUnsafe(Math.max(min, RESUME_BUFFER));
  }


  /** Writes the kept messages not yet written to this connection, in order, within the send window. */
  private pump(): void {
    const r = this.resume;
    if (r === null || this.reconnecting || this.ws.readyState !== WebSocket.OPEN) return;
    // One message always fits, however large: the window holds back only those after it.
    while (r.written < r.sent && r.inFlight < SEND_WINDOW_BYTES) {
      const k = r.kept[r.head + (r.written - r.acked)]!;
      if (k.raw !== undefined) this.ws.send(k.raw);
      else k.key = writeMaskedBinaryFrame(this.socket, k.data, this.maskingKeys);
      r.inFlight += k.data.length;
      r.written++;
    }
  }

  /** A counted message arrived: acknowledge when P.ackDue says so, else after P.ACK_DELAY_MS. */
  private countReceived(data: Buffer, isBinary: boolean): void {
    const r = this.resume;
    r?.incoming.count(data, isBinary);
  }

  /**
   * An acknowledgement is due. Into a frame already being packed it goes at once. Alone it would
   * be a frame of its own, a write here and a wake-up of the daemon, usually just before the call
   * that the continuation of the reply makes: so it waits for the next call (enqueue packs it
   * first), or, when none comes, for the counter's timer (late), which sends it alone.
   */
  private readonly sendAck = (late: boolean): void => {
    if (late || this.out.recordCount > 0) this.packAck();
    else this.ackWaiting = true;
  };

  /** Packs a spiwire.ack of what has been counted; a frame that holds nothing else is not counted. */
  private packAck(): void {
    this.ackWaiting = false;
    const r = this.resume;
    if (r === null) return;
    if (this.reconnecting || this.closedReason !== null) return r.incoming.stop();
    const received = r.incoming.take();
    if (received === null) return;
    const alone = this.out.recordCount === 0;
    this.enqueue(null, 'spiwire.ack', { received }, true);
    if (alone) this.ackOnly = true;
  }

  /** spiwire.ack from the daemon: the messages it has received need not be kept. */
  private acknowledged(received: number): void {
    const r = this.resume;
    if (r === null || received <= r.acked) return;
    const upTo = Math.min(received, r.written);
    while (r.acked < upTo) {
      const k = r.kept[r.head]!;
      r.kept[r.head++] = EMPTY_KEPT;
      r.inFlight -= k.data.length;
      r.acked++;
      // The last frame of a buffer the builder has left: the whole buffer is free again.
      const chunk = k.data.buffer;
      const next = r.kept[r.head];
      if (k.raw === undefined && chunk !== this.out.current && (next === undefined || next.data.buffer !== chunk) && this.spare.length < MAX_SPARE) {
        this.spare.push(new Uint8Array(chunk));
      }
    }
    if (r.head === r.kept.length) {
      r.kept = [];
      r.head = 0;
      // Nothing kept refers to the builder's buffer any more: once the socket has written
      // everything, frames may be packed over it again, as without resume.
      if (r.written === r.sent && !this.reconnecting && this.socket.writableLength === 0) this.out.recycle();
    } else if (r.head > 1024 && r.head * 2 > r.kept.length) {
      r.kept = r.kept.slice(r.head);
      r.head = 0;
    }
    this.pump();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.resume !== null) this.countReceived(data, isBinary);
    if (!isBinary) {
      let rec: P.DecodedRecord;
      try {
        rec = P.decodeText(data.toString());
      } catch (err) {
        this.fail(`the daemon sent a bad frame: ${messageOf(err)}`);
        return;
      }
      this.handle(rec);
      return;
    }
    let frame: P.SplitFrame;
    try {
      frame = P.splitFrame(data);
    } catch (err) {
      this.fail(`the daemon sent a bad frame: ${messageOf(err)}`);
      return;
    }
    const reply = this.replyFields;
    for (let i = 0; i < frame.length; i++) {
      // A record that ended the connection ends the frame too.
      if (this.closedReason !== null) return;
      // Most records of a sending program are compact replies: those are read in place.
      if (frame.compactReply(i, reply)) this.handleCompactReply(reply);
      else this.handle(frame.record(i));
    }
  }

  /** Where compact replies are read in place, one after another. */
  private readonly replyFields = P.compactReplyFields();

  /** handle() for a compact reply read in place: the same result, without the message around it. */
  private handleCompactReply(f: P.CompactReply): void {
    const p = this.pending.get(f.id);
    if (!p) return;
    this.pending.delete(f.id);
    const listener = p.listener;
    const result = P.compactReplyResult(f, listener?.completed === undefined);
    if (listener !== undefined) {
      listener.replied(result);
      if (f.hasCompletion) listener.completed?.(f.error, f.bytes, f.flags);
    }
    settle(p, result, undefined);
  }

  private handle(rec: P.DecodedRecord): void {
    // A record that cannot be read, or read but not understood, may have been the reply to a call
    // or an operation's completion: that call would wait, and that operation stay pending, until
    // the connection closed. Nothing after it can be trusted either, so it ends the connection.
    if (!rec.ok) return this.fail(`the daemon sent a record the SDK cannot decode (${errorName(rec.error.code)}): ${rec.error.message}`);
    const m = rec.message;
    if (!isRecord(m)) return this.fail('the daemon sent a record the SDK cannot decode: its header is not a JSON-RPC message');
    const method = m['method'];
    if (typeof method === 'string') {
      const params = m['params'] ?? {};
      if (!isRecord(params)) return this.fail(`the daemon sent a record the SDK cannot decode: ${method} without params`);
      if (method === 'spiwire.ack') {
        const n = params['received'];
        if (typeof n === 'number') this.acknowledged(n);
        return;
      }
      if (method === 'spiwire.waiting') {
        const id = params['id'];
        if (typeof id === 'number') this.pending.get(id)?.listener?.waiting?.();
        return;
      }
      this.onNotification(method, params);
      return;
    }
    const id = m['id'];
    const error = m['error'] ?? undefined;
    if (typeof id !== 'number') {
      // An error about a record the daemon could not attribute (bad frame): surface it to listeners.
      if ((id === null || id === undefined) && isRecord(error)) this.onNotification('spiwire.unattributedError', error);
      else this.fail('the daemon sent a record the SDK cannot decode: neither a notification nor a reply to a call');
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const result = m['result'];
    if (error !== undefined) {
      // A JSON-RPC error: the daemon refused the request.
      if (isErrorObject(error) && result === undefined) settle(p, undefined, new SpiwireProtocolError(error.code, error.message, isRecord(error.data) ? error.data : undefined));
      else settle(p, undefined, badReply(id, 'its error is not an object {code, message}, or comes with a result'));
    } else if (isRecord(result)) {
      p.listener?.replied(result);
      settle(p, result, undefined);
    } else {
      settle(p, undefined, badReply(id, 'it has no result object and no error'));
    }
  }

  /** Ends the connection on the daemon's fault: every pending call fails with reason. */
  private fail(reason: string): void {
    this.closed(reason);
    this.ws.terminate();
  }

  private closed(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.reconnecting = false;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const r = this.resume;
    if (r !== null) {
      r.incoming.stop();
      r.kept = [];
      r.head = 0;
    }
    const pending = this.pending.values();
    this.pending.clear();
    for (const p of pending) settle(p, undefined, new ConnectionClosedError(reason));
    this.onClose(reason);
  }

  // ---- resume (proto/README.md section 20) ----

  /** The connection closed: the end, or a reconnection when it broke and the session can be resumed. */
  private connectionClosed(code: number, reason: string): void {
    const why = `connection closed (${code}${reason.length ? ` ${reason}` : ''})`;
    if (this.closedReason !== null || this.reconnecting) return;
    const r = this.resume;
    if (r === null || this.leaving || !RESUMABLE_CLOSE_CODES.has(code) || reason === 'daemon shutting down') {
      this.closed(why);
      return;
    }
    this.reconnecting = true;
    const deadline = performance.now() + r.offer.graceMs;
    this.events.emit('disconnected', { reason: why });
    void this.reconnect(why, deadline);
  }

  /** Tries to resume until the grace period runs out, with exponential backoff and jitter. */
  private async reconnect(why: string, deadline: number): Promise<void> {
    let wait = RECONNECT_FIRST_MS;
    let last = why;
    while (this.reconnecting) {
      const left = deadline - performance.now();
      if (left <= 0) return this.lose(`${why}; not resumed within the grace period (last attempt: ${last})`);
      try {
        await this.tryResume(Math.min(left, this.opts.connectTimeoutMs ?? 10000));
        return;
      } catch (err) {
        if (err instanceof ResumeRefused) return this.lose(`${why}; the daemon refused to resume the session: ${err.message}`);
        last = messageOf(err);
      }
      if (!this.reconnecting) return;
      // Full jitter on the upper half: clients cut at once do not come back in step.
      await sleep(Math.min(wait * (0.5 + Math.random() / 2), Math.max(0, deadline - performance.now())));
      wait = Math.min(wait * 2, RECONNECT_MAX_MS);
    }
  }

  private lose(reason: string): void {
    if (!this.reconnecting) return;
    this.closed(reason);
    this.events.emit('lost', { reason });
  }

  /** One resume attempt: resolves once the session is attached to a new connection. */
  private tryResume(timeoutMs: number): Promise<void> {
    const r = this.resume!;
    const ws = new WebSocket(resumeUrl(r.offer.url ?? this.url, this.welcome.session, r.offer.daemonId), [P.SUBPROTOCOL], RpcConnection.wsOptions(this.opts));
    ws.binaryType = 'nodebuffer';
    this.attempt = ws;
    let socket: Socket | null = null;
    ws.once('upgrade', (res) => (socket = res.socket ?? null));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no answer to spiwire.resume within ${timeoutMs} ms`)), timeoutMs);
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.attempt = null;
        ws.removeAllListeners('message');
        ws.on('error', () => undefined);
        ws.terminate();
        reject(err);
      };
      ws.once('unexpected-response', (_req, res) => {
        const status = res.statusCode ?? 0;
        // 4xx: this connection will never be let in (token, origin). 5xx: the daemon is busy (try
        // again), unless it says it is stopping: then the session is gone with it (section 16).
        if (status !== 503) {
          res.resume();
          fail(status >= 400 && status < 500 ? new ResumeRefused(`HTTP ${status}`) : new Error(`HTTP ${status}`));
          return;
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk.slice(0, 256)));
        res.on('end', () => fail(body.includes(P.SHUTTING_DOWN_REFUSAL) ? new ResumeRefused(`HTTP 503: ${P.SHUTTING_DOWN_REFUSAL}`) : new Error(`HTTP ${status}`)));
        res.on('error', () => fail(new Error(`HTTP ${status}`)));
      });
      ws.on('error', (err) => fail(err));
      ws.once('close', (code) => fail(new Error(`the connection closed during the resume (${code})`)));
      ws.once('open', () => {
        if (!this.reconnecting) return fail(new Error('the session was closed'));
        const hello = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 512);
        hello.add({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: this.welcome.session, token: r.offer.token, received: r.incoming.received, daemonId: r.offer.daemonId } });
        ws.send(hello.finish(), { binary: true });
      });
      ws.once('message', (data: Buffer, isBinary: boolean) => {
        clearTimeout(timer);
        let answer: unknown;
        try {
          const recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
          answer = recs.length === 1 && recs[0]!.ok ? recs[0]!.message : undefined;
        } catch {
          answer = undefined;
        }
        if (!isRecord(answer)) return fail(new ResumeRefused('the daemon\'s answer to spiwire.resume cannot be read'));
        const error = answer['error'];
        if (isErrorObject(error)) {
          const reason = isRecord(error.data) && typeof error.data['reason'] === 'string' ? error.data['reason'] : errorName(error.code);
          return fail(new ResumeRefused(`${reason}: ${error.message}`));
        }
        const params = answer['params'];
        const received = isRecord(params) ? params['received'] : undefined;
        const token = isRecord(params) ? params['token'] : undefined;
        if (answer['method'] !== 'spiwire.resumed' || typeof received !== 'number' || typeof token !== 'string' || received < r.acked || received > r.sent) {
          return fail(new ResumeRefused('the daemon\'s answer to spiwire.resume is not spiwire.resumed with a usable count'));
        }
        if (socket === null || !this.reconnecting) return fail(new Error('the session was closed'));
        settled = true;
        ws.removeAllListeners('close');
        ws.removeAllListeners('error');
        this.attempt = null;
        this.attach(ws, socket, token, received);
        resolve();
      });
    });
  }

  /** The session goes on over ws: the daemon replays what it sent after our count, we send again what it lacks. */
  private attach(ws: WebSocket, socket: Socket, token: string, received: number): void {
    const r = this.resume!;
    const old = this.ws;
    r.offer.token = token;
    this.ws = ws;
    this.socket = socket;
    this.listen(ws);
    old.removeAllListeners('message');
    old.terminate();
    // The daemon has received up to `received` (reconnecting still holds writes back); the messages
    // after it are written again, restored first where they were masked in place for the old
    // connection (its socket is gone).
    this.acknowledged(received);
    for (let i = r.head; i < r.kept.length; i++) {
      const k = r.kept[i]!;
      if (k.key !== null) unmask(k.data, k.key);
      k.key = null;
    }
    r.written = r.acked;
    r.inFlight = 0;
    // spiwire.resume told the daemon what we had received.
    r.incoming.told();
    this.reconnecting = false;
    this.heard = true;
    this.pump();
    // Anything packed meanwhile and not flushed yet.
    this.flush();
    this.events.emit('resumed', { reason: `resumed; the daemon had ${received} of ${r.sent} messages, ${r.sent - received} sent again` });
  }

  close(): Promise<void> {
    this.leaving = true;
    if (this.reconnecting) {
      this.attempt?.terminate();
      const farewell = this.farewell();
      this.closed('client closed the session');
      return farewell;
    }
    this.flush();
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close(1000, 'client closed the session');
      setTimeout(() => {
        this.ws.terminate();
      }, 2000).unref();
    });
  }

  /**
   * Closed while reconnecting: one quick resume, closed at once with 1000, so that the daemon ends
   * the session now rather than after its grace (its sockets close, peers see FIN). Best effort:
   * if the daemon cannot be reached, the session ends when the grace runs out.
   */
  private farewell(): Promise<void> {
    const r = this.resume;
    if (r === null) return Promise.resolve();
    const ws = new WebSocket(resumeUrl(r.offer.url ?? this.url, this.welcome.session, r.offer.daemonId), [P.SUBPROTOCOL], RpcConnection.wsOptions(this.opts));
    const received = r.incoming.received;
    const token = r.offer.token;
    return new Promise((resolve) => {
      const timer = setTimeout(() => ws.terminate(), FAREWELL_MS);
      timer.unref();
      ws.on('error', () => undefined);
      ws.once('unexpected-response', () => ws.terminate());
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('open', () => {
        const hello = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 512);
        hello.add({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: this.welcome.session, token, received, daemonId: r.offer.daemonId } });
        ws.send(hello.finish(), { binary: true });
      });
      // Whatever the answer, this connection's work is done: a resumed session ends with 1000.
      ws.once('message', () => ws.close(1000, 'client closed the session'));
    });
  }

  /** Drops the connection without a close handshake (tests of a vanished client): no resume follows. */
  terminate(): void {
    this.leaving = true;
    this.attempt?.terminate();
    this.ws.terminate();
    if (this.reconnecting) this.closed('client dropped the session');
  }
}

/** The error codes of a failed connection and its causes. */
function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  const collect = (e: unknown): void => {
    if (!isRecord(e)) return;
    if (typeof e['code'] === 'string') codes.push(e['code']);
    if (Array.isArray(e['errors'])) for (const x of e['errors']) collect(x);
    collect(e['cause']);
  };
  collect(err);
  return codes;
}

/** A connection that failed before the upgrade answered, worded for the caller. */
function unreachable(url: string, err: Error): SpiwireConnectError {
  const codes = errorCodes(err);
  const at = `cannot reach the spiwire daemon at ${url}`;
  if (codes.includes('ECONNREFUSED')) return new SpiwireConnectError('unreachable', `${at}: connection refused (is it running?)`);
  // The daemon's certificate did not verify: say so plainly, never connect anyway.
  const tls = codes.find((c) => /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME/.test(c));
  if (tls) return new SpiwireConnectError('tls', `${at}: its TLS certificate does not verify (${tls}: ${err.message}); pass the CA that signed it as the ca option (or NODE_EXTRA_CA_CERTS)`);
  if (/wrong version number|EPROTO/i.test(err.message) || codes.includes('EPROTO')) return new SpiwireConnectError('tls', `${at}: the TLS handshake failed (${err.message}): is the daemon serving plain ws:// rather than wss://?`);
  if (codes.includes('ENOTFOUND') || codes.includes('EAI_AGAIN')) return new SpiwireConnectError('unreachable', `${at}: the host name does not resolve`);
  if (codes.includes('EHOSTUNREACH') || codes.includes('ENETUNREACH') || codes.includes('ETIMEDOUT')) return new SpiwireConnectError('unreachable', `${at}: the host is unreachable`);
  // The server took the connection and then did not complete a WebSocket upgrade of ours: it
  // closed it, answered something that is not HTTP, or chose no (or another) subprotocol.
  if (codes.includes('ECONNRESET') || /socket hang up|subprotocol|Invalid|Unexpected|Parse Error/i.test(err.message)) {
    return new SpiwireConnectError('not-spiwire', `${url} is not a spiwire daemon: the WebSocket handshake failed (${err.message})`);
  }
  return new SpiwireConnectError('unreachable', `${at}: ${err.message}`);
}

/** An upgrade answered with an HTTP status: the daemon's refusal, or a server that is not one. */
function refusedUpgrade(url: string, status: number, body: string, withToken: boolean): SpiwireConnectError {
  let said: string | null = null;
  try {
    const parsed: unknown = JSON.parse(body);
    // Every refusal of a spiwire daemon is {"error": "..."}.
    if (isRecord(parsed) && typeof parsed['error'] === 'string') said = parsed['error'];
  } catch {
    // Not JSON: not a spiwire daemon's answer.
  }
  if (said === null) return new SpiwireConnectError('not-spiwire', `${url} is not a spiwire daemon: it answered the WebSocket upgrade with HTTP ${status}`, status);
  if (status === 401) {
    return new SpiwireConnectError('token', withToken ? `the daemon at ${url} refused the token (HTTP 401): check the token option` : `the daemon at ${url} requires a token (HTTP 401): pass it with the token option`, status);
  }
  return new SpiwireConnectError('refused', `the daemon at ${url} refused the session (HTTP ${status}): ${said}`, status);
}

const EMPTY_KEPT: Kept = { data: new Uint8Array(0), key: null };
