/**
 * Scenario 2, resource exhaustion: a client that takes all it can. Each part pushes one resource
 * past where the daemon should stop it, and the daemon's memory (RSS from /proc) is sampled all
 * along, so the row shows before / peak / after:
 *
 *  - many idle sessions;
 *  - many sockets in one session (UDP sockets, each bound: a real descriptor each);
 *  - more HTTP connections than the daemon has slots for, that never finish a request, then every
 *    slot a request under way while silent newcomers keep coming: a health check and a new
 *    session must still get in at once;
 *  - many pending requests, with ids (blocking WSPRecv on a connection that never gets data) and
 *    without (the same calls as notifications), past --max-pending-requests, which the daemon
 *    runs with at 2048 so that the limit is reached in seconds: TOO_MANY_REQUESTS is the expected
 *    answer, for notifications too;
 *  - many pending overlapped operations: one-byte sends held by a block fault on many sockets of
 *    one session, 512 bytes each of the daemon's own memory against --bookkeeping-budget, which
 *    the daemon runs with at 32 MiB: past it, TOO_MANY_REQUESTS is the expected answer, RSS must
 *    not follow the requests, and the session's end must give the budget back;
 *  - many pending urgent-data receives (MSG_OOB, blocking and overlapped) on quiet connections:
 *    nothing happens on them, so the daemon should use next to no CPU meanwhile;
 *  - a client that stops reading its WebSocket while it asks for big replies (WSPRecv MSG_PEEK
 *    of 4 MiB, again and again): the daemon must bound what it holds for that client (closing it
 *    with 4008 is the expected answer);
 *  - messages begun and never finished (a slowloris on the WebSocket): many sessions each start a
 *    16 MiB message and trickle it in. The daemon runs with --partial-frames-budget 64 MiB;
 *    closing the oldest with 1013 is the expected answer, and its RSS must not follow the bytes;
 *  - a peer that stops reading, across many sessions: overlapped and blocking sends pile up, then
 *    the sessions close and new ones connect. The daemon runs with --held-bytes-budget 256 MiB
 *    (the default is 1 GiB) so that the peak shows the budget holding, and with a short
 *    --linger-timeout: what ended sessions left behind must show in /healthz and be released
 *    after it, so "after" comes back down (the peers stay connected and silent until then).
 *
 * Expected refusals (WSAEMFILE, WSAENOBUFS, WSAEWOULDBLOCK, TOO_MANY_REQUESTS, HTTP 503 for
 * sessions, close 4008) are noted, not counted as defects; a limit that does not hold is a defect.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import * as P from '@spiwire/proto';
import { Arena, type Options, type Row } from '../lib/arena.js';
import { TcpPeer } from '../lib/peers.js';
import * as S from '../lib/spi.js';
import type { Msg } from '../lib/replies.js';
import { Wire } from '../lib/wire.js';
import { MiB, round1, sleep, waitUntil, within } from '../lib/util.js';

const MAX_PENDING = 2048;

const BUDGET = {
  quick: { opSockets: 40, opsPerSocket: 4000, idleConnections: 1300, churnConnections: 20000, trickleSessions: 24, trickleMiB: 8, idleSessions: 300, udpSockets: 600, beyondPending: 600, extraNotifications: 4000, urgent: 200, urgentMs: 3000, bigReplyMiB: 4, bigReplies: 150, stopAtMiB: 600, stallSessions: 6, stallMiBPerSession: 48 },
  full: { opSockets: 200, opsPerSocket: 4000, idleConnections: 4000, churnConnections: 100000, trickleSessions: 80, trickleMiB: 15, idleSessions: 2000, udpSockets: 5000, beyondPending: 4000, extraNotifications: 60000, urgent: 1000, urgentMs: 8000, bigReplyMiB: 4, bigReplies: 400, stopAtMiB: 1200, stallSessions: 16, stallMiBPerSession: 64 },
};
type Budget = typeof BUDGET.quick;

/** The part of the budget that applies, and how its refusals are counted. */
class Tally {
  readonly counts = new Map<string, number>();
  add(what: string, n = 1): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + n);
  }
  get(what: string): number {
    return this.counts.get(what) ?? 0;
  }
  /** The outcome of an SPI call as a short name: ok, pending, WSAENOBUFS, error -32003, none. */
  static outcome(m: Msg | null): string {
    if (!m) return 'no answer';
    if (m.error) return `error ${String(m.error['code'])}`;
    const e = m.result?.['errno'];
    if (e === 0) return 'ok';
    return P.wsaError(e as number)?.name ?? `errno ${String(e)}`;
  }
  toString(): string {
    return [...this.counts].map(([k, v]) => `${v} ${k}`).join(', ');
  }
}

