/**
 * Threads, APC queues, event objects and waits (src/threads.ts), alone: real threads on a small
 * host, no session and no daemon. Waits end on events (an event set, an APC queued, a thread
 * exiting); the only timers are the waits' own, with timeouts of 0.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { EventTable, RoutineLocks, SpiThread, ThreadRegistry, issuingThread, type ThreadHost } from '../src/threads.js';

/** A host for threads: what a session gives them, with what they report kept for the test. */
class Host implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly exited: SpiThread[] = [];
  readonly failures: unknown[] = [];
  readonly mainThread: SpiThread;

  constructor(readonly autoApc = false) {
    this.mainThread = new SpiThread(this, 0x1004);
  }

  async threadExited(thread: SpiThread): Promise<void> {
    this.exited.push(thread);
  }

  routineFailed(err: unknown): void {
    this.failures.push(err);
  }
}

/** A promise and the function that resolves it. */
function signal<T = void>(): { promise: Promise<T>; fire: (v: T) => void } {
  let fire!: (v: T) => void;
  const promise = new Promise<T>((resolve) => (fire = resolve));
  return { promise, fire };
}

t.test('EventTable: distinct handles, manual reset, close', async (t) => {
  const events = new EventTable();
  const a = events.create();
  const b = events.create();
  t.not(a, b);
  t.ok(events.get(a));
  t.equal(events.get(a)?.signaled, false, 'created not signalled');
  events.get(a)?.set();
  t.equal(events.get(a)?.signaled, true);
  t.equal(events.get(a)?.signaled, true, 'manual reset: stays signalled');
  t.equal(events.close(a), true);
  t.equal(events.get(a), undefined);
  t.equal(events.close(a), false, 'closing twice fails');
  t.ok(events.get(b), 'the other event is untouched');
});

t.test('wait: an event already signalled ends the wait at once with its index', async (t) => {
  const events = new EventTable();
  const thread = new Host().mainThread;
  const [a, b] = [events.create(), events.create()];
  events.get(b)?.set();
  const objs = [events.get(a), events.get(b)].filter((e) => e !== undefined);
  t.equal(await thread.wait({ events: objs, waitAll: false, timeoutMs: P.INFINITE, alertable: false }), P.WSA_WAIT_EVENT_0 + 1);
});

t.test('wait: an event set later wakes the waiter; waitAll waits for every event', async (t) => {
  const events = new EventTable();
  const thread = new Host().mainThread;
  const a = events.get(events.create());
  const b = events.get(events.create());
  if (!a || !b) throw new Error('no event');
  let done = false;
  const all = thread.wait({ events: [a, b], waitAll: true, timeoutMs: P.INFINITE, alertable: false }).then((r) => {
    done = true;
    return r;
  });
  a.set();
  await Promise.resolve();
  t.equal(done, false, 'one of two is not enough');
  b.set();
  t.equal(await all, P.WSA_WAIT_EVENT_0);
  t.equal(a.watchers.size + b.watchers.size, 0, 'the wait leaves no watcher behind');
});

t.test('wait: the timeout ends it with WSA_WAIT_TIMEOUT; SleepEx then returns 0', async (t) => {
  const events = new EventTable();
  const thread = new Host().mainThread;
  const e = events.get(events.create());
  if (!e) throw new Error('no event');
  t.equal(await thread.wait({ events: [e], waitAll: false, timeoutMs: 0, alertable: false }), P.WSA_WAIT_TIMEOUT);
  t.equal(e.watchers.size, 0);
  t.equal(await thread.SleepEx(0, false), 0);
});

t.test('APCs run only in an alertable wait, in order, and the wait returns WAIT_IO_COMPLETION', async (t) => {
  const host = new Host();
  const thread = new SpiThread(host, 0x1008);
  const ran: number[] = [];
  t.ok(thread.queueApc(() => ran.push(1)));
  t.ok(thread.queueApc(() => ran.push(2)));
  t.equal(await thread.SleepEx(0, false), 0, 'a wait that is not alertable runs none');
  t.same(ran, []);
  t.equal(thread.queuedApcs, 2);
  t.equal(await thread.SleepEx(P.INFINITE, true), P.WSA_WAIT_IO_COMPLETION);
  t.same(ran, [1, 2]);
  t.equal(thread.queuedApcs, 0);
});

t.test('an alertable wait already under way wakes when an APC is queued', async (t) => {
  const thread = new SpiThread(new Host(), 0x1008);
  const ran = signal();
  const waiting = thread.SleepEx(P.INFINITE, true);
  thread.queueApc(() => ran.fire());
  await ran.promise;
  t.equal(await waiting, P.WSA_WAIT_IO_COMPLETION);
});

t.test('events are checked before APCs', async (t) => {
  const events = new EventTable();
  const thread = new SpiThread(new Host(), 0x1008);
  const e = events.get(events.create());
  if (!e) throw new Error('no event');
  e.set();
  let ran = false;
  thread.queueApc(() => (ran = true));
  t.equal(await thread.wait({ events: [e], waitAll: false, timeoutMs: P.INFINITE, alertable: true }), P.WSA_WAIT_EVENT_0);
  t.equal(ran, false, 'the APC waits for the next alertable wait');
});

t.test("an APC runs as a call of its thread; the main thread's run without a context", async (t) => {
  const host = new Host();
  const thread = new SpiThread(host, 0x1008);
  let seen: SpiThread | undefined;
  thread.queueApc(() => (seen = issuingThread.getStore()));
  await thread.SleepEx(P.INFINITE, true);
  t.equal(seen, thread);
  let seenMain: SpiThread | undefined = thread;
  host.mainThread.queueApc(() => (seenMain = issuingThread.getStore()));
  await host.mainThread.SleepEx(P.INFINITE, true);
  t.equal(seenMain, undefined);
});

