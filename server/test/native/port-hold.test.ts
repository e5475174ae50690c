/**
 * A bound TCP socket holds its port in the kernel, as WSPBind does on Windows (native/port-hold.ts):
 * another program's bind of the port fails while the socket is bound, and it is free again once
 * the socket closes. Listening and connecting from the port work beside the holder, which goes
 * once node's own socket has the port, and comes back when a connect from the port fails.
 *
 * "Another program" is a socket made here through the C library, bound without SO_REUSEADDR (node
 * always sets it, and Linux lets sockets that all set it share a port while none listens).
 */
import t from 'tap';
import * as net from 'node:net';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as P from '@spiwire/proto';
import { libc } from '../../src/native/libc.js';
import { daemon, ipv4, session, tcpSocket, type RawSession } from '../helpers/raw-client.js';

const native = libc();
const skip = native && process.platform === 'linux' ? false : 'needs the C library (Linux) to bind a socket without SO_REUSEADDR';

/** struct sockaddr_in of 127.0.0.1:port (Linux layout). */
function loopbackSockaddr(port: number): Buffer {
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(2, 0);
  sa.writeUInt16BE(port, 2);
  sa.set([127, 0, 0, 1], 4);
  return sa;
}

/** Binds a plain socket (no SO_REUSEADDR) to 127.0.0.1:port: 0, or the errno it met; closed at once. */
function otherProgramBinds(port: number): number {
  const lib = native!;
  const fd = lib.tcpSocket('ipv4');
  if (fd < 0) throw new Error(`socket(): errno ${-fd}`);
  const r = lib.bind(fd, loopbackSockaddr(port));
  lib.close(fd);
  return -r;
}

const EADDRINUSE = 98;

async function boundSocket(s: RawSession, port = 0): Promise<{ h: number; port: number }> {
  const h = await tcpSocket(s);
  const b = await s.call('WSPBind', { s: h, name: ipv4(port), namelen: 16 });
  if (b['ret'] !== 0) throw new Error(`WSPBind: ${String(b['errno'])}`);
  const name = (await s.call('WSPGetSockName', { s: h, namelen: 16 }))['name'] as P.SockAddr;
  return { h, port: name.port };
}

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

t.test('a bound socket holds its port against other programs until it closes', { skip }, async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const { h, port } = await boundSocket(s);
  t.equal(otherProgramBinds(port), EADDRINUSE, `port ${port}, bound and idle, is taken for another program`);
  // The daemon's own sockets still share it as Windows allows (both SO_REUSEADDR).
  const on = new Uint8Array([1, 0, 0, 0]);
  const a = await tcpSocket(s);
  const b = await tcpSocket(s);
  for (const x of [a, b]) t.equal((await s.call('WSPSetSockOpt', { s: x, level: P.SOL_SOCKET, optname: P.SO_REUSEADDR, optval: on, optlen: 4 }))['ret'], 0);
  const shared = await boundSocket(s);
  t.equal((await s.call('WSPCloseSocket', { s: shared.h }))['ret'], 0);
  t.equal((await s.call('WSPBind', { s: a, name: ipv4(shared.port), namelen: 16 }))['ret'], 0, 'a socket binds a port just freed by one of the daemon');
  t.equal((await s.call('WSPBind', { s: b, name: ipv4(shared.port), namelen: 16 }))['ret'], 0, 'and a second one with SO_REUSEADDR beside it');
  t.equal(otherProgramBinds(shared.port), EADDRINUSE, 'held for both');
  t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0);
  t.equal(otherProgramBinds(port), 0, 'free again once the socket closed');
});

t.test('listening from a held port works, and the holder goes with the listen', { skip }, async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const { h, port } = await boundSocket(s);
  const before = openDescriptors();
  t.equal((await s.call('WSPListen', { s: h, backlog: 4 }))['ret'], 0, 'WSPListen beside the holder');
  t.equal(openDescriptors(), before, 'the listening socket replaced the holder: one descriptor, not two');
  const peer = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => peer.once('connect', resolve).once('error', reject));
  t.teardown(() => peer.destroy());
  const acc = await s.call('WSPAccept', { s: h });
  t.ok((acc['ret'] as number) > 0, 'a real peer connected to the listening port and was accepted');
  t.equal(otherProgramBinds(port), EADDRINUSE, 'the listening port is still taken');
});

