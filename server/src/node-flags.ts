/**
 * The V8 flags the daemon is started with: `npm start`, the container image's CMD and the
 * `spiwire` command's shebang all pass them (a test keeps the three in step with this list).
 * V8 only takes them on the command line, not from NODE_OPTIONS and not once running.
 *
 * - --single-threaded-gc: no GC helper threads. The daemon shares small machines with the
 *   programs it serves and their peers; helper threads competing for the same cores cost it far
 *   more than they save (bulk sends about a third faster on 2 cores).
 * - --no-incremental-marking: bulk traffic allocates a lot of short-lived buffer memory outside
 *   the heap, which otherwise starts a full incremental marking cycle many times a second; without
 *   it, young buffers are reclaimed by scavenges and a full collection (about 10 ms on the
 *   daemon's small heap) runs only when the old space fills.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--no-incremental-marking'];

/** The daemon flags this process was started without. */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  return DAEMON_NODE_FLAGS.filter((f) => !execArgv.includes(f));
}
