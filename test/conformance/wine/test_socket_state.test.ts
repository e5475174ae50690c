/**
 * Wine's small tests of socket state (dlls/ws2_32/tests/sock.c), grouped: test_accept_inheritance,
 * test_extendedSocketOptions, test_so_debug, test_connect_time and test_WSAEnumNetworkEvents.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, accept, addr, af, dword, fileDaemon, getName, must, namelen, openSession, readU32, socket, tcpPair, type Family } from '../../helpers/wine.js';

const d = await fileDaemon(t);

interface Ctx {
  spi: S.SpiSession;
  f: Family;
}

const ctx = async (f: Family): Promise<Ctx> => ({ spi: await openSession(t, d), f });

async function getDword(spi: S.SpiSession, s: number, level: number, opt: number): Promise<[number, number]> {
  const v = new Uint8Array(4);
  const e = S.out(0);
  const r = await spi.WSPGetSockOpt(s, level, opt, v, S.out(4), e);
  return [r, r === 0 ? readU32(v) : e.value];
}

// ================================================================ test_accept_inheritance

/** Binds l to loopback, listens, and connects a new socket to it: both ends of the connection. */
async function connectionAccepted(x: Ctx, l: number): Promise<{ client: number; server: number }> {
  await must('WSPBind', (e) => x.spi.WSPBind(l, addr(x.f, 0), namelen(x.f), e));
  const [, , to] = await getName(x.spi, l);
  await must('WSPListen', (e) => x.spi.WSPListen(l, 1, e));
  const client = await socket(x.spi, x.f, 'tcp');
  await must('WSPConnect', (e) => x.spi.WSPConnect(client, to, namelen(x.f), null, null, null, null, e));
  return { client, server: await accept(x.spi, l) };
}

const inherit = new Scenario<Ctx>(ctx);

inherit.step(t, 'test_accept_inheritance: an accepted socket inherits SO_KEEPALIVE, SO_OOBINLINE, SO_SNDBUF, SO_RCVBUF, SO_SNDTIMEO, SO_RCVTIMEO, TCP_NODELAY and SO_LINGER {1, 555}', {}, async (c, x) => {
  const opts: Array<[string, number, number, number]> = [
    ['SO_KEEPALIVE', S.SOL_SOCKET, S.SO_KEEPALIVE, 1],
    ['SO_OOBINLINE', S.SOL_SOCKET, S.SO_OOBINLINE, 1],
    ['SO_SNDBUF', S.SOL_SOCKET, S.SO_SNDBUF, 0x123],
    ['SO_RCVBUF', S.SOL_SOCKET, S.SO_RCVBUF, 0x123],
    ['SO_SNDTIMEO', S.SOL_SOCKET, S.SO_SNDTIMEO, 0x123],
    ['SO_RCVTIMEO', S.SOL_SOCKET, S.SO_RCVTIMEO, 0x123],
    ['TCP_NODELAY', S.IPPROTO_TCP, S.TCP_NODELAY, 1],
  ];
  const l = await socket(x.spi, x.f, 'tcp');
  for (const [name, level, opt, v] of opts) await must(name, (e) => x.spi.WSPSetSockOpt(l, level, opt, dword(v), 4, e));
  const linger = new Uint8Array(4);
  new DataView(linger.buffer).setUint16(0, 1, true);
  new DataView(linger.buffer).setUint16(2, 555, true);
  await must('SO_LINGER', (e) => x.spi.WSPSetSockOpt(l, S.SOL_SOCKET, S.SO_LINGER, linger, 4, e));
  const { client, server } = await connectionAccepted(x, l);
  for (const [name, level, opt, v] of opts) c.same(await getDword(x.spi, server, level, opt), [0, v], name);
  const [r, lv] = await getDword(x.spi, server, S.SOL_SOCKET, S.SO_LINGER);
  c.same([r, lv & 0xffff, lv >>> 16], [0, 1, 555], 'SO_LINGER');
  for (const s of [server, client, l]) await x.spi.WSPCloseSocket(s, S.out(0));
});

