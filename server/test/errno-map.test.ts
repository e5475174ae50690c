/**
 * The Node errno -> WSA code table (server/src/errno-map.ts): every row, the default, and errors
 * produced by real loopback sockets rather than hand-made objects.
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import * as W from '@spiwire/proto';
import { DEFAULT_WSA_ERROR, NODE_ERRNO_TO_WSA, classifyBroken, wsaFromNodeError } from '../src/internals.js';
import { closedPort } from './helpers/raw-client.js';

/**
 * The expected value of every row, written out as numbers (Windows values, from
 * ../shared/reference/winsock.md) so that a change to a constant in proto/ cannot move the table
 * along with it. A new row in the table needs a line here too.
 */
const PINNED: Readonly<Record<string, number>> = {
  ECONNRESET: 10054,
  EPIPE: 10054,
  ECONNREFUSED: 10061,
  ECONNABORTED: 10053,
  ETIMEDOUT: 10060,
  EADDRINUSE: 10048,
  EADDRNOTAVAIL: 10049,
  EACCES: 10013,
  EPERM: 10013,
  ENETUNREACH: 10051,
  EHOSTUNREACH: 10065,
  ENETDOWN: 10050,
  ENODEV: 10050,
  ENETRESET: 10052,
  EMSGSIZE: 10040,
  ENOBUFS: 10055,
  ENOMEM: 10055,
  EAGAIN: 10035,
  EWOULDBLOCK: 10035,
  EINPROGRESS: 10036,
  EALREADY: 10037,
  EISCONN: 10056,
  ENOTCONN: 10057,
  ESHUTDOWN: 10058,
  EAFNOSUPPORT: 10047,
  EPROTONOSUPPORT: 10043,
  EOPNOTSUPP: 10045,
  EINVAL: 10022,
  EFAULT: 10014,
  EMFILE: 10024,
  ENFILE: 10024,
  EDESTADDRREQ: 10039,
  EINTR: 10004,
  ERR_STREAM_DESTROYED: 10054,
  ERR_STREAM_WRITE_AFTER_END: 10058,
  ERR_SOCKET_DGRAM_NOT_RUNNING: 10038,
};

/** An Error the way libuv failures arrive in Node: message, code, errno, syscall. */
function nodeError(code: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`${code}: synthetic`);
  e.code = code;
  e.errno = -1;
  e.syscall = 'test';
  return e;
}

t.test('the default is WSAENETDOWN (10050)', async (t) => {
  t.equal(DEFAULT_WSA_ERROR, 10050, 'the Windows value 10050');
  t.equal(DEFAULT_WSA_ERROR, W.WSAENETDOWN, 'proto\'s WSAENETDOWN');
});

t.test('every row of NODE_ERRNO_TO_WSA maps as listed', async (t) => {
  const rows = Object.entries(NODE_ERRNO_TO_WSA);
  t.ok(rows.length >= 30, `the table has ${rows.length} rows`);
  for (const [code, wsa] of rows) {
    t.match(code, /^(E[A-Z0-9]+|ERR_[A-Z0-9_]+)$/, `${code} looks like a Node error code`);
    t.ok(W.wsaError(wsa), `${code} -> ${wsa} is a WSA code in the proto catalogue (${W.wsaErrorName(wsa)})`);
    t.equal(wsaFromNodeError(nodeError(code)), wsa, `an Error with code ${code} maps to ${W.wsaErrorName(wsa)}`);
    t.equal(wsaFromNodeError({ code }), wsa, `a plain { code: ${code} } maps the same`);
  }
});

t.test('the pinned table: every row has its Windows value, and no row is unpinned', async (t) => {
  for (const [code, want] of Object.entries(PINNED)) {
    t.equal(NODE_ERRNO_TO_WSA[code], want, `${code} -> ${want} (${W.wsaErrorName(want)})`);
    t.equal(wsaFromNodeError(nodeError(code)), want, `wsaFromNodeError(${code}) = ${want}`);
  }
  t.same(Object.keys(NODE_ERRNO_TO_WSA).sort(), Object.keys(PINNED).sort(), 'the table and the pinned list name the same codes');
});

