/**
 * `spiwire status`, `spiwire sessions` and `spiwire sockets SESSION`: what a running daemon is
 * doing, from its read-only endpoints (GET /healthz, /stats, /sessions, /sessions/:id/sockets).
 * Human tables by default, --json for scripts. Exit codes as cli/http.ts says.
 */
import { parseArgs } from 'node:util';
import * as P from '@spiwire/proto';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, CliFailure, call, checkDaemon, isRecord, member, refusal, runCli, table, targetOf, type CliIo, type Target } from './http.js';

export type InspectCommand = 'status' | 'sessions' | 'sockets';

export const INSPECT_USAGE = `usage: spiwire status | sessions | sockets SESSION [options]

  status             the daemon's version, health and totals
  sessions           the open sessions: peer, age, sockets, pending operations, bytes, backlog
  sockets SESSION    a session's sockets: state, addresses, options, queued bytes, pending operations

${CONNECTION_USAGE}`;

/** Runs `spiwire status|sessions|sockets ...` (argv after the command); returns the exit code. */
export function runInspectCommand(command: InspectCommand, argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return runCli(command, INSPECT_USAGE, io, () => run(command, argv, env, io));
}

async function run(command: InspectCommand, argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: CONNECTION_OPTIONS });
  } catch (err) {
    throw new CliFailure(err instanceof Error ? err.message : String(err), 2);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(INSPECT_USAGE);
    return 0;
  }
  const wanted = command === 'sockets' ? 1 : 0;
  if (command === 'sockets' && positionals.length === 0) throw new CliFailure('sockets needs the id of a session (spiwire sessions lists them)', 2);
  if (positionals.length > wanted) throw new CliFailure(`${command} takes ${wanted === 0 ? 'no argument' : 'one argument'}; got ${positionals.length}`, 2);
  const target = targetOf(values, env);
  const json = values.json === true;
  switch (command) {
    case 'status':
      io.out(await status(target, json));
      return 0;
    case 'sessions':
      io.out(await sessions(target, json));
      return 0;
    case 'sockets':
      io.out(await sockets(target, positionals[0] ?? '', json));
      return 0;
  }
}

async function status(target: Target, json: boolean): Promise<string> {
  const version = await checkDaemon(target);
  const health = await call(target, 'GET', '/healthz');
  const stats = await call(target, 'GET', '/stats');
  if (stats.status !== 200) throw refusal(stats);
  if (!isRecord(health.body) || !isRecord(stats.body)) throw new CliFailure(`${target.base.origin} answered GET /healthz or /stats with something that is not a JSON object`, 1);
  if (json) return JSON.stringify({ url: target.base.origin, version, health: health.body, stats: stats.body });
  const n = (v: unknown): string => (typeof v === 'number' ? String(v) : '?');
  const s = stats.body;
  return [
    `spiwire ${String(version['version'])} (protocol ${String(version['protocol'])}, node ${String(version['node'])}) at ${target.base.origin}: ${String(health.body['status'])}`,
    `sessions ${n(s['sessions'])}, sockets ${n(s['sockets'])}, queued connections ${n(s['queuedConnections'])}`,
    `pending operations ${n(s['pendingOps'])}, running requests ${n(s['pendingRequests'])}`,
    `held bytes ${n(s['heldBytes'])} (of ended sessions ${n(s['heldBytesOfEndedSessions'])}), draining connections ${n(s['drainingConnections'])}`,
    `resident memory ${bytes(member(s['memory'], 'rss'))}`,
  ].join('\n');
}

/** The most pages one command reads: a daemon's listing ends long before (P.INSPECTION_PAGE_MAX entries a page). */
const MAX_PAGES = 1000;

