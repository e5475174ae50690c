/**
 * Daemon configuration from flags and environment variables. Flags win over the environment,
 * the environment over the defaults. Every setting is documented in the README.
 */
import { createSecureContext } from 'node:tls';
import { DEFAULT_LIMITS, MAX_TIMER_MS, partialFramesBudgetOf, type DaemonLimits } from './daemon-context.js';
import { AllowList } from './allow-list.js';
import { FlagError, readFlags } from './cli-args.js';
import { readSmallFile } from './small-file.js';
import { DEFAULT_TRACE_DIR_BUDGET, MAX_TRACE_FILES } from './trace-directory.js';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 7787;

/** Every setting: where to listen, who may connect, and the daemon's limits. */
export interface DaemonConfig extends DaemonLimits {
  host: string;
  port: number;
  token: string | undefined;
  logLevel: string;
  allowedOrigins: string[];
  allow: string;
  /** A --faults file of operator fault rules (reloaded on SIGHUP). */
  faults: string | undefined;
  /** PEM certificate chain and private key (read from --tls-cert / --tls-key): serve wss:// and https://. */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** Where sessions write their side of the call trace (docs/trace.md). */
  traceDir: string | undefined;
  /** Bytes of trace files the trace directory may hold, all sessions together (docs/trace.md). */
  traceDirBudget: number;
  /** The URL clients reconnect to for a resume, behind a load balancer (in the welcome). */
  resumeUrl: string | undefined;
  /** 1: keep V8's GC profiler running for /stats's gc member (gc-stats.ts); 0: off. */
  gcStats: number;
}

interface Setting {
  flag: string;
  env: string;
  key: keyof DaemonConfig;
  kind: 'string' | 'int' | 'list' | 'file' | 'policy';
  doc: string;
}

