/**
 * Scenario 4, faults: things that break from outside while calls are in flight. A neighbour
 * session streams checked bytes to its own peer throughout (beside the bystander), and must lose
 * none and see no error while:
 *
 *  - a client is killed mid-call (its TCP connection dropped with FIN or with RST) while it has a
 *    blocking WSPRecv, a blocking WSPAccept, overlapped receives and sends to a slow peer pending:
 *    its session must go away, with nothing left behind (/healthz), and no one else notices;
 *  - a peer resets its connection (RST) under blocking and overlapped receives and sends: every
 *    waiting call must be answered, with documented codes;
 *  - a WebSocket connection drops in the middle of a frame (the frame header only, part of the
 *    payload of a 1 MiB or 16 MiB frame, the first fragment of a fragmented message);
 *  - the daemon gets SIGTERM with overlapped and blocking sends in flight to a peer that reads
 *    slowly but reads everything in the end. This runs on a second daemon of its own, since it
 *    ends it: every byte that daemon reported as sent (WSPSend ret 0 with bytesSent, completions
 *    with error 0) must reach the peer, and the daemon must exit with code 0.
 */
import * as P from '@spiwire/proto';
import { Arena, type Options, type Row } from '../lib/arena.js';
import { DaemonProc } from '../lib/daemon.js';
import { TcpPeer, type PeerConn } from '../lib/peers.js';
import * as S from '../lib/spi.js';
import type { Msg } from '../lib/replies.js';
import { Transfer } from '../lib/transfer.js';
import { MiB, round1, sleep, waitUntil, within } from '../lib/util.js';
import type { Wire } from '../lib/wire.js';

const BUDGET = {
  quick: { kills: 4, resets: 4, drops: 4, termSessions: 3, termSendsPerSession: 24, termChunk: 256 * 1024 },
  full: { kills: 30, resets: 30, drops: 24, termSessions: 8, termSendsPerSession: 64, termChunk: 256 * 1024 },
};
type Budget = typeof BUDGET.quick;

/** A slow reader: 64 KiB every 20 ms per connection (about 3 MiB/s), all of it in the end. */
const SLOW = { kind: 'slow' as const, bytesPerTick: 64 * 1024, tickMs: 20 };

/** A session with a socket connected to peer, and the peer's end of it. */
async function connected(w: Wire, peer: TcpPeer, overlapped = true): Promise<{ s: number; conn: PeerConn } | null> {
  const s = await S.socket(w, P.SOCK_STREAM, { overlapped });
  if (s === null || !(await S.connect(w, s, S.v4(peer.port)))) return null;
  const port = await S.localPort(w, s);
  const conn = port === null ? null : await peer.from(port);
  return conn ? { s, conn } : null;
}

/** The neighbour: 64 KiB blocking sends every 25 ms to a sink until stop(); every reported byte must arrive intact. */
class Neighbour {
  private running = true;
  private loop: Promise<void> = Promise.resolve();
  errors: string[] = [];

  private constructor(readonly t: Transfer) {}

