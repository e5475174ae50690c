/** Small value checks both ends use, so that each is written once. */
import { AF_INET6, SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE } from './constants.js';

export { isU32, isI32 } from './le32.js';

/** A JSON object: not null, not an array, not a byte string. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** sizeof the sockaddr of a family: sockaddr_in6 (28) for AF_INET6, else sockaddr_in (16). */
export function sockaddrSize(family: number): number {
  return family === AF_INET6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE;
}
