/**
 * One WebSocket connection = one session = one emulated process. The session decodes frames,
 * dispatches each request to its SPI method, and sends replies and notifications back, several
 * records to a frame: a frame's replies when the frame is done, anything else (completions,
 * events) once the event loop has finished the I/O callbacks it is running (setImmediate).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import * as net from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import * as P from '@spiwire/proto';
import { fail } from './outcome.js';
import type { DaemonContext } from './daemon-context.js';
import type { SlotReader } from './read-slots.js';
import type { SetAside } from './turn-budget.js';
import type { EmulatedSocket, SocketIdentity } from './sockets/emulated-socket.js';
import type { Cancellable, Completion, CompletionOut, Started } from './sockets/results.js';
import { overlappedOnPlainSocket } from './sockets/send-policy.js';
import { runAfterReply, takeAfterReply } from './spi/after-reply.js';
import { SessionQuota, SessionReceived } from './held-bytes.js';
import { OPERATION_BOOKKEEPING_BYTES, SessionBookkeeping, WAITING_CALL_BOOKKEEPING_BYTES } from './bookkeeping.js';
import { OutputFlow } from './output-flow.js';
import { SendStreams } from './send-streams.js';
import { SessionFaults } from './faults/rules.js';
import { trimSoon } from './memory-trim.js';
import { SessionTrace } from './session-trace.js';
import { TcpSocket, type TcpContext } from './sockets/tcp-socket.js';
import { sendDatagramBatches, UdpSocket } from './sockets/udp-socket.js';
import { binaryMessage, MessageParts, sliceBinaryMessages, type BinaryMessage } from './sliced-messages.js';
import { runMethod, type OverlappedAnswer, type SpiSession, type Transfer } from './spi/methods.js';
import { Later, type Answer } from './later.js';
import type { CallCounts, SessionEndKind } from './metrics.js';
import { BACKLOG_CLOSE_MS, closeWithin, SHUTDOWN_CLOSE_MS, SHUTDOWN_CLOSE_REASON } from './close-within.js';

/**
 * Methods that maxPendingRequests never refuses (proto/README.md section 6): they never wait, and
 * a session whose blocking calls fill the limit still needs them, to acknowledge what it received
 * (spiwire.ack), to feed a streamed send it started (spiwire.sendData: a piece dropped would leave
 * a hole in the bytes), and to end what waits (WSPCloseSocket, spiwire.threadExit).
 */
const UNLIMITED_METHODS: ReadonlySet<string> = new Set<P.MethodName>(['spiwire.ack', 'spiwire.sendData', 'WSPCloseSocket', 'spiwire.threadExit']);

const WS_OPEN = 1;
const FLUSH_RECORDS = 256;
/**
 * How much of a frame is handled between two looks at the clock: 32 compact records, or fewer when
 * they are large (128 KiB of headers and data), so that a frame of 64 KiB sends does not overrun
 * the turn by 2 MiB of writes; after each record of any other kind (handleRecords).
 */
const CLOCK_EVERY_RECORDS = 32;
const CLOCK_EVERY_BYTES = 128 * 1024;
/**
 * The replies to a frame this large wait for the end of the event loop's round of I/O, where they
 * leave with those of the other frames read in the same round: one write (and one wake-up of the
 * client) for a burst of bulk sends instead of one per frame. A small frame is answered at once.
 */
const BATCHED_REPLY_BYTES = 32 * 1024;
/** captureCall() outside a call: a wait that begins later is announced for no call. */
const NO_ANNOUNCEMENT = (): void => undefined;

/** ws' close code when the connection broke without a close frame: the only case a session waits for a resume. */
const ABNORMAL_CLOSE = 1006;
/** Resumes in a row, without a message in between, whose replaced tokens still resume the session. */
const MAX_PREVIOUS_TOKENS = 8;
/** What a reply remembered for a request sent again after a resume costs, beside its id (noteAnswers). */
const ANSWER_BOOKKEEPING_BYTES = 192;
/** spiwire.threadExit cancels this many operations between two looks at the clock. */
const CANCELS_PER_CLOCK = 64;

/** What a request id kept by the daemon costs beside the record that keeps it: a string's characters, up to two bytes each. */
function idBytes(id: P.RequestId | null): number {
  return typeof id === 'string' ? 2 * id.length : 0;
}

/** How a session came to be, from the upgrade request (app.ts). */
export interface SessionOptions {
  /** The client asked for a resumable session (/ws?resumable=1) and the daemon offers resume. */
  resumable: boolean;
  /** The bearer token presented (or ''): a resume must present the same. */
  authorization: string;
  /** Called once when the session has ended. */
  onEnd?: () => void;
}

/** What a resume sees of the session's state: resume.ts checks it before anything changes. */
export interface ResumeCheck {
  reason: P.ResumeRefusal;
  message: string;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Compares two secrets in constant time (over their digests, which have equal lengths). */
function sameSecret(a: Buffer, b: string): boolean {
  return timingSafeEqual(a, digest(b));
}

/**
 * A resumable session's record of its output (proto/README.md section 20): the counted messages
 * the client has not acknowledged, oldest first, and the counts on both sides.
 */
interface ResumeState {
  /** sha256 of the current resume token. */
  token: Buffer;
  /**
   * sha256 of the tokens replaced by resumes since the last message from the client: it may have
   * lost the resumed connection before it read spiwire.resumed (at most MAX_PREVIOUS_TOKENS).
   */
  previous: Buffer[];
  /** sha256 of the bearer token the session was opened with. */
  authorization: Buffer;
  /** Counted messages produced for the client. */
  sent: number;
  /** Counted messages the client acknowledged; kept[head] is message acked + 1. */
  acked: number;
  kept: Array<Uint8Array | string>;
  head: number;
  keptBytes: number;
  /** Counted messages received from the client, and when to acknowledge them. */
  incoming: P.ReceiveCounter;
  graceTimer: NodeJS.Timeout | null;
  /**
   * Replies the client had not received when it last resumed, by request id: a client that sends
   * such a request again gets this reply instead of a second run. Dropped once it acknowledged
   * everything sent up to the resume (answeredUntil).
   */
  answered: Map<P.RequestId, object> | null;
  answeredUntil: number;
  /** What answered costs (ANSWER_BOOKKEEPING_BYTES a reply, and its id), counted in keptBytes too. */
  answeredBytes: number;
}


/** What happens to an overlapped operation while its start is under way. */
interface Starting {
  /** A completion that came while starting. */
  early: P.NotificationParams<'spiwire.completion'> | null;
  /** A cancellation that arrived meanwhile (0: none); applied once the operation is pending. */
  cancelWith: number;
  /** Told, once the start is over, whether that cancellation aborted the operation (spiwire.threadExit counts it). */
  told: Array<(aborted: boolean) => void> | null;
}

/** Resolves once the operation has started, with whether its cancellation aborted it (tellStarted). */
function whenStarted(starting: Starting): Promise<boolean> {
  return new Promise((resolve) => (starting.told ??= []).push(resolve));
}

/** Tells the spiwire.threadExit calls waiting on a start whether their cancellation aborted it. */
function tellStarted(starting: Starting | null, aborted: boolean): void {
  if (starting?.told) for (const tell of starting.told) tell(aborted);
}

const enum OpPhase {
  /** Not in the session's table: a synchronous start that has not come back yet. */
  Unlisted,
  /** In the table (pending, or an asynchronous start): its op id is taken, it counts against the limit. */
  Listed,
  /** Completed (or failed at once): nothing more happens to it. */
  Done,
}

/**
 * performance.now() when the daemon began a frame, shared by the operations the frame started: a
 * time held in each would be a boxed number of its own, 16 bytes more per pending operation.
 */
interface FrameStart {
  readonly at: number;
}

/**
 * An overlapped operation that has started and not completed. It is the operation's Completion:
 * the socket calls complete() on it, so a pending operation costs this object and nothing more
 * in the session (no closure, no context).
 */
class PendingOp implements Completion {
  /** How to end it early, once the socket says it is pending. */
  cancel: Cancellable | null = null;
  /** Set while the socket is still inside the call that starts it (a completion now goes into the reply); null after. */
  starting: Starting | null = { early: null, cancelWith: 0, told: null };
  /** Where it is in the session's books (see Session.overlapped). */
  phase: OpPhase = OpPhase.Unlisted;
  /** The other listed operations of its thread (Session.opsOfThread): two fields, not a set entry per operation. */
  threadPrev: PendingOp | null = null;
  threadNext: PendingOp | null = null;

