/**
 * Scenario 1, the frame fuzzer: what a hostile or broken client can send, seeded so that every
 * finding replays with the same --seed.
 *
 * Each round opens an attacker session with real sockets (a TCP connection to a loopback sink, an
 * overlapped one, a bound UDP socket, a listener, fresh unbound sockets) and sends batches of
 * frames built per proto/README.md for every method in P.METHODS: valid binary frames (JSON and
 * compact headers) and text frames, then the same mutated: bit flips, truncation, wrong declared
 * lengths, wrong types, deep nesting, huge numbers, invalid UTF-8, duplicate ids, notifications,
 * several records per frame (two WSPBind on one UDP socket, close then use, ...), random sockaddrs.
 * Between batches it runs option scripts: WSPSetSockOpt with random levels, names and values, then
 * WSPConnect or WSPAccept against real loopback peers, since options are applied when a
 * connection comes up. A sentinel call closes each batch: the daemon handles frames in order, so
 * its answer means the batch was read.
 *
 * Every reply must be a documented error or a normal result; an INTERNAL_ERROR or an undocumented
 * reply is a defect, and so is the daemon exiting. Every destination is on loopback and every port
 * is one of the campaign's own (or 0): the daemon also runs with --allow 127.0.0.0/8,[::1], and
 * byte mutations are only applied to frames that hold no address.
 */
import * as net from 'node:net';
import * as P from '@spiwire/proto';
import { Arena, type Options, type Row } from '../lib/arena.js';
import { BOUNDS } from '../lib/report.js';
import { canListen, freePort, TcpPeer, UdpPeer } from '../lib/peers.js';
import { Rng } from '../lib/rng.js';
import * as S from '../lib/spi.js';
import type { Msg } from '../lib/replies.js';
import { EXPECTED_ATTACKER_CLOSES } from '../lib/replies.js';
import { Wire } from '../lib/wire.js';
import { sleep, within } from '../lib/util.js';

const BUDGET = {
  quick: { frames: 10_000, ms: 30_000, perRound: 2000, batch: 100, scriptsPerRound: 4 },
  full: { frames: 200_000, ms: 900_000, perRound: 5000, batch: 200, scriptsPerRound: 12 },
};

interface Env {
  sink: TcpPeer;
  sink6: TcpPeer | null;
  udpSink: UdpPeer;
  closedPort: number;
  has6: boolean;
}

interface Fixture {
  tcp: number | null;
  tcpOv: number | null;
  udp: number | null;
  listener: { s: number; port: number } | null;
  freshUdp: number[];
  freshTcp: number[];
  handles: number[];
}

type Frame = { payload: Uint8Array | string; binary: boolean; label: string };

const SOL_OPTS = [P.SO_SNDTIMEO, P.SO_RCVTIMEO, P.SO_DEBUG, P.SO_ACCEPTCONN, P.SO_REUSEADDR, P.SO_KEEPALIVE, P.SO_DONTROUTE, P.SO_BROADCAST, P.SO_LINGER, P.SO_OOBINLINE, P.SO_SNDBUF, P.SO_RCVBUF, P.SO_ERROR, P.SO_TYPE, P.SO_MAX_MSG_SIZE, P.SO_PROTOCOL_INFOA, P.SO_PROTOCOL_INFOW, P.SO_SPIWIRE_SEND_POLICY, P.SO_EXCLUSIVEADDRUSE, P.SO_DONTLINGER, P.SO_CONNECT_TIME];
const TCP_OPTS = [P.TCP_NODELAY, P.TCP_KEEPIDLE, P.TCP_MAXRT, P.TCP_KEEPCNT, P.TCP_KEEPINTVL];

/** An option name of the level: the options spiwire knows there. */
function optionFor(level: number, r: Rng): number {
  if (level === P.IPPROTO_TCP) return r.pick(TCP_OPTS);
  if (level === P.IPPROTO_IPV6) return r.pick([P.IPV6_V6ONLY, P.IPV6_UNICAST_HOPS, P.IPV6_DONTFRAG, P.IPV6_MULTICAST_HOPS, P.IPV6_MULTICAST_LOOP, P.IPV6_MULTICAST_IF, P.IP_PKTINFO]);
  if (level === P.IPPROTO_IP) return r.pick([P.IP_TTL, P.IP_TOS, P.IP_DONTFRAGMENT, P.IP_MULTICAST_TTL, P.IP_MULTICAST_LOOP, P.IP_HDRINCL, P.IP_MULTICAST_IF, P.IP_PKTINFO]);
  return r.pick(SOL_OPTS);
}
const DWORDS = [0, 1, 2, 5, 60, 3000, 65536, 3_000_000, 0x7fffffff, 0x80000000, 0xffffffff];
const IOCTLS = [P.FIONBIO, P.FIONREAD, P.SIOCATMARK, P.SIO_FLUSH, P.SIO_KEEPALIVE_VALS];
const WRONG: unknown[] = [null, true, false, 'str', '', -1, 1.5, 2 ** 32, 2 ** 53, -(2 ** 53), 1e308, [], {}, [1, 2], [null], { $b: 'x' }, { $b: [0, 1] }, { $base64: 'AAAA' }, 'x'.repeat(70000), { a: { b: { c: [] } } }];
/** Method names that are not methods, some of them traps for a lookup in a plain object. */
const NOT_METHODS = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'spiwire.welcome', 'spiwire.completion', 'spiwire.networkEvents', 'wspsend', 'WSPSend ', '', 'WSPStartup', 'x'.repeat(5000)];

class FrameGen {
  op = 1;
  /** Frames that are broken on purpose (all but the valid, text, compact and notification kinds). */
  malformed = 0;
  private n = 0;
  private readonly socketRequests = new Set<string>();
  readonly coverage: Record<string, number> = {};

  constructor(
    private readonly rng: Rng,
    private readonly env: Env,
    private fx: Fixture,
    private readonly w: Wire,
  ) {
    // Sockets made by fuzzed WSPSocket calls join the pool of handles.
    w.onResponse = (m: Msg) => {
      const key = String(m.id);
      if (!this.socketRequests.delete(key)) return;
      const ret = m.result?.['ret'];
      if (typeof ret === 'number' && ret > 0 && this.fx.handles.length < 64) this.fx.handles.push(ret);
    };
  }

  private id(): string {
    return `f${++this.n}`;
  }

  handle(): number {
    const r = this.rng;
    return r.chance(0.88) ? r.pick(this.fx.handles.length ? this.fx.handles : [1]) : r.pick([0, 1, 4, 255, 256, 0xfffffffc, 0xffffffff, r.u32()]);
  }

