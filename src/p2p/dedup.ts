// A bounded set of recently seen message ids. A Map iterates in insertion order, so deleting and
// re-inserting on a hit keeps the least recently seen id first, ready to evict: an LRU in 20 lines.
export class SeenIds {
  private readonly ids = new Map<string, true>();

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new Error(`dedup window must be a positive integer, got ${capacity}`);
  }

  has(id: string): boolean {
    if (!this.ids.has(id)) return false;
    this.ids.delete(id); // refresh: an id still circulating must not be the next evicted
    this.ids.set(id, true);
    return true;
  }

  add(id: string): void {
    this.ids.delete(id);
    this.ids.set(id, true);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.keys().next().value as string);
  }

  get size(): number {
    return this.ids.size;
  }
}
