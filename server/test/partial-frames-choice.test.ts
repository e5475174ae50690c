/**
 * Which connection PartialFrames (src/partial-frames.ts) closes once unfinished messages pass the
 * budget: not one whose message is still waiting in the kernel to be read (the daemon is behind,
 * not the client), even when that message began first. Real WebSocket connections on loopback,
 * the daemon's side of each watched as app.ts does; a connection the daemon "holds back" is one
 * whose server-side WebSocket is paused, as the reader slots and the turn budget pause a session.
 */
import t, { type Test } from 'tap';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { PartialFrames } from '../src/partial-frames.js';
import { fdOf, libc } from '../src/native/libc.js';
import { until } from './helpers/raw-client.js';

const MAX_FRAME = 1024 * 1024;
/** The declared length of every message here: never finished, since no one sends its last bytes. */
const LENGTH = MAX_FRAME - 16;

interface Conn {
  name: string;
  client: WebSocket;
  server: WebSocket;
  socket: Socket;
  /** The close code the client got, once it got one. */
  closedWith: number | null;
}

/** The header of a masked binary frame of LENGTH bytes (64-bit length, all-zero masking key). */
function header(): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(LENGTH), 2);
  return h;
}

async function arena(t: Test, budget: number): Promise<{ frames: PartialFrames; closes: number[]; open(name: string): Promise<Conn> }> {
  const closes: number[] = [];
  const frames = new PartialFrames(budget, (info) => closes.push(info.held));
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: MAX_FRAME });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const accepted: Array<{ server: WebSocket; socket: Socket }> = [];
  wss.on('connection', (server, req) => {
    frames.watch(server, req.socket);
    accepted.push({ server, socket: req.socket });
  });
  const all: Conn[] = [];
  t.teardown(() => {
    for (const c of all) c.client.terminate();
    wss.close();
  });
  const port = (wss.address() as AddressInfo).port;
  return {
    frames,
    closes,
    async open(name) {
      const client = new WebSocket(`ws://127.0.0.1:${port}/`);
      const n = accepted.length;
      await new Promise<void>((resolve, reject) => {
        client.once('open', () => resolve());
        client.once('error', reject);
      });
      await until(() => accepted.length > n);
      const { server, socket } = accepted[n]!;
      const c: Conn = { name, client, server, socket, closedWith: null };
      client.on('close', (code) => (c.closedWith = code));
      client.on('error', () => undefined);
      all.push(c);
      return c;
    },
  };
}

/** The client writes raw bytes on its connection (a frame it builds itself). */
const write = (c: Conn, bytes: Buffer): void => void (c.client as unknown as { _socket: Socket })._socket.write(bytes);

/** Bytes of c waiting in the kernel on the daemon's side, unread. */
function unread(c: Conn): number {
  const fd = fdOf(c.socket);
  return fd === null ? 0 : (libc()?.queued(fd) ?? 0);
}

/**
 * c begins a message with `first` bytes of it, which the daemon's side reads; then that side stops
 * reading (held back) and c sends `more` bytes, which wait in the kernel.
 */
async function heldBack(t: Test, frames: PartialFrames, c: Conn, first: number, more: number): Promise<void> {
  const before = frames.total;
  write(c, Buffer.concat([header(), Buffer.alloc(first, 0x61)]));
  t.ok(await until(() => frames.total >= before + first), `${c.name}: the first ${first} bytes are read and counted`);
  c.server.pause();
  write(c, Buffer.alloc(more, 0x62));
  t.ok(await until(() => unread(c) > 0), `${c.name}: the rest waits in the kernel, unread`);
}

const skip = libc() === null ? 'needs the native calls (koffi, Linux or macOS) to see unread bytes' : false;

