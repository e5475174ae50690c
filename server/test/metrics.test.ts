/**
 * DaemonMetrics on its own (metrics.ts): the latency histogram's own buckets as Prometheus reads
 * them, result code labels, the cap on fault rule labels, and registries private to each daemon.
 * The end-to-end behaviour, with real traffic, is in test/e2e/metrics.test.ts.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { DaemonMetrics } from '../src/metrics.js';

function series(text: string, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

t.test('the completion latency histogram: cumulative buckets, a value on a bound falls in it', async (t) => {
  const m = new DaemonMetrics();
  m.completed(0.05); // 50 µs: exactly the first bound
  m.completed(0.3); // 300 µs
  m.completed(60_000); // beyond the last bound
  const h = series(await m.text(), 'spiwire_completion_latency_seconds');
  t.equal(h.get('spiwire_completion_latency_seconds_bucket{le="0.00005"}'), 1);
  t.equal(h.get('spiwire_completion_latency_seconds_bucket{le="0.00025"}'), 1);
  t.equal(h.get('spiwire_completion_latency_seconds_bucket{le="0.0005"}'), 2);
  t.equal(h.get('spiwire_completion_latency_seconds_bucket{le="30"}'), 2);
  t.equal(h.get('spiwire_completion_latency_seconds_bucket{le="+Inf"}'), 3);
  t.equal(h.get('spiwire_completion_latency_seconds_count'), 3);
  t.ok(Math.abs((h.get('spiwire_completion_latency_seconds_sum') ?? 0) - 60.00035) < 1e-9);
  t.match(await m.text(), /# TYPE spiwire_completion_latency_seconds histogram/);
});

t.test('result codes: NO_ERROR, WSA names, JSON-RPC error names', async (t) => {
  const m = new DaemonMetrics();
  m.calls.count('WSPSend', 0);
  m.calls.count('WSPSend', 0);
  m.calls.count('WSPSend', P.WSA_IO_PENDING);
  m.calls.count('WSPRecv', P.INVALID_PARAMS);
  const c = series(await m.text(), 'spiwire_spi_calls_total');
  t.equal(c.get('spiwire_spi_calls_total{function="WSPSend",code="NO_ERROR"}'), 2);
  t.equal(c.get('spiwire_spi_calls_total{function="WSPSend",code="WSA_IO_PENDING"}'), 1);
  t.equal(c.get('spiwire_spi_calls_total{function="WSPRecv",code="INVALID_PARAMS"}'), 1);
});

t.test('fault rule labels: session rules share one, operator ids beyond 256 count as other', async (t) => {
  const m = new DaemonMetrics();
  m.faultApplied('session', 'f1');
  m.faultApplied('session', 'f2');
  for (let i = 0; i < 300; i++) m.faultApplied('api', `r${i}`);
  m.faultApplied('api', 'r0');
  const f = series(await m.text(), 'spiwire_faults_applied_total');
  t.equal(f.get('spiwire_faults_applied_total{source="session",rule="session"}'), 2);
  t.equal(f.get('spiwire_faults_applied_total{source="api",rule="r0"}'), 2, 'a rule already labelled keeps its label');
  t.equal(f.get('spiwire_faults_applied_total{source="api",rule="other"}'), 300 - 255);
  t.equal(f.size, 256 + 1, '256 labels and other');
});

t.test('each daemon has its own registry', async (t) => {
  const a = new DaemonMetrics();
  const b = new DaemonMetrics();
  a.sessionOpened();
  t.equal(series(await a.text(), 'spiwire_sessions_opened_total').get('spiwire_sessions_opened_total'), 1);
  t.equal(series(await b.text(), 'spiwire_sessions_opened_total').get('spiwire_sessions_opened_total'), 0);
});
