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
import { daemon, ovSend, overlappedTcp, pattern, pollUntil, recvInto, send, setNonBlocking, tcpPeer, type PeerConnection } from '../helpers/harness.js';
import { cuttingProxy, type CutPoint, type Direction } from '../helpers/cutting-proxy.js';

const RUNS = Number(process.env['SPIWIRE_RESUME_RUNS'] ?? '') || 100;
const SEED = Number(process.env['SPIWIRE_RESUME_SEED'] ?? '') || undefined;

type OpKind = 'ov-routine' | 'ov-event' | 'blocking' | 'nonblocking' | 'recv' | 'ov-recv' | 'flush';
const opArb = fc.record({
  kind: fc.constantFrom<OpKind>('ov-routine', 'ov-routine', 'ov-event', 'blocking', 'nonblocking', 'nonblocking', 'recv', 'ov-recv', 'flush'),
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

/** One send as the peer must see it: its bytes, and how many of them the send reported (null: its completion will say). */
interface Sent {
  data: Buffer;
  count: number | null;
  /** The op index, for a pending overlapped send. */
  i: number;
}

interface Sock {
  s: number;
  conn: PeerConnection;
  sends: Sent[];
  nonBlocking: boolean;
}

/** A completion as a routine or WSPGetOverlappedResult reported it. */
interface Done {
  err: number;
  bytes: number;
}

t.test('random cuts during random workloads keep every result exactly once', async (t) => {
  const d = await daemon(t, { limits: { resumeGraceMs: 20000, defaultSndBuf: 16384 } });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 4, maxLength: 24 }), fc.array(cutArb, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 300 }), async (ops, cuts, pauseMs) => {
      run++;
      const proxy = await cuttingProxy(t, d.url);
      let lost: string | null = null;
      const spi = await S.connect(proxy.url, { autoApc: true, onLost: (e) => (lost = e.reason) });
      try {
        const peer = await tcpPeer(t, 'ipv4');
        const socks: Sock[] = [];
        for (let i = 0; i < 2; i++) {
          const { s, conn } = await overlappedTcp(spi, 'ipv4', peer);
          socks.push({ s, conn, sends: [], nonBlocking: false });
        }
        // The second peer does not read for a while: sends pend, nonblocking ones come back short.
        socks[1]!.conn.socket.pause();
        const reading = new Promise<void>((r) => setTimeout(r, pauseMs)).then(() => void socks[1]!.conn.socket.resume());
        const rx = await overlappedTcp(spi, 'ipv4', peer);
        let written = 0;
        let read = 0;
        const peerWrote: Buffer[] = [];
        const got: Buffer[] = [];
        const completions = new Map<number, Done[]>();
        const record = (i: number): S.LPWSAOVERLAPPED_COMPLETION_ROUTINE => (err, bytes) => void completions.set(i, [...(completions.get(i) ?? []), { err, bytes }]);
        const events: Array<{ i: number; s: number; ov: S.WSAOVERLAPPED }> = [];
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
          if (op.kind === 'recv' || op.kind === 'ov-recv') {
            const piece = data.subarray(0, Math.min(op.size, 5000));
            const room = Math.min(op.size, 8000);
            if (op.kind === 'ov-recv') {
              // Posted before the bytes exist: it pends, then completes once with what it got.
              const buf = new Uint8Array(room);
              const e = S.out(0);
              const ret = await spi.WSPRecv(rx.s, [S.wsabuf(buf)], 1, S.out(0), S.out(0), new S.WSAOVERLAPPED(), record(i), null, e);
              if (ret !== 0 && e.value !== S.WSA_IO_PENDING) throw new Error(`overlapped recv ${i}: ${S.wsaErrorName(e.value)}`);
              rx.conn.socket.write(piece);
              peerWrote.push(piece);
              written += piece.length;
              if (!(await pollUntil(() => completions.has(i), 30000))) throw new Error(`overlapped recv ${i} never completed`);
              const c = completions.get(i)![0]!;
              if (c.err !== 0 || c.bytes < 1) throw new Error(`overlapped recv ${i}: ${JSON.stringify(c)}`);
              got.push(Buffer.from(buf.subarray(0, c.bytes)));
              read += c.bytes;
              continue;
            }
            rx.conn.socket.write(piece);
            peerWrote.push(piece);
            written += piece.length;
            const r = await recvInto(spi, rx.s, [room]);
            if (r.ret !== 0) throw new Error(`recv ${i}: ${S.wsaErrorName(r.errno)}`);
            got.push(Buffer.from(r.data));
            read += r.bytes;
            continue;
          }
          if (op.kind === 'flush') {
            // SIO_FLUSH: sends not yet taken complete with WSA_OPERATION_ABORTED and the bytes taken.
            const e = S.out(0);
            const ret = await spi.WSPIoctl(sock.s, S.SIO_FLUSH, null, 0, null, 0, S.out(0), null, null, null, e);
            if (ret !== 0) throw new Error(`flush ${i}: ${S.wsaErrorName(e.value)}`);
            continue;
          }
          const wantNb = op.kind === 'nonblocking';
          if (wantNb !== sock.nonBlocking) {
            await setNonBlocking(spi, sock.s, wantNb);
            sock.nonBlocking = wantNb;
          }
          if (op.kind === 'ov-routine' || op.kind === 'ov-event') {
            const ov = new S.WSAOVERLAPPED(op.kind === 'ov-event' ? spi.WSACreateEvent() : undefined);
            const r = await ovSend(spi, sock.s, [data], op.kind === 'ov-routine' ? { ov, routine: record(i) } : { ov });
            if (r.ret !== 0 && r.err !== S.WSA_IO_PENDING) throw new Error(`overlapped send ${i}: ${S.wsaErrorName(r.err)}`);
            if (op.kind === 'ov-event') events.push({ i, s: sock.s, ov });
            sock.sends.push({ data, count: null, i });
            continue;
          }
          const [ret, err, n] = await send(spi, sock.s, [data]);
          if (ret !== 0) {
            if (op.kind === 'nonblocking' && err === S.WSAEWOULDBLOCK) continue;
            throw new Error(`${op.kind} send ${i}: ${S.wsaErrorName(err)}`);
          }
          if (n > op.size || (op.kind === 'blocking' && n !== op.size)) throw new Error(`${op.kind} send ${i} reported ${n} of ${op.size}`);
          sock.sends.push({ data, count: n, i });
        }
        await Promise.all(outages);
        await reading;
        // Receives until every byte the peer wrote is in.
        while (read < written) {
          const r = await recvInto(spi, rx.s, [written - read]);
          if (r.ret !== 0) throw new Error(`final recv: ${S.wsaErrorName(r.errno)}`);
          got.push(Buffer.from(r.data));
          read += r.bytes;
        }
        if (!Buffer.concat(got).equals(Buffer.concat(peerWrote))) throw new Error('the receives did not get exactly what the peer wrote, in order');
        // Every overlapped send completes exactly once: its full count, or aborted by a flush with the bytes taken.
        for (const e of events) {
          const cb = S.out(0);
          const er = S.out(0);
          const ok = await spi.WSPGetOverlappedResult(e.s, e.ov, cb, true, S.out(0), er);
          completions.set(e.i, [{ err: ok === S.TRUE ? 0 : er.value, bytes: cb.value }]);
        }
        const overlapped = ops.flatMap((o, i) => (o.kind === 'ov-routine' ? [i] : []));
        if (!(await pollUntil(() => overlapped.every((i) => completions.has(i)), 30000))) throw new Error(`a routine never ran: ${overlapped.filter((i) => !completions.has(i)).join(', ')}`);
        await new Promise((r) => setTimeout(r, 30));
        for (const sock of socks) {
          for (const sent of sock.sends) {
            if (sent.count !== null) continue;
            const c = completions.get(sent.i)!;
            if (c.length !== 1) throw new Error(`send ${sent.i} completed ${c.length} times: ${JSON.stringify(c)}`);
            const { err, bytes } = c[0]!;
            if (err === 0 ? bytes !== sent.data.length : err !== S.WSA_OPERATION_ABORTED || bytes > sent.data.length) throw new Error(`send ${sent.i} of ${sent.data.length} bytes completed with ${JSON.stringify(c[0])}`);
            sent.count = bytes;
          }
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
          const want = Buffer.concat(sock.sends.map((x) => x.data.subarray(0, x.count ?? 0)));
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
