/** sockaddr checks and conversions between the wire form and what node:net / node:dgram take. */
import { isIP, isIPv4 } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import * as W from '@spiwire/proto';
import { isLinkLocalV6, parseAddressText, type SockAddr } from '@spiwire/proto';

/**
 * Checks an address given by the client against the socket's family. Returns 0 when usable,
 * else the WSA code Windows gives: WSAEFAULT for a namelen too small for the family,
 * WSAEAFNOSUPPORT for a family that is not the socket's, WSAEINVAL for text that is no address.
 */
export function checkSockaddr(addr: SockAddr, namelen: number, socketFamily: number): number {
  if (addr.family !== W.AF_INET && addr.family !== W.AF_INET6) return W.WSAEAFNOSUPPORT;
  if (namelen < W.sockaddrSize(addr.family)) return W.WSAEFAULT;
  if (addr.family !== socketFamily) return W.WSAEAFNOSUPPORT;
  const kind = isIP(stripScope(addr.address));
  if (kind !== (addr.family === W.AF_INET ? 4 : 6)) return W.WSAEINVAL;
  return 0;
}

function stripScope(address: string): string {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
}

/**
 * Why an address text from a client cannot be used, or null when it can. Only numeric addresses
 * pass, so no text ever reaches a name resolver: node resolves anything that is not an IP address
 * as a host name. A scope suffix ("%3", "%eth0") is accepted only on an IPv6 link-local address,
 * and only as a numeric scope id or the name of an interface of this machine.
 */
export function addressProblem(text: string): string | null {
  const pct = text.indexOf('%');
  if (pct < 0) return isIP(text) === 0 ? 'must be a numeric IPv4 or IPv6 address' : null;
  const plain = text.slice(0, pct);
  const scope = text.slice(pct + 1);
  if (isIP(plain) !== 6 || !isLinkLocalV6(plain)) return 'may carry a scope suffix (%...) only when it is an IPv6 link-local address (fe80::/10)';
  if (/^\d{1,10}$/.test(scope) && Number(scope) <= 0xffffffff) return null;
  if (/^[A-Za-z0-9_.:-]{1,15}$/.test(scope) && isInterfaceName(scope)) return null;
  return `has the scope ${JSON.stringify(scope.slice(0, 20))}, which is neither a numeric scope id nor an interface of this machine`;
}

/**
 * The host string node takes, with an IPv6 scope appended when one is set (link-local only). On
 * Linux and macOS libuv reads a scope by interface name (if_nametoindex), so a numeric scope id,
 * from a "%4" suffix or from scopeId, is given as the name of the interface with that index.
 */
export function hostOf(addr: SockAddr): string {
  if (addr.family !== W.AF_INET6) return addr.address;
  const pct = addr.address.indexOf('%');
  if (pct >= 0) {
    const scope = addr.address.slice(pct + 1);
    return /^\d+$/.test(scope) ? `${addr.address.slice(0, pct)}%${interfaceName(Number(scope)) ?? scope}` : addr.address;
  }
  if (addr.scopeId && isLinkLocalV6(addr.address)) return `${addr.address}%${interfaceName(addr.scopeId) ?? addr.scopeId}`;
  return addr.address;
}

/**
 * Interface names by index and indexes by name (read at most once a second, or once every
 * 100 ms when asked for one they lack: an interface made a moment ago is found). On Linux from
 * /sys/class/net, which lists every interface, down ones included; elsewhere from the link-local
 * addresses node lists, which is what the platform offers without a system call of our own.
 */
let scopeCache: { at: number; names: Map<number, string>; indexes: Map<string, number> } | null = null;
const SCOPES_MAX_AGE_MS = 1000;
const SCOPES_MISS_AGE_MS = 100;

function scopes(missing?: { index: number } | { name: string }): { names: Map<number, string>; indexes: Map<string, number> } {
  const now = Date.now();
  const age = scopeCache ? now - scopeCache.at : Infinity;
  const lacks = missing !== undefined && scopeCache !== null && ('index' in missing ? !scopeCache.names.has(missing.index) : !scopeCache.indexes.has(missing.name));
  if (!scopeCache || age > SCOPES_MAX_AGE_MS || (lacks && age > SCOPES_MISS_AGE_MS)) {
    const indexes = interfacesFromSys() ?? interfacesFromNode();
    const names = new Map<number, string>();
    for (const [name, index] of indexes) names.set(index, name);
    scopeCache = { at: now, names, indexes };
  }
  return scopeCache;
}

