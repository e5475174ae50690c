/**
 * Readiness for TCP urgent data. Node has no event for it, but the kernel signals SIGURG to a
 * socket's owner process when urgent data arrives (fcntl F_SETOWN, set on every connection the
 * daemon wires). Sockets with something to wait for (a pending MSG_OOB receive, FD_OOB selected)
 * register a callback here; signals run the callbacks at most once a turn, spaced by RUN_SPACING.
 * While nothing is registered no signal handler is installed and nothing runs. Where a connection's owner could not be set, that
 * socket alone is looked at on a timer while it has something to wait for.
 */

const FALLBACK_POLL_MS = 50;
/**
 * The kernel signals as it reads the urgent pointer, a moment before it counts the segment's
 * bytes as received; on another core the handler may run in that moment. The watchers look again
 * this much later, so that a watcher that saw no new byte the first time sees it then.
 */
const SECOND_LOOK_MS = 5;

/**
 * A run of the watchers costs a system call for each watching socket: under a storm of urgent
 * bytes (one peer can send thousands a second, to one connection), the next run waits at least
 * this many times as long as the last one took, so that looking takes at most about a fifth of
 * the daemon's time however many sockets watch (1,000 watchers took 40 % of a core before).
 */
const RUN_SPACING = 4;

const onSignal = new Set<() => void>();
let secondLook: NodeJS.Timeout | null = null;
/** A run of the watchers is due later in this turn of the event loop. */
let runDue = false;
/** performance.now() before which no run starts (RUN_SPACING); a signal meanwhile waits for it. */
let nextRunAt = 0;
let spacedRun: NodeJS.Timeout | null = null;

function signalled(): void {
  requestRun();
  if (secondLook) return;
  secondLook = setTimeout(() => {
    secondLook = null;
    requestRun();
  }, SECOND_LOOK_MS);
  secondLook.unref();
}

/**
 * A run in this turn, or once the spacing after the last run has passed. Signals that arrive
 * together (a peer sending urgent bytes in a burst, on any connection) make one run, not one each.
 */
function requestRun(): void {
  const wait = nextRunAt - performance.now();
  if (wait > 0) {
    if (spacedRun) return;
    // (Asked again when it fires: a timer counts from the loop's time, which may be early.)
    spacedRun = setTimeout(() => {
      spacedRun = null;
      requestRun();
    }, Math.ceil(wait));
    spacedRun.unref();
  } else if (!runDue) {
    runDue = true;
    setImmediate(() => {
      runDue = false;
      runWatchers();
    });
  }
}

function runWatchers(): void {
  const started = performance.now();
  for (const f of [...onSignal]) f();
  const ended = performance.now();
  nextRunAt = ended + RUN_SPACING * (ended - started);
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
