// The consensus core: a deterministic state machine. `handle(event)` is its only input and the
// returned actions its only output; it owns no sockets, timers, clocks or randomness, so the
// simulator (test/consensus-sim.test.ts) replays any run from a seed. docs/CONSENSUS.md is the spec.
//
// Per seq N (= last decided + 1), wall-clock-aligned rounds of four stages:
//   stage 0  candidates: own inputs/users, own result of executing N-1, best known polka (PolCert)
//   stage 1  keep items ≥ 50 % of the UNL proposed in stage 0 (percentages scale with T/80)
//   stage 2  prevote one whole value: the locked value, else a known polka, else a fresh value
//            from the items ≥ 65 % proposed in stage 1, timestamped with this round's start
//   stage 3  precommit the value ≥ T % prevoted this round (a polka) and lock on it; else nil
// A value is decided when ≥ T % precommit it in one round; every deciding node attests the
// ledger hash ('ledger-close'), and ≥ T % attestations are the ledger's quorum certificate.
// Locks (Tendermint's rule: move only to a polka of a later round) keep a re-tried seq safe.
import { HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';
import type { QuorumSignature } from '../ledger/ledgerHash';
import { AttestationBook } from './attestationBook';
import { InputBook } from './inputBook';
import { proposalProblem } from './proposalCodec';
import { checkThreshold, quorumSize, stageNeed } from './quorum';
import { RoundClock } from './roundClock';
import { SeqVotes, SignedCandidate, Tally } from './seqVotes';
import {
  Attestation, CandidateInput, ClosedLedger, ConsensusAction, ConsensusConfig, ConsensusEvent, ConsensusLimits,
  ConsensusStart, DEFAULT_LIMITS, Evidence, ExecResult, LedgerRef, PersistedLock, PolCert, Proposal,
  SignedProposal, SyncRequest, Value, VoteStatus,
} from './types';
import { resultEquals, resultKey, resultProblem, sortedUnique, valueDigest, valueHeader, valueProblem } from './value';

interface Decided {
  ref: LedgerRef;
  value: Value;
  roundMs: number;
  missing: Set<string>; // keys of inputs whose bodies this node does not hold
  proof: SignedProposal[]; // the quorum of precommits that decided it (empty if decided by certificate)
}

interface Polka {
  roundMs: number;
  digest: Buffer;
  value: Value;
  cert: PolCert;
}

interface Lock {
  roundMs: number;
  value: Value;
  digest: Buffer;
  cert: PolCert; // the polka that justified it, shown to others in stage 0
}

/** Counters for what the core refused or noticed; read by the shell's status and by the simulator. */
export interface ConsensusStats {
  proposalsAccepted: number;
  proposalsIgnored: number; // wrong seq/parent/round window, non-UNL, duplicates
  proposalsMalformed: number;
  equivocations: number;
  attestationEquivocations: number;
  decided: number;
  closed: number;
  syncRequests: number;
}

const hex = (b: Buffer): string => b.toString('hex');
const ALL_STAGES = 0b1111;

export class ConsensusCore {
  readonly limits: Readonly<ConsensusLimits>;
  /** Inputs this node puts in its own stage-0 proposals (the shell's InputBudget; ≤ maxInputsPerLedger). */
  private ownInputCap: number;
  readonly quorum: number;
  readonly stats: ConsensusStats = {
    proposalsAccepted: 0, proposalsIgnored: 0, proposalsMalformed: 0, equivocations: 0,
    attestationEquivocations: 0, decided: 0, closed: 0, syncRequests: 0,
  };
  private readonly clock: RoundClock;
  private readonly unl: Map<string, Buffer>;
  private readonly selfHex: string;
  private readonly isVoter: boolean;

  private out: ConsensusAction[] = [];
  // time
  private nowMs: number;
  private roundMs: number;
  private sent = 0; // stages sent (bitmask) in roundMs for the current seq
  private readonly quietRoundMs: number; // the round in progress at start: sat out
  // ledgers: closed (certified, appended) ≤ decided (lcl); pending = decided but not closed
  private closed: LedgerRef;
  private lcl: LedgerRef;
  private pending: Decided[] = [];
  private readonly decidedHashes = new Map<number, string>();
  // Precommit proofs of the last few decided seqs, handed to members seen proposing for them.
  private readonly proofs = new Map<number, { proof: SignedProposal[]; relayedRoundMs: number }>();
  private exec: { seqNo: number; result: ExecResult } | null;
  private executing: number | null = null;
  // Closed ledgers waiting for their turn to execute, in seq order (several close at once when a
  // node comes back from a pause and the certificates of the ledgers it missed arrive together).
  private waitingExec: Array<{ ledger: ClosedLedger; expectedPrev: ExecResult }> = [];
  // votes for seq lcl+1
  private votes: SeqVotes;
  private ahead = new Map<string, SignedProposal[]>();
  private lock: Lock | null = null;
  private readonly polkas = new Map<number, Polka>();
  // attestations for seqs closed..lcl+maxPendingLedgers+2
  private readonly attests = new AttestationBook();
  private readonly peerLcl = new Map<string, number>(); // highest lcl each member claimed
  // inputs and users
  private readonly inputs: InputBook;
  // status and sync
  private status: VoteStatus | null = null;
  private stateMismatch: ExecResult | null = null;
  /** A certificate showed our state is wrong: no execution can fix that, only a sync (sticky until syncDone). */
  private diverged = false;
  private syncing: { targetSeqNo: number; atMs: number } | null = null;
  private behindRounds = 0;
  /** What this node prevoted in its last stage 2 (for explainUndecided). */
  private prevoteNote = 'none sent';
  /** The round of this node's last precommit (-1: none yet); rounds only grow, across seqs too. */
  private precommittedRoundMs = -1;
  private farAheadRounds = 0;

  constructor(readonly config: ConsensusConfig, start: ConsensusStart) {
    checkThreshold(config.thresholdPercent);
    if (typeof config.contractId !== 'string' || config.contractId.length === 0) throw new Error('consensus needs a non-empty contract id');
    this.unl = new Map();
    for (const k of config.unl) {
      if (!Buffer.isBuffer(k) || k.length !== PUBLIC_KEY_BYTES) throw new Error(`UNL keys must be ${PUBLIC_KEY_BYTES}-byte public keys`);
      if (this.unl.has(hex(k))) throw new Error(`UNL lists ${hex(k)} twice`);
      this.unl.set(hex(k), k);
    }
    if (this.unl.size === 0) throw new Error('the UNL is empty: nobody could ever close a ledger');
    if (!Buffer.isBuffer(config.self) || config.self.length !== PUBLIC_KEY_BYTES) throw new Error(`self must be a ${PUBLIC_KEY_BYTES}-byte public key`);
    this.limits = { ...DEFAULT_LIMITS, ...config.limits };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new Error(`consensus limit ${k} must be a positive integer, got ${v}`);
    }
    this.inputs = new InputBook(this.limits);
    this.ownInputCap = this.limits.maxInputsPerLedger;
    this.clock = new RoundClock(config.roundtimeMs);
    this.quorum = quorumSize(this.unl.size, config.thresholdPercent);
    this.selfHex = hex(config.self);
    this.isVoter = this.unl.has(this.selfHex);

    const l = start.lcl;
    if (!Number.isSafeInteger(l.seqNo) || l.seqNo < 0 || !Buffer.isBuffer(l.hash) || l.hash.length !== HASH_BYTES) {
      throw new Error('start.lcl needs a non-negative seqNo and a 32-byte hash');
    }
    if (start.result) {
      const p = resultProblem(start.result);
      if (p) throw new Error(`start.result: ${p}`);
    }
    this.closed = l;
    this.lcl = l;
    this.decidedHashes.set(l.seqNo, hex(l.hash));
    this.exec = start.result ? { seqNo: l.seqNo, result: start.result } : null;
    this.votes = this.newVotes(l.seqNo + 1, l.hash);
    const lk = start.lock;
    if (lk && lk.seqNo === l.seqNo + 1 && lk.value.prevHash.equals(l.hash) && !valueProblem(lk.value, this.limits)) {
      this.lock = { roundMs: lk.roundMs, value: lk.value, digest: valueDigest(lk.value), cert: lk.cert };
    }
    this.nowMs = start.nowMs;
    this.roundMs = this.clock.roundStart(start.nowMs);
    this.quietRoundMs = this.roundMs;
  }

  // ---- read-only views ---------------------------------------------------------------------

  /** Last decided ledger (proposals build on it). */
  get lastDecided(): LedgerRef {
    return this.lcl;
  }

  /** Last ledger closed with a certificate (what the shell has appended). */
  get lastClosed(): LedgerRef {
    return this.closed;
  }

  get voteStatus(): VoteStatus | null {
    return this.status;
  }

  get lockedValue(): PersistedLock | null {
    return this.lock ? { seqNo: this.lcl.seqNo + 1, roundMs: this.lock.roundMs, value: this.lock.value, cert: this.lock.cert } : null;
  }

  /** One line of internal state for diagnostics (status commands, simulator failure traces). */
  describe(): string {
    const lock = this.lock ? `${hex(this.lock.digest).slice(0, 8)}@${this.lock.roundMs}` : '-';
    const polka = [...this.polkas.values()].map((p) => `${hex(p.digest).slice(0, 8)}@${p.roundMs}`).join(',') || '-';
    const exec = this.exec ? `${this.exec.seqNo}` : '-';
    return `decided=${this.lcl.seqNo}:${hex(this.lcl.hash).slice(0, 8)} closed=${this.closed.seqNo} pending=${this.pending.length} exec=${exec} executing=${this.executing ?? '-'} ` +
      `waiting=${this.waitingExec.map((w) => w.ledger.header.seqNo).join(',') || '-'} status=${this.status} lock=${lock} polkas=${polka} mismatch=${this.stateMismatch ? 'yes' : 'no'} ` +
      `syncing=${this.syncing ? this.syncing.targetSeqNo : '-'} candidates=${this.inputs.size}` +
      (this.lock ? ` lockVote=${this.unacceptable(this.lock.value) ?? 'ok'}` : '');
  }

  /** When the shell should tick next: the next stage boundary. */
  nextTickAt(): number {
    return this.clock.nextBoundary(this.nowMs);
  }

  // ---- the one entry point -------------------------------------------------------------------

  handle(event: ConsensusEvent): ConsensusAction[] {
    switch (event.type) {
      case 'tick':
        this.onTick(event.nowMs);
        break;
      case 'proposal':
        this.onProposal(event.proposal);
        break;
      case 'attestation':
        this.onAttestation(event.attestation);
        break;
      case 'inputsAvailable':
        this.onInputs(event.inputs);
        break;
      case 'usersConnected':
        this.inputs.setConnectedUsers(event.users);
        break;
      case 'inputBudget':
        if (Number.isSafeInteger(event.maxInputs) && event.maxInputs > 0) this.ownInputCap = Math.min(event.maxInputs, this.limits.maxInputsPerLedger);
        break;
      case 'executionDone':
        this.onExecutionDone(event.seqNo, { outputRoot: event.outputRoot, stateRoot: event.stateRoot, configHash: event.configHash });
        break;
      case 'syncDone':
        this.onSyncDone(event.lcl, event.result, event.inputsInLedgers);
        break;
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  // ---- time ------------------------------------------------------------------------------------

  private onTick(nowMs: number): void {
    if (!Number.isFinite(nowMs) || nowMs < this.nowMs) return; // time never goes back for the core
    this.nowMs = nowMs;
    const round = this.clock.roundStart(nowMs);
    if (round > this.roundMs) {
      this.roundMs = round;
      this.sent = 0;
      this.onNewRound();
    }
    this.runStage(this.clock.stageAt(nowMs));
  }

  private onNewRound(): void {
    this.explainUndecided(this.roundMs - this.clock.roundtimeMs);
    const minRound = this.roundMs - (this.limits.maxRoundsKept - 1) * this.clock.roundtimeMs;
    this.votes.prune(minRound);
    // Old polkas go, except the latest: it is what an unlocked node adopts to rejoin locked ones.
    const latest = this.bestPolkaBefore(Infinity);
    for (const r of this.polkas.keys()) if (r < minRound && r !== latest?.roundMs) this.polkas.delete(r);
    // Re-attest what we decided or closed: a peer that missed the first copy can still close.
    if (this.isVoter) {
      for (const d of this.pending) this.emit({ type: 'attest', seqNo: d.ref.seqNo, hash: d.ref.hash });
      if (this.pending.length === 0 && this.closed.seqNo > 0) this.emit({ type: 'attest', seqNo: this.closed.seqNo, hash: this.closed.hash });
    }
    // A decision that is not certified yet may be known to fewer than a quorum (lost precommits, a
    // crash): hand its proof around so every member can decide it too and attest.
    for (const d of this.pending) this.helpBehind(d.ref.seqNo);
    this.checkBehind();
    const head = this.pending[0];
    if (head && (this.pending.length > this.limits.maxPendingLedgers || this.roundMs - head.roundMs > this.limits.syncRetryRounds * this.clock.roundtimeMs)) {
      this.requestSync('uncertified', head.ref.seqNo, head.ref.hash, null);
    }
  }

  /**
   * Why a round that this node voted in decided nothing (debug): how many members it heard per
   * stage, and how the prevotes split. Under load a round usually fails because one member lacked
   * an input the others kept (its prevote then differs), or its proposals came late.
   */
  private explainUndecided(roundMs: number): void {
    if (!this.isVoter || roundMs <= this.quietRoundMs || this.votes.seqNo !== this.lcl.seqNo + 1) return;
    const heard = [0, 1].map((s) => this.votes.candidates(roundMs, s as 0 | 1).length);
    const note = this.prevoteNote;
    this.prevoteNote = 'none sent';
    if (heard[0] === 0) return; // nothing happened for this seq in that round (e.g. decided in it)
    const split = (stage: 2 | 3) =>
      [...this.votes.tallies(roundMs, stage)].map((t) => `${t.voters.size}x${hex(t.digest).slice(0, 8)}(${t.value.inputs.length} inputs)`).join(' ') || 'none';
    this.log('debug', `round ${roundMs} decided no ledger ${this.lcl.seqNo + 1}: heard stage 0 from ${heard[0]}, stage 1 from ${heard[1]} of ${this.unl.size}; ` +
      `prevotes ${split(2)}; precommits ${split(3)}; own prevote ${note}`);
  }

  private runStage(stage: 0 | 1 | 2 | 3): void {
    if (!this.isVoter || this.roundMs <= this.quietRoundMs) return;
    if (stage === 3) {
      // A prevote held back for our result (stage2) may still go out while the round lasts.
      if (!(this.sent & (1 << 2)) && this.votingResult()) {
        this.sent |= 1 << 2;
        this.stage2();
      }
      return this.tryPrecommit();
    }
    const bit = 1 << stage;
    if (this.sent & bit) return;
    this.sent |= bit;
    if (stage === 0) this.stage0();
    else if (stage === 1) this.stage1();
    else this.stage2();
  }

  // ---- the four stages -------------------------------------------------------------------------

  private stage0(): void {
    const seqNo = this.lcl.seqNo + 1;
    const { inputs, users } = this.inputs.own(seqNo, this.ownInputCap);
    const pol = this.bestPolkaBefore(this.roundMs)?.cert ?? null;
    this.broadcast({ contractId: this.config.contractId, stage: 0, seqNo, roundMs: this.roundMs, prevHash: this.lcl.hash, result: this.votingResult(), inputs, users, pol });
  }

  private stage1(): void {
    const props = this.votes.candidates(this.roundMs, 0);
    this.assessStatus(props);
    const need = stageNeed(1, this.unl.size, this.config.thresholdPercent);
    this.fetchMissing(props, need);
    const { inputs, users } = this.inputs.keep(props, need, this.lcl.seqNo + 1);
    this.broadcast({ contractId: this.config.contractId, stage: 1, seqNo: this.lcl.seqNo + 1, roundMs: this.roundMs, prevHash: this.lcl.hash, result: this.votingResult(), inputs, users, pol: null });
  }

  private stage2(): void {
    const props = this.votes.candidates(this.roundMs, 1);
    this.assessStatus(props);
    this.fetchMissing(props, stageNeed(2, this.unl.size, this.config.thresholdPercent));
    const value = this.choosePrevote(props);
    if (!value && this.quorum === this.unl.size && this.resultComing()) {
      // Nothing can be voted for before our result of the last ledger, it is on its way, and no
      // polka can form without us (q = N): hold the prevote (runStage sends it when the result
      // comes, until the round ends) rather than doom the round with a nil one. Under load an
      // execution often outlasts the stage. Not when q < N: the others can close without us then,
      // and holding back made them close every round, faster than a node catching up after a
      // restart replays ledgers (it then trailed them for tens of seconds).
      this.sent &= ~(1 << 2);
      this.prevoteNote = 'held back: our result of the last ledger came too late in the round';
      return;
    }
    this.prevoteNote = value ? `${hex(valueDigest(value)).slice(0, 8)}(${value.inputs.length} inputs)` : `nil: ${this.nilReason()}`;
    this.broadcast({ contractId: this.config.contractId, stage: 2, seqNo: this.lcl.seqNo + 1, roundMs: this.roundMs, prevHash: this.lcl.hash, value });
  }

  /**
   * Stage 3: precommit the value ≥ T % prevoted in a round, and lock on it, as soon as the polka is
   * seen (Tendermint precommits on the polka, not on a timer): from the stage-3 boundary of its
   * round, and on into the next round until this node prevotes there. Stages 0 and 1 are no votes,
   * so a node there is, for its votes, still in the last round: a polka completed by prevotes that
   * arrived late (a loaded machine) still decides, one round sooner than re-voting it would. No
   * polka, no precommit: a nil precommit would tell nobody anything.
   */
  private tryPrecommit(): void {
    if (!this.isVoter) return;
    const round = this.precommitRound();
    if (round === null || round <= this.quietRoundMs || round <= this.precommittedRoundMs) return;
    const polka = this.polkas.get(round);
    if (!polka || !this.acceptable(polka.value)) return;
    this.precommittedRoundMs = round;
    // Persist before the precommit leaves: a restarted node must not precommit something else.
    this.lock = { roundMs: round, value: polka.value, digest: polka.digest, cert: polka.cert };
    this.emit({ type: 'persistLock', lock: { seqNo: this.lcl.seqNo + 1, roundMs: round, value: polka.value, cert: polka.cert } });
    this.broadcast({ contractId: this.config.contractId, stage: 3, seqNo: this.lcl.seqNo + 1, roundMs: round, prevHash: this.lcl.hash, value: polka.value });
  }

  /** The round whose polka this node may precommit now (see tryPrecommit), or null. */
  private precommitRound(): number | null {
    if (this.clock.roundStart(this.nowMs) !== this.roundMs) return null;
    if (this.clock.stageAt(this.nowMs) === 3) return this.roundMs;
    return this.sent & (1 << 2) ? null : this.roundMs - this.clock.roundtimeMs;
  }

  /**
   * Tendermint's prevote rule without a leader: a locked node votes its lock unless it has seen a
   * polka for another value in a later round; an unlocked node adopts the latest polka it knows
   * (so nodes converge after a split); otherwise the items the stage ladder kept, timestamped now.
   */
  private choosePrevote(stage1: SignedCandidate[]): Value | null {
    const best = this.bestPolkaBefore(this.roundMs);
    if (this.lock) {
      if (best && best.roundMs > this.lock.roundMs && !best.digest.equals(this.lock.digest) && this.acceptable(best.value)) return best.value;
      return this.acceptable(this.lock.value) ? this.lock.value : null;
    }
    if (best && this.acceptable(best.value)) return best.value;
    const own = this.votingResult();
    if (!own) return null; // nothing to vouch for: executing N-1 is unfinished, or we are desync
    const { inputs, users } = this.inputs.keep(stage1, stageNeed(2, this.unl.size, this.config.thresholdPercent), this.lcl.seqNo + 1);
    const value: Value = { seqNo: this.lcl.seqNo + 1, timestampMs: this.roundMs, prevHash: this.lcl.hash, result: own, inputs, users };
    return this.acceptable(value) ? value : null;
  }

  /**
   * Inputs enough members propose but whose bodies we lack: we cannot vote for them, and a node
   * that leaves out what the others keep splits the prevotes. Ask the shell to fetch them from the
   * proposers (at most once every two rounds per input, at most one ledger's worth at a time).
   */
  private fetchMissing(props: SignedCandidate[], need: number): void {
    const wanted = [this.lock?.value, this.bestPolkaBefore(this.roundMs)?.value];
    const { hashes, from } = this.inputs.toFetch(props, need, wanted, this.roundMs, this.clock.roundtimeMs);
    if (hashes.length === 0) return;
    // Ask those who proposed them; for a locked or adopted value's inputs, anyone.
    const peers = sortedUnique(from.length > 0 ? from : [...this.unl.values()]).filter((k) => !k.equals(this.config.self));
    this.emit({ type: 'fetchInputs', hashes, peers });
  }

  /** Our result of lcl is not known yet, but an execution that will give it runs or waits. */
  private resultComing(): boolean {
    return !this.votingResult() && !this.stateMismatch && !this.diverged && (this.executing !== null || this.waitingExec.length > 0);
  }

  /** Why choosePrevote found nothing to vote for (diagnostics only). */
  private nilReason(): string {
    if (this.lock) return `locked on a value we cannot vote for (${this.unacceptable(this.lock.value)})`;
    if (!this.votingResult()) return this.stateMismatch ? 'our state differs from the quorum' : 'our result of the last ledger is not ready';
    return 'the items kept made no value we could execute';
  }

  /** Would this node vouch for `value` as ledger lcl+1? Only if it could execute it as is. */
  private acceptable(v: Value): boolean {
    return this.unacceptable(v) === null;
  }

  private unacceptable(v: Value): string | null {
    const seqNo = this.lcl.seqNo + 1;
    if (v.seqNo !== seqNo || !v.prevHash.equals(this.lcl.hash)) return 'other seq or parent';
    const own = this.votingResult();
    if (!own) return 'no own result';
    if (!resultEquals(own, v.result)) return 'result differs from ours';
    if (v.timestampMs <= this.lcl.timestampMs || v.timestampMs > this.roundMs) return 'timestamp out of range';
    return this.inputs.problemWith(v, seqNo);
  }

  /** Our result of executing lcl, when we have it and nobody showed us it is wrong. */
  private votingResult(): ExecResult | null {
    if (this.stateMismatch) return null;
    return this.exec && this.exec.seqNo === this.lcl.seqNo ? this.exec.result : null;
  }

  /** The latest polka before `roundMs` this node knows of: seen itself, shown by a peer, or its lock's. */
  private bestPolkaBefore(roundMs: number): Polka | null {
    let best: Polka | null = null;
    for (const p of this.polkas.values()) if (p.roundMs < roundMs && (!best || p.roundMs > best.roundMs)) best = p;
    const l = this.lock;
    if (l && l.roundMs < roundMs && (!best || l.roundMs > best.roundMs)) best = { roundMs: l.roundMs, digest: l.digest, value: l.value, cert: l.cert };
    return best;
  }

  // ---- proposals ---------------------------------------------------------------------------------

  private onProposal(p: SignedProposal): void {
    const authorHex = hex(p.author);
    if (!this.unl.has(authorHex) || p.contractId !== this.config.contractId) {
      this.stats.proposalsIgnored++;
      return;
    }
    const problem = proposalProblem(p, this.limits);
    if (problem || !this.clock.isRoundStart(p.roundMs)) {
      this.stats.proposalsMalformed++;
      return;
    }
    // More than a round ahead of our clock: a skewed or lying clock; do not let it steer us.
    if (p.roundMs > this.roundMs + this.clock.roundtimeMs) {
      this.stats.proposalsIgnored++;
      return;
    }
    this.notePeerLcl(authorHex, p.seqNo - 1);
    const seqNo = this.lcl.seqNo + 1;
    if (p.seqNo < seqNo) {
      this.helpBehind(p.seqNo);
      this.stats.proposalsIgnored++;
      return;
    }
    // Peers that decided before us: keep a few, replayed once we decide (or sync to) the parent.
    // Precommits for any later seq too: one may belong to a relayed decision proof, and the p2p
    // layer delivers each signed message once, so a copy dropped while we are still behind is never
    // relayed to us again, and the seq may need our attestation to be certified at all.
    if (p.seqNo === seqNo + 1 || (p.seqNo > seqNo + 1 && p.stage === 3)) {
      const list = this.ahead.get(authorHex) ?? [];
      list.push(p);
      if (list.length > this.limits.maxAheadPerAuthor) list.shift();
      this.ahead.set(authorHex, list);
      return;
    }
    // Precommits of any round since lcl count (a relayed decision proof can be old); the rest only
    // in the recent window, the rounds that can still shape a vote.
    const oldest = p.stage === 3 ? this.lcl.timestampMs : this.roundMs - (this.limits.maxRoundsKept - 1) * this.clock.roundtimeMs;
    if (p.seqNo !== seqNo || !p.prevHash.equals(this.lcl.hash) || p.roundMs < oldest) {
      this.stats.proposalsIgnored++;
      return;
    }
    const r = this.votes.add(p, authorHex);
    if (r.kind === 'equivocation') {
      this.stats.equivocations++;
      this.log('warn', `equivocation by ${authorHex.slice(0, 12)}: two stage-${p.stage} proposals for seq ${p.seqNo} round ${p.roundMs}; its votes in that round are ignored`, {
        kind: 'proposal-equivocation', author: p.author, first: r.first, second: p,
      });
      return;
    }
    if (r.kind !== 'added') {
      this.stats.proposalsIgnored++;
      return;
    }
    this.stats.proposalsAccepted++;
    if (p.stage === 0 && p.pol) this.considerPol(p.pol);
    if (r.tally && r.tally.voters.size >= this.quorum) {
      if (p.stage === 2) this.notePolka(p.roundMs, r.tally);
      else if (p.stage === 3) this.decide(r.tally.value, r.tally.digest, p.roundMs, [...r.tally.voters.values()]);
    }
  }

  private notePolka(roundMs: number, t: Tally): void {
    const known = this.polkas.get(roundMs);
    if (known) {
      if (!known.digest.equals(t.digest)) this.log('error', `two polkas in round ${roundMs} for seq ${t.value.seqNo}: at least 2q-N members equivocated`);
      return;
    }
    const sigs = [...t.voters.values()]
      .map((v) => ({ pubkey: v.author, sig: v.sig }))
      .sort((a, b) => Buffer.compare(a.pubkey, b.pubkey))
      .slice(0, this.quorum);
    this.polkas.set(roundMs, { roundMs, digest: t.digest, value: t.value, cert: { roundMs, value: t.value, sigs } });
    this.tryPrecommit();
  }

  /** A peer's proof of lock; the shell verified every signature against prevoteOf(contractId, cert). */
  private considerPol(cert: PolCert): void {
    if (cert.value.seqNo !== this.lcl.seqNo + 1 || !cert.value.prevHash.equals(this.lcl.hash)) return;
    if (cert.roundMs >= this.roundMs + this.clock.roundtimeMs) return;
    const signers = new Set<string>();
    for (const s of cert.sigs) if (this.unl.has(hex(s.pubkey))) signers.add(hex(s.pubkey));
    if (signers.size < this.quorum) return;
    const digest = valueDigest(cert.value);
    const known = this.polkas.get(cert.roundMs);
    if (known) {
      if (!known.digest.equals(digest)) this.log('error', `conflicting polka certificates for round ${cert.roundMs}: at least 2q-N members equivocated`);
      return;
    }
    this.polkas.set(cert.roundMs, { roundMs: cert.roundMs, digest, value: cert.value, cert });
    this.tryPrecommit(); // a proof of lock is a polka: the one we missed may still be precommitted
  }

  // ---- deciding and closing ------------------------------------------------------------------------

  private decide(value: Value, digest: Buffer, roundMs: number, proof: SignedProposal[]): void {
    const seqNo = this.lcl.seqNo + 1;
    if (value.seqNo !== seqNo || !value.prevHash.equals(this.lcl.hash)) {
      this.log('error', `internal: decide called for seq ${value.seqNo} while deciding ${seqNo}`);
      return;
    }
    const known = this.decidedHashes.get(seqNo);
    if (known !== undefined && known !== hex(digest)) {
      // Only reachable with ≥ 2q-N equivocators; closing a second ledger would fork this node.
      this.log('error', `refusing ledger ${seqNo} ${hex(digest).slice(0, 12)}: already decided ${known.slice(0, 12)}`);
      return;
    }
    const missing = this.inputs.consume(value.inputs, seqNo);
    const ref: LedgerRef = { seqNo, hash: digest, timestampMs: value.timestampMs };
    this.pending.push({ ref, value, roundMs, missing, proof });
    if (proof.length > 0) this.proofs.set(seqNo, { proof, relayedRoundMs: -1 });
    this.proofs.delete(seqNo - 4);
    this.lcl = ref;
    this.decidedHashes.set(seqNo, hex(digest));
    this.decidedHashes.delete(seqNo - 64);
    this.stats.decided++;
    this.lock = null;
    this.polkas.clear();
    this.stateMismatch = null;
    if (this.syncing && this.syncing.targetSeqNo <= seqNo) this.syncing = null;
    this.votes = this.newVotes(seqNo + 1, digest);
    if (this.isVoter) this.emit({ type: 'attest', seqNo, hash: digest });
    // The next seq joins this round only if its stage 0 is still open; otherwise the next round.
    this.sent = this.clock.stageAt(this.nowMs) === 0 ? 0 : ALL_STAGES;
    const buffered = this.ahead;
    this.ahead = new Map();
    this.flushCertified();
    for (const list of buffered.values()) for (const p of list) this.onProposal(p);
    if (this.lcl.seqNo === seqNo) this.runStage(this.clock.stageAt(this.nowMs));
    if (proof.length === 0) this.log('info', `ledger ${seqNo} decided from a quorum of attestations (missed the precommits)`);
  }

  /**
   * A member still proposing for a seq we decided missed the precommits (or lost them in a crash);
   * it cannot close without them, nor can the cluster if its attestation is needed. Relay the proof,
   * at most once per round per seq.
   */
  private helpBehind(seqNo: number): void {
    const p = this.proofs.get(seqNo);
    if (!p || p.relayedRoundMs === this.roundMs) return;
    p.relayedRoundMs = this.roundMs;
    this.emit({ type: 'relay', proposals: p.proof });
  }

  /** Closes decided ledgers, in order, as soon as each has a quorum certificate. */
  private flushCertified(): void {
    while (this.pending.length > 0) {
      const head = this.pending[0];
      const quorum = this.attestationSigs(head.ref.seqNo, head.ref.hash);
      if (quorum.length < this.quorum) return;
      if (head.missing.size > 0) {
        this.requestSync('missing-inputs', head.ref.seqNo, head.ref.hash, null);
        return;
      }
      const ledger: ClosedLedger = {
        header: valueHeader(head.value), hash: head.ref.hash, inputs: head.value.inputs, users: head.value.users, quorum, roundMs: head.roundMs,
      };
      this.emit({ type: 'closeLedger', ledger });
      this.stats.closed++;
      this.closed = head.ref;
      this.pending.shift();
      this.attests.prune(this.closed.seqNo);
      this.scheduleExecution(ledger, head.value.result);
    }
    // A sync asked for a ledger that has closed here meanwhile is no longer needed (the shell drops
    // requests while one runs, so nothing else would clear it): status 'desync' and the quick
    // behind check (notePeerLcl) must not stay stuck on it. A wrong state still needs its sync.
    if (this.syncing && this.closed.seqNo >= this.syncing.targetSeqNo && !this.stateMismatch && !this.diverged) this.syncing = null;
  }

  /** Queues a closed ledger for execution: it runs once the result of its predecessor is known. */
  private scheduleExecution(ledger: ClosedLedger, expectedPrev: ExecResult): void {
    if (this.diverged) return; // nothing built on a wrong state can be right
    this.waitingExec.push({ ledger, expectedPrev });
    this.pumpExecution();
  }

  /** Starts the next queued execution if nothing runs and its predecessor's result is ours and certified. */
  private pumpExecution(): void {
    if (this.executing !== null || !this.exec) return;
    while (this.waitingExec.length > 0 && this.waitingExec[0].ledger.header.seqNo <= this.exec.seqNo) this.waitingExec.shift();
    const next = this.waitingExec[0];
    if (!next || next.ledger.header.seqNo !== this.exec.seqNo + 1) return;
    this.waitingExec.shift();
    const seqNo = next.ledger.header.seqNo;
    if (resultEquals(this.exec.result, next.expectedPrev)) {
      this.executing = seqNo;
      this.emit({ type: 'execute', ledger: next.ledger });
      return;
    }
    // The certified ledger says our state after seq-1 is wrong: executing on it would spread the error.
    this.log('warn', `ledger ${seqNo} certifies a state after ${seqNo - 1} that differs from ours; syncing state`);
    this.stateMismatch = next.expectedPrev;
    this.diverged = true;
    this.waitingExec = [];
    this.requestSync('state', seqNo, next.ledger.hash, null);
  }

  private onExecutionDone(seqNo: number, result: ExecResult): void {
    const p = resultProblem(result);
    if (p) {
      this.log('warn', `executionDone for ${seqNo} ignored: ${p}`);
      return;
    }
    const expected = this.executing === seqNo || (this.executing === null && seqNo === this.closed.seqNo && (!this.exec || this.exec.seqNo < seqNo));
    if (!expected) return;
    this.exec = { seqNo, result };
    this.executing = null;
    this.pumpExecution();
    // A prevote held back for this result goes out now if its round is still open.
    if (this.votingResult() && this.clock.roundStart(this.nowMs) === this.roundMs) this.runStage(this.clock.stageAt(this.nowMs));
  }

  // ---- attestations (ledger-close signatures) ---------------------------------------------------

  private onAttestation(a: Attestation): void {
    const authorHex = hex(a.author);
    if (!this.unl.has(authorHex) || !Number.isSafeInteger(a.seqNo) || a.seqNo < 1 || a.hash?.length !== HASH_BYTES || a.sig?.length !== SIGNATURE_BYTES) return;
    this.notePeerLcl(authorHex, a.seqNo);
    if (a.seqNo < this.closed.seqNo || a.seqNo > this.lcl.seqNo + this.limits.maxPendingLedgers + 2) return;
    const r = this.attests.add(a, authorHex);
    if (r.kind === 'duplicate') return;
    if (r.kind === 'equivocation') {
      // A member attesting two ledgers at one seq is the strongest evidence there is: it signed a fork.
      this.stats.attestationEquivocations++;
      this.log('warn', `attestation equivocation by ${authorHex.slice(0, 12)} at seq ${a.seqNo}`, { kind: 'attestation-equivocation', author: a.author, first: r.first, second: a });
      return;
    }
    if (a.seqNo <= this.lcl.seqNo) {
      const ours = this.hashAt(a.seqNo);
      if (ours && !ours.equals(a.hash) && this.attestationSigs(a.seqNo, a.hash).length >= this.quorum) {
        this.log('error', `a quorum certified ledger ${a.seqNo} as ${hex(a.hash).slice(0, 12)}, ours is ${hex(ours).slice(0, 12)}: forked, syncing`);
        this.requestSync('fork', a.seqNo, a.hash, null);
        return;
      }
      this.flushCertified();
    } else if (a.seqNo === this.lcl.seqNo + 1 && this.attestationSigs(a.seqNo, a.hash).length >= this.quorum) {
      // A quorum decided this ledger while we missed the precommits: close it if we know its content.
      const value = this.votes.findValue(a.hash) ?? [...this.polkas.values()].find((p) => p.digest.equals(a.hash))?.value ?? null;
      if (value) this.decide(value, a.hash, this.roundMs, []);
      else this.requestSync('behind', a.seqNo, a.hash, null);
    }
  }

  private attestationSigs(seqNo: number, h: Buffer): QuorumSignature[] {
    return this.attests.signatures(seqNo, h);
  }

  private hashAt(seqNo: number): Buffer | null {
    if (seqNo === this.closed.seqNo) return this.closed.hash;
    const d = this.pending.find((p) => p.ref.seqNo === seqNo);
    if (d) return d.ref.hash;
    const h = this.decidedHashes.get(seqNo);
    return h ? Buffer.from(h, 'hex') : null;
  }

  // ---- inputs, users ---------------------------------------------------------------------------

  private onInputs(inputs: CandidateInput[]): void {
    let satisfied = false;
    for (const k of this.inputs.offer(inputs, this.lcl.seqNo + 1)) for (const d of this.pending) if (d.missing.delete(k)) satisfied = true;
    if (satisfied) this.flushCertified(); // a decided ledger was waiting for these bodies
  }

  // ---- status and sync ---------------------------------------------------------------------------

  /** Stage 1/2 check of the previous stage's proposals: do we hear a quorum, and agree on the state? */
  private assessStatus(props: SignedCandidate[]): void {
    if (this.syncing) return this.setStatus('desync');
    if (props.length < this.quorum) return this.setStatus(this.stateMismatch || this.diverged ? 'desync' : 'unreliable');
    const votes = new Map<string, { r: ExecResult; n: number }>();
    for (const p of props) {
      if (!p.result) continue;
      const k = resultKey(p.result);
      const e = votes.get(k);
      if (e) e.n++;
      else votes.set(k, { r: p.result, n: 1 });
    }
    let top: { r: ExecResult; n: number } | null = null;
    for (const e of votes.values()) if (!top || e.n > top.n) top = e;
    const own = this.exec && this.exec.seqNo === this.lcl.seqNo ? this.exec.result : null;
    // A majority must reach the threshold (not a plurality) before we doubt our own state.
    // No result and none coming (nothing executing or queued) is as wrong as a different one.
    const never = !own && this.executing === null && this.waitingExec.length === 0;
    if (top && top.n >= this.quorum && (never || (own && !resultEquals(own, top.r)))) {
      this.stateMismatch = top.r;
      this.log('warn', `state after ${this.lcl.seqNo} ${never ? 'is unknown here' : "differs from the quorum's"}; proposing inputs only until synced`);
      this.requestSync('state', this.lcl.seqNo, this.lcl.hash, top.r);
      return;
    }
    this.setStatus(this.stateMismatch || this.diverged ? 'desync' : 'synced');
  }

  /**
   * At each round start: when so many members are past our last decided ledger that the rest
   * cannot form a quorum at our seq, we cannot progress here and must sync. The target is the
   * highest seq that N−q+1 members claim, so fewer liars than that cannot send us chasing.
   */
  private checkBehind(): void {
    const ahead: number[] = [];
    for (const k of this.unl.keys()) {
      const s = k === this.selfHex ? -1 : (this.peerLcl.get(k) ?? -1);
      if (s > this.lcl.seqNo) ahead.push(s);
    }
    const needAhead = this.unl.size - this.quorum + 1;
    if (ahead.length < needAhead) {
      this.behindRounds = 0;
      // Fewer members ahead than could block us, but one is 2+ ledgers ahead for a while: the
      // quorum may be exactly us plus it (others down), waiting at a seq we never reach. A sync
      // verifies every certificate, so a member lying about its position costs us one fetch per
      // syncRetryRounds, never a wrong ledger.
      const far = ahead.filter((x) => x > this.lcl.seqNo + 1);
      this.farAheadRounds = far.length > 0 ? this.farAheadRounds + 1 : 0;
      if (this.farAheadRounds >= this.limits.syncRetryRounds) this.requestSync('behind', Math.max(...far), null, null);
      return;
    }
    this.farAheadRounds = 0;
    const target = ahead.sort((a, b) => b - a)[needAhead - 1];
    // One behind is normal for a moment (their precommits or attestations are on the way).
    this.behindRounds++;
    if (target > this.lcl.seqNo + 1 || this.behindRounds >= 2) this.requestSync('behind', target, null, null);
  }

  private requestSync(reason: SyncRequest['reason'], targetSeqNo: number, targetHash: Buffer | null, expectedResult: ExecResult | null): void {
    this.setStatus('desync');
    const s = this.syncing;
    if (s && s.targetSeqNo >= targetSeqNo && this.nowMs - s.atMs < this.limits.syncRetryRounds * this.clock.roundtimeMs) return;
    this.syncing = { targetSeqNo, atMs: this.nowMs };
    this.stats.syncRequests++;
    const peers: Buffer[] = [];
    for (const [k, key] of this.unl) if (k !== this.selfHex && (this.peerLcl.get(k) ?? -1) >= targetSeqNo) peers.push(key);
    this.emit({ type: 'requestSync', request: { reason, lcl: this.closed, targetSeqNo, targetHash, expectedResult, peers } });
    this.log('info', `sync requested (${reason}) to seq ${targetSeqNo} from lcl ${this.closed.seqNo}`);
  }

  private onSyncDone(lcl: LedgerRef, result: ExecResult | null, inputsInLedgers: Buffer[]): void {
    if (!Number.isSafeInteger(lcl.seqNo) || lcl.seqNo < 0 || lcl.hash?.length !== HASH_BYTES || (result && resultProblem(result))) {
      this.log('warn', 'syncDone ignored: malformed lcl or result');
      return;
    }
    if (lcl.seqNo < this.closed.seqNo) {
      this.log('warn', `syncDone to ${lcl.seqNo} ignored: already closed ${this.closed.seqNo}`);
      return;
    }
    const known = this.decidedHashes.get(lcl.seqNo);
    if (known !== undefined && known !== hex(lcl.hash)) this.log('error', `sync replaced our ledger ${lcl.seqNo} ${known.slice(0, 12)} with ${hex(lcl.hash).slice(0, 12)}`);
    let buffered = new Map<string, SignedProposal[]>();
    if (lcl.seqNo >= this.lcl.seqNo) {
      const newParent = lcl.seqNo > this.lcl.seqNo || !lcl.hash.equals(this.lcl.hash);
      this.closed = lcl;
      this.lcl = lcl;
      this.pending = [];
      if (newParent) {
        this.votes = this.newVotes(lcl.seqNo + 1, lcl.hash);
        this.lock = null;
        this.polkas.clear();
        buffered = this.ahead;
        this.ahead = new Map();
        this.sent = this.clock.stageAt(this.nowMs) === 0 ? 0 : ALL_STAGES;
      }
    } else {
      // The sync closed part of what we had decided; the rest must still chain onto it.
      this.closed = lcl;
      this.pending = this.pending.filter((d) => d.ref.seqNo > lcl.seqNo);
      if (this.pending.length > 0 && !this.pending[0].value.prevHash.equals(lcl.hash)) {
        this.log('error', `decided ledgers after ${lcl.seqNo} do not chain onto the synced one; dropping them`);
        this.pending = [];
        this.lcl = lcl;
        this.votes = this.newVotes(lcl.seqNo + 1, lcl.hash);
        this.lock = null;
        this.polkas.clear();
      }
    }
    this.decidedHashes.set(lcl.seqNo, hex(lcl.hash));
    this.exec = result ? { seqNo: lcl.seqNo, result } : null;
    this.executing = null;
    this.waitingExec = [];
    this.stateMismatch = null;
    this.diverged = false;
    this.syncing = null;
    this.behindRounds = 0;
    this.inputs.consumeSynced(inputsInLedgers, this.lcl.seqNo);
    this.flushCertified();
    // What was buffered for later seqs (onProposal) is checked against the new parent like any
    // proposal: a decision proof for lcl+1 among it lets us decide and attest the ledger that the
    // others cannot certify without us (their relays of it no longer reach us).
    for (const list of buffered.values()) for (const p of list) this.onProposal(p);
  }

  private newVotes(seqNo: number, prevHash: Buffer): SeqVotes {
    return new SeqVotes(seqNo, prevHash, 2 * this.limits.maxRoundsKept);
  }

  private notePeerLcl(authorHex: string, seqNo: number): void {
    if (seqNo <= (this.peerLcl.get(authorHex) ?? -1)) return;
    this.peerLcl.set(authorHex, seqNo);
    // Clearly behind (N−q+1 members 2+ ledgers ahead, as at a round start): no need to wait for
    // the next round to find out, which is what a restarted node would otherwise do.
    if (seqNo <= this.lcl.seqNo + 1 || this.syncing) return;
    const ahead: number[] = [];
    for (const [k, s] of this.peerLcl) if (k !== this.selfHex && this.unl.has(k) && s > this.lcl.seqNo) ahead.push(s);
    const needAhead = this.unl.size - this.quorum + 1;
    if (ahead.length < needAhead) return;
    const target = ahead.sort((a, b) => b - a)[needAhead - 1];
    if (target > this.lcl.seqNo + 1) this.requestSync('behind', target, null, null);
  }

  // ---- output ----------------------------------------------------------------------------------------

  private broadcast(proposal: Proposal): void {
    this.emit({ type: 'broadcast', proposal });
  }

  private setStatus(s: VoteStatus): void {
    if (s === this.status) return;
    this.status = s;
    this.emit({ type: 'voteStatus', status: s });
  }

  private emit(a: ConsensusAction): void {
    this.out.push(a);
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', message: string, evidence?: Evidence): void {
    this.emit(evidence ? { type: 'log', level, message, evidence } : { type: 'log', level, message });
  }
}
