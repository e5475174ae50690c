/**
 * Winsock constants with their Windows values (never the Linux ones).
 * The values are the ones the Windows SDK headers (winsock2.h, ws2def.h, mswsock.h) document;
 * proto/README.md lists them, and the WSA codes are in wsa-errors.ts.
 */

export const SOCKET_ERROR = -1;
/** (SOCKET)(~0): all bits set. In JavaScript `~0` is -1, which is what the SDK returns. */
export const INVALID_SOCKET = ~0;
export const TRUE = 1;
export const FALSE = 0;

// Address families, socket types, protocols.
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 23;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const IPPROTO_IP = 0;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPV6 = 41;

/** sizeof(SOCKADDR_IN) and sizeof(SOCKADDR_IN6). */
export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;


// WSPSocket dwFlags.
export const WSA_FLAG_OVERLAPPED = 0x01;

// Send and receive flags.
export const MSG_OOB = 0x1;
export const MSG_PEEK = 0x2;
export const MSG_DONTROUTE = 0x4;
export const MSG_WAITALL = 0x8;
export const MSG_PARTIAL = 0x8000;

// Socket option levels and names.
export const SOL_SOCKET = 0xffff;
export const SO_DEBUG = 0x0001;
export const SO_ACCEPTCONN = 0x0002;
export const SO_REUSEADDR = 0x0004;
export const SO_KEEPALIVE = 0x0008;
export const SO_DONTROUTE = 0x0010;
export const SO_BROADCAST = 0x0020;
export const SO_LINGER = 0x0080;
export const SO_OOBINLINE = 0x0100;
export const SO_SNDBUF = 0x1001;
export const SO_RCVBUF = 0x1002;
/** Milliseconds a blocking send may wait before it fails with WSAETIMEDOUT (0: for ever). */
export const SO_SNDTIMEO = 0x1005;
/** Milliseconds a blocking receive may wait before it fails with WSAETIMEDOUT (0: for ever). */
export const SO_RCVTIMEO = 0x1006;
export const SO_ERROR = 0x1007;
export const SO_TYPE = 0x1008;
export const SO_MAX_MSG_SIZE = 0x2003;
export const SO_PROTOCOL_INFOA = 0x2004;
export const SO_PROTOCOL_INFOW = 0x2005;
/** ~SO_REUSEADDR: no other socket may bind an address this one's covers (never with SO_REUSEADDR). */
export const SO_EXCLUSIVEADDRUSE = ~SO_REUSEADDR;
/** ~SO_LINGER: a BOOL, the inverse of SO_LINGER's l_onoff. */
export const SO_DONTLINGER = ~SO_LINGER;
/** Read-only DWORD: seconds the TCP connection has existed, 0xFFFFFFFF when there is none. */
export const SO_CONNECT_TIME = 0x700c;
/** IPPROTO_IPV6: a one-byte BOOL, on by default; off, an AF_INET6 socket also serves IPv4 (mapped addresses). */
export const IPV6_V6ONLY = 27;
/** IPPROTO_IP (AF_INET sockets): the type-of-service byte of the packets the socket sends, 0 by default. */
export const IP_TOS = 3;
/** IPPROTO_IP (AF_INET sockets): the time to live of the packets the socket sends, 128 by default as on Windows. */
export const IP_TTL = 4;
/** IPPROTO_IPV6 (AF_INET6 sockets): the hop limit of the unicast packets the socket sends, 128 by default. */
export const IPV6_UNICAST_HOPS = 4;
/**
 * IPPROTO_IP (AF_INET) and, as IPV6_DONTFRAG, IPPROTO_IPV6 (AF_INET6): a BOOL, the packets the
 * socket sends may not be fragmented. Windows' defaults: on for TCP, off for UDP.
 */
export const IP_DONTFRAGMENT = 14;
export const IPV6_DONTFRAG = 14;
/**
 * IPPROTO_IP, UDP: the interface multicast datagrams leave by, a DWORD: an IPv4 address of the
 * host in network order (its bytes as in a sockaddr), or 0.x.y.z for the interface with index x.y.z,
 * or 0 for the host's choice. IPPROTO_IPV6 (IPV6_MULTICAST_IF): an interface index.
 */
export const IP_MULTICAST_IF = 9;
export const IPV6_MULTICAST_IF = 9;
/** IPPROTO_IP, UDP: the time to live of multicast datagrams (1 by default); IPPROTO_IPV6: IPV6_MULTICAST_HOPS. */
export const IP_MULTICAST_TTL = 10;
export const IPV6_MULTICAST_HOPS = 10;
/** IPPROTO_IP, UDP: a BOOL, multicast datagrams are looped back to members on this host (TRUE by default); IPPROTO_IPV6: IPV6_MULTICAST_LOOP. */
export const IP_MULTICAST_LOOP = 11;
export const IPV6_MULTICAST_LOOP = 11;
/** IPPROTO_IP: raw sockets' own IP header; WSAEINVAL on TCP and UDP sockets. IPPROTO_IPV6: IPV6_HDRINCL, the same. */
export const IP_HDRINCL = 2;
export const IPV6_HDRINCL = 2;
/**
 * IPPROTO_IP options of received datagrams, which spiwire does not carry (WSAENOPROTOOPT on UDP,
 * WSAEINVAL on TCP); IPV6_PKTINFO, IPV6_HOPLIMIT and IPV6_RECVTCLASS have the same numbers.
 */
