/** The destination allow-list: parsing, matching, and WSAEACCES on WSPConnect, WSPSendTo and WSPBind. */
import t from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { AllowList, startServer } from '@spiwire/server';
import * as S from '@spiwire/client';

t.test('parsing and matching', async (t) => {
  t.ok(AllowList.parse('*').allowsAll);
  t.ok(AllowList.parse('').allowsAll, 'empty means the default, anywhere');
  const a = AllowList.parse('127.0.0.0/8, [::1]:1000-2000, 10.1.2.3:7');
  t.ok(a.allows('127.4.5.6', 80));
  t.notOk(a.allows('128.0.0.1', 80));
  t.ok(a.allows('::1', 1500));
  t.notOk(a.allows('::1', 999));
  t.ok(a.allows('10.1.2.3', 7));
  t.notOk(a.allows('10.1.2.3', 8));
  t.notOk(a.allows('10.1.2.4', 7));
  t.ok(a.allows('0.0.0.0', 7, true), 'a bind to the unspecified address is judged by its port');
  t.equal(a.toString(), '127.0.0.0/8,[::1]:1000-2000,10.1.2.3:7');
  t.throws(() => AllowList.parse('example.com'), /not a numeric IP address/);
  t.throws(() => AllowList.parse('10.0.0.0/33'), /bad prefix length/);
  t.throws(() => AllowList.parse('10.0.0.1:9-8'), /bad port/);
});

t.test('WSAEACCES for destinations outside the list, on real sockets', async (t) => {
  const allowedPeer = net.createServer((c) => c.resume());
  await new Promise<void>((r) => allowedPeer.listen(0, '127.0.0.1', r));
  const port = (allowedPeer.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const udpPort = udp.address().port;
  const d = await startServer({ port: 0, allow: `127.0.0.1:${port},127.0.0.1:${udpPort}` });
  t.teardown(async () => {
    await d.close();
    allowedPeer.close();
    udp.close();
  });
  const spi = await S.connect(d.url);
  t.teardown(() => spi.close());
  const e = S.out(0);
  const tcp = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, 0, null, 0, 0, e);
  t.equal(await spi.WSPConnect(tcp, { family: S.AF_INET, address: '127.0.0.1', port: port + 1 === udpPort ? port + 2 : port + 1 }, 16, null, null, null, null, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAEACCES, 'WSPConnect to a port outside the list');
  t.equal(await spi.WSPBind(tcp, { family: S.AF_INET, address: '127.0.0.1', port: 0 }, 16, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAEACCES, 'WSPBind to a port outside the list');
  t.equal(await spi.WSPConnect(tcp, { family: S.AF_INET, address: '127.0.0.1', port }, 16, null, null, null, null, e), 0, 'WSPConnect inside the list');
  const u = await spi.WSPSocket(S.AF_INET, S.SOCK_DGRAM, 0, null, 0, 0, e);
  const sent = S.out(0);
  t.equal(await spi.WSPSendTo(u, [S.wsabuf('no')], 1, sent, 0, { family: S.AF_INET, address: '127.0.0.2', port: udpPort }, 16, null, null, null, e), S.SOCKET_ERROR);
  t.equal(e.value, S.WSAEACCES, 'WSPSendTo an address outside the list');
  const got = new Promise<Buffer>((r) => udp.once('message', r));
  t.equal(await spi.WSPSendTo(u, [S.wsabuf('yes')], 1, sent, 0, { family: S.AF_INET, address: '127.0.0.1', port: udpPort }, 16, null, null, null, e), 0);
  t.equal((await got).toString(), 'yes', 'only the allowed datagram arrived');
});
