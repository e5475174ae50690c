/**
 * Compact record headers: fixed binary layouts for the three messages of the send hot path,
 * used in place of a JSON header when a message has exactly their shape. They decode to the same
 * message object as the JSON header would, so everything above the codec sees no difference.
 * JSON headers start with "{" or JSON whitespace; a compact header starts with its kind byte
 * (below 0x09), so one look at the first byte tells them apart. Layouts: proto/README.md,
 * section 3, "Compact headers".
 */
import { PARSE_ERROR, ProtocolError } from './protocol-errors.js';
import { MAX_BUFFER_COUNT } from './limits.js';
import { isI32, isU32, readI32, readU32, writeU32 } from './le32.js';
import { joinPieces, PartsReader } from './parts.js';

export const enum CompactKind {
  /** A WSPSend request: {jsonrpc, id, method: "WSPSend", params: {s, buffers, flags, overlapped?}}. */
  SendRequest = 1,
  /** A reply whose result holds only ret, errno, bytesSent? and completion?. */
  Reply = 2,
  /** A spiwire.completion notification without data or from. */
  Completion = 3,
}

/** Header bytes before the per-kind fields: u8 kind, u8 flag bits, u16 count. */
const FIXED = 4;
const BIT_OVERLAPPED = 1;
const BIT_BYTES_SENT = 1;
const BIT_COMPLETION = 2;

/**
 * True when o has no own enumerable keys besides those in allowed: for the envelopes that add()
 * checks (one Set per shape, not a predicate per shape, so that the loop's site stays monomorphic).
 */
