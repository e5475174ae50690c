/**
 * Wine's test_UDP (dlls/ws2_32/tests/sock.c): UDP peers bound to port 0, WSPRecvFrom's fromlen,
 * the sender's port as the from address, sends to a port nobody listens on, sends from two
 * threads at once, and sends to port 0. The select() checks have no SPI equivalent.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { closedPort, select } from '../../helpers/harness.js';
import { Scenario, addr, call, emptyAddr, fileDaemon, fionread, getName, must, namelen, openSession, reached, send, setBlocking, socket, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

const NUM_PEERS = 3;

interface Peers {
  spi: S.SpiSession;
  s: number[];
  names: S.SockAddr[];
}

const sc = new Scenario<Peers>(async (f: Family) => {
  const spi = await openSession(t, d);
  const s: number[] = [];
  for (let i = 0; i < NUM_PEERS; i++) s.push(await socket(spi, f, 'udp'));
  return { spi, s, names: [] };
});

async function sendTo(spi: S.SpiSession, s: number, data: Uint8Array, to: S.SockAddr, f: Family): Promise<[number, number, number]> {
  const e = S.out(0);
  const sent = S.out(0xdeadbeef);
  const r = await spi.WSPSendTo(s, [S.wsabuf(data)], 1, sent, 0, to, namelen(f), null, null, null, e);
  return [r, e.value, sent.value];
}

async function recvFrom(spi: S.SpiSession, s: number, len: number, fromlen: number): Promise<{ ret: number; err: number; bytes: number; data: Buffer; from: S.SockAddr; fromlen: number }> {
  const e = S.out(0);
  const got = S.out(0xdeadbeef);
  const buf = new Uint8Array(len);
  const from = emptyAddr();
  const fl = S.out(fromlen);
  const ret = await spi.WSPRecvFrom(s, [S.wsabuf(buf)], 1, got, S.out(0), from, fl, null, null, null, e);
  return { ret, err: e.value, bytes: got.value, data: Buffer.from(buf.subarray(0, ret === 0 ? got.value : 0)), from, fromlen: fl.value };
}

sc.step(t, 'test_UDP: each peer bound to port 0 gets a port of its own, which WSPGetSockName reports', {}, async (c, p) => {
  for (const s of p.s) {
    await must('WSPBind', (e) => p.spi.WSPBind(s, addr(c.f, 0), namelen(c.f), e));
    const [r, , name] = await getName(p.spi, s);
    c.equal(r, 0, 'WSPGetSockName');
    c.not(name.port, 0, 'a port was chosen');
    p.names.push(name);
  }
});

sc.step(t, 'test_UDP: WSPRecvFrom with a fromlen too small for the address fails and leaves the datagram queued', {}, async (c, p) => {
  const [r] = await sendTo(p.spi, p.s[1]!, new Uint8Array(16), p.names[0]!, c.f);
  c.equal(r, 0, 'sendto');
  // Wine's peers block; this one does not, so that a lost datagram cannot hang the case.
  await setBlocking(p.spi, p.s[0]!, false);
  await reached(async () => (await fionread(p.spi, p.s[0]!)) > 0);
  const small = await recvFrom(p.spi, p.s[0]!, 16, 1);
  c.same([small.ret, small.err], [S.SOCKET_ERROR, S.WSAEFAULT], 'WSPRecvFrom with fromlen 1');
  c.equal(small.from.family, 0, 'the address was not written');
  const full = await recvFrom(p.spi, p.s[0]!, 16, 28);
  c.same([full.ret, full.err, full.bytes], [0, 0, 16], 'the datagram is still there for the next WSPRecvFrom');
  await setBlocking(p.spi, p.s[0]!, true);
});

sc.step(t, 'test_UDP: WSPRecvFrom with a large fromlen receives the datagram and the sender\'s address', {}, async (c, p) => {
  const [r] = await sendTo(p.spi, p.s[1]!, new Uint8Array(16), p.names[0]!, c.f);
  c.equal(r, 0, 'sendto');
  const got = await recvFrom(p.spi, p.s[0]!, 16, 1024);
  c.same([got.ret, got.bytes], [0, 16], 'WSPRecvFrom');
  c.same([got.from.address, got.from.port], [p.names[1]!.address, p.names[1]!.port], 'the sender\'s address');
});

sc.step(t, 'test_UDP: datagrams from two peers arrive with each sender\'s port as the from address', {}, async (c, p) => {
  for (let i = 1; i < NUM_PEERS; i++) {
    const data = Buffer.alloc(16);
    data.writeUInt16BE(p.names[i]!.port, 0);
    const [r, , n] = await sendTo(p.spi, p.s[i]!, data, p.names[0]!, c.f);
    c.same([r, n], [0, 16], `sendto from peer ${i}`);
  }
  for (let i = 1; i < NUM_PEERS; i++) {
    const got = await recvFrom(p.spi, p.s[0]!, 16, 28);
    c.same([got.ret, got.bytes], [0, 16], `datagram ${i}`);
    c.equal(got.from.port, got.data.readUInt16BE(0), `datagram ${i}: the from port is the port the sender wrote`);
  }
  for (const s of p.s) await p.spi.WSPCloseSocket(s, S.out(0));
});

// ---- a connected socket whose peer port has nobody behind it.

const unreach = new Scenario<{ spi: S.SpiSession; s: number }>(async (f: Family) => {
  const spi = await openSession(t, d);
  const s = await socket(spi, f, 'udp');
  const port = await closedPort(f, 'udp');
  await must('WSPConnect', (e) => spi.WSPConnect(s, addr(f, port), namelen(f), null, null, null, null, e));
  return { spi, s };
});

unreach.step(t, 'test_UDP: sends to a connected port with nobody behind it keep succeeding, ten of 16 bytes', {}, async (c, u) => {
  for (let i = 0; i < 10; i++) {
    const r = await send(u.spi, u.s, new Uint8Array(16));
    c.same([r.ret, r.sent], [0, 16], `send ${i + 1}`);
  }
});

unreach.step(t, 'test_UDP: nonblocking sends from two threads at once all succeed, 256 each', {}, async (c, u) => {
  await setBlocking(u.spi, u.s, false);
  // Each thread also selects the socket for writing, with a zero timeout, after each send.
  const run = async (th: S.SessionThread): Promise<{ sends: number[]; selects: number[] }> => {
    const sends: number[] = [];
    const selects: number[] = [];
    for (let i = 0; i < 256; i++) {
      const r = await send(th, u.s, new Uint8Array(256));
      if (r.ret !== 0 || r.sent !== 256) sends.push(r.err || r.sent);
      const [ret, err] = await select(th, null, S.fdSet(u.s), null, { tv_sec: 0, tv_usec: 0 });
      if (ret !== 1) selects.push(ret === S.SOCKET_ERROR ? err : ret);
    }
    return { sends, selects };
  };
  const [a, b] = await Promise.all([run(u.spi.createThread()), run(u.spi.createThread())]);
  c.same(a.sends, [], 'every send of the first thread took 256 bytes');
  c.same(b.sends, [], 'every send of the second thread took 256 bytes');
  c.same([a.selects, b.selects], [[], []], 'every select of either thread found the socket writable (1)');
  await u.spi.WSPCloseSocket(u.s, S.out(0));
});

// ---- sending to port 0.

const portZero = new Scenario<{ spi: S.SpiSession }>(async () => ({ spi: await openSession(t, d) }));

portZero.step(t, 'test_UDP: WSPSendTo to port 0 succeeds', {}, async (c, p) => {
  const s = await socket(p.spi, c.f, 'udp');
  const sent = S.out(0);
  c.same(await call((e) => p.spi.WSPSendTo(s, [S.wsabuf(new Uint8Array(16))], 1, sent, 0, addr(c.f, 0), namelen(c.f), null, null, null, e)), [0, 0], 'sendto port 0');
  c.equal(sent.value, 16, 'all 16 bytes reported sent');
  await p.spi.WSPCloseSocket(s, S.out(0));
});
