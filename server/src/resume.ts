/**
 * The daemon's side of the resume handshake (proto/README.md section 20). A connection opened on
 * /ws?resume=<session> carries no new session: its first message must be spiwire.resume, which
 * either hands the connection to the session it names (Session.attach) or is refused with
 * RESUME_REFUSED and close code 4009. A refusal changes nothing: the session, if there is one,
 * still waits for a right resume.
 */
import type { WebSocket } from 'ws';
import * as P from '@spiwire/proto';
import type { DaemonContext } from './daemon-context.js';
import type { Session } from './session.js';

/** A query parameter given once, as text (fastify gives an array for a repeated one). */
export function queryParam(query: unknown, name: string): string | undefined {
  if (!P.isRecord(query)) return undefined;
  const v = query[name];
  return typeof v === 'string' ? v : undefined;
}

/** Serves a connection opened to resume a session; onAttach runs when a session takes it. */
export function acceptResume(ws: WebSocket, ctx: DaemonContext, sessions: ReadonlySet<Session>, authorization: string, onAttach: () => void): void {
  const refuse = (reason: P.ResumeRefusal, message: string): void => {
    // A client's mistake or a lost race with the grace period: a debug line at most.
    ctx.clientMistakes.log({ reason, err: message }, 'resume refused');
    const frame = new P.FrameBuilder((n) => Buffer.allocUnsafe(n), 512);
    frame.add({ jsonrpc: '2.0', id: null, error: { code: P.RESUME_REFUSED, message, data: { reason, daemonId: ctx.daemonId } } });
    ws.send(frame.finish(), { binary: true });
    ws.close(P.RESUME_REFUSED_CLOSE_CODE, `resume refused: ${reason}`);
  };
  const onMessage = (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void => {
    clearTimeout(timer);
    // A resume that comes after its refusal (the close handshake still under way) is not read:
    // a refusal is never half applied.
    if (ws.readyState !== ws.OPEN) return;
    const params = resumeParams(toBuffer(data), isBinary);
    if (typeof params === 'string') return refuse('bad-request', params);
    if (params.daemonId !== ctx.daemonId) return refuse('not-here', `the session is held by daemon ${params.daemonId.slice(0, 80)}, this is daemon ${ctx.daemonId}`);
    let session: Session | undefined;
    for (const s of sessions) if (s.id === params.session) session = s;
    if (!session) return refuse('unknown-session', 'no session of this daemon has that id: it ended (its client closed it, its grace period passed, or its unacknowledged output went past the replay limit) or never was');
    const problem = session.checkResume(params.token, authorization, params.received);
    if (problem) return refuse(problem.reason, problem.message);
    session.attach(ws, params.received);
    onAttach();
  };
  const timer = setTimeout(() => {
    ws.off('message', onMessage);
    refuse('bad-request', `no spiwire.resume within ${P.RESUME_HANDSHAKE_MS} ms`);
  }, P.RESUME_HANDSHAKE_MS);
  timer.unref();
  ws.once('close', () => clearTimeout(timer));
  ws.on('error', (err) => ctx.clientMistakes.log({ err: err.message }, 'websocket error'));
  ws.once('message', onMessage);
}

/** The params of a spiwire.resume message, or what is wrong with it. */
function resumeParams(data: Buffer, isBinary: boolean): P.Params<'spiwire.resume'> | string {
  let rec: P.DecodedRecord;
  try {
    // Counted before any header is parsed: a frame of thousands of headers is refused unread.
    const frame = isBinary ? P.splitFrame(data) : null;
    if (frame !== null && frame.length !== 1) return 'the first message must be one record, spiwire.resume';
    rec = frame !== null ? frame.record(0) : P.decodeText(data.toString('utf8'));
  } catch (err) {
    return `the first message is not a frame: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (!rec.ok) return 'the first message must be one record, spiwire.resume';
  try {
    const msg = P.checkRequestEnvelope(rec.message);
    if (msg.method !== 'spiwire.resume') return `the first message must be spiwire.resume, not ${JSON.stringify(msg.method).slice(0, 80)}`;
    const params = msg.params;
    P.validateParams('spiwire.resume', params);
    return params;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
