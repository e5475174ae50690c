/**
 * The daemon serving wss:// and https:// itself (--tls-cert, --tls-key), with a real TLS
 * handshake: a CA and a server certificate for 127.0.0.1 made with openssl for this test, the SDK
 * verifying the daemon against that CA, a send through the session reaching a real peer, and the
 * refusals: no CA given, a CA that did not sign it, plain ws:// to a TLS port. The command line
 * takes the files (and refuses one without the other).
 */
import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, fetch } from 'undici';
import * as S from '@spiwire/client';
import { daemon, send, tcpPeer, until, type PeerConnection } from '../helpers/harness.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const openssl = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));

interface Pki {
  dir: string;
  ca: string;
  otherCa: string;
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/** A CA, a second unrelated CA, and a server certificate for 127.0.0.1 signed by the first. */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-tls-'));
  const run = (...args: string[]): void => void execFileSync(openssl!, args, { cwd: dir, stdio: 'ignore' });
  for (const name of ['ca', 'other']) {
    run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=spiwire test ${name}`);
  }
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { dir, ca: read('ca.pem'), otherCa: read('other.pem'), cert: read('server.pem'), key: read('server.key'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key') };
}

t.test('TLS', { skip: openssl ? false : 'openssl is not installed' }, async (t) => {
  const pki = makePki();
  t.teardown(() => rmSync(pki.dir, { recursive: true, force: true }));

  /** An SDK session over wss:// (verified against the CA) with a TCP socket connected to a real peer. */
  const wssSessionToPeer = async (t: Test, url: string): Promise<{ spi: S.SpiSession; s: number; conn: PeerConnection }> => {
    const spi = await S.connect(url, { ca: pki.ca });
    t.teardown(() => spi.close());
    const peer = await tcpPeer(t, 'ipv4');
    const e = S.out(0);
    const s = await spi.WSPSocket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, null, 0, 0, e);
    t.equal(await spi.WSPConnect(s, { family: S.AF_INET, address: '127.0.0.1', port: peer.port }, 16, null, null, null, null, e), 0, 'the socket connects to the peer');
    return { spi, s, conn: await peer.nextConnection() };
  };

  t.test('the SDK verifies the daemon against the CA given, and the session works', async (t) => {
    const d = await daemon(t, { tls: { cert: pki.cert, key: pki.key } });
    t.match(d.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/, 'the daemon gives a wss:// URL');
    const { spi, s, conn } = await wssSessionToPeer(t, d.url);
    t.same(await send(spi, s, [Buffer.from('over tls')]), [0, 0, 8]);
    t.equal((await conn.waitFor(8)).toString(), 'over tls', 'the peer got the bytes sent through the wss:// session');
    const health = await fetch(d.url.replace(/^wss:/, 'https:').replace(/\/ws$/, '/healthz'), { dispatcher: new Agent({ connect: { ca: pki.ca } }) });
    t.equal(health.status, 200, 'https:// serves the HTTP endpoints');
  });

  t.test('a certificate that does not verify is refused with one clear error', async (t) => {
    const d = await daemon(t, { tls: { cert: pki.cert, key: pki.key } });
    for (const [what, opts] of [['no CA given', {}], ['another CA', { ca: pki.otherCa }]] as const) {
      const err = await S.connect(d.url, opts).then(
        () => null,
        (e: unknown) => e,
      );
      t.ok(err instanceof S.SpiwireConnectError, `${what}: a SpiwireConnectError`);
      if (err instanceof S.SpiwireConnectError) {
        t.equal(err.kind, 'tls', `${what}: kind tls`);
        t.match(err.message, /TLS certificate does not verify/, `${what}: ${err.message}`);
      }
    }
    const plain = await S.connect(d.url.replace(/^wss:/, 'ws:')).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(plain instanceof S.SpiwireConnectError, 'plain ws:// to the TLS port fails with a SpiwireConnectError');
  });

  t.test('a TLS handshake that stalls is closed after --handshake-timeout; renegotiation is refused', async (t) => {
    const d = await daemon(t, { tls: { cert: pki.cert, key: pki.key }, limits: { handshakeTimeoutMs: 500 } });
    const url = new URL(d.url);
    // The first 9 bytes of a ClientHello record, and no more.
    const sock = net.connect(Number(url.port), '127.0.0.1', () => sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])));
    sock.on('error', () => undefined);
    sock.resume();
    t.teardown(() => sock.destroy());
    const closed = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10000);
      sock.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    t.ok(closed, 'the daemon closed the stalled handshake');
    // TLS 1.2, where a client may ask to renegotiate: the daemon refuses.
    const c = tls.connect({ host: '127.0.0.1', port: Number(url.port), ca: pki.ca, maxVersion: 'TLSv1.2' });
    t.teardown(() => c.destroy());
    await new Promise((r) => c.once('secureConnect', r));
    const refused = await new Promise<Error | null>((resolve) => {
      c.once('error', resolve);
      c.once('close', () => resolve(null));
      if (!c.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null))) resolve(new Error('renegotiate() refused locally'));
    });
    t.ok(refused, `a renegotiation fails (${refused?.message ?? 'closed'})`);
    t.equal((await fetch(`https://127.0.0.1:${url.port}/healthz`, { dispatcher: new Agent({ connect: { ca: pki.ca } }) })).status, 200, 'and the daemon still serves new clients');
  });

  t.test('connections stalled before or in their TLS handshake make room for newcomers; the wss:// session keeps its slot', async (t) => {
    // One session allowed: 65 connection slots; the handshake timeout is far off.
    const d = await daemon(t, { tls: { cert: pki.cert, key: pki.key }, limits: { maxSessions: 1, handshakeTimeoutMs: 120_000 } });
    const port = Number(new URL(d.url).port);
    const { spi, s, conn } = await wssSessionToPeer(t, d.url);
    // 200 connections, one at a time: every other one stops after part of a ClientHello.
    const stalled: Array<{ closed: boolean }> = [];
    for (let i = 0; i < 200; i++) {
      const sock = net.connect(port, '127.0.0.1');
      t.teardown(() => sock.destroy());
      sock.on('error', () => undefined);
      const entry = { closed: false };
      sock.once('close', () => (entry.closed = true));
      await new Promise((r) => sock.once('connect', r));
      if (i % 2 === 1) sock.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
      stalled.push(entry);
    }
    const health = await fetch(`https://127.0.0.1:${port}/healthz`, { dispatcher: new Agent({ connect: { ca: pki.ca } }) });
    t.equal(health.status, 200, 'an https:// health check gets in');
    // 64 slots besides the session's, the health check's among them: the oldest 137 made room.
    t.ok(await until(() => stalled.slice(0, 137).every((c) => c.closed)), 'the oldest stalled connections were closed to make room');
    t.notOk(stalled.slice(137).some((c) => c.closed), 'and only those');
    t.same(await send(spi, s, [Buffer.from('still here')]), [0, 0, 10]);
    t.equal((await conn.waitFor(10)).toString(), 'still here', 'the wss:// session kept its slot: the peer got its bytes');
  });

  t.test('a certificate or key that OpenSSL refuses: exit 2 with a message naming the flag', async (t) => {
    const main = join(root, 'server/dist/src/main.js');
    const file = (name: string, text: string): string => {
      writeFileSync(join(pki.dir, name), text);
      return join(pki.dir, name);
    };
    const otherKey = file('other.key.copy', readFileSync(join(pki.dir, 'other.key'), 'utf8'));
    execFileSync(openssl!, ['pkey', '-in', 'server.key', '-aes256', '-passout', 'pass:secret', '-out', 'server.enc.key'], { cwd: pki.dir, stdio: 'ignore' });
    const cases: Array<[string, string, string, RegExp]> = [
      ['the key given as the certificate', pki.keyFile, pki.keyFile, /^--tls-cert: the certificate cannot be read: no start line/],
      ['a certificate of bad base64', file('bad.pem', '-----BEGIN CERTIFICATE-----\nzzzz\n-----END CERTIFICATE-----\n'), pki.keyFile, /^--tls-cert: the certificate cannot be read/],
      ['a key of another certificate', pki.certFile, otherKey, /^--tls-cert and --tls-key do not go together/],
      ['a key protected by a passphrase', pki.certFile, join(pki.dir, 'server.enc.key'), /^--tls-key: the private key is protected by a passphrase/],
    ];
    for (const [what, cert, key, message] of cases) {
      const child = spawn(process.execPath, [main, '--port', '0', '--tls-cert', cert, '--tls-key', key], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      let out = '';
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      t.equal(code, 2, `${what}: exit code 2`);
      t.match(err, message, `${what}: ${err.trim()}`);
      t.equal(out, '', `${what}: nothing on stdout`);
    }
  });

  t.test('the command line: --tls-cert and --tls-key serve wss://; one without the other is refused', async (t) => {
    const main = join(root, 'server/dist/src/main.js');
    const lone = spawn(process.execPath, [main, '--port', '0', '--tls-cert', pki.certFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let loneErr = '';
    lone.stderr.on('data', (b: Buffer) => (loneErr += b.toString()));
    const code = await new Promise<number | null>((resolve) => lone.once('exit', resolve));
    t.equal(code, 2, 'exit code 2');
    t.match(loneErr, /--tls-cert and --tls-key .* go together/);

    const child = spawn(process.execPath, [main, '--port', '0', '--tls-cert', pki.certFile, '--tls-key', pki.keyFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => void child.kill('SIGKILL'));
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /"url":"(wss:\/\/[^"]+)"/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (c) => reject(new Error(`the daemon exited (${c}): ${out}`)));
    });
    const spi = await S.connect(url, { ca: pki.ca });
    t.ok(spi.welcome.session, 'a session over the daemon started from the command line');
    await spi.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  });
});