  constructor(
    private readonly session: Session,
    readonly op: number,
    readonly sock: EmulatedSocket,
    readonly thread: number,
    /** When the daemon began the frame holding the call (completion latency metric). */
    readonly started: FrameStart,
  ) {}

  complete(errno: number, bytes: number, out?: CompletionOut): void {
    this.session.completed(this, errno, bytes, out);
  }
}

export class Session implements SpiSession, SetAside, SlotReader {
  readonly id = randomUUID();
  readonly log: Logger;
  private readonly sockets = new Map<number, EmulatedSocket>();
  /** Ids of calls still running (for DUPLICATE_ID). */
  private readonly pending = new Set<P.RequestId>();
  /** Calls still running, with or without an id (against maxPendingRequests). */
  private running = 0;
  /** Overlapped operations started and not yet completed, by op id. */
  private readonly ops = new Map<number, PendingOp>();
  private readonly opsPerSocket = new Map<number, number>();
  /** The listed operations of each thread that has any, the newest first (threadExit walks them, not every operation). */
  private readonly opsOfThread = new Map<number, PendingOp>();
  /**
   * Datagram sends started in the frame being handled, not in the tables: they complete when the
   * frame's batches go (sendDatagramBatches), as on Windows, where they complete at once; those
   * that do not (node:dgram queued them) are listed then. Their op ids, for the duplicate check.
   */
  private readonly startsInFrame: PendingOp[] = [];
  private readonly opIdsInFrame = new Set<number>();
  private readonly out = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 64 * 1024);
  private flushScheduled = false;
  /** Records of an incoming frame are being handled: its replies are sent when it is done. */
  private inFrame = false;
  /**
   * The index in its binary frame of the record being handled, or -1 (a text frame, or between
   * records): an error answered with "id": null names that record in data.record (sendError).
   */
  private recordIndex = -1;
  private ended = false;
  /**
   * The client sent a close frame on the current connection before the daemon sent one: it ended
   * the session (proto/README.md section 20), which ends when the connection does. No resume may
   * take it meanwhile, while the closing handshake is still under way.
   */
  private clientClosed = false;
  /** The daemon's side of the call trace (--trace-dir), or null. */
  private readonly trace: SessionTrace | null;
  private readonly decodeLimits: P.DecodeLimits;
  /** Sends larger than one message, taking their pieces from spiwire.sendData. */
  readonly streams: SendStreams;
  /** Sockets the session's waiting WSPSelect calls watch (spi/select.ts), against MAX_SELECT_WATCHES. */
  selectWatches = 0;
  /** What waits to be written to the client: above a mark the session stops reading (OutputFlow). */
  private readonly output: OutputFlow;
  /** Bytes held for this session's sends, against limits.sessionQuotaBytes. */
  readonly quota: SessionQuota;
  /** The daemon's memory for this session's waiting calls and pending operations (bookkeeping.ts). */
  private readonly book: SessionBookkeeping;
  /** The session's fault rules (they apply to its own sockets only), then the operator's. */
  readonly faults: SessionFaults;
  /** The daemon's SPI call counts (runMethod adds to them). */
  readonly calls: CallCounts;
  /** What every socket of this session gets from it: one object, shared (see SocketContext). */
  private readonly socketContext: TcpContext;

  /** The connection; null while the session waits for a resume. */
  private ws: WebSocket | null;
  /** Bytes this session's sockets received and no receive took yet, against the daemon's budget. */
  private readonly received: SessionReceived;
  /** Resume state; null for a session that cannot be resumed (not asked for, off, or past its bound). */
  private resume: ResumeState | null = null;
  /** The id of the call whose method is running now (synchronously), for spiwire.waiting. */
  private callRunning: P.RequestId | null = null;
  /** The frame being packed holds nothing but a spiwire.ack: it is not counted. */
  private ackOnly = false;
  private readonly onEnd: (() => void) | undefined;

  constructor(
    ws: WebSocket,
    private readonly daemon: DaemonContext,
    parentLog: Logger,
    opts: SessionOptions = { resumable: false, authorization: '' },
  ) {
    this.ws = ws;
    this.onEnd = opts.onEnd;
    this.log = parentLog.child({ session: this.id });
    this.trace = daemon.traces === null ? null : new SessionTrace(daemon.traces, this.id, this.log);
    this.calls = daemon.metrics.calls;
    this.quota = new SessionQuota(daemon.limits.sessionQuotaBytes, daemon.held);
    this.book = new SessionBookkeeping(daemon.bookkeeping);
    this.received = new SessionReceived(daemon.received);
    this.decodeLimits = { ...P.DEFAULT_DECODE_LIMITS, maxDataBytes: daemon.limits.maxFrameBytes };
    this.faults = new SessionFaults(this.log, (params) => this.notify('spiwire.faultApplied', params), P.MAX_FAULT_RULES, daemon.faults, this.id);
    this.streams = new SendStreams(daemon.limits.streamWindowBytes, this.quota, (params) => this.notify('spiwire.sendProgress', params));
    this.output = new OutputFlow(daemon.limits, {
      pause: () => this.updateReading(),
      resume: () => {
        if (this.heldForOutput) {
          this.heldForOutput = false;
          if (this.rest !== null || this.waiting.length > 0) this.daemon.turn.defer(this);
        }
        this.updateReading();
        for (const sock of this.sockets.values()) sock.inputResumed();
      },
      overflow: (reason) => this.endForBacklog(reason),
    }, daemon.output);
    this.socketContext = this.makeSocketContext();
    daemon.readSlots.join(this);
    this.listen(ws);
    let resume: P.ResumeOffer | undefined;
    if (opts.resumable && daemon.limits.resumeGraceMs > 0) {
      const token = randomBytes(32).toString('base64url');
      this.resume = {
        token: digest(token),
        previous: [],
        authorization: digest(opts.authorization),
        sent: 0,
        acked: 0,
        kept: [],
        head: 0,
        keptBytes: 0,
        incoming: new P.ReceiveCounter(this.sendAck),
        graceTimer: null,
        answered: null,
        answeredUntil: 0,
        answeredBytes: 0,
      };
      resume = { token, graceMs: daemon.limits.resumeGraceMs, daemonId: daemon.daemonId };
      if (daemon.resumeUrl !== undefined) resume.url = daemon.resumeUrl;
    }
    const welcome: P.NotificationParams<'spiwire.welcome'> = {
      session: this.id,
      version: daemon.version,
      protocol: P.PROTOCOL_VERSION,
      limits: {
        maxFrameBytes: daemon.limits.maxFrameBytes,
        maxPendingRequests: daemon.limits.maxPendingRequests,
        maxSockets: daemon.limits.maxSocketsPerSession,
        defaultSndBuf: daemon.limits.defaultSndBuf,
        defaultRcvBuf: daemon.limits.defaultRcvBuf,
        sessionQuotaBytes: daemon.limits.sessionQuotaBytes,
        outputHighWaterBytes: daemon.limits.outputHighWaterBytes,
        outputLimitBytes: daemon.limits.outputLimitBytes,
        outputStallMs: daemon.limits.outputStallMs,
        streamWindowBytes: daemon.limits.streamWindowBytes,
        replayLimitBytes: daemon.limits.replayLimitBytes,
      },
      compactHeaders: true,
    };
    if (resume) welcome.resume = { ...resume };
    this.notify('spiwire.welcome', welcome);
    // The welcome is not counted: it leaves alone, before counting starts.
    this.flush(false);
    this.log.info({ resumable: this.resume !== null }, 'session opened');
  }

