/**
 * Readiness for TCP urgent data. Node has no event for it, but the kernel signals SIGURG to a
 * socket's owner process when urgent data arrives (fcntl F_SETOWN, set on every connection the
 * daemon wires). Sockets with something to wait for (a pending MSG_OOB receive, FD_OOB selected)
 * register a callback here; each SIGURG runs the callbacks once. While nothing is registered no
 * signal handler is installed and nothing runs. Where a connection's owner could not be set, that
 * socket alone is looked at on a timer while it has something to wait for.
 */

const FALLBACK_POLL_MS = 50;

const onSignal = new Set<() => void>();

function signalled(): void {
  for (const f of [...onSignal]) f();
}

/**
 * Calls look() whenever urgent data may have arrived, until the returned function is called.
 * signalled: the connection's owner is this process (setOwner succeeded); otherwise look() runs
 * on a timer instead.
 */
export function watchUrgent(look: () => void, signalled_: boolean): () => void {
  if (!signalled_) {
    const timer = setInterval(look, FALLBACK_POLL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }
  if (onSignal.size === 0) process.on('SIGURG', signalled);
  onSignal.add(look);
  return () => {
    if (!onSignal.delete(look)) return;
    if (onSignal.size === 0) process.off('SIGURG', signalled);
  };
}

/** How many sockets wait for urgent data (for tests and /stats). */
export function urgentWatchers(): number {
  return onSignal.size;
}
