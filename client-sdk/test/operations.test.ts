/**
 * The overlapped operation table (src/operations.ts) with real event objects and threads. The
 * table sends each operation's call through a function it is given; here that function hands the
 * call to the test, which answers it (reply, completion at once, failure, protocol error) as the
 * daemon would. Every step is an event the test causes.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import type { Result } from '../src/marshal.js';
import { OperationTable, type SendOperation } from '../src/operations.js';
import { WSAOVERLAPPED } from '../src/overlapped.js';
import { EventTable, RoutineLocks, SpiThread, type ThreadHost } from '../src/threads.js';
import { out } from '../src/types.js';

class Host implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly autoApc = false;
  readonly mainThread: SpiThread = new SpiThread(this, 0x1004);
  async threadExited(): Promise<void> {}
  routineFailed(): void {}
}

/** One call the table sent: its op id, and the daemon's side of it. */
interface SentCall {
  op: number;
  /** The reply as the connection reads it: onReply first, then the call's promise. */
  reply(r: Result): void;
  reject(err: Error): void;
}

function daemonSide(): { send: SendOperation; calls: SentCall[] } {
  const calls: SentCall[] = [];
  const send: SendOperation = (op, onReply) =>
    new Promise<Result>((resolve, reject) => {
      calls.push({
        op,
        reply: (r) => {
          onReply(r);
          resolve(r);
        },
        reject,
      });
    });
  return { send, calls };
}

const PENDING: Result = { ret: P.SOCKET_ERROR, errno: P.WSA_IO_PENDING };

t.test('an operation pending until its completion: the WSAOVERLAPPED, the receive buffers, lpFlags, the event', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const h = events.create();
  events.get(h)?.set();
  const ov = new WSAOVERLAPPED(h);
  ov.OffsetHigh = 99;
  const targets = [new Uint8Array(2), new Uint8Array(4)];
  const flags = out(0);
  const seen: string[] = [];
  const result = table.start({ ov, routine: null, targets, flagsOut: flags, onComplete: (e, b) => seen.push(`onComplete ${e} ${b} event ${events.get(h)?.signaled}`) }, send);
  t.ok(ov.pending, 'pending from the start');
  t.same([ov.InternalHigh, ov.Offset, ov.OffsetHigh], [0, 0, 0], 'the rest of the WSAOVERLAPPED is cleared');
  t.equal(events.get(h)?.signaled, false, 'its event is reset');
  t.equal(table.size, 1);
  const call = calls[0]!;
  call.reply(PENDING);
  t.same(await result, PENDING);
  t.equal(table.size, 1, 'still pending after WSA_IO_PENDING');
  table.onCompletion({ op: call.op, s: 1, error: 0, bytes: 5, flags: P.MSG_PARTIAL, data: Buffer.from('hello') });
  t.notOk(ov.pending);
  t.same([ov.InternalHigh, ov.Offset, ov.OffsetHigh], [5, P.MSG_PARTIAL, 0]);
  t.same(
    targets.map((x) => Buffer.from(x).toString()),
    ['he', 'llo\0'],
    'the bytes are scattered over the buffers',
  );
  t.equal(flags.value, P.MSG_PARTIAL, 'lpFlags is updated');
  t.same(seen, ['onComplete 0 5 event false'], 'onComplete runs before the event is set');
  t.equal(events.get(h)?.signaled, true);
  t.equal(table.size, 0);
  events.get(h)!.signaled = false;
  table.onCompletion({ op: call.op, s: 1, error: 0, bytes: 9, flags: 0 });
  t.equal(ov.InternalHigh, 5, 'a second completion for the same op changes nothing');
  t.equal(events.get(h)?.signaled, false);
});

t.test('a call that fails at once leaves no completion, ever', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const h = events.create();
  const ov = new WSAOVERLAPPED(h);
  const result = table.start({ ov, routine: null }, send);
  const failed = { ret: P.SOCKET_ERROR, errno: P.WSAECONNRESET };
  calls[0]!.reply(failed);
  t.same(await result, failed);
  t.equal(table.size, 0);
  t.notOk(ov.pending);
  t.equal(ov.OffsetHigh, P.WSAECONNRESET, 'WSPGetOverlappedResult would report the call\'s error');
  table.onCompletion({ op: calls[0]!.op, s: 1, error: 0, bytes: 1, flags: 0 });
  t.equal(events.get(h)?.signaled, false, 'a stray completion signals nothing');
});

