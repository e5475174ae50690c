/**
 * Issue 13, section 3, "The spec stands alone": points a client written in another language from
 * proto/README.md and proto/schema.json alone had to guess or find out by experiment. Each test
 * first checks that the README says the thing (the sentence a client would rely on), then shows
 * on the wire, with a plain WebSocket client and real loopback peers, that the daemon does it.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import t, { type Test } from 'tap';
import * as P from '@spiwire/proto';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import pino from 'pino';
import WebSocket from 'ws';
import { buildApp } from '../src/app.js';
import { DaemonContext, DEFAULT_LIMITS } from '../src/daemon-context.js';
import { VERSION } from '../src/version.js';
import { parseConfig, SETTINGS } from '../src/internals.js';
import { HandWebSocket, maskedFrame, connectTo, connectedSocket, daemon, ipv4, pattern, rawRecord, roundTrip, session, silentPeer, startCli, tcpPeer, tcpSocket, udpSocket, until, upgrade, within, type Msg, type PeerConn, type RawSession } from './helpers/raw-client.js';

const README = readFileSync(new URL('../../../proto/README.md', import.meta.url), 'utf8');
const LINES = README.split('\n');

/** The README text under the heading whose title (backticks removed) is title, up to the next heading of its level or above. */
function section(title: string): string {
  const start = LINES.findIndex((l) => /^#{2,6} /.test(l) && l.replace(/^#+ /, '').replace(/`/g, '').trim() === title);
  if (start < 0) throw new Error(`proto/README.md has no heading "${title}"`);
  const level = /^#+/.exec(LINES[start]!)![0].length;
  let end = start + 1;
  while (end < LINES.length && !(/^#+ /.test(LINES[end]!) && /^#+/.exec(LINES[end]!)![0].length <= level)) end++;
  // Joined into one line of text: the README wraps its sentences anywhere.
  return LINES.slice(start + 1, end).join(' ').replace(/\s+/g, ' ');
}

/** A little-endian DWORD, as the C bytes of an option or ioctl input. */
function dword(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

// ---------------------------------------------------------------- point 7: WSPIoctl output "none"


/** A daemon, a session of the raw client and an overlapped TCP socket of it connected to a peer. */
async function overlappedConnection(t: Test): Promise<{ s: RawSession; h: number; conn: PeerConn }> {
  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const s = await session(t, d.url);
  return { s, ...(await connectedSocket(s, peer, P.WSA_FLAG_OVERLAPPED)) };
}

t.test('WSPIoctl: a control code whose output is "none" answers without an `output` member', async (t) => {
  const text = section('WSPIoctl');
  t.match(text, /"none" in the Output column means exactly this: a successful call's result has no `output` member, and `bytesReturned` is 0/, 'the README says what "none" means');
  t.match(text, /\| SIO_KEEPALIVE_VALS \| 0x98000004 \(2550136836\) \|/, 'every control code the daemon takes is in the table');

  const d = await daemon(t);
  const s = await session(t, d.url);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  const ioctl = (code: number, input: Uint8Array, outputLength: number, overlapped?: P.OverlappedRef): Promise<Record<string, unknown>> =>
    s.call('WSPIoctl', { s: h, code, input, outputLength, ...(overlapped ? { overlapped } : {}) });

  t.same(await ioctl(P.FIONBIO, dword(1), 0), { ret: 0, errno: 0, bytesReturned: 0 }, 'FIONBIO');
  t.same(await ioctl(P.FIONBIO, dword(0), 16), { ret: 0, errno: 0, bytesReturned: 0 }, 'FIONBIO with room for output still has none');
  t.same(await ioctl(P.SIO_FLUSH, new Uint8Array(0), 0), { ret: 0, errno: 0, bytesReturned: 0 }, 'SIO_FLUSH');
  const keepAlive = new Uint8Array(12);
  new DataView(keepAlive.buffer).setUint32(0, 1, true);
  new DataView(keepAlive.buffer).setUint32(4, 30000, true);
  new DataView(keepAlive.buffer).setUint32(8, 1000, true);
  t.same(await ioctl(P.SIO_KEEPALIVE_VALS, keepAlive, 0), { ret: 0, errno: 0, bytesReturned: 0 }, 'SIO_KEEPALIVE_VALS');
  t.same(
    await ioctl(P.FIONBIO, dword(0), 0, { op: 1, thread: 0 }),
    { ret: 0, errno: 0, bytesReturned: 0, completion: { error: 0, bytes: 0, flags: 0 } },
    'an overlapped FIONBIO: no output, and the completion in the reply',
  );

  const read = await ioctl(P.FIONREAD, new Uint8Array(0), 4);
  t.same([read['ret'], read['errno'], read['bytesReturned']], [0, 0, 4], 'FIONREAD has output');
  t.same(Buffer.from(read['output'] as Uint8Array), Buffer.from(dword(0)), 'FIONREAD: 4 bytes, 0 waiting');
  t.same(await ioctl(P.FIONREAD, new Uint8Array(0), 2), { ret: -1, errno: P.WSAEFAULT }, 'a failed call has neither output nor bytesReturned');
});

// ---------------------------------------------------------------- point 5: WSAEDESTADDRREQ

/** A loopback UDP peer that keeps the datagrams it receives; closed in t's teardown. */
async function udpPeer(t: Test): Promise<{ port: number; got: string[]; next(): Promise<string>; send(data: string, port: number): void }> {
  const sock = dgram.createSocket('udp4');
  const got: string[] = [];
  let waiting: Array<() => void> = [];
  sock.on('message', (m) => {
    got.push(m.toString('latin1'));
    const w = waiting;
    waiting = [];
    for (const f of w) f();
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  let taken = 0;
  return {
    port: sock.address().port,
    got,
    send(data, port) {
      sock.send(Buffer.from(data), port, '127.0.0.1');
    },
    next() {
      return new Promise((resolve) => {
        const look = (): void => {
          if (got.length > taken) resolve(got[taken++]!);
          else waiting.push(look);
        };
        look();
      });
    },
  };
}

t.test('WSAEDESTADDRREQ: WSPSendTo with `to` null on a UDP socket without a default peer', async (t) => {
  t.match(section('WSPSendTo'), /on a datagram socket without a default peer and with `to` null the result is WSAEDESTADDRREQ, where WSPSend gives WSAENOTCONN/, 'the WSPSendTo section says when');
  t.match(section('14. WSA error catalogue'), /\| WSAEDESTADDRREQ \| 10039 \| daemon \| A destination address is required and none was given: WSPSendTo with `to` null/, 'the catalogue says what produces it');
  t.match(P.wsaError(P.WSAEDESTADDRREQ)?.meaning ?? '', /WSPSendTo/, 'and so does WSA_ERRORS');

  const d = await daemon(t);
  const peer = await udpPeer(t);
  const s = await session(t, d.url);
  const r = await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags: P.WSA_FLAG_OVERLAPPED });
  const u = r['ret'] as number;
  const sendTo = (to: P.SockAddr | null, extra: Record<string, unknown> = {}, data = 'must-not-arrive'): Promise<Record<string, unknown>> =>
    s.call('WSPSendTo', { s: u, buffers: [Buffer.from(data)], flags: 0, to, tolen: to ? 16 : 0, ...extra });

  t.same(await sendTo(null), { ret: -1, errno: P.WSAEDESTADDRREQ }, 'a new, unbound socket');
  t.same(await s.call('WSPSend', { s: u, buffers: [Buffer.from('must-not-arrive')], flags: 0 }), { ret: -1, errno: P.WSAENOTCONN }, 'WSPSend on it: WSAENOTCONN');
  t.same(await sendTo(null, { flags: P.MSG_OOB }), { ret: -1, errno: P.WSAEOPNOTSUPP }, 'the flags are checked first, as for WSPSend');
  t.same(await s.call('WSPBind', { s: u, name: ipv4(0), namelen: 16 }), { ret: 0, errno: 0 });
  t.same(await sendTo(null), { ret: -1, errno: P.WSAEDESTADDRREQ }, 'a bound socket');
  t.same(await sendTo(null, { overlapped: { op: 5, thread: 0 } }), { ret: -1, errno: P.WSAEDESTADDRREQ }, 'an overlapped call fails at once (no completion)');
  // The first datagram the peer gets is this one: nothing of the failed calls left the socket.
  t.same(await sendTo(ipv4(peer.port), {}, 'addressed'), { ret: 0, errno: 0, bytesSent: 9 }, 'with an address it goes');
  t.equal(await peer.next(), 'addressed', 'the first datagram the peer gets is the addressed one');
  t.notOk(s.messages.some((m) => m.method === 'spiwire.completion'), 'no completion for the failed overlapped call');

  t.same(await s.call('WSPConnect', { s: u, name: ipv4(peer.port), namelen: 16 }), { ret: 0, errno: 0 });
  t.same(await sendTo(null, {}, 'default'), { ret: 0, errno: 0, bytesSent: 7 }, 'with a default peer, `to` null sends to it');
  t.equal(await peer.next(), 'default');
  t.same(peer.got, ['addressed', 'default'], 'the peer got exactly the two datagrams that were sent');
});

// ---------------------------------------------------------------- point 9: transport details

t.test('pings: the daemon answers a ping with a pong of the same payload, and sends none of its own', async (t) => {
  const text = section('Pings and idle sessions');
  t.match(text, /The daemon sends no WebSocket pings and expects none/);
  t.match(text, /answers it with a pong carrying the same payload/);
  t.match(text, /There is no idle timeout/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  let pings = 0;
  s.ws.on('ping', () => pings++);
  const payload = Buffer.from('are you there?');
  const pong = new Promise<Buffer>((resolve) => s.ws.once('pong', resolve));
  s.ws.ping(payload);
  t.same(await pong, payload, 'the pong echoes the payload');
  // Some traffic, and a round trip after it: a ping the daemon had sent would be in by now.
  const h = await tcpSocket(s);
  t.same(await s.call('WSPCloseSocket', { s: h }), { ret: 0, errno: 0 });
  t.equal(pings, 0, 'the daemon sent no ping');
});

t.test('idle sessions: the HTTP server has no timeout that could end an upgraded connection', async (t) => {
  // Node's HTTP timeouts are what could end a quiet session: no socket timeout at all, and the
  // request timeout, which ends requests that trickle in, ends with the upgrade.
  const ctx = new DaemonContext(pino({ level: 'silent' }), DEFAULT_LIMITS, VERSION);
  const app = await buildApp(ctx, new Set(), { token: undefined, allowedOrigins: [] }, ctx.log);
  t.teardown(() => app.close());
  t.equal(app.initialConfig.connectionTimeout, 0, 'no connection timeout');
  await app.ready();
  t.equal(app.server.timeout, 0, 'no socket timeout on the server');
  // With a short handshake timeout, the request timeout is three times it.
  const d = await daemon(t, { limits: { handshakeTimeoutMs: 200 } });
  const s = await session(t, d.url);
  const u = await udpSocket(s);
  // A request whose body trickles in, a byte at a time, is closed after the request timeout...
  const trickle = net.connect(d.port, '127.0.0.1', () => trickle.write('POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'));
  const drip = setInterval(() => trickle.writable && trickle.write('1\r\nx\r\n'), 100);
  t.teardown(() => {
    clearInterval(drip);
    trickle.destroy();
  });
  trickle.on('error', () => undefined);
  trickle.resume();
  t.ok(await within(new Promise<boolean>((r) => trickle.once('close', () => r(true))), 5000, false), 'a request whose body trickles in is closed');
  // ...while the session, quiet all that time, is still there.
  t.ok(s.isOpen, 'the quiet session is still connected');
  t.equal((await s.call('WSPGetSockOpt', { s: u, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }))['ret'], 0, 'and answers');
});

t.test('HTTP refusals: 404 and 426 bodies are {"error": string} and nothing else', async (t) => {
  const text = section('Endpoint');
  t.match(text, /Every other request is refused with a JSON body of exactly one member, `\{"error":"<reason>"\}`/);
  t.match(text, /\| A plain HTTP request \(not an upgrade\) to `\/ws` \| 426 Upgrade Required/);
  const d = await daemon(t);
  const base = `http://127.0.0.1:${d.port}`;
  const errorBody = (body: unknown): boolean => typeof body === 'object' && body !== null && Object.keys(body).length === 1 && typeof (body as Record<string, unknown>)['error'] === 'string';
  for (const [what, url, init, status] of [
    ['GET of an unknown path', '/nope', {}, 404],
    ['POST to a GET path', '/healthz', { method: 'POST' }, 404],
    ['a plain GET of /ws', '/ws', {}, 426],
  ] as const) {
    const res = await fetch(base + url, init);
    t.equal(res.status, status, `${what}: ${status}`);
    t.match(res.headers.get('content-type') ?? '', /^application\/json/, `${what}: JSON`);
    t.ok(errorBody(await res.json()), `${what}: the body is {"error": string}`);
    if (status === 426) t.equal(res.headers.get('upgrade'), 'websocket', 'a 426 names the protocol to upgrade to');
  }
  const refused = await upgrade(`ws://127.0.0.1:${d.port}/nope`);
  t.equal(refused.kind, 'refused');
  if (refused.kind === 'refused') {
    t.equal(refused.status, 404, 'an upgrade elsewhere than /ws: 404');
    t.same(JSON.parse(refused.body), { error: 'WebSocket connections are accepted only on /ws' }, 'with the documented body');
  }
});

t.test('the URL log line: exactly one line has a `url` member, and it is where clients connect', async (t) => {
  t.match(section('Finding the daemon'), /At startup exactly one line has a `url` member \(at the default log level, `info`, and below; `--log-level warn` and above hide it\): the WebSocket URL clients connect to/);
  const cli = await startCli(t);
  const withUrl = cli.lines().filter((l) => 'url' in l);
  t.equal(withUrl.length, 1, 'one line with a url');
  t.equal(withUrl[0]!['url'], `ws://127.0.0.1:${cli.port}/ws`, 'a ws:// URL on loopback, the port and /ws');
  t.ok(
    cli.lines().some((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('Server listening at http://') && !('url' in l)),
    'the HTTP server\'s own listening line has no url member',
  );
  const s = await session(t, cli.url);
  t.ok(s.isOpen, 'a session opens at that URL');
  cli.proc.kill('SIGTERM');
  t.equal((await cli.exited).code, 0, 'the daemon stops when told');
});

t.test('overlapped.thread of a client without threads: any fixed value; threadExit cancels only by it', async (t) => {
  t.match(section('9. Blocking, nonblocking and overlapped calls'), /The welcome carries no thread id: a client without threads of its own passes any fixed value, 0 for example/);
  const { s, h, conn } = await overlappedConnection(t);
  const recv = await s.call('WSPRecv', { s: h, lengths: [16], flags: 0, overlapped: { op: 1, thread: 0 } });
  t.same(recv, { ret: -1, errno: P.WSA_IO_PENDING }, 'a receive with thread 0 is pending');
  t.same(await s.call('spiwire.threadExit', { thread: 4100 }), { ret: 0, errno: 0, cancelled: 0 }, 'another thread id cancels nothing');
  conn.socket.write('first');
  const done = await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 1);
  t.same([done.params?.['error'], done.params?.['bytes'], Buffer.from(done.params?.['data'] as Uint8Array).toString()], [0, 5, 'first'], 'it completes as any other');
  t.same(await s.call('WSPRecv', { s: h, lengths: [16], flags: 0, overlapped: { op: 2, thread: 0 } }), { ret: -1, errno: P.WSA_IO_PENDING });
  t.same(await s.call('spiwire.threadExit', { thread: 0 }), { ret: 0, errno: 0, cancelled: 1 }, 'threadExit of 0 cancels what was issued with 0');
  const aborted = await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 2);
  t.same([aborted.params?.['error'], aborted.params?.['bytes']], [P.WSA_OPERATION_ABORTED, 0]);
});

t.test('a completion a delay fault holds back is past cancelling: threadExit delivers it with success and does not count it', async (t) => {
  const { s, h, conn } = await overlappedConnection(t);
  const added = await s.call('spiwire.faults.add', { rule: { match: { socket: h }, action: { type: 'delay', ms: 60000 } } });
  t.type(added['id'], 'string', 'a delay rule of a minute');
  const got: Buffer[] = [];
  conn.socket.on('data', (b: Buffer) => got.push(b));
  t.same(await s.call('WSPSend', { s: h, buffers: [Buffer.from('held')], flags: 0, overlapped: { op: 7, thread: 9 } }), { ret: -1, errno: P.WSA_IO_PENDING }, 'the send is taken, its completion held');
  const done = s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 7);
  t.same(await s.call('spiwire.threadExit', { thread: 9 }), { ret: 0, errno: 0, cancelled: 0 }, 'nothing was aborted');
  const c = await done;
  t.same([c.params?.['error'], c.params?.['bytes']], [0, 4], 'the held completion comes now, with success');
  await new Promise<void>((res) => {
    const look = (): void => (Buffer.concat(got).length >= 4 ? res() : void conn.socket.once('data', look));
    look();
  });
  t.equal(Buffer.concat(got).toString(), 'held', 'and the peer has the bytes');
});

t.test('a pending send whose bytes all went to the kernel ahead is past cancelling: threadExit completes it with success and does not count it', async (t) => {
  t.match(section('9. Blocking, nonblocking and overlapped calls'), /A pending send is past cancelling once the daemon has handed all its bytes/);
  t.match(section('spiwire.threadExit'), /`cancelled` counts only the operations that complete with WSA_OPERATION_ABORTED/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: dword(4096), optlen: 4 }), { ret: 0, errno: 0 });
  await connectTo(s, h, peer.port);
  const conn = await peer.next();
  conn.socket.pause();
  // Nonblocking sends fill the kernel's buffers and the transport buffer.
  t.same(await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: dword(1), outputLength: 0 }), { ret: 0, errno: 0, bytesReturned: 0 });
  const sent: Buffer[] = [];
  const fill = async (): Promise<void> => {
    for (let i = 0; i < 1000; i++) {
      const chunk = pattern(4096, 10 + sent.length);
      const r = await s.call('WSPSend', { s: h, buffers: [chunk], flags: 0 });
      if (r['ret'] !== 0) {
        t.same(r, { ret: -1, errno: P.WSAEWOULDBLOCK }, 'filled: WSAEWOULDBLOCK');
        return;
      }
      sent.push(chunk.subarray(0, r['bytesSent'] as number));
    }
    t.fail('the buffers never filled');
  };
  // Two overlapped sends of thread 8 wait: the daemon hands the first 3 x SO_SNDBUF of waiting
  // bytes to the kernel ahead, which is all of the small one and part of the large one. The large
  // one is far more than the kernel can hold for a peer that does not read. WSAEWOULDBLOCK says
  // only that the transport buffer was full at that moment: on a loaded machine the kernel can
  // make room afterwards (the peer's receive queue is compacted), and a small send that then
  // completes at once is filler like the rest; fill again until one waits.
  const small = pattern(100, 2);
  const large = pattern(1024 * 1024, 3);
  let smallOp = 0;
  for (let attempt = 0; ; attempt++) {
    await fill();
    smallOp = 100 + attempt;
    const r = await s.call('WSPSend', { s: h, buffers: [small], flags: 0, overlapped: { op: smallOp, thread: 8 } });
    if (r['ret'] === -1 && r['errno'] === P.WSA_IO_PENDING) break;
    t.same([r['ret'], r['bytesSent']], [0, small.length], 'the small send found room after all: taken whole');
    sent.push(small);
    if (attempt === 20) throw new Error('the small send never had to wait');
  }
  t.same(await s.call('WSPSend', { s: h, buffers: [large], flags: 0, overlapped: { op: 2, thread: 8 } }), { ret: -1, errno: P.WSA_IO_PENDING });
  const completions = [smallOp, 2].map((op) => s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === op));
  t.same(await s.call('spiwire.threadExit', { thread: 8 }), { ret: 0, errno: 0, cancelled: 1 }, 'one operation was cancelled');
  const [first, second] = await Promise.all(completions);
  t.same([first!.params?.['error'], first!.params?.['bytes']], [0, 100], 'the small send, all of it with the kernel, completes with success');
  const part = Number(second!.params?.['bytes']);
  t.equal(second!.params?.['error'], P.WSA_OPERATION_ABORTED, 'the large one is aborted');
  t.ok(part > 0 && part < large.length, `with the count of its bytes the kernel has (${part})`);
  // The peer gets exactly what the completions say: the small send, and that part of the large one.
  t.same(await s.call('WSPCloseSocket', { s: h }), { ret: 0, errno: 0 });
  conn.socket.resume();
  await conn.gone;
  t.ok(conn.received().equals(Buffer.concat([...sent, small, large.subarray(0, part)])), 'the peer got the filler, the small send and that part of the large one, nothing more');
});

