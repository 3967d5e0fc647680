// Admission and ordering of user inputs between rounds (pure logic; hotpocket-core.md §3.7).
//
// Rules, per user:
// - nonce > 0; max_ledger_seq_no in (lcl, lcl + max_input_ledger_offset] (offset 0 = no upper cap);
// - a nonce must be greater than every earlier nonce of that user (pending or in any ledger):
//   strictly increasing for ever, stricter than HotPocket (which lets a nonce be reused once the
//   earlier input's max_ledger has passed), so no old signed input can ever be replayed;
// - an input already in a ledger is refused for ever (replay index built from the ledger);
// - each user's pending bytes per round are bounded (round_inputs_overflow).
// Ledger order: by nonce (big-endian u64), then by input hash, as HotPocket orders them.

import type { RejectReason, SubmittedInput } from '../users/nodeApi';
export type { RejectReason };

export interface PendingInput {
  user: Buffer; // 33-byte public key
  userHex: string;
  hash: Buffer; // blake3(sig)
  hashHex: string;
  nonce: bigint;
  maxLedgerSeqNo: number;
  blob: Buffer; // the input bytes the contract receives
  container: Buffer; // exact signed bytes
  sig: Buffer;
  protocol: 'json' | 'bson';
}

export interface InputPoolLimits {
  maxInputLedgerOffset: number;
  userInputBytesPerRound: number; // 0 = unlimited
  maxPendingInputs: number; // across all users; a bound on memory
}

export class InputPool {
  private readonly pending = new Map<string, PendingInput>();
  private readonly lastNonce = new Map<string, bigint>();
  private readonly pendingBytes = new Map<string, number>();

  /**
   * Pending inputs beyond which new user inputs are refused (round_inputs_overflow) before their
   * signature is checked: what the next few ledgers can take (set from the input budget). Under an
   * offered load the cluster cannot absorb, checking, relaying and holding the excess would only
   * starve the rounds; refused early, it costs a parse and a status. Relayed inputs are still
   * admitted (up to maxPendingInputs): the UNL must keep seeing the same candidates.
   */
  capacity: number;

  constructor(private readonly limits: InputPoolLimits, private readonly inLedger: (hashHex: string) => boolean, initialCapacity = Infinity) {
    this.capacity = initialCapacity;
  }

  get size(): number {
    return this.pending.size;
  }

  /** No user input would be admitted now (round_inputs_overflow whatever the input). */
  get full(): boolean {
    return this.pending.size >= Math.min(this.capacity, this.limits.maxPendingInputs);
  }

  /** Records an input found in a closed ledger (startup replay of recent ledgers, or sync). */
  noteLedgerInput(userHex: string, nonce: bigint): void {
    const prev = this.lastNonce.get(userHex);
    if (prev === undefined || nonce > prev) this.lastNonce.set(userHex, nonce);
  }

  /** Why `input` would be refused now, or null: admit() without admitting (no signature needed). */
  refusal(input: PendingInput, lclSeqNo: number): RejectReason | null {
    if (input.nonce <= 0n) return 'bad_msg_format';
    if (input.maxLedgerSeqNo <= lclSeqNo) return 'max_ledger_expired';
    if (this.limits.maxInputLedgerOffset > 0 && input.maxLedgerSeqNo > lclSeqNo + this.limits.maxInputLedgerOffset) return 'max_ledger_offset_exceeded';
    if (this.pending.has(input.hashHex) || this.inLedger(input.hashHex)) return 'already_submitted';
    const prev = this.lastNonce.get(input.userHex);
    if (prev !== undefined && input.nonce <= prev) return 'nonce_expired';
    const bytes = (this.pendingBytes.get(input.userHex) ?? 0) + input.blob.length;
    if (this.limits.userInputBytesPerRound > 0 && bytes > this.limits.userInputBytesPerRound) return 'round_inputs_overflow';
    if (this.full) return 'round_inputs_overflow';
    return null;
  }

