/**
 * Regression tests for input a hostile or careless client can send (issue 11, defects 1, 2, 6, 7
 * and 8): option values the real socket cannot take, addresses that would reach a name resolver,
 * binds racing in one frame, requests without an id, receives whose lengths add up to more than
 * 4 GiB. Each must give a documented answer; the daemon must keep running and leak nothing.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import WebSocket from 'ws';
import * as P from '@spiwire/proto';
import { RawSession, collectedLog, connectedSocket, connectTo, daemon, ipv4, rawSocketOf, session, startCli, tcpPeer, tcpSocket, udpSocket, until, within, type Msg } from './helpers/raw-client.js';

function dword(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

function readDword(b: unknown): number {
  const u = b as Uint8Array;
  return new DataView(u.buffer, u.byteOffset, 4).getInt32(0, true);
}

async function setOpt(s: RawSession, h: number, level: number, optname: number, value: number): Promise<Record<string, unknown>> {
  return s.call('WSPSetSockOpt', { s: h, level, optname, optval: dword(value), optlen: 4 });
}

async function getOpt(s: RawSession, h: number, level: number, optname: number): Promise<number> {
  const r = await s.call('WSPGetSockOpt', { s: h, level, optname, optlen: 4 });
  return readDword(r['optval']);
}

// ---- defect 1: option values ----

t.test('TCP_MAXRT beyond what the kernel takes: clamped, never a crash, on connect and on accept', async (t) => {
  const d = await startCli(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  for (const seconds of [3_000_000, 0x7fffffff]) {
    const h = await tcpSocket(s);
    const r = await setOpt(s, h, P.IPPROTO_TCP, P.TCP_MAXRT, seconds);
    t.same([r['ret'], r['errno']], [0, 0], `TCP_MAXRT ${seconds} s is taken`);
    t.equal(await getOpt(s, h, P.IPPROTO_TCP, P.TCP_MAXRT), seconds, 'and reads back as set');
    const conn = peer.next();
    await connectTo(s, h, peer.port);
    await conn;
    t.equal((await s.call('WSPSend', { s: h, buffers: [new Uint8Array([1, 2, 3])], flags: 0 }))['ret'], 0, 'the connected socket sends');
  }
  // The same option on a listener, inherited by an accepted connection.
  const l = await tcpSocket(s);
  await setOpt(s, l, P.IPPROTO_TCP, P.TCP_MAXRT, 3_000_000);
  t.equal((await s.call('WSPBind', { s: l, name: ipv4(0), namelen: 16 }))['ret'], 0);
  t.equal((await s.call('WSPListen', { s: l, backlog: 4 }))['ret'], 0);
  const port = ((await s.call('WSPGetSockName', { s: l, namelen: 16 }))['name'] as P.SockAddr).port;
  const client = net.connect({ host: '127.0.0.1', port });
  client.on('error', () => undefined);
  t.teardown(() => client.destroy());
  const a = await s.call('WSPAccept', { s: l });
  t.not(a['ret'], P.INVALID_SOCKET, 'the connection is accepted');
  t.equal(await getOpt(s, a['ret'] as number, P.IPPROTO_TCP, P.TCP_MAXRT), 3_000_000, 'the accepted socket inherits TCP_MAXRT');
  // -1 is "retransmit for ever" on Windows; other negative values are WSAEINVAL.
  const h = await tcpSocket(s);
  t.same([(await setOpt(s, h, P.IPPROTO_TCP, P.TCP_MAXRT, -1))['ret']], [0], 'TCP_MAXRT -1 (no limit) is taken');
  t.equal(await getOpt(s, h, P.IPPROTO_TCP, P.TCP_MAXRT), -1, 'and reads back -1');
  t.equal((await setOpt(s, h, P.IPPROTO_TCP, P.TCP_MAXRT, -7))['errno'], P.WSAEINVAL, 'TCP_MAXRT -7: WSAEINVAL');
  t.equal(d.proc.exitCode, null, 'the daemon is still running');
});

t.test('keep-alive timing beyond the kernel maximum is clamped, as Windows clamps, and the socket works', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const h = await tcpSocket(s);
  t.equal((await setOpt(s, h, P.SOL_SOCKET, P.SO_KEEPALIVE, 1))['ret'], 0);
  for (const opt of [P.TCP_KEEPIDLE, P.TCP_KEEPINTVL]) {
    t.equal((await setOpt(s, h, P.IPPROTO_TCP, opt, 0x7fffffff))['ret'], 0, `option ${opt}: a huge value is taken`);
  }
  // TCP_KEEPCNT is a count of probes: Windows refuses more than 255 (Wine's test_optsize).
  t.equal((await setOpt(s, h, P.IPPROTO_TCP, P.TCP_KEEPCNT, 0x7fffffff))['errno'], P.WSAEINVAL, 'TCP_KEEPCNT beyond 255: WSAEINVAL');
  t.equal((await setOpt(s, h, P.IPPROTO_TCP, P.TCP_KEEPCNT, 255))['ret'], 0, 'TCP_KEEPCNT 255 is taken');
  const conn = peer.next();
  await connectTo(s, h, peer.port);
  const c = await conn;
  t.equal((await s.call('WSPSend', { s: h, buffers: [new Uint8Array([7])], flags: 0 }))['ret'], 0);
  t.same([...(await c.waitFor(1))], [7], 'the peer gets the byte');
});

// ---- defect 2: addresses never reach a resolver ----

t.test('an address with a scope suffix that is not an IPv6 link-local numeric scope never reaches a resolver', async (t) => {
  const d = await daemon(t, { allow: '127.0.0.1' });
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const cases: Array<[number, number, string]> = [
    [P.AF_INET, P.SOCK_STREAM, '127.0.0.1%x'],
    [P.AF_INET, P.SOCK_STREAM, '127.0.0.1%lo'],
    [P.AF_INET, P.SOCK_STREAM, '127.0.0.1%'],
    [P.AF_INET, P.SOCK_DGRAM, '127.0.0.1%evil.example'],
    [P.AF_INET6, P.SOCK_STREAM, '::1%x'],
    [P.AF_INET6, P.SOCK_STREAM, '::ffff:127.0.0.1%0'],
    [P.AF_INET6, P.SOCK_STREAM, 'fe80::1%no-such-interface-here'],
    [P.AF_INET6, P.SOCK_STREAM, 'fe80::1%1%1'],
  ];
  for (const [af, type, address] of cases) {
    const r = await s.call('WSPSocket', { af, type, protocol: 0, g: 0, flags: 0 });
    const h = r['ret'] as number;
    const name = { family: af, address, port: peer.port };
    const namelen = af === P.AF_INET ? 16 : 28;
    for (const method of type === P.SOCK_STREAM ? ['WSPConnect', 'WSPBind'] : ['WSPConnect', 'WSPSendTo', 'WSPBind']) {
      const params = method === 'WSPSendTo' ? { s: h, buffers: [new Uint8Array(1)], flags: 0, to: name, tolen: namelen } : { s: h, name, namelen };
      const m = await s.request(method, params).response;
      const verdict = m.error ? `error ${String(m.error['code'])}` : `errno ${String(m.result?.['errno'])}`;
      t.ok(m.error?.['code'] === P.INVALID_PARAMS || m.result?.['errno'] === P.WSAEACCES || m.result?.['errno'] === P.WSAEINVAL, `${method} ${JSON.stringify(address)}: refused (${verdict})`);
    }
  }
  t.equal(peer.connections.length, 0, 'nothing reached the peer');
});

t.test('v4-mapped and any-address forms are judged by the address the kernel uses', async (t) => {
  // Only one port of 127.0.0.1 is allowed; decoys listen elsewhere.
  const allowed = await tcpPeer(t);
  const decoy = await tcpPeer(t);
  const d = await daemon(t, { allow: `127.0.0.1:${allowed.port}` });
  const s = await session(t, d.url);
  const tries: Array<[number, string]> = [
    [P.AF_INET6, '::ffff:127.0.0.1'],
    [P.AF_INET6, '::ffff:7f00:1'],
    [P.AF_INET6, '0::'],
    [P.AF_INET6, '::0:0'],
    [P.AF_INET6, '0:0::0'],
    [P.AF_INET, '0.0.0.0'],
  ];
  for (const [af, address] of tries) {
    const h = (await s.call('WSPSocket', { af, type: P.SOCK_STREAM, protocol: 0, g: 0, flags: 0 }))['ret'] as number;
    const r = await s.request('WSPConnect', { s: h, name: { family: af, address, port: decoy.port }, namelen: af === P.AF_INET ? 16 : 28 }).response;
    t.not(r.result?.['ret'], 0, `connect to ${address}:${decoy.port} is refused (${JSON.stringify(r.result ?? r.error)})`);
  }
  // The allowed destination through the v4-mapped form still works: the kernel goes to 127.0.0.1.
  const h6 = (await s.call('WSPSocket', { af: P.AF_INET6, type: P.SOCK_STREAM, protocol: 0, g: 0, flags: 0 }))['ret'] as number;
  const ok = await s.call('WSPConnect', { s: h6, name: { family: P.AF_INET6, address: '::ffff:127.0.0.1', port: allowed.port }, namelen: 28 });
  t.equal(ok['ret'], 0, 'the allowed port through ::ffff:127.0.0.1 connects');
  t.equal(decoy.connections.length, 0, 'the decoy never saw a connection');
});

// ---- defect 6: a receive whose lengths add up past 4 GiB ----

t.test('a blocking MSG_OOB WSPRecv asking for more than 4 GiB: a Winsock answer and no timer left behind', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const { h, conn } = await connectedSocket(s, peer);
  const timersBefore = process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
  const lengths = [0xffffffff, 0xffffffff, 0xffffffff];
  const recv = s.request('WSPRecv', { s: h, lengths, flags: P.MSG_OOB }, 10000);
  // Urgent data from the peer completes the receive.
  await new Promise((r) => setTimeout(r, 50));
  t.notOk(s.messages.some((m) => m.id === recv.id), 'the receive waits for urgent data');
  conn.socket.write(Buffer.from('abc'));
  const { libc, fdOf } = await import('../src/native/libc.js');
  const native = libc();
  if (!native) {
    t.comment('no C library access: MSG_OOB gives WSAEINVAL');
    const m = await recv.response;
    t.equal(m.result?.['errno'], P.WSAEINVAL);
    return;
  }
  const fd = fdOf(conn.socket);
  t.ok(fd !== null, 'the peer socket has a descriptor');
  native.send(fd!, new Uint8Array([0x21]), native.c.MSG_OOB);
  const m = await recv.response;
  t.notOk(m.error, `no protocol error (${JSON.stringify(m.error)})`);
  t.same([m.result?.['ret'], m.result?.['bytesRecvd']], [0, 1], 'one urgent byte arrives');
  t.same([...(m.result?.['data'] as Uint8Array)], [0x21], 'the urgent byte');
  // A pending one that the socket's close ends.
  const second = s.request('WSPRecv', { s: h, lengths, flags: P.MSG_OOB });
  await s.call('WSPCloseSocket', { s: h });
  t.equal((await second.response).result?.['errno'], P.WSAEINTR, 'close answers the blocked urgent receive with WSAEINTR');
  const timersAfter = process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
  t.ok(timersAfter <= timersBefore, `no timer left behind (${timersBefore} before, ${timersAfter} after)`);
});

// ---- defect 7: binds racing in one frame ----

/** Several messages in one binary frame: the daemon starts them in one turn. */
function frame(...msgs: object[]): Uint8Array {
  const b = new P.FrameBuilder();
  for (const m of msgs) b.add(m);
  return b.finish();
}

