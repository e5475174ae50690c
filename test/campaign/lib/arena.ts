/**
 * Where one scenario runs: its own daemon process, a bystander session on it, a memory sampler,
 * and the tallies that become the scenario's row. A scenario asks the arena for attacker sessions,
 * reports what it found, and calls checkAlive() whenever it suspects the daemon died: a crash is
 * counted, its stderr kept as evidence, and a fresh daemon started with the same flags so the
 * scenario can go on looking for more.
 */
import { Bystander, type BystanderReport } from './bystander.js';
import { DaemonProc } from './daemon.js';
import { closeAllPeers } from './peers.js';
import { mergeStats, newStats, Wire, type WireStats } from './wire.js';
import { percentile, round1, sleep } from './util.js';

export interface Options {
  quick: boolean;
  seed: number;
  log: (line: string) => void;
}

export interface Finding {
  /** crash, internal-error, undocumented-reply, bytes-lost, bypass, memory, cpu, limit, disturbed, other */
  kind: string;
  detail: string;
}

export interface Row {
  scenario: string;
  title: string;
  messages: number;
  crashes: number;
  disturbed: number;
  bytesLost: number;
  bypasses: number;
  internalErrors: number;
  undocumentedReplies: number;
  memBeforeMiB: number | null;
  memPeakMiB: number | null;
  memAfterMiB: number | null;
  bystanderP99Ms: number | null;
  bystanderCalls: number;
  bystanderP50Ms: number | null;
  bystanderMaxMs: number | null;
  /** The bystander's slowest calls, to line them up with what the scenario was doing. */
  bystanderSlowest: string[];
  durationMs: number;
  findings: Finding[];
  /** Things that happened as expected but are worth a line (4008 closes, WSAENOBUFS, limits hit). */
  notes: string[];
  /** Scenario-specific counters. */
  extra: Record<string, number | string>;
}

/** How long, at most, the arena waits for the daemon's memory to come back down after a scenario. */
const SETTLE_MS = { quick: 8000, full: 20000 };
/** "after" counts as back when within this many MiB of "before" (the campaign's memory target uses the same margin). */
export const MEMORY_AFTER_MARGIN_MIB = 64;

export class Arena {
  daemon!: DaemonProc;
  private bystander!: Bystander;
  private readonly daemons: DaemonProc[] = [];
  private readonly wires = new Set<Wire>();
  readonly stats: WireStats = newStats();
  readonly findings: Finding[] = [];
  readonly notes: string[] = [];
  readonly extra: Record<string, number | string> = {};
  crashes = 0;
  /** Sessions other than the bystander that the scenario watched and saw disturbed (the faults' neighbour). */
  disturbed = 0;
  bytesLost = 0;
  bypasses = 0;
  /** Messages sent outside Wire objects (raw TCP writes, extra daemons' sessions). */
  messages = 0;
  private memBefore: number | null = null;
  private memPeak: number | null = null;
  private sampler: NodeJS.Timeout | null = null;
  private readonly started = Date.now();
  private bystanderReports: BystanderReport[] = [];

  private constructor(
    readonly name: string,
    readonly title: string,
    readonly opts: Options,
    private readonly flags: readonly string[],
  ) {}

  /**
   * Runs one scenario: opens the arena, runs body, and always ends with the row, also when body
   * throws (then the row carries the error as a finding, which misses a target: a campaign that
   * could not finish a scenario has not shown the daemon sound).
   */
  static async run(name: string, title: string, opts: Options, flags: readonly string[], body: (a: Arena) => Promise<void>, bystanderPeerPort = 0): Promise<Row> {
    const a = await Arena.open(name, title, opts, flags, bystanderPeerPort);
    try {
      await body(a);
    } catch (err) {
      a.find('other', `the scenario stopped early: ${(err as Error)?.stack ?? String(err)}`);
    }
    try {
      return await a.finish();
    } catch (err) {
      a.find('other', `the scenario could not finish: ${(err as Error)?.stack ?? String(err)}`);
      await a.abandon();
      return a.row(null);
    }
  }

  /** Starts the scenario's daemon (with flags), measures its memory at rest, and starts the bystander. */
  static async open(name: string, title: string, opts: Options, flags: readonly string[] = [], bystanderPeerPort = 0): Promise<Arena> {
    const a = new Arena(name, title, opts, flags);
    a.daemon = await a.startDaemon();
    a.memBefore = await a.daemon.settledRssMiB();
    a.memPeak = a.memBefore;
    a.bystander = await Bystander.start(a.daemon.url, { peerPort: bystanderPeerPort });
    a.sampler = setInterval(() => a.sample(), 100);
    opts.log(`[${name}] daemon pid ${a.daemon.pid} on ${a.daemon.url}${flags.length ? ` (${flags.join(' ')})` : ''}, ${round1(a.memBefore ?? 0)} MiB at rest`);
    return a;
  }

  /** A second daemon the scenario started itself: its log is judged with the arena's, and it is killed if the scenario fails. */
  adopt(d: DaemonProc): DaemonProc {
    this.daemons.push(d);
    return d;
  }

