/**
 * Shared test harness: a daemon on a free loopback port, SDK sessions to it, and plain node:net /
 * node:dgram peers that record exactly what they received. Everything closes in teardown.
 */
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import type { Test } from 'tap';
import { startServer, type Daemon, type StartOptions } from '@spiwire/server';
import * as S from '@spiwire/client';

export type Family = 'ipv4' | 'ipv6';

export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

export function loopback(f: Family): string {
  return f === 'ipv4' ? '127.0.0.1' : '::1';
}

export function af(f: Family): number {
  return f === 'ipv4' ? S.AF_INET : S.AF_INET6;
}

export function namelen(f: Family): number {
  return f === 'ipv4' ? 16 : 28;
}

export function addr(f: Family, port: number): S.SockAddr {
  return { family: af(f), address: loopback(f), port };
}

export function emptyAddr(): S.SockAddr {
  return { family: 0, address: '', port: 0 };
}

/** Starts a daemon for this test and stops it in teardown. */
export async function daemon(t: Test, opts: StartOptions = {}): Promise<Daemon> {
  const d = await startServer({ port: 0, ...opts });
  t.teardown(() => d.close());
  return d;
}

/** Opens a session for this test and closes it in teardown. */
export async function session(t: Test, d: Daemon | string, opts: S.ConnectOptions = {}): Promise<S.SpiSession> {
  const spi = await S.connect(typeof d === 'string' ? d : d.url, opts);
  t.teardown(() => spi.close());
  return spi;
}

/** A TCP peer that records what each accepted connection received. */
export interface TcpPeer {
  port: number;
  server: net.Server;
  /** Resolves with the next accepted connection. */
  nextConnection(): Promise<PeerConnection>;
}

