/**
 * TurnBudget (src/turn-budget.ts): a lone session gets a slice per frame however long the turn;
 * once a second one works in the same turn, the turn's time is shared; the next turn starts afresh.
 */
import t from 'tap';
import { TurnBudget } from '../src/turn-budget.js';

/** A clock the test moves by hand: the checks do not depend on how busy the machine is. */
let clock = 0;
const now = (): number => clock;
function busy(ms: number): void {
  clock += ms;
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

t.test('a lone session: each frame gets its own slice, however long the turn has run', async (t) => {
  const budget = new TurnBudget(3, now);
  const a = {};
  budget.begin(a);
  const first = now();
  t.notOk(budget.spent(first), 'time left at the start');
  busy(4);
  t.ok(budget.spent(first), 'the first frame has used its slice');
  budget.begin(a);
  const second = now();
  t.notOk(budget.spent(second), 'a second frame of the same session in the same turn starts a fresh slice');
});

t.test('two sessions in one turn share its time; the next turn starts afresh', async (t) => {
  const budget = new TurnBudget(3, now);
  const a = {};
  const b = {};
  budget.begin(a);
  busy(4);
  budget.begin(b);
  t.ok(budget.spent(now()), "the second session finds the turn's time spent");
  budget.begin(a);
  t.ok(budget.spent(now()), 'and so does the first, for its next frame');
  await nextTurn();
  budget.begin(b);
  t.notOk(budget.spent(now()), 'after the check phase: a new turn, time left');
  budget.begin(a);
  t.notOk(budget.spent(now()), 'shared, but the new turn has time left');
  busy(4);
  t.ok(budget.spent(now()), 'until it is used up');
});
