/**
 * Message shapes and the method table: every method, its parameters and its result fields.
 * The table drives request validation in the daemon and the JSON Schema in proto/schema.json,
 * so the specification, the schema and the code cannot drift apart.
 */
import { INVALID_PARAMS, INVALID_REQUEST, ProtocolError } from './protocol-errors.js';
import { MAX_BUFFER_COUNT, MAX_SELECT_SET } from './limits.js';
import { isRecord } from './guards.js';
import { faultRuleProblem, type FaultRule, type FaultRuleStatus } from './faults.js';

export type RequestId = number | string;

export interface Request {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params: Record<string, unknown>;
}

export interface Notification {
  jsonrpc: '2.0';
  method: string;
  params: Record<string, unknown>;
}

export interface ErrorObject {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

export type Response =
  | { jsonrpc: '2.0'; id: RequestId; result: Record<string, unknown> }
  | { jsonrpc: '2.0'; id: RequestId | null; error: ErrorObject };

/** A sockaddr on the wire and in the SDK: family is AF_INET (2) or AF_INET6 (23). */
export interface SockAddr {
  family: number;
  address: string;
  port: number;
  /** IPv6 only; 0 when absent. */
  flowinfo?: number;
  /** IPv6 only; 0 when absent. */
  scopeId?: number;
}

/** A struct timeval (WSPSelect's timeout): seconds and microseconds, each a C long (32 bits). */
export interface TimeVal {
  sec: number;
  usec: number;
}

/** The overlapped part of a call: op is chosen by the client, unique among its pending operations. */
export interface OverlappedRef {
  op: number;
  thread: number;
}

/** Every SPI result carries the C return value and the WSA code written to lpErrno (0 on success). */
export interface SpiResult {
  ret: number;
  errno: number;
  [out: string]: unknown;
}

/** An overlapped call that completed at once, in its reply: what spiwire.completion would carry. */
export interface Completion {
  error: number;
  bytes: number;
  flags: number;
}

/** The limits in force, in spiwire.welcome (proto/README.md section 6). */
export interface WelcomeLimits {
  maxFrameBytes: number;
  maxPendingRequests: number;
  maxSockets: number;
  defaultSndBuf: number;
  defaultRcvBuf: number;
  sessionQuotaBytes?: number;
  outputHighWaterBytes?: number;
  outputLimitBytes?: number;
  outputStallMs?: number;
  streamWindowBytes?: number;
  /** Bytes of unacknowledged output a resumable session keeps for a resume (section 20). */
  replayLimitBytes?: number;
}

/** Members of WelcomeLimits that every daemon sends (the others were added later in version 1). */
export const WELCOME_LIMITS_REQUIRED = ['maxFrameBytes', 'maxPendingRequests', 'maxSockets', 'defaultSndBuf', 'defaultRcvBuf'] as const;
export const WELCOME_LIMITS_OPTIONAL = ['sessionQuotaBytes', 'outputHighWaterBytes', 'outputLimitBytes', 'outputStallMs', 'streamWindowBytes', 'replayLimitBytes'] as const;

/** How a session whose connection dropped is resumed (spiwire.welcome's resume, section 20). */
export interface ResumeOffer {
  /** The secret a resume presents; replaced at each resume (spiwire.resumed). */
  token: string;
  /** How long the daemon keeps the session after its connection dropped, in ms. */
  graceMs: number;
  /** This daemon's id; a resume names it, and another daemon refuses the resume (not-here). */
  daemonId: string;
  /** Where to reconnect for a resume when it is not the URL first used (an operator's --resume-url). */
  url?: string;
}

/** The names of the network events, as the keys of spiwire.networkEvents' errors. */
export type NetworkEventName = 'FD_READ' | 'FD_WRITE' | 'FD_OOB' | 'FD_ACCEPT' | 'FD_CONNECT' | 'FD_CLOSE';
export const NETWORK_EVENT_NAMES: readonly NetworkEventName[] = ['FD_READ', 'FD_WRITE', 'FD_OOB', 'FD_ACCEPT', 'FD_CONNECT', 'FD_CLOSE'];

export type FieldType =
  | 'handle'
  | 'int'
  | 'u32'
  | 'bool'
  | 'string'
  | 'bytes'
  | 'bytes[]'
  | 'u32[]'
  | 'timeval'
  | 'sockaddr'
  | 'overlapped'
  | 'completion'
  | 'limits'
  | 'eventErrors'
  | 'faultRule'
  | 'faultRules'
  | 'resumeOffer'
  | 'requestId';

export interface FieldSpec {
  readonly type: FieldType;
  /** May be absent. */
  readonly optional?: boolean;
  /** May be null. */
  readonly nullable?: boolean;
  readonly doc: string;
}

export interface MethodSpec {
  readonly summary: string;
  readonly params: Readonly<Record<string, FieldSpec>>;
  /** Out values besides ret and errno; present when the call succeeded unless marked optional. */
  readonly result: Readonly<Record<string, FieldSpec>>;
  /** Never answered with a result (spiwire.resume: a notification or an error answers it). */
  readonly noResult?: true;
}

const s = { type: 'handle', doc: 'The socket handle (SOCKET) returned by WSPSocket or WSPAccept.' } as const;
const completion = {
  type: 'completion',
  optional: true,
  doc: 'Present when an overlapped call completed at once: {error, bytes, flags}, three u32 as in `spiwire.completion` (section 12). The reply then stands for the completion; no spiwire.completion follows.',
} as const;
const BYTES_SENT_DOC =
  'lpNumberOfBytesSent. On success, the bytes sent. On the failing reply (ret -1) of a send that was not overlapped, present when some of its bytes had reached the transport before it failed: how many (section 9, "A blocking send that fails part way"); absent means none had.';
const overlapped = {
  type: 'overlapped',
  optional: true,
  nullable: true,
  doc: 'Present for an overlapped call: {op, thread}; op is unique among the session\'s pending operations, thread is the issuing ThreadHandle. Absent or null: the call is not overlapped.',
} as const;

/**
 * The method table: the single source of the wire's types. Params<M> and Result<M> are derived
 * from it, the daemon's handler table is a mapped type over its names, the SDK's call<M>() takes
 * them, and the JSON Schema and the spec test are built from the same entries.
 */
export const METHODS = {
  WSPSocket: {
    summary: 'Create a socket. ret is the new SOCKET, or INVALID_SOCKET (-1) with errno.',
    params: {
      af: { type: 'int', doc: 'AF_INET (2) or AF_INET6 (23).' },
      type: { type: 'int', doc: 'SOCK_STREAM (1) or SOCK_DGRAM (2).' },
      protocol: { type: 'int', doc: 'IPPROTO_TCP (6), IPPROTO_UDP (17) or 0 for the type\'s default.' },
      g: { type: 'u32', doc: 'Socket group; must be 0 (groups are reserved in Winsock 2).' },
      flags: { type: 'u32', doc: 'dwFlags: WSA_FLAG_OVERLAPPED (0x01); other bits are ignored.' },
    },
    result: {},
  },
  WSPBind: {
    summary: 'Bind a local address.',
    params: { s, name: { type: 'sockaddr', doc: 'The local address.' }, namelen: { type: 'int', doc: 'sizeof the sockaddr: 16 (IPv4) or 28 (IPv6); smaller gives WSAEFAULT.' } },
    result: {},
  },
  WSPListen: {
    summary: 'Listen for connections on a bound stream socket.',
    params: { s, backlog: { type: 'int', doc: 'Backlog; values below 1 are raised to 1, above 200 lowered to 200.' } },
    result: {},
  },
  WSPAccept: {
    summary: 'Accept a connection. ret is the new SOCKET or INVALID_SOCKET. Blocks unless the socket is nonblocking (then WSAEWOULDBLOCK when none waits).',
    params: { s },
    result: { addr: { type: 'sockaddr', optional: true, doc: 'The peer address of the accepted connection.' } },
  },
  WSPConnect: {
    summary: 'Connect a stream socket, or set the default peer of a datagram socket.',
    params: { s, name: { type: 'sockaddr', doc: 'The peer address.' }, namelen: { type: 'int', doc: 'sizeof the sockaddr.' } },
    result: {},
  },
  WSPSend: {
    summary: 'Send on a connected socket. The buffers, in order, form one send.',
    params: {
      s,
      buffers: { type: 'bytes[]', doc: `The bytes of each WSABUF actually used (at most ${MAX_BUFFER_COUNT}); with stream, the first piece of the send.` },
      flags: { type: 'u32', doc: 'dwFlags: MSG_OOB (0x1), MSG_DONTROUTE (0x4). MSG_PARTIAL (0x8000) is refused with WSAEOPNOTSUPP (the errors below).' },
      overlapped,
      stream: { type: 'u32', optional: true, doc: 'A send larger than one message (section 9, "Sends larger than a message"): an id the client chose, unique among its open streams; the rest of the bytes follow in spiwire.sendData.' },
      total: { type: 'u32', optional: true, doc: 'With stream: the size of the whole send, the first piece included.' },
    },
    result: { bytesSent: { type: 'u32', optional: true, doc: BYTES_SENT_DOC }, completion },
  },
  WSPSendTo: {
    summary: 'Send to an address (datagram sockets); on a connected socket the address is ignored.',
    params: {
      s,
      buffers: { type: 'bytes[]', doc: 'As for WSPSend.' },
      flags: { type: 'u32', doc: 'As for WSPSend.' },
      to: { type: 'sockaddr', nullable: true, doc: 'lpTo; null sends to the default peer (WSAEDESTADDRREQ on a datagram socket that has none).' },
      tolen: { type: 'int', doc: 'iTolen; below the family\'s sockaddr size gives WSAEFAULT.' },
      overlapped,
    },
    result: { bytesSent: { type: 'u32', optional: true, doc: BYTES_SENT_DOC }, completion },
  },
  WSPRecv: {
    summary: 'Receive into buffers of the given sizes.',
    params: {
      s,
      lengths: { type: 'u32[]', doc: 'The len of each WSABUF used.' },
      flags: { type: 'u32', doc: 'lpFlags on input: MSG_PEEK (0x2), MSG_OOB (0x1).' },
      overlapped,
    },
    result: {
      data: { type: 'bytes', optional: true, doc: 'The received bytes (the client scatters them over its buffers).' },
      bytesRecvd: { type: 'u32', optional: true, doc: 'lpNumberOfBytesRecvd.' },
      flags: { type: 'u32', optional: true, doc: 'lpFlags on output: MSG_PARTIAL (0x8000) when a datagram was truncated, MSG_OOB (0x1) when the bytes are urgent data (a MSG_OOB receive), else 0.' },
      completion,
    },
  },
  WSPRecvFrom: {
    summary: 'Receive a datagram (or stream bytes) and its source address.',
    params: {
      s,
      lengths: { type: 'u32[]', doc: 'As for WSPRecv.' },
      flags: { type: 'u32', doc: 'As for WSPRecv.' },
      overlapped,
    },
    result: {
      data: { type: 'bytes', optional: true, doc: 'The received bytes.' },
      bytesRecvd: { type: 'u32', optional: true, doc: 'lpNumberOfBytesRecvd.' },
      flags: { type: 'u32', optional: true, doc: 'lpFlags on output.' },
      from: { type: 'sockaddr', optional: true, doc: 'lpFrom: the source address of the datagram (UDP only).' },
      completion,
    },
  },
  WSPShutdown: {
    summary: 'Disable sends (SD_SEND 1), receives (SD_RECEIVE 0) or both (SD_BOTH 2).',
    params: { s, how: { type: 'int', doc: 'SD_RECEIVE, SD_SEND or SD_BOTH.' } },
    result: {},
  },
  WSPCloseSocket: {
    summary: 'Close the socket; its handle becomes invalid (WSAENOTSOCK) at once.',
    params: { s },
    result: {},
  },
  WSPGetSockName: {
    summary: 'The local address of the socket.',
    params: { s, namelen: { type: 'int', doc: 'The size of the caller\'s sockaddr; too small gives WSAEFAULT.' } },
    result: { name: { type: 'sockaddr', optional: true, doc: 'The address.' }, namelen: { type: 'int', optional: true, doc: 'Its size: 16 or 28.' } },
  },
  WSPGetPeerName: {
    summary: 'The peer address of a connected socket.',
    params: { s, namelen: { type: 'int', doc: 'As for WSPGetSockName.' } },
    result: { name: { type: 'sockaddr', optional: true, doc: 'The address.' }, namelen: { type: 'int', optional: true, doc: 'Its size: 16 or 28.' } },
  },
  WSPIoctl: {
    summary: 'Control the socket: FIONBIO, FIONREAD, SIOCATMARK, SIO_FLUSH, SIO_KEEPALIVE_VALS, SIO_UDP_CONNRESET, SIO_UDP_NETRESET, SIO_ENABLE_CIRCULAR_QUEUEING, SIO_BASE_HANDLE, SIO_IDEAL_SEND_BACKLOG_QUERY.',
    params: {
      s,
      code: { type: 'u32', doc: 'dwIoControlCode.' },
      input: { type: 'bytes', doc: 'lpvInBuffer (cbInBuffer bytes; empty when none).' },
      outputLength: { type: 'u32', doc: 'cbOutBuffer.' },
      overlapped,
    },
    result: {
      output: { type: 'bytes', optional: true, doc: 'The bytes written to lpvOutBuffer; absent on success for a control code that has no output.' },
      bytesReturned: { type: 'u32', optional: true, doc: 'lpcbBytesReturned.' },
      completion,
    },
  },
  WSPSetSockOpt: {
    summary: 'Set a socket option; values are the C bytes (little-endian DWORD / BOOL).',
    params: {
      s,
      level: { type: 'int', doc: 'SOL_SOCKET (0xffff) or IPPROTO_TCP (6).' },
      optname: { type: 'int', doc: 'The option.' },
      optval: { type: 'bytes', nullable: true, doc: 'The first optlen bytes of optval (for a negative optlen, the first 4); null for a NULL optval.' },
      optlen: { type: 'int', doc: 'optlen as the caller gave it; how many bytes each option takes is under "Value sizes" below.' },
    },
    result: {},
  },
  WSPGetSockOpt: {
    summary: 'Read a socket option.',
    params: {
      s,
      level: { type: 'int', doc: 'As for WSPSetSockOpt.' },
      optname: { type: 'int', doc: 'The option.' },
      optlen: { type: 'int', doc: 'The size of the caller\'s optval (sizes: WSPSetSockOpt\'s "Value sizes").' },
    },
    result: { optval: { type: 'bytes', optional: true, doc: 'The value bytes, written to the caller\'s optval. Also on some WSAEFAULT failures (zeroed bytes, see WSPSetSockOpt\'s "Value sizes").' }, optlen: { type: 'int', optional: true, doc: 'How many bytes are valid, written to *optlen. Also on some failures: 628, the size needed, for SO_PROTOCOL_INFOW with optlen below 628; 0 for an IPPROTO_TCP option read short (as Windows does).' } },
  },
  WSPEventSelect: {
    summary: 'Select network events for the socket (0 cancels); the socket becomes nonblocking. Recorded events arrive as spiwire.networkEvents.',
    params: { s, events: { type: 'u32', doc: 'lNetworkEvents: FD_READ 0x01, FD_WRITE 0x02, FD_OOB 0x04, FD_ACCEPT 0x08, FD_CONNECT 0x10, FD_CLOSE 0x20. FD_QOS 0x40, FD_GROUP_QOS 0x80, FD_ROUTING_INTERFACE_CHANGE 0x100 and FD_ADDRESS_LIST_CHANGE 0x200 are accepted (FD_ALL_EVENTS, 0x3FF, is what many programs pass, and Windows takes it) and never recorded. Bits above 0x3FF give WSAEINVAL.' } },
    result: {},
  },
  WSPSelect: {
    summary: 'select(): which of the given sockets can be read, written or have an exceptional condition, waiting up to timeout for at least one.',
    params: {
      readfds: { type: 'u32[]', optional: true, nullable: true, doc: `The sockets of readfds (the first fd_count entries of fd_array), at most ${MAX_SELECT_SET}; absent or null: the C NULL pointer.` },
      writefds: { type: 'u32[]', optional: true, nullable: true, doc: 'As readfds, for writefds.' },
      exceptfds: { type: 'u32[]', optional: true, nullable: true, doc: 'As readfds, for exceptfds.' },
      timeout: { type: 'timeval', optional: true, nullable: true, doc: 'The longest wait, {sec, usec}; {0, 0} polls; absent or null: wait until a socket is ready.' },
    },
    result: {
      readfds: { type: 'u32[]', optional: true, doc: 'On success, for a readfds given: its ready sockets, in the order given, each once.' },
      writefds: { type: 'u32[]', optional: true, doc: 'As readfds, for writefds.' },
      exceptfds: { type: 'u32[]', optional: true, doc: 'As readfds, for exceptfds.' },
    },
  },
  'spiwire.sendData': {
    summary: 'The next piece of a streamed WSPSend, in order. Normally sent as a notification (no id); pieces for a stream the daemon has closed are dropped.',
    params: {
      stream: { type: 'u32', doc: 'The stream id of the WSPSend.' },
      data: { type: 'bytes', doc: 'The next bytes of the send.' },
    },
    result: {},
  },
  'spiwire.threadExit': {
    summary: 'A thread of the session exited: its pending overlapped operations complete with WSA_OPERATION_ABORTED.',
    params: { thread: { type: 'u32', doc: 'The ThreadHandle given in overlapped.thread by that thread\'s calls.' } },
    result: { cancelled: { type: 'u32', doc: 'How many pending operations this call completed with WSA_OPERATION_ABORTED (a send past cancelling completes with success and is not counted).' } },
  },
  'spiwire.setSocketTag': {
    summary: 'Sets (or clears) the tag of a socket, a name fault rules can match (section 19). ret SOCKET_ERROR with WSAENOTSOCK for a handle that is not a socket of the session.',
    params: {
      s,
      tag: { type: 'string', nullable: true, doc: 'The tag: 1 to 64 letters, digits or . _ : - ; null clears it. A connection accepted on a listening socket starts with the listener\'s tag.' },
    },
    result: {},
  },
  'spiwire.faults.add': {
    summary: 'Adds a fault rule for the session\'s sockets (section 19). A rule that is not well formed, or one too many, is INVALID_PARAMS naming the field.',
    params: { rule: { type: 'faultRule', doc: 'The rule: {id?, match, action, times?, seed?, notify?} (section 19).' } },
    result: { id: { type: 'string', doc: 'The rule\'s id: the one given, or one the daemon chose.' } },
  },
  'spiwire.faults.remove': {
    summary: 'Removes a fault rule of the session; it fires no more. An id the session has no rule for is INVALID_PARAMS.',
    params: { id: { type: 'string', doc: 'The rule\'s id.' } },
    result: {},
  },
  'spiwire.ack': {
    summary: 'How many counted messages of the daemon the client has received (section 20). Sent as a notification; a message holding only this record is not counted.',
    params: { received: { type: 'u32', doc: 'Counted messages received from the daemon on this session, all connections together.' } },
    result: {},
  },
  'spiwire.resume': {
    summary: 'Resumes a session whose connection dropped: the first message of a connection opened on /ws?resume=<session> (section 20); refused with RESUME_REFUSED anywhere else.',
    params: {
      session: { type: 'string', doc: 'The session id of the welcome.' },
      token: { type: 'string', doc: 'The resume token: of the welcome, or of the last spiwire.resumed.' },
      received: { type: 'u32', doc: 'Counted messages received from the daemon so far.' },
      daemonId: { type: 'string', doc: 'The daemonId of the welcome: the daemon that holds the session.' },
    },
    result: {},
    noResult: true,
  },
  'spiwire.faults.list': {
    summary: 'The session\'s fault rules, in the order they were added, each with how many times it fired.',
    params: {},
    result: { rules: { type: 'faultRules', doc: 'The rules as added, with id and seed filled in, and hits: how many times each fired.' } },
  },
} as const satisfies Readonly<Record<string, MethodSpec>>;

/** The name of a method of the table. */
export type MethodName = keyof typeof METHODS;

/** The same table seen by name at run time (validation, the schema, tests walking every method). */
export const METHOD_SPECS: Readonly<Record<string, MethodSpec>> = METHODS;

/** True when name is a method of the table (never a member of Object.prototype). */
export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(METHODS, name);
}

