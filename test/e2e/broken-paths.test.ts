/**
 * The error codes a Winsock program meets when the path to its peer breaks, provoked for real
 * (issue 4, "The remaining error codes, provoked for real"):
 *
 * - WSAENETRESET: keep-alive probes go unanswered on an idle connection;
 * - WSAECONNABORTED: data cannot be delivered within TCP_MAXRT;
 * - WSAENETDOWN: the interface under a connected socket is deleted.
 *
 * Each case builds its own broken path: a network namespace, a veth pair between the host and
 * that namespace (addresses from 10.213.0.0/16, random third octet), and a node:net echo peer
 * started inside the namespace. The daemon runs in this process, in the root namespace, and may
 * only reach that /24. "The peer vanishes" means a blackhole route inside the namespace: the peer
 * still receives our segments but nothing it answers leaves the namespace, so no RST and no ICMP
 * ever reaches us, and the host's interface stays up with its address. Everything is removed in
 * teardown, also when the case fails. Without root or network namespaces every case is skipped.
 *
 * The same rigs guard three fixed bugs around "the interface is gone", and a full UDP send buffer
 * behind a slow link (end of the file).
 */
import t, { type Test } from 'tap';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as S from '@spiwire/client';
import { libc } from '@spiwire/server/internals';
import { daemon, fionread, getOpt, ioctlBool, newSocket, recvInto, roundTrip, send, sendTo, session, setNonBlocking, setOpt, sleep, sockName, until, within, type RecvResult } from '../helpers/harness.js';

/** Runs a command; resolves with its exit code and output, never rejects. */
function run(cmd: string, args: string[], timeoutMs = 10000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err ? err.message : '') });
    });
  });
}

/** Why the cases cannot run here, or false when they can (root, iproute2, netns support, libc). */
async function whySkip(): Promise<string | false> {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root: the test creates a network namespace and a veth pair';
  if (!libc()) return 'the C library cannot be loaded, so keep-alive timing and TCP_MAXRT cannot reach the real socket';
  const probe = `spw${randomBytes(4).toString('hex')}`;
  const add = await run('ip', ['netns', 'add', probe]);
  if (add.code !== 0) return `cannot create a network namespace (ip netns add: ${add.stderr.trim() || `exit ${add.code}`})`;
  await run('ip', ['netns', 'del', probe]);
  return false;
}

const skip = await whySkip();

/** One broken-path rig: a namespace, a veth pair and an echo peer listening inside. */
interface Rig {
  ns: string;
  hostIf: string;
  nsIf: string;
  hostAddr: string;
  peerAddr: string;
  peerPort: number;
  /** What the daemon may reach: only this rig's /24. */
  allow: string;
  /** The peer stops answering: nothing leaves the namespace, no RST, no ICMP. */
  vanish(): Promise<void>;
  /** Deletes the host side of the veth pair (the namespace side goes with it). */
  deleteHostInterface(): Promise<void>;
  /** Sets the namespace side down or up: the host side loses (regains) carrier, keeps its address. */
  setCarrier(up: boolean): Promise<void>;
  /** Adds another address of the rig's /24 to the host side; returns it. */
  addHostAddress(last: number): Promise<string>;
}

/** `ip ...`, throwing with the command and its stderr when it fails. */
async function ip(...args: string[]): Promise<void> {
  const r = await run('ip', args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
}

/**
 * The echo peer, run with `ip netns exec NS node -e PEER ADDR`: TCP, and UDP on the same port
 * number (each datagram sent back to where it came from). Exits when its stdin closes.
 */
const PEER = `
const net = require('node:net');
const dgram = require('node:dgram');
const server = net.createServer((sock) => {
  sock.on('error', () => undefined);
  sock.on('data', (b) => sock.write(b));
});
const udp = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
udp.on('message', (m, from) => udp.send(m, from.port, from.address));
server.listen(0, process.argv[1], () => udp.bind(server.address().port, process.argv[1], () => console.log('listening ' + server.address().port)));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

function startPeer(ns: string, address: string): { child: ChildProcess; port: Promise<number> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', PEER, address], { stdio: ['pipe', 'pipe', 'pipe'] });
  const port = new Promise<number>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`the peer in ${ns} did not listen within 10 s: ${err}`)), 10000);
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the peer in ${ns} exited (${code}) before listening: ${err}`));
    });
  });
  port.catch(() => undefined);
  return { child, port };
}

async function stopPeer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stdin?.end();
  child.kill('SIGKILL');
  await within(exited, 3000, undefined);
}

/**
 * Rigs not yet torn down. Teardown removes them; should the process end before that (a tap
 * timeout's SIGTERM, Ctrl-C), this last-resort hook removes them synchronously.
 */
const live = new Map<string, { hostIf: string; peer: ChildProcess | null }>();