t.test('the address text is checked when the method reads the address: after the socket, before its family and length', async (t) => {
  const text = section('6. JSON-RPC 2.0 usage');
  t.match(text, /the text of a sockaddr's `address` \(section 7\) is checked when the method reads the address, after it has found the socket \(WSAENOTSOCK comes first\)/);
  t.match(section('WSPBind'), /Checks in this order: the socket \(WSAENOTSOCK\), the address text \(INVALID_PARAMS, section 6\), family, length/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s);
  const invalid = async (method: string, params: Record<string, unknown>, field: string): Promise<void> => {
    const m = await s.request(method, params).response;
    t.equal(m.error?.code, P.INVALID_PARAMS, `${method}: INVALID_PARAMS`);
    t.same(m.error?.data, { field }, `data.field ${field}`);
  };
  const name = (family: number, address: string, port = 1) => ({ family, address, port });
  t.same(await s.call('WSPConnect', { s: 99999, name: name(P.AF_INET, 'localhost'), namelen: 16 }), { ret: -1, errno: P.WSAENOTSOCK }, 'an unknown socket first');
  await invalid('WSPBind', { s: h, name: name(5, 'localhost'), namelen: 16 }, 'name.address');
  t.same(await s.call('WSPBind', { s: h, name: name(5, '127.0.0.1'), namelen: 16 }), { ret: -1, errno: P.WSAEAFNOSUPPORT }, 'then the family');
  await invalid('WSPBind', { s: h, name: name(P.AF_INET, 'localhost'), namelen: 4 }, 'name.address');
  t.same(await s.call('WSPBind', { s: h, name: name(P.AF_INET, '127.0.0.1'), namelen: 4 }), { ret: -1, errno: P.WSAEFAULT }, 'then the length');
  // WSPSendTo on a connected TCP socket does not read `to`: its text is not checked either.
  await connectTo(s, h, peer.port);
  const conn = await peer.next();
  t.same(await s.call('WSPSendTo', { s: h, buffers: [Buffer.from('abc')], flags: 0, to: name(P.AF_INET, 'localhost'), tolen: 16 }), { ret: 0, errno: 0, bytesSent: 3 });
  t.same((await conn.waitFor(3)).toString(), 'abc', 'the peer got the bytes');
});

t.test('compact records of kinds 2 and 3 from a client are read as the JSON they stand for', async (t) => {
  t.match(section('Compact headers'), /A client writes only kind 1\. The daemon reads a kind 2 or kind 3 record from a client as the JSON message it stands for/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  const h = await udpSocket(s);
  const b = new P.FrameBuilder();
  b.compact = true;
  b.add({ jsonrpc: '2.0', id: 43, result: { ret: 0, errno: 0 } });
  b.add({ jsonrpc: '2.0', method: 'spiwire.completion', params: { op: 1, s: h, error: 0, bytes: 5, flags: 0 } });
  b.add({ jsonrpc: '2.0', id: 44, method: 'WSPGetSockOpt', params: { s: h, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } });
  const frame = b.finish();
  t.same([...frame.subarray(4, 5)], [2], 'the first record has a compact header of kind 2');
  const from = s.messages.length;
  s.ws.send(frame);
  const refused = await s.wait((m) => m.id === 43);
  t.equal(refused.error?.code, P.INVALID_REQUEST, 'a reply from a client: INVALID_REQUEST, with its id');
  const answered = await s.wait((m) => m.id === 44);
  t.equal(answered.result?.['ret'], 0, 'the call after them runs');
  t.same(s.messages.slice(from).map((m) => m.id), [43, 44], 'the kind-3 record got no answer');
});

/** An IPv6 socket of the type (UDP or TCP) for the scope tests. */
async function socketOf(s: RawSession, type: number): Promise<number> {
  if (type === P.SOCK_DGRAM) return udpSocket(s, P.AF_INET6);
  const r = await s.call('WSPSocket', { af: P.AF_INET6, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: 0 });
  return r['ret'] as number;
}

/** A link-local address of this machine's, with its interface: only bound to, never sent to. */
const LINK_LOCAL = Object.entries(networkInterfaces()).flatMap(([name, list]) => (list ?? []).filter((a) => a.family === 'IPv6' && a.scopeid && a.address.toLowerCase().startsWith('fe80:')).map((a) => ({ name, address: a.address, index: a.scopeid! })))[0];

t.test('an IPv6 link-local scope given as a number (%4 or scopeId) names the interface with that index', { skip: LINK_LOCAL ? false : 'this machine has no IPv6 link-local address to bind to' }, async (t) => {
  t.match(section('7. Value types'), /only as a numeric scope id or the name of an interface of the daemon's machine/);
  const local = LINK_LOCAL!;
  const d = await daemon(t);
  const s = await session(t, d.url);
  const forms: Array<[string, Record<string, unknown>]> = [
    [`%${local.index}`, { address: `${local.address}%${local.index}` }],
    ['scopeId', { address: local.address, scopeId: local.index }],
    [`%${local.name}`, { address: `${local.address}%${local.name}` }],
  ];
  for (const type of [P.SOCK_DGRAM, P.SOCK_STREAM]) {
    for (const [how, name] of forms) {
      const h = await socketOf(s, type);
      const what = `${type === P.SOCK_STREAM ? 'TCP' : 'UDP'}, the scope as ${how}`;
      t.same(await s.call('WSPBind', { s: h, name: { family: P.AF_INET6, port: 0, ...name }, namelen: 28 }), { ret: 0, errno: 0 }, `bound: ${what}`);
      const got = (await s.call('WSPGetSockName', { s: h, namelen: 28 }))['name'] as P.SockAddr;
      t.same([got.address, got.scopeId], [local.address, local.index], `${what}: WSPGetSockName gives the address and its scope id`);
      if (type === P.SOCK_STREAM) {
        t.same(await s.call('WSPListen', { s: h, backlog: 1 }), { ret: 0, errno: 0 }, `${what}: it listens there`);
        const listening = (await s.call('WSPGetSockName', { s: h, namelen: 28 }))['name'] as P.SockAddr;
        t.same([listening.address, listening.scopeId, listening.port], [local.address, local.index, got.port], `${what}: the same name once listening`);
      }
      await s.call('WSPCloseSocket', { s: h });
    }
  }
});

t.test('a link-local address bound with scope 0 and no suffix: on the interface that holds it, as on Windows; on none, WSAEADDRNOTAVAIL', async (t) => {
  t.match(section('WSPBind'), /given with scope 0 and no `%` suffix is bound on the\s+interface of the machine that holds it/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  // No interface here holds fe80::1 (loopback has no link-local address): not an address of the machine.
  const held = Object.values(networkInterfaces()).some((list) => (list ?? []).some((a) => a.family === 'IPv6' && a.address === 'fe80::1'));
  for (const type of [P.SOCK_DGRAM, P.SOCK_STREAM]) {
    const kind = type === P.SOCK_STREAM ? 'TCP' : 'UDP';
    if (!held) {
      const h = await socketOf(s, type);
      t.same(await s.call('WSPBind', { s: h, name: { family: P.AF_INET6, address: 'fe80::1', port: 0, scopeId: 0 }, namelen: 28 }), { ret: -1, errno: P.WSAEADDRNOTAVAIL }, `${kind} fe80::1, held by no interface: WSAEADDRNOTAVAIL`);
      await s.call('WSPCloseSocket', { s: h });
    }
    if (!LINK_LOCAL) continue;
    const h = await socketOf(s, type);
    t.same(await s.call('WSPBind', { s: h, name: { family: P.AF_INET6, address: LINK_LOCAL.address, port: 0, scopeId: 0 }, namelen: 28 }), { ret: 0, errno: 0 }, `${kind} ${LINK_LOCAL.address} (${LINK_LOCAL.name}): bound`);
    const got = (await s.call('WSPGetSockName', { s: h, namelen: 28 }))['name'] as P.SockAddr;
    t.same([got.address, got.scopeId], [LINK_LOCAL.address, LINK_LOCAL.index], `${kind}: WSPGetSockName gives the address and its interface's index`);
    t.ok(got.port > 0, `${kind}: and a port`);
    if (type === P.SOCK_STREAM) t.same(await s.call('WSPListen', { s: h, backlog: 1 }), { ret: 0, errno: 0 }, 'TCP: it listens there');
    await s.call('WSPCloseSocket', { s: h });
  }
  if (!LINK_LOCAL) t.comment('this machine has no IPv6 link-local address to bind to: only the address held by none was tried');
});

/**
 * A link-local address on an interface node does not list (one that is down or has no carrier, as
 * docker0 without containers): from /proc/net/if_inet6, Linux only. Only bound to, never sent to.
 */
function unlistedLinkLocal(): { address: string; index: number } | undefined {
  const listed = new Set(Object.keys(networkInterfaces()));
  // A container's veth comes and goes with it (CI's swarm leaves some going); an address still
  // in duplicate address detection (tentative) or that failed it cannot be bound.
  return linkLocals().find((a) => !listed.has(a.name) && !a.name.startsWith('veth') && a.usable && NODE_ZONE.test(a.name));
}

/** The interface names node takes as a scope (its IPv6 zone syntax); docker_gwbridge is not one. */
const NODE_ZONE = /^[0-9a-zA-Z.:-]+$/;

/** The IPv6 link-local addresses /proc/net/if_inet6 lists now (Linux only; none elsewhere). */
function linkLocals(): Array<{ address: string; index: number; name: string; usable: boolean }> {
  if (process.platform !== 'linux') return [];
  let lines: string[];
  try {
    lines = readFileSync('/proc/net/if_inet6', 'latin1').split('\n');
  } catch {
    return [];
  }
  const out: Array<{ address: string; index: number; name: string; usable: boolean }> = [];
  for (const line of lines) {
    const [hex, index, , , flags, name] = line.trim().split(/\s+/);
    if (!hex || !name || !hex.startsWith('fe80')) continue;
    // IFA_F_TENTATIVE 0x40, IFA_F_DADFAILED 0x08.
    out.push({ address: hex.replace(/(.{4})(?!$)/g, '$1:'), index: parseInt(index!, 16), name, usable: (parseInt(flags ?? '0', 16) & 0x48) === 0 });
  }
  return out;
}
const UNLISTED = unlistedLinkLocal();

t.test('a numeric scope id names an interface node does not list (down, no carrier)', { skip: UNLISTED ? false : 'every interface with a link-local address is listed by node here' }, async (t) => {
  const local = UNLISTED!;
  const d = await daemon(t);
  const s = await session(t, d.url);
  for (const [type, name] of [P.SOCK_DGRAM, P.SOCK_STREAM].flatMap((ty) => [{ address: `${local.address}%${local.index}` }, { address: local.address, scopeId: local.index }].map((n) => [ty, n] as const))) {
    const h = await socketOf(s, type);
    const bound = await s.call('WSPBind', { s: h, name: { family: P.AF_INET6, port: 0, ...name }, namelen: 28 });
    // The machine's interfaces are not the test's: one that went away or became unusable since
    // it was picked says nothing about spiwire.
    if (bound['ret'] !== 0 && !linkLocals().some((a) => a.index === local.index && a.address === local.address && a.usable)) {
      t.comment(`${local.address}%${local.index} went away or became unusable meanwhile: not checked`);
      return;
    }
    t.same(bound, { ret: 0, errno: 0 }, `bound ${JSON.stringify(name)}`);
    const got = (await s.call('WSPGetSockName', { s: h, namelen: 28 }))['name'] as P.SockAddr;
    t.same([P.parseAddressText(got.address)?.canonical, got.scopeId], [P.parseAddressText(local.address)?.canonical, local.index], 'WSPGetSockName gives the address and its scope id');
    await s.call('WSPCloseSocket', { s: h });
  }
});

const UNNAMEABLE = linkLocals().find((a) => a.usable && !NODE_ZONE.test(a.name));

t.test('a scope naming an interface whose name node cannot take is WSAEINVAL, as the WSPBind section says', { skip: UNNAMEABLE ? false : 'no interface here has such a name' }, async (t) => {
  const local = UNNAMEABLE!;
  t.match(README, /letters, digits, `-`, `\.` and `:`/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  for (const name of [{ address: `${local.address}%${local.index}` }, { address: local.address, scopeId: local.index }]) {
    const h = await socketOf(s, P.SOCK_DGRAM);
    t.same(await s.call('WSPBind', { s: h, name: { family: P.AF_INET6, port: 0, ...name }, namelen: 28 }), { ret: -1, errno: P.WSAEINVAL }, `${local.name}: ${JSON.stringify(name)}`);
    await s.call('WSPCloseSocket', { s: h });
  }
});

// ---------------------------------------------------------------- point 8: the schema validates what the daemon sends

/** A decoded message back in its JSON text form: byte strings as {"$b": [offset, length]}. */
function asJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $b: [0, v.length] };
  if (Array.isArray(v)) return v.map(asJson);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, asJson(x)]));
  return v;
}

