/**
 * A peer of the benchmark, in its own process, driven over IPC by test/bench/run.ts. spiwire's
 * sockets and the raw baselines meet the same peers. What a peer can be:
 *   - a TCP discard server counting the bytes of each connection (by the client's port), that
 *     answers "expect" when a connection has received a given count, with the time it did, and
 *     on request hashes (SHA-256) what a connection receives, without keeping it; optionally a
 *     sink that the kernel wakes only once rcvLowat bytes are waiting (SO_RCVLOWAT), or at the end;
 *   - a TCP holder that accepts connections and does not read them until "release";
 *   - a UDP receiver counting datagrams, pushing its count every few datagrams (the senders'
 *     flow control) and remembering when the first and last arrived;
 *   - a WebSocket echo server (ws), the raw baseline of the small-call latency;
 *   - a naive WebSocket-to-TCP relay (ws with bufferutil to node:net, the obvious thing to write),
 *     a peer of spiwire's bulk path;
 *   - a load generator: SDK sessions with one bulk TCP socket each (scenario 9), in a process of
 *     its own so that a bystander measured by the benchmark does not wait on this event loop.
 * Times are process.hrtime in nanoseconds: CLOCK_MONOTONIC, which every process here shares.
 */
import { createHash, type Hash } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import { SendPipeline, closeSocket, tcpSocket } from './lib/spi.js';

type Msg = Record<string, unknown> & { id: number; cmd: string };

function now(): number {
  return Number(process.hrtime.bigint());
}

interface Conn {
  remotePort: number;
  bytes: number;
  /** Closed by the remote end. */
  ended: boolean;
  /** Each answered once bytes have arrived or the connection ended; `forget` ones only at the end. */
  waiters: Array<{ bytes: number; id: number; forget?: boolean }>;
  /** With stamps on: [time, cumulative bytes] of every read. */
  stamps: number[] | null;
  /** With hashing on: SHA-256 of every byte received, in order; its hex digest once the end is reported. */
  hash: Hash | null;
  sha256: string | undefined;
  /** Its end was reported to an "ended" request: the entry can go. */
  reported: boolean;
}

interface Listener {
  server: net.Server;
  mode: 'discard' | 'hold';
  held: boolean;
  sockets: Set<net.Socket>;
  conns: Map<number, Conn>;
  accepted: number;
  bytes: number;
  /** "expectNext" requests: each binds to the next connection accepted. */
  next: Array<{ bytes: number; id: number }>;
  /** SO_RCVLOWAT of every accepted connection, or null (the kernel's default: woken by every byte). */
  rcvLowat: number | null;
  /** Connections on which setting it failed (then woken by every byte). */
  lowatFailed: number;
}

const listeners = new Map<number, Listener>();
const udps = new Map<number, { sock: dgram.Socket; count: number; bytes: number; first: number; last: number; every: number }>();
const wss: WebSocketServer[] = [];

function reply(id: number, body: Record<string, unknown> = {}): void {
  process.send!({ id, ...body });
}

function connOf(l: Listener, remotePort: number): Conn {
  let c = l.conns.get(remotePort);
  if (!c) {
    c = { remotePort, bytes: 0, ended: false, waiters: [], stamps: null, hash: null, sha256: undefined, reported: false };
    l.conns.set(remotePort, c);
  }
  return c;
}

function settle(c: Conn): void {
  if (c.waiters.length === 0) return;
  const t = now();
  c.waiters = c.waiters.filter((w) => {
    if (c.bytes < w.bytes && !c.ended) return true;
    // The digest is taken when the end is reported (no byte can follow it), and only once.
    if (w.forget && c.hash) {
      c.sha256 = c.hash.digest('hex');
      c.hash = null;
    }
    reply(w.id, { t, bytes: c.bytes, ended: c.ended, remotePort: c.remotePort, stamps: w.forget ? (c.stamps ?? []) : undefined, sha256: w.forget ? c.sha256 : undefined });
    if (w.forget) c.reported = true;
    return false;
  });
}

/**
 * The count of a connection that ended is dropped once read, so that a later connection from the
 * same client port (the kernel reuses ephemeral ports) starts from zero instead of inheriting it.
 */
function forgetIfReported(l: Listener, remotePort: number, c: Conn): void {
  if (c.reported && l.conns.get(remotePort) === c) l.conns.delete(remotePort);
}

function read(l: Listener, sock: net.Socket, c: Conn): void {
  sock.on('data', (b: Buffer) => {
    c.bytes += b.length;
    l.bytes += b.length;
    if (c.stamps) c.stamps.push(now(), c.bytes);
    if (c.hash) c.hash.update(b);
    if (c.waiters.length) settle(c);
  });
  sock.resume();
}

