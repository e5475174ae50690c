/**
 * SOCKET handles, daemon-wide. Handles look like Windows kernel handles (multiples of 4) and are
 * never reused while the daemon runs, so a stale or foreign handle is always WSAENOTSOCK.
 */
import type { EmulatedSocket } from './sockets/emulated-socket.js';

const FIRST_HANDLE = 0x100;
const HANDLE_STEP = 4;
/** Handles stay below 2^32 so they fit a 32-bit SOCKET. */
const LAST_HANDLE = 0xfffffff0;

export class HandleTable {
  private next = FIRST_HANDLE;
  private readonly sockets = new Map<number, EmulatedSocket>();

  allocate(): number | null {
    if (this.next > LAST_HANDLE) return null;
    const h = this.next;
    this.next += HANDLE_STEP;
    return h;
  }

  add(socket: EmulatedSocket): void {
    this.sockets.set(socket.handle, socket);
  }

  remove(handle: number): void {
    this.sockets.delete(handle);
  }

  /** The socket when it exists, is open and belongs to the session; otherwise null. */
  lookup(handle: number, owner: string): EmulatedSocket | null {
    const s = this.sockets.get(handle);
    return s && s.owner === owner && !s.closed ? s : null;
  }

  get size(): number {
    return this.sockets.size;
  }
}
