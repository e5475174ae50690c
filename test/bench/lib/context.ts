/** What every scenario gets, and the shapes of what it returns. */
import type { DaemonProcess, PeerProcess } from './procs.js';
import type { Summary } from './stats.js';

export type Api = 'spi' | 'hook';

export interface Ctx {
  /** Tiny sizes, one repetition, correctness only. */
  quick: boolean;
  /** Repetitions of scenarios 1 to 5 and 8. */
  reps: number;
  /** Repetitions of each size of scenario 6. */
  scaleReps: number;
  /** How pipelined overlapped sends are made: the public SPI path or the SDK's startOperation hook. */
  api: Api;
  /** The daemon of scenarios 1 to 5 (defaults; scenarios 6, 7 and 8 start their own). */
  daemon: DaemonProcess;
  /** TCP discard server (its own process; counts, and on request hashes) and the port of its listener. */
  discard: PeerProcess;
  discardPort: number;
  /** UDP receiver process. */
  udp: PeerProcess;
  /** WebSocket echo server process and its port. */
  ws: PeerProcess;
  wsPort: number;
  /** TCP holder (accepts, does not read until told) for scenarios 6 and 7. */
  holder: PeerProcess;
  /** True when the peers' clock (CLOCK_MONOTONIC) was checked to be this process's clock. */
  sharedClock: boolean;
  /** The hard open-file limit children can be raised to (ulimit -Hn). */
  nofileHard: number;
  /** Where scenario daemons write --cpu-prof profiles, or null. */
  cpuProfDir: string | null;
  log(msg: string): void;
}

/** A spiwire figure beside its raw baseline, over the repetitions. */
export interface Pair {
  unit: string;
  better: 'higher' | 'lower';
  spiwire: Summary;
  raw: Summary;
  /** spiwire median / raw median. */
  ratio: number;
  /** The ratio within each repetition (spiwire / raw of the same repetition), for the spread. */
  ratioRuns: number[];
}

export interface Check {
  what: string;
  expected: number;
  actual: number;
  ok: boolean;
}

export function check(what: string, expected: number, actual: number): Check {
  return { what, expected, actual, ok: expected === actual };
}
