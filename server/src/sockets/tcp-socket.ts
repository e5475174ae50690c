/**
 * A TCP socket: node:net underneath, Winsock semantics on top. Its life is the TCP state machine
 * of socket-state.ts; the pieces it is made of live beside it: the transport buffer (sends), the
 * receive buffer, the send policies (send-policy.ts), the C library's options and urgent data
 * (native-options.ts, urgent-watch.ts), and the broken-connection codes (errno-map.ts).
 */
import * as net from 'node:net';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';
import { classifyBroken, wsaFromNodeError } from '../errno-map.js';
import { fdOf, libc } from '../native/libc.js';
import { canHoldPorts, holdTcpPort, type PortHold } from '../native/port-hold.js';
import type { Drainable, Draining } from '../draining.js';
import type { BudgetReader } from '../held-bytes.js';
import { EmulatedSocket, SELECT_EXCEPT, SELECT_READ, SELECT_WRITE, type SendFunction, type SocketContext, type SocketIdentity, type StreamedStart } from './emulated-socket.js';
import { TransportBuffer, type QueuedSend, type StreamSink } from './transport-buffer.js';
import { ReceiveBuffer } from './receive-buffer.js';
import { byteLength } from './send-buffers.js';
import { streamSend, streamSendOverlapped, streamSendStreamed, streamSendStreamedOverlapped } from './send-policy.js';
import { applyIpOptions, applyTcpBuffers, applyTcpOptions, ownUrgentSignal, takeQueuedConnections, readStrandedByte, readUrgent, receivedCount, resetConnection, setKernelOobInline, settleTakenUrgentByte, sendDirect as sendWithFlags, takeSocketError } from './native-options.js';
import { UrgentWatch, type UrgentOwner } from './urgent-watch.js';
import { MAX_PORT_TRIES, type ListenerHooks } from './port-reservations.js';
import { TCP_CONNECTED_STATES, TCP_MOVES, type TcpState } from './socket-state.js';
import { completion, recvFailed, sendFailed, startedAt, type AcceptResult, type Completion, type RecvResult, type SendResult, type Started } from './results.js';
import { fromNodeAddress, hostOf, isAnyAddress, isLoopbackAddress, localAddressExists, refuseLookup } from './sockaddr.js';
import type { AppliedFault, CallMode } from '../faults/rules.js';
import { firstBytes } from './send-buffers.js';
import { SlowLink } from '../faults/link.js';

/** Flags WSPSend understands on TCP; other bits give WSAEOPNOTSUPP. */
const TCP_SEND_FLAGS = W.MSG_OOB | W.MSG_DONTROUTE | W.MSG_PARTIAL;
const MAX_BACKLOG = 200;
/**
 * The backlog of every real listening socket. The Windows backlog of each listener is kept as
 * node accepts (queueConnection); the kernel's queue only has to hold a burst until node has
 * accepted it, for this listener and for the specific addresses it accepts for (routed ones).
 */
const KERNEL_BACKLOG = 511;
/** How often a fault that waits for queued bytes to reach the peer looks again. */
const DRAIN_POLL_MS = 5;
const DRAIN_POLL_MAX_MS = 200;

export interface TcpContext extends SocketContext {
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

/** Orders sends and receives for the broken-connection code without reading a clock per write. */
let ioOrder = 0;

/** A bind's outcome: the port reserved, or why not (heldOnPaper: the host agreed, the daemon's own reservations did not). */
type Settled = { port: number } | { code: number; heldOnPaper: boolean };

/** The emulated socket a node connection belongs to, set by wire(): its event handlers are shared functions. */
const OWNER = Symbol('spiwire.tcpSocket');
type OwnedConnection = net.Socket & { [OWNER]?: TcpSocket };

/** What a socket that has nothing to deliver after its close waits on (one promise for all). */
const NOTHING_TO_DELIVER: Promise<void> = Promise.resolve();

/**
 * The socket is also its transport buffer's sink (StreamSink: writes to its connection) and its
 * urgent watch's owner: methods rather than closures, since an idle connected socket held ten
 * closures and their contexts, about a sixth of its memory.
 */
export class TcpSocket extends EmulatedSocket<TcpState> implements Drainable, BudgetReader, StreamSink, UrgentOwner {
  private conn: net.Socket | null = null;
  private server: net.Server | null = null;
  /** The bound port, held in the kernel while nothing of node's holds it (port-hold.ts). */
  private portHold: PortHold | null = null;
  /** node's connection while a connect is under way (this.conn once it connected). */
  private connectingConn: net.Socket | null = null;
  private bound: SockAddr | null = null;
  private tx: TransportBuffer | null = null;
  /** Bytes read from the connection (a counter, for metrics: no per-chunk work beyond the add). */
  private receivedTotal = 0;
  private readonly rx: ReceiveBuffer;
  /** Registered with the received-bytes budget to read again once there is room. */
  private waitingForRoom = false;
  /** The WSA code the connection broke with (state 'broken'). */
  private failure = 0;
  /**
   * The reset came after the peer's FIN (typically: the peer closed, then our data reached it).
   * Windows then fails receives with WSAECONNABORTED, while sends still give WSAECONNRESET.
   */
  private resetAfterFin = false;
  /** The connection's addresses as last seen, for the names after node has closed it. */
  private localSeen: SockAddr | null = null;
  private peerSeen: SockAddr | null = null;
  /** Where a connect under way goes: WSPGetPeerName gives it while connecting, as Windows does. */
  private connectingTo: SockAddr | null = null;
  /** WSPShutdown(SD_SEND) was called: sends fail with WSAESHUTDOWN, also once the connection broke. */
  private sendsShut = false;
  /** FIN waits until the queued sends are through (after WSPShutdown or a close with sends queued). */
  private finPending = false;
  /** The last connect attempt's result: FD_CONNECT is recorded with it (null before any). */
  private connectResult: number | null = null;
  /** The connection's local address, and when data last went out and came in (for the broken code). */
  private localAddr: string | null = null;
  /** The connection's local address is a loopback one: no interface can go away under it. */
  private onLoopback = false;
  /** Which came last, data out or data in: ticks of ioOrder, compared only with each other. */
  private lastSendAt = 0;
  private lastRecvAt = 0;
  private readonly accepted: net.Socket[] = [];
  private backlog = 1;
  private readonly urgent = new UrgentWatch(this);
  /** The connection is corked until the next tick (cork()). */
  private corkedThisTick = false;
  /** An urgent byte was taken out of band since SO_OOBINLINE last went on in the kernel. */
  private urgentTaken = false;
  /** SO_OOBINLINE as the kernel socket has it (applyOptions). */
  private kernelOobInline = false;
  /**
   * An urgent byte that arrived out of band and came inline when SO_OOBINLINE went on: the
   * stream offset just past it, while it is unread (SIOCATMARK is FALSE until then).
   */
  private inlineMarkAt: number | null = null;
  /** The connection's received-byte count when UrgentWatch last asked (null: not known). */
  private receivedAtAsk: number | null = null;
  /** The kernel signals SIGURG to this process for this connection (F_SETOWN took). */
  private ownerSet = false;
  /** A link fault's slow link, once one fired on this socket: every write goes through it. */
  private link: SlowLink | null = null;
  /** A break fault fired: sends fail with this code while the real reset waits for the bytes before it. */
  private breaking = 0;
  /** Checks that wait for the socket's queued bytes to leave (block until drained, break). */
  private drainWatch: NodeJS.Timeout | null = null;
  private drainWaiters: Array<{ check: () => boolean; then: () => void; deadline: number }> | null = null;
  /** A waiting listener whose turn came could not open its address (the WSA code): accepts fail with it until a WSPListen succeeds. */
  private listenLost = 0;
  /** When the connection was made (whole milliseconds of performance.now(), a small integer), for SO_CONNECT_TIME; -1 before. */
  private connectedAt = -1;

  constructor(
    id: SocketIdentity,
    /** The session's, shared by its sockets. */
    private readonly ctx: TcpContext,
  ) {
    super(id, ctx, TCP_MOVES, 'created');
    this.rx = new ReceiveBuffer(this.received.add);
  }

  entered(to: TcpState): void {
    switch (to) {
      case 'broken':
        // Every waiting send and receive learns why; sends that never reached the kernel fail.
        this.tx?.cancel(this.failure, () => true, 'broken');
        break;
      case 'connected':
        this.connectedAt = Math.floor(performance.now());
        break;
      case 'closed':
        this.stopEvents();
        this.updateUrgentWatch();
        this.releasePort();
        // The real listening socket goes before the address is released, so that a listener that
        // takes over can open its own at once. What the kernel had completed on it goes to the
        // listener it belongs to, a routed one or the next of the same address, or is reset.
        this.closeServer((conn) => {
          const to = this.ctx.ports.routeFor(this.handle, conn.localAddress) ?? this.ctx.ports.successorOf(this.handle);
          if (to) to.adopt(conn);
          else conn.resetAndDestroy();
        });
        this.ctx.ports.release(this.handle);
        return;
      default:
        break;
    }
    this.wake();
  }