  /** Admits an input that arrived at this node (its signature checked), or says why not. */
  admit(input: PendingInput, lclSeqNo: number): { ok: true } | { ok: false; reason: RejectReason } {
    const reason = this.refusal(input, lclSeqNo);
    if (reason) return { ok: false, reason };
    this.pending.set(input.hashHex, input);
    this.pendingBytes.set(input.userHex, (this.pendingBytes.get(input.userHex) ?? 0) + input.blob.length);
    this.lastNonce.set(input.userHex, input.nonce);
    return { ok: true };
  }

  /** Removes and returns inputs whose max_ledger has passed once ledger `lclSeqNo` is closed. */
  expire(lclSeqNo: number): PendingInput[] {
    const out: PendingInput[] = [];
    for (const [hex, input] of this.pending) {
      if (input.maxLedgerSeqNo <= lclSeqNo) {
        this.remove(hex, input);
        out.push(input);
      }
    }
    return out;
  }

  /**
   * Admits an input another node relayed (its signature already checked). The per-user nonce order
   * is not enforced here: relays arrive in any order, and a replay is still refused, being either
   * in a ledger or past its max_ledger_seq_no. Bounds on memory still apply.
   */
  admitRelayed(input: PendingInput, lclSeqNo: number): { ok: true } | { ok: false; reason: RejectReason } {
    if (input.nonce <= 0n) return { ok: false, reason: 'bad_msg_format' };
    if (input.maxLedgerSeqNo <= lclSeqNo) return { ok: false, reason: 'max_ledger_expired' };
    if (this.pending.has(input.hashHex) || this.inLedger(input.hashHex)) return { ok: false, reason: 'already_submitted' };
    if (this.pending.size >= this.limits.maxPendingInputs) return { ok: false, reason: 'round_inputs_overflow' };
    this.pending.set(input.hashHex, input);
    this.pendingBytes.set(input.userHex, (this.pendingBytes.get(input.userHex) ?? 0) + input.blob.length);
    this.noteLedgerInput(input.userHex, input.nonce);
    return { ok: true };
  }

  all(): PendingInput[] {
    return [...this.pending.values()];
  }

  get(hashHex: string): PendingInput | undefined {
    return this.pending.get(hashHex);
  }

  /** Removes and returns these inputs (a closed ledger took them); undefined where one is not held. */
  take(hashHexes: string[]): Array<PendingInput | undefined> {
    return hashHexes.map((hex) => {
      const i = this.pending.get(hex);
      if (i) this.remove(hex, i);
      return i;
    });
  }

  private remove(hex: string, input: PendingInput): void {
    this.pending.delete(hex);
    const left = (this.pendingBytes.get(input.userHex) ?? 0) - input.blob.length;
    if (left > 0) this.pendingBytes.set(input.userHex, left);
    else this.pendingBytes.delete(input.userHex);
  }
}

/**
 * Pending inputs this node lets its users add to: ADMIT_LEDGERS ledgers' worth at the current
 * input budget (at least MIN_ADMISSION), so an offered load beyond what ledgers take is refused at
 * the door instead of being verified, relayed and verified again by every peer. It starts at
 * MIN_ADMISSION and doubles per execution only while ledgers take inputs and at least half of it is
 * in use (a slow start: the budget knows nothing of loaded executions before the first one, and a
 * sudden flood admitted whole would stall the rounds it is meant to feed).
 */
const ADMIT_LEDGERS = 4;
export const MIN_ADMISSION = 1024;
export function admissionCapacity(maxInputsPerLedger: number, previous: number, pending: number, executedInputs: number): number {
  const grown = executedInputs > 0 && 2 * pending >= previous ? 2 * previous : previous;
  return Math.max(MIN_ADMISSION, Math.min(ADMIT_LEDGERS * maxInputsPerLedger, grown));
}

/** A parsed input in the pool's form (its signature is checked before the pool admits it). */
export function pendingInput(user: Buffer, input: SubmittedInput): PendingInput {
  return {
    user,
    userHex: user.toString('hex'),
    hash: input.inputHash,
    hashHex: input.inputHash.toString('hex'),
    nonce: input.nonce,
    maxLedgerSeqNo: input.maxLedgerSeqNo,
    blob: input.blob,
    container: input.container,
    sig: input.sig,
    protocol: input.protocol,
  };
}