/**
 * A sink with rcvLowat is woken once that many bytes wait, or at the end, instead of by every
 * segment: on two shared cores a third process woken by each 100-byte call would compete with the
 * client and the daemon for them, which the raw baselines' peers do not. Null where the C library
 * cannot be reached.
 */
function lowatOf(m: Msg): number | null {
  const v = m['rcvLowat'];
  return typeof v === 'number' && v > 1 && libc() !== null ? v : null;
}

function tcpListen(m: Msg): void {
  const mode = m['mode'] === 'hold' ? 'hold' : 'discard';
  const server = net.createServer({ pauseOnConnect: true });
  const l: Listener = { server, mode, held: mode === 'hold', sockets: new Set(), conns: new Map(), accepted: 0, bytes: 0, next: [], rcvLowat: lowatOf(m), lowatFailed: 0 };
  server.on('connection', (sock) => {
    l.accepted++;
    l.sockets.add(sock);
    if (l.rcvLowat !== null) {
      const c = libc()!;
      const fd = fdOf(sock);
      if (fd === null || c.setInt(fd, c.c.SOL_SOCKET, c.c.SO_RCVLOWAT, l.rcvLowat) !== 0) l.lowatFailed++;
    }
    const remotePort = sock.remotePort ?? 0;
    // A count left from an earlier connection on this port (never read with "ended") is stale.
    if (l.conns.get(remotePort)?.ended) l.conns.delete(remotePort);
    const c = connOf(l, remotePort);
    // The remote port tells the client which connection it was (for "ended" afterwards).
    for (const w of l.next.splice(0)) c.waiters.push({ bytes: w.bytes, id: w.id });
    sock.on('error', () => undefined);
    sock.on('end', () => {
      c.ended = true;
      settle(c);
      forgetIfReported(l, remotePort, c);
    });
    sock.on('close', () => l.sockets.delete(sock));
    if (!l.held) read(l, sock, c);
  });
  server.on('error', (err) => reply(m.id, { error: err.message }));
  server.listen({ host: '127.0.0.1', port: 0, backlog: (m['backlog'] as number | undefined) ?? 4096 }, () => {
    const port = (server.address() as net.AddressInfo).port;
    listeners.set(port, l);
    reply(m.id, { port, rcvLowat: l.rcvLowat });
  });
}

function listener(m: Msg): Listener {
  const l = listeners.get(m['port'] as number);
  if (!l) throw new Error(`no listener on port ${String(m['port'])}`);
  return l;
}

/** The load generator's sessions and sockets (scenario 9). */
let load: { spis: S.SpiSession[]; socks: Array<{ s: number; localPort: number }> } | null = null;

function answerAsync(m: Msg, work: () => Promise<Record<string, unknown>>): void {
  work().then(
    (body) => reply(m.id, body),
    (err: unknown) => reply(m.id, { error: err instanceof Error ? err.message : String(err) }),
  );
}

