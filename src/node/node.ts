// A running node: rounds, contract executions on the state mount, the ledger, and users.
//
// Each round (every roundtime ms, aligned to the wall clock so that cluster nodes agree):
//   1. close ledger N: the admitted inputs, and the outputs + state root of executing ledger N-1
//      (the one-ledger lag of HotPocket), signed by this node (the quorum certificate);
//   2. tell users: inputs accepted in N, outputs of N-1 tagged with N, ledger_created;
//   3. run the contract once on N's inputs in a read-write session of the state (cwd = state/),
//      commit (or roll back if it was killed), and keep the result for ledger N+1.
// With a UNL of one this node's signature is the quorum; the cluster issue adds peers' votes.
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { NodeConfig } from '../config/nodeConfig';
import { signIn } from '../crypto/domain';
import { KeyPair } from '../crypto/keys';
import { runContract } from '../contract/executor';
import type { ContractArgs, ContractRunResult } from '../contract/types';
import { LedgerStore } from '../ledger/ledgerStore';
import { inputListHash, ledgerHash, outputListHash, userListHash } from '../ledger/ledgerHash';
import type { LedgerInput, LedgerRecord } from '../ledger/ledgerHash';
import { StatefsMount } from '../state/statefsClient';
import { InputPool, PendingInput, RejectReason } from './inputPool';
import { Logger } from './log';
import { NodePaths, PATCH_FILE, STATE_SUBDIR } from './nodeDir';
import { ExecutionResult, finishExecution, proofFor } from './roundResult';
import type { CollapsedHashTree } from '../users/nodeApi';

export const HP_VERSION = '0.6.4';
const ZERO_HASH = Buffer.alloc(32);

export interface RoundTimings {
  seqNo: number;
  inputs: number;
  ledgerMs: number;
  spawnMs: number;
  execMs: number;
  commitMs: number;
  totalMs: number;
}

/** Events for the user server (see src/users/nodeApi.ts). */
export interface NodeEvents {
  input_status: { user: Buffer; inputHash: Buffer; status: 'accepted' | 'rejected'; reason?: RejectReason; ledgerSeqNo?: number; ledgerHash?: Buffer };
  contract_output: { user: Buffer; ledgerSeqNo: number; ledgerHash: Buffer; outputs: Buffer[]; outputHash: Buffer; hashTree: CollapsedHashTree; unlSig: Array<[Buffer, Buffer]> };
  ledger_created: LedgerRecord;
  round: RoundTimings;
}

export class HpNode extends EventEmitter {
  private ledger!: LedgerStore;
  private rw!: StatefsMount;
  private ro: StatefsMount | null = null;
  private roRoot = '';
  private pool!: InputPool;
  private pendingResult: ExecutionResult | null = null;
  private stateRoot = ZERO_HASH;
  private configHash = ZERO_HASH;
  private timer: NodeJS.Timeout | null = null;
  private roundRunning: Promise<void> | null = null;
  private stopping = false;
  private readsRunning = 0;
  private readonly readQueue: Array<() => void> = [];

  constructor(readonly paths: NodePaths, readonly config: NodeConfig, readonly keys: KeyPair, private readonly log: Logger) {
    super();
  }

  get contractId(): string {
    return this.config.contract.id;
  }

  lcl(): { seqNo: number; hash: Buffer } {
    const l = this.ledger.last();
    return { seqNo: l.seqNo, hash: l.hash };
  }

  ledgerRecord(seqNo: number): LedgerRecord | null {
    return this.ledger.get(seqNo);
  }