t.test('two binds in one frame: the second is WSAEINVAL, never INTERNAL_ERROR (UDP and TCP)', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  for (const type of [P.SOCK_DGRAM, P.SOCK_STREAM]) {
    const h = (await s.call('WSPSocket', { af: P.AF_INET, type, protocol: 0, g: 0, flags: 0 }))['ret'] as number;
    const tag = `b${type}`;
    s.ws.send(
      frame(
        { jsonrpc: '2.0', id: `${tag}-1`, method: 'WSPBind', params: { s: h, name: ipv4(0), namelen: 16 } },
        { jsonrpc: '2.0', id: `${tag}-2`, method: 'WSPBind', params: { s: h, name: ipv4(0), namelen: 16 } },
      ),
    );
    const first = await s.wait((m) => m.id === `${tag}-1`);
    const second = await s.wait((m) => m.id === `${tag}-2`);
    t.equal(first.result?.['ret'], 0, `type ${type}: the first bind succeeds`);
    t.same([second.error, second.result?.['errno']], [undefined, P.WSAEINVAL], `type ${type}: the second is WSAEINVAL`);
  }
  // A bind and an automatic bind by WSPSendTo in one frame.
  const receiver = dgram.createSocket('udp4');
  await new Promise<void>((r) => receiver.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => receiver.close());
  const got = new Promise<Buffer>((r) => receiver.once('message', (m) => r(m)));
  const u = await udpSocket(s);
  s.ws.send(
    frame(
      { jsonrpc: '2.0', id: 'auto-1', method: 'WSPSendTo', params: { s: u, buffers: [new Uint8Array([9])], flags: 0, to: ipv4(receiver.address().port), tolen: 16 } },
      { jsonrpc: '2.0', id: 'auto-2', method: 'WSPBind', params: { s: u, name: ipv4(0), namelen: 16 } },
      { jsonrpc: '2.0', id: 'auto-3', method: 'WSPConnect', params: { s: u, name: ipv4(receiver.address().port), namelen: 16 } },
    ),
  );
  const r1 = await s.wait((m) => m.id === 'auto-1');
  const r2 = await s.wait((m) => m.id === 'auto-2');
  const r3 = await s.wait((m) => m.id === 'auto-3');
  t.same([r1.result?.['ret'], r1.result?.['bytesSent']], [0, 1], 'WSPSendTo binds automatically and sends');
  t.same([r2.error, r2.result?.['errno']], [undefined, P.WSAEINVAL], 'the explicit bind after it: WSAEINVAL');
  t.same([r3.error, r3.result?.['ret']], [undefined, 0], 'WSPConnect in the same frame works');
  t.same([...(await got)], [9], 'the datagram arrived');
});