function removeLeftovers(): void {
  for (const [ns, r] of live) {
    r.peer?.kill('SIGKILL');
    for (const args of [['link', 'del', r.hostIf], ['netns', 'del', ns]]) {
      try {
        execFileSync('ip', args, { stdio: 'ignore', timeout: 5000 });
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

process.once('exit', removeLeftovers);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    removeLeftovers();
    process.kill(process.pid, sig);
  });
}

/** A 10.213.X /24 (X random) that no interface of this machine uses yet. */
async function freeSubnet(): Promise<string> {
  for (let i = 0; i < 20; i++) {
    const net = `10.213.${randomInt(1, 255)}`;
    const used = await run('ip', ['-o', '-4', 'addr', 'show', 'to', `${net}.0/24`]);
    if (used.code === 0 && used.stdout.trim() === '') return net;
  }
  throw new Error('no free /24 in 10.213.0.0/16 after 20 tries');
}

async function rig(t: Test): Promise<Rig> {
  const id = randomBytes(4).toString('hex');
  const ns = `spw${id}`;
  const hostIf = `spw${id}h`; // 12 characters, under IFNAMSIZ
  const nsIf = `spw${id}n`;
  const net = await freeSubnet();
  const hostAddr = `${net}.1`;
  const peerAddr = `${net}.2`;
  const entry: { hostIf: string; peer: ChildProcess | null } = { hostIf, peer: null };
  live.set(ns, entry);
  // Registered before anything exists, so a failure half-way still cleans up.
  t.teardown(async () => {
    if (entry.peer) await stopPeer(entry.peer);
    await run('ip', ['link', 'del', hostIf]);
    await run('ip', ['netns', 'del', ns]);
    live.delete(ns);
  });
  await ip('netns', 'add', ns);
  await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', ns);
  await ip('addr', 'add', `${hostAddr}/24`, 'dev', hostIf);
  await ip('link', 'set', hostIf, 'up');
  await ip('-n', ns, 'addr', 'add', `${peerAddr}/24`, 'dev', nsIf);
  await ip('-n', ns, 'link', 'set', nsIf, 'up');
  await ip('-n', ns, 'link', 'set', 'lo', 'up');
  const p = startPeer(ns, peerAddr);
  entry.peer = p.child;
  const peerPort = await p.port;
  return {
    ns,
    hostIf,
    nsIf,
    hostAddr,
    peerAddr,
    peerPort,
    allow: `${net}.0/24`,
    vanish: () => ip('-n', ns, 'route', 'add', 'blackhole', `${hostAddr}/32`),
    deleteHostInterface: () => ip('link', 'del', hostIf),
    setCarrier: (up) => ip('-n', ns, 'link', 'set', nsIf, up ? 'up' : 'down'),
    addHostAddress: async (last) => {
      await ip('addr', 'add', `${net}.${last}/24`, 'dev', hostIf);
      return `${net}.${last}`;
    },
  };
}

/** A TCP socket of the session connected to the rig's peer. */
async function connectToPeer(spi: S.SpiSession, r: Rig): Promise<number> {
  const s = await newSocket(spi, 'ipv4', 'tcp');
  const e = S.out(0);
  const ret = await spi.WSPConnect(s, { family: S.AF_INET, address: r.peerAddr, port: r.peerPort }, 16, null, null, null, null, e);
  if (ret !== 0) throw new Error(`WSPConnect to ${r.peerAddr}:${r.peerPort} failed: ${e.value}`);
  return s;
}

/** Sends bytes and reads the peer's echo of them with blocking calls. */
async function exchange(t: Test, spi: S.SpiSession, s: number, text: string): Promise<void> {
  const bytes = Buffer.from(text);
  t.same(await send(spi, s, [bytes]), [0, 0, bytes.length], `WSPSend '${text}' to the echo peer`);
  let got = Buffer.alloc(0);
  for (let i = 0; i < 10 && got.length < bytes.length; i++) {
    const r = await recvInto(spi, s, [bytes.length - got.length]);
    if (r.ret !== 0 || r.bytes <= 0) break;
    got = Buffer.concat([got, r.data]);
  }
  t.equal(got.toString(), text, 'the peer echoed it');
}

/** SIO_KEEPALIVE_VALS with struct tcp_keepalive { onoff, keepalivetime ms, keepaliveinterval ms }. */
async function keepAliveVals(spi: S.SpiSession, s: number, onoff: number, timeMs: number, intervalMs: number): Promise<[number, number]> {
  const v = new Uint8Array(12);
  const dv = new DataView(v.buffer);
  dv.setUint32(0, onoff, true);
  dv.setUint32(4, timeMs, true);
  dv.setUint32(8, intervalMs, true);
  const e = S.out(0);
  const ret = await spi.WSPIoctl(s, S.SIO_KEEPALIVE_VALS, v, 12, null, 0, S.out(0), null, null, null, e);
  return [ret, e.value];
}

/** Fast keep-alive: probes after 1 s idle, 1 s apart, two unanswered probes break the connection. */
async function fastKeepAlive(t: Test, spi: S.SpiSession, s: number): Promise<void> {
  t.same(await keepAliveVals(spi, s, 1, 1000, 1000), [0, 0], 'WSPIoctl SIO_KEEPALIVE_VALS {1, 1000 ms, 1000 ms}');
  t.same(await setOpt(spi, s, S.TCP_KEEPCNT, 2, 4, S.IPPROTO_TCP), [0, 0], 'WSPSetSockOpt IPPROTO_TCP TCP_KEEPCNT 2');
  t.same(await getOpt(spi, s, S.SO_KEEPALIVE), [0, 0, 1, 1], 'SO_KEEPALIVE reads back TRUE, one byte (a BOOLEAN on Windows)');
  t.same(await getOpt(spi, s, S.TCP_KEEPCNT, 4, S.IPPROTO_TCP), [0, 0, 2, 4], 'TCP_KEEPCNT reads back 2');
}

/** A blocking WSPRecv that gives up (null) after limitMs; the session's teardown ends it then. */
async function recvWithin(spi: S.SpiSession, s: number, limitMs: number): Promise<RecvResult | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((r) => (timer = setTimeout(() => r(null), limitMs)));
  try {
    return await Promise.race([recvInto(spi, s, [64]), late]);
  } finally {
    clearTimeout(timer);
  }
}

const LIMIT_MS = 12000;
const opts = { skip, timeout: 30000 };

t.test('WSAENETRESET: keep-alive finds the idle peer gone', opts, async (t) => {
  const r = await rig(t);
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const s = await connectToPeer(spi, r);
  await fastKeepAlive(t, spi, s);
  await exchange(t, spi, s, 'keep me alive');
  await r.vanish();
  const started = Date.now();
  // Idle from here on: only keep-alive probes cross the wire, and nobody answers them.
  const got = await recvWithin(spi, s, LIMIT_MS);
  const ms = Date.now() - started;
  t.comment(`blocking WSPRecv returned after ${ms} ms: ${got ? `ret ${got.ret}, errno ${got.errno}, ${got.bytes} bytes` : 'still blocked'}`);
  t.ok(got, `the blocking WSPRecv returns within ${LIMIT_MS} ms`);
  if (!got) return;
  t.same([got.ret, got.errno], [S.SOCKET_ERROR, S.WSAENETRESET], 'WSPRecv fails with WSAENETRESET (10052)');
  // 1 s idle + 2 probes 1 s apart: about 3 s, certainly not at once (which would mean RST/ICMP).
  t.ok(ms >= 1500, `not before the keep-alive probes could run out (${ms} ms)`);
  const [ret, err] = await send(spi, s, [Buffer.from('too late')]);
  t.same([ret, err], [S.SOCKET_ERROR, S.WSAENETRESET], 'a later WSPSend fails with WSAENETRESET too');
});

