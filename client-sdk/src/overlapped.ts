/** WSAOVERLAPPED, with the provider conventions of the WSPGetOverlappedResult reference. */
import { WSS_OPERATION_IN_PROGRESS } from '@spiwire/proto';

/**
 * While an operation is pending, Internal holds WSS_OPERATION_IN_PROGRESS (0x103). At completion
 * the SDK stores the WSA error in OffsetHigh, the flags in Offset and the byte count in
 * InternalHigh, and sets Internal to 0; WSPGetOverlappedResult reads them back.
 */
export class WSAOVERLAPPED {
  Internal = 0;
  InternalHigh = 0;
  Offset = 0;
  OffsetHigh = 0;
  /** A WSAEVENT from WSACreateEvent, or 0 for none. Ignored when a completion routine is given. */
  hEvent = 0;
  /**
   * The socket this WSAOVERLAPPED was last given to in an overlapped call (-1: none), kept by the
   * SDK so that WSPGetOverlappedResult still reads an operation that socket's close aborted.
   * Not part of the C structure.
   */
  lastSocket = -1;

  constructor(hEvent = 0) {
    this.hEvent = hEvent;
  }

  get pending(): boolean {
    return this.Internal === WSS_OPERATION_IN_PROGRESS;
  }
}

export type LPWSAOVERLAPPED_COMPLETION_ROUTINE = (dwError: number, cbTransferred: number, lpOverlapped: WSAOVERLAPPED, dwFlags: number) => void | Promise<void>;
