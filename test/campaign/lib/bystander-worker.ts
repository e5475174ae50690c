/**
 * The bystander, in a worker thread of its own so that the attacker's work in the main thread does
 * not delay it: one ordinary session that keeps making small calls (WSPGetSockOpt SO_SNDBUF on its
 * own socket, and 100-byte WSPSends to its own loopback peer) and times each. It counts a session
 * as disturbed when a call fails, takes more than 5 s, or the connection closes; then it opens a
 * new session and goes on. At the end it checks that its peer received every byte reported sent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as P from '@spiwire/proto';
import { TcpPeer, closeAllPeers, type PeerConn } from './peers.js';
import { Wire } from './wire.js';
import { sleep, waitUntil } from './util.js';

export interface BystanderReport {
  calls: number;
  latenciesMs: number[];
  sessions: number;
  disturbedSessions: number;
  events: string[];
  bytesSent: number;
  bytesLost: number;
  /** The five slowest calls: when (seconds after the start), which, how long. */
  slowest: Array<{ at: number; call: string; ms: number }>;
}

interface Live {
  wire: Wire;
  s: number;
  conn: PeerConn;
  sent: number;
  disturbed: boolean;
}

const CALL_TIMEOUT_MS = 5000;
const payload = Buffer.alloc(100, 0x62);
let url = (workerData as { url: string }).url;
const intervalMs = (workerData as { intervalMs: number }).intervalMs;
let stopping = false;
let live: Live | null = null;
const conns: Live[] = [];
const report: BystanderReport = { calls: 0, latenciesMs: [], sessions: 0, disturbedSessions: 0, events: [], bytesSent: 0, bytesLost: 0, slowest: [] };
const t0 = performance.now();

