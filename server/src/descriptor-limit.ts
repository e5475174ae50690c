/**
 * Defaults derived from the process's open-file limit. Every TCP connection, listening socket,
 * bound UDP socket and WebSocket session holds a descriptor; a daemon that lets clients take them
 * all can no longer accept health checks or new sessions. So the daemon keeps a reserve for
 * itself and divides the rest between sessions and sockets.
 */
import { readFileSync } from 'node:fs';
import { HTTP_HEADROOM } from './connection-slots.js';

/** Used where the limit cannot be read (not Linux): the usual soft limit. */
const FALLBACK_LIMIT = 1024;

/** The soft RLIMIT_NOFILE of this process (node raises it to the hard limit at start-up). */
export function descriptorLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    if (soft === 'unlimited') return 1 << 20;
    const n = Number(soft);
    if (Number.isSafeInteger(n) && n > 0) return n;
  } catch {
    // Not Linux: the fallback below.
  }
  return FALLBACK_LIMIT;
}

export interface DescriptorBudget {
  /** What the process may open. */
  limit: number;
  /** Kept for the daemon itself: its listener, health checks, logs, bind probes. */
  reserve: number;
  /** WebSocket sessions at once. */
  maxSessions: number;
  /** Emulated sockets (and connections queued on listeners) across every session. */
  maxSocketsTotal: number;
  /** Emulated sockets of one session: half the total, so no session can lock the others out. */
  maxSocketsPerSession: number;
}

/**
 * Descriptors the daemon itself holds whatever clients do: about 20 at rest (stdio, epoll,
 * eventfds, signal pipes, its listener), and more for a moment (bind probes, files being read).
 */
export const OWN_DESCRIPTORS = 64;

/**
 * Descriptors the daemon may need with every allowance of limits in use at once: its own, the HTTP
 * headroom, each session's connection (and trace file, when tracing), every socket. When that is
 * more than the open-file limit the daemon says so when it starts.
 */
export function descriptorsNeeded(limits: { maxSessions: number; maxSocketsTotal: number }, tracing: boolean): number {
  return OWN_DESCRIPTORS + HTTP_HEADROOM + limits.maxSessions * (tracing ? 2 : 1) + limits.maxSocketsTotal;
}

/**
 * The reserve is the daemon's own descriptors, the HTTP connections it serves beyond sessions
 * (HTTP_HEADROOM, connection-slots.ts) and a twentieth of the limit to spare. Each session takes
 * two of the rest: its connection and, with --trace-dir, its trace file. (A reserve of a twentieth
 * alone let the allowances add up to more than the limit below about 1,900 descriptors: with every
 * allowance taken, health checks and calls failed for want of a descriptor.)
 */
export function descriptorBudget(limit = descriptorLimit()): DescriptorBudget {
  const reserve = OWN_DESCRIPTORS + HTTP_HEADROOM + Math.ceil(limit / 20);
  const usable = Math.max(64, limit - reserve);
  const maxSessions = Math.min(1024, Math.max(8, Math.floor(usable / 10)));
  const maxSocketsTotal = Math.max(16, usable - 2 * maxSessions);
  return { limit, reserve, maxSessions, maxSocketsTotal, maxSocketsPerSession: Math.max(8, Math.floor(maxSocketsTotal / 2)) };
}