  /** A sockaddr: loopback, any, malformed or of the wrong family, to one of the campaign's ports or 0. */
  addr(): Record<string, unknown> {
    const r = this.rng;
    const family = r.weighted<number>([
      [8, P.AF_INET],
      [6, P.AF_INET6],
      [1, 0],
      [1, 1],
      [1, 65535],
    ]);
    const v4 = ['127.0.0.1', '127.0.0.2', '127.255.255.254', '0.0.0.0', '127.0.0.1%x', '127.0.0.1%lo', '127.1', '0x7f.0.0.1', '2130706433', ' 127.0.0.1', '127.0.0.1 '];
    const v6 = ['::1', '::', '0::', '::0:0', '::ffff:127.0.0.1', '::ffff:7f00:1', '::1%1', '::1%lo', '::1%x', '::ffff:127.0.0.1%0', '0:0:0:0:0:0:0:1'];
    const junk = ['', 'localhost', 'not-an-address', '1.2.3.4.5', '::g', '%', '::%', '127.0.0.1\u0000', 'é', 'x'.repeat(65), '[::1]'];
    const address = r.weighted<string>([
      [6, r.pick(family === P.AF_INET6 ? v6 : v4)],
      [2, r.pick(family === P.AF_INET6 ? v4 : v6)],
      [2, r.pick(junk)],
    ]);
    const ports = [0, this.env.sink.port, this.env.udpSink.port, this.env.closedPort, this.fx.listener?.port ?? 0];
    const a: Record<string, unknown> = { family, address, port: r.chance(0.95) ? r.pick(ports) : r.pick([-1, 65536, 1.5, '80', null]) };
    if (r.chance(0.3)) a['scopeId'] = r.pick([0, 1, 2, 0xffffffff, r.u32(), -1]);
    if (r.chance(0.2)) a['flowinfo'] = r.pick([0, 1, 0xffffffff, r.u32()]);
    if (r.chance(0.05)) a['extra'] = 1;
    if (r.chance(0.03)) delete a['port'];
    return a;
  }

  /** A loopback sockaddr of the given family that goes to one of the campaign's peers. */
  peerAddr(family: number, udp: boolean): P.SockAddr {
    const port = udp ? this.env.udpSink.port : this.env.sink.port;
    return family === P.AF_INET6 && this.env.has6 ? S.v6(udp ? port : (this.env.sink6?.port ?? port)) : S.v4(port);
  }

  overlapped(): unknown {
    const r = this.rng;
    if (r.chance(0.6)) return undefined;
    return r.weighted<unknown>([
      [10, { op: this.op++, thread: r.int(4) }],
      [1, { op: Math.max(1, this.op - 1), thread: 1 }], // likely still in use
      [1, null],
      [1, { op: r.u32(), thread: r.u32() }],
      [1, { op: 1 }],
    ]);
  }

  bytes(): Uint8Array {
    const r = this.rng;
    return r.weighted<Uint8Array>([
      [8, r.bytes(r.int(64))],
      [2, Buffer.alloc(0)],
      [2, Buffer.from([1, 0, 0, 0])],
      [1, Buffer.alloc(r.pick([1024, 65536]), 0x41)],
    ]);
  }

  /** Plausible params for method: right types, handles of this session, values near the edges. */
  validParams(method: string): Record<string, unknown> {
    const r = this.rng;
    const s = this.handle();
    const ov = this.overlapped();
    const withOv = (p: Record<string, unknown>): Record<string, unknown> => (ov === undefined ? p : { ...p, overlapped: ov });
    switch (method) {
      case 'WSPSocket':
        return { af: r.pick([P.AF_INET, P.AF_INET6, 0, 1, 17]), type: r.pick([1, 2, 3, 0]), protocol: r.pick([0, 6, 17, 41]), g: r.pick([0, 0, 1]), flags: r.pick([0, 1, 0xff]) };
      case 'WSPBind': {
        const name = r.chance(0.7) ? (r.chance(0.5) ? S.v4(0, r.pick(['127.0.0.1', '0.0.0.0'])) : S.v6(0, r.pick(['::1', '::']))) : this.addr();
        return { s, name, namelen: r.pick([16, 28, 0, 15, 27, 1000]) };
      }
      case 'WSPListen':
        return { s, backlog: r.pick([0, 1, 5, 200, 201, -1, 0x7fffffff]) };
      case 'WSPAccept':
        return { s };
      case 'WSPConnect': {
        const name = r.chance(0.6) ? this.peerAddr(r.pick([P.AF_INET, P.AF_INET6]), r.chance(0.3)) : this.addr();
        return { s, name, namelen: r.pick([16, 28, 28, 0, 15]) };
      }
      case 'WSPSend':
        return withOv({ s, buffers: Array.from({ length: r.int(4) }, () => this.bytes()), flags: r.pick([0, 0, 0, P.MSG_DONTROUTE, P.MSG_OOB, P.MSG_PARTIAL, P.MSG_PEEK, r.u32()]) });
      case 'WSPSendTo': {
        const to = r.chance(0.2) ? null : r.chance(0.6) ? this.peerAddr(r.pick([P.AF_INET, P.AF_INET6]), true) : this.addr();
        return withOv({ s, buffers: Array.from({ length: r.int(3) }, () => this.bytes()), flags: r.pick([0, 0, P.MSG_DONTROUTE, P.MSG_OOB]), to, tolen: r.pick([16, 28, 0, 15]) });
      }
      case 'WSPRecv':
      case 'WSPRecvFrom':
        // Blocking receives on the sink connection wait for good: bounded by the round, which ends the session.
        return withOv({ s, lengths: Array.from({ length: r.int(3) }, () => r.pick([0, 1, 16, 65536, 0xffffffff])), flags: r.weighted<number>([
          [8, 0],
          [2, P.MSG_PEEK],
          [1, P.MSG_WAITALL],
          [1, P.MSG_OOB],
          [1, r.u32()],
        ]) });
      case 'WSPShutdown':
        return { s, how: r.pick([0, 1, 2, 3, -1]) };
      case 'WSPCloseSocket':
        // Mostly sockets the fuzzer made itself, so the fixtures last the round.
        return { s: r.chance(0.8) && this.fx.handles.length > 8 ? this.fx.handles[8 + r.int(this.fx.handles.length - 8)]! : s };
      case 'WSPGetSockName':
      case 'WSPGetPeerName':
        return { s, namelen: r.pick([0, 15, 16, 27, 28, -1, 1000]) };
      case 'WSPIoctl':
        return withOv({ s, code: r.chance(0.85) ? r.pick(IOCTLS) : r.u32(), input: r.chance(0.5) ? Buffer.from([r.int(2), 0, 0, 0]) : r.bytes(r.int(16)), outputLength: r.pick([0, 4, 8, 1 << 20, 0xffffffff]) });
      case 'WSPSetSockOpt': {
        const level = r.pick([P.SOL_SOCKET, P.SOL_SOCKET, P.IPPROTO_TCP, 0, 41, r.u32() | 0]);
        const optname = r.chance(0.9) ? optionFor(level, r) : r.u32() | 0;
        const optval = r.chance(0.1) ? null : r.chance(0.8) ? S.dword(r.chance(0.8) ? r.pick(DWORDS) : r.u32()) : r.bytes(r.int(9));
        return { s, level, optname, optval, optlen: r.chance(0.8) ? (optval?.length ?? 0) : r.pick([0, 2, 4, 8, -1, 1 << 20]) };
      }
      case 'WSPGetSockOpt': {
        const level = r.pick([P.SOL_SOCKET, P.SOL_SOCKET, P.IPPROTO_TCP, 0, 41, r.u32() | 0]);
        const optname = r.chance(0.9) ? optionFor(level, r) : r.u32() | 0;
        return { s, level, optname, optlen: r.pick([0, 1, 4, 4, 628, 1 << 20, -1]) };
      }
      case 'WSPEventSelect':
        return { s, events: r.pick([0, P.FD_READ, P.FD_WRITE | P.FD_CLOSE, 0x3f, 0x40, r.u32()]) };
      case 'WSPSelect': {
        // Sets of this session's handles (now and then another number), and timeouts from none
        // (a wait for good, bounded by the round, which ends the session) to negative ones.
        const set = (): number[] | null => (r.chance(0.25) ? null : Array.from({ length: r.int(6) }, () => (r.chance(0.9) ? this.handle() : r.u32())));
        const timeout = r.weighted<unknown>([
          [3, { sec: 0, usec: 0 }],
          [3, { sec: 0, usec: r.int(20_000) }],
          [1, null],
          [1, { sec: r.pick([-1, 0x7fffffff]), usec: r.pick([0, -1, 0x7fffffff]) }],
        ]);
        return { readfds: set(), writefds: set(), exceptfds: set(), timeout };
      }
      case 'spiwire.threadExit':
        return { thread: r.pick([0, 1, 2, 3, r.u32()]) };
      default:
        return {};
    }
  }

