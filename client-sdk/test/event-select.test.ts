/**
 * The WSPEventSelect mirror (src/event-select.ts) with a real event table: the selection in place
 * before the call and settled after it, network events recorded and reported once, the event
 * object set when they arrive.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { EventSelectMirror } from '../src/event-select.js';
import { EventTable } from '../src/threads.js';

function setup(): { mirror: EventSelectMirror; events: EventTable; h: number } {
  const events = new EventTable();
  return { mirror: new EventSelectMirror(events), events, h: events.create() };
}

function errorsWith(bit: number, code: number): number[] {
  const e = new Array<number>(P.FD_MAX_EVENTS).fill(0);
  e[bit] = code;
  return e;
}

t.test('events recorded for a selected socket are reported once, with their error codes, and set the event', async (t) => {
  const { mirror, events, h } = setup();
  mirror.select(3, h, P.FD_READ | P.FD_CLOSE)(true);
  t.same(mirror.selectionOf(3), { hEvent: h, events: P.FD_READ | P.FD_CLOSE });
  mirror.onNetworkEvents({ s: 3, events: P.FD_READ, errors: {} });
  t.equal(events.get(h)?.signaled, true, 'the event object is set');
  mirror.onNetworkEvents({ s: 3, events: P.FD_CLOSE, errors: { FD_CLOSE: P.WSAECONNRESET } });
  t.same(mirror.take(3), { lNetworkEvents: P.FD_READ | P.FD_CLOSE, iErrorCode: errorsWith(P.FD_CLOSE_BIT, P.WSAECONNRESET) });
  t.same(mirror.take(3), { lNetworkEvents: 0, iErrorCode: errorsWith(0, 0) }, 'taken once: cleared');
});

t.test('the selection is in place before the call: events right behind the reply are kept', async (t) => {
  const { mirror, events, h } = setup();
  const settle = mirror.select(3, h, P.FD_READ);
  mirror.onNetworkEvents({ s: 3, events: P.FD_READ });
  settle(true);
  t.equal(events.get(h)?.signaled, true);
  t.equal(mirror.take(3).lNetworkEvents, P.FD_READ);
});

t.test('a call that failed puts back the selection that was there before, or none', async (t) => {
  const { mirror, events, h } = setup();
  const other = events.create();
  mirror.select(3, h, P.FD_READ)(true);
  mirror.select(3, other, P.FD_WRITE)(false);
  t.same(mirror.selectionOf(3), { hEvent: h, events: P.FD_READ }, 'the previous selection is back');
  mirror.select(4, h, P.FD_READ)(false);
  t.equal(mirror.selectionOf(4), undefined, 'no selection before: none after');
});

t.test('lNetworkEvents 0 cancels the selection; closing the socket forgets it', async (t) => {
  const { mirror, h } = setup();
  mirror.select(3, h, P.FD_READ)(true);
  mirror.select(3, 0, 0)(true);
  t.equal(mirror.selectionOf(3), undefined);
  mirror.select(5, h, P.FD_READ)(true);
  mirror.forget(5);
  t.equal(mirror.selectionOf(5), undefined);
});

t.test('notifications for sockets not selected, or malformed, change nothing', async (t) => {
  const { mirror, events, h } = setup();
  mirror.select(3, h, P.FD_READ)(true);
  mirror.onNetworkEvents({ s: 9, events: P.FD_READ });
  mirror.onNetworkEvents({ s: 3, events: 'FD_READ' });
  mirror.onNetworkEvents({ events: P.FD_READ });
  t.equal(events.get(h)?.signaled, false);
  t.equal(mirror.take(3).lNetworkEvents, 0);
  t.same(mirror.take(9), { lNetworkEvents: 0, iErrorCode: errorsWith(0, 0) }, 'a socket never selected reports nothing');
});