export const SETTINGS: readonly Setting[] = [
  { flag: '--host', env: 'SPIWIRE_HOST', key: 'host', kind: 'string', doc: `Address to listen on (default ${DEFAULT_HOST}). Any non-loopback address requires a token.` },
  { flag: '--port', env: 'SPIWIRE_PORT', key: 'port', kind: 'int', doc: `TCP port (default ${DEFAULT_PORT}; 0 picks a free port).` },
  { flag: '--token', env: 'SPIWIRE_TOKEN', key: 'token', kind: 'string', doc: 'Bearer token clients must present (default: none, loopback only).' },
  { flag: '--token-file', env: 'SPIWIRE_TOKEN_FILE', key: 'token', kind: 'file', doc: 'Read the token from this file (for container secrets); surrounding white space is trimmed.' },
  { flag: '--log-level', env: 'SPIWIRE_LOG_LEVEL', key: 'logLevel', kind: 'string', doc: 'pino level: trace, debug, info, warn, error, fatal, silent (default info).' },
  { flag: '--allowed-origins', env: 'SPIWIRE_ALLOWED_ORIGINS', key: 'allowedOrigins', kind: 'list', doc: 'Comma-separated browser Origins allowed to connect (default: none).' },
  { flag: '--allow', env: 'SPIWIRE_ALLOW', key: 'allow', kind: 'string', doc: 'Destinations sockets may connect, send or bind to: comma-separated CIDR[:ports] rules, for example 127.0.0.0/8,[::1],172.16.0.0/12:7-9 (default *, anywhere).' },
  { flag: '--tls-cert', env: 'SPIWIRE_TLS_CERT_FILE', key: 'tlsCert', kind: 'file', doc: 'PEM certificate (chain) file: with --tls-key, the daemon serves wss:// and https:// itself (a container secret path works as is).' },
  { flag: '--tls-key', env: 'SPIWIRE_TLS_KEY_FILE', key: 'tlsKey', kind: 'file', doc: 'PEM private key file of --tls-cert.' },
  { flag: '--trace-dir', env: 'SPIWIRE_TRACE_DIR', key: 'traceDir', kind: 'string', doc: 'Each session writes its side of the call trace to DIR/<session>.jsonl (docs/trace.md; off by default).' },
  { flag: '--trace-dir-budget', env: 'SPIWIRE_TRACE_DIR_BUDGET', key: 'traceDirBudget', kind: 'int', doc: `Bytes of session traces the --trace-dir may hold (and at most ${MAX_TRACE_FILES} files); beyond, the oldest traces of ended sessions are deleted, and when live sessions alone fill it their records are dropped (default ${DEFAULT_TRACE_DIR_BUDGET}).` },
  { flag: '--faults', env: 'SPIWIRE_FAULTS', key: 'faults', kind: 'string', doc: 'JSON file of operator fault rules for every session (docs/faults.md); checked at startup, reloaded on SIGHUP.' },
  { flag: '--send-policy', env: 'SPIWIRE_SEND_POLICY', key: 'sendPolicy', kind: 'policy', doc: 'Send policy of new sockets: reference (the WSPSend reference page, default) or windows (what Windows does in practice); per socket with SO_SPIWIRE_SEND_POLICY (0x7f01).' },
  { flag: '--max-frame-bytes', env: 'SPIWIRE_MAX_FRAME_BYTES', key: 'maxFrameBytes', kind: 'int', doc: `Largest WebSocket message accepted (default ${DEFAULT_LIMITS.maxFrameBytes}).` },
  { flag: '--partial-frames-budget', env: 'SPIWIRE_PARTIAL_FRAMES_BUDGET', key: 'partialFramesBudget', kind: 'int', doc: `Bytes of WebSocket messages still arriving that all connections together may hold; beyond, the connection whose unfinished message began first is closed with 1013 (default ${DEFAULT_LIMITS.partialFramesBudget}, or twice --max-frame-bytes when that is more; at least twice --max-frame-bytes).` },
  { flag: '--max-pending-requests', env: 'SPIWIRE_MAX_PENDING_REQUESTS', key: 'maxPendingRequests', kind: 'int', doc: `Unanswered requests per session (default ${DEFAULT_LIMITS.maxPendingRequests}).` },
  { flag: '--max-sockets', env: 'SPIWIRE_MAX_SOCKETS', key: 'maxSocketsPerSession', kind: 'int', doc: `Open sockets per session (default: half of --max-sockets-total, here ${DEFAULT_LIMITS.maxSocketsPerSession}).` },
  { flag: '--max-sockets-total', env: 'SPIWIRE_MAX_SOCKETS_TOTAL', key: 'maxSocketsTotal', kind: 'int', doc: `Open sockets of all sessions, with connections queued on listeners (default: from the open-file limit, here ${DEFAULT_LIMITS.maxSocketsTotal}).` },
  { flag: '--max-sessions', env: 'SPIWIRE_MAX_SESSIONS', key: 'maxSessions', kind: 'int', doc: `Sessions at once; more upgrades get HTTP 503 (default: from the open-file limit, here ${DEFAULT_LIMITS.maxSessions}).` },
  { flag: '--reader-slots', env: 'SPIWIRE_READER_SLOTS', key: 'readerSlots', kind: 'int', doc: `Sessions that may read more than 4 KiB in one turn of the event loop, taking turns, so that a quiet session's call is not read behind every bulk sender's data; 0: no limit (more aggregate throughput, longer waits for quiet sessions) (default ${DEFAULT_LIMITS.readerSlots}).` },
  { flag: '--session-quota', env: 'SPIWIRE_SESSION_QUOTA', key: 'sessionQuotaBytes', kind: 'int', doc: `Bytes the daemon may hold for one session's pending sends before WSAENOBUFS (default ${DEFAULT_LIMITS.sessionQuotaBytes}).` },
  { flag: '--held-bytes-budget', env: 'SPIWIRE_HELD_BYTES_BUDGET', key: 'heldBytesBudget', kind: 'int', doc: `Bytes the daemon may hold for the sends of all sessions, ended ones included, before WSAENOBUFS (default ${DEFAULT_LIMITS.heldBytesBudget}).` },
  { flag: '--received-budget', env: 'SPIWIRE_RECEIVED_BUDGET', key: 'receivedBudgetBytes', kind: 'int', doc: `Bytes that sockets of all sessions received and no receive took yet; beyond, the sockets of a session holding more than its share (the budget over --max-sessions) stop reading, and TCP flow control holds their peers back (default ${DEFAULT_LIMITS.receivedBudgetBytes}).` },
  { flag: '--bookkeeping-budget', env: 'SPIWIRE_BOOKKEEPING_BUDGET', key: 'bookkeepingBudgetBytes', kind: 'int', doc: `Bytes of the daemon's own memory for the waiting calls (2 KiB each) and pending overlapped operations (512 B each) of all sessions; beyond, a session holding more than its share (the budget over --max-sessions, at least 256 KiB) gets TOO_MANY_REQUESTS for new calls (default ${DEFAULT_LIMITS.bookkeepingBudgetBytes}).` },
  { flag: '--linger-timeout', env: 'SPIWIRE_LINGER_TIMEOUT', key: 'lingerMs', kind: 'int', doc: `Milliseconds the connections of an ended session may go on delivering accepted bytes before they are reset (default ${DEFAULT_LIMITS.lingerMs}).` },
  { flag: '--handshake-timeout', env: 'SPIWIRE_HANDSHAKE_TIMEOUT', key: 'handshakeTimeoutMs', kind: 'int', doc: `Milliseconds a new connection has to finish its TLS handshake, and a request its headers (a whole request, body included, three times that), before the connection is closed; 0: no limit (default ${DEFAULT_LIMITS.handshakeTimeoutMs}).` },
  { flag: '--drain-timeout', env: 'SPIWIRE_DRAIN_TIMEOUT', key: 'drainMs', kind: 'int', doc: `Milliseconds a shutdown waits for accepted bytes to reach the kernel before resetting what is left (default ${DEFAULT_LIMITS.drainMs}).` },
  { flag: '--output-high-water', env: 'SPIWIRE_OUTPUT_HIGH_WATER', key: 'outputHighWaterBytes', kind: 'int', doc: `Unsent bytes to one client above which the daemon stops reading its requests (default ${DEFAULT_LIMITS.outputHighWaterBytes}).` },
  { flag: '--output-limit', env: 'SPIWIRE_OUTPUT_LIMIT', key: 'outputLimitBytes', kind: 'int', doc: `Unsent bytes to one client above which its session ends with close code 4008 (default ${DEFAULT_LIMITS.outputLimitBytes}).` },
  { flag: '--output-budget', env: 'SPIWIRE_OUTPUT_BUDGET', key: 'outputBudgetBytes', kind: 'int', doc: `Output waiting for clients (unsent, or produced while a session waits for its resume), all sessions together, above which the session with the most is ended with 4008 (default ${DEFAULT_LIMITS.outputBudgetBytes}).` },
  { flag: '--stream-window', env: 'SPIWIRE_STREAM_WINDOW', key: 'streamWindowBytes', kind: 'int', doc: `Bytes of a send larger than one message that a client may send ahead of what the daemon has taken (default ${DEFAULT_LIMITS.streamWindowBytes}).` },
  { flag: '--output-stall-timeout', env: 'SPIWIRE_OUTPUT_STALL_TIMEOUT', key: 'outputStallMs', kind: 'int', doc: `Milliseconds a client above the high water mark may read nothing before its session ends with 4008 (default ${DEFAULT_LIMITS.outputStallMs}).` },
  { flag: '--sndbuf', env: 'SPIWIRE_SNDBUF', key: 'defaultSndBuf', kind: 'int', doc: `Default SO_SNDBUF, the transport buffer size (default ${DEFAULT_LIMITS.defaultSndBuf}).` },
  { flag: '--max-outstanding-ops', env: 'SPIWIRE_MAX_OUTSTANDING_OPS', key: 'maxOutstandingOpsPerSocket', kind: 'int', doc: `Pending overlapped operations per socket before WSAEWOULDBLOCK (default ${DEFAULT_LIMITS.maxOutstandingOpsPerSocket}).` },
  { flag: '--resume-grace', env: 'SPIWIRE_RESUME_GRACE', key: 'resumeGraceMs', kind: 'int', doc: `Milliseconds a session whose connection dropped is kept for its client to resume it; 0 turns resume off (default ${DEFAULT_LIMITS.resumeGraceMs}).` },
  { flag: '--replay-limit', env: 'SPIWIRE_REPLAY_LIMIT', key: 'replayLimitBytes', kind: 'int', doc: `Bytes of output not yet acknowledged by its client that a session keeps for a resume; beyond, it cannot be resumed (default ${DEFAULT_LIMITS.replayLimitBytes}).` },
  { flag: '--replay-budget', env: 'SPIWIRE_REPLAY_BUDGET', key: 'replayBudgetBytes', kind: 'int', doc: `Bytes of output not yet acknowledged that all resumable sessions together keep; beyond, the session keeping the most can no longer be resumed (default ${DEFAULT_LIMITS.replayBudgetBytes}).` },
  { flag: '--gc-stats', env: 'SPIWIRE_GC_STATS', key: 'gcStats', kind: 'int', doc: "1: count garbage collections and the bytes allocated between them, for /stats's gc member (the benchmark's allocations per MB); it costs about 60 us per collection, so it is off by default (0)." },
  { flag: '--resume-url', env: 'SPIWIRE_RESUME_URL', key: 'resumeUrl', kind: 'string', doc: 'WebSocket URL of this very daemon, given to clients in the welcome for resuming when a load balancer stands in front of several daemons (default: none, clients reconnect to the URL they used).' },
  { flag: '--rcvbuf', env: 'SPIWIRE_RCVBUF', key: 'defaultRcvBuf', kind: 'int', doc: `Default SO_RCVBUF (default ${DEFAULT_LIMITS.defaultRcvBuf}).` },
];

