/**
 * A UDP socket: node:dgram underneath, Winsock semantics on top. Its life is the UDP state
 * machine of socket-state.ts: created, bound (explicitly or by the first send or connect),
 * connected to a default peer, closed.
 */
import * as dgram from 'node:dgram';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import { wsaFromErrno, wsaFromNodeError } from '../errno-map.js';
import { EmulatedSocket, SELECT_READ, SELECT_WRITE, type SendFunction, type SocketContext, type SocketIdentity } from './emulated-socket.js';
import type { AppliedFault, CallMode } from '../faults/rules.js';
import { UDP_MOVES, type UdpState } from './socket-state.js';
import { recvFailed, sendFailed, sent, startedAt, type AcceptResult, type Completion, type RecvResult, type SendResult, type Started } from './results.js';
import { anyAddress, fromNodeAddress, hasUnknownScope, hostOf, interfaceIpv4, interfaceName, isAnyAddress, isBroadcastAddress, localAddressExists, refuseLookup } from './sockaddr.js';
import { byteLength, contiguous } from './send-buffers.js';
import { sendmmsgBatcher, sockaddrBytes, type Batched } from './datagram-batch.js';
import { dgramFdOf } from '../native/libc.js';
import { MAX_PORT_TRIES, type PortReservations } from './port-reservations.js';
import { applyIpOptions } from './native-options.js';
import { datagramWaits, drainIcmpErrors, PendingIcmpReports, reportIcmpErrors } from './icmp-errors.js';
import { constants } from 'node:os';
import { Later, promiseOf } from '../later.js';

const UDP_SEND_FLAGS = W.MSG_OOB | W.MSG_DONTROUTE | W.MSG_PARTIAL;

interface Datagram {
  data: Buffer;
  from: SockAddr;
}

/**
 * How many times a datagram is sent again after Linux reported an earlier datagram's ICMP error
 * on it (each report takes one pending error; datagrams in flight may bring more meanwhile).
 */
const MAX_ICMP_RETRIES = 16;

/**
 * The longest a nonblocking receive waits for node to read a datagram the kernel holds ahead of
 * a waiting report (UdpSocket.datagramBehindReport). Node reads it at its next poll; the bound is
 * only a safety net, wide enough that a loaded machine's stalled event loop does not reach it
 * (the report would then come before the datagram).
 */
const DATAGRAM_BEHIND_REPORT_MS = 1000;

const { EAGAIN, ECONNREFUSED } = constants.errno;

/** A datagram waiting for the socket's next batch (datagram-batch.ts). */
interface QueuedDatagram extends Batched {
  /** Where node:dgram sends it, should the batch hand it over (null: the default peer). */
  readonly to: SockAddr | null;
  readonly total: number;
  readonly counted: boolean;
  readonly done: (r: SendResult) => void;
  /** Times it was sent again after an ICMP port unreachable took its send (MAX_ICMP_RETRIES). */
  retries: number;
}

/** What a fault does to one datagram send. */
interface DatagramFault {
  copies: 0 | 1 | 2;
  delayMs: number;
  reorder: { fault: AppliedFault; windowMs: number } | null;
}