  async start(): Promise<void> {
    this.ledger = LedgerStore.open(this.paths.ledger);
    this.pool = new InputPool(
      {
        maxInputLedgerOffset: this.config.contract.max_input_ledger_offset,
        userInputBytesPerRound: this.config.contract.round_limits.user_input_bytes,
        maxPendingInputs: 100_000,
      },
      (hex) => this.ledger.findInput(Buffer.from(hex, 'hex')) !== null,
    );
    this.replayNonces();
    this.rw = await StatefsMount.start({ storeDir: this.paths.store, mountpoint: this.paths.rwMount, readOnly: false });
    void this.rw.waitExit().then((code) => {
      this.fail(`state filesystem process exited unexpectedly (code ${code})`);
    });
    this.stateRoot = Buffer.from(this.rw.root, 'hex');
    const last = this.ledger.last();
    this.log.info(`ledger at seq ${last.seqNo} (${last.hash.toString('hex').slice(0, 12)}), state root ${this.rw.root.slice(0, 12)}, roundtime ${this.config.contract.consensus.roundtime} ms`);
    this.scheduleRound();
  }

  /** Stops after the current round: no round is cut in half, the mounts are unmounted. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.roundRunning;
    await this.ro?.close();
    await this.rw?.close();
    this.ledger?.close();
  }

  // ---- inputs and reads (called by the user server) -----------------------------------------

  submitInput(input: PendingInput): { ok: true } | { ok: false; reason: RejectReason } {
    if (this.stopping) return { ok: false, reason: 'round_inputs_overflow' };
    return this.pool.admit(input, this.ledger.last().seqNo);
  }

  /** Runs the contract read-only on the last committed state for one read request. */
  async readRequest(user: Buffer, content: Buffer): Promise<Buffer[]> {
    const max = this.config.user.concurrent_read_requests;
    if (max === 0) throw new Error('read requests are disabled on this node (user.concurrent_read_requests = 0)');
    if (this.readsRunning >= max) await new Promise<void>((r) => this.readQueue.push(r));
    this.readsRunning++;
    try {
      const mount = await this.readView();
      const userHex = user.toString('hex');
      const result = await runContract({
        ...this.contractBase(),
        cwd: path.join(mount.mountpoint, STATE_SUBDIR),
        args: this.contractArgs({ readonly: true, timestamp: 0 }),
        users: [{ pubkeyHex: userHex, inputs: [content] }],
      });
      return result.outputs.get(userHex) ?? [];
    } finally {
      this.readsRunning--;
      this.readQueue.shift()?.();
    }
  }

  /** The read-only mount, moved to the newest committed root when rounds have committed since. */
  private async readView(): Promise<StatefsMount> {
    if (!this.ro) {
      this.ro = await StatefsMount.start({ storeDir: this.paths.store, mountpoint: this.paths.roMount, readOnly: true });
      this.roRoot = this.ro.root;
    }
    if (this.roRoot !== this.rw.root && this.readsRunning <= 1) {
      await this.ro.refresh();
      this.roRoot = this.ro.root;
    }
    return this.ro;
  }

  // ---- rounds ----------------------------------------------------------------------------------

  private scheduleRound(): void {
    if (this.stopping) return;
    const rt = this.config.contract.consensus.roundtime;
    const now = Date.now();
    const next = Math.ceil((now + 1) / rt) * rt;
    this.timer = setTimeout(() => {
      this.roundRunning = this.round(next).catch((err) => {
        this.log.error(`round failed: ${(err as Error).stack ?? err}`);
      }).finally(() => {
        this.roundRunning = null;
        this.scheduleRound();
      });
    }, next - now);
  }