t.test('the important rows, spelled out', async (t) => {
  const important: Array<[string, number, string]> = [
    ['ECONNRESET', 10054, 'WSAECONNRESET'],
    ['EPIPE', 10054, 'WSAECONNRESET (Linux reports EPIPE for a send after a reset)'],
    ['ECONNREFUSED', 10061, 'WSAECONNREFUSED'],
    ['EADDRINUSE', 10048, 'WSAEADDRINUSE'],
    ['EADDRNOTAVAIL', 10049, 'WSAEADDRNOTAVAIL'],
    ['EACCES', 10013, 'WSAEACCES'],
    ['EMSGSIZE', 10040, 'WSAEMSGSIZE'],
    ['ETIMEDOUT', 10060, 'WSAETIMEDOUT'],
    ['ENOTCONN', 10057, 'WSAENOTCONN'],
    ['ESHUTDOWN', 10058, 'WSAESHUTDOWN'],
    ['EAGAIN', 10035, 'WSAEWOULDBLOCK'],
    ['ENETUNREACH', 10051, 'WSAENETUNREACH'],
    ['EHOSTUNREACH', 10065, 'WSAEHOSTUNREACH'],
  ];
  for (const [code, want, name] of important) t.equal(wsaFromNodeError(nodeError(code)), want, `${code} -> ${name} ${want}`);
});

t.test('classifyBroken: how a broken connection is told apart, as Windows does (no root, no network)', async (t) => {
  const base = { code: 'ETIMEDOUT', keepAlive: false, unacknowledged: false, interfaceGone: false };
  const rows: Array<[string, Partial<typeof base>, number]> = [
    ['keep-alive probes unanswered, nothing unacknowledged', { keepAlive: true }, W.WSAENETRESET],
    ['retransmissions gave up (data unacknowledged)', { keepAlive: true, unacknowledged: true }, W.WSAECONNABORTED],
    ['a timeout without keep-alive', {}, W.WSAECONNABORTED],
    ['the interface went away, whatever the code', { interfaceGone: true, code: 'ECONNRESET' }, W.WSAENETDOWN],
    ['a reset', { code: 'ECONNRESET' }, W.WSAECONNRESET],
    ['EPIPE (a send after the reset)', { code: 'EPIPE' }, W.WSAECONNRESET],
    ['an unknown code', { code: 'EWHATEVER' }, DEFAULT_WSA_ERROR],
  ];
  for (const [what, over, want] of rows) t.equal(classifyBroken({ ...base, ...over }), want, `${what}: ${want}`);
});

t.test('unknown codes and non-errors give DEFAULT_WSA_ERROR', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['undefined', undefined],
    ['null', null],
    ['a number', 42],
    ['a string naming a code (not an error object)', 'ECONNRESET'],
    ['an empty object', {}],
    ['an Error without code', new Error('plain')],
    ['an unknown code', nodeError('ENOTAREALCODE')],
    ['a lower-case code', { code: 'econnreset' }],
    ['a numeric code', { code: 104 }],
    ['only a numeric errno', { errno: -104 }],
    ['a code that is an Object.prototype key: toString', { code: 'toString' }],
    ['a code that is an Object.prototype key: constructor', { code: 'constructor' }],
    ['a code that is an Object.prototype key: __proto__', { code: '__proto__' }],
    ['a code that is an Object.prototype key: hasOwnProperty', { code: 'hasOwnProperty' }],
    ['a boolean', true],
    ['an array', ['ECONNRESET']],
  ];
  for (const [what, value] of cases) t.equal(wsaFromNodeError(value), DEFAULT_WSA_ERROR, `${what} -> WSAENETDOWN`);
});

// ---- errors from real sockets on loopback ----

function connectError(host: string, port: number): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no error within 5 s'));
    }, 5000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      reject(new Error(`unexpectedly connected to ${host}:${port}`));
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

async function hasIpv6(): Promise<boolean> {
  const srv = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false));
    srv.listen(0, '::1', () => resolve(true));
  });
  if (ok) await new Promise<void>((r) => srv.close(() => r()));
  return ok;
}

t.test('real: connect to a closed loopback port is ECONNREFUSED -> WSAECONNREFUSED', async (t) => {
  const hosts = ['127.0.0.1'];
  if (await hasIpv6()) hosts.push('::1');
  else t.comment('no ::1 on this host; IPv6 case skipped');
  for (const host of hosts) {
    // Bounded retry: another process could take the freed port in between.
    let err: NodeJS.ErrnoException | null = null;
    for (let i = 0; i < 5 && !err; i++) {
      try {
        err = await connectError(host, await closedPort('tcp', host));
      } catch (e) {
        t.comment(`attempt ${i + 1}: ${(e as Error).message}`);
      }
    }
    t.ok(err, `${host}: got a connect error`);
    t.equal(err?.code, 'ECONNREFUSED', `${host}: Node reports ECONNREFUSED`);
    t.equal(wsaFromNodeError(err), W.WSAECONNREFUSED, `${host}: maps to WSAECONNREFUSED 10061`);
  }
});

