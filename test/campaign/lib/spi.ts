/** The handful of SPI calls the scenarios make to set up their sockets, over the raw wire client. */
import * as P from '@spiwire/proto';
import type { Wire } from './wire.js';

export const v4 = (port: number, address = '127.0.0.1'): P.SockAddr => ({ family: P.AF_INET, address, port });
export const v6 = (port: number, address = '::1'): P.SockAddr => ({ family: P.AF_INET6, address, port });
export const sizeOf = (a: { family: number }): number => (a.family === P.AF_INET6 ? 28 : 16);

/** dwords as WSPSetSockOpt takes them: 4 bytes, little-endian. */
export function dword(n: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

/** A new socket's handle, or null when WSPSocket failed (the result is in last). */
export async function socket(w: Wire, type: number, opts: { af?: number; overlapped?: boolean } = {}): Promise<number | null> {
  const r = await w.call('WSPSocket', { af: opts.af ?? P.AF_INET, type, protocol: 0, g: 0, flags: opts.overlapped ? P.WSA_FLAG_OVERLAPPED : 0 });
  const s = r?.['ret'];
  return typeof s === 'number' && s > 0 && r?.['errno'] === 0 ? s : null;
}

/** The SPI result of a call, or a stand-in with ret -1 and errno -1 when there was no result (protocol error, time-out, closed). */
export async function spi(w: Wire, method: string, params: Record<string, unknown>, timeoutMs = 10000): Promise<{ ret: number; errno: number; [k: string]: unknown }> {
  const r = await w.call(method, params, { timeoutMs });
  return r ? (r as { ret: number; errno: number }) : { ret: -1, errno: -1 };
}

export async function connect(w: Wire, s: number, to: P.SockAddr): Promise<boolean> {
  return (await spi(w, 'WSPConnect', { s, name: to, namelen: sizeOf(to) })).ret === 0;
}

export async function bind(w: Wire, s: number, at: P.SockAddr): Promise<boolean> {
  return (await spi(w, 'WSPBind', { s, name: at, namelen: sizeOf(at) })).ret === 0;
}

/** The local port of a bound socket, or null. */
export async function localPort(w: Wire, s: number): Promise<number | null> {
  const r = await spi(w, 'WSPGetSockName', { s, namelen: 28 });
  return r.ret === 0 ? ((r['name'] as P.SockAddr).port ?? null) : null;
}

/** A listening TCP socket on loopback and its port, or null. */
export async function listener(w: Wire, opts: { af?: number; overlapped?: boolean; backlog?: number } = {}): Promise<{ s: number; port: number } | null> {
  const s = await socket(w, P.SOCK_STREAM, opts);
  if (s === null) return null;
  if (!(await bind(w, s, opts.af === P.AF_INET6 ? v6(0) : v4(0)))) return null;
  if ((await spi(w, 'WSPListen', { s, backlog: opts.backlog ?? 16 })).ret !== 0) return null;
  const port = await localPort(w, s);
  return port === null ? null : { s, port };
}