  /** The next method, round-robin over P.METHODS with random ones in between, so each gets its share. */
  private method(): string {
    const names = Object.keys(P.METHODS);
    const m = this.rng.chance(0.5) ? names[this.n % names.length]! : this.rng.pick(names);
    this.coverage[m] = (this.coverage[m] ?? 0) + 1;
    return m;
  }

  private request(method: string, params: Record<string, unknown>, id: unknown = this.id()): Record<string, unknown> {
    const msg: Record<string, unknown> = { jsonrpc: '2.0', method, params };
    if (id !== undefined) {
      msg['id'] = id;
      this.w.track(id, method);
      if (method === 'WSPSocket') this.socketRequests.add(String(id));
    }
    return msg;
  }

  private bin(msg: object, label: string): Frame {
    return { payload: P.encodeFrame(msg), binary: true, label };
  }

  /** A valid request for a method without addresses: the base for byte mutations. */
  private addressless(): Record<string, unknown> {
    const m = this.rng.pick(['WSPSend', 'WSPRecv', 'WSPGetSockName', 'WSPGetPeerName', 'WSPIoctl', 'WSPSetSockOpt', 'WSPGetSockOpt', 'WSPListen', 'WSPShutdown', 'WSPEventSelect', 'spiwire.threadExit', 'WSPSocket']);
    return this.request(m, this.validParams(m));
  }

  next(): Frame {
    const r = this.rng;
    const kind = r.weighted<string>([
      [20, 'valid'],
      [6, 'text'],
      [6, 'compact'],
      [6, 'notification'],
      [10, 'wrong-type'],
      [15, 'mutated'],
      [4, 'mutated-compact'],
      [5, 'huge-numbers'],
      [4, 'deep-nesting'],
      [3, 'bad-utf8-header'],
      [5, 'duplicate-ids'],
      [8, 'multi-record'],
      [8, 'sockaddr'],
      [3, 'garbage'],
      [3, 'unknown-method'],
    ]);
    if (!['valid', 'text', 'compact', 'notification'].includes(kind)) this.malformed++;
    switch (kind) {
      case 'valid': {
        const m = this.method();
        return this.bin(this.request(m, this.validParams(m)), `valid ${m}`);
      }
      case 'text': {
        const m = this.method();
        return { payload: P.encodeText(this.request(m, this.validParams(m))), binary: false, label: `text ${m}` };
      }
      case 'compact':
        return this.compact();
      case 'notification': {
        const m = this.method();
        return this.bin(this.request(m, this.validParams(m), undefined), `notification ${m}`);
      }
      case 'wrong-type':
        return this.wrongType();
      case 'mutated':
        return { payload: this.mutate(P.encodeFrame(this.addressless())), binary: true, label: 'mutated frame' };
      case 'mutated-compact':
        return this.mutatedCompact();
      case 'huge-numbers':
        return this.hugeNumbers();
      case 'deep-nesting':
        return this.deepNesting();
      case 'bad-utf8-header':
        return this.badUtf8Header();
      case 'duplicate-ids':
        return this.duplicateIds();
      case 'multi-record':
        return this.multiRecord();
      case 'sockaddr': {
        const m = r.pick(['WSPConnect', 'WSPBind', 'WSPSendTo']);
        const p = this.validParams(m);
        p[m === 'WSPSendTo' ? 'to' : 'name'] = this.addr();
        return this.bin(this.request(m, p), `sockaddr ${m}`);
      }
      case 'garbage':
        return r.chance(0.5) ? { payload: r.bytes(r.int(600)), binary: true, label: 'random bytes' } : { payload: r.pick(['', ' ', 'null', '1', '"x"', '[]', '{}', 'true', '[{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":{}}]', '{"jsonrpc":"1.0","id":1,"method":"WSPSocket"}', '{"jsonrpc":"2.0","id":1}', '{"jsonrpc":"2.0","method":7}', '{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":[]}', '{"jsonrpc":"2.0","id":1,"method":"WSPSocket","params":"x"}']), binary: false, label: 'garbage text' };
      default: {
        const method = r.chance(0.6) ? r.pick(NOT_METHODS) : r.bytes(1 + r.int(12)).toString('hex');
        return this.bin(this.request(method, r.chance(0.5) ? {} : { s: 1, anything: [1, 2, 3] }), `unknown method ${method.slice(0, 20)}`);
      }
    }
  }