/** The TypeScript type of a field's value on the wire, after decoding. */
type TypeOf<T extends FieldType> = T extends 'handle' | 'int' | 'u32'
  ? number
  : T extends 'bool'
    ? boolean
    : T extends 'string'
      ? string
      : T extends 'bytes'
        ? Uint8Array
        : T extends 'bytes[]'
          ? Uint8Array[]
          : T extends 'u32[]'
            ? number[]
            : T extends 'timeval'
              ? TimeVal
              : T extends 'sockaddr'
              ? SockAddr
              : T extends 'overlapped'
                ? OverlappedRef
                : T extends 'completion'
                  ? Completion
                  : T extends 'limits'
                    ? WelcomeLimits
                    : T extends 'eventErrors'
                      ? Partial<Record<NetworkEventName, number>>
                      : T extends 'faultRule'
                        ? FaultRule
                        : T extends 'faultRules'
                          ? FaultRuleStatus[]
                          : T extends 'requestId'
                            ? RequestId
                            : ResumeOffer;

type ValueOf<F extends FieldSpec> = F extends { readonly nullable: true } ? TypeOf<F['type']> | null : TypeOf<F['type']>;
type RequiredKeys<S> = { [K in keyof S]: S[K] extends { readonly optional: true } ? never : K }[keyof S];
type OptionalKeys<S> = Exclude<keyof S, RequiredKeys<S>>;
/** The object a table of fields describes: required fields required, optional ones optional. */
export type FieldsOf<S extends Readonly<Record<string, FieldSpec>>> = { -readonly [K in RequiredKeys<S>]: ValueOf<S[K]> } & { -readonly [K in OptionalKeys<S>]?: ValueOf<S[K]> };

