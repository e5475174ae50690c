/**
 * Optional native helpers and whether they loaded. ws masks and unmasks WebSocket frames with
 * bufferutil when it can be loaded, several times faster than its JavaScript fallback.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export function hasBufferUtil(): boolean {
  if (process.env['WS_NO_BUFFER_UTIL']) return false;
  try {
    require('bufferutil');
    return true;
  } catch {
    return false;
  }
}
