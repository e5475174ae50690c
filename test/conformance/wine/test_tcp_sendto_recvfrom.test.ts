/**
 * Wine's test_tcp_sendto_recvfrom (dlls/ws2_32/tests/sock.c), with the same check of Wine's
 * simple_mixed_client: on a connected TCP socket WSPSendTo ignores its address and WSPRecvFrom
 * leaves lpFrom and lpFromlen as they were.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, fileDaemon, openSession, tcpPair, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const MSG = 'ws2_32/TCP socket test\0';

interface Ctx {
  spi: S.SpiSession;
  client: number;
  server: number;
}

const sc = new Scenario<Ctx>(async (f: Family) => {
  const spi = await openSession(t, d);
  return { spi, ...(await tcpPair(spi, f)) };
});

/** Wine fills the address with 0xfe bytes: as a sockaddr, this. */
const garbage = (): S.SockAddr => ({ family: 0xfefe, address: '254.254.254.254', port: 0xfefe });

sc.step(t, 'test_tcp_sendto_recvfrom: WSPSendTo on a connected TCP socket ignores a garbage address: every byte is sent, the address untouched', {}, async (c, x) => {
  const to = garbage();
  const e = S.out(0);
  const sent = S.out(0);
  const r = await x.spi.WSPSendTo(x.server, [S.wsabuf(MSG)], 1, sent, 0, to, 16, null, null, null, e);
  c.same([r, e.value, sent.value], [0, 0, MSG.length], 'WSPSendTo');
  c.same(to, garbage(), 'the address is untouched');
});

sc.step(t, 'test_tcp_sendto_recvfrom: WSPRecvFrom on a connected TCP socket receives the bytes and leaves lpFrom and lpFromlen untouched', {}, async (c, x) => {
  const from = garbage();
  const fromlen = S.out(0xc0ffee11 | 0);
  const e = S.out(0);
  const got = S.out(0);
  const buf = new Uint8Array(MSG.length);
  const r = await x.spi.WSPRecvFrom(x.client, [S.wsabuf(buf)], 1, got, S.out(0), from, fromlen, null, null, null, e);
  c.same([r, e.value, got.value], [0, 0, MSG.length], 'WSPRecvFrom');
  c.equal(Buffer.from(buf).toString('latin1'), MSG, 'the bytes');
  c.same(from, garbage(), 'lpFrom is untouched');
  c.equal(fromlen.value, 0xc0ffee11 | 0, 'lpFromlen is untouched');
});

sc.step(t, 'test_tcp_sendto_recvfrom: with a usable lpFromlen too, WSPRecvFrom on a connected TCP socket does not write lpFrom (Wine\'s simple_mixed_client)', {}, async (c, x) => {
  const e = S.out(0);
  const sent = S.out(0);
  c.equal(await x.spi.WSPSend(x.server, [S.wsabuf(MSG)], 1, sent, 0, null, null, null, e), 0, 'send');
  const any = (): S.SockAddr => ({ family: c.f === 'ipv4' ? S.AF_INET : S.AF_INET6, address: c.f === 'ipv4' ? '0.0.0.0' : '::', port: 0 });
  const from = any();
  const fromlen = S.out(c.f === 'ipv4' ? 16 : 28);
  const got = S.out(0);
  const r = await x.spi.WSPRecvFrom(x.client, [S.wsabuf(new Uint8Array(MSG.length))], 1, got, S.out(0), from, fromlen, null, null, null, e);
  c.same([r, got.value], [0, MSG.length], 'WSPRecvFrom');
  c.same([from.address, from.port], [any().address, 0], 'lpFrom is not updated');
  await x.spi.WSPCloseSocket(x.client, S.out(0));
  await x.spi.WSPCloseSocket(x.server, S.out(0));
});
