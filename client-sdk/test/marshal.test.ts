/**
 * Marshalling (src/marshal.ts): WSABUFs gathered and scattered, out parameters, sockaddrs and
 * typed reads of reply fields. Pure functions, tested on plain values.
 */
import t from 'tap';
import * as P from '@spiwire/proto';
import { checkErrno, fieldOf, fillAddr, finish, gather, isCompletion, isOut, isResult, isSockAddr, promised, scatter, setErr, wireAddr } from '../src/marshal.js';
import { out, wsabuf, type SockAddr, type WSABUF } from '../src/types.js';

t.test('gather: the first dwBufferCount WSABUFs, len bytes of each, as views of the caller\'s bytes', async (t) => {
  const a = Buffer.from('hello');
  const b = Buffer.from('world!');
  const got = gather([wsabuf(a, 3), wsabuf(b), wsabuf('never')], 2);
  if (typeof got === 'number') throw new Error(`gather failed with ${got}`);
  t.same(
    got.map((x) => Buffer.from(x).toString()),
    ['hel', 'world!'],
  );
  t.equal(got[0]!.buffer, a.buffer, 'a view, not a copy');
  t.same(gather(null, 0), [], 'no buffers at all is fine with a count of 0');
});

t.test("gather: buffers the caller does not own are WSAEFAULT; a bad count WSAEINVAL or WSAENOBUFS", async (t) => {
  const buf = new Uint8Array(4);
  const cases: Array<[string, readonly WSABUF[] | null, number, number]> = [
    ['a count beyond the array', [{ len: 4, buf }], 2, P.WSAEFAULT],
    ['no array', null, 1, P.WSAEFAULT],
    ['len beyond its buffer', [{ len: 5, buf }], 1, P.WSAEFAULT],
    ['a negative count', [{ len: 4, buf }], -1, P.WSAEINVAL],
    ['a fractional count', [{ len: 4, buf }], 1.5, P.WSAEINVAL],
    ['more than MAX_BUFFER_COUNT', [], P.MAX_BUFFER_COUNT + 1, P.WSAENOBUFS],
  ];
  for (const [what, buffers, count, code] of cases) t.equal(gather(buffers, count), code, what);
  // Values a JavaScript caller can pass where the types say WSABUF (called as plain JavaScript would).
  const junk: unknown[] = [null, 7, { len: 1 }, { len: -1, buf }, { len: 1, buf: [1] }];
  for (const j of junk) t.equal(Reflect.apply(gather, undefined, [[j], 1]), P.WSAEFAULT, `entry ${JSON.stringify(j)}`);
});

t.test('scatter: bytes fill the buffers in order, as far as they go', async (t) => {
  const targets = [new Uint8Array(2), new Uint8Array(3), new Uint8Array(4)];
  scatter(Buffer.from('abcdef'), targets);
  t.same(
    targets.map((x) => Buffer.from(x).toString('latin1')),
    ['ab', 'cde', 'f\0\0\0'],
  );
  const one = [new Uint8Array(2)];
  scatter(Buffer.from('xyz'), one);
  t.equal(Buffer.from(one[0]!).toString(), 'xy', 'more bytes than room: the rest is not written anywhere');
});

t.test('out parameters and lpErrno', async (t) => {
  t.ok(isOut(out(0)));
  t.notOk(isOut(null));
  t.notOk(isOut({}));
  t.notOk(isOut(3));
  t.throws(() => Reflect.apply(checkErrno, undefined, [null]), TypeError, 'no lpErrno is a programming error');
  const e = out(0);
  t.equal(setErr(e, P.WSAEFAULT), P.SOCKET_ERROR);
  t.equal(e.value, P.WSAEFAULT);
  t.equal(setErr(e, P.WSAEINVAL, P.INVALID_SOCKET), P.INVALID_SOCKET);
  const untouched = out(99);
  t.equal(finish({ ret: 5, errno: 0 }, untouched), 5);
  t.equal(untouched.value, 99, 'lpErrno is written only on failure');
  t.equal(finish({ ret: P.SOCKET_ERROR, errno: P.WSAECONNRESET }, untouched), P.SOCKET_ERROR);
  t.equal(untouched.value, P.WSAECONNRESET);
});

t.test('results and their fields', async (t) => {
  t.ok(isResult({ ret: -1, errno: 10054, extra: 'x' }));
  t.notOk(isResult({ ret: 0 }), 'no errno');
  t.notOk(isResult({ ret: 0.5, errno: 0 }), 'ret is an int');
  t.notOk(isResult({ ret: 0, errno: -1 }), 'errno is a u32');
  t.notOk(isResult(null));
  const r = { ret: 0, errno: 0, bytesSent: 7, data: new Uint8Array(1), name: 'x' };
  t.equal(fieldOf(r, 'bytesSent', P.isU32), 7);
  t.equal(fieldOf(r, 'name', P.isU32), undefined, 'a field of the wrong type reads as absent');
  t.equal(fieldOf(r, 'missing', P.isU32), undefined);
  t.ok(isCompletion({ error: 0, bytes: 3, flags: 0 }));
  t.notOk(isCompletion({ error: 0, bytes: 3 }));
});

t.test('sockaddrs: what goes on the wire, what comes back into the caller\'s', async (t) => {
  t.ok(isSockAddr({ family: P.AF_INET, address: '127.0.0.1', port: 80 }));
  t.notOk(isSockAddr({ family: P.AF_INET, address: '127.0.0.1' }));
  t.notOk(isSockAddr('127.0.0.1:80'));
  const mine = { family: P.AF_INET6, address: '::1', port: 9, flowinfo: 1, scopeId: 2, note: 'kept out' };
  t.same(wireAddr(mine), { family: P.AF_INET6, address: '::1', port: 9, flowinfo: 1, scopeId: 2 }, 'only sockaddr fields go on the wire');
  t.same(wireAddr({ family: P.AF_INET, address: '1.2.3.4', port: 1 }), { family: P.AF_INET, address: '1.2.3.4', port: 1 });
  const target: SockAddr = { family: P.AF_INET6, address: '::', port: 0, flowinfo: 5, scopeId: 5 };
  fillAddr(target, { family: P.AF_INET, address: '10.0.0.1', port: 443 });
  t.same(target, { family: P.AF_INET, address: '10.0.0.1', port: 443 }, 'an IPv4 address leaves no IPv6 fields');
  fillAddr(target, { family: P.AF_INET6, address: '::2', port: 1 });
  t.same(target, { family: P.AF_INET6, address: '::2', port: 1, flowinfo: 0, scopeId: 0 }, 'an IPv6 address has both, 0 when absent');
  t.equal(P.sockaddrSize(P.AF_INET), P.SOCKADDR_IN_SIZE);
  t.equal(P.sockaddrSize(P.AF_INET6), P.SOCKADDR_IN6_SIZE);
});

t.test('promised: a value becomes a promise, a throw a rejection', async (t) => {
  t.equal(await promised(() => 3), 3);
  t.equal(await promised(() => Promise.resolve(4)), 4);
  const boom = new TypeError('boom');
  await t.rejects(
    promised(() => {
      throw boom;
    }),
    boom,
  );
});
