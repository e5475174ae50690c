/**
 * Later (src/later.ts): a value that comes later in the same turn. Continuations run in the call
 * that settles it, each exactly once; a step that throws fails the rest of the chain instead of
 * unwinding into the code that settled it (a UDP socket sending its batch).
 */
import t from 'tap';
import { Later, mapResult, promiseOf } from '../src/later.js';

t.test('a chain runs in the call that settles it, not on a microtask', (t) => {
  const l = new Later<number>();
  const seen: string[] = [];
  l.map((v) => v + 1)
    .map((v) => v * 10)
    .finish(
      (v) => seen.push(`value ${v}`),
      (e) => seen.push(`error ${String(e)}`),
    );
  t.same(seen, [], 'nothing before the value');
  l.settle(4);
  t.same(seen, ['value 50'], 'the whole chain ran inside settle()');
  l.settle(5);
  l.fail(new Error('late'));
  t.same(seen, ['value 50'], 'a second settle or a fail after it changes nothing');
  t.end();
});

t.test('a Later settled before its continuation hands the value over when the continuation comes', (t) => {
  const l = new Later<string>();
  l.settle('ready');
  let got = '';
  l.map((s) => s.toUpperCase()).finish(
    (s) => (got = s),
    () => undefined,
  );
  t.equal(got, 'READY');
  t.end();
});

t.test('a step that throws fails the rest of the chain; the settling call is not disturbed', (t) => {
  const l = new Later<number>();
  const cleanups: unknown[] = [];
  let outcome = '';
  l.map((): number => {
    throw new Error('step failed');
  })
    .map((v) => v + 1, (e) => cleanups.push(e))
    .finish(
      (v) => (outcome = `value ${v}`),
      (e) => (outcome = `error ${(e as Error).message}`),
    );
  t.doesNotThrow(() => l.settle(1), 'settle() returns normally');
  t.equal(outcome, 'error step failed', 'the error reached the last step');
  t.equal(cleanups.length, 1, "the later step's clean-up ran once");
  t.end();
});

t.test('a failure travels down the chain, through every clean-up', (t) => {
  const l = new Later<number>();
  const order: string[] = [];
  l.map(
    (v) => v,
    () => order.push('first clean-up'),
  )
    .map(
      (v) => v,
      () => order.push('second clean-up'),
    )
    .finish(
      () => order.push('value'),
      (e) => order.push(`error ${(e as Error).message}`),
    );
  l.fail(new Error('no route'));
  t.same(order, ['first clean-up', 'second clean-up', 'error no route']);
  t.end();
});

t.test('one continuation per Later', (t) => {
  const l = new Later<number>();
  l.map((v) => v);
  t.throws(() => l.map((v) => v), /one continuation/);
  t.end();
});

t.test('a Later is no thenable: await does not adopt it, promiseOf does', async (t) => {
  const l = new Later<number>();
  const awaited: unknown = await (l as unknown as Promise<unknown>);
  t.equal(awaited, l, 'await gives the Later itself back');
  const p = promiseOf(l);
  l.settle(7);
  t.equal(await p, 7, 'promiseOf resolves with its value');
  const f = new Later<number>();
  const q = promiseOf(f);
  f.fail(new Error('refused'));
  await t.rejects(q, /refused/, 'and rejects with its error');
});

t.test('mapResult maps a value now, a Promise through then, a Later through map', async (t) => {
  t.equal(mapResult(2, (v) => v * 2), 4, 'a value: at once');
  const p = mapResult(Promise.resolve(3), (v) => v * 2);
  t.ok(p instanceof Promise, 'a Promise stays one');
  t.equal(await p, 6);
  const l = new Later<number>();
  const m = mapResult(l, (v) => v * 2);
  t.ok(m instanceof Later, 'a Later stays one');
  let got = 0;
  (m as Later<number>).finish(
    (v) => (got = v),
    () => undefined,
  );
  l.settle(5);
  t.equal(got, 10);
});
