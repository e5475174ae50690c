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

/** True when o has no own enumerable keys besides those listed. */
function onlyKeys(o: object, allowed: (k: string) => boolean): boolean {
  for (const k in o) if (!allowed(k)) return false;
  return true;
}

const sendParamKey = (k: string): boolean => k === 's' || k === 'buffers' || k === 'flags' || k === 'overlapped';
const requestKey = (k: string): boolean => k === 'jsonrpc' || k === 'id' || k === 'method' || k === 'params';
const replyKey = (k: string): boolean => k === 'jsonrpc' || k === 'id' || k === 'result';
const resultKey = (k: string): boolean => k === 'ret' || k === 'errno' || k === 'bytesSent' || k === 'completion';
const completionKey = (k: string): boolean => k === 'error' || k === 'bytes' || k === 'flags';
const notificationKey = (k: string): boolean => k === 'jsonrpc' || k === 'method' || k === 'params';
const completionParamKey = (k: string): boolean => k === 'op' || k === 's' || k === 'error' || k === 'bytes' || k === 'flags';
const overlappedKey = (k: string): boolean => k === 'op' || k === 'thread';

type Rec = Record<string, unknown>;

/** A plain object (as JSON.parse or an object literal makes): nothing inherited, no class. */
function isPlain(v: unknown): v is Rec {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

/**
 * The size of message's compact header, or 0 when the message has no compact form (it is then
 * written as JSON). A WSPSend request's record data is its buffers, back to back.
 */
export function compactHeaderSize(message: object): number {
  const m = message as Rec;
  if (m['jsonrpc'] !== '2.0') return 0;
  if (m['method'] === 'WSPSend') {
    const p = m['params'];
    if (!isPlain(m) || !isU32(m['id']) || !isPlain(p) || !onlyKeys(m, requestKey) || !onlyKeys(p, sendParamKey)) return 0;
    const b = p['buffers'];
    if (!isU32(p['s']) || !isU32(p['flags']) || !Array.isArray(b) || b.length > MAX_BUFFER_COUNT) return 0;
    for (const x of b) if (!(x instanceof Uint8Array)) return 0;
    const ov = p['overlapped'];
    // (overlapped: null means the same as no overlapped, but its JSON form names it: stay JSON.)
    if (ov === undefined) return FIXED + 12 + 4 * b.length;
    if (!isPlain(ov) || !isU32(ov['op']) || !isU32(ov['thread']) || !onlyKeys(ov, overlappedKey)) return 0;
    return FIXED + 20 + 4 * b.length;
  }
  if (m['method'] === 'spiwire.completion') {
    const p = m['params'];
    if (!isPlain(m) || !isPlain(p) || !onlyKeys(m, notificationKey) || !onlyKeys(p, completionParamKey)) return 0;
    if (!isU32(p['op']) || !isU32(p['s']) || !isU32(p['error']) || !isU32(p['bytes']) || !isU32(p['flags'])) return 0;
    return FIXED + 20;
  }
  const r = m['result'];
  if (!isPlain(m) || !isU32(m['id']) || !isPlain(r) || !onlyKeys(m, replyKey) || !onlyKeys(r, resultKey)) return 0;
  if (!isI32(r['ret']) || !isU32(r['errno'])) return 0;
  let size = FIXED + 12;
  if (r['bytesSent'] !== undefined) {
    if (!isU32(r['bytesSent'])) return 0;
    size += 4;
  }
  const c = r['completion'];
  if (c !== undefined) {
    if (!isPlain(c) || !onlyKeys(c, completionKey) || !isU32(c['error']) || !isU32(c['bytes']) || !isU32(c['flags'])) return 0;
    size += 12;
  }
  return size;
}

/** Writes the compact header of a message that compactHeaderSize accepted, at buf[at]. */
export function writeCompactHeader(message: object, buf: Uint8Array, at: number): void {
  const m = message as Rec;
  if (m['method'] === 'WSPSend') {
    const p = m['params'] as Rec;
    const b = p['buffers'] as Uint8Array[];
    const ov = p['overlapped'] as Rec | null | undefined;
    buf[at] = CompactKind.SendRequest;
    buf[at + 1] = ov ? BIT_OVERLAPPED : 0;
    buf[at + 2] = b.length & 0xff;
    buf[at + 3] = b.length >>> 8;
    writeU32(buf, at + 4, m['id'] as number);
    writeU32(buf, at + 8, p['s'] as number);
    writeU32(buf, at + 12, p['flags'] as number);
    let o = at + 16;
    if (ov) {
      writeU32(buf, o, ov['op'] as number);
      writeU32(buf, o + 4, ov['thread'] as number);
      o += 8;
    }
    for (const x of b) {
      writeU32(buf, o, x.length);
      o += 4;
    }
    return;
  }
  if (m['method'] === 'spiwire.completion') {
    const p = m['params'] as Rec;
    writeU32(buf, at, CompactKind.Completion);
    writeU32(buf, at + 4, p['op'] as number);
    writeU32(buf, at + 8, p['s'] as number);
    writeU32(buf, at + 12, p['error'] as number);
    writeU32(buf, at + 16, p['bytes'] as number);
    writeU32(buf, at + 20, p['flags'] as number);
    return;
  }
  const r = m['result'] as Rec;
  const c = r['completion'] as Rec | undefined;
  const sent = r['bytesSent'] as number | undefined;
  writeU32(buf, at, CompactKind.Reply | ((sent !== undefined ? BIT_BYTES_SENT : 0) | (c !== undefined ? BIT_COMPLETION : 0)) << 8);
  writeU32(buf, at + 4, m['id'] as number);
  writeU32(buf, at + 8, r['ret'] as number);
  writeU32(buf, at + 12, r['errno'] as number);
  let o = at + 16;
  if (sent !== undefined) {
    writeU32(buf, o, sent);
    o += 4;
  }
  if (c !== undefined) {
    writeU32(buf, o, c['error'] as number);
    writeU32(buf, o + 4, c['bytes'] as number);
    writeU32(buf, o + 8, c['flags'] as number);
  }
}

/** True when a record header is compact (its first byte is a kind, not JSON). */
export function isCompactHeader(header: Uint8Array): boolean {
  return header.length > 0 && header[0]! < 0x09;
}

function bad(message: string): never {
  throw new ProtocolError(PARSE_ERROR, `compact header: ${message}`);
}

/** Decodes a compact header (and its record data) into the message its JSON form would give. */
export function decodeCompactHeader(header: Uint8Array, data: Uint8Array): Rec {
  if (header.length < FIXED) bad(`${header.length} bytes is too short`);
  const h = header;
  const kind = h[0]!;
  const bits = h[1]!;
  const count = h[2]! | (h[3]! << 8);
  const expect = (n: number, what: string): void => {
    if (header.length !== n) bad(`${what} takes ${n} bytes, not ${header.length}`);
  };
  switch (kind) {
    case CompactKind.SendRequest: {
      if (bits & ~BIT_OVERLAPPED) bad(`unknown flag bits 0x${bits.toString(16)} in a WSPSend request`);
      const ovBytes = bits & BIT_OVERLAPPED ? 8 : 0;
      expect(FIXED + 12 + ovBytes + 4 * count, `a WSPSend request with ${count} buffers`);
      const params: Rec = { s: readU32(h, 8), buffers: null, flags: readU32(h, 12) };
      let o = 16;
      if (ovBytes) {
        params['overlapped'] = { op: readU32(h, 16), thread: readU32(h, 20) };
        o = 24;
      }
      const buffers: Uint8Array[] = new Array(count);
      let at = 0;
      for (let i = 0; i < count; i++, o += 4) {
        const len = readU32(h, o);
        if (at + len > data.length) bad(`buffer lengths add up to more than the record data of ${data.length} bytes`);
        buffers[i] = data.subarray(at, at + len);
        at += len;
      }
      if (at !== data.length) bad(`buffer lengths add up to ${at}, the record data holds ${data.length} bytes`);
      params['buffers'] = buffers;
      return { jsonrpc: '2.0', id: readU32(h, 4), method: 'WSPSend', params };
    }
    case CompactKind.Reply: {
      if (bits & ~(BIT_BYTES_SENT | BIT_COMPLETION)) bad(`unknown flag bits 0x${bits.toString(16)} in a reply`);
      if (count !== 0) bad('a reply has no count');
      expect(FIXED + 12 + (bits & BIT_BYTES_SENT ? 4 : 0) + (bits & BIT_COMPLETION ? 12 : 0), 'this reply');
      if (data.length !== 0) bad('a reply carries no record data');
      const result: Rec = { ret: readI32(h, 8), errno: readU32(h, 12) };
      let o = 16;
      if (bits & BIT_BYTES_SENT) {
        result['bytesSent'] = readU32(h, o);
        o += 4;
      }
      if (bits & BIT_COMPLETION) result['completion'] = { error: readU32(h, o), bytes: readU32(h, o + 4), flags: readU32(h, o + 8) };
      return { jsonrpc: '2.0', id: readU32(h, 4), result };
    }
    case CompactKind.Completion: {
      expect(FIXED + 20, 'a completion');
      if (bits !== 0 || count !== 0) bad('a completion has no flag bits or count');
      if (data.length !== 0) bad('a completion carries no record data');
      const params = { op: readU32(h, 4), s: readU32(h, 8), error: readU32(h, 12), bytes: readU32(h, 16), flags: readU32(h, 20) };
      return { jsonrpc: '2.0', method: 'spiwire.completion', params };
    }
    default:
      return bad(`unknown kind ${kind}`);
  }
}
