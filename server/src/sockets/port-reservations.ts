/**
 * Addresses bound by emulated sockets, from the bind to their close. node:net cannot hold a bound,
 * idle TCP socket, so a TCP bind is probed on the real stack and recorded here; the record also
 * decides, before the host is asked, what Windows decides between two sockets of one port: sharing
 * with SO_REUSEADDR, SO_EXCLUSIVEADDRUSE, and a dual-stack IPv6 socket (IPV6_V6ONLY off) that also
 * takes IPv4 addresses. The rules follow Wine's test_reuseaddr, which records Windows' answers.
 *
 * Sharing stays within a session: Windows lets one user's sockets share a port, not another
 * user's take it over, and sessions here are separate clients. A socket of another session whose
 * address meets this one's gets WSAEADDRINUSE, as the host would give.
 *
 * TCP listeners on one identical address (possible with SO_REUSEADDR on both) form a group: the
 * oldest holds the real listening socket, the others wait and the next takes over when it closes,
 * which is how Windows hands connections out among them. The host never sees two listening
 * sockets on one port: a real socket is always exclusive, so no other program can join it.
 *
 * Windows also lets an any-address listener and one on a specific address (loopback, say) share a
 * port without options, and a connection to the specific address goes to its own listener (Wine's
 * test_reuseaddr). Linux would need SO_REUSEPORT for that, which would let any program of the same
 * user join the port; so the any-address group alone holds a real socket, and the connections it
 * accepts for a specific address that has a listening group are handed to that group ("routed").
 * When the any-address group goes, the specific groups open real sockets of their own again.
 */
import type { Socket } from 'node:net';
import * as W from '@spiwire/proto';
import { parseAddressText } from '@spiwire/proto';

export interface Reservation {
  proto: 'tcp' | 'udp';
  /** The session of the socket: sharing stays within one. */
  session: string;
  family: number;
  /** The address text, without a scope suffix. */
  address: string;
  /** An IPv6 scope as an interface index (0: none), however the client spelled it. */
  scope: number;
  port: number;
  /** SO_REUSEADDR when the socket bound. */
  reuse: boolean;
  /** SO_EXCLUSIVEADDRUSE when the socket bound. */
  exclusive: boolean;
  /** An AF_INET6 socket with IPV6_V6ONLY off. */
  dualStack: boolean;
}

/** One address family's view of a binding. */
interface View {
  v4: boolean;
  address: string;
  wildcard: boolean;
  /** A dual-stack [::] seen from IPv4: it covers IPv4 addresses but is not 0.0.0.0 itself. */
  weak: boolean;
}

const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/** The IPv4 address an IPv4-mapped IPv6 address (canonical text) stands for, else null. */
function mappedV4(canonical: string): string | null {
  const m = MAPPED.exec(canonical);
  if (!m) return null;
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2]!, 16);
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

function viewsOf(r: Reservation): View[] {
  if (r.family === W.AF_INET) return [{ v4: true, address: r.address, wildcard: r.address === '0.0.0.0', weak: false }];
  const canonical = parseAddressText(r.address)?.canonical ?? r.address;
  const v4 = r.dualStack ? mappedV4(canonical) : null;
  // A dual-stack socket bound to a mapped address holds that IPv4 address (Wine's rows 15-17).
  if (v4 !== null) return [{ v4: true, address: v4, wildcard: v4 === '0.0.0.0', weak: false }];
  const wildcard = canonical === '::';
  const views: View[] = [{ v4: false, address: r.scope ? `${canonical}%${r.scope}` : canonical, wildcard, weak: false }];
  if (wildcard && r.dualStack) views.push({ v4: true, address: '0.0.0.0', wildcard: true, weak: true });
  return views;
}

/**
 * Windows' answer when `next` binds beside `held` on the same port: 0, or the WSA code; null when
 * the two addresses do not meet.
 * - The same address: shared only when both set SO_REUSEADDR; WSAEACCES when only the newcomer
 *   did (it may not take over an address whose holder did not agree), else WSAEADDRINUSE.
 * - One covers the other (a wildcard and a specific address): allowed, unless the wildcard is
 *   exclusive: WSAEACCES when it was there first, WSAEADDRINUSE when it comes second.
 */
