// Per-peer rate bounds. The clock is passed in (not read here) so tests and the simulator can
// freeze or step it.

/** Token bucket: `ratePerSec` tokens per second, holding at most `burst`. Rate 0 = unlimited. */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    nowMs: number,
  ) {
    this.tokens = burst;
    this.lastMs = nowMs;
  }

  /** Takes `cost` tokens if available; false (and takes nothing) otherwise. */
  take(cost: number, nowMs: number): boolean {
    if (this.ratePerSec === 0) return true;
    if (nowMs > this.lastMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.lastMs) * this.ratePerSec) / 1000);
      this.lastMs = nowMs;
    }
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }
}

/** Counts events in a fixed window that starts at the first event of the window. */
export class WindowCounter {
  private startMs = 0;
  private total = 0;

  constructor(readonly windowMs = 60_000) {}

  /** Adds `amount`; returns the total within the current window. */
  add(amount: number, nowMs: number): number {
    if (this.total === 0 || nowMs - this.startMs >= this.windowMs) {
      this.startMs = nowMs;
      this.total = 0;
    }
    this.total += amount;
    return this.total;
  }
}
