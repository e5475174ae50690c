/**
 * Session resume (proto/README.md section 20): both ends count the WebSocket messages they send
 * and receive, and acknowledge by count. A message whose only record is spiwire.ack is not
 * counted (else acknowledging would itself need acknowledging), nor are the handshake messages
 * (spiwire.welcome, spiwire.resume, spiwire.resumed and a refusal).
 */
import { readU32 } from './le32.js';
import { ACK_HEADER_MAX_BYTES, ackHeaderCount } from './ack-header.js';

/**
 * When an end acknowledges what it counted (the SDK and the daemon alike; any schedule works for
 * the protocol, these keep the other side's kept messages few): every ACK_EVERY messages, every
 * ACK_BYTES bytes, or once the oldest message not yet acknowledged is ACK_DELAY_MS old.
 */
export const ACK_EVERY = 32;
export const ACK_BYTES = 1024 * 1024;
export const ACK_DELAY_MS = 20;

/** Whether an acknowledgement is due now, given what arrived since the last one. */
export function ackDue(messagesSinceAck: number, bytesSinceAck: number): boolean {
  return messagesSinceAck >= ACK_EVERY || bytesSinceAck >= ACK_BYTES;
}

/** The query parameter that asks for a resumable session (/ws?resumable=1). */
export const RESUMABLE_QUERY = 'resumable';
/** The query parameters of a connection opened to resume a session (/ws?resume=<session>&daemon=<daemonId>). */
export const RESUME_QUERY = 'resume';
export const RESUME_DAEMON_QUERY = 'daemon';
/**
 * The reason in the HTTP 503 body of an upgrade refused while the daemon stops (section 16): a
 * resume that meets it is final, the session ended with the daemon.
 */
export const SHUTTING_DOWN_REFUSAL = 'the daemon is shutting down';

/** Why a spiwire.resume was refused: data.reason of RESUME_REFUSED. */
export type ResumeRefusal = 'not-here' | 'unknown-session' | 'bad-token' | 'bad-count' | 'bad-request' | 'not-first';

/**
 * True when a message is an acknowledgement alone, which is not counted (README section 20,
 * "Counting messages"): the exact bytes ackHeader writes, {"jsonrpc":"2.0","method":
 * "spiwire.ack","params":{"received":N}} with no space and N in plain decimal, as the one record
 * of a binary frame with no data, or as the whole text of a text frame. One spelling only, so
 * that both ends decide alike without parsing JSON (a rule that parsed could be fooled by escapes
 * and repeated keys); an ack written any other way is an ordinary, counted message.
 */
export function isAckOnlyMessage(data: Uint8Array, binary: boolean): boolean {
  if (!binary) return data.length <= ACK_HEADER_MAX_BYTES && ackHeaderCount(data) >= 0;
  if (data.length < 8 || data.length > ACK_HEADER_MAX_BYTES + 8) return false;
  // (No DataView: constructing one per message is a call into C++.)
  const headerLength = readU32(data, 0);
  // One record with no data, and nothing after it.
  if (8 + headerLength !== data.length || readU32(data, 4 + headerLength) !== 0) return false;
  return ackHeaderCount(data.subarray(4, 4 + headerLength)) >= 0;
}

/**
 * One end's count of the counted messages the other end sent, and its schedule for
 * acknowledging them (P.ackDue, or once the oldest unacknowledged one is ACK_DELAY_MS old). The daemon
 * and the SDK each keep one per resumable session.
 */
export class ReceiveCounter {
  /** Counted messages received so far (what a resume handshake tells the other end). */
  received = 0;
  /** The count last acknowledged, by spiwire.ack or in a handshake. */
  private acked = 0;
  private bytesSinceAck = 0;
  /** performance.now() when the first message not yet acknowledged was counted; -1: none. */
  private firstUnackedAt = -1;
  private timer: ReturnType<typeof setTimeout> | null = null;

  /**
   * ackNow is asked to acknowledge; it calls take() once it can send. late is false when the
   * count made one due, as a message arrived: it may ride on what the end sends next, since the
   * timer, armed meanwhile, asks again (late true) once the oldest message counted has waited
   * delayMs, and that one must go at once.
   * delayMs: how long a message not acknowledged by count waits at most for an acknowledgement.
   */
  constructor(
    private readonly ackNow: (late: boolean) => void,
    private readonly delayMs = ACK_DELAY_MS,
  ) {}

  /**
   * A message arrived: counted unless it holds nothing but a spiwire.ack. A message that arrived
   * in parts is long (no acknowledgement alone): data may then be just its length.
   */
  count(data: Uint8Array | { readonly length: number }, binary: boolean): void {
    if (data instanceof Uint8Array && isAckOnlyMessage(data, binary)) return;
    this.received++;
    this.bytesSinceAck += data.length;
    // Once per acknowledgement, not per message.
    if (this.firstUnackedAt < 0) this.firstUnackedAt = performance.now();
    this.timer ??= setTimeout(this.onTimer, this.delayMs);
    if (ackDue(this.received - this.acked, this.bytesSinceAck)) this.ackNow(false);
  }

  /**
   * The timer is left running when an acknowledgement goes out for another reason (arming and
   * clearing one per acknowledgement made and dropped a timer list in node every 32 messages, on
   * the path of every small call). When it fires it acknowledges only what has waited delayMs;
   * messages counted since the last acknowledgement that are younger wait for it to fire again.
   * Under steady traffic the counts acknowledge everything, and a timer that acknowledged what
   * was a few messages old sent an extra message every delayMs, waking the other end in the
   * middle of a call (scenario 2's p99 ratio of a resumable session to one without resume went
   * from 1.165 to 1.124 on average over twelve alternating runs each).
   */
  private readonly onTimer = (): void => {
    this.timer = null;
    if (this.received === this.acked) return;
    const wait = this.firstUnackedAt + this.delayMs - performance.now();
    if (wait >= 1) this.timer = setTimeout(this.onTimer, Math.ceil(wait));
    else this.ackNow(true);
  };

  /** The count to acknowledge now, or null when the other end has it already. */
  take(): number | null {
    if (this.received === this.acked) return null;
    this.told();
    return this.received;
  }

  /** The other end learnt the count another way (a resume handshake carries it). */
  told(): void {
    this.acked = this.received;
    this.bytesSinceAck = 0;
    this.firstUnackedAt = -1;
  }

  /** No acknowledgement is pending on the timer any more (until the next message). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