async function idleSessions(a: Arena, b: Budget): Promise<void> {
  const open: Wire[] = [];
  const t = new Tally();
  const rss0 = a.sample();
  for (let i = 0; i < b.idleSessions; i += 25) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(25, b.idleSessions - i) }, () => a.wire()));
    for (const r of batch) {
      if (r.status === 'fulfilled') {
        open.push(r.value);
        t.add('open');
      } else t.add((r.reason as { status?: number }).status === 503 ? 'refused with HTTP 503' : `failed (${(r.reason as Error).message})`);
    }
    if (!(await a.checkAlive('opening idle sessions'))) return;
  }
  const rss1 = a.sample();
  a.extra['idleSessions'] = t.toString();
  if (rss0 !== null && rss1 !== null && open.length) a.extra['idleSessionKiB'] = Math.round(((rss1 - rss0) * 1024) / open.length);
  if (t.get('refused with HTTP 503')) a.note(`idle sessions: ${t.get('refused with HTTP 503')} of ${b.idleSessions} refused with HTTP 503 (a session limit)`);
  const failed = [...t.counts].filter(([k]) => k.startsWith('failed'));
  if (failed.length) a.find('other', `idle sessions: ${failed.map(([k, v]) => `${v} ${k}`).join(', ')}`);
  await Promise.all(open.map((w) => w.close()));
}

async function manySockets(a: Arena, b: Budget): Promise<void> {
  const w = await a.wire();
  const t = new Tally();
  const handles: number[] = [];
  for (let i = 0; i < b.udpSockets; i += 100) {
    const n = Math.min(100, b.udpSockets - i);
    const made = await Promise.all(Array.from({ length: n }, () => w.request('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 })));
    const fresh: number[] = [];
    for (const m of made) {
      const o = Tally.outcome(m);
      t.add(`WSPSocket ${o}`);
      if (o === 'ok') fresh.push(m!.result!['ret'] as number);
    }
    const bound = await Promise.all(fresh.map((s) => w.request('WSPBind', { s, name: S.v4(0), namelen: 16 })));
    for (const m of bound) t.add(`WSPBind ${Tally.outcome(m)}`);
    handles.push(...fresh);
    a.sample();
    if (!(await a.checkAlive('creating sockets'))) return;
    if (t.get('WSPSocket WSAEMFILE') > 0) break;
  }
  a.extra['sockets'] = t.toString();
  if (t.get('WSPSocket WSAEMFILE')) a.note(`sockets: WSPSocket answered WSAEMFILE after ${handles.length} sockets (a socket cap)`);
  const odd = [...t.counts].filter(([k]) => !/ (ok|WSAEMFILE|WSAENOBUFS)$/.test(k));
  if (odd.length) a.find('other', `many sockets in one session: ${odd.map(([k, v]) => `${v} ${k}`).join(', ')}`);
  await w.close();
}

/** A request's headers, cut short. */
const PARTIAL_HEADERS = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';
/** A request whose body never comes whole: a request under way until the daemon's request timeout. */
const TRICKLED_REQUEST = 'POST /nope HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{';

/** The daemon's HTTP port, and the connections opened to it (each destroyed by closeAll). */
class Connections {
  readonly open = new Set<net.Socket>();
  closedByDaemon = 0;
  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  /** One connection, once connected (or closed), having sent bytes. */
  one(bytes: string): Promise<void> {
    const sock = net.connect(this.port, this.host);
    this.open.add(sock);
    sock.on('error', () => undefined);
    return new Promise<void>((r) => {
      sock.once('connect', () => {
        if (bytes !== '') sock.write(bytes);
        r();
      });
      sock.once('close', () => {
        if (this.open.delete(sock)) this.closedByDaemon++;
        r();
      });
    });
  }

  /** n connections, 100 at a time; the i-th sends bytesOf(i). False if the daemon died meanwhile. */
  async many(a: Arena, n: number, bytesOf: (i: number) => string): Promise<boolean> {
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => this.one(bytesOf(i + j))));
      if (!(await a.checkAlive('opening HTTP connections'))) return false;
    }
    return true;
  }

  closeAll(): void {
    const all = [...this.open];
    this.open.clear();
    for (const sock of all) sock.destroy();
  }
}

