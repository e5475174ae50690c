/** A TCP socket: node:net underneath, Winsock semantics on top. */
import * as net from 'node:net';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import { wsaFromErrno, wsaFromNodeError } from '../errno-map.js';
import { fdOf, libc } from '../native/libc.js';
import { watchUrgent } from '../native/urgent.js';
import { fail, ok, type Outcome } from '../outcome.js';
import { EmulatedSocket, type CompleteFn, type OverlappedStart, type SocketContext } from './emulated-socket.js';
import { TransportBuffer, type SendOp, type StreamSink } from './transport-buffer.js';
import { byteLength } from './send-buffers.js';
import { fromNodeAddress, hostOf, isAnyAddress, isLoopbackAddress, localAddressExists, refuseLookup } from './sockaddr.js';
import type { PortReservations } from './port-reservations.js';
import type { Drainable, Draining } from '../draining.js';

/** Flags WSPSend understands on TCP; other bits give WSAEOPNOTSUPP. */
const TCP_SEND_FLAGS = W.MSG_OOB | W.MSG_DONTROUTE | W.MSG_PARTIAL;
const MAX_BACKLOG = 200;
const INT32_MAX = 0x7fffffff;
/** The largest keep-alive values Linux takes (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). */
const KERNEL_MAX = { keepIdle: 32767, keepInterval: 32767, keepCount: 127 };

export interface TcpContext extends SocketContext {
  readonly ports: PortReservations;
  /**
   * Connections waiting on listeners hold descriptors: they count against the daemon-wide socket
   * cap, and a connection that would pass it is refused (reset) like one beyond the backlog.
   */
  readonly connectionQueue: { full(): boolean; change(delta: number): void };
  /** Where a socket closed with bytes still on their way is tracked until they are delivered. */
  readonly draining: Draining;
  /** Registers a connection accepted on a listening socket as a new emulated socket; returns it. */
  readonly adopt: (conn: net.Socket, parent: TcpSocket) => TcpSocket | null;
}

export class TcpSocket extends EmulatedSocket implements Drainable {
  private conn: net.Socket | null = null;
  private server: net.Server | null = null;
  private bound: SockAddr | null = null;
  private tx: TransportBuffer | null = null;
  private rx: Buffer[] = [];
  private rxBytes = 0;
  private peerFinished = false;
  /** WSA code once the connection broke (reset, aborted); sends and receives report it. */
  private failure = 0;
  private connectError = 0;
  private finAfterDrain = false;
  /** The connection's local address, and when data last went out and came in (for brokenCode). */
  private localAddr: string | null = null;
  private lastSendAt = 0;
  private lastRecvAt = 0;
  /** Set once a connect attempt finished: FD_CONNECT is recorded with this code. */
  private connectOutcome: number | null = null;
  private readonly accepted: net.Socket[] = [];
  private backlog = 1;

  constructor(private readonly ctx: TcpContext) {
    super(ctx);
  }

  /** Wraps a connection accepted by a listening socket; it inherits the listener's options. */
  attachAccepted(conn: net.Socket, parent: TcpSocket): void {
    this.nonBlocking = parent.nonBlocking;
    this.sndBuf = parent.sndBuf;
    this.rcvBuf = parent.rcvBuf;
    this.sndBufSet = parent.sndBufSet;
    this.rcvBufSet = parent.rcvBufSet;
    this.keepAlive = parent.keepAlive;
    this.oobInline = parent.oobInline;
    this.noDelay = parent.noDelay;
    this.dontRoute = parent.dontRoute;
    this.linger = { ...parent.linger };
    this.keepIdle = parent.keepIdle;
    this.keepInterval = parent.keepInterval;
    this.keepCount = parent.keepCount;
    this.maxRetransmitSeconds = parent.maxRetransmitSeconds;
    this.sendPolicy = parent.sendPolicy;
    this.moveTo('connected');
    this.wire(conn);
  }

  /**
   * The steps that set a socket up (bind, listen) run one after another, and a connect starts
   * only after them: on Windows each is synchronous, so a second bind in the same frame finds
   * the socket bound (WSAEINVAL), not a half-done bind.
   */
  private setup: Promise<unknown> = Promise.resolve();

  private afterSetup<T>(step: () => Promise<T>, chain: boolean): Promise<T> {
    const run = this.setup.then(step);
    if (chain) this.setup = run.catch(() => undefined);
    return run;
  }

  bind(name: SockAddr): Promise<Outcome> {
    return this.afterSetup(() => this.bindNow(name), true);
  }