  private async round(timestampMs: number): Promise<void> {
    const t0 = performance.now();
    const last = this.ledger.last();
    const seqNo = last.seqNo + 1;
    for (const expired of this.pool.expire(last.seqNo)) {
      this.emit('input_status', { user: expired.user, inputHash: expired.hash, status: 'rejected', reason: 'max_ledger_expired' });
    }
    const inputs = this.pool.takeForLedger(seqNo);
    const result = this.pendingResult;
    this.pendingResult = null; // goes into this ledger exactly once, whatever happens below
    // The contract sees the users with inputs in this ledger (HotPocket also lists idle connected
    // users; that needs the cluster's user-presence proofs to be deterministic).
    const users = new Set<string>(inputs.map((i) => i.userHex));
    const sortedUsers = [...users].sort().map((h) => Buffer.from(h, 'hex'));
    const ledgerInputs: LedgerInput[] = inputs.map((i) => ({ pubkey: i.user, hash: i.hash, nonce: i.nonce, blob: i.blob, container: i.container, sig: i.sig, protocol: i.protocol }));
    const outputs = (result?.users ?? []).map((u) => ({ pubkey: u.user, hash: u.hash, blobs: u.outputs }));
    const header = {
      seqNo,
      timestampMs,
      prevHash: last.hash,
      stateHash: this.stateRoot,
      configHash: this.configHash,
      userHash: userListHash(sortedUsers),
      inputHash: inputListHash(ledgerInputs),
      outputHash: result ? result.outputRoot : outputListHash([]),
    };
    const h = ledgerHash(header);
    const record: LedgerRecord = {
      ...header,
      hash: h,
      users: sortedUsers,
      inputs: ledgerInputs,
      outputs,
      quorum: [{ pubkey: this.keys.publicKey, sig: signIn('ledger-close', this.contractId, h, this.keys.secretKey) }],
    };
    try {
      this.ledger.append(record);
    } catch (err) {
      // Nothing of this ledger was acknowledged to anyone, so stopping loses no accepted input;
      // carrying on would vote on a ledger this node cannot keep (e.g. a full disk).
      this.fail(`cannot append ledger ${seqNo}: ${(err as Error).message}`);
      return;
    }
    const tLedger = performance.now();

    for (const i of inputs) this.emit('input_status', { user: i.user, inputHash: i.hash, status: 'accepted', ledgerSeqNo: seqNo, ledgerHash: h });
    if (result) {
      for (const u of result.users) {
        this.emit('contract_output', {
          user: u.user, ledgerSeqNo: seqNo, ledgerHash: h, outputs: u.outputs, outputHash: u.hash,
          hashTree: proofFor(result, u), unlSig: result.unlSig,
        });
      }
    }
    this.emit('ledger_created', record);

    const exec = await this.execute(record, inputs, sortedUsers);
    const total = performance.now() - t0;
    const timings: RoundTimings = { seqNo, inputs: inputs.length, ledgerMs: tLedger - t0, spawnMs: exec.spawnMs, execMs: exec.execMs, commitMs: exec.commitMs, totalMs: total };
    this.emit('round', timings);
    this.log.info(`ledger ${seqNo} ${h.toString('hex').slice(0, 12)} inputs=${inputs.length} state=${this.stateRoot.toString('hex').slice(0, 12)} ${total.toFixed(1)}ms`);
  }