  private listen(ws: WebSocket): void {
    // Large binary messages come as the reads they arrived in, not joined into a copy.
    sliceBinaryMessages(ws);
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (ws === this.ws) this.onMessage(isBinary ? binaryMessage(data) : toBuffer(data), isBinary);
    });
    // Every read counts for the reader slots, messages still arriving included. This listener
    // runs after ws's own, which has handled the chunk and emitted the messages it completed.
    wsSocket(ws)?.on('data', (chunk: Buffer) => {
      if (ws === this.ws && !this.ended) this.daemon.readSlots.noteRead(this, chunk.length);
    });
    onClientCloseFrame(ws, () => {
      if (ws === this.ws) this.clientClosed = true;
    });
    let errored = false;
    // ws drops a connection holding MAX_PENDING_PONGS unwritten pongs without a close frame
    // (section 1): the log says so, where the 1006 alone would not.
    let pongBacklog = false;
    ws.on('ping', () => {
      if (ws.readyState === ws.CLOSING && pendingPongs(ws) >= P.MAX_PENDING_PONGS) pongBacklog = true;
    });
    ws.on('close', (code, reason) => {
      if (ws === this.ws) this.connectionClosed(code, pongBacklog ? `the client left ${P.MAX_PENDING_PONGS} pongs unread` : reason.toString(), errored);
    });
    ws.on('error', (err) => {
      // A protocol violation (a message too big, bad UTF-8): the session ends rather than waits.
      errored = true;
      this.mistake({ err: err.message }, 'websocket error');
    });
  }

  /** The daemon's id, as the welcome's resume offer and every RESUME_REFUSED name it. */
  get daemonId(): string {
    return this.daemon.daemonId;
  }

  /** Calls still running (waiting for their result), with or without an id. */
  get runningRequests(): number {
    return this.running;
  }

  /** Overlapped operations started and not yet completed. */
  get pendingOperations(): number {
    return this.ops.size;
  }

  /** The session's sockets, in handle order (the inspection endpoints). */
  openSockets(): IterableIterator<EmulatedSocket> {
    return this.sockets.values();
  }

  get socketCount(): number {
    return this.sockets.size;
  }

  /** Overlapped operations pending on one of the session's sockets. */
  operationsOn(handle: number): number {
    return this.opsPerSocket.get(handle) ?? 0;
  }

  /** Output written to the WebSocket and not yet taken by the kernel (backpressure). */
  get outputUnsent(): number {
    return this.output.unsent;
  }

  // ---- inbound ----

  /**
   * Messages that arrived while a frame was still being worked through: they wait their turn, so
   * that calls run in the order they were sent.
   */
  private readonly waiting: Array<{ data: BinaryMessage; isBinary: boolean }> = [];
  /** Records of a frame not yet handled, when the frame was set aside to let others run. */
  private rest: { records: P.SplitFrame; next: number; large: boolean } | null = null;
  private readingPaused = false;
  /** The connection a resume is replaying kept output to (Session.replay), or null. */
  private replaying: WebSocket | null = null;
  /** The reader slots (read-slots.ts) hold this session's reading back for now. */
  private slotHeld = false;
  /**
   * Work set aside (a frame's rest, messages read) waits for the client to read its output: the
   * output passed the high water mark. The output's resume hands it to the TurnBudget again.
   */
  private heldForOutput = false;
  /** performance.now() when the frame (or text message) being handled began: one clock read per frame, not per call. */
  private frameStarted: FrameStart = { at: 0 };
  /** The turn in which this session last had a small message go at once (TurnBudget.holdsBack). */
  quickTurn = -1;
  /** The turn in which this session last flushed a frame's replies at once (handleRecords). */
  private flushedInTurn = -1;
  /** The connection is corked until the end of this tick for text replies (corkTextReplies). */
  private textCorked = false;

  /** data: a text message's bytes, or a binary message, whole or in the parts it arrived in (sliced-messages.ts). */
  private onMessage(data: BinaryMessage, isBinary: boolean): void {
    if (this.ended) return;
    if (this.rest || this.waiting.length > 0 || this.replaying !== null || this.heldForOutput) {
      this.waiting.push({ data, isBinary });
    } else if (this.output.paused || this.daemon.turn.holdsBack(this, data.length)) {
      // Read before reading paused, it waits for the client to read its output; or other sessions
      // used this turn's time, and it waits for the check phase.
      this.waiting.push({ data, isBinary });
      this.updateReading();
      this.setAside();
    } else {
      this.handleMessage(data, isBinary);
      if (this.ended) return;
    }
    // Counted once handled, when its replies are already written: counting, and an
    // acknowledgement it makes due, stay off the round trip of a small call.
    if (this.resume !== null) this.countReceived(data, isBinary);
  }

  private handleMessage(data: BinaryMessage, isBinary: boolean): void {
    // (A text message is always one buffer: ws joins it to check its UTF-8.)
    if (!isBinary && Buffer.isBuffer(data)) {
      const rec = P.decodeText(data.toString('utf8'));
      // A text message takes its part of the turn as a frame does (TurnBudget.holdsBack).
      this.daemon.turn.begin(this);
      this.frameStarted = { at: performance.now() };
      this.handleRecord(rec, true);
      return;
    }
    let records: P.SplitFrame;
    try {
      records = data instanceof MessageParts ? P.splitFrameParts(data.parts, this.decodeLimits) : P.splitFrame(data, this.decodeLimits);
    } catch (err) {
      const e = err instanceof P.ProtocolError ? err : new P.ProtocolError(P.BAD_FRAME, String(err));
      this.mistake({ err: e.message }, 'bad frame');
      this.sendError(null, e, false);
      return;
    }
    this.handleRecords(records, 0, data.length >= BATCHED_REPLY_BYTES);
  }

  /**
   * Handles a frame's records from index next on. A frame may hold thousands of calls: once its
   * time is spent (the daemon's TurnBudget: a slice per frame, or the turn's time once several
   * sessions share it) the rest waits for the next turn of the event loop (setImmediate), so that
   * other sessions are served meanwhile; this session reads nothing more until the frame is done.
   * At least one record goes per turn, and each record's header is parsed when its turn comes.
   * large: the frame is BATCHED_REPLY_BYTES or more, so its replies wait for the end of the round.
   */
  private handleRecords(records: P.SplitFrame, next: number, large: boolean): void {
    const turn = this.daemon.turn;
    turn.begin(this);
    const started = performance.now();
    this.frameStarted = { at: started };
    let i = next;
    let sinceClock = 0;
    let bytesSinceClock = 0;
    this.inFrame = true;
    try {
      for (; i < records.length && !this.ended; i++) {
        const rec = records.record(i);
        // A client that writes compact headers reads them: answer it in kind from now on.
        if (rec.ok && rec.compact) this.out.compact = true;
        this.recordIndex = i;
        this.handleRecord(rec, false);
        bytesSinceClock += records.size(i);
        // A compact record (the hot WSPSend) costs a microsecond or two: the clock is read once
        // every CLOCK_EVERY_RECORDS of them. Any other may cost milliseconds (a WSPSelect over a
        // thousand sockets, a large JSON header), and its parse alone costs more than the clock.
        if (rec.ok && rec.compact && ++sinceClock < CLOCK_EVERY_RECORDS && bytesSinceClock < CLOCK_EVERY_BYTES) continue;
        sinceClock = 0;
        bytesSinceClock = 0;
        // The output passed the high water mark (packed replies are sent every 256 KiB): the
        // rest of the frame waits for the client to read, so that the output stops growing.
        if (turn.spent(started) || this.output.paused) {
          i++;
          break;
        }
      }
      this.recordIndex = -1;
      // The frame's datagrams go to the kernel now: their sends' replies join the frame's.
      sendDatagramBatches();
    } finally {
      this.inFrame = false;
      this.recordIndex = -1;
      this.listStartsInFrame();
    }
    // Replies that are ready leave now, ahead of the peer writes this frame corked (those go
    // out on the next tick): the caller hears back without waiting behind its own bytes. Those
    // to a large frame wait for the round's end, to leave with the rest of the burst's, and so do
    // those to the second and later frames of one turn: a burst of small frames read at once gets
    // its replies in a few writes, not a system call each.
    if (large || this.flushedInTurn === turn.current) this.flushSoon();
    else {
      this.flushedInTurn = turn.current;
      this.flush();
    }
    if (i < records.length && !this.ended) {
      this.rest = { records, next: i, large };
      this.updateReading();
      this.setAside();
      return;
    }
    this.rest = null;
    this.updateReading();
  }

  /** The daemon's TurnBudget gives this session a go at the work it set aside (the frame's rest, then what arrived). */
  takeTurn(): void {
    if (this.ended) return;
    if (this.output.paused) return this.setAside();
    const started = performance.now();
    let progressed = false;
    if (this.rest) {
      this.handleRecords(this.rest.records, this.rest.next, this.rest.large);
      progressed = true;
    }
    // Then the messages that arrived meanwhile, in order, as long as none is set aside again
    // and the slice has time left; one goes in any case, so that every go moves the session on.
    while (!this.rest && !this.ended && this.replaying === null && this.waiting.length > 0) {
      if (progressed && (this.daemon.turn.spent(started) || this.output.paused)) return this.setAside();
      const m = this.waiting.shift()!;
      this.handleMessage(m.data, m.isBinary);
      progressed = true;
    }
    this.updateReading();
  }

  /**
   * Work set aside goes on in a later go from the TurnBudget, or, while the output is above the
   * high water mark, once the output's resume hands it back (heldForOutput).
   */
  private setAside(): void {
    if (this.output.paused) this.heldForOutput = true;
    else this.daemon.turn.defer(this);
  }

  /** Reads from the client unless a frame is set aside, the client is not reading its output, or the reader slots say wait. */
  private updateReading(): void {
    const pause = this.rest !== null || this.waiting.length > 0 || this.replaying !== null || this.output.paused || this.slotHeld;
    if (pause === this.readingPaused || this.ended || this.ws === null) return;
    this.readingPaused = pause;
    if (pause) this.ws.pause();
    else this.ws.resume();
  }

  /** The connection is gone: the reader slots hold nothing for this session. */
  private leaveReadSlots(): void {
    this.daemon.readSlots.forget(this);
    this.slotHeld = false;
  }

  /** ReadSlots: stop reading (hold), or go on. */
  holdReading(hold: boolean): void {
    this.slotHeld = hold;
    this.updateReading();
  }

  /** A call refused with a protocol error: answered, unless it is a notification (JSON-RPC never answers those). */
  private refuse(id: P.RequestId | null, method: string, err: P.ProtocolError, text: boolean): void {
    if (id !== null) this.sendError(id, err, text);
    else this.mistake({ method: method.slice(0, 80), err: err.message }, 'notification refused');
  }

  private handleRecord(rec: P.DecodedRecord, text: boolean): void {
    if (!rec.ok) {
      this.sendError(null, rec.error, text);
      return;
    }
    let msg: P.Request | P.Notification;
    try {
      msg = P.checkRequestEnvelope(rec.message);
    } catch (err) {
      // Not a request: nothing to trace, and no reply record either.
      this.sendError(P.requestIdOf(rec.message), asProtocolError(err), text, false);
      return;
    }
    const id = 'id' in msg ? msg.id : null;
    const method = msg.method;
    if (!P.isMethodName(method)) {
      // A request all the same: traced, with its refusal (unless its id names a running call).
      if (id === null || !this.pending.has(id)) this.trace?.request(id, method.slice(0, 80), msg.params);
      this.refuse(id, method, new P.ProtocolError(P.METHOD_NOT_FOUND, `method ${JSON.stringify(method).slice(0, 80)} is not offered`), text);
      return;
    }
    const again = id !== null ? this.resume?.answered?.get(id) : undefined;
    if (again !== undefined) {
      // Sent again after a resume, already answered: the original reply, and no second run.
      this.send(again, text);
      return;
    }
    if (id !== null && this.pending.has(id)) {
      // Answered with id null (the id names the running call, whose reply is still to come) and
      // the duplicate id in data, so that a client matching replies by id closes nothing. Not
      // traced as a request: the trace would pair the running call's reply with it.
      this.sendError(null, new P.ProtocolError(P.DUPLICATE_ID, `request id ${JSON.stringify(id).slice(0, 80)} is already in use`, { id }), text);
      return;
    }
    this.trace?.request(id, method, msg.params);
    // Every call still running counts, with an id or without: a notification occupies the daemon
    // too. Calls that never wait and only feed or free what the session has go ahead regardless.
    if (this.running >= this.daemon.limits.maxPendingRequests && !UNLIMITED_METHODS.has(method)) {
      this.refuse(id, method, new P.ProtocolError(P.TOO_MANY_REQUESTS, `more than ${this.daemon.limits.maxPendingRequests} unanswered requests`), text);
      return;
    }
    if (!this.book.admitsMore && !UNLIMITED_METHODS.has(method)) {
      const b = this.daemon.bookkeeping;
      this.refuse(id, method, new P.ProtocolError(P.TOO_MANY_REQUESTS, `the daemon's budget for waiting calls and pending operations (${b.budget} bytes) is spent, and this session holds more than its share (${b.fairShare})`), text);
      return;
    }
    if (this.daemon.shuttingDown) {
      // Checked as usual first; then the network subsystem is going away under the caller: a
      // Winsock result, not a protocol error.
      try {
        if (rec.shaped === true) P.validateShapedParams(method, msg.params);
        else P.validateParams(method, msg.params);
      } catch (err) {
        this.refuse(id, method, asProtocolError(err), text);
        return;
      }
      this.reply(id, fail(P.WSAENETDOWN), text);
      return;
    }
    let result: Answer<P.Result<P.MethodName>>;
    // Named while the method runs: a wait it begins is reported for it (callWaits). Not for a call
    // typed by hand in a text frame: its answer comes alone, as text.
    this.callRunning = text ? null : id;
    try {
      result = runMethod(this, method, msg.params, rec.shaped === true);
    } catch (err) {
      this.callRunning = null;
      if (err instanceof P.ProtocolError) this.refuse(id, method, err, text);
      else this.fault(id, method, err, text);
      return;
    }
    this.callRunning = null;
    if (!(result instanceof Promise) && !(result instanceof Later)) {
      this.reply(id, result, text);
      return;
    }
    if (id !== null) this.pending.add(id);
    this.running++;
    // The id is kept until the answer (a header may carry one of a MiB): its length counts too.
    const cost = WAITING_CALL_BOOKKEEPING_BYTES + idBytes(id);
    this.book.add(cost);
    const finished = (): void => {
      this.running--;
      this.book.add(-cost);
      if (id !== null) this.pending.delete(id);
    };
    const answered = (r: P.Result<P.MethodName>): void => {
      finished();
      this.calls.count(method, r.errno);
      this.reply(id, r, text);
    };
    const failed = (err: unknown): void => {
      finished();
      this.fault(id, msg.method, err, text);
    };
    if (result instanceof Later) result.finish(answered, failed);
    else result.then(answered, failed);
  }

  /** A debug line about something the client got wrong (rate-limited daemon-wide). */
  private mistake(fields: Record<string, unknown>, msg: string): void {
    this.daemon.clientMistakes.log({ session: this.id, ...fields }, msg);
  }

  private fault(id: P.RequestId | null, method: string, err: unknown, text: boolean): void {
    const pe = err instanceof P.ProtocolError ? err : new P.ProtocolError(P.INTERNAL_ERROR, `${method} failed inside the daemon: ${err instanceof Error ? err.message : String(err)}`);
    if (!(err instanceof P.ProtocolError)) this.log.error({ err, method }, 'method failed');
    if (id !== null) this.sendError(id, pe, text);
  }

  // ---- outbound ----

  private reply(id: P.RequestId | null, result: P.Result<P.MethodName>, text: boolean): void {
    if (id !== null) this.trace?.reply(id, result);
    const after = takeAfterReply(result);
    // A notification gets no answer.
    if (id !== null) {
      if (text) this.send({ jsonrpc: '2.0', id, result }, true);
      else if (this.producing) {
        this.out.addReply(id, result);
        this.packed();
      }
    }
    after?.();
  }

  /** traced: the request was recorded in the trace, so its answer is too. */
  private sendError(id: P.RequestId | null, err: P.ProtocolError, text: boolean, traced = true): void {
    this.mistake({ id: typeof id === 'string' ? id.slice(0, 80) : id, code: err.code, err: err.message }, 'protocol error');
    const error: P.ErrorObject = { code: err.code, message: err.message };
    if (err.data) error.data = err.data;
    // Never the id of a running call (an invalid envelope or unknown method reusing it): a client
    // matching replies by id would take the error for that call's reply. As for DUPLICATE_ID, the
    // id goes in data instead.
    if (id !== null && this.pending.has(id)) {
      error.data = { ...error.data, id };
      id = null;
    }
    // Without an id the client learns which record of its frame this answers (and that the
    // frame's other records ran; a frame dropped whole has no data): proto/README.md section 5.
    if (id === null && this.recordIndex >= 0) error.data = { ...error.data, record: this.recordIndex };
    if (id !== null && traced) this.trace?.refused(id, err.code);
    this.send({ jsonrpc: '2.0', id, error }, text);
  }

  notify<N extends P.NotificationName>(method: N, params: P.NotificationParams<N>): void {
    this.trace?.notify(method, params);
    if (!this.producing) return;
    this.out.addNotification(method, params);
    this.packed();
  }

  /** Output goes somewhere: to an open connection, or kept for a resume. */
  private get producing(): boolean {
    return this.resume !== null ? !this.ended : this.ws !== null && this.ws.readyState === WS_OPEN;
  }

  private send(message: object, text: boolean): void {
    if (!this.producing) return;
    if (text) {
      // Binary records still waiting for their flush were produced first: they go first (a frame
      // holding only an ack as one that is not counted).
      this.flush();
      this.corkTextReplies();
      this.emit(P.encodeText(message), true);
      return;
    }
    this.out.add(message);
    this.packed();
  }

  /**
   * Text replies go out each in a message of its own: the connection is corked for the rest of
   * the tick, so that the replies to a burst of text requests read at once leave in one write, not
   * a system call each (a lone call's reply leaves at the end of its tick, as before).
   */
  private corkTextReplies(): void {
    if (this.textCorked) return;
    const socket = this.ws === null ? undefined : wsSocket(this.ws);
    if (socket === undefined) return;
    this.textCorked = true;
    socket.cork();
    process.nextTick(() => {
      this.textCorked = false;
      socket.uncork();
    });
  }

  /** A binary record was packed (so the frame holds more than an ack): send the frame now, or schedule its flush. */
  private packed(): void {
    this.ackOnly = false;
    // Send a frame once it is big or holds many records, so the client starts on it while the
    // daemon is still working through the rest of its input.
    if (this.out.byteLength >= 256 * 1024 || this.out.recordCount >= FLUSH_RECORDS) {
      this.flush();
      return;
    }
    if (!this.inFrame) this.flushSoon();
  }

  /**
   * Sends the records packed so far at the end of this round of I/O callbacks. Not a microtask:
   * completions come one per peer write callback, and a microtask would send each in its own
   * frame (a syscall and a wake-up of the client each); an idle loop gets there at once.
   */
  private flushSoon(): void {
    if (this.flushScheduled || this.out.recordCount === 0) return;
    this.flushScheduled = true;
    setImmediate(this.flushLater);
  }

  private readonly flushLater = (): void => {
    if (this.flushScheduled) this.flush();
  };

  /** Sends the records packed so far as one frame; counted unless it is the welcome or holds only an ack. */
  private flush(counted = true): void {
    this.flushScheduled = false;
    if (this.out.recordCount === 0) return;
    const frame = this.out.finish();
    this.emit(frame, counted && !this.ackOnly);
    this.ackOnly = false;
  }

  /**
   * Writes one message to the connection. A counted message of a resumable session is also kept
   * until the client acknowledges it, and only kept while there is no connection. Per message:
   * a counter and an array slot, nothing per record.
   */
  private emit(data: Uint8Array | string, counted: boolean): void {
    // An ended session sends nothing more (a frame packed before the end may still be flushed).
    if (this.ended) return;
    const r = counted ? this.resume : null;
    const n = data.length;
    if (r !== null) {
      r.sent++;
      r.kept.push(data);
      this.keepBytes(r, n, '');
    }
    // During a replay it waits its turn in kept, and the replay sends it.
    if (this.replaying !== null && r !== null) return;
    const ws = this.ws;
    if (ws !== null && ws.readyState === WS_OPEN) {
      this.output.sent(n);
      ws.send(data, { binary: typeof data !== 'string' }, this.output.written);
    } else if (r !== null && this.resume !== null) {
      this.output.hold(n);
    }
  }

  // ---- resume (proto/README.md section 20) ----

  /** A counted message from the client arrived: acknowledge when P.ackDue says so, else after P.ACK_DELAY_MS. */
  private countReceived(data: BinaryMessage, isBinary: boolean): void {
    const r = this.resume;
    if (r === null) return;
    // The client read spiwire.resumed (it sends nothing before): its new token is known to it.
    if (r.previous.length > 0) r.previous = [];
    r.incoming.count(data, isBinary);
  }

  /**
   * An acknowledgement is due. One the count made due (late false) is packed and goes with
   * whatever the session sends next, replies or notifications, without a flush scheduled for it
   * alone; if nothing goes, the counter's timer asks again (late) once the oldest message it
   * covers is P.ACK_DELAY_MS old, and that one is flushed at the end of the round.
   */
  private readonly sendAck = (late: boolean): void => {
    const r = this.resume;
    if (r === null) return;
    if (this.ws === null || this.ws.readyState !== WS_OPEN) return r.incoming.stop();
    if (!this.producing || this.replaying !== null) return;
    const received = r.incoming.take();
    if (received === null) return;
    const alone = this.out.recordCount === 0;
    this.out.addAck(received);
    if (late) this.packed();
    this.ackOnly = alone;
  };

  /** spiwire.ack from the client: the messages it has received need not be kept any longer. */
  acknowledged(received: number): void {
    const r = this.resume;
    if (r === null || received <= r.acked) return;
    const upTo = Math.min(received, r.sent);
    let freed = 0;
    while (r.acked < upTo) {
      const m = r.kept[r.head];
      r.kept[r.head++] = '';
      freed += m?.length ?? 0;
      r.acked++;
    }
    // One change to the daemon-wide budget per ack, not one per message it covers (a Map update
    // each: 32 of them made an ack cost a call about 4 us).
    this.keepBytes(r, -freed, '');
    // Not while a replay walks kept by index (a frame set aside before the drop may carry an ack).
    if (this.replaying === null && r.head > 1024 && r.head * 2 > r.kept.length) {
      r.kept = r.kept.slice(r.head);
      r.head = 0;
    }
    // (Not during a replay: answeredUntil is set when it ends, and the replies it noted stand.)
    if (r.answered !== null && this.replaying === null && r.acked >= r.answeredUntil) this.forgetAnswers(r);
  }

  /** The output kept for resumes by every session passed the daemon's budget, and this one keeps the most. */
  replayOverBudget(budget: number): void {
    this.cannotResume(`the sessions' output kept for resumes passed the daemon's budget of ${budget} bytes, and this session kept the most`);
  }

  /** Past its replay bound: the session goes on while connected, and ends as before if the connection drops. */
  private cannotResume(reason: string): void {
    const r = this.resume;
    if (r === null) return;
    this.resume = null;
    this.daemon.replay.forget(this);
    r.incoming.stop();
    if (r.graceTimer !== null) clearTimeout(r.graceTimer);
    this.log.info({ reason }, 'session can no longer be resumed');
    // Without a connection it ends. In the middle of a replay (whose rest would be lost) it ends
    // too, and its connection is closed as for a client that does not read: 4008.
    if (this.ws === null) this.end(`cannot be resumed: ${reason}`);
    else if (this.replaying !== null) this.endForBacklog(`cannot be resumed in the middle of a replay: ${reason}`, 'output backlog: output kept for the resume passed its limit');
  }

  /** The connection closed: the session ends, or waits for a resume when it broke and can be resumed. */
  private connectionClosed(code: number, reason: string, errored: boolean): void {
    const why = `connection closed (${code}${reason.length ? ` ${reason}` : ''})`;
    const r = this.resume;
    if (this.ended) return;
    if (r === null || code !== ABNORMAL_CLOSE || errored || this.daemon.shuttingDown) {
      this.end(why);
      return;
    }
    this.ws = null;
    this.readingPaused = false;
    // A replay cut short starts again from the first unacknowledged message on the next resume.
    this.replaying = null;
    this.leaveReadSlots();
    this.output.detach();
    const grace = this.daemon.limits.resumeGraceMs;
    r.graceTimer = setTimeout(() => this.end(`${why}, and no resume within ${grace} ms`), grace);
    r.graceTimer.unref();
    this.log.info({ code, ...(reason.length ? { reason } : {}), graceMs: grace, unacknowledged: r.sent - r.acked }, 'connection lost; the session waits for a resume');
  }

  /** Whether a spiwire.resume with these values may take the session; nothing changes here. */
  checkResume(token: string, authorization: string, received: number): ResumeCheck | null {
    const r = this.resume;
    if (r === null || this.ended || this.clientClosed) return { reason: 'unknown-session', message: 'the session has ended or cannot be resumed' };
    // Both compared, always, so the time taken does not say which one was wrong.
    let tokenOk = sameSecret(r.token, token);
    for (const p of r.previous) tokenOk = sameSecret(p, token) || tokenOk;
    const authOk = sameSecret(r.authorization, authorization);
    if (!tokenOk || !authOk) return { reason: 'bad-token', message: 'the resume token (or the authorization) does not match the session' };
    if (received < r.acked || received > r.sent) return { reason: 'bad-count', message: `received must be from ${r.acked} (acknowledged) to ${r.sent} (sent), got ${received}` };
    return null;
  }

  /**
   * Takes a new connection for the session (after checkResume passed): a connection still held
   * is dropped, spiwire.resumed goes first, then every counted message after received, in order.
   */
  attach(ws: WebSocket, received: number): void {
    const r = this.resume;
    if (r === null) return;
    const old = this.ws;
    this.ws = null;
    // Records packed meanwhile become counted messages before the replay starts.
    this.flush();
    old?.terminate();
    if (r.graceTimer !== null) clearTimeout(r.graceTimer);
    r.graceTimer = null;
    this.acknowledged(received);
    const token = randomBytes(32).toString('base64url');
    r.previous.push(r.token);
    if (r.previous.length > MAX_PREVIOUS_TOKENS) r.previous.shift();
    r.token = digest(token);
    this.ws = ws;
    this.readingPaused = false;
    this.leaveReadSlots();
    this.daemon.readSlots.join(this);
    this.listen(ws);
    this.output.attach();
    const hello = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 256);
    hello.add({ jsonrpc: '2.0', method: 'spiwire.resumed', params: { received: r.incoming.received, token } });
    ws.send(hello.finish(), { binary: true });
    r.incoming.told();
    this.forgetAnswers(r);
    this.replaying = ws;
    this.updateReading();
    this.replay(ws, r, r.head);
  }

  /**
   * Sends the kept messages again from kept[i] on, and notes the replies in them, for a slice of
   * the turn's time at a time (up to 64 MiB of them would hold every other session up for most of
   * a second). Meanwhile the session reads nothing (the requests a resumed client sends again
   * must find every reply noted) and its new output is kept behind them, so that all goes in
   * order.
   */
  private replay(ws: WebSocket, r: ResumeState, i: number): void {
    if (this.ended || this.ws !== ws || this.replaying !== ws) return;
    const turn = this.daemon.turn;
    turn.begin(this);
    const started = performance.now();
    // Messages acknowledged meanwhile (an ack in the rest of a frame set aside before the
    // connection dropped, above the count the resume gave) are not sent again.
    while ((i = Math.max(i, r.head)) < r.kept.length) {
      const m = r.kept[i++]!;
      this.output.sent(m.length);
      ws.send(m, { binary: typeof m !== 'string' }, this.output.written);
      this.noteAnswers(m);
      // Past the replay limit with the replies noted: the session ended (cannotResume).
      if (this.ended) return;
      if (i < r.kept.length && turn.spent(started)) {
        setImmediate(() => this.replay(ws, r, i));
        return;
      }
    }
    this.replaying = null;
    r.answeredUntil = r.sent;
    this.log.info({ replayed: r.sent - r.acked, received: r.incoming.received }, 'session resumed');
    this.updateReading();
    if (this.waiting.length > 0) turn.defer(this);
    for (const sock of this.sockets.values()) sock.inputResumed();
  }

  /** Remembers the replies in a message the client had not received, for requests it may send again. */
  private noteAnswers(m: Uint8Array | string): void {
    const r = this.resume;
    if (r === null) return;
    let records: P.DecodedRecord[];
    try {
      records = typeof m === 'string' ? [P.decodeText(m)] : P.decodeFrame(m, this.decodeLimits);
    } catch {
      return;
    }
    let cost = 0;
    for (const rec of records) {
      if (!rec.ok || !P.isRecord(rec.message)) continue;
      const id = P.requestIdOf(rec.message);
      if (id === null || !('result' in rec.message || 'error' in rec.message)) continue;
      r.answered ??= new Map();
      r.answered.set(id, rec.message);
      cost += ANSWER_BOOKKEEPING_BYTES + idBytes(id);
    }
    // A decoded reply costs several times its bytes on the wire (a kept 24-byte reply, about
    // 160 bytes more noted): it counts against the replay limit and budget as kept output does.
    r.answeredBytes += cost;
    this.keepBytes(r, cost, ', with the replies noted for requests sent again');
  }

  /** The client acknowledged everything sent up to the resume (or resumes again): no reply is remembered any more. */
  private forgetAnswers(r: ResumeState): void {
    r.answered = null;
    this.keepBytes(r, -r.answeredBytes, '');
    r.answeredBytes = 0;
  }

  /**
   * n more bytes kept for a resume (fewer, n < 0), against the session's replay limit and the
   * daemon's budget; past the limit the session can no longer be resumed (what adds says why).
   */
  private keepBytes(r: ResumeState, n: number, what: string): void {
    r.keptBytes += n;
    this.daemon.replay.change(this, n);
    if (n > 0 && this.resume !== null && r.keptBytes > this.daemon.limits.replayLimitBytes) this.cannotResume(`more than ${this.daemon.limits.replayLimitBytes} bytes of output not acknowledged by the client${what}`);
  }

  // ---- sockets ----

  lookup(s: number): EmulatedSocket | null {
    return this.daemon.handles.lookup(s, this.id);
  }

  private makeSocketContext(): TcpContext {
    const daemon = this.daemon;
    return {
      owner: this.id,
      log: this.log,
      defaults: { sndBuf: daemon.limits.defaultSndBuf, rcvBuf: daemon.limits.defaultRcvBuf, sendPolicy: daemon.limits.sendPolicy },
      maxRecvBytes: maxRecvBytes(daemon.limits.maxFrameBytes),
      quota: this.quota,
      received: this.received,
      flow: this.output,
      onNetworkEvents: (s, events, errors) => this.notify('spiwire.networkEvents', { s, events, errors }),
      faults: this.faults,
      callWaits: () => this.callWaits(),
      captureCall: () => this.announcer(),
      ports: daemon.ports,
      draining: daemon.draining,
      connectionQueue: {
        full: () => daemon.socketsFull(),
        change: (delta) => {
          daemon.queuedConnections += delta;
        },
      },
      adopt: (c, parent) => this.adopt(c, parent),
    };
  }

  /** The call running now begins to wait: spiwire.waiting for it (SocketContext.callWaits). */
  callWaits(): void {
    const announce = this.announcer();
    // Now: the call is done with, so a second wait of it is not announced again.
    this.callRunning = null;
    announce();
  }

  /** Announces, once, that the call running now waits (spiwire.waiting); a no-op outside a call. */
  private announcer(): () => void {
    const id = this.callRunning;
    if (id === null) return NO_ANNOUNCEMENT;
    let done = false;
    return () => {
      if (done || this.ended) return;
      done = true;
      this.notify('spiwire.waiting', { id });
    };
  }

  /** A handle and the kind of socket, or null when the daemon has no handle left. */
  private socketIdentity(af: number, type: number, protocol: number, overlapped: boolean): SocketIdentity | null {
    const handle = this.daemon.handles.allocate();
    return handle === null ? null : { handle, af, type, protocol, overlapped };
  }

  /** No room for another socket: this session's cap, or the daemon's (WSAEMFILE). */
  private socketsFull(): boolean {
    // Its closed connections still delivering count: they hold descriptors until delivered.
    return this.sockets.size + this.daemon.draining.ofSession(this.id) >= this.daemon.limits.maxSocketsPerSession || this.daemon.socketsFull();
  }

  createSocket(af: number, type: number, protocol: number, flags: number): P.Result<'WSPSocket'> {
    const t = P.resolveSocketTriple(af, type, protocol);
    if (t.errno) return fail(t.errno, P.INVALID_SOCKET);
    if (this.socketsFull()) return fail(P.WSAEMFILE, P.INVALID_SOCKET);
    const id = this.socketIdentity(t.af, t.type, t.protocol, (flags & P.WSA_FLAG_OVERLAPPED) !== 0);
    if (!id) return fail(P.WSAEMFILE, P.INVALID_SOCKET);
    const sock: EmulatedSocket = t.type === P.SOCK_STREAM ? new TcpSocket(id, this.socketContext) : new UdpSocket(id, this.socketContext);
    this.register(sock);
    return { ret: sock.handle, errno: 0 };
  }

  /** A connection accepted on a listening socket becomes a socket of the same session (null: no room). */
  private adopt(conn: net.Socket, parent: TcpSocket): TcpSocket | null {
    // (The listener stopped counting the connection as queued: it takes a socket's place now.)
    if (this.socketsFull()) return null;
    const id = this.socketIdentity(parent.af, parent.type, parent.protocol, parent.overlapped);
    if (!id) return null;
    const sock = new TcpSocket(id, this.socketContext);
    if (!sock.attachAccepted(conn, parent)) {
      // Cannot happen for a new socket (created -> connecting -> connected); if it did, the
      // connection is refused rather than left half-adopted.
      conn.destroy();
      return null;
    }
    this.register(sock);
    return sock;
  }

  private register(sock: EmulatedSocket): void {
    this.sockets.set(sock.handle, sock);
    this.daemon.handles.add(sock);
  }

  closeSocket(sock: EmulatedSocket, abortCode?: number, overlappedCode?: number): void {
    this.sockets.delete(sock.handle);
    this.daemon.handles.remove(sock.handle);
    this.faults.socketClosed(sock.handle);
    sock.close(abortCode, overlappedCode);
  }

  // ---- overlapped operations ----

  overlapped<R extends Transfer>(sock: EmulatedSocket, ov: P.OverlappedRef, start: (done: Completion) => Answer<Started<R>>, asBlocking: () => R | Promise<R>): Answer<OverlappedAnswer<R>> {
    if (!sock.overlapped) {
      // Overlapped I/O needs a socket created with WSA_FLAG_OVERLAPPED; the Windows policy runs
      // the call as a blocking one instead, and still reports its completion.
      if (overlappedOnPlainSocket(sock.opts.windowsPolicy) === 'refuse') return { kind: 'refused', errno: P.WSAEINVAL };
      // An overlapped call, although it runs as a blocking one: spiwire.waiting is not for it.
      this.callRunning = null;
      return Promise.resolve(asBlocking()).then((r): OverlappedAnswer<R> => (r.errno === 0 ? { kind: 'done', result: r, completion: { error: 0, bytes: r.bytes, flags: r.flags ?? 0 } } : { kind: 'done', result: r }));
    }
    if (this.ops.has(ov.op) || this.opIdsInFrame.has(ov.op)) {
      throw new P.ProtocolError(P.INVALID_PARAMS, `overlapped.op ${ov.op} is already used by a pending operation of this session`, { field: 'overlapped.op' });
    }
    const count = (this.opsPerSocket.get(sock.handle) ?? 0) + sock.opsInFrame;
    if (count >= this.daemon.limits.maxOutstandingOpsPerSocket) return { kind: 'refused', errno: P.WSAEWOULDBLOCK };
    const entry = new PendingOp(this, ov.op, sock, ov.thread, this.frameStarted);
    let started: Answer<Started<R>>;
    try {
      started = start(entry);
    } catch (err) {
      this.retire(entry);
      throw err;
    }
    if (!(started instanceof Promise) && !(started instanceof Later)) return this.settleStart(entry, started);
    const failedToStart = (): void => {
      tellStarted(entry.starting, false);
      this.retire(entry);
    };
    if (started instanceof Later && this.inFrame) {
      // A datagram's send, done when the frame's batches go: no table work unless it is not.
      const answer = started.map((st) => this.settleStart(entry, st), failedToStart);
      if (entry.starting !== null) {
        this.startsInFrame.push(entry);
        this.opIdsInFrame.add(ov.op);
        sock.opsInFrame++;
      }
      return answer;
    }
    // The start goes on after this call, and other requests are handled meanwhile: the operation
    // goes into the table now (its op id taken, cancellable by thread, counted against the limit).
    this.list(entry);
    if (started instanceof Later) return started.map((st) => this.settleStart(entry, st), failedToStart);
    return started.then(
      (st) => this.settleStart(entry, st),
      (err: unknown) => {
        failedToStart();
        throw err;
      },
    );
  }

  /**
   * The socket has come back from starting the operation. A synchronous start is not put into the
   * table before it comes back (nothing else runs meanwhile), and one that completed at once,
   * the common case for small sends, never is: no table work for it at all.
   */
  private settleStart<R extends Transfer>(entry: PendingOp, st: Started<R>): OverlappedAnswer<R> {
    const starting = entry.starting;
    entry.starting = null;
    const completion = starting?.early ?? null;
    if (st.pending) {
      let aborted = completion?.error === P.WSA_OPERATION_ABORTED;
      if (entry.phase !== OpPhase.Done) {
        this.list(entry);
        if (st.cancel) entry.cancel = st.cancel;
        if (starting && starting.cancelWith !== 0) aborted = entry.cancel?.cancel(starting.cancelWith) === true;
      }
      tellStarted(starting, aborted);
      // Completed while it was being started: the completion follows the reply.
      const pending: OverlappedAnswer<R> = { kind: 'pending' };
      return completion ? runAfterReply(pending, () => this.notify('spiwire.completion', completion)) : pending;
    }
    tellStarted(starting, completion?.error === P.WSA_OPERATION_ABORTED);
    // Completed at once: the reply carries the completion, no notification follows.
    if (completion) return { kind: 'done', result: st.result, completion: { error: completion.error, bytes: completion.bytes, flags: completion.flags } };
    // Failed at once: no completion of any kind.
    this.retire(entry);
    return { kind: 'done', result: st.result };
  }

  /** An overlapped operation completed (PendingOp.complete): exactly once, whatever calls it again. */
  completed(entry: PendingOp, errno: number, bytes: number, out?: CompletionOut): void {
    if (entry.phase === OpPhase.Done) return;
    if (this.ended) {
      // Nobody is told any more, and end() empties the tables at once: a retire each (Map
      // deletes) made the end of a session with 500,000 operations hold the daemon for 250 ms.
      entry.phase = OpPhase.Done;
      entry.threadPrev = entry.threadNext = null;
      return;
    }
    this.retire(entry);
    const params: P.NotificationParams<'spiwire.completion'> = { op: entry.op, s: entry.sock.handle, error: errno, bytes, flags: out?.flags ?? 0 };
    // An immediate receive already carried its bytes in the reply.
    if (out?.data && !entry.starting) params.data = out.data;
    if (out?.from) params.from = out.from;
    if (entry.starting) entry.starting.early = params;
    else {
      this.daemon.metrics.completed(performance.now() - entry.started.at);
      this.notify('spiwire.completion', params);
    }
  }

  /** The frame's datagram sends that did not complete with its batches go into the tables now. */
  private listStartsInFrame(): void {
    const starts = this.startsInFrame;
    if (starts.length === 0) return;
    for (const entry of starts) {
      entry.sock.opsInFrame = 0;
      if (!this.ended && entry.starting !== null) this.list(entry);
    }
    starts.length = 0;
    this.opIdsInFrame.clear();
  }

  private list(entry: PendingOp): void {
    if (entry.phase !== OpPhase.Unlisted) return;
    entry.phase = OpPhase.Listed;
    this.ops.set(entry.op, entry);
    this.book.add(OPERATION_BOOKKEEPING_BYTES);
    const handle = entry.sock.handle;
    this.opsPerSocket.set(handle, (this.opsPerSocket.get(handle) ?? 0) + 1);
    const head = this.opsOfThread.get(entry.thread);
    if (head) {
      head.threadPrev = entry;
      entry.threadNext = head;
    }
    this.opsOfThread.set(entry.thread, entry);
  }

  /** The operation is over (completed, or failed at once): out of the table if it was in it, for good. */
  private retire(entry: PendingOp): void {
    const listed = entry.phase === OpPhase.Listed;
    entry.phase = OpPhase.Done;
    if (!listed) return;
    this.ops.delete(entry.op);
    this.book.add(-OPERATION_BOOKKEEPING_BYTES);
    const handle = entry.sock.handle;
    const n = (this.opsPerSocket.get(handle) ?? 1) - 1;
    if (n > 0) this.opsPerSocket.set(handle, n);
    else this.opsPerSocket.delete(handle);
    const { threadPrev: prev, threadNext: next } = entry;
    if (prev) prev.threadNext = next;
    else if (next) this.opsOfThread.set(entry.thread, next);
    else this.opsOfThread.delete(entry.thread);
    if (next) next.threadPrev = prev;
    entry.threadPrev = entry.threadNext = null;
  }

  allows(address: string, port: number, unspecified = false): boolean {
    return this.daemon.allow.allows(address, port, unspecified);
  }

  threadExit(thread: number): P.Result<'spiwire.threadExit'> | Promise<P.Result<'spiwire.threadExit'>> {
    let cancelled = 0;
    const starts: Array<Promise<boolean>> = [];
    // Taken first (a cancellation may complete, and unlist, an operation at once), then
    // cancelled oldest first, the order they were started in.
    const mine: PendingOp[] = [];
    // The frame's datagram sends go first: those that complete with their batch are answered
    // ahead of this call, as on Windows, where they completed at once.
    if (this.inFrame) sendDatagramBatches();
    for (let e: PendingOp | null | undefined = this.opsOfThread.get(thread); e; e = e.threadNext) mine.push(e);
    mine.reverse();
    // Those still under way (node:dgram has them) are not in the tables yet: the answer waits for them.
    for (const entry of this.startsInFrame) {
      const starting = entry.starting;
      if (entry.thread === thread && starting !== null) starts.push(whenStarted(starting));
    }
    let i = 0;
    // A slice of the turn's time at a time: a thread may hold hundreds of thousands of
    // operations (a microsecond each), and other sessions' calls wait meanwhile.
    const cancelSome = (): boolean => {
      const turn = this.daemon.turn;
      turn.begin(this);
      const started = performance.now();
      while (i < mine.length) {
        const entry = mine[i++]!;
        if (entry.cancel) {
          // Only what the cancellation aborts counts: a send whose bytes are all with the kernel
          // already is past cancelling, and completes with success (now, or when the kernel has it).
          if (entry.cancel.cancel(P.WSA_OPERATION_ABORTED)) cancelled++;
        } else if (entry.starting) {
          // Still starting: cancelled once pending, if it gets there; the answer waits to know.
          const starting = entry.starting;
          starting.cancelWith = P.WSA_OPERATION_ABORTED;
          starts.push(whenStarted(starting));
        }
        if ((i & (CANCELS_PER_CLOCK - 1)) === 0 && i < mine.length && turn.spent(started)) return false;
      }
      return true;
    };
    const answer = (): P.Result<'spiwire.threadExit'> | Promise<P.Result<'spiwire.threadExit'>> =>
      starts.length === 0 ? { ret: 0, errno: 0, cancelled } : Promise.all(starts).then((aborted) => ({ ret: 0, errno: 0, cancelled: cancelled + aborted.filter(Boolean).length }));
    if (cancelSome()) return answer();
    return new Promise((resolve) => {
      const goOn = (): void => {
        // The session ended meanwhile: its end cancelled the rest.
        if (this.ended || cancelSome()) resolve(answer());
        else setImmediate(goOn);
      };
      setImmediate(goOn);
    });
  }

  // ---- lifecycle ----

  /**
   * Daemon shutdown: every blocked call is answered with WSAENETDOWN, the replies are flushed,
   * the sockets are closed and the connection ends with 1001 (going away).
   */
  async shutdown(): Promise<void> {
    if (this.ended) return;
    for (const sock of [...this.sockets.values()]) this.closeSocket(sock, P.WSAENETDOWN, P.WSAENETDOWN);
    // Let the WSAENETDOWN answers reach the wire before the close frame.
    await new Promise((r) => setImmediate(r));
    this.flush();
    this.end('daemon shutting down', 'shutdown');
    const ws = this.ws;
    // A session waiting for a resume has no connection to close.
    if (ws === null) return;
    await closeWithin(ws, 1001, SHUTDOWN_CLOSE_REASON, SHUTDOWN_CLOSE_MS);
  }

  /**
   * The client does not read what it is sent: the session ends with 4008, and the connection is
   * dropped if the close cannot get through (it waits behind the unsent output) within a second.
   */
  private endForBacklog(reason: string, closeReason = 'output backlog: the client is not reading'): void {
    if (this.ended) return;
    this.end(`the client does not read its output: ${reason}`, 'output_backlog');
    const ws = this.ws;
    if (ws === null) return;
    // A client that reads nothing will not answer the close either: dropped after a second.
    void closeWithin(ws, P.OUTPUT_BACKLOG_CLOSE_CODE, closeReason, BACKLOG_CLOSE_MS);
  }

  /** The session is over: its sockets close, and nothing more is sent. */
  end(reason: string, kind: SessionEndKind = 'closed'): void {
    if (this.ended) return;
    this.ended = true;
    this.daemon.metrics.sessionEnded(kind);
    const r = this.resume;
    if (r !== null) {
      r.incoming.stop();
      if (r.graceTimer !== null) clearTimeout(r.graceTimer);
      r.kept = [];
      r.answered = null;
      this.resume = null;
    }
    this.output.stop();
    this.leaveReadSlots();
    this.daemon.replay.forget(this);
    this.streams.closeAll();
    for (const sock of [...this.sockets.values()]) this.closeSocket(sock);
    // What is still pending (sends past cancelling, delivered within the linger time) completes
    // unseen; the tables are no longer asked.
    this.ops.clear();
    this.opsPerSocket.clear();
    this.opsOfThread.clear();
    // Connections still delivering get the linger time; their bytes count as held for ended sessions.
    this.quota.sessionEnded();
    this.book.sessionEnded();
    this.daemon.draining.sessionEnded(this.id);
    this.daemon.faults.sessionEnded(this.id);
    trimSoon();
    void this.trace?.close();
    this.log.info({ reason }, 'session ended');
    this.onEnd?.();
  }
}

