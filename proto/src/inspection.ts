/**
 * The bodies of the daemon's read-only inspection endpoints (GET /sessions, GET
 * /sessions/:id/sockets; README "Inspecting a running daemon"), shared by the daemon, the
 * `spiwire sessions|sockets` commands and tests. Each has a guard for readers of untrusted JSON.
 */
import type { SockAddr } from './messages.js';

/** One open session, as GET /sessions lists it. */
export interface SessionInfo {
  id: string;
  /** Where the WebSocket connection came from. */
  peer: { address: string; port: number };
  /** ISO 8601 time of the upgrade. */
  openedAt: string;
  ageSeconds: number;
  /** Open sockets. */
  sockets: number;
  /** Overlapped operations started and not yet completed. */
  pendingOperations: number;
  /** Calls the daemon has not answered yet (blocking calls that wait, among them). */
  runningRequests: number;
  /** Bytes of the session's sends taken by the transport, closed sockets included. */
  bytesSent: number;
  /** Bytes that arrived from the network on the session's sockets, closed sockets included. */
  bytesReceived: number;
  /** Bytes the daemon holds for the session's sends (against its quota). */
  heldBytes: number;
  /** Output written to the session's WebSocket and not yet taken by the kernel: its backpressure. */
  outputUnsent: number;
}

/**
 * The most entries one page of GET /sessions or GET /sessions/:id/sockets holds, and the default
 * of their `limit` query parameter. A longer listing comes in pages: `next` is present when more
 * follow, and given back as `?after=` it asks for the next page.
 */
export const INSPECTION_PAGE_MAX = 1000;

export interface SessionsListing {
  /** In the order the sessions opened. */
  sessions: SessionInfo[];
  /** Present when more sessions follow: pass it as `?after=` for the next page. */
  next?: string;
}

/** One open socket of a session, as GET /sessions/:id/sockets lists it. */
export interface SocketInfo {
  handle: number;
  type: 'tcp' | 'udp';
  family: 'ipv4' | 'ipv6';
  /** The transport state machine's state (created, bound, listening, connecting, connected, ...). */
  state: string;
  local: SockAddr | null;
  remote: SockAddr | null;
  /** Created with WSA_FLAG_OVERLAPPED. */
  overlapped: boolean;
  /** spiwire.setSocketTag's name, or null. */
  tag: string | null;
  /** The FD_* events selected with WSPEventSelect (0: none). */
  events: number;
  options: {
    nonBlocking: boolean;
    sndBuf: number;
    rcvBuf: number;
    noDelay: boolean;
    keepAlive: boolean;
    broadcast: boolean;
    oobInline: boolean;
    linger: { onoff: number; seconds: number };
    sendPolicy: 'reference' | 'windows';
  };
  /** Bytes a receive would return now (FIONREAD). */
  receiveQueuedBytes: number;
  /** Bytes of sends accepted and not yet in the kernel, or waiting to be accepted. */
  sendQueuedBytes: number;
  pendingOperations: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface SocketsListing {
  session: string;
  /** In handle order. */
  sockets: SocketInfo[];
  /** Present when more sockets follow: pass it as `?after=` for the next page. */
  next?: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The members a reader relies on, checked (the rest is taken as the daemon wrote it). */
export function isSessionsListing(v: unknown): v is SessionsListing {
  return isRecord(v) && nextOk(v) && Array.isArray(v['sessions']) && v['sessions'].every((s) => isRecord(s) && typeof s['id'] === 'string' && isRecord(s['peer']) && typeof s['sockets'] === 'number');
}

export function isSocketsListing(v: unknown): v is SocketsListing {
  return isRecord(v) && nextOk(v) && typeof v['session'] === 'string' && Array.isArray(v['sockets']) && v['sockets'].every((s) => isRecord(s) && typeof s['handle'] === 'number' && typeof s['state'] === 'string' && isRecord(s['options']));
}

function nextOk(v: Record<string, unknown>): boolean {
  return v['next'] === undefined || typeof v['next'] === 'string';
}