/** The params of method M, as the daemon receives them once validated. */
export type Params<M extends MethodName> = FieldsOf<(typeof METHODS)[M]['params']>;

/**
 * The result of method M: ret and errno always, the out values when the call produced them
 * (a failed call carries ret and errno only, so they are all optional here).
 */
export type Result<M extends MethodName> = { ret: number; errno: number } & Partial<FieldsOf<(typeof METHODS)[M]['result']>>;

/** Notifications the daemon pushes; each goes to the originating session only. */
export const NOTIFICATIONS = {
  'spiwire.welcome': {
    summary: 'First message of every session: who the daemon is and the limits in force.',
    params: {
      session: { type: 'string', doc: 'The session id (also in the daemon logs).' },
      version: { type: 'string', doc: 'The daemon version.' },
      protocol: { type: 'u32', doc: 'The protocol version (1).' },
      limits: { type: 'limits', doc: 'maxFrameBytes, maxPendingRequests, maxSockets, defaultSndBuf, defaultRcvBuf, sessionQuotaBytes, outputHighWaterBytes, outputLimitBytes, outputStallMs, streamWindowBytes, replayLimitBytes.' },
      compactHeaders: { type: 'bool', optional: true, doc: 'true: the daemon reads compact record headers (section 3); a client writes them only when this is true.' },
      resume: { type: 'resumeOffer', optional: true, doc: 'Present when the session can be resumed after its connection drops (section 20): {token, graceMs, daemonId, url?}.' },
    },
  },
  'spiwire.ack': {
    summary: 'How many counted messages of the client the daemon has received (section 20). A message holding only this record is not counted.',
    params: { received: { type: 'u32', doc: 'Counted messages received from the client on this session, all connections together.' } },
  },
  'spiwire.resumed': {
    summary: 'The answer to spiwire.resume, the first message of the resumed connection; the daemon then sends again its counted messages after the client\'s received.',
    params: {
      received: { type: 'u32', doc: 'Counted messages of the client the daemon had received: the client sends again those after it, in order.' },
      token: { type: 'string', doc: 'The new resume token; the old one no longer resumes the session.' },
    },
  },
  'spiwire.completion': {
    summary: 'A pending overlapped operation completed: sent once for every operation whose call answered WSA_IO_PENDING, after that reply.',
    params: {
      op: { type: 'u32', doc: 'The op id the client gave in overlapped.op.' },
      s: { type: 'handle', doc: 'The socket.' },
      error: { type: 'u32', doc: 'The WSA code: 0 on success; WSA_OPERATION_ABORTED when cancelled (WSAECONNABORTED for a TCP receive that WSPCloseSocket ended); WSAENETDOWN at daemon shutdown; otherwise what the same call fails with at once (for example WSAECONNRESET, WSAECONNABORTED, WSAEMSGSIZE, WSAESHUTDOWN).' },
      bytes: { type: 'u32', doc: 'cbTransferred.' },
      flags: { type: 'u32', doc: 'dwFlags of the completion: MSG_PARTIAL for a truncated datagram, MSG_OOB for urgent data, else 0 (0 for sends).' },
      data: { type: 'bytes', optional: true, doc: 'Received bytes, for a receive that delivered some (error 0 or WSAEMSGSIZE); empty after the peer\'s FIN.' },
      from: { type: 'sockaddr', optional: true, doc: 'Source address, for a WSPRecvFrom that received a datagram.' },
    },
  },
  'spiwire.sendProgress': {
    summary: 'How far a streamed WSPSend has got: the client may have sent up to taken + streamWindowBytes bytes of it; done: send no more pieces.',
    params: {
      stream: { type: 'u32', doc: 'The stream id of the WSPSend.' },
      taken: { type: 'u32', doc: 'Bytes of the send the daemon has taken into the transport (no longer held as pieces).' },
      done: { type: 'bool', doc: 'The stream is closed (the send completed, failed or was cancelled, or took all it will): no more pieces.' },
    },
  },
  'spiwire.waiting': {
    summary: 'A blocking call (not overlapped) has begun to wait: for a connection, data, buffer room, the end of a connect or, for WSPSelect, a socket to become ready. Sent before its reply, at most once per call.',
    params: {
      id: { type: 'requestId', doc: 'The id of the waiting call.' },
    },
  },
  'spiwire.networkEvents': {
    summary: 'Network events recorded for a socket selected with WSPEventSelect; each event is reported once until the call that re-enables it.',
    params: {
      s: { type: 'handle', doc: 'The socket.' },
      events: { type: 'u32', doc: 'lNetworkEvents: FD_* bits that became set.' },
      errors: { type: 'eventErrors', doc: 'iErrorCode by FD bit name, for example {"FD_CLOSE": 10053}.' },
    },
  },
  'spiwire.faultApplied': {
    summary: 'A fault rule added with notify true fired on a call (section 19); sent before that call\'s reply.',
    params: {
      id: { type: 'string', doc: 'The rule\'s id.' },
      s: { type: 'handle', doc: 'The socket of the call.' },
      function: { type: 'string', doc: 'The function: WSPSend, WSPSendTo, WSPRecv, WSPRecvFrom, WSPConnect, WSPAccept or WSPIoctl.' },
      action: { type: 'string', doc: 'The action carried out: block, short, delay, error, reorder, break, link, drop or duplicate.' },
    },
  },
} as const satisfies Readonly<Record<string, { readonly summary: string; readonly params: Readonly<Record<string, FieldSpec>> }>>;

