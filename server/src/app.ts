/**
 * The HTTP side of the daemon: health and version endpoints, Prometheus metrics, the inspection
 * endpoints, the operator's fault rules, and the WebSocket upgrade with its checks.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import websocket from '@fastify/websocket';
import { EventEmitter } from 'node:events';
import { ServerResponse, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { constants } from 'node:crypto';
import { getHeapSpaceStatistics } from 'node:v8';
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import * as P from '@spiwire/proto';
import { MAX_TIMER_MS, type DaemonContext } from './daemon-context.js';
import { Session } from './session.js';
import { bearerToken, tokenMatches } from './security.js';
import { trimNow } from './memory-trim.js';
import { OperatorFaultError, type SessionDirectory } from './faults/operator-rules.js';
import type { EmulatedSocket } from './sockets/emulated-socket.js';
import { acceptResume, queryParam } from './resume.js';
import { boundTextMessages } from './text-messages.js';

export const WS_PATH = '/ws';

/** The body of every 404: the same {"error": ...} shape as the refusals of an upgrade. */
export const NOT_FOUND_ERROR = `no such endpoint: the daemon answers GET /healthz, GET /version, GET /stats, GET /metrics, GET /sessions, GET /sessions/:id/sockets, GET|POST /faults, DELETE /faults/:id, POST /faults/reset and WebSocket upgrades on ${WS_PATH}`;
/** A request that asks to upgrade to another protocol than WebSocket, with a body: refused (answerIgnoringUpgrade). */
export const OTHER_UPGRADE_WITH_BODY = 'an Upgrade to another protocol than websocket is answered only for a request without a body: send this one without the Upgrade header';

