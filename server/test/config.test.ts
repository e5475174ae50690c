/**
 * Daemon configuration (server/src/config.ts): flags, environment and defaults, in that order of
 * precedence; both flag forms; --token-file; the errors; and usage() covering every setting.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, SETTINGS, defaultConfig, parseConfig, usage } from '../src/internals.js';
import { DEFAULT_LIMITS } from '../src/index.js';
import type { DaemonConfig } from '../src/config.js';

type Setting = (typeof SETTINGS)[number];

/** A temporary directory removed in teardown. */
function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'spiwire-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A raw value for a setting, and the config value it must produce. Distinct per setting and per variant. */
function sample(t: Test, s: Setting, variant: number): { raw: string; want: unknown } {
  const i = SETTINGS.indexOf(s);
  switch (s.kind) {
    case 'int': {
      // A switch: 0 or 1.
      if (s.key === 'gcStats') return { raw: String(variant % 2), want: variant % 2 };
      // The partial-frame budget must hold two messages of the largest size.
      const base = s.key === 'partialFramesBudget' ? 2 * DEFAULT_LIMITS.maxFrameBytes : 1000;
      const n = base + i * 10 + variant;
      return { raw: String(n), want: n };
    }
    case 'string':
      // The allow-list is checked when parsed, so it needs a real rule.
      if (s.key === 'allow') return { raw: `10.${variant}.0.0/16`, want: `10.${variant}.0.0/16` };
      // So is the log level.
      if (s.key === 'logLevel') {
        const level = ['debug', 'warn', 'error', 'trace'][variant % 4]!;
        return { raw: level, want: level };
      }
      // So is the resume URL.
      if (s.key === 'resumeUrl') return { raw: `ws://d${variant}.example:7787/ws`, want: `ws://d${variant}.example:7787/ws` };
      // host, token and log level take any string; the value is passed through untouched.
      return { raw: `v${variant}-${s.key}`, want: `v${variant}-${s.key}` };
    case 'list':
      return { raw: ` http://a${variant}.example , ,http://b${variant}.example,`, want: [`http://a${variant}.example`, `http://b${variant}.example`] };
    case 'policy': {
      const policy = variant % 2 === 0 ? 'windows' : 'reference';
      return { raw: policy, want: policy === 'windows' ? 1 : 0 };
    }
    case 'file': {
      const file = join(tempDir(t), `secret-${variant}`);
      writeFileSync(file, `\n  \tfile-secret-${variant} \r\n\n`);
      return { raw: file, want: `file-secret-${variant}` };
    }
  }
}

/** Asserts that fn throws a ConfigError (an instanceof check: ConfigError does not set its name). */
function configError(t: Test, fn: () => unknown, what = 'throws a ConfigError'): void {
  let thrown: unknown = undefined;
  let returned: unknown = undefined;
  try {
    returned = fn();
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof ConfigError, what, { thrown: thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : thrown, returned });
}

function get(cfg: DaemonConfig, s: Setting): unknown {
  return cfg[s.key];
}

t.test('defaults: no flags, empty environment', async (t) => {
  const cfg = parseConfig([], {});
  t.same(cfg, defaultConfig(), 'parseConfig([], {}) is defaultConfig()');
  t.equal(cfg.host, '127.0.0.1', 'host');
  t.equal(cfg.port, 7787, 'port');
  t.equal(cfg.token, undefined, 'token');
  t.equal(cfg.logLevel, 'info', 'logLevel');
  t.same(cfg.allowedOrigins, [], 'allowedOrigins');
  t.equal(cfg.maxFrameBytes, DEFAULT_LIMITS.maxFrameBytes, 'maxFrameBytes');
  t.equal(cfg.maxPendingRequests, DEFAULT_LIMITS.maxPendingRequests, 'maxPendingRequests');
  t.equal(cfg.maxSocketsPerSession, DEFAULT_LIMITS.maxSocketsPerSession, 'maxSocketsPerSession');
  t.equal(cfg.defaultSndBuf, DEFAULT_LIMITS.defaultSndBuf, 'defaultSndBuf');
  t.equal(cfg.defaultRcvBuf, DEFAULT_LIMITS.defaultRcvBuf, 'defaultRcvBuf');
  t.equal(cfg.maxOutstandingOpsPerSocket, DEFAULT_LIMITS.maxOutstandingOpsPerSocket, 'maxOutstandingOpsPerSocket');
});