  private async bindNow(name: SockAddr): Promise<Outcome> {
    if (this.closed) return fail(W.WSAENOTSOCK);
    if (this.state !== 'open') return fail(W.WSAEINVAL);
    // Probe the real stack: the address must be local and the port free.
    const probe = net.createServer();
    const port = await new Promise<number | Error>((resolve) => {
      probe.once('error', resolve);
      probe.listen({ host: hostOf(name), port: name.port, exclusive: true, ipv6Only: this.af === W.AF_INET6 }, () => {
        resolve((probe.address() as net.AddressInfo).port);
      });
    });
    probe.close();
    if (port instanceof Error) return fail(wsaFromNodeError(port));
    if (this.closed) return fail(W.WSAENOTSOCK);
    const r = { family: name.family, address: name.address, port };
    if (!this.ctx.ports.reserve(this.handle, r)) return fail(W.WSAEADDRINUSE);
    this.bound = { ...name, port };
    this.moveTo('bound');
    return ok();
  }

  listen(backlog: number): Promise<Outcome> {
    return this.afterSetup(() => this.listenNow(backlog), true);
  }

  private async listenNow(backlog: number): Promise<Outcome> {
    if (this.closed) return fail(W.WSAENOTSOCK);
    if (this.state === 'listening') {
      this.backlog = clampBacklog(backlog);
      return ok();
    }
    if (this.state === 'connected' || this.state === 'connecting') return fail(W.WSAEISCONN);
    if (this.state !== 'bound' || !this.bound) return fail(W.WSAEINVAL);
    this.backlog = clampBacklog(backlog);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const res = await new Promise<Error | null>((resolve) => {
      server.once('error', resolve);
      server.listen({ host: hostOf(this.bound!), port: this.bound!.port, backlog: this.backlog, exclusive: true, ipv6Only: this.af === W.AF_INET6 }, () => resolve(null));
    });
    if (res) {
      server.close();
      return fail(wsaFromNodeError(res));
    }
    if (this.closed) {
      server.close();
      return fail(W.WSAENOTSOCK);
    }
    // Accept failures (out of descriptors, say) come from load the clients make: not a daemon fault.
    server.on('error', (err) => this.log.debug({ err: err.message }, 'listening socket error'));
    server.on('connection', (conn) => {
      if (this.accepted.length >= this.backlog || this.ctx.connectionQueue.full()) {
        // A full backlog refuses the connection, as the Windows stack does.
        conn.resetAndDestroy();
        return;
      }
      conn.on('error', () => undefined);
      this.accepted.push(conn);
      this.ctx.connectionQueue.change(1);
      this.wake();
    });
    this.server = server;
    this.ctx.ports.release(this.handle);
    this.moveTo('listening');
    return ok();
  }

  accept(): Promise<Outcome> {
    if (this.state !== 'listening') return Promise.resolve(fail(W.WSAEINVAL));
    return this.waitFor(() => {
      if (this.closed) return fail(W.WSAEINTR);
      const conn = this.takeQueued();
      if (!conn) return this.nonBlocking ? fail(W.WSAEWOULDBLOCK) : undefined;
      const child = this.ctx.adopt(conn, this);
      if (!child) {
        // No socket can be made: the connection stays queued, as on Windows.
        this.accepted.unshift(conn);
        this.ctx.connectionQueue.change(1);
        return fail(W.WSAEMFILE);
      }
      queueMicrotask(() => this.rearm(W.FD_ACCEPT));
      return ok({ addr: child.peerName() ?? undefined }, child.handle);
    });
  }

  /** The oldest connection waiting on this listener, no longer counted as queued. */
  private takeQueued(): net.Socket | undefined {
    const conn = this.accepted.shift();
    if (conn) this.ctx.connectionQueue.change(-1);
    return conn;
  }

  connect(name: SockAddr): Promise<Outcome> {
    return this.afterSetup(() => this.connectNow(name), false);
  }

