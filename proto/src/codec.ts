/**
 * The spiwire frame codec. Pure: bytes in, messages out; no sockets, timers or logs.
 *
 * A binary WebSocket message (a "frame") is one or more records back to back:
 *
 *   record := u32le headerLength | header | u32le dataLength | data
 *
 * The header is one JSON-RPC 2.0 message in UTF-8 JSON. A byte-string value anywhere in the
 * message is written as {"$b":[offset,length]}, a slice of that record's data. A text
 * WebSocket message holds one JSON-RPC message, with byte strings written {"$base64":"..."}.
 */
import { BAD_FRAME, PARSE_ERROR, ProtocolError } from './protocol-errors.js';
import { MAX_HEADER_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH, MAX_RECORDS_PER_FRAME } from './limits.js';
import { CompactHeader, decodeCompactHeaderAt, decodeCompactHeaderPieces, isCompactAt, isCompactHeader, readCompactCompletion, readCompactHeader, readCompactReply, readCompactSend, readReplyInPlace, writeCompactHeader, type CompactReply } from './compact.js';

import { isU32, readU32, writeU32 } from './le32.js';
import { ACK_HEADER_MAX_BYTES, ackHeader, ackHeaderCount, isAckCount, isAckParams } from './ack-header.js';
import { joinPieces, PartsReader } from './parts.js';
import { isRecord } from './guards.js';
import type { RequestId } from './messages.js';

export type JsonValue = null | boolean | number | string | Uint8Array | JsonValue[] | { [key: string]: JsonValue | undefined };

export interface DecodeLimits {
  maxHeaderBytes: number;
  maxDataBytes: number;
  maxRecords: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = {
  maxHeaderBytes: MAX_HEADER_BYTES,
  maxDataBytes: 64 * 1024 * 1024,
  maxRecords: MAX_RECORDS_PER_FRAME,
};

/** One decoded record: either a parsed message, or a record whose header could not be parsed. */
export type DecodedRecord =
  | {
      ok: true;
      message: unknown;
      /** The header was compact (proto/README.md, section 3, "Compact headers"). */
      compact?: boolean;
      /** The decoder built the message from a fixed layout (a compact header, or an ack's exact spelling): its params have their method's shape. */
      shaped?: boolean;
    }
  | { ok: false; error: ProtocolError };

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

/** Why a record that starts with this header length cannot be read (BAD_FRAME), or null. */
function recordStartFault(headerLength: number, recordsBefore: number, limits: DecodeLimits): string | null {
  if (headerLength === 0 || headerLength > limits.maxHeaderBytes) return `record header length ${headerLength} is outside 1..${limits.maxHeaderBytes}`;
  if (recordsBefore >= limits.maxRecords) return `more than ${limits.maxRecords} records in one frame`;
  return null;
}

/** Why a record's data length cannot be read (BAD_FRAME), or null. */
function dataLengthFault(dataLength: number, limits: DecodeLimits): string | null {
  return dataLength > limits.maxDataBytes ? `record data length ${dataLength} exceeds ${limits.maxDataBytes}` : null;
}

/**
 * A binary frame whose structure has been checked (every length, the record count) and whose
 * headers are not parsed yet. A frame may hold 16 MiB of JSON in its headers; parsing them one at
 * a time, as each record's turn comes, lets the daemon share its time with other sessions between
 * records instead of parsing the whole frame at once.
 */
export interface SplitFrame {
  /** How many records the frame holds. */
  readonly length: number;
  /** Record i, its header parsed (once per call: call it once per record). */
  record(i: number): DecodedRecord;
  /** The bytes record i takes in the frame: its header and its data. */
  size(i: number): number;
  /**
   * Reads record i into into, without parsing it into a message, when it is a well-formed
   * compact reply (readReplyInPlace); false otherwise, and then record(i) parses it.
   */
  compactReply(i: number, into: CompactReply): boolean;
}

/** Checks one complete binary frame and finds its records. Throws ProtocolError(BAD_FRAME) for a truncated or oversized frame. */
export function splitFrame(frame: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): SplitFrame {
  if (frame.length === 0) throw new ProtocolError(BAD_FRAME, 'empty frame');
  // The whole frame is at hand: four numbers per record (where its header and its data lie),
  // each length checked as soon as it is read.
  const spans: number[] = [];
  const end = frame.length;
  let at = 0;
  while (at < end) {
    if (end - at < 4) truncated();
    const headerLength = readU32(frame, at);
    const startFault = recordStartFault(headerLength, spans.length >> 2, limits);
    if (startFault) throw new ProtocolError(BAD_FRAME, startFault);
    at += 4;
    if (end - at < headerLength + 4) truncated();
    const headerAt = at;
    at += headerLength;
    const dataLength = readU32(frame, at);
    const dataFault = dataLengthFault(dataLength, limits);
    if (dataFault) throw new ProtocolError(BAD_FRAME, dataFault);
    at += 4;
    if (end - at < dataLength) truncated();
    spans.push(headerAt, headerLength, at, dataLength);
    at += dataLength;
  }
  return new WholeFrame(frame, spans);
}

/** A frame in one buffer: where each record's header and data lie, four numbers per record. */
class WholeFrame implements SplitFrame {
  readonly length: number;

