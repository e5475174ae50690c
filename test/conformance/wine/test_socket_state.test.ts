/**
 * Wine's small tests of socket state (dlls/ws2_32/tests/sock.c), grouped: test_accept_inheritance,
 * test_extendedSocketOptions and test_WSAEnumNetworkEvents. The options spiwire does not have
 * (SO_REUSEADDR, SO_SNDTIMEO, SO_RCVTIMEO, SO_DONTLINGER) are left out: not applicable.
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
  await must('WSPBind', (e) => x.spi.WSPBind(l, addr(x.f, 0), namelen(x.f), e));
  const [, , to] = await getName(x.spi, l);
  await must('WSPListen', (e) => x.spi.WSPListen(l, 1, e));
  const client = await socket(x.spi, x.f, 'tcp');
  await must('WSPConnect', (e) => x.spi.WSPConnect(client, to, namelen(x.f), null, null, null, null, e));
  const server = await accept(x.spi, l);
  for (const [name, level, opt, v] of opts) c.same(await getDword(x.spi, server, level, opt), [0, v], name);
  const [r, lv] = await getDword(x.spi, server, S.SOL_SOCKET, S.SO_LINGER);
  c.same([r, lv & 0xffff, lv >>> 16], [0, 1, 555], 'SO_LINGER');
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
