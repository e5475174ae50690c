/**
 * One session with the daemon, exposing the SPI functions under their SPI names with their SPI
 * parameter order. Each returns a Promise of what the C function returns; out parameters are
 * { value } objects filled before the promise resolves; lpErrno is written only on failure.
 *
 * Checks that concern the caller's own memory (WSAEFAULT for a buffer count beyond the array, a
 * len beyond its buffer, a missing out parameter) happen here, as they would in the caller's
 * address space; everything else is decided by the daemon on the real socket.
 */
import * as P from '@spiwire/proto';
import { ConnectionClosedError, RpcConnection, type RpcOptions, type Welcome } from './rpc.js';
import type { Out, ProtocolInfoLike, SOCKET, SockAddr, WSABUF, WSATHREADID } from './types.js';

/** FROM_PROTOCOL_INFO: take af, type or protocol from lpProtocolInfo. */
export const FROM_PROTOCOL_INFO = -1;

/** Room kept in a frame for the JSON header of a call. */
const HEADER_ROOM = 64 * 1024;

type Result = Record<string, unknown> & { ret: number; errno: number };

export interface ConnectOptions extends RpcOptions {}

export class SpiSession {
  private constructor(private readonly rpc: RpcConnection) {
    rpc.onNotification = (method, params) => this.onNotification(method, params);
  }

  /** Opens a session: one WebSocket connection, one emulated process. */
  static async connect(url: string, opts: ConnectOptions = {}): Promise<SpiSession> {
    return new SpiSession(await RpcConnection.open(url, opts));
  }

  /** What the daemon said when the session opened: session id, version, limits. */
  get welcome(): Welcome {
    return this.rpc.welcome;
  }

  get isOpen(): boolean {
    return this.rpc.isOpen;
  }

  /** Ends the session: the daemon closes its sockets. */
  close(): Promise<void> {
    return this.rpc.close();
  }

  /** The underlying connection, for tests of the wire protocol. */
  get connection(): RpcConnection {
    return this.rpc;
  }

  protected onNotification(_method: string, _params: Record<string, unknown>): void {
    // Completions and network events arrive here (issues 3 and 4).
  }

  /** Sends a call; a lost connection becomes WSAENETDOWN, as a vanished network subsystem would. */
  private async call(method: string, params: Record<string, unknown>): Promise<Result> {
    try {
      return (await this.rpc.call(method, params)) as Result;
    } catch (err) {
      if (err instanceof ConnectionClosedError) return { ret: P.SOCKET_ERROR, errno: P.WSAENETDOWN };
      throw err;
    }
  }

  private maxPayload(): number {
    return this.rpc.welcome.limits.maxFrameBytes - HEADER_ROOM;
  }

  // ---------------------------------------------------------------- socket lifecycle

  async WSPSocket(af: number, type: number, protocol: number, lpProtocolInfo: ProtocolInfoLike | null, g: number, dwFlags: number, lpErrno: Out): Promise<SOCKET> {
    checkErrno(lpErrno);
    if (lpProtocolInfo) {
      if (af === FROM_PROTOCOL_INFO) af = lpProtocolInfo.iAddressFamily;
      if (type === FROM_PROTOCOL_INFO) type = lpProtocolInfo.iSocketType;
      if (protocol === FROM_PROTOCOL_INFO) protocol = lpProtocolInfo.iProtocol;
    }
    if (![af, type, protocol].every(isInt32) || !isU32(g) || !isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL, P.INVALID_SOCKET);
    const r = await this.call('WSPSocket', { af, type, protocol, g, flags: dwFlags });
    return finish(r, lpErrno);
  }

  async WSPCloseSocket(s: SOCKET, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    return finish(await this.call('WSPCloseSocket', { s }), lpErrno);
  }

  async WSPBind(s: SOCKET, name: SockAddr | null, namelen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isSockAddr(name) || !isInt32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    return finish(await this.call('WSPBind', { s, name: wireAddr(name), namelen }), lpErrno);
  }

