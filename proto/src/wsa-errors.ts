/**
 * The WSA error catalogue: every Winsock error code spiwire can report, with its Windows value
 * and the meaning spiwire gives it. Errors are results, never exceptions: an SPI call returns
 * SOCKET_ERROR (or INVALID_SOCKET) and writes one of these codes into lpErrno.
 */

export const WSA_INVALID_HANDLE = 6;
export const WSA_INVALID_PARAMETER = 87;
export const WSA_OPERATION_ABORTED = 995;
export const WSA_IO_INCOMPLETE = 996;
export const WSA_IO_PENDING = 997;
export const WSAEINTR = 10004;
export const WSAEACCES = 10013;
export const WSAEFAULT = 10014;
export const WSAEINVAL = 10022;
export const WSAEMFILE = 10024;
export const WSAEWOULDBLOCK = 10035;
export const WSAEINPROGRESS = 10036;
export const WSAEALREADY = 10037;
export const WSAENOTSOCK = 10038;
export const WSAEDESTADDRREQ = 10039;
export const WSAEMSGSIZE = 10040;
export const WSAEPROTOTYPE = 10041;
export const WSAENOPROTOOPT = 10042;
export const WSAEPROTONOSUPPORT = 10043;
export const WSAESOCKTNOSUPPORT = 10044;
export const WSAEOPNOTSUPP = 10045;
export const WSAEAFNOSUPPORT = 10047;
export const WSAEADDRINUSE = 10048;
export const WSAEADDRNOTAVAIL = 10049;
export const WSAENETDOWN = 10050;
export const WSAENETUNREACH = 10051;
export const WSAENETRESET = 10052;
export const WSAECONNABORTED = 10053;
export const WSAECONNRESET = 10054;
export const WSAENOBUFS = 10055;
export const WSAEISCONN = 10056;
export const WSAENOTCONN = 10057;
export const WSAESHUTDOWN = 10058;
export const WSAETIMEDOUT = 10060;
export const WSAECONNREFUSED = 10061;
export const WSAEHOSTUNREACH = 10065;
/** WSPAccept: a condition function answered CF_DEFER (the connection stays queued). */
export const WSATRY_AGAIN = 11002;

export interface WsaErrorInfo {
  readonly name: string;
  readonly code: number;
  /** What the error means in spiwire, in one sentence. */
  readonly meaning: string;
}

