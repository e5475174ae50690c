/**
 * Wine's test_send (dlls/ws2_32/tests/sock.c): a blocking send of 1 MiB, then, with SO_SNDBUF 0,
 * an overlapped send of 1 MiB that pends until the peer reads it, every byte in order; WSASend
 * on an invalid handle; an overlapped send without a byte count.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { EVENT_BOUND_MS, Scenario, dword, fileDaemon, openSession, ovResult, ovSend, pattern, send, setBlocking, syncRecv, tcpPair, waitEvent } from '../../helpers/wine.js';

const MIB = 1024 * 1024;

const d = await fileDaemon(t);

interface Ctx {
  spi: S.SpiSession;
  src: number;
  dst: number;
  ev: number;
  ov: S.WSAOVERLAPPED;
  draining: Promise<void>;
}

const sc = new Scenario<Ctx>(async (f) => {
  const spi = await openSession(t, d);
  const { client: src, server: dst } = await tcpPair(spi, f);
  await setBlocking(spi, dst, false);
  const e = S.out(0);
  // Buffering off, so that an overlapped send can be seen pending.
  if ((await spi.WSPSetSockOpt(dst, S.SOL_SOCKET, S.SO_SNDBUF, dword(0), 4, e)) !== 0) throw new Error(`SO_SNDBUF: ${e.value}`);
  // Wine's drain_socket_thread: dst reads whatever src sends until the connection ends.
  const draining = (async () => {
    for (;;) {
      const r = await syncRecv(spi, dst, 64 * 1024);
      if (r.n <= 0) return;
    }
  })();
  const ev = spi.WSACreateEvent();
  return { spi, src, dst, ev, ov: new S.WSAOVERLAPPED(ev), draining };
});

sc.step(t, 'test_send: a blocking send of 1 MiB returns 1 MiB', {}, async (c, x) => {
  const r = await send(x.spi, x.src, pattern(MIB));
  c.same([r.ret, r.sent], [0, MIB], 'send');
});

sc.step(t, 'test_send: with SO_SNDBUF 0 an overlapped send of 1 MiB pends (WSA_IO_PENDING) while the peer does not read', {}, async (c, x) => {
  const r = await ovSend(x.spi, x.dst, pattern(MIB), x.ov);
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'WSASend');
});

sc.step(t, 'test_send: the peer receives every byte of the pending send, in order, and the send completes with 1 MiB', {}, async (c, x) => {
  await setBlocking(x.spi, x.src, false);
  const got: Buffer[] = [];
  let n = 0;
  while (n < MIB) {
    const r = await syncRecv(x.spi, x.src, MIB - n);
    if (r.n <= 0) break;
    got.push(r.data);
    n += r.n;
  }
  c.equal(n, MIB, 'bytes received');
  c.ok(Buffer.concat(got).equals(pattern(MIB)), 'each byte is the one sent, in order');
  c.ok(await waitEvent(x.spi, x.ev, EVENT_BOUND_MS), 'the send completes: its event is signalled');
  const res = await ovResult(x.spi, x.dst, x.ov, false);
  c.same([res.ret, res.bytes], [S.TRUE, MIB], 'WSPGetOverlappedResult: TRUE, 1 MiB');
});

sc.step(t, 'test_send: an overlapped WSASend on INVALID_SOCKET fails with WSAENOTSOCK', {}, async (c, x) => {
  const r = await ovSend(x.spi, S.INVALID_SOCKET, 'x', new S.WSAOVERLAPPED(x.ev), { count: false });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSAENOTSOCK], 'WSASend');
});

sc.step(t, 'test_send: an overlapped send without lpNumberOfBytesSent starts (WSA_IO_PENDING)', {}, async (c, x) => {
  const r = await ovSend(x.spi, x.dst, pattern(MIB), new S.WSAOVERLAPPED(x.ev), { count: false });
  c.same([r.ret, r.err], [S.SOCKET_ERROR, S.WSA_IO_PENDING], 'WSASend');
  await x.spi.WSPCloseSocket(x.src, S.out(0));
  await x.spi.WSPCloseSocket(x.dst, S.out(0));
  await x.draining;
});
