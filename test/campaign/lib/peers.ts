/**
 * The far ends of the daemon's sockets, all in the campaign process and all on loopback: TCP peers
 * that read everything, read slowly, or never read; UDP receivers; and decoys that only count who
 * reached them. Every peer is closed by closeAllPeers() at the end of a scenario.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export type ReadMode =
  /** Reads everything as it comes. */
  | { kind: 'sink' }
  /** Reads at most bytesPerTick every tickMs, and everything in the end. */
  | { kind: 'slow'; bytesPerTick: number; tickMs: number }
  /** Never reads: the kernel buffers fill, then the daemon's. */
  | { kind: 'never' };

export interface PeerConn {
  socket: net.Socket;
  /** Bytes read so far. */
  received: number;
  /** The bytes read, when the peer keeps them (keep: true). */
  chunks: Buffer[];
  /** 'end' (FIN), 'reset' (error such as ECONNRESET), or null while the connection lasts. */
  ended: 'end' | 'reset' | null;
  closed: Promise<void>;
  remotePort: number;
}

const closers = new Set<() => Promise<void>>();

/** Closes every peer, decoy and receiver still open. */
export async function closeAllPeers(): Promise<void> {
  const all = [...closers];
  closers.clear();
  await Promise.all(all.map((c) => c().catch(() => undefined)));
}

export class TcpPeer {
  readonly conns: PeerConn[] = [];
  private waiting: Array<() => void> = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: net.Server,
    readonly host: string,
    readonly port: number,
  ) {}

  /**
   * A loopback TCP server. mode says how it reads; keep keeps the bytes read (for content checks);
   * onConnect runs for each new connection (for example to send the daemon data).
   */
  static async start(opts: { mode?: ReadMode; host?: string; port?: number; keep?: boolean; onConnect?: (s: net.Socket) => void } = {}): Promise<TcpPeer> {
    const mode = opts.mode ?? { kind: 'sink' };
    const host = opts.host ?? '127.0.0.1';
    let peer: TcpPeer | null = null;
    const server = net.createServer({ allowHalfOpen: false }, (socket) => peer?.adopt(socket, mode, opts.keep ?? false, opts.onConnect));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port: opts.port ?? 0, exclusive: true }, () => resolve());
    });
    server.on('error', () => undefined);
    peer = new TcpPeer(server, host, (server.address() as net.AddressInfo).port);
    const p = peer;
    closers.add(() => p.close());
    return peer;
  }

  private adopt(socket: net.Socket, mode: ReadMode, keep: boolean, onConnect?: (s: net.Socket) => void): void {
    let markClosed: () => void = () => undefined;
    const c: PeerConn = { socket, received: 0, chunks: [], ended: null, closed: new Promise((r) => (markClosed = r)), remotePort: socket.remotePort ?? 0 };
    socket.on('error', () => {
      c.ended ??= 'reset';
    });
    socket.once('end', () => {
      c.ended ??= 'end';
    });
    socket.once('close', () => {
      c.ended ??= 'end';
      markClosed();
    });
    const take = (b: Buffer): void => {
      c.received += b.length;
      if (keep) c.chunks.push(b);
    };
    if (mode.kind === 'sink') socket.on('data', take);
    else if (mode.kind === 'never') socket.pause();
    else {
      socket.pause();
      const timer = setInterval(() => {
        let got = 0;
        while (got < mode.bytesPerTick) {
          const b = socket.read() as Buffer | null;
          if (!b) break;
          got += b.length;
          take(b);
        }
      }, mode.tickMs);
      this.timers.add(timer);
      // The end is only seen once every byte before it was read.
      socket.once('end', () => {
        clearInterval(timer);
        for (let b = socket.read() as Buffer | null; b; b = socket.read() as Buffer | null) take(b);
      });
      socket.once('close', () => clearInterval(timer));
    }
    onConnect?.(socket);
    this.conns.push(c);
    const w = this.waiting;
    this.waiting = [];
    for (const f of w) f();
  }

  /** The connection that comes from the given port (the daemon socket's local port), or null after ms. */
  async from(port: number, ms = 5000): Promise<PeerConn | null> {
    const end = Date.now() + ms;
    for (;;) {
      const c = this.conns.find((x) => x.remotePort === port);
      if (c || Date.now() >= end) return c ?? null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, 20);
        this.waiting.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Starts reading every connection in full from now on (a slow or stalled peer catches up). */
  drainAll(): void {
    for (const c of this.conns) {
      c.socket.removeAllListeners('data');
      c.socket.on('data', (b: Buffer) => {
        c.received += b.length;
      });
      c.socket.resume();
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A UDP socket that counts the datagrams it receives. */
export class UdpPeer {
  datagrams = 0;
  bytes = 0;
  readonly from: string[] = [];

  private constructor(
    private readonly sock: dgram.Socket,
    readonly host: string,
    readonly port: number,
  ) {
    sock.on('message', (m, rinfo) => {
      this.datagrams++;
      this.bytes += m.length;
      if (this.from.length < 20) this.from.push(`${rinfo.address}:${rinfo.port}`);
    });
  }

  static async start(host = '127.0.0.1', port = 0): Promise<UdpPeer> {
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: net.isIPv6(host) });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: host, port, exclusive: true }, () => resolve());
    });
    const p = new UdpPeer(sock, host, sock.address().port);
    closers.add(() => p.close());
    return p;
  }

  close(): Promise<void> {
    return new Promise((r) => {
      try {
        this.sock.close(() => r());
      } catch {
        r();
      }
    });
  }
}

/** A loopback port that nothing listens on (TCP and UDP free when it was picked). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, host, () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** True when this machine can listen on the address (::1 needs IPv6 on loopback). */
export async function canListen(host: string): Promise<boolean> {
  const srv = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(0, host, () => resolve(true));
  });
  if (ok) await new Promise<void>((r) => srv.close(() => r()));
  return ok;
}
