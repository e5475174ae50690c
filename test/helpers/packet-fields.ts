/**
 * What the packets a peer receives carry in their IP headers: the time to live (hop limit) and
 * the type of service, read through the C library (koffi), which node:dgram and node:net do not
 * expose. Two receivers:
 * - `udpHeaderPeer`: a UDP socket bound on loopback that asks the kernel for each datagram's TTL
 *   and TOS (IP_RECVTTL, IP_RECVTOS) or hop limit (IPV6_RECVHOPLIMIT), read from recvmsg's control
 *   messages. No privileges needed.
 * - `ipv4HeaderWatch`: a raw IPv4 socket that sees every TCP segment or UDP datagram arriving on
 *   loopback, IP header included (the don't-fragment bit too). Needs root (CAP_NET_RAW); null
 *   without it.
 * Linux and 64-bit only (struct layouts); the constructors return null elsewhere.
 */
import { createRequire } from 'node:module';

interface Koffi {
  load(name: string): { func(sig: string): (...args: unknown[]) => unknown };
  address(value: unknown): bigint;
}

interface C {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  getsockname(fd: number, addr: Uint8Array, len: number[]): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  recvmsg(fd: number, msghdr: Uint8Array, flags: number): number;
  close(fd: number): number;
  address(b: Uint8Array): bigint;
}

let c: C | null | undefined;

function lib(): C | null {
  if (c !== undefined) return c;
  c = null;
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    const l = koffi.load('libc.so.6');
    const f = {
      socket: l.func('int socket(int, int, int)'),
      bind: l.func('int bind(int, const void *, uint32_t)'),
      getsockname: l.func('int getsockname(int, _Out_ void *, _Inout_ uint32_t *)'),
      setsockopt: l.func('int setsockopt(int, int, int, const void *, uint32_t)'),
      recvmsg: l.func('long recvmsg(int, void *, int)'),
      close: l.func('int close(int)'),
    };
    c = {
      socket: (d, t, p) => f.socket(d, t, p) as number,
      bind: (fd, a, n) => f.bind(fd, a, n) as number,
      getsockname: (fd, a, n) => f.getsockname(fd, a, n) as number,
      setsockopt: (fd, lv, n, v, len) => f.setsockopt(fd, lv, n, v, len) as number,
      recvmsg: (fd, m, fl) => Number(f.recvmsg(fd, m, fl)),
      close: (fd) => f.close(fd) as number,
      address: (b) => koffi.address(b),
    };
  } catch {
    c = null;
  }
  return c;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0x800;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const SOL_IP = 0;
const SOL_IPV6 = 41;
const IP_TOS = 1;
const IP_TTL = 2;
const IP_RECVTTL = 12;
const IP_RECVTOS = 13;
const IPV6_RECVHOPLIMIT = 51;
const IPV6_HOPLIMIT = 52;
const MSG_DONTWAIT = 0x40;

const one = (): Uint8Array => Uint8Array.of(1, 0, 0, 0);

/** One recvmsg into data with room for control messages: [bytes, the msghdr's controllen, control], or null when nothing waits. */
function receive(k: C, fd: number, data: Uint8Array, control: Uint8Array): { n: number; control: Uint8Array } | null {
  const iov = new Uint8Array(16);
  const dv = new DataView(iov.buffer);
  dv.setBigUint64(0, k.address(data), true);
  dv.setBigUint64(8, BigInt(data.length), true);
  // struct msghdr on LP64 Linux: name, namelen, iov, iovlen, control, controllen, flags.
  const msg = new Uint8Array(56);
  const m = new DataView(msg.buffer);
  m.setBigUint64(16, k.address(iov), true);
  m.setBigUint64(24, 1n, true);
  m.setBigUint64(32, k.address(control), true);
  m.setBigUint64(40, BigInt(control.length), true);
  const n = k.recvmsg(fd, msg, MSG_DONTWAIT);
  if (n < 0) return null;
  return { n, control: control.subarray(0, Number(m.getBigUint64(40, true))) };
}

/** The control messages of a recvmsg: [level, type, first int of the data]. */
function controlMessages(control: Uint8Array): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  const dv = new DataView(control.buffer, control.byteOffset, control.byteLength);
  for (let at = 0; at + 16 <= control.length; ) {
    const len = Number(dv.getBigUint64(at, true));
    if (len < 16) break;
    const dataLen = len - 16;
    out.push([dv.getInt32(at + 8, true), dv.getInt32(at + 12, true), dataLen >= 4 ? dv.getInt32(at + 16, true) : dataLen >= 1 ? dv.getUint8(at + 16) : -1]);
    at += (len + 7) & ~7;
  }
  return out;
}

