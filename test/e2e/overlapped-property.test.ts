/**
 * Property: random mixes of overlapped sends (sizes 0..40000 in 1..4 buffers, and MSG_OOB sends of
 * 1..16 bytes, issued by several threads, completing by routine, event or plain polling), with
 * SO_SNDBUF 0 or small, against a node:net peer that reads slowly and in bursts, or that stops
 * reading for good behind a small receive buffer, with WSPCloseSocket, SIO_FLUSH and thread exits
 * interleaved. Each run ends one of six ways: the peer drains everything, WSPCloseSocket, the
 * session ends (spi.close()), the session's connection drops, the peer resets the connection,
 * or the daemon shuts down.
 *
 * For every run, per operation:
 * - one that returned 0 or WSA_IO_PENDING completes exactly once (routine run once, on its target
 *   thread; event signalled once), and the daemon sent at most one completion for it (counted on
 *   the wire: in a reply or a notification); one that failed at once never completes;
 * - a call that returned 0 completed with every byte; a completion's error is one the path allows;
 * - the peer receives exactly, in submission order, the bytes of each operation that completed
 *   successfully and, of each cancelled one, the prefix it reported (cbTransferred), which is
 *   empty except for at most one operation per cancellation (the one cut mid-way).
 * Where no count can be reported (the session ended or dropped with the operation pending, or a
 * call got no reply), the operation's share of the stream is a prefix of its bytes, found by
 * matching; where the peer reset the connection, what it read is a prefix of that stream.
 *
 * A failure lists every operation that broke these, by index. Fixed examples run first, so that
 * every path is taken in every run of the file; a summary says how many runs took each.
 *
 * Campaigns: SPIWIRE_PROPERTY_RUNS=n runs n scenarios instead of 40; run the compiled file with
 * node directly (tap's 120 s file timeout would stop a long one):
 *   npx tsc -b && SPIWIRE_PROPERTY_RUNS=1000 node test/dist/e2e/overlapped-property.test.js
 * SPIWIRE_PROPERTY_SEED (and SPIWIRE_PROPERTY_PATH) replay a failure fast-check reported.
 * SPIWIRE_PROPERTY_STRICT_SESSION_END=1 turns on a check that a known limit fails (see below).
 */
import t from 'tap';
import fc from 'fast-check';
import * as S from '@spiwire/client';
import { startServer, type Daemon } from '@spiwire/server';
import { fdOf, libc } from '@spiwire/server/internals';
import { daemon, overlappedTcp, pattern, rng, sleep, tcpPeer, type TcpPeer } from '../helpers/harness.js';

