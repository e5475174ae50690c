/**
 * The ICMP errors a UDP socket's receives have yet to report (Windows reports each one by a
 * receive of its own): kept in order whatever their mix, up to MAX_PENDING_REPORTS.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { MAX_PENDING_REPORTS, PendingIcmpReports } from '../src/sockets/icmp-errors.js';

t.test('reports come out in the order they came, alternating kinds included, up to the limit', async (t) => {
  const r = new PendingIcmpReports();
  t.equal(r.take(), 0, 'none waits at first');
  const expected: number[] = [];
  for (let i = 0; i < MAX_PENDING_REPORTS + 100; i++) {
    const code = i % 3 === 0 ? P.WSAENETRESET : P.WSAECONNRESET;
    r.add(code);
    if (i < MAX_PENDING_REPORTS) expected.push(code);
  }
  r.add(P.WSAECONNRESET, 50);
  const got: number[] = [];
  while (r.pending) got.push(r.take());
  t.equal(got.length, MAX_PENDING_REPORTS, `${MAX_PENDING_REPORTS} kept, the rest dropped`);
  t.same(got, expected, 'in the order they came');
  r.add(P.WSAENETRESET, 2);
  r.add(P.WSAECONNRESET);
  t.same([r.take(), r.take(), r.take(), r.take()], [P.WSAENETRESET, P.WSAENETRESET, P.WSAECONNRESET, 0], 'a count adds that many, and the ring goes round');
  r.add(P.WSAECONNRESET, 3);
  r.clear();
  t.equal(r.pending, false, 'clear() forgets them');
  r.add(P.WSAEFAULT);
  t.equal(r.pending, false, 'another code is not a report');
});
