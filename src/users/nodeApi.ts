// The only thing the user server knows about the node. The server parses, validates and
// authenticates everything a user sends and talks to the node through this interface; the node
// pushes statuses, outputs and ledger events back through `on`. Keeping the boundary this narrow
// lets the server be tested against a small in-memory model and lets the node change freely.

import type { LedgerHeader } from '../ledger/ledgerHash';

/** contract_input_status reasons of the HotPocket 0.6 user protocol (hpcore usrmsg_common.hpp). */
export type RejectReason =
  | 'bad_msg_format'
  | 'invalid_msg_type'
  | 'bad_sig'
  | 'max_ledger_expired'
  | 'max_ledger_offset_exceeded'
  | 'nonce_expired'
  | 'already_submitted'
  | 'round_inputs_overflow';

export type VoteStatus = 'unknown' | 'unreliable' | 'desync' | 'synced';

export type UserProtocol = 'json' | 'bson';

export interface LedgerId {
  seqNo: number;
  hash: Buffer; // 32 bytes
}

/** stat_response fields the server cannot derive itself (hp_version, lcl and UNL come from the other members). */
export interface NodeStatus {
  voteStatus: VoteStatus;
  roundTimeMs: number;
  contractExecutionEnabled: boolean;
  readRequestsEnabled: boolean; // false: read requests are silently ignored, as in HotPocket
  isFullHistoryNode: boolean;
  weaklyConnected: boolean;
  peers: string[]; // "ip:port"; the server sends at most 100
}

/** A ledger header as users see it (ledger_event, ledger_query_result): the header and its hash. */
export type LedgerRecord = LedgerHeader & { hash: Buffer };

export interface LedgerInputRecord {
  pubkey: Buffer; // 33 bytes
  hash: Buffer; // input hash = blake3(sig)
  nonce: bigint;
  blob: Buffer; // the input payload the contract received
}

export interface LedgerOutputRecord {
  pubkey: Buffer;
  hash: Buffer; // the user's output hash
  blobs: Buffer[];
}

/** Answer to a ledger query; `null` from ledgerQuery means "no such ledger" (empty results, error null). */
export type LedgerQueryResult =
  | { error: 'exec_failure' }
  | { ledger: LedgerRecord; inputs?: LedgerInputRecord[]; outputs?: LedgerOutputRecord[] };

/** A fully validated, signature-checked contract input handed to the node for admission. */
export interface SubmittedInput {
  container: Buffer; // the exact signed input_container bytes (JSON text or BSON document)
  sig: Buffer; // 64-byte Ed25519 signature over `container` by the user
  protocol: UserProtocol; // how `container` is encoded
  inputHash: Buffer; // blake3(sig): the input's identity everywhere in the protocol
  nonce: bigint; // > 0
  maxLedgerSeqNo: number; // absolute ledger seq no; a safe integer
  blob: Buffer; // the decoded `input` payload
}

export type SubmitResult = { ok: true } | { ok: false; reason: RejectReason };

/** Hash tree as sent to one user: nested arrays of hashes, that user's own leaf is null. */
export type CollapsedHashTree = Array<Buffer | null | CollapsedHashTree>;

export interface InputStatusEvent {
  user: Buffer; // 33-byte pubkey of the submitter
  inputHash: Buffer;
  status: 'accepted' | 'rejected';
  reason?: RejectReason; // when rejected
  ledgerSeqNo?: number; // when accepted
  ledgerHash?: Buffer; // when accepted
}

export interface ContractOutputEvent {
  user: Buffer; // 33-byte pubkey of the recipient
  ledgerSeqNo: number;
  ledgerHash: Buffer;
  outputs: Buffer[];
  outputHash: Buffer; // blake3(user pubkey ‖ outputs...), see outputHash.ts
  hashTree: CollapsedHashTree; // see outputHash.ts collapseForUser
  unlSig: Array<[Buffer, Buffer]>; // [node pubkey (33 bytes), Ed25519 sig over the tree root]
}

export interface UserNodeEvents {
  input_status: (ev: InputStatusEvent) => void;
  contract_output: (ev: ContractOutputEvent) => void;
  ledger_created: (ledger: LedgerRecord) => void;
  unl_change: (ev: { unl: string[] }) => void;
  vote_status: (ev: { voteStatus: VoteStatus }) => void;
}

export interface UserNodeApi {
  /** Reported in user_challenge and stat_response; the official client requires a "0.6." prefix. */
  readonly hpVersion: string;
  readonly contractId: string; // non-empty
  readonly contractVersion: string; // non-empty
  /** The node's 33-byte 0xED-prefixed public key. */
  readonly publicKey: Buffer;
  /**
   * HotPocket-compatible server challenge signature: Ed25519 (node key) over `message`, which the
   * server builds as utf8(server_challenge + contract_id + contract_version). The only node-key
   * signature the user server ever asks for; the server restricts server_challenge so this message
   * can never equal a domain-separated hp-node message (see handshake.ts).
   */
  signServerChallenge(message: Buffer): Buffer;
  /** Current UNL as "ed..." lower-case hex keys. */
  unl(): string[];
  lcl(): LedgerId;
  status(): NodeStatus;
  /** Synchronous admission (ledger window, nonce, round limits). Accepted/rejected later via 'input_status'. */
  submitInput(user: Buffer, input: SubmittedInput): SubmitResult;
  /**
   * Optional: the node takes no user inputs at all now (its pool is at capacity): every
   * contract_input is refused with round_inputs_overflow before its container is parsed. Under an
   * offered load beyond what ledgers take, most inputs meet this, so a refusal must cost little.
   */
  inputsFull?(): boolean;
  /** Optional: would submitInput refuse this input for a reason that needs no signature check? Called before the check. */
  precheckInput?(user: Buffer, input: SubmittedInput): SubmitResult;
  /** Runs a read-only contract execution; each returned buffer becomes one contract_read_response. */
  readRequest(user: Buffer, content: Buffer): Promise<Buffer[]>;
  ledgerQuery(
    seqNo: number,
    include: { inputs: boolean; outputs: boolean },
    requester: Buffer,
  ): LedgerQueryResult | null | Promise<LedgerQueryResult | null>;
  on<E extends keyof UserNodeEvents>(event: E, fn: UserNodeEvents[E]): unknown;
  off<E extends keyof UserNodeEvents>(event: E, fn: UserNodeEvents[E]): unknown;
}