t.test('a message read in turns is not taken for a trickle: the oldest connection whose client stopped sending is closed', { skip }, async (t) => {
  const a = await arena(t, 2 * MAX_FRAME);
  const victim = await a.open('victim');
  // The victim's message began first; its client sent all of it at once, and the daemon is behind.
  await heldBack(t, a.frames, victim, 200_000, LENGTH - 200_000);
  const hogs: Conn[] = [];
  for (let i = 0; i < 3; i++) {
    const h = await a.open(`hog ${i}`);
    hogs.push(h);
    const before = a.frames.total;
    // Each hog sends 700,000 bytes of its message and nothing more: the third passes the budget.
    write(h, Buffer.concat([header(), Buffer.alloc(700_000, 0x63)]));
    t.ok(await until(() => a.closes.length > 0 || a.frames.total >= before + 700_000), `hog ${i}: read`);
  }
  t.ok(await until(() => hogs[0]!.closedWith !== null), 'the first hog, the oldest message its client stopped sending, is closed');
  t.equal(hogs[0]!.closedWith, 1013, 'with 1013');
  t.equal(a.closes.length, 1, 'one close was enough');
  t.equal(victim.closedWith, null, 'the victim, whose message began first, is still connected');
  t.ok(victim.client.readyState === WebSocket.OPEN, 'and open');
  t.ok(a.frames.total <= 2 * MAX_FRAME, `the total held (${a.frames.total}) is within the budget`);
  // Once the daemon reads on, the victim's message grows past the budget again before it is
  // whole: a hog goes for it, never the victim, whose message then arrives whole.
  const message = new Promise<number>((r) => victim.server.once('message', (data: Buffer) => r(data.length)));
  victim.server.resume();
  t.equal(await message, LENGTH, "the victim's whole message arrives");
  t.ok(await until(() => hogs[1]!.closedWith !== null), 'the next hog was closed while it was read');
  t.equal(victim.closedWith, null, 'the victim is still connected');
  t.equal(hogs[2]!.closedWith, null, 'the last hog too: one close made room');
  t.ok(a.frames.total <= 2 * MAX_FRAME - LENGTH, `the victim's message no longer counts (total ${a.frames.total})`);
});

t.test('two clients ahead of a daemon that holds them back keep their connections; a message begun after theirs goes', { skip }, async (t) => {
  const a = await arena(t, 2 * MAX_FRAME);
  const first = await a.open('first');
  const second = await a.open('second');
  await heldBack(t, a.frames, first, 600_000, LENGTH - 600_000);
  await heldBack(t, a.frames, second, 600_000, LENGTH - 600_000);
  t.equal(a.closes.length, 0, 'within the budget so far');
  const last = await a.open('last');
  // It passes the budget with its own bytes, and never sends the end of its message.
  write(last, Buffer.concat([header(), Buffer.alloc(900_000, 0x64)]));
  t.ok(await until(() => last.closedWith !== null), 'the message that began last is closed');
  t.equal(last.closedWith, 1013, 'with 1013');
  t.equal(first.closedWith, null, 'the first, whose bytes wait unread, is still connected');
  t.equal(second.closedWith, null, 'so is the second');
  t.equal(a.closes.length, 1, 'one close was enough');
  t.ok(a.frames.total <= 2 * MAX_FRAME, `the total held (${a.frames.total}) is within the budget`);
});

t.test('a client that stopped sending is closed even while its connection is held back with a little unread', { skip }, async (t) => {
  const a = await arena(t, 1_500_000);
  const trickler = await a.open('trickler');
  // The first 700,000 bytes are read; then, held back, it sends 100,000 more and stops. node reads
  // on into its socket's own buffer (up to its high-water mark) and leaves the rest in the kernel:
  // some unread bytes, but less than a read's worth.
  await heldBack(t, a.frames, trickler, 700_000, 100_000);
  t.ok(await until(() => unread(trickler) > 0 && unread(trickler) < 65_536), `some of it waits unread, under 64 KiB (${unread(trickler)})`);
  const busy = await a.open('busy');
  write(busy, Buffer.concat([header(), Buffer.alloc(900_000, 0x65)]));
  t.ok(await until(() => trickler.closedWith !== null), 'the trickler, whose message began first, is closed');
  t.equal(busy.closedWith, null, 'the newer message is still arriving');
  t.ok(a.frames.total <= 1_500_000, `the total held (${a.frames.total}) is within the budget`);
});
