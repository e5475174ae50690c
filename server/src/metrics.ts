/**
 * The daemon's Prometheus metrics (GET /metrics; docs/metrics.md names each one). A private
 * Registry per daemon: several daemons may run in one process (the tests do).
 *
 * The hot path never touches prom-client: a call, a completion or a fault adds to a plain number
 * here (prom-client's label children hash their labels on every inc), and the scrape publishes the
 * totals. Gauges (sockets by type and state, pending operations, backlog, held bytes) are read
 * from the daemon's own tables at scrape time, so they cost nothing between scrapes.
 */
import { Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';
import * as P from '@spiwire/proto';
import type { HandleTable } from './handles.js';
import type { HeldBytes } from './held-bytes.js';
import type { Bookkeeping } from './bookkeeping.js';
import type { PartialFrames } from './partial-frames.js';
import type { ConnectionSlots } from './connection-slots.js';
import type { ReadSlots } from './read-slots.js';
import { batchCounts } from './sockets/datagram-batch.js';

/** Why a session ended: the label values of spiwire_sessions_ended_total. */
export type SessionEndKind = 'closed' | 'output_backlog' | 'shutdown';
const END_KINDS: readonly SessionEndKind[] = ['closed', 'output_backlog', 'shutdown'];

/** What a scrape reads of a live session. */
export interface SessionView {
  readonly pendingOperations: number;
  /** Output written to the WebSocket and not yet taken by the kernel. */
  readonly outputUnsent: number;
}

/** Upper bounds of the completion latency buckets, in seconds: 50 µs to 30 s. */
export const LATENCY_BUCKETS: readonly number[] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Distinct fault rule labels kept; rules beyond share rule="other" (ids are chosen by clients). */
const MAX_RULE_LABELS = 256;

/** The label value of a result code: the WSA name, NO_ERROR, or a JSON-RPC error's name. */
function codeLabel(code: number): string {
  if (code === 0) return 'NO_ERROR';
  if (code < 0) return P.PROTOCOL_ERRORS.find((e) => e.code === code)?.name ?? String(code);
  return P.wsaError(code)?.name ?? String(code);
}

function typeLabel(type: number): string {
  return type === P.SOCK_STREAM ? 'tcp' : type === P.SOCK_DGRAM ? 'udp' : String(type);
}

/** SPI calls by function and result code: plain counts, published at scrape time. */
export class CallCounts {
  private readonly byFunction = new Map<string, Map<number, number>>();

  /** code: the call's errno (0 for success), or a JSON-RPC error code (negative) when refused. */
  count(fn: string, code: number): void {
    let codes = this.byFunction.get(fn);
    if (codes === undefined) {
      codes = new Map();
      this.byFunction.set(fn, codes);
    }
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }

  /** How many calls of fn ended with code so far. */
  get(fn: string, code: number): number {
    return this.byFunction.get(fn)?.get(code) ?? 0;
  }

  *entries(): IterableIterator<[fn: string, code: number, count: number]> {
    for (const [fn, codes] of this.byFunction) for (const [code, n] of codes) yield [fn, code, n];
  }
}

/**
 * A latency histogram with its own bucket counts (an array increment per observation) that
 * prom-client formats: it answers get() itself instead of keeping prom-client's label hash map.
 */
class LatencyHistogram extends Histogram<'le'> {
  private readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  private sum = 0;
  private total = 0;

  constructor(
    private readonly metricName: string,
    private readonly metricHelp: string,
    registers: Registry[],
  ) {
    super({ name: metricName, help: metricHelp, buckets: [...LATENCY_BUCKETS], registers });
  }

  observeMs(ms: number): void {
    const seconds = ms / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.total++;
  }

  /**
   * An empty histogram of prom-client's own, registered nowhere: its description gives the type
   * member as prom-client writes it (its typings disagree with its runtime on that member).
   */
  private readonly template = new Histogram({ name: 'spiwire_template', help: '-', registers: [] });

  override get(): Promise<MetricObjectWithValues<MetricValueWithName<'le'>>> {
    return this.getForPromString();
  }

  /** The registry formats from this when a metric has it (prom-client's Histogram does). */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<'le'>>> {
    const values: Array<MetricValueWithName<'le'>> = [];
    let cumulative = 0;
    LATENCY_BUCKETS.forEach((bound, i) => {
      cumulative += this.counts[i]!;
      values.push({ metricName: `${this.metricName}_bucket`, labels: { le: bound }, value: cumulative });
    });
    values.push({ metricName: `${this.metricName}_bucket`, labels: { le: '+Inf' }, value: this.total });
    values.push({ metricName: `${this.metricName}_sum`, labels: {}, value: this.sum });
    values.push({ metricName: `${this.metricName}_count`, labels: {}, value: this.total });
    const described = await this.template.get();
    return { ...described, name: this.metricName, help: this.metricHelp, values };
  }
}

/** Where the scrape reads the daemon's state (set once the daemon's tables exist). */
export interface MetricSources {
  sessions(): Iterable<SessionView>;
  readonly handles: HandleTable;
  readonly held: HeldBytes;
  readonly bookkeeping: Bookkeeping;
  drainingConnections(): number;
  queuedConnections(): number;
  readonly partialFrames: PartialFrames;
  readonly readSlots: ReadSlots;
  readonly connections: ConnectionSlots;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  /** SPI calls by function and result code (runMethod counts them). */
  readonly calls = new CallCounts();
  private sessionsOpened = 0;
  private readonly sessionsEnded = new Map<SessionEndKind, number>(END_KINDS.map((k) => [k, 0]));
  /** Fault firings by source and rule id, keyed "source\0rule". */
  private readonly faultsApplied = new Map<string, number>();
  private readonly latency: LatencyHistogram;
  private sources: MetricSources | null = null;

  constructor() {
    const registers = [this.registry];
    const metrics = this;
    const src = (): MetricSources | null => this.sources;

    new Counter({
      name: 'spiwire_sessions_opened_total',
      help: 'WebSocket sessions opened since the daemon started.',
      registers,
      collect() {
        this.reset();
        this.inc(metrics.sessionsOpened);
      },
    });
    new Counter({
      name: 'spiwire_sessions_ended_total',
      help: 'Sessions ended, by reason: closed (the client closed or the connection dropped), output_backlog (close code 4008), shutdown.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, n] of metrics.sessionsEnded) this.inc({ reason }, n);
      },
    });
    new Gauge({
      name: 'spiwire_sessions_open',
      help: 'Sessions open now.',
      registers,
      collect() {
        let n = 0;
        for (const _ of src()?.sessions() ?? []) n++;
        this.set(n);
      },
    });

    // Label pairs seen once stay, at 0, so that a series does not vanish when its count drops.
    const seenSockets = new Set<string>();
    new Gauge({
      name: 'spiwire_sockets',
      help: 'Open sockets, by type (tcp, udp) and state (the transport state machine\'s state names).',
      labelNames: ['type', 'state'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const key of seenSockets) counts.set(key, 0);
        for (const sock of src()?.handles.values() ?? []) {
          const key = `${typeLabel(sock.type)}\0${sock.stateName}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
        }
        for (const [key, n] of counts) {
          seenSockets.add(key);
          const [type, state] = key.split('\0');
          this.set({ type, state }, n);
        }
      },
    });
    new Counter({
      name: 'spiwire_spi_calls_total',
      help: 'SPI calls answered, by function and result code (NO_ERROR, a WSA error name, WSA_IO_PENDING, or the JSON-RPC error of a refused call).',
      labelNames: ['function', 'code'],
      registers,
      collect() {
        this.reset();
        for (const [fn, code, n] of metrics.calls.entries()) this.inc({ function: fn, code: codeLabel(code) }, n);
      },
    });
    new Counter({
      name: 'spiwire_sent_bytes_total',
      help: 'Bytes of sends taken by the transport (on their way to the kernel), all sockets.',
      registers,
      collect() {
        this.reset();
        const s = src();
        if (s) this.inc(s.handles.bytesTotals().sent);
      },
    });
    new Counter({
      name: 'spiwire_received_bytes_total',
      help: 'Bytes that arrived from the network on the daemon\'s sockets (TCP stream bytes, UDP datagram bytes).',
      registers,
      collect() {
        this.reset();
        const s = src();
        if (s) this.inc(s.handles.bytesTotals().received);
      },
    });
    new Gauge({
      name: 'spiwire_pending_operations',
      help: 'Overlapped operations started and not yet completed, all sessions.',
      registers,
      collect() {
        let n = 0;
        for (const s of src()?.sessions() ?? []) n += s.pendingOperations;
        this.set(n);
      },
    });
    this.latency = new LatencyHistogram(
      'spiwire_completion_latency_seconds',
      'Overlapped operations that went pending (WSA_IO_PENDING): time from the call reaching the daemon to its completion record being queued for the client.',
      registers,
    );
    new Gauge({
      name: 'spiwire_output_unsent_bytes',
      help: 'Output written to sessions\' WebSockets and not yet taken by the kernel (backpressure): sum over sessions.',
      registers,
      collect() {
        let n = 0;
        for (const s of src()?.sessions() ?? []) n += s.outputUnsent;
        this.set(n);
      },
    });
    new Gauge({
      name: 'spiwire_output_unsent_bytes_max',
      help: 'The largest unsent output of one session (the session nearest its output limit).',
      registers,
      collect() {
        let n = 0;
        for (const s of src()?.sessions() ?? []) n = Math.max(n, s.outputUnsent);
        this.set(n);
      },
    });
    new Gauge({
      name: 'spiwire_held_bytes',
      help: 'Bytes accepted for sends and not yet in the kernel, of live and ended sessions (against --held-bytes-budget).',
      registers,
      collect() {
        this.set(src()?.held.total ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_held_bytes_ended_sessions',
      help: 'The part of spiwire_held_bytes that ended sessions left behind (released within --linger).',
      registers,
      collect() {
        this.set(src()?.held.ofEndedSessions ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_bookkeeping_bytes',
      help: "The daemon's memory for waiting calls (2 KiB each) and pending overlapped operations (512 B each), all sessions (against --bookkeeping-budget).",
      registers,
      collect() {
        this.set(src()?.bookkeeping.total ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_draining_connections',
      help: 'Closed connections still delivering accepted bytes.',
      registers,
      collect() {
        this.set(src()?.drainingConnections() ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_queued_connections',
      help: 'Connections waiting on listening sockets to be accepted.',
      registers,
      collect() {
        this.set(src()?.queuedConnections() ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_partial_frame_bytes',
      help: 'Bytes of WebSocket messages still arriving, all connections (against --partial-frames-budget).',
      registers,
      collect() {
        this.set(src()?.partialFrames.total ?? 0);
      },
    });
    new Counter({
      name: 'spiwire_partial_frame_closes_total',
      help: 'Connections closed with 1013 because the messages still arriving passed --partial-frames-budget.',
      registers,
      collect() {
        this.reset();
        this.inc(src()?.partialFrames.closedForBudget ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_http_connections',
      help: 'HTTP connections open, sessions included (at most --max-sessions + 64).',
      registers,
      collect() {
        this.set(src()?.connections.size ?? 0);
      },
    });
    new Counter({
      name: 'spiwire_http_connections_evicted_total',
      help: 'HTTP connections closed to make room for a new one when every connection slot was taken: the one whose last sign of life was oldest.',
      registers,
      collect() {
        this.reset();
        this.inc(src()?.connections.evicted ?? 0);
      },
    });
    new Counter({
      name: 'spiwire_http_connections_refused_total',
      help: 'New HTTP connections closed at once: every connection slot was held by a session.',
      registers,
      collect() {
        this.reset();
        this.inc(src()?.connections.refused ?? 0);
      },
    });
    new Counter({
      name: 'spiwire_read_slot_waits_total',
      help: 'Times a session stopped reading its connection to let others be read: it read more than 4 KiB in a turn while the reader slots were taken, it made room for a session waiting for one, or it read its share of a turn (--reader-slots).',
      registers,
      collect() {
        this.reset();
        this.inc(src()?.readSlots.waits ?? 0);
      },
    });
    new Gauge({
      name: 'spiwire_read_slot_waiting_sessions',
      help: 'Sessions waiting for a reader slot now.',
      registers,
      collect() {
        this.set(src()?.readSlots.waiting ?? 0);
      },
    });
    new Counter({
      name: 'spiwire_udp_batch_calls_total',
      help: 'sendmmsg system calls that sent UDP datagrams in batches (Linux).',
      registers,
      collect() {
        this.reset();
        this.inc(batchCounts().calls);
      },
    });
    new Counter({
      name: 'spiwire_udp_batched_datagrams_total',
      help: 'Datagrams those sendmmsg calls sent; the others went one at a time through node:dgram.',
      registers,
      collect() {
        this.reset();
        this.inc(batchCounts().datagrams);
      },
    });
    new Counter({
      name: 'spiwire_udp_segmented_datagrams_total',
      help: 'Datagrams of those that went in runs of one size to one destination, one segmented message per run (UDP_SEGMENT).',
      registers,
      collect() {
        this.reset();
        this.inc(batchCounts().segmented);
      },
    });
    new Counter({
      name: 'spiwire_faults_applied_total',
      help: 'Fault rule firings, by source (session, api, file) and rule (an operator rule\'s id; "session" for a session\'s own rules).',
      labelNames: ['source', 'rule'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of metrics.faultsApplied) {
          const [source, rule] = key.split('\0');
          this.inc({ source, rule }, n);
        }
      },
    });
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      registers,
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
  }

  /** Where scrapes read the daemon's tables. */
  watch(sources: MetricSources): void {
    this.sources = sources;
  }

  sessionOpened(): void {
    this.sessionsOpened++;
  }

  sessionEnded(kind: SessionEndKind): void {
    this.sessionsEnded.set(kind, (this.sessionsEnded.get(kind) ?? 0) + 1);
  }

  /** An overlapped operation that went pending completed, ms after its call reached the daemon. */
  completed(ms: number): void {
    this.latency.observeMs(ms);
  }

  /** A fault rule fired. source: 'session' for a session's own rule, else the operator's ('api', 'file'). */
  faultApplied(source: string, rule: string): void {
    const label = source === 'session' ? 'session' : rule;
    let key = `${source}\0${label}`;
    if (!this.faultsApplied.has(key) && this.faultsApplied.size >= MAX_RULE_LABELS) key = `${source}\0other`;
    this.faultsApplied.set(key, (this.faultsApplied.get(key) ?? 0) + 1);
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