/** Binds node's socket to name: null, or the error (also when it closed while binding). */
function bindDgram(sock: dgram.Socket, name: SockAddr): Promise<Error | null> {
  return new Promise<Error | null>((resolve) => {
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
      resolve(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

/**
 * The least a waiting datagram counts against SO_RCVBUF and the daemon's received budget: its
 * Buffer, address and queue entry cost about 225 bytes of heap whatever its size, and empty
 * datagrams counted by their bytes alone piled up uncounted (3 million: 1 GB). Larger ones count
 * their bytes, so that SO_RCVBUF holds as many of them as on Windows.
 */
const MIN_DATAGRAM_CHARGE = 256;
const chargeOf = (d: Uint8Array): number => Math.max(d.length, MIN_DATAGRAM_CHARGE);

export class UdpSocket extends EmulatedSocket<UdpState> {
  private sock: dgram.Socket | null = null;
  /** A bind under way (node binds asynchronously): it counts as bound for a second bind or a receive. */
  private binding: Promise<number> | null = null;
  private peer: SockAddr | null = null;
  /** The default peer once a send found it a usable destination (sendPlan). */
  private peerChecked: SockAddr | null = null;
  /** WSPShutdown(SD_SEND): sends fail with WSAESHUTDOWN. */
  private sendsShut = false;
  private readonly rxQueue: Datagram[] = [];
  /** Bytes of the datagrams waiting (FIONREAD). */
  private rxBytes = 0;
  /** What they count against SO_RCVBUF and the received budget (chargeOf each). */
  private rxCharge = 0;
  /**
   * ICMP errors that arrived for earlier datagrams, each reported by a receive that finds no
   * datagram waiting: WSAECONNRESET for a port unreachable, WSAENETRESET for a time exceeded.
   */
  private readonly icmpReports = new PendingIcmpReports();
  /** The descriptor whose ICMP errors the kernel queues (icmp-errors.ts), once bound; null: none are. */
  private errorQueueFd: number | null = null;
  /** A read of that queue scheduled after node's send callbacks (readErrorQueueSoon). */
  private errorQueueRead: NodeJS.Immediate | null = null;
  /** Bytes of the datagrams sent so far (match.afterBytes). */
  private sentBytes = 0;
  /** Bytes of datagrams that arrived, dropped ones included (for metrics). */
  private receivedTotal = 0;
  /**
   * Datagrams sent in this go of the event loop: they go together, in order, once the session has
   * handled the frame or on the next tick (sendDatagramBatches), and before anything that could
   * change where or how a datagram goes (a connect, an option, the close).
   */
  private batch: QueuedDatagram[] = [];
  /** Whether this socket waits in batchesWaiting. */
  private batchScheduled = false;
  /** Datagrams handed to node:dgram that it has not called back for. */
  private nodeSends = 0;
  /** The descriptor the batches go to: set once bound, when sendmmsg is available. */
  private batchFd: number | null = null;
  /** Whether runs of equal datagrams may go as one segmented message (until the kernel refuses one). */
  private segmentRuns = true;
  /** The last destination of an unconnected send, as a struct sockaddr (most sends repeat it). */
  private lastName: { address: string; port: number; bytes: Uint8Array } | null = null;

  /** The daemon's record of bound addresses: who may share a port. */
  private readonly ports: PortReservations;
  /** IP_MULTICAST_IF / IPV6_MULTICAST_IF as the client set it (0: the host's choice). */
  private multicastIf = 0;

  constructor(id: SocketIdentity, ctx: SocketContext) {
    super(id, ctx, UDP_MOVES, 'created');
    this.ports = ctx.ports;
  }

  entered(to: UdpState): void {
    switch (to) {
      case 'bound':
        if (this.peer) this.disconnectNode();
        this.checkEvents();
        break;
      case 'connected':
        this.icmpReports.clear();
        // A default peer records FD_CONNECT on a selected socket, as a TCP connect does.
        this.checkEvents();
        break;
      case 'closed':
        this.stopEvents();
        this.ports.release(this.handle);
        break;
      default:
        break;
    }
  }

  /**
   * Circular queueing: drops the oldest datagrams waiting until at most limit bytes wait; false,
   * dropping none, when limit is negative (the new datagram alone is larger than the buffer).
   */
  private dropOldest(limit: number): boolean {
    if (limit < 0) return false;
    while (this.rxCharge > limit) this.dequeue();
    return true;
  }

  /** The oldest datagram waiting leaves the queue (a receive took it, or circular queueing dropped it). */
  private dequeue(): void {
    const d = this.rxQueue.shift()!;
    this.rxBytes -= d.data.length;
    this.rxCharge -= chargeOf(d.data);
    this.received.add(-chargeOf(d.data));
  }

  private get isBound(): boolean {
    return this.state.is('bound', 'connected');
  }

  addressFixed(): boolean {
    return this.isBound || this.binding !== null || this.sock !== null;
  }

  private ensureSocket(): dgram.Socket {
    if (this.sock) return this.sock;
    // SO_REUSEADDR lets UDP sockets share a port on Windows; the host's SO_REUSEADDR does the same.
    const sock = dgram.createSocket({ type: this.af === W.AF_INET6 ? 'udp6' : 'udp4', ipv6Only: this.ipv6Only, reuseAddr: this.opts.reuseAddr, lookup: refuseLookup });
    sock.on('message', (data, rinfo) => {
      this.receivedTotal += data.length;
      // A full receive buffer drops the datagram, as the kernel would, or with circular queueing
      // the oldest ones it holds; the daemon's budget of received bytes drops it too, while this
      // session holds more than its share, except for a socket whose receive waits with nothing
      // to take (as TCP's): a client waiting on one socket while others hold the budget would
      // wait forever.
      if (this.received.full && !(this.hasWaiters && this.rxCharge === 0)) return this.dropped();
      const room = Math.min(Math.max(this.opts.rcvBuf, 65536), this.maxRecvBytes);
      const charge = chargeOf(data);
      if (this.rxCharge + charge > room && !(this.opts.circularQueueing && this.dropOldest(room - charge))) return this.dropped();
      this.rxQueue.push({ data, from: fromNodeAddress(rinfo, this.af) });
      this.rxBytes += data.length;
      this.rxCharge += charge;
      this.received.add(charge);
      this.reenable(W.FD_READ);
      this.wake();
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      // libuv's receive side reports an earlier datagram's ICMP error: a connected socket's always,
      // any socket's once the kernel queues them. Windows reports a port unreachable on the next
      // receive as WSAECONNRESET. The queue says which errors came: the one node reports is only
      // the last. Where the queue is read, the error node reports is one of its entries, counted
      // there, unless the kernel could not queue it (a full receive buffer): then, and where the
      // queue is not read, it is all there is to count.
      const queued = this.readErrorQueue(ECONNREFUSED);
      if (err.code === 'ECONNREFUSED') {
        if (queued === 0) this.portUnreachable();
        return;
      }
      this.log.debug({ err: err.message }, 'udp socket error');
    });
    this.sock = sock;
    return sock;
  }

  /** A datagram node read was dropped: a receive that waited for it to report an ICMP error looks again. */
  private dropped(): void {
    if (this.icmpReports.pending) this.wake();
  }

  /** Calls issued before a close and still waiting for a bind (the socket's own, or automatic). */
  private beforeClose = 0;
  /** A close that waits for them. */
  private closeLater: (() => void) | null = null;

  /**
   * Windows binds synchronously: a bind, or a send or connect that binds automatically, is done
   * before a WSPCloseSocket issued after it runs. Here the bind takes a moment, so a close that
   * comes meanwhile waits for the calls it follows (a moment) instead of failing them.
   */
  private ahead<T>(call: Promise<T>): Promise<T> {
    const release = this.holdClose();
    call.then(release, release);
    return call;
  }

  /** A close from now on waits until the function returned is called (ahead, and node's sends). */
  private holdClose(): () => void {
    this.beforeClose++;
    return () => {
      if (--this.beforeClose > 0 || !this.closeLater) return;
      const close = this.closeLater;
      this.closeLater = null;
      close();
    };
  }

  bind(name: SockAddr): Promise<number> {
    // A bind still under way counts as bound: Windows binds synchronously, so a second bind
    // (explicit or automatic) in the same frame finds the socket bound.
    if (!this.state.is('created') || this.binding) return Promise.resolve(W.WSAEINVAL);
    const binding = this.ahead(this.bindNow(name));
    this.binding = binding;
    void binding.then(() => {
      if (this.binding === binding) this.binding = null;
    });
    return binding;
  }

  /**
   * A port named by the bind is settled in its turn (PortReservations.onPort): two binds racing
   * for one port, both with SO_REUSEADDR, would otherwise both pass the check, and the host would
   * let both bind before the reservation refused one, which could take datagrams meanwhile.
   */
  private bindNow(name: SockAddr): Promise<number> {
    return name.port === 0 ? this.bindHost(name) : this.ports.onPort('udp', name.port, () => this.bindHost(name));
  }

  private async bindHost(name: SockAddr): Promise<number> {
    // Windows' rules between the daemon's sockets first (PortReservations), then the host's bind.
    const first = name.port === 0 ? 0 : this.ports.check(this.handle, this.reservationFor(name, name.port));
    if (first !== 0) return first;
    let sock: dgram.Socket;
    for (let attempt = 1; ; attempt++) {
      sock = this.ensureSocket();
      const err = await bindDgram(sock, name);
      if (this.closed) return this.interruptedWith;
      if (err) {
        // A failed bind leaves node's socket unusable: start again with a fresh one.
        this.sock = null;
        sock.close();
        const code = wsaFromNodeError(err);
        // The port is held by a socket that did not agree to share it: a socket asking to share
        // gets WSAEACCES on Windows (Wine's test_reuseaddr), not WSAEADDRINUSE.
        return code === W.WSAEADDRINUSE && this.opts.reuseAddr ? W.WSAEACCES : code;
      }
      // Checked again with the port the host gave: another socket may have bound meanwhile, or,
      // for port 0, the host may have given a port that another session shares by SO_REUSEADDR.
      const code = this.ports.reserve(this.handle, this.reservationFor(name, sock.address().port));
      if (code === 0) break;
      this.sock = null;
      sock.close();
      if (name.port !== 0 || attempt >= MAX_PORT_TRIES) return code;
    }
    if (!this.state.move('bound')) return W.WSAEINVAL;
    const fd = dgramFdOf(sock);
    this.batchFd = sendmmsgBatcher() ? fd : null;
    this.errorQueueFd = fd !== null && reportIcmpErrors(fd, this.af === W.AF_INET6) ? fd : null;
    this.applyBuffers();
    this.applyOptions();
    return 0;
  }

  private async autoBind(): Promise<number> {
    // Behind a bind under way: its outcome decides (bound, or free to bind again).
    if (this.binding) await this.binding;
    if (this.isBound) return 0;
    return this.bind({ family: this.af, address: anyAddress(this.af), port: 0 });
  }

  listen(): Promise<number> {
    return Promise.resolve(W.WSAEOPNOTSUPP);
  }

  accept(): Promise<AcceptResult> {
    return Promise.resolve({ errno: W.WSAEOPNOTSUPP });
  }

  /** Connects run one after another: node refuses a connect while another is under way. */
  private connecting: Promise<unknown> = Promise.resolve();
  /** Connects issued and not yet settled: sends issued meanwhile wait for them (see send). */
  private connectsUnderWay = 0;

  connect(name: SockAddr): Promise<number> {
    this.connectsUnderWay++;
    const run = this.ahead(this.connecting.then(() => this.connectNow(name)));
    const settled = (): void => {
      this.connectsUnderWay--;
    };
    run.then(settled, settled);
    this.connecting = run.catch(() => undefined);
    return run;
  }

  /** Drops node's default peer (node throws when it has none, which is no error here). */
  private disconnectNode(): void {
    this.flushBatch();
    try {
      this.sock?.disconnect();
    } catch {
      // Not connected in node's eyes: nothing to undo.
    }
    this.peer = null;
  }

  private async connectNow(name: SockAddr): Promise<number> {
    if (this.closed) return this.interruptedWith;
    // Connecting to the any address with port 0 dissolves the association, as on Windows.
    if (isAnyAddress(name.address) && name.port === 0) {
      if (this.state.is('connected')) this.state.move('bound');
      return 0;
    }
    if (isAnyAddress(name.address) || name.port === 0) return W.WSAEADDRNOTAVAIL;
    if (this.faults.armed) {
      // The default peer is not set: the socket stays as it was.
      const fault = this.faults.decide(this, { fn: 'WSPConnect', mode: this.opts.nonBlocking ? 'nonblocking' : 'blocking', remote: name });
      if (fault?.action.type === 'error') return fault.action.code;
    }
    const e = await this.autoBind();
    if (e) return e;
    if (this.closed) return this.interruptedWith;
    const sock = this.ensureSocket();
    if (this.peer) this.disconnectNode();
    // Windows connects to a broadcast address without SO_BROADCAST (Wine's test_broadcast); the
    // kernel refuses that connect (EACCES) unless the socket may broadcast.
    if (isBroadcastAddress(name.address)) {
      try {
        sock.setBroadcast(true);
      } catch {
        // Not bound yet in node's eyes: the connect below reports what the kernel says.
      }
    }
    const err = await new Promise<Error | null>((resolve) => {
      const onError = (x: Error): void => resolve(x);
      sock.once('error', onError);
      try {
        // node passes a failed connect's error to the callback (EACCES, ENETUNREACH, ...).
        sock.connect(name.port, hostOf(name), (x?: Error | null) => {
          sock.off('error', onError);
          resolve(x ?? null);
        });
      } catch (x) {
        sock.off('error', onError);
        resolve(x instanceof Error ? x : new Error(String(x)));
      }
    });
    if (this.closed) return this.interruptedWith;
    if (err) return wsaFromNodeError(err);
    this.peer = { ...name };
    this.applyOptions();
    // A reconnect stays connected (to the new peer): the entry action runs only on arriving.
    this.icmpReports.clear();
    if (!this.state.move('connected')) return W.WSAEINVAL;
    return 0;
  }

  /** Why a send cannot go (a WSA code), or where it goes and how many bytes it holds. */
  private sendPlan(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null): number | { dest: SockAddr; total: number } {
    if ((flags & ~UDP_SEND_FLAGS) !== 0) return W.WSAEOPNOTSUPP;
    // UDP has neither out-of-band data nor XP1_PARTIAL_MESSAGE.
    if (flags & (W.MSG_OOB | W.MSG_PARTIAL)) return W.WSAEOPNOTSUPP;
    if (this.sendsShut) return W.WSAESHUTDOWN;
    const total = byteLength(buffers);
    if (total > this.maxMessageSize()) return W.WSAEMSGSIZE;
    // On a connected socket the destination is the default peer; lpTo is ignored.
    const dest = this.peer ?? to;
    if (!dest) return W.WSAENOTCONN;
    if (dest !== this.peerChecked) {
      if (isAnyAddress(dest.address)) return W.WSAEADDRNOTAVAIL;
      // The default peer is the same object until the next connect: checked once, not per send.
      if (dest === this.peer) this.peerChecked = dest;
    }
    // A scope that names no interface: node would send with scope 0, through whichever interface
    // the host picks, and report it sent; not a valid remote address, as for WSPBind.
    if (dest === to && hasUnknownScope(dest)) return W.WSAEADDRNOTAVAIL;
    // Refused here, before the kernel, so that no broadcast datagram ever leaves without SO_BROADCAST.
    // Windows gates lpTo only: a socket connected to a broadcast address sends to it with WSPSend
    // (Wine's test_broadcast), while a WSPSendTo naming it still needs SO_BROADCAST.
    if (!this.opts.broadcast && to !== null && isBroadcastAddress(to.address)) return W.WSAEACCES;
    return { dest, total };
  }

  /**
   * Sends one datagram: one promise, settled straight from node's send callback when the socket
   * is bound already (the usual case), so no extra turn of the event loop passes before the
   * datagram goes or after node reports it.
   */
  send(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, forceBlocking = false, fn: SendFunction = 'WSPSend'): Promise<SendResult> {
    return this.afterConnects(() => this.sendNow(buffers, flags, to, forceBlocking, fn));
  }

  /**
   * Windows sets (or dissolves) the default peer before connect returns: a send issued after a
   * connect, in the same frame as it, goes where that connect says. Here the connect takes a
   * moment (node's and the kernel's), so a send runs after the connects issued before it (and
   * before any issued after it: its callback runs ahead of theirs); at once when none is under way.
   */
  private afterConnects<T>(run: () => Promise<T>): Promise<T> {
    return this.connectsUnderWay > 0 ? this.ahead(this.connecting.then(run)) : run();
  }

  private sendNow(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, forceBlocking: boolean, fn: SendFunction): Promise<SendResult> {
    const plan = this.sendPlan(buffers, flags, to);
    if (typeof plan === 'number') return Promise.resolve(sendFailed(plan));
    if (this.faults.armed) {
      const fault = this.sendFault(fn, this.opts.nonBlocking && !forceBlocking ? 'nonblocking' : 'blocking', plan.dest);
      if (typeof fault === 'number') return Promise.resolve(sendFailed(fault));
      if (fault) {
        const r = this.sendPlanned(buffers, plan, fault.copies);
        return fault.delayMs ? this.delayedResult(r, fault.delayMs) : r;
      }
    }
    return this.sendPlanned(buffers, plan);
  }

  /** Sends the datagram copies times (a drop fault: 0, reported sent all the same; duplicate: 2). */
  private sendPlanned(buffers: readonly Uint8Array[], plan: { dest: SockAddr; total: number }, copies = 1): Promise<SendResult> {
    // Windows sends a datagram to port 0 (Wine's test_UDP); Linux refuses it (EINVAL), and no
    // socket can be bound to port 0 to receive it: it is reported sent and goes nowhere.
    if (plan.dest.port === 0) copies = 0;
    const go = (): Promise<SendResult> => {
      if (copies === 0) {
        if (this.closed) return Promise.resolve(sendFailed(W.WSAEINTR));
        this.sentBytes += plan.total;
        return Promise.resolve(sent(plan.total));
      }
      const first = new Promise<SendResult>((resolve) => this.transmit(buffers, plan.total, plan.dest, resolve));
      // The copy follows the datagram; the call reports the datagram's own result.
      if (copies === 2) void first.then((r) => r.errno === 0 && this.transmit(buffers, plan.total, plan.dest, () => undefined, false));
      return first;
    };
    if (this.isBound) return go();
    return this.ahead(this.autoBind().then((e) => (e ? sendFailed(e) : go())));
  }

  /**
   * Asks the fault rules about a send that passed its checks: the code it fails with, how the
   * datagram goes (copies, a delay or reorder of its completion), or null for no fault. (Rules
   * that block, shorten, break or slow sends never match a datagram socket.)
   */
  private sendFault(fn: SendFunction, mode: CallMode, dest: SockAddr): number | DatagramFault | null {
    const fault: AppliedFault | null = this.faults.decide(this, { fn, mode, remote: this.peer ? null : dest });
    if (!fault) return null;
    const action = fault.action;
    switch (action.type) {
      case 'delay':
        return { copies: 1, delayMs: action.ms, reorder: null };
      case 'reorder':
        return { copies: 1, delayMs: 0, reorder: { fault, windowMs: action.windowMs } };
      case 'drop':
        return { copies: 0, delayMs: 0, reorder: null };
      case 'duplicate':
        return { copies: 2, delayMs: 0, reorder: null };
      case 'error':
        // Every code is transient on a datagram socket: nothing to reset. A nonblocking
        // WSAEWOULDBLOCK re-enables FD_WRITE, which is recorded at once (there is always room).
        if (action.code === W.WSAEWOULDBLOCK && mode === 'nonblocking') queueMicrotask(() => this.rearm(W.FD_WRITE));
        return action.code;
      default:
        return null;
    }
  }

  /** Hands one datagram to the kernel; done gets the result once it went (next tick at the earliest). */
  private transmit(buffers: readonly Uint8Array[], total: number, dest: SockAddr, done: (r: SendResult) => void, counted = true): void {
    if (this.closed) return done(sendFailed(W.WSAEINTR));
    const sock = this.ensureSocket();
    const payload = contiguous(buffers, total);
    // On a connected socket the destination is the default peer (to null).
    const to = this.peer ? null : dest;
    // With nothing of node's still on its way: into this go's batch, with its destination unless
    // the socket is connected. (A datagram node sends may still be in its address lookup, not yet
    // in its queue: the batch, sent when the frame is handled, would overtake it.)
    const name = this.batchFd === null || to === null ? null : this.sockaddrOf(to);
    if (this.batchFd !== null && (to === null || name !== null) && this.nodeSends === 0) {
      this.batch.push({ payload, name, to, total, counted, done, retries: 0 });
      if (!this.batchScheduled) {
        this.batchScheduled = true;
        batchesWaiting.push(this);
        if (batchesWaiting.length === 1) process.nextTick(sendDatagramBatches);
      }
      return;
    }
    // Datagrams batched earlier go first.
    this.flushBatch();
    this.sendThroughNode(sock, payload, to, total, counted, done, 0);
  }

  /**
   * dest as the struct sockaddr the kernel takes (sockaddr_in, or sockaddr_in6 with no flow
   * label), or null for node:dgram to send it: an address with a scope (its interface is looked
   * up by name there), or one of another family than the socket's.
   */
  private sockaddrOf(dest: SockAddr): Uint8Array | null {
    const v6 = dest.family === W.AF_INET6;
    if (dest.family !== this.af || (v6 && ((dest.scopeId ?? 0) !== 0 || dest.address.includes('%')))) return null;
    const last = this.lastName;
    if (last !== null && last.address === dest.address && last.port === dest.port) return last.bytes;
    const bytes = sockaddrBytes(v6, dest.address, dest.port);
    if (bytes === null) return null;
    this.lastName = { address: dest.address, port: dest.port, bytes };
    return bytes;
  }

  /**
   * One datagram through node:dgram, which queues it when the kernel has no room. Until node calls
   * back, later datagrams follow it through node (in order), and a close waits: node drops the
   * callback of a send whose socket closed during its address lookup.
   */
  private sendThroughNode(sock: dgram.Socket, payload: Uint8Array, to: SockAddr | null, total: number, counted: boolean, done: (r: SendResult) => void, retried: number): void {
    let retries = retried;
    this.nodeSends++;
    const release = this.holdClose();
    const cb = (err: Error | null): void => {
      // libuv sends node's queue with sendmmsg too, which drops an error a later message took.
      if (!err) this.readErrorQueueSoon();
      // Asked even when no retry is left: asking reads the queue, which must not stay full.
      if (err && this.earlierDatagramsError(-((err as NodeJS.ErrnoException).errno ?? 0)) && retries < MAX_ICMP_RETRIES) {
        // Linux reports an earlier datagram's ICMP error on this send and drops it; Windows does
        // not fail sends for it (the next receive reports a port unreachable as WSAECONNRESET).
        // Send again: as often as more errors arrive in between (sends from several threads at once).
        retries++;
        this.sendOnce(sock, payload, to, cb);
        return;
      }
      this.nodeSends--;
      this.datagramDone(total, counted, done, err ? wsaFromNodeError(err) : 0);
      release();
    };
    this.sendOnce(sock, payload, to, cb);
  }

  /**
   * A send failed with errno: whether for an earlier datagram's ICMP error (the socket's pending
   * error, which a send takes), rather than for its own. ECONNREFUSED only a port unreachable
   * gives; any other error is an earlier datagram's when the kernel's queue holds an entry with it
   * (a host or network unreachable, a fragmentation needed).
   */
  private earlierDatagramsError(errno: number): boolean {
    const matched = this.readErrorQueue(errno);
    if (errno === ECONNREFUSED) {
      // (An entry of the queue, where it is read and the kernel could queue it: counted there.)
      if (matched === 0) this.portUnreachable();
      return true;
    }
    return matched > 0;
  }

  /** Earlier datagrams drew ICMP port unreachables: receives report them, as on Windows. */
  private portUnreachable(count = 1): void {
    if (this.opts.udpConnReset) this.icmpErrorsCame(W.WSAECONNRESET, count);
  }

  /** Earlier datagrams' TTL ran out on the way (ICMP time exceeded): receives report them, as on Windows. */
  private timeExceeded(count: number): void {
    if (this.opts.udpNetReset) this.icmpErrorsCame(W.WSAENETRESET, count);
  }

  private icmpErrorsCame(code: number, count: number): void {
    this.icmpReports.add(code, count);
    this.reenable(W.FD_READ);
    this.wake();
  }

  /**
   * Empties the kernel's queue of ICMP errors (icmp-errors.ts), queues a report for each port
   * unreachable and time exceeded among them, and returns how many entries had errno match (0:
   * none asked).
   */
  private readErrorQueue(match = 0): number {
    if (this.errorQueueFd === null || this.sock === null) return 0;
    const found = drainIcmpErrors(this.errorQueueFd, match);
    // Each kind is reported only while its ioctl leaves it on. (Within one drain the kind that
    // came last is reported last; the entries' exact interleaving is not kept.)
    if (found.latest === 'refused') {
      if (found.timeExceeded > 0) this.timeExceeded(found.timeExceeded);
      this.portUnreachable(found.refused);
    } else if (found.latest === 'timeExceeded') {
      if (found.refused > 0) this.portUnreachable(found.refused);
      this.timeExceeded(found.timeExceeded);
    }
    return found.matched;
  }

  /** readErrorQueue() once the current callbacks have run: node's sends complete several at a time. */
  private readErrorQueueSoon(): void {
    if (this.errorQueueRead !== null || this.errorQueueFd === null) return;
    this.errorQueueRead = setImmediate(() => {
      this.errorQueueRead = null;
      this.readErrorQueue();
    });
  }

  private datagramDone(total: number, counted: boolean, done: (r: SendResult) => void, wsa: number): void {
    if (wsa === 0 && counted) this.sentBytes += total;
    done(wsa ? sendFailed(wsa) : sent(total));
  }

  /** Its turn in sendDatagramBatches. */
  sendWaitingBatch(): void {
    this.batchScheduled = false;
    this.flushBatch();
  }

  /**
   * Sends the batch: sendmmsg for as many as the kernel takes. A datagram refused for an ICMP
   * port unreachable is sent again, as through node; when the kernel has no room (EAGAIN) the
   * rest go to node:dgram, which queues them in order and waits for room.
   */
  private flushBatch(): void {
    const items = this.batch;
    if (items.length === 0) return;
    this.batch = [];
    const batcher = sendmmsgBatcher()!;
    const fd = this.batchFd;
    let i = 0;
    while (i < items.length) {
      const item = items[i]!;
      // The socket closed with datagrams not yet sent (close flushes first, so never in practice).
      if (fd === null || this.sock === null || this.closed) {
        item.done(sendFailed(W.WSAEINTR));
        i++;
        continue;
      }
      const r = batcher.send(fd, items, i, this.segmentRuns);
      // A message after the first may have taken an earlier datagram's error, which sendmmsg
      // then drops: only the queue still tells of it.
      if (batcher.cutShort) this.readErrorQueue();
      if (r > 0) {
        for (const end = i + r; i < end; i++) this.datagramDone(items[i]!.total, items[i]!.counted, items[i]!.done, 0);
        continue;
      }
      const errno = -r;
      if (errno === EAGAIN || r === 0) {
        for (; i < items.length; i++) {
          const rest = items[i]!;
          this.sendThroughNode(this.sock, rest.payload, rest.to, rest.total, rest.counted, rest.done, rest.retries);
        }
        return;
      }
      if (this.earlierDatagramsError(errno) && item.retries < MAX_ICMP_RETRIES) {
        // As in sendThroughNode: the failure was an earlier datagram's ICMP report.
        item.retries++;
        continue;
      }
      if (batcher.failedRun) {
        // The kernel would not segment this run (EINVAL for a datagram over the route's MTU, EIO
        // under IPsec, or no UDP_SEGMENT at all): send it again a datagram per message, and this
        // socket's later ones too, so each gets the error or the fragmentation it would alone.
        this.segmentRuns = false;
        continue;
      }
      this.datagramDone(item.total, item.counted, item.done, wsaFromErrno(errno));
      i++;
    }
  }

  private sendOnce(sock: dgram.Socket, payload: Uint8Array, dest: SockAddr | null, cb: (err: Error | null) => void): void {
    try {
      if (dest) sock.send(payload, dest.port, hostOf(dest), cb);
      else sock.send(payload, cb);
    } catch (err) {
      cb(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * UDP sends never queue: an overlapped send completes at once or fails at once (unless a delay
   * or reorder fault holds its completion). Its outcome is the kernel's, known once the batch it
   * joins has gone: a Later, which the session settles by sending the batches when it has handled
   * the frame (sendDatagramBatches), then replies.
   */
  sendOverlapped(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, done: Completion, fn: SendFunction = 'WSPSend'): Promise<Started<SendResult>> | Later<Started<SendResult>> {
    if (this.connectsUnderWay > 0) return this.afterConnects(() => promiseOf(this.sendOverlappedNow(buffers, flags, to, done, fn)));
    return this.sendOverlappedNow(buffers, flags, to, done, fn);
  }

  private sendOverlappedNow(buffers: readonly Uint8Array[], flags: number, to: SockAddr | null, done: Completion, fn: SendFunction): Promise<Started<SendResult>> | Later<Started<SendResult>> {
    const plan = this.sendPlan(buffers, flags, to);
    if (typeof plan === 'number') return Promise.resolve(startedAt(sendFailed(plan)));
    const fault = this.faults.armed ? this.sendFault(fn, 'overlapped', plan.dest) : null;
    // An immediate failure: no completion, ever.
    if (typeof fault === 'number') return Promise.resolve(startedAt(sendFailed(fault)));
    // The usual case: one datagram into the batch.
    if (fault === null && this.isBound && plan.dest.port !== 0) {
      const later = new Later<Started<SendResult>>();
      this.transmit(buffers, plan.total, plan.dest, (r) => {
        if (r.errno === 0) done.complete(0, r.bytes);
        later.settle(startedAt(r));
      });
      return later;
    }
    const start = (complete: Completion): Promise<Started<SendResult>> =>
      this.sendPlanned(buffers, plan, fault?.copies).then((r) => {
        if (r.errno === 0) complete.complete(0, r.bytes);
        return startedAt(r);
      });
    if (fault?.delayMs) return this.delayedCompletion(fault.delayMs, done, start);
    if (fault?.reorder) return this.reorderedCompletion(fault.reorder.fault, fault.reorder.windowMs, done, start);
    return start(done);
  }

  flushSends(): number {
    return 0;
  }

  protected recvPrecheck(flags: number): RecvResult | null {
    if (flags & ~(W.MSG_PEEK | W.MSG_OOB) || flags & W.MSG_OOB) return recvFailed(W.WSAEOPNOTSUPP);
    if (this.recvShut) return recvFailed(W.WSAESHUTDOWN);
    if (!this.isBound && !this.binding) return recvFailed(W.WSAEINVAL);
    return null;
  }

  /** lookInKernel false: a waiting report is reported without asking the kernel for a datagram first. */
  private recvCheck(lengths: readonly number[], flags: number, wantFrom: boolean, lookInKernel = true): () => RecvResult | undefined {
    let room = 0;
    for (const n of lengths) room += n;
    return () => {
      if (this.closed) return recvFailed(W.WSAEINTR);
      if (this.recvShut) return recvFailed(W.WSAESHUTDOWN);
      if (this.icmpReports.pending && this.rxQueue.length === 0) {
        // A datagram the kernel holds comes first: wait for node to read it.
        if (lookInKernel && this.datagramInKernel()) return undefined;
        const code = this.icmpReports.take();
        // Another report may wait: FD_READ is recorded again for it.
        queueMicrotask(() => this.rearm(W.FD_READ));
        return recvFailed(code);
      }
      const d = this.rxQueue[0];
      if (!d) return undefined;
      queueMicrotask(() => this.rearm(W.FD_READ));
      if (!(flags & W.MSG_PEEK)) this.dequeue();
      const truncated = d.data.length > room;
      const data = truncated ? d.data.subarray(0, room) : d.data;
      // A truncated datagram is WSAEMSGSIZE, with the part that fitted delivered.
      return { errno: truncated ? W.WSAEMSGSIZE : 0, bytes: data.length, data, flags: truncated ? W.MSG_PARTIAL : 0, from: wantFrom ? d.from : undefined };
    };
  }

  /** Whether a datagram waits in the kernel that node has not read yet (false where it cannot tell). */
  private datagramInKernel(): boolean {
    const fd = dgramFdOf(this.sock);
    if (fd === null) return false;
    let seen = datagramWaits(fd);
    if (seen === 'error') {
      // The peek took the pending error; its entry is still queued. Read the queue after this
      // check (reading it now would wake the waiters from inside one of them), and look again.
      this.readErrorQueueSoon();
      seen = datagramWaits(fd);
    }
    return seen === 'yes';
  }

  /** An error fault on a receive that passed its checks: the code it fails with, or 0 for none. */
  protected recvFault(wantFrom: boolean, mode: CallMode): number {
    const fault = this.faults.decide(this, { fn: wantFrom ? 'WSPRecvFrom' : 'WSPRecv', mode });
    if (fault?.action.type !== 'error') return 0;
    // Transient on a datagram socket; a nonblocking WSAEWOULDBLOCK re-enables FD_READ.
    if (fault.action.code === W.WSAEWOULDBLOCK) queueMicrotask(() => this.rearm(W.FD_READ));
    return fault.action.code;
  }

  recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking = false): Promise<RecvResult> {
    const refused = this.recvRefusal(flags, wantFrom, this.opts.nonBlocking && !forceBlocking ? 'nonblocking' : 'blocking');
    if (refused) return Promise.resolve(refused);
    const check = this.recvCheck(lengths, flags, wantFrom);
    if (this.opts.nonBlocking && !forceBlocking) {
      // With a report waiting, check() finds nothing only when a datagram the kernel holds comes
      // first; datagramBehindReport checks once, and waits in that case.
      if (this.icmpReports.pending) return this.datagramBehindReport(lengths, flags, wantFrom, check);
      return Promise.resolve(check() ?? recvFailed(W.WSAEWOULDBLOCK));
    }
    return this.waitFor(check, recvFailed, undefined, this.blockingTimeout('recv'));
  }

  /**
   * A nonblocking receive that finds a report waiting and, ahead of it, a datagram the kernel
   * holds but node has yet to read. WSPSelect and FD_READ already call the socket readable (for
   * the report), so WSAEWOULDBLOCK would contradict them: the receive waits the moment node takes
   * to read the datagram (its next poll; a datagram socket's reading never pauses) and returns
   * it, or the report if node drops it. Never longer than DATAGRAM_BEHIND_REPORT_MS, after which
   * the report is the answer. Nothing tells the client the call waits: it does not block.
   */
  private datagramBehindReport(lengths: readonly number[], flags: number, wantFrom: boolean, check: () => RecvResult | undefined): Promise<RecvResult> {
    const reportNow = (errno: number): RecvResult =>
      errno === W.WSAETIMEDOUT ? (this.recvCheck(lengths, flags, wantFrom, false)() ?? recvFailed(W.WSAEWOULDBLOCK)) : recvFailed(errno);
    return this.waitFor(check, reportNow, () => {}, DATAGRAM_BEHIND_REPORT_MS);
  }

  recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: Completion): Started<RecvResult> {
    const precheck = this.recvRefusal(flags, wantFrom, 'overlapped');
    return this.overlappedRecv(precheck, this.recvCheck(lengths, flags, wantFrom), done);
  }

  shutdown(how: number): number {
    if (how !== W.SD_RECEIVE && how !== W.SD_SEND && how !== W.SD_BOTH) return W.WSAEINVAL;
    if (how !== W.SD_SEND) this.recvShut = true;
    if (how !== W.SD_RECEIVE) this.sendsShut = true;
    this.wake();
    return 0;
  }

  protected readyEvents(wanted: number): Array<[number, number]> {
    const ready: Array<[number, number]> = [];
    // An ICMP error waits to be reported by a receive: Windows signals FD_READ for it.
    if (wanted & W.FD_READ && (this.rxQueue.length > 0 || this.icmpReports.pending)) ready.push([W.FD_READ, 0]);
    // A datagram socket can always send once it has an address.
    if (wanted & W.FD_WRITE && this.isBound && !this.sendsShut) ready.push([W.FD_WRITE, 0]);
    // Windows records FD_CONNECT (with 0) for a datagram socket given a default peer.
    if (wanted & W.FD_CONNECT && this.state.is('connected')) ready.push([W.FD_CONNECT, 0]);
    return ready;
  }

  selectReady(wanted: number): number {
    let ready = 0;
    // A datagram, or an ICMP error a receive would report.
    if (wanted & SELECT_READ && (this.rxQueue.length > 0 || this.icmpReports.pending)) ready |= SELECT_READ;
    // Unlike FD_WRITE, select() finds even an unbound datagram socket writable (Wine's test_select).
    if (wanted & SELECT_WRITE && !this.sendsShut) ready |= SELECT_WRITE;
    return ready;
  }

  close(abortCode: number = W.WSAEINTR, overlappedCode: number = W.WSA_OPERATION_ABORTED): void {
    if (this.beforeClose > 0) {
      this.closeLater ??= () => this.close(abortCode, overlappedCode);
      return;
    }
    // Datagrams sent before the close go before the descriptor does.
    this.flushBatch();
    if (this.closed || !this.state.move('closed')) return;
    this.interruptedWith = abortCode;
    this.abortWaits(abortCode, overlappedCode);
    this.flushLate();
    // What no receive took is gone with the socket.
    this.received.add(-this.rxCharge);
    this.rxQueue.length = 0;
    this.rxBytes = 0;
    this.rxCharge = 0;
    const sock = this.sock;
    this.sock = null;
    // The number may name another descriptor soon.
    this.errorQueueFd = null;
    if (this.errorQueueRead) clearImmediate(this.errorQueueRead);
    this.errorQueueRead = null;
    if (sock) {
      try {
        sock.close();
      } catch {
        // Not yet bound: nothing to close.
      }
    }
  }

  localName(): SockAddr | null {
    if (!this.sock || !this.isBound) return null;
    try {
      return fromNodeAddress(this.sock.address(), this.af);
    } catch {
      return null;
    }
  }

  peerName(): SockAddr | null {
    return this.peer ? { ...this.peer } : null;
  }

  override namesSettled(): Promise<unknown> | null {
    // The connects chain after any bind before them (and bind automatically).
    return this.connectsUnderWay > 0 ? this.connecting : this.binding;
  }

  get bytesTaken(): number {
    return this.sentBytes;
  }

  get bytesReceived(): number {
    return this.receivedTotal;
  }

  /** A datagram is sent whole at once: nothing waits. */
  get queuedSendBytes(): number {
    return 0;
  }

  readable(): number {
    // FIONREAD on a message socket is all pending data (ioctlsocket reference), though one
    // receive returns at most one datagram.
    return this.rxBytes;
  }

  applyBuffers(): void {
    // Datagrams sent before an option changed go as they would have.
    this.flushBatch();
    if (!this.sock || !this.isBound) return;
    try {
      if (this.opts.sndBuf > 0) this.sock.setSendBufferSize(this.opts.sndBuf);
      if (this.opts.rcvBuf > 0) this.sock.setRecvBufferSize(this.opts.rcvBuf);
    } catch (err) {
      this.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'could not size the kernel buffers');
    }
  }

  applyOptions(): void {
    this.flushBatch();
    // SO_BROADCAST reaches the real socket (the daemon also refuses broadcasts itself without it);
    // SO_DONTROUTE is recorded and reads back, nothing more: datagrams go through node:dgram or,
    // batched, sendmmsg, without it.
    if (this.sock && this.isBound) {
      try {
        // The kernel needs it for a default peer that is a broadcast address too (see sendPlan).
        this.sock.setBroadcast(this.opts.broadcast || (this.peer !== null && isBroadcastAddress(this.peer.address)));
        // IP_TTL / IPV6_UNICAST_HOPS and IP_TOS, for every datagram (node:dgram's and the batches').
        if (!applyIpOptions(dgramFdOf(this.sock), this.af === W.AF_INET6, this.dualStack, this.opts)) this.sock.setTTL(Math.max(1, this.opts.ttl));
        this.sock.setMulticastTTL(this.opts.multicastTtl);
        this.sock.setMulticastLoopback(this.opts.multicastLoop);
        const via = this.multicastIf === 0 ? null : this.multicastVia(this.multicastIf);
        if (via) this.sock.setMulticastInterface(via);
      } catch (err) {
        this.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'could not set SO_BROADCAST, the TTL or the multicast options');
      }
    }
  }

  override multicastInterface(): number {
    return this.multicastIf;
  }

  /**
   * The interface as node takes it: an IPv4 address of the host (from the DWORD's bytes, or the
   * first address of the interface 0.x.y.z names), or "::%name" for an IPv6 interface index;
   * null when it names nothing of this host.
   */
  private multicastVia(value: number): string | null {
    if (this.af === W.AF_INET6) {
      const name = interfaceName(value);
      return name ? `::%${name}` : null;
    }
    // The DWORD's bytes, first to last, are the address's octets (network order).
    const octets = [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24];
    if (octets[0] === 0) return interfaceIpv4((octets[1]! << 16) | (octets[2]! << 8) | octets[3]!);
    const address = octets.join('.');
    return localAddressExists(address) ? address : null;
  }

  override setMulticastInterface(value: number): number {
    // 0 gives the choice back to the host's routes: the unspecified address of the family (for
    // IPv6, interface index 0), which the real socket must be told too, not only this value.
    const via = value === 0 ? (this.af === W.AF_INET6 ? '::' : '0.0.0.0') : this.multicastVia(value);
    if (via === null) return W.WSAEADDRNOTAVAIL;
    if (this.sock && this.isBound) {
      try {
        this.sock.setMulticastInterface(via);
      } catch (err) {
        // A failure changes nothing, the value read back included.
        return wsaFromNodeError(err);
      }
    }
    this.multicastIf = value;
    return 0;
  }

  maxMessageSize(): number {
    return this.af === W.AF_INET6 ? W.UDP_MAX_MSG_SIZE_V6 : W.UDP_MAX_MSG_SIZE_V4;
  }
}

/** The sockets whose batch waits to go, in the order they began one. */
let batchesWaiting: UdpSocket[] = [];

/**
 * Hands every batch of datagrams waiting to the kernel. The session calls it when it has handled
 * a frame, so that the frame's sends have their outcome before it replies; otherwise it runs on
 * the next tick after the first datagram was batched.
 */
export function sendDatagramBatches(): void {
  // A batch's outcomes run the sends' continuations, which may batch more: they go too.
  while (batchesWaiting.length > 0) {
    const due = batchesWaiting;
    batchesWaiting = [];
    let i = 0;
    try {
      for (; i < due.length; i++) due[i]!.sendWaitingBatch();
    } finally {
      // Should one socket's outcomes throw, the sockets after it still get their turn, later.
      if (i < due.length) {
        batchesWaiting = due.slice(i + 1).concat(batchesWaiting);
        if (batchesWaiting.length > 0) process.nextTick(sendDatagramBatches);
      }
    }
  }
}
