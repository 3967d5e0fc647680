// How many inputs this node proposes for one ledger, learned from its own executions. The next
// round's proposals need this node's result of the ledger just closed, so a ledger whose execution
// outlasts the round stalls the chain, and the inputs piling up meanwhile make the next one longer
// still: under a load the contract cannot keep up with, consensus would stop instead of slowing
// down. Proposing no more than fits about half a round (or, if an empty execution already takes
// longer, three times as long as that) keeps ledgers closing; the rest wait in the pool (and expire at
// their max_ledger_seq_no). Safe to differ between nodes: a ledger keeps only
// inputs a threshold of the UNL proposed, so the smallest budget among them is what closes.
//
// The model: time = fixed + perInput × inputs, fitted by least squares over the last WINDOW
// executions. Both parts are learned under the load of the moment: when other work slows every
// execution down (a busy machine, a slow disk), that lands in `fixed`, not in the cost per input;
// attributing it to the few inputs of a small ledger made the budget collapse to its floor under
// load (seen in the cluster benchmark: 16 inputs per ledger while executions had room for 300).
// The cost per input is only re-estimated when ledger sizes vary enough to tell it apart; a budget
// the fit keeps too small is probed upwards: it never stays below PROBE_GROWTH × the largest recent
// ledger that ran well within its time.
const OVERLOAD_FACTOR = 3;
const WINDOW = 24;
const PROBE_GROWTH = 1.25;
/** "Well within": at most this share of the time allowed. */
const COMFORTABLE = 0.75;

interface Run {
  inputs: number;
  ms: number;
}

export class InputBudget {
  private readonly runs: Run[] = [];
  /** The last cost per input the window could tell apart (ms), or null before there was one. */
  private perInputMs: number | null = null;

  constructor(
    private readonly roundtimeMs: number,
    private readonly ceiling: number,
    private readonly floor = 16,
    /** Share of a round an execution may take. */
    private readonly share = 0.5,
  ) {}

  observe(inputs: number, totalMs: number): void {
    if (!Number.isFinite(totalMs) || totalMs < 0 || !Number.isSafeInteger(inputs) || inputs < 0) return;
    this.runs.push({ inputs, ms: totalMs });
    if (this.runs.length > WINDOW) this.runs.shift();
    const fit = leastSquares(this.runs);
    if (fit) this.perInputMs = fit.slope;
  }

  /** Inputs to propose for the next ledger. */
  get maxInputs(): number {
    if (this.perInputMs === null || this.runs.length === 0) return this.ceiling;
    const perInputMs = this.perInputMs;
    const meanInputs = mean(this.runs.map((r) => r.inputs));
    const meanMs = mean(this.runs.map((r) => r.ms));
    const fixed = Math.max(0, meanMs - perInputMs * meanInputs);
    // When even an empty execution outlasts the share (a contract start slower than the round),
    // ledgers close every few rounds anyway: then inputs may take up to OVERLOAD_FACTOR times the
    // fixed part, so under overload a ledger cycle grows by at most that much and the fixed cost
    // is spread over enough inputs for ~3/4 of the contract's best throughput.
    const share = this.share * this.roundtimeMs;
    const roomMs = Math.max(share - fixed, OVERLOAD_FACTOR * (fixed - share / 2)); // continuous in fixed
    const modelled = Math.floor(roomMs / perInputMs);
    const allowedMs = Math.max(share, fixed + roomMs);
    let comfortable = 0;
    for (const r of this.runs) if (r.ms <= COMFORTABLE * allowedMs) comfortable = Math.max(comfortable, r.inputs);
    const probed = Math.floor(PROBE_GROWTH * comfortable);
    return Math.max(this.floor, Math.min(this.ceiling, Math.max(modelled, probed)));
  }
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** The slope of ms over inputs, when the ledger sizes in the window differ enough to fit one. */
function leastSquares(runs: Run[]): { slope: number } | null {
  if (runs.length < 2) return null;
  const mx = mean(runs.map((r) => r.inputs));
  const my = mean(runs.map((r) => r.ms));
  let sxx = 0;
  let sxy = 0;
  for (const r of runs) {
    sxx += (r.inputs - mx) ** 2;
    sxy += (r.inputs - mx) * (r.ms - my);
  }
  // Sizes within a few inputs of each other say nothing about the cost of one more.
  const spread = Math.sqrt(sxx / runs.length);
  if (spread < Math.max(4, 0.1 * mx)) return null;
  // Larger ledgers running faster is noise (or a change of load mid-window), not free inputs.
  return sxy > 0 ? { slope: sxy / sxx } : null;
}
