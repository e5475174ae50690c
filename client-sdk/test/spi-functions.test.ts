/**
 * The SPI surface (src/spi-functions.ts, through SpiSession) against a stand-in daemon on loopback
 * (helpers/fake-daemon.ts). Checks of the caller's own memory fail before anything is sent; the
 * calls that pass them go to the daemon as the wire protocol says, and their out parameters are
 * written from the reply. The daemon's own decisions are the e2e tests' business.
 */
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { FROM_PROTOCOL_INFO, SpiSession } from '../src/spi-session.js';
import type { WSANETWORKEVENTS } from '../src/event-select.js';
import { WSAOVERLAPPED } from '../src/overlapped.js';
import { out, wsabuf, type Out, type SockAddr } from '../src/types.js';
import { fakeDaemon, LIMITS, welcome, type Peer } from './helpers/fake-daemon.js';

async function setup(t: Test, first?: Uint8Array): Promise<{ spi: SpiSession; peer: Peer }> {
  const d = await fakeDaemon(t, first);
  const [spi, peer] = await Promise.all([SpiSession.connect(d.url), d.peer()]);
  t.teardown(() => spi.connection.terminate());
  return { spi, peer };
}

/** Calls from plain JavaScript, which may pass anything: the SDK checks at run time what the types promise. */
function untyped(fn: (...args: never[]) => unknown, self: SpiSession, ...args: unknown[]): Promise<number> {
  return Reflect.apply(fn, self, args);
}

