/**
 * The bulk path through a WebSocket-to-TCP relay, for comparison with spiwire's: a ws client
 * here sends binary messages to a relay (the naive one in peer.ts, or websockify), which writes
 * them to a TCP connection to the discard peer. Timed, like the others, from the first send to the
 * peer holding the last byte; the count is read at the peer, never inferred from the close
 * (websockify drops the tail of a stream whose client closes right after sending).
 */
import WebSocket from 'ws';
import type { Ctx } from './context.js';
import { now } from './stats.js';

/** Bytes the client lets the WebSocket buffer before it waits for a send callback. */
const WINDOW = 8 * 1024 * 1024;

export async function relayRun(ctx: Ctx, port: number, protocols: string[], chunk: number, count: number): Promise<{ seconds: number; bytes: number }> {
  const buf = Buffer.alloc(chunk, 0x5a);
  const total = chunk * count;
  // Registered before the relay can connect, so it binds to the relay's connection.
  const reached = ctx.discard.request<{ t: number; bytes: number; remotePort: number }>('expectNext', { port: ctx.discardPort, bytes: total });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, protocols, { perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const t0 = now();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    let inFlight = 0;
    const pump = (): void => {
      while (sent < count && inFlight < WINDOW) {
        sent++;
        inFlight += chunk;
        ws.send(buf, { binary: true }, (err) => {
          if (err) return reject(err);
          inFlight -= chunk;
          if (sent === count && inFlight === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  const r = await reached;
  const seconds = ((ctx.sharedClock ? r.t : now()) - t0) / 1e9;
  ws.close();
  const end = await ctx.discard.connectionEnded(ctx.discardPort, r.remotePort);
  return { seconds, bytes: end.bytes };
}