/** How long p took, or null past 3 s. */
async function timed<T>(p: Promise<T>): Promise<{ value: T | null; ms: number }> {
  const t0 = Date.now();
  const value = await within(p, 3000, null);
  return { value, ms: Date.now() - t0 };
}

/**
 * HTTP connections that never finish a request, more than the daemon has slots for (at most 1,088
 * by default). First a mix (headers cut short, bodies that never come whole, nothing at all); then
 * every slot a request under way while new silent connections keep coming, about 2,000 a
 * second. Each time a health check and a new session must still get in at
 * once, in the place of the connections whose last sign of life is oldest, and the sessions open
 * keep theirs.
 */
async function idleConnections(a: Arena, b: Budget): Promise<void> {
  const { hostname, port } = new URL(a.daemon.url);
  const c = new Connections(hostname.replace(/^\[|\]$/g, ''), Number(port));
  const before = await a.wire();
  // On a connection of its own each time: a kept-alive one, silent since, may be the one taken.
  const healthz = (): Promise<number> =>
    new Promise((resolve) => {
      const req = http.get({ host: c.host, port: c.port, path: '/healthz', agent: false }, (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      });
      req.once('error', () => resolve(0));
    });
  const tryToGetIn = async (what: string): Promise<string> => {
    const health = await timed(healthz());
    const fresh = await timed(a.wire().catch(() => null));
    if (health.value !== 200) a.find('limit', `${what}: a health check ${health.value === null ? 'got no answer within 3 s' : `got ${health.value}`}`);
    if (fresh.value === null) a.find('limit', `${what}: a new session did not open within 3 s`);
    await fresh.value?.close();
    return `a health check in ${health.ms} ms, a new session in ${fresh.ms} ms`;
  };
  try {
    const mixed = `with ${b.idleConnections} HTTP connections open that never finish a request`;
    if (!(await c.many(a, b.idleConnections, (i) => ['', PARTIAL_HEADERS, TRICKLED_REQUEST][i % 3]!))) return;
    const first = await tryToGetIn(mixed);
    const firstClosed = c.closedByDaemon;
    c.closeAll();
    // Every slot a request under way, and a stream of newcomers that send nothing.
    const churned = `with every slot a request under way and new silent connections coming all the time`;
    if (!(await c.many(a, b.idleConnections, () => TRICKLED_REQUEST))) return;
    // About 2,000 new connections a second, none awaited: a newcomer whose SYN meets one of the
    // daemon's TIME-WAIT sockets on loopback can wait a second for its retry, and must not hold
    // the stream up.
    let opened = 0;
    const tries: string[] = [];
    const churn = setInterval(() => {
      for (let i = 0; i < 10 && opened < b.churnConnections; i++, opened++) void c.one('');
    }, 5);
    try {
      // The newcomers first push out requests under way; the tries begin once they come steadily.
      await waitUntil(() => opened >= 1000, 10000);
      for (let i = 0; i < 5; i++) {
        tries.push(await tryToGetIn(churned));
        await sleep(100);
      }
    } finally {
      clearInterval(churn);
    }
    const probe = await before.request('WSPGetSockOpt', { s: 0, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }, { timeoutMs: 3000 });
    if (probe === null) a.find('other', `after HTTP connection floods, a session opened before them got no answer`);
    a.extra['idleConnections'] = `${b.idleConnections} mixed, ${firstClosed} closed by the daemon to make room, then ${first}; ${b.idleConnections} requests under way and ${opened} silent newcomers: ${tries.join('; ')}`;
  } finally {
    c.closeAll();
    await before.close();
  }
}

/** A session with a TCP socket connected to a peer that never sends: receives on it wait for good. */
async function quietConnection(a: Arena, peer: TcpPeer, overlapped = false): Promise<{ w: Wire; s: number } | null> {
  const w = await a.wire();
  const s = await S.socket(w, P.SOCK_STREAM, { overlapped });
  if (s === null || !(await S.connect(w, s, S.v4(peer.port)))) {
    a.find('other', 'could not set up a quiet connection');
    await w.close();
    return null;
  }
  return { w, s };
}