t.test('WSAECONNABORTED: data not delivered within TCP_MAXRT', opts, async (t) => {
  const r = await rig(t);
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const s = await connectToPeer(spi, r);
  await fastKeepAlive(t, spi, s);
  t.same(await setOpt(spi, s, S.TCP_MAXRT, 2, 4, S.IPPROTO_TCP), [0, 0], 'WSPSetSockOpt IPPROTO_TCP TCP_MAXRT 2 (seconds)');
  t.same(await getOpt(spi, s, S.TCP_MAXRT, 4, S.IPPROTO_TCP), [0, 0, 2, 4], 'TCP_MAXRT reads back 2');
  await exchange(t, spi, s, 'before the break');
  await r.vanish();
  const started = Date.now();
  const data = Buffer.alloc(1000, 0x5a);
  t.same(await send(spi, s, [data]), [0, 0, data.length], 'WSPSend after the peer vanished: accepted into the transport buffer');
  await setNonBlocking(spi, s, true);
  let last: [number, number, number] = [0, 0, 0];
  let sends = 1;
  // Polled every 100 ms, bounded by LIMIT_MS, until a send fails other than with WSAEWOULDBLOCK.
  await until(async () => {
    last = await send(spi, s, [Buffer.from('x')]);
    if (last[0] === 0) sends++;
    return last[0] !== 0 && last[1] !== S.WSAEWOULDBLOCK;
  }, LIMIT_MS, 100);
  const ms = Date.now() - started;
  t.comment(`nonblocking WSPSend failed after ${ms} ms (${sends} sends accepted since the break): ret ${last[0]}, errno ${last[1]}`);
  t.same(last.slice(0, 2), [S.SOCKET_ERROR, S.WSAECONNABORTED], `a later WSPSend fails with WSAECONNABORTED (10053) within ${LIMIT_MS} ms`);
  t.ok(ms >= 1500, `not before TCP_MAXRT could run out (${ms} ms)`);
  const got = await recvInto(spi, s, [64]);
  t.same([got.ret, got.errno], [S.SOCKET_ERROR, S.WSAECONNABORTED], 'WSPRecv fails with WSAECONNABORTED too');
});

t.test('WSAENETDOWN: the interface under a connected socket is deleted', opts, async (t) => {
  const r = await rig(t);
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const s = await connectToPeer(spi, r);
  await exchange(t, spi, s, 'still here');
  await r.deleteHostInterface();
  const gone = await run('ip', ['addr', 'show', 'dev', r.hostIf]);
  t.not(gone.code, 0, `${r.hostIf} no longer exists`);
  const started = Date.now();
  let last: [number, number, number] = [0, 0, 0];
  let accepted = 0;
  // Polled every 50 ms, bounded by 3 s, until a send fails.
  await until(async () => {
    last = await send(spi, s, [Buffer.from('y')]);
    if (last[0] !== 0) return true;
    accepted++;
    return false;
  }, 3000, 50);
  const ms = Date.now() - started;
  t.comment(`WSPSend failed ${ms} ms after the interface was deleted (${accepted} sends accepted before): ret ${last[0]}, errno ${last[1]}`);
  t.same(last.slice(0, 2), [S.SOCKET_ERROR, S.WSAENETDOWN], 'WSPSend fails with WSAENETDOWN (10050)');
  // The daemon caches the interface list for 200 ms, so a send or two may still be accepted.
  t.ok(ms < 1000, `within a second of the deletion (${ms} ms)`);
  const got = await recvInto(spi, s, [64]);
  t.same([got.ret, got.errno], [S.SOCKET_ERROR, S.WSAENETDOWN], 'WSPRecv fails with WSAENETDOWN too');
});

// ---------------------------------------------------------------------------------------------
// Regressions: the interface check once read the local address after node had forgotten it, took a
// link without carrier for a lost interface, and answered "gone" from a stale list of addresses.

t.test(
  'WSAENETDOWN also for a blocking WSPRecv when the interface is deleted under an idle keep-alive socket',
  opts,
  async (t) => {
    const r = await rig(t);
    const d = await daemon(t, { allow: r.allow });
    const spi = await session(t, d);
    const s = await connectToPeer(spi, r);
    await fastKeepAlive(t, spi, s);
    await exchange(t, spi, s, 'idle now');
    const pending = recvWithin(spi, s, LIMIT_MS);
    // The receive is blocked at the daemon before the interface goes: the round trip follows it.
    await roundTrip(spi);
    await r.deleteHostInterface();
    const started = Date.now();
    const got = await pending;
    t.comment(`blocking WSPRecv returned ${Date.now() - started} ms after the deletion: ${got ? `ret ${got.ret}, errno ${got.errno}` : 'still blocked'}`);
    t.ok(got, `the blocking WSPRecv returns within ${LIMIT_MS} ms`);
    if (got) t.same([got.ret, got.errno], [S.SOCKET_ERROR, S.WSAENETDOWN], 'WSPRecv fails with WSAENETDOWN (10050), not WSAENETRESET');
  },
);

t.test(
  'a carrier flap is not a lost interface: the address stays, the connection survives',
  opts,
  async (t) => {
    const r = await rig(t);
    const d = await daemon(t, { allow: r.allow });
    const spi = await session(t, d);
    const s = await connectToPeer(spi, r);
    await exchange(t, spi, s, 'before ');
    await r.setCarrier(false);
    let noCarrier = false;
    await until(async () => (noCarrier = (await run('ip', ['link', 'show', 'dev', r.hostIf])).stdout.includes('NO-CARRIER')), 5000, 50);
    t.ok(noCarrier, `${r.hostIf} lost carrier`);
    t.match((await run('ip', ['-4', 'addr', 'show', 'dev', r.hostIf])).stdout, r.hostAddr, 'and still has its address');
    // Time is the point: past the daemon's 200 ms interface cache, so the send below looks again.
    await sleep(300);
    const during = await send(spi, s, [Buffer.from('during ')]);
    t.comment(`WSPSend while the carrier is down: ret ${during[0]}, errno ${during[1]}`);
    t.same(during, [0, 0, 7], 'WSPSend while the carrier is down is accepted (TCP retransmits later)');
    await r.setCarrier(true);
    const after = await send(spi, s, [Buffer.from('after')]);
    t.comment(`WSPSend after the carrier is back: ret ${after[0]}, errno ${after[1]}`);
    t.same(after, [0, 0, 5], 'WSPSend after the carrier is back');
    let echoed = '';
    for (let i = 0; i < 10 && echoed.length < 12; i++) {
      const got = await recvWithin(spi, s, 5000);
      if (!got || got.ret !== 0 || got.bytes <= 0) break;
      echoed += got.data.toString();
    }
    t.equal(echoed, 'during after', 'the peer got both and echoed them');
  },
);