function conflict(held: Reservation, a: View, next: Reservation, b: View): number | null {
  if (a.v4 !== b.v4) return null;
  if (a.address === b.address && a.weak === b.weak) {
    if (held.reuse && next.reuse) return 0;
    return next.reuse ? W.WSAEACCES : W.WSAEADDRINUSE;
  }
  // The weak [::] covers 0.0.0.0; otherwise only a wildcard covers, a specific address.
  const heldCovers = a.wildcard && (!b.wildcard || (a.weak && !b.weak));
  const nextCovers = b.wildcard && (!a.wildcard || (b.weak && !a.weak));
  if (!heldCovers && !nextCovers) return null;
  if (heldCovers && held.exclusive) return W.WSAEACCES;
  if (nextCovers && next.exclusive) return W.WSAEADDRINUSE;
  return 0;
}

/** The identity of a listening address: protocol, family view, address, port, and whether it also serves IPv4. */
function addressKey(r: Reservation): string {
  return groupKey(groupAddressOf(r));
}

/** The key of a listening group's address (addressKey), from its address as routing sees it. */
function groupKey(g: GroupAddress): string {
  return `${portKey(g.proto, g.port)} ${g.v4 ? 4 : 6} ${g.address}${g.dual ? ' dual' : ''}`;
}

/** What the daemon asks the host about one port (probes, listens, takeovers) waits its turn under this key. */
function portKey(proto: Reservation['proto'], port: number): string {
  return `${proto} ${port}`;
}

/** Binds to port 0 whose port the host gave turned out held by another socket: tries before giving up. */
export const MAX_PORT_TRIES = 8;

/** What a listening socket lets its group do with it. */
export interface ListenerHooks {
  /** Opens the real listening socket: 0 or the WSA code. */
  open: () => Promise<number>;
  /** Opens the real listening socket, for a waiting listener whose turn came: 0 or the WSA code. */
  takeOver: () => Promise<number>;
  /** Queues a connection that the any-address listener of the port accepted for this address. */
  adopt: (conn: Socket) => void;
  /** Closes the real listening socket: an any-address listener of the port accepts for it now. */
  dropServer: () => void;
}

interface Listener extends ListenerHooks {
  owner: number;
}

/** The address a group of listeners shares, as seen for routing between groups of one port. */
interface GroupAddress {
  proto: Reservation['proto'];
  port: number;
  v4: boolean;
  address: string;
  wildcard: boolean;
  /** Dual-stack sockets are not routed between (their real sockets cover both families). */
  dual: boolean;
  /** With an IPv6 scope: not routed either (a connection's local address names no scope). */
  scoped: boolean;
}

function groupAddressOf(r: Reservation): GroupAddress {
  const v = viewsOf(r)[0]!;
  return { proto: r.proto, port: r.port, v4: v.v4, address: v.address, wildcard: v.wildcard, dual: r.dualStack, scoped: r.scope !== 0 };
}

/** b is a specific address of the same port and family that the any address a covers. */
function covers(a: GroupAddress, b: GroupAddress): boolean {
  return a.wildcard && !b.wildcard && !a.dual && !b.dual && !b.scoped && a.proto === b.proto && a.port === b.port && a.v4 === b.v4;
}

export class PortReservations {
  private readonly held = new Map<number, Reservation>();
  /** TCP listeners by address, oldest first: the first holds the real socket (unless routed). */
  private readonly listeners = new Map<string, Listener[]>();
  private readonly listenerKeys = new Map<number, string>();
  /** Each group's address. */
  private readonly groupAddresses = new Map<string, GroupAddress>();
  /** Groups of a specific address that hold no real socket: the port's any-address group accepts for them. */
  private readonly routed = new Set<string>();
  /** Per port, the bind, listen or takeover under way: they run one after another (onPort). */
  private readonly turns = new Map<string, Promise<unknown>>();
  /** Bound sockets whose port the kernel would not let them hold (native/port-hold.ts), by owner. */
  private readonly unheld = new Map<number, () => void>();

  /**
   * The socket could not hold its port in the kernel: a listening socket of the daemon's has that
   * very address. retry() runs once another socket of the port has let it go (closed).
   */
  holdLater(owner: number, retry: () => void): void {
    if (this.held.has(owner)) this.unheld.set(owner, retry);
  }

