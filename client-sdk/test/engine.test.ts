/**
 * The session's engine (src/engine.ts) over a real connection to a stand-in daemon on loopback
 * (helpers/fake-daemon.ts): what it sends, what it makes of the replies, and the state it keeps
 * (operations, WSPEventSelect, nonblocking sockets, threads). The test plays the daemon; every
 * wait is on a request arriving or a call returning.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { SessionEngine } from '../src/engine.js';
import { WSAOVERLAPPED } from '../src/overlapped.js';
import { RpcConnection, SpiwireProtocolError } from '../src/rpc.js';
import { RoutineLocks, SpiThread, issuingThread, type ThreadHost } from '../src/threads.js';
import { fakeDaemon, type Peer } from './helpers/fake-daemon.js';

class Host implements ThreadHost {
  readonly locks = new RoutineLocks();
  readonly autoApc = false;
  readonly mainThread: SpiThread = new SpiThread(this, 0);
  async threadExited(): Promise<void> {}
  routineFailed(): void {}
}

async function setup(t: Test): Promise<{ engine: SessionEngine<SpiThread>; peer: Peer }> {
  const d = await fakeDaemon(t);
  const [rpc, peer] = await Promise.all([RpcConnection.open(d.url), d.peer()]);
  const host = new Host();
  const engine = new SessionEngine(rpc, (handle) => new SpiThread(host, handle));
  rpc.onNotification = (method, params) => engine.onNotification(method, params);
  t.teardown(() => rpc.terminate());
  return { engine, peer };
}

const PENDING = { ret: P.SOCKET_ERROR, errno: P.WSA_IO_PENDING };

t.test('an SPI reply without ret and errno fails its call with SpiwireProtocolError', async (t) => {
  const { engine, peer } = await setup(t);
  const call = engine.call('WSPListen', { s: 1, backlog: 1 });
  const req = await peer.request();
  peer.send({ jsonrpc: '2.0', id: req.id, result: { bytesSent: 3 } });
  await t.rejects(call, SpiwireProtocolError);
  const next = engine.call('WSPListen', { s: 1, backlog: 1 });
  peer.reply(await peer.request());
  t.same(await next, { ret: 0, errno: 0 }, 'the session goes on');
});

t.test('a lost connection answers WSAENETDOWN, to calls under way and to new ones', async (t) => {
  const { engine, peer } = await setup(t);
  const call = engine.call('WSPListen', { s: 1, backlog: 1 });
  await peer.request();
  peer.ws.terminate();
  const netDown = { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN };
  t.same(await call, netDown);
  t.same(await engine.call('WSPListen', { s: 1, backlog: 1 }), netDown);
});

t.test('an overlapped call carries its op and the issuing thread; the routine goes to the thread lpThreadId names', async (t) => {
  const { engine, peer } = await setup(t);
  const worker = engine.threads.create();
  const ov = new WSAOVERLAPPED();
  const routineRan: number[] = [];
  const call = issuingThread.run(worker, () => engine.overlapped('WSPSend', { s: 4, buffers: [], flags: 0 }, { s: 4, ov, routine: (e) => void routineRan.push(e), lpThreadId: engine.threads.main.id }));
  const req = await peer.request();
  const overlapped = req.params['overlapped'];
  t.same(overlapped, { op: 1, thread: worker.id.ThreadHandle }, 'op 1, issued by the worker');
  peer.reply(req, PENDING);
  t.same(await call, PENDING);
  peer.send({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 4, error: 0, bytes: 0, flags: 0 } });
  await engine.threads.main.SleepEx(P.INFINITE, true);
  t.same(routineRan, [0], 'the routine ran on the main thread, which lpThreadId named');
  t.equal(worker.queuedApcs, 0);
});

t.test('a routine for a thread that exited fails with WSAEINVAL, and nothing is sent', async (t) => {
  const { engine, peer } = await setup(t);
  const worker = engine.threads.create();
  await worker.exit();
  const r = await engine.overlapped('WSPSend', { s: 4, buffers: [], flags: 0 }, { s: 4, ov: new WSAOVERLAPPED(), routine: () => undefined, lpThreadId: worker.id });
  t.same(r, { ret: P.SOCKET_ERROR, errno: P.WSAEINVAL });
  t.equal(engine.ops.size, 0);
  // The next call is the first request the daemon sees.
  const next = engine.call('WSPListen', { s: 4, backlog: 1 });
  const req = await peer.request();
  t.equal(req.method, 'WSPListen', 'the overlapped call was never sent');
  peer.reply(req);
  await next;
});

t.test('close: answered operations complete with WSA_OPERATION_ABORTED', async (t) => {
  const { engine, peer } = await setup(t);
  const ov = new WSAOVERLAPPED();
  const call = engine.overlapped('WSPRecv', { s: 4, lengths: [4], flags: 0 }, { s: 4, ov, routine: null, lpThreadId: null });
  peer.reply(await peer.request(), PENDING);
  await call;
  await engine.close();
  t.equal(ov.OffsetHigh, P.WSA_OPERATION_ABORTED);
  t.equal(engine.ops.size, 0);
});

t.test('a thread has one blocking call at a time; the second is refused without being sent', async (t) => {
  const { engine, peer } = await setup(t);
  const worker = engine.threads.create();
  const first = issuingThread.run(worker, () => engine.blocking('WSPRecv', { s: 2, lengths: [1], flags: 0 }, 2, null));
  const firstReq = await peer.request();
  t.same(await issuingThread.run(worker, () => engine.blocking('WSPConnect', { s: 3 }, 3, null)), { ret: P.SOCKET_ERROR, errno: P.WSAEINPROGRESS });
  t.same(await engine.blocking('WSPConnect', { s: 3 }, 3, worker.id), { ret: P.SOCKET_ERROR, errno: P.WSAEINPROGRESS }, 'lpThreadId names the busy thread too');
  peer.reply(firstReq);
  t.same(await first, { ret: 0, errno: 0 });
  t.same(
    peer.frames.flat().map((r) => r.method),
    ['WSPRecv'],
    'only the first call was sent',
  );
});

t.test('FIONBIO and WSPEventSelect make a socket nonblocking; an accepted socket inherits both', async (t) => {
  const { engine, peer } = await setup(t);
  const h = engine.events.create();
  const one = new Uint8Array([1, 0, 0, 0]);
  const ioctl = engine.ioctl({ s: 5, code: P.FIONBIO, input: one, outputLength: 0 }, null);
  peer.reply(await peer.request());
  await ioctl;
  t.ok(engine.guard.isNonBlocking(5), 'FIONBIO 1');
  const select = engine.eventSelect(6, h, P.FD_ACCEPT | P.FD_READ);
  t.same(engine.selections.selectionOf(6), { hEvent: h, events: P.FD_ACCEPT | P.FD_READ }, 'in place before the reply');
  peer.reply(await peer.request());
  await select;
  t.ok(engine.guard.isNonBlocking(6), 'WSPEventSelect');
  const accept = engine.accept(6);
  peer.reply(await peer.request(), { ret: 9, addr: { family: P.AF_INET, address: '127.0.0.1', port: 1 } });
  const inherited = await peer.request();
  t.same([inherited.method, inherited.params], ['WSPEventSelect', { s: 9, events: P.FD_ACCEPT | P.FD_READ }], 'the accepted socket is selected as the listener is');
  peer.reply(inherited);
  t.equal((await accept).ret, 9);
  t.ok(engine.guard.isNonBlocking(9));
  t.same(engine.selections.selectionOf(9), { hEvent: h, events: P.FD_ACCEPT | P.FD_READ });
  const close = engine.closeSocket(9);
  peer.reply(await peer.request());
  await close;
  t.notOk(engine.guard.isNonBlocking(9), 'closing forgets the mode...');
  t.equal(engine.selections.selectionOf(9), undefined, '... and the selection');
});

t.test('a WSPEventSelect the daemon refuses leaves the previous selection in place', async (t) => {
  const { engine, peer } = await setup(t);
  const h = engine.events.create();
  const first = engine.eventSelect(6, h, P.FD_READ);
  peer.reply(await peer.request());
  await first;
  const refused = engine.eventSelect(6, h, P.FD_WRITE);
  const req = await peer.request();
  peer.send({ jsonrpc: '2.0', id: req.id, error: { code: P.INVALID_PARAMS, message: 'no' } });
  await t.rejects(refused, SpiwireProtocolError);
  t.same(engine.selections.selectionOf(6), { hEvent: h, events: P.FD_READ });
  const failed = engine.eventSelect(6, h, P.FD_CLOSE);
  peer.reply(await peer.request(), { ret: P.SOCKET_ERROR, errno: P.WSAENOTSOCK });
  t.same(await failed, { ret: P.SOCKET_ERROR, errno: P.WSAENOTSOCK });
  t.same(engine.selections.selectionOf(6), { hEvent: h, events: P.FD_READ }, 'and so does a call that fails');
});

t.test('WSPEnumNetworkEvents: a round trip first, so events sent before its reply are counted', async (t) => {
  const { engine, peer } = await setup(t);
  const h = engine.events.create();
  const select = engine.eventSelect(6, h, P.FD_READ | P.FD_CLOSE);
  peer.reply(await peer.request());
  await select;
  const enumerated = engine.enumNetworkEvents(6);
  const req = await peer.request();
  t.same([req.method, req.params], ['WSPGetSockOpt', { s: 6, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }]);
  peer.send({ jsonrpc: '2.0', method: 'spiwire.networkEvents', params: { s: 6, events: P.FD_CLOSE, errors: { FD_CLOSE: P.WSAECONNRESET } } });
  peer.reply(req, { optval: new Uint8Array(4), optlen: 4 });
  const { r, recorded } = await enumerated;
  t.equal(r.ret, 0);
  t.equal(recorded.lNetworkEvents, P.FD_CLOSE);
  t.equal(recorded.iErrorCode[P.FD_CLOSE_BIT], P.WSAECONNRESET);
  t.equal(engine.events.get(h)?.signaled, true, 'the notification set the event');
});

t.test('maxPayload leaves room for the header in the daemon\'s frame limit', async (t) => {
  const { engine } = await setup(t);
  t.equal(engine.maxPayload(), engine.rpc.welcome.limits.maxFrameBytes - 64 * 1024);
});