t.test('a connection from an address added a moment ago is not on a lost interface', opts, async (t) => {
  const r = await rig(t);
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const a = await connectToPeer(spi, r);
  await exchange(t, spi, a, 'first');
  // Time is the point: past the daemon's 200 ms interface cache and 100 ms per-socket check interval.
  await sleep(250);
  // This send makes the daemon read the interface list now, before the new address exists.
  t.same(await send(spi, a, [Buffer.from('x')]), [0, 0, 1], 'a send on the first connection');
  const started = Date.now();
  const fresh = await r.addHostAddress(3);
  const b = await newSocket(spi, 'ipv4', 'tcp');
  const e = S.out(0);
  t.equal(await spi.WSPBind(b, { family: S.AF_INET, address: fresh, port: 0 }, 16, e), 0, `WSPBind to the new address ${fresh}`);
  t.equal(await spi.WSPConnect(b, { family: S.AF_INET, address: r.peerAddr, port: r.peerPort }, 16, null, null, null, null, e), 0, 'WSPConnect from it');
  const first = await send(spi, b, [Buffer.from('new')]);
  t.comment(`WSPSend ${Date.now() - started} ms after the address was added: ret ${first[0]}, errno ${first[1]}`);
  t.same(first, [0, 0, 3], 'WSPSend on the new connection succeeds');
  // Time is the point: past the cache and the per-socket check interval, so the next send checks again.
  await sleep(250);
  const later = await send(spi, b, [Buffer.from('again')]);
  t.comment(`WSPSend 250 ms later: ret ${later[0]}, errno ${later[1]}`);
  t.same(later, [0, 0, 5], 'and so does a later one');
});

/** Overlapped WSPSends of each payload on s, all issued at once; resolves with each one's bytes sent, or its error. */
async function overlappedSends(spi: S.SpiSession, s: number, payloads: Buffer[]): Promise<number[]> {
  return Promise.all(
    payloads.map(async (p) => {
      const ov = new S.WSAOVERLAPPED();
      const sent = S.out(0);
      const x = S.out(0);
      const ret = await spi.WSPSend(s, [S.wsabuf(p)], 1, sent, 0, ov, null, null, x);
      if (ret === 0) return sent.value;
      if (x.value !== S.WSA_IO_PENDING) return -x.value;
      return (await spi.WSPGetOverlappedResult(s, ov, sent, true, S.out(0), x)) ? sent.value : -x.value;
    }),
  );
}

/** Up to count datagrams the echo peer sent back to s, in the order received (fewer if one takes over 10 s). */
async function echoes(spi: S.SpiSession, s: number, count: number): Promise<Buffer[]> {
  const echoed: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const got = await within(recvInto(spi, s, [8192]), 10000, null);
    if (!got || got.ret !== 0) break;
    echoed.push(got.data);
  }
  return echoed;
}