  constructor(
    private readonly frame: Uint8Array,
    private readonly spans: readonly number[],
  ) {
    this.length = spans.length >> 2;
  }

  record(i: number): DecodedRecord {
    const k = i << 2;
    const spans = this.spans;
    const frame = this.frame;
    const headerAt = spans[k]!;
    const headerLength = spans[k + 1]!;
    const data = frame.subarray(spans[k + 2]!, spans[k + 2]! + spans[k + 3]!);
    // A compact header is read where it lies: no view of it (two objects per small send).
    if (isCompactAt(frame, headerAt, headerLength)) return compactRecord(frame, headerAt, headerLength, data);
    return parseHeader(frame.subarray(headerAt, headerAt + headerLength), data);
  }

  size(i: number): number {
    return this.spans[(i << 2) + 1]! + this.spans[(i << 2) + 3]!;
  }

  compactReply(i: number, into: CompactReply): boolean {
    const k = i << 2;
    return readReplyInPlace(this.frame, this.spans[k]!, this.spans[k + 1]!, this.spans[k + 3]!, into);
  }
}

function truncated(): never {
  throw new ProtocolError(BAD_FRAME, 'frame ends inside a record (truncated)');
}

/**
 * splitFrame for a frame that arrived in parts (views of the reads that held it, in order): the
 * same records, the same errors. Record headers and lengths that span parts are joined (they are
 * small); a compact WSPSend's buffers stay views of the parts (decodeCompactHeaderPieces); any
 * other record data that spans parts is joined when its record is parsed.
 */
export function splitFrameParts(parts: readonly Uint8Array[], limits: DecodeLimits = DEFAULT_DECODE_LIMITS): SplitFrame {
  if (parts.length === 1) return splitFrame(parts[0]!, limits);
  const r = new PartsReader(parts);
  if (r.left === 0) throw new ProtocolError(BAD_FRAME, 'empty frame');
  // A header that spans parts is joined when its record is parsed, not here: up to 16 MiB of them.
  const headers: Uint8Array[][] = [];
  const headerLengths: number[] = [];
  const data: Uint8Array[][] = [];
  const dataLengths: number[] = [];
  while (r.left > 0) {
    if (r.left < 4) truncated();
    const headerLength = r.u32();
    const startFault = recordStartFault(headerLength, headers.length, limits);
    if (startFault) throw new ProtocolError(BAD_FRAME, startFault);
    if (r.left < headerLength + 4) truncated();
    headers.push(r.pieces(headerLength));
    headerLengths.push(headerLength);
    const dataLength = r.u32();
    const dataFault = dataLengthFault(dataLength, limits);
    if (dataFault) throw new ProtocolError(BAD_FRAME, dataFault);
    if (r.left < dataLength) truncated();
    data.push(r.pieces(dataLength));
    dataLengths.push(dataLength);
  }
  return {
    length: headers.length,
    record: (i) => {
      const header = headers[i]!;
      return parsePiecesRecord(header.length === 1 ? header[0]! : joinPieces(header, headerLengths[i]!), data[i]!, dataLengths[i]!);
    },
    size: (i) => headerLengths[i]! + dataLengths[i]!,
    compactReply: () => false,
  };
}

function parsePiecesRecord(header: Uint8Array, pieces: Uint8Array[], dataLength: number): DecodedRecord {
  if (pieces.length === 1) return parseHeader(header, pieces[0]!);
  if (isCompactHeader(header)) {
    try {
      return { ok: true, message: decodeCompactHeaderPieces(header, pieces), compact: true, shaped: true };
    } catch (err) {
      return { ok: false, error: asProtocolError(err) };
    }
  }
  return parseHeader(header, joinPieces(pieces, dataLength));
}

/** Every record of a split frame, parsed. */
function allRecords(frame: SplitFrame): DecodedRecord[] {
  const out: DecodedRecord[] = [];
  for (let i = 0; i < frame.length; i++) out.push(frame.record(i));
  return out;
}

/** Decodes one complete binary frame. Throws ProtocolError(BAD_FRAME) for a truncated or oversized frame. */
export function decodeFrame(frame: Uint8Array, limits: DecodeLimits = DEFAULT_DECODE_LIMITS): DecodedRecord[] {
  return allRecords(splitFrame(frame, limits));
}

/** decodeFrame for a frame that arrived in parts (see splitFrameParts). */
export function decodeFrameParts(parts: readonly Uint8Array[], limits: DecodeLimits = DEFAULT_DECODE_LIMITS): DecodedRecord[] {
  return allRecords(splitFrameParts(parts, limits));
}

/** Decodes one text frame: a single JSON-RPC message, byte strings as {"$base64": "..."}. */
export function decodeText(text: string): DecodedRecord {
  // A byte order mark at the start is skipped, as in a binary frame's header (TextDecoder).
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let value: unknown;
  try {
    const shape = jsonShapeProblem(text);
    if (shape) throw shape;
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: new ProtocolError(PARSE_ERROR, `text frame is not JSON: ${(err as Error).message}`) };
  }
  try {
    checkDepth(value, 0);
    return { ok: true, message: reviveBase64(value) };
  } catch (err) {
    return { ok: false, error: asProtocolError(err) };
  }
}

