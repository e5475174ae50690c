#!/usr/bin/env -S node --single-threaded-gc --no-incremental-marking
/** The spiwire daemon command: configuration from flags and environment, graceful stop on signals. */
import pino from 'pino';
import { ConfigError, parseConfig } from './config.js';
import { startServer } from './index.js';
import { hasBufferUtil } from './native-addons.js';
import { missingNodeFlags } from './node-flags.js';
import { stdoutDestination } from './log-destination.js';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseConfig(process.argv.slice(2), process.env);
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
  const logOut = stdoutDestination();
  const log = pino({ level: cfg.logLevel, name: 'spiwire' }, logOut.stream);
  let daemon;
  try {
    daemon = await startServer({
      host: cfg.host,
      port: cfg.port,
      ...(cfg.token !== undefined ? { token: cfg.token } : {}),
      logger: log,
      allowedOrigins: cfg.allowedOrigins,
      allow: cfg.allow,
      limits: {
        maxFrameBytes: cfg.maxFrameBytes,
        maxPendingRequests: cfg.maxPendingRequests,
        maxSocketsPerSession: cfg.maxSocketsPerSession,
        defaultSndBuf: cfg.defaultSndBuf,
        defaultRcvBuf: cfg.defaultRcvBuf,
        maxOutstandingOpsPerSocket: cfg.maxOutstandingOpsPerSocket,
        sendPolicy: cfg.sendPolicy,
        sessionQuotaBytes: cfg.sessionQuotaBytes,
      },
    });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'cannot start');
    await logOut.settle(1000);
    process.exit(1);
  }
  // On the any address, name a URL that works from this machine and say that others can reach it too.
  const any = cfg.host === '0.0.0.0' || cfg.host === '::';
  const url = any ? daemon.url.replace(/\/\/(0\.0\.0\.0|\[::\])/, cfg.host === '::' ? '//[::1]' : '//127.0.0.1') : daemon.url;
  log.info({ url, listen: `${cfg.host}:${daemon.port}`, tokenRequired: cfg.token !== undefined }, `spiwire listening; connect clients to ${url}${any ? ' (or this host\'s address from elsewhere)' : ''}`);
  if (!hasBufferUtil()) log.warn('bufferutil is not available: WebSocket frames are masked in JavaScript, which caps bulk throughput');
  const missing = missingNodeFlags();
  if (missing.length > 0) log.info({ missing }, `node was started without ${missing.join(' ')}: expect lower bulk throughput on machines with few cores (docs/performance.md)`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
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
}

void main();