  async WSPListen(s: SOCKET, backlog: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isInt32(backlog)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.call('WSPListen', { s, backlog }), lpErrno);
  }

  /**
   * lpfnCondition, when given, is called with (callerId, dwCallbackData) after the daemon accepted
   * the connection: CF_ACCEPT keeps it, CF_REJECT closes it and the call fails with WSAECONNREFUSED.
   */
  async WSPAccept(
    s: SOCKET,
    addr: SockAddr | null,
    addrlen: Out | null,
    lpfnCondition: ((callerId: SockAddr, dwCallbackData: number) => number | Promise<number>) | null,
    dwCallbackData: number,
    lpErrno: Out,
  ): Promise<SOCKET> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK, P.INVALID_SOCKET);
    if ((addr === null) !== (addrlen === null) || (addrlen !== null && !isOut(addrlen))) return setErr(lpErrno, P.WSAEFAULT, P.INVALID_SOCKET);
    const r = await this.call('WSPAccept', { s });
    if (r.ret === P.INVALID_SOCKET) return finish(r, lpErrno);
    const peer = r['addr'] as SockAddr | undefined;
    if (lpfnCondition && peer) {
      const verdict = await lpfnCondition(peer, dwCallbackData);
      if (verdict !== P.CF_ACCEPT) {
        await this.call('WSPCloseSocket', { s: r.ret });
        return setErr(lpErrno, P.WSAECONNREFUSED, P.INVALID_SOCKET);
      }
    }
    if (addr && addrlen && peer) {
      const size = sockaddrSize(peer.family);
      if (addrlen.value < size) {
        await this.call('WSPCloseSocket', { s: r.ret });
        return setErr(lpErrno, P.WSAEFAULT, P.INVALID_SOCKET);
      }
      fillAddr(addr, peer);
      addrlen.value = size;
    }
    return r.ret;
  }

  /** lpCallerData and lpCalleeData are ignored (TCP carries no connect data); QOS gives WSAEOPNOTSUPP. */
  async WSPConnect(s: SOCKET, name: SockAddr | null, namelen: number, _lpCallerData: unknown, _lpCalleeData: unknown, lpSQOS: unknown, lpGQOS: unknown, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isSockAddr(name) || !isInt32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    if (lpSQOS != null || lpGQOS != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    return finish(await this.call('WSPConnect', { s, name: wireAddr(name), namelen }), lpErrno);
  }

  async WSPShutdown(s: SOCKET, how: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isInt32(how)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.call('WSPShutdown', { s, how }), lpErrno);
  }

  async WSPGetSockName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetSockName', s, name, namelen, lpErrno);
  }

  async WSPGetPeerName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetPeerName', s, name, namelen, lpErrno);
  }

  private async getName(method: string, s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!name || typeof name !== 'object' || !isOut(namelen) || !isInt32(namelen.value)) return setErr(lpErrno, P.WSAEFAULT);
    const r = await this.call(method, { s, namelen: namelen.value });
    if (r.ret === 0) {
      fillAddr(name, r['name'] as SockAddr);
      namelen.value = r['namelen'] as number;
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- sending

  async WSPSend(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.send('WSPSend', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, null, 0, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  async WSPSendTo(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.send('WSPSendTo', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpTo, iTolen, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  private async send(
    method: 'WSPSend' | 'WSPSendTo',
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    _lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (lpOverlapped != null || lpCompletionRoutine != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    if (lpNumberOfBytesSent !== null && !isOut(lpNumberOfBytesSent)) return setErr(lpErrno, P.WSAEFAULT);
    // Without an OVERLAPPED the byte count has nowhere to go.
    if (lpNumberOfBytesSent === null) return setErr(lpErrno, P.WSAEFAULT);
    if (!isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL);
    const buffers = gather(lpBuffers, dwBufferCount);
    if (typeof buffers === 'number') return setErr(lpErrno, buffers);
    let total = 0;
    for (const b of buffers) total += b.length;
    if (total > this.maxPayload()) return setErr(lpErrno, P.WSAENOBUFS);
    const params: Record<string, unknown> = { s, buffers, flags: dwFlags };
    if (method === 'WSPSendTo') {
      if (lpTo !== null && !isSockAddr(lpTo)) return setErr(lpErrno, P.WSAEFAULT);
      if (!isInt32(iTolen)) return setErr(lpErrno, P.WSAEFAULT);
      params['to'] = lpTo ? wireAddr(lpTo) : null;
      params['tolen'] = iTolen;
    }
    const r = await this.call(method, params);
    if (r.ret === 0) lpNumberOfBytesSent.value = r['bytesSent'] as number;
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- receiving

  async WSPRecv(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.recv('WSPRecv', s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, null, null, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  async WSPRecvFrom(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpFrom: SockAddr | null,
    lpFromlen: Out | null,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.recv('WSPRecvFrom', s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, lpFrom, lpFromlen, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  private async recv(
    method: 'WSPRecv' | 'WSPRecvFrom',
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpFrom: SockAddr | null,
    lpFromlen: Out | null,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    _lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (lpOverlapped != null || lpCompletionRoutine != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    if (!isOut(lpNumberOfBytesRecvd) || !isOut(lpFlags) || !isU32(lpFlags.value)) return setErr(lpErrno, P.WSAEFAULT);
    if ((lpFrom === null) !== (lpFromlen === null) || (lpFromlen !== null && !isOut(lpFromlen))) return setErr(lpErrno, P.WSAEFAULT);
    const targets = scatterTargets(lpBuffers, dwBufferCount);
    if (typeof targets === 'number') return setErr(lpErrno, targets);
    const r = await this.call(method, { s, lengths: targets.map((t) => t.length), flags: lpFlags.value });
    const data = r['data'] as Uint8Array | undefined;
    if (data) {
      scatter(data, targets);
      lpNumberOfBytesRecvd.value = r['bytesRecvd'] as number;
      lpFlags.value = (r['flags'] as number | undefined) ?? 0;
      const from = r['from'] as SockAddr | undefined;
      if (lpFrom && lpFromlen && from) {
        const size = sockaddrSize(from.family);
        if (lpFromlen.value < size) return setErr(lpErrno, P.WSAEFAULT);
        fillAddr(lpFrom, from);
        lpFromlen.value = size;
      }
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- control

  async WSPIoctl(
    s: SOCKET,
    dwIoControlCode: number,
    lpvInBuffer: Uint8Array | null,
    cbInBuffer: number,
    lpvOutBuffer: Uint8Array | null,
    cbOutBuffer: number,
    lpcbBytesReturned: Out | null,
    lpOverlapped: unknown,
    lpCompletionRoutine: unknown,
    _lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (lpOverlapped != null || lpCompletionRoutine != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    if (!isU32(dwIoControlCode) || !isU32(cbInBuffer) || !isU32(cbOutBuffer)) return setErr(lpErrno, P.WSAEINVAL);
    if (cbInBuffer > 0 && (!(lpvInBuffer instanceof Uint8Array) || lpvInBuffer.length < cbInBuffer)) return setErr(lpErrno, P.WSAEFAULT);
    if (cbOutBuffer > 0 && (!(lpvOutBuffer instanceof Uint8Array) || lpvOutBuffer.length < cbOutBuffer)) return setErr(lpErrno, P.WSAEFAULT);
    if (!isOut(lpcbBytesReturned)) return setErr(lpErrno, P.WSAEFAULT);
    const input = cbInBuffer > 0 ? lpvInBuffer!.subarray(0, cbInBuffer) : new Uint8Array(0);
    const r = await this.call('WSPIoctl', { s, code: dwIoControlCode, input, outputLength: cbOutBuffer });
    if (r.ret === 0) {
      const output = r['output'] as Uint8Array | undefined;
      if (output && output.length > 0 && lpvOutBuffer) lpvOutBuffer.set(output.subarray(0, cbOutBuffer));
      lpcbBytesReturned.value = (r['bytesReturned'] as number | undefined) ?? 0;
    }
    return finish(r, lpErrno);
  }

  async WSPSetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isInt32(level) || !isInt32(optname) || !isInt32(optlen)) return setErr(lpErrno, P.WSAEINVAL);
    if (optval !== null && !(optval instanceof Uint8Array)) return setErr(lpErrno, P.WSAEFAULT);
    // optlen beyond the caller's buffer is memory the caller does not own.
    if (optval && optlen > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    const bytes = optval ? optval.subarray(0, Math.max(0, optlen)) : null;
    return finish(await this.call('WSPSetSockOpt', { s, level, optname, optval: bytes, optlen }), lpErrno);
  }

  async WSPGetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isInt32(level) || !isInt32(optname)) return setErr(lpErrno, P.WSAEINVAL);
    if (!(optval instanceof Uint8Array) || !isOut(optlen) || !isInt32(optlen.value) || optlen.value > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    const r = await this.call('WSPGetSockOpt', { s, level, optname, optlen: optlen.value });
    if (r.ret === 0) {
      const v = r['optval'] as Uint8Array;
      optval.set(v.subarray(0, optlen.value));
      optlen.value = r['optlen'] as number;
    }
    return finish(r, lpErrno);
  }
}

// ---------------------------------------------------------------- helpers

function isInt32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;
}

function isU32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function isOut(v: unknown): v is Out {
  return v !== null && typeof v === 'object' && 'value' in v;
}

function isSockAddr(v: unknown): v is SockAddr {
  if (v === null || typeof v !== 'object') return false;
  const a = v as Record<string, unknown>;
  return typeof a['family'] === 'number' && typeof a['address'] === 'string' && typeof a['port'] === 'number';
}

/** lpErrno is mandatory in the SPI: a missing one is a programming error, not a Winsock result. */
function checkErrno(lpErrno: Out): void {
  if (!isOut(lpErrno)) throw new TypeError('lpErrno must be an out parameter object { value }');
}

function setErr(lpErrno: Out, code: number, ret: number = P.SOCKET_ERROR): number {
  lpErrno.value = code;
  return ret;
}

function finish(r: Result, lpErrno: Out): number {
  if (r.errno !== 0) lpErrno.value = r.errno;
  return r.ret;
}

function sockaddrSize(family: number): number {
  return family === P.AF_INET6 ? P.SOCKADDR_IN6_SIZE : P.SOCKADDR_IN_SIZE;
}

function wireAddr(a: SockAddr): SockAddr {
  const w: SockAddr = { family: a.family, address: a.address, port: a.port };
  if (a.flowinfo !== undefined) w.flowinfo = a.flowinfo;
  if (a.scopeId !== undefined) w.scopeId = a.scopeId;
  return w;
}

function fillAddr(target: SockAddr, from: SockAddr): void {
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

/** The bytes of the first dwBufferCount WSABUFs, or the WSA code for buffers the caller does not own. */
export function gather(lpBuffers: readonly WSABUF[] | null, dwBufferCount: number): Uint8Array[] | number {
  if (!isU32(dwBufferCount)) return P.WSAEINVAL;
  if (dwBufferCount > P.MAX_BUFFER_COUNT) return P.WSAENOBUFS;
  if (dwBufferCount === 0) return [];
  if (!Array.isArray(lpBuffers) || dwBufferCount > lpBuffers.length) return P.WSAEFAULT;
  const out: Uint8Array[] = new Array(dwBufferCount);
  for (let i = 0; i < dwBufferCount; i++) {
    const b = lpBuffers[i] as WSABUF | undefined;
    if (!b || typeof b !== 'object' || !(b.buf instanceof Uint8Array) || !isU32(b.len) || b.len > b.buf.byteLength) return P.WSAEFAULT;
    out[i] = b.buf.subarray(0, b.len);
  }
  return out;
}

function scatterTargets(lpBuffers: WSABUF[] | null, dwBufferCount: number): Uint8Array[] | number {
  return gather(lpBuffers, dwBufferCount);
}

function scatter(data: Uint8Array, targets: Uint8Array[]): void {
  let at = 0;
  for (const t of targets) {
    if (at >= data.length) break;
    const n = Math.min(t.length, data.length - at);
    t.set(data.subarray(at, at + n));
    at += n;
  }
}