t.test("checks of the caller's own memory fail at once, and send nothing", async (t) => {
  // 10 bytes of payload is the most one message may carry with this daemon; a send of more is no
  // error but a stream (proto/README.md section 9), so none of the cases below sends that much.
  const { spi, peer } = await setup(t, welcome({ limits: { ...LIMITS, maxFrameBytes: 64 * 1024 + 10 } }));
  const buf = new Uint8Array(4);
  const ev = spi.WSACreateEvent();
  const addr: SockAddr = { family: P.AF_INET, address: '127.0.0.1', port: 1 };
  const e = out(0);
  const cases: Array<[string, () => Promise<number>, number, number]> = [
    ['WSPSend: a handle that is not a u32', () => spi.WSPSend(-1, [wsabuf(buf)], 1, out(0), 0, null, null, null, e), P.SOCKET_ERROR, P.WSAENOTSOCK],
    ['WSPSend: a count beyond the array', () => spi.WSPSend(1, [wsabuf(buf)], 2, out(0), 0, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSend: no byte count and no OVERLAPPED', () => spi.WSPSend(1, [wsabuf(buf)], 1, null, 0, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSend: flags that are not a DWORD', () => spi.WSPSend(1, [wsabuf(buf)], 1, out(0), -1, null, null, null, e), P.SOCKET_ERROR, P.WSAEINVAL],
    ['WSPSend: an OVERLAPPED that is not one', () => untyped(spi.WSPSend, spi, 1, [wsabuf(buf)], 1, out(0), 0, {}, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSend: a routine that is not a function', () => untyped(spi.WSPSend, spi, 1, [wsabuf(buf)], 1, out(0), 0, new WSAOVERLAPPED(), 5, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSend: an lpThreadId without a ThreadHandle', () => untyped(spi.WSPSend, spi, 1, [wsabuf(buf)], 1, out(0), 0, new WSAOVERLAPPED(), null, {}, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSend: an hEvent that is not an event', () => spi.WSPSend(1, [wsabuf(buf)], 1, out(0), 0, new WSAOVERLAPPED(0x7777), null, null, e), P.SOCKET_ERROR, P.WSA_INVALID_HANDLE],
    ['WSPSendTo: lpTo that is not a sockaddr', () => untyped(spi.WSPSendTo, spi, 1, [wsabuf(buf)], 1, out(0), 0, { port: 1 }, 16, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPRecv: no lpFlags', () => spi.WSPRecv(1, [wsabuf(buf)], 1, out(0), null, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPRecv: len beyond its buffer', () => spi.WSPRecv(1, [{ len: 5, buf }], 1, out(0), out(0), null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPRecvFrom: lpFrom without lpFromlen', () => spi.WSPRecvFrom(1, [wsabuf(buf)], 1, out(0), out(0), { ...addr }, null, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPIoctl: cbInBuffer beyond the buffer', () => spi.WSPIoctl(1, P.FIONBIO, buf, 5, null, 0, out(0), null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPIoctl: no lpcbBytesReturned and no OVERLAPPED', () => spi.WSPIoctl(1, P.FIONREAD, null, 0, buf, 4, null, null, null, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSetSockOpt: optlen beyond optval', () => spi.WSPSetSockOpt(1, P.SOL_SOCKET, P.SO_SNDBUF, buf, 5, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPGetSockOpt: *optlen beyond optval', () => spi.WSPGetSockOpt(1, P.SOL_SOCKET, P.SO_SNDBUF, buf, out(5), e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPBind: a name that is not a sockaddr', () => untyped(spi.WSPBind, spi, 1, '127.0.0.1', 16, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPSocket: an af that is not an int', () => spi.WSPSocket(1.5, P.SOCK_STREAM, 0, null, 0, 0, e), P.INVALID_SOCKET, P.WSAEINVAL],
    ['WSPAccept: addr without addrlen', () => spi.WSPAccept(1, { ...addr }, null, null, 0, e), P.INVALID_SOCKET, P.WSAEFAULT],
    ['WSPConnect: QOS', () => spi.WSPConnect(1, addr, 16, null, null, {}, null, e), P.SOCKET_ERROR, P.WSAEOPNOTSUPP],
    ['WSPEventSelect: events without an event object', () => spi.WSPEventSelect(1, 0x7777, P.FD_READ, e), P.SOCKET_ERROR, P.WSAEINVAL],
    ['WSPEnumNetworkEvents: no WSANETWORKEVENTS', () => spi.WSPEnumNetworkEvents(1, ev, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    ['WSPGetSockName: no namelen', () => spi.WSPGetSockName(1, { ...addr }, null, e), P.SOCKET_ERROR, P.WSAEFAULT],
    // The handle is checked first (proto/README.md section 9, rule 1); WSAEFAULT is checked below, on a handle that passes.
    ['WSPGetOverlappedResult: not an OVERLAPPED, on a handle that is no socket', () => untyped(spi.WSPGetOverlappedResult, spi, 1, {}, out(0), false, out(0), e), P.FALSE, P.WSAENOTSOCK],
  ];
  for (const [what, call, ret, errno] of cases) {
    e.value = 0;
    t.same([await call(), e.value], [ret, errno], what);
  }
  await t.rejects(untyped(spi.WSPSend, spi, 1, [wsabuf(buf)], 1, out(0), 0, null, null, null, null), TypeError, 'no lpErrno: a programming error');
  // Nothing of the above reached the daemon: the next call is the first request it sees.
  const sentinel = spi.WSPListen(1, 5, e);
  const req = await peer.request();
  t.same([req.method, req.params], ['WSPListen', { s: 1, backlog: 5 }], 'the first request the daemon saw');
  peer.reply(req);
  t.equal(await sentinel, 0);
});

t.test('WSPSend and WSPSendTo: the gathered buffers go as one call; the byte count comes back', async (t) => {
  const { spi, peer } = await setup(t);
  const e = out(0);
  const sent = out(0);
  const call = spi.WSPSend(3, [wsabuf('abc', 2), wsabuf('de')], 2, sent, 0, null, null, null, e);
  const req = await peer.request();
  t.equal(req.method, 'WSPSend');
  const buffers = req.params['buffers'];
  t.same(Array.isArray(buffers) ? buffers.map((b) => Buffer.from(b).toString()) : null, ['ab', 'de']);
  peer.reply(req, { bytesSent: 4 });
  t.same([await call, sent.value, e.value], [0, 4, 0], 'lpErrno is left alone on success');
  const to: SockAddr = { family: P.AF_INET6, address: '::1', port: 9, flowinfo: 0, scopeId: 0 };
  const call2 = spi.WSPSendTo(3, [wsabuf('x')], 1, sent, 0, to, 28, null, null, null, e);
  const req2 = await peer.request();
  t.same([req2.params['to'], req2.params['tolen']], [to, 28]);
  peer.reply(req2, { ret: P.SOCKET_ERROR, errno: P.WSAEWOULDBLOCK });
  t.same([await call2, e.value], [P.SOCKET_ERROR, P.WSAEWOULDBLOCK]);
});

t.test('WSPRecvFrom: the bytes scattered, the count, the flags and the source address written back', async (t) => {
  const { spi, peer } = await setup(t);
  const e = out(0);
  const a = new Uint8Array(2);
  const b = new Uint8Array(8);
  const got = out(0);
  const flags = out(0);
  const from: SockAddr = { family: 0, address: '', port: 0 };
  const fromlen = out(28);
  const call = spi.WSPRecvFrom(3, [wsabuf(a), wsabuf(b)], 2, got, flags, from, fromlen, null, null, null, e);
  const req = await peer.request();
  t.same(req.params, { s: 3, lengths: [2, 8], flags: 0 });
  peer.reply(req, { data: Buffer.from('hello'), bytesRecvd: 5, flags: P.MSG_PARTIAL, from: { family: P.AF_INET, address: '10.0.0.1', port: 53 } });
  t.equal(await call, 0);
  t.same([Buffer.from(a).toString(), Buffer.from(b.subarray(0, 3)).toString()], ['he', 'llo']);
  t.same([got.value, flags.value, fromlen.value], [5, P.MSG_PARTIAL, P.SOCKADDR_IN_SIZE]);
  t.same(from, { family: P.AF_INET, address: '10.0.0.1', port: 53 });
  // A source address larger than the caller's buffer: WSAEFAULT.
  const small = out(16);
  const call2 = spi.WSPRecvFrom(3, [wsabuf(b)], 1, got, out(0), { ...from }, small, null, null, null, e);
  peer.reply(await peer.request(), { data: Buffer.from('x'), bytesRecvd: 1, flags: 0, from: { family: P.AF_INET6, address: '::1', port: 53 } });
  t.same([await call2, e.value], [P.SOCKET_ERROR, P.WSAEFAULT]);
});

t.test('WSPGetSockName, WSPGetSockOpt, WSPIoctl and WSPSocket write their out values from the reply', async (t) => {
  const { spi, peer } = await setup(t);
  const e = out(0);
  const name: SockAddr = { family: 0, address: '', port: 0 };
  const namelen = out(28);
  const gsn = spi.WSPGetSockName(3, name, namelen, e);
  const r1 = await peer.request();
  t.same(r1.params, { s: 3, namelen: 28 });
  peer.reply(r1, { name: { family: P.AF_INET6, address: '::1', port: 80 }, namelen: 28 });
  t.equal(await gsn, 0);
  t.same([name, namelen.value], [{ family: P.AF_INET6, address: '::1', port: 80, flowinfo: 0, scopeId: 0 }, 28]);

  const optval = new Uint8Array(8);
  const optlen = out(8);
  const gso = spi.WSPGetSockOpt(3, P.SOL_SOCKET, P.SO_SNDBUF, optval, optlen, e);
  peer.reply(await peer.request(), { optval: new Uint8Array([1, 2, 3, 4]), optlen: 4 });
  t.equal(await gso, 0);
  t.same([[...optval.subarray(0, 4)], optlen.value], [[1, 2, 3, 4], 4]);

  const outBuf = new Uint8Array(4);
  const returned = out(0);
  const ioctl = spi.WSPIoctl(3, P.FIONREAD, null, 0, outBuf, 4, returned, null, null, null, e);
  const r3 = await peer.request();
  t.same(r3.params['outputLength'], 4);
  peer.reply(r3, { output: new Uint8Array([7, 0, 0, 0]), bytesReturned: 4 });
  t.equal(await ioctl, 0);
  t.same([outBuf[0], returned.value], [7, 4]);

  const sock = spi.WSPSocket(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, { iAddressFamily: P.AF_INET6, iSocketType: P.SOCK_DGRAM, iProtocol: P.IPPROTO_UDP }, 0, P.WSA_FLAG_OVERLAPPED, e);
  const r4 = await peer.request();
  t.same(r4.params, { af: P.AF_INET6, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags: P.WSA_FLAG_OVERLAPPED }, 'FROM_PROTOCOL_INFO takes the values from lpProtocolInfo');
  peer.reply(r4, { ret: 12 });
  t.equal(await sock, 12);
});

t.test('WSPAccept: the condition may reject the connection, which is then closed', async (t) => {
  const { spi, peer } = await setup(t);
  const e = out(0);
  const peerAddr = { family: P.AF_INET, address: '127.0.0.1', port: 4000 };
  const seen: Array<[SockAddr, number]> = [];
  const rejected = spi.WSPAccept(3, null, null, (caller, data) => (seen.push([caller, data]), P.CF_REJECT), 42, e);
  peer.reply(await peer.request(), { ret: 8, addr: peerAddr });
  const close = await peer.request();
  t.same([close.method, close.params], ['WSPCloseSocket', { s: 8 }], 'the rejected connection is closed');
  peer.reply(close);
  t.same([await rejected, e.value], [P.INVALID_SOCKET, P.WSAECONNREFUSED]);
  t.same(seen, [[peerAddr, 42]]);

  const addr: SockAddr = { family: 0, address: '', port: 0 };
  const addrlen = out(16);
  const accepted = spi.WSPAccept(3, addr, addrlen, null, 0, e);
  peer.reply(await peer.request(), { ret: 9, addr: peerAddr });
  t.equal(await accepted, 9);
  t.same([addr, addrlen.value], [peerAddr, 16]);
});

t.test('an overlapped call made on a thread object names that thread; thread functions are not enumerable', async (t) => {
  const { spi, peer } = await setup(t);
  const thread = spi.createThread();
  t.not(thread.id.ThreadHandle, spi.mainThread.id.ThreadHandle);
  t.notOk(Object.keys(thread).includes('WSPSend'), 'the SPI functions of a thread are not enumerable');
  const e = out(0);
  const ov = new WSAOVERLAPPED();
  const call = thread.WSPSend(3, [wsabuf('z')], 1, null, 0, ov, null, null, e);
  const req = await peer.request();
  t.same(req.params['overlapped'], { op: 1, thread: thread.id.ThreadHandle });
  peer.reply(req, { ret: P.SOCKET_ERROR, errno: P.WSA_IO_PENDING });
  t.same([await call, e.value], [P.SOCKET_ERROR, P.WSA_IO_PENDING]);
  t.equal(spi.pendingOperations, 1);
  const transferred = out(0);
  const flags = out(0);
  t.same([await spi.WSPGetOverlappedResult(3, ov, transferred, false, flags, e), e.value], [P.FALSE, P.WSA_IO_INCOMPLETE], 'still pending');
  peer.send({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: 3, error: 0, bytes: 1, flags: 0 } });
  const ev = spi.WSACreateEvent();
  // A round trip: the completion sent before its reply has been applied when it returns.
  const events: WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
  const enumCall = spi.WSPEnumNetworkEvents(3, ev, events, e);
  peer.reply(await peer.request(), { optval: new Uint8Array(4), optlen: 4 });
  t.equal(await enumCall, 0);
  t.equal(spi.pendingOperations, 0);
  t.same([await spi.WSPGetOverlappedResult(3, ov, transferred, false, flags, e), transferred.value], [P.TRUE, 1]);
  t.same([await untyped(spi.WSPGetOverlappedResult, spi, 3, ov, null, false, flags, e), e.value], [P.FALSE, P.WSAEFAULT], 'no lpcbTransfer: WSAEFAULT');
});

t.test('a session call with no lpErrno out parameter rejects with TypeError', async (t) => {
  const { spi } = await setup(t);
  const notOut: unknown = { val: 0 };
  await t.rejects(untyped(spi.WSPListen, spi, 1, 1, notOut), TypeError);
  const outParam: Out = out(0);
  t.equal(await spi.WSCEnumProtocols(null, null, outParam, out(0)), P.SOCKET_ERROR, 'WSCEnumProtocols answers locally');
  t.equal(outParam.value, 4 * P.WSAPROTOCOL_INFOW_SIZE);
});

t.test('an overlapped call whose reply is not an SPI result rejects and leaves no operation behind', async (t) => {
  const { spi, peer } = await setup(t);
  const e = out(0);
  const ov = new WSAOVERLAPPED();
  const call = spi.WSPSend(3, [wsabuf('z')], 1, null, 0, ov, null, null, e);
  const req = await peer.request();
  peer.send({ jsonrpc: '2.0', id: req.id, result: { bytesSent: 1 } });
  await t.rejects(call, { name: 'SpiwireProtocolError', code: P.INVALID_REQUEST });
  t.equal(spi.pendingOperations, 0);
  t.notOk(ov.pending, 'the WSAOVERLAPPED is not left pending');
  t.equal(e.value, 0, 'lpErrno is not written: the call threw');
});