t.test('unrelated and empty environment variables are ignored', async (t) => {
  const env: NodeJS.ProcessEnv = { PATH: '/bin', HOME: '/root', SPIWIRE_UNKNOWN: 'x' };
  for (const s of SETTINGS) env[s.env] = '';
  t.same(parseConfig([], env), defaultConfig(), 'empty values mean "not set"');
});

t.test('the SETTINGS table: every config key has a setting; flags and env names are well-formed and unique', async (t) => {
  const keys = new Set(SETTINGS.map((s) => s.key));
  for (const k of Object.keys(defaultConfig())) t.ok(keys.has(k as keyof DaemonConfig), `config key ${k} can be set`);
  const flags = SETTINGS.map((s) => s.flag);
  const envs = SETTINGS.map((s) => s.env);
  t.equal(new Set(flags).size, flags.length, 'flags are unique');
  t.equal(new Set(envs).size, envs.length, 'environment variables are unique');
  for (const s of SETTINGS) {
    t.match(s.flag, /^--[a-z][a-z0-9-]*$/, `${s.flag} is a long flag`);
    t.match(s.env, /^SPIWIRE_[A-Z0-9_]+$/, `${s.env} is namespaced`);
    t.ok(s.doc.length > 10, `${s.flag} is documented`);
  }
});

for (const s of SETTINGS) {
  t.test(`${s.flag} / ${s.env} (${s.kind} -> ${s.key})`, async (t) => {
    const a = sample(t, s, 1);
    const b = sample(t, s, 2);
    t.same(get(parseConfig([`${s.flag}=${a.raw}`], {}), s), a.want, `${s.flag}=value`);
    t.same(get(parseConfig([s.flag, a.raw], {}), s), a.want, `${s.flag} value`);
    t.same(get(parseConfig([], { [s.env]: a.raw }), s), a.want, `${s.env}`);
    t.same(get(parseConfig([s.flag, b.raw], { [s.env]: a.raw }), s), b.want, 'the flag wins over the environment');
    t.same(get(parseConfig([`${s.flag}=${b.raw}`], { [s.env]: a.raw }), s), b.want, 'the =form flag wins over the environment');
    t.same(get(parseConfig([s.flag, a.raw, s.flag, b.raw], {}), s), b.want, 'the last flag wins');
    // The setting touches only its own key.
    const cfg = parseConfig([s.flag, a.raw], {}) as unknown as Record<string, unknown>;
    const def = defaultConfig() as unknown as Record<string, unknown>;
    for (const k of Object.keys(def)) if (k !== s.key) t.same(cfg[k], def[k], `${k} keeps its default`);
    configError(t, () => parseConfig([s.flag], {}), `${s.flag} without a value is a ConfigError`);
  });
}

t.test('the partial-frame budget holds at least two messages of the largest size', async (t) => {
  configError(t, () => parseConfig(['--partial-frames-budget', String(2 * DEFAULT_LIMITS.maxFrameBytes - 1)], {}), 'below twice the default --max-frame-bytes');
  configError(t, () => parseConfig(['--max-frame-bytes', '1048576', '--partial-frames-budget', '2097151'], {}), 'below twice a given --max-frame-bytes');
  t.equal(parseConfig(['--max-frame-bytes', '1048576', '--partial-frames-budget', '2097152'], {}).partialFramesBudget, 2097152, 'twice --max-frame-bytes is enough');
  t.equal(parseConfig(['--max-frame-bytes', String(DEFAULT_LIMITS.partialFramesBudget)], {}).partialFramesBudget, 2 * DEFAULT_LIMITS.partialFramesBudget, 'unless given, the budget grows to twice a large --max-frame-bytes');
  t.equal(parseConfig([], { SPIWIRE_MAX_FRAME_BYTES: '1048576' }).partialFramesBudget, DEFAULT_LIMITS.partialFramesBudget, 'and keeps its default above that');
});

t.test('several settings at once, from both sources', async (t) => {
  const cfg = parseConfig(['--port', '9001', '--log-level=debug', '--max-sockets', '7'], {
    SPIWIRE_HOST: '::1',
    SPIWIRE_PORT: '9000',
    SPIWIRE_SNDBUF: '4096',
    SPIWIRE_LOG_LEVEL: 'warn',
  });
  t.equal(cfg.host, '::1', 'environment');
  t.equal(cfg.port, 9001, 'flag over environment');
  t.equal(cfg.logLevel, 'debug', 'flag over environment');
  t.equal(cfg.maxSocketsPerSession, 7, 'flag');
  t.equal(cfg.defaultSndBuf, 4096, 'environment');
  t.equal(cfg.defaultRcvBuf, DEFAULT_LIMITS.defaultRcvBuf, 'default');
});

