/**
 * ReadSlots (src/read-slots.ts): a few sessions at a time read in bulk; the others queue and take
 * their turn in the check phase, in order, as many at a time as make room; a few KiB a turn need
 * no slot; a holder stops for the rest of a turn once it has read its share, unless it is the
 * only session connected; waits are counted once each.
 */
import t from 'tap';
import { ReadSlots, type SlotReader } from '../src/read-slots.js';

/** A session as the slots see it: whether it is held back now, and every change it was told. */
class Reader implements SlotReader {
  held = false;
  readonly told: boolean[] = [];
  constructor(readonly name: string) {}
  holdReading(hold: boolean): void {
    this.held = hold;
    this.told.push(hold);
  }
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));
const LARGE = 64 * 1024;

function readers(slots: ReadSlots, n: number): Reader[] {
  const rs = Array.from({ length: n }, (_, i) => new Reader(`r${i}`));
  for (const r of rs) slots.join(r);
  return rs;
}

t.test('a few KiB a turn need no slot; more, read in small pieces, do', async (t) => {
  const slots = new ReadSlots(1, 1 << 20, 4096);
  const [a, b, c] = readers(slots, 3);
  t.ok(slots.noteRead(a!, LARGE), 'a takes the one slot');
  t.ok(slots.noteRead(b!, 4096), 'b brings a message of 4096 bytes: no slot needed');
  t.ok(slots.noteRead(c!, 100), 'nor for 100 bytes');
  t.equal(slots.waiting, 0);
  t.notOk(b!.held || c!.held, 'neither is held back');
  t.notOk(slots.noteRead(c!, 4000), "c's reads in this turn add up to 4100 bytes: it needs a slot, and waits");
  t.ok(c!.held);
  await nextTurn();
  t.notOk(c!.held, 'and gets the slot in the check phase');
});

t.test('when the slots are taken, the next large reader queues and goes in the check phase', async (t) => {
  const slots = new ReadSlots(2, 1 << 30, 4096);
  const [a, b, c, d] = readers(slots, 4);
  t.ok(slots.noteRead(a!, LARGE));
  t.ok(slots.noteRead(b!, LARGE));
  t.notOk(slots.noteRead(c!, LARGE), 'c finds both slots taken');
  t.ok(c!.held, 'c stops reading');
  t.notOk(slots.noteRead(d!, LARGE), 'so does d');
  t.notOk(slots.noteRead(c!, LARGE), 'a message c had already read does not change its place');
  t.same([slots.holding, slots.waiting], [2, 2]);
  await nextTurn();
  t.same([a!.held, b!.held, c!.held, d!.held], [true, true, false, false], 'the holders that read make room for the two waiting');
  t.same(c!.told, [true, false], 'c was told once to stop and once to go on');
  t.ok(slots.noteRead(c!, LARGE), 'c reads with its slot');
  t.ok(slots.noteRead(d!, LARGE));
  await nextTurn();
  t.same([a!.held, b!.held, c!.held, d!.held], [false, false, true, true], 'and the first two have their turn again');
});

t.test('with nobody waiting, holders keep reading; a holder that read nothing in a turn leaves its slot', async (t) => {
  const slots = new ReadSlots(1, 1 << 30, 4096);
  const [a, b] = readers(slots, 2);
  t.ok(slots.noteRead(a!, LARGE));
  await nextTurn();
  t.same(a!.told, [], 'nobody waits: a is never stopped');
  t.equal(slots.holding, 1, 'a keeps its slot over a turn in which it read');
  await nextTurn();
  t.equal(slots.holding, 0, 'a read nothing in the last turn: the slot is free');
  t.ok(slots.noteRead(b!, LARGE), 'b takes it without waiting');
});

t.test("a holder stops once it has read its turn's share, and goes on in the check phase", async (t) => {
  const slots = new ReadSlots(2, 3 * LARGE, 4096);
  const [a] = readers(slots, 2);
  t.ok(slots.noteRead(a!, LARGE));
  t.ok(slots.noteRead(a!, LARGE));
  t.notOk(slots.noteRead(a!, LARGE), 'the third message reaches the share');
  t.ok(a!.held, 'a stops for the rest of the turn');
  await nextTurn();
  t.notOk(a!.held, 'and reads again in the next');
  t.ok(slots.noteRead(a!, 2 * LARGE), "the count starts again: a new turn's share");
});

t.test('the only session connected is never stopped for its share', async (t) => {
  const slots = new ReadSlots(1, LARGE, 4096);
  const [a] = readers(slots, 1);
  for (let i = 0; i < 10; i++) t.ok(slots.noteRead(a!, LARGE), `message ${i}`);
  t.same(a!.told, []);
});

