#!/usr/bin/env node
/**
 * Real peers for test rigs: echo and discard servers for TCP and UDP (the RFC 862 and RFC 863
 * services, on configurable ports). The compose rig points the daemon's sockets at them.
 *
 *   node server/dist/src/tools/peers.js [--host 0.0.0.0] [--tcp-echo 7007] [--udp-echo 7007]
 *                                       [--tcp-discard 7009] [--udp-discard 7009]
 *
 * Every flag has an environment variable (flags win): SPIWIRE_PEERS_HOST, SPIWIRE_PEERS_TCP_ECHO,
 * SPIWIRE_PEERS_UDP_ECHO, SPIWIRE_PEERS_TCP_DISCARD, SPIWIRE_PEERS_UDP_DISCARD, SPIWIRE_LOG_LEVEL.
 * A port of 0 picks a free one, "off" disables that server. Logs are JSON lines (pino): one per
 * connection closed, with its byte count and SHA-256 (at debug level when it carried no byte, as
 * health checks do), and one per datagram. SIGTERM or SIGINT closes everything and exits 0.
 */
import { createHash, type Hash } from 'node:crypto';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { pathToFileURL } from 'node:url';
import pino, { type Logger } from 'pino';
import { FlagError, readFlags } from '../cli-args.js';

export type PeerKind = 'tcp-echo' | 'tcp-discard' | 'udp-echo' | 'udp-discard';

export interface PeersOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port per server: 0 picks a free port, null leaves that server off. */
  ports?: Partial<Record<PeerKind, number | null>>;
  logger?: Logger;
}

export interface Peers {
  readonly host: string;
  /** The port each running server got. */
  readonly ports: Partial<Record<PeerKind, number>>;
  /** Closes every server and connection. */
  close(): Promise<void>;
}

export const DEFAULT_PEER_PORTS: Record<PeerKind, number> = {
  'tcp-echo': 7007,
  'udp-echo': 7007,
  'tcp-discard': 7009,
  'udp-discard': 7009,
};

const KINDS = Object.keys(DEFAULT_PEER_PORTS) as PeerKind[];

export async function startPeers(opts: PeersOptions = {}): Promise<Peers> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.logger ?? pino({ level: 'silent' });
  const ipv6 = net.isIP(host) === 6;
  const connections = new Set<net.Socket>();
  const closers: Array<() => Promise<void>> = [];
  const ports: Partial<Record<PeerKind, number>> = {};
  const peers: Peers = {
    host,
    ports,
    async close() {
      for (const c of connections) c.destroy();
      await Promise.all(closers.splice(0).map((f) => f()));
    },
  };
  try {
    for (const kind of KINDS) {
      const wanted = opts.ports?.[kind] === undefined ? DEFAULT_PEER_PORTS[kind] : opts.ports[kind];
      if (wanted === null) continue;
      const echo = kind.endsWith('echo');
      if (kind.startsWith('tcp')) {
        const server = tcpServer(kind, echo, log, connections);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port: wanted }, () => {
            server.off('error', reject);
            resolve();
          });
        });
        ports[kind] = (server.address() as net.AddressInfo).port;
        closers.push(() => new Promise<void>((r) => server.close(() => r())));
      } else {
        const sock = udpServer(kind, echo, ipv6, log);
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ address: host, port: wanted }, () => {
            sock.off('error', reject);
            resolve();
          });
        });
        ports[kind] = sock.address().port;
        closers.push(() => new Promise<void>((r) => sock.close(() => r())));
      }
    }
  } catch (err) {
    await peers.close();
    throw err;
  }
  return peers;
}

function tcpServer(kind: PeerKind, echo: boolean, log: Logger, connections: Set<net.Socket>): net.Server {
  // allowHalfOpen: a client's FIN is answered with ours only after every echoed byte is written.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    connections.add(socket);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    const hash: Hash = createHash('sha256');
    let bytes = 0;
    log.debug({ peer: kind, remote }, 'connection opened');
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    if (echo) socket.pipe(socket);
    else socket.on('end', () => socket.end());
    socket.on('error', (err) => log.warn({ peer: kind, remote, err: err.message }, 'connection error'));
    socket.on('close', () => {
      connections.delete(socket);
      // Connections that carried nothing (health checks, port probes) are logged at debug level only.
      log[bytes > 0 ? 'info' : 'debug']({ peer: kind, remote, bytes, sha256: hash.digest('hex') }, echo ? 'connection closed; every byte echoed' : 'connection closed; bytes discarded');
    });
  });
  server.on('error', (err) => log.error({ peer: kind, err: err.message }, 'server error'));
  return server;
}

