/**
 * The SDK's mirror of WSPEventSelect: which sockets are selected for which network events and
 * signal which event object, and the events the daemon recorded (spiwire.networkEvents) until
 * WSPEnumNetworkEvents reports and clears them.
 */
import * as P from '@spiwire/proto';
import { isU32 } from '@spiwire/proto';
import { fieldOf, isRecord } from './marshal.js';
import type { EventTable } from './threads.js';

/** WSANETWORKEVENTS: the events recorded and an error code per event (indexed by FD_*_BIT). */
export interface WSANETWORKEVENTS {
  lNetworkEvents: number;
  iErrorCode: number[];
}

/** The FD_* names spiwire.networkEvents gives errors under, with their bit numbers. */
const FD_BITS: ReadonlyArray<[string, number]> = [
  ['FD_READ', P.FD_READ_BIT],
  ['FD_WRITE', P.FD_WRITE_BIT],
  ['FD_OOB', P.FD_OOB_BIT],
  ['FD_ACCEPT', P.FD_ACCEPT_BIT],
  ['FD_CONNECT', P.FD_CONNECT_BIT],
  ['FD_CLOSE', P.FD_CLOSE_BIT],
];

/** A socket's WSPEventSelect: the event object, the events selected, and what was recorded since. */
interface Selection {
  hEvent: number;
  events: number;
  recorded: number;
  errors: number[];
}

export class EventSelectMirror {
  private readonly selections = new Map<number, Selection>();

  constructor(private readonly events: EventTable) {}

  /**
   * A WSPEventSelect is about to be sent: the new selection is in place before the call, as the
   * first events may arrive right behind its reply. The function returned settles it once the
   * call is answered: a failed call puts back what was there before, a cancel (0) removes it.
   */
  select(s: number, hEvent: number, lNetworkEvents: number): (succeeded: boolean) => void {
    const previous = this.selections.get(s);
    if (lNetworkEvents !== 0) this.selections.set(s, { hEvent, events: lNetworkEvents, recorded: 0, errors: noErrors() });
    return (succeeded) => {
      if (!succeeded) {
        if (previous) this.selections.set(s, previous);
        else this.selections.delete(s);
      } else if (lNetworkEvents === 0) this.selections.delete(s);
    };
  }

  /** The event object and events of the socket's selection (an accepted socket inherits them). */
  selectionOf(s: number): { hEvent: number; events: number } | undefined {
    const sel = this.selections.get(s);
    return sel && { hEvent: sel.hEvent, events: sel.events };
  }

  /** spiwire.networkEvents: the events are kept for WSPEnumNetworkEvents and the event object is set. */
  onNetworkEvents(params: Record<string, unknown>): void {
    const s = fieldOf(params, 's', isU32);
    const events = fieldOf(params, 'events', isU32);
    if (s === undefined || events === undefined) return;
    const sel = this.selections.get(s);
    if (!sel) return;
    const errors = fieldOf(params, 'errors', isRecord) ?? {};
    sel.recorded |= events;
    for (const [name, bit] of FD_BITS) if (events & (1 << bit)) sel.errors[bit] = fieldOf(errors, name, isU32) ?? 0;
    this.events.get(sel.hEvent)?.set();
  }

  /** WSPEnumNetworkEvents: the events recorded since the last call, with their error codes, cleared. */
  take(s: number): WSANETWORKEVENTS {
    const sel = this.selections.get(s);
    if (!sel) return { lNetworkEvents: 0, iErrorCode: noErrors() };
    const taken = { lNetworkEvents: sel.recorded, iErrorCode: [...sel.errors] };
    sel.recorded = 0;
    sel.errors.fill(0);
    return taken;
  }

  /** The socket was closed: its selection ends with it. */
  forget(s: number): void {
    this.selections.delete(s);
  }
}

function noErrors(): number[] {
  return new Array<number>(P.FD_MAX_EVENTS).fill(0);
}