t.test('a bind, listen or connect still waiting for its turn when WSPCloseSocket comes in the same frame: WSAEINTR, as any interrupted call', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  const call = (id: string, method: string, params: object): object => ({ jsonrpc: '2.0', id, method, params });
  const cases: Array<{ type: number; calls: Array<[string, object]>; interrupted: string[] }> = [
    // A connect runs after the frame's turn; the close in the frame comes first.
    { type: P.SOCK_STREAM, calls: [['WSPConnect', { name: ipv4(peer.port), namelen: 16 }]], interrupted: ['WSPConnect'] },
    // A bind asks the host first; the connect and the listen wait behind it.
    { type: P.SOCK_STREAM, calls: [['WSPBind', { name: ipv4(0), namelen: 16 }], ['WSPConnect', { name: ipv4(peer.port), namelen: 16 }]], interrupted: ['WSPBind', 'WSPConnect'] },
    { type: P.SOCK_STREAM, calls: [['WSPBind', { name: ipv4(0), namelen: 16 }], ['WSPListen', { backlog: 5 }]], interrupted: ['WSPBind', 'WSPListen'] },
  ];
  for (const [n, c] of cases.entries()) {
    const h = (await s.call('WSPSocket', { af: P.AF_INET, type: c.type, protocol: 0, g: 0, flags: 0 }))['ret'] as number;
    const ids = c.calls.map((_, i) => `c${n}-${i}`);
    s.ws.send(frame(...c.calls.map(([method, params], i) => call(ids[i]!, method, { s: h, ...params })), call(`c${n}-close`, 'WSPCloseSocket', { s: h })));
    const closed = await s.wait((m) => m.id === `c${n}-close`);
    t.same(closed.result, { ret: 0, errno: 0 }, `${c.calls.map(([m]) => m).join(' + ')}: the close succeeds`);
    for (const [i, id] of ids.entries()) {
      const m = await s.wait((x) => x.id === id);
      t.same([m.error, m.result?.['ret'], m.result?.['errno']], [undefined, P.SOCKET_ERROR, P.WSAEINTR], `${c.calls.map(([x]) => x).join(' + ')}: ${c.interrupted[i]} is interrupted (WSAEINTR), not told the socket never was (WSAENOTSOCK)`);
    }
  }
});