async function pendingRequests(a: Arena, b: Budget, peer: TcpPeer): Promise<void> {
  // With ids: every request past the limit is TOO_MANY_REQUESTS.
  const q = await quietConnection(a, peer);
  if (!q) return;
  const limit = q.w.limit('maxPendingRequests') ?? MAX_PENDING;
  const t = new Tally();
  const total = limit + b.beyondPending;
  const answers: Array<Promise<Msg | null>> = [];
  for (let i = 0; i < total; i += 256) {
    const fb = new P.FrameBuilder();
    for (let k = 0; k < Math.min(256, total - i); k++) {
      const id = Wire.id();
      q.w.track(id, 'blocking WSPRecv (pending)');
      answers.push(q.w.waitFor(id, 1500));
      fb.add({ jsonrpc: '2.0', id, method: 'WSPRecv', params: { s: q.s, lengths: [64], flags: 0 } });
    }
    q.w.sendRaw(fb.finish(), true);
  }
  const settled = await Promise.all(answers);
  for (const m of settled) t.add(m ? Tally.outcome(m) : 'still pending');
  a.sample();
  a.extra['pendingWithIds'] = t.toString();
  const refused = t.get(`error ${P.TOO_MANY_REQUESTS}`);
  if (refused !== b.beyondPending) a.find('limit', `${total} blocking requests with ids against maxPendingRequests ${limit}: ${t.toString()} (expected ${b.beyondPending} TOO_MANY_REQUESTS)`);
  else a.note(`pending requests: the ${b.beyondPending} requests past maxPendingRequests ${limit} got TOO_MANY_REQUESTS`);
  await q.w.close();
  if (!(await a.checkAlive('holding pending requests'))) return;

  // Without ids: the same blocking calls as notifications, then one request with an id.
  const n = await quietConnection(a, peer);
  if (!n) return;
  let nullTooMany = 0;
  n.w.onResponse = (m) => {
    if (m.id === null && m.error?.['code'] === P.TOO_MANY_REQUESTS) nullTooMany++;
  };
  const sendNotifications = (count: number): void => {
    for (let i = 0; i < count; i += 256) {
      const fb = new P.FrameBuilder();
      for (let k = 0; k < Math.min(256, count - i); k++) fb.add({ jsonrpc: '2.0', method: 'WSPRecv', params: { s: n.s, lengths: [64], flags: 0 } });
      n.w.sendRaw(fb.finish(), true);
    }
  };
  sendNotifications(limit + b.beyondPending);
  const probe = await n.w.request('WSPGetSockOpt', { s: n.s, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }, { timeoutMs: 5000, label: 'a request after the notifications' });
  const counted = probe?.error?.['code'] === P.TOO_MANY_REQUESTS || nullTooMany > 0;
  if (!counted) a.find('limit', `${limit + b.beyondPending} blocking WSPRecv notifications (no id) are all held although maxPendingRequests is ${limit}, and a request with an id after them still ran (${Tally.outcome(probe)}): notifications are not counted against the limit`);
  else a.note(`pending notifications: counted against maxPendingRequests (${nullTooMany} refused with id null${probe?.error ? ', and the next request got TOO_MANY_REQUESTS' : ''})`);
  // More of them: what each costs the daemon when nothing stops them.
  const before = a.sample();
  sendNotifications(b.extraNotifications);
  await n.w.request('WSPGetSockOpt', { s: n.s, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }, { timeoutMs: 15000 });
  const after = a.sample();
  const stats = await a.daemon.http('/stats');
  a.extra['pendingNotifications'] = `${limit + b.beyondPending + b.extraNotifications} sent, RSS ${round1(before ?? 0)} -> ${round1(after ?? 0)} MiB${stats ? `, /stats pendingOps ${String(stats['pendingOps'])}` : ''}`;
  await n.w.close();
  await a.checkAlive('holding pending notifications');
}

