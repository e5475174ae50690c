/** Records built by hand and decoded values in a comparable form, for the codec tests; not a test file itself. */

export const enc = new TextEncoder();

export function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

export function cat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

/** One record built by hand: the header bytes are used as given, so they can be anything. */
export function rawRecord(header: string | Uint8Array, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = typeof header === 'string' ? enc.encode(header) : header;
  return cat(u32le(h.length), h, u32le(data.length), data);
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * A comparable form of a decoded value: byte strings become {bytes: hex}, whatever their class
 * (Uint8Array or Buffer), so t.same compares content and not constructors.
 */
export function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: hex(v) };
  if (Array.isArray(v)) return v.map(norm);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = norm(x);
    return o;
  }
  return v;
}
