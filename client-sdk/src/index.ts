/** The spiwire client SDK. */
import { SpiSession, type ConnectOptions } from './spi-session.js';

export * from '@spiwire/proto';
export { SpiSession, FROM_PROTOCOL_INFO, type ConnectOptions } from './spi-session.js';
export type { WSANETWORKEVENTS } from './event-select.js';
export { gather } from './marshal.js';
export { SpiwireProtocolError, ConnectionClosedError, SpiwireConnectError, type ConnectFailureKind, type Welcome, type ConnectionEvent, type ConnectionEvents } from './rpc.js';
export * from './types.js';
export { WSAOVERLAPPED, type LPWSAOVERLAPPED_COMPLETION_ROUTINE } from './overlapped.js';
export { SpiThread } from './threads.js';
export { Socket, WinsockError, type Completion, type SocketOptions } from './socket.js';
export { SessionFaults, type FaultApplied } from './faults.js';
export { type TraceSink } from './trace.js';
export { THREAD_BOUND_FUNCTIONS, type SessionThread, type ThreadBoundFunctions } from './spi-session.js';
/** WSCEnumProtocols without a session; decodeProtocolInfoW and the catalog come with @spiwire/proto above. */
export { enumProtocols } from './catalog.js';
/** True when the SDK masks its frames with bufferutil (installed with it, optional); false: in JavaScript, several times slower for bulk sends. */
export { nativeMasking } from './masked-frames.js';
/** The SDK's choice among a daemon name's addresses, also for a rig's own connections (a proxy, say). */
export { addressLookup, orderAddresses, type AddressOrder } from './addresses.js';

/** Opens one session to the daemon at url (for example ws://127.0.0.1:7787/ws). */
export function connect(url: string, opts: ConnectOptions = {}): Promise<SpiSession> {
  return SpiSession.connect(url, opts);
}