async function urgentReceives(a: Arena, b: Budget, peer: TcpPeer): Promise<void> {
  const q = await quietConnection(a, peer, true);
  if (!q) return;
  const more: number[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await S.socket(q.w, P.SOCK_STREAM, { overlapped: true });
    if (s !== null && (await S.connect(q.w, s, S.v4(peer.port)))) more.push(s);
  }
  const socks = [q.s, ...more];
  const t = new Tally();
  const blocking: Array<Promise<Msg | null>> = [];
  for (let i = 0; i < b.urgent; i++) {
    const p = q.w.request('WSPRecv', { s: socks[i % socks.length], lengths: [1], flags: P.MSG_OOB }, { timeoutMs: 0, label: 'blocking WSPRecv MSG_OOB' });
    // Answered while nothing was sent: a refusal (or a defect); still waiting is what is expected.
    void p.then((m) => m && t.add(`blocking ${Tally.outcome(m)}`));
    blocking.push(p);
  }
  const ov = await Promise.all(Array.from({ length: b.urgent }, (_, i) => q.w.request('WSPRecv', { s: socks[i % socks.length], lengths: [1], flags: P.MSG_OOB, overlapped: { op: 1 + i, thread: 1 } }, { label: 'overlapped WSPRecv MSG_OOB' })));
  for (const m of ov) t.add(`overlapped ${Tally.outcome(m)}`);
  await sleep(500);
  const cpu0 = a.daemon.cpuSeconds();
  const t0 = performance.now();
  await sleep(b.urgentMs);
  const cpu1 = a.daemon.cpuSeconds();
  const wall = (performance.now() - t0) / 1000;
  a.sample();
  const busy = cpu0 !== null && cpu1 !== null ? Math.round((100 * (cpu1 - cpu0)) / wall) : null;
  a.extra['urgentReceives'] = `${b.urgent} blocking + ${b.urgent} overlapped (${t.toString()}) on ${socks.length} quiet connections: daemon CPU ${busy ?? '?'}% of one core while nothing arrived`;
  if (busy !== null && busy > 20) a.find('cpu', `${b.urgent} blocking and ${b.urgent} overlapped urgent-data receives (MSG_OOB) waiting on quiet connections keep the daemon ${busy}% busy while nothing arrives`);
  await q.w.close();
  await Promise.all(blocking.map((p) => within(p, 1000, null)));
  await a.checkAlive('holding urgent receives');
}

async function clientStopsReading(a: Arena, b: Budget): Promise<void> {
  const chunk = b.bigReplyMiB * MiB;
  // The peer sends chunk bytes as soon as it is connected, then never reads.
  const peer = await TcpPeer.start({ mode: { kind: 'never' }, onConnect: (s) => s.write(Buffer.alloc(chunk, 0x5a)) });
  const w = await a.wire();
  const s = await S.socket(w, P.SOCK_STREAM);
  if (s === null) return;
  await S.spi(w, 'WSPSetSockOpt', { s, level: P.SOL_SOCKET, optname: P.SO_RCVBUF, optval: S.dword(2 * chunk), optlen: 4 });
  if (!(await S.connect(w, s, S.v4(peer.port)))) {
    a.find('other', 'client stops reading: could not connect to the peer');
    return;
  }
  const ready = await waitUntil(async () => {
    const r = await S.spi(w, 'WSPIoctl', { s, code: P.FIONREAD, input: Buffer.alloc(0), outputLength: 4 });
    return r.ret === 0 && Buffer.from(r['output'] as Uint8Array).readUInt32LE(0) >= chunk;
  }, 10000);
  if (!ready) {
    a.find('other', `client stops reading: the daemon never had ${b.bigReplyMiB} MiB waiting to be peeked`);
    await w.close();
    return;
  }
  const rss0 = a.sample() ?? 0;
  w.pauseReading();
  let asked = 0;
  for (; asked < b.bigReplies; asked++) {
    // Each peek returns the same chunk bytes again: a 4 MiB reply for a 100-byte request.
    w.sendRaw(P.encodeFrame({ jsonrpc: '2.0', id: `peek${asked}`, method: 'WSPRecv', params: { s, lengths: [chunk], flags: P.MSG_PEEK } }), true);
    if (asked % 10 === 9) {
      // Paced, so that the daemon keeps up and its RSS shows what it holds by now.
      await sleep(100);
      // Enough to show that nothing bounds it: stop before the machine suffers.
      if ((a.sample() ?? 0) > b.stopAtMiB || !a.daemon.alive) {
        asked++;
        break;
      }
    }
  }
  // The peak: until the daemon's RSS stops growing (it may still be working through the requests).
  let peak = a.sample() ?? 0;
  for (let still = 0, i = 0; still < 5 && i < 50; i++) {
    await sleep(100);
    const now = a.sample() ?? 0;
    still = now > peak + 1 ? 0 : still + 1;
    peak = Math.max(peak, now);
  }
  let answered = 0;
  w.onResponse = () => answered++;
  w.resumeReading();
  // Either the daemon closed this client (4008 expected) or it delivers everything once it reads again.
  await waitUntil(() => !w.isOpen || answered >= asked, 20000);
  const code = w.isOpen ? null : (w.closeInfo?.code ?? null);
  const offered = (asked * chunk) / MiB;
  a.extra['clientStopsReading'] = `${asked} replies of ${b.bigReplyMiB} MiB asked for (${offered} MiB) while not reading: RSS ${round1(rss0)} -> ${round1(peak)} MiB; ${code === null ? 'connection still open after reading resumed' : `closed with ${code}`}`;
  if (code === 4008) a.note(`client stops reading: the daemon closed the non-reading client with 4008 after its output passed a bound`);
  else if (peak - rss0 > offered / 2) a.find('memory', `a client that stops reading made the daemon hold its replies: RSS grew by ${round1(peak - rss0)} MiB for ${offered} MiB of replies asked for, and the session was ${code === null ? 'not closed' : `closed with ${code}, not 4008`}`);
  if (code === null) await w.close();
  else w.terminate();
  await peer.close();
  await a.checkAlive('serving a client that does not read');
}

