/**
 * What the server tests share: a minimal wire client on a plain `ws` WebSocket speaking the
 * protocol with the proto codec (no SDK in between), SPI helpers over it, a node:net peer, the
 * daemon embedded or as its own process (the CLI), and small timing helpers.
 *
 * Not a test file itself: tap only runs *.test.js.
 */
import type { Test } from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { startServer, type Daemon, type StartOptions } from '../../src/index.js';
import { TurnBudget } from '../../src/internals.js';

// ---- a minimal wire client ----

/** A message from the daemon, typed loosely: tests check its shape themselves. */
export interface Msg {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: Record<string, unknown>;
}

export interface ConnectOpts {
  /** The subprotocols offered; spiwire.v1 alone when absent. */
  protocols?: string[];
  /** Sent as "Authorization: Bearer <token>". */
  token?: string;
  headers?: Record<string, string>;
}

export type UpgradeResult = { kind: 'refused'; status: number; body: string } | { kind: 'open'; session: RawSession } | { kind: 'error'; error: Error };

export class RawSession {
  readonly messages: Msg[] = [];
  /** Frames or records from the daemon that did not decode: the daemon must never send those. */
  readonly undecodable: string[] = [];
  /** Records from the daemon that came with compact headers (proto/README.md section 3). */
  compactRecords = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<{ check: () => boolean; fail: (err: Error) => void }>();
  private nextId = 1;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        const recs = isBinary ? P.decodeFrame(data) : [P.decodeText(data.toString('utf8'))];
        for (const r of recs) {
          if (!r.ok) {
            this.undecodable.push(r.error.message);
            continue;
          }
          this.messages.push(r.message as Msg);
          if (r.compact) this.compactRecords++;
        }
      } catch (err) {
        this.undecodable.push((err as Error).message);
      }
      for (const w of [...this.waiters]) if (w.check()) this.waiters.delete(w);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        for (const w of this.waiters) w.fail(new Error(`connection closed (${code})`));
        this.waiters.clear();
        resolve({ code, reason: reason.toString() });
      }),
    );
    ws.on('error', () => undefined);
  }

  /**
   * Resolves once spiwire.welcome arrived. Rejects with the socket error (its `code`, such as
   * ECONNREFUSED, kept), or on an HTTP refusal with an error carrying `status` and `body`.
   */
  static async open(url: string, opts: ConnectOpts = {}): Promise<RawSession> {
    const r = await upgrade(url, opts);
    if (r.kind === 'open') return r.session;
    if (r.kind === 'refused') throw Object.assign(new Error(`HTTP ${r.status} ${r.body}`), { status: r.status, body: r.body });
    throw r.error;
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** The first message (already received or still to come) that pred accepts; rejects on time-out or when the connection closes. */
  wait(pred: (m: Msg) => boolean, timeoutMs = 5000): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const found = this.messages.find(pred);
      if (found) return resolve(found);
      if (this.ws.readyState === WebSocket.CLOSED) return reject(new Error('connection closed'));
      const w = {
        check: (): boolean => {
          const m = this.messages.find(pred);
          if (!m) return false;
          clearTimeout(timer);
          resolve(m);
          return true;
        },
        fail: (err: Error): void => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /**
   * Sends a request in a binary frame and returns its id and a promise of the response (not
   * awaited by the caller when the call blocks; a rejection nobody awaits is not reported).
   */
  request(method: string, params: Record<string, unknown>, timeoutMs = 5000): { id: string; response: Promise<Msg> } {
    const id = `raw-${this.nextId++}`;
    this.ws.send(P.encodeFrame({ jsonrpc: '2.0', id, method, params }));
    const response = this.wait((m) => m.id === id && (m.result !== undefined || m.error !== undefined), timeoutMs);
    response.catch(() => undefined);
    return { id, response };
  }

  /** A call that must succeed at the protocol level; returns the SPI result. */
  async call(method: string, params: Record<string, unknown>, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const m = await this.request(method, params, timeoutMs).response;
    if (!m.result) throw new Error(`${method}: protocol error ${JSON.stringify(m.error)}`);
    return m.result;
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), 1000);
    return this.closed.then(() => clearTimeout(timer));
  }
}

