/**
 * What sockets return: domain results, not wire shapes. The SPI layer (spi/methods.ts) alone
 * turns them into the { ret, errno, ...out } results of the protocol. errno is 0 on success,
 * else the WSA code.
 */
import type { SockAddr } from '@spiwire/proto';
import type { EmulatedSocket } from './emulated-socket.js';

/** A send: the bytes it sent (accepted), or the code it failed with. */
export interface SendResult {
  errno: number;
  bytes: number;
}

/**
 * A receive: the bytes and flags it returns. A truncated datagram is errno WSAEMSGSIZE with the
 * part that fitted in data, as Windows delivers it.
 */
export interface RecvResult {
  errno: number;
  bytes: number;
  data?: Uint8Array;
  flags: number;
  /** The source address (WSPRecvFrom); null when there is none to give. */
  from?: SockAddr | null;
}

/** An accepted connection: the new socket and its peer address. */
export interface AcceptResult {
  errno: number;
  socket?: EmulatedSocket;
  addr?: SockAddr | null;
}

export function sent(bytes: number): SendResult {
  return { errno: 0, bytes };
}

export function sendFailed(errno: number): SendResult {
  return { errno, bytes: 0 };
}

export function recvFailed(errno: number): RecvResult {
  return { errno, bytes: 0, flags: 0 };
}

/** What a completed overlapped operation reports: cbTransferred, and for receives the bytes and flags. */
export interface CompletionOut {
  data?: Uint8Array;
  flags?: number;
  from?: SockAddr;
}

/**
 * Where an overlapped operation's completion goes: complete() is called exactly once unless the
 * start failed at once. An interface rather than a callback, so that the session's record of a
 * pending operation can take it itself: no closure and no context per operation (a client may
 * keep hundreds of thousands pending).
 */
export interface Completion {
  complete(errno: number, bytes: number, out?: CompletionOut): void;
}

/** A Completion made from a function, for the rarer paths that wrap one (faults, streamed sends). */
export function completion(complete: (errno: number, bytes: number, out?: CompletionOut) => void): Completion {
  return { complete };
}

/**
 * Ends a pending operation early with a code (a cancellation). Returns true when the operation
 * completed with that code; false when it was past cancelling (a send whose bytes are all with the
 * kernel, a completion already held back) or had already completed.
 */
export interface Cancellable {
  cancel(errno: number): boolean;
}

export function cancellable(cancel: (errno: number) => boolean): Cancellable {
  return { cancel };
}

/**
 * How an overlapped operation started. pending: it did not finish at once (the call answers
 * WSA_IO_PENDING); cancel then completes it early with the given code. Otherwise result is the
 * call's immediate outcome: success (the completion is still reported) or a failure (no
 * completion, ever).
 */
export type Started<R> = { pending: false; result: R } | { pending: true; cancel?: Cancellable };

export function startedAt<R>(result: R): Started<R> {
  return { pending: false, result };
}
