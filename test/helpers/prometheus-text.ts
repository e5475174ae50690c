/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4) for tests: every line
 * is a HELP or TYPE comment, blank, or a sample `name{label="value",...} value`; every sample
 * belongs to a metric declared with TYPE before it. It throws on anything else.
 */
export interface Exposition {
  /** Metric name -> type (counter, gauge, histogram, summary, untyped). */
  types: Map<string, string>;
  /** Series (name plus labels sorted, as `name{a="1",b="2"}`) -> value. */
  samples: Map<string, number>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( \d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

function parseLabels(text: string, line: string): string[] {
  const inner = text.slice(1, -1);
  const out: string[] = [];
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < inner.length) {
    const m = LABEL.exec(inner);
    if (!m) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    out.push(`${m[1]}="${m[2]}"`);
  }
  return out.sort();
}

function parseValue(v: string, line: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  if (v === 'NaN') return NaN;
  const n = Number(v);
  if (v === '' || Number.isNaN(n)) throw new Error(`bad value in ${JSON.stringify(line)}`);
  return n;
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!m) throw new Error(`bad comment line ${JSON.stringify(line)}`);
      if (!NAME.test(m[2]!)) throw new Error(`bad metric name in ${JSON.stringify(line)}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`bad type in ${JSON.stringify(line)}`);
        if (types.has(m[2]!)) throw new Error(`${m[2]} declared twice`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = types.has(name) ? name : HISTOGRAM_SUFFIXES.map((s) => (name.endsWith(s) ? name.slice(0, -s.length) : '')).find((b) => b !== '' && types.get(b) === 'histogram');
    if (family === undefined) throw new Error(`sample ${name} has no TYPE line before it`);
    const labels = m[2] ? parseLabels(m[2], line) : [];
    const key = labels.length ? `${name}{${labels.join(',')}}` : name;
    if (samples.has(key)) throw new Error(`series ${key} appears twice`);
    samples.set(key, parseValue(m[3]!, line));
  }
  return { types, samples };
}

/** The value of one series, labels given in any order (undefined: absent). */
export function sample(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const parts = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  return e.samples.get(parts.length ? `${name}{${parts.join(',')}}` : name);
}
