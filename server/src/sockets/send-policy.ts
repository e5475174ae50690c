/**
 * The two send policies (SO_SPIWIRE_SEND_POLICY, README "The send policy"), in one place:
 *
 * - reference (the WSPSend reference page): a nonblocking stream send takes as many bytes as fit,
 *   a partial count, or fails with WSAEWOULDBLOCK when none do; an overlapped call on a socket
 *   made without WSA_FLAG_OVERLAPPED is WSAEINVAL.
 * - windows (what Windows does in practice): a nonblocking stream send takes the whole buffer and
 *   sends it in the background, or fails with WSAEWOULDBLOCK while earlier data is still queued,
 *   never a short count; an overlapped call on a plain socket runs as a blocking call and still
 *   reports its completion.
 *
 * Blocking and overlapped sends behave alike under both. The functions work on a stream socket's
 * transport buffer once the socket's own checks have passed.
 */
import { TransportBuffer, type SendOp } from './transport-buffer.js';
import { sendFailed, sent, startedAt, type CompleteFn, type SendResult, type Started } from './results.js';

export interface StreamSend {
  readonly buffers: readonly Uint8Array[];
  readonly total: number;
  /** SPI flags that need send() on the descriptor (MSG_OOB, MSG_DONTROUTE), or 0. */
  readonly direct: number;
}

/**
 * A send that is not overlapped. 'would-block' is WSAEWOULDBLOCK, which also re-enables FD_WRITE:
 * the socket decides what follows.
 */
export function streamSend(tx: TransportBuffer, send: StreamSend, mode: { nonBlocking: boolean; windowsPolicy: boolean }): SendResult | 'would-block' | Promise<SendResult> {
  const { buffers, total, direct } = send;
  if (mode.nonBlocking && mode.windowsPolicy && !direct) {
    // The whole buffer or nothing; the rest goes in the background, even after a close.
    if (tx.pendingOps > 0) return 'would-block';
    if (tx.fitsNow(total)) tx.acceptNow(buffers, total);
    else tx.submit({ chunks: buffers, total, thread: 0, overlapped: false, background: true, complete: () => undefined });
    return sent(total);
  }
  if (mode.nonBlocking) {
    if (total === 0) return sent(0);
    const n = tx.acceptNow(buffers, total, direct);
    return n > 0 ? sent(n) : 'would-block';
  }
  // A blocking send that fits at once is answered in the same turn, so its reply can leave
  // before the corked bytes are written to the peer. (An empty send goes through the queue:
  // with SO_SNDBUF 0 it waits for earlier bytes to reach the kernel.)
  if (!direct && total > 0 && tx.fitsNow(total)) {
    tx.acceptNow(buffers, total);
    return sent(total);
  }
  return new Promise<SendResult>((resolve) => {
    tx.submit({ chunks: buffers, total, thread: 0, overlapped: false, direct, complete: (errno) => resolve(errno === 0 ? sent(total) : sendFailed(errno)) });
  });
}

/** An overlapped send: completes at once only when every byte fits now, behind no older send. */
export function streamSendOverlapped(tx: TransportBuffer, send: StreamSend, thread: number, done: CompleteFn): Started<SendResult> {
  const { buffers, total, direct } = send;
  if (!direct && tx.fitsNow(total)) {
    tx.acceptNow(buffers, total);
    done(0, total);
    return startedAt(sent(total));
  }
  const op: SendOp = { chunks: buffers, total, thread, overlapped: true, direct, complete: (errno, bytes) => done(errno, errno === 0 ? total : bytes) };
  tx.submit(op);
  return { pending: true, cancel: (errno) => tx.cancel(errno, (o) => o === op) };
}

/** What an overlapped call on a socket made without WSA_FLAG_OVERLAPPED does under the policy. */
export function overlappedOnPlainSocket(windowsPolicy: boolean): 'refuse' | 'run-blocking' {
  return windowsPolicy ? 'run-blocking' : 'refuse';
}
