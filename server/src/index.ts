/** The public entry point: start a daemon in this process. */
import { accessSync, constants, mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { buildApp, WS_PATH } from './app.js';
import { DaemonContext, DEFAULT_LIMITS, partialFramesBudgetOf, type DaemonLimits } from './daemon-context.js';
import { isLoopbackHost } from './security.js';
import type { Session } from './session.js';
import { VERSION } from './version.js';
import { AllowList } from './allow-list.js';
import { closeWithin, SHUTDOWN_CLOSE_MS, SHUTDOWN_CLOSE_REASON } from './close-within.js';
import { DEFAULT_HOST } from './config.js';
import { useProcessGcStats } from './gc-stats.js';
import type { OperatorFaultRule } from '@spiwire/proto';
import { DEFAULT_TRACE_DIR_BUDGET, TraceDirectory } from './trace-directory.js';

export { DAEMON_NODE_FLAGS } from './node-flags.js';

export interface StartOptions {
  /** Default 127.0.0.1. A non-loopback host requires a token. */
  host?: string;
  /** Default 0 (a free port) when embedding; the CLI defaults to 7787. */
  port?: number;
  token?: string;
  /** A pino logger; default: silent. */
  logger?: Logger;
  allowedOrigins?: string[];
  limits?: Partial<DaemonLimits>;
  /**
   * Destinations sockets may connect, send or bind to: comma-separated rules such as
   * "127.0.0.0/8,[::1],10.0.0.0/8:7-9" (see the README). Default "*": anywhere.
   */
  allow?: string;
  /** Operator fault rules as from a --faults file (checked with readFaultFile or operatorFaultRuleProblem). */
  faults?: readonly OperatorFaultRule[];
  /** A directory where each session writes its side of the call trace (docs/trace.md). */
  traceDir?: string;
  /** Bytes of trace files traceDir may hold (default DEFAULT_TRACE_DIR_BUDGET, 1 GiB). */
  traceDirBudget?: number;
  /** PEM certificate (chain) and private key: the daemon serves wss:// and https:// itself. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The URL of this daemon that clients reconnect to for a resume, behind a load balancer (--resume-url). */
  resumeUrl?: string;
  /** Keep V8's GC profiler running for /stats's gc member (--gc-stats; about 60 us per collection). */
  gcStats?: boolean;
}

export interface Daemon {
  /** The WebSocket URL a client connects to, for example ws://127.0.0.1:7787/ws. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /**
   * Graceful stop: new sessions refused, blocked calls answered (WSAENETDOWN), sockets closed,
   * accepted bytes handed to the kernel (up to limits.drainMs).
   */
  close(): Promise<void>;
  /**
   * Puts these rules in place of the file rules (a --faults reload), all at once. Throws
   * OperatorFaultError, with the old rules still in place, when they cannot all be taken.
   */
  replaceFileFaults(rules: readonly OperatorFaultRule[]): void;
}

export async function startServer(opts: StartOptions = {}): Promise<Daemon> {
  const host = opts.host ?? DEFAULT_HOST;
  const token = opts.token === '' ? undefined : opts.token;
  if (!isLoopbackHost(host) && token === undefined) {
    throw new Error(`refusing to listen on ${host} without a token: only loopback addresses may be used without one (set --token or SPIWIRE_TOKEN)`);
  }
  const log = opts.logger ?? pino({ level: 'silent' });
  const limits: DaemonLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  // As on the command line: unless given, the partial-frame budget holds two of the largest messages.
  const partialFramesBudget = partialFramesBudgetOf(opts.limits?.partialFramesBudget, limits.maxFrameBytes);
  if (partialFramesBudget === null) throw new RangeError(`limits.partialFramesBudget must be at least twice limits.maxFrameBytes (${2 * limits.maxFrameBytes}), got ${limits.partialFramesBudget}`);
  limits.partialFramesBudget = partialFramesBudget;
  const ctx = new DaemonContext(log, limits, VERSION, AllowList.parse(opts.allow ?? '*'));
  if (opts.faults) ctx.faults.replaceFileRules(opts.faults);
  if (opts.traceDir !== undefined) {
    // Checked now: a trace that cannot be written should stop the start, not each session.
    mkdirSync(opts.traceDir, { recursive: true });
    accessSync(opts.traceDir, constants.W_OK);
    ctx.traces = new TraceDirectory(opts.traceDir, opts.traceDirBudget ?? DEFAULT_TRACE_DIR_BUDGET, log);
  }
  ctx.resumeUrl = opts.resumeUrl;
  const sessions = new Set<Session>();
  const app = await buildApp(ctx, sessions, { token, allowedOrigins: opts.allowedOrigins ?? [], tls: opts.tls }, log);
  await app.listen({ host, port: opts.port ?? 0 });
  const gc = opts.gcStats ? useProcessGcStats() : null;
  ctx.gc = gc?.stats ?? null;
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `${opts.tls ? 'wss' : 'ws'}://${urlHost}:${port}${WS_PATH}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    host,
    port,
    replaceFileFaults: (rules) => ctx.faults.replaceFileRules(rules),
    close() {
      closing ??= (async () => {
        ctx.shuttingDown = true;
        ctx.draining.beginShutdown();
        await Promise.all([...sessions].map((s) => s.shutdown()));
        // Connections without a session end under the same rule: a resume handshake still
        // waiting for its message, a refused resume whose client keeps its side open. The server
        // would otherwise wait for them past the shutdown deadline.
        await Promise.all([...app.websocketServer.clients].map((ws) => closeWithin(ws, 1001, SHUTDOWN_CLOSE_REASON, SHUTDOWN_CLOSE_MS)));
        // Bytes WSPSend accepted reach the kernel (which delivers them after the exit), up to
        // the drain deadline; connections that cannot deliver by then are reset and logged.
        await ctx.draining.drainAll(limits.drainMs);
        try {
          await app.close();
        } finally {
          gc?.release();
        }
      })();
      return closing;
    },
  };
}

export { DEFAULT_LIMITS, type DaemonLimits } from './daemon-context.js';
export { DEFAULT_HOST, DEFAULT_PORT } from './config.js';
export { VERSION } from './version.js';
export { AllowList } from './allow-list.js';
export { FaultFileError, parseFaultFile, readFaultFile } from './faults/fault-file.js';
export { OperatorFaultError } from './faults/operator-rules.js';
