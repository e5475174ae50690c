/**
 * ICMP errors for the datagrams of any UDP socket, connected or not.
 *
 * Windows reports an ICMP port unreachable for an earlier datagram on the socket's next receive
 * (WSAECONNRESET), whether the socket was connected or sent with WSPSendTo, until
 * SIO_UDP_CONNRESET turns that off. Linux tells an unconnected socket nothing, unless IP_RECVERR
 * (IPV6_RECVERR) is on: then every ICMP error sets the socket's pending error, which node reports
 * once (a receive error, or a failed send), and also queues an entry on the socket's error queue.
 * That queue must be read: while it holds anything, epoll reports the descriptor in error, and
 * libuv, which never reads it, would wake for it in a busy loop. So the option goes on only where
 * the queue can be read (the C library through koffi), and every error node reports for such a
 * socket drains it.
 */
import { libc } from '../native/libc.js';

/** Entries read from one queue at most per drain: the kernel bounds the queue by the receive buffer anyway. */
const MAX_DRAINED = 4096;

/** Turns ICMP error reporting on for a bound UDP descriptor; false where it could not be. */
export function reportIcmpErrors(fd: number, v6: boolean): boolean {
  const native = libc();
  const at = native?.c.RECVERR;
  if (!native || !at) return false;
  const { level, name } = v6 ? at.v6 : at.v4;
  return native.setInt(fd, level, name, 1) === 0;
}

const scratch = new Uint8Array(64);

/**
 * Reads (and drops) every entry of the descriptor's error queue; returns how many there were. The
 * last read also clears the pending error those entries set, so that a later send does not fail
 * for them.
 */
export function drainIcmpErrors(fd: number): number {
  const native = libc();
  if (!native) return 0;
  const flags = native.c.MSG_ERRQUEUE | native.c.MSG_DONTWAIT;
  let n = 0;
  // Each entry comes back as the start of the datagram it was about; the bytes are not needed.
  while (n < MAX_DRAINED && native.recv(fd, scratch, flags) >= 0) n++;
  return n;
}