t.test('schema.json validates every message the daemon sends: replies, errors and each notification', async (t) => {
  const ajv = new Ajv2020({ strictSchema: false, allErrors: true });
  ajv.addSchema(JSON.parse(readFileSync(new URL('../../../proto/schema.json', import.meta.url), 'utf8')) as object);
  const schema = (pointer: string): ValidateFunction => ajv.getSchema(`urn:spiwire:protocol:v1#${pointer}`)!;

  const d = await daemon(t);
  const peer = await tcpPeer(t);
  const datagrams = await udpPeer(t);
  const s = await session(t, d.url);
  const methodOf = new Map<unknown, string>();
  const call = async (method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const r = s.request(method, params);
    methodOf.set(r.id, method);
    const m = await r.response;
    return m.result ?? {};
  };

  // A TCP connection: a streamed send (spiwire.sendProgress), a pending overlapped send and receive
  // (spiwire.completion, with data), a compact call, then a reset seen by WSPEventSelect
  // (spiwire.networkEvents, with errors).
  const h = (await call('WSPSocket', { af: P.AF_INET, type: P.SOCK_STREAM, protocol: P.IPPROTO_TCP, g: 0, flags: P.WSA_FLAG_OVERLAPPED }))['ret'] as number;
  await call('WSPConnect', { s: h, name: ipv4(peer.port), namelen: 16 });
  const conn = await peer.next();
  const streamed = s.request('WSPSend', { s: h, buffers: [Buffer.from('first;')], flags: 0, stream: 9, total: 11 });
  methodOf.set(streamed.id, 'WSPSend');
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 9, data: Buffer.from('rest;') } }));
  t.same((await streamed.response).result, { ret: 0, errno: 0, bytesSent: 11 }, 'the streamed send');
  await s.wait((m) => m.method === 'spiwire.sendProgress' && m.params?.['done'] === true);
  await call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: dword(0), optlen: 4 });
  t.same(await call('WSPSend', { s: h, buffers: [Buffer.from('pending;')], flags: 0, overlapped: { op: 1, thread: 0 } }), { ret: -1, errno: P.WSA_IO_PENDING });
  await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 1);
  t.same(await call('WSPRecv', { s: h, lengths: [8], flags: 0, overlapped: { op: 2, thread: 0 } }), { ret: -1, errno: P.WSA_IO_PENDING });
  conn.socket.write('answer');
  await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 2);
  const compact = new P.FrameBuilder();
  compact.compact = true;
  compact.add({ jsonrpc: '2.0', id: 50, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('compact;')], flags: 0 } });
  methodOf.set(50, 'WSPSend');
  s.ws.send(compact.finish());
  await s.wait((m) => m.id === 50);
  t.equal((await conn.waitFor(27)).toString(), 'first;rest;pending;compact;', 'the peer got every byte');
  await call('WSPEventSelect', { s: h, events: P.FD_READ | P.FD_CLOSE });
  conn.socket.resetAndDestroy();
  const closed = await s.wait((m) => m.method === 'spiwire.networkEvents' && (Number(m.params?.['events']) & P.FD_CLOSE) !== 0);
  // Section 12: errors names only the events with a nonzero code, by their FD_* names.
  t.same(closed.params?.['errors'], { FD_CLOSE: P.WSAECONNABORTED }, 'FD_CLOSE after a reset: WSAECONNABORTED, keyed FD_CLOSE');

  // A UDP socket: a pending WSPRecvFrom completes with data and from.
  const u = (await call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: P.IPPROTO_UDP, g: 0, flags: P.WSA_FLAG_OVERLAPPED }))['ret'] as number;
  await call('WSPBind', { s: u, name: ipv4(0), namelen: 16 });
  const port = ((await call('WSPGetSockName', { s: u, namelen: 16 }))['name'] as P.SockAddr).port;
  t.same(await call('WSPRecvFrom', { s: u, lengths: [64], flags: 0, overlapped: { op: 3, thread: 0 } }), { ret: -1, errno: P.WSA_IO_PENDING });
  datagrams.send('datagram', port);
  await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 3);

  // Protocol errors: by id, and with id null.
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 60, method: 'WSPNoSuchMethod', params: {} }));
  s.ws.send(P.encodeFrame({ jsonrpc: '2.0', id: 61, method: 'WSPSend', params: { s: h, buffers: 'nope', flags: 0 } }));
  await s.wait((m) => m.id === 61);
  s.ws.send(Buffer.from([0, 0, 0, 0]));
  await s.wait((m) => m.id === null && m.error !== undefined);

  const seen = new Set<string>();
  for (const m of s.messages) {
    let kind: string;
    if (typeof m.method === 'string') kind = `notification ${m.method}`;
    else if (m.error !== undefined) kind = 'error response';
    else kind = `${methodOf.get(m.id) ?? '?'} reply`;
    seen.add(kind);
    const v =
      typeof m.method === 'string' ? schema(`/notifications/${m.method}/message`) : m.error !== undefined ? schema('/errorResponse') : schema(`/methods/${methodOf.get(m.id) ?? 'unknown'}/response`);
    if (!v) {
      t.fail(`no schema for ${kind}`);
      continue;
    }
    const json = asJson(m);
    if (!v(json)) t.fail(`${kind} does not validate: ${ajv.errorsText(v.errors)}: ${JSON.stringify(json)}`);
  }
  for (const kind of ['notification spiwire.welcome', 'notification spiwire.completion', 'notification spiwire.sendProgress', 'notification spiwire.networkEvents', 'error response', 'WSPSend reply', 'WSPRecvFrom reply']) {
    t.ok(seen.has(kind), `validated: ${kind}`);
  }
  t.ok(s.compactRecords > 0, 'compact records among them, checked in the JSON they stand for');
  t.equal(s.undecodable.length, 0);

  // A resumable session's welcome carries resume {token, graceMs, daemonId}: typed in the schema.
  const r = await session(t, `${d.url}?${P.RESUMABLE_QUERY}=1`);
  const welcome = await r.wait((m) => m.method === 'spiwire.welcome');
  t.ok(welcome.params?.['resume'] !== undefined, 'a resumable session\'s welcome offers resume');
  const v = schema('/notifications/spiwire.welcome/message');
  t.ok(v(asJson(welcome)), `its welcome validates: ${ajv.errorsText(v.errors)}`);
  const forged = { ...(asJson(welcome) as Record<string, unknown>), params: { ...welcome.params, resume: { token: 't' } } };
  t.notOk(v(forged), 'and a resume offer without graceMs and daemonId does not');
  t.notOk(schema('/methods/spiwire.resume/response')({ jsonrpc: '2.0', id: 1, result: { ret: 0, errno: 0 } }), 'spiwire.resume: no result validates (none is ever sent)');
});