t.test('an APC that throws is reported to the host; the next one still runs', async (t) => {
  const host = new Host();
  const thread = new SpiThread(host, 0x1008);
  const boom = new Error('boom');
  const ran: string[] = [];
  thread.queueApc(() => {
    throw boom;
  });
  thread.queueApc(async () => {
    await Promise.resolve();
    throw boom;
  });
  thread.queueApc(() => ran.push('after'));
  t.equal(await thread.SleepEx(P.INFINITE, true), P.WSA_WAIT_IO_COMPLETION);
  t.same(host.failures, [boom, boom], 'both failures, sync and async');
  t.same(ran, ['after']);
});

t.test('inside a completion routine an alertable wait runs no further APC: routines never nest', async (t) => {
  const events = new EventTable();
  const thread = new SpiThread(new Host(), 0x1008);
  const e = events.get(events.create());
  if (!e) throw new Error('no event');
  const order: string[] = [];
  thread.queueApc(async () => {
    order.push('first starts');
    // The second APC is queued; this alertable wait must end on the event, not by running it.
    const r = thread.wait({ events: [e], waitAll: false, timeoutMs: P.INFINITE, alertable: true });
    e.set();
    order.push(`inner wait: ${await r}`);
    order.push('first ends');
  });
  thread.queueApc(() => order.push('second'));
  await thread.SleepEx(P.INFINITE, true);
  t.same(order, ['first starts', `inner wait: ${P.WSA_WAIT_EVENT_0}`, 'first ends', 'second']);
});

t.test('automatic APC mode: APCs run without a wait', async (t) => {
  const thread = new SpiThread(new Host(true), 0x1008);
  const ran = signal<string>();
  thread.queueApc(() => ran.fire('ran'));
  t.equal(await ran.promise, 'ran');
  t.equal(thread.queuedApcs, 0);
});

t.test('exit: queued APCs are dropped, the host is told, later APCs and waits fail', async (t) => {
  const host = new Host();
  const thread = new SpiThread(host, 0x1008);
  let ran = false;
  thread.queueApc(() => (ran = true));
  const waiting = thread.wait({ events: [], waitAll: false, timeoutMs: P.INFINITE, alertable: true });
  // The alertable wait ran the APC already; queue another and exit before it can run.
  await waiting;
  t.equal(ran, true);
  thread.queueApc(() => t.fail('an APC of an exited thread ran'));
  await thread.exit();
  t.equal(thread.isAlive, false);
  t.equal(thread.queuedApcs, 0, 'queued APCs are dropped');
  t.same(host.exited, [thread], 'the host was told once');
  await thread.exit();
  t.equal(host.exited.length, 1, 'exiting twice tells it once');
  t.equal(thread.queueApc(() => undefined), false, 'no APC can be queued');
  t.equal(await thread.SleepEx(P.INFINITE, true), P.WSA_WAIT_FAILED);
});

t.test('exit wakes an alertable wait of the thread with WSA_WAIT_FAILED', async (t) => {
  const thread = new SpiThread(new Host(), 0x1008);
  const waiting = thread.SleepEx(P.INFINITE, true);
  await thread.exit();
  t.equal(await waiting, P.WSA_WAIT_FAILED);
});

t.test('RoutineLocks: routines of one socket never overlap; other sockets do not wait', async (t) => {
  const locks = new RoutineLocks();
  const order: string[] = [];
  const release = signal();
  const first = locks.runFast(1, {
    run: async () => {
      order.push('1a start');
      await release.promise;
      order.push('1a end');
    },
  });
  t.ok(first, 'an asynchronous routine gives a promise');
  const second = locks.runFast(1, { run: () => order.push('1b') });
  const other = locks.runFast(2, { run: () => order.push('2') });
  t.equal(other, undefined, 'a synchronous routine of a free socket runs at once, with no promise');
  t.same(order, ['1a start', '2'], 'the second routine of socket 1 waits');
  release.fire();
  await first;
  await second;
  t.same(order, ['1a start', '2', '1a end', '1b']);
});

t.test('ThreadRegistry: handles, the main thread, the issuing thread and lpThreadId', async (t) => {
  const host = new Host();
  const registry = new ThreadRegistry((handle) => new SpiThread(host, handle));
  const a = registry.create();
  t.equal(registry.main.id.ThreadHandle, 0x1004, 'the first thread made is the main thread');
  t.equal(a.id.ThreadHandle, 0x1008);
  t.same(a.id, { ThreadHandle: 0x1008, Reserved: 0 });
  t.equal(registry.get(0x1008), a);
  t.equal(registry.get(0x100c), undefined);
  t.equal(registry.issuer(), null, 'outside any thread, no issuer');
  t.equal(registry.current(), registry.main, '... and the current thread is the main thread');
  t.equal(registry.issuer(a.id), a, 'lpThreadId names the thread');
  t.equal(registry.issuer({ ThreadHandle: 0x2000, Reserved: 0 }), null, 'an unknown lpThreadId names none');
  const b = registry.create();
  t.equal(
    issuingThread.run(b, () => registry.issuer(a.id)),
    b,
    'inside a thread, the thread itself comes before lpThreadId',
  );
  const stranger = new SpiThread(host, 0x1008);
  t.equal(
    issuingThread.run(stranger, () => registry.current()),
    registry.main,
    "another registry's thread with the same handle is not this registry's",
  );
});