  private async startDaemon(): Promise<DaemonProc> {
    const d = await DaemonProc.start(this.flags);
    this.daemons.push(d);
    return d;
  }

  /** Seconds since the arena opened (the bystander's clock starts at about the same time), as "12.3 s". */
  elapsed(at = Date.now()): string {
    return `${((at - this.started) / 1000).toFixed(1)} s`;
  }

  /** Samples the daemon's RSS for the peak figure (also called by scenarios at moments of interest). */
  sample(): number | null {
    const rss = this.daemon.rssMiB();
    if (rss !== null && (this.memPeak === null || rss > this.memPeak)) this.memPeak = rss;
    return rss;
  }

  get peakMiB(): number | null {
    return this.memPeak;
  }

  private readonly seenKeys = new Set<string>();

  /** Records a defect once: by key when given (the same fault reached another way), else by its first 300 characters. */
  find(kind: string, detail: string, key?: string): void {
    const d = detail.slice(0, 700);
    const k = `${kind}:${key ?? d.slice(0, 300)}`;
    if (this.seenKeys.has(k)) return;
    this.seenKeys.add(k);
    if (this.findings.length < 60) this.findings.push({ kind, detail: d });
    this.opts.log(`[${this.name}] FOUND ${kind}: ${d.slice(0, 300)}`);
  }

  note(line: string): void {
    if (!this.notes.includes(line) && this.notes.length < 40) this.notes.push(line);
  }

  /**
   * True while the daemon runs. When it has died on its own: counts the crash, keeps the evidence
   * (what the scenario was doing, the daemon's last stderr), starts a new daemon and moves the
   * bystander there, then returns false.
   */
  async checkAlive(doing: string): Promise<boolean> {
    if (this.daemon.alive) return true;
    await sleep(50);
    const d = this.daemon;
    const e = d.exit!;
    if (d.stopRequested) return false;
    this.crashes++;
    const stack = d
      .stderrTail()
      .split('\n')
      .filter((l) => l.trim())
      .slice(0, 8)
      .join(' | ');
    // The same exception reached again (another value, another path) is the same defect.
    const why = /^\w*Error[^\n]*/m.exec(d.stderrTail())?.[0]?.replace(/Received [\d_]+/, 'Received N') ?? stack;
    this.find('crash', `daemon exited (${e.code !== null ? `code ${e.code}` : e.signal}) while ${doing}; stderr: ${stack || '(empty)'}`, why);
    for (const w of this.wires) this.release(w);
    this.daemon = await this.startDaemon();
    this.bystander.switchTo(this.daemon.url);
    this.opts.log(`[${this.name}] restarted the daemon: pid ${this.daemon.pid}`);
    return false;
  }

  /** Waits for the daemon's process to end, up to ms; then checkAlive(). Useful after a suspicious silence. */
  async confirmAlive(doing: string, ms = 300): Promise<boolean> {
    if (this.daemon.alive) await Promise.race([this.daemon.exited, sleep(ms)]);
    return this.checkAlive(doing);
  }

  /** Times the bystander's calls from now on; the function returned gives the longest (see Bystander.window). */
  bystanderWindow(): () => Promise<number | null> {
    return this.bystander.window();
  }

  /** An attacker session on the current daemon; its counts join the row when it closes or the arena ends. */
  async wire(url = this.daemon.url): Promise<Wire> {
    const w = await Wire.open(url);
    this.wires.add(w);
    void w.closed.then(() => this.release(w));
    return w;
  }

  /** Stops tracking w and adds its counts to the row (once). */
  release(w: Wire): void {
    if (!this.wires.delete(w)) return;
    mergeStats(this.stats, w.stats);
    w.stats.sent = 0;
  }

  /** Closes every attacker session still open. */
  async closeWires(): Promise<void> {
    await Promise.all([...this.wires].map((w) => w.close(1000)));
    for (const w of [...this.wires]) this.release(w);
  }

  /** Ends the scenario: sessions closed, bystander stopped, memory settled and measured, daemon stopped, peers closed; returns the row. */
  async finish(): Promise<Row> {
    await this.closeWires();
    const by = await this.bystander.stop();
    this.bystanderReports.push(by);
    await this.checkAlive('the scenario was ending');
    const memAfter = await this.settle();
    if (this.sampler) clearInterval(this.sampler);
    for (const d of this.daemons) this.collectLog(d);
    const stop = await this.daemon.stop(15000);
    if (stop.killed) this.find('other', 'the daemon did not exit within 15 s of SIGTERM at the end of the scenario');
    else if (stop.exit.code !== 0) this.find('other', `the daemon exited with ${stop.exit.code ?? stop.exit.signal} after SIGTERM at the end of the scenario`);
    await closeAllPeers();
    return this.row(memAfter);
  }

