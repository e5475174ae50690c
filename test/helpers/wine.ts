/**
 * Shared pieces of the Wine conformance port (test/conformance/wine/): Wine's dlls/ws2_32/tests/sock.c
 * runs against real Windows, so what its ok() lines assert is what Windows does. Each test file
 * here translates one Wine test function (or a few small ones) into calls of the SPI functions of
 * the SDK, over real loopback sockets, and asserts Windows' values.
 *
 * Conventions:
 * - A case is a top-level tap subtest named "<wine function>: <what it checks>". A case that
 *   spiwire does not (yet) do as Windows does carries tap's `todo` option, with the text
 *   "Windows: <expected>; spiwire: <observed>" (or the written reason of a deliberate departure).
 * - Wine's tests are sequences: later checks depend on the state earlier ones left behind. A
 *   sequence is a `Scenario`: its state is made once per family (127.0.0.1 and ::1) by the first
 *   case that needs it, and the following cases, which tap runs one after another, go on with it.
 *   Every case runs its body for both families; assertion messages start with the family.
 * - Events are waited for, not slept on. Only the absence of an event needs a bounded wait, and
 *   then the bound is the one Wine itself uses (0 or 200 ms).
 */
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import type { Test } from 'tap';
import * as S from '@spiwire/client';
import { startServer, type Daemon, type StartOptions } from '@spiwire/server';
import { FAMILIES, addr, af, emptyAddr, loopback, namelen, type Family } from './harness.js';

export { FAMILIES, addr, af, emptyAddr, loopback, namelen, type Family };

// ---------------------------------------------------------------------------------------------
// Assertions prefixed with the family, so that one case can cover 127.0.0.1 and ::1.

export interface Check {
  readonly f: Family;
  equal(found: unknown, wanted: unknown, msg: string): void;
  not(found: unknown, notWanted: unknown, msg: string): void;
  ok(v: unknown, msg: string): void;
  same(found: unknown, wanted: unknown, msg: string): void;
}

/**
 * The checks of one case for one family. In a todo case every assertion carries the todo text
 * (tap then reports a failing one as "not ok ... # TODO" without failing the run); failures are
 * counted here, since a todo assertion always reports success to its caller.
 */
export function checker(t: Test, f: Family, todo?: string, failed?: { n: number }): Check {
  const m = (msg: string): string => `${f}: ${msg}`;
  const extra = todo ? { todo, diagnostic: true } : {};
  const note = (pass: boolean): void => {
    if (!pass && failed) failed.n++;
  };
  return {
    f,
    equal: (found, wanted, msg) => {
      note(found === wanted);
      t.equal(found, wanted, m(msg), extra);
    },
    not: (found, notWanted, msg) => {
      note(found !== notWanted);
      t.not(found, notWanted, m(msg), extra);
    },
    ok: (v, msg) => {
      note(!!v);
      t.ok(v, m(msg), extra);
    },
    same: (found, wanted, msg) => {
      note(isDeepStrictEqual(found, wanted));
      t.same(found, wanted, m(msg), extra);
    },
  };
}

/** Case options: a todo text when spiwire departs from Windows here. */
export interface CaseOptions {
  todo?: string;
  /** Run for these families only (default both). */
  families?: readonly Family[];
}

/**
 * Defines a case that runs body once per family (sequentially). A todo case still runs: tap's
 * `todo` option given when the subtest is made would skip its body (and with it the actions later
 * cases of a sequence rely on), so the option is set on the running subtest instead, which marks
 * its result line "# TODO <text>", and each assertion carries the text too, so that its failures
 * do not fail the run. A todo case whose checks all pass says so in a comment: the departure may
 * have been fixed. An exception in a todo case is reported as a todo failure as well.
 */