function udpServer(kind: PeerKind, echo: boolean, ipv6: boolean, log: Logger): dgram.Socket {
  const sock = dgram.createSocket({ type: ipv6 ? 'udp6' : 'udp4' });
  sock.on('message', (msg, rinfo) => {
    const remote = `${rinfo.address}:${rinfo.port}`;
    const sha256 = createHash('sha256').update(msg).digest('hex');
    if (!echo) {
      log.info({ peer: kind, remote, bytes: msg.length, sha256 }, 'datagram discarded');
      return;
    }
    sock.send(msg, rinfo.port, rinfo.address, (err) => {
      if (err) log.warn({ peer: kind, remote, err: err.message }, 'echo failed');
      else log.info({ peer: kind, remote, bytes: msg.length, sha256 }, 'datagram echoed');
    });
  });
  sock.on('error', (err) => log.error({ peer: kind, err: err.message }, 'socket error'));
  return sock;
}

// ---------------------------------------------------------------- the command

const FLAGS: Record<string, { env: string; kind: PeerKind | 'host' }> = {
  '--host': { env: 'SPIWIRE_PEERS_HOST', kind: 'host' },
  '--tcp-echo': { env: 'SPIWIRE_PEERS_TCP_ECHO', kind: 'tcp-echo' },
  '--udp-echo': { env: 'SPIWIRE_PEERS_UDP_ECHO', kind: 'udp-echo' },
  '--tcp-discard': { env: 'SPIWIRE_PEERS_TCP_DISCARD', kind: 'tcp-discard' },
  '--udp-discard': { env: 'SPIWIRE_PEERS_UDP_DISCARD', kind: 'udp-discard' },
};

function usage(): string {
  const lines = ['usage: peers [flags]   (each flag has an environment variable; flags win)', ''];
  for (const [flag, f] of Object.entries(FLAGS)) {
    const def = f.kind === 'host' ? '127.0.0.1' : `${DEFAULT_PEER_PORTS[f.kind]}; 0 = any free port, off = disabled`;
    lines.push(`  ${(flag + ' <value>').padEnd(22)} ${f.env.padEnd(28)} default ${def}`);
  }
  return lines.join('\n');
}

function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv): { host: string; ports: Record<PeerKind, number | null> } {
  const raw = new Map<string, string>();
  for (const [flag, f] of Object.entries(FLAGS)) {
    const v = env[f.env];
    if (v !== undefined && v !== '') raw.set(flag, v);
  }
  let flags: Array<[string, string]>;
  try {
    flags = readFlags(argv, Object.keys(FLAGS));
  } catch (err) {
    if (err instanceof FlagError && err.helpRequested) throw new Error(usage());
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n\n${usage()}`);
  }
  for (const [flag, value] of flags) raw.set(flag, value);
  const ports = { ...DEFAULT_PEER_PORTS } as Record<PeerKind, number | null>;
  let host = '127.0.0.1';
  for (const [flag, value] of raw) {
    const kind = FLAGS[flag]!.kind;
    if (kind === 'host') {
      host = value;
      continue;
    }
    const n = Number(value);
    if (value === 'off') ports[kind] = null;
    else if (Number.isInteger(n) && n >= 0 && n <= 65535) ports[kind] = n;
    else throw new Error(`${flag} (${FLAGS[flag]!.env}) must be a port number or "off", got ${JSON.stringify(value)}`);
  }
  return { host, ports };
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const level = process.env['SPIWIRE_LOG_LEVEL'] || 'info';
  if (level !== 'silent' && !(level in pino.levels.values)) {
    process.stderr.write(`SPIWIRE_LOG_LEVEL must be one of ${Object.keys(pino.levels.values).join(', ')}, silent; got ${JSON.stringify(level)}\n`);
    process.exit(2);
  }
  const log = pino({ level, name: 'spiwire-peers' });
  let peers: Peers;
  try {
    peers = await startPeers({ host: args.host, ports: args.ports, logger: log });
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'cannot start the peers');
    process.exit(1);
  }
  log.info({ host: peers.host, ports: peers.ports }, 'peers listening');
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    // A peer that cannot close within 3 s is not worth waiting for.
    setTimeout(() => {
      log.warn('close timed out');
      process.exit(0);
    }, 3000).unref();
    peers.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
