/** sockaddr checks and conversions between the wire form and what node:net / node:dgram take. */
import { isIP, isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import * as W from '@spiwire/proto';
import type { SockAddr } from '@spiwire/proto';

export function sockaddrSize(family: number): number {
  return family === W.AF_INET6 ? W.SOCKADDR_IN6_SIZE : W.SOCKADDR_IN_SIZE;
}

/**
 * Checks an address given by the client against the socket's family. Returns 0 when usable,
 * else the WSA code Windows gives: WSAEFAULT for a namelen too small for the family,
 * WSAEAFNOSUPPORT for a family that is not the socket's, WSAEINVAL for text that is no address.
 */
export function checkSockaddr(addr: SockAddr, namelen: number, socketFamily: number): number {
  if (addr.family !== W.AF_INET && addr.family !== W.AF_INET6) return W.WSAEAFNOSUPPORT;
  if (namelen < sockaddrSize(addr.family)) return W.WSAEFAULT;
  if (addr.family !== socketFamily) return W.WSAEAFNOSUPPORT;
  const kind = isIP(stripScope(addr.address));
  if (kind !== (addr.family === W.AF_INET ? 4 : 6)) return W.WSAEINVAL;
  return 0;
}

function stripScope(address: string): string {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
}

/** The host string node takes, with an IPv6 scope id appended when one is set. */
export function hostOf(addr: SockAddr): string {
  if (addr.family === W.AF_INET6 && addr.scopeId && !addr.address.includes('%')) return `${addr.address}%${addr.scopeId}`;
  return addr.address;
}

export function isAnyAddress(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || /^0*:0*:0*:0*:0*:0*:0*:0*$/.test(address) || address === '::0';
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
    base.scopeId = pct < 0 ? 0 : Number(address.slice(pct + 1)) || 0;
  }
  return base;
}

/** True for the IPv4 limited broadcast address or the directed broadcast address of a local interface. */
export function isBroadcastAddress(address: string): boolean {
  if (address === '255.255.255.255') return true;
  if (!isIPv4(address)) return false;
  for (const list of Object.values(networkInterfaces())) {
    for (const ni of list ?? []) {
      if (ni.family !== 'IPv4' || ni.internal) continue;
      if (directedBroadcast(ni.address, ni.netmask) === address) return true;
    }
  }
  return false;
}

function directedBroadcast(address: string, netmask: string): string {
  const a = address.split('.').map(Number);
  const m = netmask.split('.').map(Number);
  return a.map((x, i) => (x | (~m[i]! & 0xff)) & 0xff).join('.');
}

let interfaceCache: { at: number; addresses: Set<string> } | null = null;

/**
 * True when address is a loopback address or belongs to an interface of this machine now. The
 * interface list is read at most every 200 ms, so a send path can ask cheaply.
 */
export function localAddressExists(address: string): boolean {
  const plain = address.split('%')[0]!.replace(/^::ffff:/, '');
  if (plain.startsWith('127.') || plain === '::1') return true;
  const now = Date.now();
  if (!interfaceCache || now - interfaceCache.at > 200) {
    const addresses = new Set<string>();
    for (const list of Object.values(networkInterfaces())) for (const ni of list ?? []) addresses.add(ni.address);
    interfaceCache = { at: now, addresses };
  }
  return interfaceCache.addresses.has(plain);
}