t.test('real: listening on a port in use is EADDRINUSE -> WSAEADDRINUSE', async (t) => {
  const a = net.createServer();
  await new Promise<void>((r) => a.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => a.close(() => r())));
  const port = (a.address() as net.AddressInfo).port;
  const b = net.createServer();
  const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
    b.once('error', resolve);
    b.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      b.close();
      reject(new Error('second listen succeeded'));
    });
  });
  t.equal(err.code, 'EADDRINUSE', 'Node reports EADDRINUSE');
  t.equal(wsaFromNodeError(err), 10048, 'maps to WSAEADDRINUSE 10048');
});

t.test('real: binding a UDP port in use is EADDRINUSE -> WSAEADDRINUSE', async (t) => {
  const a = dgram.createSocket('udp4');
  await new Promise<void>((r) => a.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => a.close(() => r())));
  const b = dgram.createSocket('udp4');
  const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
    b.once('error', resolve);
    b.bind({ port: a.address().port, address: '127.0.0.1', exclusive: true }, () => reject(new Error('second bind succeeded')));
  });
  b.close();
  t.equal(err.code, 'EADDRINUSE', 'Node reports EADDRINUSE');
  t.equal(wsaFromNodeError(err), W.WSAEADDRINUSE, 'maps to WSAEADDRINUSE');
});

/** A loopback server whose connections are reset as soon as they arrive. */
async function resettingServer(t: Test): Promise<number> {
  const srv = net.createServer((c) => c.resetAndDestroy());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return (srv.address() as net.AddressInfo).port;
}

t.test('real: a peer reset is ECONNRESET (or EPIPE on a write) -> WSAECONNRESET', async (t) => {
  const port = await resettingServer(t);
  const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no error within 5 s'));
    }, 5000);
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e);
    });
    s.on('connect', () => {
      // Keep writing until the reset surfaces; bounded.
      let n = 0;
      const tick = (): void => {
        if (s.destroyed || n++ > 200) return;
        s.write(Buffer.alloc(1024));
        setTimeout(tick, 5);
      };
      tick();
    });
  });
  t.ok(err.code === 'ECONNRESET' || err.code === 'EPIPE', `Node reports ${err.code}`);
  t.equal(wsaFromNodeError(err), W.WSAECONNRESET, 'maps to WSAECONNRESET 10054');
});

t.test('real: a UDP datagram over 65507 bytes is EMSGSIZE -> WSAEMSGSIZE', async (t) => {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    s.send(Buffer.alloc(70000), s.address().port, '127.0.0.1', (e) => resolve(e as NodeJS.ErrnoException | null));
  });
  t.ok(err, 'the send failed');
  t.equal(err?.code, 'EMSGSIZE', 'Node reports EMSGSIZE');
  t.equal(wsaFromNodeError(err), 10040, 'maps to WSAEMSGSIZE 10040');
});

t.test('real: Node stream and dgram codes for sockets that are already gone', async (t) => {
  const srv = net.createServer((c) => c.on('error', () => undefined));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = (srv.address() as net.AddressInfo).port;
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    });

  const ended = await open();
  ended.on('error', () => undefined);
  ended.end();
  const afterEnd = await new Promise<Error | null | undefined>((resolve) => ended.write('x', (e) => resolve(e)));
  t.equal((afterEnd as NodeJS.ErrnoException | null)?.code, 'ERR_STREAM_WRITE_AFTER_END', 'write after end fails with ERR_STREAM_WRITE_AFTER_END');
  t.equal(wsaFromNodeError(afterEnd), W.WSAESHUTDOWN, 'write after end -> WSAESHUTDOWN 10058');
  ended.destroy();

  const destroyed = await open();
  destroyed.on('error', () => undefined);
  destroyed.destroy();
  const afterDestroy = await new Promise<Error | null | undefined>((resolve) => destroyed.write('x', (e) => resolve(e)));
  t.equal((afterDestroy as NodeJS.ErrnoException | null)?.code, 'ERR_STREAM_DESTROYED', 'write after destroy fails with ERR_STREAM_DESTROYED');
  t.equal(wsaFromNodeError(afterDestroy), W.WSAECONNRESET, 'write after destroy -> WSAECONNRESET 10054');

  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => u.close(() => r()));
  let thrown: unknown = null;
  try {
    u.send(Buffer.from('x'), 9, '127.0.0.1');
  } catch (e) {
    thrown = e;
  }
  t.equal((thrown as NodeJS.ErrnoException | null)?.code, 'ERR_SOCKET_DGRAM_NOT_RUNNING', 'send on a closed dgram socket throws ERR_SOCKET_DGRAM_NOT_RUNNING');
  t.equal(wsaFromNodeError(thrown), W.WSAENOTSOCK, 'send on a closed dgram socket -> WSAENOTSOCK 10038');
});
