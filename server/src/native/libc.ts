/**
 * The few C library calls Node has no API for: send() with MSG_OOB (TCP urgent data) and
 * setsockopt()/getsockopt() on a socket's descriptor, and a bound TCP socket that holds a port
 * (port-hold.ts). Loaded lazily through koffi, a prebuilt FFI
 * package; where it cannot load (or the platform is not Linux or macOS) libc() returns null and
 * the features that need it report WSAEOPNOTSUPP or fall back to Node's own APIs.
 */
import { createRequire } from 'node:module';

/** Platform values of the socket constants spiwire passes to the C library. */
export interface NativeConstants {
  SOL_SOCKET: number;
  SO_SNDBUF: number;
  SO_RCVBUF: number;
  SO_KEEPALIVE: number;
  SO_OOBINLINE: number;
  SO_LINGER: number;
  SO_DONTROUTE: number;
  SO_ERROR: number;
  /** Bytes a TCP socket's receive queue must hold before a read wakes its reader (the benchmark's sinks). */
  SO_RCVLOWAT: number;
  IPPROTO_TCP: number;
  IPPROTO_IP: number;
  IP_TOS: number;
  IP_TTL: number;
  IPPROTO_IPV6: number;
  IPV6_UNICAST_HOPS: number;
  /**
   * How the don't-fragment bit is set: IPv4 through IP_MTU_DISCOVER (`v4`: the option, and its
   * values that always and never set the bit), IPv6 through IPV6_DONTFRAG. null where the platform
   * has other ways (macOS).
   */
  DONT_FRAGMENT: { v4: { name: number; always: number; never: number }; v6: number } | null;
  TCP_NODELAY: number;
  TCP_KEEPIDLE: number;
  TCP_KEEPINTVL: number;
  TCP_KEEPCNT: number;
  /** 0 where the platform has no TCP_USER_TIMEOUT. */
  TCP_USER_TIMEOUT: number;
  MSG_OOB: number;
  MSG_DONTROUTE: number;
  /** fcntl() command that names the process the kernel sends SIGURG to. */
  F_SETOWN: number;
  /**
   * How to read the bytes in a TCP socket's kernel send queue (not yet acknowledged by the peer):
   * ioctl(TIOCOUTQ) on Linux, getsockopt(SOL_SOCKET, SO_NWRITE) on macOS.
   */
  OUTQ: { ioctl: number } | { sockopt: number };
  /**
   * Where a TCP connection's count of bytes received since it was made is read: getsockopt(IPPROTO_TCP,
   * option) fills struct tcp_info, whose u64 at offset holds it. null where the platform has none.
   */
  RECEIVED_COUNT: { option: number; offset: number } | null;
  /** ioctl() request: whether the read position is at the urgent mark. */
  SIOCATMARK: number;
  /** ioctl() request: bytes waiting in the kernel's receive queue. */
  FIONREAD: number;
  EAGAIN: number;
  EINVAL: number;
  EWOULDBLOCK: number;
  /**
   * setsockopt() level and name that make a UDP socket queue every ICMP error for its datagrams on
   * its error queue (IP_RECVERR, IPV6_RECVERR), unconnected or not; null where the platform has none.
   */
  RECVERR: { v4: { level: number; name: number }; v6: { level: number; name: number } } | null;
  /** recv() flag: read the socket's error queue. */
  MSG_ERRQUEUE: number;
  /** recv() flag: never block. */
  MSG_DONTWAIT: number;
  /** recv() flag: leave what is read in the queue. */
  MSG_PEEK: number;
  /** The platform's AF_INET6 (AF_INET is 2 everywhere). */
  AF_INET6: number;
  SO_REUSEADDR: number;
  IPV6_V6ONLY: number;
  /** socket() type flag that closes the descriptor across exec (0 where it is set otherwise). */
  SOCK_CLOEXEC: number;
  /** BSD layout: a sockaddr starts with its length byte, then a one-byte family. */
  SOCKADDR_HAS_LEN: boolean;
}

