// The consensus core's vocabulary: what goes in (events), what comes out (actions), and the
// messages nodes exchange. Everything here is plain data so the core stays a deterministic
// function of its event sequence (docs/CONSENSUS.md).
import type { LedgerHeader, QuorumSignature } from '../ledger/ledgerHash';

export type Stage = 0 | 1 | 2 | 3;

/** nonce (u64 big-endian) ‖ 32-byte input hash: sorting these bytes gives HotPocket's input order. */
export const ORDERED_HASH_BYTES = 40;

/** What executing ledger N left behind; it is voted in round N+1 (one-ledger lag). */
export interface ExecResult {
  outputRoot: Buffer; // 32 bytes: the output Merkle root (state root is its last leaf)
  stateRoot: Buffer; // 32 bytes
  configHash: Buffer; // 32 bytes: hash of the contract's patch config
}

export interface LedgerRef {
  seqNo: number;
  hash: Buffer;
  timestampMs: number;
}

/**
 * A candidate ledger N: every field its header commits to. Its digest is ledgerHash(header), so a
 * quorum agreeing on a digest agrees on the whole ledger (the nonce prefix of the ordered hashes
 * only fixes the order, which the input list hash already commits to).
 */
export interface Value {
  seqNo: number;
  timestampMs: number; // the round start in which this value was first proposed
  prevHash: Buffer;
  result: ExecResult; // of executing ledger seqNo-1
  inputs: Buffer[]; // ordered hashes, strictly ascending
  users: Buffer[]; // 33-byte pubkeys, strictly ascending; includes every input's author
}

export interface PolSignature {
  pubkey: Buffer;
  sig: Buffer; // the author's signature of its stage-2 proposal carrying `value` in `roundMs`
}

/** Proof of lock: ≥ quorum stage-2 signatures for one value in one round (a "polka"). */
export interface PolCert {
  roundMs: number;
  value: Value;
  sigs: PolSignature[];
}

interface ProposalBase {
  contractId: string;
  seqNo: number; // lcl.seqNo + 1
  roundMs: number; // round start (a multiple of roundtimeMs)
  prevHash: Buffer; // hash of ledger seqNo-1
}

/** Stages 0 and 1: candidate items (stage 1 keeps what enough of the UNL proposed in stage 0). */
export interface CandidateProposal extends ProposalBase {
  stage: 0 | 1;
  result: ExecResult | null; // own result of executing seqNo-1; null when unknown or desync
  inputs: Buffer[]; // ordered hashes, strictly ascending
  users: Buffer[]; // strictly ascending
  pol: PolCert | null; // stage 0 only: the highest polka this node knows of for seqNo
}

/** Stage 2 (prevote) and stage 3 (precommit): one whole value, or null ("nil": no vote). */
export interface VoteProposal extends ProposalBase {
  stage: 2 | 3;
  value: Value | null;
}

export type Proposal = CandidateProposal | VoteProposal;

/** TypeScript does not narrow `stage === 0 || stage === 1` on these unions; this guard does. */
export function isVoteProposal(p: Proposal): p is VoteProposal {
  return p.stage === 2 || p.stage === 3;
}
export type SignedProposal = Proposal & { author: Buffer; sig: Buffer };

/** "I closed ledger seqNo with this hash": signIn('ledger-close', contractId, hash). */
export interface Attestation {
  seqNo: number;
  hash: Buffer;
  author: Buffer;
  sig: Buffer;
}

export interface CandidateInput {
  hash: Buffer; // 40-byte ordered hash
  user: Buffer; // 33-byte author
  maxLedgerSeqNo: number;
}

export type VoteStatus = 'synced' | 'desync' | 'unreliable';

/** A ledger the cluster decided: header, the ordered inputs, the users, and the quorum certificate. */
export interface ClosedLedger {
  header: LedgerHeader;
  hash: Buffer;
  inputs: Buffer[]; // ordered hashes in ledger order
  users: Buffer[];
  quorum: QuorumSignature[]; // ≥ quorum 'ledger-close' signatures over `hash`, sorted by pubkey
  roundMs: number; // round in which this node saw it decided (diagnostics)
}

export interface SyncRequest {
  /** behind: a quorum is past our lcl. fork: a quorum certified another hash at a seq we hold.
   *  state: our execution result differs from the quorum's. missing-inputs / uncertified: we
   *  know the decision but lack input bodies or the certificate. */
  reason: 'behind' | 'fork' | 'state' | 'missing-inputs' | 'uncertified';
  lcl: LedgerRef; // what this node has closed
  targetSeqNo: number; // sync at least this far
  targetHash: Buffer | null; // certified hash at targetSeqNo, when known
  expectedResult: ExecResult | null; // 'state': the result a quorum reported for targetSeqNo
  peers: Buffer[]; // UNL members known to be at or past the target
}