  /** 0 when `r` may be bound beside every address held, else the WSA code Windows gives. */
  check(owner: number, r: Reservation): number {
    const mine = viewsOf(r);
    for (const [h, other] of this.held) {
      if (h === owner || other.port !== r.port || other.proto !== r.proto) continue;
      for (const a of viewsOf(other)) {
        for (const b of mine) {
          const code = conflict(other, a, r, b);
          if (code === null) continue;
          // Another session's port is not this one's to share, whatever the options say.
          if (other.session !== r.session) return W.WSAEADDRINUSE;
          if (code !== 0) return code;
        }
      }
    }
    return 0;
  }

  /** Records the address (after check and the real stack's probe both passed); returns check's answer. */
  reserve(owner: number, r: Reservation): number {
    const code = this.check(owner, r);
    if (code === 0) this.held.set(owner, r);
    return code;
  }

  /**
   * Whether a listener of the daemon's holds r's port so that the host would refuse a probe of
   * it, though the port is the daemon's own: 'same' when one holds this identical address (with
   * SO_REUSEADDR, as `r` has, or check would have refused), 'covering' when one holds an address
   * that covers r's or that r's covers (which check allowed), else null.
   */
  listenedOn(r: Reservation): 'same' | 'covering' | null {
    if (r.proto !== 'tcp') return null;
    if (this.listeners.has(addressKey(r))) return 'same';
    const mine = groupAddressOf(r);
    for (const g of this.groupAddresses.values()) if (covers(g, mine) || covers(mine, g)) return 'covering';
    return null;
  }

  /** The group whose any address covers a, if one listens. */
  private widerGroup(a: GroupAddress): string | undefined {
    for (const [key, g] of this.groupAddresses) if (covers(g, a)) return key;
    return undefined;
  }

  /** The groups of specific addresses that a covers. */
  private narrowerGroups(a: GroupAddress): string[] {
    const keys: string[] = [];
    for (const [key, g] of this.groupAddresses) if (covers(a, g)) keys.push(key);
    return keys;
  }

  /**
   * For the listener holding an any-address real socket: the listener a connection it accepted
   * (to localAddress) belongs to, when a group listens on that specific address; else null.
   */
  routeFor(owner: number, localAddress: string | undefined): ListenerHooks | null {
    const key = this.listenerKeys.get(owner);
    const g = key === undefined ? undefined : this.groupAddresses.get(key);
    if (!g?.wildcard || localAddress === undefined) return null;
    const address = g.v4 ? localAddress : (parseAddressText(localAddress)?.canonical ?? localAddress);
    const target = groupKey({ ...g, address });
    return this.routed.has(target) ? (this.listeners.get(target)?.[0] ?? null) : null;
  }

  /**
   * The socket starts listening on the address it holds. With no listener there yet, `open`
   * opens the real listening socket and its answer is returned; behind an older one the socket
   * waits its turn (0). Listens, takeovers and binds of one port run one after another.
   */
  listen(owner: number, hooks: ListenerHooks): Promise<number> {
    const r = this.held.get(owner);
    if (!r) return hooks.open();
    const key = addressKey(r);
    const me: Listener = { owner, ...hooks };
    return this.inTurn(portKey(r.proto, r.port), async () => {
      const group = this.listeners.get(key);
      if (group) {
        group.push(me);
        this.listenerKeys.set(owner, key);
        return 0;
      }
      const address = groupAddressOf(r);
      if (this.widerGroup(address) !== undefined) {
        // The any-address listener of the port accepts for this address too: no real socket.
        this.addGroup(key, address, me);
        this.routed.add(key);
        return 0;
      }
      // An any address where specific ones listen: their real sockets give way to this one's.
      const narrower = this.narrowerGroups(address).filter((k) => !this.routed.has(k));
      for (const k of narrower) this.listeners.get(k)?.[0]?.dropServer();
      const code = await hooks.open();
      if (code === 0 && this.held.get(owner) === r) {
        this.addGroup(key, address, me);
        for (const k of this.narrowerGroups(address)) this.routed.add(k);
      } else {
        for (const k of narrower) await this.handOver(k);
      }
      return code;
    });
  }

  private addGroup(key: string, address: GroupAddress, first: Listener): void {
    this.listeners.set(key, [first]);
    this.groupAddresses.set(key, address);
    this.listenerKeys.set(first.owner, key);
  }