  private compact(): Frame {
    const r = this.rng;
    const b = new P.FrameBuilder();
    b.compact = true;
    const count = 1 + (r.chance(0.3) ? r.int(6) : 0);
    for (let i = 0; i < count; i++) {
      const id = r.chance(0.9) ? 1_000_000 + (++this.n % 1_000_000) : r.pick([0, 0xffffffff]);
      this.w.track(id, 'compact WSPSend');
      const params: Record<string, unknown> = { s: this.handle(), buffers: Array.from({ length: r.int(4) }, () => this.bytes()), flags: r.pick([0, 0, P.MSG_DONTROUTE, P.MSG_OOB]) };
      if (r.chance(0.3)) params['overlapped'] = { op: this.op++, thread: r.int(4) };
      b.add({ jsonrpc: '2.0', id, method: 'WSPSend', params });
    }
    return { payload: b.finish(), binary: true, label: 'compact WSPSend' };
  }

  /** A compact header written by hand with a wrong kind, flags, count, size or data. */
  private mutatedCompact(): Frame {
    const r = this.rng;
    const n = r.int(4);
    const hasOv = r.chance(0.4);
    const header = Buffer.alloc(16 + (hasOv ? 8 : 0) + 4 * n);
    header[0] = r.chance(0.7) ? 1 : r.pick([0, 2, 3, 4, 8, 0xff]);
    header[1] = hasOv ? 1 : r.pick([0, 0, 2, 0xff]);
    header.writeUInt16LE(r.chance(0.8) ? n : r.pick([0, 1024, 1025, 0xffff]), 2);
    header.writeUInt32LE(2_000_000 + r.int(1000), 4);
    header.writeUInt32LE(this.handle() >>> 0, 8);
    header.writeUInt32LE(r.pick([0, 0, 1, 4, 0xffffffff]), 12);
    let at = 16;
    if (hasOv) {
      header.writeUInt32LE(this.op++, at);
      header.writeUInt32LE(r.int(4), at + 4);
      at += 8;
    }
    let total = 0;
    for (let i = 0; i < n; i++, at += 4) {
      const len = r.int(40);
      total += len;
      header.writeUInt32LE(len, at);
    }
    const data = r.bytes(r.chance(0.8) ? total : r.int(80));
    const cut = r.chance(0.2) ? header.subarray(0, r.int(header.length)) : header;
    return { payload: record(cut, data), binary: true, label: 'hand-made compact header' };
  }

  private wrongType(): Frame {
    const r = this.rng;
    const m = this.method();
    const p = this.validParams(m);
    const keys = Object.keys(P.METHOD_SPECS[m]!.params);
    const k = r.pick(keys.length ? keys : ['s']);
    if (r.chance(0.15)) delete p[k];
    else p[k] = r.pick(WRONG);
    if (r.chance(0.1)) p[r.pick(['extra', 'S', 'toString', '__proto__', 'constructor'])] = 1;
    const msg = this.request(m, p);
    if (r.chance(0.1)) msg['jsonrpc'] = r.pick(['1.0', 2, null]);
    if (r.chance(0.1)) msg['id'] = r.pick([1.5, -0.5, {}, [], true, null]);
    if (r.chance(0.1)) msg['params'] = r.pick([[], 'x', 7, null]);
    return this.bin(msg, `wrong type ${m}.${k}`);
  }

  /** Numbers that do not fit, written as raw JSON text (JSON.stringify could not write most of them). */
  private hugeNumbers(): Frame {
    const r = this.rng;
    const big = (): string => r.pick(['1e400', '-1e400', '1e308', '4294967296', '18446744073709551616', '9007199254740993', '-0', '1e-400', '4.0', '0.5', '-2147483649', '2147483648', '123456789012345678901234567890']);
    const m = r.pick(['WSPGetSockName', 'WSPSocket', 'WSPSend', 'WSPRecv', 'WSPSetSockOpt', 'WSPIoctl']);
    const id = `"h${++this.n}"`;
    this.w.track(`h${this.n}`, `huge numbers ${m}`);
    const idText = r.chance(0.3) ? big() : id;
    let params: string;
    switch (m) {
      case 'WSPSocket':
        params = `{"af":${big()},"type":1,"protocol":0,"g":${big()},"flags":0}`;
        break;
      case 'WSPSend':
        params = `{"s":${this.handle()},"buffers":[{"$b":[${big()},${big()}]}],"flags":${big()},"overlapped":{"op":${big()},"thread":0}}`;
        break;
      case 'WSPRecv':
        params = `{"s":${this.handle()},"lengths":[${big()},${big()}],"flags":0}`;
        break;
      case 'WSPSetSockOpt':
        params = `{"s":${this.handle()},"level":${big()},"optname":${big()},"optval":null,"optlen":${big()}}`;
        break;
      case 'WSPIoctl':
        params = `{"s":${this.handle()},"code":${big()},"input":{"$b":[0,0]},"outputLength":${big()}}`;
        break;
      default:
        params = `{"s":${big()},"namelen":${big()}}`;
    }
    return { payload: record(`{"jsonrpc":"2.0","id":${idText},"method":"${m}","params":${params}}`, Buffer.alloc(8)), binary: true, label: `huge numbers ${m}` };
  }

  private deepNesting(): Frame {
    const r = this.rng;
    const depth = r.pick([13, 14, 15, 16, 17, 64, 1000, 100_000]);
    const inner = `${'['.repeat(depth)}1${']'.repeat(depth)}`;
    const id = `d${++this.n}`;
    this.w.track(id, `nesting ${depth}`);
    const text = `{"jsonrpc":"2.0","id":"${id}","method":"WSPGetSockOpt","params":{"s":${this.handle()},"level":65535,"optname":4097,"optlen":4,"x":${inner}}}`;
    if (r.chance(0.3)) return { payload: text, binary: false, label: `text nesting ${depth}` };
    if (r.chance(0.3)) {
      // A byte string deep down: the reference itself counts two levels.
      const d2 = r.pick([10, 11, 12, 13, 14]);
      const deepBuf = `${'['.repeat(d2)}{"$b":[0,4]}${']'.repeat(d2)}`;
      return { payload: record(`{"jsonrpc":"2.0","id":"${id}","method":"WSPSend","params":{"s":${this.handle()},"buffers":${deepBuf},"flags":0}}`, Buffer.alloc(4, 0x41)), binary: true, label: `byte string at depth ${d2}` };
    }
    return { payload: record(text), binary: true, label: `nesting ${depth}` };
  }