const LINUX: NativeConstants = {
  SOL_SOCKET: 1,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_KEEPALIVE: 9,
  SO_OOBINLINE: 10,
  SO_LINGER: 13,
  SO_DONTROUTE: 5,
  SO_ERROR: 4,
  SO_RCVLOWAT: 18,
  IPPROTO_TCP: 6,
  IPPROTO_IP: 0,
  IP_TOS: 1,
  IP_TTL: 2,
  IPPROTO_IPV6: 41,
  IPV6_UNICAST_HOPS: 16,
  // IP_MTU_DISCOVER with IP_PMTUDISC_DO / IP_PMTUDISC_DONT; IPV6_DONTFRAG.
  DONT_FRAGMENT: { v4: { name: 10, always: 2, never: 0 }, v6: 62 },
  TCP_NODELAY: 1,
  TCP_KEEPIDLE: 4,
  TCP_KEEPINTVL: 5,
  TCP_KEEPCNT: 6,
  TCP_USER_TIMEOUT: 18,
  MSG_OOB: 1,
  MSG_DONTROUTE: 4,
  F_SETOWN: 8,
  OUTQ: { ioctl: 0x5411 },
  // TCP_INFO, tcpi_bytes_received (Linux 4.1 and later).
  RECEIVED_COUNT: { option: 11, offset: 128 },
  SIOCATMARK: 0x8905,
  FIONREAD: 0x541b,
  EAGAIN: 11,
  EINVAL: 22,
  EWOULDBLOCK: 11,
  RECVERR: { v4: { level: 0, name: 11 }, v6: { level: 41, name: 25 } },
  MSG_ERRQUEUE: 0x2000,
  MSG_DONTWAIT: 0x40,
  MSG_PEEK: 2,
  AF_INET6: 10,
  SO_REUSEADDR: 2,
  IPV6_V6ONLY: 26,
  SOCK_CLOEXEC: 0x80000,
  SOCKADDR_HAS_LEN: false,
};

const DARWIN: NativeConstants = {
  SOL_SOCKET: 0xffff,
  SO_SNDBUF: 0x1001,
  SO_RCVBUF: 0x1002,
  SO_KEEPALIVE: 0x0008,
  SO_OOBINLINE: 0x0100,
  SO_LINGER: 0x0080,
  SO_DONTROUTE: 0x0010,
  SO_ERROR: 0x1007,
  SO_RCVLOWAT: 0x1004,
  IPPROTO_TCP: 6,
  IPPROTO_IP: 0,
  IP_TOS: 3,
  IP_TTL: 4,
  IPPROTO_IPV6: 41,
  IPV6_UNICAST_HOPS: 4,
  DONT_FRAGMENT: null,
  TCP_NODELAY: 1,
  TCP_KEEPIDLE: 0x10,
  TCP_KEEPINTVL: 0x101,
  TCP_KEEPCNT: 0x102,
  TCP_USER_TIMEOUT: 0,
  MSG_OOB: 1,
  MSG_DONTROUTE: 4,
  F_SETOWN: 6,
  OUTQ: { sockopt: 0x1024 },
  RECEIVED_COUNT: null,
  SIOCATMARK: 0x40047307,
  FIONREAD: 0x4004667f,
  EAGAIN: 35,
  EINVAL: 22,
  EWOULDBLOCK: 35,
  RECVERR: null,
  MSG_ERRQUEUE: 0,
  MSG_DONTWAIT: 0x80,
  MSG_PEEK: 2,
  AF_INET6: 30,
  SO_REUSEADDR: 0x0004,
  IPV6_V6ONLY: 27,
  SOCK_CLOEXEC: 0,
  SOCKADDR_HAS_LEN: true,
};

