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

/**
 * True when o has no own enumerable keys besides those in allowed. (One Set per shape, not a
 * predicate per shape: the loop's call site stays monomorphic, and this runs for every message.)
 */
function onlyKeys(o: object, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

const sendParamKey: ReadonlySet<string> = new Set(['s', 'buffers', 'flags', 'overlapped']);
const requestKey: ReadonlySet<string> = new Set(['jsonrpc', 'id', 'method', 'params']);
const replyKey: ReadonlySet<string> = new Set(['jsonrpc', 'id', 'result']);
const resultKey: ReadonlySet<string> = new Set(['ret', 'errno', 'bytesSent', 'completion']);
const completionKey: ReadonlySet<string> = new Set(['error', 'bytes', 'flags']);
const notificationKey: ReadonlySet<string> = new Set(['jsonrpc', 'method', 'params']);
const completionParamKey: ReadonlySet<string> = new Set(['op', 's', 'error', 'bytes', 'flags']);
const overlappedKey: ReadonlySet<string> = new Set(['op', 'thread']);

type Rec = Record<string, unknown>;

/** A plain object (as JSON.parse or an object literal makes): nothing inherited, no class. */
function isPlain(v: unknown): v is Rec {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

/** A message that has a compact form, with its fields read and checked: what the header holds. */
export type CompactPlan =
  | { kind: CompactKind.SendRequest; size: number; id: number; s: number; flags: number; buffers: readonly Uint8Array[]; overlapped?: { op: number; thread: number } }
  | { kind: CompactKind.Completion; size: number; op: number; s: number; error: number; bytes: number; flags: number }
  | { kind: CompactKind.Reply; size: number; id: number; ret: number; errno: number; bytesSent?: number; completion?: { error: number; bytes: number; flags: number } };

/**
 * The compact form of message, or null when it has none (it is then written as JSON). A WSPSend
 * request's record data is its buffers, back to back.
 */
export function compactPlan(message: object): CompactPlan | null {
  if (!isPlain(message) || message['jsonrpc'] !== '2.0') return null;
  const m = message;
  if (m['method'] === 'WSPSend') {
    const p = m['params'];
    const id = m['id'];
    if (!isU32(id) || !isPlain(p) || !onlyKeys(m, requestKey) || !onlyKeys(p, sendParamKey)) return null;
    const b = p['buffers'];
    const s = p['s'];
    const flags = p['flags'];
    if (!isU32(s) || !isU32(flags) || !Array.isArray(b) || b.length > MAX_BUFFER_COUNT) return null;
    const buffers: Uint8Array[] = [];
    for (const x of b) {
      if (!(x instanceof Uint8Array)) return null;
      buffers.push(x);
    }
    const ov = p['overlapped'];
    // (overlapped: null means the same as no overlapped, but its JSON form names it: stay JSON.)
    if (ov === undefined) return { kind: CompactKind.SendRequest, size: FIXED + 12 + 4 * buffers.length, id, s, flags, buffers };
    if (!isPlain(ov) || !onlyKeys(ov, overlappedKey)) return null;
    const op = ov['op'];
    const thread = ov['thread'];
    if (!isU32(op) || !isU32(thread)) return null;
    return { kind: CompactKind.SendRequest, size: FIXED + 20 + 4 * buffers.length, id, s, flags, buffers, overlapped: { op, thread } };
  }
  if (m['method'] === 'spiwire.completion') {
    const p = m['params'];
    if (!isPlain(p) || !onlyKeys(m, notificationKey) || !onlyKeys(p, completionParamKey)) return null;
    const { op, s, error, bytes, flags } = p;
    if (!isU32(op) || !isU32(s) || !isU32(error) || !isU32(bytes) || !isU32(flags)) return null;
    return { kind: CompactKind.Completion, size: FIXED + 20, op, s, error, bytes, flags };
  }
  const r = m['result'];
  const id = m['id'];
  if (!isU32(id) || !isPlain(r) || !onlyKeys(m, replyKey) || !onlyKeys(r, resultKey)) return null;
  const { ret, errno, bytesSent, completion: c } = r;
  if (!isI32(ret) || !isU32(errno)) return null;
  const plan: CompactPlan = { kind: CompactKind.Reply, size: FIXED + 12, id, ret, errno };
  if (bytesSent !== undefined) {
    if (!isU32(bytesSent)) return null;
    plan.bytesSent = bytesSent;
    plan.size += 4;
  }
  if (c !== undefined) {
    if (!isPlain(c) || !onlyKeys(c, completionKey)) return null;
    const { error, bytes, flags } = c;
    if (!isU32(error) || !isU32(bytes) || !isU32(flags)) return null;
    plan.completion = { error, bytes, flags };
    plan.size += 12;
  }
  return plan;
}

/** Writes the compact header of a plan at buf[at] (plan.size bytes). */
export function writeCompactHeader(plan: CompactPlan, buf: Uint8Array, at: number): void {
  switch (plan.kind) {
    case CompactKind.SendRequest: {
      const b = plan.buffers;
      buf[at] = CompactKind.SendRequest;
      buf[at + 1] = plan.overlapped ? BIT_OVERLAPPED : 0;
      buf[at + 2] = b.length & 0xff;
      buf[at + 3] = b.length >>> 8;
      writeU32(buf, at + 4, plan.id);
      writeU32(buf, at + 8, plan.s);
      writeU32(buf, at + 12, plan.flags);
      let o = at + 16;
      if (plan.overlapped) {
        writeU32(buf, o, plan.overlapped.op);
        writeU32(buf, o + 4, plan.overlapped.thread);
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
      writeU32(buf, at + 4, plan.op);
      writeU32(buf, at + 8, plan.s);
      writeU32(buf, at + 12, plan.error);
      writeU32(buf, at + 16, plan.bytes);
      writeU32(buf, at + 20, plan.flags);
      return;
    case CompactKind.Reply: {
      const { bytesSent, completion: c } = plan;
      writeU32(buf, at, CompactKind.Reply | ((bytesSent !== undefined ? BIT_BYTES_SENT : 0) | (c !== undefined ? BIT_COMPLETION : 0)) << 8);
      writeU32(buf, at + 4, plan.id);
      writeU32(buf, at + 8, plan.ret);
      writeU32(buf, at + 12, plan.errno);
      let o = at + 16;
      if (bytesSent !== undefined) {
        writeU32(buf, o, bytesSent);
        o += 4;
      }
      if (c !== undefined) {
        writeU32(buf, o, c.error);
        writeU32(buf, o + 4, c.bytes);
        writeU32(buf, o + 8, c.flags);
      }
    }
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