function interfacesFromSys(): Map<string, number> | null {
  if (process.platform !== 'linux') return null;
  try {
    const indexes = new Map<string, number>();
    for (const name of readdirSync('/sys/class/net')) {
      const index = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'latin1').trim());
      if (Number.isInteger(index) && index > 0) indexes.set(name, index);
    }
    return indexes;
  } catch {
    return null;
  }
}

function interfacesFromNode(): Map<string, number> {
  const indexes = new Map<string, number>();
  for (const [name, list] of Object.entries(networkInterfaces())) {
    for (const ni of list ?? []) if (ni.family === 'IPv6' && ni.scopeid) indexes.set(name, ni.scopeid);
  }
  return indexes;
}

export function interfaceName(index: number): string | undefined {
  return scopes({ index }).names.get(index);
}

/** The first IPv4 address of the interface with this index, or null. */
export function interfaceIpv4(index: number): string | null {
  const name = interfaceName(index);
  const v4 = name ? networkInterfaces()[name]?.find((ni) => ni.family === 'IPv4') : undefined;
  return v4 ? v4.address : null;
}

/** The scope id of a "%..." suffix: a number, or an interface name (0 for a name no interface has). */
export function scopeIdOf(scope: string): number {
  return /^\d+$/.test(scope) ? Number(scope) : (scopes({ name: scope }).indexes.get(scope) ?? 0);
}

/**
 * An IPv6 sockaddr whose scope (scopeId, or a numeric "%" suffix) names no interface of this
 * machine. Windows refuses to bind one (WSAEADDRNOTAVAIL, Wine's test_bind), even on an address
 * that is not link-local; node would bind it with scope 0.
 */
export function hasUnknownScope(addr: SockAddr): boolean {
  if (addr.family !== W.AF_INET6) return false;
  const pct = addr.address.indexOf('%');
  const scope = pct >= 0 ? scopeIdOf(addr.address.slice(pct + 1)) : (addr.scopeId ?? 0);
  return scope !== 0 && interfaceName(scope) === undefined;
}

/**
 * An IPv6 link-local address given without a scope (scopeId 0, no "%" suffix), which the host
 * stack cannot bind without being told the interface.
 */
export function lacksScope(addr: SockAddr): boolean {
  return addr.family === W.AF_INET6 && !addr.scopeId && !addr.address.includes('%') && isLinkLocalV6(addr.address);
}

/**
 * The index of the interface (up) that holds address, an IPv6 link-local address, or 0 when none
 * does. Windows binds such an address given with scope 0 on the adapter that has it (Wine's
 * test_bind); the host stack needs the scope said.
 */
export function ownScopeOf(address: string): number {
  const want = canonicalV6(address);
  for (const list of Object.values(networkInterfaces())) {
    for (const ni of list ?? []) if (ni.family === 'IPv6' && ni.scopeid && canonicalV6(ni.address) === want) return ni.scopeid;
  }
  return 0;
}

/** Whether name is an interface of this machine. */
function isInterfaceName(name: string): boolean {
  return scopes({ name }).indexes.has(name);
}

/**
 * A lookup function for node's sockets that answers numeric addresses with themselves and refuses
 * every name. Addresses are checked to be numeric before they reach node (node:dgram asks its
 * lookup even for those); if a name ever got this far, it is not resolved.
 */
export function refuseLookup(hostname: string, _options: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  const kind = isIP(hostname);
  if (kind !== 0) {
    process.nextTick(() => callback(null, hostname, kind));
    return;
  }
  const err = Object.assign(new Error(`refusing to resolve ${JSON.stringify(hostname)}: spiwire takes numeric addresses only`), { code: 'EINVAL' });
  process.nextTick(() => callback(err, '', 0));
}

/** The unspecified address, in any of its spellings (also IPv4-mapped: Linux connects it to loopback). */
export function isAnyAddress(address: string): boolean {
  const plain = stripScope(address);
  const kind = isIP(plain);
  if (kind === 4) return plain === '0.0.0.0';
  if (kind !== 6) return false;
  // Most addresses have a digit the unspecified ones lack: they skip the parse.
  if (!/^[0:.fF]+$/.test(plain)) return false;
  const canonical = canonicalV6(plain);
  return canonical === '::' || canonical === '::ffff:0:0';
}

export function anyAddress(family: number): string {
  return family === W.AF_INET6 ? '::' : '0.0.0.0';
}

