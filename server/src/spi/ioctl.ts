/** WSPIoctl: the control codes spiwire implements. */
import * as W from '@spiwire/proto';
import { fail, ok, type Outcome } from '../outcome.js';
import type { EmulatedSocket } from '../sockets/emulated-socket.js';
import { dwordBytes } from './options.js';

export function ioctl(sock: EmulatedSocket, code: number, input: Uint8Array, outputLength: number): Outcome {
  switch (code) {
    case W.FIONBIO:
      if (input.length < 4) return fail(W.WSAEFAULT);
      sock.nonBlocking = new DataView(input.buffer, input.byteOffset, 4).getUint32(0, true) !== 0;
      return ok({ output: new Uint8Array(0), bytesReturned: 0 });
    case W.FIONREAD:
      if (outputLength < 4) return fail(W.WSAEFAULT);
      return ok({ output: dwordBytes(sock.readable()), bytesReturned: 4 });
    case W.SIOCATMARK:
      if (outputLength < 4) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_STREAM) return fail(W.WSAEINVAL);
      // TRUE while no urgent data waits to be read out of band.
      return ok({ output: dwordBytes(sock.atMark() ? W.TRUE : W.FALSE), bytesReturned: 4 });
    case W.SIO_FLUSH:
      // Queued sends not yet taken into the transport buffer are discarded (WSA_OPERATION_ABORTED).
      sock.flushSends();
      return ok({ output: new Uint8Array(0), bytesReturned: 0 });
    case W.SIO_KEEPALIVE_VALS: {
      // struct tcp_keepalive { ULONG onoff; ULONG keepalivetime; ULONG keepaliveinterval; } in ms.
      if (input.length < 12) return fail(W.WSAEFAULT);
      if (sock.type !== W.SOCK_STREAM) return fail(W.WSAEOPNOTSUPP);
      const dv = new DataView(input.buffer, input.byteOffset, 12);
      sock.keepAlive = dv.getUint32(0, true) !== 0;
      sock.keepIdle = Math.max(1, Math.ceil(dv.getUint32(4, true) / 1000));
      sock.keepInterval = Math.max(1, Math.ceil(dv.getUint32(8, true) / 1000));
      sock.applyOptions();
      return ok({ output: new Uint8Array(0), bytesReturned: 0 });
    }
    default:
      return fail(W.WSAEINVAL);
  }
}
