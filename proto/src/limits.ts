/** Protocol identity and the limits both ends enforce. Every number is documented in proto/README.md. */

/** The WebSocket subprotocol a client must offer; the version is part of the name. */
export const SUBPROTOCOL = 'spiwire.v1';
export const PROTOCOL_VERSION = 1;

/** Default largest WebSocket message the daemon accepts (the server can be configured). */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Largest JSON header of one record. */
export const MAX_HEADER_BYTES = 1024 * 1024;
/**
 * Largest text message, in bytes: the JSON of one message is at most 1 MiB, in a text message as
 * in a record's header. Parsing JSON is work the daemon cannot share out, and a text message is
 * one piece of it; bytes in bulk go in binary frames.
 */
export const MAX_TEXT_BYTES = 1024 * 1024;
/**
 * The most WebSocket frames one message may come in; a message in more is closed with 1008 (a
 * fragment costs the daemon a buffer of its own, whatever its size).
 */
export const MAX_MESSAGE_FRAGMENTS = 16 * 1024;
/**
 * The most pongs the daemon holds unwritten for one connection (pings arriving in a burst, or a
 * client that does not read its pongs); at the next ping the connection is dropped.
 */
export const MAX_PENDING_PONGS = 1024;
/** Largest number of records in one frame. */
export const MAX_RECORDS_PER_FRAME = 4096;
/** Largest number of WSABUF entries in one call. */
export const MAX_BUFFER_COUNT = 1024;
/** Largest number of sockets in one of WSPSelect's sets (readfds, writefds or exceptfds): the wire's u32[] limit. */
export const MAX_SELECT_SET = MAX_BUFFER_COUNT;
/**
 * The most sockets a session's waiting WSPSelect calls watch at once, counting each socket once
 * per call; a WSPSelect that would pass it fails with WSAENOBUFS instead of waiting.
 */
export const MAX_SELECT_WATCHES = 16 * 1024;
/** Largest JSON nesting depth of a header; deeper headers are PARSE_ERROR. */
export const MAX_JSON_DEPTH = 16;
/**
 * Most arrays and objects in one header or text frame; more are PARSE_ERROR. The largest message
 * of the protocol has about 2,100 (a WSPSend of MAX_BUFFER_COUNT byte strings); parsing a
 * megabyte of nested arrays held the daemon for about 90 ms a record.
 */
export const MAX_JSON_CONTAINERS = 8192;
/**
 * WebSocket close code with which the daemon ends a session whose client does not read what it
 * is sent (its unsent output passed the daemon's limit, or stalled above the high water mark).
 */
export const OUTPUT_BACKLOG_CLOSE_CODE = 4008;
/** The most fault rules one session may hold at once (section 19). */
export const MAX_FAULT_RULES = 64;
/** The longest block or delay a fault rule may ask for, in milliseconds (10 minutes). */
export const MAX_FAULT_MS = 600000;
/** The longest fault rule id and socket tag, in characters. */
export const MAX_FAULT_NAME = 64;
/** The latest end of a fault rule's time window (match.window), in ms after the rule was added: one day. */
export const MAX_FAULT_WINDOW_MS = 86_400_000;
/** WebSocket close code that follows a refused spiwire.resume (section 20). */
export const RESUME_REFUSED_CLOSE_CODE = 4009;
/** How long the daemon waits for the spiwire.resume of a connection opened to resume, in ms. */
export const RESUME_HANDSHAKE_MS = 10000;