  private get connected(): boolean {
    return TCP_CONNECTED_STATES.has(this.state.current);
  }

  override acceptsConnections(): boolean {
    return this.state.is('listening');
  }

  override connectedSeconds(): number | null {
    return this.connectedAt < 0 ? null : Math.floor((performance.now() - this.connectedAt) / 1000);
  }

  addressFixed(): boolean {
    return !this.state.is('created');
  }

  /** Wraps a connection accepted by a listening socket; it inherits the listener's options. */
  attachAccepted(conn: net.Socket, parent: TcpSocket): boolean {
    this.opts = parent.opts.copy();
    this.tag = parent.tag;
    // created -> connecting -> connected: the handshake happened on the listener's behalf.
    if (!this.state.move('connecting') || !this.state.move('connected')) return false;
    this.wire(conn);
    return true;
  }

  /**
   * The steps that set a socket up (bind, listen) run one after another, and a connect starts
   * only after them: on Windows each is synchronous, so a second bind in the same frame finds
   * the socket bound (WSAEINVAL), not a half-done bind.
   */
  private setup: Promise<unknown> | null = null;

  private afterSetup<T>(step: () => Promise<T>, chain: boolean): Promise<T> {
    const run = (this.setup ?? Promise.resolve()).then(step);
    if (chain) this.setup = run.catch(() => undefined);
    return run;
  }

  bind(name: SockAddr): Promise<number> {
    return this.afterSetup(() => this.bindNow(name), true);
  }

  override namesSettled(): Promise<unknown> | null {
    return this.setup;
  }

  private async bindNow(name: SockAddr): Promise<number> {
    // Closed (WSPCloseSocket) while the call waited for a bind or listen before it.
    if (this.closed) return this.interruptedWith;
    if (!this.state.is('created')) return W.WSAEINVAL;
    let settled: Settled;
    if (name.port !== 0) {
      settled = await this.ctx.ports.onPort('tcp', name.port, () => this.settlePort(name));
    } else {
      // The host picks the port; it may pick one that another socket holds only on paper (bound,
      // not listening), and then asking again is the answer.
      for (let attempt = 1; ; attempt++) {
        settled = await this.settlePort(name);
        if (!('code' in settled) || !settled.heldOnPaper || attempt >= MAX_PORT_TRIES) break;
      }
    }
    if ('code' in settled) return settled.code;
    if (!this.state.move('bound')) {
      this.ctx.ports.release(this.handle);
      return W.WSAEINVAL;
    }
    this.bound = { ...name, port: settled.port };
    this.holdPort();
    return 0;
  }

  /** Holds the bound port in the kernel until a listening socket or a connection of node's has it. */
  private holdPort(): void {
    const bound = this.bound;
    // Only while bound and idle: a listening socket or a connection holds the port itself.
    if (!bound || this.portHold || this.closed || !this.state.is('bound')) return;
    const r = this.reservationFor(bound, bound.port);
    this.portHold = holdTcpPort({ family: r.family === W.AF_INET6 ? 6 : 4, address: r.address, scope: r.scope, port: r.port, dualStack: r.dualStack });
    // Refused while a listener of the session has this very address: again once a socket of the port closes.
    if (!this.portHold && canHoldPorts()) this.ctx.ports.holdLater(this.handle, () => this.holdPort());
  }

  private releasePort(): void {
    this.portHold?.release();
    this.portHold = null;
  }

  /**
   * Windows' rules between emulated sockets first (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE), then the
   * real stack: the address must be local and the port free. A port that a listener of this
   * session holds for this very address (both with SO_REUSEADDR) is the daemon's own: the socket
   * will wait behind that listener, and the host, which would refuse, is not asked.
   */
  private async settlePort(name: SockAddr): Promise<Settled> {
    const wanted = this.reservationFor(name, name.port);
    const first = name.port === 0 ? 0 : this.ctx.ports.check(this.handle, wanted);
    if (first !== 0) return { code: first, heldOnPaper: false };
    // The port is the daemon's own when a listener holds this address, or one that covers it or
    // that it covers (which the host would refuse): then only the address is checked, on port 0.
    const shared = name.port === 0 ? null : this.ctx.ports.listenedOn(wanted);
    const port = shared === 'same' ? name.port : shared === 'covering' ? await this.probeAddress(name) : await this.probe(name);
    if (port instanceof Error) return { code: wsaFromNodeError(port), heldOnPaper: false };
    if (this.closed) return { code: this.interruptedWith, heldOnPaper: false };
    // Checked again with the port: the host, which knows nothing of sockets bound but not yet
    // listening, may have given port 0 one of theirs.
    const code = this.ctx.ports.reserve(this.handle, this.reservationFor(name, port));
    return code === 0 ? { port } : { code, heldOnPaper: true };
  }

  /** Asks the host whether name's address can be bound (on another port): name's port, or why not. */
  private async probeAddress(name: SockAddr): Promise<number | Error> {
    const checked = await this.probe({ ...name, port: 0 });
    return checked instanceof Error ? checked : name.port;
  }

  /** Asks the host whether name can be bound: the port it would get, or why not. */
  private async probe(name: SockAddr): Promise<number | Error> {
    const probe = net.createServer();
    const port = await new Promise<number | Error>((resolve) => {
      probe.once('error', resolve);
      probe.listen({ host: hostOf(name), port: name.port, exclusive: true, ipv6Only: this.ipv6Only }, () => {
        const a = probe.address();
        resolve(a && typeof a === 'object' ? a.port : name.port);
      });
    });
    probe.close();
    return port;
  }

  listen(backlog: number): Promise<number> {
    return this.afterSetup(() => this.listenNow(backlog), true);
  }

  private async listenNow(backlog: number): Promise<number> {
    if (this.closed) return this.interruptedWith;
    const bound = this.bound;
    if (this.state.is('listening')) {
      this.backlog = clampBacklog(backlog);
      // A listener whose turn came when another program had taken the port tries again.
      if (this.server || this.ctx.ports.isListener(this.handle) || !bound) return 0;
      const again = await this.ctx.ports.listen(this.handle, this.listenerHooks(bound));
      if (again === 0) this.listenLost = 0;
      return again;
    }
    if (this.connected || this.state.is('connecting')) return W.WSAEISCONN;
    if (!this.state.is('bound') || !bound) return W.WSAEINVAL;
    this.backlog = clampBacklog(backlog);
    // With an older listener of this session on this very address (both with SO_REUSEADDR), this
    // one waits: that one holds the real socket and gets the connections, as on Windows, and this
    // one takes over when it closes.
    const code = await this.ctx.ports.listen(this.handle, this.listenerHooks(bound));
    if (code !== 0) return code;
    if (this.closed || !this.state.move('listening')) {
      this.ctx.ports.stopListening(this.handle);
      this.server?.close();
      this.server = null;
      return this.interruptedWith;
    }
    // A listener waiting behind another, or routed, has no real socket: the port is the group's.
    this.releasePort();
    return 0;
  }

  /** What the port's listeners (port-reservations.ts) may do with this one. */
  private listenerHooks(bound: SockAddr): ListenerHooks {
    return {
      open: () => this.openServer(bound),
      takeOver: () => this.takeOver(),
      adopt: (conn) => this.queueConnection(conn),
      // An any-address listener of the port accepts for this one from now on; what the kernel
      // completed on this one's socket is still this one's.
      dropServer: () => this.closeServer((conn) => this.queueConnection(conn)),
    };
  }

  /**
   * Closes the real listening socket. The connections the kernel completed on it that node has
   * not accepted yet are accepted first and given to `to`, so that the close resets none of them.
   */
  private closeServer(to: (conn: net.Socket) => void): void {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const taken = takeQueuedConnections(server);
    server.close();
    for (const conn of taken) to(conn);
  }

  /**
   * A waiting listener's turn came: it opens the real listening socket. Should the host refuse
   * (another program took the port in the moment between), its blocked accepts fail with that
   * code, and a WSPListen tries again.
   */
  private async takeOver(): Promise<number> {
    const bound = this.bound;
    if (this.server) return 0;
    if (this.closed || !bound || !this.state.is('listening')) return W.WSAENOTSOCK;
    const code = await this.openServer(bound);
    if (code !== 0) {
      this.log.debug({ code }, 'a waiting listener could not take its address over');
      this.listenLost = code;
      this.abortWaits(code, code);
    }
    return code;
  }

