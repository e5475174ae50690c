/**
 * The --trace-dir as a whole (docs/trace.md): what the sessions' trace files may take there
 * together. One session's file stops at its own limit (session-trace.ts), but sessions come and
 * go, and each leaves a file: without a bound on the directory, clients that open sessions in a
 * loop would fill the disk. Beyond the budget, or the most files, the oldest files of ended
 * sessions are deleted, those of earlier runs of the daemon first; a live session's file never
 * is, so when live sessions alone fill the budget, their records are dropped instead.
 */
import { readdirSync, statSync, unlink } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** Default of --trace-dir-budget: bytes of trace files the directory may hold. */
export const DEFAULT_TRACE_DIR_BUDGET = 1024 * 1024 * 1024;
/** Trace files the directory may hold, live and ended: the daemon remembers each ended one. */
export const MAX_TRACE_FILES = 10_000;
/**
 * Bytes of trace records all sessions together may have waiting for the disk. Each session's
 * own bound (8 MiB, session-trace.ts) times 1,024 sessions would be 8 GiB outside the heap.
 */
export const MAX_TRACE_WAITING = 64 * 1024 * 1024;

/** A session's trace file: the session id (a UUID) and .jsonl; nothing else in the directory is touched. */
const TRACE_FILE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.jsonl$/;

interface EndedFile {
  name: string;
  bytes: number;
}

export class TraceDirectory {
  private used = 0;
  private files = 0;
  /** Files of ended sessions, oldest first: the ones that may go. */
  private readonly ended: EndedFile[] = [];
  private deleted = 0;
  private waiting = 0;
  /** Called, and forgotten, once nothing waits for the disk (drained()). */
  private onDrained: Array<() => void> = [];

  constructor(
    readonly path: string,
    readonly budgetBytes: number,
    private readonly log: Logger,
    readonly maxFiles = MAX_TRACE_FILES,
    readonly maxWaitingBytes = MAX_TRACE_WAITING,
  ) {
    this.adoptEarlierFiles();
  }

  /** Trace files the directory holds now (this run's and earlier runs'), and their bytes. */
  get usage(): { files: number; bytes: number; deleted: number } {
    return { files: this.files, bytes: this.used, deleted: this.deleted };
  }

  /** Room for one more file (a new session's); false when every file left belongs to a live session. */
  openFile(): boolean {
    while (this.files >= this.maxFiles && this.deleteOldest());
    if (this.files >= this.maxFiles) return false;
    this.files++;
    return true;
  }

  /**
   * Room for bytes more in a live session's file; false when only live files are left to take
   * them. always: counted even then (a file's first record, without which it cannot be read).
   */
  reserve(bytes: number, always = false): boolean {
    while (this.used + bytes > this.budgetBytes && this.deleteOldest());
    if (this.used + bytes > this.budgetBytes && !always) return false;
    this.used += bytes;
    return true;
  }

  /** Bytes of records handed to the files and not yet written, all sessions. */
  get waitingBytes(): number {
    return this.waiting;
  }

  /**
   * Room for bytes more waiting for the disk; false when the sessions together have their most
   * waiting. always: counted even then (a file's first record). Each true is followed by
   * writtenOut(bytes) once the write is done or failed.
   */
  startWrite(bytes: number, always = false): boolean {
    if (this.waiting + bytes > this.maxWaitingBytes && !always) return false;
    this.waiting += bytes;
    return true;
  }

  writtenOut(bytes: number): void {
    this.waiting -= bytes;
    if (this.waiting > 0 || this.onDrained.length === 0) return;
    const waiters = this.onDrained;
    this.onDrained = [];
    for (const resolve of waiters) resolve();
  }

  /** Resolves once no record waits for the disk (at once when none does). */
  drained(): Promise<void> {
    if (this.waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.onDrained.push(resolve));
  }

  /** A session's file is written and closed: it may now be deleted to make room. */
  closed(name: string, bytes: number): void {
    this.ended.push({ name, bytes });
  }

  private deleteOldest(): boolean {
    const f = this.ended.shift();
    if (f === undefined) return false;
    this.used -= f.bytes;
    this.files--;
    this.deleted++;
    unlink(join(this.path, f.name), (err) => {
      // Gone already (an operator cleaned up) is what was wanted.
      if (err && err.code !== 'ENOENT') this.log.warn({ err: err.message, file: f.name }, 'an old session trace could not be deleted to make room');
    });
    return true;
  }

  /** Session traces an earlier run left: counted, and the first to go, oldest first. */
  private adoptEarlierFiles(): void {
    const found: Array<EndedFile & { mtime: number }> = [];
    for (const name of readdirSync(this.path)) {
      if (!TRACE_FILE.test(name)) continue;
      try {
        const st = statSync(join(this.path, name));
        if (st.isFile()) found.push({ name, bytes: st.size, mtime: st.mtimeMs });
      } catch {
        // Removed while the directory was read: nothing to count.
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const f of found) {
      this.ended.push({ name: f.name, bytes: f.bytes });
      this.used += f.bytes;
      this.files++;
    }
    while (this.files > this.maxFiles && this.deleteOldest());
  }
}
