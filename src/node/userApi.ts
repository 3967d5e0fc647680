// The node as the user server sees it (src/users/nodeApi.ts): a thin adapter over HpNode.
import { pendingInput } from './inputPool';
import { EventEmitter } from 'node:events';
import { sign } from '../crypto/keys';
import type { LedgerQueryResult, NodeStatus, SubmitResult, SubmittedInput, UserNodeApi, UserNodeEvents, LedgerId } from '../users/nodeApi';
import { HP_VERSION, HpNode } from './node';

export class NodeUserApi extends EventEmitter implements UserNodeApi {
  readonly hpVersion = HP_VERSION;

  constructor(private readonly node: HpNode) {
    super();
    for (const ev of ['input_status', 'contract_output', 'ledger_created', 'vote_status', 'unl_change'] as const) node.on(ev, (e) => this.emit(ev, e));
  }

  get contractId(): string {
    return this.node.config.contract.id;
  }

  get contractVersion(): string {
    return this.node.config.contract.version;
  }

  get publicKey(): Buffer {
    return this.node.keys.publicKey;
  }

  signServerChallenge(message: Buffer): Buffer {
    return sign(message, this.node.keys.secretKey);
  }

  unl(): string[] {
    return [...this.node.config.contract.unl].sort();
  }

  lcl(): LedgerId {
    return this.node.lcl();
  }

  status(): NodeStatus {
    return {
      voteStatus: this.node.voteStatus,
      roundTimeMs: this.node.config.contract.consensus.roundtime,
      contractExecutionEnabled: true,
      readRequestsEnabled: this.node.config.user.concurrent_read_requests > 0,
      isFullHistoryNode: true,
      weaklyConnected: false,
      peers: this.node.peers(),
    };
  }

  submitInput(user: Buffer, input: SubmittedInput): SubmitResult {
    return this.node.submitInput(pendingInput(user, input));
  }

  inputsFull(): boolean {
    return this.node.inputsFull;
  }

  precheckInput(user: Buffer, input: SubmittedInput): SubmitResult {
    return this.node.precheckInput(pendingInput(user, input));
  }

  readRequest(user: Buffer, content: Buffer): Promise<Buffer[]> {
    return this.node.readRequest(user, content);
  }

  ledgerQuery(seqNo: number, include: { inputs: boolean; outputs: boolean }): LedgerQueryResult | null {
    const rec = this.node.ledgerRecord(seqNo);
    if (!rec) return null;
    return {
      ledger: rec,
      inputs: include.inputs ? rec.inputs.map((i) => ({ pubkey: i.pubkey, hash: i.hash, nonce: i.nonce, blob: i.blob })) : undefined,
      outputs: include.outputs ? rec.outputs.map((o) => ({ pubkey: o.pubkey, hash: o.hash, blobs: o.blobs })) : undefined,
    };
  }

  override on<E extends keyof UserNodeEvents>(event: E, fn: UserNodeEvents[E]): this {
    return super.on(event, fn as (...args: unknown[]) => void);
  }

  override off<E extends keyof UserNodeEvents>(event: E, fn: UserNodeEvents[E]): this {
    return super.off(event, fn as (...args: unknown[]) => void);
  }
}