t.test('a reply that carries the completion stands for it; a receive\'s bytes are in place first', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const h = events.create();
  const ov = new WSAOVERLAPPED(h);
  const target = new Uint8Array(3);
  let bytesAtCompletion = '';
  const result = table.start({ ov, routine: null, targets: [target], onComplete: () => (bytesAtCompletion = Buffer.from(target).toString()) }, send);
  calls[0]!.reply({ ret: 0, errno: 0, data: Buffer.from('abc'), bytesRecvd: 3, completion: { error: 0, bytes: 3, flags: 0 } });
  t.equal(bytesAtCompletion, 'abc', 'the bytes were in the buffer when the completion ran');
  t.equal(events.get(h)?.signaled, true);
  t.notOk(ov.pending);
  t.equal(table.size, 0);
  t.equal((await result).ret, 0);
});

t.test('op ids are distinct', async (t) => {
  const table = new OperationTable(new EventTable());
  const { send, calls } = daemonSide();
  for (let i = 0; i < 5; i++) void table.start({ ov: new WSAOVERLAPPED(), routine: null }, send);
  t.equal(new Set(calls.map((c) => c.op)).size, 5);
  t.equal(table.size, 5);
});

t.test('a completion routine is queued to its thread, with its socket, and runs at its alertable wait', async (t) => {
  const table = new OperationTable(new EventTable());
  const { send, calls } = daemonSide();
  const thread = new SpiThread(new Host(), 0x1008);
  const ov = new WSAOVERLAPPED();
  const ran: Array<[number, number, WSAOVERLAPPED, number]> = [];
  void table.start({ ov, routine: { run: (e, b, o, f) => void ran.push([e, b, o, f]), thread, s: 7 } }, send);
  calls[0]!.reply(PENDING);
  table.onCompletion({ op: calls[0]!.op, s: 7, error: P.WSAECONNABORTED, bytes: 0, flags: 0 });
  t.equal(thread.queuedApcs, 1, 'queued, not run');
  t.same(ran, []);
  t.equal(await thread.SleepEx(P.INFINITE, true), P.WSA_WAIT_IO_COMPLETION);
  t.equal(ran.length, 1);
  t.same([ran[0]![0], ran[0]![1], ran[0]![3]], [P.WSAECONNABORTED, 0, 0]);
  t.equal(ran[0]![2], ov, 'the routine gets the caller\'s WSAOVERLAPPED');
});

t.test('abandon: answered operations complete with the code; a call never answered fails and never completes', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const [ha, hb] = [events.create(), events.create()];
  const answered = new WSAOVERLAPPED(ha);
  const unanswered = new WSAOVERLAPPED(hb);
  const a = table.start({ ov: answered, routine: null }, send);
  const b = table.start({ ov: unanswered, routine: null }, send);
  calls[0]!.reply(PENDING);
  await a;
  // The connection drops: the table is told first, then the unanswered call fails with WSAENETDOWN.
  table.abandon(P.WSAENETDOWN);
  t.equal(answered.OffsetHigh, P.WSAENETDOWN);
  t.equal(events.get(ha)?.signaled, true, 'the answered operation completed');
  t.equal(events.get(hb)?.signaled, false, 'the unanswered one did not');
  calls[1]!.reply({ ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN });
  t.same(await b, { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN });
  t.equal(table.size, 0, 'nothing is left');
  t.notOk(unanswered.pending);
  t.equal(unanswered.OffsetHigh, P.WSAENETDOWN);
  t.equal(events.get(hb)?.signaled, false, 'and its event is never set');
});

t.test('a call rejected without a result is forgotten: not pending, WSAENETDOWN, no completion', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const h = events.create();
  const ov = new WSAOVERLAPPED(h);
  const result = table.start({ ov, routine: null }, send);
  const refused = new Error('INVALID_PARAMS');
  calls[0]!.reject(refused);
  await t.rejects(result, refused, 'the call rejects as it was rejected');
  t.equal(table.size, 0);
  t.notOk(ov.pending);
  t.equal(ov.OffsetHigh, P.WSAENETDOWN);
  table.abandon(P.WSAENETDOWN);
  t.equal(events.get(h)?.signaled, false);
});

t.test('a send that throws leaves nothing behind', async (t) => {
  const table = new OperationTable(new EventTable());
  const ov = new WSAOVERLAPPED();
  const boom = new Error('cannot encode');
  t.throws(
    () =>
      table.start({ ov, routine: null }, () => {
        throw boom;
      }),
    boom,
  );
  t.equal(table.size, 0);
  t.notOk(ov.pending);
});

t.test('malformed completions are ignored', async (t) => {
  const events = new EventTable();
  const table = new OperationTable(events);
  const { send, calls } = daemonSide();
  const h = events.create();
  void table.start({ ov: new WSAOVERLAPPED(h), routine: null }, send);
  calls[0]!.reply(PENDING);
  table.onCompletion({ op: calls[0]!.op, error: 0, bytes: -1, flags: 0 });
  table.onCompletion({ op: String(calls[0]!.op), error: 0, bytes: 1, flags: 0 });
  t.equal(table.size, 1);
  t.equal(events.get(h)?.signaled, false);
});