t.test('--resume-url must be a WebSocket URL', async (t) => {
  configError(t, () => parseConfig(['--resume-url', 'http://d.example/ws'], {}));
  t.equal(parseConfig(['--resume-url', 'wss://d1.example/ws'], {}).resumeUrl, 'wss://d1.example/ws');
  t.equal(parseConfig([], {}).resumeGraceMs, 30000, 'resume is on by default');
  t.equal(parseConfig(['--resume-grace', '0'], {}).resumeGraceMs, 0, '0 turns it off');
});

t.test('--flag=value keeps everything after the first "="', async (t) => {
  t.equal(parseConfig(['--token=a=b==c'], {}).token, 'a=b==c');
  t.equal(parseConfig(['--host=::1'], {}).host, '::1');
});

t.test('port 0 is allowed (pick a free port)', async (t) => {
  t.equal(parseConfig(['--port', '0'], {}).port, 0);
  t.equal(parseConfig([], { SPIWIRE_PORT: '0' }).port, 0);
});

t.test('an empty token means no token', async (t) => {
  t.equal(parseConfig(['--token='], {}).token, undefined);
  t.equal(parseConfig(['--token', ''], { SPIWIRE_TOKEN: 'from-env' }).token, undefined, 'an explicit empty flag clears the environment token');
});

t.test('--token-file reads and trims the file; a flag beats an environment token', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'token');
  writeFileSync(file, '  s3cr3t-with spaces inside \n');
  t.equal(parseConfig(['--token-file', file], {}).token, 's3cr3t-with spaces inside', 'trimmed at both ends only');
  t.equal(parseConfig([`--token-file=${file}`], {}).token, 's3cr3t-with spaces inside');
  t.equal(parseConfig([], { SPIWIRE_TOKEN_FILE: file }).token, 's3cr3t-with spaces inside');
  t.equal(parseConfig(['--token-file', file], { SPIWIRE_TOKEN: 'env-token' }).token, 's3cr3t-with spaces inside', 'flag over environment');
  t.equal(parseConfig(['--token', 'flag-token'], { SPIWIRE_TOKEN_FILE: file }).token, 'flag-token', 'flag over environment');
  const blank = join(dir, 'blank');
  writeFileSync(blank, ' \n\t\n');
  configError(t, () => parseConfig(['--token-file', blank], {}), 'a file of white space is an error, not "no token"');
});

