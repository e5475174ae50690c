/**
 * The promise API: a small socket object over the same SPI machinery, for JavaScript users who
 * want results rather than out parameters. Every send is an overlapped WSPSend; send() resolves
 * with the byte count when the operation completes, and completions() yields every completion
 * of the socket in the order they arrive.
 */
import * as P from '@spiwire/proto';
import type { SpiSession } from './spi-session.js';
import { out, type SockAddr } from './types.js';

/** A Winsock failure as an exception: code is the WSA error (for example 10054). */
export class WinsockError extends Error {
  constructor(
    readonly code: number,
    readonly call: string,
  ) {
    super(`${call} failed with ${P.wsaErrorName(code)}`);
    this.name = 'WinsockError';
  }
}

export interface Completion {
  /** 'send' or 'recv'. */
  kind: 'send' | 'recv';
  /** The WSA code: 0 on success, WSA_OPERATION_ABORTED when cancelled. */
  error: number;
  bytes: number;
}

export interface SocketOptions {
  family?: 'ipv4' | 'ipv6';
  type?: 'tcp' | 'udp';
}

export class Socket {
  private readonly queue: Completion[] = [];
  private readonly readers: Array<(c: IteratorResult<Completion>) => void> = [];
  private closed = false;

  private constructor(
    readonly spi: SpiSession,
    /** The SOCKET handle, for mixing with the SPI functions. */
    readonly handle: number,
    readonly af: number,
  ) {}

  /** Creates an overlapped socket (WSA_FLAG_OVERLAPPED). */
  static async open(spi: SpiSession, opts: SocketOptions = {}): Promise<Socket> {
    const af = opts.family === 'ipv6' ? P.AF_INET6 : P.AF_INET;
    const udp = opts.type === 'udp';
    const e = out(0);
    const s = await spi.WSPSocket(af, udp ? P.SOCK_DGRAM : P.SOCK_STREAM, udp ? P.IPPROTO_UDP : P.IPPROTO_TCP, null, 0, P.WSA_FLAG_OVERLAPPED, e);
    if (s === P.INVALID_SOCKET) throw new WinsockError(e.value, 'WSPSocket');
    return new Socket(spi, s, af);
  }

  private addr(address: string, port: number): SockAddr {
    return { family: this.af, address, port };
  }

  private namelen(): number {
    return P.sockaddrSize(this.af);
  }

  async bind(address: string, port = 0): Promise<void> {
    const e = out(0);
    if ((await this.spi.WSPBind(this.handle, this.addr(address, port), this.namelen(), e)) !== 0) throw new WinsockError(e.value, 'WSPBind');
  }

  async connect(address: string, port: number): Promise<void> {
    const e = out(0);
    if ((await this.spi.WSPConnect(this.handle, this.addr(address, port), this.namelen(), null, null, null, null, e)) !== 0) throw new WinsockError(e.value, 'WSPConnect');
  }

  /** The local address (after bind, connect or a first sendTo). */
  async localAddress(): Promise<SockAddr> {
    const e = out(0);
    const name: SockAddr = { family: 0, address: '', port: 0 };
    if ((await this.spi.WSPGetSockName(this.handle, name, out(this.namelen()), e)) !== 0) throw new WinsockError(e.value, 'WSPGetSockName');
    return name;
  }

  /** Sends the buffers, gathered, as one overlapped WSPSend; resolves with the bytes sent at completion. */
  send(buffers: Uint8Array | readonly Uint8Array[]): Promise<number> {
    const list = buffers instanceof Uint8Array ? [buffers] : [...buffers];
    return this.start('send', 'WSPSend', { s: this.handle, buffers: list, flags: 0 });
  }

  /** Sends one datagram to address:port (UDP). */
  sendTo(buffers: Uint8Array | readonly Uint8Array[], address: string, port: number): Promise<number> {
    const list = buffers instanceof Uint8Array ? [buffers] : [...buffers];
    return this.start('send', 'WSPSendTo', { s: this.handle, buffers: list, flags: 0, to: this.addr(address, port), tolen: this.namelen() });
  }

  /** Receives up to maxBytes (one datagram on UDP); an empty result means the peer closed (TCP). */
  async recv(maxBytes: number): Promise<Uint8Array> {
    const target = new Uint8Array(maxBytes);
    const n = await this.start('recv', 'WSPRecv', { s: this.handle, lengths: [maxBytes], flags: 0 }, [target]);
    return target.subarray(0, n);
  }

  private async start(kind: 'send' | 'recv', method: 'WSPSend' | 'WSPSendTo' | 'WSPRecv', params: Record<string, unknown>, targets?: Uint8Array[]): Promise<number> {
    let completed!: (c: Completion) => void;
    const completion = new Promise<Completion>((r) => (completed = r));
    const r = await this.spi.startOperation(method, params, (error, bytes) => {
      const c = { kind, error, bytes };
      this.push(c);
      completed(c);
    }, targets);
    // Failed at once: there will be no completion.
    if (r.ret !== 0 && r.errno !== P.WSA_IO_PENDING) throw new WinsockError(r.errno, method);
    // Wait for the completion only after the call itself returned, so an immediate receive's bytes are in place.
    const c = await completion;
    if (c.error !== 0) throw new WinsockError(c.error, method);
    return c.bytes;
  }

  private push(c: Completion): void {
    const reader = this.readers.shift();
    if (reader) reader({ value: c, done: false });
    else this.queue.push(c);
  }

  /** Every completion of this socket's operations, in arrival order; ends when the socket is closed. */
  completions(): AsyncIterableIterator<Completion> {
    const it: AsyncIterableIterator<Completion> = {
      next: () => {
        const c = this.queue.shift();
        if (c) return Promise.resolve({ value: c, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.readers.push(resolve));
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** Closes the socket; pending operations reject with WSA_OPERATION_ABORTED. */
  async close(): Promise<void> {
    if (this.closed) return;
    const e = out(0);
    const r = await this.spi.WSPCloseSocket(this.handle, e);
    this.closed = true;
    for (const reader of this.readers.splice(0)) reader({ value: undefined, done: true });
    if (r !== 0) throw new WinsockError(e.value, 'WSPCloseSocket');
  }
}
