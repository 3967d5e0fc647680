// How late this process's event loop runs its callbacks: a timer every SAMPLE_MS records how much
// later than asked it fired. Our own sampler rather than perf_hooks' monitorEventLoopDelay, whose
// reset() forgets a stall that has not been sampled yet (a status write due during the stall runs
// first), so a per-second figure could miss the very stalls it is for.
import { createHistogram, RecordableHistogram } from 'node:perf_hooks';

const SAMPLE_MS = 10;

export interface LoopLagFigures {
  p50: number;
  p99: number;
  max: number;
}

export class LoopLag {
  private readonly h: RecordableHistogram = createHistogram();
  private last = performance.now();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.timer = setInterval(() => {
      const now = performance.now();
      this.h.record(Math.max(1, Math.round((now - this.last - SAMPLE_MS) * 1000))); // µs, at least 1
      this.last = now;
    }, SAMPLE_MS);
    this.timer.unref();
  }

  /** Milliseconds late (one decimal) since the last take(), then starts over. */
  take(): LoopLagFigures {
    const ms = (us: number) => (this.h.count > 0 ? Math.round(us / 100) / 10 : 0);
    const out = { p50: ms(this.h.percentile(50)), p99: ms(this.h.percentile(99)), max: ms(this.h.max) };
    this.h.reset();
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
