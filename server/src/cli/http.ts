/**
 * What the `spiwire` client commands (faults, status, sessions, sockets) share: the --url, --token
 * and --json options, HTTP calls to the daemon with undici, and one-line errors for a daemon that
 * is not running, refuses the token or is not a spiwire daemon. Exit codes: 0 done, 1 the daemon
 * refused or could not be reached, 2 a usage mistake on the command line.
 */
import { request } from 'undici';
import { DEFAULT_PORT } from '../config.js';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

/** The options every client command takes, for its usage text. */
export const CONNECTION_USAGE = `  --url URL      the daemon (default SPIWIRE_URL, or http://127.0.0.1:${DEFAULT_PORT})
  --token T      the daemon's token (default SPIWIRE_TOKEN)
  --json         machine-readable output`;

/** parseArgs options for CONNECTION_USAGE. */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A failure already worded for the operator, with its exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: 1 | 2,
  ) {
    super(message);
  }
}

export const TIMEOUT_MS = 10_000;

export interface Answer {
  status: number;
  body: unknown;
}

/** Where the daemon is and how to present oneself to it. */
export interface Target {
  base: URL;
  token: string | undefined;
}

/** The target from --url / --token, or SPIWIRE_URL / SPIWIRE_TOKEN, or the defaults. */
export function targetOf(values: { url?: string | undefined; token?: string | undefined }, env: NodeJS.ProcessEnv): Target {
  return {
    base: baseUrl(values.url ?? (env['SPIWIRE_URL'] || `http://127.0.0.1:${DEFAULT_PORT}`)),
    token: values.token ?? (env['SPIWIRE_TOKEN'] || undefined),
  };
}

/** The daemon's HTTP base URL: a ws:// URL such as the daemon prints is taken too. */
export function baseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliFailure(`--url: ${JSON.stringify(raw)} is not a URL (for example http://127.0.0.1:${DEFAULT_PORT})`, 2);
  }
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliFailure(`--url: ${raw} must be an http:// (or ws://) URL`, 2);
  url.pathname = '/';
  url.search = '';
  return url;
}

/** A short name for a connection failure. */
function whyUnreachable(err: unknown): string {
  const codes: string[] = [];
  const collect = (e: unknown): void => {
    if (typeof e !== 'object' || e === null) return;
    if ('code' in e && typeof e.code === 'string') codes.push(e.code);
    if ('errors' in e && Array.isArray(e.errors)) for (const x of e.errors) collect(x);
    if ('cause' in e) collect(e.cause);
  };
  collect(err);
  if (codes.includes('ECONNREFUSED')) return 'connection refused: is the daemon running? (start it with `npm start` or `spiwire`)';
  if (codes.includes('UND_ERR_HEADERS_TIMEOUT') || codes.includes('UND_ERR_BODY_TIMEOUT')) return `no answer within ${TIMEOUT_MS / 1000} s`;
  if (codes.includes('ENOTFOUND') || codes.includes('EAI_AGAIN')) return 'the host name does not resolve';
  if (codes.includes('EHOSTUNREACH') || codes.includes('ENETUNREACH')) return 'the host is unreachable';
  return err instanceof Error ? err.message : String(err);
}

/** An HTTP call to the daemon; a body that is not JSON is returned as text. */
export async function call(target: Target, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<Answer> {
  const { base, token } = target;
  const url = new URL(path, base);
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  let text;
  try {
    res = await request(url, { method, headers, body: body === undefined ? null : JSON.stringify(body), headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
    text = await res.body.text();
  } catch (err) {
    throw new CliFailure(`cannot reach ${base.origin}: ${whyUnreachable(err)}`, 1);
  }
  let parsed: unknown = null;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  return { status: res.statusCode, body: parsed };
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function member(v: unknown, key: string): unknown {
  return isRecord(v) ? v[key] : undefined;
}

/** Refuses to go on unless a spiwire daemon answers at the target; returns its GET /version. */
export async function checkDaemon(target: Target): Promise<Record<string, unknown>> {
  const v = await call({ base: target.base, token: undefined }, 'GET', '/version');
  if (v.status !== 200 || !isRecord(v.body) || v.body['name'] !== 'spiwire') throw new CliFailure(`${target.base.origin} is not a spiwire daemon (GET /version did not name spiwire)`, 1);
  return v.body;
}

/** The daemon's refusal, worded for the operator; statuses a command words itself are left to it. */
export function refusal(a: Answer): CliFailure {
  const error = member(a.body, 'error');
  const said = typeof error === 'string' ? error : `HTTP ${a.status}`;
  if (a.status === 401) return new CliFailure('the daemon refused the token: give its token with --token or SPIWIRE_TOKEN', 1);
  return new CliFailure(`the daemon refused: ${said}`, 1);
}

/** Columns padded to their widest cell (the last one is not padded). */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/**
 * Runs a client command's body: a CliFailure becomes its one-line message (prefixed with the
 * command, with the usage after a usage mistake) and its exit code.
 */
export async function runCli(name: string, usage: string, io: CliIo, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (!(err instanceof CliFailure)) throw err;
    io.err(`spiwire ${name}: ${err.message}`);
    if (err.code === 2) io.err(`\n${usage}`);
    return err.code;
  }
}
