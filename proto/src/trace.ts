/**
 * The call trace of a session (docs/trace.md): what the SDK records, one JSON object per line,
 * and its export to the Chrome / Perfetto trace-event format (one track per thread and per
 * socket, each overlapped operation a span from its call to the routine or event that delivered
 * its completion). Pure data: the SDK writes records, `spiwire trace export` converts them.
 */

/** A record of the trace. t: microseconds on the SDK's monotonic clock (performance.now()). */
export type TraceRecord =
  /** A call returned to its caller: its function, socket, the thread that made it, bytes offered, the result. */
  | { t: number; kind: 'call'; fn: string; s: number | null; thread: number; start: number; bytes?: number; ret: number; errno: number; op?: number }
  /** An overlapped operation completed (its completion reached the SDK). */
  | { t: number; kind: 'complete'; op: number; s: number; error: number; bytes: number }
  /** Its completion was delivered: a routine ran on thread, or the event object was set. */
  | { t: number; kind: 'deliver'; op: number; s: number; via: 'routine' | 'event' | 'none'; thread: number | null }
  /** Network events the daemon recorded for a socket (WSPEventSelect). */
  | { t: number; kind: 'network'; s: number; events: number }
  /** A fault rule fired (rules added with notify). */
  | { t: number; kind: 'fault'; s: number; id: string; fn: string; action: string };

export type TraceKind = TraceRecord['kind'];

/** A Chrome trace event (the subset used here). */
export interface ChromeTraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'b' | 'e' | 'i' | 'M';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  id?: string;
  s?: 'g' | 'p' | 't';
  args?: Record<string, unknown>;
}

/** Socket tracks get tids from here up, so that they never meet thread tids. */
const SOCKET_TID_BASE = 1_000_000;

/**
 * Converts trace records to {traceEvents}: calls as complete events on their thread's track;
 * each overlapped operation as an async span (b/e with the op id) on its socket's track, from the
 * call to the delivery of its completion; completions, network events and faults as instants.
 * An operation whose completion never came (the trace ended first) has its span closed at the
 * last record, with args.unfinished true.
 */
export function toChromeTrace(records: readonly TraceRecord[]): { traceEvents: ChromeTraceEvent[]; displayTimeUnit: 'ms' } {
  const events: ChromeTraceEvent[] = [];
  const threads = new Set<number>();
  const sockets = new Set<number>();
  const sockTid = (s: number): number => SOCKET_TID_BASE + s;
  // A call is recorded when it returns, so its completion (and a delivery by event) may come
  // before it in the file: the spans are opened from every call first, then closed.
  const open = new Map<number, { s: number }>();
  let last = 0;
  for (const r of records) {
    last = Math.max(last, r.t);
    if (r.kind !== 'call' || r.op === undefined || r.s === null || open.has(r.op)) continue;
    sockets.add(r.s);
    open.set(r.op, { s: r.s });
    events.push({ name: `${r.fn} op ${r.op}`, cat: 'overlapped', ph: 'b', ts: r.start, pid: 1, tid: sockTid(r.s), id: `op${r.op}`, args: { thread: r.thread } });
  }
  for (const r of records) {
    switch (r.kind) {
      case 'call':
        threads.add(r.thread);
        events.push({ name: r.fn, cat: 'call', ph: 'X', ts: r.start, dur: Math.max(0, r.t - r.start), pid: 1, tid: r.thread, args: { s: r.s, bytes: r.bytes, ret: r.ret, errno: r.errno, op: r.op } });
        break;
      case 'complete':
        sockets.add(r.s);
        events.push({ name: `completion op ${r.op}`, cat: 'completion', ph: 'i', s: 't', ts: r.t, pid: 1, tid: sockTid(r.s), args: { error: r.error, bytes: r.bytes } });
        break;
      case 'deliver': {
        const o = open.get(r.op);
        if (!o) break;
        open.delete(r.op);
        events.push({ name: `op ${r.op}`, cat: 'overlapped', ph: 'e', ts: r.t, pid: 1, tid: sockTid(o.s), id: `op${r.op}`, args: { via: r.via, thread: r.thread } });
        if (r.thread !== null) threads.add(r.thread);
        break;
      }
      case 'network':
        sockets.add(r.s);
        events.push({ name: 'network events', cat: 'network', ph: 'i', s: 't', ts: r.t, pid: 1, tid: sockTid(r.s), args: { events: r.events } });
        break;
      case 'fault':
        sockets.add(r.s);
        events.push({ name: `fault ${r.id}`, cat: 'fault', ph: 'i', s: 't', ts: r.t, pid: 1, tid: sockTid(r.s), args: { fn: r.fn, action: r.action } });
        break;
    }
  }
  for (const [op, o] of open) events.push({ name: `op ${op}`, cat: 'overlapped', ph: 'e', ts: last, pid: 1, tid: sockTid(o.s), id: `op${op}`, args: { unfinished: true } });
  const meta: ChromeTraceEvent[] = [{ name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: 'spiwire session' } }];
  for (const th of threads) meta.push({ name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: th, args: { name: `thread ${th}` } });
  for (const s of sockets) meta.push({ name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: sockTid(s), args: { name: `socket ${s}` } });
  return { traceEvents: [...meta, ...events], displayTimeUnit: 'ms' };
}

/** Reads a JSON-lines trace; a line that is not a record is reported with its number. */
export function parseTraceLines(text: string): TraceRecord[] {
  const out: TraceRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (err) {
      throw new Error(`line ${i + 1}: not JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    if (!isTraceRecord(v)) throw new Error(`line ${i + 1}: not a trace record (docs/trace.md)`);
    out.push(v);
  }
  return out;
}

/** The members each kind must have, with their types. */
const REQUIRED: Readonly<Record<TraceKind, Readonly<Record<string, 'number' | 'string'>>>> = {
  call: { fn: 'string', thread: 'number', start: 'number', ret: 'number', errno: 'number' },
  complete: { op: 'number', s: 'number', error: 'number', bytes: 'number' },
  deliver: { op: 'number', s: 'number', via: 'string' },
  network: { s: 'number', events: 'number' },
  fault: { s: 'number', id: 'string', fn: 'string', action: 'string' },
};

function isTraceKind(k: unknown): k is TraceKind {
  return typeof k === 'string' && Object.hasOwn(REQUIRED, k);
}

function isTraceRecord(v: unknown): v is TraceRecord {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const kind: unknown = Reflect.get(v, 'kind');
  const t: unknown = Reflect.get(v, 't');
  if (!isTraceKind(kind) || typeof t !== 'number' || !Number.isFinite(t)) return false;
  return Object.entries(REQUIRED[kind]).every(([k, type]) => typeof Reflect.get(v, k) === type);
}
