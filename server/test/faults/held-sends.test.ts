/**
 * An overlapped send under a `break` rule whose bytes the transport took, waiting for the
 * connection to break, or under a `delay` rule that holds its completion (proto/README.md section
 * 19): its bytes are past cancelling, so a thread exit delivers it at once with success and does
 * not count it as cancelled. Before, nothing could end a waiting break but the socket's close or
 * the 10-minute deadline, nor a held send whose bytes were handed over only when cancelled.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { connectTo, daemon, session, silentPeer, tcpSocket } from '../helpers/raw-client.js';

/**
 * Large SO_SNDBUF: the send is taken at once and then waits for the break. Full: with the kernel
 * and the buffer filled first, the send stays queued, its bytes all handed to node ahead of the
 * buffer (up to three times SO_SNDBUF), and the cancellation itself completes it (it cannot take
 * them back), after which it waits for the break too.
 */
const CASES = [
  ['break', 'taken', 20 * 1024 * 1024, 10 * 1024 * 1024],
  ['break', 'handed ahead', 64 * 1024, 100 * 1024],
  // A delay holds a completion the same way (emulated-socket.ts, heldCompletion).
  ['delay', 'handed ahead', 64 * 1024, 100 * 1024],
] as const;
for (const [action, how, sndBuf, SIZE] of CASES) t.test(`${action}, ${how}: a thread exit delivers an overlapped send it holds at once, with success`, async (t) => {
  // A peer that never reads: the kernel never drains what the transport took, so the break
  // (which waits for every byte before it to leave) does not come.
  const peer = await silentPeer(t);
  // (At the end the daemon gives what the peer never read 100 ms to drain, not 5 s.)
  const d = await daemon(t, { limits: { drainMs: 100 } });
  const s = await session(t, d.url);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  const optval = new Uint8Array(4);
  new DataView(optval.buffer).setUint32(0, sndBuf, true);
  t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval, optlen: 4 }), { ret: 0, errno: 0 }, `SO_SNDBUF ${sndBuf}`);
  await connectTo(s, h, peer.port);
  let before = 0;
  if (how === 'handed ahead') {
    // Nonblocking sends until one fails with WSAEWOULDBLOCK: the kernel and the buffer are full.
    await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
    for (let i = 0; i < 10000; i++) {
      const r = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(65536)], flags: 0 });
      if (r['errno'] === P.WSAEWOULDBLOCK) break;
      before += r['bytesSent'] as number;
    }
    t.ok(before > 0, `${before} bytes filled the kernel and the buffer`);
  }
  const rule = action === 'break' ? { type: 'break', at: before + SIZE, code: P.WSAECONNABORTED } : { type: 'delay', ms: 600000 };
  await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: rule } });
  const sent = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(SIZE)], flags: 0, overlapped: { op: 1, thread: 5 } });
  t.same([sent['ret'], sent['errno']], [-1, P.WSA_IO_PENDING], `the send pends, held by the ${action}`);
  const completions = (): Array<Record<string, unknown> | undefined> => s.messages.filter((m) => m.method === 'spiwire.completion').map((m) => m.params);
  await s.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.same(completions(), [], 'and has not completed a round trip later');
  const exit = await s.call('spiwire.threadExit', { thread: 5 });
  t.same(exit, { ret: 0, errno: 0, cancelled: 0 }, 'the thread exit cancels nothing: its bytes were taken');
  t.same(completions(), [{ op: 1, s: h, error: 0, bytes: SIZE, flags: 0 }], 'it completes once, before the answer, with success and every byte');
  await s.call('WSPCloseSocket', { s: h });
  await s.call('WSPGetSockOpt', { s: await tcpSocket(s), level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.equal(completions().length, 1, 'closing the socket completes it no second time');
});

t.test('break: WSPCloseSocket answers a blocking send waiting for the break with the rule code, not WSAEINTR', async (t) => {
  const peer = await silentPeer(t);
  const d = await daemon(t, { limits: { drainMs: 100 } });
  const s = await session(t, d.url);
  const h = await tcpSocket(s);
  await connectTo(s, h, peer.port);
  // The break comes after byte SIZE; the peer does not read yet, so the bytes before it stay in
  // the kernel and the blocking send waits for the break.
  const SIZE = 8 * 1024 * 1024;
  await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'break', at: SIZE, code: P.WSAECONNABORTED } } });
  const send = s.request('WSPSend', { s: h, buffers: [new Uint8Array(SIZE + 1000)], flags: 0 });
  await s.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 });
  t.notOk(s.messages.some((m) => m.id === send.id), 'the blocking send waits for the break (no answer a round trip later)');
  t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0, 'WSPCloseSocket');
  peer.resume();
  const r = await send.response;
  t.same([r.result?.['ret'], r.result?.['errno']], [-1, P.WSAECONNABORTED], 'the blocking send fails with the rule code');
});
