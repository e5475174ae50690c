/**
 * Large binary messages as the reads they arrived in, not one copy. ws joins a frame's payload
 * into one new buffer whenever it spans several reads from the connection, which for bulk sends
 * (frames of 64-256 KiB, read 64 KiB at a time) is nearly every byte: a copy, a fresh allocation
 * (page faults, and GCs for external memory pressure) per frame. Measured side by side, sparing
 * it took the daemon's CPU per MB of bulk sends down by a fifth or more.
 *
 * For the connections of sessions, ws's receiver takes a large binary frame's payload as views of
 * the reads (unmasked in place, as ws does within one read) and hands the message over as a list
 * of parts (ws's 'fragments' binary type); the frame decoder reads records across the parts
 * (decodeFrameParts) and a WSPSend's buffers stay views. Everything else (text, control frames,
 * compression, limits, errors) is ws's own code. The receiver's fields are ws 8's; where they are
 * not all there, nothing is changed and ws joins the payload as before.
 */
import { createRequire } from 'node:module';
import type { WebSocket } from 'ws';

/** Payloads smaller than this are joined as ws does: the copy is cheap and the parts few. */
export const SLICE_MIN_BYTES = 32 * 1024;
/**
 * A message in parts is kept in parts only when they average at least this many bytes: a client
 * that trickles a message in tiny reads would otherwise have the daemon hold a Buffer object per
 * few bytes (memory the session quota, which counts bytes, would not see).
 */
export const MIN_AVERAGE_PART_BYTES = 4096;

/** The fields and methods of ws 8's Receiver that the sliced path reads and writes. */
interface ReceiverInternals {
  _buffers: Buffer[];
  _bufferedBytes: number;
  _payloadLength: number;
  _totalPayloadLength: number;
  _messageLength: number;
  _opcode: number;
  _fragmented: number;
  _compressed: boolean;
  _masked: boolean;
  _mask: Buffer | undefined;
  _fragments: Buffer[];
  _maxFragments: number;
  _numFragments: number;
  getData(cb: (err?: Error) => void): void;
  dataMessage(cb: (err?: Error) => void): void;
  createError(kind: ErrorConstructor | RangeErrorConstructor, message: string, prefix: boolean, statusCode: number, errorCode: string): Error;
}

const NUMBER_FIELDS = ['_bufferedBytes', '_payloadLength', '_totalPayloadLength', '_messageLength', '_opcode', '_fragmented', '_maxFragments', '_numFragments'] as const;

function isReceiver(r: unknown): r is ReceiverInternals {
  const x = r as Record<string, unknown> | null | undefined;
  if (!x || !Array.isArray(x['_buffers']) || !Array.isArray(x['_fragments']) || typeof x['_compressed'] !== 'boolean' || typeof x['_masked'] !== 'boolean') return false;
  for (const f of NUMBER_FIELDS) if (typeof x[f] !== 'number') return false;
  return typeof x['getData'] === 'function' && typeof x['dataMessage'] === 'function' && typeof x['createError'] === 'function';
}

type Unmask = (buffer: Uint8Array, mask: Uint8Array) => void;

function loadUnmask(): Unmask {
  const inJs: Unmask = (b, m) => {
    for (let i = 0; i < b.length; i++) b[i]! ^= m[i & 3]!;
  };
  try {
    const native = (createRequire(import.meta.url)('bufferutil') as { unmask: Unmask }).unmask;
    return (b, m) => (b.length < 32 ? inJs(b, m) : native(b, m));
  } catch {
    return inJs;
  }
}

const unmask = loadUnmask();

/**
 * Has ws deliver the connection's binary messages as lists of parts, large frames as views of the
 * reads they arrived in. Returns false (and changes nothing) when the receiver is not ws 8's.
 */
export function sliceBinaryMessages(ws: WebSocket): boolean {
  const r = (ws as unknown as { _receiver?: unknown })._receiver;
  if (!isReceiver(r)) return false;
  const stock = Object.getPrototypeOf(r).getData as ReceiverInternals['getData'];
  r.getData = function (this: ReceiverInternals, cb) {
    const n = this._payloadLength;
    const binary = this._opcode === 2 || (this._opcode === 0 && this._fragmented === 2);
    // Not whole yet, small, in the first read alone (a view already), or not plain binary: ws's way.
    if (!binary || this._compressed || n < SLICE_MIN_BYTES || this._bufferedBytes < n || n <= this._buffers[0]!.length) return stock.call(this, cb);
    const parts = takeParts(this, n);
    const mask = this._mask;
    if (this._masked && mask && (mask[0]! | mask[1]! | mask[2]! | mask[3]!) !== 0) {
      let at = 0;
      for (const p of parts) {
        unmask(p, (at & 3) === 0 ? mask : rotated(mask, at & 3));
        at += p.length;
      }
    }
    this._mask = undefined;
    if (this._maxFragments > 0 && ++this._numFragments > this._maxFragments) {
      cb(this.createError(RangeError, 'Too many message fragments', false, 1008, 'WS_ERR_TOO_MANY_BUFFERED_PARTS'));
      return;
    }
    this._messageLength = this._totalPayloadLength;
    for (const p of parts) this._fragments.push(p);
    this.dataMessage(cb);
  };
  ws.binaryType = 'fragments';
  return true;
}

/** The first n buffered bytes, as views of the reads that hold them. */
function takeParts(r: ReceiverInternals, n: number): Buffer[] {
  const parts: Buffer[] = [];
  const buffers = r._buffers;
  r._bufferedBytes -= n;
  let left = n;
  while (left > 0) {
    const b = buffers[0]!;
    if (left >= b.length) {
      parts.push(buffers.shift()!);
      left -= b.length;
    } else {
      parts.push(b.subarray(0, left));
      buffers[0] = b.subarray(left);
      left = 0;
    }
  }
  return parts;
}

/** The masking key as it applies from a payload offset of k (mod 4) on. */
function rotated(mask: Uint8Array, k: number): Uint8Array {
  return Uint8Array.of(mask[k & 3]!, mask[(k + 1) & 3]!, mask[(k + 2) & 3]!, mask[(k + 3) & 3]!);
}

/** A binary message as it arrived: one buffer, or parts worth keeping apart (see MIN_AVERAGE_PART_BYTES). */
export type BinaryMessage = Buffer | MessageParts;

export class MessageParts {
  constructor(
    readonly parts: readonly Buffer[],
    readonly length: number,
  ) {}
}

/** What ws delivered for a binary message, as the session handles it. */
export function binaryMessage(data: Buffer | ArrayBuffer | Buffer[]): BinaryMessage {
  if (Buffer.isBuffer(data)) return data;
  if (!Array.isArray(data)) return Buffer.from(data);
  if (data.length === 1) return data[0]!;
  let length = 0;
  for (const p of data) length += p.length;
  // Fragments of a fragmented message, or small parts: one buffer, as before.
  if (length < SLICE_MIN_BYTES || data.length * MIN_AVERAGE_PART_BYTES > length) return Buffer.concat(data, length);
  return new MessageParts(data, length);
}
