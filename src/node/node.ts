// A running node: the consensus core (src/consensus) driven by a clock, the peer network
// (src/p2p), contract executions on the state mount, the ledger, and users.
//
// The core decides; this shell does what it asks (docs/CONSENSUS.md §8):
//   tick at every stage boundary; sign and broadcast proposals and attestations and loop them back;
//   verify peers' messages before the core sees them; persist the lock before anything else;
//   append each closed ledger with its quorum certificate and the outputs of executing the one
//   before (HotPocket's one-ledger lag); run the contract on each closed ledger in a read-write
//   session of the state and report the roots it produced.
// Inputs: users submit to any node; it checks the signature, admits the input and gossips it,
// signed by its user, to the others. Outputs reach users when the next ledger closes, with the
// UNL members' signatures of the output root that the upstream client verifies.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { DEFAULT_SERVE_MIB_PER_SEC, NodeConfig, writeConfig } from '../config/nodeConfig';
import { ConsensusCore } from '../consensus/core';
import { decodeAttestation, decodeProposalBody, encodeAttestation, encodeProposalBody } from '../consensus/proposalCodec';
import type { CandidateInput, ClosedLedger, ConsensusAction, ConsensusEvent, Evidence, PersistedLock, SyncRequest, VoteStatus } from '../consensus/types';
import { signIn, verifyIn } from '../crypto/domain';
import { KeyPair } from '../crypto/keys';
import { verifyBatch } from '../crypto/verifyWorker';
import { runContract, startContract } from '../contract/executor';
import { isNodeBinary } from '../contract/launcher';
import { WarmStart, warmSlots } from './warmStart';
import { LoopLag, LoopLagFigures } from './loopLag';
import type { ContractArgs, ContractExecution, ContractLaunch, ContractRunResult } from '../contract/types';
import { decodeRecord, encodeRecord } from '../ledger/ledgerCodec';
import { LedgerStore } from '../ledger/ledgerStore';
import { fetchedRecordProblem } from '../ledger/sync';
import type { LedgerInput, LedgerRecord } from '../ledger/ledgerHash';
import { signedPayload } from '../p2p/envelope';
import { PeerNetwork } from '../p2p/network';
import { FLAG_RELAY, MsgFrame } from '../p2p/wire';
import type { PeerMessage, PeerRequest } from '../p2p/network';
import { ObjectLocation, ObjectStore } from '../state/blockstore';
import { checkInBackground, DamagedObject } from '../state/integrity';
import { hasherMemory } from '../state/hashWorker';
import { StateSyncProgress, syncState } from '../state/sync';
import { TokenBucket } from '../p2p/rate';
import { PreparedStatefs, StatefsMount } from '../state/statefsClient';
import { inputHashOf, parseSignedInput } from '../users/inputs';
import type { CollapsedHashTree, SubmittedInput } from '../users/nodeApi';
import { InputBudget } from './inputBudget';
import { admissionCapacity, InputPool, MIN_ADMISSION, PendingInput, pendingInput, RejectReason } from './inputPool';
import { Logger } from './log';
import { NodePaths, PATCH_FILE, STATE_SUBDIR } from './nodeDir';
import { ActionQueue, Performed } from './actionQueue';
import { ExecFile, LockFile } from './nodeFiles';
import { OutputSigBook } from './outputSigs';
import {
  BYTE_LIST_ITEM_HEADER, decodeByteList, decodeGetInputs, decodeGetLedgers, decodeGetObjects, decodeInputs, decodeNpl, decodeOutputSig, encodeByteList, encodeGetInputs,
  encodeGetLedgers, encodeGetObjects, encodeInputs, encodeNpl, encodeOutputSig, KIND, MAX_OBJECT_REPLY_BYTES, REQUEST, writeByteList, MAX_OBJECTS_PER_REQUEST, MAX_INPUTS_PER_MESSAGE, MAX_LEDGER_REPLY_BYTES, MAX_LEDGERS_PER_REQUEST, polCertSignaturesValid,
  PROPOSAL_FLAGS, WireInput,
} from './peerMessages';
import { ConsensusSettings, consensusSettingsOf } from './patchConfig';
import { ExecutionResult, finishExecution, finishExecutionFromUsers, proofFor } from './roundResult';

export const HP_VERSION = '0.6.4';
const ZERO_HASH = Buffer.alloc(32);
/** Execution results kept for closing later ledgers (a ledger records the outputs of the one before). */
const KEEP_RESULTS = 4;
/** NPL messages buffered for executions that have not started yet (a peer may be a little ahead). */
const MAX_NPL_BUFFERED = 4096;
/** Gossip batching: inputs admitted within this many ms travel in one message. */
const GOSSIP_BATCH_MS = 20;
/** Bytes of input containers per gossip message. */
const GOSSIP_BATCH_BYTES = 1024 * 1024;
/** How long a catch-up waits for one peer's ledgers before asking another. */
const SYNC_REQUEST_TIMEOUT_MS = 3000;
/** A gap of more ledgers than this is closed by state sync (fetch only the differing state) rather than replay. */
const MAX_REPLAY_LEDGERS = 16;
/** Relayed inputs per signature-worker batch (~7 ms of checks there); the loop parses the next meanwhile. */
const INPUT_CHECK_SLICE = 64;
/** Relayed inputs waiting for their signature check, beyond which gossip batches are dropped. */
const MAX_INPUT_BACKLOG = 20_000;
/** Peer events kept while the core is paused for a repair, replayed after it. */
const MAX_HELD_EVENTS = 20_000;

const ms = (x: number) => `${Math.round(x)} ms`;
/** Longest a start-up state check waits for the node to be voting with the others first. */
const STATE_CHECK_DELAY_MS = 10_000;

export interface RoundTimings {
  seqNo: number;
  inputs: number;
  spawnMs: number;
  execMs: number;
  commitMs: number;
  totalMs: number;
  /** The contract process was started ahead of the ledger (warm start). */
  warm: boolean;
}

/** Events for the user server (see src/users/nodeApi.ts). */
export interface NodeEvents {
  input_status: { user: Buffer; inputHash: Buffer; status: 'accepted' | 'rejected'; reason?: RejectReason; ledgerSeqNo?: number; ledgerHash?: Buffer };
  contract_output: { user: Buffer; ledgerSeqNo: number; ledgerHash: Buffer; outputs: Buffer[]; outputHash: Buffer; hashTree: CollapsedHashTree; unlSig: Array<[Buffer, Buffer]> };
  ledger_created: LedgerRecord;
  vote_status: { voteStatus: VoteStatus };
  sync_needed: SyncRequest;
  unl_change: { unl: string[] };
  round: RoundTimings;
}

interface Executed {
  result: ExecutionResult;
  configHash: Buffer;
}

/** A ledger to execute: what the contract sees of it. */
interface LedgerToRun {
  seqNo: number;
  hash: Buffer;
  timestampMs: number;
  users: Buffer[];
  inputs: LedgerInput[];
}

/** The read-only view of our own store that peers' object requests are served from. */
interface ServingStore {
  store: ObjectStore;
  commit: number;
  /** Reads in flight on libuv's threads. */
  reads: number;
  /** Replaced (or dropped): closed when `reads` reaches 0. */
  retired: boolean;
}

export class HpNode extends EventEmitter {
  private ledger!: LedgerStore;
  private rw!: StatefsMount;
  private ro: StatefsMount | null = null;
  private roRoot = '';
  private pool!: InputPool;
  private core!: ConsensusCore;
  private net: PeerNetwork | null = null;
  private unlHex: string[];
  /** A patch.cfg the contract changed, applied when the ledger certifying it closes. */
  private pendingSettings: { configHash: Buffer; settings: ConsensusSettings } | null = null;
  private readonly lockFile: LockFile;
  private readonly execFile: ExecFile;
  private readonly outputSigs: OutputSigBook;
  private readonly results = new Map<number, Executed>();
  /** Decided and certified ledgers whose record waits for the outputs of the ledger before. */
  private readonly closing: Array<{ ledger: ClosedLedger; inputs: LedgerInput[] }> = [];
  private running: { seqNo: number; exec: ContractExecution | null; done: Promise<void> } | null = null;
  private readonly warm: WarmStart;
  private readonly npl = new Map<number, Array<[string, Buffer]>>();
  private nplCount = 0;
  private readonly queue: ConsensusEvent[] = [];
  private draining = false;
  private readonly actions = new ActionQueue<ConsensusAction>(
    (a) => this.perform(a),
    (a, err) => this.actionFailed(a, err),
    () => this.drain(),
  );
  private tickTimer: NodeJS.Timeout | null = null;
  private gossip: WireInput[] = [];
  /** Admitted inputs not yet offered to the core, with when they arrived here. */
  private offers: Array<{ at: number; inputs: CandidateInput[] }> = [];
  private gossipBytes = 0;
  private gossipTimer: NodeJS.Timeout | null = null;
  private readonly outputWaits = new Set<{ seqNo: number; check: () => boolean }>();
  private status: VoteStatus | 'unknown' = 'unknown';
  /** Catching up: the core is paused (no events) while certified ledgers are fetched and replayed. */
  private catchingUp: Promise<void> | null = null;
  /** The start-up state check running on a worker thread (stop waits for it). */
  private stateCheck: Promise<void> | null = null;
  private stateCheckTimer: NodeJS.Timeout | null = null;
  /** Our state is known to differ from the quorum's: replaying ledgers cannot fix it (state sync can). */
  private stateDiverged = false;
  private paused = false;
  private heldEvents: ConsensusEvent[] = [];
  /** What this node fetched from peers while catching up and syncing state (status and tests). */
  readonly transfer = { ledgerRecords: 0, ledgerBytes: 0, rejectedRecords: 0, stateObjects: 0, stateBytes: 0, rejectedObjects: 0, stateSyncs: 0 };
  /** Objects found corrupt in our own store at start: fetched again by the next state sync. */
  private distrusted = new Set<string>();
  /** Relayed inputs received and not yet checked; batches dropped for want of room (status). */
  private inputBacklog = 0;
  private droppedGossipInputs = 0;
  /** Inputs per ledger our executions can take within a round (consensus/own proposals). */
  private inputBudget!: InputBudget;
  private proposedInputCap = Infinity;
  /** Our latest proposal as sent, handed to each peer as it connects. */
  private lastProposal: Omit<MsgFrame, 'type'> | null = null;
  private remounting = false;
  private serving: ServingStore | null = null;
  private loopLag: LoopLag | null = null;
  private statusWriting = false;
  private loopFigures: LoopLagFigures = { p50: 0, p99: 0, max: 0 };
  private readonly serveBucket: TokenBucket;
  private stopping = false;
  private statusTimer: NodeJS.Timeout | null = null;
  /** The state sync in progress, for status and progress lines. */
  private syncProgress: (StateSyncProgress & { target: string; startedAt: number }) | null = null;
  private readsRunning = 0;
  private readonly readQueue: Array<() => void> = [];