t.test('calls in one frame before a WSPCloseSocket or a spiwire.threadExit are done first, as Windows does them (UDP)', async (t) => {
  const d = await daemon(t);
  const s = await session(t, d.url);
  const receiver = dgram.createSocket('udp4');
  await new Promise<void>((r) => receiver.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => receiver.close());
  const arrived: number[] = [];
  const both = new Promise<void>((resolve) =>
    receiver.on('message', (m) => {
      arrived.push(m[0]!);
      if (arrived.length === 2) resolve();
    }),
  );
  const to = ipv4(receiver.address().port);
  const call = (id: string, method: string, params: Record<string, unknown>): object => ({ jsonrpc: '2.0', id, method, params });
  // Each socket unbound: the send, bind or connect binds first, which takes the daemon a moment.
  const [u1, u2, u3] = [await udpSocket(s), await udpSocket(s), await udpSocket(s)];
  const u4 = await udpSocket(s, P.AF_INET, P.WSA_FLAG_OVERLAPPED);
  s.ws.send(
    frame(
      call('send', 'WSPSendTo', { s: u1, buffers: [new Uint8Array([1])], flags: 0, to, tolen: 16 }),
      call('close1', 'WSPCloseSocket', { s: u1 }),
      call('bind', 'WSPBind', { s: u2, name: ipv4(0), namelen: 16 }),
      call('close2', 'WSPCloseSocket', { s: u2 }),
      call('connect', 'WSPConnect', { s: u3, name: to, namelen: 16 }),
      call('close3', 'WSPCloseSocket', { s: u3 }),
    ),
  );
  const answer = async (id: string): Promise<unknown> => {
    const m = await s.wait((x) => x.id === id);
    return m.error ?? [m.result?.['ret'], m.result?.['errno']];
  };
  t.same(await answer('send'), [0, 0], 'the send before the close: sent');
  t.same(await answer('bind'), [0, 0], 'the bind before the close: bound');
  t.same(await answer('connect'), [0, 0], 'the connect before the close: connected');
  for (const id of ['close1', 'close2', 'close3']) t.same(await answer(id), [0, 0], `${id}: closed`);
  // An overlapped send and spiwire.threadExit for its thread: the send completes at once, so
  // the thread's exit cancels nothing, and says so.
  s.ws.send(
    frame(
      call('ov', 'WSPSendTo', { s: u4, buffers: [new Uint8Array([2])], flags: 0, to, tolen: 16, overlapped: { op: 1, thread: 7 } }),
      call('exit', 'spiwire.threadExit', { thread: 7 }),
    ),
  );
  const ov = await s.wait((x) => x.id === 'ov');
  t.same([ov.result?.['ret'], ov.result?.['completion']], [0, { error: 0, bytes: 1, flags: 0 }], 'the overlapped send completed at once, with success');
  const exit = await s.wait((x) => x.id === 'exit');
  t.same(exit.result, { ret: 0, errno: 0, cancelled: 0 }, 'threadExit cancelled nothing');
  await s.call('WSPCloseSocket', { s: u4 });
  t.not(await within(both, 5000, 'timed out'), 'timed out', 'both datagrams reached the peer');
  t.same(arrived.sort(), [1, 2], 'one of each send');
});

