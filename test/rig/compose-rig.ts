#!/usr/bin/env node
/**
 * The example test rig of docker-compose.yml: it drives the daemon through the SDK, across the
 * compose network, against the real echo peers (server/src/tools/peers.ts).
 *
 *  1. TCP: several overlapped WSPSend calls with completion routines, run by alertable SleepEx
 *     waits; then several with event objects, waited for with WSAWaitForMultipleEvents and read
 *     with WSPGetOverlappedResult; WSPShutdown(SD_SEND); then WSPRecv reads the echo until the
 *     peer's FIN, and the bytes must equal, exactly and in order, the bytes that were sent.
 *  2. UDP: one overlapped WSPSendTo to the UDP echo peer, then WSPRecvFrom of the echoed datagram
 *     (same bytes, from the peer's address).
 *  3. Optionally, a destination outside the daemon's SPIWIRE_ALLOW must be refused with WSAEACCES.
 *  4. Optionally (RIG_RESUME_CHECK=1), session resume behind a balancer: the session goes through
 *     a TCP proxy inside the rig, which is cut (no close frame) while an overlapped send is in
 *     flight. The SDK must resume the session at the daemon's resume URL (the replica that holds
 *     it: another daemon refuses a resume it does not hold) and the send must complete once, with
 *     the echo equal to what was sent. Prints "rig: daemon <id>" so a farm can see the spread.
 *
 * Settings (environment):
 *   SPIWIRE_URL         daemon URL (default ws://127.0.0.1:7787/ws)
 *   SPIWIRE_TOKEN       the daemon's token, or SPIWIRE_TOKEN_FILE, a file holding it
 *   RIG_TCP_ECHO        host:port of the TCP echo peer (default 127.0.0.1:7007)
 *   RIG_UDP_ECHO        host:port of the UDP echo peer (default 127.0.0.1:7007)
 *   RIG_EXPECT_DENIED   host:port the daemon must refuse with WSAEACCES (default: not checked)
 *   RIG_TIMEOUT_MS      the whole run's limit, daemon start-up included (default 60000)
 *   RIG_RESUME_CHECK    1: step 4
 *   RIG_SLOT            a whole number: when the daemon's name resolves to several addresses (a
 *                       farm's replicas), connect to the one at this index in numeric order
 *                       (modulo their count; the SDK's addressOrder), so that rigs numbered
 *                       1, 2, 3, ... spread evenly. Default: a random one (addressOrder 'shuffle')
 *
 * Prints one line per check and "rig: PASSED" or "rig: FAILED: <why>"; exits 0 or 1.
 */
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import * as net from 'node:net';
import * as S from '@spiwire/client';

const started = Date.now();
const env = process.env;
const TIMEOUT_MS = Number(env['RIG_TIMEOUT_MS'] || 60000);
const deadline = started + TIMEOUT_MS;
const SLOT = env['RIG_SLOT'] ? Number(env['RIG_SLOT']) : undefined;
const ADDRESS_ORDER: S.AddressOrder = SLOT ?? 'shuffle';

class RigFailure extends Error {}

/** What the rig is doing, for the time-out message. */
let phase = 'starting';

function fail(message: string): never {
  throw new RigFailure(message);
}

function say(line: string): void {
  process.stdout.write(`rig: ${line}\n`);
}

function errName(code: number): string {
  return `${S.wsaErrorName(code)} (${code})`;
}

