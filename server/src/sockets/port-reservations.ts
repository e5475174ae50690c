/**
 * TCP addresses bound by emulated sockets that are not yet listening or connected. node:net
 * cannot hold a bound, idle TCP socket, so a bind is probed on the real stack and then recorded
 * here, so two emulated sockets cannot bind the same address (WSAEADDRINUSE, as on Windows).
 */
import { isAnyAddress } from './sockaddr.js';

interface Reservation {
  family: number;
  address: string;
  port: number;
}

export class PortReservations {
  private readonly held = new Map<number, Reservation>();

  /** False when the address conflicts with one already held. */
  reserve(owner: number, r: Reservation): boolean {
    for (const [h, other] of this.held) {
      if (h === owner || other.port !== r.port || other.family !== r.family) continue;
      if (other.address === r.address || isAnyAddress(other.address) || isAnyAddress(r.address)) return false;
    }
    this.held.set(owner, r);
    return true;
  }

  release(owner: number): void {
    this.held.delete(owner);
  }
}