const table: ReadonlyArray<readonly [string, number, string]> = [
  ['WSA_INVALID_HANDLE', WSA_INVALID_HANDLE, 'An event handle passed to an event function is not a live event of this session.'],
  ['WSA_INVALID_PARAMETER', WSA_INVALID_PARAMETER, 'A wait function was given an impossible event count.'],
  ['WSA_OPERATION_ABORTED', WSA_OPERATION_ABORTED, 'A pending overlapped operation was cancelled: socket closed, SIO_FLUSH, issuing thread exited or session ended.'],
  ['WSA_IO_INCOMPLETE', WSA_IO_INCOMPLETE, 'WSPGetOverlappedResult polled (fWait FALSE) an operation that is still pending.'],
  ['WSA_IO_PENDING', WSA_IO_PENDING, 'An overlapped operation was started and will complete later.'],
  ['WSAEINTR', WSAEINTR, 'A blocking call was interrupted because its socket was closed by another call.'],
  ['WSAEACCES', WSAEACCES, 'A WSPSendTo naming a broadcast address without SO_BROADCAST, or a destination the daemon may not reach; a WSPBind taking over an address another socket of the session holds without agreeing (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE: WSPBind, "Sharing a port").'],
  ['WSAEFAULT', WSAEFAULT, 'A buffer, length or out parameter is missing or does not fit: dwBufferCount beyond the array, len beyond its buffer, a namelen or optlen too small, or no lpNumberOfBytesSent without an OVERLAPPED.'],
  ['WSAEINVAL', WSAEINVAL, 'An argument is invalid for the socket state: listen before bind, overlapped call on a socket without WSA_FLAG_OVERLAPPED, bad option value, an option the socket type refuses (a datagram option on TCP, IP_HDRINCL), IPV6_V6ONLY once bound.'],
  ['WSAEMFILE', WSAEMFILE, 'The session already holds the maximum number of sockets.'],
  ['WSAEWOULDBLOCK', WSAEWOULDBLOCK, 'A nonblocking call cannot complete now: the transport buffer is full, no connection is waiting, or a connect is under way.'],
  ['WSAEINPROGRESS', WSAEINPROGRESS, 'The issuing thread already has a blocking call in progress.'],
  ['WSAEALREADY', WSAEALREADY, 'A nonblocking connect is already in progress on this socket.'],
  ['WSAENOTSOCK', WSAENOTSOCK, 'The handle is not a socket of this session: unknown, already closed, or owned by another session.'],
  ['WSAEDESTADDRREQ', WSAEDESTADDRREQ, 'A destination address is required and none was given: WSPSendTo with no address on a datagram socket without a default peer.'],
  ['WSAEMSGSIZE', WSAEMSGSIZE, 'A datagram is larger than SO_MAX_MSG_SIZE, or than the path\'s MTU with IP_DONTFRAGMENT set (nothing is sent), or a received datagram was truncated to the buffers given.'],
  ['WSAEPROTOTYPE', WSAEPROTOTYPE, 'Never sent: for a protocol that does not fit the socket type WSPSocket gives WSAEPROTONOSUPPORT, as Windows does.'],
  ['WSAENOPROTOOPT', WSAENOPROTOOPT, 'The option is unknown, or not supported at this level, or not for this socket type.'],
  ['WSAEPROTONOSUPPORT', WSAEPROTONOSUPPORT, 'The protocol is not TCP or UDP, or does not fit the socket type.'],
  ['WSAESOCKTNOSUPPORT', WSAESOCKTNOSUPPORT, 'The socket type is not SOCK_STREAM or SOCK_DGRAM.'],
  ['WSAEOPNOTSUPP', WSAEOPNOTSUPP, 'The operation or flag is not supported by this socket: MSG_OOB on UDP, MSG_PARTIAL on TCP or UDP, listen on UDP, QOS, a WSPIoctl code it does not know.'],
  ['WSAEAFNOSUPPORT', WSAEAFNOSUPPORT, 'The address family is not AF_INET or AF_INET6, or does not match the socket.'],
  ['WSAEADDRINUSE', WSAEADDRINUSE, 'The local address and port are already in use.'],
  ['WSAEADDRNOTAVAIL', WSAEADDRNOTAVAIL, 'The address is not valid here (not a local address for bind, port 0 or the any address for connect, the any address for a send, an IP_MULTICAST_IF naming no address or interface of this host).'],
  ['WSAENETDOWN', WSAENETDOWN, 'The network subsystem failed: the daemon is shutting down under the call, or the interface went away.'],
  ['WSAENETUNREACH', WSAENETUNREACH, 'No route to the destination network.'],
  ['WSAENETRESET', WSAENETRESET, 'The connection was broken by keep-alive detecting a failure.'],
  ['WSAECONNABORTED', WSAECONNABORTED, 'The connection was aborted locally: a time-out or other failure of the transport.'],
  ['WSAECONNRESET', WSAECONNRESET, 'The peer reset the connection (also Linux EPIPE after a reset).'],
  ['WSAENOBUFS', WSAENOBUFS, 'No buffer space: the session memory quota is exhausted, or one call carries more than a frame can; also, as Windows answers it, an IPPROTO_IP or IPPROTO_IPV6 option set with a negative optlen.'],
  ['WSAEISCONN', WSAEISCONN, 'The socket is already connected.'],
  ['WSAENOTCONN', WSAENOTCONN, 'The socket is not connected (TCP not yet or not successfully connected; UDP WSPSend without a default peer).'],
  ['WSAESHUTDOWN', WSAESHUTDOWN, 'The direction was shut down with WSPShutdown.'],
  ['WSAETIMEDOUT', WSAETIMEDOUT, 'A connect attempt timed out.'],
  ['WSAECONNREFUSED', WSAECONNREFUSED, 'The peer actively refused the connection, or a condition function rejected it.'],
  ['WSAEHOSTUNREACH', WSAEHOSTUNREACH, 'No route to the destination host.'],
  ['WSATRY_AGAIN', WSATRY_AGAIN, 'A condition function deferred the connection (CF_DEFER): it stays queued, and the next WSPAccept on the socket takes it (client side).'],
];

export const WSA_ERRORS: ReadonlyArray<WsaErrorInfo> = table.map(([name, code, meaning]) => ({ name, code, meaning }));

const byCode = new Map<number, WsaErrorInfo>(WSA_ERRORS.map((e) => [e.code, e]));

/** The catalogue entry of a WSA code, or undefined when the code is not one spiwire reports. */
export function wsaError(code: number): WsaErrorInfo | undefined {
  return byCode.get(code);
}

/** "WSAECONNRESET (10054)" style text for logs and messages; "0" for success. */
export function wsaErrorName(code: number): string {
  if (code === 0) return 'NO_ERROR (0)';
  const e = byCode.get(code);
  return e ? `${e.name} (${code})` : `unknown (${code})`;
}
