/**
 * The WSAEINPROGRESS guard (src/blocking.ts) with real threads: one blocking call per thread at a
 * time, none counted on nonblocking sockets or outside a thread. The calls are promises the test
 * settles itself, so every step is an event.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { BlockingGuard } from '../src/blocking.js';
import type { Result } from '../src/marshal.js';
import type { ReplyListener } from '../src/rpc.js';
import { RoutineLocks, SpiThread, type ThreadHost } from '../src/threads.js';

class Host implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly autoApc = false;
  readonly mainThread: SpiThread = new SpiThread(this, 0x1004);
  async threadExited(): Promise<void> {}
  routineFailed(): void {}
}

/** A call the test answers: started counts how often the guard let it run. */
function heldCall(): { call: () => Promise<Result>; answer: (r: Result) => void; fail: (e: Error) => void; started: () => number } {
  let started = 0;
  let answer!: (r: Result) => void;
  let fail!: (e: Error) => void;
  const p = new Promise<Result>((resolve, reject) => {
    answer = resolve;
    fail = reject;
  });
  return {
    call: () => {
      started++;
      return p;
    },
    answer,
    fail,
    started: () => started,
  };
}

const OK: Result = { ret: 0, errno: 0 };
const IN_PROGRESS: Result = { ret: P.SOCKET_ERROR, errno: P.WSAEINPROGRESS };

t.test('a thread with a blocking call under way gets WSAEINPROGRESS for the next, without a call', async (t) => {
  const guard = new BlockingGuard();
  const thread = new SpiThread(new Host(), 0x1008);
  const first = heldCall();
  const pending = guard.run(thread, 1, first.call);
  t.equal(thread.blockingCalls, 1);
  const second = heldCall();
  t.same(await guard.run(thread, 2, second.call), IN_PROGRESS, 'any socket: the thread is busy');
  t.equal(second.started(), 0, 'the second call never ran');
  const other = new SpiThread(new Host(), 0x100c);
  const third = heldCall();
  third.answer(OK);
  t.same(await guard.run(other, 1, third.call), OK, 'another thread is not held up');
  first.answer(OK);
  t.same(await pending, OK);
  t.equal(thread.blockingCalls, 0);
  const fourth = heldCall();
  fourth.answer(OK);
  t.same(await guard.run(thread, 1, fourth.call), OK, 'once the first returned, the thread may block again');
});

t.test('a call that fails still frees its thread', async (t) => {
  const guard = new BlockingGuard();
  const thread = new SpiThread(new Host(), 0x1008);
  const first = heldCall();
  const pending = guard.run(thread, 1, first.call);
  first.fail(new Error('protocol error'));
  await t.rejects(pending, /protocol error/);
  t.equal(thread.blockingCalls, 0);
});

t.test('calls outside a thread, and calls on a nonblocking socket, are not blocking calls', async (t) => {
  const guard = new BlockingGuard();
  const thread = new SpiThread(new Host(), 0x1008);
  const held = heldCall();
  const a = guard.run(null, 1, held.call);
  const b = guard.run(null, 1, held.call);
  t.equal(held.started(), 2, 'without a thread, nothing is counted');
  guard.setNonBlocking(5, true);
  t.ok(guard.isNonBlocking(5));
  const c = guard.run(thread, 5, held.call);
  const d = guard.run(thread, 5, held.call);
  t.equal(held.started(), 4, 'on a nonblocking socket, nothing is counted');
  t.equal(thread.blockingCalls, 0);
  held.answer(OK);
  t.same(await Promise.all([a, b, c, d]), [OK, OK, OK, OK]);
  guard.setNonBlocking(5, false);
  t.notOk(guard.isNonBlocking(5), 'FIONBIO 0 makes it blocking again');
  guard.setNonBlocking(6, true);
  guard.forget(6);
  t.notOk(guard.isNonBlocking(6), 'a closed socket is forgotten');
});

t.test('a blocking call that waits is an alertable wait: its thread\'s APCs run, and may block in turn', async (t) => {
  const guard = new BlockingGuard();
  const thread = new SpiThread(new Host(), 0x1008);
  let listener: ReplyListener | undefined;
  const first = heldCall();
  const pending = guard.run(thread, 1, (l) => {
    listener = l;
    return first.call();
  });
  const ran: string[] = [];
  let nested: Promise<Result> | null = null;
  const inner = heldCall();
  inner.answer(OK);
  thread.queueApc(() => {
    ran.push('apc');
    // On Windows the APC runs on the blocked thread itself: its own blocking call goes ahead.
    nested = guard.run(thread, 2, inner.call);
  });
  await new Promise((r) => setImmediate(r));
  t.same(ran, [], 'no APC runs before the daemon says the call waits');
  t.ok(listener?.waiting, 'the call was given a listener for spiwire.waiting');
  listener!.waiting!();
  await new Promise((r) => setImmediate(r));
  t.same(ran, ['apc'], 'the queued APC ran in the wait');
  t.same(await nested, OK, 'its blocking call was not refused with WSAEINPROGRESS');
  t.equal(inner.started(), 1);
  thread.queueApc(() => ran.push('later'));
  await new Promise((r) => setImmediate(r));
  t.same(ran, ['apc', 'later'], 'an APC queued during the wait runs too');
  const outside = heldCall();
  t.same(await guard.run(thread, 3, outside.call), IN_PROGRESS, 'a call of the thread outside its APCs is still WSAEINPROGRESS');
  first.answer(OK);
  t.same(await pending, OK);
  thread.queueApc(() => ran.push('after'));
  await new Promise((r) => setImmediate(r));
  t.same(ran, ['apc', 'later'], 'after the reply, APCs wait for an alertable wait again');
  t.equal(thread.queuedApcs, 1);
});

t.test('a blocking call returns only after the APCs its wait ran: on Windows they run on its stack', async (t) => {
  const guard = new BlockingGuard();
  const thread = new SpiThread(new Host(), 0x1008);
  let listener: ReplyListener | undefined;
  const outer = heldCall();
  let returned = false;
  const pending = guard
    .run(thread, 1, (l) => {
      listener = l;
      return outer.call();
    })
    .then((r) => {
      returned = true;
      return r;
    });
  let releaseApc!: () => void;
  const apcDone = new Promise<void>((r) => (releaseApc = r));
  // An APC whose own blocking call waits (its listener says so) until the test releases it.
  thread.queueApc(async () => {
    let innerListener: ReplyListener | undefined;
    const inner = guard.run(thread, 2, (l) => {
      innerListener = l;
      return apcDone.then(() => OK);
    });
    innerListener?.waiting?.();
    await inner;
  });
  listener!.waiting!();
  outer.answer(OK);
  await new Promise((r) => setImmediate(r));
  t.notOk(returned, 'the reply came, but the APC still runs: the call has not returned');
  t.equal(thread.blockingCalls, 2, 'the call and the APC\'s own call are both under way');
  releaseApc();
  t.same(await pending, OK, 'once the APC is done, the call returns its result');
  t.equal(thread.blockingCalls, 0);
});
