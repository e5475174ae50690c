/**
 * Client-to-server WebSocket frames (RFC 6455, section 5.2) written by the SDK itself. ws's send()
 * masks a caller's buffer into a new one of the same size, which for bulk sends means a fresh
 * allocation per frame (GC work and page faults) and a second copy of every byte. The SDK's
 * frames live in its own FrameBuilder buffer, which nothing else reads, so frames of 8 KiB and
 * more are masked where they are and handed to the socket as they are.
 *
 * The frames go to the same net.Socket that ws writes its control frames to. Every frame is
 * written with one write() or one cork()/uncork() pair, so frames never interleave on the wire.
 */
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

type Mask = (source: Uint8Array, mask: Uint8Array, output: Uint8Array, offset: number, length: number) => void;

/** XOR with the key, byte by byte: the fallback when bufferutil is not installed (exported for tests). */
export const maskInJs: Mask = (source, mask, output, offset, length) => {
  for (let i = 0; i < length; i++) output[offset + i] = source[i]! ^ mask[i & 3]!;
};

function loadMask(): { mask: Mask; native: boolean } {
  try {
    const bufferutil = createRequire(import.meta.url)('bufferutil') as { mask: Mask };
    // The addon is worth its call only above a few dozen bytes (ws draws the line at 48).
    return { mask: (s, m, o, off, len) => (len < 48 ? maskInJs(s, m, o, off, len) : bufferutil.mask(s, m, o, off, len)), native: true };
  } catch {
    return { mask: maskInJs, native: false };
  }
}

const { mask, native } = loadMask();
/** bufferutil was loaded: frames are masked natively (several times faster). */
export const nativeMasking = native;

const keys = Buffer.alloc(8192);
let keyAt = keys.length;

/** Four fresh random bytes from a pool refilled by the CSPRNG: a new masking key per frame. */
function nextKey(): Buffer {
  if (keyAt + 4 > keys.length) {
    randomFillSync(keys);
    keyAt = 0;
  }
  const key = keys.subarray(keyAt, keyAt + 4);
  keyAt += 4;
  return key;
}

/**
 * Below this size a frame is copied, masked on the way, into one buffer with its header and
 * written with one write(), as ws does: for small frames that is cheaper than a writev of two.
 */
const COPY_BELOW = 8 * 1024;

/** The header of a masked frame with an n-byte payload: 2 bytes, the extended length, the key. */
const headerSize = (n: number): number => (n < 126 ? 6 : n < 65536 ? 8 : 14);

/** Writes a final binary frame's header, masking key included, at the start of target; returns its length. */
function writeHeader(target: Buffer, n: number, key: Uint8Array): number {
  const size = headerSize(n);
  const lengthBytes = size - 6;
  target[0] = 0x82; // FIN, binary
  if (lengthBytes === 0) target[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    target[1] = 0x80 | 126;
    target.writeUInt16BE(n, 2);
  } else {
    target[1] = 0x80 | 127;
    target.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    target.writeUInt32BE(n >>> 0, 6);
  }
  target.set(key, size - 4);
  return size;
}

/**
 * How the SDK picks masking keys (RpcOptions.maskingKeys). 'random': a fresh key from the CSPRNG
 * per frame, as RFC 6455 section 5.3 asks of browsers. 'zero': the all-zero key, which makes
 * masking the identity: neither end touches the payload (ws skips unmasking a zero key too), one
 * pass over every byte fewer on each side. Masking protects intermediaries from a script that
 * controls the bytes but may not open sockets; an SDK caller can open any socket it likes.
 */
export type MaskingKeys = 'random' | 'zero';

const ZERO_KEY = new Uint8Array(4);

/**
 * Writes payload as one final binary frame. Small frames are copied; larger ones are masked in
 * place, and then the socket holds payload until it is written. Returns the key a payload was
 * masked with in place (a copy), null when it was left as it was: unmask() restores it.
 */
export function writeMaskedBinaryFrame(socket: Socket, payload: Uint8Array, keys: MaskingKeys = 'random'): Uint8Array | null {
  const n = payload.length;
  const zero = keys === 'zero';
  const key = zero ? ZERO_KEY : nextKey();
  if (n < COPY_BELOW) {
    const frame = Buffer.allocUnsafe(headerSize(n) + n);
    const at = writeHeader(frame, n, key);
    if (zero) frame.set(payload, at);
    else mask(payload, key, frame, at, n);
    socket.write(frame);
    return null;
  }
  const header = Buffer.allocUnsafe(headerSize(n));
  writeHeader(header, n, key);
  if (zero) {
    socket.cork();
    socket.write(header);
    socket.write(payload);
    socket.uncork();
    return null;
  }
  mask(payload, key, payload, 0, n);
  socket.cork();
  socket.write(header);
  socket.write(payload);
  socket.uncork();
  return Uint8Array.from(key);
}

/** Restores a payload that writeMaskedBinaryFrame masked in place with key (once its socket is gone). */
export function unmask(payload: Uint8Array, key: Uint8Array): void {
  mask(payload, key, payload, 0, payload.length);
}
