/**
 * Command-line flags for the daemon and the peers tool: node:util parseArgs, strict, every flag
 * taking a value (--flag value or --flag=value), and --help / -h. The flags come back in the order
 * given, so that the last one wins; the caller applies them on top of the environment.
 */
import { parseArgs } from 'node:util';

export class FlagError extends Error {
  constructor(
    message: string,
    /** --help was asked for: print the usage and exit 0. */
    readonly helpRequested = false,
  ) {
    super(message);
  }
}

/** The [flag, value] pairs of argv, in order. Throws FlagError for an unknown flag, a missing value or a stray argument. */
export function readFlags(argv: readonly string[], flags: readonly string[]): Array<[string, string]> {
  const options: Record<string, { type: 'string'; multiple: true } | { type: 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const f of flags) options[f.replace(/^--/, '')] = { type: 'string', multiple: true };
  // parseArgs takes "--" as the end of the flags; nothing may follow flags here, so it is just unknown.
  if (argv.includes('--')) throw new FlagError('unknown flag --');
  let tokens;
  try {
    ({ tokens } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false, tokens: true }));
  } catch (err) {
    const code = (err as { code?: string }).code;
    const name = /'(-[^ ']+)/.exec(err instanceof Error ? err.message : '')?.[1] ?? '';
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') throw new FlagError(`${name.split('=')[0]} needs a value`);
    // A stray word is taken for a flag that is not one.
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new FlagError(`unknown flag ${/'([^']*)'/.exec(err instanceof Error ? err.message : '')?.[1] ?? ''}`);
    throw new FlagError(`unknown flag ${name || (err instanceof Error ? err.message : String(err))}`);
  }
  const out: Array<[string, string]> = [];
  for (const tok of tokens) {
    if (tok.kind !== 'option') continue;
    if (tok.name === 'help') throw new FlagError('', true);
    if (tok.value === undefined) throw new FlagError(`--${tok.name} needs a value`);
    out.push([`--${tok.name}`, tok.value]);
  }
  return out;
}
