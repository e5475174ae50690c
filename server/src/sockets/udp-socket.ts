/** A UDP socket: node:dgram underneath, Winsock semantics on top. */
import * as dgram from 'node:dgram';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import { wsaFromNodeError } from '../errno-map.js';
import { fail, ok, type Outcome } from '../outcome.js';
import { EmulatedSocket, type CompleteFn, type OverlappedStart, type SocketContext } from './emulated-socket.js';
import { anyAddress, fromNodeAddress, hostOf, isAnyAddress, isBroadcastAddress, refuseLookup } from './sockaddr.js';
import { byteLength, contiguous } from './send-buffers.js';

const UDP_SEND_FLAGS = W.MSG_OOB | W.MSG_DONTROUTE | W.MSG_PARTIAL;

interface Datagram {
  data: Buffer;
  from: SockAddr;
}

export class UdpSocket extends EmulatedSocket {
  private sock: dgram.Socket | null = null;
  private isBoundFlag = false;
  /** A bind under way (node binds asynchronously). */
  private binding: Promise<Outcome> | null = null;
  private peer: SockAddr | null = null;
  private readonly rxQueue: Datagram[] = [];
  private rxBytes = 0;
  /** An ICMP port unreachable arrived for a connected socket: the next receive reports WSAECONNRESET. */
  private icmpReset = false;

  constructor(ctx: SocketContext) {
    super(ctx);
  }