export type NotificationName = keyof typeof NOTIFICATIONS;
/** The notification table seen by name at run time. */
export const NOTIFICATION_SPECS: Readonly<Record<string, { readonly summary: string; readonly params: Readonly<Record<string, FieldSpec>> }>> = NOTIFICATIONS;
/** The params of notification N. */
export type NotificationParams<N extends NotificationName> = FieldsOf<(typeof NOTIFICATIONS)[N]['params']>;

/** Checks the JSON-RPC envelope of an incoming message. Throws ProtocolError(INVALID_REQUEST). */
export function checkRequestEnvelope(msg: unknown): Request | Notification {
  if (!isRecord(msg)) {
    throw new ProtocolError(INVALID_REQUEST, 'a message must be a JSON object (batches are not used; pack several records in one frame instead)');
  }
  const { method, params = {} } = msg;
  if (msg['jsonrpc'] !== '2.0') throw new ProtocolError(INVALID_REQUEST, 'jsonrpc must be "2.0"');
  if (typeof method !== 'string') throw new ProtocolError(INVALID_REQUEST, 'method must be a string');
  const id = requestIdOf(msg);
  if ('id' in msg && id === null) throw new ProtocolError(INVALID_REQUEST, 'id must be an integer or a string');
  if (!isRecord(params)) throw new ProtocolError(INVALID_REQUEST, 'params must be an object (by-name parameters)');
  return id === null ? { jsonrpc: '2.0', method, params } : { jsonrpc: '2.0', id, method, params };
}