  /** Opens the real listening socket on bound, exclusive: 0, or the WSA code. */
  private async openServer(bound: SockAddr): Promise<number> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const res = await new Promise<Error | null>((resolve) => {
      server.once('error', resolve);
      server.listen({ host: hostOf(bound), port: bound.port, backlog: KERNEL_BACKLOG, exclusive: true, ipv6Only: this.ipv6Only }, () => resolve(null));
    });
    if (res || this.closed) {
      server.close();
      return res ? wsaFromNodeError(res) : this.interruptedWith;
    }
    // The handshake's SYN-ACK, and the connections accepted, carry the listener's IP options.
    applyIpOptions(fdOf(server), this.af === W.AF_INET6, this.dualStack, this.opts);
    // Accept failures (out of descriptors, say) come from load the clients make: not a daemon fault.
    server.on('error', (err) => this.log.debug({ err: err.message }, 'listening socket error'));
    server.on('connection', (conn) => {
      // An any-address socket accepts for the port's listeners on specific addresses too.
      const owner = this.ctx.ports.routeFor(this.handle, conn.localAddress);
      if (owner) owner.adopt(conn);
      else this.queueConnection(conn);
    });
    this.server = server;
    this.releasePort();
    return 0;
  }

  /** A connection for this listener, accepted by its own real socket or by the port's any-address one. */
  private queueConnection(conn: net.Socket): void {
    if (this.closed || this.accepted.length >= this.backlog || this.ctx.connectionQueue.full()) {
      // A full backlog refuses the connection, as the Windows stack does.
      conn.resetAndDestroy();
      return;
    }
    conn.on('error', () => undefined);
    this.accepted.push(conn);
    this.ctx.connectionQueue.change(1);
    this.reenable(W.FD_ACCEPT);
    this.wake();
  }

  accept(): Promise<AcceptResult> {
    if (!this.state.is('listening')) return Promise.resolve({ errno: W.WSAEINVAL });
    if (this.listenLost !== 0 && this.accepted.length === 0) return Promise.resolve({ errno: this.listenLost });
    if (this.faults.armed) {
      const fault = this.faults.decide(this, { fn: 'WSPAccept', mode: this.opts.nonBlocking ? 'nonblocking' : 'blocking' });
      // A failed accept takes no connection: whatever waits stays queued.
      if (fault?.action.type === 'error') {
        if (fault.action.code === W.WSAEWOULDBLOCK) queueMicrotask(() => this.rearm(W.FD_ACCEPT));
        return Promise.resolve({ errno: fault.action.code });
      }
    }
    return this.waitFor<AcceptResult>(
      () => {
        if (this.closed) return { errno: W.WSAEINTR };
        const conn = this.takeQueued();
        if (!conn) return this.opts.nonBlocking ? { errno: W.WSAEWOULDBLOCK } : undefined;
        const child = this.ctx.adopt(conn, this);
        if (!child) {
          // No socket can be made: the connection stays queued, as on Windows.
          this.accepted.unshift(conn);
          this.ctx.connectionQueue.change(1);
          return { errno: W.WSAEMFILE };
        }
        queueMicrotask(() => this.rearm(W.FD_ACCEPT));
        return { errno: 0, socket: child, addr: child.peerName() };
      },
      (errno) => ({ errno }),
    );
  }

  /** The oldest connection waiting on this listener, no longer counted as queued. */
  private takeQueued(): net.Socket | undefined {
    const conn = this.accepted.shift();
    if (conn) this.ctx.connectionQueue.change(-1);
    return conn;
  }

  connect(name: SockAddr): Promise<number> {
    const announce = this.captureCall();
    return this.afterSetup(() => this.connectNow(name, announce), false);
  }

  private connectNow(name: SockAddr, announce: () => void): Promise<number> {
    // Closed while the call waited for a bind or listen before it: interrupted, as any call
    // still waiting when WSPCloseSocket comes.
    if (this.closed) return Promise.resolve(this.interruptedWith);
    if (this.state.is('listening')) return Promise.resolve(W.WSAEINVAL);
    if (this.connected) return Promise.resolve(W.WSAEISCONN);
    if (this.state.is('connecting')) return Promise.resolve(W.WSAEALREADY);
    if (isAnyAddress(name.address) || name.port === 0) return Promise.resolve(W.WSAEADDRNOTAVAIL);
    if (this.faults.armed) {
      // The connect fails before any packet leaves: the socket stays as it was.
      const fault = this.faults.decide(this, { fn: 'WSPConnect', mode: this.opts.nonBlocking ? 'nonblocking' : 'blocking', remote: name });
      if (fault?.action.type === 'error') return Promise.resolve(fault.action.code);
    }
    const before = this.state.current;
    if (!this.state.move('connecting')) return Promise.resolve(W.WSAEINVAL);
    this.connectingTo = { ...name };
    const local = this.bound;
    const conn = net.connect({
      host: hostOf(name),
      port: name.port,
      family: this.af === W.AF_INET6 ? 6 : 4,
      lookup: refuseLookup,
      allowHalfOpen: true,
      ...(local ? { localAddress: isAnyAddress(local.address) ? undefined : hostOf(local), localPort: local.port } : {}),
    });
    this.connectingConn = conn;
    // node binds the connection's socket to the port on the next tick (the host is numeric):
    // from then on it holds the port, and the holder goes, so that the socket keeps one descriptor.
    if (this.portHold) process.nextTick(() => this.releasePort());
    let failedWith = 0;
    const onError = (err: Error): void => {
      if (this.connectingConn === conn) this.connectingConn = null;
      if (!this.state.is('connecting')) return;
      this.connectingTo = null;
      failedWith = wsaFromNodeError(err);
      this.pendingError = failedWith;
      this.connectResult = failedWith;
      conn.destroy();
      // Back to where the attempt started (created, or bound); FD_CONNECT carries the error.
      if (!this.state.move(before)) return;
      // A failed connect leaves the socket bound to its port, as on Windows: held again.
      this.holdPort();
      this.wake();
    };
    conn.once('error', onError);
    conn.once('connect', () => {
      conn.off('error', onError);
      if (this.connectingConn === conn) this.connectingConn = null;
      // Only a connect under way answers WSPGetPeerName with it.
      this.connectingTo = null;
      if (this.closed || !this.state.move('connected')) {
        conn.destroy();
        return;
      }
      this.connectResult = 0;
      // A connection that succeeds clears what an earlier attempt left in SO_ERROR; a new
      // attempt alone does not (Windows, in Wine's test_select).
      this.pendingError = 0;
      this.wire(conn);
      this.wake();
    });
    if (this.opts.nonBlocking) return Promise.resolve(W.WSAEWOULDBLOCK);
    return this.waitFor(
      () => {
        if (this.state.is('connecting')) return undefined;
        if (this.connected) return 0;
        this.pendingError = 0;
        return failedWith || W.WSAECONNREFUSED;
      },
      (errno) => errno,
      announce,
    );
  }

  /** Bytes from the connection: node's reads, and the ones the daemon reads itself (syncOobInline). */
  private takeData(conn: net.Socket, chunk: Buffer): void {
    this.receivedTotal += chunk.length;
    this.lastRecvAt = ++ioOrder;
    this.rx.push(chunk);
    if (this.recvShut) {
      // Data after shutdown(SD_RECEIVE) goes to the receives that were already waiting when it
      // was called (Wine's test_shutdown); data that none of them takes resets the connection,
      // as on Windows, and is dropped: no receive may take it, and it records no FD_READ.
      this.pollWaiters();
      if (this.rx.size > 0) {
        this.rx.clear();
        if (!this.state.is('broken')) {
          this.breakWith(W.WSAECONNRESET);
          conn.resetAndDestroy();
        }
      } else this.checkEvents();
      return;
    }
    if (this.rx.size >= this.receiveHold() || this.ctx.flow.paused) pauseNow(conn);
    else this.pauseForBudget();
    // New data records FD_READ again on Windows, even before a receive re-enables it.
    this.reenable(W.FD_READ);
    this.wake();
  }

  /** Connects the node socket's events to this emulated socket. */
  private wire(conn: net.Socket): void {
    this.conn = conn;
    this.localAddr = conn.localAddress ?? null;
    this.onLoopback = this.localAddr !== null && isLoopbackAddress(this.localAddr);
    this.tx = new TransportBuffer(this, this.opts.sndBuf, this.quota.add);
    // Told when the session goes over the received budget through another socket's read.
    this.received.reading(this);
    (conn as OwnedConnection)[OWNER] = this;
    conn.on('data', TcpSocket.onConnData);
    conn.on('end', TcpSocket.onConnEnd);
    conn.on('error', TcpSocket.onConnError);
    conn.on('close', TcpSocket.onConnClose);
    conn.resume();
    // A session already past its received budget: this socket waits for room like the others.
    // Looked at again on the next tick too: node asks for a first read right after 'connect'
    // (read(0)), paused or not, and would fill its own buffer with it.
    this.pauseForBudget();
    process.nextTick(() => this.pauseForBudget());
    // SIGURG for this connection comes to this process: urgent data then needs no polling.
    this.ownerSet = ownUrgentSignal(conn);
    try {
      this.applyBuffers();
      this.applyOptions();
    } catch (err) {
      // A daemon fault, not the client's: the connection still works with the system's defaults.
      this.log.error({ err }, 'could not apply socket options');
    }
    this.updateUrgentWatch();
    // The names, remembered now: node forgets them once the connection has closed.
    this.localName();
    this.peerName();
  }

