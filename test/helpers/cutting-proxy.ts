/**
 * A TCP proxy between the SDK and the daemon that cuts connections on command: at once, after a
 * number of bytes in one direction (in the middle of a WebSocket frame), or after a number of
 * whole frames (between frames); and it can refuse new connections for a while, as a network
 * that is down, so that reconnections fail too. It reads the WebSocket framing only to know where
 * frames end; bytes pass unchanged.
 */
import * as net from 'node:net';
import type { Test } from 'tap';

/** up: from the client to the daemon; down: from the daemon to the client. */
export type Direction = 'up' | 'down';

/** Where a cut falls in one direction, counted from the moment it is armed. */
export type CutPoint = { bytes: number } | { frames: number };

/** Finds where WebSocket frames end in a byte stream that starts with an HTTP head. */
class FrameTracker {
  private head = true;
  private headTail = '';
  /** Bytes still to skip in the current frame (header parsed), or -1 when reading a header. */
  private remaining = -1;
  private header: number[] = [];

  /** Offsets in chunk just after each frame that ends within it. */
  ends(chunk: Buffer): number[] {
    const out: number[] = [];
    let i = 0;
    if (this.head) {
      const text = this.headTail + chunk.toString('latin1');
      const at = text.indexOf('\r\n\r\n');
      if (at < 0) {
        this.headTail = text.slice(-3);
        return out;
      }
      this.head = false;
      i = at + 4 - this.headTail.length;
      out.push(i); // The end of the HTTP head is a boundary too.
    }
    while (i < chunk.length) {
      if (this.remaining >= 0) {
        const take = Math.min(this.remaining, chunk.length - i);
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) {
          this.remaining = -1;
          out.push(i);
        }
        continue;
      }
      this.header.push(chunk[i++]!);
      const need = headerLength(this.header);
      if (need !== null && this.header.length === need) {
        this.remaining = payloadLength(this.header);
        this.header = [];
        if (this.remaining === 0) {
          this.remaining = -1;
          out.push(i);
        }
      }
    }
    return out;
  }
}

function headerLength(h: number[]): number | null {
  if (h.length < 2) return null;
  const masked = (h[1]! & 0x80) !== 0;
  const len7 = h[1]! & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
}

function payloadLength(h: number[]): number {
  const len7 = h[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (h[2]! << 8) | h[3]!;
  let n = 0;
  for (let k = 2; k < 10; k++) n = n * 256 + h[k]!;
  return n;
}

interface Armed {
  point: CutPoint;
  /** Bytes or frames passed since arming. */
  passed: number;
  done: () => void;
}

class Link {
  readonly trackers = { up: new FrameTracker(), down: new FrameTracker() };
  readonly armed: { up: Armed | null; down: Armed | null } = { up: null, down: null };
  closed = false;

  constructor(
    readonly client: net.Socket,
    readonly daemon: net.Socket,
    private readonly onClosed: () => void,
  ) {
    client.on('data', (b: Buffer) => this.pass('up', b));
    daemon.on('data', (b: Buffer) => this.pass('down', b));
    for (const s of [client, daemon]) {
      s.on('error', () => this.cut());
      s.on('close', () => this.cut());
    }
  }

  private pass(dir: Direction, chunk: Buffer): void {
    if (this.closed) return;
    const to = dir === 'up' ? this.daemon : this.client;
    const ends = this.trackers[dir].ends(chunk);
    const a = this.armed[dir];
    if (a === null) {
      to.write(chunk);
      return;
    }
    let at: number | null = null;
    if ('bytes' in a.point) {
      const left = a.point.bytes - a.passed;
      if (left <= chunk.length) at = left;
      else a.passed += chunk.length;
    } else {
      const left = a.point.frames - a.passed;
      if (left <= 0) at = 0;
      else if (left <= ends.length) at = ends[left - 1]!;
      else a.passed += ends.length;
    }
    if (at === null) {
      to.write(chunk);
      return;
    }
    const done = a.done;
    to.write(chunk.subarray(0, at), () => this.cut());
    // Nothing more passes either way; the write above is the last.
    this.closed = true;
    this.client.pause();
    this.daemon.pause();
    setTimeout(() => this.cut(), 20);
    done();
  }

  /** Drops both connections without a goodbye (RST where the kernel allows, else FIN). */
  cut(): void {
    this.closed = true;
    for (const s of [this.client, this.daemon]) {
      if (!s.destroyed) s.resetAndDestroy();
    }
    this.onClosed();
  }
}

export interface CuttingProxy {
  /** The WebSocket URL to give the SDK: the daemon's, through the proxy. */
  readonly url: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Cuts every open connection now. */
  cutNow(): void;
  /** Silently drops everything on the open connections from now on, closing nothing (a partition). */
  blackhole(): void;
  /** Arms a cut of the current connection in one direction; resolves when it happened. */
  cutAt(dir: Direction, point: CutPoint): Promise<void>;
  /** While down, new connections are accepted and dropped at once (or after bytes: mid-handshake). */
  setDown(down: boolean, afterBytes?: number): void;
  /** Resolves when a connection is open (the SDK reconnected). */
  nextConnection(): Promise<void>;
  /** New connections go to this daemon from now on (a load balancer choosing another one). */
  retarget(daemonUrl: string): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port in front of the daemon at daemonUrl. */
export async function cuttingProxy(t: Test, daemonUrl: string): Promise<CuttingProxy> {
  let target = new URL(daemonUrl);
  const links = new Set<Link>();
  let down = false;
  let downAfter = 0;
  let count = 0;
  let waiters: Array<() => void> = [];
  const server = net.createServer((client) => {
    count++;
    client.setNoDelay(true);
    if (down) {
      if (downAfter === 0) {
        client.resetAndDestroy();
        return;
      }
    }
    const daemon = net.connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port) });
    daemon.setNoDelay(true);
    const link = new Link(client, daemon, () => links.delete(link));
    links.add(link);
    if (down) void linkCut(link, 'down', { bytes: downAfter });
    daemon.once('connect', () => {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    });
  });
  function linkCut(link: Link, dir: Direction, point: CutPoint): Promise<void> {
    return new Promise((resolve) => {
      link.armed[dir] = { point, passed: 0, done: resolve };
    });
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const proxy: CuttingProxy = {
    url: `ws://127.0.0.1:${port}${target.pathname}`,
    port,
    get connections() {
      return count;
    },
    cutNow() {
      for (const l of [...links]) l.cut();
    },
    blackhole() {
      for (const l of links) l.closed = true;
    },
    cutAt(dir, point) {
      const open = [...links].filter((l) => !l.closed);
      const link = open[open.length - 1];
      if (!link) return Promise.resolve();
      return linkCut(link, dir, point);
    },
    setDown(on, afterBytes = 0) {
      down = on;
      downAfter = afterBytes;
    },
    nextConnection() {
      return new Promise((r) => waiters.push(r));
    },
    retarget(daemonUrl) {
      target = new URL(daemonUrl);
    },
    async close() {
      for (const l of [...links]) l.cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  t.teardown(() => proxy.close());
  return proxy;
}