  constructor(readonly paths: NodePaths, readonly config: NodeConfig, readonly keys: KeyPair, private readonly log: Logger) {
    super();
    this.warm = new WarmStart(() => this.rw, log);
    // State served to syncing peers per second (burst: a quarter of that), so serving never starves our own rounds.
    const serve = (config.mesh.serve_mib_per_sec ?? DEFAULT_SERVE_MIB_PER_SEC) * 1024 * 1024;
    this.serveBucket = new TokenBucket(serve, Math.max(serve / 4, MAX_OBJECT_REPLY_BYTES), Date.now());
    this.unlHex = config.contract.unl.map((k) => k.toLowerCase()).sort();
    this.lockFile = new LockFile(path.join(paths.ledger, 'lock'));
    this.execFile = new ExecFile(path.join(paths.ledger, 'last-exec'));
    this.outputSigs = new OutputSigBook((hex) => this.unlHex.includes(hex));
  }

  get contractId(): string {
    return this.config.contract.id;
  }

  get voteStatus(): VoteStatus | 'unknown' {
    return this.status;
  }

  lcl(): { seqNo: number; hash: Buffer } {
    const l = this.ledger.last();
    return { seqNo: l.seqNo, hash: l.hash };
  }

  ledgerRecord(seqNo: number): LedgerRecord | null {
    return this.ledger.get(seqNo);
  }

  /** "host:port" of connected peers (stat_response) and the network's counters. */
  peers(): string[] {
    if (!this.net) return [];
    const stats = this.net.stats().peers;
    return this.net.connectedPeers().map((k) => stats[k]?.address || k);
  }

  peerStats() {
    return this.net?.stats() ?? null;
  }

  /** The peer listener's address (tests start nodes on port 0). */
  peerAddress(): { host: string; port: number } | null {
    return this.net && this.needsPeers() ? this.net.address() : null;
  }

  consensusState(): string {
    return this.core.describe();
  }

  async start(): Promise<void> {
    const t0 = performance.now();
    const statefs = this.bootRw(); // boots while the ledger opens and the state is checked
    try {
      this.ledger = LedgerStore.open(this.paths.ledger);
    } catch (err) {
      await statefs.cancel();
      throw err;
    }
    this.pool = new InputPool(
      {
        maxInputLedgerOffset: this.config.contract.max_input_ledger_offset,
        userInputBytesPerRound: this.config.contract.round_limits.user_input_bytes,
        maxPendingInputs: 100_000,
      },
      (hex) => this.ledger.findInput(Buffer.from(hex, 'hex')) !== null,
      MIN_ADMISSION,
    );
    this.replayNonces();
    const last = this.ledger.last();
    let recovered: ReturnType<HpNode['recoverExecution']>;
    try {
      recovered = this.recoverExecution(last);
    } catch (err) {
      await statefs.cancel();
      throw err;
    }
    const t1 = performance.now();
    await this.mountRw(statefs);
    const t2 = performance.now();
    const c = this.config.contract;
    const lock = this.lockFile.load();
    const start = recovered.executed;
    if (start) this.remember(start);
    this.core = this.newCore(last, start, lock);
    this.inputBudget = new InputBudget(c.consensus.roundtime, this.core.limits.maxInputsPerLedger);
    if (this.needsPeers()) {
      const net = new PeerNetwork({
        contractId: c.id,
        keys: this.keys,
        listen: { host: this.config.mesh.listen_host, port: this.config.mesh.port },
        peers: this.config.mesh.known_peers,
        unl: () => this.unlHex,
        allowObservers: false,
        log: this.log.child('p2p'),
        answerMemory: hasherMemory, // big state answers land where the hasher thread reads them
      });
      net.on('message', (m) => this.onPeerMessage(m));
      net.on('request', (r) => this.onPeerRequest(r));
      // A peer that just connected (restarted, or new) learns where we are now, not a round later.
      net.on('peer', (e) => {
        if (e.state === 'up' && this.lastProposal) net.forwardTo(e.pubkeyHex, this.lastProposal);
      });
      try {
        await net.start();
      } catch (err) {
        await this.rw.close();
        this.ledger.close();
        throw new Error(`cannot listen for peers on ${this.config.mesh.listen_host}:${this.config.mesh.port}: ${(err as Error).message}`);
      }
      this.net = net;
    }
    this.log.info(`ledger at seq ${last.seqNo} (${last.hash.toString('hex').slice(0, 12)}), state root ${this.rw.root.slice(0, 12)}, UNL of ${this.unlHex.length} at ${c.consensus.threshold} % (quorum ${this.core.quorum}), roundtime ${c.consensus.roundtime} ms${lock && lock.seqNo === last.seqNo + 1 ? `, locked on a value for seq ${lock.seqNo}` : ''}`);
    this.log.info(`started in ${ms(performance.now() - t0)} (ledger + state check ${ms(t1 - t0)}, mount ${ms(t2 - t1)}, peer port ${ms(performance.now() - t2)})`);
    if (recovered.reexecute) {
      this.log.info(`ledger ${last.seqNo} closed but its execution was not committed before the node stopped: running it again`);
      this.startExecution({ seqNo: last.seqNo, hash: last.hash, timestampMs: last.timestampMs, users: last.users, inputs: last.inputs });
    }
    this.scheduleTick();
    // The state check waits until the node votes with the others again (or STATE_CHECK_DELAY_MS):
    // a restarted node rejoins first instead of sharing its CPU and disk between the two.
    this.stateCheckTimer = setTimeout(() => this.checkState(), STATE_CHECK_DELAY_MS);
    this.loopLag = new LoopLag();
    this.statusTimer = setInterval(() => this.writeStatus(), 1000);
    this.writeStatus();
  }

  /**
   * Every object of the state is re-hashed once per start, on a worker thread: a byte flipped on
   * disk while the node was down is found without delaying the start (a contract that reads such a
   * block meanwhile gets EIO, and the consensus catches any result that differs), and repaired.
   */
  private checkState(): void {
    if (this.stateCheck || this.stopping) return;
    if (this.stateCheckTimer) clearTimeout(this.stateCheckTimer);
    const t0 = performance.now();
    this.stateCheck = checkInBackground(this.paths.store, ObjectStore.readCurrentRoot(this.paths.store).root).then(
      (bad) => {
        if (bad.length === 0) return void this.log.info(`state check: every object of the state matches its hash (${ms(performance.now() - t0)})`);
        this.onDamage(bad);
      },
      (err) => this.log.warn(`state check could not run: ${(err as Error).message}`),
    );
  }

  private onDamage(bad: DamagedObject[]): void {
    this.distrusted = new Set([...this.distrusted, ...bad.map((b) => b.hash)]);
    this.stateDiverged = true;
    const paths = [...new Set(bad.map((b) => b.path))].slice(0, 20).join(', ');
    if (!this.net) return void this.log.error(`the state store is damaged: ${bad.length} object(s) do not match their hashes (${paths}); this node has no peers to repair it from: restore its state directory from a healthy node`);
    this.log.error(`the state store is damaged: ${bad.length} object(s) do not match their hashes (${paths}); fetching them from peers`);
    const repair = async () => {
      while (this.catchingUp) await this.catchingUp;
      // A sync that ran meanwhile distrusted and fetched them already.
      if (this.stopping || this.distrusted.size === 0) return;
      this.catchingUp = this.repairState('the state store is damaged')
        .catch((err) => this.log.warn(`state repair failed: ${(err as Error).message}; retrying when the consensus asks`))
        .finally(() => {
          this.catchingUp = null;
        });
    };
    void repair();
  }

  /** What `hp-node status` shows: position, votes, peers, and what catching up and syncing moved. */
  statusReport(): object {
    const last = this.ledger.last();
    const sync = this.syncProgress;
    return {
      pid: process.pid,
      updated: new Date().toISOString(),
      publicKey: this.keys.publicKey.toString('hex'),
      lcl: { seqNo: last.seqNo, hash: last.hash.toString('hex'), timestampMs: last.timestampMs },
      stateRoot: this.rw?.root,
      voteStatus: this.status,
      unl: this.unlHex,
      quorum: this.core.quorum,
      roundtimeMs: this.config.contract.consensus.roundtime,
      peers: this.net ? this.net.connectedPeers() : [],
      transfer: this.transfer,
      inputs: { pending: this.pool.size, relayedUnchecked: this.inputBacklog, relayedDropped: this.droppedGossipInputs },
      // Consensus executions whose contract process was started ahead (warm) or at the close (cold).
      executions: this.warm.counts,
      sync: sync
        ? { target: sync.target, objectsFetched: sync.objectsFetched, bytesFetched: sync.bytesFetched, objectsLocal: sync.objectsLocal, pending: sync.pending, elapsedMs: Date.now() - sync.startedAt, bytesPerSec: Math.round(sync.bytesFetched / Math.max(0.001, (Date.now() - sync.startedAt) / 1000)) }
        : null,
      consensus: this.core.describe(),
      // How late this event loop ran its callbacks over the last second: what peers and users wait
      // on top of the work itself (fsyncs, spawns and GC on this thread all show up here).
      eventLoopDelayMs: this.loopFigures,
    };
  }

