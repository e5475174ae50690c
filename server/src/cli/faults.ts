/**
 * `spiwire faults add|list|rm|reset`: a client of a running daemon's operator fault API (GET, POST
 * and DELETE /faults; docs/faults.md, "For operators"). Exit codes: 0 done, 1 the daemon refused or
 * could not be reached, 2 a usage mistake on this command line.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import * as P from '@spiwire/proto';
import { DEFAULT_PORT } from '../config.js';

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

export const FAULTS_USAGE = `usage: spiwire faults <command> [options]

  add RULE | --file F [--session S]   add an operator rule (JSON) for every session, or for session S
  list                                the operator's rules with their hits, and each session's own
  rm ID                               remove an operator rule
  reset [--session S]                 remove every operator rule (or those of session S)

  --url URL      the daemon (default SPIWIRE_URL, or http://127.0.0.1:${DEFAULT_PORT})
  --token T      the daemon's token (default SPIWIRE_TOKEN)
  --json         machine-readable output`;

/** A failure already worded for the operator, with its exit code. */
class CliFailure extends Error {
  constructor(
    message: string,
    readonly code: 1 | 2,
  ) {
    super(message);
  }
}

const TIMEOUT_MS = 10_000;

interface Answer {
  status: number;
  body: unknown;
}

/** The daemon's HTTP base URL: a ws:// URL such as the daemon prints is taken too. */
function baseUrl(raw: string): URL {
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
  if (codes.includes('ECONNREFUSED')) return 'connection refused: is the daemon running? (start it with `spiwire --token ...`)';
  if (codes.includes('UND_ERR_HEADERS_TIMEOUT') || codes.includes('UND_ERR_BODY_TIMEOUT')) return `no answer within ${TIMEOUT_MS / 1000} s`;
  return err instanceof Error ? err.message : String(err);
}