// ---- defect 8: requests without an id count ----

t.test('requests without an id count against maxPendingRequests', async (t) => {
  const d = await daemon(t, { limits: { maxPendingRequests: 10 } });
  const s = await session(t, d.url);
  const u = await udpSocket(s);
  t.equal((await s.call('WSPBind', { s: u, name: ipv4(0), namelen: 16 }))['ret'], 0);
  const boundPort = ((await s.call('WSPGetSockName', { s: u, namelen: 16 }))['name'] as P.SockAddr).port;
  // 50 blocking receives without an id: only 10 may occupy the daemon.
  const notes = [];
  for (let i = 0; i < 50; i++) notes.push({ jsonrpc: '2.0', method: 'WSPRecv', params: { s: u, lengths: [10], flags: 0 } });
  s.ws.send(frame(...notes));
  const m = await s.request('WSPGetSockOpt', { s: u, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }).response;
  t.equal(m.error?.['code'], P.TOO_MANY_REQUESTS, 'with 10 notifications waiting, a request is TOO_MANY_REQUESTS');
  const st = (await (await fetch(`http://127.0.0.1:${d.port}/stats`)).json()) as Record<string, unknown>;
  t.equal(st['pendingRequests'], 10, '/stats counts 10 requests in flight');
  // Datagrams from outside answer them (no reply: they have no id); then requests run again.
  const port = boundPort;
  const sender = dgram.createSocket('udp4');
  t.teardown(() => sender.close());
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => sender.send(Buffer.from([i]), port, '127.0.0.1', () => r()));
  const again = await within(
    (async () => {
      for (let i = 0; i < 200; i++) {
        const r = await s.request('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 }).response;
        if (r.result) return r.result;
        await new Promise((res) => setTimeout(res, 10));
      }
      return null;
    })(),
    5000,
    null,
  );
  t.ok(again && again['errno'] === 0, 'once they are answered, requests run again');
});

t.test('a session whose blocking calls fill maxPendingRequests can still feed its streams, acknowledge and close', async (t) => {
  const d = await daemon(t, { limits: { maxPendingRequests: 3 } });
  const s = await session(t, d.url);
  const peer = await tcpPeer(t);
  // A blocking streamed send takes one of the three places while it runs; its pieces must still
  // be taken, or it would never end (and a dropped piece would leave a hole in the bytes).
  const { h: out, conn } = await connectedSocket(s, peer);
  const data = Buffer.alloc(3000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  // Two blocking receives on another connection take the other two places.
  const idle = await tcpSocket(s);
  await connectTo(s, idle, peer.port);
  await peer.next();
  // (The reply is returned inside an object: an async function would wait for a promise it returns.)
  const waitingRecv = async (): Promise<{ reply: Promise<Msg> }> => {
    const r = s.request('WSPRecv', { s: idle, lengths: [10], flags: 0 }, 10000);
    await s.wait((m) => m.method === 'spiwire.waiting' && m.params?.['id'] === r.id);
    return { reply: r.response };
  };
  const recvs = [await waitingRecv(), await waitingRecv()];
  s.ws.send(
    frame(
      { jsonrpc: '2.0', id: 'streamed', method: 'WSPSend', params: { s: out, buffers: [data.subarray(0, 1000)], flags: 0, stream: 1, total: data.length } },
      { jsonrpc: '2.0', id: 'over', method: 'WSPGetSockOpt', params: { s: out, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } },
      { jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 1, data: data.subarray(1000, 2000) } },
      { jsonrpc: '2.0', method: 'spiwire.sendData', params: { stream: 1, data: data.subarray(2000) } },
    ),
  );
  const over = await s.wait((m) => m.id === 'over');
  t.equal(over.error?.code, P.TOO_MANY_REQUESTS, 'at the limit, an ordinary call is TOO_MANY_REQUESTS');
  const streamed = await s.wait((m) => m.id === 'streamed', 10000);
  t.same([streamed.result?.['ret'], streamed.result?.['bytesSent']], [0, data.length], 'the streamed send got its pieces and ended');
  t.ok((await conn.waitFor(data.length)).equals(data), 'the peer got every byte, in order');
  // Back at the limit with a third receive: WSPCloseSocket still runs, and ends the receives.
  const third = await waitingRecv();
  t.equal((await s.request('WSPGetSockOpt', { s: idle, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 }).response).error?.code, P.TOO_MANY_REQUESTS, 'at the limit again');
  t.same(await s.call('WSPCloseSocket', { s: idle }), { ret: 0, errno: 0 }, 'WSPCloseSocket is not refused');
  for (const m of await Promise.all([...recvs, third].map((r) => r.reply))) t.same([m.result?.['ret'], m.result?.['errno']], [-1, P.WSAEINTR], 'a waiting receive ends with WSAEINTR');
});