// ---------------------------------------------------------------- points 1 and 4: how much a send takes; the send policy

/** Sends the calls in one frame (so the daemon handles them in one run) and resolves with their results, in order. */
let frameIds = 1000;
async function inOneFrame(s: RawSession, calls: Array<[string, Record<string, unknown>]>): Promise<Array<Record<string, unknown>>> {
  const b = new P.FrameBuilder();
  const ids = calls.map(([method, params]) => {
    const id = frameIds++;
    b.add({ jsonrpc: '2.0', id, method, params });
    return id;
  });
  s.ws.send(b.finish());
  return Promise.all(ids.map(async (id) => (await s.wait((m) => m.id === id && (m.result !== undefined || m.error !== undefined))).result ?? {}));
}

/** A connected TCP socket of the session, its peer's end paused (the peer does not read), and FIONBIO set. */
async function nonBlockingToSilentPeer(t: Test, s: RawSession, options: Array<[number, number]> = []): Promise<{ h: number; conn: PeerConn }> {
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s);
  for (const [optname, value] of options) t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname, optval: dword(value), optlen: 4 }), { ret: 0, errno: 0 });
  await connectTo(s, h, peer.port);
  const conn = await peer.next();
  conn.socket.pause();
  t.same(await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: dword(1), outputLength: 0 }), { ret: 0, errno: 0, bytesReturned: 0 });
  return { h, conn };
}