/** Deterministic, position-dependent bytes, so that a reordering or a lost byte shows. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

function remaining(): number {
  return Math.max(0, deadline - Date.now());
}

async function resolve(spec: string, what: string): Promise<S.SockAddr> {
  const m = /^\[?(.+?)\]?:(\d+)$/.exec(spec);
  if (!m) fail(`${what}: ${JSON.stringify(spec)} is not host:port`);
  const { address, family } = await lookup(m[1]!);
  return { family: family === 6 ? S.AF_INET6 : S.AF_INET, address, port: Number(m[2]) };
}

function namelen(a: S.SockAddr): number {
  return a.family === S.AF_INET6 ? 28 : 16;
}

function token(): string | undefined {
  const file = env['SPIWIRE_TOKEN_FILE'];
  if (file) return readFileSync(file, 'utf8').trim();
  return env['SPIWIRE_TOKEN'] || undefined;
}

/** Opens a session, retrying while the daemon is still starting (until the run's deadline). */
async function openSession(url: string): Promise<S.SpiSession> {
  let last = '';
  phase = `opening a session to ${url}`;
  while (remaining() > 0) {
    try {
      return await S.connect(url, { token: token(), addressOrder: ADDRESS_ORDER, connectTimeoutMs: Math.min(5000, Math.max(1, remaining())) });
    } catch (err) {
      last = (err as Error).message;
      phase = `opening a session to ${url} (last attempt: ${last})`;
      // A refusal (bad token, for instance) will not change by waiting.
      if (/refused the session: HTTP 4/.test(last)) fail(`cannot open a session to ${url}: ${last}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  fail(`cannot open a session to ${url}: ${last || 'timed out'}`);
}

/** Alertable SleepEx until done() holds; returns how many waits ended with WAIT_IO_COMPLETION. */
async function alertableWaitUntil(spi: S.SpiSession, done: () => boolean, what: string): Promise<number> {
  let ioCompletions = 0;
  while (!done()) {
    if (remaining() === 0) fail(`timed out waiting for ${what}`);
    const r = await spi.SleepEx(Math.min(1000, remaining()), true);
    if (r === S.WAIT_IO_COMPLETION) ioCompletions++;
    else if (r !== 0) fail(`SleepEx returned ${r}`);
  }
  return ioCompletions;
}

/** An overlapped call must return 0 (done at once) or SOCKET_ERROR with WSA_IO_PENDING. */
function checkStarted(what: string, ret: number, e: S.Out): void {
  if (ret === 0) return;
  if (ret === S.SOCKET_ERROR && e.value === S.WSA_IO_PENDING) return;
  fail(`${what} returned ${ret}, error ${errName(e.value)}`);
}

/** An overlapped TCP socket connected to peer. */
async function connectTcp(spi: S.SpiSession, peer: S.SockAddr, label: string): Promise<number> {
  const e = S.out(0);
  const s = await spi.WSPSocket(peer.family, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  if (s === S.INVALID_SOCKET) fail(`WSPSocket(TCP) failed: ${errName(e.value)}`);
  if ((await spi.WSPConnect(s, peer, namelen(peer), null, null, null, null, e)) !== 0) {
    fail(`WSPConnect to the TCP echo peer ${peer.address}:${peer.port} failed: ${errName(e.value)}`);
  }
  say(`${label}: connected to the echo peer ${peer.address}:${peer.port}`);
  return s;
}

/** WSPShutdown(SD_SEND), then WSPRecv until the echo peer's FIN: the echo must equal sent, exactly and in order. */
async function echoUntilFin(spi: S.SpiSession, s: number, sent: Buffer[], label: string): Promise<void> {
  const e = S.out(0);
  // FIN after everything queued; the echo peer answers with its own once it has echoed it all.
  if ((await spi.WSPShutdown(s, S.SD_SEND, e)) !== 0) fail(`WSPShutdown(SD_SEND) failed: ${errName(e.value)}`);
  const want = Buffer.concat(sent);
  const got: Buffer[] = [];
  let total = 0;
  const a = new Uint8Array(3001);
  const b = new Uint8Array(5003);
  for (;;) {
    if (remaining() === 0) fail(`timed out reading the echo: ${total} of ${want.length} bytes`);
    const n = S.out(0);
    const flags = S.out(0);
    if ((await spi.WSPRecv(s, [S.wsabuf(a), S.wsabuf(b)], 2, n, flags, null, null, null, e)) !== 0) fail(`WSPRecv failed after ${total} bytes: ${errName(e.value)}`);
    if (n.value === 0) break; // The peer's FIN: graceful close.
    got.push(Buffer.concat([a, b]).subarray(0, n.value));
    total += n.value;
    if (total > want.length) break;
  }
  const echo = Buffer.concat(got);
  if (!echo.equals(want)) {
    let at = 0;
    while (at < echo.length && at < want.length && echo[at] === want[at]) at++;
    fail(`the echo differs from what was sent: ${echo.length} bytes back for ${want.length} sent, first difference at offset ${at}`);
  }
  say(`${label}: WSPRecv read back ${echo.length} bytes, identical to the ${sent.length} buffers sent, then the peer's FIN`);
}

async function tcpScenario(spi: S.SpiSession, peer: S.SockAddr): Promise<void> {
  phase = `the TCP scenario against ${peer.address}:${peer.port}`;
  const e = S.out(0);
  const s = await connectTcp(spi, peer, 'tcp');
  const sent: Buffer[] = [];

  // Overlapped sends with completion routines: each gathers three WSABUFs.
  const ROUTINE_SENDS = 8;
  const results: Array<{ error: number; bytes: number } | undefined> = new Array(ROUTINE_SENDS);
  const expected: number[] = [];
  let ranOutsideWait = 0;
  let inWait = false;
  let completed = 0;
  for (let i = 0; i < ROUTINE_SENDS; i++) {
    const sizes = [1 + ((i * 977) % 4096), 8192 + i * 1531, 1 + ((i * 313) % 700)];
    const bufs = sizes.map((n, j) => S.wsabuf(pattern(n, i * 3 + j + 1)));
    for (const b of bufs) sent.push(Buffer.from(b.buf));
    expected.push(sizes.reduce((a, b) => a + b, 0));
    const routine: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = (dwError, cbTransferred) => {
      if (!inWait) ranOutsideWait++;
      results[i] = { error: dwError, bytes: cbTransferred };
      completed++;
    };
    const ret = await spi.WSPSend(s, bufs, bufs.length, S.out(0), 0, new S.WSAOVERLAPPED(), routine, null, e);
    checkStarted(`overlapped WSPSend #${i}`, ret, e);
  }
  inWait = true;
  const ioCompletions = await alertableWaitUntil(spi, () => completed === ROUTINE_SENDS, 'the completion routines of the overlapped sends');
  inWait = false;
  if (ranOutsideWait > 0) fail(`${ranOutsideWait} completion routine(s) ran outside an alertable wait`);
  for (let i = 0; i < ROUTINE_SENDS; i++) {
    const r = results[i]!;
    if (r.error !== 0) fail(`overlapped WSPSend #${i} completed with ${errName(r.error)}`);
    if (r.bytes !== expected[i]) fail(`overlapped WSPSend #${i} completed with ${r.bytes} bytes, expected ${expected[i]}`);
  }
  say(`tcp: ${ROUTINE_SENDS} overlapped WSPSend with completion routines: all completed (${ioCompletions} alertable SleepEx returned WAIT_IO_COMPLETION)`);

  // Overlapped sends signalling event objects.
  const EVENT_SENDS = 4;
  const events: number[] = [];
  const ovs: S.WSAOVERLAPPED[] = [];
  const eventExpected: number[] = [];
  for (let i = 0; i < EVENT_SENDS; i++) {
    const data = pattern(4096 + i * 6007, 100 + i);
    sent.push(data);
    eventExpected.push(data.length);
    const ev = spi.WSACreateEvent();
    const ov = new S.WSAOVERLAPPED(ev);
    events.push(ev);
    ovs.push(ov);
    checkStarted(`event WSPSend #${i}`, await spi.WSPSend(s, [S.wsabuf(data)], 1, null, 0, ov, null, null, e), e);
  }
  const w = await spi.WSAWaitForMultipleEvents(EVENT_SENDS, events, true, Math.min(15000, remaining()), false);
  if (w === S.WSA_WAIT_TIMEOUT) fail('timed out waiting for the send events');
  if (w >= EVENT_SENDS) fail(`WSAWaitForMultipleEvents returned ${w} (error ${errName(spi.WSAGetLastError())})`);
  for (let i = 0; i < EVENT_SENDS; i++) {
    const cb = S.out(0);
    const flags = S.out(0);
    if ((await spi.WSPGetOverlappedResult(s, ovs[i]!, cb, false, flags, e)) !== S.TRUE) fail(`WSPGetOverlappedResult for event send #${i}: ${errName(e.value)}`);
    if (cb.value !== eventExpected[i]) fail(`event WSPSend #${i} transferred ${cb.value} bytes, expected ${eventExpected[i]}`);
    spi.WSACloseEvent(events[i]!);
  }
  say(`tcp: ${EVENT_SENDS} overlapped WSPSend with events: all signalled, WSPGetOverlappedResult counts right`);

  await echoUntilFin(spi, s, sent, 'tcp');
  if ((await spi.WSPCloseSocket(s, e)) !== 0) fail(`WSPCloseSocket(TCP): ${errName(e.value)}`);
}

async function udpScenario(spi: S.SpiSession, peer: S.SockAddr): Promise<void> {
  phase = `the UDP scenario against ${peer.address}:${peer.port}`;
  const e = S.out(0);
  const u = await spi.WSPSocket(peer.family, S.SOCK_DGRAM, S.IPPROTO_UDP, null, 0, S.WSA_FLAG_OVERLAPPED, e);
  if (u === S.INVALID_SOCKET) fail(`WSPSocket(UDP) failed: ${errName(e.value)}`);
  const datagram = pattern(1200, 4242);
  let result: { error: number; bytes: number } | null = null;
  const ret = await spi.WSPSendTo(u, [S.wsabuf(datagram.subarray(0, 500)), S.wsabuf(datagram.subarray(500))], 2, null, 0, peer, namelen(peer), new S.WSAOVERLAPPED(), (error, bytes) => {
    result = { error, bytes };
  }, null, e);
  checkStarted('overlapped WSPSendTo', ret, e);
  await alertableWaitUntil(spi, () => result !== null, 'the completion routine of WSPSendTo');
  const r = result as { error: number; bytes: number } | null;
  if (!r || r.error !== 0 || r.bytes !== datagram.length) fail(`overlapped WSPSendTo completed with ${r ? `${errName(r.error)}, ${r.bytes} bytes` : 'nothing'}; expected ${datagram.length} bytes`);
  say(`udp: overlapped WSPSendTo of ${datagram.length} bytes to ${peer.address}:${peer.port} completed`);

  const ev = spi.WSACreateEvent();
  const ov = new S.WSAOVERLAPPED(ev);
  const buf = new Uint8Array(2048);
  const from: S.SockAddr = { family: 0, address: '', port: 0 };
  const fromlen = S.out(28);
  checkStarted('overlapped WSPRecvFrom', await spi.WSPRecvFrom(u, [S.wsabuf(buf)], 1, null, S.out(0), from, fromlen, ov, null, null, e), e);
  const w = await spi.WSAWaitForMultipleEvents(1, [ev], false, Math.min(10000, remaining()), false);
  if (w !== S.WSA_WAIT_EVENT_0) fail(w === S.WSA_WAIT_TIMEOUT ? 'no UDP echo arrived within 10 s' : `WSAWaitForMultipleEvents returned ${w}`);
  const cb = S.out(0);
  if ((await spi.WSPGetOverlappedResult(u, ov, cb, false, S.out(0), e)) !== S.TRUE) fail(`WSPRecvFrom completed with ${errName(e.value)}`);
  const echo = Buffer.from(buf.subarray(0, cb.value));
  if (!echo.equals(datagram)) fail(`the UDP echo differs: ${echo.length} bytes back for ${datagram.length} sent`);
  // The source address arrives with the completion of an overlapped WSPRecvFrom when the SDK has it.
  if (from.port !== 0 && (from.address !== peer.address || from.port !== peer.port)) fail(`the UDP echo came from ${from.address}:${from.port}, not from the peer`);
  say(`udp: WSPRecvFrom got the ${echo.length}-byte datagram back, identical${from.port !== 0 ? `, from ${from.address}:${from.port}` : ''}`);
  spi.WSACloseEvent(ev);
  if ((await spi.WSPCloseSocket(u, e)) !== 0) fail(`WSPCloseSocket(UDP): ${errName(e.value)}`);
}

async function deniedScenario(spi: S.SpiSession, target: S.SockAddr): Promise<void> {
  phase = `the allow-list check against ${target.address}:${target.port}`;
  const e = S.out(0);
  const s = await spi.WSPSocket(target.family, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
  if (s === S.INVALID_SOCKET) fail(`WSPSocket failed: ${errName(e.value)}`);
  const r = await spi.WSPConnect(s, target, namelen(target), null, null, null, null, e);
  await spi.WSPCloseSocket(s, S.out(0));
  if (r === 0 || e.value !== S.WSAEACCES) fail(`WSPConnect to ${target.address}:${target.port} outside SPIWIRE_ALLOW gave ${r === 0 ? 'success' : errName(e.value)}, expected WSAEACCES`);
  say(`allow-list: WSPConnect to ${target.address}:${target.port} refused with WSAEACCES`);
}

/** A TCP proxy in this process in front of the daemon; cut() breaks its connections as a network would. */
interface CuttableProxy {
  url: string;
  /** Where the last connection through the proxy went: the replica the name picked. */
  upstream: string;
  cut(): number;
}

async function cuttableProxy(daemonUrl: string): Promise<CuttableProxy> {
  const target = new URL(daemonUrl);
  const live = new Set<net.Socket>();
  let upstream = 'not connected';
  const server = net.createServer((client) => {
    // The proxy stands in for the SDK's own connection: the same choice among the addresses.
    const up = net.connect({ port: Number(target.port || 80), host: target.hostname.replace(/^\[(.*)\]$/, '$1'), lookup: S.addressLookup(ADDRESS_ORDER) });
    up.once('connect', () => (upstream = `${up.remoteAddress}:${up.remotePort}`));
    const drop = (): void => {
      client.destroy();
      up.destroy();
      live.delete(client);
      live.delete(up);
    };
    for (const sock of [client, up]) {
      live.add(sock);
      sock.on('error', drop).on('close', drop);
    }
    client.pipe(up);
    up.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  server.unref();
  const { port } = server.address() as net.AddressInfo;
  return {
    get upstream() {
      return upstream;
    },
    // The same scheme: over wss:// the TLS session passes through the proxy untouched.
    url: `${target.protocol}//127.0.0.1:${port}${target.pathname}${target.search}`,
    cut: () => {
      const n = live.size;
      for (const sock of live) sock.destroy();
      return n;
    },
  };
}

async function resumeScenario(spi: S.SpiSession, peer: S.SockAddr, proxy: CuttableProxy): Promise<void> {
  phase = 'the resume check';
  const offer = spi.welcome.resume;
  if (!offer) fail('the daemon offered no resume (is --resume-grace 0?)');
  const slot = SLOT === undefined ? 'a random address' : `RIG_SLOT ${SLOT}`;
  say(`daemon ${offer.daemonId} at ${proxy.upstream} (${slot}), resume at ${offer.url ?? 'the URL the session used'}`);
  // null: resumed; a string: why the session was lost.
  const outcome = new Promise<string | null>((resolve) => {
    spi.on('resumed', () => resolve(null));
    spi.on('lost', (ev) => resolve(ev.reason));
    setTimeout(() => resolve('timed out waiting for the resume'), remaining()).unref();
  });
  const e = S.out(0);
  const s = await connectTcp(spi, peer, 'resume');
  const data = pattern(300_000, 77);
  let completions = 0;
  let result = { error: -1, bytes: -1 };
  const routine: S.LPWSAOVERLAPPED_COMPLETION_ROUTINE = (dwError, cbTransferred) => {
    completions++;
    result = { error: dwError, bytes: cbTransferred };
  };
  checkStarted('the overlapped WSPSend before the cut', await spi.WSPSend(s, [S.wsabuf(data)], 1, S.out(0), 0, new S.WSAOVERLAPPED(), routine, null, e), e);
  say(`resume: cut ${proxy.cut()} proxied connections with the send in flight`);
  phase = 'waiting for the session to be resumed';
  const lost = await outcome;
  if (lost !== null) fail(`the session was not resumed: ${lost}`);
  say('resume: the session was resumed (a daemon that does not hold it refuses: not-here)');
  await alertableWaitUntil(spi, () => completions > 0, 'the completion of the send posted before the cut');
  await spi.SleepEx(0, true);
  if (completions !== 1) fail(`the send posted before the cut completed ${completions} times`);
  if (result.error !== 0 || result.bytes !== data.length) fail(`the send posted before the cut completed with ${errName(result.error)}, ${result.bytes} bytes`);
  await echoUntilFin(spi, s, [data], 'resume');
  if ((await spi.WSPCloseSocket(s, e)) !== 0) fail(`WSPCloseSocket(TCP): ${errName(e.value)}`);
}

async function main(): Promise<void> {
  if (SLOT !== undefined && !(Number.isSafeInteger(SLOT) && SLOT >= 0)) fail(`RIG_SLOT is a whole number, not ${JSON.stringify(env['RIG_SLOT'])}`);
  const url = env['SPIWIRE_URL'] || 'ws://127.0.0.1:7787/ws';
  const tcpPeer = await resolve(env['RIG_TCP_ECHO'] || '127.0.0.1:7007', 'RIG_TCP_ECHO');
  const udpPeer = await resolve(env['RIG_UDP_ECHO'] || '127.0.0.1:7007', 'RIG_UDP_ECHO');
  const proxy = env['RIG_RESUME_CHECK'] === '1' ? await cuttableProxy(url) : null;
  const spi = await openSession(proxy?.url ?? url);
  say(`session ${spi.welcome.session} with spiwire ${spi.welcome.version} at ${url}`);
  try {
    await tcpScenario(spi, tcpPeer);
    await udpScenario(spi, udpPeer);
    const denied = env['RIG_EXPECT_DENIED'];
    if (denied) await deniedScenario(spi, await resolve(denied, 'RIG_EXPECT_DENIED'));
    if (proxy) await resumeScenario(spi, tcpPeer, proxy);
  } finally {
    await spi.close().catch(() => undefined);
  }
}

const timer = setTimeout(() => {
  say(`FAILED: timed out after ${TIMEOUT_MS} ms, in ${phase}`);
  process.exit(1);
}, TIMEOUT_MS);

main().then(
  () => {
    clearTimeout(timer);
    say(`PASSED in ${Date.now() - started} ms`);
    process.exit(0);
  },
  (err: unknown) => {
    clearTimeout(timer);
    say(`FAILED: ${err instanceof RigFailure ? err.message : ((err as Error)?.stack ?? String(err))}`);
    process.exit(1);
  },
);
