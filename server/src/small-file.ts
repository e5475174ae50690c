/**
 * Reads a file the daemon is configured with (--faults, --token-file, --tls-cert, --tls-key),
 * synchronously: at start, and for --faults on SIGHUP, while nothing else may run. So the read
 * must end soon whatever the path names: a FIFO would block it until a writer came (the whole
 * daemon with it), /dev/zero or a huge file would fill memory. Only a regular file of at most
 * MAX_CONFIG_FILE_BYTES is read; the checks are made on the open descriptor, so a path swapped
 * meanwhile cannot slip past them.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

/** Far more than any of these files needs (256 fault rules, a certificate chain). */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export class SmallFileError extends Error {}

/** The file's text (UTF-8); throws SmallFileError, or the open's own error (ENOENT, EACCES). */
export function readSmallFile(path: string, maxBytes = MAX_CONFIG_FILE_BYTES): string {
  // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SmallFileError(`not a regular file (${kindOf(st)})`);
    if (st.size > maxBytes) throw new SmallFileError(`${st.size} bytes, more than the ${maxBytes} such a file may have`);
    // The file may grow while it is read: up to one byte past the limit is read to tell.
    const buf = Buffer.alloc(maxBytes + 1);
    let got = 0;
    while (got <= maxBytes) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
    }
    if (got > maxBytes) throw new SmallFileError(`grew past the ${maxBytes} bytes such a file may have while it was read`);
    return buf.toString('utf8', 0, got);
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}
