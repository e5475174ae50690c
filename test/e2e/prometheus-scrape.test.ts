/**
 * A real Prometheus server scrapes a real daemon on loopback, with the daemon's token as its
 * bearer credentials: the target is up and the counters it stored moved with real traffic.
 * Skipped, saying so, when no `prometheus` binary is installed (Debian: apt-get install
 * prometheus; SPIWIRE_PROMETHEUS may name the binary).
 */
import t from 'tap';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connectedTcp, daemon, send, session, tcpPeer, until } from '../helpers/harness.js';

const TOKEN = 'scrape-secret';

function findPrometheus(): string | null {
  const named = process.env['SPIWIRE_PROMETHEUS'];
  const candidates = named ? [named] : (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '').map((d) => join(d, 'prometheus'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // Not here.
    }
  }
  return null;
}

/** A loopback port free a moment ago (Prometheus takes no port 0 it would report back). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  await new Promise<void>((r) => server.close(() => r()));
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** GET a Prometheus API path; its data member, or null while Prometheus is not answering. */
async function api(port: number, path: string): Promise<unknown> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    if (res.status !== 200) return null;
    const body: unknown = await res.json();
    return isRecord(body) && body['status'] === 'success' ? body['data'] : null;
  } catch {
    return null;
  }
}

/** The scrape target's health ('up', 'down', 'unknown'), or null before it is listed. */
async function targetHealth(port: number): Promise<string | null> {
  const data = await api(port, '/api/v1/targets');
  const active = isRecord(data) ? data['activeTargets'] : undefined;
  if (!Array.isArray(active) || active.length === 0 || !isRecord(active[0])) return null;
  const health = active[0]['health'];
  return typeof health === 'string' ? health : null;
}

/** The value of an instant query with one series, or null. */
async function query(port: number, promql: string): Promise<number | null> {
  const data = await api(port, `/api/v1/query?query=${encodeURIComponent(promql)}`);
  const result = isRecord(data) ? data['result'] : undefined;
  if (!Array.isArray(result) || result.length !== 1 || !isRecord(result[0])) return null;
  const value = result[0]['value'];
  return Array.isArray(value) && typeof value[1] === 'string' ? Number(value[1]) : null;
}

const binary = findPrometheus();

t.test('a real Prometheus scrapes the daemon with its token', { skip: binary === null ? 'no prometheus binary on PATH (apt-get install prometheus, or set SPIWIRE_PROMETHEUS)' : false, timeout: 180_000 }, async (t) => {
  if (binary === null) return;
  const d = await daemon(t, { token: TOKEN });
  // Traffic before the first scrape: a session, a connected socket, bytes to a real peer.
  const spi = await session(t, d, { token: TOKEN });
  const peer = await tcpPeer(t, 'ipv4');
  const { s, conn } = await connectedTcp(spi, 'ipv4', peer);
  await send(spi, s, [Buffer.alloc(12345, 3)]);
  await conn.waitFor(12345);

  const dir = mkdtempSync(join(tmpdir(), 'spiwire-prometheus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: spiwire',
      '    authorization:',
      `      credentials: ${TOKEN}`,
      '    static_configs:',
      `      - targets: ['127.0.0.1:${d.port}']`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const proc = spawn(binary, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => proc.once('close', () => r()));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  });

  // Prometheus answers its API once it has started; the target is up after its first scrape.
  const up = await until(async () => proc.exitCode === null && (await targetHealth(port)) === 'up', 90_000, 250);
  t.ok(up, `the scrape target is up${up ? '' : `: health ${String(await targetHealth(port))}; prometheus said ${stderr.slice(-2000)}`}`);
  if (!up) return;
  t.ok(await until(async () => (await query(port, 'spiwire_sessions_opened_total{job="spiwire"}')) === 1, 30_000, 250), 'Prometheus stored the sessions counter');
  t.ok(await until(async () => ((await query(port, 'spiwire_sent_bytes_total{job="spiwire"}')) ?? 0) >= 12345, 30_000, 250), 'and the bytes sent');
  t.equal(await query(port, 'spiwire_spi_calls_total{job="spiwire",function="WSPConnect",code="NO_ERROR"}'), 1, 'and the calls by function and code');
});