export const IP_PKTINFO = 19;
export const IP_RECVTTL = 21;
export const IP_RECVTOS = 40;
/** Windows' default time to live and hop limit (its DefaultTTL). */
export const DEFAULT_TTL = 128;
export const TCP_NODELAY = 0x0001;
/** IPPROTO_TCP options (Windows values): keep-alive idle time (seconds), probe count, probe interval (seconds), and the maximum retransmission time (seconds). */
export const TCP_KEEPALIVE = 3;
export const TCP_KEEPIDLE = 3;
export const TCP_MAXRT = 5;
export const TCP_KEEPCNT = 16;
export const TCP_KEEPINTVL = 17;

// WSPShutdown how.
export const SD_RECEIVE = 0;
export const SD_SEND = 1;
export const SD_BOTH = 2;

// WSPIoctl codes.
export const FIONBIO = 0x8004667e;
export const FIONREAD = 0x4004667f;
export const SIOCATMARK = 0x40047307;
export const SIO_FLUSH = 0x28000004;
/**
 * spiwire's provider-specific socket option (SOL_SOCKET level): which send policy a stream socket
 * follows. SPIWIRE_SEND_POLICY_REFERENCE (0): the WSPSend reference page (partial writes on
 * nonblocking sockets; WSAEINVAL for an overlapped call on a socket without WSA_FLAG_OVERLAPPED).
 * SPIWIRE_SEND_POLICY_WINDOWS (1): what Windows does in practice (accept the whole buffer and send
 * in the background, or WSAEWOULDBLOCK while earlier data is queued; such an overlapped call
 * completes as a blocking call).
 */
export const SO_SPIWIRE_SEND_POLICY = 0x7f01;
export const SPIWIRE_SEND_POLICY_REFERENCE = 0;
export const SPIWIRE_SEND_POLICY_WINDOWS = 1;
/** struct tcp_keepalive { ULONG onoff; ULONG keepalivetime; ULONG keepaliveinterval; } (milliseconds). */
export const SIO_KEEPALIVE_VALS = 0x98000004;
/** A BOOL: whether a UDP socket reports an ICMP port unreachable on its next receive (WSAECONNRESET); TRUE by default. */
export const SIO_UDP_CONNRESET = 0x9800000c;
/** A BOOL: whether a UDP socket reports an ICMP time exceeded on its next receive (WSAENETRESET); TRUE by default. */
export const SIO_UDP_NETRESET = 0x9800000f;
/** No input or output: a datagram arriving at a full receive buffer pushes out the oldest instead of being dropped. */
export const SIO_ENABLE_CIRCULAR_QUEUEING = 0x28000002;
/** Output: the base provider's SOCKET (8 bytes, as on x64), here the socket itself; not overlapped. */
export const SIO_BASE_HANDLE = 0x48000022;
/** Output: a ULONG, the ideal send backlog of a connected TCP socket (how much to keep queued). */
export const SIO_IDEAL_SEND_BACKLOG_QUERY = 0x4004747b;

// Network events (WSPEventSelect, issue 4).
export const FD_READ = 0x01;
export const FD_WRITE = 0x02;
export const FD_OOB = 0x04;
export const FD_ACCEPT = 0x08;
export const FD_CONNECT = 0x10;
export const FD_CLOSE = 0x20;
/**
 * The other events of winsock2.h. A selection may name them (programs pass FD_ALL_EVENTS), but
 * none is ever recorded here: no QOS, and no routing or address-list change notifications.
 */
export const FD_QOS = 0x40;
export const FD_GROUP_QOS = 0x80;
export const FD_ROUTING_INTERFACE_CHANGE = 0x100;
export const FD_ADDRESS_LIST_CHANGE = 0x200;
export const FD_ALL_EVENTS = 0x3ff;
/** Indexes into WSANETWORKEVENTS.iErrorCode. */
export const FD_READ_BIT = 0;
export const FD_WRITE_BIT = 1;
export const FD_OOB_BIT = 2;
export const FD_ACCEPT_BIT = 3;
export const FD_CONNECT_BIT = 4;
export const FD_CLOSE_BIT = 5;
export const FD_MAX_EVENTS = 10;

// Overlapped I/O and waits.
/** OVERLAPPED.Internal while an operation is pending (STATUS_PENDING). */
export const WSS_OPERATION_IN_PROGRESS = 0x103;
export const WAIT_IO_COMPLETION = 0xc0;
export const WSA_WAIT_IO_COMPLETION = 0xc0;
export const WSA_WAIT_EVENT_0 = 0;
export const WSA_WAIT_TIMEOUT = 0x102;
export const WSA_WAIT_FAILED = 0xffffffff;
export const WSA_INFINITE = 0xffffffff;
export const INFINITE = 0xffffffff;
export const WSA_MAXIMUM_WAIT_EVENTS = 64;

// WSPAccept condition function results.
export const CF_ACCEPT = 0;
export const CF_REJECT = 1;
export const CF_DEFER = 2;

/** Largest UDP payload for one datagram. IPv4 is the Windows value; IPv6 is 65535 - 8. */
export const UDP_MAX_MSG_SIZE_V4 = 65507;
export const UDP_MAX_MSG_SIZE_V6 = 65527;