/** Bytes of unfinished messages the daemon may hold (--partial-frames-budget): what bounds the trickle. */
const PARTIAL_FRAMES_BUDGET = 64 * MiB;

async function unfinishedMessages(a: Arena, b: Budget): Promise<void> {
  const wires: Wire[] = [];
  for (let i = 0; i < b.trickleSessions; i++) {
    const w = await a.wire();
    wires.push(w);
    // A binary message of 16 MiB less a header's room, masked with the zero key: the header only.
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(16 * MiB - 16), 2);
    w.rawSocket.write(header);
  }
  const rss0 = a.sample() ?? 0;
  const chunk = Buffer.alloc(MiB, 0x5a);
  let offered = 0;
  for (let round = 0; round < b.trickleMiB; round++) {
    for (const w of wires) {
      if (!w.isOpen) continue;
      w.rawSocket.write(chunk);
      offered += 1;
    }
    // Paced, so that the daemon has read each round and its RSS shows what it holds.
    await sleep(200);
    a.sample();
    if (!(await a.checkAlive('taking unfinished messages'))) return;
  }
  let peak = a.sample() ?? 0;
  for (let i = 0; i < 5; i++) {
    await sleep(100);
    peak = Math.max(peak, a.sample() ?? 0);
  }
  const codes = new Map<number, number>();
  for (const w of wires) if (w.closeInfo) codes.set(w.closeInfo.code, (codes.get(w.closeInfo.code) ?? 0) + 1);
  const closed = [...codes].map(([c, n]) => `${n} closed with ${c}`).join(', ') || 'none closed';
  a.extra['unfinishedMessages'] = `${b.trickleSessions} sessions trickled ${offered} MiB of unfinished 16 MiB messages: RSS ${round1(rss0)} -> ${round1(peak)} MiB; ${closed}`;
  if (codes.get(1013)) a.note(`unfinished messages: the daemon closed ${codes.get(1013)} trickling connections with 1013 (the partial-frame budget)`);
  const other = [...codes].filter(([c]) => c !== 1013);
  if (other.length) a.find('other', `unfinished messages: connections closed with ${other.map(([c, n]) => `${c} (${n}x)`).join(', ')}, not 1013`);
  if (peak - rss0 > PARTIAL_FRAMES_BUDGET / MiB + 96) a.find('memory', `unfinished messages: RSS grew by ${round1(peak - rss0)} MiB for ${offered} MiB trickled, past the partial-frame budget of ${PARTIAL_FRAMES_BUDGET / MiB} MiB`);
  for (const w of wires) w.terminate();
}

/** The daemon's memory for waiting calls and pending operations (--bookkeeping-budget): what bounds the operations here. */
const BOOKKEEPING_BUDGET = 32 * MiB;