/** A request id that the envelope carries, or null when it has none usable. */
export function requestIdOf(msg: unknown): RequestId | null {
  if (!isRecord(msg)) return null;
  const id = msg['id'];
  return typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id)) ? id : null;
}

/** Validates params against the method's spec. Throws ProtocolError(INVALID_PARAMS) naming the field. */
export function validateParams<M extends MethodName>(method: M, params: Record<string, unknown>): asserts params is Params<M> {
  const spec: MethodSpec = METHODS[method];
  for (const key in params) {
    if (!Object.hasOwn(spec.params, key)) invalid(method, key, 'is not a parameter of this method');
  }
  for (const [key, field] of fieldsOf(spec)) {
    const v = params[key];
    if (v === undefined) {
      if (field.optional) continue;
      invalid(method, key, 'is missing');
    }
    if (v === null) {
      if (field.nullable) continue;
      invalid(method, key, 'may not be null');
    }
    checkType(method, key, field.type, v);
  }
}

/**
 * validateParams for a call the decoder built from a fixed layout (codec.ts: a compact header, or
 * an acknowledgement in its exact spelling), which already fixes every member and type: only the
 * buffer count, a u16 there, can still be beyond the limit.
 */
export function validateShapedParams<M extends MethodName>(method: M, params: Record<string, unknown>): asserts params is Params<M> {
  const buffers = params['buffers'];
  if (Array.isArray(buffers) && buffers.length > MAX_BUFFER_COUNT) checkType(method, 'buffers', 'bytes[]', buffers);
}