/** Closes the socket (gracefully: what it took still goes, then FIN), lets the peer read, and returns all it got. */
async function everythingThePeerGets(s: RawSession, h: number, conn: PeerConn): Promise<Buffer> {
  t.same(await s.call('WSPCloseSocket', { s: h }), { ret: 0, errno: 0 });
  conn.socket.resume();
  await conn.gone;
  return conn.received();
}

const send = (h: number, data: Uint8Array): [string, Record<string, unknown>] => ['WSPSend', { s: h, buffers: [data], flags: 0 }];

t.test('the transport buffer: what a nonblocking send takes, with SO_SNDBUF 65536, 0 and 4096, and what the kernel adds', async (t) => {
  const text = section('The transport buffer: how much a send takes');
  t.match(text, /two nonblocking sends of 50,000 bytes in one frame answer 50,000 and 15,536/);
  t.match(text, /\*\*SO_SNDBUF 0\*\*: there is no buffering; one send at a time goes to the kernel whole/);
  t.match(text, /of two nonblocking sends of 50,000 bytes in one frame the first answers 50,000, the second WSAEWOULDBLOCK/);
  t.match(text, /The kernel's own buffers come first/);
  const d = await daemon(t);
  const s = await session(t, d.url);
  const data = pattern(50000, 1);

  // The default SO_SNDBUF (65536).
  {
    const { h, conn } = await nonBlockingToSilentPeer(t, s);
    const two = await inOneFrame(s, [send(h, data), send(h, data)]);
    t.same(two, [{ ret: 0, errno: 0, bytesSent: 50000 }, { ret: 0, errno: 0, bytesSent: 15536 }], 'SO_SNDBUF 65536: 50,000, then the 15,536 left in the buffer');
    let taken = 65536;
    const sent: Buffer[] = [data, data.subarray(0, 15536)];
    for (let i = 0; i < 10000; i++) {
      const r = await s.call('WSPSend', { s: h, buffers: [data], flags: 0 });
      if (r['ret'] !== 0) {
        t.same(r, { ret: -1, errno: P.WSAEWOULDBLOCK }, 'in the end WSAEWOULDBLOCK');
        break;
      }
      taken += r['bytesSent'] as number;
      sent.push(data.subarray(0, r['bytesSent'] as number));
    }
    t.ok(taken > 2 * 65536, `the kernel's buffers took more than the transport buffer holds (${taken} bytes in all)`);
    t.ok((await everythingThePeerGets(s, h, conn)).equals(Buffer.concat(sent)), 'the peer got exactly the bytes the sends reported');
  }

  // SO_SNDBUF 0: one send at a time goes to the kernel whole.
  {
    const { h, conn } = await nonBlockingToSilentPeer(t, s, [[P.SO_SNDBUF, 0]]);
    const two = await inOneFrame(s, [send(h, data), send(h, data)]);
    t.same(two, [{ ret: 0, errno: 0, bytesSent: 50000 }, { ret: -1, errno: P.WSAEWOULDBLOCK }], 'SO_SNDBUF 0: the whole first send, then WSAEWOULDBLOCK while it is on its way to the kernel');
    t.ok((await everythingThePeerGets(s, h, conn)).equals(data), 'the peer got exactly the first send');
  }

  // SO_SNDBUF 4096: small buffers in the kernel too.
  {
    const { h, conn } = await nonBlockingToSilentPeer(t, s, [[P.SO_SNDBUF, 4096]]);
    const two = await inOneFrame(s, [send(h, data), send(h, data)]);
    t.same(two, [{ ret: 0, errno: 0, bytesSent: 4096 }, { ret: -1, errno: P.WSAEWOULDBLOCK }], 'SO_SNDBUF 4096: 4,096 bytes, then nothing fits');
    t.ok((await everythingThePeerGets(s, h, conn)).equals(data.subarray(0, 4096)), 'the peer got exactly those 4,096 bytes');
  }
});

t.test('the send policy: SO_SPIWIRE_SEND_POLICY and --send-policy, as section 9 documents them', async (t) => {
  const text = section('The send policy');
  t.match(text, /the option `SO_SPIWIRE_SEND_POLICY`: level SOL_SOCKET \(0xFFFF\), `optname` 0x7F01 \(32513\), a 4-byte little-endian value, SPIWIRE_SEND_POLICY_REFERENCE \(0\) or SPIWIRE_SEND_POLICY_WINDOWS \(1\); any other value is WSAEINVAL/);
  t.match(text, /the daemon's `--send-policy reference\|windows` flag \(environment `SPIWIRE_SEND_POLICY`\), `reference` unless the operator chose otherwise/);
  t.match(section('9. Blocking, nonblocking and overlapped calls'), /This section describes both send policies of the daemon/);
  t.same([P.SO_SPIWIRE_SEND_POLICY, P.SPIWIRE_SEND_POLICY_REFERENCE, P.SPIWIRE_SEND_POLICY_WINDOWS], [0x7f01, 0, 1], 'the constants');
  const flag = SETTINGS.find((x) => x.flag === '--send-policy');
  t.same([flag?.env, parseConfig([], {}).sendPolicy, parseConfig(['--send-policy', 'windows'], {}).sendPolicy, parseConfig([], { SPIWIRE_SEND_POLICY: 'windows' }).sendPolicy], ['SPIWIRE_SEND_POLICY', 0, 1, 1], 'the flag and its environment variable');

  const readPolicy = async (s: RawSession, h: number): Promise<number> => {
    const r = await s.call('WSPGetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SPIWIRE_SEND_POLICY, optlen: 4 });
    return Buffer.from(r['optval'] as Uint8Array).readUInt32LE(0);
  };
  const setPolicy = (s: RawSession, h: number, v: number): Promise<Record<string, unknown>> => s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SPIWIRE_SEND_POLICY, optval: dword(v), optlen: 4 });

  const d = await daemon(t);
  const s = await session(t, d.url);
  const plain = await tcpSocket(s);
  t.equal(await readPolicy(s, plain), 0, 'a new socket: the reference policy, the default');
  t.same(await setPolicy(s, plain, 2), { ret: -1, errno: P.WSAEINVAL }, 'another value: WSAEINVAL');
  const u = await udpSocket(s);
  t.same(await setPolicy(s, u, 1), { ret: 0, errno: 0 }, 'a UDP socket takes the option');
  t.equal(await readPolicy(s, u), 1);

  // Reference: an overlapped call on a socket made without WSA_FLAG_OVERLAPPED is WSAEINVAL.
  const peer = await tcpPeer(t);
  await connectTo(s, plain, peer.port);
  const plainConn = await peer.next();
  t.same(await s.call('WSPSend', { s: plain, buffers: [Buffer.from('x')], flags: 0, overlapped: { op: 7, thread: 0 } }), { ret: -1, errno: P.WSAEINVAL }, 'reference: WSAEINVAL');
  // Windows: the same call runs as a blocking one and its reply carries the completion.
  t.same(await setPolicy(s, plain, 1), { ret: 0, errno: 0 });
  t.same(
    await s.call('WSPSend', { s: plain, buffers: [Buffer.from('ov')], flags: 0, overlapped: { op: 7, thread: 0 } }),
    { ret: 0, errno: 0, bytesSent: 2, completion: { error: 0, bytes: 2, flags: 0 } },
    'windows: done as a blocking call, completion in the reply',
  );
  t.equal((await plainConn.waitFor(2)).toString(), 'ov', 'only the Windows-policy call sent anything');

  // Windows: a nonblocking send takes the whole buffer, queues what does not fit, and the queue
  // keeps going after WSPCloseSocket.
  const { h, conn } = await nonBlockingToSilentPeer(t, s, [[P.SO_SPIWIRE_SEND_POLICY, 1]]);
  const data = pattern(50000, 2);
  const three = await inOneFrame(s, [send(h, data), send(h, data), send(h, data)]);
  t.same(
    three,
    [{ ret: 0, errno: 0, bytesSent: 50000 }, { ret: 0, errno: 0, bytesSent: 50000 }, { ret: -1, errno: P.WSAEWOULDBLOCK }],
    'windows: 50,000 and 50,000 (the rest queued), then WSAEWOULDBLOCK while it is',
  );
  t.ok((await everythingThePeerGets(s, h, conn)).equals(Buffer.concat([data, data])), 'after WSPCloseSocket the queued bytes still reach the peer, then FIN');

  // The daemon's default is what --send-policy sets: sockets of a daemon started with windows read 1.
  const dw = await daemon(t, { limits: { sendPolicy: P.SPIWIRE_SEND_POLICY_WINDOWS } });
  const sw = await session(t, dw.url);
  t.equal(await readPolicy(sw, await tcpSocket(sw)), 1, 'a daemon started with windows: new sockets read 1');
});

// ---------------------------------------------------------------- point 2: the count of a blocking send that failed

t.test('a blocking send interrupted by WSPCloseSocket (WSAEINTR) or by the daemon\'s shutdown (WSAENETDOWN) reports the bytes that reached the transport', async (t) => {
  const text = section('9. Blocking, nonblocking and overlapped calls');
  t.match(text, /its failing reply carries `bytesSent` beside `ret` -1 and `errno`/);
  t.match(text, /After WSAEINTR exactly those bytes reach the peer, then FIN/);
  t.match(section('WSPSend'), /\| `bytesSent` \| u32 \| when present \| lpNumberOfBytesSent\. On success, the bytes sent\. On the failing reply \(ret -1\) of a send that was not overlapped, present when some of its bytes had reached the transport before it failed/);
  const data = pattern(8 * 1024 * 1024, 3);

  for (const how of ['WSPCloseSocket', 'shutdown'] as const) {
    const errno = how === 'WSPCloseSocket' ? P.WSAEINTR : P.WSAENETDOWN;
    const d = await daemon(t);
    const s = await session(t, d.url);
    const peer = await tcpPeer(t);
    const h = await tcpSocket(s);
    // An explicit SO_SNDBUF sizes the kernel's buffer too: 8 MiB cannot all be taken while the peer does not read.
    t.same(await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: dword(8192), optlen: 4 }), { ret: 0, errno: 0 });
    await connectTo(s, h, peer.port);
    const conn = await peer.next();
    conn.socket.pause();
    let answered = false;
    const blocked = s.request('WSPSend', { s: h, buffers: [data], flags: 0 }, 20000);
    void blocked.response.then(() => (answered = true));
    // The daemon answers in order: had the send finished, its reply would be in before this one.
    await roundTrip(s);
    t.notOk(answered, `${how}: the 8 MiB send waits, the peer not reading`);
    if (how === 'WSPCloseSocket') t.same(await s.call('WSPCloseSocket', { s: h }), { ret: 0, errno: 0 }, 'another thread closes the socket');
    const closing = how === 'shutdown' ? d.close() : Promise.resolve();
    conn.socket.resume();
    const r = (await blocked.response).result ?? {};
    const n = r['bytesSent'] as number;
    t.same([r['ret'], r['errno']], [-1, errno], `${how}: ret -1, ${errno}`);
    t.ok(Number.isInteger(n) && n > 0 && n < data.length, `${how}: bytesSent counts the ${n} bytes that reached the transport`);
    await closing;
    t.equal(await conn.gone, 'end', `${how}: the peer sees FIN after them`);
    const got = conn.received();
    t.equal(got.length, n, `${how}: the peer got exactly bytesSent bytes`);
    t.ok(got.equals(data.subarray(0, n)), `${how}: the first bytesSent bytes of the call, in order`);
  }
});

