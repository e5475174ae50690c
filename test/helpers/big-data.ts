/** Large test payloads that are cheap to make and still catch a lost, repeated or moved piece. */

const MiB = 1024 * 1024;

/**
 * n bytes of a repeating block of 1 MiB + 13 pseudo-random bytes (xorshift from seed): the block
 * length is no piece length, so a piece lost, repeated or moved changes the hash.
 */
export function bigData(n: number, seed: number): Buffer {
  const block = Buffer.alloc(MiB + 13);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < block.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = x & 0xff;
  }
  const out = Buffer.allocUnsafe(n);
  for (let at = 0; at < n; at += block.length) block.copy(out, at, 0, Math.min(block.length, n - at));
  return out;
}
