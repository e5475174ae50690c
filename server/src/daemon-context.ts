/** What every session of one daemon shares. */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { HandleTable } from './handles.js';
import { PortReservations } from './sockets/port-reservations.js';
import { AllowList } from './allow-list.js';
import { RateLimitedLog } from './rate-limited-log.js';
import { descriptorBudget } from './descriptor-limit.js';
import { HeldBytes, ReceivedBytes } from './held-bytes.js';
import { Bookkeeping } from './bookkeeping.js';
import { Draining } from './draining.js';
import { DaemonFaults } from './faults/operator-rules.js';
import { DaemonMetrics } from './metrics.js';
import { ConnectionSlots, HTTP_HEADROOM } from './connection-slots.js';
import { READER_SLOTS, ReadSlots, TURN_BYTES } from './read-slots.js';
import { QUICK_MESSAGE_BYTES, TurnBudget } from './turn-budget.js';
import { PartialFrames } from './partial-frames.js';
import { SharedBudget } from './shared-budget.js';
import type { OutputFlow } from './output-flow.js';
import type { TraceDirectory } from './trace-directory.js';
import type { GcStats } from './gc-stats.js';

/** Milliseconds of calls per frame for a lone session (turn-budget.ts). */
const TURN_BUDGET_MS = 4;
/**
 * Milliseconds of calls per turn of the event loop for all sessions together once several work
 * in it: a call from a quiet session waits about this long behind busy ones, plus the reading of
 * each busy session's next frame. 4 (the lone slice) kept turns at 8-10 ms under 32 bulk senders.
 */
const SHARED_TURN_MS = 1;

export interface DaemonLimits {
  /** Largest WebSocket message accepted, in bytes. */
  maxFrameBytes: number;
  /** Bytes of messages still arriving that all connections together may hold (partial-frames.ts). */
  partialFramesBudget: number;
  /** Unanswered requests one session may have (with or without an id). */
  maxPendingRequests: number;
  /** Open sockets one session may hold (WSAEMFILE beyond). */
  maxSocketsPerSession: number;
  /** Open sockets, and connections queued on listeners, of every session together (WSAEMFILE beyond). */
  maxSocketsTotal: number;
  /** WebSocket sessions at once; more upgrades get HTTP 503. */
  maxSessions: number;
  /** SO_SNDBUF of a new socket: the transport buffer size. */
  defaultSndBuf: number;
  /** SO_RCVBUF of a new socket. */
  defaultRcvBuf: number;
  /** Pending overlapped operations one socket may have; more fail with WSAEWOULDBLOCK (as on Windows NT). */
  maxOutstandingOpsPerSocket: number;
  /** Bytes the daemon may hold for one session's sends (queued or on their way to the kernel); beyond, WSAENOBUFS. */
  sessionQuotaBytes: number;
  /** Bytes the daemon may hold for sends of every session, ended ones included; beyond, WSAENOBUFS. */
  heldBytesBudget: number;
  /** Bytes sockets of every session received and no receive took; beyond, sockets of sessions above their share stop reading. */
  receivedBudgetBytes: number;
  /** The daemon's memory for waiting calls and pending operations of every session (bookkeeping.ts); beyond, sessions above their share get TOO_MANY_REQUESTS. */
  bookkeepingBudgetBytes: number;
  /** How long the connections of an ended session may go on delivering bytes before they are reset (ms). */
  lingerMs: number;
  /**
   * How long a new connection has to finish its TLS handshake, and each request on it to send its
   * headers, before the connection is closed (ms; 0: no limit). Connections that never get that
   * far would otherwise hold the daemon's connection slots (maxSessions + 64) for minutes.
   */
  handshakeTimeoutMs: number;
  /** At shutdown, how long accepted bytes may take to reach the kernel before their connections are reset (ms). */
  drainMs: number;
  /** Unsent output of one session above which the daemon stops reading its requests and its sockets. */
  outputHighWaterBytes: number;
  /** Unsent output of one session above which the session is ended (close code 4008). */
  outputLimitBytes: number;
  /** Output waiting for clients (unsent or kept for a resume), all sessions; beyond, the session with the most is ended (4008). */
  outputBudgetBytes: number;
  /** How long a session's output may make no progress while above the high water mark before it is ended (ms). */
  outputStallMs: number;
  /** How many bytes of a streamed send (one larger than a message) the client may send beyond what the daemon has taken. */
  streamWindowBytes: number;
  /** How long a session whose connection dropped waits for a resume, in ms; 0: it ends at once (no resume). */
  resumeGraceMs: number;
  /** Bytes of output not acknowledged by the client that a resumable session keeps; beyond, it cannot be resumed. */
  replayLimitBytes: number;
  /** The same bytes, all sessions together; beyond, the session keeping the most can no longer be resumed. */
  replayBudgetBytes: number;
  /** The send policy of new sockets: 0 the reference page's, 1 Windows' observed one (SO_SPIWIRE_SEND_POLICY). */
  sendPolicy: number;
  /** Sessions that may read more than a few KiB in one turn of the event loop (read-slots.ts); 0: no limit. */
  readerSlots: number;
}