function event(what: string): void {
  if (report.events.length < 30) report.events.push(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`);
}

/** True right after a session was counted as disturbed: failing to open the next one is the same disturbance. */
let justDisturbed = false;

function disturbed(l: Live, what: string): void {
  event(what);
  justDisturbed = true;
  if (!l.disturbed) {
    l.disturbed = true;
    report.disturbedSessions++;
  }
  if (live === l) live = null;
  l.wire.terminate();
}

/** A new session with its socket connected to the peer, or why there is none. */
async function setUp(peer: TcpPeer): Promise<Live | string> {
  let wire: Wire;
  try {
    wire = await Wire.open(url);
  } catch (err) {
    return `could not open a session on ${url}: ${(err as Error).message}`;
  }
  report.sessions++;
  const r = await wire.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 }, { timeoutMs: CALL_TIMEOUT_MS });
  const s = r?.['ret'];
  const c = typeof s === 'number' && s > 0 ? await wire.call('WSPConnect', { s, name: { family: P.AF_INET, address: '127.0.0.1', port: peer.port }, namelen: 16 }, { timeoutMs: CALL_TIMEOUT_MS }) : null;
  // The peer's end of this very socket, found by port: an earlier attempt may have left a connection behind.
  const name = c?.['ret'] === 0 ? await wire.call('WSPGetSockName', { s, namelen: 16 }, { timeoutMs: CALL_TIMEOUT_MS }) : null;
  const port = (name?.['name'] as { port?: number } | undefined)?.port;
  const conn = port ? await peer.from(port, CALL_TIMEOUT_MS) : null;
  const l: Live = { wire, s: s as number, conn: conn!, sent: 0, disturbed: false };
  if (!conn) {
    wire.terminate();
    return `could not set up its socket (WSPSocket ${JSON.stringify(r)}, WSPConnect ${JSON.stringify(c)})`;
  }
  conns.push(l);
  void wire.closed.then((ci) => {
    if (!stopping && live === l) disturbed(l, `connection closed (${ci.code} ${ci.reason})`);
  });
  return l;
}

/** The longest call since the main thread opened a window (window-open), or null when none is open. */
let windowMaxMs: number | null = null;
/** performance.now() when the call in flight began, or null between calls. */
let callStartedAt: number | null = null;

async function run(): Promise<void> {
  const peer = await TcpPeer.start({ port: (workerData as { peerPort?: number }).peerPort ?? 0 });
  parentPort!.on('message', (m: { cmd: string; url?: string }) => {
    if (m.cmd === 'stop') stopping = true;
    if (m.cmd === 'window-open') windowMaxMs = 0;
    if (m.cmd === 'window-close') {
      // A call still waiting counts with its wait so far.
      const waiting = callStartedAt === null ? 0 : performance.now() - callStartedAt;
      parentPort!.postMessage({ type: 'window', maxMs: Math.max(windowMaxMs ?? 0, waiting) });
      windowMaxMs = null;
    }
    if (m.cmd === 'switch' && m.url) {
      url = m.url;
      if (live) {
        const l = live;
        live = null;
        void l.wire.close();
      }
    }
  });
  let n = 0;
  let failedSetups = 0;
  while (!stopping) {
    const started = performance.now();
    if (!live) {
      const l = await setUp(peer);
      if (typeof l === 'string') {
        // A streak of failed attempts is one disturbance.
        if (++failedSetups === 1 && !justDisturbed) {
          report.disturbedSessions++;
          event(l);
        }
        await sleep(200);
        continue;
      }
      live = l;
      failedSetups = 0;
      justDisturbed = false;
      if (report.sessions === 1) parentPort!.postMessage({ type: 'ready' });
    }
    const l = live;
    const send = n++ % 2 === 1;
    const t = performance.now();
    callStartedAt = t;
    const r = send
      ? await l.wire.call('WSPSend', { s: l.s, buffers: [payload], flags: 0 }, { timeoutMs: CALL_TIMEOUT_MS })
      : await l.wire.call('WSPGetSockOpt', { s: l.s, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optlen: 4 }, { timeoutMs: CALL_TIMEOUT_MS });
    const ms = performance.now() - t;
    callStartedAt = null;
    if (windowMaxMs !== null) windowMaxMs = Math.max(windowMaxMs, ms);
    if (live !== l) continue; // switched or already counted as disturbed meanwhile
    report.calls++;
    if (!r) {
      disturbed(l, `${send ? 'WSPSend' : 'WSPGetSockOpt'} got no answer within ${CALL_TIMEOUT_MS} ms${l.wire.closeInfo ? ` (closed ${l.wire.closeInfo.code})` : ''}`);
      continue;
    }
    if (r['ret'] !== 0 || r['errno'] !== 0) {
      disturbed(l, `${send ? 'WSPSend' : 'WSPGetSockOpt'} failed: ${JSON.stringify(r)}`);
      continue;
    }
    if (send) {
      l.sent += (r['bytesSent'] as number) ?? 0;
      report.bytesSent += (r['bytesSent'] as number) ?? 0;
    }
    report.latenciesMs.push(ms);
    if (report.slowest.length < 5 || ms > report.slowest[4]!.ms) {
      report.slowest.push({ at: Math.round((t - t0) / 100) / 10, call: send ? 'WSPSend' : 'WSPGetSockOpt', ms: Math.round(ms * 10) / 10 });
      report.slowest.sort((x, y) => y.ms - x.ms);
      report.slowest.length = Math.min(report.slowest.length, 5);
    }
    const rest = intervalMs - (performance.now() - started);
    if (rest > 0) await sleep(rest);
  }
  // Every byte reported sent must reach the peer, whatever happened to the session since.
  await waitUntil(() => conns.every((c) => c.conn.received >= c.sent || c.conn.ended !== null), 3000);
  await sleep(50);
  for (const c of conns) report.bytesLost += Math.max(0, c.sent - c.conn.received);
  if (live) await live.wire.close();
  await closeAllPeers();
  parentPort!.postMessage({ type: 'report', report });
}

void run();