t.test('connecting from a held port: the peer sees that port; a refused connect holds it again', { skip }, async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  // A port with nothing listening: a listener that closed.
  const gone = net.createServer();
  await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
  const refusedPort = (gone.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => gone.close(() => resolve()));

  const { h, port } = await boundSocket(s);
  const refused = await s.call('WSPConnect', { s: h, name: ipv4(refusedPort), namelen: 16 });
  t.same([refused['ret'], refused['errno']], [P.SOCKET_ERROR, P.WSAECONNREFUSED], 'the connect is refused');
  t.equal(otherProgramBinds(port), EADDRINUSE, 'after the refusal the socket is still bound, its port held');

  const remotePorts: number[] = [];
  const server = net.createServer((c) => {
    remotePorts.push(c.remotePort!);
    c.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const before = openDescriptors();
  const ok = await s.call('WSPConnect', { s: h, name: ipv4((server.address() as net.AddressInfo).port), namelen: 16 });
  t.equal(ok['ret'], 0, 'WSPConnect from the held port');
  await new Promise<void>((resolve) => (remotePorts.length > 0 ? resolve() : server.once('connection', () => resolve())));
  t.same(remotePorts, [port], 'the peer saw the bound port');
  // The test's peer side of the connection is a descriptor of this process too.
  t.equal(openDescriptors(), before + 1, "the connection replaced the holder (the one more is the peer's end)");
});

t.test('a socket bound beside a listener of its session holds the port once the listener closes', { skip }, async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const on = new Uint8Array([1, 0, 0, 0]);
  const reusing = async (): Promise<number> => {
    const h = await tcpSocket(s);
    t.equal((await s.call('WSPSetSockOpt', { s: h, level: P.SOL_SOCKET, optname: P.SO_REUSEADDR, optval: on, optlen: 4 }))['ret'], 0);
    return h;
  };
  const listener = await reusing();
  t.equal((await s.call('WSPBind', { s: listener, name: ipv4(0), namelen: 16 }))['ret'], 0);
  t.equal((await s.call('WSPListen', { s: listener, backlog: 4 }))['ret'], 0);
  const port = ((await s.call('WSPGetSockName', { s: listener, namelen: 16 }))['name'] as P.SockAddr).port;
  // Beside the listener the kernel refuses a holder: the listener holds the port meanwhile.
  const beside = await reusing();
  t.equal((await s.call('WSPBind', { s: beside, name: ipv4(port), namelen: 16 }))['ret'], 0, 'a second socket binds the listening address (both SO_REUSEADDR)');
  t.equal((await s.call('WSPCloseSocket', { s: listener }))['ret'], 0, 'the listener closes');
  t.equal(otherProgramBinds(port), EADDRINUSE, 'the socket still bound holds the port now');
  t.equal((await s.call('WSPCloseSocket', { s: beside }))['ret'], 0);
  t.equal(otherProgramBinds(port), 0, 'and lets it go when it closes');
});

t.test('WSPCloseSocket during a connect that hangs ends node\'s connection: no descriptor or port left', { skip }, async (t) => {
  // A peer whose accept queue is full: a listener made through the C library (node would accept
  // at once) with a backlog of 0 that never accepts, and connections that fill the queue. The
  // kernel drops further SYNs, so a connect to it hangs.
  const koffi = createRequire(import.meta.url)('koffi') as { load(name: string): { func(sig: string): (...args: unknown[]) => number } };
  const c = koffi.load('libc.so.6');
  const listen = c.func('int listen(int, int)');
  const getsockname = c.func('int getsockname(int, _Out_ uint8_t *, _Inout_ uint32_t *)');
  const lib = native!;
  const lfd = lib.tcpSocket('ipv4');
  t.equal(lib.bind(lfd, loopbackSockaddr(0)), 0);
  t.equal(listen(lfd, 0), 0);
  const name = Buffer.alloc(16);
  getsockname(lfd, name, [16]);
  const full = name.readUInt16BE(2);
  const fillers: net.Socket[] = [];
  t.teardown(() => {
    for (const f of fillers) f.destroy();
    lib.close(lfd);
  });
  // The queue holds backlog + 1 connections on Linux: one, connected once the kernel queued it.
  const filler = net.connect(full, '127.0.0.1').on('error', () => undefined);
  fillers.push(filler);
  await new Promise<void>((resolve) => filler.once('connect', resolve));

  const d = await daemon(t);
  const s = await session(t, d.url);
  const { h, port } = await boundSocket(s);
  await s.call('WSPIoctl', { s: h, code: P.FIONBIO, input: new Uint8Array([1, 0, 0, 0]), outputLength: 0 });
  const before = openDescriptors();
  const started = await s.call('WSPConnect', { s: h, name: ipv4(full), namelen: 16 });
  t.same([started['ret'], started['errno']], [P.SOCKET_ERROR, P.WSAEWOULDBLOCK], 'the connect is under way');
  // The connection's socket has the port once node bound it (the holder went): wait for that.
  for (let i = 0; i < 100 && openDescriptors() !== before; i++) await new Promise((r) => setImmediate(r));
  t.equal(openDescriptors(), before, "node's connecting socket took the holder's place");
  t.equal((await s.call('WSPCloseSocket', { s: h }))['ret'], 0, 'WSPCloseSocket while it hangs');
  t.equal(openDescriptors(), before - 1, 'the connecting socket is gone with it');
  t.equal(otherProgramBinds(port), 0, 'and so is its port');
});
