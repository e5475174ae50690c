/**
 * Readiness for TCP urgent data. Node has no event for it, but the kernel signals SIGURG to a
 * socket's owner process when urgent data arrives (fcntl F_SETOWN, set on every connection the
 * daemon wires). Sockets with something to wait for (a pending MSG_OOB receive, FD_OOB selected)
 * register a callback here; each SIGURG runs the callbacks once. While nothing is registered no
 * signal handler is installed and nothing runs. Where a connection's owner could not be set, that
 * socket alone is looked at on a timer while it has something to wait for.
 */

const FALLBACK_POLL_MS = 50;
/**
 * The kernel signals as it reads the urgent pointer, a moment before it counts the segment's
 * bytes as received; on another core the handler may run in that moment. The watchers look again
 * this much later, so that a watcher that saw no new byte the first time sees it then.
 */
const SECOND_LOOK_MS = 5;

const onSignal = new Set<() => void>();
let secondLook: NodeJS.Timeout | null = null;
/** A run of the watchers is due later in this turn of the event loop. */
let runDue = false;

function signalled(): void {
  // Signals that arrive together (a peer sending urgent bytes in a burst, on any connection) make
  // one run in this turn, not one each: a run asks every watching socket, a system call apiece.
  if (!runDue) {
    runDue = true;
    setImmediate(() => {
      runDue = false;
      runWatchers();
    });
  }
  if (secondLook) return;
  secondLook = setTimeout(() => {
    secondLook = null;
    runWatchers();
  }, SECOND_LOOK_MS);
  secondLook.unref();
}

function runWatchers(): void {
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