t.test('--token-file on a missing file or a directory is a ConfigError naming the file', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'does-not-exist');
  configError(t, () => parseConfig(['--token-file', missing], {}));
  t.throws(() => parseConfig(['--token-file', missing], {}), { message: new RegExp(missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')) });
  t.throws(() => parseConfig([], { SPIWIRE_TOKEN_FILE: missing }), { message: /SPIWIRE_TOKEN_FILE/ });
  configError(t, () => parseConfig(['--token-file', dir], {}), 'a directory');
});

t.test('bad integers are ConfigErrors, from flags and from the environment', async (t) => {
  const bad = ['abc', '-1', '1.5', '12abc', 'NaN', 'Infinity', '2e400', '--host'];
  for (const s of SETTINGS.filter((x) => x.kind === 'int')) {
    for (const v of bad) {
      configError(t, () => parseConfig([s.flag, v], {}), `${s.flag} ${JSON.stringify(v)}`);
      configError(t, () => parseConfig([`${s.flag}=${v}`], {}), `${s.flag}=${JSON.stringify(v)}`);
      configError(t, () => parseConfig([], { [s.env]: v }), `${s.env}=${JSON.stringify(v)}`);
    }
  }
  t.throws(() => parseConfig(['--port', 'abc'], {}), { message: /--port/ }, 'the message names the flag');
  t.throws(() => parseConfig([], { SPIWIRE_PORT: 'abc' }), { message: /SPIWIRE_PORT/ }, 'the message names the variable');
  t.throws(() => parseConfig([], { SPIWIRE_PORT: 'abc' }), { message: /"abc"/ }, 'the message quotes the value');
});

t.test('an empty or blank integer is not 0', async (t) => {
  // Number('') and Number(' ') are 0 in JavaScript; "--port=" must not silently mean "any port".
  for (const s of SETTINGS.filter((x) => x.kind === 'int')) {
    configError(t, () => parseConfig([`${s.flag}=`], {}), `${s.flag}= (empty)`);
    configError(t, () => parseConfig([s.flag, ' '], {}), `${s.flag} " " (blank)`);
    configError(t, () => parseConfig([], { [s.env]: ' ' }), `${s.env}=" " (blank)`);
  }
});

t.test('an unknown log level is a ConfigError at parse time', async (t) => {
  configError(t, () => parseConfig(['--log-level', 'bogus'], {}), '--log-level bogus');
  configError(t, () => parseConfig([], { SPIWIRE_LOG_LEVEL: 'loud' }), 'SPIWIRE_LOG_LEVEL=loud');
});

t.test('a bad allow-list is a ConfigError at parse time', async (t) => {
  configError(t, () => parseConfig(['--allow', 'garbage'], {}), '--allow garbage');
  configError(t, () => parseConfig([], { SPIWIRE_ALLOW: '10.0.0.0/40' }), 'SPIWIRE_ALLOW with a bad prefix');
  t.equal(parseConfig(['--allow', '127.0.0.0/8,[::1]'], {}).allow, '127.0.0.0/8,[::1]');
});

t.test('integers beyond what the setting can hold are ConfigErrors', async (t) => {
  configError(t, () => parseConfig(['--port', '65536'], {}), '--port 65536 is not a TCP port');
  configError(t, () => parseConfig([], { SPIWIRE_PORT: '70000' }), 'SPIWIRE_PORT=70000 is not a TCP port');
  configError(t, () => parseConfig(['--max-frame-bytes', '99999999999999999999'], {}), 'an integer beyond 2^53 cannot be held exactly');
  t.equal(parseConfig(['--port', '65535'], {}).port, 65535, '65535 is fine');
});

t.test('unknown flags and stray arguments are ConfigErrors that show the usage', async (t) => {
  for (const argv of [['--nope'], ['--nope=1'], ['--port', '1', 'stray'], ['-p', '1'], ['--PORT', '1'], ['--port-', '1'], ['port=1'], ['--']]) {
    configError(t, () => parseConfig(argv, {}), argv.join(' '));
    try {
      parseConfig(argv, {});
    } catch (err) {
      t.match((err as Error).message, /unknown flag/, `${argv.join(' ')}: says "unknown flag"`);
      t.match((err as Error).message, /usage: spiwire/, `${argv.join(' ')}: includes the usage`);
    }
  }
});

t.test('--help and -h raise a ConfigError carrying the usage', async (t) => {
  for (const h of ['--help', '-h']) {
    configError(t, () => parseConfig([h], {}));
    t.throws(() => parseConfig(['--port', '1', h], {}), { message: usage() }, `${h} after other flags`);
  }
});

t.test('a ConfigError is an Error', async (t) => {
  const e = new ConfigError('x');
  t.ok(e instanceof Error);
  t.equal(e.message, 'x');
});

t.test('usage() lists every flag, every environment variable and every doc line', async (t) => {
  const u = usage();
  t.match(u, /^usage: spiwire/);
  const lines = u.split('\n');
  for (const s of SETTINGS) {
    const line = lines.find((l) => l.includes(`${s.flag} `));
    t.ok(line, `${s.flag} has a line`);
    t.ok(line?.includes(s.env), `${s.flag}'s line names ${s.env}`);
    t.ok(line?.includes(s.doc), `${s.flag}'s line carries its doc`);
  }
  t.match(u, /flags win/i, 'says which source wins');
});

t.test("the README's table of settings has a row for every setting, with its environment variable and numeric default", async (t) => {
  const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
  const defaults = defaultConfig();
  for (const s of SETTINGS) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${s.flag}\` |`));
    t.ok(row, `${s.flag} has a row`);
    t.ok(row?.includes(`\`${s.env}\``), `${s.flag}'s row names ${s.env}`);
    // A fixed numeric default must read as the daemon has it (defaults computed from the machine are words).
    const d = defaults[s.key];
    const cell = row?.split('|')[3]?.trim();
    if (s.kind === 'int' && typeof d === 'number' && cell !== undefined && /^`?\d+`?$/.test(cell)) t.equal(Number(cell.replace(/`/g, '')), d, `${s.flag}'s default in the README`);
  }
});
