/**
 * The daemon's side of the call trace (docs/trace.md), with --trace-dir: each session writes
 * DIR/<session>.jsonl, one record per request read, reply and notification sent (proto/src/trace.ts),
 * with byte counts and never payloads. Written without blocking; a trace that cannot be written is
 * given up with a warning, and the session goes on.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import * as P from '@spiwire/proto';
import type { TraceDirectory } from './trace-directory.js';

/**
 * Bytes a trace may have waiting for the disk before records are dropped (and the drop noted); all
 * sessions together have a bound too (trace-directory.ts, MAX_TRACE_WAITING).
 */
const MAX_BUFFERED = 8 * 1024 * 1024;
/**
 * The largest a session's trace file grows: past it, records are dropped (and the drop noted), so
 * that no one session, however many calls it makes, fills the disk.
 */
export const MAX_TRACE_FILE_BYTES = 256 * 1024 * 1024;

function opOf(params: Record<string, unknown>): number | undefined {
  const ov = params['overlapped'];
  if (ov === null || typeof ov !== 'object') return undefined;
  const op: unknown = Reflect.get(ov, 'op');
  return typeof op === 'number' ? op : undefined;
}

export class SessionTrace {
  /** Null when the directory had no room for another file (every file in it a live session's). */
  private readonly stream: WriteStream | null;
  private readonly name: string;
  private dropped = 0;
  private failed = false;
  private written = 0;

  constructor(
    private readonly dir: TraceDirectory,
    session: string,
    private readonly log: Logger,
    private readonly maxBytes = MAX_TRACE_FILE_BYTES,
  ) {
    this.name = `${session}.jsonl`;
    if (!dir.openFile()) {
      this.stream = null;
      this.failed = true;
      log.info({ files: dir.maxFiles }, 'no session trace: the trace directory holds its most files, all of live sessions');
      return;
    }
    this.stream = createWriteStream(join(dir.path, this.name));
    this.stream.on('error', (err) => {
      if (!this.failed) log.warn({ err: err.message, session }, 'the session trace cannot be written; tracing stops');
      this.failed = true;
    });
    this.write({ t: now(), kind: 'origin', side: 'daemon', session, timeOrigin: performance.timeOrigin });
  }

  request(id: P.RequestId | null, method: string, params: Record<string, unknown>): void {
    const op = opOf(params);
    const bytes = P.traceBytesOf(params);
    this.write({ t: now(), kind: 'request', id, method, s: P.traceSocketOf(params), ...(op === undefined ? {} : { op }), ...(bytes === undefined ? {} : { bytes }) });
  }

  reply(id: P.RequestId, result: { ret: number; errno: number }): void {
    this.write({ t: now(), kind: 'reply', id, ret: result.ret, errno: result.errno });
  }

  /** A request answered with a protocol error (it did not run; with INTERNAL_ERROR it may have). */
  refused(id: P.RequestId, code: number): void {
    this.write({ t: now(), kind: 'reply', id, ret: -1, errno: 0, error: code });
  }

  notify(method: string, params: object): void {
    const op: unknown = Reflect.get(params, 'op');
    this.write({ t: now(), kind: 'notify', method, s: P.traceSocketOf(params), ...(typeof op === 'number' ? { op } : {}) });
  }

  /** Ends the file; resolves once it is written and closed. */
  close(): Promise<void> {
    if (this.dropped > 0) this.log.info({ dropped: this.dropped, written: this.written }, 'session trace: records dropped (the disk was behind, or the file or the directory reached its size limit)');
    const stream = this.stream;
    if (stream === null) return Promise.resolve();
    return new Promise((resolve) => {
      const closed = (): void => {
        // Written whole (or given up): from now on it may be deleted to make room for newer
        // traces. A file that was never opened is "deleted" like any other (gone already).
        this.dir.closed(this.name, this.written);
        resolve();
      };
      // A stream that failed (the directory removed, the disk full) has closed already: waiting
      // for its 'close' would keep its place in the directory's count and budget for good.
      if (stream.closed) return closed();
      stream.once('close', closed);
      stream.end();
    });
  }

  private write(r: P.TraceRecord): void {
    if (this.failed || this.stream === null) return;
    const line = `${JSON.stringify(r)}\n`;
    // A disk slower than the session: drop records rather than hold memory without bound; and
    // past the file's or the directory's size limit, rather than fill the disk. (The origin
    // record always goes: without it the file cannot be exported.)
    const bytes = Buffer.byteLength(line);
    if (!this.roomFor(bytes, this.written === 0)) {
      this.dropped++;
      return;
    }
    this.written += bytes;
    // Called once the bytes are written, or with an error when they never will be.
    this.stream.write(line, () => this.dir.writtenOut(bytes));
  }

  /**
   * Whether bytes more may go to the file: this session's bounds (waiting for the disk, the file's
   * size), then the sessions' shared bound on what waits, then the directory's on the files. True
   * leaves them counted as waiting; first (the origin record) goes whatever the shared bounds say.
   */
  private roomFor(bytes: number, first: boolean): boolean {
    if (this.stream!.writableLength > MAX_BUFFERED || (!first && this.written + bytes > this.maxBytes)) return false;
    if (!this.dir.startWrite(bytes, first)) return false;
    if (this.dir.reserve(bytes, first)) return true;
    this.dir.writtenOut(bytes);
    return false;
  }
}

function now(): number {
  return Math.round(performance.now() * 1000);
}
