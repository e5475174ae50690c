/**
 * Client-to-server WebSocket frames (RFC 6455, section 5.2) written by the SDK itself, masked in
 * place. ws's send() masks a caller's buffer into a new one of the same size, which for bulk
 * sends means a fresh allocation per frame (GC work and page faults) and a second copy of every
 * byte. The SDK's frames live in its own FrameBuilder buffer, which nothing else reads, so they
 * can be masked where they are and handed to the socket as they are.
 *
 * The frames go to the same net.Socket that ws writes its control frames to. Every frame is
 * written with one cork()/uncork() pair, so frames never interleave on the wire.
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

/** Masks payload in place and writes it as one final binary frame. The socket holds payload until written. */
export function writeMaskedBinaryFrame(socket: Socket, payload: Uint8Array): void {
  const n = payload.length;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const header = Buffer.allocUnsafe(2 + lengthBytes + 4);
  header[0] = 0x82; // FIN, binary
  if (lengthBytes === 0) header[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(n, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    header.writeUInt32BE(n >>> 0, 6);
  }
  const key = nextKey();
  key.copy(header, 2 + lengthBytes);
  mask(payload, key, payload, 0, n);
  socket.cork();
  socket.write(header);
  socket.write(payload);
  socket.uncork();
}