  private badUtf8Header(): Frame {
    const r = this.rng;
    const good = Buffer.from(`{"jsonrpc":"2.0","id":"u${++this.n}","method":"WSPGetSockName","params":{"s":${this.handle()},"namelen":16}}`);
    const bad = r.pick([Buffer.from([0xff]), Buffer.from([0xc0, 0xaf]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe2, 0x82]), Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]), Buffer.from([0x80])]);
    const at = 1 + r.int(good.length - 2);
    return { payload: record(Buffer.concat([good.subarray(0, at), bad, good.subarray(at)])), binary: true, label: 'invalid UTF-8 in a header' };
  }

  private duplicateIds(): Frame {
    const r = this.rng;
    const id = r.chance(0.5) ? `dup${r.int(4)}` : r.int(4);
    const b = new P.FrameBuilder();
    // A call that blocks (a receive on the sink connection, an accept on the listener) keeps its id in use.
    const blocking = (): Record<string, unknown> =>
      r.chance(0.5) && this.fx.tcp !== null ? { jsonrpc: '2.0', id, method: 'WSPRecv', params: { s: this.fx.tcp, lengths: [16], flags: 0 } } : { jsonrpc: '2.0', id, method: 'WSPAccept', params: { s: this.fx.listener?.s ?? this.handle() } };
    this.w.track(id, 'duplicate id');
    b.add(blocking());
    b.add(r.chance(0.5) ? blocking() : { jsonrpc: '2.0', id, method: 'WSPGetSockName', params: { s: this.handle(), namelen: 16 } });
    return { payload: b.finish(), binary: true, label: 'duplicate ids' };
  }

  /** Several records in one frame, including pairs that race inside the daemon. */
  private multiRecord(): Frame {
    const r = this.rng;
    const b = new P.FrameBuilder();
    const add = (m: string, p: Record<string, unknown>, notification = false): void => b.add(this.request(m, p, notification ? undefined : this.id()));
    const pair = r.int(7);
    let label = 'several records';
    const fresh = (list: number[]): number => list.pop() ?? this.handle();
    switch (pair) {
      case 0: {
        const u = fresh(this.fx.freshUdp);
        add('WSPBind', { s: u, name: S.v4(0), namelen: 16 });
        add('WSPBind', { s: u, name: S.v4(0), namelen: 16 }, r.chance(0.3));
        label = 'two WSPBind on one UDP socket in one frame';
        break;
      }
      case 1: {
        const t = fresh(this.fx.freshTcp);
        add('WSPBind', { s: t, name: S.v4(0), namelen: 16 });
        add('WSPBind', { s: t, name: S.v4(0), namelen: 16 });
        add('WSPListen', { s: t, backlog: 4 });
        add('WSPListen', { s: t, backlog: 4 });
        label = 'two WSPBind and two WSPListen on one TCP socket in one frame';
        break;
      }
      case 2: {
        const t = fresh(this.fx.freshTcp);
        add('WSPConnect', { s: t, name: this.peerAddr(P.AF_INET, false), namelen: 16 });
        add('WSPConnect', { s: t, name: this.peerAddr(P.AF_INET, false), namelen: 16 });
        add('WSPSend', { s: t, buffers: [Buffer.from('early')], flags: 0 });
        label = 'two WSPConnect and a WSPSend on one TCP socket in one frame';
        break;
      }
      case 3: {
        const u = fresh(this.fx.freshUdp);
        add('WSPConnect', { s: u, name: this.peerAddr(P.AF_INET, true), namelen: 16 });
        add('WSPSendTo', { s: u, buffers: [Buffer.from('x')], flags: 0, to: this.peerAddr(P.AF_INET, true), tolen: 16 });
        add('WSPConnect', { s: u, name: S.v4(0, '0.0.0.0'), namelen: 16 });
        add('WSPRecv', { s: u, lengths: [8], flags: 0 }, true);
        label = 'UDP connect, send, dissolve and receive in one frame';
        break;
      }
      case 4: {
        const s = this.handle();
        add('WSPCloseSocket', { s });
        add(r.pick(['WSPSend', 'WSPRecv', 'WSPGetSockName', 'WSPCloseSocket']), r.chance(0.5) ? { s } : this.validParams('WSPRecv'));
        label = 'close then use in one frame';
        break;
      }
      case 5: {
        const u = fresh(this.fx.freshUdp);
        add('WSPSendTo', { s: u, buffers: [Buffer.from('a')], flags: 0, to: this.peerAddr(P.AF_INET, true), tolen: 16 });
        add('WSPSendTo', { s: u, buffers: [Buffer.from('b')], flags: 0, to: this.peerAddr(P.AF_INET, true), tolen: 16 });
        add('WSPBind', { s: u, name: S.v4(0), namelen: 16 });
        label = 'two auto-binding WSPSendTo and a WSPBind on one UDP socket in one frame';
        break;
      }
      default: {
        for (let i = 0, k = 2 + r.int(7); i < k; i++) {
          const m = this.method();
          add(m, this.validParams(m), r.chance(0.2));
        }
      }
    }
    return { payload: b.finish(), binary: true, label };
  }

  private mutate(frame: Uint8Array): Buffer {
    const r = this.rng;
    const b = Buffer.from(frame);
    switch (r.int(9)) {
      case 0: // bit flips
        for (let i = 0, k = 1 + r.int(8); i < k; i++) b[r.int(b.length)] ^= 1 << r.int(8);
        return b;
      case 1: // random bytes set
        for (let i = 0, k = 1 + r.int(4); i < k; i++) b[r.int(b.length)] = r.u32() & 0xff;
        return b;
      case 2:
        return b.subarray(0, r.int(b.length)); // truncated
      case 3:
        return Buffer.concat([b, r.bytes(1 + r.int(16))]); // trailing garbage
      case 4: {
        // A wrong declared header length.
        b.writeUInt32LE(r.pick([0, 1, b.readUInt32LE(0) - 1, b.readUInt32LE(0) + 1, 0xffffffff, 0x7fffffff, P.MAX_HEADER_BYTES + 1, r.u32(), b.length]), 0);
        return b;
      }
      case 5: {
        // A wrong declared data length (the u32 after the header).
        const at = 4 + b.readUInt32LE(0);
        if (at + 4 <= b.length) b.writeUInt32LE(r.pick([0, 1, 0xffffffff, 16 * 1024 * 1024, 64 * 1024 * 1024 + 1, b.readUInt32LE(at) + 1, r.u32()]), at);
        return b;
      }
      case 6: {
        const at = r.int(b.length);
        return Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)), b.subarray(at)]);
      }
      case 7:
        return Buffer.concat([b, b]); // the same record twice: a duplicate id in one frame
      default: {
        // One record too many for a frame.
        const one = record('{}');
        return Buffer.concat(Array.from({ length: P.MAX_RECORDS_PER_FRAME + 1 }, () => one));
      }
    }
  }
}