t.test('connects racing in one frame (UDP), and a connect queued behind a close (TCP): Winsock answers only', async (t) => {
  const d = await startCli(t, ['--log-level', 'debug']);
  const s = await session(t, d.url);
  const receiver = dgram.createSocket('udp4');
  await new Promise<void>((r) => receiver.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => receiver.close());
  const port = receiver.address().port;
  const u = await udpSocket(s);
  const to = ipv4(port);
  s.ws.send(
    frame(
      { jsonrpc: '2.0', id: 'c1', method: 'WSPConnect', params: { s: u, name: to, namelen: 16 } },
      { jsonrpc: '2.0', id: 'c2', method: 'WSPConnect', params: { s: u, name: to, namelen: 16 } },
      { jsonrpc: '2.0', id: 'c3', method: 'WSPConnect', params: { s: u, name: { family: P.AF_INET, address: '0.0.0.0', port: 0 }, namelen: 16 } },
      { jsonrpc: '2.0', id: 'c4', method: 'WSPConnect', params: { s: u, name: to, namelen: 16 } },
      { jsonrpc: '2.0', id: 'c5', method: 'WSPSend', params: { s: u, buffers: [new Uint8Array([5])], flags: 0 } },
    ),
  );
  for (const id of ['c1', 'c2', 'c3', 'c4']) {
    const m = await s.wait((x) => x.id === id);
    t.same([m.error, m.result?.['ret']], [undefined, 0], `${id}: connect (or dissolve) succeeds`);
  }
  const got = new Promise<Buffer>((r) => receiver.once('message', (b) => r(b)));
  const sent = await s.call('WSPSend', { s: u, buffers: [new Uint8Array([6])], flags: 0 });
  t.equal(sent['ret'], 0, 'the socket is connected to the last peer and sends');
  t.ok((await got).length === 1, 'the peer gets a datagram');

  // TCP: bind, connect and close in one frame: the connect runs after the bind, by then closed.
  const h = await tcpSocket(s);
  s.ws.send(
    frame(
      { jsonrpc: '2.0', id: 't1', method: 'WSPBind', params: { s: h, name: ipv4(0), namelen: 16 } },
      { jsonrpc: '2.0', id: 't2', method: 'WSPConnect', params: { s: h, name: ipv4(port), namelen: 16 } },
      { jsonrpc: '2.0', id: 't3', method: 'WSPCloseSocket', params: { s: h } },
    ),
  );
  const t2 = await s.wait((x) => x.id === 't2');
  t.notOk(t2.error, 'the connect gets a Winsock answer, not a protocol error');
  await s.wait((x) => x.id === 't3');
  await s.call('WSPSocket', { af: P.AF_INET, type: P.SOCK_DGRAM, protocol: 0, g: 0, flags: 0 });
  const loud = d.lines().filter((l) => (l['level'] as number) >= 40 || String(l['msg']).includes('illegal'));
  t.same(loud, [], 'nothing logged above debug, no illegal state move');
});

/**
 * Two sessions for a race to bind one port: A with a UDP socket (for calls that answer at once)
 * and a TCP socket, B with a TCP socket, and a port that was free a moment ago. Whoever's bind
 * runs first gets it.
 */
async function bindRace(t: Test, resumable = false): Promise<{ a: RawSession; b: RawSession; ha: number; ta: number; tb: number; port: number; url: string }> {
  const d = await daemon(t);
  const a = await session(t, resumable ? `${d.url}?resumable=1` : d.url);
  const b = await session(t, d.url);
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return { a, b, ha: await udpSocket(a), ta: await tcpSocket(a), tb: await tcpSocket(b), port, url: d.url };
}