t.test('a session that goes away leaves its slot and its place in the queue', async (t) => {
  const slots = new ReadSlots(1, 1 << 30, 4096);
  const [a, b, c] = readers(slots, 3);
  t.ok(slots.noteRead(a!, LARGE));
  t.notOk(slots.noteRead(b!, LARGE));
  t.notOk(slots.noteRead(c!, LARGE));
  slots.forget(a!);
  slots.forget(b!);
  t.same([slots.holding, slots.waiting], [0, 1]);
  await nextTurn();
  t.notOk(c!.held, 'c, next in line, takes the slot in the check phase');
  t.same(b!.told, [true], 'b, gone, is told nothing more');
  await nextTurn();
  await nextTurn();
  t.same([slots.holding, slots.waiting], [0, 0], 'an idle daemon holds nothing and schedules nothing');
});

t.test('with many queued, every one gets a slot within as many check phases as it takes', async (t) => {
  const slots = new ReadSlots(2, 1 << 30, 4096);
  const rs = readers(slots, 9);
  const served = new Set<string>();
  for (const r of rs) if (slots.noteRead(r, LARGE)) served.add(r.name);
  for (let turn = 0; turn < 5; turn++) {
    await nextTurn();
    for (const r of rs) if (!r.held && slots.noteRead(r, LARGE)) served.add(r.name);
  }
  t.equal(served.size, 9, 'all nine read within five turns (two at a time)');
});

t.test('as many holders make room as sessions wait, the oldest first; each wait is counted once', async (t) => {
  const slots = new ReadSlots(2, 3 * LARGE, 4096);
  const [a, b, w] = readers(slots, 3);
  t.ok(slots.noteRead(a!, LARGE));
  t.ok(slots.noteRead(b!, LARGE));
  t.notOk(slots.noteRead(w!, LARGE), 'w waits');
  t.notOk(slots.noteRead(w!, LARGE), 'a read w had under way when it stopped');
  t.equal(slots.waits, 1, 'one wait so far, however many reads came after it');
  await nextTurn();
  t.same([a!.held, b!.held, w!.held], [true, false, false], 'one waited, so one holder, the oldest, made room');
  t.same(b!.told, [], 'b was never stopped');
  t.equal(slots.waits, 2);
  t.ok(slots.noteRead(b!, 2 * LARGE));
  t.notOk(slots.noteRead(b!, LARGE), 'b reads its share of the turn');
  t.notOk(slots.noteRead(b!, LARGE), 'and a read under way');
  t.equal(slots.waits, 3, 'b resting counts once');
  t.ok(slots.noteRead(w!, LARGE));
  await nextTurn();
  t.same([a!.held, b!.held, w!.held], [false, true, false], 'a, waiting, takes the slot of b, the oldest holder, which stays stopped');
  t.same(b!.told, [true], 'b was told to stop once');
  t.equal(slots.waits, 3, 'moving from resting to the queue is not a second wait');
});

t.test('a holder in the middle of a long message keeps its slot while its bytes arrive', async (t) => {
  const slots = new ReadSlots(1, 1 << 30, 4096);
  const [a, b] = readers(slots, 2);
  for (let turn = 0; turn < 3; turn++) {
    t.ok(slots.noteRead(a!, LARGE), `turn ${turn}: a reads a 64 KiB piece of one long message`);
    await nextTurn();
  }
  t.equal(slots.holding, 1, 'a still holds the slot');
  t.notOk(slots.noteRead(b!, LARGE), 'so b waits');
});

t.test('0 slots: no limit, nobody is ever stopped (--reader-slots 0)', async (t) => {
  const slots = new ReadSlots(0, LARGE, 4096);
  const rs = readers(slots, 3);
  for (let turn = 0; turn < 3; turn++) {
    for (const r of rs) for (let i = 0; i < 4; i++) t.ok(slots.noteRead(r, LARGE), `turn ${turn}: ${r.name} reads`);
    await nextTurn();
  }
  t.same(rs.map((r) => r.told), [[], [], []], 'no session was told to stop');
  t.same([slots.holding, slots.waiting, slots.waits], [0, 0, 0]);
});

t.test("a quiet session's small reads in different turns never add up to a slot, even when nobody holds one", async (t) => {
  const slots = new ReadSlots(1, 1 << 30, 4096);
  const [q] = readers(slots, 2);
  for (let turn = 0; turn < 5; turn++) {
    t.ok(slots.noteRead(q!, 3000), `turn ${turn}: 3000 bytes`);
    await nextTurn();
  }
  t.equal(slots.holding, 0, 'q never took a slot: 3000 bytes a turn is below 4096');
  t.same(q!.told, []);
});
