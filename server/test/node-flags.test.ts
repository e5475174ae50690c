/**
 * The V8 flags the daemon runs with (server/src/node-flags.ts): every launcher passes all of
 * them (npm start, the container image's CMD, the spiwire command's shebang), this node accepts
 * them, and the daemon notices when it was started without them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../src/node-flags.js';

const root = new URL('../../../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8');

t.test('every launcher passes every flag', async (t) => {
  const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts['start'] ?? '';
  const cmd = /^CMD \[(.*)\]$/m.exec(read('docker/Dockerfile').split('ENTRYPOINT')[1] ?? '')?.[1] ?? '';
  const shebang = read('server/src/main.ts').split('\n')[0] ?? '';
  const command = read('server/bin/spiwire.js').split('\n')[0] ?? '';
  t.match(shebang, /^#!\/usr\/bin\/env -S node /, 'the shebang passes flags through env -S');
  t.equal(command, shebang, 'the spiwire command (server/bin) starts node as main.ts does');
  for (const flag of DAEMON_NODE_FLAGS) {
    t.ok(start.includes(` ${flag} `), `npm start passes ${flag}`);
    t.ok(cmd.includes(`"${flag}"`), `the image's CMD passes ${flag}`);
    t.ok(shebang.includes(` ${flag}`), `the shebang passes ${flag}`);
  }
});

t.test('this node accepts the flags on its command line', async (t) => {
  const r = spawnSync(process.execPath, [...DAEMON_NODE_FLAGS, '-e', 'process.stdout.write(JSON.stringify(process.execArgv))'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.same(missingNodeFlags(JSON.parse(r.stdout) as string[]), [], 'a process started with them misses none');
  t.same(missingNodeFlags([]), [...DAEMON_NODE_FLAGS], 'a process started without them misses all');
});

t.test('the shebang line starts the daemon command', { skip: existsSync('/usr/bin/env') ? false : 'no /usr/bin/env here' }, async (t) => {
  const shebang = read('server/src/main.ts').split('\n')[0] ?? '';
  const [env, ...rest] = shebang.slice(2).split(' ');
  // What the kernel does with the line: the interpreter, its arguments as one string, the script.
  for (const script of ['server/dist/src/main.js', 'server/bin/spiwire.js']) {
    const r = spawnSync(env!, [rest.join(' '), fileURLToPath(new URL(script, root)), '--help'], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /^usage: spiwire/, script);
  }
});