async function pendingOperations(a: Arena, b: Budget, peer: TcpPeer): Promise<void> {
  const w = await a.wire();
  const rss0 = (await a.daemon.settledRssMiB()) ?? 0;
  const sockets: number[] = [];
  for (let i = 0; i < b.opSockets; i++) {
    const s = await S.socket(w, P.SOCK_STREAM, { overlapped: true });
    if (s === null || !(await S.connect(w, s, S.v4(peer.port)))) break;
    sockets.push(s);
  }
  // Every send of the session is held for ten minutes: each stays pending.
  await w.call('spiwire.faults.add', { rule: { match: {}, action: { type: 'block', ms: 600000 } } });
  const one = new Uint8Array([1]);
  const t = new Tally();
  const answers: Array<Promise<Msg | null>> = [];
  let op = 1;
  for (const s of sockets) {
    for (let i = 0; i < b.opsPerSocket; i += 1000) {
      const fb = new P.FrameBuilder();
      for (let k = 0; k < Math.min(1000, b.opsPerSocket - i); k++) {
        const id = Wire.id();
        w.track(id, 'overlapped one-byte WSPSend (held)');
        answers.push(w.waitFor(id, 30000));
        fb.add({ jsonrpc: '2.0', id, method: 'WSPSend', params: { s, buffers: [one], flags: 0, overlapped: { op: op++, thread: 1 } } });
      }
      w.sendRaw(fb.finish(), true);
    }
    a.sample();
  }
  for (const m of await Promise.all(answers)) t.add(m ? Tally.outcome(m) : 'no answer');
  const peak = a.sample() ?? 0;
  const counted = (await a.daemon.http('/stats'))?.['bookkeepingBytes'];
  a.extra['pendingOperations'] = `${answers.length} held one-byte overlapped sends on ${sockets.length} sockets: ${t.toString()}; RSS ${round1(rss0)} -> ${round1(peak)} MiB; bookkeeping counted ${typeof counted === 'number' ? `${round1(counted / MiB)} MiB` : 'not shown'}`;
  const refused = t.get(`error ${P.TOO_MANY_REQUESTS}`);
  if (refused === 0) a.find('limit', `${answers.length} pending one-byte operations in one session, none refused, against a bookkeeping budget of ${BOOKKEEPING_BUDGET / MiB} MiB`);
  else a.note(`pending operations: past the bookkeeping budget, ${refused} operations got TOO_MANY_REQUESTS`);
  if (peak - rss0 > (2 * BOOKKEEPING_BUDGET) / MiB + 96) a.find('memory', `pending operations: RSS grew by ${round1(peak - rss0)} MiB, past twice the bookkeeping budget of ${BOOKKEEPING_BUDGET / MiB} MiB`);
  await w.close();
  if (!(await waitUntil(async () => (await a.daemon.http('/stats'))?.['bookkeepingBytes'] === 0, 10000))) a.find('memory', 'pending operations: the bookkeeping the session held was not given back within 10 s of its end');
  await a.checkAlive('holding pending operations');
}

/** How long an ended session's connections may deliver (--linger-timeout): short, so the campaign sees the release. */
const LINGER_MS = 2000;
/** Bytes the daemon may hold for all sessions' sends (--held-bytes-budget): what bounds the peak here. */
const HELD_BYTES_BUDGET = 256 * MiB;