inherit.step(t, 'test_accept_inheritance: an accepted socket inherits SO_REUSEADDR', {}, async (c, x) => {
  const l = await socket(x.spi, x.f, 'tcp');
  await must('SO_REUSEADDR', (e) => x.spi.WSPSetSockOpt(l, S.SOL_SOCKET, S.SO_REUSEADDR, dword(1), 4, e));
  const { client, server } = await connectionAccepted(x, l);
  c.same(await getDword(x.spi, server, S.SOL_SOCKET, S.SO_REUSEADDR), [0, 1], 'the accepted socket reads 1');
  c.same(await getDword(x.spi, client, S.SOL_SOCKET, S.SO_REUSEADDR), [0, 0], 'the connecting socket, which did not set it, reads 0');
  for (const s of [server, client, l]) await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ test_extendedSocketOptions

const ext = new Scenario<Ctx>(ctx);

ext.step(t, 'test_extendedSocketOptions: SO_MAX_MSG_SIZE of a bound UDP socket is 65507 or 65527', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'udp');
  await must('WSPBind', (e) => x.spi.WSPBind(s, { family: af(x.f), address: x.f === 'ipv4' ? '0.0.0.0' : '::', port: 0 }, namelen(x.f), e));
  const [r, v] = await getDword(x.spi, s, S.SOL_SOCKET, S.SO_MAX_MSG_SIZE);
  c.equal(r, 0, 'getsockopt');
  c.ok(v === 65507 || v === 65527, `65507 or 65527 (${v})`);
  await x.spi.WSPCloseSocket(s, S.out(0));
});

ext.step(t, 'test_extendedSocketOptions: getsockopt with an invalid level (0xffffffff, 0x1234ffff, 0x8000ffff, 0x8000, 0x800) fails with WSAEINVAL', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'udp');
  for (const level of [-1, 0x1234ffff, 0x8000ffff | 0, 0x8000, 0x800]) {
    const v = new Uint8Array(4);
    const e = S.out(0);
    c.same([await x.spi.WSPGetSockOpt(s, level, S.SO_MAX_MSG_SIZE, v, S.out(4), e), e.value], [S.SOCKET_ERROR, S.WSAEINVAL], `level 0x${(level >>> 0).toString(16)}`);
  }
  await x.spi.WSPCloseSocket(s, S.out(0));
});

ext.step(t, 'test_extendedSocketOptions: SO_LINGER on a UDP socket fails with WSAENOPROTOOPT; on a bound TCP socket it succeeds', {}, async (c, x) => {
  const u = await socket(x.spi, x.f, 'udp');
  c.same(await getDword(x.spi, u, S.SOL_SOCKET, S.SO_LINGER), [S.SOCKET_ERROR, S.WSAENOPROTOOPT], 'UDP');
  const tcp = await socket(x.spi, x.f, 'tcp');
  await must('WSPBind', (e) => x.spi.WSPBind(tcp, addr(x.f, 0), namelen(x.f), e));
  c.equal((await getDword(x.spi, tcp, S.SOL_SOCKET, S.SO_LINGER))[0], 0, 'TCP');
  await x.spi.WSPCloseSocket(u, S.out(0));
  await x.spi.WSPCloseSocket(tcp, S.out(0));
});