  /**
   * Rewrites run/status.json on libuv's threads: on a busy disk the rename alone waited 100+ ms,
   * every second, on the event loop that serves peers and users. One write at a time (a tick that
   * finds one still going skips); best effort: a full disk must not stop the node for it.
   */
  private writeStatus(): void {
    if (this.statusWriting) return;
    this.statusWriting = true;
    if (this.loopLag) this.loopFigures = this.loopLag.take();
    const tmp = `${this.paths.status}.tmp`;
    fsp.writeFile(tmp, JSON.stringify(this.statusReport(), null, 2) + '\n')
      .then(() => fsp.rename(tmp, this.paths.status))
      .catch(() => undefined)
      .finally(() => (this.statusWriting = false));
  }

  private bootRw(): PreparedStatefs {
    return PreparedStatefs.boot({ storeDir: this.paths.store, mountpoint: this.paths.rwMount, readOnly: false });
  }

  /** Mounts the read-write state (with a child booted ahead of time, if given). */
  private async mountRw(booted = this.bootRw()): Promise<void> {
    const mount = await booted.mount();
    this.rw = mount;
    void mount.waitExit().then((code) => {
      if (this.rw === mount && !this.remounting) this.fail(`state filesystem process exited unexpectedly (code ${code})`);
    });
  }

  private newCore(last: LedgerRecord, executed: Executed | null | undefined, lock: PersistedLock | null): ConsensusCore {
    const c = this.config.contract;
    return new ConsensusCore(
      { contractId: c.id, unl: this.unlHex.map((k) => Buffer.from(k, 'hex')), self: this.keys.publicKey, thresholdPercent: c.consensus.threshold, roundtimeMs: c.consensus.roundtime },
      {
        lcl: { seqNo: last.seqNo, hash: last.hash, timestampMs: last.timestampMs },
        result: executed ? { outputRoot: executed.result.outputRoot, stateRoot: executed.result.stateRoot, configHash: executed.configHash } : null,
        lock,
        nowMs: Date.now(),
      },
    );
  }

  /**
   * The contract changed the UNL, roundtime or threshold in patch.cfg, and ledger `at` (which
   * certifies that patch.cfg) closed: every node switches here, so the consensus from the next seq
   * on runs with the new settings. The new core sits out the round in progress, like a restart.
   */
  private reconfigure(s: ConsensusSettings, at: LedgerRecord): void {
    const c = this.config.contract;
    const unlChanged = s.unl.join() !== this.unlHex.join();
    if (!unlChanged && s.roundtime === c.consensus.roundtime && s.threshold === c.consensus.threshold) return;
    const lock = unlChanged ? null : this.core.lockedValue; // a proof of lock from the old UNL proves nothing
    c.unl = s.unl;
    c.consensus.roundtime = s.roundtime;
    c.consensus.threshold = s.threshold;
    this.unlHex = s.unl;
    try {
      writeConfig(this.paths.config, this.config);
    } catch (err) {
      this.log.error(`cannot save the new consensus settings to ${this.paths.config}: ${(err as Error).message}; a restart would use the old ones`);
    }
    this.core = this.newCore(at, this.results.get(at.seqNo), lock && lock.seqNo === at.seqNo + 1 ? lock : null);
    this.inputBudget = new InputBudget(s.roundtime, this.core.limits.maxInputsPerLedger);
    this.proposedInputCap = Infinity;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.scheduleTick();
    this.log.info(`ledger ${at.seqNo} certified a new patch.cfg: UNL of ${s.unl.length} at ${s.threshold} % (quorum ${this.core.quorum}), roundtime ${s.roundtime} ms${this.unlHex.includes(this.keys.publicKey.toString('hex')) ? '' : '; this node is no longer in the UNL and only observes'}`);
    if (unlChanged) this.emit('unl_change', { unl: s.unl });
  }

  /** Stops after the running execution: no round is cut in half, the mounts are unmounted. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    if (this.gossipTimer) clearTimeout(this.gossipTimer);
    this.tickTimer = this.gossipTimer = null;
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.loopLag?.stop();
    if (this.stateCheckTimer) clearTimeout(this.stateCheckTimer);
    for (const w of this.outputWaits) w.check();
    this.outputWaits.clear();
    await this.actions.close();
    await this.stateCheck;
    await this.catchingUp;
    await this.running?.done;
    await this.execFile.idle(); // the last result's record (a restart then need not re-run it)
    await this.warm.discard().catch(() => undefined);
    await this.net?.stop();
    await this.ro?.close();
    await this.rw?.close();
    this.serving?.store.close();
    this.ledger?.close();
  }

  // ---- inputs and reads (called by the user server) -----------------------------------------

  /** Whether the pool takes no more inputs from users now (checked before anything is parsed). */
  get inputsFull(): boolean {
    return this.stopping || this.pool.full;
  }

  precheckInput(input: PendingInput): { ok: true } | { ok: false; reason: RejectReason } {
    if (this.stopping) return { ok: false, reason: 'round_inputs_overflow' };
    const reason = this.pool.refusal(input, this.ledger.last().seqNo);
    return reason ? { ok: false, reason } : { ok: true };
  }

