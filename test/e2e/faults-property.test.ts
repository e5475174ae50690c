/**
 * Property: random sets of fault rules (block for a time or until bytes drain, short, delay,
 * reorder, link, transient errors; picked by nth, every, afterBytes or a seeded probability) on a
 * real TCP connection, under a mix of overlapped, blocking and nonblocking sends. Whatever the
 * rules, the guarantees of proto/README.md section 19 hold:
 * - a send that returned 0 or WSA_IO_PENDING completes exactly once (overlapped) with a count no
 *   larger than what it offered; a send that failed at once posts no completion;
 * - the peer receives exactly, in submission order, the bytes each send reported.
 *
 * Campaigns: SPIWIRE_FAULT_PROPERTY_RUNS=n runs n rule sets instead of 12:
 *   npx tsc -b && SPIWIRE_FAULT_PROPERTY_RUNS=500 node test/dist/e2e/faults-property.test.js
 */
import t from 'tap';
import fc from 'fast-check';
import * as S from '@spiwire/client';
import { daemon, overlappedTcp, ovSend, pattern, pollUntil, roundTrip, send, session, setNonBlocking, tcpBytesBeforeFence, tcpPeer } from '../helpers/harness.js';

const RUNS = Number(process.env['SPIWIRE_FAULT_PROPERTY_RUNS'] ?? '') || 12;

const actionArb: fc.Arbitrary<S.FaultAction> = fc.oneof(
  fc.integer({ min: 1, max: 30 }).map((ms) => ({ type: 'block' as const, ms })),
  fc.integer({ min: 1, max: 5000 }).map((drained) => ({ type: 'block' as const, drained })),
  fc.integer({ min: 1, max: 700 }).map((max) => ({ type: 'short' as const, max })),
  fc.integer({ min: 1, max: 30 }).map((ms) => ({ type: 'delay' as const, ms })),
  fc.integer({ min: 1, max: 30 }).map((windowMs) => ({ type: 'reorder' as const, windowMs })),
  fc.integer({ min: 200_000, max: 2_000_000 }).map((bytesPerSecond) => ({ type: 'link' as const, bytesPerSecond, latencyMs: 1 })),
  fc.constantFrom(S.WSAENOBUFS, S.WSAEWOULDBLOCK).map((code) => ({ type: 'error' as const, code })),
);

const matchArb: fc.Arbitrary<Omit<S.FaultMatch, 'socket'>> = fc.oneof(
  fc.integer({ min: 1, max: 20 }).map((nth) => ({ nth })),
  fc.integer({ min: 1, max: 6 }).map((every) => ({ every })),
  fc.integer({ min: 0, max: 20_000 }).map((afterBytes) => ({ afterBytes })),
  fc.double({ min: 0, max: 1, noNaN: true }).map((probability) => ({ probability })),
);

const ruleArb = fc.record({ match: matchArb, action: actionArb, seed: fc.integer({ min: 0, max: 1000 }), times: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }) });

type Mode = 'overlapped' | 'blocking' | 'nonblocking';
const sendArb = fc.record({ mode: fc.constantFrom<Mode>('overlapped', 'overlapped', 'blocking', 'nonblocking'), size: fc.integer({ min: 1, max: 3000 }) });

t.test('random fault rules never break exactly-once completion or the bytes the peer gets', async (t) => {
  const d = await daemon(t);
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(ruleArb, { minLength: 1, maxLength: 4 }), fc.array(sendArb, { minLength: 5, maxLength: 30 }), async (rules, sends) => {
      run++;
      const spi = await S.connect(d.url, { autoApc: true });
      try {
        const peer = await tcpPeer(t, run % 2 ? 'ipv4' : 'ipv6');
        const { s, conn } = await overlappedTcp(spi, run % 2 ? 'ipv4' : 'ipv6', peer);
        for (const r of rules) await spi.faults.add({ ...r, match: { ...r.match, socket: s } });
        // Per send: what it offered, and what it reported (failed at once, a count, or pending).
        const outcomes: Array<{ data: Buffer; bytes: number | 'failed' | 'pending' }> = [];
        const completions = new Map<number, number[]>();
        let nonBlocking = false;
        for (let i = 0; i < sends.length; i++) {
          const { mode, size } = sends[i]!;
          const data = pattern(size, run * 1000 + i);
          if ((mode === 'nonblocking') !== nonBlocking) {
            nonBlocking = mode === 'nonblocking';
            await setNonBlocking(spi, s, nonBlocking);
          }
          let ret: number;
          let err: number;
          let n = 0;
          if (mode === 'overlapped') {
            const r = await ovSend(spi, s, [data], { routine: (e, cb) => void completions.set(i, [...(completions.get(i) ?? []), e === 0 ? cb : -e]) });
            [ret, err] = [r.ret, r.err];
          } else [ret, err, n] = await send(spi, s, [data]);
          if (ret !== 0 && err !== S.WSA_IO_PENDING) {
            // Only the transient codes the rules may inject, or a real WSAEWOULDBLOCK.
            if (err !== S.WSAENOBUFS && err !== S.WSAEWOULDBLOCK) throw new Error(`send ${i} (${mode}): ${S.wsaErrorName(err)}`);
            outcomes.push({ data, bytes: 'failed' });
          } else if (mode === 'overlapped') outcomes.push({ data, bytes: 'pending' });
          else {
            if (n > size) throw new Error(`send ${i} reported ${n} of ${size} bytes`);
            outcomes.push({ data, bytes: n });
          }
        }
        const pending = outcomes.flatMap((o, i) => (o.bytes === 'pending' ? [i] : []));
        if (!(await pollUntil(() => pending.every((i) => completions.has(i)), 20000))) throw new Error('a pending send never completed');
        await roundTrip(spi);
        const expected: Buffer[] = [];
        for (let i = 0; i < outcomes.length; i++) {
          const o = outcomes[i]!;
          const c = completions.get(i);
          if (o.bytes === 'failed') {
            if (c) throw new Error(`send ${i} failed at once, yet completed`);
            continue;
          }
          if (o.bytes !== 'pending') {
            expected.push(o.data.subarray(0, o.bytes));
            continue;
          }
          if (!c || c.length !== 1) throw new Error(`send ${i} completed ${c?.length ?? 0} times`);
          if (c[0]! < 0 || c[0]! > o.data.length) throw new Error(`send ${i} completed with ${c[0]}`);
          expected.push(o.data.subarray(0, c[0]!));
        }
        for (const r of await spi.faults.list()) await spi.faults.remove(r.id);
        if (nonBlocking) await setNonBlocking(spi, s, false);
        const want = Buffer.concat(expected);
        const got = await tcpBytesBeforeFence(spi, s, conn, want.length);
        if (!got.equals(want)) throw new Error(`the peer got ${got.length} bytes where ${want.length} were reported (or not in order)`);
      } finally {
        await spi.close();
      }
    }),
    { numRuns: RUNS, seed: Number(process.env['SPIWIRE_FAULT_PROPERTY_SEED'] ?? '') || undefined },
  );
  t.pass(`${run} rule sets held the guarantees`);
});