export function wineCase(t: Test, name: string, opts: CaseOptions, body: (c: Check) => Promise<void>): void {
  t.test(name, async (tt) => {
    if (opts.todo) (tt.options as { todo?: string }).todo = opts.todo;
    EVENT_BOUND_MS = opts.todo ? 1000 : 5000;
    const failed = { n: 0 };
    for (const f of opts.families ?? FAMILIES) {
      try {
        await body(checker(tt, f, opts.todo, failed));
      } catch (err) {
        if (!opts.todo) throw err;
        failed.n++;
        tt.fail(`${f}: ${(err as Error)?.message ?? String(err)}`, { todo: opts.todo });
      }
    }
    if (opts.todo && failed.n === 0) tt.comment(`todo case passed every check: the departure may be fixed (${name})`);
  });
}

/** A sequence of cases sharing state per family, made lazily by the first case that asks. */
export class Scenario<C> {
  private readonly made = new Map<Family, Promise<C>>();

  constructor(
    private readonly setup: (f: Family) => Promise<C>,
  ) {}

  get(f: Family): Promise<C> {
    let p = this.made.get(f);
    if (!p) {
      p = this.setup(f);
      this.made.set(f, p);
    }
    return p;
  }

  /** Defines a case of the sequence. */
  step(t: Test, name: string, opts: CaseOptions, body: (c: Check, ctx: C) => Promise<void>): void {
    wineCase(t, name, opts, async (c) => body(c, await this.get(c.f)));
  }
}

// ---------------------------------------------------------------------------------------------
// The daemon and sessions.

/** One daemon for a test file (stopped in the file's teardown). */
export async function fileDaemon(t: Test, opts: StartOptions = {}): Promise<Daemon> {
  const d = await startServer({ port: 0, ...opts });
  t.teardown(() => d.close());
  return d;
}

/** Opens a session; closed in the file's teardown. */
export async function openSession(t: Test, d: Daemon, opts: S.ConnectOptions = {}): Promise<S.SpiSession> {
  const spi = await S.connect(d.url, opts);
  t.teardown(() => spi.close());
  return spi;
}

// ---------------------------------------------------------------------------------------------
// Sockets.

/** [ret, errno] of one SPI call. */
export async function call(fn: (e: S.Out) => Promise<number>): Promise<[number, number]> {
  const e = S.out(0);
  const r = await fn(e);
  return [r, e.value];
}

