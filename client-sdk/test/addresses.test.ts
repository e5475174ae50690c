/**
 * The SDK's choice among a daemon name's addresses (src/addresses.ts): the orders themselves, the
 * lookup net.connect calls with the system resolver, and a session opened through it.
 */
import t from 'tap';
import type { LookupAddress } from 'node:dns';
import { addressLookup, orderAddresses } from '../src/addresses.js';
import { RpcConnection } from '../src/rpc.js';
import { fakeDaemon } from './helpers/fake-daemon.js';

const v4 = (address: string): LookupAddress => ({ address, family: 4 });
const v6 = (address: string): LookupAddress => ({ address, family: 6 });
const names = (list: LookupAddress[]): string[] => list.map((a) => a.address);

// As a swarm's dnsrr name answers for three replicas, after glibc sorted it for one client.
const replicas = [v4('10.77.0.10'), v4('10.77.0.9'), v4('10.77.0.100')];

t.test("'system' keeps the resolver's order", async (t) => {
  t.same(names(orderAddresses(replicas, 'system')), ['10.77.0.10', '10.77.0.9', '10.77.0.100']);
});

t.test('a number picks that index in numeric order, wrapping round', async (t) => {
  // Numeric, not textual: .9 < .10 < .100.
  t.same(names(orderAddresses(replicas, 0)), ['10.77.0.9', '10.77.0.10', '10.77.0.100']);
  t.same(names(orderAddresses(replicas, 1)), ['10.77.0.10', '10.77.0.100', '10.77.0.9']);
  t.same(names(orderAddresses(replicas, 5)), ['10.77.0.100', '10.77.0.9', '10.77.0.10']);
  // Slots 1..6 over three replicas reach each twice.
  const firsts = [1, 2, 3, 4, 5, 6].map((slot) => orderAddresses(replicas, slot)[0]!.address);
  t.same(firsts.sort(), ['10.77.0.10', '10.77.0.10', '10.77.0.100', '10.77.0.100', '10.77.0.9', '10.77.0.9']);
  // IPv6 groups compare as numbers too ('::' expanded, an embedded IPv4 tail as two groups).
  const six = [v6('fd00::a'), v6('fd00::9'), v6('fd00::ffff:1.2.3.4'), v6('fd00:0:0:0:0:0:0:1')];
  t.same(names(orderAddresses(six, 0)), ['fd00:0:0:0:0:0:0:1', 'fd00::9', 'fd00::a', 'fd00::ffff:1.2.3.4']);
  // IPv4 before IPv6 in numeric order.
  t.same(names(orderAddresses([v6('::1'), v4('127.0.0.1')], 0)), ['127.0.0.1', '::1']);
});

t.test("'shuffle' draws within each family and keeps the families' order", async (t) => {
  const mixed = [v6('fd00::1'), v6('fd00::2'), v4('10.0.0.1'), v4('10.0.0.2'), v4('10.0.0.3')];
  // A random source that always picks index 0 moves each family's last address to the front.
  const drawn = orderAddresses(mixed, 'shuffle', () => 0);
  t.same(names(drawn), ['fd00::2', 'fd00::1', '10.0.0.2', '10.0.0.3', '10.0.0.1']);
  t.same(names(drawn).sort(), names(mixed).sort(), 'nothing lost or repeated');
  // With Math.random every replica comes first at some point (200 draws: (2/3)^200 of missing one).
  const seen = new Set<string>();
  for (let i = 0; i < 200 && seen.size < replicas.length; i++) seen.add(orderAddresses(replicas)[0]!.address);
  t.equal(seen.size, replicas.length);
});

t.test('the lookup answers in both of the shapes net.connect asks for', async (t) => {
  const lookup = addressLookup(0);
  const all = await new Promise<unknown>((resolve, reject) => lookup('localhost', { all: true }, (err, a) => (err ? reject(err) : resolve(a))));
  t.ok(Array.isArray(all) && all.length > 0 && all.every((a: LookupAddress) => a.family === 4 || a.family === 6), 'a list of addresses');
  const one = await new Promise<[unknown, unknown]>((resolve, reject) => lookup('localhost', { family: 4 }, (err, a, f) => (err ? reject(err) : resolve([a, f]))));
  t.same(one, ['127.0.0.1', 4]);
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => lookup('no-such-host.invalid', { all: true }, (e) => resolve(e)));
  t.match(err, { code: /ENOTFOUND|EAI_AGAIN/ });
});

t.test('a session opens through a name with every order; a bad order is refused', async (t) => {
  const d = await fakeDaemon(t);
  const url = d.url.replace('127.0.0.1', 'localhost');
  for (const addressOrder of ['shuffle', 'system', 3] as const) {
    const [conn] = await Promise.all([RpcConnection.open(url, { addressOrder }), d.peer()]);
    t.ok(conn.isOpen, `addressOrder ${addressOrder}`);
    conn.terminate();
  }
  await t.rejects(RpcConnection.open(url, { addressOrder: -1 }), /addressOrder is 'shuffle', 'system' or a whole number/);
  await t.rejects(RpcConnection.open(url, { addressOrder: 'first' as never }), TypeError);
  t.throws(() => orderAddresses(replicas, 1.5), TypeError, 'orderAddresses checks the order too');
  t.throws(() => addressLookup(Number.NaN), TypeError, 'and so does addressLookup');
});