export interface Libc {
  readonly c: NativeConstants;
  /** send(2); returns the byte count, or -errno. */
  send(fd: number, data: Uint8Array, flags: number): number;
  /** recv(2) into buf; returns the byte count, or -errno. */
  recv(fd: number, buf: Uint8Array, flags: number): number;
  /** setsockopt(2) with an int value; returns 0 or -errno. */
  setInt(fd: number, level: number, name: number, value: number): number;
  /** getsockopt(2) of an int value; returns the value, or null on failure. */
  getInt(fd: number, level: number, name: number): number | null;
  /** setsockopt(SO_LINGER) with struct linger { int l_onoff; int l_linger; }. */
  setLinger(fd: number, onoff: number, seconds: number): number;
  /** fcntl(F_SETOWN, this process): the kernel signals SIGURG here when urgent data arrives. Returns 0 or -errno. */
  setOwner(fd: number): number;
  /** glibc's malloc_trim(0): hands freed heap memory back to the system. A no-op elsewhere. */
  trimHeap(): void;
  /** Bytes in a TCP socket's kernel send queue that the peer has not acknowledged, or null. */
  unacked(fd: number): number | null;
  /** Bytes a TCP connection has received since it was made (RECEIVED_COUNT), or null. */
  received(fd: number): number | null;
  /** ioctl(SIOCATMARK): the next byte to read is at the urgent mark (false when it cannot tell). */
  atMark(fd: number): boolean;
  /** ioctl(FIONREAD): bytes in the kernel's receive queue, or null. */
  queued(fd: number): number | null;
  /**
   * sendmmsg(2) of count messages from vec, an array of struct mmsghdr; returns how many went, or
   * -errno. null where the platform has none (it is Linux's) or its struct layout is not LP64.
   */
  readonly sendmmsg: ((fd: number, vec: Uint8Array, count: number) => number) | null;
  /**
   * recvmsg(2) with a struct msghdr laid out in msghdr (its pointers made with address()); returns
   * the byte count, or -errno. null where the platform has none or its layout is not LP64.
   */
  readonly recvmsg: ((fd: number, msghdr: Uint8Array, flags: number) => number) | null;
  /**
   * accept4(2) on a listening socket, the new descriptor nonblocking and closed across exec; the
   * descriptor, or -errno (EAGAIN when none waits). null where the platform has no accept4.
   */
  readonly accept: ((fd: number) => number) | null;
  /** The address of a buffer's first byte (for pointers inside structures built in JS). */
  address(buf: Uint8Array): number;
  /** inet_pton(3): writes a numeric address's bytes (4 or 16) into out; false when it is not one of af. */
  addressBytes(af: 'ipv4' | 'ipv6', text: string, out: Uint8Array): boolean;
  /** socket(2) of a TCP socket (SOCK_STREAM) in af, closed across exec; the descriptor, or -errno. */
  tcpSocket(af: 'ipv4' | 'ipv6'): number;
  /** bind(2) to a struct sockaddr laid out in sockaddr; 0 or -errno. */
  bind(fd: number, sockaddr: Uint8Array): number;
  /** close(2); 0 or -errno. */
  close(fd: number): number;
}

let loaded: Libc | null | undefined;

/** The buffer received() reads TCP_INFO into (made on first use). */
let tcpInfo: Buffer | null = null;

