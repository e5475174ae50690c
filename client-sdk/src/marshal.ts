/**
 * Marshalling between the caller's C-shaped values and the wire: WSABUFs gathered into byte
 * strings and replies scattered back into them, out parameters and lpErrno, sockaddrs both ways,
 * and typed reads of reply fields. Pure functions: no session, no I/O.
 *
 * The number checks (isU32, isI32) and sockaddr sizes are proto's, the same the daemon applies.
 */
import * as P from '@spiwire/proto';
import { isU32 } from '@spiwire/proto';
import type { Out, SockAddr, WSABUF } from './types.js';

/** What every SPI call answers: the C return value, the WSA code, and the call's out values. */
export type Result = P.SpiResult;

/** A non-null object, whose properties may be read by name. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object';
}

/** A reply that carries what every SPI result carries: ret (an int) and errno (a u32). */
export function isResult(v: unknown): v is Result {
  return isRecord(v) && P.isI32(v['ret']) && isU32(v['errno']);
}

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

// ---------------------------------------------------------------- out parameters

export function isOut(v: unknown): v is Out {
  return isRecord(v) && 'value' in v;
}

/** lpErrno is mandatory in the SPI: a missing one is a programming error, not a Winsock result. */
export function checkErrno(lpErrno: Out): void {
  if (!isOut(lpErrno)) throw new TypeError('lpErrno must be an out parameter object { value }');
}

/** Fails a call before it reaches the daemon: code in lpErrno, ret returned. */
export function setErr(lpErrno: Out, code: number, ret: number = P.SOCKET_ERROR): number {
  lpErrno.value = code;
  return ret;
}

/** The C return value of a result; its WSA code goes to lpErrno only when there is one. */
export function finish(r: Result, lpErrno: Out): number {
  if (r.errno !== 0) lpErrno.value = r.errno;
  return r.ret;
}

// ---------------------------------------------------------------- reply fields

/** A field of a reply or notification when it has the type is checks, else undefined. */
export function fieldOf<T>(r: Record<string, unknown>, key: string, is: (v: unknown) => v is T): T | undefined {
  const v = r[key];
  return is(v) ? v : undefined;
}

/** A completion carried in a reply ({error, bytes, flags}) or a notification's params. */
export interface CompletionValues {
  error: number;
  bytes: number;
  flags: number;
}

export function isCompletion(v: unknown): v is CompletionValues {
  return isRecord(v) && isU32(v['error']) && isU32(v['bytes']) && isU32(v['flags']);
}

// ---------------------------------------------------------------- sockaddrs

export function isSockAddr(v: unknown): v is SockAddr {
  return isRecord(v) && typeof v['family'] === 'number' && typeof v['address'] === 'string' && typeof v['port'] === 'number';
}

/** The caller's sockaddr as it goes on the wire: its own fields only, nothing else it may carry. */
export function wireAddr(a: SockAddr): SockAddr {
  const w: SockAddr = { family: a.family, address: a.address, port: a.port };
  if (a.flowinfo !== undefined) w.flowinfo = a.flowinfo;
  if (a.scopeId !== undefined) w.scopeId = a.scopeId;
  return w;
}

/** Writes a sockaddr from the daemon into the caller's: the IPv6 fields only for AF_INET6. */
export function fillAddr(target: SockAddr, from: SockAddr): void {
  target.family = from.family;
  target.address = from.address;
  target.port = from.port;
  if (from.family === P.AF_INET6) {
    target.flowinfo = from.flowinfo ?? 0;
    target.scopeId = from.scopeId ?? 0;
  } else {
    delete target.flowinfo;
    delete target.scopeId;
  }
}

// ---------------------------------------------------------------- buffers

function isWsabuf(v: unknown): v is WSABUF {
  return isRecord(v) && v['buf'] instanceof Uint8Array && isU32(v['len']);
}

/** The bytes of the first dwBufferCount WSABUFs, or the WSA code for buffers the caller does not own. */
export function gather(lpBuffers: readonly WSABUF[] | null, dwBufferCount: number): Uint8Array[] | number {
  if (!isU32(dwBufferCount)) return P.WSAEINVAL;
  if (dwBufferCount > P.MAX_BUFFER_COUNT) return P.WSAENOBUFS;
  if (dwBufferCount === 0) return [];
  if (!Array.isArray(lpBuffers) || dwBufferCount > lpBuffers.length) return P.WSAEFAULT;
  const out: Uint8Array[] = new Array(dwBufferCount);
  for (let i = 0; i < dwBufferCount; i++) {
    const b: unknown = lpBuffers[i];
    if (!isWsabuf(b) || b.len > b.buf.byteLength) return P.WSAEFAULT;
    // A whole buffer goes as it is: a view of it would be one more object per send.
    out[i] = b.len === b.buf.length ? b.buf : b.buf.subarray(0, b.len);
  }
  return out;
}

/** Spreads received bytes over the caller's buffers, in order, as far as they reach. */
export function scatter(data: Uint8Array, targets: readonly Uint8Array[]): void {
  let at = 0;
  for (const t of targets) {
    if (at >= data.length) break;
    const n = Math.min(t.length, data.length - at);
    t.set(data.subarray(at, at + n));
    at += n;
  }
}

// ---------------------------------------------------------------- promises

/** What an async function would give for fn: its value as a promise, a throw as a rejection. */
export function promised(fn: () => number | Promise<number>): Promise<number> {
  try {
    const r = fn();
    return typeof r === 'number' ? Promise.resolve(r) : r;
  } catch (err) {
    return Promise.reject(err);
  }
}