  private connectNow(name: SockAddr): Promise<Outcome> {
    // Closed while the call waited for a bind or listen before it.
    if (this.closed) return Promise.resolve(fail(W.WSAENOTSOCK));
    switch (this.state) {
      case 'listening':
        return Promise.resolve(fail(W.WSAEINVAL));
      case 'connected':
        return Promise.resolve(fail(W.WSAEISCONN));
      case 'connecting':
        return Promise.resolve(fail(W.WSAEALREADY));
      default:
        break;
    }
    if (isAnyAddress(name.address) || name.port === 0) return Promise.resolve(fail(W.WSAEADDRNOTAVAIL));
    const local = this.bound;
    const conn = net.connect({
      host: hostOf(name),
      port: name.port,
      family: this.af === W.AF_INET6 ? 6 : 4,
      lookup: refuseLookup,
      allowHalfOpen: true,
      ...(local ? { localAddress: isAnyAddress(local.address) ? undefined : local.address, localPort: local.port } : {}),
    });
    const before = this.state;
    this.moveTo('connecting');
    this.connectError = 0;
    const onError = (err: Error): void => {
      if (this.state !== 'connecting') return;
      this.connectError = wsaFromNodeError(err);
      this.pendingError = this.connectError;
      this.connectOutcome = this.connectError;
      conn.destroy();
      this.moveTo(before);
      this.wake();
    };
    conn.once('error', onError);
    conn.once('connect', () => {
      conn.off('error', onError);
      if (this.closed) {
        conn.destroy();
        return;
      }
      this.ctx.ports.release(this.handle);
      this.moveTo('connected');
      this.connectOutcome = 0;
      this.wire(conn);
      this.wake();
    });
    if (this.nonBlocking) return Promise.resolve(fail(W.WSAEWOULDBLOCK));
    return this.waitFor(() => {
      if (this.state === 'connecting') return undefined;
      if (this.state === 'connected') return ok();
      this.pendingError = 0;
      return fail(this.connectError || W.WSAECONNREFUSED);
    });
  }

  /** Connects the node socket's events to this emulated socket. */
  private wire(conn: net.Socket): void {
    this.conn = conn;
    this.localAddr = conn.localAddress ?? null;
    const sink: StreamSink = {
      write: (chunk, done) => {
        if (conn.destroyed) return done(new Error('destroyed'));
        this.lastSendAt = performance.now();
        conn.write(chunk, done);
      },
      cork: () => conn.cork(),
      // Uncork on the next tick: every send of one incoming frame then leaves in one writev.
      uncork: () => process.nextTick(() => conn.uncork()),
      sendDirect: (chunk, sendFlags) => {
        const native = libc();
        const fd = fdOf(conn);
        if (!native || fd === null) throw Object.assign(new Error('direct send unavailable'), { code: 'EOPNOTSUPP' });
        const cflags = (sendFlags & W.MSG_OOB ? native.c.MSG_OOB : 0) | (sendFlags & W.MSG_DONTROUTE ? native.c.MSG_DONTROUTE : 0);
        const n = native.send(fd, chunk, cflags);
        if (n >= 0) return n;
        if (-n === native.c.EAGAIN || -n === native.c.EWOULDBLOCK) return -1;
        this.breakWith(wsaFromErrno(-n));
        return -1;
      },
    };
    this.tx = new TransportBuffer(sink, this.sndBuf, () => this.afterDrainStep(), this.quota.add);
    conn.on('data', (chunk: Buffer) => {
      if (this.recvShut) {
        // Data after shutdown(SD_RECEIVE): Windows resets the connection.
        this.breakWith(W.WSAECONNRESET);
        conn.resetAndDestroy();
        return;
      }
      this.lastRecvAt = performance.now();
      this.rx.push(chunk);
      this.rxBytes += chunk.length;
      if (this.rxBytes >= Math.max(this.rcvBuf, 1) || this.ctx.flow.paused) conn.pause();
      this.wake();
    });
    conn.on('end', () => {
      this.peerFinished = true;
      this.wake();
    });
    conn.on('error', (err) => this.breakWith(this.brokenCode(err), err));
    conn.on('close', () => {
      if (!this.closed && !this.failure && !(this.peerFinished && this.sendShut)) this.breakWith(W.WSAECONNRESET);
    });
    conn.resume();
    const native = libc();
    const fd = fdOf(conn);
    // SIGURG for this connection comes to this process: urgent data then needs no polling.
    this.ownerSet = native !== null && fd !== null && native.setOwner(fd) === 0;
    try {
      this.applyBuffers();
      this.applyOptions();
    } catch (err) {
      // A daemon fault, not the client's: the connection still works with the system's defaults.
      this.log.error({ err }, 'could not apply socket options');
    }
    this.updateUrgentWatch();
  }