ext.step(t, 'test_extendedSocketOptions: SO_DONTLINGER reads the opposite of SO_LINGER\'s l_onoff on a bound TCP socket', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  await must('WSPBind', (e) => x.spi.WSPBind(s, { family: af(x.f), address: x.f === 'ipv4' ? '0.0.0.0' : '::', port: 0 }, namelen(x.f), e));
  const [r1, linger] = await getDword(x.spi, s, S.SOL_SOCKET, S.SO_LINGER);
  const [r2, dont] = await getDword(x.spi, s, S.SOL_SOCKET, S.SO_DONTLINGER);
  c.same([r1, r2], [0, 0], 'both read');
  c.ok((linger & 0xffff) !== 0 ? dont === 0 : dont === 1, `l_onoff ${linger & 0xffff}, SO_DONTLINGER ${dont}`);
  // Beyond Wine's check: each of the pair set, the other read.
  const on = new Uint8Array([1, 0, 7, 0]);
  await must('SO_LINGER', (e) => x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_LINGER, on, 4, e));
  c.same(await getDword(x.spi, s, S.SOL_SOCKET, S.SO_DONTLINGER), [0, 0], 'SO_LINGER {1, 7}: SO_DONTLINGER reads 0');
  await must('SO_DONTLINGER', (e) => x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_DONTLINGER, dword(1), 4, e));
  c.same(await getDword(x.spi, s, S.SOL_SOCKET, S.SO_LINGER), [0, 7 << 16], 'SO_DONTLINGER TRUE: SO_LINGER reads {0, 7}');
  await must('SO_DONTLINGER', (e) => x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_DONTLINGER, dword(0), 4, e));
  c.same(await getDword(x.spi, s, S.SOL_SOCKET, S.SO_LINGER), [0, 1 | (7 << 16)], 'SO_DONTLINGER FALSE: SO_LINGER reads {1, 7}');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

ext.step(t, 'test_set_getsockopt: SO_DONTLINGER with a null optval fails with WSAEFAULT, with optlen 4 and with 0', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  for (const len of [4, 0]) {
    const e = S.out(0);
    c.same([await x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_DONTLINGER, null, len, e), e.value], [S.SOCKET_ERROR, S.WSAEFAULT], `optlen ${len}`);
  }
  await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ test_so_debug

const debug = new Scenario<Ctx>(ctx);

debug.step(t, 'test_so_debug: SO_DEBUG reads 0 with optlen 4; set to 2 it succeeds and reads 1', {}, async (c, x) => {
  const s = await socket(x.spi, x.f, 'tcp');
  const read = async (): Promise<[number, number, number, number]> => {
    const v = dword(0xdeadbeef);
    const len = S.out(4);
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_DEBUG, v, len, e);
    return [r, e.value, len.value, readU32(v)];
  };
  c.same(await read(), [0, 0, 4, 0], 'default');
  const e = S.out(0);
  c.same([await x.spi.WSPSetSockOpt(s, S.SOL_SOCKET, S.SO_DEBUG, dword(2), 4, e), e.value], [0, 0], 'set 2');
  c.same(await read(), [0, 0, 4, 1], 'reads 1');
  await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ test_connect_time

const connectTime = new Scenario<Ctx>(ctx);

connectTime.step(t, 'test_connect_time: SO_CONNECT_TIME is 0xffffffff without a TCP connection (UDP sockets, connected or not, included) and 0 on both ends of a new connection', {}, async (c, x) => {
  const read = async (s: number): Promise<[number, number, number, number]> => {
    const v = dword(0x12345678);
    const len = S.out(4);
    const e = S.out(0);
    const r = await x.spi.WSPGetSockOpt(s, S.SOL_SOCKET, S.SO_CONNECT_TIME, v, len, e);
    return [r, e.value, len.value, readU32(v)];
  };
  const lone = await socket(x.spi, x.f, 'tcp');
  c.same(await read(lone), [0, 0, 4, 0xffffffff], 'a TCP socket never connected');
  const pair = await tcpPair(x.spi, x.f);
  c.same(await read(pair.client), [0, 0, 4, 0], 'the connecting end');
  c.same(await read(pair.server), [0, 0, 4, 0], 'the accepted end');
  const udpServer = await socket(x.spi, x.f, 'udp');
  await must('WSPBind', (e) => x.spi.WSPBind(udpServer, addr(x.f, 0), namelen(x.f), e));
  const [, , to] = await getName(x.spi, udpServer);
  const udpClient = await socket(x.spi, x.f, 'udp');
  await must('WSPConnect', (e) => x.spi.WSPConnect(udpClient, to, namelen(x.f), null, null, null, null, e));
  c.same(await read(udpClient), [0, 0, 4, 0xffffffff], 'a connected UDP socket');
  c.same(await read(udpServer), [0, 0, 4, 0xffffffff], 'a bound UDP socket');
  for (const s of [lone, pair.client, pair.server, udpServer, udpClient]) await x.spi.WSPCloseSocket(s, S.out(0));
});

// ================================================================ test_WSAEnumNetworkEvents

/**
 * Wine's loop: five times, select FD_READ | FD_WRITE, then enumerate (with the event object, or
 * with none). Returns the events of each enumeration, and whether the error codes of the events
 * not reported were left as they were (0xabababab) each time.
 */
async function fiveTimes(x: Ctx, s: number, withEvent: boolean): Promise<{ seen: number[]; untouched: boolean[] }> {
  const ev = x.spi.WSACreateEvent();
  const seen: number[] = [];
  const untouched: boolean[] = [];
  for (let j = 0; j < 5; j++) {
    await must('WSPEventSelect', (e) => x.spi.WSPEventSelect(s, ev, S.FD_READ | S.FD_WRITE, e));
    const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0xabababab, iErrorCode: new Array(10).fill(0xabababab) };
    await must('WSPEnumNetworkEvents', (e) => x.spi.WSPEnumNetworkEvents(s, withEvent ? ev : 0, ne, e));
    seen.push(ne.lNetworkEvents);
    untouched.push(ne.iErrorCode.every((code, k) => (ne.lNetworkEvents & (1 << k) ? code === 0 : code === 0xabababab)));
  }
  return { seen, untouched };
}

