/**
 * WSCEnumProtocols: the protocol catalog of the spiwire provider, as C WSAPROTOCOL_INFOW
 * structures back to back (628 bytes each; decode one with decodeProtocolInfoW(buffer, i * 628)).
 *
 * The catalog is part of the wire protocol (PROTOCOL_CATALOG in @spiwire/proto): the daemon answers
 * SO_PROTOCOL_INFOW from the same table, so the SDK answers WSCEnumProtocols locally, without a
 * round trip, as ws2_32 answers it from the local catalog without asking any provider.
 *
 * Semantics (those of WSCEnumProtocols / WSAEnumProtocols on Windows, as Wine implements them):
 * - lpiProtocols null: every entry. Otherwise the entries whose iProtocol is in the list; the list
 *   is read as the C array it stands for, up to its end or its first 0 (the terminator), so
 *   [IPPROTO_TCP, 0, IPPROTO_UDP] asks for TCP only.
 * - Returns the number of entries written to lpProtocolBuffer, from offset 0, in catalog order.
 * - lpProtocolBuffer null, or *lpdwBufferLength smaller than count * 628: SOCKET_ERROR with
 *   WSAENOBUFS, and *lpdwBufferLength is set to count * 628 (even when that is 0). The buffer is
 *   left alone. On success *lpdwBufferLength is not changed.
 * - The caller's own memory is checked here, as in the rest of the SDK: an lpdwBufferLength that is
 *   not an out parameter holding a DWORD, a buffer that is not a Uint8Array, a *lpdwBufferLength
 *   beyond the buffer's length, or an lpiProtocols that is not an array give WSAEFAULT; an entry of
 *   lpiProtocols that is not an int gives WSAEINVAL. lpErrno is written only on failure.
 */
import * as P from '@spiwire/proto';
import { isI32, isU32 } from '@spiwire/proto';
import { checkErrno, isOut, setErr } from './marshal.js';
import type { Out } from './types.js';

export { decodeProtocolInfoW } from '@spiwire/proto';

/** The WSCEnumProtocols logic; SpiSession.WSCEnumProtocols calls it. */
export function enumProtocols(lpiProtocols: readonly number[] | null, lpProtocolBuffer: Uint8Array | null, lpdwBufferLength: Out, lpErrno: Out): number {
  checkErrno(lpErrno);
  const fail = (code: number): number => setErr(lpErrno, code);
  if (!isOut(lpdwBufferLength) || !isU32(lpdwBufferLength.value)) return fail(P.WSAEFAULT);
  if (lpProtocolBuffer !== null && lpProtocolBuffer !== undefined && !(lpProtocolBuffer instanceof Uint8Array)) return fail(P.WSAEFAULT);
  const buffer = lpProtocolBuffer ?? null;
  if (buffer && lpdwBufferLength.value > buffer.length) return fail(P.WSAEFAULT);
  let wanted: number[] | null = null;
  if (lpiProtocols !== null && lpiProtocols !== undefined) {
    if (!Array.isArray(lpiProtocols)) return fail(P.WSAEFAULT);
    wanted = [];
    for (const p of lpiProtocols) {
      if (!isI32(p)) return fail(P.WSAEINVAL);
      if (p === 0) break;
      wanted.push(p);
    }
  }
  const entries = P.PROTOCOL_CATALOG.filter((e) => wanted === null || wanted.includes(e.iProtocol));
  const needed = entries.length * P.WSAPROTOCOL_INFOW_SIZE;
  if (!buffer || lpdwBufferLength.value < needed) {
    lpdwBufferLength.value = needed;
    return fail(P.WSAENOBUFS);
  }
  entries.forEach((e, i) => buffer.set(P.encodeProtocolInfoW(e), i * P.WSAPROTOCOL_INFOW_SIZE));
  return entries.length;
}