  /**
   * The WSA code for a broken connection. Linux says ETIMEDOUT both when keep-alive probes go
   * unanswered and when retransmissions give up; Windows tells them apart: WSAENETRESET for
   * keep-alive, WSAECONNABORTED for data that could not be delivered. An interface that went away
   * under the socket is WSAENETDOWN.
   */
  private brokenCode(err: NodeJS.ErrnoException): number {
    if (this.interfaceGone()) return W.WSAENETDOWN;
    if (err.code === 'ETIMEDOUT') {
      // Data sent since the peer was last heard from may be what went unacknowledged: a
      // retransmission failure. Otherwise only keep-alive probes were going out.
      const unacked = this.lastSendAt > this.lastRecvAt || !(this.tx?.drained ?? true) || (this.conn?.writableLength ?? 0) > 0;
      return this.keepAlive && !unacked ? W.WSAENETRESET : W.WSAECONNABORTED;
    }
    return wsaFromNodeError(err);
  }

  /**
   * True when the socket's local address is no longer assigned to this machine. The address is
   * remembered when the connection is made: node forgets it once the handle is closed.
   */
  private interfaceGone(): boolean {
    return this.localAddr !== null && !localAddressExists(this.localAddr);
  }

  private interfaceCheckedAt = 0;

  /** interfaceGone() for the send path: at most every 100 ms per socket, as it runs for every send. */
  private interfaceGoneThrottled(): boolean {
    if (this.localAddr === null || isLoopbackAddress(this.localAddr)) return false;
    const now = performance.now();
    if (now - this.interfaceCheckedAt < 100) return false;
    this.interfaceCheckedAt = now;
    return this.interfaceGone();
  }

  /** The connection broke: every waiting send and receive learns why. */
  private breakWith(code: number, err?: Error): void {
    if (this.failure) return;
    this.failure = code;
    this.log.debug({ code, err: err?.message }, 'connection broken');
    this.tx?.cancel(code, () => true, 'broken');
    this.wake();
  }

  private afterDrainStep(): void {
    this.checkEvents();
    if (this.finAfterDrain && this.tx?.pendingOps === 0 && this.conn && !this.conn.destroyed) {
      this.finAfterDrain = false;
      this.conn.end();
      if (this.closed) this.conn.destroySoon();
    }
  }

  /** Why a send cannot start at all, or null when it can. */
  private sendPrecheck(flags: number): Outcome | null {
    if ((flags & ~TCP_SEND_FLAGS) !== 0) return fail(W.WSAEOPNOTSUPP);
    // TCP has no XP1_PARTIAL_MESSAGE; MSG_OOB needs the C library's send(), loaded through koffi.
    if (flags & W.MSG_PARTIAL) return fail(W.WSAEOPNOTSUPP);
    if (flags & W.MSG_OOB && !libc()) return fail(W.WSAEOPNOTSUPP);
    if (this.sendShut) return fail(W.WSAESHUTDOWN);
    if (this.failure) return fail(this.failure);
    if (this.state !== 'connected' || !this.tx) return fail(W.WSAENOTCONN);
    if (this.interfaceGoneThrottled()) {
      this.breakWith(W.WSAENETDOWN);
      return fail(W.WSAENETDOWN);
    }
    return null;
  }

  send(buffers: readonly Uint8Array[], flags: number, _to: SockAddr | null, forceBlocking = false): Outcome | Promise<Outcome> {
    const bad = this.sendPrecheck(flags);
    if (bad) return Promise.resolve(bad);
    const total = byteLength(buffers);
    // The session's memory quota: bytes held for its sends may not grow past it.
    if (this.quota.exceeds(total)) return Promise.resolve(fail(W.WSAENOBUFS));
    const tx = this.tx!;
    const direct = this.directFlags(flags);
    if (this.nonBlocking && !forceBlocking && this.windowsPolicy && !direct) {
      // Windows in practice: the whole buffer or nothing. While earlier data is still queued,
      // WSAEWOULDBLOCK; otherwise every byte is taken and sent in the background.
      if (tx.pendingOps > 0) return Promise.resolve(this.wouldBlock());
      if (tx.fitsNow(total)) tx.acceptNow(buffers, total);
      else tx.submit({ chunks: buffers, total, thread: 0, overlapped: false, background: true, complete: () => undefined });
      return Promise.resolve(ok({ bytesSent: total }));
    }
    if (this.nonBlocking && !forceBlocking) {
      if (total === 0) return Promise.resolve(ok({ bytesSent: 0 }));
      const n = tx.acceptNow(buffers, total, direct);
      if (this.failure) return Promise.resolve(fail(this.failure));
      return Promise.resolve(n > 0 ? ok({ bytesSent: n }) : this.wouldBlock());
    }
    // A blocking send that fits at once is answered in the same turn, so its reply can leave
    // before the corked bytes are written to the peer. (An empty send goes through the queue:
    // with SO_SNDBUF 0 it waits for earlier bytes to reach the kernel.)
    if (!direct && total > 0 && tx.fitsNow(total)) {
      tx.acceptNow(buffers, total);
      return ok({ bytesSent: total });
    }
    return new Promise<Outcome>((resolve) => {
      tx.submit({
        chunks: buffers,
        total,
        thread: 0,
        overlapped: false,
        direct,
        complete: (errno) => resolve(errno === 0 ? ok({ bytesSent: total }) : fail(errno)),
      });
    });
  }