  static async start(a: Arena, sink: TcpPeer, seed: number): Promise<Neighbour | null> {
    const w = await a.wire();
    const c = await connected(w, sink, false);
    if (!c) return null;
    const n = new Neighbour(new Transfer(w, c.s, c.conn, seed));
    n.loop = n.run();
    return n;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const m = await this.t.send(64 * 1024, false, 10000);
      if (!m?.result || m.result['ret'] !== 0) {
        this.errors.push(m ? JSON.stringify(m.result ?? m.error) : this.t.w.isOpen ? 'no reply within 10 s' : `connection closed (${this.t.w.closeInfo?.code})`);
        if (!this.t.w.isOpen) return;
      }
      await sleep(25);
    }
  }

  async stop(a: Arena): Promise<void> {
    this.running = false;
    await this.loop;
    const v = await this.t.verdict(5000);
    a.extra['neighbour'] = `${round1(v.reported / MiB)} MiB reported sent, ${round1(v.received / MiB)} MiB received`;
    if (v.lost) {
      a.bytesLost += v.lost;
      a.find('bytes-lost', `the neighbour session lost ${v.lost} of ${v.reported} bytes reported sent${v.mismatchAt !== null ? ` (its peer's bytes differ from offset ${v.mismatchAt})` : ''}`);
    }
    if (this.errors.length) {
      a.disturbed++;
      a.find('disturbed', `the neighbour session was disturbed: ${this.errors.slice(0, 3).join('; ')}`);
    }
    await this.t.w.close();
  }
}

/** Waits until /healthz shows `want` sessions; a session that outlives its connection is a defect. */
async function sessionsBackTo(a: Arena, want: number, what: string): Promise<void> {
  const ok = await waitUntil(async () => (await a.daemon.sessions()) === want, 5000);
  if (!ok) a.find('other', `${what}: /healthz still shows ${String(await a.daemon.sessions())} sessions 5 s later, expected ${want}`);
}

async function killedClients(a: Arena, b: Budget, baseline: number): Promise<void> {
  const slow = await TcpPeer.start({ mode: SLOW });
  const quiet = await TcpPeer.start();
  for (let i = 0; i < b.kills; i++) {
    const w = await a.wire();
    const rx = await connected(w, quiet, false);
    const tx = await connected(w, slow);
    const lis = await S.listener(w, { overlapped: true });
    if (!rx || !tx || !lis) {
      a.find('other', 'killed client: could not set up its sockets');
      await w.close();
      continue;
    }
    // Calls in flight: blocking receive and accept, an overlapped receive, overlapped and blocking sends that wait for the slow peer.
    void w.request('WSPRecv', { s: rx.s, lengths: [100], flags: 0 }, { timeoutMs: 0 });
    void w.request('WSPAccept', { s: lis.s }, { timeoutMs: 0 });
    await w.request('WSPRecv', { s: tx.s, lengths: [100], flags: 0, overlapped: { op: 1000, thread: 1 } });
    // Enough to be in flight, not so much that what the killed client leaves behind crowds others out.
    const t = new Transfer(w, tx.s, tx.conn, 100 + i);
    for (let k = 0; k < 4; k++) await t.send(256 * 1024, true);
    void t.send(256 * 1024, false, 0);
    await sleep(50);
    if (i % 2) w.reset();
    else w.terminate();
    await w.closed;
    a.release(w);
    if (!(await a.checkAlive('a client was killed mid-call'))) continue;
    await sessionsBackTo(a, baseline, `a client killed mid-call (${i % 2 ? 'RST' : 'FIN'})`);
  }
  a.note(`killed ${b.kills} clients mid-call (FIN and RST): their sessions went away`);
  slow.drainAll();
}

async function peerResets(a: Arena, b: Budget): Promise<void> {
  const silent = await TcpPeer.start({ mode: { kind: 'never' } });
  const codes = new Map<string, number>();
  const add = (k: string): void => void codes.set(k, (codes.get(k) ?? 0) + 1);
  for (let i = 0; i < b.resets; i++) {
    const w = await a.wire();
    const c = await connected(w, silent);
    if (!c) {
      a.find('other', 'peer reset: could not connect');
      await w.close();
      continue;
    }
    const completions: Msg[] = [];
    w.onNotification = (m) => m.method === 'spiwire.completion' && completions.push(m);
    // A small send buffer (the kernel's too): sends wait after a few hundred KiB, not megabytes.
    await S.spi(w, 'WSPSetSockOpt', { s: c.s, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: S.dword(16 * 1024), optlen: 4 });
    // Waiting calls of every kind on the connection, then the peer resets it.
    const waiting: Array<Promise<Msg | null>> = [
      w.request('WSPRecv', { s: c.s, lengths: [100], flags: 0 }, { timeoutMs: 0, label: 'blocking WSPRecv under a peer reset' }),
      w.request('WSPSend', { s: c.s, buffers: [Buffer.alloc(MiB)], flags: 0 }, { timeoutMs: 0, label: 'blocking WSPSend under a peer reset' }),
    ];
    const started = await Promise.all([
      w.request('WSPRecv', { s: c.s, lengths: [100], flags: 0, overlapped: { op: 1, thread: 1 } }),
      ...Array.from({ length: 4 }, (_, k) => w.request('WSPSend', { s: c.s, buffers: [Buffer.alloc(256 * 1024)], flags: 0, overlapped: { op: 10 + k, thread: 1 } })),
    ]);
    const pendingOps = started.filter((m) => m?.result?.['errno'] === P.WSA_IO_PENDING).length;
    await sleep(50);
    c.conn.socket.resetAndDestroy();
    const answered = await within(Promise.all(waiting), 5000, null);
    await waitUntil(() => completions.length >= pendingOps, 5000);
    if (!answered) a.find('other', 'after a peer reset, blocking calls on the connection were not answered within 5 s');
    else for (const m of answered) add(m?.result ? (m.result['errno'] === 0 ? 'ok' : (P.wsaError(m.result['errno'] as number)?.name ?? String(m.result['errno']))) : 'protocol error');
    if (completions.length < pendingOps) a.find('other', `after a peer reset, ${pendingOps - completions.length} of ${pendingOps} pending overlapped operations never completed`);
    for (const m of completions) add(`completion ${P.wsaError(m.params?.['error'] as number)?.name ?? String(m.params?.['error'])}`);
    const after = await S.spi(w, 'WSPSend', { s: c.s, buffers: [Buffer.from('after the reset')], flags: 0 });
    add(`send after ${P.wsaError(after.errno)?.name ?? (after.errno === 0 ? 'ok' : String(after.errno))}`);
    await w.close();
    if (!(await a.checkAlive('a peer reset its connection'))) continue;
  }
  a.extra['peerResets'] = [...codes].map(([k, v]) => `${v} ${k}`).join(', ');
}

/** One client-to-server WebSocket frame header (masked), announcing len payload bytes. */
function wsHeader(opcode: number, fin: boolean, len: number, mask: Buffer): Buffer {
  const b0 = (fin ? 0x80 : 0) | opcode;
  if (len < 126) return Buffer.concat([Buffer.from([b0, 0x80 | len]), mask]);
  if (len < 65536) {
    const h = Buffer.from([b0, 0x80 | 126, 0, 0]);
    h.writeUInt16BE(len, 2);
    return Buffer.concat([h, mask]);
  }
  const h = Buffer.alloc(10);
  h[0] = b0;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(len), 2);
  return Buffer.concat([h, mask]);
}

