/**
 * Which of a daemon name's addresses the SDK connects to first.
 *
 * A farm's daemon service often resolves to every replica's address (Docker swarm's dnsrr, a
 * headless Kubernetes Service), leaving the spread over replicas to the clients. getaddrinfo does
 * not leave that order alone: glibc sorts by RFC 6724, whose rule 9 (longest matching prefix) it
 * applies to IPv4 addresses on the client's own subnet too, so each client keeps picking the
 * replica whose address shares the most leading bits with its own. Seen in CI: six rigs, three
 * replicas, every rig on one. The SDK therefore reorders what the lookup returns.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';

/**
 * 'shuffle' (the default): a random order within each address family, the families in the
 * order the system put them (so IPv6 still comes first where the system prefers it).
 * 'system': getaddrinfo's order, unchanged.
 * A number n: the addresses in ascending numeric order, starting at the n-th (modulo their count)
 * and wrapping round. Clients numbered 0, 1, 2, ... (a swarm task's slot, a StatefulSet's ordinal)
 * then spread evenly, and each always reaches the same replica.
 */
export type AddressOrder = 'shuffle' | 'system' | number;

/** Why order is not an AddressOrder (undefined stands for the default), or null when it is one. */
export function addressOrderError(order: unknown): TypeError | null {
  const ok = order === undefined || order === 'shuffle' || order === 'system' || (typeof order === 'number' && Number.isSafeInteger(order) && order >= 0);
  return ok ? null : new TypeError(`addressOrder is 'shuffle', 'system' or a whole number from 0, not ${JSON.stringify(order)}`);
}

function mustBeAddressOrder(order: unknown): void {
  const bad = addressOrderError(order);
  if (bad) throw bad;
}

/** The numeric order of two addresses of any families: IPv4 before IPv6, then byte by byte. */
function compareNumerically(a: LookupAddress, b: LookupAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  const x = addressBytes(a.address);
  const y = addressBytes(b.address);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

/** An address's bytes in network order (IPv6 with '::' expanded, a scope id ignored). */
function addressBytes(address: string): number[] {
  if (isIP(address) === 4) return address.split('.').map(Number);
  const bare = address.split('%')[0]!;
  const [head, tail] = bare.includes('::') ? bare.split('::') as [string, string] : [bare, undefined];
  let groups = head === '' ? [] : head.split(':');
  if (tail !== undefined) {
    const rest = tail === '' ? [] : tail.split(':');
    // An embedded IPv4 tail (::ffff:1.2.3.4) stands for two groups.
    const width = (g: string[]): number => g.reduce((n, s) => n + (s.includes('.') ? 2 : 1), 0);
    groups = [...groups, ...Array<string>(8 - width(groups) - width(rest)).fill('0'), ...rest];
  }
  const bytes: number[] = [];
  for (const g of groups) {
    if (g.includes('.')) bytes.push(...g.split('.').map(Number));
    else bytes.push(parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff);
  }
  return bytes;
}

/** Reorders a lookup's addresses as order says; random is for tests (default Math.random). */
export function orderAddresses(addresses: readonly LookupAddress[], order: AddressOrder = 'shuffle', random: () => number = Math.random): LookupAddress[] {
  mustBeAddressOrder(order);
  if (order === 'system' || addresses.length < 2) return [...addresses];
  if (typeof order === 'number') {
    const sorted = [...addresses].sort(compareNumerically);
    const start = order % sorted.length;
    return [...sorted.slice(start), ...sorted.slice(0, start)];
  }
  // Group by family in the order the families first appear, then Fisher-Yates within each.
  const families: LookupAddress[][] = [];
  for (const a of addresses) {
    const group = families.find((g) => g[0]!.family === a.family);
    if (group) group.push(a);
    else families.push([a]);
  }
  for (const g of families) {
    for (let i = g.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [g[i], g[j]] = [g[j]!, g[i]!];
    }
  }
  return families.flat();
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net.connect, tls.connect and http.request (and so for ws) that resolves with the
 * system resolver and reorders its answer. Node asks for every address (all: true) when it tries
 * them in turn (autoSelectFamily, the default since Node 20), and for one otherwise: the first.
 */
export function addressLookup(order: AddressOrder = 'shuffle'): (hostname: string, options: { family?: number | string; hints?: number; all?: boolean }, callback: LookupCallback) => void {
  mustBeAddressOrder(order);
  return (hostname, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0);
    dnsLookup(hostname, { family: family === 4 || family === 6 ? family : 0, hints: options.hints ?? 0, all: true }, (err, addresses) => {
      if (err) return callback(err, options.all ? [] : '', 0);
      const ordered = orderAddresses(addresses, order);
      if (options.all) return callback(null, ordered);
      const first = ordered[0];
      if (first === undefined) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}