/** Each spec's [name, field] pairs, listed once: validation runs for every incoming call. */
const specFields = new WeakMap<MethodSpec, ReadonlyArray<readonly [string, FieldSpec]>>();

function fieldsOf(spec: MethodSpec): ReadonlyArray<readonly [string, FieldSpec]> {
  let fields = specFields.get(spec);
  if (!fields) {
    fields = Object.entries(spec.params);
    specFields.set(spec, fields);
  }
  return fields;
}

function checkType(method: string, key: string, type: FieldType, v: unknown): void {
  switch (type) {
    case 'handle':
    case 'u32':
      if (!isInt(v, 0, 0xffffffff)) invalid(method, key, 'must be an integer from 0 to 4294967295');
      return;
    case 'int':
      if (!isInt(v, -0x80000000, 0x7fffffff)) invalid(method, key, 'must be a 32-bit signed integer');
      return;
    case 'bool':
      if (typeof v !== 'boolean') invalid(method, key, 'must be a boolean');
      return;
    case 'string':
      if (typeof v !== 'string') invalid(method, key, 'must be a string');
      return;
    case 'bytes':
      if (!(v instanceof Uint8Array)) invalid(method, key, 'must be a byte string ({"$b":[offset,length]} or {"$base64":"..."})');
      return;
    case 'bytes[]':
      if (!Array.isArray(v) || v.length > MAX_BUFFER_COUNT || !v.every((b) => b instanceof Uint8Array)) {
        invalid(method, key, `must be an array of at most ${MAX_BUFFER_COUNT} byte strings`);
      }
      return;
    case 'u32[]':
      if (!Array.isArray(v) || v.length > MAX_BUFFER_COUNT || !v.every((n) => isInt(n, 0, 0xffffffff))) {
        invalid(method, key, `must be an array of at most ${MAX_BUFFER_COUNT} integers from 0 to 4294967295`);
      }
      return;
    case 'timeval': {
      const tv = v;
      if (!isObject(tv)) invalid(method, key, 'must be an object {sec, usec}');
      for (const k of Object.keys(tv)) if (k !== 'sec' && k !== 'usec') invalid(method, `${key}.${k}`, 'is not a field of a timeval');
      for (const k of ['sec', 'usec']) if (!isInt(tv[k], -0x80000000, 0x7fffffff)) invalid(method, `${key}.${k}`, 'must be a 32-bit signed integer');
      return;
    }
    case 'sockaddr': {
      const a = v;
      if (!isObject(a)) invalid(method, key, 'must be a sockaddr object {family, address, port}');
      for (const k of Object.keys(a)) {
        if (!['family', 'address', 'port', 'flowinfo', 'scopeId'].includes(k)) invalid(method, `${key}.${k}`, 'is not a sockaddr field');
      }
      if (!isInt(a['family'], 0, 0xffff)) invalid(method, `${key}.family`, 'must be an integer address family');
      if (typeof a['address'] !== 'string' || a['address'].length > 64) invalid(method, `${key}.address`, 'must be a numeric address string');
      if (!isInt(a['port'], 0, 65535)) invalid(method, `${key}.port`, 'must be an integer from 0 to 65535');
      if (a['flowinfo'] !== undefined && !isInt(a['flowinfo'], 0, 0xffffffff)) invalid(method, `${key}.flowinfo`, 'must be a u32');
      if (a['scopeId'] !== undefined && !isInt(a['scopeId'], 0, 0xffffffff)) invalid(method, `${key}.scopeId`, 'must be a u32');
      return;
    }
    case 'overlapped': {
      const o = v;
      if (!isObject(o)) invalid(method, key, 'must be an object {op, thread}');
      for (const k of Object.keys(o)) if (k !== 'op' && k !== 'thread') invalid(method, `${key}.${k}`, 'is not a field of overlapped');
      if (!isInt(o['op'], 0, 0xffffffff)) invalid(method, `${key}.op`, 'must be an integer from 0 to 4294967295');
      if (!isInt(o['thread'], 0, 0xffffffff)) invalid(method, `${key}.thread`, 'must be an integer from 0 to 4294967295');
      return;
    }
    case 'completion': {
      const c = v;
      if (!isObject(c)) invalid(method, key, 'must be an object {error, bytes, flags}');
      for (const k of Object.keys(c)) if (k !== 'error' && k !== 'bytes' && k !== 'flags') invalid(method, `${key}.${k}`, 'is not a field of a completion');
      for (const k of ['error', 'bytes', 'flags']) if (!isInt(c[k], 0, 0xffffffff)) invalid(method, `${key}.${k}`, 'must be an integer from 0 to 4294967295');
      return;
    }
    case 'faultRule': {
      const problem = faultRuleProblem(v);
      if (problem) invalid(method, problem.field ? `${key}.${problem.field}` : key, problem.what);
      return;
    }
    case 'faultRules':
      if (!Array.isArray(v)) invalid(method, key, 'must be an array of fault rules');
      return;
    case 'requestId':
      if (!(typeof v === 'string' || (typeof v === 'number' && Number.isInteger(v)))) invalid(method, key, 'must be an integer or a string');
      return;
    case 'limits':
    case 'eventErrors':
    case 'resumeOffer':
      if (v === null || typeof v !== 'object' || Array.isArray(v)) invalid(method, key, 'must be an object');
      return;
  }
}

/** Any object but an array (a byte string passes, and is then refused field by field). */
function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

function invalid(method: string, field: string, what: string): never {
  throw new ProtocolError(INVALID_PARAMS, `${method}: params.${field} ${what}`, { field });
}
