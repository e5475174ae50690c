/**
 * `spiwire trace export FILE [--out OUT]`: a session's call trace (JSON lines, written by the
 * SDK's trace option; docs/trace.md) as a Chrome / Perfetto trace-event file, which opens in
 * ui.perfetto.dev or chrome://tracing: one track per thread and per socket, each overlapped
 * operation a span from its call to the delivery of its completion.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseTraceLines, toChromeTrace } from '@spiwire/proto';
import { CliFailure, runCli, type CliIo } from './http.js';

export const TRACE_USAGE = `usage: spiwire trace export FILE [--out OUT]

  export FILE    convert a trace the SDK recorded (connect(url, { trace: FILE })) to the
                 Chrome / Perfetto trace-event format; written to OUT, or to standard output
  --out OUT      where to write it`;

/** Runs `spiwire trace ...` (argv after "trace"); returns the exit code. */
export function runTraceCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runCli('trace', TRACE_USAGE, io, async () => {
    let parsed;
    try {
      parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
    } catch (err) {
      throw new CliFailure(err instanceof Error ? err.message : String(err), 2);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      io.out(TRACE_USAGE);
      return 0;
    }
    if (positionals[0] !== 'export' || positionals.length !== 2) throw new CliFailure('usage: spiwire trace export FILE [--out OUT]', 2);
    const file = positionals[1]!;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliFailure(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, 1);
    }
    let records;
    try {
      records = parseTraceLines(text);
    } catch (err) {
      throw new CliFailure(`${file}: ${err instanceof Error ? err.message : String(err)}`, 1);
    }
    const json = JSON.stringify(toChromeTrace(records));
    if (values.out !== undefined) {
      writeFileSync(values.out, json);
      io.err(`wrote ${values.out}: ${records.length} records; open it in https://ui.perfetto.dev or chrome://tracing`);
    } else io.out(json);
    return 0;
  });
}
