/** WSPSocket's arguments as Windows resolves them: the daemon decides with it, the SDK remembers with it. */
import { AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM, SOCK_STREAM } from './constants.js';
import { WSAEAFNOSUPPORT, WSAEINVAL, WSAEPROTONOSUPPORT, WSAESOCKTNOSUPPORT } from './wsa-errors.js';

/**
 * WSPSocket's (af, type, protocol) resolved as Windows does (Wine's test_WSASocket records it): a
 * type or protocol of 0 is taken from the other (TCP when both are 0), AF_UNSPEC takes the
 * family from the catalog when a protocol is given (WSAEINVAL without one), and each refusal
 * carries the code Windows gives for it: an unknown type WSAESOCKTNOSUPPORT even beside an
 * unknown family, an unknown protocol or one that does not fit the type WSAEPROTONOSUPPORT.
 */
export function resolveSocketTriple(af: number, type: number, protocol: number): { errno: number; af: number; type: number; protocol: number } {
  const refuse = (errno: number): { errno: number; af: number; type: number; protocol: number } => ({ errno, af, type, protocol });
  const typeKnown = type === 0 || type === SOCK_STREAM || type === SOCK_DGRAM;
  const protocolKnown = protocol === 0 || protocol === IPPROTO_TCP || protocol === IPPROTO_UDP;
  let family = af;
  if (af === AF_UNSPEC) {
    if (protocol === 0) return refuse(WSAEINVAL);
    family = AF_INET;
  } else if (af !== AF_INET && af !== AF_INET6) return refuse(typeKnown ? WSAEAFNOSUPPORT : WSAESOCKTNOSUPPORT);
  if (!typeKnown) return refuse(WSAESOCKTNOSUPPORT);
  if (!protocolKnown) return refuse(WSAEPROTONOSUPPORT);
  const t = type !== 0 ? type : protocol === IPPROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
  const p = protocol !== 0 ? protocol : t === SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
  if ((t === SOCK_STREAM) !== (p === IPPROTO_TCP)) return refuse(WSAEPROTONOSUPPORT);
  return { errno: 0, af: family, type: t, protocol: p };
}