t.test('a frame of thousands of calls lets other sessions in between, and keeps its own order', async (t) => {
  const { a, b, ha, ta, tb, port } = await bindRace(t);
  const big = new P.FrameBuilder();
  for (let i = 0; i < 4000; i++) big.add({ jsonrpc: '2.0', id: `a${i}`, method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_PROTOCOL_INFOW, optlen: 1024 } });
  big.add({ jsonrpc: '2.0', id: 'a-bind', method: 'WSPBind', params: { s: ta, name: ipv4(port), namelen: 16 } });
  a.ws.send(big.finish());
  a.ws.send(frame({ jsonrpc: '2.0', id: 'after', method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }));
  // Once A's frame is being worked through (its first replies are here), B binds the same port.
  await a.wait((m) => m.id === 'a0');
  const bBind = await b.call('WSPBind', { s: tb, name: ipv4(port), namelen: 16 });
  const aBind = await a.wait((m) => m.id === 'a-bind', 20000);
  t.equal(bBind['ret'], 0, 'B\'s bind, sent while A\'s frame was still running, ran before A\'s last call: it got the port');
  t.equal(aBind.result?.['errno'], P.WSAEADDRINUSE, 'A\'s bind, the last call of its frame, found the port taken');
  await a.wait((m) => m.id === 'after');
  // (WSPBind answers later, as calls that wait do: the last call that answers at once is a3999.)
  const lastA = a.messages.findIndex((m) => m.id === 'a3999');
  const after = a.messages.findIndex((m) => m.id === 'after');
  t.ok(lastA >= 0 && after > lastA, 'the next frame of the same session is answered after every call of the big one');
  const ids = a.messages.filter((m) => typeof m.id === 'string' && /^a\d+$/.test(m.id)).map((m) => Number(String(m.id).slice(1)));
  t.same(ids, [...ids].sort((x, y) => x - y), 'the big frame\'s calls are answered in order');
  t.equal(ids.length, 4000, 'every call answered once');
});

t.test('a frame of 1 MiB headers is parsed one record at a time: other sessions get in between', async (t) => {
  const { a, b, ha, ta, tb, port } = await bindRace(t);
  // Fourteen headers of nearly MAX_HEADER_BYTES each (a parameter no method has), between a
  // first call and a bind: parsing them all takes far longer than one turn of the daemon.
  const big = new P.FrameBuilder();
  big.add({ jsonrpc: '2.0', id: 'first', method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } });
  const pad = 'p'.repeat(P.MAX_HEADER_BYTES - 200);
  for (let i = 0; i < 14; i++) big.add({ jsonrpc: '2.0', id: `pad${i}`, method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4, pad } });
  big.add({ jsonrpc: '2.0', id: 'a-bind', method: 'WSPBind', params: { s: ta, name: ipv4(port), namelen: 16 } });
  a.ws.send(big.finish());
  // The first call's answer leaves at the end of the frame's first turn; B binds the same port then.
  await a.wait((m) => m.id === 'first', 20000);
  const bBind = await b.call('WSPBind', { s: tb, name: ipv4(port), namelen: 16 });
  const aBind = await a.wait((m) => m.id === 'a-bind', 20000);
  t.equal(bBind['ret'], 0, 'B\'s bind, sent once A\'s frame had begun, ran before A\'s last call: it got the port');
  t.equal(aBind.result?.['errno'], P.WSAEADDRINUSE, 'A\'s bind, the last call of its frame, found the port taken');
  const padded = a.messages.filter((m) => typeof m.id === 'string' && m.id.startsWith('pad'));
  t.same(padded.map((m) => m.id), Array.from({ length: 14 }, (_, i) => `pad${i}`), 'each padded call answered once, in order');
  t.ok(padded.every((m) => m.error?.code === P.INVALID_PARAMS), 'as INVALID_PARAMS (an unknown parameter)');
});

t.test('a resume replays megabytes of kept replies a slice at a time: other sessions get in between', async (t) => {
  const { a, b, ha, ta, tb, port, url } = await bindRace(t, true);
  const welcome = await a.wait((m) => m.method === 'spiwire.welcome');
  const session = String(welcome.params?.['session']);
  const offer = welcome.params?.['resume'] as { daemonId: string; token: string };
  // About 12 MB of small replies the client never acknowledges: all kept for a resume.
  const FRAMES = 30;
  const CALLS = 4000;
  for (let f = 0; f < FRAMES; f++) {
    const big = new P.FrameBuilder();
    for (let i = 0; i < CALLS; i++) big.add({ jsonrpc: '2.0', id: `g${f * CALLS + i}`, method: 'WSPGetSockOpt', params: { s: ha, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } });
    a.ws.send(big.finish());
  }
  const last = `g${FRAMES * CALLS - 1}`;
  await a.wait((m) => m.id === last, 60000);
  a.ws.terminate();
  await a.closed;
  // The resume, with nothing received: everything is replayed.
  const ws = new WebSocket(`${url}?resume=${session}&daemon=${offer.daemonId}`, [P.SUBPROTOCOL], { perMessageDeflate: false });
  const a2 = new RawSession(ws);
  t.teardown(() => a2.close());
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  // A bind right behind the resume (a client that does not wait for spiwire.resumed): the
  // daemon reads it once the replay is done, never in the middle of it.
  ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'spiwire.resume', params: { session, token: offer.token, received: 0, daemonId: offer.daemonId } }));
  ws.send(frame({ jsonrpc: '2.0', id: 'a-bind', method: 'WSPBind', params: { s: ta, name: ipv4(port), namelen: 16 } }));
  await a2.wait((m) => m.method === 'spiwire.resumed', 20000);
  // Once the replay is under way (its first reply is here), B binds the same port.
  await a2.wait((m) => m.id === 'g0', 20000);
  const bBind = await b.call('WSPBind', { s: tb, name: ipv4(port), namelen: 16 });
  const aBind = await a2.wait((m) => m.id === 'a-bind', 60000);
  t.equal(bBind['ret'], 0, "B's bind, sent while A's replay was under way, ran first: it got the port");
  t.equal(aBind.result?.['errno'], P.WSAEADDRINUSE, "A's bind, sent with the resume, waited for the replay: the port was taken");
  const ids = a2.messages.filter((m) => typeof m.id === 'string' && m.id.startsWith('g')).map((m) => Number(String(m.id).slice(1)));
  t.equal(ids.length, FRAMES * CALLS, 'every kept reply replayed once');
  t.ok(ids.every((id, i) => id === i), 'in order');
  t.ok(a2.messages.findIndex((m) => m.id === 'a-bind') > a2.messages.findIndex((m) => m.id === last), "A's bind answered after the whole replay");
});

