// How many inputs this node proposes for one ledger, learned from its own executions. The next
// round's proposals need this node's result of the ledger just closed, so a ledger whose execution
// outlasts the round stalls the chain, and the inputs piling up meanwhile make the next one longer
// still: under a load the contract cannot keep up with, consensus would stop instead of slowing
// down. Proposing no more than fits about half a round (or, if an empty execution already takes
// longer, three times as long as that) keeps ledgers closing; the rest wait in the pool (and expire at
// their max_ledger_seq_no). Safe to differ between nodes: a ledger keeps only
// inputs a threshold of the UNL proposed, so the smallest budget among them is what closes.
const OVERLOAD_FACTOR = 3;

export class InputBudget {
  /** Execution time that does not depend on inputs (contract start, commit): from input-less runs. */
  private fixedMs: number | null = null;
  /** Decayed sums of (time beyond fixedMs) and of inputs, for the time per input. */
  private extraMs = 0;
  private inputs = 0;

  constructor(
    private readonly roundtimeMs: number,
    private readonly ceiling: number,
    private readonly floor = 16,
    /** Share of a round an execution may take. */
    private readonly share = 0.5,
  ) {}

  observe(inputs: number, totalMs: number): void {
    if (!Number.isFinite(totalMs) || totalMs < 0) return;
    if (inputs === 0) {
      this.fixedMs = this.fixedMs === null ? totalMs : 0.7 * this.fixedMs + 0.3 * totalMs;
      return;
    }
    this.extraMs = 0.7 * this.extraMs + Math.max(0, totalMs - (this.fixedMs ?? 0));
    this.inputs = 0.7 * this.inputs + inputs;
  }

  /** Inputs to propose for the next ledger. */
  get maxInputs(): number {
    if (this.inputs < 1 || this.extraMs <= 0) return this.ceiling;
    const perInputMs = this.extraMs / this.inputs;
    // When even an empty execution outlasts the share (a contract start slower than the round),
    // ledgers close every few rounds anyway: then inputs may take up to OVERLOAD_FACTOR times the
    // fixed part, so under overload a ledger cycle grows by at most that much and the fixed cost
    // is spread over enough inputs for ~3/4 of the contract's best throughput.
    const fixed = this.fixedMs ?? 0;
    const share = this.share * this.roundtimeMs;
    const roomMs = Math.max(share - fixed, OVERLOAD_FACTOR * (fixed - share / 2)); // continuous in fixed
    return Math.max(this.floor, Math.min(this.ceiling, Math.floor(roomMs / perInputMs)));
  }
}
