/**
 * `spiwire trace export FILE... [--out OUT]`: a session's call trace (JSON lines, written by the
 * SDK's trace option and by the daemon's --trace-dir; docs/trace.md) as a Chrome / Perfetto trace-event file, which opens in
 * ui.perfetto.dev or chrome://tracing: one track per thread and per socket, each overlapped
 * operation a span from its call to the delivery of its completion.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseTraceLines, toChromeTrace, type TraceRecord } from '@spiwire/proto';
import { CliFailure, runCli, type CliIo } from './http.js';

export const TRACE_USAGE = `usage: spiwire trace export FILE... [--out OUT]

  export FILE... convert traces to the Chrome / Perfetto trace-event format: the SDK's
                 (connect(url, { trace: FILE })) and the daemon's (--trace-dir DIR writes
                 DIR/<session>.jsonl), one or both, put on one time line
  --out OUT      where to write it (default: standard output)`;

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
    if (positionals[0] !== 'export' || positionals.length < 2) throw new CliFailure('usage: spiwire trace export FILE... [--out OUT]', 2);
    const records: TraceRecord[] = [];
    for (const file of positionals.slice(1)) {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new CliFailure(`cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`, 1);
      }
      try {
        records.push(...parseTraceLines(text));
      } catch (err) {
        throw new CliFailure(`${file}: ${err instanceof Error ? err.message : String(err)}`, 1);
      }
    }
    const json = JSON.stringify(toChromeTrace(records));
    if (values.out !== undefined) {
      writeFileSync(values.out, json);
      io.err(`wrote ${values.out}: ${records.length} records; open it in https://ui.perfetto.dev or chrome://tracing`);
    } else io.out(json);
    return 0;
  });
}