export function defaultConfig(): DaemonConfig {
  return {
    host: DEFAULT_HOST,
    port: DEFAULT_PORT,
    token: undefined,
    logLevel: 'info',
    allowedOrigins: [],
    allow: '*',
    faults: undefined,
    tlsCert: undefined,
    tlsKey: undefined,
    traceDir: undefined,
    traceDirBudget: DEFAULT_TRACE_DIR_BUDGET,
    resumeUrl: undefined,
    gcStats: 0,
    ...DEFAULT_LIMITS,
  };
}

export class ConfigError extends Error {
  /** True when the "error" is a request for --help: print the message to stdout and exit 0. */
  constructor(
    message: string,
    readonly helpRequested = false,
  ) {
    super(message);
  }
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Upper bounds of integer settings; anything else may go up to 2^53 - 1. */
const INT_MAX: Partial<Record<keyof DaemonConfig, number>> = { port: 65535, handshakeTimeoutMs: MAX_TIMER_MS };

function apply(cfg: DaemonConfig, s: Setting, raw: string, source: string): void {
  const c = cfg as unknown as Record<string, unknown>;
  switch (s.kind) {
    case 'string':
      c[s.key] = raw;
      return;
    case 'int': {
      // Number('') is 0: only digits count as an integer here.
      const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw new ConfigError(`${source} must be a non-negative integer, got ${JSON.stringify(raw)}`);
      const max = INT_MAX[s.key];
      if (max !== undefined && n > max) throw new ConfigError(`${source} must be at most ${max}, got ${n}`);
      c[s.key] = n;
      return;
    }
    case 'policy':
      if (raw !== 'reference' && raw !== 'windows') throw new ConfigError(`${source} must be reference or windows, got ${JSON.stringify(raw)}`);
      c[s.key] = raw === 'windows' ? 1 : 0;
      return;
    case 'list':
      c[s.key] = raw.split(',').map((x) => x.trim()).filter(Boolean);
      return;
    case 'file':
      let text: string;
      try {
        text = readSmallFile(raw).trim();
      } catch (err) {
        throw new ConfigError(`${source}: cannot read ${raw}: ${(err as Error).message}`);
      }
      // An empty secret must not quietly mean "no token".
      if (text === '') throw new ConfigError(`${source}: ${raw} is empty`);
      c[s.key] = text;
      return;
  }
}

/**
 * The certificate and key the daemon serves TLS with, or null for plain ws:// and http://.
 * Checked apart from parseConfig, which takes each setting on its own.
 */
export function tlsOf(cfg: DaemonConfig): { cert: string; key: string } | null {
  if (cfg.tlsCert === undefined && cfg.tlsKey === undefined) return null;
  if (cfg.tlsCert === undefined || cfg.tlsKey === undefined) throw new ConfigError('--tls-cert and --tls-key (SPIWIRE_TLS_CERT_FILE, SPIWIRE_TLS_KEY_FILE) go together: give both or neither');
  if (!cfg.tlsCert.includes('-----BEGIN')) throw new ConfigError('--tls-cert: the file is not PEM (no -----BEGIN line)');
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(cfg.tlsKey)) throw new ConfigError('--tls-key: the file is not a PEM private key');
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(cfg.tlsKey)) throw new ConfigError('--tls-key: the private key is protected by a passphrase, which the daemon cannot be given: decrypt it (openssl pkey -in KEY -out PLAIN)');
  // Built once here, so that a certificate or key OpenSSL refuses is a configuration error that
  // names the file, not a failure of the start; each file alone is tried only to say which.
  const refusal = (options: { cert?: string; key?: string }): string | null => {
    try {
      createSecureContext(options);
      return null;
    } catch (err) {
      return openSslReason(err);
    }
  };
  const together = refusal({ cert: cfg.tlsCert, key: cfg.tlsKey });
  if (together === null) return { cert: cfg.tlsCert, key: cfg.tlsKey };
  const cert = refusal({ cert: cfg.tlsCert });
  if (cert !== null) throw new ConfigError(`--tls-cert: the certificate cannot be read: ${cert}`);
  const key = refusal({ key: cfg.tlsKey });
  if (key !== null) throw new ConfigError(`--tls-key: the private key cannot be read: ${key}`);
  throw new ConfigError(`--tls-cert and --tls-key do not go together (the key is not the certificate's): ${together}`);
}