function masked(payload: Buffer, mask: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) out[i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

async function droppedMidFrame(a: Arena, b: Budget, baseline: number): Promise<void> {
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const frame = Buffer.from(P.encodeFrame({ jsonrpc: '2.0', id: 'x', method: 'WSPGetSockName', params: { s: 1, namelen: 16 } }));
  const variants: Array<[string, () => Buffer]> = [
    ['the first byte of a frame header', () => Buffer.from([0x82])],
    ['a frame header without its payload', () => wsHeader(2, true, frame.length, mask)],
    ['half of a small binary frame', () => { const f = Buffer.concat([wsHeader(2, true, frame.length, mask), masked(frame, mask)]); return f.subarray(0, f.length >> 1); }],
    ['64 KiB of a 1 MiB frame', () => Buffer.concat([wsHeader(2, true, MiB, mask), masked(Buffer.alloc(64 * 1024), mask)])],
    ['1 MiB of a 16 MiB frame', () => Buffer.concat([wsHeader(2, true, 16 * MiB - 16, mask), masked(Buffer.alloc(MiB), mask)])],
    ['the first fragment of a fragmented message', () => Buffer.concat([wsHeader(2, false, frame.length, mask), masked(frame, mask)])],
  ];
  for (let i = 0; i < b.drops; i++) {
    const [what, make] = variants[i % variants.length]!;
    const w = await a.wire();
    w.writeRawTcp(make());
    await sleep(30);
    if (i % 2) w.reset();
    else w.terminate();
    await w.closed;
    a.release(w);
    a.messages++;
    if (!(await a.checkAlive(`a connection dropped after ${what}`))) continue;
    await sessionsBackTo(a, baseline, `a connection dropped after ${what}`);
  }
  a.note(`dropped ${b.drops} WebSocket connections mid-frame: their sessions went away`);
}

/**
 * SIGTERM with sends in flight, on a daemon of its own. Sessions send a checked stream to a slow
 * peer, overlapped and blocking, without waiting for the blocking ones; then the daemon is told
 * to stop. Every byte it reported as sent must reach the peer.
 */
async function sigterm(a: Arena, b: Budget): Promise<void> {
  const d = a.adopt(await DaemonProc.start());
  const peer = await TcpPeer.start({ mode: SLOW, keep: true });
  const transfers: Transfer[] = [];
  const closes: Array<Promise<{ code: number }>> = [];
  for (let i = 0; i < b.termSessions; i++) {
    const w = await a.wire(d.url);
    const c = await connected(w, peer);
    if (!c) continue;
    transfers.push(new Transfer(w, c.s, c.conn, 7000 + i));
    closes.push(w.closed);
  }
  if (transfers.length < b.termSessions) a.find('other', `SIGTERM: only ${transfers.length} of ${b.termSessions} sessions could connect to the slow peer`);
  // Keep the send queues full: overlapped sends are answered at once (pending), blocking ones when their bytes are taken.
  const inFlight: Array<Promise<Msg | null>> = [];
  for (let k = 0; k < b.termSendsPerSession; k++) {
    for (const t of transfers) {
      const p = t.send(b.termChunk, k % 3 !== 2, 60000);
      if (k % 3 === 2) inFlight.push(p);
      else await p;
    }
  }
  await sleep(200);
  const reportedBefore = transfers.reduce((n, t) => n + t.reported, 0);
  const rss = d.rssMiB();
  d.stopRequested = true;
  d.signal('SIGTERM');
  const exit = await within(d.exited, 60000, null);
  if (!exit) {
    a.find('other', 'SIGTERM: the daemon had not exited 60 s later');
    d.kill();
  } else if (exit.code !== 0) {
    a.crashes++;
    a.find('crash', `SIGTERM with sends in flight: the daemon exited with ${exit.code ?? exit.signal}; stderr: ${d.stderrTail().split('\n').slice(0, 6).join(' | ')}`);
  }
  await within(Promise.all(inFlight), 5000, null);
  const closeCodes = await within(Promise.all(closes), 5000, null);
  let lost = 0;
  let reported = 0;
  let received = 0;
  let partial = 0;
  for (const t of transfers) {
    const v = await t.verdict(60000);
    lost += v.lost;
    reported += v.reported;
    received += v.received;
    partial += v.partial;
    if (v.lost) a.find('bytes-lost', `SIGTERM with sends in flight: a session's peer is missing ${v.lost} of the ${v.reported} bytes the daemon reported sent (received ${v.received}${v.mismatchAt !== null ? `, differing from offset ${v.mismatchAt}` : ''}; sends: ${t.summary()})`);
  }
  a.bytesLost += lost;
  a.extra['sigterm'] = `${transfers.length} sessions, ${round1(reported / MiB)} MiB reported sent (${round1(reportedBefore / MiB)} MiB before the signal, ${round1(partial / MiB)} MiB more taken by cancelled sends), ${round1(received / MiB)} MiB received; daemon RSS ${round1(rss ?? 0)} MiB at the signal, exit ${exit ? (exit.code ?? exit.signal) : 'none'}; close codes ${closeCodes ? [...new Set(closeCodes.map((c) => c.code))].join(',') : 'not all closed'}`;
  for (const t of transfers) a.release(t.w);
  await peer.close();
}

export function faults(opts: Options): Promise<Row> {
  return Arena.run('faults', 'Faults', opts, [], async (a) => {
    const b = opts.quick ? BUDGET.quick : BUDGET.full;
    const sink = await TcpPeer.start({ keep: true });
    const neighbour = await Neighbour.start(a, sink, 4242);
    if (!neighbour) throw new Error('the neighbour session could not connect to its peer');
    // The bystander and the neighbour.
    const baseline = (await a.daemon.sessions()) ?? 2;
    const parts: Array<[string, () => Promise<unknown>]> = [
      ['killed clients', () => killedClients(a, b, baseline)],
      ['peer resets', () => peerResets(a, b)],
      ['dropped mid-frame', () => droppedMidFrame(a, b, baseline)],
    ];
    for (const [name, run] of parts) {
      const t0 = Date.now();
      await run();
      opts.log(`[faults] ${name}: ${a.elapsed(t0)} to ${a.elapsed()}`);
    }
    await neighbour.stop(a);
    const t0 = Date.now();
    await sigterm(a, b);
    opts.log(`[faults] SIGTERM with sends in flight: ${a.elapsed(t0)} to ${a.elapsed()}`);
  });
}
