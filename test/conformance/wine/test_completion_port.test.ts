/**
 * Wine's test_completion_port (dlls/ws2_32/tests/sock.c): what completes, and what does not, for
 * overlapped sends and receives around resets and closes. Windows reports through a completion
 * port; spiwire has none, so each completion is observed through the method the SPI offers
 * instead: a completion routine, counted, and run during an alertable wait (one completion per
 * started operation, none for a call that failed at once). The AcceptEx and duplicated-handle
 * parts, and test_connect_completion_port / test_shutdown_completion_port (ConnectEx,
 * DisconnectEx), have no SPI equivalent.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, fileDaemon, type Check, fionread, nodePeerPair, openSession, ovResult, peek, reached, resetNode, setBlocking, socket, syncRecv, tcpPair, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Completion {
  error: number;
  bytes: number;
  ov: S.WSAOVERLAPPED;
}

/** A completion routine that records its calls. */
function recorder(): { routine: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE; calls: Completion[] } {
  const calls: Completion[] = [];
  return { calls, routine: (error, bytes, ov) => void calls.push({ error, bytes, ov }) };
}

/** Alertable waits until n routines ran (bounded), then one more of Wine's 200 ms for strays. */
async function completions(spi: S.SpiSession, calls: Completion[], n: number): Promise<Completion[]> {
  const deadline = Date.now() + EVENT_BOUND_MS;
  while (calls.length < n && Date.now() < deadline) await spi.SleepEx(50, true);
  await spi.SleepEx(200, true);
  return calls;
}

async function ovCall(spi: S.SpiSession, kind: 'send' | 'recv', s: number, len: number, routine: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE): Promise<{ ret: number; err: number; count: number; ov: S.WSAOVERLAPPED; buf: Uint8Array }> {
  const e = S.out(0);
  const count = S.out(0xdeadbeef);
  const ov = new S.WSAOVERLAPPED();
  const buf = new Uint8Array(len);
  const ret = kind === 'send' ? await spi.WSPSend(s, [S.wsabuf(buf)], 1, count, 0, ov, routine, null, e) : await spi.WSPRecv(s, [S.wsabuf(buf)], 1, count, S.out(0), ov, routine, null, e);
  return { ret, err: e.value, count: count.value, ov, buf };
}

/**
 * An overlapped send or receive of 1024 bytes on s that fails at once with code: its count left
 * untouched and no completion, ever (Wine: no packet on the port). Closes s.
 */
async function failsAtOnce(c: Check, spi: S.SpiSession, kind: 'send' | 'recv', s: number, code: number): Promise<void> {
  const rec = recorder();
  const r = await ovCall(spi, kind, s, 1024, rec.routine);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, code], `the ${kind === 'send' ? 'send' : 'receive'} fails at once`);
  c.equal(r.count, 0xdeadbeef, `lpNumberOf${kind === 'send' ? 'BytesSent' : 'BytesRecvd'} untouched`);
  c.equal((await completions(spi, rec.calls, 0)).length, 0, 'no completion');
  await spi.WSPCloseSocket(s, S.out(0));
}

// ---- a receive pending when the peer resets.

interface Reset {
  spi: S.SpiSession;
  server: number;
  sock: import('node:net').Socket;
}

const reset = new Scenario<Reset>(async (f: Family) => {
  const spi = await openSession(t, d);
  const { sock, server } = await nodePeerPair(t, spi, f);
  return { spi, server, sock };
});

reset.step(t, 'test_completion_port: a receive pending when the peer resets completes once, with WSAECONNRESET and 0 bytes', {}, async (c, x) => {
  const rec = recorder();
  const r = await ovCall(x.spi, 'recv', x.server, 1024, rec.routine);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'the receive is pending');
  await resetNode(x.sock);
  const calls = await completions(x.spi, rec.calls, 1);
  c.equal(calls.length, 1, 'one completion');
  c.same(calls.map((k) => [k.error, k.bytes]), [[S.WSAECONNRESET, 0]], 'with WSAECONNRESET and 0 bytes');
  await x.spi.WSPCloseSocket(x.server, S.out(0));
});

// ---- a send after the peer's reset.

/** A nonblocking server socket whose peer has just reset the connection. */
async function afterReset(f: Family): Promise<Reset> {
  const spi = await openSession(t, d);
  const { sock, server } = await nodePeerPair(t, spi, f);
  await setBlocking(spi, server, false);
  await resetNode(sock);
  return { spi, server, sock };
}

const sendAfter = new Scenario<Reset>(afterReset);

sendAfter.step(t, 'test_completion_port: an overlapped send after the peer\'s reset fails at once with WSAECONNRESET, count untouched, no completion', {}, async (c, x) => {
  // Wine waits 100 ms for the reset to arrive; here a peek that reports it.
  await reached(async () => (await peek(x.spi, x.server))[1] === S.WSAECONNRESET);
  await failsAtOnce(c, x.spi, 'send', x.server, S.WSAECONNRESET);
});

const sendAfterNoLook = new Scenario<Reset>(afterReset);