type Kind = 'UDP, bound' | 'TCP, bound' | 'TCP, connected';

/** A socket of the kind Wine's loop uses; returns it and what to close afterwards. */
async function kindSocket(x: Ctx, kind: Kind): Promise<{ s: number; close: number[] }> {
  const any = { family: af(x.f), address: x.f === 'ipv4' ? '0.0.0.0' : '::', port: 0 };
  if (kind === 'TCP, connected') {
    const { client, server } = await tcpPair(x.spi, x.f);
    return { s: client, close: [client, server] };
  }
  const s = await socket(x.spi, x.f, kind === 'UDP, bound' ? 'udp' : 'tcp');
  await must('WSPBind', (e) => x.spi.WSPBind(s, any, namelen(x.f), e));
  return { s, close: [s] };
}

const enumSc = new Scenario<Ctx>(ctx);

for (const withEvent of [true, false]) {
  const how = withEvent ? 'with the event object' : 'with no event object';
  for (const kind of ['UDP, bound', 'TCP, bound', 'TCP, connected'] as const) {
    const writable = kind !== 'TCP, bound';
    const what = writable ? 'FD_WRITE on the first enumeration only' : 'nothing';
    enumSc.step(t, `test_WSAEnumNetworkEvents: ${kind}, selected and enumerated five times: ${what} (${how})`, {}, async (c, x) => {
      const k = await kindSocket(x, kind);
      const { seen } = await fiveTimes(x, k.s, withEvent);
      c.same(seen, writable ? [S.FD_WRITE, 0, 0, 0, 0] : [0, 0, 0, 0, 0], 'events of the five enumerations');
      for (const h of k.close) await x.spi.WSPCloseSocket(h, S.out(0));
    });
  }
}

enumSc.step(t, 'test_WSAEnumNetworkEvents: the error codes of events not reported are left untouched', {}, async (c, x) => {
  for (const kind of ['UDP, bound', 'TCP, bound', 'TCP, connected'] as const) {
    const k = await kindSocket(x, kind);
    const { untouched } = await fiveTimes(x, k.s, true);
    c.same(untouched, [true, true, true, true, true], kind);
    for (const h of k.close) await x.spi.WSPCloseSocket(h, S.out(0));
  }
});
