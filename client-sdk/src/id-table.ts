/**
 * A table of in-flight entries keyed by sequential ids (call ids, op ids): a ring of slots indexed
 * by the id's low bits, with a Map only for the rare id whose slot is taken by a much older one.
 *
 * Why not a Map: thousands of calls in flight come and go in batches, and a Map that grows and
 * shrinks with them rebuilds its hash table every batch. Those tables and the entries they still
 * point to outlive a young-generation collection now and then, are promoted, and from the old
 * generation keep the next batch's entries alive in turn, until a full collection breaks the chain:
 * measured, that doubled the SDK's CPU per small overlapped send. The ring is made once, never
 * shrinks, and a finished entry's slot is cleared, so nothing dead points at anything young.
 */
const FIRST_CAPACITY = 256;
const MAX_CAPACITY = 1 << 16;

export class IdTable<V> {
  private slots: (V | undefined)[] = new Array<V | undefined>(FIRST_CAPACITY).fill(undefined);
  private ids = new Uint32Array(FIRST_CAPACITY);
  private mask = FIRST_CAPACITY - 1;
  private inSlots = 0;
  /** Entries whose slot held another id when they came. */
  private readonly spill = new Map<number, V>();

  get size(): number {
    return this.inSlots + this.spill.size;
  }

  get(id: number): V | undefined {
    const i = id & this.mask;
    if (this.ids[i] === id && this.slots[i] !== undefined) return this.slots[i];
    return this.spill.size === 0 ? undefined : this.spill.get(id);
  }

  set(id: number, value: V): void {
    // Many ids spilling: more are in flight than the ring holds. A bigger ring takes them back.
    if (!this.place(id, value) && this.spill.size > this.slots.length >> 2 && this.slots.length < MAX_CAPACITY) this.grow();
  }

  /** Puts the entry in its slot (true) or, when another id holds it, in the spill map. */
  private place(id: number, value: V): boolean {
    const i = id & this.mask;
    const held = this.slots[i];
    if (held === undefined || this.ids[i] === id) {
      if (held === undefined) this.inSlots++;
      this.slots[i] = value;
      this.ids[i] = id;
      return true;
    }
    this.spill.set(id, value);
    return false;
  }

  delete(id: number): boolean {
    const i = id & this.mask;
    if (this.ids[i] === id && this.slots[i] !== undefined) {
      this.slots[i] = undefined;
      this.inSlots--;
      return true;
    }
    return this.spill.size !== 0 && this.spill.delete(id);
  }

  /** Every entry, in no particular order. */
  values(): V[] {
    const out: V[] = [];
    for (const v of this.slots) if (v !== undefined) out.push(v);
    for (const v of this.spill.values()) out.push(v);
    return out;
  }

  /** Every [id, entry], in no particular order. */
  entries(): [number, V][] {
    const out: [number, V][] = [];
    for (let i = 0; i < this.slots.length; i++) {
      const v = this.slots[i];
      if (v !== undefined) out.push([this.ids[i]!, v]);
    }
    for (const e of this.spill) out.push(e);
    return out;
  }

  clear(): void {
    this.slots.fill(undefined);
    this.inSlots = 0;
    this.spill.clear();
  }

  private grow(): void {
    const all = this.entries();
    const capacity = this.slots.length * 2;
    this.slots = new Array<V | undefined>(capacity).fill(undefined);
    this.ids = new Uint32Array(capacity);
    this.mask = capacity - 1;
    this.inSlots = 0;
    this.spill.clear();
    for (const [id, v] of all) this.place(id, v);
  }
}