/** Attempts a WebSocket upgrade; resolves with the HTTP refusal, or an open session once spiwire.welcome arrived. */
export function upgrade(url: string, opts: ConnectOpts = {}): Promise<UpgradeResult> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`;
  const ws = new WebSocket(url, opts.protocols ?? [P.SUBPROTOCOL], { headers, perMessageDeflate: false });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve({ kind: 'error', error: new Error('no answer within 5 s') });
    }, 5000);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        clearTimeout(timer);
        ws.terminate();
        resolve({ kind: 'refused', status: res.statusCode ?? 0, body });
      });
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      resolve({ kind: 'error', error });
    });
    ws.once('open', () => {
      const s = new RawSession(ws);
      s.wait((m) => m.method === 'spiwire.welcome').then(
        () => {
          clearTimeout(timer);
          resolve({ kind: 'open', session: s });
        },
        (error: Error) => {
          clearTimeout(timer);
          ws.terminate();
          resolve({ kind: 'error', error });
        },
      );
    });
  });
}

/** An open session, closed in t's teardown. */
/** The TCP connection under a client's WebSocket, for bytes that are not whole frames (frames written by hand). */
export function rawSocketOf(ws: WebSocket): net.Socket {
  return (ws as unknown as { _socket: net.Socket })._socket;
}

export async function session(t: Test, url: string, opts: ConnectOpts = {}): Promise<RawSession> {
  const s = await RawSession.open(url, opts);
  t.teardown(() => s.close());
  return s;
}

/**
 * Until t ends, the embedded daemon's turn budget is always spent: whatever works a slice of the
 * turn at a time (a frame's records, a replay, threadExit's cancellations) yields at every look
 * at the clock, which makes its slices visible in the messages a test receives.
 */
export function turnAlwaysSpent(t: Test): void {
  const spent = TurnBudget.prototype.spent;
  TurnBudget.prototype.spent = () => true;
  t.teardown(() => {
    TurnBudget.prototype.spent = spent;
  });
}

/** The daemon embedded in this process on a free loopback port, closed in t's teardown. */
export async function daemon(t: Test, opts: StartOptions = {}): Promise<Daemon> {
  const d = await startServer({ port: 0, ...opts });
  t.teardown(() => d.close());
  return d;
}

/** A logger for an embedded daemon whose lines (parsed JSON) the test reads. */
export function collectedLog(level = 'info'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}

// ---- SPI helpers over the raw client ----

export const ipv4 = (port: number): P.SockAddr => ({ family: P.AF_INET, address: '127.0.0.1', port });

/**
 * A port on host that was just free (bound to port 0, noted, closed): a TCP connect to it is
 * refused, a datagram to it draws an ICMP port unreachable. Rejects when host cannot be bound.
 */
export async function closedPort(kind: 'tcp' | 'udp' = 'tcp', host = '127.0.0.1'): Promise<number> {
  if (kind === 'udp') {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, host, () => resolve());
    });
    const port = sock.address().port;
    await new Promise<void>((r) => sock.close(() => r()));
    return port;
  }
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, host, () => resolve());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export async function tcpSocket(s: RawSession, flags = 0): Promise<number> {
  const r = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags });
  if (r['errno'] !== 0) throw new Error(`WSPSocket failed: ${String(r['errno'])}`);
  return r['ret'] as number;
}

export async function udpSocket(s: RawSession, af: number = P.AF_INET, flags = 0): Promise<number> {
  const r = await s.call('WSPSocket', { af, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags });
  if (r['errno'] !== 0) throw new Error(`WSPSocket failed: ${String(r['errno'])}`);
  return r['ret'] as number;
}

export async function connectTo(s: RawSession, h: number, port: number): Promise<void> {
  const r = await s.call('WSPConnect', { s: h, name: ipv4(port), namelen: 16 });
  if (r['ret'] !== 0) throw new Error(`WSPConnect failed: ${String(r['errno'])}`);
}

/** A TCP socket of s (made with flags) connected to peer, and the peer's next connection: its side of it. */
export async function connectedSocket(s: RawSession, peer: Peer, flags = 0): Promise<{ h: number; conn: PeerConn }> {
  const h = await tcpSocket(s, flags);
  await connectTo(s, h, peer.port);
  return { h, conn: await peer.next() };
}

export async function sendBytes(s: RawSession, h: number, data: Uint8Array): Promise<Record<string, unknown>> {
  return s.call('WSPSend', { s: h, buffers: [data], flags: 0 });
}

// ---- a node:net peer ----

export interface PeerConn {
  socket: net.Socket;
  received(): Buffer;
  waitFor(n: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolves with 'end' or 'close', whichever the peer sees first. */
  gone: Promise<string>;
}

export interface Peer {
  port: number;
  connections: PeerConn[];
  next(timeoutMs?: number): Promise<PeerConn>;
}

/** A loopback TCP server that sends nothing and keeps what it receives; closed in t's teardown. */
export async function tcpPeer(t: Test): Promise<Peer> {
  const connections: PeerConn[] = [];
  let waiting: Array<() => void> = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    const chunks: Buffer[] = [];
    let size = 0;
    let dataWaiters: Array<() => void> = [];
    socket.on('error', () => undefined);
    socket.on('data', (b: Buffer) => {
      chunks.push(b);
      size += b.length;
      const w = dataWaiters;
      dataWaiters = [];
      for (const f of w) f();
    });
    const gone = new Promise<string>((resolve) => {
      socket.once('end', () => resolve('end'));
      socket.once('close', () => resolve('close'));
    });
    const received = (): Buffer => Buffer.concat(chunks, size);
    connections.push({
      socket,
      received,
      gone,
      waitFor(n, timeoutMs = 10000) {
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`peer has ${size} bytes, expected ${n}`)), timeoutMs);
          const check = (): void => {
            if (size >= n) {
              clearTimeout(timer);
              resolve(received());
            } else dataWaiters.push(check);
          };
          check();
        });
      },
    });
    const w = waiting;
    waiting = [];
    for (const f of w) f();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  let taken = 0;
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    next(timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no connection within the time limit')), timeoutMs);
        const check = (): void => {
          const c = connections[taken];
          if (c) {
            taken++;
            clearTimeout(timer);
            resolve(c);
          } else waiting.push(check);
        };
        check();
      });
    },
  };
}

export interface SilentPeer {
  port: number;
  /** Bytes read so far, by every connection. */
  received(): number;
  /** The connections start reading. */
  resume(): void;
}

/**
 * A loopback TCP server whose connections read nothing until resume(): what is sent to it stays
 * in the kernel, so sends fill the buffers and whatever waits for delivery waits. Closed in t's
 * teardown.
 */
export async function silentPeer(t: Test): Promise<SilentPeer> {
  const held: net.Socket[] = [];
  let received = 0;
  const server = net.createServer({ pauseOnConnect: true }, (c) => {
    c.on('error', () => undefined);
    c.on('data', (b: Buffer) => (received += b.length));
    held.push(c);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const c of held) c.destroy();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => received,
    resume: () => held.forEach((c) => c.resume()),
  };
}

/** The error a connect to 127.0.0.1:port ends with, or 'connected'. */
export function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, 2000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
  });
}

// ---- timing and data ----

/** p's value, or fallback when p takes longer than ms; the timer never outlives p. */
export function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * A round trip on the session: a quick call (WSPGetSockOpt on a handle the daemon never hands out)
 * and its reply. The daemon handles a session's calls in the order they arrive and sends what it
 * produced before an answer ahead of it (proto/README.md, section 6 "Order"): once the reply is
 * here, every message the daemon had produced for the session by then is in s.messages. Used to
 * prove that a call is still unanswered without waiting for time to pass.
 */
export async function roundTrip(s: RawSession): Promise<void> {
  await s.call('WSPGetSockOpt', { s: 0, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
}

/** Polls cond every stepMs until it holds or timeoutMs passed; returns whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, stepMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Deterministic bytes (xorshift32), as the e2e harness does. */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

// ---- the daemon as its own process (the CLI) ----

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface Run {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Cli extends Run {
  url: string;
  port: number;
  /** stdout so far as JSON log lines ({ unparsed } for a line that is not JSON). */
  lines(): Array<Record<string, unknown>>;
}

/** process.env without any SPIWIRE_ variable, plus extra. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SPIWIRE_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs the CLI with args (and env on top of a clean environment); killed in t's teardown if still running. */
/**
 * Daemons this test process started: killed by PID if the process is made to stop before its
 * teardown runs (tap's timeout sends SIGTERM), so that no daemon outlives its test.
 */
const children = new Set<ChildProcess>();
let reaperInstalled = false;

export function reapOnExit(proc: ChildProcess): void {
  children.add(proc);
  proc.once('close', () => children.delete(proc));
  if (reaperInstalled) return;
  reaperInstalled = true;
  const reap = (): void => {
    for (const c of children) c.kill('SIGKILL');
  };
  process.once('exit', reap);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      reap();
      process.exit(1);
    });
  }
}

/** openFiles: the daemon runs under that open-file limit (soft and hard, set by sh's ulimit). */
export function run(t: Test, args: string[], env: Record<string, string> = {}, openFiles?: number): Run {
  const proc =
    openFiles === undefined
      ? spawn(process.execPath, [MAIN, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('sh', ['-c', `ulimit -n ${openFiles} && exec "$0" "$@"`, process.execPath, MAIN, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  reapOnExit(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

export function jsonLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      out.push({ unparsed: line });
    }
  }
  return out;
}

/** Starts the CLI on a free port with --log-level info (under openFiles, see run) and waits (up to 10 s) for the log line carrying "url". */
export async function startCli(t: Test, args: string[] = [], openFiles?: number): Promise<Cli> {
  const r = run(t, ['--port', '0', '--log-level', 'info', ...args], {}, openFiles);
  const url = await new Promise<string>((resolve, reject) => {
    const fail = (why: string): void => reject(new Error(`${why}; stdout: ${r.stdout()} stderr: ${r.stderr()}`));
    const timer = setTimeout(() => fail('the daemon logged no url within 10 s'), 10000);
    const look = (): void => {
      const u = jsonLines(r.stdout())
        .map((l) => l['url'])
        .find((x): x is string => typeof x === 'string');
      if (u === undefined) return;
      clearTimeout(timer);
      r.proc.stdout!.off('data', look);
      resolve(u);
    };
    // Registered after run()'s own listener, so r.stdout() already holds the chunk.
    r.proc.stdout!.on('data', look);
    void r.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      fail(`the daemon exited (${code ?? signal}) before listening`);
    });
  });
  return { ...r, url, port: Number(new URL(url).port), lines: () => jsonLines(r.stdout()) };
}

/**
 * One record of a binary frame built by hand (section 3): the header bytes go as given, so they
 * can be anything, and so can the two length fields (headerLen, dataLen: the true lengths unless
 * given).
 */
export function rawRecord(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0), headerLen?: number, dataLen?: number): Buffer {
  const h = Buffer.from(header);
  const out = Buffer.alloc(8 + h.length + data.length);
  out.writeUInt32LE(headerLen ?? h.length, 0);
  h.copy(out, 4);
  out.writeUInt32LE(dataLen ?? data.length, 4 + h.length);
  out.set(data, 8 + h.length);
  return out;
}

// ---- a WebSocket client by hand, for what a library will not do (write with the upgrade, stop halfway) ----

/** A masked client frame (RFC 6455), final, with the zero key (the identity). */
export function maskedFrame(opcode: number, payload: Uint8Array): Buffer {
  const n = payload.length;
  const len = n < 126 ? [0x80 | n] : n < 65536 ? [0x80 | 126, n >> 8, n & 0xff] : null;
  if (len === null) throw new Error('maskedFrame: up to 65535 bytes');
  return Buffer.concat([Buffer.from([0x80 | opcode, ...len, 0, 0, 0, 0]), payload]);
}

export interface ServerFrame {
  opcode: number;
  payload: Buffer;
}

/** One server frame (unmasked) at the start of buf and its size, or null while incomplete. */
function serverFrame(buf: Buffer): (ServerFrame & { size: number }) | null {
  if (buf.length < 2) return null;
  let len = buf[1]! & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  if (buf.length < at + len) return null;
  return { opcode: buf[0]! & 0x0f, payload: buf.subarray(at, at + len), size: at + len };
}

/** A WebSocket connection spoken by hand over a TCP socket: the upgrade, then frames as they come. */
export class HandWebSocket {
  private buf = Buffer.alloc(0);
  private upgraded = false;
  private readonly got: ServerFrame[] = [];
  /** Waits to wake when frames come or the connection fails. */
  private readonly wakes = new Set<() => void>();
  private failure: Error | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('the connection closed')));
  }

  /** Connects, writes the upgrade of path with andThen in the same write, and waits for the 101. */
  static async open(t: Test, port: number, path: string, andThen: Uint8Array = new Uint8Array(0)): Promise<HandWebSocket> {
    // Half open: the daemon's FIN does not end this side, which closes only when told.
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const ws = new HandWebSocket(socket);
    t.teardown(() => socket.destroy());
    const key = Buffer.alloc(16, 7).toString('base64');
    const upgrade = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Protocol: ${P.SUBPROTOCOL}\r\n\r\n`;
    socket.write(Buffer.concat([Buffer.from(upgrade), andThen]));
    await ws.until(() => ws.upgraded);
    return ws;
  }

  send(frame: Uint8Array): void {
    this.socket.write(frame);
  }

  /** The first count frames the daemon sent (waits for them). */
  async frames(count: number): Promise<ServerFrame[]> {
    await this.until(() => this.got.length >= count);
    return this.got.slice(0, count);
  }

  /** The first frame with this opcode (waits for it). */
  async frameOf(opcode: number): Promise<ServerFrame> {
    await this.until(() => this.got.some((f) => f.opcode === opcode));
    return this.got.find((f) => f.opcode === opcode)!;
  }

  private onData(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c]);
    if (!this.upgraded) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) return this.fail(new Error(`upgrade refused: ${head}`));
      this.buf = this.buf.subarray(end + 4);
      this.upgraded = true;
    }
    for (let f = serverFrame(this.buf); f !== null; f = serverFrame(this.buf)) {
      this.got.push({ opcode: f.opcode, payload: f.payload });
      this.buf = this.buf.subarray(f.size);
    }
    this.wakeAll();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const w of [...this.wakes]) w();
  }

  /** Until cond holds; fails when the connection does first, or after timeoutMs (a test then fails, not hangs). */
  private async until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.failure !== null) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`HandWebSocket: not within ${timeoutMs} ms (${this.got.length} frames so far)`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.wakes.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.wakes.add(wake);
      });
    }
  }
}