// ---------------------------------------------------------------- point 6: compact replies last for the session

t.test('compact headers: after one compact record, replies and completions of that shape stay compact for the rest of the session', async (t) => {
  t.match(section('Compact headers'), /From the first compact record a session sends to the end of the session, every message the daemon writes to it in a binary frame that has one of the three shapes is compact/);
  t.match(section('Compact headers'), /There is no way back to JSON for that session/);
  const { s, h, conn } = await overlappedConnection(t);

  /** How many of the records that a call's reply (and what came with it) brought were compact. */
  const compactIn = async (run: () => Promise<unknown>): Promise<number> => {
    const before = s.compactRecords;
    await run();
    return s.compactRecords - before;
  };
  // Numeric ids: a reply to a string id has no compact form (section 3).
  const json = async (method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> => (await inOneFrame(s, [[method, params]]))[0]!;
  t.equal(await compactIn(() => json('WSPSend', { s: h, buffers: [Buffer.from('a;')], flags: 0 })), 0, 'before any compact record: JSON');
  const b = new P.FrameBuilder();
  b.compact = true;
  b.add({ jsonrpc: '2.0', id: 777, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('b;')], flags: 0 } });
  t.equal(await compactIn(async () => {
    s.ws.send(b.finish());
    await s.wait((m) => m.id === 777);
  }), 1, 'the reply to the compact WSPSend is compact');
  t.equal(await compactIn(() => json('WSPSend', { s: h, buffers: [Buffer.from('c;')], flags: 0 })), 1, 'a later JSON WSPSend: its reply is compact');
  t.equal(await compactIn(() => json('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_SNDBUF, optval: dword(0), optlen: 4 })), 1, 'a JSON WSPSetSockOpt: its {ret, errno} reply is compact too');
  t.equal(
    await compactIn(async () => {
      t.same(await json('WSPSend', { s: h, buffers: [Buffer.from('d;')], flags: 0, overlapped: { op: 1, thread: 0 } }), { ret: -1, errno: P.WSA_IO_PENDING });
      await s.wait((m) => m.method === 'spiwire.completion' && m.params?.['op'] === 1);
    }),
    2,
    'a pending JSON WSPSend: the reply and the completion are compact',
  );
  t.equal(await compactIn(() => json('WSPGetSockName', { s: h, namelen: 16 })), 0, 'a reply of another shape stays JSON');
  const textReply = new Promise<boolean>((resolve) => s.ws.once('message', (_data, isBinary: boolean) => resolve(!isBinary)));
  s.ws.send(P.encodeText({ jsonrpc: '2.0', id: 778, method: 'WSPSend', params: { s: h, buffers: [Buffer.from('e;')], flags: 0 } }));
  t.ok(await textReply, 'a request in a text frame is answered in a text frame');
  t.same((await s.wait((m) => m.id === 778)).result, { ret: 0, errno: 0, bytesSent: 2 });
  t.equal((await conn.waitFor(10)).toString(), 'a;b;c;d;e;', 'every byte reached the peer');
});

// ------------------------------------- a second client written from the spec alone (in Python)

t.test('integers written as 16.0 or 1.6e1, array errors, empty sends, the close order, overlapped sends on a nonblocking socket', async (t) => {
  t.match(section('7. Value types'), /An integer is any JSON number whose value is whole: `16`, `16.0` and `1.6e1` are the same number, and `16.5` is refused/, 'section 7: integers');
  t.match(section('7. Value types'), /An array \(bytes\[\], u32\[\]\) is named as a whole, without an index/, 'section 7: arrays in errors');
  t.match(section('WSPSend'), /An empty array, like empty buffers, is a send of 0 bytes/, 'WSPSend: an empty buffers array');
  t.match(section('WSPCloseSocket'), /Their `spiwire.completion` notifications come before the WSPCloseSocket reply/, 'WSPCloseSocket: completions first');
  t.match(section('9. Blocking, nonblocking and overlapped calls'), /Overlapped operations pend whatever the FIONBIO setting/, 'section 9: overlapped sends pend on a nonblocking socket');

  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await silentPeer(t);
  const h = await tcpSocket(s, P.WSA_FLAG_OVERLAPPED);
  await connectTo(s, h, peer.port);

  // Text frames, so that the numbers go exactly as written.
  const text = async (id: string, params: string): Promise<Msg> => {
    s.ws.send(`{"jsonrpc":"2.0","id":"${id}","method":"WSPGetSockOpt","params":${params}}`);
    return s.wait((m) => m.id === id);
  };
  const whole = await text('whole', `{"s":${h}.0,"level":6.5535e4,"optname":4104.0,"optlen":4e0}`);
  t.same([whole.result?.['ret'], whole.result?.['errno']], [0, 0], '288.0, 6.5535e4 and 4e0 are integers');
  const half = await text('half', `{"s":${h},"level":65535,"optname":4104,"optlen":4.5}`);
  t.same([half.error?.['code'], half.error?.['data']], [P.INVALID_PARAMS, { field: 'optlen' }], '4.5 is refused');

  const bad = await s.request('WSPSend', { s: h, buffers: [new Uint8Array(1), 'text'], flags: 0 }).response;
  t.same(bad.error?.['data'], { field: 'buffers' }, 'a bad element names the array, without an index');
  t.same(await s.call('WSPSend', { s: h, buffers: [], flags: 0 }), { ret: 0, errno: 0, bytesSent: 0 }, 'an empty buffers array sends 0 bytes');

  // Nonblocking, and the peer reads nothing: overlapped sends pend until the buffers are full.
  t.equal((await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: dword(1), outputLength: 0 }))['ret'], 0);
  const pending = new Set<number>();
  for (let op = 1; op <= 64 && pending.size < 8; op++) {
    const r = await s.call('WSPSend', { s: h, buffers: [new Uint8Array(1 << 20)], flags: 0, overlapped: { op, thread: 1 } });
    if (r['errno'] === P.WSA_IO_PENDING) pending.add(op);
    else t.same([r['ret'], r['errno']], [0, 0], `send ${op} completed at once`);
  }
  t.equal(pending.size, 8, 'on a nonblocking socket, overlapped sends that do not fit pend (not WSAEWOULDBLOCK)');
  const close = s.request('WSPCloseSocket', { s: h });
  await close.response;
  const at = s.messages.findIndex((m) => m.id === close.id);
  const completions = (from: number, to: number): Array<Record<string, unknown>> => s.messages.slice(from, to).filter((m) => m.method === 'spiwire.completion' && pending.has(m.params?.['op'] as number)).map((m) => m.params!);
  const before = completions(0, at);
  t.same([before.length, completions(at + 1, s.messages.length).length], [pending.size, 0], 'every pending send completed before the close reply');
  t.ok(before.some((c) => c['error'] === P.WSA_OPERATION_ABORTED), 'the ones the close ended with WSA_OPERATION_ABORTED');
});

