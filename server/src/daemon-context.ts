/** What every session of one daemon shares. */
import type { Logger } from 'pino';
import { HandleTable } from './handles.js';
import { PortReservations } from './sockets/port-reservations.js';
import { AllowList } from './allow-list.js';
import { RateLimitedLog } from './rate-limited-log.js';

export interface DaemonLimits {
  /** Largest WebSocket message accepted, in bytes. */
  maxFrameBytes: number;
  /** Unanswered requests one session may have. */
  maxPendingRequests: number;
  /** Open sockets one session may hold (WSAEMFILE beyond). */
  maxSocketsPerSession: number;
  /** SO_SNDBUF of a new socket: the transport buffer size. */
  defaultSndBuf: number;
  /** SO_RCVBUF of a new socket. */
  defaultRcvBuf: number;
  /** Pending overlapped operations one socket may have; more fail with WSAEWOULDBLOCK (as on Windows NT). */
  maxOutstandingOpsPerSocket: number;
  /** Bytes the daemon may hold for one session's sends (queued or on their way to the kernel); beyond, WSAENOBUFS. */
  sessionQuotaBytes: number;
  /** The send policy of new sockets: 0 the reference page's, 1 Windows' observed one (SO_SPIWIRE_SEND_POLICY). */
  sendPolicy: number;
}

export const DEFAULT_LIMITS: DaemonLimits = {
  maxFrameBytes: 16 * 1024 * 1024,
  maxPendingRequests: 65536,
  maxSocketsPerSession: 65536,
  defaultSndBuf: 65536,
  defaultRcvBuf: 65536,
  maxOutstandingOpsPerSocket: 4096,
  sendPolicy: 0,
  sessionQuotaBytes: 256 * 1024 * 1024,
};

export class DaemonContext {
  readonly handles = new HandleTable();
  readonly ports = new PortReservations();
  shuttingDown = false;
  /** Debug lines about what clients got wrong, rate-limited (a client must not flood the log). */
  readonly clientMistakes: RateLimitedLog;

  constructor(
    readonly log: Logger,
    readonly limits: DaemonLimits,
    readonly version: string,
    /** Destinations WSPConnect, WSPSendTo and WSPBind may use. */
    readonly allow: AllowList = AllowList.ANY,
  ) {
    this.clientMistakes = new RateLimitedLog(log);
  }
}