  private async execute(record: LedgerRecord, inputs: PendingInput[], users: Buffer[]): Promise<{ spawnMs: number; execMs: number; commitMs: number }> {
    const byUser = new Map<string, Buffer[]>(users.map((u) => [u.toString('hex'), []]));
    for (const i of inputs) byUser.get(i.userHex)!.push(i.blob);
    const quota = this.config.contract.state_quota;
    await this.rw.begin(record.timestampMs, { bytes: quota.bytes, files: quota.files });
    let run: ContractRunResult;
    try {
      run = await runContract({
        ...this.contractBase(),
        cwd: path.join(this.rw.mountpoint, STATE_SUBDIR),
        args: this.contractArgs({ readonly: false, timestamp: record.timestampMs, lclSeqNo: record.seqNo, lclHash: record.hash.toString('hex') }),
        users: [...byUser.entries()].map(([pubkeyHex, ins]) => ({ pubkeyHex, inputs: ins })),
        stderr: this.config.log.level === 'debug' ? 'inherit' : 'ignore',
      });
      if (run.error) throw new Error(run.error);
    } catch (err) {
      await this.rw.rollback();
      this.log.error(`ledger ${record.seqNo}: contract could not run: ${(err as Error).message}; state rolled back, no outputs`);
      this.pendingResult = finishExecution(record.seqNo, new Map(), this.stateRoot, this.keys);
      return { spawnMs: 0, execMs: 0, commitMs: 0 };
    }
    const t0 = performance.now();
    let outputs = run.outputs;
    // A contract killed by a signal or the timeout may have left state half-written: roll it back
    // and drop its outputs, so every node that killed it ends in the same state.
    if (run.timedOut || run.signal) {
      this.log.warn(`ledger ${record.seqNo}: contract ${run.timedOut ? `timed out after ${this.config.contract.round_limits.exec_timeout} ms` : `died by ${run.signal}`}; state rolled back, outputs dropped`);
      await this.rw.rollback();
      outputs = new Map();
    } else {
      if (run.exitCode !== 0) this.log.warn(`ledger ${record.seqNo}: contract exited with code ${run.exitCode}; its state and outputs are kept (HotPocket semantics)`);
      let snap;
      try {
        snap = await this.rw.commit([`/${PATCH_FILE}`]);
      } catch (err) {
        this.fail(`ledger ${record.seqNo}: cannot commit the contract's state: ${(err as Error).message}`);
        throw err;
      }
      this.stateRoot = Buffer.from(snap.root, 'hex');
      const patch = snap.hashes[`/${PATCH_FILE}`];
      this.configHash = patch ? Buffer.from(patch, 'hex') : ZERO_HASH;
    }
    for (const u of run.truncatedUsers) this.log.warn(`ledger ${record.seqNo}: outputs to ${u.slice(0, 12)}… truncated at ${this.config.contract.round_limits.user_output_bytes} bytes`);
    this.pendingResult = finishExecution(record.seqNo, outputs, this.stateRoot, this.keys);
    return { spawnMs: run.timings.spawnMs, execMs: run.timings.execMs, commitMs: performance.now() - t0 };
  }

  /** Stops taking rounds after an error that would make this node's ledger or state unreliable. */
  private fail(message: string): void {
    if (this.stopping) return;
    this.log.error(`${message}; stopping the node (fix the cause, then restart: the ledger and state reopen at their last durable point)`);
    this.stopping = true;
    this.emit('fatal', new Error(message));
  }

  private contractArgs(run: Pick<ContractArgs, 'readonly' | 'timestamp' | 'lclSeqNo' | 'lclHash'>): ContractArgs {
    const c = this.config.contract;
    return {
      hpVersion: HP_VERSION,
      contractId: c.id,
      publicKey: this.keys.publicKey.toString('hex'),
      // The node key goes to the contract only when the operator opted in (give_private_key).
      privateKey: c.give_private_key ? this.keys.secretKey.toString('hex') : undefined,
      // active_on would be a local receive time, which differs between nodes: always 0 here.
      unl: Object.fromEntries([...c.unl].sort().map((k) => [k, { active_on: 0 }])),
      ...run,
    };
  }

  private contractBase() {
    const c = this.config.contract;
    return {
      binPath: c.bin_path,
      binArgs: c.bin_args.split(' ').filter(Boolean),
      env: c.environment,
      limits: {
        execTimeoutMs: c.round_limits.exec_timeout,
        userOutputBytes: c.round_limits.user_output_bytes,
        nplOutputBytes: c.round_limits.npl_output_bytes,
        procCpuSeconds: c.round_limits.proc_cpu_seconds,
        procMemBytes: c.round_limits.proc_mem_bytes,
        procOfdCount: c.round_limits.proc_ofd_count,
      },
    };
  }

  /** Rebuilds every user's last nonce from the ledger (nonces only ever grow, across restarts too). */
  private replayNonces(): void {
    const last = this.ledger.last().seqNo;
    for (let s = 1; s <= last; s++) {
      const rec = this.ledger.get(s);
      for (const i of rec?.inputs ?? []) this.pool.noteLedgerInput(i.pubkey.toString('hex'), i.nonce);
    }
  }
}

