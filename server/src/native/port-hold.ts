/**
 * A bound TCP port held in the kernel while the emulated socket is bound but neither listening nor
 * connected. node:net has no bound, idle TCP socket, so without this the port would be the
 * daemon's only on paper (port-reservations.ts) and the host could hand it to anyone: to another
 * program's bind, or to a port-0 bind or an outgoing connection's port, which the kernel picks
 * among ports no socket has bound. On Windows the bind itself holds the port.
 *
 * The holder is a real socket bound to the same address, never listening. It sets SO_REUSEADDR,
 * as libuv does on every TCP bind, so that the daemon's own listen or connect from the port, made
 * through node:net beside it, is allowed (Linux lets sockets that all set SO_REUSEADDR share a port
 * while none of them listens). Programs that bind without SO_REUSEADDR get EADDRINUSE, and the
 * kernel never picks the port for anyone's port-0 bind or connection while it is held. What it
 * cannot stop: a program that sets SO_REUSEADDR too (node's sockets always do) may still bind and
 * listen on the port, after which the daemon's own listen there fails with WSAEADDRINUSE.
 *
 * Linux only: BSD stacks (macOS) let two sockets bind one identical address only with
 * SO_REUSEPORT, so there the holder would refuse the daemon's own listen.
 */
import { libc, type Libc } from './libc.js';

export interface TcpPortAddress {
  /** 4 or 6. */
  family: 4 | 6;
  /** The numeric address, without a scope suffix. */
  address: string;
  /** An IPv6 scope as an interface index (0: none). */
  scope: number;
  port: number;
  /** An IPv6 socket that also takes IPv4 (IPV6_V6ONLY off). */
  dualStack: boolean;
}

export interface PortHold {
  /** Closes the holder; the port is the kernel's to give again (idempotent). */
  release(): void;
}

/** The struct sockaddr_in or sockaddr_in6 of a, in the platform's layout; null when a is not numeric. */
function sockaddrOf(lib: Libc, a: TcpPortAddress): Uint8Array | null {
  const v6 = a.family === 6;
  const b = Buffer.alloc(v6 ? 28 : 16);
  if (lib.c.SOCKADDR_HAS_LEN) {
    b[0] = b.length;
    b[1] = v6 ? lib.c.AF_INET6 : 2;
  } else b.writeUInt16LE(v6 ? lib.c.AF_INET6 : 2, 0);
  b.writeUInt16BE(a.port, 2);
  if (!lib.addressBytes(v6 ? 'ipv6' : 'ipv4', a.address, b.subarray(v6 ? 8 : 4))) return null;
  if (v6) b.writeUInt32LE(a.scope >>> 0, 24);
  return b;
}

/** Whether holdTcpPort can hold ports here at all (Linux, with the C library). */
export function canHoldPorts(): boolean {
  return process.platform === 'linux' && libc() !== null;
}

/**
 * Binds a holder to a, or returns null: the C library is not available, or the bind failed. The
 * one failure expected: a listening socket of the daemon's has this very address (a socket may
 * bind beside a listener of its session with SO_REUSEADDR, and Linux refuses a second bind there);
 * the caller tries again when that listener closes.
 */
export function holdTcpPort(a: TcpPortAddress): PortHold | null {
  const lib = libc();
  if (!lib || a.port === 0 || !canHoldPorts()) return null;
  const sockaddr = sockaddrOf(lib, a);
  if (!sockaddr) return null;
  const fd = lib.tcpSocket(a.family === 6 ? 'ipv6' : 'ipv4');
  if (fd < 0) return null;
  const c = lib.c;
  const ok =
    lib.setInt(fd, c.SOL_SOCKET, c.SO_REUSEADDR, 1) === 0 &&
    (a.family === 4 || lib.setInt(fd, c.IPPROTO_IPV6, c.IPV6_V6ONLY, a.dualStack ? 0 : 1) === 0) &&
    lib.bind(fd, sockaddr) === 0;
  if (!ok) {
    lib.close(fd);
    return null;
  }
  let open = true;
  return {
    release() {
      if (!open) return;
      open = false;
      lib.close(fd);
    },
  };
}
