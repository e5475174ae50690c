/**
 * Property: random mixes of overlapped sends (sizes 0..40000 in 1..4 buffers, and MSG_OOB sends of
 * 1..16 bytes, issued by several threads, completing by routine, event or plain polling), with
 * SO_SNDBUF 0 or small, against a node:net peer that reads slowly and in bursts, or that stops
 * reading for good behind a small receive buffer, with WSPCloseSocket, SIO_FLUSH and thread exits
 * interleaved. A run ends with the peer draining everything, or with WSPCloseSocket while the
 * peer does not read: every operation must then complete without the peer taking another byte.
 *
 * For every run, per operation:
 * - one that returned 0 or WSA_IO_PENDING completes exactly once (routine run once, on its target
 *   thread; event signalled once), and the daemon sent exactly one completion for it (counted on
 *   the wire: in a reply or a notification); one that failed at once never completes;
 * - a call that returned 0 completed with every byte;
 * - the peer receives exactly, in submission order, the bytes of each operation that completed
 *   successfully and, of each cancelled one, the prefix it reported (cbTransferred), which is
 *   empty except for at most one operation per cancellation (the one cut mid-way).
 * A failure lists every operation that broke these, by index.
 *
 * Campaigns: SPIWIRE_PROPERTY_RUNS=n runs n scenarios instead of 25; run the compiled file with
 * node directly (tap's 120 s file timeout would stop a long one):
 *   npx tsc -b && SPIWIRE_PROPERTY_RUNS=1000 node test/dist/e2e/overlapped-property.test.js
 * SPIWIRE_PROPERTY_SEED (and SPIWIRE_PROPERTY_PATH) replay a failure fast-check reported.
 */
import t from 'tap';
import fc from 'fast-check';
import * as S from '@spiwire/client';
import { fdOf, libc } from '@spiwire/server/internals';
import { daemon, overlappedTcp, pattern, rng, session, sleep, tcpPeer, type TcpPeer } from '../helpers/harness.js';

const native = libc();
const MiB = 1024 * 1024;
const BIG = pattern(8 * MiB, 0x5eed);
const RUN_TIMEOUT_MS = 15000;
const DEFAULT_RUNS = 25;

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
 * How a run ends: 'drain' lets the peer read everything, then closes; 'close' closes the socket
 * first, with the peer not reading, and only then may the peer read again.
 */
type Ending = 'drain' | 'close';

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
  actions: Action[];
}

/** A send action with defaults. */
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
  let { peerRcvBuf, stallAfter, ending } = sc;
  // Without the C library the peer's buffer cannot be made small: it would swallow everything.
  if (!native) {
    peerRcvBuf = 0;
    stallAfter = null;
  }
  if (stallAfter !== null) {
    if (peerRcvBuf === 0) peerRcvBuf = 32768;
    if (ending === 'drain') ending = 'close';
  }
  return { ...sc, peerRcvBuf, stallAfter, ending };
}

const scenarioArb: fc.Arbitrary<Scenario> = fc
  .record({
    prefill: fc.constantFrom(0, 1 * MiB, 4 * MiB, 6 * MiB),
    sndBuf: fc.oneof({ arbitrary: fc.constant(0), weight: 2 }, { arbitrary: fc.constantFrom(1024, 8192, 65536), weight: 3 }),
    peerRcvBuf: fc.constantFrom(0, 0, 16384, 32768, 65536),
    readerSeed: fc.integer({ min: 1, max: 0x7fffffff }),
    stallAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 7 }, { arbitrary: fc.integer({ min: 0, max: 12 }), weight: 3 }),
    ending: fc.oneof({ arbitrary: fc.constant<Ending>('drain'), weight: 4 }, { arbitrary: fc.constant<Ending>('close'), weight: 3 }),
    actions: fc.array(actionArb, { minLength: 5, maxLength: 30, size: 'max' }),
  })
  .map(settle);

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
  /** The daemon answered the call. */
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
  maxRunMs: number;
  /** The ending of the slowest run. */
  slowest: string;
}

