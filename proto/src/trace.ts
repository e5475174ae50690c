/**
 * The call trace of a session (docs/trace.md): what the SDK records, one JSON object per line,
 * and its export to the Chrome / Perfetto trace-event format (one track per thread and per
 * socket, each overlapped operation a span from its call to the routine or event that delivered
 * its completion). Pure data: the SDK writes records, `spiwire trace export` converts them.
 */

/**
 * A record of the trace. t: microseconds on the writer's monotonic clock (performance.now()).
 * The SDK writes the first group, the daemon (--trace-dir) the second; each file starts with an
 * origin record, which lets an export put both sides on one time line.
 */
export type TraceRecord =
  /** First in each file: whose trace it is, and the wall-clock time (ms since 1970) its clock starts from. */
  | { t: number; kind: 'origin'; side: 'sdk' | 'daemon'; session: string; timeOrigin: number }
  /** Daemon: a request was read (its id, null for a notification). */
  | { t: number; kind: 'request'; id: number | string | null; method: string; s: number | null; op?: number; bytes?: number }
  /**
   * Daemon: its reply was sent. error: the JSON-RPC error code when the answer was a protocol
   * error (section 13 of proto/README.md), with ret -1 and errno 0: the call did not run (with
   * INTERNAL_ERROR, it failed inside the daemon and may have run).
   */
  | { t: number; kind: 'reply'; id: number | string; ret: number; errno: number; error?: number }
  /** Daemon: a notification was sent (completions, network events, ...). */
  | { t: number; kind: 'notify'; method: string; s: number | null; op?: number }
  /** A call returned to its caller: its function, socket, the thread that made it, bytes offered, the result (data: the bytes sent, base64, when payloads were asked for). */
  | { t: number; kind: 'call'; fn: string; s: number | null; thread: number; start: number; bytes?: number; ret: number; errno: number; op?: number; data?: string }
  /** An overlapped operation completed (its completion reached the SDK). */
  | { t: number; kind: 'complete'; op: number; s: number; error: number; bytes: number }
  /** Its completion was delivered: a routine ran on thread, or the event object was set. */
  | { t: number; kind: 'deliver'; op: number; s: number; via: 'routine' | 'event' | 'none'; thread: number | null }
  /** Network events the daemon recorded for a socket (WSPEventSelect). */
  | { t: number; kind: 'network'; s: number; events: number }
  /** A fault rule fired (rules added with notify). */
  | { t: number; kind: 'fault'; s: number; id: string; fn: string; action: string };

export type TraceKind = TraceRecord['kind'];

/** The bytes a call's params offer (buffers) or ask for (lengths), as a trace records them. */
export function traceBytesOf(params: Record<string, unknown>): number | undefined {
  const b = params['buffers'];
  if (Array.isArray(b)) return b.reduce((n: number, x: unknown) => n + (x instanceof Uint8Array ? x.length : 0), 0);
  const l = params['lengths'];
  // Read before the params are checked: only what could be a length counts, so the sum stays a
  // number JSON can hold.
  if (Array.isArray(l)) return l.reduce((n: number, x: unknown) => n + (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= 0xffffffff ? x : 0), 0);
  return undefined;
}

