// Threshold arithmetic, in integers so every node computes the same counts (docs/CONSENSUS.md §4).
//
// q = ceil(T·N/100) votes close a ledger. Two quorums overlap in at least 2q−N members, so two
// different ledgers at one seq need that many members signing both: safety holds while fewer than
// 2q−N (about (2T−100)% of the UNL) equivocate. Liveness needs q honest, connected members.

/** Stage s ∈ {1,2,3} keeps an item proposed by at least STAGE_PERCENT[s]·T/80 % of the UNL:
 *  50/65/80 % at the default T = 80 (HotPocket's ladder); stage 3 is exactly the quorum. */
const STAGE_PERCENT = [0, 50, 65, 80] as const;

export function checkThreshold(thresholdPercent: number): void {
  if (!Number.isInteger(thresholdPercent) || thresholdPercent <= 50 || thresholdPercent > 100) {
    throw new Error(
      `consensus threshold must be an integer percentage in 51..100, got ${thresholdPercent}: ` +
        'at 50 or below two disjoint halves of the UNL could each close a different ledger',
    );
  }
}

/** Votes needed to close a ledger (and for a polka): ceil(T·N/100). */
export function quorumSize(unlSize: number, thresholdPercent: number): number {
  return Math.max(1, Math.floor((unlSize * thresholdPercent + 99) / 100));
}

/** Votes stage s needs from the previous stage's proposals for an item to be kept. */
export function stageNeed(stage: 1 | 2 | 3, unlSize: number, thresholdPercent: number): number {
  if (stage === 3) return quorumSize(unlSize, thresholdPercent);
  // ceil(N·P·T/8000) computed exactly: all three factors are small integers.
  const num = unlSize * STAGE_PERCENT[stage] * thresholdPercent;
  return Math.max(1, Math.floor((num + 7999) / 8000));
}

/** How many members may equivocate before two quorums can close different ledgers (< 2q−N). */
export function maxEquivocators(unlSize: number, thresholdPercent: number): number {
  return Math.max(0, 2 * quorumSize(unlSize, thresholdPercent) - unlSize - 1);
}

/** How many members may be crashed or cut off while the rest still reach a quorum. */
export function maxSilent(unlSize: number, thresholdPercent: number): number {
  return unlSize - quorumSize(unlSize, thresholdPercent);
}
