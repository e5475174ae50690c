/**
 * TurnBudget (src/turn-budget.ts): a lone session gets a slice per frame, until the turn has run
 * two slices' worth; once a second one works in the same turn, the turn's time is shared; the next
 * turn starts afresh.
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

t.test('holdsBack: a message that has not started waits once others used up the turn; a small one goes once per turn', async (t) => {
  const budget = new TurnBudget(3, now);
  const a = { quickTurn: -1 };
  const b = { quickTurn: -1 };
  const big = 65536;
  t.notOk(budget.holdsBack(b, big), 'between turns nothing is held back');
  budget.begin(a);
  t.notOk(budget.holdsBack(b, big), 'while the turn has time left, nothing is held back');
  busy(4);
  t.notOk(budget.holdsBack(a, big), 'a lone session goes on: its frames get a slice each (up to two slices a turn)');
  t.ok(budget.holdsBack(b, big), "another session's large message waits for the check phase");
  t.notOk(budget.holdsBack(b, 200), 'its first small message of the turn goes at once');
  t.ok(budget.holdsBack(b, 200), 'its second waits');
  await nextTurn();
  t.notOk(budget.holdsBack(b, big), 'the next turn has room for it');
  budget.begin(b);
  busy(4);
  t.notOk(budget.holdsBack(b, big), 'and its owner, alone, goes on');
  t.notOk(budget.holdsBack(a, 200), 'a small message of another session: one go in this turn too');
});

t.test('a lone session goes on frame after frame only until the turn has run its slices twice over; the next turn starts afresh', async (t) => {
  const budget = new TurnBudget(3, now);
  const a = { quickTurn: -1 };
  budget.begin(a);
  busy(3);
  t.notOk(budget.holdsBack(a, 200), 'one slice used: the next frame goes');
  budget.begin(a);
  busy(3);
  t.notOk(budget.holdsBack(a, 200), 'two slices used, exactly: it still goes');
  busy(1);
  t.ok(budget.holdsBack(a, 200), 'past two slices: even a small frame waits for the check phase, where other sessions\' calls have been read');
  t.ok(budget.holdsBack(a, 200), 'and so does the next');
  await nextTurn();
  budget.begin(a);
  t.notOk(budget.holdsBack(a, 65536), 'a new turn: it goes again');
});

t.test('a turn that was shared leaves nothing behind: the next one starts unshared', async (t) => {
  const budget = new TurnBudget(3, now);
  const a = {};
  const b = {};
  budget.begin(a);
  budget.begin(b);
  busy(4);
  t.ok(budget.spent(now()), 'shared and spent');
  await nextTurn();
  // Checked before any begin() of the new turn (a set-aside message resumed first thing).
  const since = now();
  t.notOk(budget.spent(since), 'no time used yet in the new turn: not spent');
});

t.test('set-aside work resumes in order, one slice per check phase; whoever gets no go keeps its place', async (t) => {
  const budget = new TurnBudget(3, now);
  const log: string[] = [];
  const work = (name: string, cost: number, again: number): { takeTurn(): void } => {
    const w = {
      takeTurn: (): void => {
        log.push(name);
        busy(cost);
        if (again-- > 0) budget.defer(w);
      },
    };
    return w;
  };
  const a = work('a', 4, 1);
  const b = work('b', 1, 0);
  const c = work('c', 1, 0);
  budget.defer(a);
  budget.defer(b);
  budget.defer(c);
  t.equal(budget.waiting, 3, 'three set aside');
  await nextTurn();
  t.same(log, ['a'], 'the first goes whatever it costs; it used up the slice');
  t.equal(budget.waiting, 3, 'b and c wait, and a, deferred again, behind them');
  await nextTurn();
  t.same(log, ['a', 'b', 'c', 'a'], 'next turn: b and c first, in order, then a');
  t.equal(budget.waiting, 0, 'nothing left');
  await nextTurn();
  t.same(log, ['a', 'b', 'c', 'a'], 'and no further go');
});

t.test('inside a go the slice is shared: spent() counts from the start of the check phase', async (t) => {
  const budget = new TurnBudget(3, now);
  const seen: boolean[] = [];
  const owner = { quickTurn: -1 };
  budget.defer({
    takeTurn: (): void => {
      budget.begin(owner);
      const since = now();
      seen.push(budget.spent(since));
      busy(4);
      seen.push(budget.spent(since));
    },
  });
  await nextTurn();
  t.same(seen, [false, true], 'time left at first, then spent');
  t.notOk(budget.holdsBack(owner, 65536), 'after the check phase the turn is over');
});

t.test('a shared turn is shorter than a lone slice: a second session shrinks the turn, a lone set-aside one keeps its slice', async (t) => {
  const budget = new TurnBudget(4, now, 1);
  const a = {};
  const b = {};
  budget.begin(a);
  const first = now();
  busy(2);
  t.notOk(budget.spent(first), 'alone, the session has 4 ms per frame');
  budget.begin(b);
  t.ok(budget.spent(now()), 'once a second session works in the turn, the turn ends 1 ms after it began');
  await nextTurn();

  const gone: string[] = [];
  const work = (name: string): { takeTurn(): void } => ({
    takeTurn: (): void => {
      budget.begin(work);
      const since = now();
      busy(2);
      gone.push(`${name}:${budget.spent(since) ? 'spent' : 'time left'}`);
    },
  });
  budget.defer(work('lone'));
  await nextTurn();
  t.same(gone, ['lone:time left'], 'alone in the check phase, set-aside work gets the 4 ms slice');
  gone.length = 0;
  budget.defer(work('x'));
  budget.defer(work('y'));
  await nextTurn();
  t.same(gone, ['x:spent'], 'two of them share 1 ms: the first goes, uses it up, and the second waits');
  await nextTurn();
  t.same(gone, ['x:spent', 'y:time left'], 'the second goes in the next check phase, alone, with the lone slice');
});