  // ---- the connection's events: shared handlers, `this` is the connection ----

  private static onConnData(this: OwnedConnection, chunk: Buffer): void {
    const s = this[OWNER]!;
    s.takeData(this, chunk);
    // Every read passes here: the call only when the kernel's SO_OOBINLINE is still to follow.
    if (s.opts.oobInline && !s.kernelOobInline) s.syncOobInline();
  }

  /** The peer's FIN. */
  private static onConnEnd(this: OwnedConnection): void {
    const s = this[OWNER]!;
    if (s.state.is('connected')) s.state.move('peer-finished');
    else if (s.state.is('send-shut')) s.state.move('finished');
  }

  private static onConnError(this: OwnedConnection, err: NodeJS.ErrnoException): void {
    const s = this[OWNER]!;
    s.breakWith(s.brokenCode(err), err);
  }

  private static onConnClose(this: OwnedConnection): void {
    const s = this[OWNER]!;
    s.received.notReading(s);
    s.link?.close();
    // Closed under us without an error or both FINs: a reset.
    if (s.state.is('connected', 'send-shut', 'peer-finished')) s.breakWith(W.WSAECONNRESET);
  }

  // ---- StreamSink: what the transport buffer hands to the kernel (not sends: see send()) ----

  write(chunk: Uint8Array, done: (err?: Error | null) => void): void {
    if (this.link) return this.link.send(chunk, done);
    const conn = this.conn!;
    if (conn.destroyed) return done(new Error('destroyed'));
    this.lastSendAt = ++ioOrder;
    conn.write(chunk, done);
  }

  /**
   * Corked once per tick, uncorked on the next: every send of one incoming frame leaves in one
   * writev. The pairs inside the tick cost nothing (one nextTick per send cost the daemon about a
   * tenth of its time on small sends).
   */
  cork(): void {
    if (this.corkedThisTick) return;
    this.corkedThisTick = true;
    this.conn!.cork();
    process.nextTick(TcpSocket.uncorkTick, this);
  }

  private static uncorkTick(s: TcpSocket): void {
    s.corkedThisTick = false;
    s.conn!.uncork();
  }

  /** Nothing to do: cork() has the connection uncorked on the next tick. */
  uncork(): void {}

  sendDirect(chunk: Uint8Array, sendFlags: number): number {
    const r = sendWithFlags(this.conn!, chunk, sendFlags);
    if (typeof r === 'number') return r;
    if (r !== 'full') this.breakWith(r.errno);
    return -1;
  }

  afterPump(): void {
    this.afterDrainStep();
  }

  // ---- UrgentOwner ----

  urgentSignalled(): void {
    this.reenable(W.FD_OOB);
    this.wake();
  }

  /** The WSA code for a broken connection (see classifyBroken). */
  private brokenCode(err: NodeJS.ErrnoException): number {
    return classifyBroken({
      code: err.code,
      keepAlive: this.opts.keepAlive,
      // Data sent since the peer was last heard from, or still on its way, may be what went unacknowledged.
      unacknowledged: this.lastSendAt > this.lastRecvAt || !(this.tx?.drained ?? true) || (this.conn?.writableLength ?? 0) > 0,
      interfaceGone: this.interfaceGone(),
    });
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
    if (this.localAddr === null || this.onLoopback) return false;
    const now = performance.now();
    if (now - this.interfaceCheckedAt < 100) return false;
    this.interfaceCheckedAt = now;
    return this.interfaceGone();
  }

  /** The connection broke (a reset, an abort): the socket goes to 'broken' with the code. */
  private breakWith(code: number, err?: Error): void {
    if (this.closed) {
      // Still delivering after the close: what could not go is given up, and its bytes released.
      this.tx?.cancel(code, () => true, 'broken');
      return;
    }
    if (!this.state.allows('broken') || this.state.is('broken')) return;
    this.failure = code;
    this.resetAfterFin = code === W.WSAECONNRESET && this.state.is('peer-finished', 'finished');
    this.log.debug({ code, err: err?.message }, 'connection broken');
    this.state.move('broken');
  }

  private afterDrainStep(): void {
    // Room may have appeared: FD_WRITE, and a WSPSelect waiting for a socket it can write.
    this.wake();
    if (this.finPending && this.tx?.pendingOps === 0 && this.conn && !this.conn.destroyed) {
      this.finPending = false;
      this.endConn(this.closed);
    }
  }

  /**
   * FIN (then, for a closed socket, the end of the connection once node has written everything).
   * Bytes a link fault still holds were counted as sent: the FIN waits until they are written.
   */
  private endConn(destroySoon: boolean): void {
    const conn = this.conn;
    if (!conn || conn.destroyed) return;
    // Small sends accepted in this turn are still to be written: they go before the FIN.
    this.tx?.flushStaged();
    const end = (): void => {
      if (conn.destroyed) return;
      conn.end();
      if (destroySoon) conn.destroySoon();
    };
    if (this.link) this.link.whenEmpty(end);
    else end();
  }

  // ---- sends ----

  /** Why a send cannot start at all (a WSA code), or 0 when it can. */
  private sendPrecheck(flags: number): number {
    if ((flags & ~TCP_SEND_FLAGS) !== 0) return W.WSAEOPNOTSUPP;
    // TCP has no XP1_PARTIAL_MESSAGE; MSG_OOB needs the C library's send(), loaded through koffi.
    if (flags & W.MSG_PARTIAL) return W.WSAEOPNOTSUPP;
    if (flags & W.MSG_OOB && !libc()) return W.WSAEOPNOTSUPP;
    if (this.sendsShut) return W.WSAESHUTDOWN;
    if (this.state.is('broken')) return this.failure;
    if (this.breaking) return this.breaking;
    if (!this.state.is('connected', 'peer-finished') || !this.tx) return W.WSAENOTCONN;
    if (this.interfaceGoneThrottled()) {
      this.breakWith(W.WSAENETDOWN);
      return W.WSAENETDOWN;
    }
    return 0;
  }

  send(buffers: readonly Uint8Array[], flags: number, _to: SockAddr | null, forceBlocking = false, fn: SendFunction = 'WSPSend'): SendResult | Promise<SendResult> {
    const bad = this.sendPrecheck(flags);
    if (bad) return sendFailed(bad);
    const total = byteLength(buffers);
    // The session's memory quota: bytes held for its sends may not grow past it.
    if (this.quota.exceeds(total)) return sendFailed(W.WSAENOBUFS);
    const nonBlocking = this.opts.nonBlocking && !forceBlocking;
    let r: SendResult | Promise<SendResult>;
    const fault = this.faults.armed ? this.faults.decide(this, { fn, mode: nonBlocking ? 'nonblocking' : 'blocking', endsAt: this.streamEnd(total) }) : null;
    if (fault) r = this.faultedSend(fault, buffers, total, flags, nonBlocking);
    else r = this.sendNow(buffers, total, flags, nonBlocking);
    // A blocking send that did not complete now waits for room (or a fault's hold or delay). An
    // empty send, or an urgent byte, goes through the queue only to keep its place: no wait.
    if (!nonBlocking && r instanceof Promise && (fault !== null || (total > 0 && !this.directFlags(flags)))) this.callWaits();
    return r;
  }

  private sendNow(buffers: readonly Uint8Array[], total: number, flags: number, nonBlocking: boolean): SendResult | Promise<SendResult> {
    const r = streamSend(this.tx!, { buffers, total, direct: this.directFlags(flags) }, { nonBlocking, windowsPolicy: this.opts.windowsPolicy, timeoutMs: this.blockingTimeout('send') });
    if (r === 'would-block') return this.wouldBlock();
    // A direct send (MSG_OOB) may have found the connection broken.
    if (nonBlocking && this.state.is('broken')) return sendFailed(this.failure);
    return r;
  }

  /** A send that is not overlapped, as a fault rule's action makes it (proto/README.md section 19). */
  private faultedSend(fault: AppliedFault, buffers: readonly Uint8Array[], total: number, flags: number, nonBlocking: boolean): SendResult | Promise<SendResult> {
    const action = fault.action;
    switch (action.type) {
      case 'error':
      case 'block':
      case 'link':
        // The same as for a streamed send: a failure now, or the send goes on (under a hold or a link).
        return this.faultBeforeSend(fault, nonBlocking) ?? this.sendNow(buffers, total, flags, nonBlocking);
      case 'short': {
        const n = Math.min(total, action.max);
        return this.sendNow(firstBytes(buffers, n), n, flags, nonBlocking);
      }
      case 'delay':
        return this.delayedResult(this.sendNow(buffers, total, flags, nonBlocking), action.ms);
      case 'break': {
        const n = this.startBreak(action.at, action.code, total);
        if (n === 0) return sendFailed(action.code);
        const first = this.sendNow(firstBytes(buffers, n), n, flags, nonBlocking);
        // A nonblocking call reports what it handed over; the next call meets the break.
        if (nonBlocking) return first;
        // A blocking call is still sending when the connection breaks under it.
        return Promise.resolve(first).then(() => this.broken.then(() => ({ errno: action.code, bytes: n })));
      }
      case 'reorder':
      case 'drop':
      case 'duplicate':
        // Never chosen for this call (applies() in faults/rules.ts).
        return this.sendNow(buffers, total, flags, nonBlocking);
    }
  }

