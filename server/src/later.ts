/**
 * A result that comes later in the same turn, as a synchronous stand-in for a Promise.
 *
 * A UDP send's result is known once its datagram has gone to the kernel with the batch of the
 * frame it came in (udp-socket.ts); the session sends that batch when it has handled the frame,
 * and then replies. Through Promises each such send cost the daemon four or five promises and
 * microtasks (the socket's, the session's start, the wire mapping, the reply). A Later runs its
 * one continuation as soon as its value comes, in the same call stack, so the replies of a
 * frame's datagrams are ready when the session flushes.
 *
 * Each Later has at most one continuation (the steps form a chain, never a tree), and a
 * continuation that throws rejects the next Later instead of unwinding into whoever settled the
 * first (a socket sending its batch): errors travel down the chain to the last step, as a
 * Promise's would.
 */
export class Later<T> {
  private state: 0 | 1 | 2 = 0; // waiting, settled, failed
  private value: T | undefined;
  private error: unknown;
  private next: ((ok: boolean, value: T | undefined, error: unknown) => void) | null = null;

  /** The value has come; a second settle (or a settle after a failure) changes nothing. */
  settle(value: T): void {
    if (this.state !== 0) return;
    this.state = 1;
    this.value = value;
    this.run();
  }

  /** The step that was to produce the value failed. */
  fail(error: unknown): void {
    if (this.state !== 0) return;
    this.state = 2;
    this.error = error;
    this.run();
  }

  /**
   * The Later of f(value). onError, when given, runs first when this one fails (clean-up; the
   * error still goes on down the chain).
   */
  map<U>(f: (value: T) => U, onError?: (error: unknown) => void): Later<U> {
    const out = new Later<U>();
    this.finish(
      (v) => {
        let u: U;
        try {
          u = f(v);
        } catch (err) {
          out.fail(err);
          return;
        }
        out.settle(u);
      },
      (err) => {
        try {
          onError?.(err);
        } finally {
          out.fail(err);
        }
      },
    );
    return out;
  }

  /**
   * The last step of a chain: onValue or onError, once. Neither may throw. (Not named then: a
   * Later must not pass for a thenable, which await and Promise.resolve would adopt.)
   */
  finish(onValue: (value: T) => void, onError: (error: unknown) => void): void {
    if (this.next !== null) throw new Error('a Later takes one continuation');
    this.next = (ok, value, error) => (ok ? onValue(value as T) : onError(error));
    if (this.state !== 0) this.run();
  }

  private run(): void {
    const next = this.next;
    if (next === null) return;
    this.next = null;
    const ok = this.state === 1;
    const value = this.value;
    const error = this.error;
    this.value = undefined;
    this.error = undefined;
    next(ok, value, error);
  }
}

/** A value now, or later: a Promise's, or a Later's. */
export type Answer<T> = T | Promise<T> | Later<T>;

/** f(v) now, or once v comes: a Promise's value through then, a Later's through map. */
export function mapResult<A, B>(v: Answer<A>, f: (a: A) => B): Answer<B> {
  if (v instanceof Promise) return v.then(f);
  if (v instanceof Later) return v.map(f);
  return f(v);
}

/** A Promise of a Later's value, for steps that wait on Promises. */
export function promiseOf<T>(v: Answer<T>): Promise<T> {
  if (v instanceof Later) return new Promise<T>((resolve, reject) => v.finish(resolve, reject));
  return Promise.resolve(v);
}
