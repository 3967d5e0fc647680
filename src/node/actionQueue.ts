// Performs the consensus core's actions strictly in order, letting one of them (a durable write)
// hold back the ones after it without blocking the event loop. Why: the consensus lock must be on
// disk before the precommit that depends on it leaves this node, but an fsync + rename on the event
// loop stalled everything else (rounds, users, the peers this node serves) for 70–170 ms on a busy
// disk. While a write is in flight the core keeps handling events; their actions queue behind it.

/** What performing an action gives back: nothing (done), or a promise the later actions wait for. */
export type Performed = void | Promise<unknown>;

export class ActionQueue<A> {
  private readonly pending: A[] = [];
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly perform: (a: A) => Performed,
    /** An action that threw or whose promise rejected; the queue goes on with the next one. */
    private readonly failed: (a: A, err: Error) => void,
    /** A held-back queue can run again (call `runNext` until it returns false). */
    private readonly unblocked: () => void,
  ) {}

  push(actions: Iterable<A>): void {
    for (const a of actions) this.pending.push(a);
  }

  /** Performs the next action if nothing holds the queue back; false when it cannot (or is empty). */
  runNext(): boolean {
    if (this.inFlight || this.pending.length === 0) return false;
    const a = this.pending.shift()!;
    let out: Performed;
    try {
      out = this.perform(a);
    } catch (err) {
      this.failed(a, err as Error);
      return true;
    }
    if (out instanceof Promise) {
      const done = out.then(
        () => undefined,
        (err: Error) => this.failed(a, err),
      ).then(() => {
        this.inFlight = null;
        this.unblocked();
      });
      this.inFlight = done;
    }
    return true;
  }

  get length(): number {
    return this.pending.length;
  }

  /** A write holds the queue back. */
  get waiting(): boolean {
    return this.inFlight !== null;
  }

  /** Resolves once no write holds the queue back (the actions it held have run by then). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** Drops what has not started (the node is stopping) and waits for what has. */
  async close(): Promise<void> {
    this.pending.length = 0;
    await this.idle();
  }
}