  sendOverlapped(buffers: readonly Uint8Array[], flags: number, _to: SockAddr | null, done: Completion, fn: SendFunction = 'WSPSend'): Started<SendResult> {
    const bad = this.sendPrecheck(flags);
    if (bad) return startedAt(sendFailed(bad));
    const total = byteLength(buffers);
    if (this.quota.exceeds(total)) return startedAt(sendFailed(W.WSAENOBUFS));
    const fault = this.faults.armed ? this.faults.decide(this, { fn, mode: 'overlapped', endsAt: this.streamEnd(total) }) : null;
    if (!fault) return streamSendOverlapped(this.tx!, { buffers, total, direct: this.directFlags(flags) }, done);
    const action = fault.action;
    const send = (b: readonly Uint8Array[], n: number, complete: Completion): Started<SendResult> => streamSendOverlapped(this.tx!, { buffers: b, total: n, direct: this.directFlags(flags) }, complete);
    switch (action.type) {
      case 'error':
        // An immediate failure: no completion, ever.
        return startedAt(sendFailed(action.code === W.WSAEWOULDBLOCK ? action.code : this.injectError(fault, action.code)));
      case 'block':
        this.block(action);
        return send(buffers, total, done);
      case 'short': {
        const n = Math.min(total, action.max);
        return send(firstBytes(buffers, n), n, done);
      }
      case 'delay':
        return this.delayedCompletion(action.ms, done, (late) => send(buffers, total, late));
      case 'reorder':
        return this.reorderedCompletion(fault, action.windowMs, done, (late) => send(buffers, total, late));
      case 'link':
        this.startLink(action.bytesPerSecond, action.latencyMs ?? 0);
        return send(buffers, total, done);
      case 'break': {
        const n = this.startBreak(action.at, action.code, total);
        if (n === 0) return startedAt(sendFailed(action.code));
        // The operation's first n bytes go; it completes with the code once the connection broke.
        return this.completionHeldUntil(this.broken, action.code, done, (late) => send(firstBytes(buffers, n), n, late));
      }
      case 'drop':
      case 'duplicate':
        return send(buffers, total, done);
    }
  }

  /** A block fault: for ms, or until drained bytes of what the socket holds have left it. False: nothing to hold. */
  private block(action: { ms?: number | undefined; drained?: number | undefined }): boolean {
    const tx = this.tx!;
    if (action.ms !== undefined) {
      tx.hold(action.ms);
      return true;
    }
    const outstanding = this.outstanding();
    const target = Math.max(0, outstanding - (action.drained ?? 0));
    // A socket that holds nothing has nothing to drain: no hold at all.
    if (outstanding <= target) return false;
    // One drain hold at a time: a rule that fires again during it (every nonblocking send it
    // refuses) moves its target, and adds no waiter (400,000 of them held the daemon for minutes).
    if (this.drainHoldTarget !== null) {
      this.drainHoldTarget = Math.min(this.drainHoldTarget, target);
      return true;
    }
    this.drainHoldTarget = target;
    tx.hold(W.MAX_FAULT_MS);
    this.whenDrained(
      () => this.outstanding() <= (this.drainHoldTarget ?? 0),
      () => {
        this.drainHoldTarget = null;
        tx.release();
      },
    );
    return true;
  }

  /** While a block fault holds the socket until bytes drain: what it holds until (block). */
  private drainHoldTarget: number | null = null;

  /** A link fault: from now on the socket drains at bytesPerSecond (the first link to fire stays). */
  private startLink(bytesPerSecond: number, latencyMs: number): void {
    const conn = this.conn;
    if (this.link || !conn) return;
    // Bytes accepted before the rule fired are not slowed by it.
    this.tx?.flushStaged();
    this.link = new SlowLink(bytesPerSecond, latencyMs, (slice, done) => {
      if (conn.destroyed) return done(new Error('destroyed'));
      this.lastSendAt = ++ioOrder;
      conn.write(slice, done);
    });
  }

  /**
   * A break fault: the stream ends at byte `at` (or where this call starts, if later). Returns how
   * many bytes of this call of total may still go. From now on sends fail with code; once every
   * byte before the break has reached the peer, the real connection is reset.
   */
  /** Where a send of total bytes made now ends in the socket's stream of sends (taken and queued bytes before it). */
  private streamEnd(total: number): number {
    const tx = this.tx!;
    return tx.taken + tx.pendingBytes + total;
  }

  private startBreak(at: number, code: number, total: number): number {
    const tx = this.tx!;
    const callStarts = tx.taken + tx.pendingBytes;
    const n = Math.min(total, Math.max(0, at - callStarts));
    this.breaking = code;
    this.log.debug({ at: Math.max(at, callStarts), code }, 'break fault: the connection breaks once the bytes before it are through');
    this.whenDrained(
      () => tx.drained && this.outstanding() === 0,
      () => {
        const conn = this.conn;
        this.breakWith(code);
        if (conn && !conn.destroyed) resetConnection(conn);
        this.brokenSignal().resolve();
      },
    );
    return n;
  }

  /** Settles when a break fault has reset the connection (or the socket closed first); made when first asked for. */
  private brokenByFault: { promise: Promise<void>; resolve: () => void } | null = null;