/** A counter's value from the daemon's /metrics. */
async function counter(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

t.test('UDP: a send buffer kept full by a slow link: every datagram goes, once, in order', opts, async (t) => {
  const r = await rig(t);
  // 8 Mbit/s out of the host, with a queue that holds the whole burst: datagrams wait in the
  // queue, still charged to the sending socket, so its small send buffer fills (EAGAIN) and the
  // daemon's batches (sendmmsg) hand the rest to node:dgram, which waits for room.
  const tc = await run('tc', ['qdisc', 'add', 'dev', r.hostIf, 'root', 'tbf', 'rate', '8mbit', 'burst', '16kb', 'limit', '4mb']);
  if (tc.code !== 0) {
    t.comment(`skipped: tc cannot shape the link: ${tc.stderr.trim()}`);
    return;
  }
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const s = await newSocket(spi, 'ipv4', 'udp', S.WSA_FLAG_OVERLAPPED);
  t.same(await setOpt(spi, s, S.SO_SNDBUF, 16384), [0, 0], 'SO_SNDBUF 16 KiB');
  // The echoes arrive while the burst is still going out: room for all of them.
  t.same(await setOpt(spi, s, S.SO_RCVBUF, 1024 * 1024), [0, 0], 'SO_RCVBUF 1 MiB');
  const e = S.out(0);
  t.equal(await spi.WSPConnect(s, { family: S.AF_INET, address: r.peerAddr, port: r.peerPort }, 16, null, null, null, null, e), 0, 'WSPConnect to the UDP echo');
  const batched = (): Promise<number> => counter(d.port, 'spiwire_udp_batched_datagrams_total');
  const before = await batched();
  const COUNT = 100;
  const payloads = Array.from({ length: COUNT }, (_, i) => Buffer.alloc(4000, i % 251).fill(`#${i}#`, 0, 8));
  const results = await overlappedSends(spi, s, payloads);
  t.same(results, payloads.map(() => 4000), 'every WSPSend completed with its full count');
  const echoed = await echoes(spi, s, COUNT);
  t.equal(echoed.length, COUNT, 'the echo peer sent every datagram back');
  const wrong = echoed.findIndex((b, i) => !b.equals(payloads[i]!));
  t.equal(wrong, -1, 'each came back whole, in the order sent');
  const viaBatches = (await batched()) - before;
  t.comment(`${viaBatches} of ${COUNT} went through sendmmsg, the rest through node:dgram`);
  if (libc()) t.ok(viaBatches > 0 && viaBatches < COUNT, 'the send buffer filled: some went in batches, the rest through node:dgram');
});


t.test('UDP: runs over a link with a 1500-byte MTU: the kernel segments those that fit; larger datagrams still arrive whole', opts, async (t) => {
  const r = await rig(t);
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const s = await newSocket(spi, 'ipv4', 'udp', S.WSA_FLAG_OVERLAPPED);
  t.same(await setOpt(spi, s, S.SO_RCVBUF, 1024 * 1024), [0, 0], 'SO_RCVBUF 1 MiB');
  const e = S.out(0);
  t.equal(await spi.WSPConnect(s, { family: S.AF_INET, address: r.peerAddr, port: r.peerPort }, 16, null, null, null, null, e), 0, 'WSPConnect to the UDP echo');
  const segmented = (): Promise<number> => counter(d.port, 'spiwire_udp_segmented_datagrams_total');
  const before = await segmented();
  // 1000-byte datagrams fit the veth's MTU and go as a run; the kernel refuses a run of 3000-byte
  // ones (each would have to be fragmented), so they go again a datagram per message, fragmented.
  const sizes = [...Array<number>(20).fill(1000), ...Array<number>(20).fill(3000), ...Array<number>(20).fill(1000)];
  const payloads = sizes.map((n, i) => Buffer.alloc(n, i % 251).fill(`#${i}#`, 0, 8));
  const results = await overlappedSends(spi, s, payloads);
  t.same(results, sizes, 'every WSPSend completed with its full count');
  const echoed = await echoes(spi, s, payloads.length);
  t.equal(echoed.length, payloads.length, 'the echo peer sent every datagram back');
  t.equal(echoed.findIndex((b, i) => !b.equals(payloads[i]!)), -1, 'each came back whole, in the order sent');
  const runs = (await segmented()) - before;
  t.comment(`${runs} of ${payloads.length} went in segmented runs`);
  // Of the first 20 (all of them unless the daemon's turn budget cut the frame); none after the refusal.
  if (libc()) t.ok(runs > 0 && runs <= 20, 'the first 1000-byte datagrams went segmented, none after the refused run');
});

/** A counter of the root namespace's /proc/net/snmp (ICMP) or /proc/net/snmp6 (ICMPv6), e.g. Icmp InTimeExcds. */
function snmpCounter(v6: boolean, name: string): number {
  if (v6) {
    const m = new RegExp(`^Icmp6${name}\\s+(\\d+)`, 'm').exec(readFileSync('/proc/net/snmp6', 'utf8'));
    return Number(m?.[1] ?? NaN);
  }
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Icmp: '));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf(name)]);
}

/**
 * Addresses whose datagrams go round a routing loop until their TTL (hop limit) runs out: the
 * rig's namespace forwards them to a second namespace, which sends them back, and so on; the
 * router that takes the TTL to nothing answers the host with an ICMP time exceeded. The second
 * namespace's link addresses are in the rig's /24 (and its /64), so that the ICMP comes from an
 * address the host reaches through the rig's interface. v6 is null where IPv6 cannot be set up.
 */
async function routingLoop(t: Test, r: Rig): Promise<{ v4: string; v6: string | null; allow: string }> {
  const ns2 = `${r.ns}l`;
  const a = `${r.ns}a`; // the rig's namespace's end of the link
  const b = `${r.ns}b`;
  const net = r.hostAddr.slice(0, r.hostAddr.lastIndexOf('.'));
  const v6net = `fd5e:${net.split('.')[2]}::`;
  const entry = { hostIf: '', peer: null };
  live.set(ns2, entry);
  t.teardown(async () => {
    await run('ip', ['netns', 'del', ns2]);
    live.delete(ns2);
  });
  const sysctl = (ns: string, ...settings: string[]): Promise<void> => ip('netns', 'exec', ns, 'sysctl', '-qw', ...settings);
  await ip('netns', 'add', ns2);
  await ip('-n', r.ns, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', ns2);
  // Forwarding on in both; no reverse-path filter (the looping datagrams come back from the
  // second namespace with the host's source address) and no redirects.
  for (const ns of [r.ns, ns2]) await sysctl(ns, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.all.send_redirects=0');
  await sysctl(r.ns, `net.ipv4.conf.${a}.rp_filter=0`, `net.ipv4.conf.${r.nsIf}.rp_filter=0`);
  await sysctl(ns2, `net.ipv4.conf.${b}.rp_filter=0`);
  await ip('-n', r.ns, 'link', 'set', a, 'up');
  await ip('-n', ns2, 'link', 'set', b, 'up');
  await ip('-n', ns2, 'link', 'set', 'lo', 'up');
  await ip('-n', r.ns, 'addr', 'add', `${net}.253/32`, 'dev', a);
  await ip('-n', ns2, 'addr', 'add', `${net}.254/32`, 'dev', b);
  await ip('-n', r.ns, 'route', 'add', `${net}.254/32`, 'dev', a);
  await ip('-n', ns2, 'route', 'add', `${net}.253/32`, 'dev', b);
  await ip('-n', ns2, 'route', 'add', 'default', 'via', `${net}.253`, 'dev', b);
  const target = `${net}.200`;
  await ip('-n', r.ns, 'route', 'add', `${target}/32`, 'via', `${net}.254`, 'dev', a);
  await ip('route', 'add', `${target}/32`, 'via', r.peerAddr, 'dev', r.hostIf);
  let v6: string | null = null;
  try {
    for (const ns of [r.ns, ns2]) await sysctl(ns, 'net.ipv6.conf.all.forwarding=1');
    await ip('addr', 'add', `${v6net}1/64`, 'dev', r.hostIf, 'nodad');
    await ip('-n', r.ns, 'addr', 'add', `${v6net}2/64`, 'dev', r.nsIf, 'nodad');
    await ip('-n', r.ns, 'addr', 'add', `${v6net}fd/128`, 'dev', a, 'nodad');
    await ip('-n', ns2, 'addr', 'add', `${v6net}fe/128`, 'dev', b, 'nodad');
    await ip('-n', r.ns, '-6', 'route', 'add', `${v6net}fe/128`, 'dev', a);
    await ip('-n', ns2, '-6', 'route', 'add', `${v6net}fd/128`, 'dev', b);
    await ip('-n', ns2, '-6', 'route', 'add', 'default', 'via', `${v6net}fd`, 'dev', b);
    await ip('-n', r.ns, '-6', 'route', 'add', `${v6net}c8/128`, 'via', `${v6net}fe`, 'dev', a);
    await ip('-6', 'route', 'add', `${v6net}c8/128`, 'via', `${v6net}2`, 'dev', r.hostIf);
    v6 = `${v6net}c8`;
  } catch (err) {
    t.comment(`IPv6 left out: ${(err as Error).message}`);
  }
  return { v4: target, v6, allow: `${r.allow},${v6net}/64,127.0.0.1,::1` };
}

t.test('UDP: a datagram whose TTL runs out in a routing loop: the next receive reports WSAENETRESET until SIO_UDP_NETRESET FALSE', opts, async (t) => {
  const r = await rig(t);
  const loop = await routingLoop(t, r);
  const d = await daemon(t, { allow: loop.allow });
  const spi = await session(t, d);
  const families: Array<['ipv4' | 'ipv6', string]> = [['ipv4', loop.v4]];
  if (loop.v6) families.push(['ipv6', loop.v6]);
  for (const [f, target] of families) {
    const v6 = f === 'ipv6';
    const family = v6 ? S.AF_INET6 : S.AF_INET;
    const len = v6 ? 28 : 16;
    const into = { family, address: target, port: 9 };
    const u = await newSocket(spi, f, 'udp');
    const e = S.out(0);
    t.equal(await spi.WSPBind(u, { family, address: v6 ? '::' : '0.0.0.0', port: 0 }, len, e), 0, `${f}: WSPBind to the unspecified address`);
    const self = { family, address: v6 ? '::1' : '127.0.0.1', port: (await sockName(spi, u)).port };
    await setNonBlocking(spi, u, true);
    const ev = await spi.WSACreateEvent();
    t.equal(await spi.WSPEventSelect(u, ev, S.FD_READ, e), 0, `${f}: WSPEventSelect(FD_READ)`);
    /** Sends a datagram into the loop and waits until the host has its ICMP time exceeded (the kernel has then queued the error on the socket). */
    const intoTheLoop = async (name: string): Promise<void> => {
      const before = snmpCounter(v6, 'InTimeExcds');
      t.same(await sendTo(spi, u, [Buffer.from(name)], into, len), [0, 0, name.length], `${f} ${name}: WSPSendTo into the loop succeeds`);
      t.ok(await until(() => snmpCounter(v6, 'InTimeExcds') > before, 5000), `${f} ${name}: the host got the ICMP time exceeded`);
    };
    /** The next receive that finds something (polled: the socket is nonblocking), or null. */
    const nextReceive = async (): Promise<RecvResult | null> => {
      let got: RecvResult | null = null;
      await until(async () => (got = await recvInto(spi, u, [64])).errno !== S.WSAEWOULDBLOCK, 5000);
      return got;
    };
    /**
     * A datagram into the loop, then one to the socket itself, which arrives after the ICMP error;
     * returns what the receive after that datagram reports.
     */
    const probe = async (name: string): Promise<number> => {
      await intoTheLoop(name);
      t.same(await sendTo(spi, u, [Buffer.from(`${name}-self`)], self, len), [0, 0, name.length + 5]);
      // Sent is not yet received: a receive before the daemon has read the datagram would find
      // nothing waiting, and rightly take the error.
      t.ok(await until(async () => (await fionread(spi, u))[2] > 0, 5000), `${f} ${name}: the datagram to itself is waiting`);
      const got = await nextReceive();
      // The error waits for a receive that finds no datagram waiting: the datagram comes first.
      t.same(got && [got.ret, got.data.toString()], [0, `${name}-self`], `${f} ${name}: the datagram waiting comes first`);
      return (await recvInto(spi, u, [64])).errno;
    };
    t.equal(await probe('default'), S.WSAENETRESET, `${f}: by default the receive after it reports WSAENETRESET, as on Windows`);
    t.equal((await recvInto(spi, u, [64])).errno, S.WSAEWOULDBLOCK, `${f}: reported once`);
    const ne: S.WSANETWORKEVENTS = { lNetworkEvents: 0, iErrorCode: [] };
    t.equal(await spi.WSPEnumNetworkEvents(u, ev, ne, e), 0);
    t.equal(ne.lNetworkEvents & S.FD_READ, S.FD_READ, `${f}: FD_READ was recorded`);
    t.same(await ioctlBool(spi, u, S.SIO_UDP_CONNRESET, 0), [0, 0], `${f}: SIO_UDP_CONNRESET FALSE`);
    t.equal(await probe('connreset-off'), S.WSAENETRESET, `${f}: port unreachables off leaves times exceeded reported`);
    t.same(await ioctlBool(spi, u, S.SIO_UDP_NETRESET, 0), [0, 0], `${f}: SIO_UDP_NETRESET FALSE`);
    t.equal(await probe('off'), S.WSAEWOULDBLOCK, `${f}: with FALSE nothing is reported`);
    t.same(await ioctlBool(spi, u, S.SIO_UDP_NETRESET, 1), [0, 0], `${f}: SIO_UDP_NETRESET TRUE`);
    t.equal(await probe('on'), S.WSAENETRESET, `${f}: with TRUE, WSAENETRESET again`);
    if (!v6) {
      // Linux hands an earlier datagram's ICMP error to the next send; Windows fails no send for it.
      await intoTheLoop('before the echo');
      t.same(await sendTo(spi, u, [Buffer.from('echo me')], { family, address: r.peerAddr, port: r.peerPort }, len), [0, 0, 7], `${f}: the next send, to the echo peer, succeeds`);
      const first = await nextReceive();
      const echo = first?.errno === S.WSAENETRESET ? await nextReceive() : first;
      t.same(echo && [echo.ret, echo.data.toString()], [0, 'echo me'], `${f}: and the peer echoed it`);
    }
    const tcp = await newSocket(spi, f, 'tcp');
    t.same(await ioctlBool(spi, tcp, S.SIO_UDP_NETRESET, 0), [S.SOCKET_ERROR, S.WSAEOPNOTSUPP], `${f}: a TCP socket refuses SIO_UDP_NETRESET`);
  }
});

t.test('UDP: over a link with an MTU of 1280, a 3000-byte datagram goes in fragments by default (Windows\' UDP default) and fails with WSAEMSGSIZE once IP_DONTFRAGMENT is set', opts, async (t) => {
  const r = await rig(t);
  await ip('link', 'set', r.hostIf, 'mtu', '1280');
  await ip('-n', r.ns, 'link', 'set', r.nsIf, 'mtu', '1280');
  const d = await daemon(t, { allow: r.allow });
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  const peer = { family: S.AF_INET, address: r.peerAddr, port: r.peerPort };
  const big = Buffer.alloc(3000, 0x5a);
  t.same(await sendTo(spi, u, [big], peer, 16), [0, 0, 3000], 'the 3000-byte datagram is sent');
  const echo = await recvInto(spi, u, [4096]);
  t.same([echo.ret, echo.bytes], [0, 3000], 'and the peer, which echoes it, received it whole');
  t.ok(echo.data.equals(big), 'byte for byte');
  t.same(await setOpt(spi, u, S.IP_DONTFRAGMENT, 1, 4, S.IPPROTO_IP), [0, 0], 'IP_DONTFRAGMENT on');
  t.same((await sendTo(spi, u, [big], peer, 16)).slice(0, 2), [S.SOCKET_ERROR, S.WSAEMSGSIZE], 'the same datagram fails with WSAEMSGSIZE');
  const small = Buffer.alloc(1000, 0x33);
  t.same(await sendTo(spi, u, [small], peer, 16), [0, 0, 1000], 'one that fits the link still goes');
  const smallEcho = await recvInto(spi, u, [4096]);
  t.same([smallEcho.ret, smallEcho.bytes], [0, 1000], 'and comes back');
  await spi.WSPCloseSocket(u, S.out(0));
});

/** A member of a multicast group in the rig's namespace that echoes each datagram to its sender. */
const MULTICAST_PEER = `
const dgram = require('node:dgram');
const [group, address] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m, from) => s.send(m, from.port, from.address));
s.bind(0, () => { s.addMembership(group, address); console.log('listening ' + s.address().port); });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/** A member of an IPv6 group on the namespace's side of the rig's link, echoing what it receives. */
const MULTICAST6_PEER = `
const dgram = require('node:dgram');
const [group, ifname] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp6', reuseAddr: true });
s.on('message', (m, from) => s.send(m, from.port, from.address));
s.bind(0, () => { s.addMembership(group, '::%' + ifname); console.log('listening ' + s.address().port); });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/**
 * Starts a member in the rig's namespace, a member of group on the rig's link; returns its port.
 * The IPv4 member (MULTICAST_PEER) is given the namespace's address, the IPv6 one its interface.
 */
async function multicastMember(t: Test, r: Rig, group: string, v6 = false): Promise<number> {
  const args = v6 ? [MULTICAST6_PEER, group, r.nsIf] : [MULTICAST_PEER, group, r.peerAddr];
  const member = spawn('ip', ['netns', 'exec', r.ns, process.execPath, '-e', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => stopPeer(member));
  return new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the multicast member did not start within 10 s')), 10000);
    member.stdout!.on('data', (b: Buffer) => {
      const m = /listening (\d+)/.exec((out += b.toString()));
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
}

t.test('UDP: multicast over the rig\'s link: IP_MULTICAST_TTL 1 (the default) reaches a member, 0 keeps a datagram on the host; IP_MULTICAST_LOOP off keeps it from a member on the host', opts, async (t) => {
  const r = await rig(t);
  const group = `239.255.${randomInt(1, 255)}.${randomInt(1, 255)}`;
  // The group's datagrams leave through the rig's link only (the route goes with the link).
  await ip('route', 'add', `${group}/32`, 'dev', r.hostIf);
  const port = await multicastMember(t, r, group);
  // A member on this host, on the rig's link: it sees the daemon's datagrams only looped back.
  const { createSocket } = await import('node:dgram');
  const local = createSocket({ type: 'udp4', reuseAddr: true });
  t.teardown(() => local.close());
  await new Promise<void>((resolve) => local.bind(port, () => resolve()));
  local.addMembership(group, r.hostAddr);
  const looped: string[] = [];
  let onLooped: (() => void) | null = null;
  local.on('message', (m) => {
    looped.push(m.toString());
    onLooped?.();
  });
  const nextLooped = (): Promise<string> => (looped.length > 0 ? Promise.resolve(looped.shift()!) : new Promise((resolve) => (onLooped = () => ((onLooped = null), resolve(looped.shift()!)))));

  const d = await daemon(t, { allow: `${r.allow},${group}/32` });
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  t.same(await getOpt(spi, u, S.IP_MULTICAST_TTL, 4, S.IPPROTO_IP), [0, 0, 1, 4], 'IP_MULTICAST_TTL reads 1');
  t.same(await getOpt(spi, u, S.IP_MULTICAST_LOOP, 4, S.IPPROTO_IP), [0, 0, 1, 4], 'IP_MULTICAST_LOOP reads 1');
  const to = { family: S.AF_INET, address: group, port };
  const send = async (text: string): Promise<void> => void t.same(await sendTo(spi, u, [Buffer.from(text)], to, 16), [0, 0, text.length], `"${text}" sent to the group`);
  await send('first');
  const echo1 = await recvWithin(spi, u, 5000);
  t.same(echo1 && [echo1.ret, echo1.data.toString()], [0, 'first'], 'the member in the namespace echoed it: it left the host');
  t.equal(await within(nextLooped(), 5000, 'nothing'), 'first', 'and the member on this host got it looped back');

  t.same(await setOpt(spi, u, S.IP_MULTICAST_TTL, 0, 4, S.IPPROTO_IP), [0, 0], 'IP_MULTICAST_TTL 0');
  await send('ttl0');
  t.same(await setOpt(spi, u, S.IP_MULTICAST_TTL, 1, 4, S.IPPROTO_IP), [0, 0], 'IP_MULTICAST_TTL 1 again');
  await send('ttl1');
  const echo2 = await recvWithin(spi, u, 5000);
  t.same(echo2 && [echo2.ret, echo2.data.toString()], [0, 'ttl1'], 'the next echo is of "ttl1": "ttl0" never left the host');
  t.equal(await within(nextLooped(), 5000, 'nothing'), 'ttl0', 'though the member on this host got it');
  t.equal(await within(nextLooped(), 5000, 'nothing'), 'ttl1', 'and then "ttl1"');

  t.same(await setOpt(spi, u, S.IP_MULTICAST_LOOP, 0, 4, S.IPPROTO_IP), [0, 0], 'IP_MULTICAST_LOOP 0');
  await send('unlooped');
  t.same(await setOpt(spi, u, S.IP_MULTICAST_LOOP, 1, 4, S.IPPROTO_IP), [0, 0], 'IP_MULTICAST_LOOP 1 again');
  await send('looped');
  t.equal(await within(nextLooped(), 5000, 'nothing'), 'looped', 'the member on this host gets "looped" next: "unlooped" was not looped back');
  for (const text of ['unlooped', 'looped']) {
    const echo = await recvWithin(spi, u, 5000);
    t.same(echo && echo.data.toString(), text, `"${text}" still left the host`);
  }
  await spi.WSPCloseSocket(u, S.out(0));
});

t.test('UDP: IP_MULTICAST_IF sends a group\'s datagrams out of the rig\'s link, named by its address or by its interface index, where the host\'s routes lead nowhere', opts, async (t) => {
  const r = await rig(t);
  const group = `239.254.${randomInt(1, 255)}.${randomInt(1, 255)}`;
  // Without IP_MULTICAST_IF the group is unreachable: nothing can leave the host by mistake.
  await ip('route', 'add', 'unreachable', `${group}/32`);
  t.teardown(() => run('ip', ['route', 'del', 'unreachable', `${group}/32`]));
  const port = await multicastMember(t, r, group);
  const d = await daemon(t, { allow: `${r.allow},${group}/32` });
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv4', 'udp');
  const to = { family: S.AF_INET, address: group, port };
  t.same(await getOpt(spi, u, S.IP_MULTICAST_IF, 4, S.IPPROTO_IP), [0, 0, 0, 4], 'IP_MULTICAST_IF reads 0');
  const [r0, e0] = await sendTo(spi, u, [Buffer.from('routed')], to, 16);
  t.ok(r0 === S.SOCKET_ERROR && (e0 === S.WSAEHOSTUNREACH || e0 === S.WSAENETUNREACH), `without it the host's route (unreachable) decides: the send fails (${r0}, ${e0})`);
  /** The DWORD of an IPv4 address as Windows takes it: its octets in order, read little-endian. */
  const dwordOf = (octets: number[]): number => (octets[0]! | (octets[1]! << 8) | (octets[2]! << 16) | (octets[3]! << 24)) >>> 0;
  const byAddress = dwordOf(r.hostAddr.split('.').map(Number));
  t.same(await setOpt(spi, u, S.IP_MULTICAST_IF, byAddress, 4, S.IPPROTO_IP), [0, 0], `IP_MULTICAST_IF ${r.hostAddr}`);
  t.same((await getOpt(spi, u, S.IP_MULTICAST_IF, 4, S.IPPROTO_IP)).slice(0, 3), [0, 0, byAddress], 'reads back as set');
  t.same(await sendTo(spi, u, [Buffer.from('by address')], to, 16), [0, 0, 10], 'a datagram to the group');
  const echo1 = await recvWithin(spi, u, 5000);
  t.same(echo1 && [echo1.ret, echo1.data.toString()], [0, 'by address'], 'the member behind the rig\'s link echoed it');
  const index = Number(readFileSync(`/sys/class/net/${r.hostIf}/ifindex`, 'latin1').trim());
  const byIndex = dwordOf([0, (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff]);
  t.same(await setOpt(spi, u, S.IP_MULTICAST_IF, byIndex, 4, S.IPPROTO_IP), [0, 0], `IP_MULTICAST_IF 0.x.y.z: interface index ${index}`);
  t.same(await sendTo(spi, u, [Buffer.from('by index')], to, 16), [0, 0, 8], 'another datagram');
  const echo2 = await recvWithin(spi, u, 5000);
  t.same(echo2 && [echo2.ret, echo2.data.toString()], [0, 'by index'], 'echoed too');
  t.same(await setOpt(spi, u, S.IP_MULTICAST_IF, dwordOf([192, 0, 2, 1]), 4, S.IPPROTO_IP), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], 'an address not of this host: WSAEADDRNOTAVAIL');
  await spi.WSPCloseSocket(u, S.out(0));
});

t.test('UDP: IPV6_MULTICAST_IF names the interface by index, and set back to 0 gives the choice back to the host\'s routes', opts, async (t) => {
  const r = await rig(t);
  const net6 = `fd${randomBytes(1).toString('hex')}:${randomBytes(2).toString('hex')}::`;
  await ip('-6', 'addr', 'add', `${net6}1/64`, 'dev', r.hostIf, 'nodad');
  await ip('-6', '-n', r.ns, 'addr', 'add', `${net6}2/64`, 'dev', r.nsIf, 'nodad');
  const group = `ff0e::5:${randomBytes(2).toString('hex')}`;
  // The host's own choice for the group: the rig's link (a route of the local table, which the
  // kernel asks first for multicast); the loopback interface takes no multicast at all.
  await ip('-6', 'route', 'add', 'multicast', `${group}/128`, 'dev', r.hostIf, 'table', 'local');
  t.teardown(() => run('ip', ['-6', 'route', 'del', 'multicast', `${group}/128`, 'dev', r.hostIf, 'table', 'local']));
  const port = await multicastMember(t, r, group, true);
  const d = await daemon(t, { allow: `${net6}/64,${group}/128` });
  const spi = await session(t, d);
  const u = await newSocket(spi, 'ipv6', 'udp');
  const to = { family: S.AF_INET6, address: group, port, flowinfo: 0, scopeId: 0 };
  const echoed = async (text: string): Promise<void> => {
    t.same(await sendTo(spi, u, [Buffer.from(text)], to, 28), [0, 0, text.length], `"${text}" sent to the group`);
    const echo = await recvWithin(spi, u, 5000);
    t.same(echo && [echo.ret, echo.data.toString()], [0, text], `the member behind the rig's link echoed "${text}"`);
  };
  await echoed('by the host\'s route');
  const index = Number(readFileSync(`/sys/class/net/${r.hostIf}/ifindex`, 'latin1').trim());
  t.same(await setOpt(spi, u, S.IPV6_MULTICAST_IF, index, 4, S.IPPROTO_IPV6), [0, 0], `IPV6_MULTICAST_IF ${index}, the rig's link`);
  await echoed('by index');
  t.same(await setOpt(spi, u, S.IPV6_MULTICAST_IF, 1, 4, S.IPPROTO_IPV6), [0, 0], 'IPV6_MULTICAST_IF 1, the loopback interface');
  const [r1, e1] = await sendTo(spi, u, [Buffer.from('nowhere')], to, 28);
  t.same([r1, e1], [S.SOCKET_ERROR, S.WSAENETUNREACH], 'the loopback interface takes no multicast: WSAENETUNREACH');
  t.same(await setOpt(spi, u, S.IPV6_MULTICAST_IF, 0, 4, S.IPPROTO_IPV6), [0, 0], 'IPV6_MULTICAST_IF 0');
  t.same((await getOpt(spi, u, S.IPV6_MULTICAST_IF, 4, S.IPPROTO_IPV6)).slice(0, 3), [0, 0, 0], 'reads back 0');
  await echoed('the host\'s route again');
  t.same(await setOpt(spi, u, S.IPV6_MULTICAST_IF, 0x7fff_fff0, 4, S.IPPROTO_IPV6), [S.SOCKET_ERROR, S.WSAEADDRNOTAVAIL], 'an index that names no interface: WSAEADDRNOTAVAIL');
  t.same((await getOpt(spi, u, S.IPV6_MULTICAST_IF, 4, S.IPPROTO_IPV6)).slice(0, 3), [0, 0, 0], 'and the value stays');
  await spi.WSPCloseSocket(u, S.out(0));
});