export async function socket(spi: S.SpiSession, f: Family, kind: 'tcp' | 'udp', flags: number = S.WSA_FLAG_OVERLAPPED): Promise<number> {
  const e = S.out(0);
  const s = kind === 'tcp' ? await spi.WSPSocket(af(f), S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, flags, e) : await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, flags, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket(${kind}) failed: ${e.value}`);
  return s;
}

export async function must(what: string, fn: (e: S.Out) => Promise<number>): Promise<number> {
  const e = S.out(0);
  const r = await fn(e);
  if (r === S.SOCKET_ERROR || r === S.INVALID_SOCKET) throw new Error(`${what} failed: ${e.value}`);
  return r;
}

export async function getName(spi: S.SpiSession, s: number, peer = false): Promise<[number, number, S.SockAddr, number]> {
  const e = S.out(0);
  const name = emptyAddr();
  const len = S.out(28);
  const r = peer ? await spi.WSPGetPeerName(s, name, len, e) : await spi.WSPGetSockName(s, name, len, e);
  return [r, e.value, name, len.value];
}

/** A listening spiwire socket on the loopback address, port 0; returns it and its address. */
export async function listener(spi: S.SpiSession, f: Family, flags: number = S.WSA_FLAG_OVERLAPPED): Promise<{ s: number; name: S.SockAddr }> {
  const s = await socket(spi, f, 'tcp', flags);
  await must('WSPBind', (e) => spi.WSPBind(s, addr(f, 0), namelen(f), e));
  await must('WSPListen', (e) => spi.WSPListen(s, 5, e));
  const [, , name] = await getName(spi, s);
  return { s, name };
}

export async function accept(spi: S.SpiSession, s: number): Promise<number> {
  return must('WSPAccept', (e) => spi.WSPAccept(s, null, null, null, 0, e));
}

/**
 * Wine's tcp_socketpair: two connected spiwire sockets (made with WSA_FLAG_OVERLAPPED unless
 * flags say otherwise), the listener closed afterwards.
 */
export async function tcpPair(spi: S.SpiSession, f: Family, flags: number = S.WSA_FLAG_OVERLAPPED): Promise<{ client: number; server: number }> {
  const l = await listener(spi, f, flags);
  const client = await socket(spi, f, 'tcp', flags);
  await must('WSPConnect', (e) => spi.WSPConnect(client, l.name, namelen(f), null, null, null, null, e));
  const server = await accept(spi, l.s);
  await spi.WSPCloseSocket(l.s, S.out(0));
  return { client, server };
}

/** A plain node:net client connected to a spiwire listener, and the spiwire socket that accepted it. */
export async function nodePeerPair(t: Test, spi: S.SpiSession, f: Family): Promise<{ sock: net.Socket; server: number }> {
  const l = await listener(spi, f);
  const sock = net.connect({ host: loopback(f), port: l.name.port, allowHalfOpen: true });
  sock.on('error', () => undefined);
  t.teardown(() => {
    sock.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const server = await accept(spi, l.s);
  await spi.WSPCloseSocket(l.s, S.out(0));
  return { sock, server };
}

/** Resets a node:net connection (RST) and resolves once it is closed. */
/**
 * A loopback address that never answers a connect, for Wine's tests that connect to "an address
 * nobody answers" (Wine uses a remote one; traffic here stays on lo). A listener with a backlog
 * of 1 in a child process stopped with SIGSTOP never accepts: two connections fill its accept
 * queue, and Linux then drops every further SYN, so a connect to it stays in SYN_SENT, retrying.
 * The child is killed by its PID in teardown.
 */
export async function silentListener(t: Test): Promise<S.SockAddr> {
  const child = spawn(process.execPath, ['-e', "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>process.stdout.write(s.address().port+'\\n'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: net.Socket[] = [];
  t.teardown(() => {
    for (const c of fillers) c.destroy();
    child.kill('SIGKILL');
  });
  const port = Number(await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    child.stdout!.once('data', (d: Buffer) => resolve(String(d).trim()));
  }));
  child.kill('SIGSTOP');
  // The accept queue holds backlog + 1 connections; these two complete in the kernel and fill it.
  for (let i = 0; i < 2; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    fillers.push(c);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
  }
  return { family: S.AF_INET, address: '127.0.0.1', port };
}

export function resetNode(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    sock.once('close', () => resolve());
    sock.resetAndDestroy();
  });
}

export function dword(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

export function readU32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

/** FIONBIO through WSPIoctl (Wine's set_blocking). */
export async function setBlocking(spi: S.SpiSession, s: number, blocking: boolean): Promise<void> {
  await must('FIONBIO', (e) => spi.WSPIoctl(s, S.FIONBIO, dword(blocking ? 0 : 1), 4, null, 0, S.out(0), null, null, null, e));
}

export interface SendResult {
  ret: number;
  err: number;
  sent: number;
}

/** Wine's send(): WSPSend of one buffer, not overlapped. */
export async function send(spi: S.SpiSession | S.SessionThread, s: number, data: Uint8Array | string, flags = 0): Promise<SendResult> {
  const e = S.out(0);
  const sent = S.out(0xdeadbeef);
  const ret = await spi.WSPSend(s, [S.wsabuf(data)], 1, sent, flags, null, null, null, e);
  return { ret, err: e.value, sent: sent.value };
}

export interface RecvResult {
  ret: number;
  err: number;
  bytes: number;
  data: Buffer;
  flags: number;
}

/** Wine's recv(): WSPRecv into one buffer of len bytes, not overlapped. */
export async function recv(spi: S.SpiSession | S.SessionThread, s: number, len: number, flags = 0): Promise<RecvResult> {
  const e = S.out(0);
  const got = S.out(0xdeadbeef);
  const fl = S.out(flags);
  const buf = new Uint8Array(len);
  const ret = await spi.WSPRecv(s, [S.wsabuf(buf)], 1, got, fl, null, null, null, e);
  const n = ret === 0 ? got.value : 0;
  return { ret, err: e.value, bytes: got.value, data: Buffer.from(buf.subarray(0, n)), flags: fl.value };
}

export interface OvResult {
  ret: number;
  err: number;
  /** lpNumberOfBytes... after the call (0xdeadbeef when not written). */
  count: number;
  ov: S.WSAOVERLAPPED;
  buf: Uint8Array;
}

/** An overlapped WSPRecv of len bytes with the given event (or a routine). */
export async function ovRecv(spi: S.SpiSession | S.SessionThread, s: number, len: number, ov: S.WSAOVERLAPPED, opts: { routine?: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE; count?: boolean; flags?: number } = {}): Promise<OvResult> {
  const e = S.out(0);
  const got = S.out(0xdeadbeef);
  const buf = new Uint8Array(len);
  const ret = await spi.WSPRecv(s, [S.wsabuf(buf)], 1, opts.count === false ? null : got, S.out(opts.flags ?? 0), ov, opts.routine ?? null, null, e);
  return { ret, err: e.value, count: got.value, ov, buf };
}

/** An overlapped WSPSend of data with the given OVERLAPPED. */
export async function ovSend(spi: S.SpiSession | S.SessionThread, s: number, data: Uint8Array | string, ov: S.WSAOVERLAPPED, opts: { routine?: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE; count?: boolean } = {}): Promise<OvResult> {
  const e = S.out(0);
  const got = S.out(0xdeadbeef);
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const ret = await spi.WSPSend(s, [S.wsabuf(bytes)], 1, opts.count === false ? null : got, 0, ov, opts.routine ?? null, null, e);
  return { ret, err: e.value, count: got.value, ov, buf: bytes };
}

export interface OvOutcome {
  ret: number;
  err: number;
  bytes: number;
  flags: number;
}

/** WSPGetOverlappedResult. */
export async function ovResult(spi: S.SpiSession | S.SessionThread, s: number, ov: S.WSAOVERLAPPED, wait: boolean): Promise<OvOutcome> {
  const e = S.out(0);
  const bytes = S.out(0xdeadbeef);
  const flags = S.out(0xdeadbeef);
  const ret = await spi.WSPGetOverlappedResult(s, ov, bytes, wait, flags, e);
  return { ret, err: e.value, bytes: bytes.value, flags: flags.value };
}

/** Waits for an event; true when it was signalled within ms. */
export async function waitEvent(spi: S.SpiSession | S.SessionThread, ev: number, ms: number): Promise<boolean> {
  return (await spi.WSAWaitForMultipleEvents(1, [ev], false, ms, false)) === S.WSA_WAIT_EVENT_0;
}

/**
 * Bound for waits that should end on an event: only a failure takes this long. While a todo case
 * runs it is 1 s: there the event is known not to come, and a fixed departure brings it in
 * milliseconds anyway (wineCase sets it).
 */
export let EVENT_BOUND_MS = 5000;

/**
 * Waits for a state of a socket that no event reports (Wine uses select() or a sleep there):
 * asks every 10 ms, up to boundMs (default EVENT_BOUND_MS); returns whether the state was reached.
 */
export async function reached(cond: () => Promise<boolean>, boundMs = EVENT_BOUND_MS): Promise<boolean> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A nonblocking peek of one byte: [ret, errno, bytes]; shows data, end of stream, or a reset. */
export async function peek(spi: S.SpiSession, s: number): Promise<[number, number, number]> {
  const e = S.out(0);
  const got = S.out(-1);
  const r = await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(1))], 1, got, S.out(S.MSG_PEEK), null, null, null, e);
  return [r, e.value, got.value];
}

/** FIONREAD. */
export async function fionread(spi: S.SpiSession, s: number): Promise<number> {
  const v = new Uint8Array(4);
  await spi.WSPIoctl(s, S.FIONREAD, null, 0, v, 4, S.out(0), null, null, null, S.out(0));
  return new DataView(v.buffer).getUint32(0, true);
}

/**
 * Wine's sync_recv: a receive that waits even on a nonblocking socket (an overlapped WSPRecv
 * and its event). Returns the byte count, or -1 with the error.
 */
export async function syncRecv(spi: S.SpiSession, s: number, len: number): Promise<{ n: number; err: number; data: Buffer }> {
  const ev = spi.WSACreateEvent();
  try {
    const ov = new S.WSAOVERLAPPED(ev);
    const r = await ovRecv(spi, s, len, ov);
    if (r.ret === 0) return { n: r.count, err: 0, data: Buffer.from(r.buf.subarray(0, r.count)) };
    if (r.err !== S.WSA_IO_PENDING) return { n: -1, err: r.err, data: Buffer.alloc(0) };
    await waitEvent(spi, ev, EVENT_BOUND_MS);
    const res = await ovResult(spi, s, ov, false);
    if (res.ret !== S.TRUE) return { n: -1, err: res.err, data: Buffer.alloc(0) };
    return { n: res.bytes, err: 0, data: Buffer.from(r.buf.subarray(0, res.bytes)) };
  } finally {
    spi.WSACloseEvent(ev);
  }
}

// ---------------------------------------------------------------------------------------------
// Network events: Wine's select_events and check_events.

export const ALL_EVENTS = S.FD_ACCEPT | S.FD_CLOSE | S.FD_CONNECT | S.FD_OOB | S.FD_READ | S.FD_WRITE;

export const FD_NAMES: ReadonlyArray<[number, string]> = [
  [S.FD_READ, 'FD_READ'],
  [S.FD_WRITE, 'FD_WRITE'],
  [S.FD_OOB, 'FD_OOB'],
  [S.FD_ACCEPT, 'FD_ACCEPT'],
  [S.FD_CONNECT, 'FD_CONNECT'],
  [S.FD_CLOSE, 'FD_CLOSE'],
];

export function eventNames(events: number): string {
  const names = FD_NAMES.filter(([bit]) => events & bit).map(([, n]) => n);
  return names.length ? names.join('|') : 'none';
}

export async function selectEvents(spi: S.SpiSession, s: number, ev: number, events: number): Promise<void> {
  await must('WSPEventSelect', (e) => spi.WSPEventSelect(s, ev, events, e));
}

/** One expected network event and its error code. */
export type Expected = [event: number, error?: number];

/**
 * Wine's check_events for an event object: when events are expected, the event object must be
 * signalled (waited for, up to five times Wine's own bound and at least a second: only a failure
 * takes that long); when none are, it must not be within waitMs (Wine's own 0 or 200 ms). Then
 * WSPEnumNetworkEvents must report exactly the expected events, each with its error code.
 */
export async function checkEvents(c: Check, spi: S.SpiSession, s: number, ev: number, expected: Expected[], waitMs: number, label: string): Promise<number> {
  const want = expected.reduce((a, [bit]) => a | bit, 0);
  const signalled = await waitEvent(spi, ev, want ? Math.min(EVENT_BOUND_MS, Math.max(1000, 5 * waitMs)) : waitMs);
  if (want) c.ok(signalled, `${label}: the event object is signalled`);
  else c.ok(!signalled, `${label}: the event object is not signalled`);
  const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
  const e = S.out(0);
  const r = await spi.WSPEnumNetworkEvents(s, ev, ne, e);
  c.equal(r, 0, `${label}: WSPEnumNetworkEvents succeeds`);
  c.equal(eventNames(ne.lNetworkEvents), eventNames(want), `${label}: events recorded`);
  for (const [bit, err] of expected) {
    const i = Math.log2(bit);
    if (ne.lNetworkEvents & bit) c.equal(ne.iErrorCode[i], err ?? 0, `${label}: ${eventNames(bit)} error code`);
  }
  return ne.lNetworkEvents;
}

/** Bytes of the test pattern Wine uses for large buffers (byte i is i mod 256). */
export function pattern(n: number, offset = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (offset + i) & 0xff;
  return b;
}
