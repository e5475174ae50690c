#!/usr/bin/env -S node --single-threaded-gc --no-incremental-marking
/**
 * The spiwire command. `spiwire [serve] [flags]`: the daemon, with its configuration from flags and
 * environment, graceful stop on SIGINT and SIGTERM, and the --faults file reloaded on SIGHUP.
 * `spiwire faults ...`: the client of a running daemon's operator fault API (cli/faults.ts).
 * `spiwire status|sessions|sockets ...`: what a running daemon is doing (cli/inspect.ts).
 * `spiwire trace export ...`: a session trace as a timeline (cli/trace.ts).
 */
import pino from 'pino';
import { ConfigError, parseConfig, tlsOf, type DaemonConfig } from './config.js';
import { DEFAULT_LIMITS, startServer, type DaemonLimits } from './index.js';
import { hasBufferUtil } from './native-addons.js';
import { missingNodeFlags } from './node-flags.js';
import { descriptorLimit, descriptorsNeeded } from './descriptor-limit.js';
import { stdoutDestination } from './log-destination.js';
import { FaultFileError, readFaultFile } from './faults/fault-file.js';
import { OperatorFaultError } from './faults/operator-rules.js';
import type { OperatorFaultRule } from '@spiwire/proto';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const io = { out: (l: string) => process.stdout.write(`${l}\n`), err: (l: string) => process.stderr.write(`${l}\n`) };
  const command = argv[0];
  // The clients load nothing of the daemon's.
  if (command === 'faults') {
    const { runFaultsCommand } = await import('./cli/faults.js');
    process.exitCode = await runFaultsCommand(argv.slice(1), process.env, io);
    return;
  }
  if (command === 'trace') {
    const { runTraceCommand } = await import('./cli/trace.js');
    process.exitCode = await runTraceCommand(argv.slice(1), io);
    return;
  }
  if (command === 'status' || command === 'sessions' || command === 'sockets') {
    const { runInspectCommand } = await import('./cli/inspect.js');
    process.exitCode = await runInspectCommand(command, argv.slice(1), process.env, io);
    return;
  }
  await serve(argv[0] === 'serve' ? argv.slice(1) : argv);
}

async function serve(argv: readonly string[]): Promise<void> {
  let cfg;
  let tls;
  try {
    cfg = parseConfig(argv, process.env);
    tls = tlsOf(cfg);
  } catch (err) {
    if (err instanceof ConfigError) {
      if (err.helpRequested) {
        process.stdout.write(`${err.message}\n`);
        process.exit(0);
      }
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let faults: OperatorFaultRule[] | undefined;
  if (cfg.faults !== undefined) {
    try {
      faults = readFaultFile(cfg.faults);
    } catch (err) {
      if (!(err instanceof FaultFileError)) throw err;
      process.stderr.write(`--faults: ${err.message}\n`);
      process.exit(2);
    }
  }
  const logOut = stdoutDestination();
  const log = pino({ level: cfg.logLevel, name: 'spiwire' }, logOut.stream);
  let daemon;
  try {
    daemon = await startServer({
      host: cfg.host,
      port: cfg.port,
      ...(cfg.token !== undefined ? { token: cfg.token } : {}),
      ...(tls ? { tls } : {}),
      ...(cfg.traceDir !== undefined ? { traceDir: cfg.traceDir, traceDirBudget: cfg.traceDirBudget } : {}),
      logger: log,
      allowedOrigins: cfg.allowedOrigins,
      allow: cfg.allow,
      limits: limitsOf(cfg),
      ...(faults ? { faults } : {}),
      ...(cfg.resumeUrl !== undefined ? { resumeUrl: cfg.resumeUrl } : {}),
      gcStats: cfg.gcStats === 1,
    });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'cannot start');
    await logOut.settle(1000);
    process.exit(1);
  }
  // Before the URL line, which tells whoever waits for it that start-up is over.
  const descriptors = descriptorLimit();
  const needed = descriptorsNeeded(cfg, cfg.traceDir !== undefined);
  if (needed > descriptors) log.warn({ limit: descriptors, needed }, `the open-file limit (${descriptors}) is below what the limits in force may need (${needed}): with every session, socket and HTTP connection allowed in use, the daemon would run out of descriptors; raise it (ulimit -n) or lower --max-sessions and --max-sockets-total`);
  // On the any address, name a URL that works from this machine and say that others can reach it too.
  const any = cfg.host === '0.0.0.0' || cfg.host === '::';
  const url = any ? daemon.url.replace(/\/\/(0\.0\.0\.0|\[::\])/, cfg.host === '::' ? '//[::1]' : '//127.0.0.1') : daemon.url;
  log.info({ url, listen: `${cfg.host}:${daemon.port}`, tokenRequired: cfg.token !== undefined }, `spiwire listening; connect clients to ${url}${any ? ' (or this host\'s address from elsewhere)' : ''}`);
  if (!hasBufferUtil()) log.warn('bufferutil is not available: WebSocket frames are masked in JavaScript, which caps bulk throughput');
  const missing = missingNodeFlags();
  if (missing.length > 0) log.info({ missing }, `node was started without ${missing.join(' ')}: expect lower bulk throughput on machines with few cores (docs/performance.md)`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      // A second signal: the operator does not want to wait for the drain.
      log.warn({ signal }, 'second signal: exiting now');
      void logOut.settle(200).then(() => process.exit(1));
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    // Whatever happens to the graceful stop, the process ends: the drain deadline, the close
    // handshakes (2 s) and a margin.
    setTimeout(() => {
      log.warn('graceful stop took too long: exiting');
      void logOut.settle(200).then(() => process.exit(1));
    }, cfg.drainMs + 5000).unref();
    // The log is given a moment to reach its reader, never more: a stuck reader must not keep
    // the daemon from exiting.
    const exit = (code: number): void => void logOut.settle(1000).then(() => process.exit(code));
    daemon.close().then(
      () => {
        log.info('stopped');
        exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Only with a file to reload: otherwise SIGHUP keeps its usual meaning (the daemon ends).
  const file = cfg.faults;
  if (file !== undefined) {
    log.info({ file, rules: faults?.length ?? 0 }, 'fault rules loaded; SIGHUP reloads the file');
    process.on('SIGHUP', () => {
      try {
        const rules = readFaultFile(file);
        daemon.replaceFileFaults(rules);
        log.info({ file, rules: rules.length }, 'fault file reloaded');
      } catch (err) {
        if (!(err instanceof FaultFileError || err instanceof OperatorFaultError)) throw err;
        log.warn({ file, problem: err.message }, 'fault file not reloaded; the previous rules stay');
      }
    });
  }
}

/** The DaemonLimits part of the configuration: every key DEFAULT_LIMITS has. */
function limitsOf(cfg: DaemonConfig): DaemonLimits {
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS) as Array<keyof DaemonLimits>) limits[key] = cfg[key];
  return limits;
}

void main();
