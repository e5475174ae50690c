/**
 * The SPI functions under their SPI names, with their SPI parameter order. Each returns a Promise
 * of what the C function returns; out parameters are { value } objects filled before the promise
 * resolves; lpErrno is written only on failure.
 *
 * Each function checks what concerns the caller's own memory (WSAEFAULT for a buffer count beyond
 * the array, a len beyond its buffer, a missing out parameter), as it would be checked in the
 * caller's address space, then makes one call to the session's engine (engine.ts) and writes its
 * out parameters from the result. Everything else is decided by the daemon on the real socket.
 */
import * as P from '@spiwire/proto';
import { isI32, isU32, sockaddrSize } from '@spiwire/proto';
import { enumProtocols } from './catalog.js';
import type { WSANETWORKEVENTS } from './event-select.js';
import type { OverlappedArgs, SessionEngine } from './engine.js';
import { checkErrno, fieldOf, fillAddr, finish, gather, isBytes, isOut, isRecord, isSockAddr, promised, scatter, setErr, wireAddr, type Result } from './marshal.js';
import { WSAOVERLAPPED, type LPWSAOVERLAPPED_COMPLETION_ROUTINE } from './overlapped.js';
import type { SpiThread } from './threads.js';
import { FD_ISSET, FD_SETSIZE, type fd_set, type Out, type ProtocolInfoLike, type SOCKET, type SockAddr, type timeval, type WSABUF, type WSATHREADID } from './types.js';

/** FROM_PROTOCOL_INFO: take af, type or protocol from lpProtocolInfo. */
export const FROM_PROTOCOL_INFO = -1;

/** The SPI functions of a session (SpiSession extends this with threads, events and the session's life). */
export abstract class SpiFunctions {
  protected abstract readonly engine: SessionEngine<SpiThread>;

  // ---------------------------------------------------------------- socket lifecycle

  async WSPSocket(af: number, type: number, protocol: number, lpProtocolInfo: ProtocolInfoLike | null, g: number, dwFlags: number, lpErrno: Out): Promise<SOCKET> {
    checkErrno(lpErrno);
    if (lpProtocolInfo) {
      // As on Windows, arguments of FROM_PROTOCOL_INFO or 0 come from the entry, whose family
      // must then be a real one (no AF_UNSPEC lookup in the catalog).
      if (af === FROM_PROTOCOL_INFO || af === 0) af = lpProtocolInfo.iAddressFamily;
      if (type === FROM_PROTOCOL_INFO || type === 0) type = lpProtocolInfo.iSocketType;
      if (protocol === FROM_PROTOCOL_INFO || protocol === 0) protocol = lpProtocolInfo.iProtocol;
      if (af !== P.AF_INET && af !== P.AF_INET6) return setErr(lpErrno, P.WSAEAFNOSUPPORT, P.INVALID_SOCKET);
    }
    if (![af, type, protocol].every(isI32) || !isU32(g) || !isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL, P.INVALID_SOCKET);
    return finish(await this.engine.socket({ af, type, protocol, g, flags: dwFlags }), lpErrno);
  }

  async WSPCloseSocket(s: SOCKET, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    return finish(await this.engine.closeSocket(s), lpErrno);
  }

  async WSPBind(s: SOCKET, name: SockAddr | null, namelen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isSockAddr(name) || !isI32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    return finish(await this.engine.call('WSPBind', { s, name: wireAddr(name), namelen }), lpErrno);
  }

