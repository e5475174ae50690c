/**
 * The SDK's connection to the daemon: JSON-RPC requests packed several to a binary frame and
 * flushed on a microtask, replies matched by id, notifications handed to a listener.
 */
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { writeMaskedBinaryFrame } from './masked-frames.js';

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
}

export interface Welcome {
  session: string;
  version: string;
  protocol: number;
  limits: P.WelcomeLimits;
  /** The daemon reads compact record headers (absent from daemons that do not). */
  compactHeaders?: boolean;
}

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
}

type Pending = { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void; listener: ReplyListener | undefined };

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
  private readonly pending = new Map<number, Pending>();
  private readonly out = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 64 * 1024);
  private flushScheduled = false;
  private closedReason: string | null = null;
  onNotification: (method: string, params: Record<string, unknown>) => void = () => undefined;
  onClose: (reason: string) => void = () => undefined;

  private constructor(
    private readonly ws: WebSocket,
    /** The connection under ws: the SDK writes its binary frames to it itself (masked-frames.ts). */
    private readonly socket: Socket,
    readonly welcome: Welcome,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary));
    ws.on('close', (code, reason) => this.closed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
    ws.on('error', (err) => this.closed(`connection error: ${err.message}`));
  }

  static open(url: string, opts: RpcOptions = {}): Promise<RpcConnection> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, [P.SUBPROTOCOL], { headers, perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024, ...(opts.ca !== undefined ? { ca: opts.ca } : {}) });
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
          const conn = new RpcConnection(ws, socket, welcome);
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
    if (this.closedReason !== null) return Promise.reject(new ConnectionClosedError(this.closedReason));
    const id = this.nextId++;
    if (this.nextId > 0x7fffffff) this.nextId = 1;
    const p = new Promise<Record<string, unknown>>((resolve, reject) => this.pending.set(id, { resolve, reject, listener }));
    this.enqueue({ jsonrpc: '2.0', id, method, params }, params);
    return p;
  }

  /** Sends a notification (a call without id: nothing comes back), packed like calls are. */
  notify(method: string, params: Record<string, unknown>): void {
    if (this.closedReason === null) this.enqueue({ jsonrpc: '2.0', method, params }, params);
  }

  /** Adds a message to the frame being packed, which leaves when full or at the end of the tick. */
  private enqueue(message: object, params: Record<string, unknown>): void {
    // Never let packing push a frame past the daemon's limit: flush first when this call would.
    if (this.out.recordCount > 0 && this.out.byteLength + payloadSize(params) + HEADER_ROOM > this.welcome.limits.maxFrameBytes) this.flush();
    this.out.add(message);
    if (this.out.byteLength >= FLUSH_AT || this.out.recordCount >= FLUSH_RECORDS) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends raw bytes as one WebSocket message, for tests of the daemon's input handling. */
  sendRaw(data: Uint8Array | string): void {
    this.flush();
    this.ws.send(data);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.out.recordCount === 0) return;
    const frame = this.out.finish();
    if (this.ws.readyState !== WebSocket.OPEN) return;
    writeMaskedBinaryFrame(this.socket, frame);
    // Usually the kernel took the frame at once; then the builder may write the next frame over
    // it. Otherwise the socket still holds it, and the builder writes after it (or in a new buffer).
    if (this.socket.writableLength === 0) this.out.recycle();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    let recs: P.DecodedRecord[];
    try {
      recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
    } catch (err) {
      this.fail(`the daemon sent a bad frame: ${messageOf(err)}`);
      return;
    }
    for (const r of recs) {
      // A record that ended the connection ends the frame too.
      if (this.closedReason !== null) return;
      this.handle(r);
    }
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
      if (isErrorObject(error) && result === undefined) p.reject(new SpiwireProtocolError(error.code, error.message, isRecord(error.data) ? error.data : undefined));
      else p.reject(badReply(id, 'its error is not an object {code, message}, or comes with a result'));
    } else if (isRecord(result)) {
      p.listener?.replied(result);
      p.resolve(result);
    } else {
      p.reject(badReply(id, 'it has no result object and no error'));
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
    for (const p of this.pending.values()) p.reject(new ConnectionClosedError(reason));
    this.pending.clear();
    this.onClose(reason);
  }

  close(): Promise<void> {
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

  /** Drops the connection without a close handshake (tests of a vanished client). */
  terminate(): void {
    this.ws.terminate();
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
