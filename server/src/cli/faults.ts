/**
 * `spiwire faults add|list|rm|reset`: a client of a running daemon's operator fault API (GET, POST
 * and DELETE /faults; docs/faults.md, "For operators"). Exit codes: 0 done, 1 the daemon refused or
 * could not be reached, 2 a usage mistake on this command line.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as P from '@spiwire/proto';
import { CONNECTION_OPTIONS, CONNECTION_USAGE, CliFailure, call, checkDaemon, isRecord, member, refusal as commonRefusal, runCli, table, targetOf, type Answer, type CliIo } from './http.js';

export type { CliIo } from './http.js';

export const FAULTS_USAGE = `usage: spiwire faults <command> [options]

  add RULE | --file F [--session S]   add an operator rule (JSON) for every session, or for session S
  list                                the operator's rules with their hits, and each session's own
  rm ID                               remove an operator rule
  reset [--session S]                 remove every operator rule (or those of session S)

${CONNECTION_USAGE}`;

/** The daemon's refusal of a fault request, worded for the operator. */
function refusal(a: Answer): CliFailure {
  switch (a.status) {
    case 403:
      return new CliFailure('the daemon has no token, so its operator fault API is off: restart it with --token (or SPIWIRE_TOKEN)', 1);
    case 400: {
      const error = member(a.body, 'error');
      const field = member(a.body, 'field');
      return new CliFailure(`the daemon refused the rule${typeof field === 'string' && field !== '' ? ` (field ${field})` : ''}: ${typeof error === 'string' ? error : 'HTTP 400'}`, 1);
    }
    default:
      return commonRefusal(a);
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

function rulesTable(listing: P.FaultsListing): string {
  const rows: string[][] = [['ID', 'SESSION', 'SOURCE', 'FUNCTIONS', 'ACTION', 'HITS']];
  for (const r of listing.rules) rows.push([r.id, r.session ?? 'all', r.source, P.faultFunctionsOf(r.match).join(','), describeAction(r.action), String(r.hits)]);
  for (const s of listing.sessions) {
    for (const r of s.rules) rows.push([r.id, s.session, 'session', P.faultFunctionsOf(r.match).join(','), describeAction(r.action), String(r.hits)]);
  }
  if (rows.length === 1) return 'no fault rules';
  return table(rows);
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
export function runFaultsCommand(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return runCli('faults', FAULTS_USAGE, io, () => run(argv, env, io));
}

async function run(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        ...CONNECTION_OPTIONS,
        file: { type: 'string' },
        session: { type: 'string' },
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
  const target = targetOf(values, env);
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
      await checkDaemon(target);
      const ids: string[] = [];
      for (const rule of rules) {
        const a = await call(target, 'POST', '/faults', rule);
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
      await checkDaemon(target);
      const a = await call(target, 'GET', '/faults');
      if (a.status !== 200) throw refusal(a);
      if (!isListing(a.body)) throw new CliFailure(`${target.base.origin} answered GET /faults with something that is not a rule list`, 1);
      io.out(values.json ? JSON.stringify(a.body) : rulesTable(a.body));
      return 0;
    }
    case 'rm': {
      expect(1);
      only([]);
      const id = rest[0];
      if (id === undefined) throw new CliFailure('rm needs the id of the rule', 2);
      await checkDaemon(target);
      const a = await call(target, 'DELETE', `/faults/${encodeURIComponent(id)}`);
      if (a.status !== 204) throw refusal(a);
      io.out(values.json ? JSON.stringify({ removed: id }) : `removed ${id}`);
      return 0;
    }
    case 'reset': {
      expect(0);
      only(['session']);
      await checkDaemon(target);
      const query = values.session === undefined ? '' : `?session=${encodeURIComponent(values.session)}`;
      const a = await call(target, 'POST', `/faults/reset${query}`);
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