/** The record whose compact header lies at buf[at, at + length). */
function compactRecord(buf: Uint8Array, at: number, length: number, data: Uint8Array): DecodedRecord {
  try {
    return { ok: true, message: decodeCompactHeaderAt(buf, at, length, data), compact: true, shaped: true };
  } catch (err) {
    return { ok: false, error: asProtocolError(err) };
  }
}

function parseHeader(header: Uint8Array, data: Uint8Array): DecodedRecord {
  if (isCompactHeader(header)) return compactRecord(header, 0, header.length, data);
  // An acknowledgement as ackHeader spells it: the message JSON.parse would give, without it.
  if (data.length === 0) {
    const received = ackHeaderCount(header);
    if (received >= 0) return { ok: true, message: { jsonrpc: '2.0', method: 'spiwire.ack', params: { received } }, shaped: true };
  }
  const shape = jsonShapeProblem(header);
  if (shape) return { ok: false, error: shape };
  let value: unknown;
  try {
    value = JSON.parse(utf8Decoder.decode(header));
  } catch (err) {
    return { ok: false, error: new ProtocolError(PARSE_ERROR, `record header is not UTF-8 JSON: ${(err as Error).message}`) };
  }
  try {
    return { ok: true, message: reviveRefs(value, data, 0) };
  } catch (err) {
    // A header that is too deep is PARSE_ERROR even when a bad byte reference came first in the
    // walk: the depth rule is checked on the whole header before references mean anything.
    if (err instanceof ProtocolError && err.code === BAD_FRAME) {
      try {
        checkDepth(value, 0);
      } catch (deep) {
        return { ok: false, error: asProtocolError(deep) };
      }
    }
    return { ok: false, error: asProtocolError(err) };
  }
}

function asProtocolError(err: unknown): ProtocolError {
  return err instanceof ProtocolError ? err : new ProtocolError(PARSE_ERROR, String(err));
}