/** A record written by hand: header and data framed with their u32le lengths. */
function record(header: string | Uint8Array, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : Buffer.from(header);
  const b = Buffer.alloc(8 + h.length + data.length);
  b.writeUInt32LE(h.length, 0);
  h.copy(b, 4);
  b.writeUInt32LE(data.length, 4 + h.length);
  Buffer.from(data).copy(b, 8 + h.length);
  return b;
}

/**
 * Before the random scripts, a sweep: every TCP option and the buffer and linger options, each
 * with the values at the edges of a DWORD, set before a connection comes up (WSPConnect, or on a
 * listener before WSPAccept) and again on the live connection. Returns how many scripts ran.
 */
async function optionSweep(a: Arena, rng: Rng, env: Env): Promise<number> {
  const opts: Array<[number, number]> = [...TCP_OPTS.map((o): [number, number] => [P.IPPROTO_TCP, o]), [P.SOL_SOCKET, P.SO_SNDBUF], [P.SOL_SOCKET, P.SO_RCVBUF], [P.SOL_SOCKET, P.SO_LINGER], [P.SOL_SOCKET, P.SO_KEEPALIVE]];
  let scripts = 0;
  let w = await a.wire();
  for (const [level, optname] of opts) {
    for (const value of [0x7fffffff, 3_000_000, 0xffffffff, 65536]) {
      for (const accept of [false, true]) {
        if (!w.isOpen) w = await a.wire();
        scripts++;
        if ((await optionScript(a, w, rng, env, { level, optname, value, accept })) === null) w = await a.wire();
      }
    }
  }
  await w.close();
  a.release(w);
  return scripts;
}

/**
 * Frames that are legal in size but expensive to take apart, each sent alone, and what they cost
 * another session: the bystander's longest call while the attacker's frame is worked through is
 * judged (BOUNDS.frameBusyMs). The daemon parses a binary frame's headers one record at a time
 * and shares its time between records; a text message is one JSON text, which is why it is
 * bounded (MAX_TEXT_BYTES). How long the attacker's own next call waits behind its frame is
 * recorded too: that is the frame's whole cost.
 */
async function stallProbe(a: Arena, w: Wire, quick: boolean): Promise<void> {
  const nested = (bytes: number): string => {
    const head = '{"jsonrpc":"2.0","id":"stall","method":"WSPGetSockName","params":{"s":1,"namelen":16,"x":';
    const depth = Math.floor((bytes - head.length - 2 - 1) / 2);
    return `${head}${'['.repeat(depth)}1${']'.repeat(depth)}}}`;
  };
  const flat = (bytes: number): string => {
    const head = '{"jsonrpc":"2.0","id":"stall","method":"WSPGetSockName","params":{"s":1,"namelen":16,"x":"';
    return `${head}${'a'.repeat(bytes - head.length - 3)}"}}`;
  };
  const many = (n: number, msg: object): Uint8Array => {
    const b = new P.FrameBuilder();
    for (let i = 0; i < n; i++) b.add(msg);
    return b.finish();
  };
  const probes: Array<[string, () => { payload: Uint8Array | string; binary: boolean }]> = [
    ['a 1 MiB header of one long string (for comparison)', () => ({ payload: record(flat(P.MAX_HEADER_BYTES)), binary: true })],
    ['a 1 MiB header of nested arrays', () => ({ payload: record(nested(P.MAX_HEADER_BYTES)), binary: true })],
    ['a 1 MiB text frame of nested arrays', () => ({ payload: nested(P.MAX_TEXT_BYTES), binary: false })],
    ['a 1 MiB text frame of one long string', () => ({ payload: flat(P.MAX_TEXT_BYTES), binary: false })],
    ['4096 records of {}', () => ({ payload: many(P.MAX_RECORDS_PER_FRAME, {}), binary: true })],
    ['4096 WSPGetSockOpt notifications', () => ({ payload: many(P.MAX_RECORDS_PER_FRAME, { jsonrpc: '2.0', method: 'WSPGetSockOpt', params: { s: 1, level: P.SOL_SOCKET, optname: P.SO_TYPE, optlen: 4 } }), binary: true })],
  ];
  const maxFrameBytes = w.limit('maxFrameBytes') ?? P.DEFAULT_MAX_FRAME_BYTES;
  if (!quick) {
    const one = record(nested(P.MAX_HEADER_BYTES));
    const count = Math.floor(maxFrameBytes / one.length);
    probes.push([`a ${count} MiB frame of ${count} headers of nested arrays`, () => ({ payload: Buffer.concat(Array.from({ length: count }, () => one)), binary: true })]);
    const long = record(flat(P.MAX_HEADER_BYTES));
    probes.push([`a ${count} MiB frame of ${count} headers of one long string`, () => ({ payload: Buffer.concat(Array.from({ length: count }, () => long)), binary: true })]);
  }
  const sentinel = (on: Wire): Promise<Msg | null> => on.request('WSPGetSockName', { s: 1, namelen: 16 }, { timeoutMs: 30000, label: 'sentinel' });
  /**
   * Sends the payload on `on`: how long `on`'s own next call waited, and the longest call of the
   * bystander meanwhile (a session in a thread of its own, so that the time this process spends
   * masking megabytes does not count).
   */
  const timed = async (on: Wire, payload: Uint8Array | string, binary: boolean): Promise<{ ownMs: number; otherMs: number; answered: boolean }> => {
    const closeWindow = a.bystanderWindow();
    const t = performance.now();
    on.sendRaw(payload, binary);
    // The attacker's own next call waits behind its frame; a closed connection answers nothing.
    const answered = (await Promise.race([sentinel(on), on.closed.then(() => null)])) !== null;
    const ownMs = Math.round(performance.now() - t);
    // The bystander calls every few tens of milliseconds: give it time for one more.
    await sleep(50);
    return { ownMs, otherMs: Math.round((await closeWindow()) ?? Infinity), answered };
  };
  const judge = (what: string, r: { ownMs: number; otherMs: number }): void => {
    a.extra[`frame cost: ${what} (ms, its own session / the bystander's longest call)`] = `${r.ownMs} / ${r.otherMs}`;
    if (r.otherMs > BOUNDS.frameBusyMs) a.find('slow-frame', `${what} kept the bystander's call waiting ${r.otherMs} ms`);
  };
  for (const [what, make] of probes) {
    const f = make();
    await sentinel(w);
    const r = await timed(w, f.payload, f.binary);
    if (!r.answered) {
      if (!(await a.confirmAlive(`sending ${what}`))) return;
      a.find('stall', `${what}: no answer within 30 s`);
      return;
    }
    judge(what, r);
  }
  // A text message past MAX_TEXT_BYTES, from a session of its own: closed with 1009 before its
  // payload is read.
  const big = await a.wire();
  const mib = quick ? 2 : Math.floor(maxFrameBytes / (1024 * 1024)) - 1;
  const what = `a ${mib} MiB text message (over MAX_TEXT_BYTES)`;
  const r = await timed(big, `"${'a'.repeat(mib * 1024 * 1024)}"`, false);
  const closed = await within(big.closed, 10000, null);
  if (!(await a.confirmAlive(`sending ${what}`))) return;
  if (closed?.code !== 1009) a.find('limit', `${what}: the connection ${closed ? `closed with ${closed.code}` : 'stayed open'}, not 1009`);
  judge(what, r);
}