  private ensureSocket(): dgram.Socket {
    if (this.sock) return this.sock;
    const sock = dgram.createSocket({ type: this.af === W.AF_INET6 ? 'udp6' : 'udp4', ipv6Only: this.af === W.AF_INET6, lookup: refuseLookup });
    sock.on('message', (data, rinfo) => {
      // A full receive buffer drops the datagram, as the kernel would.
      if (this.rxBytes + data.length > Math.max(this.rcvBuf, 65536)) return;
      this.rxQueue.push({ data, from: fromNodeAddress(rinfo, this.af) });
      this.rxBytes += data.length;
      this.wake();
    });
    sock.on('error', (err) => {
      // libuv's receive side reports an ICMP port unreachable for a connected socket as an error;
      // Windows reports it on the next receive as WSAECONNRESET.
      if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED' && this.peer) {
        this.icmpReset = true;
        this.wake();
        return;
      }
      this.log.debug({ err: err.message }, 'udp socket error');
    });
    this.sock = sock;
    return sock;
  }

  bind(name: SockAddr): Promise<Outcome> {
    // A bind still under way counts as bound: Windows binds synchronously, so a second bind
    // (explicit or automatic) in the same frame finds the socket bound.
    if (this.isBoundFlag || this.binding || this.state !== 'open') return Promise.resolve(fail(W.WSAEINVAL));
    const binding = this.bindNow(name);
    this.binding = binding;
    void binding.then(() => {
      if (this.binding === binding) this.binding = null;
    });
    return binding;
  }

  private async bindNow(name: SockAddr): Promise<Outcome> {
    const sock = this.ensureSocket();
    const err = await new Promise<Error | null>((resolve) => {
      const onError = (e: Error): void => resolve(e);
      // Closed while binding: node may never call back, but the call must still be answered.
      const onClose = (): void => resolve(Object.assign(new Error('closed while binding'), { code: 'ERR_SOCKET_DGRAM_NOT_RUNNING' }));
      sock.once('error', onError);
      sock.once('close', onClose);
      try {
        sock.bind({ address: hostOf(name), port: name.port, exclusive: true }, () => {
          sock.off('error', onError);
          sock.off('close', onClose);
          resolve(null);
        });
      } catch (e) {
        resolve(e as Error);
      }
    });
    if (this.closed) return fail(W.WSAENOTSOCK);
    if (err) {
      // A failed bind leaves node's socket unusable: start again with a fresh one.
      this.sock = null;
      sock.close();
      return fail(wsaFromNodeError(err));
    }
    this.isBoundFlag = true;
    this.applyBuffers();
    this.applyOptions();
    this.moveTo('bound');
    this.checkEvents();
    return ok();
  }

  private async autoBind(): Promise<number> {
    // Behind a bind under way: its outcome decides (bound, or free to bind again).
    if (this.binding) await this.binding;
    if (this.isBoundFlag) return 0;
    const r = await this.bind({ family: this.af, address: anyAddress(this.af), port: 0 });
    return r.errno;
  }

  listen(): Promise<Outcome> {
    return Promise.resolve(fail(W.WSAEOPNOTSUPP));
  }

  accept(): Promise<Outcome> {
    return Promise.resolve(fail(W.WSAEOPNOTSUPP));
  }

  /** Connects run one after another: node refuses a connect while another is under way. */
  private connecting: Promise<unknown> = Promise.resolve();

  connect(name: SockAddr): Promise<Outcome> {
    const run = this.connecting.then(() => this.connectNow(name));
    this.connecting = run.catch(() => undefined);
    return run;
  }

  /** Drops node's default peer (node throws when it has none, which is no error here). */
  private disconnectNode(): void {
    try {
      this.sock?.disconnect();
    } catch {
      // Not connected in node's eyes: nothing to undo.
    }
    this.peer = null;
  }

  private async connectNow(name: SockAddr): Promise<Outcome> {
    if (this.closed) return fail(W.WSAENOTSOCK);
    // Connecting to the any address with port 0 dissolves the association, as on Windows.
    if (isAnyAddress(name.address) && name.port === 0) {
      if (this.peer) this.disconnectNode();
      return ok();
    }
    if (isAnyAddress(name.address) || name.port === 0) return fail(W.WSAEADDRNOTAVAIL);
    const e = await this.autoBind();
    if (e) return fail(e);
    if (this.closed) return fail(W.WSAENOTSOCK);
    const sock = this.ensureSocket();
    if (this.peer) this.disconnectNode();
    const err = await new Promise<Error | null>((resolve) => {
      const onError = (x: Error): void => resolve(x);
      sock.once('error', onError);
      try {
        sock.connect(name.port, hostOf(name), () => {
          sock.off('error', onError);
          resolve(null);
        });
      } catch (e) {
        sock.off('error', onError);
        resolve(e as Error);
      }
    });
    if (this.closed) return fail(W.WSAENOTSOCK);
    if (err) return fail(wsaFromNodeError(err));
    this.peer = { ...name };
    this.icmpReset = false;
    this.moveTo('connected');
    return ok();
  }

  /** Why a send cannot go, or where it goes and how many bytes it holds. */
  private sendPlan(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null): Outcome | { dest: SockAddr; total: number } {
    if ((flags & ~UDP_SEND_FLAGS) !== 0) return fail(W.WSAEOPNOTSUPP);
    // UDP has neither out-of-band data nor XP1_PARTIAL_MESSAGE.
    if (flags & (W.MSG_OOB | W.MSG_PARTIAL)) return fail(W.WSAEOPNOTSUPP);
    if (this.sendShut) return fail(W.WSAESHUTDOWN);
    const total = byteLength(buffers);
    if (total > this.maxMessageSize()) return fail(W.WSAEMSGSIZE);
    // On a connected socket the destination is the default peer; lpTo is ignored.
    const dest = this.peer ?? to;
    if (!dest) return fail(W.WSAENOTCONN);
    if (isAnyAddress(dest.address) || dest.port === 0) return fail(W.WSAEADDRNOTAVAIL);
    // Refused here, before the kernel, so that no broadcast datagram ever leaves without SO_BROADCAST.
    if (!this.broadcast && isBroadcastAddress(dest.address)) return fail(W.WSAEACCES);
    return { dest, total };
  }

  send(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, _forceBlocking = false): Promise<Outcome> {
    return this.sendAs(buffers, flags, to, (o) => o);
  }

  /**
   * Sends one datagram and settles with settle(outcome): one promise, settled straight from node's
   * send callback when the socket is bound already (the usual case), so no extra turn of the
   * event loop passes before the datagram goes or after node reports it.
   */
  private sendAs<T>(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, settle: (o: Outcome) => T): Promise<T> {
    const plan = this.sendPlan(buffers, flags, to);
    // settle runs inside node's callback: a fault in it must reject the call, not escape.
    const viaSettle = (resolve: (v: T) => void, reject: (err: unknown) => void) => (o: Outcome): void => {
      try {
        resolve(settle(o));
      } catch (err) {
        reject(err);
      }
    };
    if ('errno' in plan) return new Promise((resolve, reject) => viaSettle(resolve, reject)(plan));
    const go = (): Promise<T> => new Promise((resolve, reject) => this.transmit(buffers, plan.total, plan.dest, viaSettle(resolve, reject)));
    if (this.isBoundFlag) return go();
    return this.autoBind().then((e) => (e ? settle(fail(e)) : go()));
  }

  /** Hands one datagram to the kernel; done gets the outcome once node reports the send (next tick at the earliest). */
  private transmit(buffers: readonly Uint8Array[], total: number, dest: SockAddr, done: (o: Outcome) => void): void {
    if (this.closed) return done(fail(W.WSAEINTR));
    const sock = this.ensureSocket();
    const payload = contiguous(buffers, total);
    const to = this.peer ? null : dest;
    let retried = false;
    const cb = (err: Error | null): void => {
      if (err && !retried && (err as NodeJS.ErrnoException).code === 'ECONNREFUSED') {
        // Linux reports an earlier ICMP port unreachable on this send and drops it; Windows does
        // not fail sends for it (the next receive reports WSAECONNRESET instead). Send again.
        this.icmpReset = true;
        retried = true;
        this.sendOnce(sock, payload, to, cb);
        return;
      }
      done(err ? fail(wsaFromNodeError(err)) : ok({ bytesSent: total }));
    };
    this.sendOnce(sock, payload, to, cb);
  }

  private sendOnce(sock: dgram.Socket, payload: Uint8Array, dest: SockAddr | null, cb: (err: Error | null) => void): void {
    try {
      if (dest) sock.send(payload, dest.port, hostOf(dest), cb);
      else sock.send(payload, cb);
    } catch (err) {
      cb(err as Error);
    }
  }

  /** UDP sends never queue: an overlapped send completes at once or fails at once. */
  sendOverlapped(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, _thread: number, done: CompleteFn): Promise<OverlappedStart> {
    return this.sendAs(buffers, flags, to, (outcome) => {
      if (outcome.ret === 0) done(0, outcome['bytesSent'] as number);
      return { outcome };
    });
  }

  flushSends(): number {
    return 0;
  }

  private recvPrecheck(flags: number): Outcome | null {
    if (flags & W.MSG_OOB) return fail(W.WSAEOPNOTSUPP);
    if (flags & ~(W.MSG_PEEK | W.MSG_OOB)) return fail(W.WSAEOPNOTSUPP);
    if (this.recvShut) return fail(W.WSAESHUTDOWN);
    if (!this.isBoundFlag && !this.binding) return fail(W.WSAEINVAL);
    return null;
  }

  private recvCheck(lengths: readonly number[], flags: number, wantFrom: boolean): () => Outcome | undefined {
    let room = 0;
    for (const n of lengths) room += n;
    return () => {
      if (this.closed) return fail(W.WSAEINTR);
      if (this.recvShut) return fail(W.WSAESHUTDOWN);
      if (this.icmpReset && this.rxQueue.length === 0) {
        this.icmpReset = false;
        return fail(W.WSAECONNRESET);
      }
      const d = this.rxQueue[0];
      if (!d) return undefined;
      queueMicrotask(() => this.rearm(W.FD_READ));
      if (!(flags & W.MSG_PEEK)) {
        this.rxQueue.shift();
        this.rxBytes -= d.data.length;
      }
      const truncated = d.data.length > room;
      const data = truncated ? d.data.subarray(0, room) : d.data;
      const out: Record<string, unknown> = { data, bytesRecvd: data.length, flags: truncated ? W.MSG_PARTIAL : 0 };
      if (wantFrom) out['from'] = d.from;
      // A truncated datagram is WSAEMSGSIZE, with the part that fitted delivered.
      return truncated ? { ret: W.SOCKET_ERROR, errno: W.WSAEMSGSIZE, ...out } : ok(out);
    };
  }

  recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking = false): Promise<Outcome> {
    const bad = this.recvPrecheck(flags);
    if (bad) return Promise.resolve(bad);
    const check = this.recvCheck(lengths, flags, wantFrom);
    if (this.nonBlocking && !forceBlocking) return Promise.resolve(check() ?? fail(W.WSAEWOULDBLOCK));
    return this.waitFor(check);
  }

  recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: CompleteFn): OverlappedStart {
    return this.overlappedRecv(this.recvPrecheck(flags), this.recvCheck(lengths, flags, wantFrom), done);
  }

  shutdown(how: number): Outcome {
    if (how !== W.SD_RECEIVE && how !== W.SD_SEND && how !== W.SD_BOTH) return fail(W.WSAEINVAL);
    if (how !== W.SD_SEND) this.recvShut = true;
    if (how !== W.SD_RECEIVE) this.sendShut = true;
    this.wake();
    return ok();
  }

  protected readyEvents(wanted: number): Array<[number, number]> {
    const ready: Array<[number, number]> = [];
    if (wanted & W.FD_READ && this.rxQueue.length > 0) ready.push([W.FD_READ, 0]);
    // A datagram socket can always send once it has an address.
    if (wanted & W.FD_WRITE && this.isBoundFlag && !this.sendShut) ready.push([W.FD_WRITE, 0]);
    return ready;
  }

  close(abortCode: number = W.WSAEINTR, overlappedCode: number = W.WSA_OPERATION_ABORTED): void {
    if (this.closed) return;
    this.stopEvents();
    this.moveTo('closed');
    this.abortWaits(abortCode, overlappedCode);
    const sock = this.sock;
    this.sock = null;
    if (sock) {
      try {
        sock.close();
      } catch {
        // Not yet bound: nothing to close.
      }
    }
  }

  localName(): SockAddr | null {
    if (!this.sock || !this.isBoundFlag) return null;
    try {
      return fromNodeAddress(this.sock.address(), this.af);
    } catch {
      return null;
    }
  }

  peerName(): SockAddr | null {
    return this.peer ? { ...this.peer } : null;
  }

  readable(): number {
    // FIONREAD on a message socket is all pending data (ioctlsocket reference), though one
    // receive returns at most one datagram.
    return this.rxBytes;
  }

  applyBuffers(): void {
    if (!this.sock || !this.isBoundFlag) return;
    try {
      if (this.sndBuf > 0) this.sock.setSendBufferSize(this.sndBuf);
      if (this.rcvBuf > 0) this.sock.setRecvBufferSize(this.rcvBuf);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not size the kernel buffers');
    }
  }

  applyOptions(): void {
    // SO_BROADCAST reaches the real socket (the daemon also refuses broadcasts itself without it);
    // node:dgram exposes no descriptor, so SO_DONTROUTE is recorded and reads back, nothing more.
    if (this.sock && this.isBoundFlag) {
      try {
        this.sock.setBroadcast(this.broadcast);
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'could not set SO_BROADCAST');
      }
    }
  }

  maxMessageSize(): number {
    return this.af === W.AF_INET6 ? W.UDP_MAX_MSG_SIZE_V6 : W.UDP_MAX_MSG_SIZE_V4;
  }
}
