/**
 * The collector's counts and heap allocation totals (gc-stats.ts): what a known workload
 * allocates shows up in them, and /stats carries them.
 */
import t from 'tap';
import { GcStats } from '../src/gc-stats.js';
import { startServer } from '../src/index.js';

const MiB = 1024 * 1024;

t.test('objects allocated between collections are counted', async (t) => {
  const stats = new GcStats().start();
  t.teardown(() => stats.stop());
  const before = stats.totals();
  // Four million small objects, 16 bytes each at least (a map, properties, elements, one field),
  // 64 MB in all: many scavenges.
  let objects: Array<{ i: number }> = [];
  for (let i = 0; i < 4_000_000; i++) {
    objects.push({ i });
    if (objects.length >= 1000) objects = [];
  }
  const after = stats.totals();
  const heap = after.heapAllocatedBytes - before.heapAllocatedBytes;
  // The arrays that held them come on top: a few times 16 bytes an object at most.
  t.ok(heap >= 64e6 && heap <= 6 * 64e6, `heap: ${(heap / MiB).toFixed(1)} MiB counted for 64 MB of objects and their arrays`);
  t.ok(after.minor > before.minor, `collections counted: ${after.minor - before.minor} minor`);
  t.ok(after.pauseMs > before.pauseMs, 'and their time');
});

t.test('totals never go back, and a stopped counter keeps its totals', async (t) => {
  const stats = new GcStats().start();
  const a = stats.totals();
  for (let i = 0; i < 100_000; i++) void { i };
  const b = stats.totals();
  stats.stop();
  const c = stats.totals();
  for (const k of Object.keys(a) as Array<keyof typeof a>) t.ok(b[k] >= a[k] && c[k] >= b[k], `${k} grew or stayed`);
  for (let i = 0; i < 100_000; i++) void { i };
  t.same(stats.totals(), c, 'stopped: the totals stay as they were');
});

t.test('/stats reports them with --gc-stats 1 (gcStats), and null without', async (t) => {
  const off = await startServer({ port: 0 });
  t.teardown(() => off.close());
  t.equal(((await (await fetch(`http://127.0.0.1:${off.port}/stats`)).json()) as { gc: unknown }).gc, null, 'off by default: null');
  const d = await startServer({ port: 0, gcStats: true });
  t.teardown(() => d.close());
  const body = (await (await fetch(`http://127.0.0.1:${d.port}/stats`)).json()) as { gc: Record<string, number> | null };
  t.ok(body.gc !== null && typeof body.gc === 'object', 'a gc member');
  for (const k of ['minor', 'major', 'pauseMs', 'heapAllocatedBytes']) t.ok(Number.isFinite(body.gc?.[k]) && body.gc![k]! >= 0, `${k}: ${body.gc?.[k]}`);
});

t.test('/stats carries the compiled code within heapUsed (heapCodeBytes)', async (t) => {
  const d = await startServer({ port: 0 });
  t.teardown(() => d.close());
  const body = (await (await fetch(`http://127.0.0.1:${d.port}/stats`)).json()) as { heapCodeBytes: number; memory: { heapUsed: number } };
  // A running daemon has compiled code, and it is a part of heapUsed, not all of it.
  t.ok(body.heapCodeBytes > 0, `heapCodeBytes ${body.heapCodeBytes}`);
  t.ok(body.heapCodeBytes < body.memory.heapUsed, `less than heapUsed (${body.memory.heapUsed})`);
});