/**
 * The partial-frame budget in force: a given one as it is, else the default or twice
 * maxFrameBytes, whichever is more; null when a given one holds less than two messages of the
 * largest size (the command line and startServer each refuse that in their own way).
 */
export function partialFramesBudgetOf(given: number | undefined, maxFrameBytes: number): number | null {
  const budget = given ?? Math.max(DEFAULT_LIMITS.partialFramesBudget, 2 * maxFrameBytes);
  return budget < 2 * maxFrameBytes ? null : budget;
}

const descriptors = descriptorBudget();

/** The longest delay a node timer takes (2^31 - 1 ms, about 24.8 days): the most a limit in ms may be. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const DEFAULT_LIMITS: DaemonLimits = {
  maxFrameBytes: 16 * 1024 * 1024,
  partialFramesBudget: 256 * 1024 * 1024,
  maxPendingRequests: 65536,
  maxSocketsPerSession: descriptors.maxSocketsPerSession,
  maxSocketsTotal: descriptors.maxSocketsTotal,
  maxSessions: descriptors.maxSessions,
  defaultSndBuf: 65536,
  defaultRcvBuf: 65536,
  maxOutstandingOpsPerSocket: 4096,
  sendPolicy: 0,
  readerSlots: READER_SLOTS,
  sessionQuotaBytes: 256 * 1024 * 1024,
  heldBytesBudget: 1024 * 1024 * 1024,
  receivedBudgetBytes: 1024 * 1024 * 1024,
  bookkeepingBudgetBytes: 256 * 1024 * 1024,
  lingerMs: 30_000,
  handshakeTimeoutMs: 10_000,
  drainMs: 5_000,
  outputHighWaterBytes: 8 * 1024 * 1024,
  outputLimitBytes: 64 * 1024 * 1024,
  outputBudgetBytes: 1024 * 1024 * 1024,
  outputStallMs: 30_000,
  streamWindowBytes: 8 * 1024 * 1024,
  resumeGraceMs: 30_000,
  replayLimitBytes: 64 * 1024 * 1024,
  replayBudgetBytes: 1024 * 1024 * 1024,
};

export class DaemonContext {
  readonly handles = new HandleTable();
  readonly ports = new PortReservations();
  shuttingDown = false;
  /** Where sessions write their side of the call trace (--trace-dir), or null for no trace. */
  traces: TraceDirectory | null = null;
  /** Debug lines about what clients got wrong, rate-limited (a client must not flood the log). */
  readonly clientMistakes: RateLimitedLog;
  /** Bytes held for sends, daemon-wide, against limits.heldBytesBudget. */
  readonly held: HeldBytes;
  /** The daemon's memory for what waits, daemon-wide, against limits.bookkeepingBudgetBytes. */
  readonly bookkeeping: Bookkeeping;
  /** Bytes received and not yet taken, daemon-wide, against limits.receivedBudgetBytes. */
  readonly received: ReceivedBytes;
  /** Closed connections still delivering accepted bytes. */
  readonly draining: Draining;
  /** Connections waiting on listeners to be accepted: they hold descriptors too. */
  queuedConnections = 0;
  /** The operator's fault rules (HTTP /faults, --faults): every session asks them after its own. */
  readonly faults: DaemonFaults;
  /** Prometheus metrics (GET /metrics): counters the hot path adds to, gauges read at scrape time. */
  readonly metrics = new DaemonMetrics();
  /** The garbage collector's counts and the bytes allocated (/stats), once the daemon listens. */
  gc: GcStats | null = null;
  /** Names this daemon process in resume offers: a resume naming another is refused (not-here). */
  readonly daemonId = randomUUID();
  /** Where clients reconnect to resume, when not the URL they first used (--resume-url). */
  resumeUrl: string | undefined = undefined;
  /** The time sessions may spend on calls in one turn of the event loop (turn-budget.ts). */
  readonly turn = new TurnBudget(TURN_BUDGET_MS, undefined, SHARED_TURN_MS);
  /** Which sessions may read large messages in a turn (read-slots.ts). */
  readonly readSlots: ReadSlots;
  /** Bytes of WebSocket messages still arriving, against limits.partialFramesBudget. */
  readonly partialFrames: PartialFrames;
  /** Output waiting for clients, all sessions, against limits.outputBudgetBytes. */
  readonly output: SharedBudget<OutputFlow>;
  /** Output kept for resumes and not yet acknowledged, all sessions, against limits.replayBudgetBytes. */
  readonly replay: SharedBudget<{ replayOverBudget(budget: number): void }>;
  /** The HTTP connections the daemon serves at once: maxSessions + HTTP_HEADROOM (connection-slots.ts). */
  readonly connections: ConnectionSlots;

  constructor(
    readonly log: Logger,
    readonly limits: DaemonLimits,
    readonly version: string,
    /** Destinations WSPConnect, WSPSendTo and WSPBind may use. */
    readonly allow: AllowList = AllowList.ANY,
  ) {
    this.clientMistakes = new RateLimitedLog(log);
    this.held = new HeldBytes(limits.heldBytesBudget, limits.maxSessions);
    this.bookkeeping = new Bookkeeping(limits.bookkeepingBudgetBytes, limits.maxSessions);
    this.received = new ReceivedBytes(limits.receivedBudgetBytes, limits.maxSessions);
    this.draining = new Draining(log, limits.lingerMs);
    this.faults = new DaemonFaults(log, undefined, (source, rule) => this.metrics.faultApplied(source, rule));
    this.output = new SharedBudget<OutputFlow>(limits.outputBudgetBytes, (flow) => flow.overBudget(limits.outputBudgetBytes));
    this.replay = new SharedBudget<{ replayOverBudget(budget: number): void }>(limits.replayBudgetBytes, (session) => session.replayOverBudget(limits.replayBudgetBytes));
    this.readSlots = new ReadSlots(limits.readerSlots, TURN_BYTES, QUICK_MESSAGE_BYTES);
    this.connections = new ConnectionSlots(limits.maxSessions + HTTP_HEADROOM);
    // A client's doing (it sent the bytes): a debug line at most, like every client mistake.
    this.partialFrames = new PartialFrames(limits.partialFramesBudget, (info) => this.clientMistakes.log(info, 'connection closed: unfinished messages over the partial-frame budget'));
  }

  /**
   * True when one more socket (or queued connection) would pass the daemon-wide cap. Closed
   * connections still delivering hold descriptors too: without them in the count, a client that
   * closed sockets toward peers that never read ran the daemon out of descriptors.
   */
  socketsFull(): boolean {
    return this.handles.size + this.queuedConnections + this.draining.size >= this.limits.maxSocketsTotal;
  }
}
