/**
 * The session's call trace (docs/trace.md): with connect(url, { trace }), every SPI call, every
 * overlapped operation's completion and its delivery (the routine and its thread, or the event),
 * network events and fault notifications become records (proto/src/trace.ts). Off by default;
 * when off, the SDK's only cost is a null check per call.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { TraceRecord } from '@spiwire/proto';

/** Where records go: a function, or (connect's trace option as a string) a file of JSON lines. */
export type TraceSink = (record: TraceRecord) => void;

export class Tracer {
  /** Record the bytes each send offers too (base64), not only their count. */
  payloads = false;

  private constructor(
    readonly record: TraceSink,
    private readonly stream: WriteStream | null,
  ) {}

  static to(sink: TraceSink): Tracer {
    return new Tracer(sink, null);
  }

  /** Appends one JSON object per line to path (created or truncated). */
  static toFile(path: string): Tracer {
    const stream = createWriteStream(path);
    // A trace that cannot be written must not take the session down with it.
    stream.on('error', (err) => process.stderr.write(`spiwire: the trace ${path} cannot be written: ${err.message}\n`));
    return new Tracer((r) => void stream.write(`${JSON.stringify(r)}\n`), stream);
  }

  /** Microseconds on the monotonic clock. */
  now(): number {
    return Math.round(performance.now() * 1000);
  }

  /** Flushes a file trace. */
  close(): Promise<void> {
    const stream = this.stream;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}

/** The bytes a send offers, base64, for a trace that asked for payloads. */
export function tracedPayload(params: Record<string, unknown>): string | undefined {
  const b = params['buffers'];
  if (!Array.isArray(b)) return undefined;
  const parts = b.filter((x): x is Uint8Array => x instanceof Uint8Array);
  return Buffer.concat(parts).toString('base64');
}
