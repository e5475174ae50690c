/**
 * Wine's test_close_events (dlls/ws2_32/tests/sock.c, run by test_events with an event object):
 * when FD_CLOSE is recorded, with which code, and when it is not recorded again. The peer is a
 * second spiwire socket, as in Wine; the reset comes from a node:net peer (a real RST), because
 * spiwire's own SO_LINGER {1, 0} close is checked on its own in test_tcp_reset.test.ts.
 */
import t from 'tap';
import * as S from '@spiwire/client';
import { Scenario, checkEvents, fileDaemon, nodePeerPair, openSession, recv, resetNode, selectEvents, send, tcpPair, type Family } from '../../helpers/wine.js';

/** What Wine selects in test_close_events: everything but FD_WRITE. */
const MASK = S.FD_ACCEPT | S.FD_CLOSE | S.FD_CONNECT | S.FD_OOB | S.FD_READ;

const d = await fileDaemon(t);

interface Pair {
  spi: S.SpiSession;
  client: number;
  server: number;
  ev: number;
}

const pair = async (f: Family): Promise<Pair> => {
  const spi = await openSession(t, d);
  const p = await tcpPair(spi, f);
  return { spi, ...p, ev: spi.WSACreateEvent() };
};

const close = (p: Pair, s: number): Promise<number> => p.spi.WSPCloseSocket(s, S.out(0));
const shut = (p: Pair, s: number, how: number): Promise<number> => p.spi.WSPShutdown(s, how, S.out(0));

// ---- the peer closes.

const closed = new Scenario<Pair>(pair);

closed.step(t, 'test_close_events: the peer\'s closesocket records FD_CLOSE with 0', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await close(p, p.client);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 1000, 'after the peer\'s close');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'then');
});

closed.step(t, 'test_close_events: selecting the same events again does not record FD_CLOSE again', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after selecting again');
});

closed.step(t, 'test_close_events: selecting 0, then the events again, does not record FD_CLOSE again', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, 0);
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after selecting 0 then the events');
});

closed.step(t, 'test_close_events: the receive after FD_CLOSE returns 0 and records nothing', {}, async (c, p) => {
  const r = await recv(p.spi, p.server, 5);
  c.same([r.ret, r.bytes], [0, 0], 'receive');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after the receive');
  await close(p, p.server);
});

// ---- the peer shuts down its sending side.

const sdSend = new Scenario<Pair>(pair);

sdSend.step(t, 'test_close_events: the peer\'s SD_SEND records FD_CLOSE with 0', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await shut(p, p.client, S.SD_SEND);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 1000, 'after the peer\'s SD_SEND');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'then');
});

sdSend.step(t, 'test_close_events: the peer\'s closesocket after its SD_SEND records nothing more', {}, async (c, p) => {
  await close(p, p.client);
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after the peer\'s close');
  await close(p, p.server);
});

// ---- no other shutdown records anything.

const others = new Scenario<Pair>(pair);

others.step(t, 'test_close_events: SD_RECEIVE by the peer and SD_BOTH here record nothing', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await shut(p, p.client, S.SD_RECEIVE);
  await shut(p, p.server, S.SD_BOTH);
  await checkEvents(c, p.spi, p.server, p.ev, [], 200, 'after both shutdowns');
});

others.step(t, 'test_close_events: the peer\'s SD_SEND then records FD_CLOSE', {}, async (c, p) => {
  await shut(p, p.client, S.SD_SEND);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 200, 'after the peer\'s SD_SEND');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'then');
  await close(p, p.server);
  await close(p, p.client);
});

// ---- data, then the peer closes.

const data = new Scenario<Pair>(pair);

data.step(t, 'test_close_events: data from the peer records FD_READ', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  const s = await send(p.spi, p.client, 'data\0');
  c.same([s.ret, s.sent], [0, 5], 'the peer sends 5 bytes');
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_READ]], 200, 'after the data');
});

data.step(t, 'test_close_events: the peer\'s closesocket records FD_CLOSE while its data is still unread', {}, async (c, p) => {
  await close(p, p.client);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 200, 'after the peer\'s close');
});

data.step(t, 'test_close_events: a partial receive records FD_READ again', {}, async (c, p) => {
  const r = await recv(p.spi, p.server, 3);
  c.same([r.ret, r.bytes], [0, 3], 'receive of 3 bytes');
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_READ]], 200, 'after the partial receive');
});

data.step(t, 'test_close_events: receiving the rest records nothing', {}, async (c, p) => {
  const r = await recv(p.spi, p.server, 5);
  c.same([r.ret, r.bytes], [0, 2], 'receive of the last 2 bytes');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after the last bytes');
  await close(p, p.server);
});

// ---- close, then select.

const after = new Scenario<Pair>(pair);

after.step(t, 'test_close_events: a socket selected after its peer closed records FD_CLOSE', {}, async (c, p) => {
  await close(p, p.client);
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 200, 'after the selection');
  await close(p, p.server);
});

const subset = new Scenario<Pair>(pair);

subset.step(t, 'test_close_events: FD_CLOSE is recorded only once it is selected', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK & ~S.FD_CLOSE);
  await close(p, p.client);
  await checkEvents(c, p.spi, p.server, p.ev, [], 200, 'selected without FD_CLOSE');
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, 0]], 200, 'once FD_CLOSE is selected');
  await close(p, p.server);
});

// ---- a reset.

interface Reset {
  spi: S.SpiSession;
  server: number;
  ev: number;
  sock: import('node:net').Socket;
}

const reset = new Scenario<Reset>(async (f) => {
  const spi = await openSession(t, d);
  const { sock, server } = await nodePeerPair(t, spi, f);
  return { spi, server, sock, ev: spi.WSACreateEvent() };
});

reset.step(t, 'test_close_events: a reset by the peer records FD_CLOSE with WSAECONNABORTED', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await resetNode(p.sock);
  await checkEvents(c, p.spi, p.server, p.ev, [[S.FD_CLOSE, S.WSAECONNABORTED]], 200, 'after the reset');
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'then');
});

reset.step(t, 'test_close_events: after the reset, selecting the same events again records nothing', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after selecting again');
});

reset.step(t, 'test_close_events: after the reset, selecting 0, then the events again, records nothing', {}, async (c, p) => {
  await selectEvents(p.spi, p.server, p.ev, 0);
  await selectEvents(p.spi, p.server, p.ev, MASK);
  await checkEvents(c, p.spi, p.server, p.ev, [], 0, 'after selecting 0 then the events');
  await p.spi.WSPCloseSocket(p.server, S.out(0));
});