/** A client frame with a zero masking key: first byte (FIN and opcode), then the payload (under 64 KiB). */
function clientFrame(first: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length < 126) return Buffer.concat([Buffer.from([first, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
  return Buffer.concat([Buffer.from([first, 0x80 | 126, payload.length >> 8, payload.length & 0xff, 0, 0, 0, 0]), payload]);
}

t.test(`pings in a burst: up to ${P.MAX_PENDING_PONGS} in one write each get their pong; past that the connection is dropped`, async (t) => {
  const log = collectedLog();
  const d = await daemon(t, { logger: log.logger });
  const s = await session(t, d.url);
  let pongs = 0;
  s.ws.on('pong', () => pongs++);
  const burst = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => clientFrame(0x89, Buffer.from(`p${i}`))));
  rawSocketOf(s.ws).write(burst(P.MAX_PENDING_PONGS));
  const h = await udpSocket(s);
  t.ok(h > 0, 'the session answers a call after the burst');
  t.ok(await within(new Promise<void>((r) => { const check = (): void => void (pongs >= P.MAX_PENDING_PONGS ? r() : setImmediate(check)); check(); }), 5000, false) !== false, `${P.MAX_PENDING_PONGS} pings, ${P.MAX_PENDING_PONGS} pongs`);
  t.ok(s.isOpen, 'and the connection stays open');
  // One more than that in one write: the pongs cannot all be written at once.
  const other = await session(t, d.url);
  rawSocketOf(other.ws).write(burst(P.MAX_PENDING_PONGS + 1));
  const closed = await within(other.closed, 5000, null);
  t.equal(closed?.code, 1006, `${P.MAX_PENDING_PONGS + 1} pings in one write: the connection is dropped (1006)`);
  const ended = await until(() => log.lines.some((l) => l['msg'] === 'session ended' && String(l['reason']).includes(`${P.MAX_PENDING_PONGS} pongs unread`)), 5000);
  t.ok(ended, 'the log says why: the client left its pongs unread');
  t.ok((await udpSocket(s)) > 0, 'the first session is untouched');
});

t.test(`a message in more than ${P.MAX_MESSAGE_FRAGMENTS} fragments is closed with 1008; one in exactly that many is a call like any other`, async (t) => {
  const d = await daemon(t);
  const frames = (count: number, message: Buffer): Buffer => {
    // The message's bytes spread over count frames: the first binary, the rest continuations, the last with FIN.
    const out: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const part = i === count - 1 ? message.subarray(i) : message.subarray(i, i + 1);
      out.push(clientFrame((i === 0 ? 0x02 : 0x00) | (i === count - 1 ? 0x80 : 0), part));
    }
    return Buffer.concat(out);
  };
  // A WSPSend on a socket that does not exist, with bytes enough for a byte or more per fragment.
  const call = P.encodeFrame({ jsonrpc: '2.0', id: 'frag', method: 'WSPSend', params: { s: 999, buffers: [new Uint8Array(20_000)], flags: 0 } });
  const message = Buffer.from(call.buffer, call.byteOffset, call.byteLength);
  const ok = await session(t, d.url);
  rawSocketOf(ok.ws).write(frames(P.MAX_MESSAGE_FRAGMENTS, message));
  const reply = await ok.wait((m) => m.id === 'frag', 10000);
  t.equal(reply.result?.['errno'], P.WSAENOTSOCK, `a message in ${P.MAX_MESSAGE_FRAGMENTS} fragments is answered (WSAENOTSOCK)`);
  const tooMany = await session(t, d.url);
  rawSocketOf(tooMany.ws).write(frames(P.MAX_MESSAGE_FRAGMENTS + 1, message));
  const closed = await within(tooMany.closed, 5000, null);
  t.equal(closed?.code, 1008, 'one fragment more: closed with 1008');
});
