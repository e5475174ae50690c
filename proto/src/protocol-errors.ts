/**
 * The protocol error catalogue: JSON-RPC error codes for requests that are malformed or
 * impossible. A Winsock failure is never one of these; it is a result carrying a WSA code.
 */

export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
/** The frame is not a valid sequence of spiwire records (bad length prefix, trailing bytes, bad byte reference). */
export const BAD_FRAME = -32001;
/** A request id is already in use by a call of this session that has not been answered. */
export const DUPLICATE_ID = -32002;
/** The session has more unanswered requests than the daemon allows. */
export const TOO_MANY_REQUESTS = -32003;
/** A spiwire.resume was refused; data.reason says why (section 20). */
export const RESUME_REFUSED = -32004;

export interface ProtocolErrorInfo {
  readonly name: string;
  readonly code: number;
  readonly meaning: string;
}

export const PROTOCOL_ERRORS: ReadonlyArray<ProtocolErrorInfo> = [
  { name: 'PARSE_ERROR', code: PARSE_ERROR, meaning: 'The header of a record is not valid UTF-8 JSON.' },
  { name: 'INVALID_REQUEST', code: INVALID_REQUEST, meaning: 'The JSON is not a JSON-RPC 2.0 request or notification (wrong jsonrpc, missing method, bad id type).' },
  { name: 'METHOD_NOT_FOUND', code: METHOD_NOT_FOUND, meaning: 'The method is not one the daemon offers.' },
  { name: 'INVALID_PARAMS', code: INVALID_PARAMS, meaning: 'A parameter is missing, of the wrong type or out of range; data.field names it.' },
  { name: 'INTERNAL_ERROR', code: INTERNAL_ERROR, meaning: 'The daemon failed while handling the request; the daemon and the session keep running.' },
  { name: 'BAD_FRAME', code: BAD_FRAME, meaning: 'The binary frame is not a valid sequence of records (length prefix beyond the frame, truncated record, byte reference outside the record data).' },
  { name: 'DUPLICATE_ID', code: DUPLICATE_ID, meaning: 'The request id is already used by an unanswered request of this session.' },
  { name: 'TOO_MANY_REQUESTS', code: TOO_MANY_REQUESTS, meaning: 'The session has reached its limit of unanswered requests, or holds more than its share of the daemon\'s spent budget for waiting calls and pending operations (`spiwire.ack`, `spiwire.sendData`, `WSPCloseSocket` and `spiwire.threadExit` are never refused for it, section 6).' },
  { name: 'RESUME_REFUSED', code: RESUME_REFUSED, meaning: 'A spiwire.resume was refused; data.reason is not-here, unknown-session, bad-token, bad-count, bad-request or not-first (section 20).' },
];

/** A protocol error raised while decoding or validating; carries its JSON-RPC code. */
export class ProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