/** OpenSSL's reason, without its error number and library ("error:0480006C:PEM routines::no start line": "no start line"). */
function openSslReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return /::(.+)$/.exec(message)?.[1] ?? message;
}

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): DaemonConfig {
  const cfg = defaultConfig();
  const given = new Set<keyof DaemonConfig>();
  for (const s of SETTINGS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') {
      apply(cfg, s, v, s.env);
      given.add(s.key);
    }
  }
  let flags: Array<[string, string]>;
  try {
    flags = readFlags(argv, SETTINGS.map((x) => x.flag));
  } catch (err) {
    if (err instanceof FlagError && err.helpRequested) throw new ConfigError(usage(), true);
    throw new ConfigError(`${err instanceof Error ? err.message : String(err)}\n\n${usage()}`);
  }
  for (const [flag, value] of flags) {
    const s = SETTINGS.find((x) => x.flag === flag);
    if (s) {
      apply(cfg, s, value, flag);
      given.add(s.key);
    }
  }
  if (cfg.token === '') cfg.token = undefined;
  if (cfg.faults === '') cfg.faults = undefined;
  if (cfg.traceDir === '') cfg.traceDir = undefined;
  if (cfg.resumeUrl === '') cfg.resumeUrl = undefined;
  if (cfg.gcStats !== 0 && cfg.gcStats !== 1) throw new ConfigError(`--gc-stats / SPIWIRE_GC_STATS is 0 or 1, got ${cfg.gcStats}`);
  if (cfg.resumeUrl !== undefined && !/^wss?:\/\/[^\s]+$/.test(cfg.resumeUrl)) throw new ConfigError(`--resume-url / SPIWIRE_RESUME_URL must be a ws:// or wss:// URL, got ${JSON.stringify(cfg.resumeUrl)}`);
  const partialFramesBudget = partialFramesBudgetOf(given.has('partialFramesBudget') ? cfg.partialFramesBudget : undefined, cfg.maxFrameBytes);
  if (partialFramesBudget === null) throw new ConfigError(`--partial-frames-budget / SPIWIRE_PARTIAL_FRAMES_BUDGET must be at least twice --max-frame-bytes (${2 * cfg.maxFrameBytes}), got ${cfg.partialFramesBudget}`);
  cfg.partialFramesBudget = partialFramesBudget;
  if (!LOG_LEVELS.includes(cfg.logLevel)) throw new ConfigError(`--log-level / SPIWIRE_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(cfg.logLevel)}`);
  try {
    AllowList.parse(cfg.allow);
  } catch (err) {
    throw new ConfigError(`--allow / SPIWIRE_ALLOW: ${(err as Error).message}`);
  }
  return cfg;
}

export function usage(): string {
  const lines = ['usage: spiwire [serve] [flags]     the daemon', '       spiwire faults <command>   the operator fault rules of a running daemon (spiwire faults --help)', '       spiwire status             a running daemon\'s version, health and totals', '       spiwire sessions           its open sessions', '       spiwire sockets SESSION    a session\'s sockets (spiwire status --help for the options)', '       spiwire trace export FILE  a session\'s call trace (SDK trace option) for Perfetto / chrome://tracing', '', 'Every flag has an environment variable; flags win.', ''];
  for (const s of SETTINGS) lines.push(`  ${(s.flag + ' <value>').padEnd(28)} ${s.env.padEnd(30)} ${s.doc}`);
  return lines.join('\n');
}
