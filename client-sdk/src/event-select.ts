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
   * call is answered: a failed call puts back what was there before.
   *
   * As on Windows, events recorded and not yet enumerated survive a new selection, 0 included
   * (the daemon does not record them a second time): those still selected are reported by the
   * next WSPEnumNetworkEvents, and a selection that keeps any of them sets its event object.
   */
  select(s: number, hEvent: number, lNetworkEvents: number): (succeeded: boolean) => void {
    const previous = this.selections.get(s);
    const next: Selection = {
      hEvent: lNetworkEvents !== 0 ? hEvent : 0,
      events: lNetworkEvents,
      recorded: previous?.recorded ?? 0,
      errors: previous ? [...previous.errors] : noErrors(),
    };
    this.selections.set(s, next);
    return (succeeded) => {
      if (!succeeded) {
        // Events that arrived during the call belong to the selection still in force.
        if (previous) {
          previous.recorded |= next.recorded;
          this.selections.set(s, previous);
        } else this.selections.delete(s);
      } else if (next.recorded & next.events) this.events.get(next.hEvent)?.set();
    };
  }

  /** The event object and events of the socket's selection (an accepted socket inherits them). */
  selectionOf(s: number): { hEvent: number; events: number } | undefined {
    const sel = this.selections.get(s);
    return sel && sel.events !== 0 ? { hEvent: sel.hEvent, events: sel.events } : undefined;
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
    if (sel.hEvent) this.events.get(sel.hEvent)?.set();
  }

  /**
   * WSPEnumNetworkEvents: the selected events recorded since the last call, with their error
   * codes; the record is cleared (as on Windows, events no longer selected go with it).
   */
  take(s: number): WSANETWORKEVENTS {
    const sel = this.selections.get(s);
    if (!sel) return { lNetworkEvents: 0, iErrorCode: noErrors() };
    const taken = { lNetworkEvents: sel.recorded & sel.events, iErrorCode: [...sel.errors] };
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