/** Room a reply's record needs beside the received bytes it carries. */
const RECORD_ROOM = 64 * 1024;

/** The most received bytes one reply may carry within a frame of maxFrameBytes. */
export function maxRecvBytes(maxFrameBytes: number): number {
  return Math.max(maxFrameBytes - RECORD_ROOM, Math.floor(maxFrameBytes / 2));
}

function asProtocolError(err: unknown): P.ProtocolError {
  return err instanceof P.ProtocolError ? err : new P.ProtocolError(P.INVALID_PARAMS, String(err));
}

/** The connection under a WebSocket (ws 8 keeps it in _socket once the upgrade is done). */
function wsSocket(ws: WebSocket): net.Socket | undefined {
  const socket = (ws as unknown as { _socket?: unknown })._socket;
  return socket instanceof net.Socket ? socket : undefined;
}

/** The pongs ws has queued on ws and not yet written (ws 8.23's _pendingAutoPongs; 0 where it has none). */
function pendingPongs(ws: WebSocket): number {
  const n = (ws as unknown as { _pendingAutoPongs?: unknown })._pendingAutoPongs;
  return typeof n === 'number' ? n : 0;
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * Calls then when the client's close frame arrives on ws, if the daemon had not sent its own
 * first (a close the daemon began, 1013 for the partial-frame budget, leaves the session
 * resumable: the client's close frame only answers it). ws says nothing until the TCP connection
 * ends, so this listens to its receiver (ws 8's 'conclude'), ahead of ws's own listener, which
 * answers with a close frame of its own. Without that receiver, nothing is done.
 */
function onClientCloseFrame(ws: WebSocket, then: () => void): void {
  const receiver = (ws as unknown as { _receiver?: { prependListener?: unknown } })._receiver;
  if (typeof receiver?.prependListener !== 'function') return;
  (receiver as unknown as NodeJS.EventEmitter).prependListener('conclude', () => {
    if ((ws as unknown as { _closeFrameSent?: boolean })._closeFrameSent !== true) then();
  });
}