export interface HeaderFields {
  /** The time to live (IPv4) or hop limit (IPv6). */
  ttl: number;
  /** The type-of-service byte (IPv4 only; -1 otherwise). */
  tos: number;
}

export interface UdpHeaderPeer {
  port: number;
  /** The next datagram's bytes and header fields, waiting up to timeoutMs; null if none came. */
  next(timeoutMs?: number): Promise<{ data: Buffer; fields: HeaderFields } | null>;
  close(): void;
}

/** Waits for take() to give something, looking again on each turn of a short timer; null at the deadline. */
async function poll<T>(take: () => T | null, timeoutMs: number): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = take();
    if (got !== null || Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function udpHeaderPeer(v6: boolean): UdpHeaderPeer | null {
  const k = lib();
  if (!k) return null;
  const fd = k.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return null;
  const sa = new Uint8Array(v6 ? 28 : 16);
  const sv = new DataView(sa.buffer);
  sv.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
  if (v6) sa[23] = 1; // ::1
  else sa.set([127, 0, 0, 1], 4);
  if (k.bind(fd, sa, sa.length) !== 0) {
    k.close(fd);
    return null;
  }
  if (v6) k.setsockopt(fd, SOL_IPV6, IPV6_RECVHOPLIMIT, one(), 4);
  else {
    k.setsockopt(fd, SOL_IP, IP_RECVTTL, one(), 4);
    k.setsockopt(fd, SOL_IP, IP_RECVTOS, one(), 4);
  }
  const name = new Uint8Array(28);
  k.getsockname(fd, name, [28]);
  const port = new DataView(name.buffer).getUint16(2, false);
  let closed = false;
  return {
    port,
    next(timeoutMs = 5000) {
      return poll(() => {
        if (closed) return null;
        const data = new Uint8Array(65536);
        const r = receive(k, fd, data, new Uint8Array(256));
        if (!r) return null;
        const fields: HeaderFields = { ttl: -1, tos: -1 };
        for (const [level, type, value] of controlMessages(r.control)) {
          if (level === SOL_IP && type === IP_TTL) fields.ttl = value;
          if (level === SOL_IP && type === IP_TOS) fields.tos = value & 0xff;
          if (level === SOL_IPV6 && type === IPV6_HOPLIMIT) fields.ttl = value;
        }
        return { data: Buffer.from(data.subarray(0, r.n)), fields };
      }, timeoutMs);
    },
    close() {
      if (!closed) k.close(fd);
      closed = true;
    },
  };
}

export interface Ipv4HeaderFields extends HeaderFields {
  /** The don't-fragment bit. */
  df: boolean;
}

export interface Ipv4HeaderWatch {
  /** The header fields of the next packet from srcPort to dstPort carrying data, waiting up to timeoutMs. */
  next(srcPort: number, dstPort: number, timeoutMs?: number): Promise<Ipv4HeaderFields | null>;
  close(): void;
}

/** A raw IPv4 socket seeing TCP segments or UDP datagrams; null without CAP_NET_RAW. */
export function ipv4HeaderWatch(proto: 'tcp' | 'udp'): Ipv4HeaderWatch | null {
  const k = lib();
  if (!k) return null;
  const fd = k.socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP);
  if (fd < 0) return null;
  let closed = false;
  return {
    next(srcPort, dstPort, timeoutMs = 5000) {
      return poll(() => {
        for (;;) {
          if (closed) return null;
          const pkt = new Uint8Array(65536);
          const r = receive(k, fd, pkt, new Uint8Array(0));
          if (!r) return null;
          const ihl = (pkt[0]! & 0x0f) * 4;
          const total = (pkt[2]! << 8) | pkt[3]!;
          const ports = new DataView(pkt.buffer, ihl);
          const headerLength = proto === 'tcp' ? (pkt[ihl + 12]! >> 4) * 4 : 8;
          const carriesData = total - ihl - headerLength > 0;
          if (ports.getUint16(0) === srcPort && ports.getUint16(2) === dstPort && carriesData) return { ttl: pkt[8]!, tos: pkt[1]!, df: (pkt[6]! & 0x40) !== 0 };
        }
      }, timeoutMs);
    },
    close() {
      if (!closed) k.close(fd);
      closed = true;
    },
  };
}