  sendOverlapped(buffers: readonly Uint8Array[], flags: number, _to: SockAddr | null, thread: number, done: CompleteFn): OverlappedStart {
    const bad = this.sendPrecheck(flags);
    if (bad) return { outcome: bad };
    const total = byteLength(buffers);
    if (this.quota.exceeds(total)) return { outcome: fail(W.WSAENOBUFS) };
    const tx = this.tx!;
    const direct = this.directFlags(flags);
    // Completes at once only when every byte fits now, behind no older send.
    if (!direct && tx.fitsNow(total)) {
      tx.acceptNow(buffers, total);
      done(0, total);
      return { outcome: ok({ bytesSent: total }) };
    }
    const op: SendOp = { chunks: buffers, total, thread, overlapped: true, direct, complete: (errno, bytes) => done(errno, errno === 0 ? total : bytes) };
    tx.submit(op);
    return { outcome: fail(W.WSA_IO_PENDING), cancel: (errno) => tx.cancel(errno, (o) => o === op) };
  }

  /**
   * The flags that need send() on the descriptor: MSG_OOB always (urgent data), MSG_DONTROUTE when
   * the C library is there to honour it (otherwise it is accepted and ignored, as the reference allows).
   */
  private directFlags(flags: number): number {
    return flags & (libc() ? W.MSG_OOB | W.MSG_DONTROUTE : W.MSG_OOB);
  }

  /** A send that would block re-enables FD_WRITE, which is recorded when room appears. */
  private wouldBlock(): Outcome {
    queueMicrotask(() => this.rearm(W.FD_WRITE));
    return fail(W.WSAEWOULDBLOCK);
  }

  protected readyEvents(wanted: number): Array<[number, number]> {
    const ready: Array<[number, number]> = [];
    if (wanted & W.FD_READ && this.rxBytes > 0) ready.push([W.FD_READ, 0]);
    if (wanted & W.FD_WRITE && this.state === 'connected' && !this.failure && !this.sendShut && this.tx && this.tx.fitsNow(1)) ready.push([W.FD_WRITE, 0]);
    if (wanted & W.FD_ACCEPT && this.state === 'listening' && this.accepted.length > 0) ready.push([W.FD_ACCEPT, 0]);
    if (wanted & W.FD_CONNECT && this.connectOutcome !== null) ready.push([W.FD_CONNECT, this.connectOutcome]);
    if (wanted & W.FD_CLOSE && this.failure) ready.push([W.FD_CLOSE, this.failure]);
    else if (wanted & W.FD_CLOSE && this.peerFinished && this.rxBytes === 0) ready.push([W.FD_CLOSE, 0]);
    if (wanted & W.FD_OOB && this.urgentPending()) ready.push([W.FD_OOB, 0]);
    return ready;
  }

  /** True when urgent data waits in the kernel (peeked with recv(MSG_OOB | MSG_PEEK)). */
  private urgentPending(): boolean {
    const native = libc();
    const fd = fdOf(this.conn);
    if (!native || fd === null || this.oobInline || !this.urgentMayWait()) return false;
    const found = native.recv(fd, new Uint8Array(1), native.c.MSG_OOB | 2 /* MSG_PEEK */) > 0;
    if (!found) this.urgentSignalled = false;
    return found;
  }

  // ---- waiting for urgent data ----

  /** Pending MSG_OOB receives (blocking or overlapped). */
  private urgentWaits = 0;
  /** Set by SIGURG (and when watching starts), cleared when a look finds nothing. */
  private urgentSignalled = false;
  private stopUrgentWatch: (() => void) | null = null;
  /** The kernel signals SIGURG to this process for this connection (F_SETOWN took). */
  private ownerSet = false;

  /**
   * Whether a look for urgent data is worth a system call: always, unless this socket is watched,
   * in which case only after a SIGURG since the last look that found nothing.
   */
  private urgentMayWait(): boolean {
    return this.stopUrgentWatch === null || this.urgentSignalled;
  }