const handlers: Record<string, (m: Msg) => void> = {
  /** Opens `sessions` SDK sessions to url, each with a TCP socket connected to port; answers their local ports. */
  loadOpen: (m) =>
    answerAsync(m, async () => {
      const spis = load?.spis ?? (await Promise.all(Array.from({ length: m['sessions'] as number }, () => S.connect(m['url'] as string, { autoApc: true }))));
      const socks = await Promise.all(spis.map((spi) => tcpSocket(spi, m['port'] as number)));
      load = { spis, socks };
      return { localPorts: socks.map((x) => x.localPort) };
    }),
  /**
   * Every session (or the first `sessions` of them) sends count 64 KiB overlapped WSPSends, window
   * in flight; answers when all completed, with the start time.
   */
  loadRun: (m) =>
    answerAsync(m, async () => {
      if (!load) throw new Error('loadOpen first');
      const l = load;
      const buf = Buffer.alloc(64 * 1024, 0x5a);
      const sending = l.socks.slice(0, (m['sessions'] as number | undefined) ?? l.socks.length);
      const t0 = now();
      await Promise.all(sending.map((x, i) => new SendPipeline(l.spis[i]!, 'spi', x.s, buf, m['count'] as number, m['window'] as number).run()));
      return { t0 };
    }),
  /** Closes the sockets (sessions stay open for the next loadOpen). */
  loadCloseSockets: (m) =>
    answerAsync(m, async () => {
      if (load) await Promise.all(load.socks.map((x, i) => closeSocket(load!.spis[i]!, x.s)));
      return {};
    }),
  loadEnd: (m) =>
    answerAsync(m, async () => {
      if (load) await Promise.all(load.spis.map((spi) => spi.close()));
      load = null;
      return {};
    }),
  ping: (m) => reply(m.id, { pid: process.pid }),
  hrtime: (m) => reply(m.id, { t: now() }),
  tcpListen,
  /** Answers once the connection from remotePort has received at least bytes (or ended). */
  expect: (m) => {
    const c = connOf(listener(m), m['remotePort'] as number);
    c.waiters.push({ bytes: m['bytes'] as number, id: m.id });
    settle(c);
  },
  /**
   * As expect, for the next connection the listener accepts (one a relay opens, whose port the
   * client cannot know); the answer carries its remotePort.
   */
  expectNext: (m) => {
    listener(m).next.push({ bytes: m['bytes'] as number, id: m.id });
  },
  /** A naive relay: each WebSocket connection gets a TCP connection to target; binary messages are written to it. */
  wsRelay: (m) => {
    const target = m['target'] as number;
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
    server.on('connection', (ws) => {
      const tcp = net.connect(target, '127.0.0.1');
      tcp.on('error', () => ws.terminate());
      ws.on('message', (data: Buffer) => {
        // The one concession to correctness: stop reading the WebSocket while TCP is behind.
        if (!tcp.write(data)) {
          ws.pause();
          tcp.once('drain', () => ws.resume());
        }
      });
      ws.on('close', () => tcp.end());
    });
    server.on('listening', () => {
      wss.push(server);
      reply(m.id, { port: (server.address() as net.AddressInfo).port });
    });
  },
  /**
   * Answers once the connection from remotePort has ended, with its byte count (and its stamps),
   * then forgets it. Each measured connection is read with this once, at its end.
   */
  ended: (m) => {
    const l = listener(m);
    const remotePort = m['remotePort'] as number;
    const c = connOf(l, remotePort);
    c.waiters.push({ bytes: Number.MAX_SAFE_INTEGER, id: m.id, forget: true });
    settle(c);
    forgetIfReported(l, remotePort, c);
  },
  /** Starts recording [time, cumulative bytes] of every read on one connection. */
  stamps: (m) => {
    const c = connOf(listener(m), m['remotePort'] as number);
    c.stamps = [];
    reply(m.id);
  },
  /** Starts hashing what one connection receives (ask before any byte can arrive); "ended" then reports the SHA-256. */
  hash: (m) => {
    const c = connOf(listener(m), m['remotePort'] as number);
    c.hash = createHash('sha256');
    reply(m.id);
  },
  connStats: (m) => {
    const c = connOf(listener(m), m['remotePort'] as number);
    reply(m.id, { bytes: c.bytes, ended: c.ended });
  },
  listenerStats: (m) => {
    const l = listener(m);
    reply(m.id, { accepted: l.accepted, open: l.sockets.size, bytes: l.bytes, lowatFailed: l.lowatFailed });
  },
  /** A holder starts reading (and counting) every connection, present and future. */
  release: (m) => {
    const l = listener(m);
    if (l.held) {
      l.held = false;
      for (const sock of l.sockets) read(l, sock, connOf(l, sock.remotePort ?? 0));
    }
    reply(m.id);
  },
  closeListener: (m) => {
    const l = listener(m);
    listeners.delete(m['port'] as number);
    for (const s of l.sockets) s.destroy();
    l.server.close(() => reply(m.id));
  },
  udpBind: (m) => {
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: (m['rcvbuf'] as number | undefined) ?? 4 * 1024 * 1024 });
    const u = { sock, count: 0, bytes: 0, first: 0, last: 0, every: (m['every'] as number | undefined) ?? 128 };
    sock.on('message', (msg) => {
      const t = now();
      if (u.count === 0) u.first = t;
      u.last = t;
      u.count++;
      u.bytes += msg.length;
      if (u.count % u.every === 0) process.send!({ event: 'udp', port, count: u.count });
    });
    let port = 0;
    sock.bind(0, '127.0.0.1', () => {
      port = sock.address().port;
      udps.set(port, u);
      reply(m.id, { port, rcvbuf: sock.getRecvBufferSize() });
    });
  },
  udpStats: (m) => {
    const u = udps.get(m['port'] as number);
    if (!u) throw new Error('no such UDP receiver');
    reply(m.id, { count: u.count, bytes: u.bytes, first: u.first, last: u.last });
  },
  udpClose: (m) => {
    const u = udps.get(m['port'] as number);
    udps.delete(m['port'] as number);
    if (u) u.sock.close(() => reply(m.id));
    else reply(m.id);
  },
  wsEcho: (m) => {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary })));
    server.on('listening', () => {
      wss.push(server);
      reply(m.id, { port: (server.address() as net.AddressInfo).port });
    });
  },
  exit: () => {
    for (const l of listeners.values()) for (const s of l.sockets) s.destroy();
    process.exit(0);
  },
};

process.on('message', (m: Msg) => {
  const h = handlers[m.cmd];
  try {
    if (!h) throw new Error(`unknown command ${m.cmd}`);
    h(m);
  } catch (err) {
    reply(m.id, { error: (err as Error).message });
  }
});
// The benchmark went away: so does its peer.
process.on('disconnect', () => process.exit(0));