  /** The listener next in line behind owner on its address (the one that takes over), or null. */
  successorOf(owner: number): ListenerHooks | null {
    const key = this.listenerKeys.get(owner);
    const group = key === undefined ? undefined : this.listeners.get(key);
    if (!group || group[0]?.owner !== owner) return null;
    return group[1] ?? null;
  }

  /** The socket is one of an address's listeners (holding the real socket, or waiting). */
  isListener(owner: number): boolean {
    return this.listenerKeys.has(owner);
  }

  /**
   * The socket stops listening (it closed); when it held the real socket the next one waiting
   * takes over, and one that cannot (another program took the port meanwhile) leaves the group.
   */
  stopListening(owner: number): void {
    // A listener holds its reservation until release(), which stops it listening first.
    const r = this.held.get(owner);
    const wasRouted = this.routed.has(this.listenerKeys.get(owner) ?? '');
    const address = r ? groupAddressOf(r) : undefined;
    const { key, wasFirst } = this.dropListener(owner);
    // A routed group holds no real socket: nothing to hand over.
    if (!r || key === undefined || !wasFirst || wasRouted) return;
    // At once, not after the port's turn: the real socket just closed, and every moment without
    // one is a moment when connections to the address are refused. (A takeover's listen is made
    // on the next tick, when node has "looked up" the numeric host, before any I/O is polled.)
    // Binds and listens of the port that come later wait for it.
    const takeovers = (async () => {
      if (this.listeners.has(key)) await this.handOver(key);
      // The any-address group is gone: the specific ones it accepted for open their own sockets.
      if (!this.listeners.has(key) && address?.wildcard) {
        await Promise.all(this.narrowerGroups(address).filter((k) => this.routed.delete(k)).map((k) => this.handOver(k)));
      }
    })();
    this.holdTurn(portKey(r.proto, r.port), takeovers);
  }

  /**
   * Runs fn when the port's turn comes. A bind's check, the host's answer and the reservation
   * happen in one turn, as do listens and takeovers: the probe a bind makes holds the real port
   * for a moment, and must not make the host refuse another bind's probe or a listen of the
   * daemon's own on that port.
   */
  onPort<T>(proto: Reservation['proto'], port: number, fn: () => Promise<T>): Promise<T> {
    return this.inTurn(portKey(proto, port), fn);
  }

  private dropListener(owner: number): { key: string | undefined; wasFirst: boolean } {
    const key = this.listenerKeys.get(owner);
    if (key === undefined) return { key, wasFirst: false };
    this.listenerKeys.delete(owner);
    const group = this.listeners.get(key)!;
    const at = group.findIndex((l) => l.owner === owner);
    if (at >= 0) group.splice(at, 1);
    if (group.length === 0) {
      this.listeners.delete(key);
      this.groupAddresses.delete(key);
      this.routed.delete(key);
    }
    return { key, wasFirst: at === 0 };
  }

  private async handOver(key: string): Promise<void> {
    for (let group = this.listeners.get(key); group && group.length > 0; group = this.listeners.get(key)) {
      const next = group[0]!;
      if ((await next.takeOver()) === 0) return;
      this.dropListener(next.owner);
    }
  }

  private inTurn<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.turns.get(key) ?? Promise.resolve()).then(fn);
    this.holdTurn(key, run);
    return run;
  }

  /** What comes next on the port waits until work (already running) is done, as well as what came before. */
  private holdTurn(key: string, work: Promise<unknown>): void {
    const before = this.turns.get(key) ?? Promise.resolve();
    const settled = Promise.all([before, work]).then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(key, settled);
    void settled.then(() => {
      if (this.turns.get(key) === settled) this.turns.delete(key);
    });
  }

  release(owner: number): void {
    const r = this.held.get(owner);
    this.stopListening(owner);
    this.held.delete(owner);
    this.unheld.delete(owner);
    if (r) this.retryHolds(r);
  }

  /** The sockets of r's port still waiting to hold it try again, once the closing socket's own is closed. */
  private retryHolds(r: Reservation): void {
    const due: Array<() => void> = [];
    for (const [owner, retry] of this.unheld) {
      const other = this.held.get(owner);
      if (other?.port !== r.port || other.proto !== r.proto) continue;
      this.unheld.delete(owner);
      due.push(retry);
    }
    // The closing socket closes its real one after it releases its address.
    if (due.length > 0) queueMicrotask(() => due.forEach((retry) => retry()));
  }
}
