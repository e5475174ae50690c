/**
 * The seeded generator of a fault rule: a 32-bit Weyl sequence (a counter stepped by an odd
 * constant) put through a 32-bit integer mixing function. Small, fast, and the same numbers for
 * the same seed on every run and every machine, which is all a rule's probability needs.
 */
const WEYL_STEP = 0x9e3779b9;

export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next value, an unsigned 32-bit integer. */
  nextU32(): number {
    this.state = (this.state + WEYL_STEP) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** A number from 0 (included) to 1 (excluded). */
  next(): number {
    return this.nextU32() / 0x100000000;
  }

  /** One draw: true with probability p (never for 0, always for 1). */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Shuffles items in place (Fisher-Yates), the same way for the same seed. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextU32() % (i + 1);
      const t = items[i]!;
      items[i] = items[j]!;
      items[j] = t;
    }
    return items;
  }
}