export function libc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const c = process.platform === 'linux' ? LINUX : process.platform === 'darwin' ? DARWIN : null;
  if (!c || process.env['SPIWIRE_NO_NATIVE']) return null;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as {
      load(name: string): { func(sig: string): (...args: unknown[]) => unknown };
      errno(): number;
      address(value: unknown): bigint;
    };
    const lib = koffi.load(process.platform === 'linux' ? 'libc.so.6' : 'libSystem.B.dylib');
    const send = lib.func('long send(int, const void *, size_t, int)');
    const recv = lib.func('long recv(int, _Out_ void *, size_t, int)');
    const setsockopt = lib.func('int setsockopt(int, int, int, const void *, uint32_t)');
    const getsockopt = lib.func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)');
    const fcntl = lib.func('int fcntl(int, int, ...)');
    const ioctlInt = lib.func('int ioctl(int, unsigned long, _Out_ int *)');
    let mallocTrim: ((pad: number) => unknown) | null = null;
    try {
      mallocTrim = process.platform === 'linux' ? lib.func('int malloc_trim(size_t)') : null;
    } catch {
      // Not glibc (musl has no malloc_trim): freed memory stays with the allocator.
    }
    // struct mmsghdr is laid out for 64-bit Linux in datagram-batch.ts.
    const lp64 = process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64');
    const sendmmsg = lp64 ? lib.func('int sendmmsg(int, const void *, unsigned int, int)') : null;
    const recvmsg = lp64 ? lib.func('long recvmsg(int, void *, int)') : null;
    const accept4 = process.platform === 'linux' ? lib.func('int accept4(int, void *, void *, int)') : null;
    const inetPton = lib.func('int inet_pton(int, const char *, _Out_ void *)');
    const socket = lib.func('int socket(int, int, int)');
    const bind = lib.func('int bind(int, const void *, uint32_t)');
    const close = lib.func('int close(int)');
    const AF = { ipv4: 2, ipv6: c.AF_INET6 };
    const err = (r: number): number => (r < 0 ? -koffi.errno() : r);
    loaded = {
      c,
      send: (fd, data, flags) => err(Number(send(fd, data, data.length, flags))),
      recv: (fd, buf, flags) => err(Number(recv(fd, buf, buf.length, flags))),
      setInt(fd, level, name, value) {
        const b = Buffer.alloc(4);
        // An int is what the kernel takes: never let a value out of range throw here.
        b.writeInt32LE(Math.max(-0x80000000, Math.min(0x7fffffff, Math.trunc(value) || 0)));
        return err(setsockopt(fd, level, name, b, 4) as number);
      },
      getInt(fd, level, name) {
        const b = Buffer.alloc(4);
        const len = [4];
        return (getsockopt(fd, level, name, b, len) as number) === 0 ? b.readInt32LE() : null;
      },
      setLinger(fd, onoff, seconds) {
        const b = Buffer.alloc(8);
        b.writeInt32LE(onoff, 0);
        b.writeInt32LE(seconds, 4);
        return err(setsockopt(fd, c.SOL_SOCKET, c.SO_LINGER, b, 8) as number);
      },
      setOwner: (fd) => err(fcntl(fd, c.F_SETOWN, 'int', process.pid) as number),
      trimHeap: () => void mallocTrim?.(0),
      unacked(fd) {
        if ('sockopt' in c.OUTQ) return this.getInt(fd, c.SOL_SOCKET, c.OUTQ.sockopt);
        const out = [0];
        return (ioctlInt(fd, c.OUTQ.ioctl, out) as number) === 0 ? (out[0] ?? null) : null;
      },
      queued(fd) {
        const out = [0];
        return (ioctlInt(fd, c.FIONREAD, out) as number) === 0 ? (out[0] ?? null) : null;
      },
      atMark(fd) {
        const out = [0];
        return (ioctlInt(fd, c.SIOCATMARK, out) as number) === 0 && (out[0] ?? 0) !== 0;
      },
      // MSG_DONTWAIT: the descriptor is nonblocking already (libuv's); this only makes sure.
      sendmmsg: sendmmsg ? (fd, vec, count) => err(sendmmsg(fd, vec, count, 0x40) as number) : null,
      recvmsg: recvmsg ? (fd, msghdr, flags) => err(Number(recvmsg(fd, msghdr, flags))) : null,
      // SOCK_NONBLOCK (0x800) | SOCK_CLOEXEC.
      accept: accept4 ? (fd) => err(accept4(fd, null, null, 0x800 | c.SOCK_CLOEXEC) as number) : null,
      address: (buf) => Number(koffi.address(buf)),
      addressBytes: (af, text, out) => out.length >= (af === 'ipv4' ? 4 : 16) && (inetPton(AF[af], text, out) as number) === 1,
      tcpSocket: (af) => err(socket(AF[af], 1 | c.SOCK_CLOEXEC, 0) as number),
      bind: (fd, sockaddr) => err(bind(fd, sockaddr, sockaddr.length) as number),
      close: (fd) => err(close(fd) as number),
      received(fd) {
        const at = c.RECEIVED_COUNT;
        if (!at) return null;
        // One buffer for every call: urgent-data watchers ask on every SIGURG, each of them.
        const b = (tcpInfo ??= Buffer.alloc(at.offset + 8));
        const len = [b.length];
        // An older kernel fills less of the structure: then the count is not there.
        if ((getsockopt(fd, c.IPPROTO_TCP, at.option, b, len) as number) !== 0 || (len[0] ?? 0) < b.length) return null;
        return Number(b.readBigUInt64LE(at.offset));
      },
    };
  } catch {
    loaded = null;
  }
  return loaded;
}

/** The file descriptor under a connected node:net socket, or null (Windows, or not yet open). */
export function fdOf(sock: object | null | undefined): number | null {
  // node keeps the descriptor on the socket's internal libuv handle.
  const fd = (sock as { _handle?: { fd?: number } | null } | null | undefined)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/**
 * The file descriptor under a bound node:dgram socket, or null. node keeps it on the libuv handle
 * in the socket's internal state (its `_handle` getter is deprecated and warns).
 */
export function dgramFdOf(sock: object | null | undefined): number | null {
  if (!sock) return null;
  const state = Object.getOwnPropertySymbols(sock).find((k) => k.description === 'state symbol');
  const fd = state ? (sock as Record<symbol, { handle?: { fd?: number } | null } | undefined>)[state]?.handle?.fd : undefined;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}
