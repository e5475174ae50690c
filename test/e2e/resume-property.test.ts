/**
 * Randomized cuts during randomized workloads (issue 15): a proxy between the SDK and the daemon
 * cuts the connection at random moments (now, after some bytes, in the middle of a frame, after
 * some frames, in either direction, and again while the SDK reconnects), while sockets carry
 * overlapped sends with routines and with events, blocking and nonblocking sends, blocking
 * receives, and end with closes. Each run checks that every operation completed exactly once with
 * the right count, that each peer received exactly the reported bytes in order, that every byte a
 * peer wrote was received once, and that the session was never lost.
 *
 * SPIWIRE_RESUME_RUNS sets the number of runs (the campaign: npm run campaign:resume), and
 * SPIWIRE_RESUME_SEED replays a failing one.
 */
import t from 'tap';
import fc from 'fast-check';
import * as S from '@spiwire/client';
import { daemon, ovSend, overlappedTcp, connectedTcp, pattern, pollUntil, recvInto, send, setNonBlocking, tcpPeer, type PeerConnection } from '../helpers/harness.js';
import { cuttingProxy, type CutPoint, type Direction } from '../helpers/cutting-proxy.js';

const RUNS = Number(process.env['SPIWIRE_RESUME_RUNS'] ?? '') || 100;
const SEED = Number(process.env['SPIWIRE_RESUME_SEED'] ?? '') || undefined;

type OpKind = 'ov-routine' | 'ov-event' | 'blocking' | 'nonblocking' | 'recv';
const opArb = fc.record({
  kind: fc.constantFrom<OpKind>('ov-routine', 'ov-routine', 'ov-event', 'blocking', 'nonblocking', 'recv'),
  size: fc.oneof(fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 2000, max: 200_000 })),
  /** Which of the sending sockets. */
  sock: fc.integer({ min: 0, max: 1 }),
});

type CutKind = { how: 'now' } | { how: 'at'; dir: Direction; point: CutPoint };
const cutArb = fc.record({
  /** Before which op the cut is armed. */
  at: fc.nat(),
  cut: fc.oneof(
    fc.constant<CutKind>({ how: 'now' }),
    fc.record({ how: fc.constant('at' as const), dir: fc.constantFrom<Direction>('up', 'down'), point: fc.oneof(fc.integer({ min: 0, max: 3000 }).map((bytes): CutPoint => ({ bytes })), fc.integer({ min: 0, max: 4 }).map((frames): CutPoint => ({ frames }))) }),
  ),
  /** The network stays down this long after the cut; reconnections fail meanwhile. */
  downMs: fc.oneof(fc.constant(0), fc.integer({ min: 10, max: 300 })),
  /** While down, reconnections get this many bytes through before they are cut (0: refused). */
  downAfter: fc.constantFrom(0, 0, 20, 200),
});

interface Sock {
  s: number;
  conn: PeerConnection;
  /** What the peer must receive: the reported bytes of each send, in order. */
  expected: Buffer[];
  nonBlocking: boolean;
}

