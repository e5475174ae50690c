/**
 * The SDK's addressOrder end to end: one name with three addresses, a daemon on each, as a swarm
 * service's dnsrr name answers for its replicas (docs/deployment.md). The name comes from an
 * /etc/hosts bind-mounted in a mount namespace of the child that connects (unshare -m, root on
 * Linux), so the machine's resolver answers it for real and nothing outside the child sees it.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, type Daemon } from '@spiwire/server';

const NAME = 'spiwire-replicas.test';
const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
const CHILD = fileURLToPath(new URL('../helpers/name-connect.js', import.meta.url));

function unshareWorks(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  // What the test does, on a file that exists: a container without CAP_SYS_ADMIN fails here.
  return spawnSync('unshare', ['-m', 'sh', '-c', 'mount --bind /etc/hosts /etc/hosts'], { stdio: 'ignore' }).status === 0;
}

/** A port free on the first address, for the three daemons to try. */
async function candidatePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, ADDRESSES[0], resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/**
 * A daemon on each address, all on one port, as replicas behind one name. Each announces its own
 * address as its resume URL, which the welcome carries: that tells the child which one it reached.
 */
async function replicas(t: Test): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await candidatePort();
    const started: Daemon[] = [];
    try {
      for (const host of ADDRESSES) started.push(await startServer({ host, port, resumeUrl: urlOf(host, port) }));
      t.teardown(async () => void (await Promise.all(started.map((d) => d.close()))));
      return port;
    } catch (err) {
      await Promise.all(started.map((d) => d.close()));
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
  throw new Error('no port free on all three addresses in five attempts');
}

const urlOf = (address: string, port: number): string => `ws://${address}:${port}/ws`;

t.test('one name, three daemons: each order reaches the daemon it names', { skip: unshareWorks() ? false : 'needs root and unshare -m on Linux (a private /etc/hosts)' }, async (t) => {
  const port = await replicas(t);
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-hosts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hosts = join(dir, 'hosts');
  writeFileSync(hosts, ['127.0.0.1 localhost', ...ADDRESSES.map((a) => `${a} ${NAME}`), ''].join('\n'));
  const orders: Array<'shuffle' | 'system' | number> = [0, 1, 2, 3, 4, 5, 'system', 'system', ...Array<'shuffle'>(60).fill('shuffle')];
  const child = spawn('unshare', ['-m', 'sh', '-c', 'mount --bind "$0" /etc/hosts && exec "$@"', hosts, process.execPath, CHILD, `ws://${NAME}:${port}/ws`, NAME, JSON.stringify(orders)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  t.equal(code, 0, `the child connected every time${err ? `: ${err}` : ''}`);
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as { resolved?: string[]; addressOrder?: unknown; reached?: string });
  const resolved = lines[0]!.resolved!;
  t.same([...resolved].sort(), ADDRESSES, 'the resolver answers the name with the three addresses');
  const reached = lines.slice(1).map((l) => l.reached!);
  t.equal(reached.length, orders.length, 'a line for every connection');
  // A number n: the n-th address in numeric order, modulo three.
  t.same(reached.slice(0, 6), [0, 1, 2, 3, 4, 5].map((n) => urlOf(ADDRESSES[n % 3]!, port)), 'numbers pick in numeric order, wrapping round');
  // 'system': the resolver's first answer, every time.
  t.same(reached.slice(6, 8), [urlOf(resolved[0]!, port), urlOf(resolved[0]!, port)], "'system' keeps the resolver's first address");
  // 'shuffle' (the default): every daemon is reached; 60 draws miss one with odds of 3 x (2/3)^60.
  const shuffled = reached.slice(8);
  t.same([...new Set(shuffled)].sort(), ADDRESSES.map((a) => urlOf(a, port)), "'shuffle' reaches every daemon");
});