async function call(base: URL, method: 'GET' | 'POST' | 'DELETE', path: string, token: string | undefined, body?: unknown): Promise<Answer> {
  const url = new URL(path, base);
  const headers: Record<string, string> = {};
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await request(url, { method, headers, body: body === undefined ? null : JSON.stringify(body), headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  } catch (err) {
    throw new CliFailure(`cannot reach ${base.origin}: ${whyUnreachable(err)}`, 1);
  }
  const text = await res.body.text();
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

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function member(v: unknown, key: string): unknown {
  return isRecord(v) ? v[key] : undefined;
}

/** Refuses to go on unless a spiwire daemon answers at base. */
async function checkDaemon(base: URL): Promise<void> {
  const v = await call(base, 'GET', '/version', undefined);
  if (v.status !== 200 || member(v.body, 'name') !== 'spiwire') throw new CliFailure(`${base.origin} is not a spiwire daemon (GET /version did not name spiwire)`, 1);
}

/** The daemon's refusal, worded for the operator. */
function refusal(a: Answer): CliFailure {
  const error = member(a.body, 'error');
  const said = typeof error === 'string' ? error : `HTTP ${a.status}`;
  switch (a.status) {
    case 401:
      return new CliFailure('the daemon refused the token: give its token with --token or SPIWIRE_TOKEN', 1);
    case 403:
      return new CliFailure('the daemon has no token, so its operator fault API is off: restart it with --token (or SPIWIRE_TOKEN)', 1);
    case 400: {
      const field = member(a.body, 'field');
      return new CliFailure(`the daemon refused the rule${typeof field === 'string' && field !== '' ? ` (field ${field})` : ''}: ${said}`, 1);
    }
    default:
      return new CliFailure(`the daemon refused: ${said}`, 1);
  }
}

function isListing(v: unknown): v is P.FaultsListing {
  return Array.isArray(member(v, 'rules')) && Array.isArray(member(v, 'sessions'));
}

function describeAction(a: P.FaultAction): string {
  switch (a.type) {
    case 'block':
      return a.ms !== undefined ? `block ${a.ms}ms` : `block until ${a.drained} B drained`;
    case 'delay':
      return `delay ${a.ms}ms`;
    case 'short':
      return `short ${a.max}`;
    case 'error':
      return `error ${P.wsaErrorName(a.code)}`;
    case 'reorder':
      return `reorder ${a.windowMs}ms`;
    case 'break':
      return `break at ${a.at} ${P.wsaErrorName(a.code)}`;
    case 'link':
      return `link ${a.bytesPerSecond} B/s${a.latencyMs ? ` +${a.latencyMs}ms` : ''}`;
    case 'drop':
    case 'duplicate':
      return a.type;
  }
}

function table(listing: P.FaultsListing): string {
  const rows: string[][] = [['ID', 'SESSION', 'SOURCE', 'FUNCTIONS', 'ACTION', 'HITS']];
  for (const r of listing.rules) rows.push([r.id, r.session ?? 'all', r.source, P.faultFunctionsOf(r.match).join(','), describeAction(r.action), String(r.hits)]);
  for (const s of listing.sessions) {
    for (const r of s.rules) rows.push([r.id, s.session, 'session', P.faultFunctionsOf(r.match).join(','), describeAction(r.action), String(r.hits)]);
  }
  if (rows.length === 1) return 'no fault rules';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** The rules `add` was given: a JSON argument or --file, one rule or an array of them. */
function rulesToAdd(arg: string | undefined, file: string | undefined, session: string | undefined): unknown[] {
  if ((arg === undefined) === (file === undefined)) throw new CliFailure('add takes the rule either as a JSON argument or with --file, one of the two', 2);
  let text: string;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliFailure(`--file: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, 2);
    }
  } else text = arg ?? '';
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliFailure(`${file ?? 'the rule'} is not JSON: ${err instanceof Error ? err.message : String(err)}`, 2);
  }
  const rules = Array.isArray(value) ? value : [value];
  return rules.map((r) => (session !== undefined && isRecord(r) ? { ...r, session } : r));
}

/** Runs `spiwire faults ...` (argv without "faults"); returns the exit code. */
export async function runFaultsCommand(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  try {
    return await run(argv, env, io);
  } catch (err) {
    if (!(err instanceof CliFailure)) throw err;
    io.err(`spiwire faults: ${err.message}`);
    if (err.code === 2) io.err(`\n${FAULTS_USAGE}`);
    return err.code;
  }
}

async function run(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        file: { type: 'string' },
        session: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new CliFailure(err instanceof Error ? err.message : String(err), 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(FAULTS_USAGE);
    return 0;
  }
  const [command, ...rest] = positionals;
  const base = baseUrl(values.url ?? (env['SPIWIRE_URL'] || `http://127.0.0.1:${DEFAULT_PORT}`));
  const token = values.token ?? (env['SPIWIRE_TOKEN'] || undefined);
  const expect = (n: number): void => {
    if (rest.length > n) throw new CliFailure(`${command} takes ${n === 0 ? 'no argument' : 'one argument'}; got ${rest.length}`, 2);
  };
  const only = (allowed: readonly string[]): void => {
    for (const o of ['file', 'session'] as const) if (values[o] !== undefined && !allowed.includes(o)) throw new CliFailure(`${command} takes no --${o}`, 2);
  };

  switch (command) {
    case 'add': {
      expect(1);
      only(['file', 'session']);
      const rules = rulesToAdd(rest[0], values.file, values.session);
      await checkDaemon(base);
      const ids: string[] = [];
      for (const rule of rules) {
        const a = await call(base, 'POST', '/faults', token, rule);
        if (a.status !== 201) throw refusal(a);
        const id = member(a.body, 'id');
        ids.push(typeof id === 'string' ? id : '');
      }
      io.out(values.json ? JSON.stringify(ids.length === 1 ? { id: ids[0] } : { ids }) : ids.join('\n'));
      return 0;
    }
    case 'list': {
      expect(0);
      only([]);
      await checkDaemon(base);
      const a = await call(base, 'GET', '/faults', token);
      if (a.status !== 200) throw refusal(a);
      if (!isListing(a.body)) throw new CliFailure(`${base.origin} answered GET /faults with something that is not a rule list`, 1);
      io.out(values.json ? JSON.stringify(a.body) : table(a.body));
      return 0;
    }
    case 'rm': {
      expect(1);
      only([]);
      const id = rest[0];
      if (id === undefined) throw new CliFailure('rm needs the id of the rule', 2);
      await checkDaemon(base);
      const a = await call(base, 'DELETE', `/faults/${encodeURIComponent(id)}`, token);
      if (a.status !== 204) throw refusal(a);
      io.out(values.json ? JSON.stringify({ removed: id }) : `removed ${id}`);
      return 0;
    }
    case 'reset': {
      expect(0);
      only(['session']);
      await checkDaemon(base);
      const query = values.session === undefined ? '' : `?session=${encodeURIComponent(values.session)}`;
      const a = await call(base, 'POST', `/faults/reset${query}`, token);
      if (a.status !== 200) throw refusal(a);
      const removed = member(a.body, 'removed');
      io.out(values.json ? JSON.stringify({ removed }) : `removed ${String(removed)} operator rule${removed === 1 ? '' : 's'}`);
      return 0;
    }
    case undefined:
      throw new CliFailure('a command is needed: add, list, rm or reset', 2);
    default:
      throw new CliFailure(`unknown command ${JSON.stringify(command)}: add, list, rm or reset`, 2);
  }
}