/** A refusal written straight to a connection node no longer parses: {"error": ...}, then close. */
function rawRefusal(status: number, error: string): string {
  const body = JSON.stringify({ error });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`;
}

/** Writes rawRefusal on a connection node has handed over, then closes it. */
function endWithRefusal(socket: Duplex, status: number, error: string): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(rawRefusal(status, error));
  socket.once('finish', () => socket.destroy());
}

/** What the HTTP parser refused, answered as {"error": ...} (fastify's default adds members of its own). */
function refuseMalformedRequest(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, error] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'the request headers are too large'] : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'the request took too long'] : [400, 'a malformed HTTP request'];
  if (socket.writable) socket.write(rawRefusal(status, error));
  socket.destroy();
}

const WS_KEY = /^[+/0-9A-Za-z]{22}==$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** What is wrong with an upgrade's WebSocket headers (RFC 6455 section 4.2.1), or null. */
function handshakeProblem(headers: IncomingMessage['headers'], offered: string[]): string | null {
  // ws takes the one value only, not a list that holds it among others.
  if (headers.upgrade?.toLowerCase() !== 'websocket') return 'the Upgrade header must be websocket alone';
  const version = headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'the Sec-WebSocket-Version header must be 13';
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !WS_KEY.test(key.trim())) return 'the Sec-WebSocket-Key header must be 16 bytes in base64';
  if (headers['sec-websocket-protocol'] !== undefined && (offered.some((p) => !TOKEN.test(p)) || new Set(offered).size !== offered.length)) {
    return 'the Sec-WebSocket-Protocol header must be a list of distinct tokens';
  }
  return null;
}

export interface AppOptions {
  token: string | undefined;
  allowedOrigins: readonly string[];
  /** Serve HTTPS (and so wss://) with this certificate and key. */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
}

/**
 * How long a whole HTTP request may take to arrive (headers and body): three times the handshake
 * timeout (30 s by default; node requires the headers' limit to be within it), none without one.
 */
export function requestTimeoutOf(handshakeMs: number): number {
  return Math.min(3 * handshakeMs, MAX_TIMER_MS);
}

export async function buildApp(ctx: DaemonContext, sessions: Set<Session>, opts: AppOptions, log: Logger): Promise<FastifyInstance> {
  // A connection that never finishes its TLS handshake or its request's headers is closed after
  // handshakeTimeoutMs (node's defaults are 120 s and 60 s, checked every 30 s), and one whose
  // request (a body trickled in) is not whole by requestTimeoutOf(): until then each holds one of
  // the daemon's connection slots. Renegotiation is refused: nothing here needs it.
  const handshakeMs = ctx.limits.handshakeTimeoutMs;
  const requestMs = requestTimeoutOf(handshakeMs);
  // An HTTP/1.1 request without Host is served like any other, as an upgrade without one is:
  // node's own refusal (400, no body) would be the one answer not in the {"error": ...} shape.
  const httpOptions = { headersTimeout: handshakeMs, requestTimeout: requestMs, connectionsCheckingInterval: Math.max(100, Math.min(1000, handshakeMs)), requireHostHeader: false };
  // (node's TLS server takes 0 as its default of 120 s: "no limit" is the longest timer there is.)
  const tlsHandshakeMs = handshakeMs === 0 ? MAX_TIMER_MS : handshakeMs;
  const app = Fastify({
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: tlsHandshakeMs, secureOptions: constants.SSL_OP_NO_RENEGOTIATION, ...httpOptions } } : { http: httpOptions }),
    // Between requests on a kept-alive connection (fastify's default is 72 s).
    keepAliveTimeout: 5000,
    loggerInstance: log as FastifyBaseLogger,
    // Sessions log their own lifecycle; per-request lines would only repeat it.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
    // A session has no idle timeout: it lasts as long as its connection, however quiet (the
    // daemon sends no pings either; proto/README.md section 1). Fastify's default, spelt out
    // because the protocol depends on it. (The request timeout ends at the upgrade: node frees
    // the connection's HTTP parser, and with it the connection's place in the timeout checks.)
    connectionTimeout: 0,
    requestTimeout: requestMs,
    // Only POST /faults takes a body; a rule is small.
    bodyLimit: P.MAX_OPERATOR_FAULT_BODY,
    // A rule with a __proto__ or constructor member is answered naming that member, as an
    // unknown field, not as "not valid JSON": JSON.parse makes such members plain own
    // properties (it never sets a prototype), and every field of a body is checked by name
    // before anything uses it.
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    // HEAD is a method other than GET: refused like the others (proto/README.md section 1).
    exposeHeadRoutes: false,
    // A session id of any length is looked up, and an unknown one refused as such (404 naming
    // it), not cut off by the router at 100 characters (a 414 of fastify's own shape).
    routerOptions: { maxParamLength: 65536 },
    // A path that is no URL (bad percent-encoding) never reaches a route: 400, in the shape of
    // every refusal.
    frameworkErrors: (err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => void reply.code(400).send({ error: `bad request: ${err.message}` }),
    // Requests the HTTP parser rejects (headers too large, malformed): fastify's default
    // answers in a shape of its own.
    clientErrorHandler: refuseMalformedRequest,
  });
  // Every connection takes one of the daemon's connection slots; when they are all taken, a new
  // one takes the place of the one whose last sign of life is oldest (connection-slots.ts).
  // Upgrades go to 'upgrade' and other requests to 'request'.
  app.server.on('connection', (socket: Socket) => ctx.connections.admit(socket));
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    ctx.connections.requestBegan(req.socket);
    res.once('close', () => ctx.connections.requestEnded(req.socket));
  });
  // CONNECT goes to its own event, and node drops the connection when nothing listens: answered
  // as every other method but GET, with 404 in the one-member shape.
  app.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    // Node took its own error listener off with the parser: a reset would be an uncaught error.
    socket.on('error', ignoreSocketError);
    endWithRefusal(socket, 404, NOT_FOUND_ERROR);
  });
  // The WebSocket plugin hears upgrades through this gate. An upgrade pipelined behind a request
  // still unanswered goes no further, and its connection is closed once that request is answered
  // (the plugin cannot answer an upgrade on a connection already answering: it logged a warning
  // and left the connection open, which node no longer times out).
  const upgrades = new EventEmitter();
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node took its own error listener off with the parser: until ws adds its own (and on the
    // paths where nobody does), a reset would be an uncaught error that stops the daemon.
    socket.on('error', ignoreSocketError);
    if (!ctx.connections.upgradeBegan(req.socket)) {
      ctx.clientMistakes.log({ path: req.url?.slice(0, 200) }, 'upgrade refused: pipelined behind a request still unanswered');
      return;
    }
    if (isWebSocketUpgrade(req)) return void upgrades.emit('upgrade', req, socket, head);
    answerIgnoringUpgrade(app.server, req, socket as Socket);
  });
  // Errors of a request that reached fastify (a body that is not the JSON it claims, a body too
  // large): refused in the one-member shape; on an unknown path, as unknown.
  app.setErrorHandler((err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) {
      log.error({ err, path: req.url }, 'request failed');
      return reply.code(500).send({ error: 'internal error' });
    }
    if (req.is404) return reply.code(404).send({ error: NOT_FOUND_ERROR });
    ctx.clientMistakes.log({ err: err.message, path: req.url.slice(0, 200), status }, 'request refused');
    return reply.code(status).send({ error: err.message });
  });
  await app.register(websocket, {
    options: {
      // Where the plugin listens for upgrades: the gate above, not the HTTP server itself.
      server: upgrades as unknown as Server,
      maxPayload: ctx.limits.maxFrameBytes,
      // Spelt out because the spec promises them (section 1). ws's own allowance of 60 pongs
      // dropped a client that sent 61 pings in one write.
      maxFragments: P.MAX_MESSAGE_FRAGMENTS,
      // (ws 8.23 has the option; its type definitions do not yet.)
      ...({ maxPendingAutoPongs: P.MAX_PENDING_PONGS } as object),
      // The client must offer the versioned subprotocol; the upgrade check below refuses others.
      handleProtocols: (protocols: Set<string>) => (protocols.has(P.SUBPROTOCOL) ? P.SUBPROTOCOL : false),
    },
    // Sessions are shut down by the daemon before the server closes.
    preClose: (done) => done(),
    // Errors on an open WebSocket (invalid UTF-8, a bad frame, a reset) are the client's doing:
    // ws closes the connection with the right code itself; the plugin's default logs at error.
    errorHandler: (error, _socket, request) => ctx.clientMistakes.log({ err: error.message, path: request.url }, 'websocket error'),
  });
  // Every upgraded connection, sessions and resume handshakes alike, counts toward the budget of
  // messages still arriving, and its text messages are bounded (MAX_TEXT_BYTES).
  app.websocketServer.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    ctx.partialFrames.watch(ws, req.socket);
    boundTextMessages(ws, P.MAX_TEXT_BYTES);
  });
  // Only /ws upgrades. The plugin would complete an upgrade on any route and close it after,
  // with no token, Origin or subprotocol check: refuse before the handshake instead.
  app.addHook('onRequest', async (req, reply) => {
    if (req.ws && req.routeOptions.url !== WS_PATH) {
      // On /ws itself only the method is wrong (a POST upgrade): an endpoint that does not exist.
      const onWsPath = req.url.split('?', 1)[0] === WS_PATH;
      return reply.code(404).send({ error: onWsPath ? NOT_FOUND_ERROR : `WebSocket connections are accepted only on ${WS_PATH}` });
    }
    return undefined;
  });
  // Unknown paths and methods answer in the shape of every other refusal (fastify's own 404
  // body has three members of its own).
  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: NOT_FOUND_ERROR }));

  // heldBytes: bytes accepted for sends and not yet in the kernel, of live and ended sessions;
  // heldBytesOfEndedSessions: the part that ended sessions left behind (released within --linger).
  // partialFrameBytes: bytes of WebSocket messages still arriving, all connections (--partial-frames-budget).
  const held = (): Record<string, number> => ({ heldBytes: ctx.held.total, heldBytesOfEndedSessions: ctx.held.ofEndedSessions, drainingConnections: ctx.draining.size, partialFrameBytes: ctx.partialFrames.total });
  app.get('/healthz', async () => ({ status: ctx.shuttingDown ? 'stopping' : 'ok', sessions: sessions.size, sockets: ctx.handles.size, ...held() }));
  app.get('/version', async () => ({ name: 'spiwire', version: ctx.version, protocol: P.PROTOCOL_VERSION, subprotocol: P.SUBPROTOCOL, node: process.version }));
  // Counters and memory for benchmarks and operators. With the token set, only clients holding it may read them.
  app.get('/stats', async (req, reply) => {
    if (opts.token !== undefined && !tokenMatches(opts.token, bearerToken(req.headers.authorization))) return reply.code(401).send({ error: 'token required' });
    const gc = (globalThis as { gc?: () => void }).gc;
    // ?gc=1 collects garbage first when the daemon runs with --expose-gc, so memory figures are
    // steady, and hands what that freed back to the system (Buffers are freed by the collector).
    if (gc && (req.query as Record<string, string>)['gc'] === '1') {
      gc();
      trimNow();
    }
    let pendingOps = 0;
    let pendingRequests = 0;
    for (const s of sessions) {
      pendingOps += s.pendingOperations;
      pendingRequests += s.runningRequests;
    }
    return { sessions: sessions.size, sockets: ctx.handles.size, queuedConnections: ctx.queuedConnections, pendingOps, pendingRequests, ...held(), partialFrameCloses: ctx.partialFrames.closedForBudget, httpConnections: ctx.connections.size, evictedConnections: ctx.connections.evicted, refusedConnections: ctx.connections.refused, readSlotWaits: ctx.readSlots.waits, outputWaitingBytes: ctx.output.total, receivedBytes: ctx.received.total, bookkeepingBytes: ctx.bookkeeping.total, memory: process.memoryUsage(), heapCodeBytes: heapCodeBytes(), gcExposed: gc !== undefined, gc: ctx.gc?.totals() ?? null };
  });

  const peers = new WeakMap<Session, PeerInfo>();
  let sessionsOpened = 0;
  ctx.metrics.watch({ sessions: () => sessions, handles: ctx.handles, held: ctx.held, bookkeeping: ctx.bookkeeping, drainingConnections: () => ctx.draining.size, queuedConnections: () => ctx.queuedConnections, partialFrames: ctx.partialFrames, readSlots: ctx.readSlots, connections: ctx.connections });
  registerInspectionRoutes(app, ctx, sessions, peers, opts);
  registerFaultRoutes(app, ctx, sessions, opts);

  app.get(
    WS_PATH,
    {
      websocket: true,
      preValidation: async (req, reply) => {
        const refuse = (code: number, error: string): unknown => reply.code(code).send({ error });
        // A plain HTTP request to /ws: only an upgrade is served here (RFC 9110 426 names the protocol).
        if (!req.ws) {
          void reply.header('upgrade', 'websocket');
          return refuse(426, `${WS_PATH} takes WebSocket upgrades only`);
        }
        if (ctx.shuttingDown) return refuse(503, P.SHUTTING_DOWN_REFUSAL);
        const origin = req.headers.origin;
        // A browser always sends Origin; refusing unknown ones keeps web pages away from a local daemon.
        if (origin !== undefined && !opts.allowedOrigins.includes(origin)) return refuse(403, `origin ${origin} is not allowed`);
        if (opts.token !== undefined && !tokenMatches(opts.token, bearerToken(req.headers.authorization))) {
          return refuse(401, 'a valid "Authorization: Bearer <token>" header is required');
        }
        const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((x) => x.trim());
        // What ws itself would refuse in plain text: refused here in the JSON of every refusal.
        const malformed = handshakeProblem(req.headers, offered);
        if (malformed !== null) return refuse(400, malformed);
        if (!offered.includes(P.SUBPROTOCOL)) return refuse(400, `the WebSocket subprotocol ${P.SUBPROTOCOL} must be offered`);
        // A resume brings no new session (resume.ts).
        if (queryParam(req.query, P.RESUME_QUERY) === undefined && sessions.size >= ctx.limits.maxSessions) return refuse(503, `the daemon has its maximum of ${ctx.limits.maxSessions} sessions`);
        return undefined;
      },
    },
    (socket, req) => {
      const authorization = bearerToken(req.headers.authorization) ?? '';
      if (queryParam(req.query, P.RESUME_QUERY) !== undefined) {
        // Until its spiwire.resume comes, a resume handshake is as idle as any connection.
        ctx.connections.waiting(req.socket);
        return acceptResume(socket, ctx, sessions, authorization, () => ctx.connections.hold(req.socket));
      }
      ctx.connections.hold(req.socket);
      // A session outlives its connection while it waits for a resume: it leaves the set when it ends.
      const session: Session = new Session(socket, ctx, log, {
        resumable: queryParam(req.query, P.RESUMABLE_QUERY) === '1',
        authorization,
        onEnd: () => {
          sessions.delete(session);
          // (The session closed its sockets as it ended, first: their bytes are in the daemon's totals.)
          ctx.handles.forgetOwner(session.id);
        },
      });
      sessions.add(session);
      ctx.metrics.sessionOpened();
      peers.set(session, { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0, opened: Date.now(), serial: ++sessionsOpened });
    },
  );
  return app;
}

/** Where a session's connection came from, and when. */
interface PeerInfo {
  address: string;
  port: number;
  /** Date.now() at the upgrade. */
  opened: number;
  /** 1 for the daemon's first session, and so on: GET /sessions pages by it. */
  serial: number;
}

/** The open session with this id, if any. */
function sessionById(sessions: Set<Session>, id: string): Session | undefined {
  for (const s of sessions) if (s.id === id) return s;
  return undefined;
}

/** A page of an inspection listing: at most limit entries, those after the cursor after. */
interface Page {
  limit: number;
  after: number;
}

/**
 * ?limit= and ?after= of GET /sessions and GET /sessions/:id/sockets, or what is wrong with them.
 * The cursor is a decimal number the previous page gave as `next` (a session's serial, a socket's
 * handle): both only grow, so a page never repeats an entry or skips one still open.
 */
function pageOf(query: unknown): Page | { error: string; field: string } {
  const q = (typeof query === 'object' && query !== null ? query : {}) as Record<string, unknown>;
  const unknown = Object.keys(q).find((k) => k !== 'limit' && k !== 'after');
  if (unknown !== undefined) return { error: `${JSON.stringify(unknown.slice(0, 64))} is not a parameter here: they are limit and after`, field: unknown.slice(0, 64) };
  const number = (name: string, min: number, max: number, fallback: number): number | { error: string; field: string } => {
    const raw = q[name];
    if (raw === undefined) return fallback;
    const n = typeof raw === 'string' && /^\d{1,16}$/.test(raw) ? Number(raw) : NaN;
    if (!(n >= min && n <= max)) return { error: `${name} must be given once, as a whole number from ${min} to ${max}`, field: name };
    return n;
  };
  const limit = number('limit', 1, P.INSPECTION_PAGE_MAX, P.INSPECTION_PAGE_MAX);
  if (typeof limit !== 'number') return limit;
  const after = number('after', 0, Number.MAX_SAFE_INTEGER, 0);
  if (typeof after !== 'number') return after;
  return { limit, after };
}

/**
 * What the daemon is doing, read-only: GET /metrics (Prometheus text format, docs/metrics.md),
 * GET /sessions and GET /sessions/:id/sockets. They follow /stats' rule: a daemon with a token
 * serves them only to a client that presents it; one without a token listens on loopback only
 * (index.ts refuses anything else), so they are open to this machine as /stats is. Unlike the
 * fault API they change nothing, so they do not need a token to exist.
 */
function registerInspectionRoutes(app: FastifyInstance, ctx: DaemonContext, sessions: Set<Session>, peers: WeakMap<Session, PeerInfo>, opts: AppOptions): void {
  const guard = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    if (opts.token === undefined || tokenMatches(opts.token, bearerToken(req.headers.authorization))) return undefined;
    ctx.clientMistakes.log({ path: req.url, status: 401, err: 'token' }, 'inspection request refused');
    return reply.code(401).send({ error: 'a valid "Authorization: Bearer <token>" header is required' });
  };

  app.get('/metrics', { onRequest: guard }, async (_req, reply) => {
    const text = await ctx.metrics.text();
    return reply.header('content-type', ctx.metrics.contentType).send(text);
  });

  const badPage = (req: FastifyRequest, reply: FastifyReply, bad: { error: string; field: string }): FastifyReply => {
    ctx.clientMistakes.log({ path: req.url.slice(0, 200), status: 400, err: bad.field }, 'inspection request refused');
    return reply.code(400).send(bad);
  };

  // One pass over the sessions and each one's own sockets: every page costs the daemon what the
  // listing is worth, never sessions x sockets.
  app.get('/sessions', { onRequest: guard }, async (req, reply) => {
    const page = pageOf(req.query);
    if (!('limit' in page)) return badPage(req, reply, page);
    const now = Date.now();
    const listing: P.SessionsListing = { sessions: [] };
    let lastSerial = 0;
    for (const s of sessions) {
      const peer = peers.get(s);
      const serial = peer?.serial ?? 0;
      if (serial <= page.after) continue;
      if (listing.sessions.length === page.limit) {
        listing.next = String(lastSerial);
        break;
      }
      lastSerial = serial;
      const bytes = ctx.handles.ownerBytes(s.id, s.openSockets());
      listing.sessions.push({
        id: s.id,
        peer: { address: peer?.address ?? '', port: peer?.port ?? 0 },
        openedAt: new Date(peer?.opened ?? now).toISOString(),
        ageSeconds: Math.round((now - (peer?.opened ?? now)) / 100) / 10,
        sockets: s.socketCount,
        pendingOperations: s.pendingOperations,
        runningRequests: s.runningRequests,
        bytesSent: bytes.sent,
        bytesReceived: bytes.received,
        heldBytes: s.quota.held,
        outputUnsent: s.outputUnsent,
      });
    }
    return listing;
  });

  app.get<{ Params: { id: string } }>('/sessions/:id/sockets', { onRequest: guard }, async (req, reply) => {
    const session = sessionById(sessions, req.params.id);
    if (!session) {
      ctx.clientMistakes.log({ path: req.url.slice(0, 200), status: 404, err: 'no such session' }, 'inspection request refused');
      return reply.code(404).send({ error: `no open session has the id ${JSON.stringify(req.params.id.slice(0, 200))}`, field: 'id' });
    }
    const page = pageOf(req.query);
    if (!('limit' in page)) return badPage(req, reply, page);
    const listing: P.SocketsListing = { session: session.id, sockets: [] };
    for (const sock of session.openSockets()) {
      if (sock.closed || sock.handle <= page.after) continue;
      if (listing.sockets.length === page.limit) {
        listing.next = String(listing.sockets[listing.sockets.length - 1]!.handle);
        break;
      }
      listing.sockets.push(socketInfo(sock, session.operationsOn(sock.handle)));
    }
    return listing;
  });
}

function socketInfo(sock: EmulatedSocket, pendingOperations: number): P.SocketInfo {
  const o = sock.opts;
  return {
    handle: sock.handle,
    type: sock.type === P.SOCK_STREAM ? 'tcp' : 'udp',
    family: sock.af === P.AF_INET6 ? 'ipv6' : 'ipv4',
    state: sock.stateName,
    local: sock.localName(),
    remote: sock.peerName(),
    overlapped: sock.overlapped,
    tag: sock.tag,
    events: sock.selection,
    options: {
      nonBlocking: o.nonBlocking,
      sndBuf: o.sndBuf,
      rcvBuf: o.rcvBuf,
      noDelay: o.noDelay,
      keepAlive: o.keepAlive,
      broadcast: o.broadcast,
      oobInline: o.oobInline,
      linger: { onoff: o.linger.onoff, seconds: o.linger.seconds },
      sendPolicy: o.windowsPolicy ? 'windows' : 'reference',
    },
    receiveQueuedBytes: sock.readable(),
    sendQueuedBytes: sock.queuedSendBytes,
    pendingOperations,
    bytesSent: sock.bytesTaken,
    bytesReceived: sock.bytesReceived,
  };
}

/**
 * The operator's fault rules (docs/faults.md, "For operators"). They can break every session, so
 * they are served only by a daemon with a token, and only to a client that presents it.
 */
function registerFaultRoutes(app: FastifyInstance, ctx: DaemonContext, sessions: Set<Session>, opts: AppOptions): void {
  const byId = (id: string): Session | undefined => sessionById(sessions, id);
  const directory: SessionDirectory = {
    has: (id) => byId(id) !== undefined,
    socketType: (id, handle) => byId(id)?.lookup(handle)?.type ?? null,
  };
  const refuse = (reply: FastifyReply, status: number, error: string, field?: string): FastifyReply => reply.code(status).send(field === undefined ? { error } : { error, field });
  // Client mistakes (a bad body, a wrong token) are debug lines at most, rate-limited.
  const mistake = (req: FastifyRequest, status: number, error: string): void => ctx.clientMistakes.log({ path: req.url, status, err: error }, 'operator faults request refused');

  const guard = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    if (opts.token === undefined) {
      mistake(req, 403, 'no token');
      return refuse(reply, 403, 'the operator fault API is off: start the daemon with --token (or SPIWIRE_TOKEN) to use it');
    }
    if (!tokenMatches(opts.token, bearerToken(req.headers.authorization))) {
      mistake(req, 401, 'token');
      return refuse(reply, 401, 'a valid "Authorization: Bearer <token>" header is required');
    }
    return undefined;
  };

  // Bodies fastify cannot take (bad JSON, too large, another content type) answer in the same shape.
  const onError = (err: Error & { statusCode?: number }, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (err.statusCode === undefined || err.statusCode < 400 || err.statusCode >= 500) {
      // Not the client's doing.
      req.log.error({ err }, 'operator faults request failed');
      return refuse(reply, 500, 'internal error');
    }
    const status = err.statusCode;
    const error = status === 413 ? `the body is larger than ${P.MAX_OPERATOR_FAULT_BODY} bytes` : status === 415 ? 'a rule is sent as application/json' : `the body is not a JSON rule: ${err.message}`;
    mistake(req, status, err.message);
    return refuse(reply, status, error, '');
  };

  // The routes without a body take every well-formed content type: a 415 there means a
  // Content-Type header that does not parse.
  const onRemovalError = (err: Error & { statusCode?: number }, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    if (err.statusCode !== 415) return onError(err, req, reply);
    mistake(req, 400, err.message);
    return refuse(reply, 400, 'the Content-Type header is malformed (a body here is ignored, but its header must parse)', '');
  };

  // POST /faults takes a JSON body and nothing else (another content type is 415); the routes
  // without a body ignore whatever comes (some HTTP clients label an empty DELETE
  // application/json), up to the same body limit.
  void app.register(async (scope) => {
    scope.removeContentTypeParser('text/plain');
    scope.get('/faults', { onRequest: guard, errorHandler: onError }, async (): Promise<P.FaultsListing> => ({
      rules: ctx.faults.list(),
      sessions: [...sessions].map((s) => ({ session: s.id, rules: s.faults.list() })),
    }));

    scope.post('/faults', { onRequest: guard, errorHandler: onError }, async (req, reply) => {
      const body: unknown = req.body;
      const problem = P.operatorFaultRuleProblem(body);
      if (problem) {
        mistake(req, 400, `${problem.field}: ${problem.what}`);
        return refuse(reply, 400, `${problem.field === '' ? 'the rule' : problem.field} ${problem.what}`, problem.field);
      }
      if (!P.isOperatorFaultRule(body)) return refuse(reply, 400, 'the body is not a fault rule', '');
      try {
        const id = ctx.faults.add(body, directory);
        return reply.code(201).send({ id });
      } catch (err) {
        if (!(err instanceof OperatorFaultError)) throw err;
        mistake(req, err.status, err.message);
        return refuse(reply, err.status, err.message, err.field ?? '');
      }
    });
  });
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, _body, done) => done(null, undefined));
    scope.delete<{ Params: { id: string } }>('/faults/:id', { onRequest: guard, errorHandler: onRemovalError }, async (req, reply) => {
      if (!ctx.faults.remove(req.params.id)) {
        mistake(req, 404, 'no such rule');
        return refuse(reply, 404, `no operator rule has the id ${JSON.stringify(req.params.id)} (a session's own rules are removed by the session)`, 'id');
      }
      return reply.code(204).send();
    });

    scope.post('/faults/reset', { onRequest: guard, errorHandler: onRemovalError }, async (req, reply) => {
      const query = (typeof req.query === 'object' && req.query !== null ? req.query : {}) as Record<string, unknown>;
      // A misspelt parameter must not widen the reset to every rule.
      const unknown = Object.keys(query).find((k) => k !== 'session');
      if (unknown !== undefined) {
        mistake(req, 400, `query ${unknown}`);
        return refuse(reply, 400, `${JSON.stringify(unknown)} is not a parameter of /faults/reset: the only one is session`, unknown);
      }
      const raw = query['session'];
      if (raw !== undefined && typeof raw !== 'string') {
        mistake(req, 400, 'session');
        return refuse(reply, 400, 'session must be given once', 'session');
      }
      const session = raw;
      if (session !== undefined && !directory.has(session) && !ctx.faults.hasSession(session)) {
        mistake(req, 404, 'no such session');
        return refuse(reply, 404, `no open session and no operator rule has the session id ${JSON.stringify(session)}`, 'session');
      }
      return { removed: ctx.faults.reset(session) };
    });
  });
}

