// The proposals received for one seq on one parent, by round, stage and author. At most one
// proposal per (round, stage, author) counts: a second, different one is equivocation, and from
// then on nothing that author sent in that round counts (its earlier votes there are withdrawn).
import { proposalId } from './proposalCodec';
import { valueDigest } from './value';
import type { CandidateProposal, SignedProposal, Value, VoteProposal } from './types';

export type SignedCandidate = CandidateProposal & { author: Buffer; sig: Buffer };
export type SignedVote = VoteProposal & { author: Buffer; sig: Buffer };

/** All stage-2 or stage-3 votes for one value in one round. */
export interface Tally {
  digest: Buffer;
  value: Value;
  voters: Map<string, SignedVote>; // author hex → its vote
}

export type AddOutcome =
  | { kind: 'added'; tally: Tally | null }
  | { kind: 'duplicate' }
  | { kind: 'ignored' } // the author already equivocated in this round
  | { kind: 'equivocation'; first: SignedProposal };

class RoundVotes {
  readonly byStage: Map<string, SignedProposal>[] = [new Map(), new Map(), new Map(), new Map()];
  readonly equivocators = new Set<string>();
  readonly tallies: Map<string, Tally>[] = [new Map(), new Map()]; // stage 2, stage 3 (by digest hex)
}

export class SeqVotes {
  private readonly rounds = new Map<number, RoundVotes>();

  constructor(
    readonly seqNo: number,
    readonly prevHash: Buffer,
    private readonly maxRounds: number,
  ) {}

  add(p: SignedProposal, authorHex: string): AddOutcome {
    let round = this.rounds.get(p.roundMs);
    if (!round) {
      // Bounded: a flood of proposals for distinct old rounds evicts the oldest, never grows memory.
      if (this.rounds.size >= this.maxRounds) {
        const oldest = Math.min(...this.rounds.keys());
        if (p.roundMs < oldest) return { kind: 'ignored' };
        this.rounds.delete(oldest);
      }
      round = new RoundVotes();
      this.rounds.set(p.roundMs, round);
    }
    if (round.equivocators.has(authorHex)) return { kind: 'ignored' };
    const slot = round.byStage[p.stage];
    const first = slot.get(authorHex);
    if (first) {
      if (proposalId(first).equals(proposalId(p))) return { kind: 'duplicate' };
      round.equivocators.add(authorHex);
      for (const stage of round.byStage) stage.delete(authorHex);
      for (const tallies of round.tallies) {
        for (const [key, t] of tallies) {
          t.voters.delete(authorHex);
          if (t.voters.size === 0) tallies.delete(key);
        }
      }
      return { kind: 'equivocation', first };
    }
    slot.set(authorHex, p);
    if ((p.stage === 2 || p.stage === 3) && p.value) {
      const tallies = round.tallies[p.stage - 2];
      const digest = valueDigest(p.value);
      const key = digest.toString('hex');
      let t = tallies.get(key);
      if (!t) {
        t = { digest, value: p.value, voters: new Map() };
        tallies.set(key, t);
      }
      t.voters.set(authorHex, p as SignedVote);
      return { kind: 'added', tally: t };
    }
    return { kind: 'added', tally: null };
  }

  /** Stage-0 or stage-1 proposals of a round from authors not caught equivocating. */
  candidates(roundMs: number, stage: 0 | 1): SignedCandidate[] {
    const round = this.rounds.get(roundMs);
    return round ? ([...round.byStage[stage].values()] as SignedCandidate[]) : [];
  }

  tallies(roundMs: number, stage: 2 | 3): Iterable<Tally> {
    return this.rounds.get(roundMs)?.tallies[stage - 2].values() ?? [];
  }

  /** Any value seen in a stage-2/3 vote with this digest (to close on a certificate alone). */
  findValue(digest: Buffer): Value | null {
    const key = digest.toString('hex');
    for (const round of this.rounds.values()) {
      for (const tallies of round.tallies) {
        const t = tallies.get(key);
        if (t) return t.value;
      }
    }
    return null;
  }

  /** Drops rounds before minRoundMs; their votes can no longer matter to liveness. */
  prune(minRoundMs: number): void {
    for (const r of this.rounds.keys()) if (r < minRoundMs) this.rounds.delete(r);
  }
}