export interface PeerConnection {
  socket: net.Socket;
  /** Every byte received so far, in order. */
  received(): Buffer;
  /** Resolves once at least n bytes have arrived (or rejects after timeoutMs). */
  waitFor(n: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolves when the peer has seen FIN. */
  ended: Promise<void>;
}

export function wrapConnection(socket: net.Socket, paused = false): PeerConnection {
  const chunks: Buffer[] = [];
  let size = 0;
  let waiters: Array<() => void> = [];
  let endResolve!: () => void;
  const ended = new Promise<void>((r) => (endResolve = r));
  socket.on('data', (b: Buffer) => {
    chunks.push(b);
    size += b.length;
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  socket.on('end', () => endResolve());
  socket.on('error', () => undefined);
  if (paused) socket.pause();
  const received = (): Buffer => Buffer.concat(chunks, size);
  return {
    socket,
    received,
    ended,
    waitFor(n, timeoutMs = 10000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`peer received ${size} bytes, expected at least ${n}`)), timeoutMs);
        const check = (): void => {
          if (size >= n) {
            clearTimeout(timer);
            resolve(received());
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** How a connection ended, as its peer side saw it (peerEnding). */
export type PeerEnding = 'reset' | 'fin' | 'open' | `error ${string}`;

/**
 * How the peer's side of a connection ends: 'reset' (RST), 'fin' (a graceful close), 'open' when
 * neither came within timeoutMs, or the socket's other error. A reset that arrives while bytes are
 * still unread is reported by libuv as the end of the stream: it reads the bytes, sees the hang-up
 * and stops without reading the error. So on an end the peer writes one byte: the kernel refuses
 * it on a reset connection (ECONNRESET, or EPIPE once the error was taken) and accepts it on a
 * half-closed one (the peer server allows half-open connections).
 */
export function peerEnding(conn: PeerConnection, timeoutMs = 10000): Promise<PeerEnding> {
  const socket = conn.socket;
  const fromError = (err: NodeJS.ErrnoException): PeerEnding => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : `error ${err.code ?? err.message}`);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (how: PeerEnding): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('end', onEnd);
      resolve(how);
    };
    const onError = (err: NodeJS.ErrnoException): void => finish(fromError(err));
    const onEnd = (): void => {
      if (socket.destroyed) return finish(socket.errored ? fromError(socket.errored as NodeJS.ErrnoException) : 'fin');
      socket.write(Buffer.of(0), (err) => finish(err ? fromError(err) : 'fin'));
    };
    const timer = setTimeout(() => finish('open'), timeoutMs);
    if (socket.errored) return finish(fromError(socket.errored as NodeJS.ErrnoException));
    socket.once('error', onError);
    if (socket.readableEnded) onEnd();
    else socket.once('end', onEnd);
  });
}

export async function tcpPeer(t: Test, f: Family, opts: { paused?: boolean } = {}): Promise<TcpPeer> {
  const queue: PeerConnection[] = [];
  let waiting: Array<(c: PeerConnection) => void> = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    const c = wrapConnection(socket, opts.paused);
    const w = waiting.shift();
    if (w) w(c);
    else queue.push(c);
  });
  await new Promise<void>((resolve) => server.listen(0, loopback(f), resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    server,
    nextConnection() {
      const c = queue.shift();
      if (c) return Promise.resolve(c);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/** A UDP peer that records the datagrams it received. */
export interface UdpPeer {
  port: number;
  socket: dgram.Socket;
  datagrams: Array<{ data: Buffer; from: dgram.RemoteInfo }>;
  waitFor(n: number, timeoutMs?: number): Promise<void>;
}

export async function udpPeer(t: Test, f: Family): Promise<UdpPeer> {
  const socket = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
  const datagrams: UdpPeer['datagrams'] = [];
  let waiters: Array<() => void> = [];
  socket.on('message', (data, from) => {
    datagrams.push({ data, from });
    const w = waiters;
    waiters = [];
    for (const fn of w) fn();
  });
  await new Promise<void>((resolve) => socket.bind(0, loopback(f), resolve));
  t.teardown(() => new Promise<void>((r) => socket.close(() => r())));
  return {
    port: socket.address().port,
    socket,
    datagrams,
    waitFor(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`peer received ${datagrams.length} datagrams, expected ${n}`)), timeoutMs);
        const check = (): void => {
          if (datagrams.length >= n) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** Calls an SPI function and returns [ret, errno] for compact assertions. */
export async function call(fn: (e: S.Out) => Promise<number>): Promise<[number, number]> {
  const e = S.out(0);
  const ret = await fn(e);
  return [ret, e.value];
}

/** A TCP socket of the session connected to the peer; also returns the peer's side. */
export async function connectedTcp(spi: S.SpiSession, f: Family, peer: TcpPeer, flags = 0): Promise<{ s: number; conn: PeerConnection }> {
  const e = S.out(0);
  const s = await spi.WSPSocket(af(f), S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, flags, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket failed: ${e.value}`);
  const connP = peer.nextConnection();
  const r = await spi.WSPConnect(s, addr(f, peer.port), namelen(f), null, null, null, null, e);
  if (r !== 0) throw new Error(`WSPConnect failed: ${e.value}`);
  return { s, conn: await connP };
}

/** Sends buffers with WSPSend and returns [ret, errno, bytesSent]. */
export async function send(spi: S.SpiSession, s: number, bufs: Uint8Array[], flags = 0): Promise<[number, number, number]> {
  const e = S.out(0);
  const sent = S.out(-1);
  const ret = await spi.WSPSend(s, bufs.map((b) => S.wsabuf(b)), bufs.length, sent, flags, null, null, null, e);
  return [ret, e.value, sent.value];
}

/** WSPSelect(0, r, w, x, timeout) from a session or one of its threads: [ret, lpErrno]. */
export function select(spi: S.SpiSession | S.SessionThread, r: S.fd_set | null, w: S.fd_set | null, x: S.fd_set | null, timeout: S.timeval | null): Promise<[number, number]> {
  return call((e) => spi.WSPSelect(0, r, w, x, timeout, e));
}

/**
 * Fills a nonblocking TCP socket whose peer does not read: sends chunk until the sends stop and a
 * 50 ms select no longer finds room (the kernel's buffers go on taking bytes from the transport
 * buffer for a while after the first WSAEWOULDBLOCK). Returns the bytes the sends took, and
 * whether the socket ended full within the bound on sends.
 */
export async function fillConnection(spi: S.SpiSession, s: number, chunk: Uint8Array): Promise<{ sent: number; full: boolean }> {
  let sent = 0;
  for (let i = 0; i < 100_000; i++) {
    const [ret, err, n] = await send(spi, s, [chunk]);
    if (ret === 0) sent += n;
    else if (err !== S.WSAEWOULDBLOCK) throw new Error(`WSPSend: ${err}`);
    else if ((await select(spi, null, S.fdSet(s), null, { tv_sec: 0, tv_usec: 50_000 }))[0] === 0) return { sent, full: true };
  }
  return { sent, full: false };
}

/** Sets FIONBIO. */
export async function setNonBlocking(spi: S.SpiSession, s: number, on: boolean): Promise<void> {
  const e = S.out(0);
  const v = new Uint8Array(4);
  new DataView(v.buffer).setUint32(0, on ? 1 : 0, true);
  const r = await spi.WSPIoctl(s, S.FIONBIO, v, 4, null, 0, S.out(0), null, null, null, e);
  if (r !== 0) throw new Error(`FIONBIO failed: ${e.value}`);
}

export function dword(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n, true);
  return b;
}

export function readDword(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
}

/** Deterministic pseudo-random bytes, so a failing run can be reproduced. */
export function pattern(n: number, seed = 1): Buffer {
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

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Helpers added for the WSPSend error, UDP and SPI function suites.

/** A new socket of the session (TCP or UDP); throws when WSPSocket fails. */
export async function newSocket(spi: S.SpiSession, f: Family, kind: 'tcp' | 'udp', flags = 0): Promise<number> {
  const e = S.out(0);
  const s = kind === 'tcp' ? await spi.WSPSocket(af(f), S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, flags, e) : await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, flags, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket(${kind}) failed: ${e.value}`);
  return s;
}

/** WSPGetSockName; throws when it fails. */
export async function sockName(spi: S.SpiSession, s: number): Promise<S.SockAddr> {
  const e = S.out(0);
  const name = emptyAddr();
  const r = await spi.WSPGetSockName(s, name, S.out(28), e);
  if (r !== 0) throw new Error(`WSPGetSockName failed: ${e.value}`);
  return name;
}

/** Binds s to the loopback address of f (port 0 unless given) and returns WSPGetSockName's answer. */
export async function bindLoopback(spi: S.SpiSession, s: number, f: Family, port = 0): Promise<S.SockAddr> {
  const e = S.out(0);
  const r = await spi.WSPBind(s, addr(f, port), namelen(f), e);
  if (r !== 0) throw new Error(`WSPBind failed: ${e.value}`);
  return sockName(spi, s);
}

/** WSPSendTo of buffers; returns [ret, errno, bytesSent] (bytesSent -1 when not written). */
export async function sendTo(spi: S.SpiSession, s: number, bufs: Uint8Array[], to: S.SockAddr | null, tolen: number, flags = 0): Promise<[number, number, number]> {
  const e = S.out(0);
  const sent = S.out(-1);
  const ret = await spi.WSPSendTo(s, bufs.map((b) => S.wsabuf(b)), bufs.length, sent, flags, to, tolen, null, null, null, e);
  return [ret, e.value, sent.value];
}

export interface RecvResult {
  ret: number;
  errno: number;
  /** The bytes the call reported (bytesRecvd of the buffers, in order). */
  data: Buffer;
  bytes: number;
  flags: number;
  /** Every byte of the buffers, whatever the count said. */
  raw: Buffer;
  from: S.SockAddr;
  fromlen: number;
}

/** WSPRecvFrom (or WSPRecv when withFrom is false) into buffers of the given sizes. */
export async function recvInto(spi: S.SpiSession, s: number, sizes: number[], opts: { withFrom?: boolean; flags?: number } = {}): Promise<RecvResult> {
  const e = S.out(0);
  const got = S.out(-1);
  const flags = S.out(opts.flags ?? 0);
  const bufs = sizes.map((n) => new Uint8Array(n));
  const from = emptyAddr();
  const fromlen = S.out(28);
  const ret = opts.withFrom
    ? await spi.WSPRecvFrom(s, bufs.map((b) => S.wsabuf(b)), bufs.length, got, flags, from, fromlen, null, null, null, e)
    : await spi.WSPRecv(s, bufs.map((b) => S.wsabuf(b)), bufs.length, got, flags, null, null, null, e);
  const raw = Buffer.concat(bufs);
  const bytes = got.value;
  return { ret, errno: e.value, data: raw.subarray(0, Math.max(0, bytes)), bytes, flags: flags.value, raw, from, fromlen: fromlen.value };
}

/** WSPSetSockOpt of a DWORD; returns [ret, errno]. */
export async function setOpt(spi: S.SpiSession, s: number, optname: number, value: number, optlen = 4, level: number = S.SOL_SOCKET): Promise<[number, number]> {
  const e = S.out(0);
  const ret = await spi.WSPSetSockOpt(s, level, optname, dword(value), optlen, e);
  return [ret, e.value];
}

/** WSPGetSockOpt of a DWORD; returns [ret, errno, value, optlen]. */
export async function getOpt(spi: S.SpiSession, s: number, optname: number, optlen = 4, level: number = S.SOL_SOCKET): Promise<[number, number, number, number]> {
  const e = S.out(0);
  const v = new Uint8Array(4).fill(0xee);
  const len = S.out(optlen);
  const ret = await spi.WSPGetSockOpt(s, level, optname, v, len, e);
  // The value as a C caller reads it: the optlen bytes written (one for a BOOLEAN option), else the DWORD.
  const n = ret === 0 && len.value > 0 && len.value < 4 ? len.value : 4;
  const value = n === 4 ? readDword(v) : v.subarray(0, n).reduceRight((acc, b) => acc * 256 + b, 0);
  return [ret, e.value, value, len.value];
}

/**
 * WSPIoctl, not overlapped, with input (its length is cbInBuffer; null: none) and an output buffer
 * of cbOut bytes (lpvOutBuffer null when 0; the buffer given is at least 8 bytes of 0xee, so that
 * what a call leaves alone shows). Returns [ret, errno, bytesReturned, output buffer].
 */
export async function ioctl(spi: S.SpiSession, s: number, code: number, input: Uint8Array | null, cbOut = 0): Promise<[number, number, number, Uint8Array]> {
  const e = S.out(0);
  const size = S.out(0xdeadbeef);
  const out = new Uint8Array(Math.max(cbOut, 8)).fill(0xee);
  const ret = await spi.WSPIoctl(s, code, input, input?.length ?? 0, cbOut ? out : null, cbOut, size, null, null, null, e);
  return [ret, e.value, size.value, out];
}

/** WSPIoctl with a BOOL as input (inputLength bytes of it: 1 to 3 make a BOOLEAN, 0 none); returns [ret, errno]. */
export async function ioctlBool(spi: S.SpiSession, s: number, code: number, on: number, inputLength = 4): Promise<[number, number]> {
  const [ret, errno] = await ioctl(spi, s, code, dword(on).subarray(0, inputLength));
  return [ret, errno];
}

/** WSPIoctl FIONREAD; returns [ret, errno, value]. */
export async function fionread(spi: S.SpiSession, s: number): Promise<[number, number, number]> {
  const [ret, errno, , out] = await ioctl(spi, s, S.FIONREAD, null, 4);
  return [ret, errno, readDword(out)];
}

/** A loopback port that was just in use and is now closed (TCP or UDP). */
export async function closedPort(f: Family, kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'tcp') {
    const srv = net.createServer();
    await new Promise<void>((resolve) => srv.listen(0, loopback(f), resolve));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    return port;
  }
  const sock = dgram.createSocket(f === 'ipv4' ? 'udp4' : 'udp6');
  await new Promise<void>((resolve) => sock.bind(0, loopback(f), resolve));
  const port = sock.address().port;
  await new Promise<void>((r) => sock.close(() => r()));
  return port;
}

/** Polls cond every stepMs until it holds or timeoutMs passed; returns whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000, stepMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------- waiting on events, not on time
//
// A test that waits for something waits for that event (or polls for it with a bound that only
// limits how long a failing test hangs). A test that proves something did NOT happen proves it
// with a later event that must come after it, using the daemon's ordering (proto/README.md,
// section 6 "Order" and section 9): it handles a session's calls in the order they arrive, and
// whatever it produced for the session before it answers a call (replies, completions, network
// events) goes out ahead of that answer.

/** One turn of the event loop: promise chains already under way (microtasks) have all run. */
export function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * A round trip to the daemon on spi's connection: a quick call (WSPGetSockOpt on a handle the
 * daemon never hands out, answered WSAENOTSOCK) and its reply, then one turn of the event loop.
 * Once it returns, whatever the daemon had produced for this session when it handled the call
 * (the reply of an earlier call that finished, a completion, network events) has reached the SDK
 * and the promise chains hanging off it have run. So a call or operation still unanswered now was
 * still unanswered when the daemon got to this point in the session's order of events.
 */
export async function roundTrip(spi: S.SpiSession): Promise<void> {
  await spi.WSPGetSockOpt(0, S.SOL_SOCKET, S.SO_TYPE, new Uint8Array(4), S.out(4), S.out(0));
  await nextTurn();
}

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

/** The bytes of a fence: sent after everything else, unlike any test data. */
export const FENCE = Buffer.from('|fence|');

/**
 * What a TCP peer received before a fence, for proving that nothing more arrived: sendFence puts
 * FENCE on the connection after every other send, and this waits until the peer holds
 * expectedLength + FENCE.length bytes. The daemon writes a socket's sends in the order of the calls
 * and TCP keeps that order, so every byte the daemon sent before the fence is in front of it.
 * Returns the bytes before the fence; when the fence is not at the end of what arrived (more or
 * fewer bytes came first), returns everything received, fence included, so that the caller's
 * comparison fails and shows what came.
 */
export async function bytesBeforeFence(conn: PeerConnection, expectedLength: number, sendFence: (fence: Buffer) => Promise<unknown>, timeoutMs = 20000): Promise<Buffer> {
  await sendFence(FENCE);
  await conn.waitFor(expectedLength + FENCE.length, timeoutMs).catch(() => undefined);
  const got = conn.received();
  const at = got.length - FENCE.length;
  return at >= 0 && got.subarray(at).equals(FENCE) ? got.subarray(0, at) : got;
}

/** bytesBeforeFence with the fence sent by a blocking WSPSend on the session's socket s. */
export function tcpBytesBeforeFence(spi: S.SpiSession, s: number, conn: PeerConnection, expectedLength: number): Promise<Buffer> {
  return bytesBeforeFence(conn, expectedLength, async (fence) => {
    const [r, e, n] = await send(spi, s, [fence]);
    if (r !== 0 || n !== fence.length) throw new Error(`the fence WSPSend failed: ret ${r}, errno ${e}`);
  });
}

/**
 * Everything a TCP peer will ever get on a connection: closes the session's socket s (a graceful
 * close: the bytes it accepted still go, then FIN; a socket already closed or shut down has sent
 * its FIN) and waits for the FIN. How the connection ended is checked with t. The peer must be
 * reading.
 */
export async function allReceived(t: Test, spi: S.SpiSession, s: number, conn: PeerConnection, timeoutMs = 20000): Promise<Buffer> {
  await spi.WSPCloseSocket(s, S.out(0));
  t.equal(await peerFinished(conn.socket, timeoutMs), 'end', 'the peer saw FIN after everything the socket sent');
  return conn.received();
}

/**
 * The datagrams a UDP peer got before a fence, for proving that no other datagram came:
 * sendFence sends the datagram FENCE to the peer (from any socket of the session), and this waits
 * for it. The daemon answers a send once node has handed the datagram to the kernel, which on
 * loopback queues it at its destination during the send, and the peer reads its queue in order: so
 * every datagram the daemon sent to the peer before the fence has arrived by then. Returns the
 * data of those datagrams (all of them, and a last 'no fence' entry, when the fence never came).
 */
export async function datagramsBeforeFence(peer: UdpPeer, sendFence: (fence: Buffer) => Promise<unknown>, timeoutMs = 5000): Promise<string[]> {
  await sendFence(FENCE);
  const at = (): number => peer.datagrams.findIndex((d) => d.data.equals(FENCE));
  await pollUntil(() => at() >= 0, timeoutMs);
  const all = peer.datagrams.map((d) => d.data.toString('latin1'));
  return at() >= 0 ? all.slice(0, at()) : [...all, 'no fence'];
}

/** datagramsBeforeFence with the fence sent by WSPSendTo from the session's UDP socket u to loopback:port. */
export function udpDatagramsBeforeFence(spi: S.SpiSession, u: number, f: Family, peer: UdpPeer): Promise<string[]> {
  return datagramsBeforeFence(peer, async (fence) => {
    const [r, e] = await sendTo(spi, u, [fence], addr(f, peer.port), namelen(f));
    if (r !== 0) throw new Error(`the fence WSPSendTo failed: errno ${e}`);
  });
}

/**
 * Resolves once bytes of the connection have reached the peer's socket (read by node or not),
 * that is once the daemon's writes for it are under way; false after timeoutMs.
 */
export function bytesArriving(conn: PeerConnection, timeoutMs = 10000): Promise<boolean> {
  return pollUntil(() => conn.socket.bytesRead > 0, timeoutMs);
}

/** Resolves with what happened first to a peer socket: 'end' (FIN), 'close', or 'timeout'. */
export function peerFinished(socket: net.Socket, timeoutMs = 5000): Promise<'end' | 'close' | 'timeout'> {
  return new Promise((resolve) => {
    if (socket.readableEnded) return resolve('end');
    if (socket.destroyed) return resolve('close');
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    socket.once('end', () => {
      clearTimeout(timer);
      resolve('end');
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve('close');
    });
  });
}

/** A plain node:net client connected to host:port on loopback; destroyed in teardown. */
export async function tcpClient(t: Test, f: Family, port: number): Promise<PeerConnection> {
  const socket = net.connect({ host: loopback(f), port, allowHalfOpen: true });
  t.teardown(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return wrapConnection(socket);
}

// ---------------------------------------------------------------- overlapped I/O helpers

/**
 * Size of a "filler" send: larger than what the loopback kernel buffers absorb while the peer
 * does not read (a few MiB), so an overlapped send of this size stays pending, and every send
 * issued after it queues behind it, until the peer resumes reading.
 */
export const FILLER_BYTES = 14 * 1024 * 1024;

/** Something that can issue WSPSend: the session (main thread) or a thread of it. */
export type SendIssuer = Pick<S.SpiSession, 'WSPSend'>;

export interface OvSendOptions {
  ov?: S.WSAOVERLAPPED;
  routine?: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE | null;
  threadId?: S.WSATHREADID | null;
  flags?: number;
  /** Initial value of lpNumberOfBytesSent; null passes no out parameter at all. */
  sentinel?: number | null;
}

export interface OvSendResult {
  ret: number;
  err: number;
  /** lpNumberOfBytesSent after the call (null when none was passed). */
  sent: S.Out | null;
  ov: S.WSAOVERLAPPED;
}

/** Issues an overlapped WSPSend of the given buffers (one WSABUF each). */
export async function ovSend(issuer: SendIssuer, s: number, bufs: Uint8Array[], opts: OvSendOptions = {}): Promise<OvSendResult> {
  const e = S.out(0);
  const ov = opts.ov ?? new S.WSAOVERLAPPED();
  const sent = opts.sentinel === null ? null : S.out(opts.sentinel ?? -7);
  const ret = await issuer.WSPSend(s, bufs.map((b) => S.wsabuf(b)), bufs.length, sent, opts.flags ?? 0, ov, opts.routine ?? null, opts.threadId ?? null, e);
  return { ret, err: e.value, sent, ov };
}

/** Something that can wait alertably: the session (main thread) or a thread. */
export interface AlertableWaiter {
  SleepEx(ms: number, alertable: boolean | number): Promise<number>;
}

/**
 * Alertable SleepEx loop on one thread until done() holds; bounded by rounds (each at most
 * sliceMs). Returns whether done() held in the end.
 */
export async function drainUntil(thread: AlertableWaiter, done: () => boolean, rounds = 200, sliceMs = 50): Promise<boolean> {
  for (let i = 0; i < rounds && !done(); i++) await thread.SleepEx(sliceMs, true);
  return done();
}

/** Polls cond every few ms until it holds or timeoutMs passes; returns its final value. */
export async function pollUntil(cond: () => boolean, timeoutMs = 10000, stepMs = 10): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!cond() && Date.now() < end) await sleep(stepMs);
  return cond();
}

/** A TCP socket created with WSA_FLAG_OVERLAPPED, connected to the peer. */
export function overlappedTcp(spi: S.SpiSession, f: Family, peer: TcpPeer): Promise<{ s: number; conn: PeerConnection }> {
  return connectedTcp(spi, f, peer, S.WSA_FLAG_OVERLAPPED);
}

/** Pseudo-random generator (xorshift32) for reproducible sizes in tests. */
export function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}