/** Every page of a listing, joined: the daemon answers a page at a time (docs/metrics.md). */
async function allPages<T extends { next?: string }>(target: Target, path: string, isListing: (v: unknown) => v is T, what: string, join: (a: T, b: T) => void, notFound?: CliFailure): Promise<T> {
  let all: T | undefined;
  let after: string | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const a = await call(target, 'GET', after === undefined ? path : `${path}?after=${encodeURIComponent(after)}`);
    if (notFound && a.status === 404 && isRecord(a.body) && a.body['field'] === 'id') throw notFound;
    if (a.status !== 200) throw refusal(a);
    if (!isListing(a.body)) throw new CliFailure(`${target.base.origin} answered GET ${path} with something that is not ${what}`, 1);
    if (all === undefined) all = a.body;
    else join(all, a.body);
    after = a.body.next;
    if (after === undefined) break;
  }
  if (all === undefined) throw new CliFailure(`${target.base.origin} answered GET ${path} with nothing`, 1);
  delete all.next;
  return all;
}

async function sessions(target: Target, json: boolean): Promise<string> {
  await checkDaemon(target);
  const listing = await allPages(target, '/sessions', P.isSessionsListing, 'a session list', (a, b) => a.sessions.push(...b.sessions));
  if (json) return JSON.stringify(listing);
  if (listing.sessions.length === 0) return 'no sessions';
  const rows = [['SESSION', 'PEER', 'AGE', 'SOCKETS', 'PENDING', 'SENT', 'RECEIVED', 'HELD', 'UNSENT']];
  for (const s of listing.sessions) {
    rows.push([s.id, hostPort(s.peer.address, s.peer.port), age(s.ageSeconds), String(s.sockets), String(s.pendingOperations), bytes(s.bytesSent), bytes(s.bytesReceived), bytes(s.heldBytes), bytes(s.outputUnsent)]);
  }
  return table(rows);
}

async function sockets(target: Target, session: string, json: boolean): Promise<string> {
  await checkDaemon(target);
  const path = `/sessions/${encodeURIComponent(session)}/sockets`;
  const notFound = new CliFailure(`no open session has the id ${JSON.stringify(session)} (spiwire sessions lists them)`, 1);
  const listing = await allPages(target, path, P.isSocketsListing, 'a socket list', (a, b) => a.sockets.push(...b.sockets), notFound);
  if (json) return JSON.stringify(listing);
  if (listing.sockets.length === 0) return `session ${session} has no open sockets`;
  const rows = [['HANDLE', 'TYPE', 'STATE', 'LOCAL', 'REMOTE', 'SEND Q', 'RECV Q', 'PENDING', 'SENT', 'RECEIVED', 'OPTIONS']];
  for (const s of listing.sockets) {
    rows.push([
      `0x${s.handle.toString(16)}`,
      `${s.type}/${s.family}`,
      s.state,
      s.local ? hostPort(s.local.address, s.local.port) : '-',
      s.remote ? hostPort(s.remote.address, s.remote.port) : '-',
      bytes(s.sendQueuedBytes),
      bytes(s.receiveQueuedBytes),
      String(s.pendingOperations),
      bytes(s.bytesSent),
      bytes(s.bytesReceived),
      options(s),
    ]);
  }
  return table(rows);
}

function options(s: P.SocketInfo): string {
  const o = s.options;
  const words: string[] = [];
  if (s.overlapped) words.push('overlapped');
  if (o.nonBlocking) words.push('nonblocking');
  if (o.noDelay) words.push('nodelay');
  if (o.keepAlive) words.push('keepalive');
  if (o.broadcast) words.push('broadcast');
  if (o.oobInline) words.push('oobinline');
  if (o.linger.onoff) words.push(`linger=${o.linger.seconds}s`);
  words.push(`sndbuf=${o.sndBuf}`, `rcvbuf=${o.rcvBuf}`);
  if (o.sendPolicy === 'windows') words.push('policy=windows');
  if (s.tag !== null) words.push(`tag=${s.tag}`);
  return words.join(',');
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function age(seconds: number): string {
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.floor(seconds % 60)}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

/** A byte count for a table: exact below 10 KiB, then KiB, MiB, GiB with one decimal. */
function bytes(v: unknown): string {
  if (typeof v !== 'number') return '?';
  if (v < 10 * 1024) return String(v);
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = v / 1024;
  let i = 0;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(1)}${units[i]}`;
}
