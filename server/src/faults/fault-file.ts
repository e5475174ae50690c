/**
 * The --faults file (docs/faults.md, "For operators"): a JSON array of operator rules. Every problem
 * is reported as FILE:LINE:COLUMN: FIELD: WHAT, so the line comes from a small scan of the text that
 * notes where each value (or member name) starts; JSON.parse only builds the value afterwards.
 */
import * as P from '@spiwire/proto';
import { readSmallFile } from '../small-file.js';

export class FaultFileError extends Error {}

/** Where each value starts, by path ("2.action.code"); a member's path points at its name. */
type Positions = Map<string, number>;

class SyntaxProblem extends Error {
  constructor(
    readonly at: number,
    what: string,
  ) {
    super(what);
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** A rule nests four deep; far deeper is a mistake, and must not exhaust the stack. */
const MAX_DEPTH = 32;

/** A JSON scan that checks the syntax and records positions; no values are built. */
class Scan {
  pos = 0;
  readonly positions: Positions = new Map();
  constructor(private readonly text: string) {}

  document(): void {
    this.value('');
    this.space();
    if (this.pos < this.text.length) throw new SyntaxProblem(this.pos, 'unexpected text after the end of the JSON value');
  }

  private space(): void {
    while (this.pos < this.text.length && ' \t\n\r'.includes(this.text[this.pos]!)) this.pos++;
  }

  private value(path: string, depth = 0): void {
    this.space();
    if (depth > MAX_DEPTH) throw new SyntaxProblem(this.pos, `values nested more than ${MAX_DEPTH} deep`);
    if (!this.positions.has(path)) this.positions.set(path, this.pos);
    const c = this.text[this.pos];
    if (c === '{') return this.object(path, depth);
    if (c === '[') return this.array(path, depth);
    if (c === '"') return this.string();
    if (c !== undefined && /[-0-9]/.test(c)) {
      NUMBER.lastIndex = this.pos;
      if (!NUMBER.test(this.text)) throw new SyntaxProblem(this.pos, 'malformed number');
      this.pos = NUMBER.lastIndex;
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return;
      }
    }
    throw new SyntaxProblem(this.pos, c === undefined ? 'the file ends where a value should be' : `unexpected ${JSON.stringify(c)} where a value should be`);
  }

  private object(path: string, depth: number): void {
    this.pos++;
    this.space();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return;
    }
    for (;;) {
      this.space();
      if (this.text[this.pos] !== '"') throw new SyntaxProblem(this.pos, 'expected a member name in double quotes');
      const start = this.pos;
      this.string();
      const key: unknown = JSON.parse(this.text.slice(start, this.pos));
      const member = path === '' ? String(key) : `${path}.${String(key)}`;
      this.positions.set(member, start);
      this.space();
      if (this.text[this.pos] !== ':') throw new SyntaxProblem(this.pos, 'expected : after a member name');
      this.pos++;
      this.value(member, depth + 1);
      this.space();
      const c = this.text[this.pos++];
      if (c === '}') return;
      if (c !== ',') throw new SyntaxProblem(this.pos - 1, c === undefined ? 'the file ends inside an object (a } is missing)' : 'expected , or } after a member');
    }
  }

  private array(path: string, depth: number): void {
    this.pos++;
    this.space();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return;
    }
    for (let i = 0; ; i++) {
      this.value(path === '' ? String(i) : `${path}.${i}`, depth + 1);
      this.space();
      const c = this.text[this.pos++];
      if (c === ']') return;
      if (c !== ',') throw new SyntaxProblem(this.pos - 1, c === undefined ? 'the file ends inside an array (a ] is missing)' : 'expected , or ] after an element');
    }
  }

  private string(): void {
    const start = this.pos++;
    for (;;) {
      const c = this.text[this.pos];
      if (c === undefined || c === '\n') throw new SyntaxProblem(start, 'unterminated string');
      if (c === '"') break;
      if (c < ' ') throw new SyntaxProblem(this.pos, 'control character in a string');
      if (c === '\\') {
        const e = this.text[this.pos + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(this.text.slice(this.pos + 2, this.pos + 6))) throw new SyntaxProblem(this.pos, 'bad \\u escape');
          this.pos += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) throw new SyntaxProblem(this.pos, 'bad escape');
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
    this.pos++;
  }
}

/** 1-based line and column of an offset. */
function lineColumn(text: string, at: number): string {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < at; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return `${line}:${at - start + 1}`;
}

/** The position of a field of rules[i]: the field itself, or the nearest enclosing value that is in the file. */
function fieldPosition(positions: Positions, i: number, field: string): number {
  const parts = field === '' ? [] : field.split('.');
  for (let n = parts.length; n >= 0; n--) {
    const at = positions.get([String(i), ...parts.slice(0, n)].join('.'));
    if (at !== undefined) return at;
  }
  return 0;
}

/** The field name as an operator reads it: rules[2].match.functions[0]. */
function fieldName(i: number, field: string): string {
  return `rules[${i}]${field === '' ? '' : '.' + field.replace(/\.(\d+)(?=\.|$)/g, '[$1]')}`;
}

/** Checks the text of a fault file; `name` is how messages call it. Throws FaultFileError. */
export function parseFaultFile(name: string, raw: string): P.OperatorFaultRule[] {
  const text = raw.startsWith('\uFEFF') ? raw.slice(1) : raw;
  const scan = new Scan(text);
  try {
    scan.document();
  } catch (err) {
    if (err instanceof SyntaxProblem) throw new FaultFileError(`${name}:${lineColumn(text, err.at)}: ${err.message}`);
    throw err;
  }
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value)) throw new FaultFileError(`${name}:${lineColumn(text, scan.positions.get('') ?? 0)}: must be a JSON array of fault rules`);
  if (value.length > P.MAX_OPERATOR_FAULT_RULES) {
    throw new FaultFileError(`${name}:${lineColumn(text, scan.positions.get(String(P.MAX_OPERATOR_FAULT_RULES)) ?? 0)}: ${value.length} rules, more than the ${P.MAX_OPERATOR_FAULT_RULES} operator rules a daemon holds`);
  }
  const rules: P.OperatorFaultRule[] = [];
  const ids = new Map<string, number>();
  for (let i = 0; i < value.length; i++) {
    const v: unknown = value[i];
    const problem = P.operatorFaultRuleProblem(v);
    if (problem) throw new FaultFileError(`${name}:${lineColumn(text, fieldPosition(scan.positions, i, problem.field))}: ${fieldName(i, problem.field)}: ${problem.what}`);
    if (!P.isOperatorFaultRule(v)) throw new FaultFileError(`${name}: ${fieldName(i, '')}: not a fault rule`);
    const id = v.id ?? `${P.FILE_RULE_ID_PREFIX}${i}`;
    const first = ids.get(id);
    if (first !== undefined) throw new FaultFileError(`${name}:${lineColumn(text, fieldPosition(scan.positions, i, 'id'))}: ${fieldName(i, 'id')}: ${JSON.stringify(id)} is already the id of rules[${first}]`);
    ids.set(id, i);
    rules.push(v);
  }
  return rules;
}

/** Reads and checks a fault file. Throws FaultFileError naming the file, the line and the field. */
export function readFaultFile(path: string): P.OperatorFaultRule[] {
  let text: string;
  try {
    text = readSmallFile(path);
  } catch (err) {
    throw new FaultFileError(`${path}: cannot read: ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseFaultFile(path, text);
}
