/**
 * Bytes that arrived in parts (views of the reads that held a frame, in order), read front to
 * back without joining them: the frame decoder's records and a compact WSPSend's buffers.
 */

import { readU32 } from './le32.js';

/** Reads a sequence of parts front to back. */
export class PartsReader {
  /** Bytes not read yet. */
  left = 0;
  private i = 0;
  private at = 0;

  constructor(private readonly parts: readonly Uint8Array[]) {
    for (const p of parts) this.left += p.length;
  }

  /** The next n bytes as views of the parts (one per part they touch; one empty view for n = 0). */
  pieces(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.left -= n;
    if (n === 0) return [EMPTY_BYTES];
    while (n > 0) {
      const p = this.parts[this.i]!;
      const take = Math.min(n, p.length - this.at);
      if (take > 0) out.push(p.subarray(this.at, this.at + take));
      this.at += take;
      n -= take;
      if (this.at === p.length) {
        this.i++;
        this.at = 0;
      }
    }
    return out;
  }

  /**
   * The next 4 bytes as a little-endian u32 (a record's length fields), read where they lie: a
   * view of a node Buffer costs a Buffer object (some 500 instructions), and a frame of small
   * sends has two length fields per send.
   */
  u32(): number {
    const p = this.parts[this.i];
    if (p === undefined || this.at + 4 > p.length) return readU32(this.contiguous(4), 0);
    const v = readU32(p, this.at);
    this.left -= 4;
    this.at += 4;
    if (this.at === p.length) {
      this.i++;
      this.at = 0;
    }
    return v;
  }

  /** The next n bytes in one buffer: a view when they lie in one part, else a copy. */
  contiguous(n: number): Uint8Array {
    const pieces = this.pieces(n);
    return pieces.length === 1 ? pieces[0]! : joinPieces(pieces, n);
  }
}

const EMPTY_BYTES = new Uint8Array(0);

/** The pieces, total bytes in all, copied into one buffer. */
export function joinPieces(pieces: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