function onlyKeys(o: object, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

const requestKey: ReadonlySet<string> = new Set(['jsonrpc', 'id', 'method', 'params']);
const replyKey: ReadonlySet<string> = new Set(['jsonrpc', 'id', 'result']);
const notificationKey: ReadonlySet<string> = new Set(['jsonrpc', 'method', 'params']);

// The shapes checked for every send, reply and completion have key checks of their own: a key
// from for-in is an internalized string, and comparing it with a literal is a pointer compare
// where a Set lookup hashes it (about 12 against 28 ns per object, measured alone). Each shape
// has its own loop, so each loop's site stays monomorphic.

function onlySendParamKeys(o: object): boolean {
  for (const k in o) if (k !== 's' && k !== 'buffers' && k !== 'flags' && k !== 'overlapped') return false;
  return true;
}

function onlyOverlappedKeys(o: object): boolean {
  for (const k in o) if (k !== 'op' && k !== 'thread') return false;
  return true;
}

function onlyResultKeys(o: object): boolean {
  for (const k in o) if (k !== 'ret' && k !== 'errno' && k !== 'bytesSent' && k !== 'completion') return false;
  return true;
}

function onlyCompletionKeys(o: object): boolean {
  for (const k in o) if (k !== 'error' && k !== 'bytes' && k !== 'flags') return false;
  return true;
}

function onlyCompletionParamKeys(o: object): boolean {
  for (const k in o) if (k !== 'op' && k !== 's' && k !== 'error' && k !== 'bytes' && k !== 'flags') return false;
  return true;
}

type Rec = Record<string, unknown>;

/** A plain object (as JSON.parse or an object literal makes): nothing inherited, no class. */
function isPlain(v: unknown): v is Rec {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

const NO_BUFFERS: readonly Uint8Array[] = [];

/**
 * The fields of a message's compact header, read and checked. One object per frame builder,
 * refilled for every message: the encoder runs for every record, and a fresh plan (with a shape
 * per kind and per optional field) cost an allocation and a polymorphic read each time.
 */
export class CompactHeader {
  kind: CompactKind = CompactKind.Reply;
  /** Header bytes. */
  size = 0;
  id = 0;
  // SendRequest
  s = 0;
  flags = 0;
  /** The request's own buffer list (not copied): the record's data, back to back. */
  buffers: readonly Uint8Array[] = NO_BUFFERS;
  overlapped = false;
  op = 0;
  thread = 0;
  // Reply
  ret = 0;
  errno = 0;
  hasBytesSent = false;
  bytesSent = 0;
  hasCompletion = false;
  // Completion (and a reply's completion)
  error = 0;
  bytes = 0;

  /** Lets go of the request's buffers once its record is written: no payload is held past it. */
  release(): void {
    this.buffers = NO_BUFFERS;
  }
}


function isBufferList(v: unknown): v is readonly Uint8Array[] {
  if (!Array.isArray(v) || v.length > MAX_BUFFER_COUNT) return false;
  for (const x of v) if (!(x instanceof Uint8Array)) return false;
  return true;
}

/**
 * Fills h with the compact form of message and returns true, or returns false when the message
 * has none (it is then written as JSON). A WSPSend request's record data is its buffers.
 */
export function readCompactHeader(message: object, h: CompactHeader): boolean {
  if (!isPlain(message) || message['jsonrpc'] !== '2.0') return false;
  const m = message;
  if (m['method'] === 'WSPSend') return onlyKeys(m, requestKey) && readCompactSend(m['id'], m['params'], h);
  if (m['method'] === 'spiwire.completion') return onlyKeys(m, notificationKey) && readCompactCompletion(m['params'], h);
  return onlyKeys(m, replyKey) && readCompactReply(m['id'], m['result'], h);
}

/**
 * readCompactHeader for the params of a WSPSend call whose envelope the caller made itself
 * ({jsonrpc: "2.0", id, method: "WSPSend", params}): the SDK's path, no envelope to check.
 */
export function readCompactSend(id: unknown, p: unknown, h: CompactHeader): boolean {
  if (!isU32(id) || !isPlain(p) || !onlySendParamKeys(p)) return false;
  const b = p['buffers'];
  const s = p['s'];
  const flags = p['flags'];
  if (!isU32(s) || !isU32(flags) || !isBufferList(b)) return false;
  const ov = p['overlapped'];
  // (overlapped: null means the same as no overlapped, but its JSON form names it: stay JSON.)
  if (ov === undefined) {
    h.overlapped = false;
  } else {
    if (!isPlain(ov) || !onlyOverlappedKeys(ov)) return false;
    const op = ov['op'];
    const thread = ov['thread'];
    if (!isU32(op) || !isU32(thread)) return false;
    h.overlapped = true;
    h.op = op;
    h.thread = thread;
  }
  h.kind = CompactKind.SendRequest;
  h.size = FIXED + (h.overlapped ? 20 : 12) + 4 * b.length;
  h.id = id;
  h.s = s;
  h.flags = flags;
  h.buffers = b;
  return true;
}

/**
 * readCompactHeader for the params of a spiwire.completion whose envelope the caller made itself
 * ({jsonrpc: "2.0", method: "spiwire.completion", params}): the daemon's path, no envelope to check.
 */
export function readCompactCompletion(p: unknown, h: CompactHeader): boolean {
  if (!isPlain(p) || !onlyCompletionParamKeys(p)) return false;
  const { op, s, error, bytes, flags } = p;
  if (!isU32(op) || !isU32(s) || !isU32(error) || !isU32(bytes) || !isU32(flags)) return false;
  h.kind = CompactKind.Completion;
  h.size = FIXED + 20;
  h.op = op;
  h.s = s;
  h.error = error;
  h.bytes = bytes;
  h.flags = flags;
  h.buffers = NO_BUFFERS;
  return true;
}

/**
 * readCompactHeader for a reply whose envelope the caller made itself ({jsonrpc: "2.0", id,
 * result}): the daemon's path, no envelope to check.
 */
export function readCompactReply(id: unknown, r: unknown, h: CompactHeader): boolean {
  if (!isU32(id) || !isPlain(r) || !onlyResultKeys(r)) return false;
  const { ret, errno, bytesSent, completion: c } = r;
  if (!isI32(ret) || !isU32(errno)) return false;
  let size = FIXED + 12;
  if (bytesSent !== undefined) {
    if (!isU32(bytesSent)) return false;
    h.bytesSent = bytesSent;
    size += 4;
  }
  if (c !== undefined) {
    if (!isPlain(c) || !onlyCompletionKeys(c)) return false;
    const { error, bytes, flags } = c;
    if (!isU32(error) || !isU32(bytes) || !isU32(flags)) return false;
    h.error = error;
    h.bytes = bytes;
    h.flags = flags;
    size += 12;
  }
  h.kind = CompactKind.Reply;
  h.size = size;
  h.id = id;
  h.ret = ret;
  h.errno = errno;
  h.hasBytesSent = bytesSent !== undefined;
  h.hasCompletion = c !== undefined;
  h.buffers = NO_BUFFERS;
  return true;
}

/** Writes the compact header h at buf[at] (h.size bytes). */
export function writeCompactHeader(h: CompactHeader, buf: Uint8Array, at: number): void {
  switch (h.kind) {
    case CompactKind.SendRequest: {
      const b = h.buffers;
      buf[at] = CompactKind.SendRequest;
      buf[at + 1] = h.overlapped ? BIT_OVERLAPPED : 0;
      buf[at + 2] = b.length & 0xff;
      buf[at + 3] = b.length >>> 8;
      writeU32(buf, at + 4, h.id);
      writeU32(buf, at + 8, h.s);
      writeU32(buf, at + 12, h.flags);
      let o = at + 16;
      if (h.overlapped) {
        writeU32(buf, o, h.op);
        writeU32(buf, o + 4, h.thread);
        o += 8;
      }
      for (const x of b) {
        writeU32(buf, o, x.length);
        o += 4;
      }
      return;
    }
    case CompactKind.Completion:
      writeU32(buf, at, CompactKind.Completion);
      writeU32(buf, at + 4, h.op);
      writeU32(buf, at + 8, h.s);
      writeU32(buf, at + 12, h.error);
      writeU32(buf, at + 16, h.bytes);
      writeU32(buf, at + 20, h.flags);
      return;
    case CompactKind.Reply: {
      writeU32(buf, at, CompactKind.Reply | ((h.hasBytesSent ? BIT_BYTES_SENT : 0) | (h.hasCompletion ? BIT_COMPLETION : 0)) << 8);
      writeU32(buf, at + 4, h.id);
      writeU32(buf, at + 8, h.ret);
      writeU32(buf, at + 12, h.errno);
      let o = at + 16;
      if (h.hasBytesSent) {
        writeU32(buf, o, h.bytesSent);
        o += 4;
      }
      if (h.hasCompletion) {
        writeU32(buf, o, h.error);
        writeU32(buf, o + 4, h.bytes);
        writeU32(buf, o + 8, h.flags);
      }
    }
  }
}

/**
 * A compact reply (kind 2) read in place by readReplyInPlace: its fields as numbers, with no
 * message object. The SDK reads one per send on its hot path, into one object it keeps.
 */
export interface CompactReply {
  id: number;
  ret: number;
  errno: number;
  /** bytesSent, or -1 when the reply has none. */
  bytesSent: number;
  /** completion: error, bytes and flags, when hasCompletion. */
  hasCompletion: boolean;
  error: number;
  bytes: number;
  flags: number;
}

/** A CompactReply to fill (one per reader). */
export function compactReplyFields(): CompactReply {
  return { id: 0, ret: 0, errno: 0, bytesSent: -1, hasCompletion: false, error: 0, bytes: 0, flags: 0 };
}

/**
 * Reads the header at buf[at, at + length) into into when it is a well-formed compact reply with
 * no record data (dataLength 0), and says whether it was. Anything else, a malformed reply
 * included, is left to decodeCompactHeaderAt, which gives the same fields or the error.
 */
export function readReplyInPlace(buf: Uint8Array, at: number, length: number, dataLength: number, into: CompactReply): boolean {
  if (length < FIXED + 12 || buf[at] !== CompactKind.Reply || dataLength !== 0) return false;
  const bits = buf[at + 1]!;
  if (bits & ~(BIT_BYTES_SENT | BIT_COMPLETION) || buf[at + 2] !== 0 || buf[at + 3] !== 0) return false;
  if (length !== FIXED + 12 + (bits & BIT_BYTES_SENT ? 4 : 0) + (bits & BIT_COMPLETION ? 12 : 0)) return false;
  into.id = readU32(buf, at + 4);
  into.ret = readI32(buf, at + 8);
  into.errno = readU32(buf, at + 12);
  let o = at + 16;
  if (bits & BIT_BYTES_SENT) {
    into.bytesSent = readU32(buf, o);
    o += 4;
  } else {
    into.bytesSent = -1;
  }
  into.hasCompletion = (bits & BIT_COMPLETION) !== 0;
  if (into.hasCompletion) {
    into.error = readU32(buf, o);
    into.bytes = readU32(buf, o + 4);
    into.flags = readU32(buf, o + 8);
  }
  return true;
}

/** True when a record header is compact (its first byte is a kind, not JSON). */
export function isCompactHeader(header: Uint8Array): boolean {
  return isCompactAt(header, 0, header.length);
}

/** isCompactHeader for the header at buf[at, at + length). */
export function isCompactAt(buf: Uint8Array, at: number, length: number): boolean {
  return length > 0 && buf[at]! < 0x09;
}

/** Where decodeCompact reads a reply before making its message. */
const decodedReply = compactReplyFields();

/**
 * The result of a reply read in place, as its JSON form would give it; without its completion
 * when withCompletion is false (a reader that takes the completion as numbers).
 */
export function compactReplyResult(f: CompactReply, withCompletion: boolean): Rec {
  // One literal per shape: the result's keys are walked again on its way to the caller.
  const result: Rec = f.bytesSent < 0 ? { ret: f.ret, errno: f.errno } : { ret: f.ret, errno: f.errno, bytesSent: f.bytesSent };
  if (withCompletion && f.hasCompletion) result['completion'] = { error: f.error, bytes: f.bytes, flags: f.flags };
  return result;
}

/** The message a reply read in place stands for. */
function replyMessage(f: CompactReply): Rec {
  return { jsonrpc: '2.0', id: f.id, result: compactReplyResult(f, true) };
}

function bad(message: string): never {
  throw new ProtocolError(PARSE_ERROR, `compact header: ${message}`);
}

/**
 * Decodes the compact header at buf[at, at + length) (and its record data) into the message its
 * JSON form would give. It is read where it lies: a frame in one buffer needs no view of each
 * header.
 */
export function decodeCompactHeaderAt(buf: Uint8Array, at: number, length: number, data: Uint8Array): Rec {
  return decodeCompact(buf, at, length, data.length, data, null);
}

/**
 * decodeCompactHeaderAt for record data that arrived in pieces (decodeFrameParts): a WSPSend's
 * buffers are cut from the pieces as views, one buffer becoming several where it spans pieces
 * (the bytes, in order, are the same send). Where that would pass MAX_BUFFER_COUNT the pieces
 * are joined first.
 */
export function decodeCompactHeaderPieces(header: Uint8Array, pieces: readonly Uint8Array[]): Rec {
  const reader = new PartsReader(pieces);
  const total = reader.left;
  return decodeCompact(header, 0, header.length, total, null, (lengths) => {
    if (lengths.length + pieces.length - 1 > MAX_BUFFER_COUNT) return sliceBuffers(lengths, joinPieces(pieces, total));
    const buffers: Uint8Array[] = [];
    for (const len of lengths) buffers.push(...reader.pieces(len));
    return buffers;
  });
}

/** Consecutive views of data, of the given lengths (which add up to its length). */
function sliceBuffers(lengths: readonly number[], data: Uint8Array): Uint8Array[] {
  // One buffer is the whole data: no view of a view (one object fewer per small send).
  if (lengths.length === 1) return [data];
  const buffers: Uint8Array[] = new Array(lengths.length);
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    buffers[i] = data.subarray(at, at + lengths[i]!);
    at += lengths[i]!;
  }
  return buffers;
}

function expectSize(length: number, n: number, what: string): void {
  if (length !== n) bad(`${what} takes ${n} bytes, not ${length}`);
}

/**
 * Decodes the compact header at h[at, at + length) whose record data holds dataLength bytes: a
 * WSPSend's buffers are views of data when given, else made by cut from their lengths, once the
 * lengths are known to add up to the data.
 */
function decodeCompact(h: Uint8Array, at: number, length: number, dataLength: number, data: Uint8Array | null, cut: ((lengths: number[]) => Uint8Array[]) | null): Rec {
  if (length < FIXED) bad(`${length} bytes is too short`);
  const kind = h[at]!;
  const bits = h[at + 1]!;
  const count = h[at + 2]! | (h[at + 3]! << 8);
  switch (kind) {
    case CompactKind.SendRequest: {
      if (bits & ~BIT_OVERLAPPED) bad(`unknown flag bits 0x${bits.toString(16)} in a WSPSend request`);
      const ovBytes = bits & BIT_OVERLAPPED ? 8 : 0;
      expectSize(length, FIXED + 12 + ovBytes + 4 * count, `a WSPSend request with ${count} buffers`);
      const params: Rec = { s: readU32(h, at + 8), buffers: null, flags: readU32(h, at + 12) };
      let o = at + 16;
      if (ovBytes) {
        params['overlapped'] = { op: readU32(h, at + 16), thread: readU32(h, at + 20) };
        o = at + 24;
      }
      const lengths: number[] = new Array(count);
      let sum = 0;
      for (let i = 0; i < count; i++, o += 4) {
        const len = readU32(h, o);
        if (sum + len > dataLength) bad(`buffer lengths add up to more than the record data of ${dataLength} bytes`);
        lengths[i] = len;
        sum += len;
      }
      if (sum !== dataLength) bad(`buffer lengths add up to ${sum}, the record data holds ${dataLength} bytes`);
      params['buffers'] = data !== null ? sliceBuffers(lengths, data) : cut!(lengths);
      return { jsonrpc: '2.0', id: readU32(h, at + 4), method: 'WSPSend', params };
    }
    case CompactKind.Reply: {
      // The layout is read in one place, readReplyInPlace; the checks below only say what is wrong.
      if (readReplyInPlace(h, at, length, dataLength, decodedReply)) return replyMessage(decodedReply);
      if (bits & ~(BIT_BYTES_SENT | BIT_COMPLETION)) bad(`unknown flag bits 0x${bits.toString(16)} in a reply`);
      if (count !== 0) bad('a reply has no count');
      expectSize(length, FIXED + 12 + (bits & BIT_BYTES_SENT ? 4 : 0) + (bits & BIT_COMPLETION ? 12 : 0), 'this reply');
      return bad('a reply carries no record data');
    }
    case CompactKind.Completion: {
      expectSize(length, FIXED + 20, 'a completion');
      if (bits !== 0 || count !== 0) bad('a completion has no flag bits or count');
      if (dataLength !== 0) bad('a completion carries no record data');
      const params = { op: readU32(h, at + 4), s: readU32(h, at + 8), error: readU32(h, at + 12), bytes: readU32(h, at + 16), flags: readU32(h, at + 20) };
      return { jsonrpc: '2.0', method: 'spiwire.completion', params };
    }
    default:
      return bad(`unknown kind ${kind}`);
  }
}
