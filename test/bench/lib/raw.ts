/** The raw baselines: plain node:net and node:dgram from the benchmark process, with backpressure. */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      sock.off('error', reject);
      resolve(sock);
    });
    sock.once('error', reject);
  });
}

/** count writes of buf, each waiting for 'drain' whenever write() asks for it; resolves after the last write's callback. */
export function writeAll(sock: net.Socket, buf: Uint8Array, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let i = 0;
    sock.once('error', reject);
    const step = (): void => {
      while (i < count) {
        i++;
        const last = i === count;
        const ok = sock.write(buf, last ? (err) => (err ? reject(err) : resolve()) : undefined);
        if (last) return;
        if (!ok) {
          sock.once('drain', step);
          return;
        }
      }
      if (count === 0) resolve();
    };
    step();
  });
}

export function endSocket(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    sock.once('close', () => resolve());
    sock.end();
  });
}

/** A connected node:dgram socket. */
export function rawUdp(port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.once('error', reject);
    sock.connect(port, '127.0.0.1', () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

/** count datagrams, at most window sends awaiting their callback, and only while gate() allows. */
export class DgramPipeline {
  posted = 0;
  completed = 0;
  private inflight = 0;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  private failed = false;

  constructor(
    private readonly sock: dgram.Socket,
    private readonly buf: Uint8Array,
    private readonly count: number,
    private readonly window: number,
    private readonly gate: () => boolean,
  ) {
    this.done = new Promise<void>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) {
      this.failed = true;
      this.reject(err);
      return;
    }
    this.inflight--;
    this.completed++;
    if (this.completed === this.count) this.resolve();
    else this.pump();
  };

  pump(): void {
    while (!this.failed && this.inflight < this.window && this.posted < this.count && this.gate()) {
      this.inflight++;
      this.posted++;
      this.sock.send(this.buf, this.onSent);
    }
  }

  run(): Promise<void> {
    this.pump();
    return this.done;
  }
}