t.test('points a client in another language had to guess: compact first bytes, out values on failure, acks with an id, resent numbers, other upgrades', async (t) => {
  t.match(section('Compact headers'), /The daemon reads a\s+header whose first byte is below 0x09 \(0x00 to 0x08, bytes no JSON text starts with\) as compact,\s+and refuses one whose kind is not 1, 2 or 3 with PARSE_ERROR/, 'compact headers: below 0x09');
  t.match(section('8. Results and errors'), /On failure the out values are absent, except where a\s+method's result table in section 11 says otherwise/, 'section 8: the exceptions');
  t.match(section('8. Results and errors'), /a WSPSend or WSPSendTo that was not overlapped and failed after sending part of its bytes/, 'section 8: a send cut short keeps bytesSent');
  t.match(section('spiwire.ack'), /may give it an id, in which case it is\s+answered like any request and, as a request, counts/, 'spiwire.ack: with an id');
  t.match(section('The handshake'), /A message sent again keeps the number it had/, 'section 20: resent messages keep their numbers');
  t.match(section('Counting messages'), /a\s+message that is exactly the bytes\s+`\{"jsonrpc":"2\.0","method":"spiwire\.ack","params":\{"received":N\}\}`/, 'section 20: which acks are not counted (proto/test/resume.test.ts checks the rule)');
  t.match(section('Endpoint'), /\| A request asking to upgrade to another protocol .* \| the upgrade is ignored: without a body the request is answered as if it had no `Upgrade` header/, 'section 1: other upgrades (tested on the wire in security.test.ts)');
  t.match(section('Endpoint'), /\(none for HEAD: a response to HEAD never has a body\)/, 'section 1: HEAD');

  const d = await daemon(t);
  const s = await session(t, d.url);
  // A record whose header starts with 0x00 or 0x04: compact, of no kind there is.
  for (const first of [0x00, 0x04, 0x08]) {
    const header = Buffer.alloc(16);
    header[0] = first;
    const record = Buffer.concat([Buffer.from([16, 0, 0, 0]), header, Buffer.from([0, 0, 0, 0])]);
    s.ws.send(record);
    const err = await s.wait((m) => m.error !== undefined && m.id === null && String(m.error['message']).includes(`unknown kind ${first}`));
    t.equal(err.error?.code, P.PARSE_ERROR, `first byte 0x0${first}: PARSE_ERROR, unknown kind`);
  }
  // An ack with an id is answered.
  const ack = await s.request('spiwire.ack', { received: 0 }).response;
  t.same(ack.result, { ret: 0, errno: 0 }, 'spiwire.ack with an id: answered {ret: 0, errno: 0}');
});

// ---------------------------------------------------------------- a client in Python: what it had to guess

t.test('the welcome is alone in its message, even with a request written in the same write as the upgrade', async (t) => {
  t.match(section('spiwire.welcome'), /`spiwire\.welcome`, alone in a binary frame: the replies to requests a client sent before it arrived come in later messages/);
  const d = await daemon(t);
  const request = new P.FrameBuilder();
  request.add({ jsonrpc: '2.0', id: 1, method: 'WSPSocket', params: { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 } });
  const ws = await HandWebSocket.open(t, d.port, '/ws', maskedFrame(0x2, request.finish()));
  const messages = (await ws.frames(2)).map((f) => ({ opcode: f.opcode, records: P.decodeFrame(f.payload) }));
  const methodOf = (r: P.DecodedRecord): unknown => (r.ok && P.isRecord(r.message) ? (r.message['method'] ?? `reply ${String(r.message['id'])}`) : 'undecodable');
  t.same(messages.map((m) => [m.opcode, m.records.map(methodOf)]), [[2, ['spiwire.welcome']], [2, ['reply 1']]], 'the welcome alone in a binary frame, the reply in the next');
});

t.test('the answer to spiwire.resume is one binary frame with that one record, also for a resume sent as text', async (t) => {
  t.match(section('spiwire.resume'), /Either answer is one binary frame holding that one record and nothing else, whether the resume came in a binary or a text frame/);
  t.match(section('spiwire.resumed'), /the first message of the resumed connection, alone in a binary frame/);
  const d = await daemon(t);
  const first = await session(t, `${d.url}?resumable=1`);
  const welcome = first.messages.find((m) => m.method === 'spiwire.welcome')!.params!;
  const offer = welcome['resume'] as { token: string; daemonId: string };
  // Something to replay after the resume: a reply the client never acknowledged.
  await tcpSocket(first);
  first.ws.terminate();
  const url = `${d.url}?resume=${String(welcome['session'])}&daemon=${offer.daemonId}`;
  const resumeText = (token: string): string => JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session: welcome['session'], token, received: 0, daemonId: offer.daemonId } });
  /** The frames of a resume connection: opcode and records of each, until count of them came or it closed. */
  const frames = (text: string, count: number): Promise<Array<[boolean, unknown[]]>> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, [P.SUBPROTOCOL]);
      const got: Array<[boolean, unknown[]]> = [];
      ws.on('open', () => ws.send(text));
      ws.on('message', (data: Buffer, binary: boolean) => {
        const recs = binary ? P.decodeFrame(data) : [P.decodeText(data.toString())];
        got.push([binary, recs.map((r) => (r.ok && P.isRecord(r.message) ? (r.message['method'] ?? (P.isRecord(r.message['error']) ? 'error' : 'reply')) : 'undecodable'))]);
        if (got.length === count) {
          ws.terminate();
          resolve(got);
        }
      });
      ws.on('close', () => resolve(got));
      ws.on('error', reject);
    });
  t.same(await frames(resumeText('not the token'), 1), [[true, ['error']]], 'a refusal: one binary frame, the error alone');
  const resumed = await frames(resumeText(offer.token), 2);
  t.same(resumed[0], [true, ['spiwire.resumed']], 'spiwire.resumed alone in a binary frame');
  t.same(resumed[1]?.[0], true, 'the replay follows in later messages');
});