class PropertyFailure extends Error {}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new PropertyFailure(msg);
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

function watchWire(spi: S.SpiSession): WireWatch {
  const w: WireWatch = { issuing: null, stray: 0 };
  const byWireOp = new Map<number, Op>();
  const rpc = spi.connection;
  const call = rpc.call.bind(rpc);
  rpc.call = (method, params, onReply) => {
    const ov = params['overlapped'] as { op: number } | undefined;
    const op = w.issuing;
    if (!ov || !op) return call(method, params, onReply);
    byWireOp.set(ov.op, op);
    op.onWire = true;
    return call(method, params, (r) => {
      op.replied = true;
      if (r['completion']) op.wireCompletions++;
      onReply?.(r);
    });
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
  return w;
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

/** The whole property's time budget (fast-check interrupts it after that); tap's timeout is a little longer. */
const TIME_LIMIT_MS = 80000 + Math.max(0, RUNS - DEFAULT_RUNS) * 4000;
// A campaign runs the file with node directly, where tap's default timeout would be 30 s.
t.setTimeout(TIME_LIMIT_MS + 60000);

t.test('property: overlapped sends, cancellations and thread exits keep exactly-once completions and the byte stream', { timeout: TIME_LIMIT_MS + 30000 }, async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const wire = watchWire(spi);
  /** Every operation of every run: none may get a completion from the daemon after its run, either. */
  const allOps: Op[] = [];
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
  const stats: Stats = { runs: 0, ops: 0, immediate: 0, pending: 0, failed: 0, cancelled: 0, partial: 0, oobOps: 0, maxRunMs: 0, slowest: '' };

  const runOnce = async (sc: Scenario): Promise<void> => {
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
    let cancellations = 0;
    let offset = 0;
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
        if (a.oob && !native && !a.badFlag) check(ret !== 0 && op.err !== S.WSA_IO_PENDING, `op ${op.index}: MSG_OOB without the C library did not fail at once`);
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
      for (const a of sc.actions) {
        switch (a.kind) {
          case 'send': {
            const p = issue(a, take(a.total));
            if (!a.concurrent) await p;
            break;
          }
          case 'flush': {
            const r = await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, S.out(0));
            if (r === 0) cancellations++;
            break;
          }
          case 'exit': {
            const th = exitable[a.thread - 2]!;
            if (th.isAlive) {
              await th.exit();
              cancellations++;
            }
            break;
          }
          case 'close':
            if (!closed) {
              await closeSocket();
              cancellations++;
            }
            break;
          case 'alert':
            await alert(a.thread === 0 ? spi : t1, a.ms);
            break;
          case 'sleep':
            await sleep(a.ms);
            break;
        }
        await pollEvents();
      }
      await Promise.all(inflight);
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
      // The ending. 'close' cancels what is pending with the peer no longer reading: every
      // operation must then complete without the peer taking another byte (issue 11: with
      // SO_SNDBUF 0, a send whose bytes all went to the kernel side never completed).
      if (sc.ending === 'close') {
        stopReader();
        conn.socket.pause();
        if (!closed) {
          await closeSocket();
          cancellations++;
        }
        await awaitCompletions(8000);
        const left = ops.filter((op) => !accounted(op));
        check(
          left.length === 0 && spi.pendingOperations === 0,
          `after the ${sc.ending}, with the peer not reading, ${spi.pendingOperations} operation(s) still pending: ${left.map((op) => `op ${op.index} (${op.data.length} bytes, ${op.method}, returned ${op.ret}/${op.err})`).join('; ')}`,
        );
      }
      // Let everything drain: the peer reads freely now; run routines and watch events.
      stopReader();
      conn.socket.resume();
      await awaitCompletions(8000);
      // One more round of everything: nothing may complete a second time.
      await alert(spi, 5);
      await alert(t1, 5);
      await pollEvents();
      check(spi.pendingOperations === 0, `${spi.pendingOperations} operations still pending after the drain`);

      // Per-operation verdicts: every problem of every operation, then the stream.
      const problems: string[] = [];
      const expected: Buffer[] = [];
      const expectedOps: Op[] = [];
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
          if (op.onWire && !op.replied) problems.push(`${tag}: the call got no reply`);
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
        if (op.wireCompletions !== 1) problems.push(`${tag}: the daemon sent ${op.wireCompletions} completions`);
        if (op.ret === 0 && (err !== 0 || cb !== op.data.length)) problems.push(`${tag}: returned 0 but completed with ${err}/${cb}`);
        if (err === 0) {
          if (cb !== op.data.length) problems.push(`${tag}: success with ${cb} bytes`);
          expected.push(op.data);
          expectedOps.push(op);
        } else {
          stats.cancelled++;
          if (err !== S.WSA_OPERATION_ABORTED) problems.push(`${tag}: completed with error ${err}, expected WSA_OPERATION_ABORTED`);
          if (!(cb >= 0 && (cb < op.data.length || op.data.length === 0))) problems.push(`${tag}: cancelled with ${cb} bytes`);
          if (cb > 0) partials++;
          expected.push(op.data.subarray(0, Math.max(0, Math.min(cb, op.data.length))));
          expectedOps.push(op);
        }
      }
      if (problems.length > 0) throw new PropertyFailure(`${problems.length} problem(s) with completions:\n  ${problems.join('\n  ')}`);
      check(wire.stray === strayBefore, `the daemon sent ${wire.stray - strayBefore} completion(s) for operations never issued`);
      stats.partial += partials;
      check(partials <= cancellations, `${partials} cancelled operations sent part of their bytes, but there were only ${cancellations} cancellations`);

      // The byte stream at the peer.
      if (!closed) await closeSocket();
      const want = Buffer.concat(expected);
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([conn.ended.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 8000)))]);
      clearTimeout(timer);
      check(ended, `the peer did not see FIN (received ${conn.received().length} of ${want.length} bytes)`);
      const got = conn.received();
      if (!got.equals(want)) {
        let at = 0;
        while (at < got.length && at < want.length && got[at] === want[at]) at++;
        // Which operation's bytes were expected there.
        let start = 0;
        let where = 'after the last operation';
        for (const [i, b] of expected.entries()) {
          if (at < start + b.length) {
            const op = expectedOps[i]!;
            where = `byte ${at - start} of the ${b.length} of op ${op.index}${op.oob ? ' (MSG_OOB)' : ''}`;
            break;
          }
          start += b.length;
        }
        throw new PropertyFailure(`the peer received ${got.length} bytes, expected ${want.length}; first difference at byte ${at}, ${where}`);
      }
      for (const op of ops) {
        if (op.ev) {
          check((await spi.WSAWaitForMultipleEvents(1, [op.ev], false, 0, false)) === S.WSA_WAIT_TIMEOUT, `op ${op.index}: event signalled a second time`);
          spi.WSACloseEvent(op.ev);
        }
      }
      stats.runs++;
    } finally {
      stopReader();
      if (!closed) await spi.WSPCloseSocket(s, S.out(0));
      for (const th of [t1, ...exitable]) await th.exit();
      conn.socket.destroy();
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
    await fc.assert(prop, { numRuns: RUNS, endOnFailure: true, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: true, ...replay });
    t.pass(`${RUNS} random runs hold the properties`);
  } catch (err) {
    // fast-check keeps the property's own error as the cause.
    const cause = (err as Error).cause;
    t.fail(`${(err as Error).message}${cause instanceof Error ? `\n${cause.message}` : ''}`);
  }
  t.comment(`stats: ${JSON.stringify(stats)} in ${Date.now() - started} ms`);
  t.ok(allOps.every((op) => op.wireCompletions <= 1), 'no operation got a second completion from the daemon, even after its run');
  // The scenarios must have exercised what they claim to.
  t.ok(stats.pending > 0, `some operations were pending (${stats.pending})`);
  t.ok(stats.immediate > 0, `some completed at once (${stats.immediate})`);
  t.ok(stats.cancelled > 0, `some were cancelled (${stats.cancelled})`);
  t.ok(stats.failed > 0, `some failed at once (${stats.failed})`);
});
