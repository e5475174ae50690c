/**
 * Work to run right after a result has been sent as a reply. An overlapped operation that
 * completed while it was being started answers WSA_IO_PENDING; its completion notification must
 * follow that reply, never overtake it.
 *
 * The hook rides on the result itself under a symbol: JSON and the compact encoder ignore symbol
 * keys, and reading an absent property costs every reply next to nothing (a WeakMap lookup gave
 * each result an identity hash).
 */
const AFTER_REPLY = Symbol('spiwire.afterReply');

export function runAfterReply<T extends object>(result: T, fn: () => void): T {
  Reflect.set(result, AFTER_REPLY, fn);
  return result;
}

/** The hook registered for result, once. */
export function takeAfterReply(result: object): (() => void) | undefined {
  const fn: unknown = Reflect.get(result, AFTER_REPLY);
  if (typeof fn !== 'function') return undefined;
  Reflect.deleteProperty(result, AFTER_REPLY);
  return () => void Reflect.apply(fn, undefined, []);
}
