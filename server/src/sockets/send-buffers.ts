/** A send's buffers (the bytes of its WSABUFs, in order), as the TCP and UDP sockets use them. */

/** How many bytes the buffers hold together. */
export function byteLength(buffers: readonly Uint8Array[]): number {
  let total = 0;
  for (const b of buffers) total += b.length;
  return total;
}

/** The buffers' bytes in one piece: the buffer itself when there is only one, else a copy. */
export function contiguous(buffers: readonly Uint8Array[], total: number): Uint8Array {
  return buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers, total);
}

/** The first n bytes of the buffers, as views of them (no copy). */
export function firstBytes(buffers: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = n;
  for (const b of buffers) {
    if (left === 0) break;
    out.push(b.length <= left ? b : b.subarray(0, left));
    left -= Math.min(b.length, left);
  }
  return out;
}