  async WSPListen(s: SOCKET, backlog: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(backlog)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.engine.call('WSPListen', { s, backlog }), lpErrno);
  }

  /**
   * lpfnCondition, when given, is called with (callerId, dwCallbackData) after the daemon accepted
   * the connection: CF_ACCEPT keeps it; CF_DEFER keeps it queued for the next WSPAccept on the
   * socket and the call fails with WSATRY_AGAIN, as on Windows (Wine's test_accept); anything else
   * (CF_REJECT) closes it and the call fails with WSAECONNREFUSED.
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
    // An address buffer without a length is ignored, as on Windows; a length needs its buffer.
    if ((addr === null && addrlen !== null) || (addrlen !== null && !isOut(addrlen))) return setErr(lpErrno, P.WSAEFAULT, P.INVALID_SOCKET);
    const r = await this.engine.accept(s);
    if (r.ret === P.INVALID_SOCKET) return finish(r, lpErrno);
    const peer = fieldOf(r, 'addr', isSockAddr);
    if (lpfnCondition && peer) {
      const verdict = await lpfnCondition(peer, dwCallbackData);
      if (verdict === P.CF_DEFER) {
        this.engine.deferAccept(s, r);
        return setErr(lpErrno, P.WSATRY_AGAIN, P.INVALID_SOCKET);
      }
      if (verdict !== P.CF_ACCEPT) {
        await this.engine.closeSocket(r.ret);
        return setErr(lpErrno, P.WSAECONNREFUSED, P.INVALID_SOCKET);
      }
    }
    if (addr && addrlen && peer) {
      const size = sockaddrSize(peer.family);
      if (addrlen.value < size) {
        await this.engine.closeSocket(r.ret);
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
    if (!isSockAddr(name) || !isI32(namelen)) return setErr(lpErrno, P.WSAEFAULT);
    if (lpSQOS != null || lpGQOS != null) return setErr(lpErrno, P.WSAEOPNOTSUPP);
    return finish(await this.engine.blocking('WSPConnect', { s, name: wireAddr(name), namelen }, s, null), lpErrno);
  }

  async WSPShutdown(s: SOCKET, how: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(how)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.engine.call('WSPShutdown', { s, how }), lpErrno);
  }

  /**
   * WSPSendDisconnect: ends the socket's sending side, as WSPShutdown(SD_SEND) does (the peer
   * reads the end of the stream once the bytes before it). TCP carries no disconnect data: bytes
   * in lpOutboundDisconnectData fail the call with WSAENOPROTOOPT, as the reference page says of
   * a provider without it, and nothing is shut down; an empty WSABUF is no data.
   */
  async WSPSendDisconnect(s: SOCKET, lpOutboundDisconnectData: WSABUF | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    const data = lpOutboundDisconnectData;
    if (data != null && !(isRecord(data) && isU32(data.len))) return setErr(lpErrno, P.WSAEFAULT);
    if (data != null && data.len > 0) return setErr(lpErrno, isU32(s) && this.engine.sockets.has(s) ? P.WSAENOPROTOOPT : P.WSAENOTSOCK);
    return this.WSPShutdown(s, P.SD_SEND, lpErrno);
  }

  /**
   * WSPRecvDisconnect: ends the receiving side, as WSPShutdown(SD_RECEIVE). No disconnect data
   * ever arrives on TCP: lpInboundDisconnectData is left as it is (the reference page lets a
   * provider without disconnect data not fail, and Windows' ws2_32 as Wine has it ignores it).
   */
  async WSPRecvDisconnect(s: SOCKET, lpInboundDisconnectData: WSABUF | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (lpInboundDisconnectData != null && !isRecord(lpInboundDisconnectData)) return setErr(lpErrno, P.WSAEFAULT);
    return this.WSPShutdown(s, P.SD_RECEIVE, lpErrno);
  }

  async WSPGetSockName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetSockName', s, name, namelen, lpErrno);
  }

  async WSPGetPeerName(s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    return this.getName('WSPGetPeerName', s, name, namelen, lpErrno);
  }

  private async getName(method: 'WSPGetSockName' | 'WSPGetPeerName', s: SOCKET, name: SockAddr | null, namelen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!name || typeof name !== 'object' || !isOut(namelen) || !isI32(namelen.value)) {
      // Windows checks the connection before the buffers (Wine's test_getpeername): an
      // unconnected socket fails with WSAENOTCONN even without them. The daemon says which.
      if (method === 'WSPGetPeerName') {
        const r = await this.engine.call(method, { s, namelen: P.SOCKADDR_IN6_SIZE });
        if (r.ret !== 0) return finish(r, lpErrno);
      }
      return setErr(lpErrno, P.WSAEFAULT);
    }
    const r = await this.engine.call(method, { s, namelen: namelen.value });
    const addr = fieldOf(r, 'name', isSockAddr);
    if (r.ret === 0 && addr) {
      fillAddr(name, addr);
      namelen.value = fieldOf(r, 'namelen', isI32) ?? sockaddrSize(addr.family);
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- sending

  WSPSend(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return promised(() => this.send('WSPSend', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, null, 0, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno));
  }

  WSPSendTo(
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return promised(() => this.send('WSPSendTo', s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpTo, iTolen, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno));
  }

  /**
   * WSPSend and WSPSendTo. Not an async function, nor is anything it calls on the way to the
   * daemon and back: on the hot path every promise hop shows in the small-call latency.
   */
  private send(
    method: 'WSPSend' | 'WSPSendTo',
    s: SOCKET,
    lpBuffers: readonly WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesSent: Out | null,
    dwFlags: number,
    lpTo: SockAddr | null,
    iTolen: number,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): number | Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    // lpCompletionRoutine is ignored without lpOverlapped: the call is then not overlapped.
    const how = this.overlappedArgs(s, lpOverlapped, lpCompletionRoutine, lpThreadId);
    if (typeof how === 'number') return setErr(lpErrno, how);
    if (lpNumberOfBytesSent !== null && lpNumberOfBytesSent !== undefined && !isOut(lpNumberOfBytesSent)) return setErr(lpErrno, P.WSAEFAULT);
    // Without an OVERLAPPED the byte count has nowhere else to go.
    if (!how && !lpNumberOfBytesSent) return setErr(lpErrno, P.WSAEFAULT);
    if (!isU32(dwFlags)) return setErr(lpErrno, P.WSAEINVAL);
    const buffers = gather(lpBuffers, dwBufferCount);
    if (typeof buffers === 'number') return setErr(lpErrno, buffers);
    let total = 0;
    for (const b of buffers) total += b.length;
    if (total > 0xffffffff) return setErr(lpErrno, P.WSAENOBUFS);
    if (total > this.engine.maxPayload()) return this.sendStreamed(s, buffers, total, lpNumberOfBytesSent, dwFlags, how, lpThreadId, lpErrno);
    const params: Record<string, unknown> = { s, buffers, flags: dwFlags };
    if (method === 'WSPSendTo') {
      if (lpTo !== null && !isSockAddr(lpTo)) return setErr(lpErrno, P.WSAEFAULT);
      if (!isI32(iTolen)) return setErr(lpErrno, P.WSAEFAULT);
      params['to'] = lpTo ? wireAddr(lpTo) : null;
      params['tolen'] = iTolen;
    }
    // Overlapped and pending: lpNumberOfBytesSent is not written.
    const then = (r: Result): number => {
      writeBytesSent(r, lpNumberOfBytesSent);
      return finish(r, lpErrno);
    };
    return how ? this.engine.overlapped(method, params, how, undefined, then) : this.engine.blocking(method, params, s, lpThreadId).then(then);
  }

  /**
   * A send larger than one message, as a stream (send-streams.ts): one call for the caller. (A
   * WSPSendTo that large is a stream send too: only a TCP socket takes one, and it ignores lpTo.)
   */
  private sendStreamed(s: SOCKET, buffers: readonly Uint8Array[], total: number, lpNumberOfBytesSent: Out | null, dwFlags: number, how: OverlappedArgs | null, lpThreadId: WSATHREADID | null, lpErrno: Out): Promise<number> {
    // The pieces are views of the caller's buffers: an overlapped send has them until its
    // completion (as on Windows, where they must stay untouched until then), a blocking one until
    // it returns; a send that returns with pieces still to go copies them then (detach).
    const { stream, first } = this.engine.streams.begin(buffers, total);
    const params: Record<string, unknown> = { s, buffers: first, flags: dwFlags, stream, total };
    return (how ? this.engine.overlapped('WSPSend', params, how) : this.engine.blocking('WSPSend', params, s, lpThreadId)).then((r) => {
      // Failed at once (or done with a part of it): no more pieces.
      if (r.ret !== 0 && r.errno !== P.WSA_IO_PENDING) this.engine.streams.end(stream);
      else if (!how) this.engine.streams.detach(stream);
      writeBytesSent(r, lpNumberOfBytesSent);
      return finish(r, lpErrno);
    });
  }

  // ---------------------------------------------------------------- receiving

  WSPRecv(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    return this.recv('WSPRecv', s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, null, null, lpOverlapped, lpCompletionRoutine, lpThreadId, lpErrno);
  }

  WSPRecvFrom(
    s: SOCKET,
    lpBuffers: WSABUF[] | null,
    dwBufferCount: number,
    lpNumberOfBytesRecvd: Out | null,
    lpFlags: Out | null,
    lpFrom: SockAddr | null,
    lpFromlen: Out | null,
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
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
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    const how = this.overlappedArgs(s, lpOverlapped, lpCompletionRoutine, lpThreadId);
    if (typeof how === 'number') return setErr(lpErrno, how);
    if (!isOut(lpFlags) || !isU32(lpFlags.value)) return setErr(lpErrno, P.WSAEFAULT);
    if (!how && !isOut(lpNumberOfBytesRecvd)) return setErr(lpErrno, P.WSAEFAULT);
    if ((lpFrom === null) !== (lpFromlen === null) || (lpFromlen !== null && !isOut(lpFromlen))) return setErr(lpErrno, P.WSAEFAULT);
    // The receive buffers are checked as the send buffers are: the caller must own every byte.
    const targets = gather(lpBuffers, dwBufferCount);
    if (typeof targets === 'number') return setErr(lpErrno, targets);
    // A receive needs somewhere to put data: no buffers at all is WSAEINVAL on Windows.
    if (targets.length === 0) return setErr(lpErrno, P.WSAEINVAL);
    // A datagram socket's lpFromlen too small for its family fails before anything is taken, so
    // the datagram stays queued, as on Windows. (A stream socket leaves lpFrom alone.)
    const known = this.engine.sockets.get(s);
    if (lpFromlen && known?.type === P.SOCK_DGRAM && lpFromlen.value < sockaddrSize(known.af)) return setErr(lpErrno, P.WSAEFAULT);
    const params = { s, lengths: targets.map((t) => t.length), flags: lpFlags.value };
    const r = how ? await this.engine.overlapped(method, params, how, { targets, flagsOut: lpFlags }) : await this.engine.blocking(method, params, s, lpThreadId);
    const data = fieldOf(r, 'data', isBytes);
    if (data) {
      // (An overlapped receive's bytes are already in place: the operation table put them there.)
      if (!how) scatter(data, targets);
      if (isOut(lpNumberOfBytesRecvd)) lpNumberOfBytesRecvd.value = fieldOf(r, 'bytesRecvd', isU32) ?? data.length;
      lpFlags.value = fieldOf(r, 'flags', isU32) ?? 0;
      const from = fieldOf(r, 'from', isSockAddr);
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
    lpOverlapped: WSAOVERLAPPED | null,
    lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null,
    lpThreadId: WSATHREADID | null,
    lpErrno: Out,
  ): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    const how = this.overlappedArgs(s, lpOverlapped, lpCompletionRoutine, lpThreadId);
    if (typeof how === 'number') return setErr(lpErrno, how);
    if (!isU32(dwIoControlCode) || !isU32(cbInBuffer) || !isU32(cbOutBuffer)) return setErr(lpErrno, P.WSAEINVAL);
    // Windows wants lpcbBytesReturned overlapped or not. What it writes there, as Wine's tests
    // record it: FIONBIO, FIONREAD and SIOCATMARK (answered in ws2_32 itself) write it on success
    // only; the other codes write it when there is no OVERLAPPED (0 on failure, a buffer it cannot
    // read included) or a routine, and leave it alone for an overlapped call with only an event.
    // One refusal of theirs writes 0 too: FIONBIO 0 on a socket with events selected (WSAEINVAL).
    if (!isOut(lpcbBytesReturned)) return setErr(lpErrno, P.WSAEFAULT);
    const local = dwIoControlCode === P.FIONBIO || dwIoControlCode === P.FIONREAD || dwIoControlCode === P.SIOCATMARK;
    const badIn = cbInBuffer > 0 && (!(lpvInBuffer instanceof Uint8Array) || lpvInBuffer.length < cbInBuffer);
    const badOut = cbOutBuffer > 0 && (!(lpvOutBuffer instanceof Uint8Array) || lpvOutBuffer.length < cbOutBuffer);
    if (badIn || badOut) {
      if (!local && !how) lpcbBytesReturned.value = 0;
      return setErr(lpErrno, P.WSAEFAULT);
    }
    const writeCount = local || !how || how.routine !== null;
    const input = cbInBuffer > 0 && lpvInBuffer instanceof Uint8Array ? lpvInBuffer.subarray(0, cbInBuffer) : new Uint8Array(0);
    const r = await this.engine.ioctl({ s, code: dwIoControlCode, input, outputLength: cbOutBuffer }, how);
    if (r.ret === 0) {
      const output = fieldOf(r, 'output', isBytes);
      if (output && output.length > 0 && lpvOutBuffer) lpvOutBuffer.set(output.subarray(0, cbOutBuffer));
      if (writeCount) lpcbBytesReturned.value = fieldOf(r, 'bytesReturned', isU32) ?? 0;
    } else if ((!local && !how && r.errno !== P.WSAENOTSOCK) || (dwIoControlCode === P.FIONBIO && r.errno === P.WSAEINVAL)) lpcbBytesReturned.value = 0;
    return finish(r, lpErrno);
  }

  async WSPSetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(level) || !isI32(optname) || !isI32(optlen)) return setErr(lpErrno, P.WSAEINVAL);
    if (optval !== null && !(optval instanceof Uint8Array)) return setErr(lpErrno, P.WSAEFAULT);
    // optlen beyond the caller's buffer is memory the caller does not own.
    if (optval && optlen > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    // A negative optlen is a huge one to the C function: the daemon reads at most 4 bytes of any option.
    const bytes = optval ? optval.subarray(0, optlen < 0 ? Math.min(optval.length, 4) : optlen) : null;
    return finish(await this.engine.call('WSPSetSockOpt', { s, level, optname, optval: bytes, optlen }), lpErrno);
  }

  async WSPGetSockOpt(s: SOCKET, level: number, optname: number, optval: Uint8Array | null, optlen: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isI32(level) || !isI32(optname)) return setErr(lpErrno, P.WSAEINVAL);
    if (!(optval instanceof Uint8Array) || !isOut(optlen) || !isI32(optlen.value) || optlen.value > optval.length) return setErr(lpErrno, P.WSAEFAULT);
    const r = await this.engine.call('WSPGetSockOpt', { s, level, optname, optlen: optlen.value });
    const v = fieldOf(r, 'optval', isBytes);
    const n = fieldOf(r, 'optlen', isI32);
    if (r.ret === 0 && v) {
      optval.set(v.subarray(0, optlen.value));
      optlen.value = n ?? Math.min(v.length, optlen.value);
    } else if (r.ret !== 0) {
      // A refused read still writes, as Windows does: zeroed bytes (SO_LINGER, SO_RCVBUF and
      // SO_SNDBUF read short), or optlen (the size SO_PROTOCOL_INFOW needs; 0 for a short TCP option).
      if (v) optval.set(v.subarray(0, Math.max(0, optlen.value)));
      if (n !== undefined) optlen.value = n;
    }
    return finish(r, lpErrno);
  }

  // ---------------------------------------------------------------- overlapped results and network events

  /**
   * WSPGetOverlappedResult: TRUE with the byte count and flags of a completed operation; FALSE
   * with WSA_IO_INCOMPLETE while it is pending and fWait is FALSE; with fWait TRUE it waits on
   * the operation's hEvent (WSAEINVAL without one) and, as Windows does, takes the signalled event
   * as the end of the operation; FALSE with the operation's own error if it failed. A handle that is
   * not an open socket of the session gives WSAENOTSOCK, as on Windows, except for the operations
   * issued on it before its close (so that their WSA_OPERATION_ABORTED can be read).
   */
  async WSPGetOverlappedResult(s: SOCKET, lpOverlapped: WSAOVERLAPPED | null, lpcbTransfer: Out | null, fWait: boolean | number, lpdwFlags: Out | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    // A closed socket's handle still reads the operations that were issued on it (their abort).
    const ov = lpOverlapped instanceof WSAOVERLAPPED ? lpOverlapped : null;
    if (!this.engine.sockets.has(s) && (ov === null || ov.lastSocket !== s)) return setErr(lpErrno, P.WSAENOTSOCK, P.FALSE);
    if (!(lpOverlapped instanceof WSAOVERLAPPED) || !isOut(lpcbTransfer) || !isOut(lpdwFlags)) return setErr(lpErrno, P.WSAEFAULT, P.FALSE);
    if (lpOverlapped.pending) {
      if (!fWait) return setErr(lpErrno, P.WSA_IO_INCOMPLETE, P.FALSE);
      const ev = lpOverlapped.hEvent ? this.engine.events.get(lpOverlapped.hEvent) : undefined;
      if (!ev) return setErr(lpErrno, lpOverlapped.hEvent ? P.WSA_INVALID_HANDLE : P.WSAEINVAL, P.FALSE);
      // Windows reads the result once the event is signalled, even when something else set it.
      await this.engine.threads.current().wait({ events: [ev], waitAll: false, timeoutMs: P.INFINITE, alertable: false });
    }
    lpcbTransfer.value = lpOverlapped.InternalHigh;
    lpdwFlags.value = lpOverlapped.Offset;
    if (lpOverlapped.OffsetHigh !== 0) return setErr(lpErrno, lpOverlapped.OffsetHigh, P.FALSE);
    return P.TRUE;
  }

  /**
   * WSPEventSelect: associates hEventObject with the network events in lNetworkEvents (0 cancels)
   * and makes the socket nonblocking. The event is set whenever an event is recorded.
   */
  async WSPEventSelect(s: SOCKET, hEventObject: number, lNetworkEvents: number, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!isU32(lNetworkEvents)) return setErr(lpErrno, P.WSAEINVAL);
    if (lNetworkEvents !== 0 && !this.engine.events.get(hEventObject)) return setErr(lpErrno, P.WSAEINVAL);
    return finish(await this.engine.eventSelect(s, hEventObject, lNetworkEvents), lpErrno);
  }

  /**
   * WSPEnumNetworkEvents: reports and clears the network events recorded for the socket, with
   * their error codes (iErrorCode indexed by FD_READ_BIT ... FD_CLOSE_BIT); resets hEventObject.
   */
  async WSPEnumNetworkEvents(s: SOCKET, hEventObject: number, lpNetworkEvents: WSANETWORKEVENTS | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    if (!isU32(s)) return setErr(lpErrno, P.WSAENOTSOCK);
    if (!lpNetworkEvents || typeof lpNetworkEvents !== 'object') return setErr(lpErrno, P.WSAEFAULT);
    const { r, recorded } = await this.engine.enumNetworkEvents(s);
    if (r.ret !== 0) return finish(r, lpErrno);
    lpNetworkEvents.lNetworkEvents = recorded.lNetworkEvents;
    // As on Windows, only the entries of the events reported are written; the rest keep their values.
    const codes = lpNetworkEvents.iErrorCode;
    if (!Array.isArray(codes) || codes.length < recorded.iErrorCode.length) lpNetworkEvents.iErrorCode = recorded.iErrorCode;
    else for (let bit = 0; bit < recorded.iErrorCode.length; bit++) if (recorded.lNetworkEvents & (1 << bit)) codes[bit] = recorded.iErrorCode[bit] ?? 0;
    if (hEventObject) {
      const e = this.engine.events.get(hEventObject);
      if (!e) return setErr(lpErrno, P.WSAEINVAL);
      e.signaled = false;
    }
    return 0;
  }

  /**
   * WSPSelect: which sockets of readfds can be read (or accept, or see the end of the
   * connection), of writefds written (or finished connecting), of exceptfds have a failed connect
   * or urgent data, waiting up to timeout (null: until one is ready) for at least one. Rewrites
   * each set given to hold its ready sockets and returns how many entries it wrote; nfds is
   * ignored, as on Windows. Waiting, the calling thread runs its APCs, and the call goes on.
   */
  async WSPSelect(nfds: number, readfds: fd_set | null, writefds: fd_set | null, exceptfds: fd_set | null, timeout: timeval | null, lpErrno: Out): Promise<number> {
    checkErrno(lpErrno);
    void nfds;
    const sets = [readfds ?? null, writefds ?? null, exceptfds ?? null];
    const lists: Array<number[] | null> = [];
    for (const set of sets) {
      if (set === null) lists.push(null);
      else if (!isFdSet(set)) return setErr(lpErrno, P.WSAEFAULT);
      else if (set.fd_count > FD_SETSIZE) return setErr(lpErrno, P.WSAENOBUFS);
      else lists.push(set.fd_array.slice(0, set.fd_count));
    }
    if (lists.every((l) => l === null || l.length === 0)) return setErr(lpErrno, P.WSAEINVAL);
    if (lists.some((l) => l !== null && !l.every(isU32))) return setErr(lpErrno, P.WSAENOTSOCK);
    if (timeout != null && !(isRecord(timeout) && isI32(timeout.tv_sec) && isI32(timeout.tv_usec))) return setErr(lpErrno, P.WSAEFAULT);
    const params: Record<string, unknown> = { readfds: lists[0], writefds: lists[1], exceptfds: lists[2] };
    // A connection deferred with CF_DEFER waits here, in the SDK, for the next WSPAccept: on
    // Windows it is still queued on the listening socket, which is readable. The daemon is then
    // only asked what else is ready now.
    const deferred = new Set((lists[0] ?? []).filter((s) => this.engine.hasDeferredAccept(s)));
    if (deferred.size > 0) params['timeout'] = { sec: 0, usec: 0 };
    else if (timeout != null) params['timeout'] = { sec: timeout.tv_sec, usec: timeout.tv_usec };
    const r = await this.engine.select(params);
    if (r.ret === P.SOCKET_ERROR) return finish(r, lpErrno);
    const ready = [fieldOf(r, 'readfds', isHandleList), fieldOf(r, 'writefds', isHandleList), fieldOf(r, 'exceptfds', isHandleList)];
    if (deferred.size > 0) {
      const readable = new Set([...(ready[0] ?? []), ...deferred]);
      ready[0] = (lists[0] ?? []).filter((s) => readable.has(s));
    }
    // As Windows does: each set given is emptied, then each ready socket added to its set once.
    // A set passed for two parameters thus holds each of its ready sockets once, and the count is
    // that of the entries written.
    for (const set of sets) if (set) set.fd_count = 0;
    let count = 0;
    sets.forEach((set, i) => {
      if (!set) return;
      for (const s of ready[i] ?? []) {
        if (FD_ISSET(s, set)) continue;
        set.fd_array[set.fd_count++] = s;
        count++;
      }
    });
    return count;
  }

  /**
   * WSCEnumProtocols: the provider's catalog entries as C WSAPROTOCOL_INFOW structures back to back;
   * WSAENOBUFS with the needed length in lpdwBufferLength when the buffer is too small (catalog.ts).
   */
  async WSCEnumProtocols(lpiProtocols: readonly number[] | null, lpProtocolBuffer: Uint8Array | null, lpdwBufferLength: Out, lpErrno: Out): Promise<number> {
    return enumProtocols(lpiProtocols, lpProtocolBuffer, lpdwBufferLength, lpErrno);
  }

  /**
   * The overlapped arguments, checked: null when the call is not overlapped (no lpOverlapped),
   * a WSA code when they are unusable.
   */
  private overlappedArgs(s: number, lpOverlapped: unknown, lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE | null, lpThreadId: unknown): OverlappedArgs | null | number {
    if (lpOverlapped === null || lpOverlapped === undefined) return null;
    if (!(lpOverlapped instanceof WSAOVERLAPPED)) return P.WSAEFAULT;
    if (lpCompletionRoutine !== null && lpCompletionRoutine !== undefined && typeof lpCompletionRoutine !== 'function') return P.WSAEFAULT;
    let threadId: WSATHREADID | null = null;
    if (lpThreadId !== null && lpThreadId !== undefined) {
      if (!isThreadId(lpThreadId)) return P.WSAEFAULT;
      threadId = lpThreadId;
    }
    if (!lpCompletionRoutine && lpOverlapped.hEvent && !this.engine.events.get(lpOverlapped.hEvent)) return P.WSA_INVALID_HANDLE;
    return { s, ov: lpOverlapped, routine: lpCompletionRoutine ?? null, lpThreadId: threadId };
  }
}

function isThreadId(v: unknown): v is WSATHREADID {
  return isRecord(v) && isU32(v['ThreadHandle']);
}

/**
 * lpNumberOfBytesSent: the count of a send that succeeded, and of a blocking send that failed
 * part way (the daemon then reports the bytes that reached the transport; Winsock would leave the
 * value undefined). An overlapped send that is pending writes nothing.
 */
function writeBytesSent(r: Result, lpNumberOfBytesSent: Out | null): void {
  if (!lpNumberOfBytesSent) return;
  const n = fieldOf(r, 'bytesSent', isU32);
  if (r.ret === 0) lpNumberOfBytesSent.value = n ?? 0;
  else if (n !== undefined) lpNumberOfBytesSent.value = n;
}

/** An fd_set the caller may pass: fd_count within its fd_array (else WSAEFAULT, as a bad pointer). */
function isFdSet(v: unknown): v is fd_set {
  return isRecord(v) && Array.isArray(v['fd_array']) && Number.isInteger(v['fd_count']) && (v['fd_count'] as number) >= 0 && (v['fd_count'] as number) <= v['fd_array'].length;
}

function isHandleList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every(isU32);
}