function tooDeep(): ProtocolError {
  return new ProtocolError(PARSE_ERROR, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * PARSE_ERROR when the JSON text nests arrays and objects deeper than MAX_JSON_DEPTH, or has more
 * than MAX_JSON_CONTAINERS of them; null otherwise. Checked on the raw text before JSON.parse:
 * parsing a megabyte of "[[[[..." first builds that whole structure, which stalled the daemon for
 * every session. (Brackets inside strings do not count; these ASCII bytes never occur inside a
 * multi-byte UTF-8 character.)
 */
function jsonShapeProblem(text: Uint8Array | string): ProtocolError | null {
  const bytes = typeof text !== 'string';
  let depth = 0;
  let containers = 0;
  for (let i = 0; i < text.length; i++) {
    const c = bytes ? text[i]! : text.charCodeAt(i);
    if (c === QUOTE) {
      // Over the string at native speed: a frame may hold megabytes of one (a base64 payload).
      i = closingQuote(text, i + 1);
      if (i < 0) return null;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > MAX_JSON_DEPTH) return tooDeep();
      if (++containers > MAX_JSON_CONTAINERS) return new ProtocolError(PARSE_ERROR, `JSON with more than ${MAX_JSON_CONTAINERS} arrays and objects`);
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) depth--;
  }
  return null;
}

/** Where the string that starts at from ends (its closing quote), or -1 when it never does. */
function closingQuote(text: Uint8Array | string, from: number): number {
  let at = from;
  for (;;) {
    const q = typeof text === 'string' ? text.indexOf('"', at) : text.indexOf(QUOTE, at);
    if (q < 0) return -1;
    // Escaped when an odd number of backslashes comes right before it.
    let backslashes = 0;
    while (q - backslashes - 1 >= from && (typeof text === 'string' ? text.charCodeAt(q - backslashes - 1) : text[q - backslashes - 1]) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return q;
    at = q + 1;
  }
}

function checkDepth(value: unknown, depth: number): void {
  if (value === null || typeof value !== 'object') return;
  if (depth >= MAX_JSON_DEPTH) throw new ProtocolError(PARSE_ERROR, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  for (const v of Array.isArray(value) ? value : Object.values(value)) checkDepth(v, depth + 1);
}

function isRef(o: Record<string, unknown>, key: string): boolean {
  // A byte reference is an object with exactly one key.
  let count = 0;
  for (const k in o) {
    if (++count > 1 || k !== key) return false;
  }
  return count === 1;
}

/** Swaps byte references for slices of the record data, checking the nesting depth on the way. */
function reviveRefs(value: unknown, data: Uint8Array, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_JSON_DEPTH) throw new ProtocolError(PARSE_ERROR, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveRefs(value[i], data, depth + 1);
    return value;
  }
  if (!isRecord(value)) return value;
  const o = value;
  if (isRef(o, '$b')) {
    const ref = o['$b'];
    if (!Array.isArray(ref) || ref.length !== 2 || !isU32(ref[0]) || !isU32(ref[1])) {
      // (parseHeader checks the depth of the whole header before it reports this.)
      throw new ProtocolError(BAD_FRAME, 'a byte reference must be {"$b":[offset,length]} with non-negative integers');
    }
    if (depth + 1 >= MAX_JSON_DEPTH) throw new ProtocolError(PARSE_ERROR, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
    const start: number = ref[0];
    const len: number = ref[1];
    if (start + len > data.length) {
      throw new ProtocolError(BAD_FRAME, `byte reference [${start},${len}] lies outside the record data of ${data.length} bytes`);
    }
    return data.subarray(start, start + len);
  }
  for (const k in o) o[k] = reviveRefs(o[k], data, depth + 1);
  return o;
}

function reviveBase64(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = reviveBase64(value[i]);
    return value;
  }
  if (!isRecord(value)) return value;
  const o = value;
  if (isRef(o, '$base64')) {
    const s = o['$base64'];
    if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
      throw new ProtocolError(PARSE_ERROR, '{"$base64": ...} must hold a padded standard base64 string');
    }
    return base64ToBytes(s);
  }
  for (const k in o) o[k] = reviveBase64(o[k]);
  return o;
}

/**
 * Builds binary frames: add() one message at a time (byte strings as Uint8Array anywhere in
 * it), then finish() returns the frame. The bytes are copied into the frame when the message is
 * added, so a caller may reuse its buffers as soon as add() returns. Records are written straight
 * into one growing buffer; alloc lets a Node caller pass Buffer.allocUnsafe to skip zero-filling.
 */
export class FrameBuilder {
  private buf: Uint8Array;
  /** Where the frame being built starts: finished frames before it stay untouched views. */
  private start = 0;
  private used = 0;
  private count = 0;
  /**
   * Write the messages that have one in their compact form (proto/README.md, section 3, "Compact headers"). Only
   * for a peer known to read compact headers.
   */
  compact = false;
  /** Refilled for each message written in compact form. */
  private readonly header = new CompactHeader();

  constructor(
    /** Memory for frames: at least min bytes; n is what the builder would like (room to grow). */
    private readonly alloc: (n: number, min: number) => Uint8Array = (n) => new Uint8Array(n),
    private readonly initialSize = 16 * 1024,
  ) {
    this.buf = alloc(initialSize, initialSize);
  }

  get byteLength(): number {
    return this.used - this.start;
  }

  /** Bytes left in the buffer before the next record moves the frame under construction. */
  get room(): number {
    return this.buf.length - this.used;
  }

  /** The memory frames are being written into now: finished frames elsewhere are no longer touched. */
  get current(): ArrayBufferLike {
    return this.buf.buffer;
  }

  get recordCount(): number {
    return this.count;
  }

  /**
   * add({jsonrpc: "2.0", id, method, params}), or without id a notification, without making the
   * envelope when the call goes compact.
   */
  addCall(id: RequestId | null, method: string, params: object): void {
    if (this.compact && method === 'WSPSend' && readCompactSend(id, params, this.header)) this.addCompact(this.header);
    else if (id === null && method === 'spiwire.ack' && isAckParams(params)) this.addAckHeader(params.received);
    else this.add(id === null ? { jsonrpc: '2.0', method, params } : { jsonrpc: '2.0', id, method, params });
  }

  /** add({jsonrpc: "2.0", id, result}), without making the envelope when the reply goes compact. */
  addReply(id: RequestId | null, result: object): void {
    if (this.compact && readCompactReply(id, result, this.header)) this.addCompact(this.header);
    else this.add({ jsonrpc: '2.0', id, result });
  }

  /** add({jsonrpc: "2.0", method, params}), without making the envelope when it goes compact. */
  addNotification(method: string, params: object): void {
    if (this.compact && method === 'spiwire.completion' && readCompactCompletion(params, this.header)) this.addCompact(this.header);
    else this.add({ jsonrpc: '2.0', method, params });
  }

  /**
   * add({jsonrpc: "2.0", method: "spiwire.ack", params: {received}}): the bytes JSON.stringify
   * would write, written directly (ack-header.ts says why).
   */
  addAck(received: number): void {
    if (isAckCount(received)) this.addAckHeader(received);
    else this.add({ jsonrpc: '2.0', method: 'spiwire.ack', params: { received } });
  }

  /** addAck for a count isAckCount has taken. */
  private addAckHeader(received: number): void {
    this.reserve(8 + ACK_HEADER_MAX_BYTES);
    const at = this.used;
    this.endRecord(at, ackHeader(this.buf, at + 4, received), [], 0);
  }

  add(message: object): void {
    if (this.compact) {
      if (readCompactHeader(message, this.header)) {
        this.addCompact(this.header);
        return;
      }
    }
    const blobs: Uint8Array[] = [];
    let dataLen = 0;
    // Byte strings are swapped for references before JSON.stringify sees them: stringify would
    // otherwise run Buffer.prototype.toJSON, turning every payload into an array of numbers.
    // Only the objects on the way to a byte string are copied; the rest are used as they are.
    const withRefs = (v: unknown): unknown => {
      if (v === null || typeof v !== 'object') return v;
      if (v instanceof Uint8Array) {
        const ref = { $b: [dataLen, v.length] };
        blobs.push(v);
        dataLen += v.length;
        return ref;
      }
      if (Array.isArray(v)) {
        let copy: unknown[] | null = null;
        for (let i = 0; i < v.length; i++) {
          const x = withRefs(v[i]);
          if (x !== v[i] && copy === null) copy = v.slice(0, i);
          if (copy !== null) copy.push(x);
        }
        return copy ?? v;
      }
      const src = v as Record<string, unknown>;
      let copy: Record<string, unknown> | null = null;
      for (const k in src) {
        const x = withRefs(src[k]);
        if (x !== src[k] && copy === null) {
          copy = {};
          for (const j in src) {
            if (j === k) break;
            copy[j] = src[j];
          }
        }
        if (copy !== null) copy[k] = x;
      }
      return copy ?? v;
    };
    const json = JSON.stringify(withRefs(message));
    // UTF-8 takes at most 3 bytes per UTF-16 unit; encodeInto writes the header in place.
    const maxHeader = json.length * 3;
    this.reserve(8 + maxHeader + dataLen);
    const at = this.used;
    const { written } = utf8Encoder.encodeInto(json, this.buf.subarray(at + 4, at + 4 + maxHeader));
    this.endRecord(at, written, blobs, dataLen);
  }

  private addCompact(h: CompactHeader): void {
    const buffers = h.buffers;
    let dataLen = 0;
    for (const b of buffers) dataLen += b.length;
    this.reserve(8 + h.size + dataLen);
    const at = this.used;
    writeCompactHeader(h, this.buf, at + 4);
    this.endRecord(at, h.size, buffers, dataLen);
    h.release();
  }

  /** Completes the record at `at` whose header is in place: its lengths, then its data. */
  private endRecord(at: number, headerLength: number, data: readonly Uint8Array[], dataLength: number): void {
    writeU32(this.buf, at, headerLength);
    let p = at + 4 + headerLength;
    writeU32(this.buf, p, dataLength);
    p += 4;
    for (const b of data) {
      this.buf.set(b, p);
      p += b.length;
    }
    this.used = p;
    this.count++;
  }

  private reserve(n: number): void {
    if (this.used + n <= this.buf.length) return;
    // Move the frame under construction to a new buffer; finished frames keep the old one.
    const pending = this.used - this.start;
    const bigger = this.alloc(Math.max(this.initialSize, 2 * (pending + n)), pending + n);
    bigger.set(this.buf.subarray(this.start, this.used));
    this.buf = bigger;
    this.start = 0;
    this.used = pending;
  }

  /**
   * Declares every finished frame consumed (copied by the transport): the next record is written
   * from the start of the buffer again, so a steady stream of calls needs no new memory.
   */
  recycle(): void {
    if (this.used === this.start) {
      this.start = 0;
      this.used = 0;
    }
  }

  /**
   * The frame holding every record added since the last finish(). Later frames are written after
   * it in the same buffer (never over it), so the frame stays valid while the transport holds it.
   */
  finish(): Uint8Array {
    const out = this.buf.subarray(this.start, this.used);
    this.start = this.used;
    this.count = 0;
    return out;
  }
}

/** Encodes one message as a complete binary frame. */
export function encodeFrame(message: object): Uint8Array {
  const b = new FrameBuilder();
  b.add(message);
  return b.finish();
}

/** Encodes one message as a text frame, byte strings as {"$base64": "..."}. */
export function encodeText(message: object): string {
  return JSON.stringify(message, function (this: Record<string, unknown>, key, v: unknown) {
    const original = this[key];
    return original instanceof Uint8Array ? { $base64: bytesToBase64(original) } : v;
  });
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_INDEX[B64.charCodeAt(i)] = i;

/** Standard padded base64; written here so the codec needs no Buffer and runs anywhere. */
export function bytesToBase64(bytes: Uint8Array): string {
  let s = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + '==';
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + '=';
  }
  return s;
}

/** Node's decoder, where there is one (several times faster on the megabytes a text frame may hold). */
const nativeBase64 = (globalThis as { Buffer?: { from(s: string, encoding: 'base64'): Uint8Array } }).Buffer;

/** Decodes standard padded base64 the caller has checked (the unused bits of the last character are ignored). */
export function base64ToBytes(s: string): Uint8Array {
  // Past node's pool size, so that the bytes own their memory as the JavaScript decoder's do.
  if (nativeBase64 && s.length > 16384) return nativeBase64.from(s, 'base64');
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const a = B64_INDEX[s.charCodeAt(i)]!;
    const b = B64_INDEX[s.charCodeAt(i + 1)]!;
    const c = s[i + 2] === '=' ? 0 : B64_INDEX[s.charCodeAt(i + 2)]!;
    const d = s[i + 3] === '=' ? 0 : B64_INDEX[s.charCodeAt(i + 3)]!;
    const n = (a << 18) | (b << 12) | (c << 6) | d;
    if (o < out.length) out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
  }
  return out;
}
