/**
 * The JSON header of a spiwire.ack notification, read and written without JSON.parse or
 * JSON.stringify. Acknowledgements go once every few dozen messages, too seldom for the generic
 * JSON path to stay warm: decoding one took the daemon 7-13 us in the middle of a call, and an
 * acknowledgement each way every 32 messages was most of what a resumable session added to the
 * p99 of small calls. The bytes are exactly those JSON.stringify writes for
 * {"jsonrpc":"2.0","method":"spiwire.ack","params":{"received":n}} with n a u32; any other
 * spelling of an ack (spaces, other key order, a count beyond a u32) still goes through the
 * generic path, with the same result. A record decoded this way is marked shaped: its params
 * need no further validation.
 */
const ACK_START = new TextEncoder().encode('{"jsonrpc":"2.0","method":"spiwire.ack","params":{"received":');
const CLOSE_OBJECT = 0x7d;
const DIGIT_0 = 0x30;
/** received is a u32 (the method table): larger counts go the generic way, which refuses them. */
const MAX_COUNT = 0xffffffff;
const MAX_DIGITS = 10;

/** The count of an ack header spelt exactly as ackHeader writes it, or -1 for any other header. */
export function ackHeaderCount(header: Uint8Array): number {
  const from = ACK_START.length;
  const digits = header.length - from - 2;
  if (digits < 1 || digits > MAX_DIGITS) return -1;
  if (header[header.length - 2] !== CLOSE_OBJECT || header[header.length - 1] !== CLOSE_OBJECT) return -1;
  for (let i = 0; i < from; i++) if (header[i] !== ACK_START[i]) return -1;
  // A leading zero is not JSON: the generic path reports it.
  if (digits > 1 && header[from] === DIGIT_0) return -1;
  let n = 0;
  for (let i = from; i < from + digits; i++) {
    const d = header[i]! - DIGIT_0;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n <= MAX_COUNT ? n : -1;
}

/** Whether received can go in the exact spelling: a u32, which JSON.stringify writes as plain digits. */
export function isAckCount(received: unknown): received is number {
  return typeof received === 'number' && Number.isInteger(received) && received >= 0 && received <= MAX_COUNT;
}

/** params is exactly {received: a count isAckCount takes}. */
export function isAckParams(params: object): params is { received: number } {
  let keys = 0;
  for (const k in params) {
    if (k !== 'received') return false;
    keys++;
  }
  return keys === 1 && isAckCount((params as { received?: unknown }).received);
}

/** The most bytes ackHeader writes (a count of MAX_DIGITS digits). */
export const ACK_HEADER_MAX_BYTES = ACK_START.length + MAX_DIGITS + 2;

/** Writes the ack header for received (isAckCount(received) must hold) at buf[at..]; returns its length. */
export function ackHeader(buf: Uint8Array, at: number, received: number): number {
  buf.set(ACK_START, at);
  let p = at + ACK_START.length;
  const digits = String(received);
  for (let i = 0; i < digits.length; i++) buf[p++] = digits.charCodeAt(i);
  buf[p++] = CLOSE_OBJECT;
  buf[p++] = CLOSE_OBJECT;
  return p - at;
}