  submitInput(input: PendingInput): { ok: true } | { ok: false; reason: RejectReason } {
    if (this.stopping) return { ok: false, reason: 'round_inputs_overflow' };
    const r = this.pool.admit(input, this.ledger.last().seqNo);
    if (!r.ok) return r;
    this.offerLater([candidateOf(input)]);
    if (this.net) this.queueGossip({ protocol: input.protocol, user: input.user, container: input.container, sig: input.sig });
    return r;
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

  // ---- the consensus core: events in, actions out ------------------------------------------------

  private scheduleTick(): void {
    if (this.stopping) return;
    // +1 ms lands inside the next stage rather than on its boundary.
    const delay = this.paused ? this.config.contract.consensus.roundtime / 4 : Math.max(0, this.core.nextTickAt() - Date.now()) + 1;
    this.tickTimer = setTimeout(() => {
      this.tickTimer = null;
      this.offerAged();
      this.dispatch({ type: 'tick', nowMs: Date.now() });
      if (this.config.log.level === 'debug') this.log.debug(`consensus ${this.core.describe()} pool=${this.pool.size} waiting=${this.offers.length}`);
      this.scheduleTick();
    }, delay);
  }

  /**
   * An input reaches the core a stage after it reached this node. By then gossip has carried it
   * to the other nodes too, so at a stage-0 boundary every node proposes (nearly) the same set;
   * offering inputs the moment they arrive makes nodes propose different sets under load, and
   * whole-value prevotes then rarely agree.
   */
  private offerLater(inputs: CandidateInput[]): void {
    this.offers.push({ at: Date.now(), inputs });
  }

  private offerAged(): void {
    const cutoff = Date.now() - this.config.contract.consensus.roundtime / 4;
    let n = 0;
    while (n < this.offers.length && this.offers[n].at <= cutoff) n++;
    if (n === 0) return;
    const ready = this.offers.splice(0, n).flatMap((o) => o.inputs);
    this.dispatch({ type: 'inputsAvailable', inputs: ready });
  }

  /** Feeds the core; actions may loop events back (own votes), which queue behind this one. */
  private dispatch(ev: ConsensusEvent): void {
    if (this.stopping) return;
    if (this.paused) {
      // Kept for after the repair (bounded): a relayed precommit that arrives meanwhile may be
      // exactly what lets this node decide the ledger nobody can certify without it.
      if (ev.type !== 'tick' && ev.type !== 'syncDone') {
        if (this.heldEvents.length >= MAX_HELD_EVENTS) this.heldEvents.shift();
        this.heldEvents.push(ev);
      }
      return;
    }
    this.queue.push(ev);
    this.drain();
  }

  /**
   * Performs queued actions (in order; a durable write holds back the ones after it, see
   * ActionQueue) and hands queued events to the core, until neither can go on.
   */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.stopping) {
        if (this.actions.runNext()) continue;
        const ev = this.queue.shift();
        if (!ev) break;
        this.actions.push(this.core.handle(ev));
      }
    } finally {
      this.draining = false;
    }
  }

  private actionFailed(a: ConsensusAction, err: Error): void {
    this.log.error(`consensus action ${a.type} failed: ${err.stack ?? err}`);
    if (a.type === 'persistLock') this.fail(`cannot persist the consensus lock: ${err.message}`);
  }

  private perform(a: ConsensusAction): Performed {
    switch (a.type) {
      case 'broadcast': {
        const body = encodeProposalBody(a.proposal);
        const sig = this.net
          ? this.net.broadcast(KIND.proposal, body, { relay: true, context: 'proposal' }).sig
          : signIn('proposal', this.contractId, signedPayload(PROPOSAL_FLAGS, KIND.proposal, body), this.keys.secretKey);
        this.lastProposal = { context: 'proposal', kind: KIND.proposal, author: this.keys.publicKey, flags: PROPOSAL_FLAGS, body, sig };
        this.queue.push({ type: 'proposal', proposal: { ...a.proposal, author: this.keys.publicKey, sig } });
        return;
      }
      case 'attest': {
        const att = { seqNo: a.seqNo, hash: a.hash, author: this.keys.publicKey, sig: signIn('ledger-close', this.contractId, a.hash, this.keys.secretKey) };
        this.net?.broadcast(KIND.attestation, encodeAttestation(att), { relay: true, context: 'proposal' });
        this.queue.push({ type: 'attestation', attestation: att });
        return;
      }
      case 'relay':
        for (const p of a.proposals) {
          this.net?.forward({ context: 'proposal', kind: KIND.proposal, author: p.author, flags: PROPOSAL_FLAGS, body: encodeProposalBody(p), sig: p.sig });
        }
        return;
      case 'fetchInputs':
        return this.fetchInputs(a.hashes.map((h) => h.subarray(8)), a.peers.map((p) => p.toString('hex')));
      case 'persistLock':
        // Durable before any later action (the precommit it guards among them); see ActionQueue.
        return this.lockFile.save(a.lock);
      case 'closeLedger':
        return this.onClosed(a.ledger);
      case 'execute': {
        const rec = this.closing.find((c) => c.ledger.header.seqNo === a.ledger.header.seqNo);
        const inputs = rec?.inputs ?? this.ledger.get(a.ledger.header.seqNo)?.inputs;
        if (!inputs) return this.fail(`ledger ${a.ledger.header.seqNo} is to be executed but neither its record nor its inputs are here`);
        return this.startExecution({ seqNo: a.ledger.header.seqNo, hash: a.ledger.hash, timestampMs: a.ledger.header.timestampMs, users: a.ledger.users, inputs });
      }
      case 'voteStatus':
        if (a.status !== this.status) this.log.info(`vote status: ${a.status}`);
        this.status = a.status;
        this.emit('vote_status', { voteStatus: a.status });
        if (a.status === 'synced') this.checkState();
        return;
      case 'requestSync':
        return this.syncNeeded(a.request);
      case 'log':
        return this.coreLog(a.level, a.message, a.evidence);
    }
  }

  private coreLog(level: 'debug' | 'info' | 'warn' | 'error', message: string, evidence?: Evidence): void {
    if (!evidence) return this.log[level](message);
    const a = evidence.first;
    const b = evidence.second;
    this.log.warn(`EVIDENCE ${evidence.kind} by ${evidence.author.toString('hex')}: ${message}; signatures ${a.sig.toString('hex')} and ${b.sig.toString('hex')}`);
  }

  /**
   * What the core's sync requests become: a node behind by a few ledgers replays them; one behind
   * by many, or whose state is wrong, takes the certified ledgers as they are and syncs the state
   * they end on (fetching only what differs). One repair runs at a time; the core asks again if
   * it is still needed.
   */
  private syncNeeded(r: SyncRequest): void {
    this.emit('sync_needed', r);
    const stateWrong = r.reason === 'state' || r.reason === 'fork';
    if (stateWrong && !this.stateDiverged) {
      this.log.warn(`out of sync (${r.reason}): the quorum's ${r.reason === 'state' ? 'state' : 'ledger'} at ${r.targetSeqNo} differs from ours; not voting on state until it is repaired from peers`);
    }
    if (stateWrong) this.stateDiverged = true;
    if (!this.net || this.catchingUp) return;
    const work = stateWrong
      ? this.repairState(`the quorum's ${r.reason === 'state' ? 'state' : 'ledger'} at ${r.targetSeqNo} differs from ours`)
      : this.catchUp(r, this.stateDiverged);
    this.catchingUp = work
      .catch((err) => this.log.warn(`${stateWrong ? 'state sync' : `catching up to ledger ${r.targetSeqNo}`} failed: ${(err as Error).message}; retrying when the consensus asks again`))
      .finally(() => {
        this.catchingUp = null;
      });
  }

  // ---- closing ledgers ----------------------------------------------------------------------------

  private onClosed(ledger: ClosedLedger): void {
    const hexes = ledger.inputs.map((h) => h.subarray(8).toString('hex'));
    const held = this.pool.take(hexes);
    const missing = held.findIndex((i) => !i);
    // The core closes a ledger only when this node holds every input body it lists.
    if (missing >= 0) return this.fail(`ledger ${ledger.header.seqNo} was decided but the body of input ${hexes[missing]} is not here`);
    const inputs = (held as PendingInput[]).map((i) => ({ pubkey: i.user, hash: i.hash, nonce: i.nonce, blob: i.blob, container: i.container, sig: i.sig, protocol: i.protocol }));
    this.closing.push({ ledger, inputs });
    this.flushClosing();
  }

  /**
   * Appends decided ledgers in order. Ledger N records the outputs of executing N−1, so it waits
   * while that execution (or one before it) is still running; if this node never executes N−1
   * (it is out of sync) or got other outputs than the quorum, N is recorded without outputs.
   */
  private flushClosing(): void {
    while (this.closing.length > 0 && !this.stopping) {
      const { ledger, inputs } = this.closing[0];
      const n = ledger.header.seqNo;
      if (this.running && this.running.seqNo <= n - 1) return;
      let prev: Executed | null = this.results.get(n - 1) ?? null;
      if (prev && !prev.result.outputRoot.equals(ledger.header.outputHash)) {
        this.log.warn(`ledger ${n}: the quorum's output root of ledger ${n - 1} is ${ledger.header.outputHash.toString('hex').slice(0, 12)}, ours is ${prev.result.outputRoot.toString('hex').slice(0, 12)}: recorded without outputs`);
        prev = null;
      }
      this.closing.shift();
      if (!this.append(ledger, inputs, prev?.result ?? null)) return;
    }
  }

  private append(ledger: ClosedLedger, inputs: LedgerInput[], prev: ExecutionResult | null): boolean {
    return this.appendRecord({ ...ledger.header, hash: ledger.hash, users: ledger.users, inputs, outputs: [], quorum: ledger.quorum }, prev);
  }

  /**
   * Appends a certified ledger with the outputs of `prev` (our execution of the one before). Users
   * hear of it (accepted inputs, outputs, ledger_created) once the record is durable; the node's
   * own bookkeeping follows the ledger at once.
   */
  private appendRecord(rec: LedgerRecord, prev: ExecutionResult | null): boolean {
    const n = rec.seqNo;
    const record: LedgerRecord = { ...rec, outputs: (prev?.users ?? []).map((u) => ({ pubkey: u.user, hash: u.hash, blobs: u.outputs })) };
    let durable: Promise<void>;
    try {
      durable = this.ledger.append(record);
    } catch (err) {
      // Nothing of this ledger was acknowledged to anyone, so stopping loses no accepted input;
      // carrying on would vote on ledgers this node cannot keep (e.g. a full disk).
      this.fail(`cannot append ledger ${n}: ${(err as Error).message}`);
      return false;
    }
    for (const i of record.inputs) this.pool.noteLedgerInput(i.pubkey.toString('hex'), i.nonce);
    const expired = this.pool.expire(n);
    const p = this.pendingSettings;
    if (p && record.configHash.equals(p.configHash)) {
      this.pendingSettings = null;
      // After the current dispatch: the core that closed this ledger finishes its batch first.
      setImmediate(() => {
        if (!this.stopping) this.reconfigure(p.settings, record);
      });
    }
    durable.then(
      () => {
        for (const i of record.inputs) this.emit('input_status', { user: i.pubkey, inputHash: i.hash, status: 'accepted', ledgerSeqNo: n, ledgerHash: record.hash });
        for (const e of expired) this.emit('input_status', { user: e.user, inputHash: e.hash, status: 'rejected', reason: 'max_ledger_expired' });
        if (prev) this.deliverOutputs(n, record.hash, prev);
        this.emit('ledger_created', record);
        this.log.info(`ledger ${n} ${record.hash.toString('hex').slice(0, 12)} inputs=${record.inputs.length} signers=${record.quorum.length} state=${record.stateHash.toString('hex').slice(0, 12)}`);
      },
      // Nothing of it was acknowledged; the ledger reopens at what is durable.
      (err: Error) => this.fail(`cannot make ledger ${n} durable: ${err.message}`),
    );
    return true;
  }

  /**
   * The upstream client accepts outputs signed by ≥ 80 % of the UNL: wait (at most a round) for
   * the members' signatures of this output root, then send with whatever arrived, but never
   * before our own (it comes once our record of the result is durable, see finish()).
   */
  private deliverOutputs(seqNo: number, hash: Buffer, r: ExecutionResult): void {
    if (r.users.length === 0) return;
    const send = () => {
      const unlSig = this.outputSigs.signers(r.seqNo, r.outputRoot);
      for (const u of r.users) {
        this.emit('contract_output', { user: u.user, ledgerSeqNo: seqNo, ledgerHash: hash, outputs: u.outputs, outputHash: u.hash, hashTree: proofFor(r, u), unlSig });
      }
    };
    if (this.outputSigs.signers(r.seqNo, r.outputRoot).length >= this.unlHex.length) return send();
    let timer: NodeJS.Timeout | null = null;
    const wait = {
      seqNo: r.seqNo,
      check: () => {
        const sigs = this.outputSigs.signers(r.seqNo, r.outputRoot);
        // An observer's own signature does not count (it is not in the UNL): it waits for nobody's.
        const own = !this.unlHex.includes(this.keys.publicKey.toString('hex')) || sigs.some(([pk]) => pk.equals(this.keys.publicKey));
        if (!this.stopping && (!own || (timer && sigs.length < this.unlHex.length))) return false;
        if (timer) clearTimeout(timer);
        timer = null;
        this.outputWaits.delete(wait);
        if (own) send(); // stopping without our signature: unsigned outputs would only be refused
        return true;
      },
    };
    timer = setTimeout(() => {
      timer = null;
      wait.check();
    }, this.config.contract.consensus.roundtime);
    this.outputWaits.add(wait);
  }

  // ---- executions ---------------------------------------------------------------------------------

  /** Runs one ledger's execution; `running` marks it until it ends, whatever the outcome. */
  private runExecution(l: LedgerToRun): Promise<RoundTimings> {
    const run = { seqNo: l.seqNo, exec: null as ContractExecution | null, done: Promise.resolve() };
    this.running = run;
    const p = this.execute(l, run).finally(() => {
      if (this.running === run) this.running = null;
    });
    run.done = p.then(() => undefined, () => undefined);
    return p;
  }

  /** An execution the core asked for: its result goes back to the core. */
  private startExecution(l: LedgerToRun): void {
    this.runExecution(l).then(
      (timings) => {
        const done = this.results.get(l.seqNo)!;
        // Before the core hears of it: the next execution may be asked for at once, and it must
        // find this process (WarmStart.take waits for it) rather than a session begun under it.
        this.prepareNext(l.users.length);
        this.dispatch({ type: 'executionDone', seqNo: l.seqNo, outputRoot: done.result.outputRoot, stateRoot: done.result.stateRoot, configHash: done.configHash });
        this.inputBudget.observe(timings.inputs, timings.totalMs);
        const cap = this.inputBudget.maxInputs;
        this.pool.capacity = admissionCapacity(cap, this.pool.capacity, this.pool.size, timings.inputs);
        if (cap !== this.proposedInputCap) {
          if (cap < Math.min(this.proposedInputCap, this.core.limits.maxInputsPerLedger)) {
            this.log.info(`proposing at most ${cap} inputs per ledger: the last execution took ${Math.round(timings.totalMs)} ms for ${timings.inputs} inputs at ${this.config.contract.consensus.roundtime} ms rounds`);
          }
          this.proposedInputCap = cap;
          this.dispatch({ type: 'inputBudget', maxInputs: cap });
        }
        this.flushClosing();
        this.emit('round', timings);
      },
      (err) => this.fail(`ledger ${l.seqNo}: execution failed: ${(err as Error).message}`),
    );
  }

  // ---- catching up: certified ledgers from peers, replayed in order ---------------------------------

  /**
   * Waits until no execution runs and no consensus action waits for a durable write: a repair
   * must not find a ledger being closed behind its back.
   */
  private async quiesce(): Promise<void> {
    while (this.running || this.actions.waiting) {
      await this.running?.done;
      await this.actions.idle();
    }
    // Returns right after the check, with no await in between: the caller pauses the core before
    // anything else can start an execution.
  }

  /**
   * Fetches the ledgers this node missed (down, stopped, cut off), verifies each against our chain
   * and its quorum certificate, appends it and runs it, checking that our execution of each one
   * produced what the next one certifies. The consensus core is paused meanwhile and told the
   * outcome at the end (syncDone). A divergent state cannot be repaired by replay: that stops the
   * catch-up, and the core marks the node desync (state sync repairs it).
   */
  private async catchUp(r: SyncRequest, stateWrong: boolean): Promise<void> {
    await this.quiesce();
    if (this.stopping) return;
    this.paused = true; // before any await: no warm start may begin meanwhile
    if (stateWrong) await this.warm.discard();
    const appended: Buffer[] = [];
    const t0 = Date.now();
    const startSeq = this.ledger.last().seqNo;
    const peers = r.peers.map((p) => p.toString('hex'));
    // Long gaps (a node down for a while, or brand new): take the certified ledgers as they are
    // and sync the state they end on, instead of re-running every contract execution.
    const replay = !stateWrong && r.targetSeqNo - startSeq <= MAX_REPLAY_LEDGERS;
    this.log.info(`behind (${r.reason}): the quorum is at ledger ${r.targetSeqNo}, this node closed ${startSeq}; fetching the certified ledgers from peers${replay ? ' to replay them' : ''}`);
    try {
      let attempt = 0;
      while (!this.stopping && this.ledger.last().seqNo < r.targetSeqNo && attempt < 2 * Math.max(1, peers.length) + 2) {
        const tip = this.ledger.last();
        const connected = this.net!.connectedPeers();
        const candidates = peers.filter((p) => connected.includes(p));
        const from = candidates.length > 0 ? candidates : connected;
        if (from.length === 0) throw new Error('no peer connected');
        const peer = from[attempt % from.length];
        const to = Math.min(r.targetSeqNo, tip.seqNo + MAX_LEDGERS_PER_REQUEST);
        const raw = await this.requestLedgers(peer, tip.seqNo + 1, to);
        const ok = await this.applyLedgers(peer, raw, appended, replay);
        if (ok === 'diverged') {
          this.stateDiverged = true;
          break;
        }
        if (ok === 'none') attempt++;
      }
    } finally {
      this.paused = false;
    }
    if (this.stopping) return;
    if (!replay && (this.ledger.last().seqNo > startSeq || stateWrong)) {
      this.log.info(`caught up ${startSeq} → ${this.ledger.last().seqNo} by ledger records (${this.transfer.ledgerBytes} bytes fetched in total); syncing the state they end on`);
      return this.repairState(`${this.ledger.last().seqNo - startSeq} ledgers were taken without running them`);
    }
    const last = this.ledger.last();
    const executed = this.stateDiverged ? undefined : this.results.get(last.seqNo);
    if (appended.length > 0) this.log.info(`caught up ${startSeq} → ${last.seqNo} (${appended.length} ledgers replayed, ${this.transfer.ledgerBytes} bytes fetched in total) in ${Date.now() - t0} ms`);
    this.dispatch({
      type: 'syncDone',
      lcl: { seqNo: last.seqNo, hash: last.hash, timestampMs: last.timestampMs },
      result: executed ? { outputRoot: executed.result.outputRoot, stateRoot: executed.result.stateRoot, configHash: executed.configHash } : null,
      inputsInLedgers: appended,
    });
    this.replayHeld();
    // Inputs admitted while the core was paused: offer them again.
    const held = this.pool.all().filter((i) => i.maxLedgerSeqNo > last.seqNo).map(candidateOf);
    if (held.length > 0) this.dispatch({ type: 'inputsAvailable', inputs: held });
  }

  /**
   * State sync: the state this node holds is not the one the quorum certified. Fetch from peers
   * exactly the objects that differ from the state recorded by our newest ledger (the state after
   * executing the one before it), verify each against its hash, swap the snapshot in, then run
   * that newest ledger ourselves. The core is paused meanwhile and told the outcome (syncDone).
   */
  private async repairState(why: string): Promise<void> {
    await this.quiesce();
    if (this.stopping) return;
    this.paused = true; // before any await: no warm start may begin meanwhile
    await this.warm.discard();
    const last = this.ledger.last();
    let next: PreparedStatefs | null = null;
    try {
      const peers = this.net!.connectedPeers().filter((p) => this.unlHex.includes(p));
      if (peers.length === 0) throw new Error('no UNL peer connected');
      this.log.warn(`state sync: ${why}; fetching what differs from the state ledger ${last.seqNo} certifies (${last.stateHash.toString('hex').slice(0, 12)}) from ${peers.length} peer(s)`);
      this.remounting = true;
      await this.rw.close();
      next = this.bootRw(); // mounts the synced state as soon as the sync is done
      let configHash: Buffer = ZERO_HASH;
      const store = ObjectStore.open(this.paths.store, { lockWaitMs: 5000 });
      try {
        let lastLog = Date.now();
        const res = await syncState(store, last.stateHash, {
          peers: () => this.net!.connectedPeers().filter((p) => this.unlHex.includes(p)),
          fetch: (peer, hashes) => this.fetchObjects(peer, hashes),
          answersHaveRoom: true, // decodeByteList views of one answer frame (p2p/wire.ts allocRes, p2p/bulk.ts)
          batch: MAX_OBJECTS_PER_REQUEST,
          timeMs: last.timestampMs,
          distrust: this.distrusted,
          onBadPeer: (peer, reason) => {
            this.transfer.rejectedObjects++;
            this.log.warn(`peer ${peer.slice(0, 10)} served a bad state object: ${reason}`);
          },
          onProgress: (p) => {
            this.syncProgress = { ...p, target: last.stateHash.toString('hex'), startedAt: Date.now() - p.elapsedMs };
            if (process.stderr.isTTY) return void process.stderr.write(`\r${progressBar(p)}`);
            if (Date.now() - lastLog < 1000) return;
            lastLog = Date.now();
            this.log.info(`state sync: ${p.objectsFetched} objects (${(p.bytesFetched / 1048576).toFixed(1)} MiB) fetched, ${p.objectsLocal} already here, ${p.pending} queued, ${(p.bytesFetched / 1048576 / Math.max(0.001, p.elapsedMs / 1000)).toFixed(1)} MiB/s`);
          },
        });
        this.transfer.stateObjects += res.objectsFetched;
        this.transfer.stateBytes += res.bytesFetched; // rejections are counted as they happen (onBadPeer)
        this.transfer.stateSyncs++;
        this.distrusted = new Set();
        configHash = store.entryHash(last.stateHash, `/${PATCH_FILE}`) ?? ZERO_HASH;
        this.log.warn(`state sync done in ${res.elapsedMs} ms: ${res.objectsFetched} objects (${res.bytesFetched} bytes) fetched, ${res.objectsLocal} kept, ${res.requests} requests (round trip mean ${res.rttMsMean} ms, max ${res.rttMsMax} ms); paths that differed: ${res.changedPaths.join(', ') || '(tree nodes only)'}`);
      } finally {
        if (this.syncProgress && process.stderr.isTTY) process.stderr.write('\n');
        this.syncProgress = null;
        store.close();
      }
      const booted = next;
      next = null; // used now, whatever happens: a retry below boots afresh
      await this.mountRw(booted);
      this.remounting = false;
      this.remember({ result: finishExecutionFromUsers(last.seqNo - 1, [], last.stateHash, this.keys), configHash });
      this.stateDiverged = false;
      if (last.seqNo > 0) {
        await this.runExecution({ seqNo: last.seqNo, hash: last.hash, timestampMs: last.timestampMs, users: last.users, inputs: last.inputs });
        // The cluster moved on during the sync: the ledgers replayed next find this process booted.
        this.prepareNext(last.users.length, true);
      } else {
        this.remember({ result: finishExecutionFromUsers(0, [], last.stateHash, this.keys), configHash });
      }
    } finally {
      if (this.remounting && !this.stopping) {
        this.remounting = false;
        await this.mountRw(next ?? undefined).catch((err) => this.fail(`cannot mount the state again after a sync: ${(err as Error).message}`));
      } else await next?.cancel();
      this.paused = false;
    }
    const executed = this.stateDiverged ? undefined : this.results.get(last.seqNo);
    this.dispatch({
      type: 'syncDone',
      lcl: { seqNo: last.seqNo, hash: last.hash, timestampMs: last.timestampMs },
      result: executed ? { outputRoot: executed.result.outputRoot, stateRoot: executed.result.stateRoot, configHash: executed.configHash } : null,
      inputsInLedgers: [],
    });
    this.replayHeld();
  }

  private replayHeld(): void {
    const held = this.heldEvents;
    this.heldEvents = [];
    for (const ev of held) this.dispatch(ev);
  }

  /** One hpn.getobj request: the objects in order (a prefix if the peer stopped early), null if unanswered. */
  private async fetchObjects(peer: string, hashes: Buffer[]): Promise<Array<Buffer | null> | null> {
    const body = await this.net?.bulkRequest(peer, REQUEST.objects, encodeGetObjects(hashes), SYNC_REQUEST_TIMEOUT_MS, { linkWhileOpening: true });
    if (!body) return null;
    try {
      return decodeByteList(body, hashes.length, 'hpn.getobj answer');
    } catch (err) {
      hasherMemory.give(body); // nothing will read it: back to the pool
      throw err;
    }
  }

  /**
   * Serves committed state objects from a read-only view of the store (reopened when it moved on),
   * read straight into the answer frame on libuv's threads (the event loop never waits for the
   * disk; a cold pack is read from it). They are not re-hashed here: the requester checks every
   * object against its hash anyway, objects found damaged at start-up are withheld, and a block
   * rotten since then costs us that requester's trust for one sync, not a wrong state anywhere.
   */
  private onObjectRequest(r: PeerRequest): void {
    const hashes = decodeGetObjects(r.body);
    const serving = this.servingStore(hashes[0]);
    const store = serving?.store;
    const locs: Array<ObjectLocation | null> = [];
    let bytes = 0;
    for (const h of hashes) {
      const loc = store?.locate(h);
      const usable = loc && !this.distrusted.has(h.toString('hex')) ? loc : null;
      // Over the frame or serving budget: stop here; the requester asks for the rest again.
      if (usable && ((locs.length > 0 && bytes + usable.length > MAX_OBJECT_REPLY_BYTES) || !this.serveBucket.take(usable.length, Date.now()))) break;
      locs.push(usable);
      bytes += BYTE_LIST_ITEM_HEADER + (usable?.length ?? 0);
    }
    if (!serving) return void r.reply(encodeByteList(locs.map(() => null)));
    serving.reads++;
    r.replyIntoLater(bytes, (body) => {
      const reads: Array<{ loc: ObjectLocation; into: Buffer }> = [];
      writeByteList(body, locs, (loc, into) => reads.push({ loc, into }));
      return serving.store.readInto(reads.map((x) => x.loc), reads.map((x) => x.into));
    })
      .catch(() => {
        if (this.serving === serving) this.closeServingStore(); // packs rewritten under us: "not now", the next request reopens
        r.reply([]);
      })
      .finally(() => {
        if (--serving.reads === 0 && serving.retired) serving.store.close();
      });
  }

  /** The read-only view to serve from; reopened when the committed store moved past it and lacks `probe`. */
  private servingStore(probe: Buffer): ServingStore | null {
    try {
      if (this.serving && !this.serving.store.has(probe) && ObjectStore.readCurrentRoot(this.paths.store).commit !== this.serving.commit) this.closeServingStore();
      if (!this.serving) {
        const store = ObjectStore.open(this.paths.store, { readOnly: true });
        this.serving = { store, commit: store.current.commit, reads: 0, retired: false };
      }
      return this.serving;
    } catch {
      return null;
    }
  }

  /** Retires the serving view; its files close once no read is in flight (an fd number must not be reused under one). */
  private closeServingStore(): void {
    const s = this.serving;
    this.serving = null;
    if (!s) return;
    s.retired = true;
    if (s.reads === 0) s.store.close();
  }

  private async requestLedgers(peer: string, from: number, to: number): Promise<Buffer[]> {
    const body = await this.net?.request(peer, REQUEST.ledgers, encodeGetLedgers(from, to), SYNC_REQUEST_TIMEOUT_MS);
    if (!body) return [];
    try {
      return decodeByteList(body, MAX_LEDGERS_PER_REQUEST, 'hpn.getlgr answer').filter((r): r is Buffer => r !== null);
    } catch (err) {
      this.transfer.rejectedRecords++;
      this.log.warn(`peer ${peer.slice(0, 10)} sent a malformed ledger answer: ${(err as Error).message}`);
      return [];
    }
  }

  /** Verifies, appends and replays fetched records in order; stops at the first bad one. */
  private async applyLedgers(peer: string, raw: Buffer[], appended: Buffer[], replay: boolean): Promise<'some' | 'none' | 'diverged'> {
    const rules = { contractId: this.contractId, unl: new Set(this.unlHex), quorum: this.core.quorum };
    let applied = 0;
    for (const bytes of raw) {
      if (this.stopping) break;
      const tip = this.ledger.last();
      const rec = decodeOrError(bytes);
      if (rec instanceof Error) {
        this.transfer.rejectedRecords++;
        this.log.warn(`peer ${peer.slice(0, 10)} sent an undecodable ledger record: ${rec.message}`);
        break;
      }
      if (rec.seqNo <= tip.seqNo) continue;
      const problem = fetchedRecordProblem(rec, tip, rules);
      if (problem) {
        this.transfer.rejectedRecords++;
        this.log.warn(`peer ${peer.slice(0, 10)} sent a ledger that fails verification: ${problem}`);
        break;
      }
      this.transfer.ledgerRecords++;
      this.transfer.ledgerBytes += bytes.length;
      if (!replay) {
        // Their outputs came from executions we skip: recorded without them (the state sync follows).
        for (const i of rec.inputs) this.pool.take([i.hash.toString('hex')]);
        if (!this.appendRecord({ ...rec, outputs: [] }, null)) return 'diverged';
        applied++;
        continue;
      }
      const prev = this.results.get(rec.seqNo - 1);
      if (!prev || !prev.result.outputRoot.equals(rec.outputHash)) {
        this.log.warn(`ledger ${rec.seqNo} certifies output root ${rec.outputHash.toString('hex').slice(0, 12)} for ledger ${rec.seqNo - 1}, ours is ${prev ? prev.result.outputRoot.toString('hex').slice(0, 12) : 'unknown'}: our state diverged, replay stops here (state sync repairs it)`);
        return 'diverged';
      }
      for (const i of rec.inputs) this.pool.take([i.hash.toString('hex')]);
      if (!this.appendRecord({ ...rec, outputs: [] }, prev.result)) return 'diverged';
      for (const i of rec.inputs) appended.push(orderedHash(i.nonce, i.hash));
      applied++;
      await this.runExecution({ seqNo: rec.seqNo, hash: rec.hash, timestampMs: rec.timestampMs, users: rec.users, inputs: rec.inputs });
      this.prepareNext(rec.users.length, true); // boots while the next record is checked or fetched
    }
    return applied > 0 ? 'some' : 'none';
  }

  private onLedgerRequest(r: PeerRequest): void {
    const { from, to } = decodeGetLedgers(r.body);
    const out: Buffer[] = [];
    let bytes = 0;
    for (let s = from; s <= Math.min(to, this.ledger.last().seqNo); s++) {
      const rec = encodeRecord(this.ledger.get(s)!);
      if (out.length > 0 && bytes + rec.length > MAX_LEDGER_REPLY_BYTES) break;
      out.push(rec);
      bytes += rec.length;
    }
    r.reply(encodeByteList(out));
  }

  /** Questions from UNL peers (p2p req frames); an unanswerable one gets an empty answer. */
  private onPeerRequest(r: PeerRequest): void {
    if (this.stopping || !r.fromUnl) return;
    try {
      if (r.kind === REQUEST.objects) return this.onObjectRequest(r);
      if (r.kind === REQUEST.ledgers) return this.onLedgerRequest(r);
      this.log.debug(`peer ${r.from.slice(0, 10)}: unknown request kind ${r.kind}`);
    } catch (err) {
      this.log.warn(`peer ${r.from.slice(0, 10)}: malformed ${r.kind} request: ${(err as Error).message}`);
    }
    r.reply([]);
  }

  private async execute(l: LedgerToRun, run: { exec: ContractExecution | null }): Promise<RoundTimings> {
    const t0 = performance.now();
    const byUser = new Map<string, Buffer[]>(l.users.map((u) => [u.toString('hex'), []]));
    for (const i of l.inputs) byUser.get(i.pubkey.toString('hex'))?.push(i.blob);
    const quota = this.config.contract.state_quota;
    const launch = this.consensusLaunch();
    const before = Buffer.from(this.rw.root, 'hex');
    const warm = await this.warm.take(launch, quota, byUser.size, l.timestampMs);
    if (!warm) await this.rw.begin(l.timestampMs, quota);
    const tBegun = performance.now();
    let res: ContractRunResult;
    try {
      const contractRun = {
        args: this.contractArgs({ readonly: false, timestamp: l.timestampMs, lclSeqNo: l.seqNo, lclHash: l.hash.toString('hex') }),
        users: [...byUser.entries()].map(([pubkeyHex, ins]) => ({ pubkeyHex, inputs: ins })),
        // HotPocket delivers a node's NPL message to every UNL member, itself included.
        onNplMessage: (data: Buffer) => {
          this.net?.broadcast(KIND.npl, encodeNpl({ seqNo: l.seqNo, data }), { relay: true, context: 'npl' });
          run.exec?.deliverNpl(this.keys.publicKey.toString('hex'), data);
        },
        onControlMessage: (msg: unknown) => this.onContractControl(l.seqNo, msg),
      };
      run.exec = warm ? warm.start(contractRun) : startContract({ ...launch, ...contractRun });
      for (const [author, data] of this.npl.get(l.seqNo) ?? []) run.exec.deliverNpl(author, data);
      this.dropNplUpTo(l.seqNo);
      res = await run.exec.done;
      if (res.error) throw new Error(res.error);
    } catch (err) {
      await this.rw.rollback();
      this.log.error(`ledger ${l.seqNo}: contract could not run: ${(err as Error).message}; state rolled back, no outputs`);
      this.finish(l.seqNo, new Map(), before, this.currentConfigHash());
      return { seqNo: l.seqNo, inputs: l.inputs.length, spawnMs: 0, execMs: 0, commitMs: 0, totalMs: performance.now() - t0, warm: false };
    }
    const tCommit = performance.now();
    let outputs = res.outputs;
    let stateRoot = before;
    let configHash = this.currentConfigHash();
    let tLedger = tCommit;
    // A contract killed by a signal or the timeout may have left state half-written: roll it back
    // and drop its outputs, so every node that killed it ends in the same state. SIGINT is how
    // the HotPocket SDK ends itself when told to (forceTerminate, used by NPL contracts): a
    // deliberate exit, not a crash.
    if (res.timedOut || (res.signal && res.signal !== 'SIGINT')) {
      this.log.warn(`ledger ${l.seqNo}: contract ${res.timedOut ? `timed out after ${this.config.contract.round_limits.exec_timeout} ms` : `died by ${res.signal}`}; state rolled back, outputs dropped`);
      await this.rw.rollback();
      outputs = new Map();
    } else {
      if (res.exitCode !== 0 && !res.signal) this.log.warn(`ledger ${l.seqNo}: contract exited with code ${res.exitCode}; its state and outputs are kept (HotPocket semantics)`);
      // The ledger that asked for this run is durable before its state is: a crash must not leave
      // committed state that no ledger on disk led to.
      await this.ledger.synced();
      tLedger = performance.now();
      const snap = await this.rw.commit([`/${PATCH_FILE}`]).catch((err: Error) => {
        throw new Error(`cannot commit the contract's state: ${err.message}`);
      });
      stateRoot = Buffer.from(snap.root, 'hex');
      const patch = snap.hashes[`/${PATCH_FILE}`];
      const newHash = patch ? Buffer.from(patch, 'hex') : ZERO_HASH;
      if (!newHash.equals(configHash)) this.notePatch(l.seqNo, newHash);
      configHash = newHash;
    }
    for (const u of res.truncatedUsers) this.log.warn(`ledger ${l.seqNo}: outputs to ${u.slice(0, 12)}… truncated at ${this.config.contract.round_limits.user_output_bytes} bytes`);
    const tState = performance.now();
    this.finish(l.seqNo, outputs, stateRoot, configHash);
    const commitMs = performance.now() - tCommit;
    this.log.debug(`ledger ${l.seqNo} executed: ${l.inputs.length} inputs, ${Math.round(performance.now() - t0)} ms = begin ${Math.round(tBegun - t0)}${warm ? ' (warm)' : ''}, ` +
      `spawn ${Math.round(res.timings.spawnMs)}, contract ${Math.round(res.timings.execMs)}, until done ${Math.round(tCommit - tBegun - res.timings.spawnMs - res.timings.execMs)}, ` +
      `ledger durable ${Math.round(tLedger - tCommit)}, state commit ${Math.round(tState - tLedger)}, result ${Math.round(performance.now() - tState)}`);
    return { seqNo: l.seqNo, inputs: l.inputs.length, spawnMs: res.timings.spawnMs, execMs: res.timings.execMs, commitMs, totalMs: performance.now() - t0, warm: res.timings.warm };
  }

  /**
   * HotPocket's peer_changeset (the SDK's updatePeers): the contract tells its node whom to dial.
   * Local to this node, like HotPocket's: peers are transport, not agreed state.
   */
  private onContractControl(seqNo: number, msg: unknown): void {
    const m = msg as { type?: unknown; add?: unknown; remove?: unknown };
    if (!m || m.type !== 'peer_changeset') return this.log.warn(`ledger ${seqNo}: unknown control message from the contract: ${JSON.stringify(msg).slice(0, 200)}`);
    const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && /^[^\s:]+:\d{1,5}$/.test(x)) : []);
    const add = list(m.add);
    const remove = list(m.remove);
    if (!this.net) return this.log.warn(`ledger ${seqNo}: the contract changed peers, but this node runs without a peer network (a UNL of one, no known_peers)`);
    try {
      this.net.removePeers(remove);
      this.net.addPeers(add);
      this.log.info(`ledger ${seqNo}: the contract changed the peer list: +[${add.join(', ')}] -[${remove.join(', ')}]`);
    } catch (err) {
      this.log.warn(`ledger ${seqNo}: the contract sent a bad peer_changeset: ${(err as Error).message}`);
    }
  }

  /**
   * Takes an execution's result: known at once (the consensus votes with it, the next ledger
   * records its outputs), then recorded durably (a restart must not run it twice) and only then
   * is its output root signed for users, in the background and in order. The record can be large
   * (every output) and its fsyncs slow on a busy disk: waiting for it here cost loaded rounds
   * hundreds of ms. A crash before it is durable re-runs the ledger from the state it recorded,
   * as after a crash mid-execution; votes need no such care (one in another round is not
   * equivocation), but a second signed output root for the same ledger would be, so the
   * signature leaves only after the record is durable.
   */
  private finish(seqNo: number, outputs: Map<string, Buffer[]>, stateRoot: Buffer, configHash: Buffer): void {
    const result = finishExecution(seqNo, outputs, stateRoot, this.keys);
    this.remember({ result, configHash });
    this.execFile.save(result, configHash).then(
      () => {
        const sig = result.unlSig[0][1];
        this.addOutputSig(seqNo, this.keys.publicKey.toString('hex'), result.outputRoot, sig);
        this.net?.broadcast(KIND.outputSig, encodeOutputSig({ seqNo, root: result.outputRoot, sig }), { relay: true, context: 'proposal' });
      },
      (err: Error) => this.fail(`cannot record the result of ledger ${seqNo} in ${this.execFile.file}: ${err.message}`),
    );
  }

  /** A member's (or our own) signature of an output root: outputs waiting for it may go now. */
  private addOutputSig(seqNo: number, signerHex: string, root: Buffer, sig: Buffer): void {
    this.outputSigs.add(seqNo, signerHex, root, sig);
    for (const w of [...this.outputWaits]) if (w.seqNo === seqNo) w.check();
  }

  /** The contract rewrote patch.cfg: read what it committed (the mount shows the new root now). */
  private notePatch(seqNo: number, configHash: Buffer): void {
    let settings: ConsensusSettings | string;
    try {
      settings = consensusSettingsOf(fs.readFileSync(path.join(this.rw.mountpoint, PATCH_FILE)));
    } catch (err) {
      settings = `cannot read it: ${(err as Error).message}`;
    }
    if (typeof settings === 'string') {
      this.pendingSettings = null;
      this.log.error(`ledger ${seqNo}: the contract changed patch.cfg, but ${settings}; the consensus keeps its current settings`);
      return;
    }
    this.pendingSettings = { configHash, settings };
  }

  private remember(e: Executed): void {
    this.results.set(e.result.seqNo, e);
    for (const s of this.results.keys()) if (s + KEEP_RESULTS <= e.result.seqNo) this.results.delete(s);
  }

  private currentConfigHash(): Buffer {
    let newest: Executed | null = null;
    for (const e of this.results.values()) if (!newest || e.result.seqNo > newest.result.seqNo) newest = e;
    return newest?.configHash ?? ZERO_HASH;
  }

  /**
   * Where execution stands after a start: the result of executing the last closed ledger if it is
   * on disk and matches the committed state; otherwise the state goes back to what that ledger
   * records (a retained snapshot) and the ledger runs again. Genesis has nothing to execute.
   */
  private recoverExecution(last: LedgerRecord): { executed: Executed | null; reexecute: boolean } {
    // A previous run killed with -9 may leave its statefs child exiting for a moment: wait for its lock.
    const store = ObjectStore.open(this.paths.store, { lockWaitMs: 15_000 });
    try {
      const root = Buffer.from(store.current.root, 'hex');
      const configOf = (r: Buffer) => store.entryHash(r, `/${PATCH_FILE}`) ?? ZERO_HASH;
      if (last.seqNo === 0) return { executed: { result: finishExecutionFromUsers(0, [], root, this.keys), configHash: configOf(root) }, reexecute: false };
      const saved = this.execFile.load(this.keys);
      if (saved && saved.result.seqNo === last.seqNo && saved.result.stateRoot.equals(root)) return { executed: saved, reexecute: false };
      if (!root.equals(last.stateHash)) {
        try {
          store.importSnapshot(last.stateHash, [], last.timestampMs);
          this.log.warn(`state root ${root.toString('hex').slice(0, 12)} is not the result of executing ledger ${last.seqNo}; went back to ${last.stateHash.toString('hex').slice(0, 12)}, the state ledger ${last.seqNo} records`);
        } catch (err) {
          this.log.error(`state root ${root.toString('hex').slice(0, 12)} is neither the result of executing ledger ${last.seqNo} nor the state it records, which this store does not hold (${(err as Error).message}); the node will not vote on state until it is synced`);
          return { executed: null, reexecute: false };
        }
      }
      // The configuration in force is the one in the state ledger `last` was executed from.
      this.remember({ result: finishExecutionFromUsers(last.seqNo - 1, [], last.stateHash, this.keys), configHash: configOf(last.stateHash) });
      return { executed: null, reexecute: true };
    } finally {
      store.close();
    }
  }

  // ---- peers ---------------------------------------------------------------------------------

  private needsPeers(): boolean {
    return this.unlHex.length > 1 || this.config.mesh.known_peers.length > 0;
  }

  private onPeerMessage(m: PeerMessage): void {
    if (this.stopping || !m.isUnl) return; // only UNL members' messages count (observers are refused anyway)
    try {
      switch (m.kind) {
        case KIND.proposal:
          return this.onProposalMessage(m);
        case KIND.attestation:
          return this.onAttestationMessage(m);
        case KIND.inputs:
          return this.onInputsMessage(m);
        case KIND.getInputs:
          return this.onGetInputs(m);
        case KIND.outputSig: {
          const o = decodeOutputSig(m.body);
          this.addOutputSig(o.seqNo, m.author, o.root, o.sig);
          return;
        }
        case KIND.npl:
          return this.onNplMessage(m);
        default:
          this.log.debug(`peer ${m.author.slice(0, 10)}: unknown message kind ${m.kind}`);
      }
    } catch (err) {
      this.log.warn(`peer ${m.author.slice(0, 10)}: malformed ${m.kind}${m.relayed ? ` (relayed by ${m.from.slice(0, 10)})` : ''}: ${(err as Error).message}`);
    }
  }

  private onProposalMessage(m: PeerMessage): void {
    if (m.context !== 'proposal' || m.flags !== PROPOSAL_FLAGS || !(m.body instanceof Uint8Array)) throw new Error('a proposal must be a raw relayed body signed in context "proposal"');
    const p = decodeProposalBody(Buffer.from(m.body), this.core.limits);
    if ((p.stage === 0 || p.stage === 1) && p.pol && !polCertSignaturesValid(this.contractId, p.pol)) throw new Error(`its proof of lock for seq ${p.seqNo} carries a signature that does not verify`);
    this.dispatch({ type: 'proposal', proposal: { ...p, author: Buffer.from(m.author, 'hex'), sig: Buffer.from(m.sig) } });
  }

  private onAttestationMessage(m: PeerMessage): void {
    if (!(m.body instanceof Uint8Array)) throw new Error('an attestation must be a raw body');
    const a = decodeAttestation(Buffer.from(m.body));
    if (a.author.toString('hex') !== m.author) throw new Error('attestation author differs from the message author');
    if (!verifyIn('ledger-close', this.contractId, a.hash, a.sig, a.author)) throw new Error(`attestation of ledger ${a.seqNo} does not verify`);
    this.dispatch({ type: 'attestation', attestation: a });
  }

  /**
   * Inputs from peers. A gossip batch holds up to a thousand inputs, ~150 ms of signature checks:
   * parsed here in slices, their signatures checked on the worker thread meanwhile, so proposals,
   * stage ticks and the contract's session are never held up behind a batch (at 200 ms rounds one
   * such stall costs the round). Beyond
   * MAX_INPUT_BACKLOG unchecked inputs, further batches are dropped (counted): an input a
   * proposal needs is fetched again then (hpn.getin).
   */
  private onInputsMessage(m: PeerMessage): void {
    const list = decodeInputs(m.body, this.config.user.max_bytes_per_msg);
    if (this.inputBacklog + list.length > MAX_INPUT_BACKLOG && (m.flags & FLAG_RELAY) !== 0) {
      this.droppedGossipInputs += list.length;
      return;
    }
    this.inputBacklog += list.length;
    void this.checkPeerInputs(m, list).finally(() => (this.inputBacklog -= list.length));
  }

  private async checkPeerInputs(m: PeerMessage, list: WireInput[]): Promise<void> {
    let forged = 0;
    for (let at = 0; at < list.length && !this.stopping; at += INPUT_CHECK_SLICE) {
      const parsed: Array<{ user: Buffer; input: SubmittedInput }> = [];
      for (const w of list.slice(at, at + INPUT_CHECK_SLICE)) {
        // Inputs reach us from the user's node and again through relays: one we hold (verified
        // when it came) or one already in a ledger costs a hash here, not a second signature check.
        const h = inputHashOf(w.sig);
        if (this.pool.get(h.toString('hex')) || this.ledger.findInput(h)) continue;
        const c = parseSignedInput(w.protocol, w.container, w.sig, h);
        if (c.ok) parsed.push({ user: w.user, input: c.input });
        else forged++;
      }
      // The signatures are checked on the worker thread, off this loop (crypto/verifyWorker.ts).
      const good = await verifyBatch(parsed.map(({ user, input }) => ({ message: input.container, sig: input.sig, pubkey: user })));
      if (this.stopping) return;
      const lcl = this.ledger.last().seqNo;
      const fresh = [];
      for (let k = 0; k < parsed.length; k++) {
        if (!good[k]) {
          forged++;
          continue;
        }
        const p = pendingInput(parsed[k].user, parsed[k].input);
        if (this.pool.admitRelayed(p, lcl).ok) fresh.push(candidateOf(p));
      }
      if (fresh.length === 0) continue;
      // Inputs we asked for are needed now; gossiped ones wait out a stage like everyone's do.
      if ((m.flags & FLAG_RELAY) !== 0) this.offerLater(fresh);
      else this.dispatch({ type: 'inputsAvailable', inputs: fresh });
    }
    if (forged > 0) this.log.warn(`peer ${m.author.slice(0, 10)}: dropped ${forged} relayed input(s) whose user signature or format is invalid`);
  }

  private onGetInputs(m: PeerMessage): void {
    const out: WireInput[] = [];
    let bytes = 0;
    const flush = () => {
      if (out.length > 0) this.net?.sendTo(m.author, KIND.inputs, encodeInputs(out.splice(0)));
      bytes = 0;
    };
    for (const h of decodeGetInputs(m.body)) {
      const hex = h.toString('hex');
      const p = this.pool.get(hex);
      const i = p ?? this.ledgerInput(h);
      if (!i) continue;
      const w = 'userHex' in i ? { protocol: i.protocol, user: i.user, container: i.container, sig: i.sig } : { protocol: i.protocol, user: i.pubkey, container: i.container, sig: i.sig };
      if (bytes + w.container.length > GOSSIP_BATCH_BYTES) flush();
      out.push(w);
      bytes += w.container.length;
    }
    flush();
  }

  private ledgerInput(h: Buffer): LedgerInput | null {
    const at = this.ledger.findInput(h);
    if (!at) return null;
    return this.ledger.get(at.seqNo)?.inputs.find((i) => i.hash.equals(h)) ?? null;
  }

  private fetchInputs(hashes: Buffer[], peers: string[]): void {
    if (!this.net || hashes.length === 0) return;
    const connected = new Set(this.net.connectedPeers());
    const targets = peers.filter((p) => connected.has(p));
    for (let i = 0; i < hashes.length; i += MAX_INPUTS_PER_MESSAGE) {
      const body = encodeGetInputs(hashes.slice(i, i + MAX_INPUTS_PER_MESSAGE));
      if (targets.length > 0) for (const p of targets) this.net.sendTo(p, KIND.getInputs, body);
      else this.net.broadcast(KIND.getInputs, body);
    }
  }

  private queueGossip(w: WireInput): void {
    this.gossip.push(w);
    this.gossipBytes += w.container.length;
    if (this.gossip.length >= MAX_INPUTS_PER_MESSAGE || this.gossipBytes >= GOSSIP_BATCH_BYTES) return this.flushGossip();
    this.gossipTimer ??= setTimeout(() => this.flushGossip(), GOSSIP_BATCH_MS);
  }

  private flushGossip(): void {
    if (this.gossipTimer) clearTimeout(this.gossipTimer);
    this.gossipTimer = null;
    const batch = this.gossip;
    this.gossip = [];
    this.gossipBytes = 0;
    if (batch.length > 0 && this.net && !this.stopping) this.net.broadcast(KIND.inputs, encodeInputs(batch), { relay: true });
  }

  /** NPL (HotPocket's node party line): delivered to the execution of the same ledger, from UNL members. */
  private onNplMessage(m: PeerMessage): void {
    if (m.context !== 'npl') throw new Error('NPL messages must be signed in context "npl"');
    const msg = decodeNpl(m.body, this.config.contract.round_limits.npl_output_bytes || 1024 * 1024);
    const running = this.running;
    if (running?.seqNo === msg.seqNo && running.exec) {
      running.exec.deliverNpl(m.author, msg.data);
      return;
    }
    const lcl = this.ledger.last().seqNo;
    // Early for an execution this node has yet to start, or whose process is not handed its run
    // yet (execute() delivers these first): keep it (bounded). Older ones are stale. Dropping one
    // would make this node's execution differ from the others'.
    if (msg.seqNo < (running ? running.seqNo : lcl) || msg.seqNo > lcl + 2 || this.nplCount >= MAX_NPL_BUFFERED) return;
    const list = this.npl.get(msg.seqNo) ?? [];
    list.push([m.author, msg.data]);
    this.npl.set(msg.seqNo, list);
    this.nplCount++;
  }

  private dropNplUpTo(seqNo: number): void {
    for (const [s, list] of this.npl) {
      if (s <= seqNo) {
        this.nplCount -= list.length;
        this.npl.delete(s);
      }
    }
  }

  // ---- misc --------------------------------------------------------------------------------------

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
      unl: Object.fromEntries(this.unlHex.map((k) => [k, { active_on: 0 }])),
      ...run,
    };
  }

  /**
   * How consensus executions start. A Node.js contract always gets its args over a packet socket,
   * warm or not (see ContractLaunch.argsAsPackets), so it sees the same stdin either way; any other
   * program is exec'd once its args are in (execAfterArgs), warm or not, with them in a file.
   */
  private consensusLaunch(): ContractLaunch {
    const c = this.config.contract;
    return {
      ...this.contractBase(),
      cwd: path.join(this.rw.mountpoint, STATE_SUBDIR),
      stderr: this.config.log.level === 'debug' ? 'inherit' : 'ignore',
      argsAsPackets: true,
      execAfterArgs: !isNodeBinary(c.bin_path),
    };
  }

  /** Starts the next execution's contract process now (warm start), when this contract allows it. */
  private prepareNext(users: number, duringCatchUp = false): void {
    const recentMax = this.warm.noteUsers(users);
    if (this.stopping || (this.paused && !duringCatchUp) || this.stateDiverged || this.running) return;
    const launch = this.consensusLaunch();
    if (this.config.contract.warm_start === false) return;
    this.warm.prepare(launch, this.config.contract.state_quota, warmSlots(recentMax, launch.limits.procOfdCount));
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

/** nonce (u64 BE) ‖ input hash: the consensus orders inputs by these bytes (HotPocket's order). */
function orderedHash(nonce: bigint, hash: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeBigUInt64BE(nonce, 0);
  hash.copy(h, 8);
  return h;
}

function candidateOf(i: PendingInput) {
  return { hash: orderedHash(i.nonce, i.hash), user: i.user, maxLedgerSeqNo: i.maxLedgerSeqNo };
}

function decodeOrError(bytes: Buffer): LedgerRecord | Error {
  try {
    return decodeRecord(bytes);
  } catch (err) {
    return err as Error;
  }
}

/** One terminal line: objects and bytes done, what is known to be left, rate and ETA. */
function progressBar(p: StateSyncProgress): string {
  const known = p.objectsFetched + p.pending;
  const frac = known > 0 ? p.objectsFetched / known : 0;
  const width = 24;
  const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
  const rate = p.bytesFetched / Math.max(0.001, p.elapsedMs / 1000);
  const avg = p.objectsFetched > 0 ? p.bytesFetched / p.objectsFetched : 0;
  const eta = rate > 0 ? (p.pending * avg) / rate : 0;
  return `state sync [${bar}] ${p.objectsFetched}/${known} objects, ${(p.bytesFetched / 1048576).toFixed(1)} MiB, ${(rate / 1048576).toFixed(1)} MiB/s, ETA ${eta.toFixed(0)} s (at least)  `;
}