sendAfterNoLook.step(t, 'test_completion_port: an overlapped send after the peer\'s reset, with nothing in between, fails at once with WSAECONNRESET, count untouched, no completion', {}, async (c, x) => {
  // As Wine has it: no receive or peek first, so nothing but the send can learn of the reset.
  // (Wine sleeps 100 ms for the reset to arrive; on loopback it has arrived once the peer closed.)
  await failsAtOnce(c, x.spi, 'send', x.server, S.WSAECONNRESET);
});

// ---- immediate successes still complete; then a graceful close.

interface Pair {
  spi: S.SpiSession;
  src: number;
  dest: number;
}

/** A connected pair of the session's own sockets. */
async function connectedPair(f: Family): Promise<Pair> {
  const spi = await openSession(t, d);
  const { client: src, server: dest } = await tcpPair(spi, f);
  return { spi, src, dest };
}

const immediate = new Scenario<Pair>(connectedPair);

immediate.step(t, 'test_completion_port: an overlapped send that completes at once returns 0 with the count, and still completes once', {}, async (c, x) => {
  const rec = recorder();
  const r = await ovCall(x.spi, 'send', x.src, 1024, rec.routine);
  c.same([r.ret, r.count], [0, 1024], 'returns 0 with 1024 bytes');
  const calls = await completions(x.spi, rec.calls, 1);
  c.same(calls.map((k) => [k.error, k.bytes]), [[0, 1024]], 'one completion: 0, 1024 bytes');
});

immediate.step(t, 'test_completion_port: an overlapped receive with data waiting returns 0 with the count, and still completes once', {}, async (c, x) => {
  await setBlocking(x.spi, x.dest, false);
  // Wine select()s for the data first.
  await reached(async () => (await fionread(x.spi, x.dest)) >= 1024);
  const rec = recorder();
  const r = await ovCall(x.spi, 'recv', x.dest, 1024, rec.routine);
  c.same([r.ret, r.count], [0, 1024], 'returns 0 with 1024 bytes');
  const calls = await completions(x.spi, rec.calls, 1);
  c.same(calls.map((k) => [k.error, k.bytes]), [[0, 1024]], 'one completion: 0, 1024 bytes');
});

immediate.step(t, 'test_completion_port: after the peer\'s graceful close an overlapped receive returns 0 with 0 bytes, and still completes once', {}, async (c, x) => {
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  // Wine select()s for the end of the stream first.
  await reached(async () => {
    const [r, , n] = await peek(x.spi, x.dest);
    return r === 0 && n === 0;
  });
  const rec = recorder();
  const r = await ovCall(x.spi, 'recv', x.dest, 1024, rec.routine);
  c.same([r.ret, r.count], [0, 0], 'returns 0 with 0 bytes');
  const calls = await completions(x.spi, rec.calls, 1);
  c.same(calls.map((k) => [k.error, k.bytes]), [[0, 0]], 'one completion: 0, 0 bytes');
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

// Wine's own call has a zeroed OVERLAPPED and no routine: the completion is the packet it finds on
// the port; here, what WSPGetOverlappedResult reads from the OVERLAPPED.
const immediateBare = new Scenario<Pair>(connectedPair);

immediateBare.step(t, 'test_completion_port: an overlapped send with no event and no routine that completes at once returns 0 with the count; the OVERLAPPED holds the result', {}, async (c, x) => {
  const e = S.out(0);
  const count = S.out(0xdeadbeef);
  const ov = new S.WSAOVERLAPPED();
  const ret = await x.spi.WSPSend(x.src, [S.wsabuf(new Uint8Array(1024))], 1, count, 0, ov, null, null, e);
  c.same([ret, count.value], [0, 1024], 'returns 0 with 1024 bytes');
  const res = await ovResult(x.spi, x.src, ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, 1024], 'WSPGetOverlappedResult: TRUE, 1024 bytes');
  c.same([ov.Internal, ov.InternalHigh], [0, 1024], 'Internal 0, InternalHigh 1024');
  c.equal((await syncRecv(x.spi, x.dest, 2048)).n, 1024, 'the peer receives the 1024 bytes');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dest, S.out(0));
});

// ---- a receive after a reset, and on a socket that is not connected.

const recvAfter = new Scenario<Reset>(afterReset);

recvAfter.step(t, 'test_completion_port: an overlapped receive after the peer\'s reset fails at once with WSAECONNRESET, count untouched, no completion', {}, async (c, x) => {
  // Wine select()s until the reset shows.
  await reached(async () => (await peek(x.spi, x.server))[1] === S.WSAECONNRESET);
  await failsAtOnce(c, x.spi, 'recv', x.server, S.WSAECONNRESET);
});

const unconnected = new Scenario<{ spi: S.SpiSession; s: number }>(async (f: Family) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'tcp');
  await setBlocking(spi, s, false);
  return { spi, s };
});

unconnected.step(t, 'test_completion_port: an overlapped receive on a socket that is not connected fails at once with WSAENOTCONN, no completion', {}, async (c, x) => {
  await failsAtOnce(c, x.spi, 'recv', x.s, S.WSAENOTCONN);
});
