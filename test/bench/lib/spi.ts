/** SDK helpers shared by the scenarios: sockets to the peers and pipelined overlapped sends. */
import * as S from '@spiwire/client';
import type { Api } from './context.js';

export async function tcpSocket(spi: S.SpiSession, port: number, opts: { overlapped?: boolean; sndBuf?: number } = {}): Promise<{ s: number; localPort: number }> {
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, opts.overlapped === false ? 0 : S.WSA_FLAG_OVERLAPPED, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket failed: ${S.wsaErrorName(e.value)}`);
  if (opts.sndBuf !== undefined) {
    const v = new Uint8Array(4);
    new DataView(v.buffer).setUint32(0, opts.sndBuf, true);
    if ((await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, v, 4, e)) !== 0) throw new Error(`SO_SNDBUF failed: ${S.wsaErrorName(e.value)}`);
  }
  if ((await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port }, 16, null, null, null, null, e)) !== 0) {
    throw new Error(`WSPConnect failed: ${S.wsaErrorName(e.value)}`);
  }
  return { s, localPort: await localPort(spi, s) };
}

export async function udpSocket(spi: S.SpiSession, port: number): Promise<number> {
  const e = S.out(0);
  const s = await spi.WSPSocket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  if (s === S.INVALID_SOCKET) throw new Error(`WSPSocket failed: ${S.wsaErrorName(e.value)}`);
  if ((await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port }, 16, null, null, null, null, e)) !== 0) {
    throw new Error(`WSPConnect (UDP) failed: ${S.wsaErrorName(e.value)}`);
  }
  return s;
}

export async function localPort(spi: S.SpiSession, s: number): Promise<number> {
  const e = S.out(0);
  const name: S.SockAddr = { family: 0, address: '', port: 0 };
  if ((await spi.WSPGetSockName(s, name, S.out(16), e)) !== 0) throw new Error(`WSPGetSockName failed: ${S.wsaErrorName(e.value)}`);
  return name.port;
}

export async function closeSocket(spi: S.SpiSession, s: number): Promise<void> {
  const e = S.out(0);
  if ((await spi.WSPCloseSocket(s, e)) !== 0) throw new Error(`WSPCloseSocket failed: ${S.wsaErrorName(e.value)}`);
}

export type Completed = (error: number, bytes: number) => void;

/**
 * Starts one overlapped WSPSend of buf on s. With api 'spi' it is the public call: a
 * WSAOVERLAPPED and a completion routine (run by the session's automatic APC mode); with 'hook'
 * the SDK's internal startOperation, whose completion calls back without the APC machinery.
 * Resolves with the call's immediate outcome: 'now' (completed at once), 'pending', or a WSA code.
 */
export function postSend(spi: S.SpiSession, api: Api, s: number, wsabufs: S.WSABUF[], onDone: Completed): Promise<'now' | 'pending' | number> {
  if (api === 'hook') {
    const buffers = wsabufs.map((b) => b.buf.subarray(0, b.len));
    return spi.startOperation('WSPSend', { s, buffers, flags: 0 }, (error, bytes) => onDone(error, bytes)).then((r) => (r.ret === 0 ? 'now' : r.errno === S.WSA_IO_PENDING ? 'pending' : r.errno));
  }
  const e = S.out(0);
  return spi.WSPSend(s, wsabufs, wsabufs.length, null, 0, new S.WSAOVERLAPPED(), (err, bytes) => onDone(err, bytes), null, e).then((ret) => (ret === 0 ? 'now' : e.value === S.WSA_IO_PENDING ? 'pending' : e.value));
}

/**
 * count overlapped sends of buf on s, at most window in flight (posted, not completed), and,
 * when gate is given, only while gate() allows (call pump() when it may allow again).
 * done resolves when every send has completed; a failure of any kind rejects it.
 */
export class SendPipeline {
  posted = 0;
  completed = 0;
  bytes = 0;
  private inflight = 0;
  private readonly wsabufs: S.WSABUF[];
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;
  private failed = false;

  constructor(
    private readonly spi: S.SpiSession,
    private readonly api: Api,
    private readonly s: number,
    buf: Uint8Array,
    private readonly count: number,
    private readonly window: number,
    private readonly gate: (() => boolean) | null = null,
  ) {
    this.wsabufs = [S.wsabuf(buf)];
    this.done = new Promise<void>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    if (count === 0) this.resolve();
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.reject(e);
  }

  private readonly onDone: Completed = (error, bytes) => {
    if (error !== 0) return this.fail(new Error(`a send completed with ${S.wsaErrorName(error)}`));
    this.inflight--;
    this.completed++;
    this.bytes += bytes;
    if (this.completed === this.count) this.resolve();
    else this.pump();
  };

  pump(): void {
    while (!this.failed && this.inflight < this.window && this.posted < this.count && (this.gate === null || this.gate())) {
      this.inflight++;
      this.posted++;
      postSend(this.spi, this.api, this.s, this.wsabufs, this.onDone).then(
        (r) => {
          if (r !== 'now' && r !== 'pending') this.fail(new Error(`WSPSend failed at once with ${S.wsaErrorName(r)}`));
        },
        (err: Error) => this.fail(err),
      );
    }
  }

  /** Posts the sends; fails when no send has completed for stallMs (a lost completion must not hang the run). */
  run(stallMs = 30_000): Promise<void> {
    let seen = -1;
    const watchdog = setInterval(() => {
      if (this.completed === seen) this.fail(new Error(`no send completed for ${stallMs} ms (${this.completed} of ${this.count} completed, ${this.posted} posted)`));
      seen = this.completed;
    }, stallMs);
    this.pump();
    return this.done.finally(() => clearInterval(watchdog));
  }
}
