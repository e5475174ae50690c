/** Internals that tests need; not part of the public API. */
export { NODE_ERRNO_TO_WSA, DEFAULT_WSA_ERROR, wsaFromNodeError, classifyBroken } from './errno-map.js';
export { parseConfig, defaultConfig, usage, SETTINGS, ConfigError } from './config.js';
export { tokenMatches, bearerToken, isLoopbackHost } from './security.js';
export { TransportBuffer, type SendOp, type StreamSink } from './sockets/transport-buffer.js';
export { ReceiveBuffer } from './sockets/receive-buffer.js';
export { resolveSocketTriple } from '@spiwire/proto';
export { libc, fdOf } from './native/libc.js';
export { wsaFromErrno } from './errno-map.js';
export { maxRecvBytes } from './session.js';
export { TurnBudget } from './turn-budget.js';
export { UdpSocket } from './sockets/udp-socket.js';