t.test('random cuts during random workloads keep every result exactly once', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000, defaultSndBuf: 16384 } });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 4, maxLength: 24 }), fc.array(cutArb, { minLength: 1, maxLength: 3 }), async (ops, cuts) => {
      run++;
      const proxy = await cuttingProxy(t, d.url);
      let lost: string | null = null;
      const spi = await S.connect(proxy.url, { autoApc: true, onLost: (e) => (lost = e.reason) });
      try {
        const peer = await tcpPeer(t, 'ipv4');
        const socks: Sock[] = [];
        for (let i = 0; i < 2; i++) {
          const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
          socks.push({ s, conn, expected: [], nonBlocking: false });
        }
        const rx = await connectedTcp(spi, 'ipv4', peer);
        let written = 0;
        let read = 0;
        const peerWrote: Buffer[] = [];
        const got: Buffer[] = [];
        const completions = new Map<number, number[]>();
        const events: Array<{ i: number; s: number; ov: S.WSAOVERLAPPED; ev: number }> = [];
        const slots: Array<{ sock: Sock; data: Buffer; pending: boolean }> = [];
        const outages: Array<Promise<void>> = [];
        for (let i = 0; i < ops.length; i++) {
          for (const c of cuts) {
            if (c.at % ops.length !== i) continue;
            if (c.downMs > 0) {
              proxy.setDown(true, c.downAfter);
              outages.push(new Promise<void>((r) => setTimeout(r, c.downMs)).then(() => proxy.setDown(false)));
            }
            if (c.cut.how === 'now') proxy.cutNow();
            else void proxy.cutAt(c.cut.dir, c.cut.point);
          }
          const op = ops[i]!;
          const sock = socks[op.sock]!;
          const data = pattern(op.size, run * 100 + i);
          if (op.kind === 'recv') {
            const piece = data.subarray(0, Math.min(op.size, 5000));
            rx.conn.socket.write(piece);
            peerWrote.push(piece);
            written += piece.length;
            const r = await recvInto(spi, rx.s, [Math.min(op.size, 8000)]);
            if (r.ret !== 0) throw new Error(`recv ${i}: ${S.wsaErrorName(r.errno)}`);
            got.push(Buffer.from(r.data));
            read += r.bytes;
            continue;
          }
          const wantNb = op.kind === 'nonblocking';
          if (wantNb !== sock.nonBlocking) {
            await setNonBlocking(spi, sock.s, wantNb);
            sock.nonBlocking = wantNb;
          }
          if (op.kind === 'ov-routine' || op.kind === 'ov-event') {
            const ev = op.kind === 'ov-event' ? spi.WSACreateEvent() : 0;
            const ov = new S.WSAOVERLAPPED(ev || undefined);
            const r = await ovSend(spi, sock.s, [data], op.kind === 'ov-routine' ? { ov, routine: (e, cb) => void completions.set(i, [...(completions.get(i) ?? []), e === 0 ? cb : -e]) } : { ov });
            if (r.ret === 0) {
              slots.push({ sock, data, pending: false });
              if (op.kind === 'ov-routine') {
                // Completed at once: the routine still runs, once, with the full count.
              } else events.push({ i, s: sock.s, ov, ev });
              sock.expected.push(data);
            } else if (r.err === S.WSA_IO_PENDING) {
              if (op.kind === 'ov-event') events.push({ i, s: sock.s, ov, ev });
              sock.expected.push(data);
            } else throw new Error(`overlapped send ${i}: ${S.wsaErrorName(r.err)}`);
            continue;
          }
          const [ret, err, n] = await send(spi, sock.s, [data]);
          if (ret !== 0) {
            if (op.kind === 'nonblocking' && err === S.WSAEWOULDBLOCK) continue;
            throw new Error(`${op.kind} send ${i}: ${S.wsaErrorName(err)}`);
          }
          if (n > op.size || (op.kind === 'blocking' && n !== op.size)) throw new Error(`${op.kind} send ${i} reported ${n} of ${op.size}`);
          sock.expected.push(data.subarray(0, n));
        }
        await Promise.all(outages);
        // Receives until every byte the peer wrote is in.
        while (read < written) {
          const r = await recvInto(spi, rx.s, [written - read]);
          if (r.ret !== 0) throw new Error(`final recv: ${S.wsaErrorName(r.errno)}`);
          got.push(Buffer.from(r.data));
          read += r.bytes;
        }
        if (!Buffer.concat(got).equals(Buffer.concat(peerWrote))) throw new Error('the receives did not get exactly what the peer wrote, in order');
        // Every overlapped send completes exactly once with its full count.
        for (const e of events) {
          const cb = S.out(0);
          const fl = S.out(0);
          const er = S.out(0);
          const ok = await spi.WSPGetOverlappedResult(e.s, e.ov, cb, true, fl, er);
          if (ok !== S.TRUE) throw new Error(`event send ${e.i}: ${S.wsaErrorName(er.value)}`);
          const size = ops[e.i]!.size;
          if (cb.value !== size) throw new Error(`event send ${e.i} completed with ${cb.value} of ${size}`);
        }
        const routines = ops.flatMap((o, i) => (o.kind === 'ov-routine' ? [i] : []));
        if (!(await pollUntil(() => routines.every((i) => completions.has(i)), 30000))) throw new Error(`a routine never ran: ${routines.filter((i) => !completions.has(i)).join(', ')}`);
        await new Promise((r) => setTimeout(r, 30));
        for (const i of routines) {
          const c = completions.get(i)!;
          if (c.length !== 1 || c[0] !== ops[i]!.size) throw new Error(`routine of send ${i}: ${JSON.stringify(c)} for ${ops[i]!.size} bytes`);
        }
        if (spi.pendingOperations !== 0) throw new Error(`${spi.pendingOperations} operations still pending`);
        // Closes: each peer gets exactly the reported bytes, then FIN.
        for (const sock of socks) {
          if (sock.nonBlocking) await setNonBlocking(spi, sock.s, false);
          const e = S.out(0);
          if ((await spi.WSPCloseSocket(sock.s, e)) !== 0) throw new Error(`close: ${S.wsaErrorName(e.value)}`);
        }
        for (const sock of socks) {
          await sock.conn.ended;
          const want = Buffer.concat(sock.expected);
          if (!sock.conn.received().equals(want)) throw new Error(`a peer got ${sock.conn.received().length} bytes where ${want.length} were reported (or not in order)`);
        }
        if (lost !== null) throw new Error(`the session was lost: ${lost}`);
      } catch (err) {
        throw lost !== null ? new Error(`${err instanceof Error ? err.message : String(err)} (the session was lost: ${lost})`) : err;
      } finally {
        await spi.close();
        await proxy.close();
      }
    }),
    { numRuns: RUNS, seed: SEED, endOnFailure: true },
  );
  t.pass(`${run} randomized runs kept every result exactly once across cuts`);
});