/** The socket a call's params or a notification's name (s), as a trace records it. */
export function traceSocketOf(params: object): number | null {
  const s: unknown = Reflect.get(params, 's');
  return typeof s === 'number' ? s : null;
}

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
  // Records of several files (the SDK's and the daemon's) go on one time line: each file's
  // origin record gives its clock's start in wall-clock time. Without one, times are taken as they are.
  const shifted: Array<{ r: TraceRecord; ts: number; pid: number }> = [];
  let shift = 0;
  let pid = 1;
  let base: number | null = null;
  for (const r of records) {
    if (r.kind === 'origin') {
      base ??= r.timeOrigin;
      shift = Math.round((r.timeOrigin - base) * 1000);
      pid = r.side === 'daemon' ? 2 : 1;
      continue;
    }
    shifted.push({ r, ts: r.t + shift, pid });
  }
  const events: ChromeTraceEvent[] = [];
  const tracks = new Map<string, { pid: number; tid: number; name: string }>();
  const track = (p: number, tid: number, name: string): number => {
    tracks.set(`${p}:${tid}`, { pid: p, tid, name });
    return tid;
  };
  const sockTid = (p: number, s: number): number => track(p, SOCKET_TID_BASE + s, `socket ${s}`);
  // A call is recorded when it returns, so its completion (and a delivery by event) may come
  // before it in the file: the spans are opened from every call first, then closed.
  const open = new Map<number, { s: number }>();
  let last = 0;
  for (const { r, ts } of shifted) {
    last = Math.max(last, ts);
    if (r.kind !== 'call' || r.op === undefined || r.s === null || open.has(r.op)) continue;
    open.set(r.op, { s: r.s });
    events.push({ name: `${r.fn} op ${r.op}`, cat: 'overlapped', ph: 'b', ts: r.start + (ts - r.t), pid: 1, tid: sockTid(1, r.s), id: `op${r.op}`, args: { thread: r.thread } });
  }
  // The daemon's requests, by id, until their replies.
  const requests = new Map<string, { ts: number; method: string; s: number | null; op: number | undefined; bytes: number | undefined }>();
  for (const { r, ts, pid: p } of shifted) {
    switch (r.kind) {
      case 'call':
        events.push({ name: r.fn, cat: 'call', ph: 'X', ts: r.start + (ts - r.t), dur: Math.max(0, r.t - r.start), pid: p, tid: track(p, r.thread, `thread ${r.thread}`), args: { s: r.s, bytes: r.bytes, ret: r.ret, errno: r.errno, op: r.op } });
        break;
      case 'complete':
        events.push({ name: `completion op ${r.op}`, cat: 'completion', ph: 'i', s: 't', ts, pid: p, tid: sockTid(p, r.s), args: { error: r.error, bytes: r.bytes } });
        break;
      case 'deliver': {
        const o = open.get(r.op);
        if (r.thread !== null) track(p, r.thread, `thread ${r.thread}`);
        if (!o) break;
        open.delete(r.op);
        events.push({ name: `op ${r.op}`, cat: 'overlapped', ph: 'e', ts, pid: 1, tid: sockTid(1, o.s), id: `op${r.op}`, args: { via: r.via, thread: r.thread } });
        break;
      }
      case 'network':
        events.push({ name: 'network events', cat: 'network', ph: 'i', s: 't', ts, pid: p, tid: sockTid(p, r.s), args: { events: r.events } });
        break;
      case 'fault':
        events.push({ name: `fault ${r.id}`, cat: 'fault', ph: 'i', s: 't', ts, pid: p, tid: sockTid(p, r.s), args: { fn: r.fn, action: r.action } });
        break;
      case 'request':
        if (r.id === null) events.push({ name: r.method, cat: 'request', ph: 'i', s: 't', ts, pid: p, tid: r.s === null ? track(p, 0, 'session') : sockTid(p, r.s) });
        else requests.set(String(r.id), { ts, method: r.method, s: r.s, op: r.op, bytes: r.bytes });
        break;
      case 'reply': {
        const q = requests.get(String(r.id));
        if (!q) break;
        requests.delete(String(r.id));
        events.push({ name: q.method, cat: 'request', ph: 'X', ts: q.ts, dur: Math.max(0, ts - q.ts), pid: p, tid: q.s === null ? track(p, 0, 'session') : sockTid(p, q.s), args: { id: r.id, op: q.op, bytes: q.bytes, ret: r.ret, errno: r.errno, ...(r.error === undefined ? {} : { error: r.error }) } });
        break;
      }
      case 'notify':
        events.push({ name: r.method, cat: 'notification', ph: 'i', s: 't', ts, pid: p, tid: r.s === null ? track(p, 0, 'session') : sockTid(p, r.s), args: { op: r.op } });
        break;
      case 'origin':
        break;
    }
  }
  for (const [op, o] of open) events.push({ name: `op ${op}`, cat: 'overlapped', ph: 'e', ts: last, pid: 1, tid: sockTid(1, o.s), id: `op${op}`, args: { unfinished: true } });
  const meta: ChromeTraceEvent[] = [
    { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: 1, tid: 0, args: { name: 'spiwire session (SDK)' } },
    { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid: 2, tid: 0, args: { name: 'spiwire daemon' } },
  ];
  for (const x of tracks.values()) meta.push({ name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid: x.pid, tid: x.tid, args: { name: x.name } });
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
  origin: { side: 'string', session: 'string', timeOrigin: 'number' },
  request: { method: 'string' },
  reply: { ret: 'number', errno: 'number' },
  notify: { method: 'string' },
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