const native = libc();
const MiB = 1024 * 1024;
const BIG = pattern(8 * MiB, 0x5eed);
const RUN_TIMEOUT_MS = 15000;
const DEFAULT_RUNS = 40;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, not ${v}`);
  return n;
}

const RUNS = envInt('SPIWIRE_PROPERTY_RUNS') ?? DEFAULT_RUNS;
const SEED = envInt('SPIWIRE_PROPERTY_SEED');
const PATH = process.env['SPIWIRE_PROPERTY_PATH'] || undefined;

type Method = 'routine-main' | 'routine-t1' | 'event' | 'poll';

/**
 * How a run ends: 'drain' lets the peer read everything, then closes; the others cancel what is
 * still pending first, and only then may a peer that stopped reading read again.
 */
type Ending = 'drain' | 'close' | 'session-close' | 'session-drop' | 'peer-reset' | 'shutdown';

interface SendAction {
  kind: 'send';
  issuer: number;
  total: number;
  cuts: number[];
  method: Method;
  concurrent: boolean;
  badFlag: boolean;
  /** MSG_OOB: TCP urgent data, sent with send() once every earlier byte is with the kernel. */
  oob: boolean;
}

type Action =
  | SendAction
  | { kind: 'flush' }
  | { kind: 'exit'; thread: number }
  | { kind: 'close' }
  | { kind: 'alert'; thread: number; ms: number }
  | { kind: 'sleep'; ms: number };

interface Scenario {
  prefill: number;
  sndBuf: number;
  /** SO_RCVBUF of the peer's listening socket, inherited by the connection; 0: loopback autotuning. */
  peerRcvBuf: number;
  readerSeed: number;
  /** null: the peer reads in bursts throughout; n: after n bursts it stops reading until the ending. */
  stallAfter: number | null;
  ending: Ending;
  /** The ending does not wait for the replies of sends issued concurrently. */
  endInflight: boolean;
  actions: Action[];
}

/**
 * Endings that may come while calls are in flight. (A dropped session or a daemon shutdown under a
 * call in flight once made the SDK both fail the call and complete its operation; see the test
 * at the end of the file.)
 */
const INFLIGHT_ENDINGS: ReadonlySet<Ending> = new Set<Ending>(['close', 'session-close', 'peer-reset', 'session-drop', 'shutdown']);

/**
 * When the session ends (or drops) under pending operations, the SDK completes them itself with a
 * count of 0 (the daemon's completions can no longer reach it), while the bytes the daemon had
 * taken still reach the peer (README: a close is graceful). The test counts those bytes
 * (unreportedBytes); SPIWIRE_PROPERTY_STRICT_SESSION_END=1 fails on them instead.
 */
const STRICT_SESSION_END = process.env['SPIWIRE_PROPERTY_STRICT_SESSION_END'] === '1';

/** A send action with defaults, for the fixed examples. */
const snd = (total: number, method: Method, more: Partial<SendAction> = {}): SendAction => ({
  kind: 'send',
  issuer: 0,
  total,
  cuts: [],
  method,
  concurrent: false,
  badFlag: false,
  oob: false,
  ...more,
});

const sendArb: fc.Arbitrary<Action> = fc
  .record({
    kind: fc.constant('send' as const),
    issuer: fc.integer({ min: 0, max: 3 }),
    total: fc.oneof(fc.integer({ min: 0, max: 40000 }), fc.constantFrom(0, 1, 40000)),
    cuts: fc.array(fc.integer({ min: 0, max: 40000 }), { maxLength: 3 }),
    method: fc.constantFrom<Method>('routine-main', 'routine-t1', 'event', 'poll'),
    concurrent: fc.boolean(),
    badFlag: fc.integer({ min: 0, max: 24 }).map((n) => n === 0),
    oob: fc.integer({ min: 0, max: 7 }).map((n) => n === 0),
  })
  // Urgent data is small: 1..16 bytes.
  .map((a) => (a.oob ? { ...a, total: 1 + (a.total % 16) } : a));

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: sendArb, weight: 30 },
  { arbitrary: fc.constant({ kind: 'flush' as const }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('exit' as const), thread: fc.integer({ min: 2, max: 3 }) }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'close' as const }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('alert' as const), thread: fc.integer({ min: 0, max: 1 }), ms: fc.integer({ min: 0, max: 5 }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('sleep' as const), ms: fc.integer({ min: 0, max: 15 }) }), weight: 3 },
);

/** Makes a scenario consistent: a peer that stops reading needs a small receive buffer and an ending that cancels. */
function settle(sc: Scenario): Scenario {
  let { peerRcvBuf, stallAfter, ending, endInflight } = sc;
  // Without the C library the peer's buffer cannot be made small: it would swallow everything.
  if (!native) {
    peerRcvBuf = 0;
    stallAfter = null;
  }
  if (stallAfter !== null) {
    if (peerRcvBuf === 0) peerRcvBuf = 32768;
    if (ending === 'drain') ending = 'close';
  }
  if (!INFLIGHT_ENDINGS.has(ending)) endInflight = false;
  let actions = sc.actions;
  if (endInflight) {
    // The ending comes right behind a send whose reply has not arrived yet.
    const last = actions[actions.length - 1];
    if (last?.kind === 'send') actions = [...actions.slice(0, -1), { ...last, concurrent: true }];
    else actions = [...actions, snd(1000, 'event', { concurrent: true })];
  }
  return { ...sc, peerRcvBuf, stallAfter, ending, endInflight, actions };
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    prefill: fc.constantFrom(0, 1 * MiB, 4 * MiB, 6 * MiB),
    sndBuf: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.constantFrom(1024, 8192, 65536), weight: 3 }),
    peerRcvBuf: fc.constantFrom(0, 0, 16384, 32768, 65536),
    readerSeed: fc.integer({ min: 1, max: 0x7fffffff }),
    stallAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 7 }, { arbitrary: fc.integer({ min: 0, max: 12 }), weight: 3 }),
    ending: fc.oneof(
      { arbitrary: fc.constant<Ending>('drain'), weight: 4 },
      { arbitrary: fc.constant<Ending>('close'), weight: 3 },
      { arbitrary: fc.constant<Ending>('session-close'), weight: 2 },
      { arbitrary: fc.constant<Ending>('session-drop'), weight: 2 },
      { arbitrary: fc.constant<Ending>('peer-reset'), weight: 1 },
      { arbitrary: fc.constant<Ending>('shutdown'), weight: 1 },
    ),
    endInflight: fc.boolean(),
    actions: fc.array(actionArb, { minLength: 5, maxLength: 30, size: 'max' }),
  })
  .map(settle);

/**
 * Scenarios run first in every run of the file, so that each path is taken at least once whatever
 * the random ones draw (the summary at the end asserts it).
 */
const EXAMPLES: Scenario[] = (
  [
    // Issue 11: SO_SNDBUF 0 and a peer that never reads. The 1 MiB prefill goes to the kernel side
    // whole, more than the kernels hold: neither SIO_FLUSH nor the thread exit may cut it, and it
    // must still complete, once, when the socket is closed. Urgent data queued behind it.
    {
      prefill: 1 * MiB,
      sndBuf: 0,
      peerRcvBuf: 16384,
      readerSeed: 11,
      stallAfter: 0,
      ending: 'close',
      endInflight: false,
      actions: [
        snd(40000, 'routine-main', { cuts: [100, 20000] }),
        snd(40000, 'event', { issuer: 2 }),
        snd(9, 'poll', { oob: true }),
        snd(1000, 'routine-t1', { concurrent: true }),
        { kind: 'flush' },
        snd(3000, 'event', { issuer: 3 }),
        { kind: 'exit', thread: 2 },
        snd(1, 'event', { oob: true }),
        snd(0, 'routine-main'),
        { kind: 'sleep', ms: 5 },
      ],
    },
    // A peer that reads a little and stops: SIO_FLUSH and a thread exit each cut a send mid-way
    // (it reports the bytes it sent), then the session ends with sends pending.
    {
      prefill: 6 * MiB,
      sndBuf: 1024,
      peerRcvBuf: 32768,
      readerSeed: 12,
      stallAfter: 1,
      ending: 'session-close',
      endInflight: false,
      actions: [
        snd(30000, 'event', { cuts: [7, 8, 9000] }),
        snd(16, 'routine-t1', { oob: true, issuer: 1 }),
        { kind: 'flush' },
        snd(20000, 'poll', { issuer: 3 }),
        { kind: 'sleep', ms: 10 },
        { kind: 'exit', thread: 3 },
        snd(5000, 'routine-main', { concurrent: true }),
        snd(12000, 'event'),
      ],
    },
    // The session's connection drops while a bursty peer reads.
    {
      prefill: 4 * MiB,
      sndBuf: 8192,
      peerRcvBuf: 0,
      readerSeed: 13,
      stallAfter: null,
      ending: 'session-drop',
      endInflight: false,
      actions: [
        snd(40000, 'routine-main'),
        snd(3, 'event', { oob: true }),
        snd(25000, 'routine-t1', { issuer: 2, concurrent: true }),
        { kind: 'alert', thread: 0, ms: 2 },
        snd(100, 'poll'),
        { kind: 'exit', thread: 2 },
        snd(40000, 'event'),
      ],
    },
    // The peer resets the connection under pending sends. (The first send fits the buffer and
    // completes at once; MSG_PARTIAL fails at once.)
    {
      prefill: 0,
      sndBuf: 65536,
      peerRcvBuf: 65536,
      readerSeed: 14,
      stallAfter: 2,
      ending: 'peer-reset',
      endInflight: false,
      actions: [
        snd(100, 'event'),
        snd(10, 'poll', { badFlag: true }),
        snd(40000, 'event'),
        { kind: 'flush' },
        snd(5, 'routine-main', { oob: true }),
        snd(4000000, 'routine-t1', { concurrent: true }),
        snd(40000, 'event', { issuer: 2 }),
        snd(20000, 'poll'),
      ],
    },
    // Urgent data between bulk sends to a bursty peer: each MSG_OOB send must wait until every
    // earlier byte is with the kernel, or the peer sees it out of place.
    {
      prefill: 0,
      sndBuf: 8192,
      peerRcvBuf: 16384,
      readerSeed: 16,
      stallAfter: null,
      ending: 'drain',
      endInflight: false,
      actions: [
        snd(40000, 'event', { concurrent: true }),
        snd(1, 'event', { oob: true, concurrent: true }),
        snd(40000, 'routine-main', { concurrent: true }),
        snd(16, 'poll', { oob: true, concurrent: true }),
        snd(40000, 'routine-t1', { concurrent: true, cuts: [5, 30000] }),
        snd(7, 'routine-main', { oob: true, concurrent: true }),
        snd(40000, 'event', { concurrent: true }),
        snd(3, 'event', { oob: true }),
        snd(20000, 'poll'),
        snd(2, 'routine-t1', { oob: true }),
      ],
    },
    // The daemon shuts down under pending sends.
    {
      prefill: 1 * MiB,
      sndBuf: 0,
      peerRcvBuf: 0,
      readerSeed: 15,
      stallAfter: null,
      ending: 'shutdown',
      endInflight: false,
      actions: [snd(40000, 'routine-main'), snd(2, 'event', { oob: true, issuer: 3 }), snd(10000, 'poll'), { kind: 'exit', thread: 3 }, snd(30000, 'event')],
    },
  ] satisfies Scenario[]
).map(settle);

interface Op {
  index: number;
  data: Buffer;
  method: Method;
  oob: boolean;
  target: string | null;
  issuedBy: string;
  ov: S.WSAOVERLAPPED;
  ev: number;
  ret: number | null;
  err: number;
  /** Completions seen (routine runs, or event observations). */
  completions: Array<{ err: number; cb: number; runner: string }>;
  /** The SDK put the call on the wire (it did not refuse it itself). */
  onWire: boolean;
  /** The daemon answered the call (a call unanswered when the session went away "fails" with WSAENETDOWN). */
  replied: boolean;
  /** Completions the daemon sent for this operation: in the call's reply, or as notifications. */
  wireCompletions: number;
}

interface Stats {
  runs: number;
  ops: number;
  immediate: number;
  pending: number;
  failed: number;
  cancelled: number;
  partial: number;
  oobOps: number;
  /** Completed by the SDK when the session went away, without a completion from the daemon. */
  completedLocally: number;
  /** Calls the daemon never answered (the session went away under them). */
  unanswered: number;
  /** Bytes the peer received of operations completed locally or unanswered (their counts say 0). */
  unreportedBytes: number;
  maxRunMs: number;
  /** The ending of the slowest run. */
  slowest: string;
}

/** How many successful runs took each path. */
interface Paths {
  close: number;
  flush: number;
  threadExit: number;
  sessionClose: number;
  sessionDrop: number;
  peerReset: number;
  shutdown: number;
  neverReading: number;
  oob: number;
  sndBuf0: number;
  smallPeerRcvBuf: number;
  /** Issue 11's case: SO_SNDBUF 0, a peer that stopped reading, ended by a cancellation. */
  sndBuf0NeverReading: number;
  endInflight: number;
}

class PropertyFailure extends Error {}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new PropertyFailure(msg);
}

/**
 * Pauses and resumes the peer on random timers: slow, bursty reading. With stallAfter, the peer
 * stops reading for good after that many bursts. Returns a stop function.
 */
function burstyReader(sock: import('node:net').Socket, seed: number, stallAfter: number | null): () => void {
  const rand = rng(seed);
  let stopped = false;
  let bursts = 0;
  let timer: NodeJS.Timeout | undefined;
  const step = (): void => {
    if (stopped) return;
    if (sock.isPaused()) {
      if (stallAfter !== null && bursts >= stallAfter) {
        stopped = true;
        return;
      }
      bursts++;
      sock.resume();
      timer = setTimeout(step, 1 + rand(6));
    } else {
      sock.pause();
      timer = setTimeout(step, 3 + rand(30));
    }
  };
  timer = setTimeout(step, rand(10));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/**
 * Watches a session's wire: maps each overlapped call to the test's operation (the SDK sends it
 * synchronously from WSPSend, while `issuing` is set) and counts the completions the daemon sends
 * for it. The SDK ignores a second completion of an operation, so only here would one show.
 */
interface WireWatch {
  issuing: Op | null;
  /** Completions for operation ids the test never issued. */
  stray: number;
}

const watches = new WeakMap<S.SpiSession, WireWatch>();

function watchWire(spi: S.SpiSession): WireWatch {
  const known = watches.get(spi);
  if (known) return known;
  const w: WireWatch = { issuing: null, stray: 0 };
  const byWireOp = new Map<number, Op>();
  const rpc = spi.connection;
  const call = rpc.callThen.bind(rpc);
  // Every call goes through callThen. This listener has no completed(): a completion that comes
  // with a reply is then a member of the reply, whatever form the daemon wrote it in.
  rpc.callThen = (method, params, listener, step, ctx) => {
    const ov = params['overlapped'] as { op: number } | undefined;
    const op = w.issuing;
    if (!ov || !op) return call(method, params, listener, step, ctx);
    byWireOp.set(ov.op, op);
    op.onWire = true;
    return call(
      method,
      params,
      {
        replied(r) {
          op.replied = true;
          if (r['completion']) op.wireCompletions++;
          listener?.replied(r);
        },
      },
      step,
      ctx,
    );
  };
  const notify = rpc.onNotification;
  rpc.onNotification = (method, params) => {
    if (method === 'spiwire.completion') {
      const op = byWireOp.get(params['op'] as number);
      if (op) op.wireCompletions++;
      else w.stray++;
    }
    notify(method, params);
  };
  watches.set(spi, w);
  return w;
}

/** The length of the common prefix of a (from at) and b. */
function commonPrefix(a: Buffer, at: number, b: Buffer): number {
  const n = Math.min(a.length - at, b.length);
  let i = 0;
  const STEP = 4096;
  while (i + STEP <= n && a.subarray(at + i, at + i + STEP).equals(b.subarray(i, i + STEP))) i += STEP;
  while (i < n && a[at + i] === b[i]) i++;
  return i;
}

/** An operation's share of the stream: known (the count it reported) or unknown (null). */
interface Seg {
  op: Op;
  known: number | null;
}

/**
 * Explains the peer's bytes as the first count bytes of each operation, in order: exactly the
 * known count, and for an unknown one any prefix of its bytes (the cut is found by matching: the
 * longest match, or up to SLACK bytes less, in case the next bytes happen to continue it). With
 * truncated, the bytes may stop anywhere. Returns the counts, or how far the bytes could be
 * explained.
 */
function explain(segs: Seg[], got: Buffer, truncated: boolean): { counts: number[] } | { at: number; seg: number } {
  const SLACK = 64;
  const counts = new Array<number>(segs.length).fill(0);
  const failed = new Set<number>();
  let best = { at: -1, seg: -1 };
  const go = (i: number, p: number): boolean => {
    if (truncated && p === got.length) return true;
    if (i === segs.length) return p === got.length;
    const key = i * (got.length + 1) + p;
    if (failed.has(key)) return false;
    if (p > best.at || (p === best.at && i > best.seg)) best = { at: p, seg: i };
    const seg = segs[i]!;
    const l = commonPrefix(got, p, seg.op.data);
    if (seg.known !== null) {
      const c = seg.known;
      if (l >= c || (truncated && p + l === got.length)) {
        counts[i] = Math.min(c, l);
        if (go(i + 1, p + counts[i]!)) return true;
      }
    } else {
      for (let c = l; c >= Math.max(0, l - SLACK); c--) {
        counts[i] = c;
        if (go(i + 1, p + c)) return true;
      }
    }
    failed.add(key);
    return false;
  };
  return go(0, 0) ? { counts } : best;
}

/** The whole property's time budget (fast-check interrupts it after that); tap's timeout is a little longer. */
const TIME_LIMIT_MS = 80000 + Math.max(0, RUNS - DEFAULT_RUNS) * 4000;
// A campaign runs the file with node directly, where tap's default timeout would be 30 s.
t.setTimeout(TIME_LIMIT_MS + 60000);

t.test('property: overlapped sends, cancellations and thread exits keep exactly-once completions and the byte stream', { timeout: TIME_LIMIT_MS + 30000 }, async (t) => {
  const d = await daemon(t);
  const shared = await S.connect(d.url);
  t.teardown(() => shared.close());
  watchWire(shared);
  // One peer per receive buffer size: the size is set on the listening socket, before accepting.
  const peers = new Map<number, TcpPeer>();
  const peerFor = async (rcvBuf: number): Promise<TcpPeer> => {
    let p = peers.get(rcvBuf);
    if (!p) {
      p = await tcpPeer(t, 'ipv4', { paused: true });
      if (rcvBuf > 0) {
        const fd = fdOf(p.server);
        check(native !== null && fd !== null && native.setInt(fd, native.c.SOL_SOCKET, native.c.SO_RCVBUF, rcvBuf) === 0, `SO_RCVBUF ${rcvBuf} on the peer's listening socket`);
      }
      peers.set(rcvBuf, p);
    }
    return p;
  };
  const stats: Stats = { runs: 0, ops: 0, immediate: 0, pending: 0, failed: 0, cancelled: 0, partial: 0, oobOps: 0, completedLocally: 0, unanswered: 0, unreportedBytes: 0, maxRunMs: 0, slowest: '' };
  const paths: Paths = {
    close: 0,
    flush: 0,
    threadExit: 0,
    sessionClose: 0,
    sessionDrop: 0,
    peerReset: 0,
    shutdown: 0,
    neverReading: 0,
    oob: 0,
    sndBuf0: 0,
    smallPeerRcvBuf: 0,
    sndBuf0NeverReading: 0,
    endInflight: 0,
  };
  /** Operations still pending when each kind of ending came, over all runs. */
  const atEnding: Record<Ending, number> = { drain: 0, close: 0, 'session-close': 0, 'session-drop': 0, 'peer-reset': 0, shutdown: 0 };
  /** Every operation of every run: none may get a completion from the daemon after its run, either. */
  const allOps: Op[] = [];

  const runOnce = async (sc: Scenario): Promise<void> => {
    // Endings that end the session (or the daemon) need their own.
    let own: Daemon | null = null;
    let spi = shared;
    if (sc.ending === 'shutdown') own = await startServer({ port: 0 });
    // A dropped session must end at once (no resume), as a vanished client's does.
    if (sc.ending === 'session-close' || sc.ending === 'session-drop' || own) spi = await S.connect((own ?? d).url, { resume: false });
    const wire = watchWire(spi);
    const strayBefore = wire.stray;
    const peer = await peerFor(sc.peerRcvBuf);
    const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
    if (native) {
      const fd = fdOf(conn.socket);
      check(fd !== null, 'the peer connection has no descriptor');
      // Urgent bytes arrive inline, at their place in the stream (before any data is sent).
      check(native.setInt(fd!, native.c.SOL_SOCKET, native.c.SO_OOBINLINE, 1) === 0, 'SO_OOBINLINE on the peer');
      if (sc.peerRcvBuf > 0) {
        const rcv = native.getInt(fd!, native.c.SOL_SOCKET, native.c.SO_RCVBUF);
        check(rcv !== null && rcv <= 2 * sc.peerRcvBuf, `the peer connection did not inherit SO_RCVBUF ${sc.peerRcvBuf} (it has ${rcv})`);
      }
    }
    const e = S.out(0);
    const sb = new Uint8Array(4);
    new DataView(sb.buffer).setInt32(0, sc.sndBuf, true);
    check((await spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_SNDBUF, sb, 4, e)) === 0, `SO_SNDBUF: ${e.value}`);
    const t1 = spi.createThread();
    const exitable = [spi.createThread(), spi.createThread()];
    const threadName = (th: unknown): string => (th === spi ? 'main' : th === t1 ? 't1' : th === exitable[0] ? 't2' : 't3');
    let runner = 'none';
    const ops: Op[] = [];
    const inflight: Array<Promise<unknown>> = [];
    let closed = false;
    /** The session (or the daemon) is gone: no more calls to it. */
    let gone = false;
    let peerReset = false;
    let shutdownDone: Promise<void> | null = null;
    let cancellations = 0;
    let offset = 0;
    const hit = { close: false, flush: false, exit: false };
    const stopReader = burstyReader(conn.socket, sc.readerSeed, sc.stallAfter);

    const take = (n: number): Buffer => {
      if (offset + n > BIG.length) offset = 0;
      const b = BIG.subarray(offset, offset + n);
      offset += n;
      return b;
    };

    const issue = (a: SendAction, data: Buffer): Promise<unknown> => {
      const cuts = [...new Set(a.cuts.map((c) => c % (data.length + 1)))].sort((x, y) => x - y);
      const bounds = [0, ...cuts, data.length];
      const bufs: S.WSABUF[] = [];
      for (let i = 0; i + 1 < bounds.length; i++) bufs.push(S.wsabuf(data.subarray(bounds[i]!, bounds[i + 1]!)));
      while (bufs.length > 4) bufs.pop();
      const used = bufs.reduce((n, b) => n + b.len, 0);
      const opData = data.subarray(0, used);
      let issuer: S.SpiSession | S.SessionThread = spi;
      if (a.issuer === 1) issuer = t1;
      else if (a.issuer >= 2 && exitable[a.issuer - 2]!.isAlive) issuer = exitable[a.issuer - 2]!;
      const ev = a.method === 'event' ? spi.WSACreateEvent() : 0;
      const op: Op = {
        index: ops.length,
        data: opData,
        method: a.method,
        oob: a.oob,
        target: a.method === 'routine-main' ? 'main' : a.method === 'routine-t1' ? 't1' : null,
        issuedBy: threadName(issuer),
        ov: new S.WSAOVERLAPPED(ev),
        ev,
        ret: null,
        err: 0,
        completions: [],
        onWire: false,
        replied: false,
        wireCompletions: 0,
      };
      ops.push(op);
      allOps.push(op);
      const routine: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE | null = op.target
        ? (err, cb, lpov, flags) => {
            check(lpov === op.ov, `op ${op.index}: routine got another WSAOVERLAPPED`);
            check(flags === 0, `op ${op.index}: dwFlags ${flags}`);
            op.completions.push({ err, cb, runner });
          }
        : null;
      const threadId = op.target === 'main' ? spi.mainThread.id : op.target === 't1' ? t1.id : null;
      const sent = S.out(-7);
      const errno = S.out(0);
      const flags = (a.oob ? S.MSG_OOB : 0) | (a.badFlag ? S.MSG_PARTIAL : 0);
      // The SDK puts the call on the wire synchronously: the watch ties it to this operation.
      wire.issuing = op;
      let call: Promise<number>;
      try {
        call = issuer.WSPSend(s, bufs, bufs.length, sent, flags, op.ov, routine, threadId, errno);
      } finally {
        wire.issuing = null;
      }
      const p = call.then((ret) => {
        op.ret = ret;
        op.err = ret === 0 ? 0 : errno.value;
        if (ret === 0) check(sent.value === used, `op ${op.index}: returned 0 with lpNumberOfBytesSent ${sent.value}, expected ${used}`);
        else check(sent.value === -7, `op ${op.index}: failed (${errno.value}) but lpNumberOfBytesSent was written (${sent.value})`);
        // MSG_OOB needs the C library; without it the call fails at once.
        if (a.oob && !native && !a.badFlag && op.replied) check(ret !== 0 && op.err !== S.WSA_IO_PENDING, `op ${op.index}: MSG_OOB without the C library did not fail at once`);
      });
      inflight.push(p);
      return p;
    };

    /** Records newly signalled events as completions, and resets them to catch a second one. */
    const pollEvents = async (): Promise<void> => {
      for (const op of ops) {
        if (!op.ev) continue;
        if ((await spi.WSAWaitForMultipleEvents(1, [op.ev], false, 0, false)) !== S.WSA_WAIT_EVENT_0) continue;
        check(op.ov.Internal !== S.WSS_OPERATION_IN_PROGRESS, `op ${op.index}: event signalled while still pending`);
        op.completions.push({ err: op.ov.OffsetHigh, cb: op.ov.InternalHigh, runner: 'event' });
        spi.WSAResetEvent(op.ev);
      }
    };

    const alert = async (th: S.SpiSession | S.SessionThread, ms: number): Promise<void> => {
      runner = threadName(th);
      await th.SleepEx(ms, true);
      runner = 'none';
    };

    const closeSocket = async (): Promise<void> => {
      check((await spi.WSPCloseSocket(s, S.out(0))) === 0, 'WSPCloseSocket failed');
      closed = true;
    };

    try {
      if (sc.prefill > 0) await issue(snd(sc.prefill, 'routine-main'), take(sc.prefill));
      for (const [i, a] of sc.actions.entries()) {
        switch (a.kind) {
          case 'send': {
            const p = issue(a, take(a.total));
            if (!a.concurrent) await p;
            break;
          }
          case 'flush': {
            const r = await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, S.out(0));
            if (r === 0) {
              cancellations++;
              hit.flush = true;
            }
            break;
          }
          case 'exit': {
            const th = exitable[a.thread - 2]!;
            if (th.isAlive) {
              await th.exit();
              cancellations++;
              hit.exit = true;
            }
            break;
          }
          case 'close':
            if (!closed) {
              await closeSocket();
              cancellations++;
              hit.close = true;
            }
            break;
          case 'alert':
            await alert(a.thread === 0 ? spi : t1, a.ms);
            break;
          case 'sleep':
            // Time is the point: a pause of the generated program, letting the daemon and the peer move.
            await sleep(a.ms);
            break;
        }
        // With endInflight the ending follows the last (concurrent) send at once.
        if (!(sc.endInflight && i === sc.actions.length - 1)) await pollEvents();
      }
      if (!sc.endInflight) await Promise.all(inflight);
      const accounted = (op: Op): boolean => {
        if (op.ret === null) return false;
        const live = op.ret === 0 || op.err === S.WSA_IO_PENDING;
        if (!live) return true;
        if (op.method === 'poll') return op.ov.Internal !== S.WSS_OPERATION_IN_PROGRESS;
        return op.completions.length > 0;
      };
      /** Runs routines and watches events until every operation has completed (or ms passed). */
      const awaitCompletions = async (ms: number): Promise<void> => {
        const deadline = Date.now() + ms;
        while (Date.now() < deadline && !(ops.every(accounted) && spi.pendingOperations === 0)) {
          await alert(spi, 2);
          await alert(t1, 2);
          await pollEvents();
        }
      };
      // The ending. Every path but 'drain' cancels what is pending, with the peer no longer
      // reading: every operation must then complete without the peer taking another byte.
      if (sc.ending !== 'drain') {
        stopReader();
        conn.socket.pause();
      }
      atEnding[sc.ending] += ops.filter((op) => op.ov.pending).length;
      switch (sc.ending) {
        case 'drain':
          break;
        case 'close':
          if (!closed) {
            await closeSocket();
            cancellations++;
            hit.close = true;
          }
          break;
        case 'session-close':
          gone = true;
          await spi.close();
          cancellations++;
          break;
        case 'session-drop':
          gone = true;
          spi.connection.terminate();
          cancellations++;
          break;
        case 'peer-reset':
          peerReset = true;
          conn.socket.resetAndDestroy();
          cancellations++;
          break;
        case 'shutdown':
          gone = true;
          shutdownDone = own!.close();
          cancellations++;
          break;
      }
      await Promise.all(inflight);
      if (sc.ending !== 'drain') {
        await awaitCompletions(8000);
        const left = ops.filter((op) => !accounted(op));
        check(
          left.length === 0 && spi.pendingOperations === 0,
          `after the ${sc.ending}, with the peer not reading, ${spi.pendingOperations} operation(s) still pending: ${left.map((op) => `op ${op.index} (${op.data.length} bytes, ${op.method}, returned ${op.ret}/${op.err})`).join('; ')}`,
        );
      }
      // Let everything drain: the peer reads freely now; run routines and watch events.
      stopReader();
      if (!peerReset) conn.socket.resume();
      await awaitCompletions(8000);
      // One more round of everything: nothing may complete a second time.
      await alert(spi, 5);
      await alert(t1, 5);
      await pollEvents();
      check(spi.pendingOperations === 0, `${spi.pendingOperations} operations still pending after the drain`);

      // Per-operation verdicts: every problem of every operation, then the stream.
      const ended = sc.ending === 'session-close' || sc.ending === 'session-drop';
      const localCode = sc.ending === 'session-close' ? S.WSA_OPERATION_ABORTED : S.WSAENETDOWN;
      const allowed = new Set<number>([S.WSA_OPERATION_ABORTED]);
      if (sc.ending === 'shutdown') allowed.add(S.WSAENETDOWN);
      const broken = new Set<number>(peerReset ? [S.WSAECONNRESET, S.WSAECONNABORTED] : []);
      const problems: string[] = [];
      const segs: Seg[] = [];
      let partials = 0;
      for (const op of ops) {
        stats.ops++;
        if (op.oob) stats.oobOps++;
        const tag = `op ${op.index} (${op.data.length} bytes${op.oob ? ', MSG_OOB' : ''}, ${op.method}, by ${op.issuedBy}, returned ${op.ret}/${op.err})`;
        const live = op.ret === 0 || op.err === S.WSA_IO_PENDING;
        if (!live) {
          stats.failed++;
          if (op.completions.length !== 0) problems.push(`${tag}: failed at once but completed ${op.completions.length} time(s): ${JSON.stringify(op.completions)}`);
          if (op.wireCompletions !== 0) problems.push(`${tag}: failed at once but the daemon sent ${op.wireCompletions} completion(s)`);
          if (op.onWire && !op.replied) {
            // The session went away under the call: the daemon may have run it, or not.
            stats.unanswered++;
            if (!(gone && op.err === S.WSAENETDOWN)) problems.push(`${tag}: the call got no reply`);
            segs.push({ op, known: null });
          }
          continue;
        }
        if (op.ret === 0) stats.immediate++;
        else stats.pending++;
        let err: number;
        let cb: number;
        if (op.method === 'poll') {
          const cbOut = S.out(-1);
          const eOut = S.out(0);
          const r = await spi.WSPGetOverlappedResult(s, op.ov, cbOut, false, S.out(0), eOut);
          err = r === S.TRUE ? 0 : eOut.value;
          cb = cbOut.value;
          if (err === S.WSA_IO_INCOMPLETE) {
            problems.push(`${tag}: never completed`);
            continue;
          }
        } else {
          if (op.completions.length !== 1) {
            problems.push(`${tag}: completed ${op.completions.length} times: ${JSON.stringify(op.completions)}`);
            continue;
          }
          const c = op.completions[0]!;
          err = c.err;
          cb = c.cb;
          if (op.target && c.runner !== op.target) problems.push(`${tag}: routine ran on ${c.runner}, expected ${op.target}`);
        }
        if (op.wireCompletions > 1) problems.push(`${tag}: the daemon sent ${op.wireCompletions} completions`);
        if (op.wireCompletions === 0) {
          // Completed by the SDK as the session went away; its count cannot be known.
          stats.completedLocally++;
          if (!ended) problems.push(`${tag}: completed (${err}/${cb}) without a completion from the daemon`);
          else if (err !== localCode || cb !== 0) problems.push(`${tag}: completed locally with ${err}/${cb}, expected ${localCode}/0`);
          segs.push({ op, known: null });
          continue;
        }
        if (op.ret === 0 && (err !== 0 || cb !== op.data.length)) problems.push(`${tag}: returned 0 but completed with ${err}/${cb}`);
        if (err === 0) {
          if (cb !== op.data.length) problems.push(`${tag}: success with ${cb} bytes`);
          segs.push({ op, known: op.data.length });
        } else if (broken.has(err)) {
          // The connection broke: the count is what the buffer took, not what reached the peer.
          stats.cancelled++;
          if (cb < 0 || cb > op.data.length) problems.push(`${tag}: broken with ${cb} bytes`);
          segs.push({ op, known: null });
        } else {
          stats.cancelled++;
          if (!allowed.has(err)) problems.push(`${tag}: completed with error ${err}, expected one of ${[...allowed, ...broken].join(', ')}`);
          if (!(cb >= 0 && (cb < op.data.length || op.data.length === 0))) problems.push(`${tag}: cancelled with ${cb} bytes`);
          if (cb > 0) partials++;
          segs.push({ op, known: Math.max(0, Math.min(cb, op.data.length)) });
        }
      }
      if (problems.length > 0) throw new PropertyFailure(`${problems.length} problem(s) with completions:\n  ${problems.join('\n  ')}`);
      check(wire.stray === strayBefore, `the daemon sent ${wire.stray - strayBefore} completion(s) for operations never issued`);

      // The byte stream at the peer.
      if (!closed && !gone && !peerReset) await closeSocket();
      else if (!closed && peerReset) await spi.WSPCloseSocket(s, S.out(0));
      closed = true;
      if (shutdownDone) await shutdownDone;
      let got: Buffer;
      if (peerReset) got = conn.received();
      else {
        let timer: NodeJS.Timeout | undefined;
        const fin = await Promise.race([conn.ended.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 8000)))]);
        clearTimeout(timer);
        got = conn.received();
        check(fin, `the peer did not see FIN (received ${got.length} bytes)`);
      }
      if (segs.every((g) => g.known !== null) && !peerReset) {
        const want = Buffer.concat(segs.map((g) => g.op.data.subarray(0, g.known!)));
        if (!got.equals(want)) {
          let at = 0;
          while (at < got.length && at < want.length && got[at] === want[at]) at++;
          // Which operation's bytes were expected there.
          let start = 0;
          let where = 'after the last operation';
          for (const g of segs) {
            if (at < start + g.known!) {
              where = `byte ${at - start} of the ${g.known} of op ${g.op.index}${g.op.oob ? ' (MSG_OOB)' : ''}`;
              break;
            }
            start += g.known!;
          }
          throw new PropertyFailure(`the peer received ${got.length} bytes, expected ${want.length}; first difference at byte ${at}, ${where}`);
        }
      } else {
        const r = explain(segs, got, peerReset);
        if ('at' in r) {
          const g = segs[r.seg];
          throw new PropertyFailure(
            `the peer's ${got.length} bytes are not the operations' bytes in order: explained up to byte ${r.at}, at op ${g ? g.op.index : 'end'} (${g ? (g.known === null ? 'count unknown' : `reported ${g.known}`) : 'no more operations'})`,
          );
        }
        const unreported: string[] = [];
        for (const [i, g] of segs.entries()) {
          if (g.known !== null) continue;
          const c = r.counts[i]!;
          if (!peerReset && c > 0 && c < g.op.data.length) partials++;
          if (g.op.wireCompletions === 0 && c > 0) {
            stats.unreportedBytes += c;
            unreported.push(`op ${g.op.index} (${g.op.data.length} bytes, ${g.op.method}, returned ${g.op.ret}/${g.op.err}): reported 0 bytes, the peer received ${c}`);
          }
        }
        check(!STRICT_SESSION_END || unreported.length === 0, `after the ${sc.ending}, the peer received bytes no completion reported:\n  ${unreported.join('\n  ')}`);
      }
      stats.partial += partials;
      check(partials <= cancellations, `${partials} cancelled operations sent part of their bytes, but there were only ${cancellations} cancellations`);
      for (const op of ops) {
        if (op.ev) {
          check((await spi.WSAWaitForMultipleEvents(1, [op.ev], false, 0, false)) === S.WSA_WAIT_TIMEOUT, `op ${op.index}: event signalled a second time`);
          spi.WSACloseEvent(op.ev);
        }
      }
      stats.runs++;
      const liveOob = ops.some((op) => op.oob && (op.ret === 0 || op.err === S.WSA_IO_PENDING));
      const stalled = sc.stallAfter !== null;
      paths.close += hit.close ? 1 : 0;
      paths.flush += hit.flush ? 1 : 0;
      paths.threadExit += hit.exit ? 1 : 0;
      paths.sessionClose += sc.ending === 'session-close' ? 1 : 0;
      paths.sessionDrop += sc.ending === 'session-drop' ? 1 : 0;
      paths.peerReset += sc.ending === 'peer-reset' ? 1 : 0;
      paths.shutdown += sc.ending === 'shutdown' ? 1 : 0;
      paths.neverReading += stalled ? 1 : 0;
      paths.oob += liveOob ? 1 : 0;
      paths.sndBuf0 += sc.sndBuf === 0 ? 1 : 0;
      paths.smallPeerRcvBuf += sc.peerRcvBuf > 0 ? 1 : 0;
      paths.sndBuf0NeverReading += sc.sndBuf === 0 && stalled ? 1 : 0;
      paths.endInflight += sc.endInflight ? 1 : 0;
    } finally {
      stopReader();
      if (!closed && !gone) await spi.WSPCloseSocket(s, S.out(0));
      for (const th of [t1, ...exitable]) await th.exit();
      conn.socket.destroy();
      if (spi !== shared) await spi.close();
      if (own) await own.close();
    }
  };

  const prop = fc.asyncProperty(scenarioArb, async (sc) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PropertyFailure(`run took longer than ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS);
    });
    const began = Date.now();
    try {
      await Promise.race([runOnce(sc), timeout]);
    } finally {
      clearTimeout(timer);
      const ms = Date.now() - began;
      if (ms > stats.maxRunMs) {
        stats.maxRunMs = ms;
        stats.slowest = `${sc.ending}, SO_SNDBUF ${sc.sndBuf}, prefill ${sc.prefill}`;
      }
    }
  });

  const started = Date.now();
  const replay = SEED !== undefined ? { seed: SEED, ...(PATH ? { path: PATH } : {}) } : {};
  try {
    await fc.assert(prop, {
      numRuns: RUNS,
      examples: EXAMPLES.map((sc): [Scenario] => [sc]),
      endOnFailure: true,
      interruptAfterTimeLimit: TIME_LIMIT_MS,
      markInterruptAsFailure: true,
      ...replay,
    });
    t.pass(`${RUNS} random runs hold the properties`);
  } catch (err) {
    // fast-check keeps the property's own error as the cause.
    const cause = (err as Error).cause;
    t.fail(`${(err as Error).message}${cause instanceof Error ? `\n${cause.message}` : ''}`);
  }
  t.comment(`stats: ${JSON.stringify(stats)} in ${Date.now() - started} ms`);
  t.comment(`runs per path: ${JSON.stringify(paths)}`);
  t.comment(`operations pending when the ending came: ${JSON.stringify(atEnding)}`);
  t.ok(allOps.every((op) => op.wireCompletions <= 1), 'no operation got a second completion from the daemon, even after its run');
  // The scenarios must have exercised what they claim to.
  t.ok(stats.pending > 0, `some operations were pending (${stats.pending})`);
  t.ok(stats.immediate > 0, `some completed at once (${stats.immediate})`);
  t.ok(stats.cancelled > 0, `some were cancelled (${stats.cancelled})`);
  t.ok(stats.failed > 0, `some failed at once (${stats.failed})`);
  if (SEED === undefined) {
    // The examples take every path (a replay of one failure need not).
    for (const k of ['close', 'flush', 'threadExit', 'sessionClose', 'sessionDrop', 'peerReset', 'shutdown', 'sndBuf0'] as const) t.ok(paths[k] > 0, `some runs took the ${k} path (${paths[k]})`);
    if (native) for (const k of ['neverReading', 'oob', 'smallPeerRcvBuf', 'sndBuf0NeverReading'] as const) t.ok(paths[k] > 0, `some runs took the ${k} path (${paths[k]})`);
  }
});

// Found by this property: when the session's connection dropped (or the daemon shut down) while
// an overlapped call awaited its reply, the SDK both failed the call at once (SOCKET_ERROR,
// WSAENETDOWN) and completed the operation (its event signalled, its routine queued), because
// abandonOps() completed every operation it tracked, including those whose call was never
// answered. Exactly one of the two may happen.
t.test('a call in flight when the session drops either fails at once or completes, not both', async (t) => {
  const d = await daemon(t);
  const spi = await S.connect(d.url);
  t.teardown(() => spi.close());
  const peer = await tcpPeer(t, 'ipv4', { paused: true });
  const { s } = await overlappedTcp(spi, 'ipv4', peer);
  const ev = spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const e = S.out(0);
  const call = spi.WSPSend(s, [S.wsabuf(Buffer.alloc(100))], 1, S.out(-1), 0, ov, null, null, e);
  // The call has not even left yet (the SDK sends at the end of the tick).
  spi.connection.terminate();
  const ret = await call;
  const failedAtOnce = ret === S.SOCKET_ERROR && e.value !== S.WSA_IO_PENDING;
  const signalled = (await spi.WSAWaitForMultipleEvents(1, [ev], false, 1000, false)) === S.WSA_WAIT_EVENT_0;
  t.ok(failedAtOnce || signalled, `an outcome: the call returned ${ret}/${e.value}; the event was ${signalled ? '' : 'not '}signalled`);
  t.ok(!(failedAtOnce && signalled), `not both: the call returned ${ret}/${e.value}; the event was ${signalled ? '' : 'not '}signalled (OffsetHigh ${ov.OffsetHigh})`);
});