  /** Polls the daemon's settled RSS until it is back within the margin of "before", for at most SETTLE_MS. */
  private async settle(): Promise<number | null> {
    const end = Date.now() + (this.opts.quick ? SETTLE_MS.quick : SETTLE_MS.full);
    let rss = await this.daemon.settledRssMiB();
    while (rss !== null && this.memBefore !== null && rss > this.memBefore + MEMORY_AFTER_MARGIN_MIB && Date.now() < end) {
      await sleep(500);
      rss = await this.daemon.settledRssMiB();
    }
    return rss;
  }

  /** Error-level log lines of a daemon become findings; method failures are counted as internal errors. */
  private collectLog(d: DaemonProc): void {
    for (const l of d.errorLines) {
      const err = l['err'] as Record<string, unknown> | string | undefined;
      const why = typeof err === 'string' ? err : typeof err?.['message'] === 'string' ? err['message'] : '';
      // Small fields of the line say what happened (a state move's from and to, for example).
      const fields = Object.entries(l)
        .filter(([k, v]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg', 'session', 's', 'err', 'method', 'reqId'].includes(k) && (typeof v === 'string' || typeof v === 'number') && String(v).length < 40)
        .map(([k, v]) => `${k} ${String(v)}`);
      const text = `${l.msg ?? ''}${typeof l['method'] === 'string' ? ` in ${l['method']}` : ''}${fields.length ? ` (${fields.join(', ')})` : ''}${why && why !== l.msg ? `: ${why}` : ''}`;
      // A client breaking the WebSocket protocol (the 1007 and 1009 cases) is logged by the
      // WebSocket plugin at error level: the client's fault, not the daemon's.
      if (/Invalid WebSocket frame|Max payload size exceeded|WS_ERR_/.test(text)) {
        this.note(`the daemon logs a client's WebSocket protocol violation at error level ("${text.slice(0, 80)}")`);
        continue;
      }
      this.find(l.msg === 'method failed' || typeof l['method'] === 'string' ? 'internal-error' : 'other', `daemon log: ${text}`, `log ${text.replace(/\d[\d_]*/g, 'N')}`);
    }
  }

  row(memAfter: number | null): Row {
    const latencies = this.bystanderReports.flatMap((r) => r.latenciesMs);
    const disturbed = this.disturbed + this.bystanderReports.reduce((n, r) => n + r.disturbedSessions, 0);
    // One line per kind of disturbance, with when it happened (events read "12.3 s: what").
    const byWhat = new Map<string, string[]>();
    for (const r of this.bystanderReports) {
      for (const e of r.events) {
        const i = e.indexOf(': ');
        const what = e.slice(i + 2);
        byWhat.set(what, [...(byWhat.get(what) ?? []), e.slice(0, i)]);
      }
    }
    for (const [what, at] of byWhat) this.find('disturbed', `bystander: ${what} (${at.length}x, at ${at.slice(0, 8).join(', ')}${at.length > 8 ? ', ...' : ''})`);
    const byLost = this.bystanderReports.reduce((n, r) => n + r.bytesLost, 0);
    if (byLost > 0) this.find('bytes-lost', `the bystander's peer is missing ${byLost} bytes reported sent`);
    for (const d of this.stats.internal) this.find('internal-error', `INTERNAL_ERROR for ${d.label}: ${d.detail}`, `reply ${d.detail.replace(/\d[\d_]*/g, 'N')}`);
    for (const d of this.stats.undocumented) this.find('undocumented-reply', `${d.label}: ${d.detail}`);
    const logInternal = this.daemons.reduce((n, d) => n + d.internalErrorLines, 0);
    return {
      scenario: this.name,
      title: this.title,
      messages: this.stats.sent + this.messages,
      crashes: this.crashes,
      disturbed,
      bytesLost: this.bytesLost + byLost,
      bypasses: this.bypasses,
      // Notifications that fail inside the daemon get no reply, only a log line: count whichever is larger.
      internalErrors: Math.max(this.stats.verdicts.internal, logInternal),
      undocumentedReplies: this.stats.verdicts.undocumented,
      memBeforeMiB: this.memBefore === null ? null : round1(this.memBefore),
      memPeakMiB: this.memPeak === null ? null : round1(this.memPeak),
      memAfterMiB: memAfter === null ? null : round1(memAfter),
      bystanderP99Ms: latencies.length ? round1(percentile(latencies, 0.99)!) : null,
      bystanderCalls: latencies.length,
      bystanderP50Ms: latencies.length ? round1(percentile(latencies, 0.5)!) : null,
      bystanderMaxMs: latencies.length ? round1(Math.max(...latencies)) : null,
      bystanderSlowest: this.bystanderReports.flatMap((r) => r.slowest.map((x) => `${x.call} ${x.ms} ms at ${x.at} s`)),
      durationMs: Date.now() - this.started,
      findings: this.findings,
      notes: this.notes,
      extra: this.extra,
    };
  }

  /** Last resort after a scenario threw: kill what it started. */
  async abandon(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    for (const w of [...this.wires]) w.terminate();
    await this.bystander?.stop().catch(() => undefined);
    for (const d of this.daemons) d.kill();
    await closeAllPeers();
  }
}
