/**
 * Outbound backpressure for one session. Every reply, completion and event the daemon sends
 * waits in the WebSocket's buffers until the client reads it; a client that stops reading would
 * otherwise make the daemon buffer without limit. Above the high water mark the session stops
 * reading the client's requests and its sockets stop pulling data from the network, so the
 * output stops growing; below half of it, both resume. A session whose unsent output passes the
 * hard limit, or that stays above the high water mark without any output being written for the
 * stall time, is ended with close code 4008 (OUTPUT_BACKLOG_CLOSE_CODE).
 */

import type { SharedBudget } from './shared-budget.js';

export interface OutputLimits {
  outputHighWaterBytes: number;
  outputLimitBytes: number;
  outputStallMs: number;
}

export interface OutputHooks {
  /** Stop reading requests and socket data. */
  pause(): void;
  resume(): void;
  /** End the session: the client does not read what it is sent. */
  overflow(reason: string): void;
}

export class OutputFlow {
  /** Bytes handed to the WebSocket and not yet written to its connection. */
  unsent = 0;
  /** Above the high water mark: sockets of the session do not pull data from the network. */
  paused = false;
  /** Sizes of the frames not yet written, oldest first (the WebSocket writes them in order). */
  private sizes: number[] = [];
  private head = 0;
  private lastProgress = 0;
  private stallTimer: NodeJS.Timeout | null = null;
  private over = false;
  /**
   * Output kept for a client whose connection dropped, waiting for its resume (session.ts): it
   * counts toward the high water mark like unsent output, but no stall is judged meanwhile.
   */
  private held = 0;
  private detached = false;

  constructor(
    private readonly limits: OutputLimits,
    private readonly hooks: OutputHooks,
    /** The daemon-wide budget of output waiting for clients, if any (its over() calls overBudget). */
    private readonly daemonBudget: SharedBudget<OutputFlow> | null = null,
  ) {}

  /** Output waiting for the client: unsent, and produced while it is away (hold()). */
  get waiting(): number {
    return this.unsent + this.held;
  }

  /** Call before handing a frame of n bytes to the WebSocket, with written as its send callback. */
  sent(n: number): void {
    if (this.over) return;
    this.sizes.push(n);
    this.unsent += n;
    // Counted first: the budget may end this very session (stop() then takes back what it counted).
    this.daemonBudget?.change(this, n);
    if (this.over) return;
    if (this.unsent > this.limits.outputLimitBytes) this.overflow(`more than ${this.limits.outputLimitBytes} bytes of output unsent`);
    else if (!this.paused && this.unsent > this.limits.outputHighWaterBytes) this.pause();
  }

  /** The daemon-wide output budget is passed and this session holds the most. */
  overBudget(budget: number): void {
    this.overflow(`the sessions' output passed the daemon's budget of ${budget} bytes, and this session held the most (${this.waiting} bytes)`);
  }

  /** The WebSocket wrote the oldest frame (or gave up on it: the connection is going away). */
  readonly written = (): void => {
    const n = this.sizes[this.head++] ?? 0;
    if (this.head > 1024 && this.head * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
    this.unsent -= n;
    if (!this.over) this.daemonBudget?.change(this, -n);
    this.lastProgress = performance.now();
    if (this.paused && this.waiting <= this.limits.outputHighWaterBytes / 2) this.resume();
  };

  /** The connection dropped: output from now on is held (hold()) until attach(). */
  detach(): void {
    this.detached = true;
  }

  /** A frame of n bytes was kept for a client that has no connection. */
  hold(n: number): void {
    if (this.over) return;
    this.held += n;
    this.daemonBudget?.change(this, n);
    if (!this.over && !this.paused && this.waiting > this.limits.outputHighWaterBytes) this.pause();
  }

  /** The client is back: what was held is sent again through sent() and counted there. */
  attach(): void {
    this.detached = false;
    if (!this.over) this.daemonBudget?.change(this, -this.held);
    this.held = 0;
    this.lastProgress = performance.now();
    if (this.paused && this.unsent <= this.limits.outputHighWaterBytes / 2) this.resume();
  }

  /** The session ended: no timer may outlive it. */
  stop(): void {
    if (!this.over) this.daemonBudget?.forget(this);
    this.over = true;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
  }

  private pause(): void {
    this.paused = true;
    this.lastProgress = performance.now();
    const every = Math.max(10, Math.min(1000, this.limits.outputStallMs / 4));
    this.stallTimer = setInterval(() => {
      if (!this.detached && performance.now() - this.lastProgress > this.limits.outputStallMs) this.overflow(`no output written for ${this.limits.outputStallMs} ms while ${this.unsent} bytes wait`);
    }, every);
    this.stallTimer.unref();
    this.hooks.pause();
  }

  private resume(): void {
    this.paused = false;
    if (this.stallTimer) clearInterval(this.stallTimer);
    this.stallTimer = null;
    this.hooks.resume();
  }

  private overflow(reason: string): void {
    if (this.over) return;
    this.stop();
    this.hooks.overflow(reason);
  }
}