export type Evidence =
  | { kind: 'proposal-equivocation'; author: Buffer; first: SignedProposal; second: SignedProposal }
  | { kind: 'attestation-equivocation'; author: Buffer; first: Attestation; second: Attestation };

/** What a restarted node must remember to stay safe: the value it precommitted, and the proof
 *  (the polka) it shows others so they can adopt it. */
export interface PersistedLock {
  seqNo: number;
  roundMs: number;
  value: Value;
  cert: PolCert;
}

export type ConsensusEvent =
  | { type: 'tick'; nowMs: number }
  | { type: 'proposal'; proposal: SignedProposal } // signature already verified by the shell
  | { type: 'attestation'; attestation: Attestation } // signature already verified by the shell
  | { type: 'inputsAvailable'; inputs: CandidateInput[] } // bodies held locally
  | { type: 'usersConnected'; users: Buffer[] } // the full current set, replaces the previous one
  | { type: 'executionDone'; seqNo: number; outputRoot: Buffer; stateRoot: Buffer; configHash: Buffer }
  | { type: 'inputBudget'; maxInputs: number } // at most this many inputs in our own proposals (node/inputBudget.ts)
  | { type: 'syncDone'; lcl: LedgerRef; result: ExecResult | null; inputsInLedgers: Buffer[] };

export type ConsensusAction =
  | { type: 'broadcast'; proposal: Proposal } // sign ('proposal'), send to peers, loop back
  | { type: 'attest'; seqNo: number; hash: Buffer } // sign ('ledger-close'), send, loop back
  | { type: 'relay'; proposals: SignedProposal[] } // forward others' signed proposals unchanged
  | { type: 'fetchInputs'; hashes: Buffer[]; peers: Buffer[] } // get these bodies, then inputsAvailable
  | { type: 'persistLock'; lock: PersistedLock | null } // durable before any later action
  | { type: 'closeLedger'; ledger: ClosedLedger } // append (inputs/users bodies from the pool)
  | { type: 'execute'; ledger: ClosedLedger } // run the contract, then report executionDone
  | { type: 'voteStatus'; status: VoteStatus }
  | { type: 'requestSync'; request: SyncRequest }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; message: string; evidence?: Evidence };

/** Named bounds on everything the core stores or accepts (TigerBeetle style). */
export interface ConsensusLimits {
  maxInputsPerLedger: number;
  maxUsersPerLedger: number;
  maxCandidateInputs: number;
  /** Rounds of votes kept for the seq being decided: late precommits of older rounds still count. */
  maxRoundsKept: number;
  /** Decided ledgers waiting for their certificate before the node asks for a sync. */
  maxPendingLedgers: number;
  /** Proposals for the next seq buffered per author until this node decides the current one. */
  maxAheadPerAuthor: number;
  /** Rounds between two sync requests for the same target. */
  syncRetryRounds: number;
  /** Seqs an included input's hash is remembered, to refuse a late relayed copy of it. */
  includedMemorySeqs: number;
}

export const DEFAULT_LIMITS: Readonly<ConsensusLimits> = Object.freeze({
  maxInputsPerLedger: 4096, // one round's worth at HotPocket's default round limits
  maxUsersPerLedger: 4096,
  maxCandidateInputs: 100_000, // matches the node's input pool bound
  maxRoundsKept: 16,
  maxPendingLedgers: 4,
  maxAheadPerAuthor: 8,
  syncRetryRounds: 4,
  includedMemorySeqs: 1024,
});

export interface ConsensusConfig {
  contractId: string;
  unl: readonly Buffer[]; // 33-byte pubkeys of the voting nodes
  self: Buffer; // this node's pubkey; outside the UNL it only observes
  thresholdPercent: number; // integer in 51..100
  roundtimeMs: number;
  limits?: Partial<ConsensusLimits>;
}

export interface ConsensusStart {
  lcl: LedgerRef; // last closed ledger on disk (genesis: seq 0)
  result: ExecResult | null; // of executing lcl; null = the shell will report executionDone(lcl.seqNo)
  lock?: PersistedLock | null; // as last persisted
  nowMs: number; // the round in progress at start is sat out (no second proposal for a slot)
}
