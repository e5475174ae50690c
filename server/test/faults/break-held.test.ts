/**
 * An overlapped send under a `break` rule whose bytes the transport took, waiting for the
 * connection to break (proto/README.md section 19): its bytes are past cancelling, so a thread
 * exit delivers it at once with success, as it does a held completion, and does not count it
 * as cancelled. Before, nothing could end it but the socket's close or the 10-minute deadline.
 */
import t from 'tap';
import * as net from 'node:net';
import * as P from '@spiwire/proto';
import { connectTo, daemon, session, tcpSocket } from '../helpers/raw-client.js';

t.test('a thread exit delivers an overlapped send waiting for a break at once, with success', async (t) => {
  // A peer that never reads: the kernel never drains what the transport took, so the break
  // (which waits for every byte before it to leave) does not come.
  const held: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (c) => {
    c.on('error', () => undefined);
    held.push(c);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const c of held) c.destroy();
    server.close();
  });
  const d = await daemon(t);
  const s = await session(t, d.url);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  const SIZE = 10 * 1024 * 1024;
  const sndBuf = new Uint8Array(4);
  new DataView(sndBuf.buffer).setUint32(0, 2 * SIZE, true);
  t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: sndBuf, optlen: 4 }), { ret: 0, errno: 0 }, 'SO_SNDBUF of 20 MiB: the send fits');
  await connectTo(s, h, (server.address() as net.AddressInfo).port);
  await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'break', at: SIZE, code: P.WSAECONNABORTED } } });
  const sent = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(SIZE)], flags: 0, overlapped: { op: 1, thread: 5 } });
  t.same([sent['ret'], sent['errno']], [-1, P.WSA_IO_PENDING], 'the send pends, waiting for the break');
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