/** A connection node has handed over: its errors (a reset) end it, and are no one's fault. */
function ignoreSocketError(): void {}

/** Whether an upgrade asks for WebSocket (ws then checks the rest of the handshake). */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return String(req.headers.upgrade ?? '').split(',').some((p) => p.trim().toLowerCase() === 'websocket');
}

/**
 * An upgrade to another protocol (h2c, which some HTTP clients offer on every request): the
 * server may ignore it and answer in HTTP/1.1 (RFC 9110, section 7.8). Node has already taken the
 * connection from its HTTP parser, so the answer is the last thing on it. A request without a
 * body goes to the routes as any other; one with a body is refused, since nothing would read it.
 */
function answerIgnoringUpgrade(server: Server, req: IncomingMessage, socket: Socket): void {
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) !== 0;
  if (hasBody) return endWithRefusal(socket, 400, OTHER_UPGRADE_WITH_BODY);
  // As node would have made it, but for this one request only.
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  // Closed once the answer is out: the server would not time this connection out.
  res.once('finish', () => socket.destroySoon());
  res.once('close', () => socket.destroy());
  // The request has no body: it ends now (node's parser, which would have ended it, is gone).
  req.push(null);
  server.emit('request', req, res);
}

/**
 * The part of heapUsed that is compiled code (V8's code spaces). The JIT adds to it as the paths a
 * workload runs get hot, once per process, not per socket or operation; memory figures per unit
 * leave it out (the benchmark's scenario 6).
 */
function heapCodeBytes(): number {
  let n = 0;
  for (const space of getHeapSpaceStatistics()) if (space.space_name.startsWith('code_')) n += space.space_used_size;
  return n;
}
