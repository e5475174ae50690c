/**
 * Text messages are refused past MAX_TEXT_BYTES as soon as a frame header says so (proto/README.md,
 * section 4). A text message is one JSON text, and turning megabytes of it into a message
 * (joining, UTF-8, JSON.parse, base64) is one piece of work of about 20 ms per MiB that the daemon
 * cannot share out: a 15 MiB one held every other session up for 200-280 ms. ws has one
 * size limit for both kinds of message (maxPayload), so the text limit is checked here, where ws
 * has read a frame's length and before it reads the payload: the connection is closed with 1009
 * (message too big), as ws does past maxPayload, and the payload is never held.
 *
 * Like sliced-messages.ts this hooks ws 8's Receiver; where its fields are not all there, nothing
 * is changed and text messages are bounded by maxPayload alone.
 */
import type { WebSocket } from 'ws';

/** The fields and methods of ws 8's Receiver that the check reads. */
interface ReceiverLengths {
  _opcode: number;
  _payloadLength: number;
  _totalPayloadLength: number;
  haveLength(cb: (err?: Error) => void): void;
  createError(kind: RangeErrorConstructor, message: string, prefix: boolean, statusCode: number, errorCode: string): Error;
}

const TEXT_OPCODE = 1;
const MESSAGE_TOO_BIG = 1009;

function isReceiver(r: unknown): r is ReceiverLengths {
  const x = r as Record<string, unknown> | null | undefined;
  return !!x && typeof x['_opcode'] === 'number' && typeof x['_payloadLength'] === 'number' && typeof x['_totalPayloadLength'] === 'number' && typeof x['haveLength'] === 'function' && typeof x['createError'] === 'function';
}

/** Closes the connection (1009) when a text message would pass maxBytes. Returns false when ws's receiver is not the one expected (nothing changed). */
export function boundTextMessages(ws: WebSocket, maxBytes: number): boolean {
  const r = (ws as unknown as { _receiver?: unknown })._receiver;
  if (!isReceiver(r)) return false;
  const stock = Object.getPrototypeOf(r).haveLength as ReceiverLengths['haveLength'];
  r.haveLength = function (this: ReceiverLengths, cb) {
    // A continuation frame carries its message's opcode here (ws copies it), so a text message
    // sent in fragments is counted whole, as maxPayload counts it.
    if (this._opcode === TEXT_OPCODE && this._totalPayloadLength + this._payloadLength > maxBytes) {
      cb(this.createError(RangeError, `text message over ${maxBytes} bytes`, false, MESSAGE_TOO_BIG, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'));
      return;
    }
    stock.call(this, cb);
  };
  return true;
}
