/**
 * WSPSelect: which of the given sockets are ready, waiting up to the timeout for one of them.
 * Readiness is level-triggered and asked of each socket (EmulatedSocket.selectReady); a call that
 * finds nothing ready watches every socket it names and looks again whenever one of them changes.
 * The rules are Windows' as Wine's test_select records them (proto/README.md, WSPSelect).
 */
import * as W from '@spiwire/proto';
import type { Params, Result, TimeVal } from '@spiwire/proto';
import { fail, ok } from '../outcome.js';
import { SELECT_EXCEPT, SELECT_READ, SELECT_WRITE, type EmulatedSocket } from '../sockets/emulated-socket.js';
import { MAX_TIMER_MS } from '../daemon-context.js';
import type { SpiSession } from './methods.js';

type SelectResult = Result<'WSPSelect'>;

/** The three sets in the order Windows fills them, with the condition each looks for. */
const SETS = [
  { key: 'readfds', bit: SELECT_READ },
  { key: 'writefds', bit: SELECT_WRITE },
  { key: 'exceptfds', bit: SELECT_EXCEPT },
] as const;

export function select(session: SpiSession, p: Params<'WSPSelect'>): SelectResult | Promise<SelectResult> {
  const given = SETS.map((set) => p[set.key] ?? null);
  // All three sets NULL, or all empty: WSAEINVAL (Wine's test_select).
  if (given.every((handles) => handles === null || handles.length === 0)) return fail(W.WSAEINVAL);
  const sockets = new Map<number, EmulatedSocket>();
  for (const handles of given) {
    for (const h of handles ?? []) {
      if (sockets.has(h)) continue;
      const sock = session.lookup(h);
      // Any handle that is not a socket of the session fails the call; the sets stay as they were.
      if (!sock) return fail(W.WSAENOTSOCK);
      sockets.set(h, sock);
    }
  }
  const waitMs = timeoutMs(p.timeout ?? null);
  if (waitMs === null) return fail(W.WSAEINVAL);

  // What each socket is asked about: the conditions of the sets that name it (looking for
  // urgent data may cost a system call, so only a socket in exceptfds is asked about it).
  const wanted = new Map<number, number>();
  SETS.forEach((set, i) => {
    for (const h of given[i] ?? []) wanted.set(h, (wanted.get(h) ?? 0) | set.bit);
  });

  /** The ready sockets of each given set, in the order given, each once; closed ones left out. */
  const look = (closedReadable: number | null): SelectResult => {
    const readiness = new Map<number, number>();
    for (const [h, bits] of wanted) {
      const sock = sockets.get(h)!;
      // A socket closed while the call waited is reported readable (Windows wakes select() with
      // it in readfds), and in no other set.
      readiness.set(h, h === closedReadable ? SELECT_READ : sock.closed ? 0 : sock.selectReady(bits));
    }
    const out: { readfds?: number[]; writefds?: number[]; exceptfds?: number[] } = {};
    let count = 0;
    SETS.forEach((set, i) => {
      const handles = given[i];
      if (!handles) return;
      const ready = new Set<number>();
      for (const h of handles) if (readiness.get(h)! & set.bit) ready.add(h);
      out[set.key] = [...ready];
      count += ready.size;
    });
    return ok(out, count);
  };

  const now = look(null);
  if (now.ret > 0 || waitMs === 0) return now;
  if (session.selectWatches + sockets.size > W.MAX_SELECT_WATCHES) return fail(W.WSAENOBUFS);

  session.callWaits();
  return new Promise<SelectResult>((resolve) => {
    const unwatch: Array<() => void> = [];
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const settle = (r: SelectResult): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      for (const stop of unwatch) stop();
      session.selectWatches -= sockets.size;
      resolve(r);
    };
    session.selectWatches += sockets.size;
    for (const [h, sock] of sockets) {
      const stop = sock.watchSelect(
          wanted.get(h)!,
          // One of the conditions asked of this socket holds (the socket asks only itself on a
          // change): the answer looks at every socket of the call.
          () => {
            if (settled) return;
            const r = look(null);
            if (r.ret > 0) settle(r);
          },
          (errno) => {
            // Closed under the call: readable if readfds names it, else the handle is no longer
            // a socket. The daemon stopping (WSAENETDOWN) fails the call.
            if (errno !== W.WSAEINTR) settle(fail(errno));
            else settle(wanted.get(h)! & SELECT_READ ? look(h) : fail(W.WSAENOTSOCK));
          },
        );
      // Starting a watch can itself change the socket (a socket paused for the received-bytes
      // budget reads again) and so end the call: then this watch ends at once, and no other starts.
      if (settled) {
        stop();
        return;
      }
      unwatch.push(stop);
    }
    // What changed between the first look and the watches (an urgent byte before SIGURG was
    // watched, for one) is seen now.
    const again = look(null);
    if (again.ret > 0) settle(again);
    else if (waitMs !== Infinity) timer = setTimeout(() => settle(look(null)), waitMs);
  });
}

/**
 * The wait a timeout stands for, in whole milliseconds rounded up (a 500 us timeout still waits);
 * Infinity for none; null for a negative field (WSAEINVAL). Waits past the longest timer node
 * keeps (24.8 days) are cut to it.
 */
function timeoutMs(tv: TimeVal | null): number | null {
  if (tv === null) return Infinity;
  if (tv.sec < 0 || tv.usec < 0) return null;
  return Math.min(MAX_TIMER_MS, tv.sec * 1000 + Math.ceil(tv.usec / 1000));
}