/** The attacker's sockets for one round. */
async function fixture(w: Wire, env: Env): Promise<Fixture> {
  const fx: Fixture = { tcp: null, tcpOv: null, udp: null, listener: null, freshUdp: [], freshTcp: [], handles: [] };
  fx.tcp = await S.socket(w, P.SOCK_STREAM);
  if (fx.tcp !== null && !(await S.connect(w, fx.tcp, S.v4(env.sink.port)))) fx.tcp = null;
  fx.tcpOv = await S.socket(w, P.SOCK_STREAM, { overlapped: true });
  if (fx.tcpOv !== null && !(await S.connect(w, fx.tcpOv, S.v4(env.sink.port)))) fx.tcpOv = null;
  fx.udp = await S.socket(w, P.SOCK_DGRAM, { overlapped: true });
  if (fx.udp !== null && !(await S.bind(w, fx.udp, S.v4(0)))) fx.udp = null;
  fx.listener = await S.listener(w, { overlapped: true });
  const idle = await S.socket(w, P.SOCK_STREAM);
  const udp6 = env.has6 ? await S.socket(w, P.SOCK_DGRAM, { af: P.AF_INET6 }) : null;
  for (let i = 0; i < 6; i++) {
    const u = await S.socket(w, P.SOCK_DGRAM);
    if (u !== null) fx.freshUdp.push(u);
    const t = await S.socket(w, P.SOCK_STREAM, { overlapped: i % 2 === 0 });
    if (t !== null) fx.freshTcp.push(t);
  }
  for (const h of [fx.tcp, fx.tcpOv, fx.udp, fx.listener?.s ?? null, idle, udp6]) if (h !== null) fx.handles.push(h);
  // Eight fixed handles first (padded), then the fresh and fuzz-made ones (WSPCloseSocket prefers those).
  while (fx.handles.length < 8) fx.handles.push(fx.handles[0] ?? 1);
  fx.handles.push(...fx.freshUdp, ...fx.freshTcp);
  return fx;
}

const LEVEL_NAMES: Record<number, string> = { [P.SOL_SOCKET]: 'SOL_SOCKET', [P.IPPROTO_TCP]: 'IPPROTO_TCP', [P.IPPROTO_IPV6]: 'IPPROTO_IPV6' };

/**
 * One option script: a TCP socket, random WSPSetSockOpt calls, then a real connection (WSPConnect
 * to the sink, or WSPListen and WSPAccept of a connection the campaign makes), more options, a
 * send, a close. Returns what it did, or null when the daemon died under it (already counted).
 */
async function optionScript(a: Arena, w: Wire, rng: Rng, env: Env, forced?: { level: number; optname: number; value: number; accept: boolean }): Promise<string | null> {
  const steps: string[] = [];
  const doing = (): string => `option script: ${steps.join(' ; ')}`;
  const step = async (method: string, params: Record<string, unknown>, what: string): Promise<Record<string, unknown> | 'dead'> => {
    const r = await w.request(method, params, { timeoutMs: 5000, label: `option script ${what}` });
    steps.push(`${what} -> ${r?.result ? `ret ${String(r.result['ret'])} errno ${String(r.result['errno'])}` : r?.error ? `error ${String(r.error['code'])}` : 'no answer'}`);
    if (!r) return (await a.confirmAlive(doing())) ? {} : 'dead';
    return r.result ?? {};
  };
  const af = env.has6 && rng.chance(0.3) ? P.AF_INET6 : P.AF_INET;
  const created = await step('WSPSocket', { af, type: P.SOCK_STREAM, protocol: 0, g: 0, flags: rng.chance(0.3) ? 1 : 0 }, `WSPSocket(${af === P.AF_INET6 ? 'AF_INET6' : 'AF_INET'})`);
  if (created === 'dead') return null;
  const s = created['ret'];
  if (typeof s !== 'number' || s <= 0) return doing();
  const setOpt = async (use?: { level: number; optname: number; value: number }): Promise<boolean> => {
    const level = use?.level ?? rng.weighted<number>([
      [4, P.SOL_SOCKET],
      [4, P.IPPROTO_TCP],
      [1, P.IPPROTO_IPV6],
      [1, 0],
      [1, rng.u32() | 0],
    ]);
    const optname = use?.optname ?? (rng.chance(0.9) ? optionFor(level, rng) : rng.int(0x10000));
    const value = use?.value ?? (rng.chance(0.85) ? rng.pick(DWORDS) : rng.u32());
    const optval = use || rng.chance(0.9) ? S.dword(value) : rng.bytes(rng.int(9));
    const optlen = use || rng.chance(0.9) ? optval.length : rng.pick([0, 2, 8, -1]);
    const r = await step('WSPSetSockOpt', { s, level, optname, optval, optlen }, `WSPSetSockOpt(${LEVEL_NAMES[level] ?? level}, ${optname}, ${value}, optlen ${optlen})`);
    return r !== 'dead';
  };
  if (forced) {
    if (!(await setOpt(forced))) return null;
  } else for (let i = 0, k = 1 + rng.int(4); i < k; i++) if (!(await setOpt())) return null;
  let conn = s;
  if (forced ? forced.accept : rng.chance(0.35)) {
    // The options go with the listening socket and are inherited by the accepted one.
    const name = af === P.AF_INET6 ? S.v6(0) : S.v4(0);
    if ((await step('WSPBind', { s, name, namelen: S.sizeOf(name) }, 'WSPBind')) === 'dead') return null;
    if ((await step('WSPListen', { s, backlog: 4 }, 'WSPListen')) === 'dead') return null;
    const nm = await step('WSPGetSockName', { s, namelen: 28 }, 'WSPGetSockName');
    if (nm === 'dead') return null;
    const port = (nm['name'] as P.SockAddr | undefined)?.port;
    if (!port) return doing();
    const c = net.connect({ host: af === P.AF_INET6 ? '::1' : '127.0.0.1', port });
    c.on('error', () => undefined);
    c.on('data', () => undefined);
    const acc = await step('WSPAccept', { s }, 'WSPAccept');
    setTimeout(() => c.destroy(), 200);
    if (acc === 'dead') return null;
    if (typeof acc['ret'] !== 'number' || acc['ret'] <= 0) return doing();
    conn = acc['ret'];
  } else {
    const to = af === P.AF_INET6 ? S.v6(env.sink6?.port ?? env.sink.port) : S.v4(env.sink.port);
    const r = await step('WSPConnect', { s, name: to, namelen: S.sizeOf(to) }, 'WSPConnect');
    if (r === 'dead') return null;
  }
  // Options on the live connection are applied at once.
  if (forced) {
    if (!(await setOpt(forced))) return null;
  } else for (let i = 0, k = rng.int(3); i < k; i++) if (!(await setOpt())) return null;
  if ((await step('WSPSend', { s: conn, buffers: [Buffer.from('option-script')], flags: 0 }, 'WSPSend')) === 'dead') return null;
  if (conn !== s && (await step('WSPCloseSocket', { s: conn }, 'WSPCloseSocket(accepted)')) === 'dead') return null;
  if ((await step('WSPCloseSocket', { s }, 'WSPCloseSocket')) === 'dead') return null;
  return doing();
}

