// Round and stage arithmetic. Rounds are aligned to multiples of roundtimeMs since the epoch so
// nodes with synchronized clocks agree on round starts without talking; a stage is a quarter round.
export class RoundClock {
  readonly stageMs: number;

  constructor(readonly roundtimeMs: number) {
    if (!Number.isSafeInteger(roundtimeMs) || roundtimeMs < 4) {
      throw new Error(`roundtimeMs must be an integer ≥ 4 (four stages of ≥ 1 ms), got ${roundtimeMs}`);
    }
    this.stageMs = Math.floor(roundtimeMs / 4);
  }

  roundStart(nowMs: number): number {
    return Math.floor(nowMs / this.roundtimeMs) * this.roundtimeMs;
  }

  /** 0..3; stage 3 absorbs the remainder when roundtimeMs is not a multiple of 4. */
  stageAt(nowMs: number): 0 | 1 | 2 | 3 {
    const s = Math.floor((nowMs - this.roundStart(nowMs)) / this.stageMs);
    return (s >= 3 ? 3 : s) as 0 | 1 | 2 | 3;
  }

  /** The next stage boundary strictly after nowMs: when the shell should tick the core again. */
  nextBoundary(nowMs: number): number {
    const start = this.roundStart(nowMs);
    const stage = this.stageAt(nowMs);
    return stage === 3 ? start + this.roundtimeMs : start + (stage + 1) * this.stageMs;
  }

  isRoundStart(ms: number): boolean {
    return Number.isSafeInteger(ms) && ms >= 0 && ms % this.roundtimeMs === 0;
  }
}