  /** Watches for urgent data while a MSG_OOB receive waits or FD_OOB is selected; not otherwise. */
  private updateUrgentWatch(): void {
    const wanted = !this.closed && this.conn !== null && (this.urgentWaits > 0 || (this.selection & W.FD_OOB) !== 0);
    if (wanted && !this.stopUrgentWatch) {
      this.stopUrgentWatch = watchUrgent(() => {
        this.urgentSignalled = true;
        this.wake();
      }, this.ownerSet);
      // Anything that arrived before the watch started is found by the first look.
      this.urgentSignalled = true;
    } else if (!wanted && this.stopUrgentWatch) {
      this.stopUrgentWatch();
      this.stopUrgentWatch = null;
    }
  }

  protected override selectionChanged(): void {
    this.updateUrgentWatch();
  }

  /** Runs start() as a MSG_OOB receive: the socket watches for urgent data until release() is called. */
  private urgentWait<T>(start: (release: () => void) => T): T {
    this.urgentWaits++;
    this.updateUrgentWatch();
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.urgentWaits--;
      this.updateUrgentWatch();
    };
    try {
      return start(release);
    } catch (err) {
      release();
      throw err;
    }
  }

  flushSends(): number {
    if (!this.tx) return 0;
    return this.tx.cancel(W.WSA_OPERATION_ABORTED, (o) => o.overlapped) + this.tx.cancel(W.WSAEINTR, (o) => !o.overlapped);
  }

  /** Why a receive cannot start at all, or null when it can. */
  private recvPrecheck(flags: number): Outcome | null {
    if (flags & ~(W.MSG_PEEK | W.MSG_OOB | W.MSG_WAITALL)) return fail(W.WSAEOPNOTSUPP);
    // Urgent data needs the C library; with SO_OOBINLINE it arrives in the ordinary stream instead.
    if (flags & W.MSG_OOB && (!libc() || this.oobInline)) return fail(W.WSAEINVAL);
    if (this.state === 'listening') return fail(W.WSAENOTCONN);
    if (this.recvShut) return fail(W.WSAESHUTDOWN);
    if (this.state !== 'connected') return fail(W.WSAENOTCONN);
    return null;
  }

  /** A receive's outcome when it can finish now, or undefined while it must wait. */
  private recvCheck(lengths: readonly number[], flags: number, wantFrom: boolean): () => Outcome | undefined {
    let want = 0;
    for (const n of lengths) want += n;
    return () => {
      if (this.closed) return fail(W.WSAEINTR);
      if (this.recvShut) return fail(W.WSAESHUTDOWN);
      if (flags & W.MSG_OOB) return this.takeUrgent(flags);
      if (this.rxBytes > 0 || want === 0) {
        queueMicrotask(() => this.rearm(W.FD_READ));
        const data = this.take(want, (flags & W.MSG_PEEK) !== 0);
        const out: Record<string, unknown> = { data, bytesRecvd: data.length, flags: 0 };
        if (wantFrom) out['from'] = this.peerName() ?? undefined;
        return ok(out);
      }
      if (this.failure) return fail(this.failure);
      if (this.peerFinished) {
        const out: Record<string, unknown> = { data: new Uint8Array(0), bytesRecvd: 0, flags: 0 };
        if (wantFrom) out['from'] = this.peerName() ?? undefined;
        return ok(out);
      }
      return undefined;
    };
  }

  /** Reads urgent data with recv(MSG_OOB); undefined while none is waiting. */
  private takeUrgent(flags: number): Outcome | undefined {
    const native = libc()!;
    if (this.failure) return fail(this.failure);
    const fd = fdOf(this.conn);
    if (fd === null) return fail(W.WSAENOTCONN);
    if (!this.urgentMayWait()) return undefined;
    // TCP urgent data is one byte, whatever the buffers could hold.
    const buf = new Uint8Array(1);
    const n = native.recv(fd, buf, native.c.MSG_OOB | (flags & W.MSG_PEEK ? 2 : 0));
    if (n >= 0) {
      queueMicrotask(() => this.rearm(W.FD_OOB));
      return ok({ data: buf.subarray(0, n), bytesRecvd: n, flags: W.MSG_OOB });
    }
    if (-n === native.c.EINVAL || -n === native.c.EAGAIN) {
      this.urgentSignalled = false;
      return undefined;
    }
    return fail(wsaFromErrno(-n));
  }

  recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking = false): Promise<Outcome> {
    const bad = this.recvPrecheck(flags);
    if (bad) return Promise.resolve(bad);
    const check = this.recvCheck(lengths, flags, wantFrom);
    if (this.nonBlocking && !forceBlocking) return Promise.resolve(check() ?? fail(W.WSAEWOULDBLOCK));
    // Nothing tells node when urgent data arrives: SIGURG does (updateUrgentWatch).
    if (flags & W.MSG_OOB) return this.urgentWait((release) => this.waitFor(check).finally(release));
    return this.waitFor(check);
  }

  recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: CompleteFn): OverlappedStart {
    const precheck = this.recvPrecheck(flags);
    const check = this.recvCheck(lengths, flags, wantFrom);
    if (precheck || !(flags & W.MSG_OOB)) return this.overlappedRecv(precheck, check, done);
    return this.urgentWait((release) => {
      const started = this.overlappedRecv(null, check, (errno, bytes, out) => {
        release();
        done(errno, bytes, out);
      });
      if (started.outcome.errno !== W.WSA_IO_PENDING) release();
      return started;
    });
  }

  private take(want: number, peek: boolean): Uint8Array {
    const n = Math.min(want, this.rxBytes);
    const first = this.rx[0];
    let data: Uint8Array;
    if (first && first.length >= n) {
      data = first.subarray(0, n);
      if (!peek) {
        if (first.length === n) this.rx.shift();
        else this.rx[0] = first.subarray(n);
      }
    } else {
      const all = Buffer.concat(this.rx, this.rxBytes);
      data = all.subarray(0, n);
      if (!peek) this.rx = n < all.length ? [all.subarray(n)] : [];
      else this.rx = [all];
    }
    if (!peek) {
      this.rxBytes -= n;
      this.resumeInputIfRoom();
    }
    return data;
  }

  shutdown(how: number): Outcome {
    if (how !== W.SD_RECEIVE && how !== W.SD_SEND && how !== W.SD_BOTH) return fail(W.WSAEINVAL);
    if (this.state !== 'connected' || !this.conn) return fail(W.WSAENOTCONN);
    if (how === W.SD_RECEIVE || how === W.SD_BOTH) {
      this.recvShut = true;
    }
    if ((how === W.SD_SEND || how === W.SD_BOTH) && !this.sendShut) {
      this.sendShut = true;
      // FIN goes after every byte already accepted and every send still queued.
      if (this.tx && this.tx.pendingOps > 0) this.finAfterDrain = true;
      else this.conn.end();
    }
    this.wake();
    return ok();
  }

  close(abortCode: number = W.WSAEINTR, overlappedCode: number = W.WSA_OPERATION_ABORTED): void {
    if (this.closed) return;
    this.stopEvents();
    this.moveTo('closed');
    this.updateUrgentWatch();
    this.ctx.ports.release(this.handle);
    this.abortWaits(abortCode, overlappedCode);
    this.tx?.cancel(overlappedCode, (o) => o.overlapped, 'close');
    // Background data (Windows policy) keeps flowing after the close; blocked calls do not.
    this.tx?.cancel(abortCode, (o) => !o.overlapped && !o.background, 'close');
    for (const c of this.accepted.splice(0)) {
      this.ctx.connectionQueue.change(-1);
      c.resetAndDestroy();
    }
    this.server?.close();
    const conn = this.conn;
    if (conn && !conn.destroyed) {
      // Graceful close: bytes already accepted still reach the peer, then FIN.
      conn.removeAllListeners('data');
      conn.on('error', () => undefined);
      conn.resume();
      this.delivered = new Promise<void>((resolve) => {
        conn.once('finish', resolve);
        conn.once('close', resolve);
      });
      if (this.tx && this.tx.pendingOps > 0) {
        this.finAfterDrain = true;
      } else {
        conn.end();
        conn.destroySoon();
      }
      if (this.undelivered() > 0) this.ctx.draining.add(this);
    }
  }

  // ---- after the close: delivering what was accepted (Drainable) ----

  /** Resolves once the kernel has every accepted byte, or the connection ended. */
  delivered: Promise<void> = Promise.resolve();

  undelivered(): number {
    const conn = this.conn;
    if (!conn || conn.destroyed) return 0;
    return (this.tx?.notHanded ?? 0) + conn.writableLength;
  }

  abandon(): number {
    const n = this.undelivered();
    this.finAfterDrain = false;
    // Background sends (Windows policy) still queued end here; nobody waits for them any more.
    this.tx?.cancel(W.WSAECONNABORTED, () => true, 'broken');
    if (this.conn) resetConnection(this.conn);
    return n;
  }

  peerText(): string {
    const c = this.conn;
    return c?.remoteAddress ? `${c.remoteAddress.includes(':') ? `[${c.remoteAddress}]` : c.remoteAddress}:${c.remotePort}` : 'unknown';
  }

  localName(): SockAddr | null {
    if (this.conn && !this.conn.destroyed && this.conn.localAddress) {
      return fromNodeAddress({ address: this.conn.localAddress, port: this.conn.localPort, family: this.conn.localFamily }, this.af);
    }
    if (this.server) {
      const a = this.server.address();
      if (a && typeof a === 'object') return fromNodeAddress(a, this.af);
    }
    if (this.bound) return fromNodeAddress({ address: this.bound.address, port: this.bound.port }, this.af);
    return null;
  }

  peerName(): SockAddr | null {
    if (this.state !== 'connected' || !this.conn || !this.conn.remoteAddress) return null;
    return fromNodeAddress({ address: this.conn.remoteAddress, port: this.conn.remotePort, family: this.conn.remoteFamily }, this.af);
  }

  readable(): number {
    return this.rxBytes;
  }

  /** Reads from the connection again when the receive buffer has room and the session's output allows. */
  private resumeInputIfRoom(): void {
    if (this.conn?.isPaused() && !this.closed && this.rxBytes < Math.max(this.rcvBuf, 1) && !this.ctx.flow.paused) this.conn.resume();
  }

  override inputResumed(): void {
    this.resumeInputIfRoom();
  }

  applyBuffers(): void {
    if (this.tx) this.tx.capacity = this.sndBuf;
    this.resumeInputIfRoom();
    // An explicit SO_SNDBUF / SO_RCVBUF also sizes the kernel's buffers, so backpressure shows
    // after a few kilobytes rather than after the megabytes loopback autotuning allows.
    const native = libc();
    const fd = fdOf(this.conn);
    if (!native || fd === null) return;
    if (this.sndBufSet) native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_SNDBUF, this.sndBuf);
    if (this.rcvBufSet) native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_RCVBUF, this.rcvBuf);
  }

  applyOptions(): void {
    const conn = this.conn;
    if (!conn || conn.destroyed) return;
    conn.setKeepAlive(this.keepAlive);
    conn.setNoDelay(this.noDelay);
    const native = libc();
    const fd = fdOf(conn);
    if (!native || fd === null) return;
    native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_OOBINLINE, this.oobInline ? 1 : 0);
    native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_DONTROUTE, this.dontRoute ? 1 : 0);
    native.setLinger(fd, this.linger.onoff ? 1 : 0, this.linger.seconds);
    const c = native.c;
    // Values read back as they were set; the kernel gets them clamped to what it takes.
    if (this.keepIdle > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPIDLE, Math.min(this.keepIdle, KERNEL_MAX.keepIdle));
    if (this.keepInterval > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPINTVL, Math.min(this.keepInterval, KERNEL_MAX.keepInterval));
    if (this.keepCount > 0) native.setInt(fd, c.IPPROTO_TCP, c.TCP_KEEPCNT, Math.min(this.keepCount, KERNEL_MAX.keepCount));
    // Windows' TCP_MAXRT (seconds; -1 for no limit) is closest to Linux's TCP_USER_TIMEOUT
    // (milliseconds, an int): the longest it holds is about 24.8 days.
    const maxrt = this.maxRetransmitSeconds;
    if (maxrt !== 0 && c.TCP_USER_TIMEOUT) native.setInt(fd, c.IPPROTO_TCP, c.TCP_USER_TIMEOUT, maxrt < 0 ? INT32_MAX : Math.min(maxrt * 1000, INT32_MAX));
  }

  maxMessageSize(): number | null {
    return null;
  }
}

/**
 * Ends a connection with RST. node's resetAndDestroy() cannot once a FIN is queued (libuv refuses
 * a reset after shutdown), and the kernel would then send the rest and FIN: the peer would take a
 * truncated stream for a whole one. SO_LINGER {1, 0} makes the close itself send RST.
 */
function resetConnection(conn: net.Socket): void {
  const native = libc();
  const fd = fdOf(conn);
  if (native && fd !== null && native.setLinger(fd, 1, 0) === 0) conn.destroy();
  else conn.resetAndDestroy();
}

function clampBacklog(n: number): number {
  return Math.min(Math.max(n, 1), MAX_BACKLOG);
}
