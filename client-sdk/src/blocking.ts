/**
 * The WSAEINPROGRESS rule: a thread whose blocking call is still under way may not start another
 * one (the call fails at once with WSAEINPROGRESS). Calls on a nonblocking socket are not blocking
 * calls, and neither are calls made outside any thread of the session. The guard keeps which
 * sockets are nonblocking (FIONBIO, WSPEventSelect, inherited by WSPAccept); each thread counts
 * its own blocking calls (SpiThread.blockingCalls). A blocking call that waits is also an
 * alertable wait of its thread, as on Windows (runOn).
 */
import * as P from '@spiwire/proto';
import type { Result } from './marshal.js';
import type { ReplyListener } from './rpc.js';
import type { SpiThread } from './threads.js';

export class BlockingGuard {
  /** Sockets put in nonblocking mode (they make no blocking calls). */
  private readonly nonBlocking = new Set<number>();

  isNonBlocking(s: number): boolean {
    return this.nonBlocking.has(s);
  }

  /** Records the socket's mode after a FIONBIO or WSPEventSelect that succeeded. */
  setNonBlocking(s: number, on: boolean): void {
    if (on) this.nonBlocking.add(s);
    else this.nonBlocking.delete(s);
  }

  /** The socket was closed: its handle may come back for another socket, in blocking mode. */
  forget(s: number): void {
    this.nonBlocking.delete(s);
  }

  /**
   * Runs call as a blocking call of thread on socket s; while the thread's previous blocking call
   * is under way it answers WSAEINPROGRESS instead, without running call.
   */
  // Not async: a call that involves no thread costs no extra promise.
  run(thread: SpiThread | null, s: number, call: (listener?: ReplyListener) => Promise<Result>): Promise<Result> {
    if (!thread || this.nonBlocking.has(s)) return call();
    return runOn(thread, call);
  }
}

/**
 * A blocking call of thread. Once the daemon says it waits (spiwire.waiting), the thread is in an
 * alertable wait until the reply, as in Windows' Winsock: its APCs run meanwhile, and calls they
 * make are not refused with WSAEINPROGRESS (on Windows the APC runs on the blocked thread itself).
 * A call that completes without waiting runs no APC.
 */
async function runOn(thread: SpiThread, call: (listener?: ReplyListener) => Promise<Result>): Promise<Result> {
  if (thread.blockingCalls > 0 && !thread.inAlertableApc) return { ret: P.SOCKET_ERROR, errno: P.WSAEINPROGRESS };
  thread.blockingCalls++;
  let waited = false;
  const listener: ReplyListener = {
    replied: () => undefined,
    waiting: () => {
      if (waited) return;
      waited = true;
      thread.enterBlockingWait();
    },
  };
  try {
    return await call(listener);
  } finally {
    if (waited) await thread.leaveBlockingWait();
    thread.blockingCalls--;
  }
}
