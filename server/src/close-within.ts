/** Ending a WebSocket connection without waiting on its client for ever (at shutdown, or for an output backlog). */
import type { WebSocket } from 'ws';

/** How long a client has to answer the close handshake at shutdown (spec section 16). */
export const SHUTDOWN_CLOSE_MS = 2000;
/** How long a client whose output backlog ended its session has to answer the 4008 close. */
export const BACKLOG_CLOSE_MS = 1000;
/** The close reason at shutdown (close code 1001, going away). */
export const SHUTDOWN_CLOSE_REASON = 'daemon shutting down';

/**
 * Closes ws with code and reason (unless it is closed already) and resolves once it is closed; a
 * client that has not finished the closing handshake within ms is dropped.
 */
export function closeWithin(ws: WebSocket, code: number, reason: string, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (ws.readyState === ws.CLOSED) return resolve();
    const t = setTimeout(() => {
      ws.terminate();
      resolve();
    }, ms);
    ws.once('close', () => {
      clearTimeout(t);
      resolve();
    });
    // A connection already closing (a refused resume, say) only waits for its client.
    if (ws.readyState === ws.OPEN) ws.close(code, reason);
  });
}