/** Converts node's address info ({ address, family, port }) to the wire sockaddr. */
export function fromNodeAddress(info: { address?: string | undefined; port?: number | undefined; family?: string | number | undefined }, fallbackFamily: number): SockAddr {
  const address = info.address ?? anyAddress(fallbackFamily);
  const v6 = info.family === 'IPv6' || info.family === 6 || (!isIPv4(address) && isIP(address) === 6);
  const pct = address.indexOf('%');
  const base: SockAddr = { family: v6 ? W.AF_INET6 : W.AF_INET, address: pct < 0 ? address : address.slice(0, pct), port: info.port ?? 0 };
  if (v6) {
    base.flowinfo = 0;
    base.scopeId = pct < 0 ? 0 : scopeIdOf(address.slice(pct + 1));
  }
  return base;
}

let broadcastCache: { at: number; addresses: Set<string> } | null = null;

/**
 * True for the IPv4 limited broadcast address or the directed broadcast address of a local
 * interface. The interface list is read at most once a second: this runs for every datagram.
 */
export function isBroadcastAddress(address: string): boolean {
  if (address === '255.255.255.255') return true;
  // Loopback first: it is the common case and needs no regular expression.
  if (isLoopbackAddress(address) || !isIPv4(address)) return false;
  const now = Date.now();
  if (!broadcastCache || now - broadcastCache.at > 1000) {
    const addresses = new Set<string>();
    for (const list of Object.values(networkInterfaces())) {
      for (const ni of list ?? []) if (ni.family === 'IPv4' && !ni.internal) addresses.add(directedBroadcast(ni.address, ni.netmask));
    }
    broadcastCache = { at: now, addresses };
  }
  return broadcastCache.addresses.has(address);
}

function directedBroadcast(address: string, netmask: string): string {
  const a = address.split('.').map(Number);
  const m = netmask.split('.').map(Number);
  return a.map((x, i) => (x | (~m[i]! & 0xff)) & 0xff).join('.');
}

/** True for 127.0.0.0/8 (also IPv4-mapped) and ::1: always present, never worth a look-up. */
export function isLoopbackAddress(address: string): boolean {
  // Called on every send: no splitting or regular expressions.
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  return plain.startsWith('127.') || plain === '::1' || plain.startsWith('::1%');
}

let interfaceCache: { at: number; addresses: Set<string> } | null = null;

/**
 * The addresses assigned to this machine's interfaces, whether or not the interface is up: a
 * link that lost its carrier keeps its addresses (node's networkInterfaces() leaves such
 * interfaces out). On Linux read from /proc; elsewhere from networkInterfaces().
 */
function assignedAddresses(): Set<string> {
  const addresses = new Set<string>();
  try {
    // IPv4: the LOCAL host routes of the FIB; IPv6: /proc/net/if_inet6 (32 hex digits per address).
    const fib = readFileSync('/proc/net/fib_trie', 'utf8').split('\n');
    for (let i = 1; i < fib.length; i++) {
      if (fib[i]!.includes('/32 host LOCAL')) {
        const m = /(\d+\.\d+\.\d+\.\d+)\s*$/.exec(fib[i - 1]!);
        if (m) addresses.add(m[1]!);
      }
    }
    for (const line of readFileSync('/proc/net/if_inet6', 'utf8').split('\n')) {
      const hex = line.split(/\s+/)[0];
      if (hex && hex.length === 32) addresses.add(canonicalV6(hex.replace(/(.{4})(?!$)/g, '$1:')));
    }
  } catch {
    for (const list of Object.values(networkInterfaces())) for (const ni of list ?? []) addresses.add(ni.family === 'IPv6' ? canonicalV6(ni.address) : ni.address);
  }
  return addresses;
}

/** IPv6 text in the one spelling parseAddressText gives (the text itself if it is not IPv6). */
function canonicalV6(text: string): string {
  return parseAddressText(text)?.canonical ?? text;
}

/**
 * True when address is a loopback address or is assigned to an interface of this machine. A
 * positive answer may come from a list up to 200 ms old; a negative one is always checked afresh,
 * so an address added a moment ago is never taken for gone.
 */
export function localAddressExists(address: string): boolean {
  if (isLoopbackAddress(address)) return true;
  const plain = address.split('%')[0]!.replace(/^::ffff:/, '');
  const key = isIPv4(plain) ? plain : canonicalV6(plain);
  const now = Date.now();
  if (interfaceCache && now - interfaceCache.at <= 200 && interfaceCache.addresses.has(key)) return true;
  interfaceCache = { at: now, addresses: assignedAddresses() };
  return interfaceCache.addresses.has(key);
}
