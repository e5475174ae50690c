/**
 * Work to run right after a result has been sent as a reply. An overlapped operation that
 * completed while it was being started answers WSA_IO_PENDING; its completion notification must
 * follow that reply, never overtake it.
 */
const hooks = new WeakMap<object, () => void>();

export function runAfterReply<T extends object>(result: T, fn: () => void): T {
  hooks.set(result, fn);
  return result;
}

/** The hook registered for result, once. */
export function takeAfterReply(result: object): (() => void) | undefined {
  const fn = hooks.get(result);
  if (fn) hooks.delete(result);
  return fn;
}