async function peerStopsReading(a: Arena, b: Budget): Promise<TcpPeer> {
  const peer = await TcpPeer.start({ mode: { kind: 'never' } });
  const t = new Tally();
  const sessions: Wire[] = [];
  const rss0 = (await a.daemon.settledRssMiB()) ?? 0;
  const chunk = Buffer.alloc(MiB, 0x33);
  let accepted = 0;
  for (let i = 0; i < b.stallSessions; i++) {
    const w = await a.wire();
    sessions.push(w);
    const s = await S.socket(w, P.SOCK_STREAM, { overlapped: true });
    if (s === null || !(await S.connect(w, s, S.v4(peer.port)))) continue;
    let op = 1;
    for (let k = 0; k < b.stallMiBPerSession; k++) {
      const last = k === b.stallMiBPerSession - 1;
      // Overlapped sends, and a blocking one at the end that waits for good.
      const params: Record<string, unknown> = { s, buffers: [chunk], flags: 0 };
      if (!last) params['overlapped'] = { op: op++, thread: 1 };
      const m = await w.request('WSPSend', params, { timeoutMs: last ? 300 : 10000, label: last ? 'blocking WSPSend to a stalled peer' : 'overlapped WSPSend to a stalled peer' });
      const o = last && !m ? 'blocking send still waiting' : Tally.outcome(m);
      t.add(o);
      if (o === 'ok' || o === 'WSA_IO_PENDING' || o === 'blocking send still waiting') accepted += chunk.length;
      if (o === 'WSAENOBUFS') break;
    }
    a.sample();
    if (!(await a.checkAlive('sending to peers that do not read'))) break;
  }
  const peak = a.sample() ?? 0;
  a.extra['peerStopsReading'] = `${b.stallSessions} sessions x ${b.stallMiBPerSession} MiB offered: ${t.toString()}; ${round1(accepted / MiB)} MiB taken by the daemon`;
  if (t.get('WSAENOBUFS')) a.note(`peer stops reading: sends past the budget failed with WSAENOBUFS (${t.get('WSAENOBUFS')})`);
  await Promise.all(sessions.map((w) => w.close()));
  // The sessions are gone; new ones must still be served.
  let fine = 0;
  for (let i = 0; i < b.stallSessions; i++) {
    try {
      const w = await a.wire();
      if ((await S.socket(w, P.SOCK_STREAM)) !== null) fine++;
      await w.close();
    } catch {
      /* counted below */
    }
  }
  if (fine < b.stallSessions) a.find('other', `after sessions to stalled peers closed, only ${fine} of ${b.stallSessions} new sessions could make a socket`);
  // What ended sessions left behind is visible, and released once the linger time has passed.
  const h0 = await a.daemon.http('/healthz');
  const leftBehind = typeof h0?.['heldBytesOfEndedSessions'] === 'number' ? h0['heldBytesOfEndedSessions'] : null;
  a.extra['peerStopsReadingHeld'] = `${leftBehind === null ? 'not shown' : `${round1(leftBehind / MiB)} MiB`} held for ended sessions right after they ended (/healthz)`;
  if (leftBehind === null) a.find('other', '/healthz does not show the bytes held for ended sessions');
  const deadline = Date.now() + LINGER_MS + 5000;
  let released = false;
  while (!released && Date.now() < deadline) {
    const h = await a.daemon.http('/healthz');
    released = h?.['heldBytes'] === 0;
    if (!released) await sleep(100);
  }
  if (!released) a.find('memory', `bytes held for ended sessions were not released within ${LINGER_MS + 5000} ms (--linger-timeout ${LINGER_MS})`);
  const held = (await a.daemon.settledRssMiB()) ?? 0;
  a.extra['peerStopsReadingRss'] = `RSS ${round1(rss0)} MiB before, peak ${round1(peak)} MiB, ${round1(held)} MiB a second after the sessions ended (peers still connected, not reading)`;
  if (held - rss0 > 64) a.find('memory', `after ${b.stallSessions} sessions that sent to peers that never read had ended, the daemon still held ${round1(held - rss0)} MiB more than before them (the peers are still connected and silent)`);
  return peer;
}

export function exhaustion(opts: Options): Promise<Row> {
  return Arena.run('exhaustion', 'Resource exhaustion', opts, ['--max-pending-requests', String(MAX_PENDING), '--linger-timeout', String(LINGER_MS), '--held-bytes-budget', String(HELD_BYTES_BUDGET), '--partial-frames-budget', String(PARTIAL_FRAMES_BUDGET), '--bookkeeping-budget', String(BOOKKEEPING_BUDGET)], async (a) => {
    const b = opts.quick ? BUDGET.quick : BUDGET.full;
    const quiet = await TcpPeer.start();
    const parts: Array<[string, () => Promise<unknown>]> = [
      ['idle sessions', () => idleSessions(a, b)],
      ['many sockets', () => manySockets(a, b)],
      ['idle HTTP connections', () => idleConnections(a, b)],
      ['pending requests', () => pendingRequests(a, b, quiet)],
      ['pending operations', () => pendingOperations(a, b, quiet)],
      ['urgent receives', () => urgentReceives(a, b, quiet)],
      ['client stops reading', () => clientStopsReading(a, b)],
      ['unfinished messages', () => unfinishedMessages(a, b)],
      // Last: what it leaves behind is what "after" measures.
      ['peer stops reading', () => peerStopsReading(a, b)],
    ];
    for (const [name, run] of parts) {
      const t0 = Date.now();
      await run();
      opts.log(`[exhaustion] ${name}: ${a.elapsed(t0)} to ${a.elapsed()}, RSS ${round1(a.sample() ?? 0)} MiB, peak ${round1(a.peakMiB ?? 0)} MiB`);
      await a.checkAlive(`after ${name}`);
    }
  });
}