export function fuzz(opts: Options): Promise<Row> {
  return Arena.run('fuzz', 'Frame fuzzer', opts, ['--allow', '127.0.0.0/8,[::1]'], async (a) => {
    const budget = opts.quick ? BUDGET.quick : BUDGET.full;
    const rng = new Rng(opts.seed ^ 0xf0220001);
    const has6 = await canListen('::1');
    const env: Env = { sink: await TcpPeer.start(), sink6: has6 ? await TcpPeer.start({ host: '::1' }) : null, udpSink: await UdpPeer.start(), closedPort: await freePort(), has6 };
    const probe = await a.wire();
    await stallProbe(a, probe, opts.quick);
    await probe.close();
    a.release(probe);
    const deadline = Date.now() + budget.ms;
    const coverage: Record<string, number> = {};
    let malformed = 0;
    let frames = 0;
    let rounds = 0;
    let scripts = await optionSweep(a, rng.fork(), env);
    let closes = 0;
    const recent: string[] = [];
    while (frames < budget.frames && Date.now() < deadline) {
      rounds++;
      let w: Wire;
      try {
        w = await a.wire();
      } catch (err) {
        if (await a.confirmAlive(`opening round ${rounds}'s session`)) a.find('other', `could not open an attacker session: ${(err as Error).message}`);
        continue;
      }
      const fx = await fixture(w, env);
      const gen = new FrameGen(rng.fork(), env, fx, w);
      const roundFrames = Math.min(budget.perRound, budget.frames - frames);
      const scriptEvery = Math.max(1, Math.floor(roundFrames / budget.batch / budget.scriptsPerRound));
      let sentThisRound = 0;
      let batch = 0;
      let died = false;
      while (sentThisRound < roundFrames && Date.now() < deadline && w.isOpen) {
        for (let i = 0; i < budget.batch && sentThisRound < roundFrames && w.isOpen; i++) {
          const f = gen.next();
          recent.push(f.label);
          if (recent.length > 12) recent.shift();
          w.sendRaw(f.payload, f.binary);
          sentThisRound++;
        }
        const answer = await w.request('WSPGetSockName', { s: 1, namelen: 16 }, { timeoutMs: 15000, label: 'sentinel' });
        if (!answer) {
          if (!(await a.confirmAlive(`fuzzing (last frames: ${recent.join(', ')})`))) {
            died = true;
            break;
          }
          if (w.isOpen) a.find('other', `a batch of fuzzed frames was not answered within 15 s (last frames: ${recent.join(', ')})`);
          break;
        }
        if (++batch % scriptEvery === 0) {
          scripts++;
          const done = await optionScript(a, w, rng, env);
          if (done === null) {
            died = true;
            break;
          }
        }
      }
      for (const [m, n] of Object.entries(gen.coverage)) coverage[m] = (coverage[m] ?? 0) + n;
      malformed += gen.malformed;
      frames += sentThisRound;
      if (died) continue;
      if (!w.isOpen) {
        const c = w.closeInfo;
        if (c && !EXPECTED_ATTACKER_CLOSES.has(c.code)) a.find('other', `the daemon closed a fuzzing session with ${c.code} ${c.reason} (last frames: ${recent.join(', ')})`);
        continue;
      }
      // The round ends as a hostile client would end it.
      const end = rng.int(4);
      if (end === 0) {
        // Invalid UTF-8 in a text frame: the WebSocket layer closes with 1007 (proto/README.md section 1).
        w.sendRaw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), false);
        const c = await Promise.race([w.closed, sleep(5000).then(() => null)]);
        if (c?.code === 1007) closes++;
        else a.find('other', `a text frame with invalid UTF-8 was answered with ${c ? `close ${c.code}` : 'no close within 5 s'}, not 1007`);
        w.terminate();
      } else if (end === 1 && !opts.quick && rounds % 4 === 0) {
        // One message over maxFrameBytes: close 1009.
        const max = w.limit('maxFrameBytes') ?? P.DEFAULT_MAX_FRAME_BYTES;
        w.sendRaw(Buffer.alloc(max + 1), true);
        const c = await Promise.race([w.closed, sleep(10000).then(() => null)]);
        if (c?.code === 1009) closes++;
        else a.find('other', `a message over maxFrameBytes was answered with ${c ? `close ${c.code}` : 'no close within 10 s'}, not 1009`);
        w.terminate();
      } else if (end === 2) {
        w.terminate(); // gone mid-call: blocked calls and pending operations are left behind
      } else {
        await w.close();
      }
      a.release(w);
      if (!(await a.confirmAlive(`ending fuzz round ${rounds}`))) continue;
    }
    const methods = Object.keys(P.METHODS);
    const missing = methods.filter((m) => !coverage[m]);
    if (missing.length) a.find('other', `the fuzzer never built a frame for ${missing.join(', ')}`);
    a.extra['fuzzedFrames'] = frames;
    a.extra['malformedFrames'] = malformed;
    a.extra['rounds'] = rounds;
    a.extra['optionScripts'] = scripts;
    a.extra['expectedCloses'] = closes;
    a.extra['methodsCovered'] = `${methods.length - missing.length}/${methods.length}`;
    a.extra['results'] = a.stats.verdicts.result;
    a.extra['protocolErrors'] = a.stats.verdicts.error;
    a.note(`${frames} fuzzed frames (${malformed} malformed on purpose) in ${rounds} sessions, ${scripts} option scripts, every one of ${methods.length - missing.length} methods fuzzed; ${closes} sessions closed with 1007/1009 as documented`);
  });
}
