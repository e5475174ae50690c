/**
 * The table of in-flight calls and operations (src/id-table.ts), alone: it must behave as a Map
 * keyed by id whatever the ids, sequential or not, few or many in flight, long-lived or not.
 */
import t from 'tap';
import fc from 'fast-check';
import { IdTable } from '../src/id-table.js';

const sorted = <V>(xs: Iterable<[number, V]>): [number, V][] => [...xs].sort((a, b) => a[0] - b[0]);

t.test('sequential ids: set, get, delete, size', async (t) => {
  const table = new IdTable<string>();
  for (let id = 1; id <= 100; id++) table.set(id, `v${id}`);
  t.equal(table.size, 100);
  t.equal(table.get(42), 'v42');
  t.equal(table.get(101), undefined, 'an id never set');
  t.ok(table.delete(42));
  t.notOk(table.delete(42), 'deleting twice finds nothing the second time');
  t.equal(table.get(42), undefined);
  t.equal(table.size, 99);
  table.set(7, 'again');
  t.equal(table.get(7), 'again', 'setting an id again replaces its entry');
  t.equal(table.size, 99);
});

t.test('an id whose slot an older id holds goes aside, and both stay reachable', async (t) => {
  const table = new IdTable<string>();
  // 256 is the first ring size: id 1 and id 257 share a slot.
  table.set(1, 'old');
  table.set(257, 'new');
  t.equal(table.get(1), 'old');
  t.equal(table.get(257), 'new');
  t.equal(table.size, 2);
  t.same(sorted(table.entries()), [[1, 'old'], [257, 'new']]);
  t.ok(table.delete(1));
  t.equal(table.get(257), 'new', 'the spilled entry survives the delete of the slot holder');
  t.ok(table.delete(257));
  t.equal(table.size, 0);
});

t.test('many more in flight than the first ring holds: every entry is kept, then all go', async (t) => {
  const table = new IdTable<number>();
  const n = 5000;
  for (let id = 1; id <= n; id++) table.set(id, id * 2);
  t.equal(table.size, n);
  let wrong = 0;
  for (let id = 1; id <= n; id++) if (table.get(id) !== id * 2) wrong++;
  t.equal(wrong, 0, 'every id finds its entry after the ring grew');
  t.equal(table.values().length, n);
  for (let id = 1; id <= n; id++) table.delete(id);
  t.equal(table.size, 0);
  t.same(table.values(), []);
});

t.test('ids near the top of the u32 range and wrapping back to 1', async (t) => {
  const table = new IdTable<string>();
  const ids = [0xfffffffe, 0xffffffff, 1, 2];
  for (const id of ids) table.set(id, String(id));
  for (const id of ids) t.equal(table.get(id), String(id));
  t.same(sorted(table.entries()).map(([id]) => id), [1, 2, 0xfffffffe, 0xffffffff]);
});

t.test('clear forgets everything', async (t) => {
  const table = new IdTable<string>();
  table.set(1, 'a');
  table.set(257, 'b');
  table.clear();
  t.equal(table.size, 0);
  t.equal(table.get(1), undefined);
  t.equal(table.get(257), undefined);
  table.set(1, 'c');
  t.equal(table.get(1), 'c', 'usable after a clear');
});

t.test('any sequence of sets and deletes behaves as a Map', async (t) => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), id: fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.nat({ max: 0xffffffff })), v: fc.integer() }),
    fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 3000 }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
      const table = new IdTable<number>();
      const model = new Map<number, number>();
      for (const o of ops) {
        if (o.kind === 'set') {
          table.set(o.id, o.v);
          model.set(o.id, o.v);
        } else if (table.delete(o.id) !== model.delete(o.id)) return false;
        if (table.size !== model.size) return false;
      }
      for (const [id, v] of model) if (table.get(id) !== v) return false;
      return JSON.stringify(sorted(table.entries())) === JSON.stringify(sorted(model));
    }),
    { numRuns: 200, seed: 0x5eed },
  );
  t.pass('200 random sequences matched the Map model');
});