t.test('a record dropped from a binary frame is named by its index (data.record); a frame dropped whole has no data', async (t) => {
  t.match(section('5. Decoding errors'), /`"data": \{"record": i\}`, as every response with `"id": null` to one record of a binary frame has/, 'section 5: the index of a dropped record');
  t.match(section('5. Decoding errors'), /a BAD_FRAME without `data` means the whole frame was dropped/, 'section 5: a frame dropped whole');
  t.match(section('13. Protocol error catalogue'), /that record alone is dropped, the frame's other records run, and `data.record` is its index in the frame/, 'section 13: BAD_FRAME, both cases');
  t.match(section('5. Decoding errors'), /an envelope whose id cannot be read/, 'section 5: INVALID_REQUEST without an id names its record too');

  const d = await daemon(t);
  const s = await session(t, d.url);
  const close = (id: string): string => `{"jsonrpc":"2.0","id":"${id}","method":"WSPCloseSocket","params":{"s":4}}`;
  const errorsNow = (): Msg[] => s.messages.filter((m) => m.error !== undefined && m.id === null);

  // Records 0 and 3 are good; 1 refers to bytes it does not have; 2 is a compact header of an
  // unknown kind; 4 has an id that is not one (an object), so its answer cannot carry it.
  s.ws.send(Buffer.concat([
    rawRecord(close('r0')),
    rawRecord('{"jsonrpc":"2.0","id":"r1","method":"WSPSend","params":{"s":4,"buffers":[{"$b":[0,10]}],"flags":0}}'),
    rawRecord(new Uint8Array([0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    rawRecord(close('r3')),
    rawRecord('{"jsonrpc":"2.0","id":{"x":1},"method":"WSPCloseSocket","params":{"s":4}}'),
  ]));
  const r0 = await s.wait((m) => m.id === 'r0');
  const r3 = await s.wait((m) => m.id === 'r3');
  t.same([r0.result?.['errno'], r3.result?.['errno']], [P.WSAENOTSOCK, P.WSAENOTSOCK], 'the good records ran');
  await until(() => errorsNow().length >= 3);
  const errs = errorsNow();
  t.same(
    errs.map((m) => [m.error?.['code'], m.error?.['data']]),
    [[P.BAD_FRAME, { record: 1 }], [P.PARSE_ERROR, { record: 2 }], [P.INVALID_REQUEST, { record: 4 }]],
    'the three bad records, each named by its index',
  );
  t.notOk(s.messages.some((m) => m.id === 'r1'), 'nothing answers the bad record by its id');

  // The frame ends inside its second record: nothing of it runs, and the one error has no data.
  const truncated = Buffer.concat([rawRecord(close('t0')), rawRecord(close('t1')).subarray(0, 20)]);
  s.ws.send(truncated);
  await until(() => errorsNow().length >= 4);
  const whole = errorsNow()[3]!;
  t.equal(whole.error?.['code'], P.BAD_FRAME, 'a truncated frame is BAD_FRAME');
  t.equal(whole.error?.['data'], undefined, 'with no data: the whole frame was dropped');
  await roundTrip(s);
  t.notOk(s.messages.some((m) => m.id === 't0'), 'its first record did not run either');
});

t.test('WSPEventSelect takes FD_ALL_EVENTS (0x3FF) as Windows does, records none of the four events past FD_CLOSE, and refuses bits above', async (t) => {
  t.match(section('WSPEventSelect'), /are accepted \(FD_ALL_EVENTS, 0x3FF, is what many programs pass, and Windows takes it\) and never recorded\. Bits above 0x3FF give WSAEINVAL/, 'WSPEventSelect: the events row');
  t.match(section('spiwire.networkEvents'), /a client adds each notification's `events` to its record \(OR\)/, 'spiwire.networkEvents: several notifications for one moment');

  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const { h, conn } = await connectedSocket(s, peer);
  t.same(await s.call('WSPEventSelect', { s: h, events: P.FD_ALL_EVENTS }), { ret: 0, errno: 0 }, 'FD_ALL_EVENTS is taken');
  // A connected socket with room to send: FD_WRITE is recorded at once; data from the peer: FD_READ.
  await s.wait((m) => m.method === 'spiwire.networkEvents' && m.params?.['s'] === h && ((m.params['events'] as number) & P.FD_WRITE) !== 0);
  conn.socket.write('x');
  await s.wait((m) => m.method === 'spiwire.networkEvents' && m.params?.['s'] === h && ((m.params['events'] as number) & P.FD_READ) !== 0);
  const recorded = s.messages.filter((m) => m.method === 'spiwire.networkEvents' && m.params?.['s'] === h).reduce((all, m) => all | (m.params!['events'] as number), 0);
  t.equal(recorded & ~(P.FD_READ | P.FD_WRITE | P.FD_OOB | P.FD_ACCEPT | P.FD_CONNECT | P.FD_CLOSE), 0, 'nothing past FD_CLOSE is ever recorded');
  t.same(await s.call('WSPEventSelect', { s: h, events: P.FD_ALL_EVENTS + 1 }), { ret: -1, errno: P.WSAEINVAL }, 'a bit above FD_ALL_EVENTS is refused');
  t.same(await s.call('WSPEventSelect', { s: h, events: 0x800 | P.FD_READ }), { ret: -1, errno: P.WSAEINVAL }, 'and so is 0x800 with FD_READ');
});