  private brokenSignal(): { promise: Promise<void>; resolve: () => void } {
    if (this.brokenByFault === null) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.brokenByFault = { promise, resolve };
    }
    return this.brokenByFault;
  }

  private get broken(): Promise<void> {
    return this.brokenSignal().promise;
  }

  /**
   * Bytes the socket has handed on and the peer has not yet acknowledged: in node's write queue,
   * in the slow link, and (where the C library is reachable) in the kernel's send queue.
   */
  private outstanding(): number {
    const conn = this.conn;
    if (!conn || conn.destroyed) return 0;
    const native = libc();
    const fd = fdOf(conn);
    const kernel = native && fd !== null ? (native.unacked(fd) ?? 0) : 0;
    return (this.tx?.used ?? 0) + conn.writableLength + kernel;
  }

  /**
   * Runs then once check() holds. The kernel tells no one when the peer acknowledges bytes, so
   * this looks again after DRAIN_POLL_MS, then ever less often (up to DRAIN_POLL_MAX_MS: a client
   * with thousands of such sockets must not keep the daemon busy); after MAX_FAULT_MS (a peer that
   * never reads) it runs anyway.
   */
  private whenDrained(check: () => boolean, then: () => void): void {
    (this.drainWaiters ??= []).push({ check, then, deadline: performance.now() + W.MAX_FAULT_MS });
    // Never at once: the call that asked has yet to queue its own bytes.
    if (this.drainWatch === null) this.scheduleDrainPoll(DRAIN_POLL_MS);
  }

  private scheduleDrainPoll(ms: number): void {
    this.drainPollMs = ms;
    this.drainWatch = setTimeout(() => this.pollDrain(), ms);
    this.drainWatch.unref();
  }

  private drainPollMs = DRAIN_POLL_MS;

  private pollDrain(): void {
    this.drainWatch = null;
    const now = performance.now();
    // The waiters whose time has come leave together (no splice per waiter); a then() that adds
    // a waiter adds it to the new list.
    const due: Array<() => void> = [];
    const waiting = (this.drainWaiters ?? []).filter((w) => {
      if (!this.closed && !w.check() && now < w.deadline) return true;
      due.push(w.then);
      return false;
    });
    this.drainWaiters = waiting;
    for (const then of due) then();
    if (this.drainWaiters.length > 0 && !this.closed && this.drainWatch === null) this.scheduleDrainPoll(due.length > 0 ? DRAIN_POLL_MS : Math.min(this.drainPollMs * 2, DRAIN_POLL_MAX_MS));
  }

  /**
   * An error fault on a call of this socket: a code that means a broken connection resets the
   * real one (the peer sees RST; what was queued is dropped, as with SO_LINGER {1, 0}) and leaves
   * the socket broken with that code, so later calls fail with it. Returns the code.
   */
  private injectError(fault: AppliedFault, code: number): number {
    if (fault.effect !== 'reset') return code;
    const conn = this.conn;
    this.breakWith(code);
    if (conn && !conn.destroyed) resetConnection(conn);
    return code;
  }

  override sendStreamed(buffers: readonly Uint8Array[], total: number, flags: number, forceBlocking: boolean, progress: (taken: number) => void): StreamedStart<SendResult | Promise<SendResult>> {
    // Urgent data and don't-route sends go to the descriptor whole: they are never that large.
    const bad = this.sendPrecheck(flags) || (this.directFlags(flags) ? W.WSAEOPNOTSUPP : 0);
    if (bad) return { result: sendFailed(bad), pieces: null, cancel: null };
    // The quota counts what the daemon holds: the pieces as they come, not the announced total.
    if (this.quota.exceeds(byteLength(buffers))) return { result: sendFailed(W.WSAENOBUFS), pieces: null, cancel: null };
    const nonBlocking = this.opts.nonBlocking && !forceBlocking;
    const fault = this.faults.armed ? this.faults.decide(this, { fn: 'WSPSend', mode: nonBlocking ? 'nonblocking' : 'blocking', streamed: true }) : null;
    const refused = fault ? this.faultBeforeSend(fault, nonBlocking) : null;
    if (refused) return { result: refused, pieces: null, cancel: null };
    const tx = this.tx!;
    const r = streamSendStreamed(tx, { buffers, total, progress }, { nonBlocking, windowsPolicy: this.opts.windowsPolicy, timeoutMs: this.blockingTimeout('send') });
    const op = r.op;
    let result = r.result === 'would-block' ? this.wouldBlock() : r.result;
    if (fault?.action.type === 'delay') result = this.delayedResult(result, fault.action.ms);
    // A blocking send larger than a message waits for its pieces to be taken.
    if (!nonBlocking && result instanceof Promise) this.callWaits();
    if (!op) return { result, pieces: null, cancel: null };
    return { result, pieces: (piece) => tx.append(op, piece), cancel: (errno) => tx.cancelQueued(errno, op), background: op.op.background === true };
  }

  override sendStreamedOverlapped(buffers: readonly Uint8Array[], total: number, flags: number, done: Completion, progress: (taken: number) => void): StreamedStart<Started<SendResult>> {
    const bad = this.sendPrecheck(flags) || (this.directFlags(flags) ? W.WSAEOPNOTSUPP : 0);
    if (bad) return { result: startedAt(sendFailed(bad)), pieces: null, cancel: null };
    if (this.quota.exceeds(byteLength(buffers))) return { result: startedAt(sendFailed(W.WSAENOBUFS)), pieces: null, cancel: null };
    const fault = this.faults.armed ? this.faults.decide(this, { fn: 'WSPSend', mode: 'overlapped', streamed: true }) : null;
    const refused = fault ? this.faultBeforeSend(fault, false) : null;
    if (refused) return { result: startedAt(refused), pieces: null, cancel: null };
    const tx = this.tx!;
    let op: QueuedSend | null = null;
    const start = (complete: Completion): Started<SendResult> => {
      const r = streamSendStreamedOverlapped(tx, { buffers, total, progress }, complete);
      op = r.op;
      return r.started;
    };
    const action = fault?.action;
    const started = action?.type === 'delay' ? this.delayedCompletion(action.ms, done, start) : action?.type === 'reorder' && fault ? this.reorderedCompletion(fault, action.windowMs, done, start) : start(done);
    const queued: QueuedSend | null = op;
    if (!queued) return { result: started, pieces: null, cancel: null };
    return { result: started, pieces: (piece) => tx.append(queued, piece), cancel: (errno) => tx.cancelQueued(errno, queued) };
  }

  /**
   * What an error, block or link fault does to a send (plain or streamed) before it starts: the
   * failure it ends in at once, or null when the send goes ahead (under a hold or a link). Other
   * actions are null here: the caller carries them out (a delay or reorder wraps its result).
   */
  private faultBeforeSend(fault: AppliedFault, nonBlocking: boolean): SendResult | null {
    const action = fault.action;
    switch (action.type) {
      case 'error':
        if (action.code === W.WSAEWOULDBLOCK) return this.wouldBlock();
        return sendFailed(this.injectError(fault, action.code));
      case 'block':
        return this.block(action) && nonBlocking ? this.wouldBlock() : null;
      case 'link':
        this.startLink(action.bytesPerSecond, action.latencyMs ?? 0);
        return null;
      default:
        return null;
    }
  }

  /**
   * The flags that need send() on the descriptor: MSG_OOB always (urgent data), MSG_DONTROUTE when
   * the C library is there to honour it (otherwise it is accepted and ignored, as the reference allows).
   */
  private directFlags(flags: number): number {
    return flags & (libc() ? W.MSG_OOB | W.MSG_DONTROUTE : W.MSG_OOB);
  }

  /** A send that would block re-enables FD_WRITE, which is recorded when room appears. */
  private wouldBlock(): SendResult {
    queueMicrotask(() => this.rearm(W.FD_WRITE));
    return sendFailed(W.WSAEWOULDBLOCK);
  }

  flushSends(): number {
    if (!this.tx) return 0;
    // Background sends (Windows policy) were answered as sent in full: their bytes still go.
    return this.tx.cancel(W.WSA_OPERATION_ABORTED, (o) => o.overlapped) + this.tx.cancel(W.WSAEINTR, (o) => !o.overlapped && !o.background);
  }

  // ---- events ----

  protected readyEvents(wanted: number): Array<[number, number]> {
    const ready: Array<[number, number]> = [];
    const st = this.state.current;
    if (wanted & W.FD_READ && this.rx.size > 0) ready.push([W.FD_READ, 0]);
    if (wanted & W.FD_WRITE && (st === 'connected' || st === 'peer-finished') && !this.sendsShut && this.tx?.writable) ready.push([W.FD_WRITE, 0]);
    if (wanted & W.FD_ACCEPT && st === 'listening' && this.accepted.length > 0) ready.push([W.FD_ACCEPT, 0]);
    if (wanted & W.FD_CONNECT && this.connectResult !== null) ready.push([W.FD_CONNECT, this.connectResult]);
    // Windows records FD_CLOSE as the FIN or reset arrives, unread data or not; a reset carries
    // WSAECONNABORTED there (receives still fail with WSAECONNRESET).
    if (wanted & W.FD_CLOSE && st === 'broken') ready.push([W.FD_CLOSE, this.failure === W.WSAECONNRESET ? W.WSAECONNABORTED : this.failure]);
    else if (wanted & W.FD_CLOSE && (st === 'peer-finished' || st === 'finished')) ready.push([W.FD_CLOSE, 0]);
    if (wanted & W.FD_OOB && this.urgentPending()) ready.push([W.FD_OOB, 0]);
    return ready;
  }

  selectReady(wanted: number): number {
    const st = this.state.current;
    let ready = 0;
    // Readable: data, a connection to accept, the peer's FIN or a broken connection (a receive
    // returns at once).
    if (wanted & SELECT_READ && (this.rx.size > 0 || st === 'peer-finished' || st === 'finished' || st === 'broken' || (st === 'listening' && this.accepted.length > 0))) ready |= SELECT_READ;
    // Writable: a connection with room for a send. Wine's tests record Windows reporting it
    // writable too once its sends are shut down, the peer's FIN arrived or it was reset (a send
    // then fails at once rather than blocking).
    if (wanted & SELECT_WRITE && TCP_CONNECTED_STATES.has(st) && (this.sendsShut || st === 'broken' || this.tx?.writable)) ready |= SELECT_WRITE;
    // Exceptional: a connect that failed (Windows keeps reporting it, as SO_ERROR keeps its code,
    // until a connection succeeds), or urgent data not read inline.
    if (wanted & SELECT_EXCEPT && ((this.connectResult !== null && this.connectResult !== 0 && st !== 'connecting') || this.urgentPending())) ready |= SELECT_EXCEPT;
    return ready;
  }

  /**
   * A WSPSelect that waits for data reads past the received-bytes budget, as a waiting receive
   * does; one that looks for urgent data watches for it, as a MSG_OOB receive does.
   */
  override watchSelect(wanted: number, changed: () => void, aborted: (errno: number) => void): () => void {
    const stop = super.watchSelect(wanted, changed, aborted);
    if (wanted & SELECT_READ) this.resumeInputIfRoom();
    if (!(wanted & SELECT_EXCEPT)) return stop;
    return this.urgent.hold(
      () => this.updateUrgentWatch(),
      (release) => () => {
        stop();
        release();
      },
    );
  }

  override atMark(): boolean {
    if (this.inlineMarkAt !== null) {
      if (this.opts.oobInline && this.receivedTotal - this.rx.size < this.inlineMarkAt) return false;
      this.inlineMarkAt = null;
    }
    return super.atMark();
  }

  /** For UrgentWatch: whether the kernel counted received bytes since the last time it asked. */
  receivedSinceAsked(): boolean {
    const n = this.conn ? receivedCount(this.conn) : null;
    if (n === null) return true;
    const changed = n !== this.receivedAtAsk;
    this.receivedAtAsk = n;
    return changed;
  }

  /** True when urgent data waits in the kernel (peeked with recv(MSG_OOB | MSG_PEEK)). */
  private urgentPending(): boolean {
    if (!this.conn || this.opts.oobInline || !this.urgent.mayHaveData) return false;
    const r = readUrgent(this.conn, true);
    const found = r instanceof Uint8Array && r.length > 0;
    if (!found) this.urgent.foundNothing();
    return found;
  }

  /** Watches for urgent data while a MSG_OOB receive waits or FD_OOB is selected; not otherwise. */
  private updateUrgentWatch(): void {
    this.urgent.update(!this.closed && this.conn !== null, (this.selection & W.FD_OOB) !== 0, this.ownerSet);
  }

  protected override selectionChanged(): void {
    this.updateUrgentWatch();
  }

  // ---- receives ----

  /** Why a receive cannot start at all, or null when it can. */
  protected recvPrecheck(flags: number): RecvResult | null {
    if (flags & ~(W.MSG_PEEK | W.MSG_OOB | W.MSG_WAITALL)) return recvFailed(W.WSAEOPNOTSUPP);
    // Urgent data needs the C library; with SO_OOBINLINE it arrives in the ordinary stream instead.
    if (flags & W.MSG_OOB && (!libc() || this.opts.oobInline)) return recvFailed(W.WSAEINVAL);
    if (this.state.is('listening')) return recvFailed(W.WSAENOTCONN);
    if (this.recvShut) return recvFailed(W.WSAESHUTDOWN);
    if (!this.connected) return recvFailed(W.WSAENOTCONN);
    return null;
  }

  /** A receive's result when it can finish now, or undefined while it must wait. */
  private recvCheck(lengths: readonly number[], flags: number): () => RecvResult | undefined {
    let want = 0;
    for (const n of lengths) want += n;
    // A stream receive may return fewer bytes than its buffers hold: at most one reply's worth.
    want = Math.min(want, this.maxRecvBytes);
    return () => {
      if (this.closed) return recvFailed(W.WSAEINTR);
      // No recvShut test here: a receive started after SD_RECEIVE failed in its precheck, and
      // one already waiting when it came goes on waiting for data, as on Windows.
      if (flags & W.MSG_OOB) return this.takeUrgent(flags);
      // A receive of 0 bytes completes, with 0, once data is there, as on Windows.
      if (this.rx.size > 0) {
        queueMicrotask(() => this.rearm(W.FD_READ));
        const peek = (flags & W.MSG_PEEK) !== 0;
        const data = this.rx.take(want, peek);
        if (!peek) this.resumeInputIfRoom();
        // No `from`: WSPRecvFrom on a stream socket leaves lpFrom alone on Windows.
        return { errno: 0, bytes: data.length, data, flags: 0 };
      }
      if (this.state.is('broken')) return recvFailed(this.recvFailure());
      if (this.state.is('peer-finished', 'finished')) {
        // A reset that came after the FIN (the peer closed, then our data reached it).
        if (this.conn && takeSocketError(this.conn)) this.breakWith(W.WSAECONNRESET);
        if (this.state.is('broken')) return recvFailed(this.recvFailure());
        return { errno: 0, bytes: 0, data: new Uint8Array(0), flags: 0 };
      }
      return undefined;
    };
  }

  /** What a receive on the broken connection fails with. */
  private recvFailure(): number {
    return this.resetAfterFin ? W.WSAECONNABORTED : this.failure;
  }

  /** Reads urgent data with recv(MSG_OOB); undefined while none is waiting. */
  private takeUrgent(flags: number): RecvResult | undefined {
    if (this.state.is('broken')) return recvFailed(this.recvFailure());
    if (!this.conn) return recvFailed(W.WSAENOTCONN);
    if (!this.urgent.mayHaveData) return undefined;
    // TCP urgent data is one byte, whatever the buffers could hold.
    const r = readUrgent(this.conn, (flags & W.MSG_PEEK) !== 0);
    if (r === null) {
      this.urgent.foundNothing();
      return undefined;
    }
    if (!(r instanceof Uint8Array)) return recvFailed(r.errno);
    if ((flags & W.MSG_PEEK) === 0 && r.length > 0) this.urgentTaken = true;
    queueMicrotask(() => this.rearm(W.FD_OOB));
    return { errno: 0, bytes: r.length, data: r, flags: W.MSG_OOB };
  }

  /** An error fault on a receive that passed its checks: the code it fails with, or 0 for none. */
  protected recvFault(wantFrom: boolean, mode: CallMode): number {
    const fault = this.faults.decide(this, { fn: wantFrom ? 'WSPRecvFrom' : 'WSPRecv', mode });
    if (fault?.action.type !== 'error') return 0;
    if (fault.action.code === W.WSAEWOULDBLOCK) {
      queueMicrotask(() => this.rearm(W.FD_READ));
      return W.WSAEWOULDBLOCK;
    }
    return this.injectError(fault, fault.action.code);
  }

  recv(lengths: readonly number[], flags: number, wantFrom: boolean, forceBlocking = false): Promise<RecvResult> {
    const refused = this.recvRefusal(flags, wantFrom, this.opts.nonBlocking && !forceBlocking ? 'nonblocking' : 'blocking');
    if (refused) return Promise.resolve(refused);
    const check = this.recvCheck(lengths, flags);
    if (this.opts.nonBlocking && !forceBlocking) return Promise.resolve(check() ?? recvFailed(W.WSAEWOULDBLOCK));
    // Nothing tells node when urgent data arrives: SIGURG does (UrgentWatch).
    const timeout = this.blockingTimeout('recv');
    if (flags & W.MSG_OOB) return this.urgent.hold(() => this.updateUrgentWatch(), (release) => this.waitFor(check, recvFailed, undefined, timeout).finally(release));
    const r = this.waitFor(check, recvFailed, undefined, timeout);
    // A receive now waits: a socket stopped for the received-bytes budget reads for it.
    this.resumeInputIfRoom();
    return r;
  }

  recvOverlapped(lengths: readonly number[], flags: number, wantFrom: boolean, done: Completion): Started<RecvResult> {
    const precheck = this.recvRefusal(flags, wantFrom, 'overlapped');
    const check = this.recvCheck(lengths, flags);
    if (precheck || !(flags & W.MSG_OOB)) {
      const started = this.overlappedRecv(precheck, check, done);
      if (started.pending) this.resumeInputIfRoom();
      return started;
    }
    return this.urgent.hold(
      () => this.updateUrgentWatch(),
      (release) => {
        const started = this.overlappedRecv(
          null,
          check,
          completion((errno, bytes, out) => {
            release();
            done.complete(errno, bytes, out);
          }),
        );
        if (!started.pending) release();
        return started;
      },
    );
  }

  // ---- shutdown and close ----

  shutdown(how: number): number {
    if (how !== W.SD_RECEIVE && how !== W.SD_SEND && how !== W.SD_BOTH) return W.WSAEINVAL;
    if (!this.connected || !this.conn) return W.WSAENOTCONN;
    if (how === W.SD_RECEIVE || how === W.SD_BOTH) this.recvShut = true;
    if ((how === W.SD_SEND || how === W.SD_BOTH) && !this.sendsShut) {
      this.sendsShut = true;
      if (this.state.is('connected')) this.state.move('send-shut');
      else if (this.state.is('peer-finished')) this.state.move('finished');
      // FIN goes after every byte already accepted and every send still queued.
      if (!this.state.is('broken')) this.finAfterQueued();
    }
    this.wake();
    return 0;
  }

  /** Sends FIN now, or once the sends still queued are through. */
  private finAfterQueued(): void {
    if (this.tx && this.tx.pendingOps > 0) this.finPending = true;
    else this.endConn(false);
  }

  close(abortCode: number = W.WSAEINTR, overlappedCode: number = W.WSA_OPERATION_ABORTED): void {
    if (this.closed || !this.state.move('closed')) return;
    this.interruptedWith = abortCode;
    // What no receive took is gone with the socket.
    this.rx.clear();
    // WSPCloseSocket completes a pending receive with WSAECONNABORTED on Windows (Wine's
    // test_iocp), not the WSA_OPERATION_ABORTED of the WSPRecv page; sends keep the latter.
    this.abortWaits(abortCode, overlappedCode === W.WSA_OPERATION_ABORTED ? W.WSAECONNABORTED : overlappedCode);
    this.tx?.cancel(overlappedCode, (o) => o.overlapped, 'close');
    // Background data (Windows policy) keeps flowing after the close; blocked calls do not.
    this.tx?.cancel(abortCode, (o) => !o.overlapped && !o.background, 'close');
    // Completions a delay fault holds (those the cancellations just gave included) go now.
    this.flushLate();
    for (const c of this.accepted.splice(0)) {
      this.ctx.connectionQueue.change(-1);
      c.resetAndDestroy();
    }
    // (The listening socket closed already, with the move to 'closed': entered().)
    // A connect still under way ends with the socket: its SYNs could otherwise go on for minutes,
    // holding a descriptor and the port that no limit counts.
    this.connectingConn?.destroy();
    this.connectingConn = null;
    const conn = this.conn;
    if (!conn || conn.destroyed) return;
    if (this.opts.linger.onoff && this.opts.linger.seconds === 0) {
      // SO_LINGER {1, 0}: an abortive close. What was not sent is dropped and the peer sees RST.
      this.tx?.cancel(W.WSAECONNABORTED, () => true, 'broken');
      resetConnection(conn);
      return;
    }
    // Graceful close: bytes already accepted still reach the peer, then FIN. Those accepted in
    // this turn go to node now, so that what is undelivered counts them.
    this.tx?.flushStaged();
    conn.removeAllListeners('data');
    conn.on('error', () => undefined);
    resumeNow(conn);
    this.delivered = new Promise<void>((resolve) => {
      conn.once('finish', resolve);
      conn.once('close', resolve);
    });
    if (this.tx && this.tx.pendingOps > 0) this.finPending = true;
    else this.endConn(true);
    if (this.undelivered() > 0) this.ctx.draining.add(this);
  }

  // ---- after the close: delivering what was accepted (Drainable) ----

  /** Resolves once the kernel has every accepted byte, or the connection ended. */
  delivered: Promise<void> = NOTHING_TO_DELIVER;

  undelivered(): number {
    const conn = this.conn;
    if (!conn || conn.destroyed) return 0;
    return (this.tx?.notHanded ?? 0) + (this.tx?.staged ?? 0) + (this.link?.queuedBytes ?? 0) + conn.writableLength;
  }

  abandon(): number {
    const n = this.undelivered();
    this.finPending = false;
    // Background sends (Windows policy) still queued end here; nobody waits for them any more.
    this.tx?.cancel(W.WSAECONNABORTED, () => true, 'broken');
    if (this.conn) resetConnection(this.conn);
    return n;
  }

  peerText(): string {
    const c = this.conn;
    return c?.remoteAddress ? `${c.remoteAddress.includes(':') ? `[${c.remoteAddress}]` : c.remoteAddress}:${c.remotePort}` : 'unknown';
  }

  // ---- names, buffers, options ----

  localName(): SockAddr | null {
    if (this.conn && !this.conn.destroyed && this.conn.localAddress) {
      this.localSeen = fromNodeAddress({ address: this.conn.localAddress, port: this.conn.localPort, family: this.conn.localFamily }, this.af);
      return this.localSeen;
    }
    // Node forgets a connection's addresses once it has closed; Windows still answers.
    if (this.conn && this.localSeen) return this.localSeen;
    if (this.server) {
      const a = this.server.address();
      if (a && typeof a === 'object') return fromNodeAddress(a, this.af);
    }
    // hostOf carries a scopeId over as the interface's name, which fromNodeAddress reads back.
    if (this.bound) return fromNodeAddress({ address: hostOf(this.bound), port: this.bound.port }, this.af);
    return null;
  }

  peerName(): SockAddr | null {
    if (this.state.is('connecting')) return this.connectingTo;
    if (!this.connected || !this.conn) return null;
    if (!this.conn.remoteAddress) return this.peerSeen;
    this.peerSeen = fromNodeAddress({ address: this.conn.remoteAddress, port: this.conn.remotePort, family: this.conn.remoteFamily }, this.af);
    return this.peerSeen;
  }

  readable(): number {
    return this.rx.size;
  }

  get bytesTaken(): number {
    return this.tx?.taken ?? 0;
  }

  get bytesReceived(): number {
    return this.receivedTotal;
  }

  get queuedSendBytes(): number {
    return this.tx ? this.tx.used + this.tx.pendingBytes : 0;
  }

  /** SessionReceived: the session went over its share of the received budget. */
  budgetExceeded(): void {
    this.pauseForBudget();
  }

  /** Stops reading while the daemon holds too much received data (overReceivedBudget), until it has room. */
  private pauseForBudget(): void {
    const conn = this.conn;
    if (!conn || conn.destroyed || !this.overReceivedBudget()) return;
    pauseNow(conn);
    // Once per wait for room, however often the socket pauses meanwhile.
    if (this.waitingForRoom) return;
    this.waitingForRoom = true;
    this.received.whenRoom(() => {
      this.waitingForRoom = false;
      this.resumeInputIfRoom();
    });
  }

  /** Reads from the connection again when the receive buffer has room and the session's output allows. */
  private resumeInputIfRoom(): void {
    if (this.conn?.isPaused() && !this.closed && this.rx.size < this.receiveHold() && !this.ctx.flow.paused && !this.overReceivedBudget()) {
      resumeNow(this.conn);
      this.syncOobInline();
    }
  }

  /**
   * The daemon holds too much received data and this session more than its share: stop reading,
   * unless a receive (or a select) waits here with nothing to take. That one always gets data (a
   * read's worth at most), or a client waiting on one socket while others hold the budget would
   * wait forever.
   */
  private overReceivedBudget(): boolean {
    return this.received.full && !(this.hasWaiters && this.rx.size === 0);
  }

  /** Unread bytes past which the socket stops reading: SO_RCVBUF, within what one reply can carry. */
  private receiveHold(): number {
    return Math.min(Math.max(this.opts.rcvBuf, 1), this.maxRecvBytes);
  }

  override inputResumed(): void {
    this.resumeInputIfRoom();
  }

  applyBuffers(): void {
    if (this.tx) this.tx.capacity = this.opts.sndBuf;
    this.resumeInputIfRoom();
    if (this.conn) applyTcpBuffers(this.conn, this.opts);
  }

  applyOptions(): void {
    const conn = this.conn;
    if (!conn) return;
    if (!this.opts.oobInline) this.kernelOobInline = false;
    applyTcpOptions(conn, this.opts, this.kernelOobInline, this.af === W.AF_INET6, this.dualStack);
    this.syncOobInline();
  }

  /**
   * Turns SO_OOBINLINE on in the kernel once that is safe, after the client turned it on. Before
   * it: an urgent byte already taken out of band and still at the kernel's read position must be
   * stepped over (Linux would hand it over again inline), which takes a read of the kernel socket.
   * After it: an unread urgent byte waiting alone is read (Linux never reported it readable). Both
   * reads take bytes that come after whatever node holds, so they wait until node holds nothing;
   * until then the kernel keeps the option off, and node's own reads step over a taken byte.
   */
  private syncOobInline(): void {
    const conn = this.conn;
    if (!conn || this.kernelOobInline || !this.opts.oobInline || conn.destroyed) return;
    if (this.urgentTaken) {
      // The read that steps over it takes a byte after whatever node holds; and while the byte
      // may be ahead in the kernel, the option stays off, so that node's reads step over it.
      if (conn.readableLength > 0) return;
      const next = settleTakenUrgentByte(conn);
      if (next === 'ahead') return;
      if (next) this.takeData(conn, next);
      this.urgentTaken = false;
    }
    const peeked = readUrgent(conn, true);
    const urgentUnread = peeked instanceof Uint8Array && peeked.length > 0;
    this.kernelOobInline = true;
    setKernelOobInline(conn, true);
    // Only while node holds nothing (the byte would pass what it holds) and would read too:
    // toggling the option must not read past the receive bounds.
    if (conn.readableLength === 0 && this.rx.size < this.receiveHold() && !this.overReceivedBudget()) {
      const stranded = readStrandedByte(conn);
      if (stranded) this.takeData(conn, stranded);
      // Windows still reports that byte at SIOCATMARK (FALSE) until it is read inline.
      if (urgentUnread && stranded) this.inlineMarkAt = this.receivedTotal;
    }
  }

  maxMessageSize(): number | null {
    return null;
  }
}

/**
 * Stops reading the connection now. pause() alone stops node's 'data' events, but node goes on
 * reading from the kernel into its own buffer until a read finds that buffer full: one more read
 * (up to 64 KiB) per paused socket, which no count saw (a session with a thousand sockets held
 * 64 MB past the received budget that way). resumeNow starts the reads again.
 */
function pauseNow(conn: net.Socket): void {
  conn.pause();
  const handle = (conn as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading === true && typeof handle.readStop === 'function') {
    handle.reading = false;
    handle.readStop();
  }
}

/**
 * resume(), and the handle reads again if pauseNow stopped it: node's stream may still count a
 * read as under way (it asked the handle before the stop) and then would not ask again.
 */
function resumeNow(conn: net.Socket): void {
  conn.resume();
  const handle = (conn as unknown as { _handle?: { reading?: boolean; readStart?: () => number } | null })._handle;
  if (!conn.destroyed && handle?.reading === false && typeof handle.readStart === 'function') {
    handle.reading = true;
    handle.readStart();
  }
}

function clampBacklog(n: number): number {
  return Math.min(Math.max(n, 1), MAX_BACKLOG);
}
