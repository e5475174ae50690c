/**
 * Issue 13, section 3: WSPGetOverlappedResult as proto/README.md section 9 specifies it for a
 * client in another language ("WSPGetOverlappedResult and the OVERLAPPED, in the client"). Each
 * rule of the text is checked with the SDK, which implements it, against a real daemon and real
 * loopback peers: pending operations, fWait TRUE with and without an event, the completion's
 * flags, and operations aborted by SIO_FLUSH, by a thread's exit and by WSPCloseSocket.
 */
import { readFileSync } from 'node:fs';
import * as dgram from 'node:dgram';
import t from 'tap';
import * as S from '@spiwire/client';
import { FILLER_BYTES, addr, af, daemon, drainUntil, emptyAddr, fionread, namelen, ovSend, overlappedTcp, pattern, session, tcpPeer, until, type PeerConnection } from '../helpers/harness.js';

const README = readFileSync(new URL('../../../proto/README.md', import.meta.url), 'utf8');

/** The README text of the subsection on WSPGetOverlappedResult, on one line. */
function subsection(): string {
  const lines = README.split('\n');
  const start = lines.findIndex((l) => l === '### WSPGetOverlappedResult and the OVERLAPPED, in the client');
  if (start < 0) return '';
  const end = lines.findIndex((l, i) => i > start && /^#{1,3} /.test(l));
  return lines.slice(start + 1, end).join(' ').replace(/\s+/g, ' ');
}

interface Outcome {
  ret: number;
  err: number;
  cb: number;
  flags: number;
}

const UNTOUCHED = -7;

async function getResult(spi: S.SpiSession, s: number, ov: S.WSAOVERLAPPED, fWait: boolean): Promise<Outcome> {
  const e = S.out(0);
  const cb = S.out(UNTOUCHED);
  const flags = S.out(UNTOUCHED);
  const ret = await spi.WSPGetOverlappedResult(s, ov, cb, fWait, flags, e);
  return { ret, err: e.value, cb: cb.value, flags: flags.value };
}

/** What the peer has once the socket is closed (gracefully) and it reads to the end. */
async function finalBytes(spi: S.SpiSession, s: number, conn: PeerConnection): Promise<Buffer> {
  await spi.WSPCloseSocket(s, S.out(0));
  conn.socket.resume();
  await conn.ended;
  return conn.received();
}

const f = 'ipv4';
const text = subsection();

t.test('the README specifies WSPGetOverlappedResult for a client', async (t) => {
  t.match(text, /WSPGetOverlappedResult is not a method on the wire/);
  t.match(text, /`InternalHigh` = `bytes`, `Offset` = `flags`, `OffsetHigh` = `error`, then `Internal` = 0/);
  t.match(text, /`fWait` FALSE: FALSE with WSA_IO_INCOMPLETE/);
  t.match(text, /`fWait` TRUE: without an `hEvent`, FALSE with WSAEINVAL/);
  t.match(text, /even when the event was set by some other means while the operation is still pending/);
  t.match(text, /`\*lpdwFlags` = `Offset` \(the completion's `flags`: 0, MSG_PARTIAL for a truncated datagram, or MSG_OOB for urgent data\)/);
  t.match(text, /or the socket on which `lpOverlapped` was last used in an overlapped call, closed or not/);
  t.match(text, /returns FALSE with WSA_OPERATION_ABORTED and that count: after SIO_FLUSH or `spiwire.threadExit`, whose socket is still open, and after WSPCloseSocket alike/);
});

t.test('rule 3: a pending operation with fWait FALSE, with fWait TRUE and no event, with a closed event, with an event set by hand', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const peer = await tcpPeer(t, f);
  const { s, conn } = await overlappedTcp(spi, f, peer);
  const recv = async (ov: S.WSAOVERLAPPED): Promise<void> => {
    const e = S.out(0);
    t.same([await spi.WSPRecv(s, [S.wsabuf(new Uint8Array(16))], 1, S.out(0), S.out(0), ov, null, null, e), e.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'a receive is pending');
  };
  const noEvent = new S.WSAOVERLAPPED();
  await recv(noEvent);
  t.equal(noEvent.Internal, S.WSS_OPERATION_IN_PROGRESS, 'Internal is 0x103 while pending');
  t.same(await getResult(spi, s, noEvent, false), { ret: S.FALSE, err: S.WSA_IO_INCOMPLETE, cb: UNTOUCHED, flags: UNTOUCHED }, 'fWait FALSE: WSA_IO_INCOMPLETE, nothing written');
  t.same(await getResult(spi, s, noEvent, true), { ret: S.FALSE, err: S.WSAEINVAL, cb: UNTOUCHED, flags: UNTOUCHED }, 'fWait TRUE without hEvent: WSAEINVAL');
  const closedEvent = spi.WSACreateEvent();
  const withClosed = new S.WSAOVERLAPPED(closedEvent);
  await recv(withClosed);
  spi.WSACloseEvent(closedEvent);
  t.same(await getResult(spi, s, withClosed, true), { ret: S.FALSE, err: S.WSA_INVALID_HANDLE, cb: UNTOUCHED, flags: UNTOUCHED }, 'an hEvent that was closed: WSA_INVALID_HANDLE');
  const ev = spi.WSACreateEvent();
  const byHand = new S.WSAOVERLAPPED(ev);
  await recv(byHand);
  spi.WSASetEvent(ev);
  t.same(await getResult(spi, s, byHand, true), { ret: S.TRUE, err: 0, cb: 0, flags: 0 }, 'an event set by hand: the OVERLAPPED is read as it is (TRUE, 0 bytes)');
  t.equal(byHand.Internal, S.WSS_OPERATION_IN_PROGRESS, 'the operation itself is still pending');
  // The three receives complete in order, one per write; the last one's result is then the real one.
  for (const [i, ov] of [noEvent, withClosed, byHand].entries()) {
    conn.socket.write('abc'.slice(0, i + 1));
    t.ok(await drainUntil(spi, () => !ov.pending), `receive ${i + 1} completes`);
  }
  t.same(await getResult(spi, s, byHand, false), { ret: S.TRUE, err: 0, cb: 3, flags: 0 }, 'then TRUE with its byte count');
});

t.test('rule 4: lpdwFlags gets the completion\'s flags; a failed operation returns FALSE with its error', async (t) => {
  const d = await daemon(t);
  const spi = await session(t, d);
  const e = S.out(0);
  const u = await spi.WSPSocket(af(f), S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  t.equal(await spi.WSPBind(u, addr(f, 0), namelen(f), e), 0);
  const name = emptyAddr();
  t.equal(await spi.WSPGetSockName(u, name, S.out(namelen(f)), e), 0);
  const ev = spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const small = new Uint8Array(4);
  t.same([await spi.WSPRecv(u, [S.wsabuf(small)], 1, S.out(0), S.out(0), ov, null, null, e), e.value], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'a receive of 4 bytes is pending');
  const sender = dgram.createSocket('udp4');
  t.teardown(() => sender.close());
  sender.send(Buffer.from('truncated!'), name.port, '127.0.0.1');
  t.same(await getResult(spi, u, ov, true), { ret: S.FALSE, err: S.WSAEMSGSIZE, cb: 4, flags: S.MSG_PARTIAL }, 'a truncated datagram: FALSE, WSAEMSGSIZE, the 4 bytes that fitted, MSG_PARTIAL');
  t.equal(Buffer.from(small).toString(), 'trun');
  // The same datagram already waiting: the call fails at once with WSAEMSGSIZE, and the
  // operation still completes (on Windows the status is a warning, which completes an OVERLAPPED:
  // the event is set, InternalHigh and Offset hold the count and MSG_PARTIAL).
  sender.send(Buffer.from('TRUNCATED!'), name.port, '127.0.0.1');
  t.ok(await until(async () => (await fionread(spi, u))[2] > 0, 5000), 'the datagram is waiting');
  const again = new S.WSAOVERLAPPED(ev);
  const flags = S.out(0);
  small.fill(0);
  t.same([await spi.WSPRecv(u, [S.wsabuf(small)], 1, S.out(0), flags, again, null, null, e), e.value], [S.SOCKET_ERROR, S.WSAEMSGSIZE], 'a receive of 4 bytes fails at once with WSAEMSGSIZE');
  t.equal(Buffer.from(small).toString(), 'TRUN', 'with the bytes that fitted in its buffer');
  t.same(await getResult(spi, u, again, false), { ret: S.FALSE, err: S.WSAEMSGSIZE, cb: 4, flags: S.MSG_PARTIAL }, 'its OVERLAPPED is complete: FALSE, WSAEMSGSIZE, 4 bytes, MSG_PARTIAL');
  t.equal(await spi.WSAWaitForMultipleEvents(1, [ev], false, 0, false), S.WSA_WAIT_EVENT_0, 'and its event is set');
});

t.test('aborted operations: SIO_FLUSH, a thread\'s exit and WSPCloseSocket give FALSE with WSA_OPERATION_ABORTED and the bytes taken; other uses of a closed handle are WSAENOTSOCK', async (t) => {
  const d = await daemon(t, { limits: { defaultSndBuf: 8192 } });
  const spi = await session(t, d);
  const peer = await tcpPeer(t, f, { paused: true });
  const { s, conn } = await overlappedTcp(spi, f, peer);
  const filler = pattern(FILLER_BYTES, 11);
  const pending = async (issuer: Parameters<typeof ovSend>[0], data: Uint8Array, ov: S.WSAOVERLAPPED): Promise<void> => {
    const r = await ovSend(issuer, s, [data], { ov });
    t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'pending');
  };

  // SIO_FLUSH: the filler, partly taken, is aborted; the peer gets exactly the bytes it reports.
  const evF = spi.WSACreateEvent();
  const ovF = new S.WSAOVERLAPPED(evF);
  await pending(spi, filler, ovF);
  const e = S.out(0);
  t.equal(await spi.WSPIoctl(s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, e), 0, 'SIO_FLUSH');
  const flushed = await getResult(spi, s, ovF, true);
  t.same([flushed.ret, flushed.err, flushed.flags], [S.FALSE, S.WSA_OPERATION_ABORTED, 0], 'FALSE, WSA_OPERATION_ABORTED');
  t.ok(flushed.cb > 0 && flushed.cb < FILLER_BYTES, `lpcbTransfer: the ${flushed.cb} bytes the transport took`);

  // A thread's exit: its pending send is aborted; the socket stays open.
  const th = spi.createThread();
  const evT = spi.WSACreateEvent();
  const ovT = new S.WSAOVERLAPPED(evT);
  await pending(th, pattern(1000, 12), ovT);
  await th.exit();
  t.same(await getResult(spi, s, ovT, true), { ret: S.FALSE, err: S.WSA_OPERATION_ABORTED, cb: 0, flags: 0 }, 'thread exit: FALSE, WSA_OPERATION_ABORTED, 0 bytes');

  // WSPCloseSocket: the socket is gone, but the operations issued on it can still be read with its handle.
  const other = await overlappedTcp(spi, f, peer);
  const ovOther = new S.WSAOVERLAPPED();
  t.equal((await ovSend(spi, other.s, [Buffer.from('elsewhere')], { ov: ovOther })).ret, 0, 'an OVERLAPPED used on another socket');
  let routine: [number, number] | null = null;
  const ovC = new S.WSAOVERLAPPED();
  const r = await ovSend(spi, s, [pattern(2000, 13)], { ov: ovC, routine: (err, cb) => void (routine = [err, cb]) });
  t.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'a send pending behind the kernel\'s full buffers');
  const got = await finalBytes(spi, s, conn);
  t.ok(await drainUntil(spi, () => routine !== null), 'its routine runs');
  t.same(routine, [S.WSA_OPERATION_ABORTED, ovC.InternalHigh], 'the routine: WSA_OPERATION_ABORTED and the count');
  t.same([ovC.Internal, ovC.OffsetHigh], [0, S.WSA_OPERATION_ABORTED], 'the OVERLAPPED: no longer pending, OffsetHigh WSA_OPERATION_ABORTED');
  t.same(await getResult(spi, s, ovC, false), { ret: S.FALSE, err: S.WSA_OPERATION_ABORTED, cb: ovC.InternalHigh, flags: 0 }, 'WSPGetOverlappedResult on the closed handle, for the operation issued on it: FALSE, WSA_OPERATION_ABORTED');
  t.same(await getResult(spi, s, new S.WSAOVERLAPPED(), false), { ret: S.FALSE, err: S.WSAENOTSOCK, cb: UNTOUCHED, flags: UNTOUCHED }, 'an OVERLAPPED never used on it: WSAENOTSOCK');
  t.same(await getResult(spi, s, ovOther, false), { ret: S.FALSE, err: S.WSAENOTSOCK, cb: UNTOUCHED, flags: UNTOUCHED }, 'an OVERLAPPED used on another socket: WSAENOTSOCK');
  t.same(await getResult(spi, other.s, ovOther, false), { ret: S.TRUE, err: 0, cb: 9, flags: 0 }, 'and on its own socket, its result');
  t.ok(got.equals(Buffer.concat([filler.subarray(0, flushed.cb), pattern(2000, 13).subarray(0, ovC.InternalHigh)])), 'the peer got exactly the bytes the aborted sends reported, and nothing of the thread\'s send');
});
