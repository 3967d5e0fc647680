// Deterministic simulation of the consensus core (FoundationDB simulator / TigerBeetle VOPR style).
//
// N ConsensusCore instances run in one process over a simulated network driven by one seeded PRNG:
// message delays, drops, duplicates and reordering, skewed clocks, crashes and restarts (durable
// ledgers and locks survive, memory does not), partitions, slow and corrupt executors, and
// Byzantine members (equivocation, wrong state roots, random garbage, replays, and a colluding
// "mirror" attack at the fault bound). Every message goes through the real wire codec and a
// simulated signature check. Invariants are checked after every step; a failure prints the
// scenario and seed, and `HP_SIM_SCENARIO=<name> HP_SIM_SEED=<seed>` replays exactly that run.
// `HP_SIM_SEEDS=<n>` runs n seeds per scenario (default: a quick set that keeps `npm test` short).
import test from 'node:test';
import assert from 'node:assert/strict';
import { hash } from '../src/crypto/hash';
import { GENESIS_HASH, inputListHash, ledgerHash, userListHash, ZERO_HASH } from '../src/ledger/ledgerHash';
import {
  Attestation, ClosedLedger, ConsensusAction, ConsensusCore, ConsensusEvent, decodeAttestation, decodePersistedLock, decodeSignedProposal, DEFAULT_LIMITS, encodeAttestation, encodePersistedLock,
  encodeProposalBody, encodeSignedProposal, ExecResult, isVoteProposal, LedgerRef, maxEquivocators, maxSilent, PersistedLock, prevoteOf,
  Proposal, quorumSize, SignedProposal, SyncRequest, Value,
} from '../src/consensus';

// ---- deterministic randomness and time -----------------------------------------------------------

/** sfc32: small, fast, good enough for simulation; state seeded from one 32-bit seed. */
class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.float() * xs.length)];
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Binary min-heap of events ordered by time, then by insertion (so equal times stay deterministic). */
class EventQueue<T extends { at: number }> {
  private readonly items: { ev: T; n: number }[] = [];
  private counter = 0;
  get size(): number {
    return this.items.length;
  }
  push(ev: T): void {
    const it = { ev, n: this.counter++ };
    const a = this.items;
    a.push(it);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l], a[m])) m = l;
        if (r < a.length && this.less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top.ev;
  }
  private less(x: { ev: T; n: number }, y: { ev: T; n: number }): boolean {
    return x.ev.at < y.ev.at || (x.ev.at === y.ev.at && x.n < y.n);
  }
}

// ---- scenarios -------------------------------------------------------------------------------------

type ByzMode = 'equivocate' | 'wrongState' | 'garbage' | 'replay' | 'mirror';

interface NetParams {
  dropP: number;
  dupP: number;
  delayMinMs: number;
  delayMaxMs: number;
  lateP: number; // a message is late: delivered up to lateMaxMs later (crosses stage boundaries)
  lateMaxMs: number;
  /** Extra loss for what finishes a round (precommits, attestations, relayed proofs): splits who
   *  decides, the situation in which locks keep a re-tried seq from deciding something else. */
  voteDropP?: number;
}

interface Scenario {
  name: string;
  nodes: number;
  threshold: number;
  rounds: number;
  net: NetParams;
  skewMaxMs: number;
  execMaxMs: number;
  slowExecP: number; // an execution takes 1–2 rounds
  inputsPerRound: number;
  relay: 'all' | 'partial' | 'split';
  crashP: number; // per honest node per round
  maxDown: number;
  crashedFromStart: number[];
  partitions: { fromRound: number; toRound: number; groups: number[][] }[];
  randomPartitions: boolean;
  byzantine: { index: number; mode: ByzMode }[];
  corruptExecP: { index: number; p: number }[];
  quietTailRounds: number; // last rounds: everyone up, network healed (liveness is judged here)
  expect: {
    minTailLedgers?: number; // ledgers that must close during the quiet tail
    minLedgerFraction?: number; // ledgers ≥ fraction × rounds over the whole run
    healWithinRounds?: number; // after each scheduled partition heals, a new ledger within this
    noNewLedgerInPartition?: boolean;
    fork?: boolean; // the run must end in a detected fork (the attack at the fault bound)
  };
}

const ROUND_MS = 400;
const LOG_LINES = Number(process.env.HP_SIM_LOG_LINES ?? 60);
const T0 = 1_700_000_000_000; // a multiple of ROUND_MS
const CONTRACT_ID = 'sim-contract';

const CALM: NetParams = { dropP: 0, dupP: 0, delayMinMs: 1, delayMaxMs: 20, lateP: 0, lateMaxMs: 0 };
const LOSSY: NetParams = { dropP: 0.05, dupP: 0.03, delayMinMs: 1, delayMaxMs: 40, lateP: 0.02, lateMaxMs: 600 };

function scenario(s: Partial<Scenario> & Pick<Scenario, 'name' | 'nodes' | 'threshold' | 'rounds'>): Scenario {
  return {
    net: CALM, skewMaxMs: 5, execMaxMs: 60, slowExecP: 0, inputsPerRound: 3, relay: 'all', crashP: 0, maxDown: 0,
    crashedFromStart: [], partitions: [], randomPartitions: false, byzantine: [], corruptExecP: [], quietTailRounds: 0, expect: {}, ...s,
  };
}

/** A scenario with random knobs drawn from the seed: the bulk of the state-space exploration. */
function chaos(seed: number): Scenario {
  const r = new Rng(seed ^ 0x5eed);
  const nodes = r.pick([3, 4, 5, 5, 7, 7, 10]);
  const threshold = r.pick([51, 60, 66, 67, 75, 80, 80, 90, 100]);
  const silent = maxSilent(nodes, threshold);
  return scenario({
    name: 'chaos', nodes, threshold, rounds: 160,
    net: {
      dropP: r.pick([0, 0.02, 0.08, 0.15]), dupP: r.pick([0, 0.05]), delayMinMs: 1, delayMaxMs: r.pick([10, 40, 80]), lateP: r.pick([0, 0.02, 0.05]), lateMaxMs: 900,
      voteDropP: r.pick([0, 0, 0.3, 0.6]),
    },
    skewMaxMs: r.pick([0, 5, 20]), execMaxMs: r.pick([10, 80, 150]), slowExecP: r.pick([0, 0.02]),
    inputsPerRound: r.int(0, 6), relay: r.pick(['all', 'all', 'partial'] as const),
    crashP: r.pick([0, 0.01, 0.03]), maxDown: r.int(0, nodes - 1), randomPartitions: r.chance(0.5),
    // A corrupt executor is a fault: it can only be out-voted (and resynced) if one fault is tolerated.
    corruptExecP: silent >= 1 && r.chance(0.3) ? [{ index: r.int(0, nodes - 1), p: 0.05 }] : [],
    quietTailRounds: 40,
    // Liveness is judged only when the quiet tail leaves a quorum of honest, connected nodes.
    expect: { minTailLedgers: silent >= 0 ? 5 : undefined },
  });
}

const SCENARIOS: { name: string; seeds: number; make: (seed: number) => Scenario }[] = [
  {
    name: 'calm', seeds: 5,
    make: (seed) => {
      const r = new Rng(seed);
      const nodes = r.pick([1, 3, 4, 5, 7]);
      return scenario({ name: 'calm', nodes, threshold: r.pick([66, 80, 100]), rounds: 120, expect: { minLedgerFraction: 0.9 } });
    },
  },
  { name: 'chaos', seeds: 10, make: chaos },
  {
    name: 'crash-one-5at80', seeds: 3,
    make: () => scenario({ name: 'crash-one-5at80', nodes: 5, threshold: 80, rounds: 150, net: { ...CALM, dropP: 0.01 }, crashedFromStart: [4], expect: { minLedgerFraction: 0.6 } }),
  },
  {
    name: 'split-decisions', seeds: 4,
    // Precommits, attestations and relayed proofs are lost often: some nodes decide a seq while the
    // others retry it in later rounds. Only the locks keep those later rounds on the same value.
    make: (seed) => {
      const r = new Rng(seed);
      return scenario({
        name: 'split-decisions', nodes: r.pick([4, 5, 7]), threshold: r.pick([66, 75, 80]), rounds: 200,
        net: { ...LOSSY, dropP: 0.05, voteDropP: r.pick([0.4, 0.6, 0.75]) }, inputsPerRound: 4, crashP: 0.01, maxDown: 1,
        quietTailRounds: 30, expect: { minTailLedgers: 5 },
      });
    },
  },
  {
    name: 'partition-2|3', seeds: 3,
    make: (seed) =>
      scenario({
        name: 'partition-2|3', nodes: 5, threshold: new Rng(seed).pick([66, 80]), rounds: 160, net: { ...LOSSY, dropP: 0.02 },
        partitions: [{ fromRound: 30, toRound: 70, groups: [[0, 1], [2, 3, 4]] }, { fromRound: 100, toRound: 120, groups: [[3, 4], [0, 1, 2]] }],
        expect: { noNewLedgerInPartition: true, healWithinRounds: 8 },
      }),
  },
  {
    name: 'byzantine', seeds: 3,
    make: (seed) => {
      const r = new Rng(seed);
      // N = 7 at 66 %: q = 5, safety tolerates 2 equivocators, liveness 2 silent: both hold with 2 Byzantine.
      const modes: ByzMode[] = ['equivocate', 'wrongState', 'garbage', 'replay'];
      return scenario({
        name: 'byzantine', nodes: 7, threshold: 66, rounds: 160, net: { ...LOSSY, dropP: 0.01, lateP: 0.01 },
        byzantine: [{ index: 5, mode: r.pick(modes) }, { index: 6, mode: r.pick(modes) }],
        inputsPerRound: 4, quietTailRounds: 40, expect: { minTailLedgers: 10 },
      });
    },
  },
  {
    name: 'byzantine-safety-only', seeds: 3,
    // N = 4 at 80 %: q = 4 = N, so 3 liars cannot fork it (2q−N = 4), and nothing can close (no liveness).
    make: (seed) => {
      const r = new Rng(seed);
      const modes: ByzMode[] = ['equivocate', 'wrongState', 'garbage', 'replay', 'mirror'];
      return scenario({
        name: 'byzantine-safety-only', nodes: 4, threshold: 80, rounds: 80, net: LOSSY, relay: 'partial', inputsPerRound: 1,
        byzantine: [{ index: 1, mode: r.pick(modes) }, { index: 2, mode: r.pick(modes) }, { index: 3, mode: r.pick(modes) }],
      });
    },
  },
  {
    name: 'corrupt-executor', seeds: 2,
    make: () => scenario({
      name: 'corrupt-executor', nodes: 4, threshold: 75, rounds: 150, net: { ...CALM, dropP: 0.01 }, corruptExecP: [{ index: 0, p: 0.08 }],
      quietTailRounds: 30, expect: { minTailLedgers: 10 },
    }),
  },
  {
    name: 'late-votes-3at80', seeds: 4,
    // A loaded machine: every vote needs all 3 members (80 % of 3), and one message in six arrives
    // up to three stages late. A polka completed after its round must still decide it (about 73 %
    // of rounds close; 56 % without the late precommit).
    make: () => scenario({
      name: 'late-votes-3at80', nodes: 3, threshold: 80, rounds: 150,
      net: { ...CALM, delayMaxMs: 40, lateP: 0.16, lateMaxMs: 300 }, expect: { minLedgerFraction: 0.6 },
    }),
  },
  {
    name: 'mirror-below-bound', seeds: 3,
    // N = 4 at 66 %: q = 3, 2q−N = 2. One colluding mirror (< 2) must not split honest nodes that hold different inputs.
    make: () => scenario({ name: 'mirror-below-bound', nodes: 4, threshold: 66, rounds: 80, relay: 'partial', inputsPerRound: 5, byzantine: [{ index: 3, mode: 'mirror' }] }),
  },
  {
    name: 'mirror-at-bound', seeds: 2,
    // Two mirrors (= 2q−N) echo each honest node's own votes back to it: the checker must see the fork.
    make: () => scenario({ name: 'mirror-at-bound', nodes: 4, threshold: 66, rounds: 40, relay: 'split', inputsPerRound: 5, byzantine: [{ index: 2, mode: 'mirror' }, { index: 3, mode: 'mirror' }], expect: { fork: true } }),
  },
];

// ---- simulated crypto ------------------------------------------------------------------------------

// A signature is a keyed hash only its owner can make: H(secret ‖ context ‖ contract ‖ payload),
// widened to 64 bytes. Byzantine nodes hold only their own secrets, as with real keys.
function mac(secret: Buffer, context: string, payload: Buffer): Buffer {
  const h1 = hash(Buffer.concat([secret, Buffer.from(`${context}\0${CONTRACT_ID}\0`), payload]));
  return Buffer.concat([h1, h1]);
}

function tagHash(tag: string, ...parts: Buffer[]): Buffer {
  return hash(Buffer.concat([Buffer.from(tag), ...parts]));
}

const GENESIS_RESULT: ExecResult = { outputRoot: Buffer.from(ZERO_HASH), stateRoot: tagHash('genesis-state'), configHash: tagHash('genesis-config') };

/** The simulated contract: the state after ledger N is a hash of the state before it and the ledger. */
function runContract(prev: ExecResult, ledgerHashBuf: Buffer, seqNo: number): ExecResult {
  const stateRoot = tagHash('state', prev.stateRoot, ledgerHashBuf);
  return {
    stateRoot,
    outputRoot: tagHash('out', stateRoot, ledgerHashBuf),
    configHash: seqNo % 37 === 0 ? tagHash('cfg', prev.configHash, ledgerHashBuf) : prev.configHash,
  };
}

// ---- the simulation --------------------------------------------------------------------------------

// Every recipient of one broadcast gets the same Msg: it is decoded and its signature checked once,
// and the decoded object is deep-frozen before it is shared, so a core that mutated what it
// received would throw instead of corrupting its peers' view.
type Msg = { kind: 'p' | 'a'; bytes: Buffer; vote?: boolean; verified?: boolean; decoded?: SignedProposal | Attestation | null };

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Buffer.isBuffer(o) && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
type SimInput = { hash: Buffer; user: Buffer; maxLedgerSeqNo: number };

type SimEvent =
  | { at: number; kind: 'tick'; node: number; epoch: number }
  | { at: number; kind: 'deliver'; node: number; from: number; msg: Msg; loopback: boolean }
  | { at: number; kind: 'execDone'; node: number; epoch: number; seqNo: number; result: ExecResult }
  | { at: number; kind: 'sync'; node: number; epoch: number; req: SyncRequest }
  | { at: number; kind: 'crash'; node: number }
  | { at: number; kind: 'restart'; node: number }
  | { at: number; kind: 'inputs' }
  | { at: number; kind: 'input'; node: number; from: number; input: SimInput }
  | { at: number; kind: 'fetch'; node: number; epoch: number; hashes: Buffer[] }
  | { at: number; kind: 'partition'; groups: number[][] | null };

interface StoredLedger {
  ledger: ClosedLedger;
}

class SimNode {
  readonly key: Buffer;
  readonly secret: Buffer;
  up = true;
  epoch = 0;
  core: ConsensusCore | null = null;
  // durable: survive a crash
  readonly ledgers = new Map<number, StoredLedger>();
  lastClosed: LedgerRef = { seqNo: 0, hash: GENESIS_HASH, timestampMs: 0 };
  readonly results = new Map<number, ExecResult>([[0, GENESIS_RESULT]]);
  readonly inLedger = new Set<string>();
  lock: PersistedLock | null = null;
  // volatile
  syncInFlight = false;
  readonly captured: Msg[] = []; // replay mode
  readonly held = new Map<string, SimInput>(); // input bodies in the shell's pool
  checkedDecision: LedgerRef | null = null;

  constructor(
    readonly index: number,
    seed: number,
    readonly skewMs: number,
    readonly byz: ByzMode | null,
    readonly corruptP: number,
  ) {
    this.key = Buffer.concat([Buffer.from([0xed]), tagHash('key', Buffer.from(`${seed}:${index}`))]);
    this.secret = tagHash('secret', Buffer.from(`${seed}:${index}`));
  }
}

interface RunResult {
  ledgers: number;
  rounds: number;
  inputsIncluded: number;
  inputsSubmitted: number;
  equivocationsSeen: number;
  syncs: number;
  events: number;
  violation: string | null;
}

class Simulation {
  readonly rng: Rng;
  readonly nodes: SimNode[];
  readonly unl: Buffer[];
  readonly q: number;
  private readonly queue = new EventQueue<SimEvent>();
  private now = T0;
  private readonly end: number;
  private groups: number[] | null = null; // partition group per node
  private net: NetParams;
  private readonly logRing: string[] = [];
  private violation: string | null = null;
  // global knowledge for the invariants
  private readonly decided = new Map<number, string>(); // seq → hash decided by an honest node
  private readonly inputSeq = new Map<string, number>(); // input → the seq that included it
  private readonly submitted = new Map<string, number>(); // input → maxLedgerSeqNo
  private readonly userNonce = new Map<number, bigint>();
  private readonly goodQcSigs = new Set<string>(); // certificate signatures already checked
  private readonly users: Buffer[];
  private maxDecided = 0;
  private partitionStartMax: number | null = null;
  private healedAt: { at: number; baseline: number } | null = null;
  private tailStartMax = 0;
  private inputCounter = 0;
  private events = 0;
  private syncs = 0;

  constructor(
    readonly sc: Scenario,
    readonly seed: number,
  ) {
    this.rng = new Rng(seed);
    const byzAt = new Map(sc.byzantine.map((b) => [b.index, b.mode]));
    const corruptAt = new Map(sc.corruptExecP.map((c) => [c.index, c.p]));
    this.nodes = Array.from({ length: sc.nodes }, (_, i) => new SimNode(i, seed, this.rng.int(-sc.skewMaxMs, sc.skewMaxMs), byzAt.get(i) ?? null, corruptAt.get(i) ?? 0));
    this.unl = this.nodes.map((n) => n.key);
    this.q = quorumSize(sc.nodes, sc.threshold);
    this.users = Array.from({ length: 6 }, (_, i) => Buffer.concat([Buffer.from([0xed]), tagHash('user', Buffer.from(`${seed}:${i}`))]));
    this.end = T0 + sc.rounds * ROUND_MS;
    this.net = sc.net;
  }

  run(): RunResult {
    for (const n of this.nodes) {
      if (this.sc.crashedFromStart.includes(n.index)) n.up = false;
      else this.boot(n);
    }
    for (let r = 1; r < this.sc.rounds; r++) this.queue.push({ at: T0 + r * ROUND_MS + this.rng.int(0, ROUND_MS - 1), kind: 'inputs' });
    for (const p of this.sc.partitions) {
      this.queue.push({ at: T0 + p.fromRound * ROUND_MS, kind: 'partition', groups: p.groups });
      this.queue.push({ at: T0 + p.toRound * ROUND_MS, kind: 'partition', groups: null });
    }
    const tailAt = this.end - this.sc.quietTailRounds * ROUND_MS;
    this.scheduleFaults(tailAt);
    let tailStarted = this.sc.quietTailRounds === 0;
    for (;;) {
      const ev = this.queue.pop();
      if (!ev || ev.at > this.end || this.violation) break;
      if (!tailStarted && ev.at >= tailAt) {
        tailStarted = true;
        this.startQuietTail();
      }
      this.now = ev.at;
      this.events++;
      this.step(ev);
      this.checkDecisions();
      this.checkHeal();
    }
    if (!this.violation) this.finalChecks();
    if (process.env.HP_SIM_TRACE_ALL) console.log(this.trace());
    const ledgers = Math.max(0, ...this.honest().map((n) => n.lastClosed.seqNo));
    let equivocationsSeen = 0;
    for (const n of this.honest()) equivocationsSeen += (n.core?.stats.equivocations ?? 0) + (n.core?.stats.attestationEquivocations ?? 0);
    return {
      ledgers, rounds: this.sc.rounds, inputsIncluded: this.inputSeq.size, inputsSubmitted: this.submitted.size,
      equivocationsSeen, syncs: this.syncs, events: this.events, violation: this.violation,
    };
  }

  /** The last lines of the run's log, printed with a failure. */
  trace(): string {
    const states = this.nodes.map((n) => `  node ${n.index}${n.byz ? ` (${n.byz})` : ''} ${n.up ? 'up' : 'down'} lcl=${n.lastClosed.seqNo} ${n.core?.describe() ?? ''}`);
    return [...this.logRing, '--- node states ---', ...states].join('\n');
  }

  private honest(): SimNode[] {
    return this.nodes.filter((n) => n.byz === null);
  }

  private log(line: string): void {
    this.logRing.push(`${this.now - T0}ms ${line}`);
    if (this.logRing.length > LOG_LINES) this.logRing.shift();
  }

  private fail(msg: string): void {
    if (!this.violation) this.violation = `${msg} (at ${this.now - T0} ms, round ${Math.floor((this.now - T0) / ROUND_MS)})`;
  }

  // ---- faults schedule -------------------------------------------------------------------------

  private scheduleFaults(tailAt: number): void {
    const sc = this.sc;
    const down = new Map<number, number>(); // node → restart time (for the maxDown bound)
    for (let r = 2; r * ROUND_MS + T0 < tailAt; r++) {
      const t = T0 + r * ROUND_MS;
      for (const [i, back] of down) if (back <= t) down.delete(i);
      for (const n of this.honest()) {
        if (sc.crashedFromStart.includes(n.index) || down.has(n.index) || down.size >= sc.maxDown || !this.rng.chance(sc.crashP)) continue;
        const at = t + this.rng.int(0, ROUND_MS - 1);
        const back = Math.min(tailAt, at + this.rng.int(1, 8) * ROUND_MS + this.rng.int(0, ROUND_MS));
        down.set(n.index, back);
        this.queue.push({ at, kind: 'crash', node: n.index });
        this.queue.push({ at: back, kind: 'restart', node: n.index });
      }
      if (sc.randomPartitions && this.rng.chance(0.03)) {
        const cut = this.nodes.map(() => this.rng.int(0, 1));
        const groups = [0, 1].map((g) => this.nodes.filter((_, i) => cut[i] === g).map((n) => n.index)).filter((g) => g.length > 0);
        const until = Math.min(tailAt, t + this.rng.int(2, 15) * ROUND_MS);
        this.queue.push({ at: t, kind: 'partition', groups });
        this.queue.push({ at: until, kind: 'partition', groups: null });
      }
    }
  }

  private startQuietTail(): void {
    // Partial synchrony's "global stabilization time": from here messages arrive, in bounded time.
    this.log('quiet tail: everyone up, network healed, no drops or late messages');
    this.net = { ...this.net, dropP: 0, lateP: 0, voteDropP: 0, delayMaxMs: Math.min(this.net.delayMaxMs, 40) };
    this.groups = null;
    this.tailStartMax = this.maxDecided;
    for (const n of this.nodes) if (!n.up && !this.sc.crashedFromStart.includes(n.index)) this.restart(n);
  }

  // ---- node lifecycle ------------------------------------------------------------------------------

  private localTime(n: SimNode): number {
    return this.now + n.skewMs;
  }

  private boot(n: SimNode): void {
    n.up = true;
    n.epoch++;
    n.syncInFlight = false;
    n.captured.length = 0;
    n.held.clear();
    // A real shell replays executions the crash interrupted before it starts consensus.
    let k = n.lastClosed.seqNo;
    while (!n.results.has(k)) k--;
    for (let s = k + 1; s <= n.lastClosed.seqNo; s++) n.results.set(s, runContract(n.results.get(s - 1)!, n.ledgers.get(s)!.ledger.hash, s));
    n.core = new ConsensusCore(
      { contractId: CONTRACT_ID, unl: this.unl, self: n.key, thresholdPercent: this.sc.threshold, roundtimeMs: ROUND_MS },
      { lcl: n.lastClosed, result: n.results.get(n.lastClosed.seqNo) ?? null, lock: n.lock, nowMs: this.localTime(n) },
    );
    if (n.byz === null) {
      const mine = this.users.filter((_, i) => i % this.nodes.length === n.index);
      this.apply(n, n.core.handle({ type: 'usersConnected', users: mine }));
    }
    this.queue.push({ at: this.now, kind: 'tick', node: n.index, epoch: n.epoch });
  }

  private restart(n: SimNode): void {
    if (n.up) return;
    this.log(`node ${n.index} restarts at lcl ${n.lastClosed.seqNo}`);
    this.boot(n);
  }

  // ---- the event loop ----------------------------------------------------------------------------------

  private step(ev: SimEvent): void {
    switch (ev.kind) {
      case 'tick': {
        const n = this.nodes[ev.node];
        if (!n.up || ev.epoch !== n.epoch || !n.core) return;
        this.apply(n, n.core.handle({ type: 'tick', nowMs: this.localTime(n) }));
        if (n.byz) this.byzTick(n);
        const next = n.core.nextTickAt() - n.skewMs + this.rng.int(0, 2);
        this.queue.push({ at: Math.max(next, this.now + 1), kind: 'tick', node: n.index, epoch: n.epoch });
        return;
      }
      case 'deliver':
        return this.deliver(ev.node, ev.from, ev.msg, ev.loopback);
      case 'execDone': {
        const n = this.nodes[ev.node];
        if (!n.up || ev.epoch !== n.epoch || !n.core) return;
        n.results.set(ev.seqNo, ev.result);
        this.apply(n, n.core.handle({ type: 'executionDone', seqNo: ev.seqNo, ...ev.result }));
        return;
      }
      case 'sync':
        return this.syncNode(ev.node, ev.epoch, ev.req);
      case 'crash': {
        const n = this.nodes[ev.node];
        if (!n.up) return;
        this.log(`node ${n.index} crashes (lcl ${n.lastClosed.seqNo})`);
        n.up = false;
        n.core = null;
        n.epoch++;
        return;
      }
      case 'restart':
        return this.restart(this.nodes[ev.node]);
      case 'inputs':
        return this.submitInputs();
      case 'input':
        if (this.connected(ev.from, ev.node)) this.offerInput(this.nodes[ev.node], ev.input);
        return;
      case 'fetch': {
        // The shell asks reachable peers for the bodies; each one found is admitted like a relay.
        const n = this.nodes[ev.node];
        if (!n.up || n.epoch !== ev.epoch) return;
        for (const h of ev.hashes) {
          const k = h.toString('hex');
          const peer = this.nodes.find((p) => p !== n && p.up && this.connected(p.index, n.index) && p.held.has(k) && !this.rng.chance(this.net.dropP));
          if (peer) this.offerInput(n, peer.held.get(k)!);
        }
        return;
      }
      case 'partition':
        return this.setPartition(ev.groups);
    }
  }

  private setPartition(groups: number[][] | null): void {
    if (groups) {
      this.groups = this.nodes.map(() => -1);
      groups.forEach((g, gi) => g.forEach((i) => (this.groups![i] = gi)));
      this.log(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
      const scheduled = this.sc.partitions.some((p) => T0 + p.fromRound * ROUND_MS === this.now);
      if (scheduled) this.partitionStartMax = this.maxDecided;
    } else {
      if (this.groups) this.log('partition healed');
      this.groups = null;
      if (this.partitionStartMax !== null) this.healedAt = { at: this.now, baseline: this.maxDecided };
      this.partitionStartMax = null;
    }
  }

  private connected(a: number, b: number): boolean {
    return !this.groups || this.groups[a] === this.groups[b];
  }

  /** Sends one message over the simulated network: partition, drop, delay, late, duplicate. */
  private send(from: number, to: number, msg: Msg): void {
    if (!this.connected(from, to)) return;
    const net = this.net;
    const copies = this.rng.chance(net.dupP) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      if (this.rng.chance(net.dropP) || (msg.vote && this.rng.chance(net.voteDropP ?? 0))) continue;
      let delay = this.rng.int(net.delayMinMs, net.delayMaxMs);
      if (this.rng.chance(net.lateP)) delay += this.rng.int(0, net.lateMaxMs);
      this.queue.push({ at: this.now + delay, kind: 'deliver', node: to, from, msg, loopback: false });
    }
  }

  private broadcastMsg(from: SimNode, msg: Msg, loopback = true): void {
    for (const to of this.nodes) if (to !== from) this.send(from.index, to.index, msg);
    // The shell hands its own signed message back to its core, like any other.
    if (loopback) this.queue.push({ at: this.now, kind: 'deliver', node: from.index, from: from.index, msg, loopback: true });
  }

  /** The receiving shell: decode, check signatures (the simulated network layer), hand to the core. */
  private deliver(to: number, from: number, msg: Msg, loopback: boolean): void {
    const n = this.nodes[to];
    if (!n.up || !n.core || (!loopback && !this.connected(from, to))) return;
    if (n.byz === 'replay' && n.captured.length < 512 && !loopback) n.captured.push(msg);
    if (msg.kind === 'a') {
      if (msg.decoded === undefined) {
        try {
          msg.decoded = deepFreeze(decodeAttestation(msg.bytes));
        } catch {
          msg.decoded = null;
        }
      }
      const a = msg.decoded as Attestation | null;
      if (!a) return;
      const author = this.nodes.find((x) => x.key.equals(a.author));
      msg.verified ??= !!author && mac(author.secret, 'ledger-close', a.hash).equals(a.sig);
      if (!author || !msg.verified) return;
      if (n.byz === 'mirror' && author.byz === null) this.mirrorAttestation(n, author, a.seqNo, a.hash);
      this.apply(n, n.core.handle({ type: 'attestation', attestation: a }));
      return;
    }
    if (msg.decoded === undefined) {
      try {
        msg.decoded = deepFreeze(decodeSignedProposal(msg.bytes, DEFAULT_LIMITS));
      } catch {
        msg.decoded = null;
      }
    }
    const p = msg.decoded as SignedProposal | null;
    if (!p) return;
    const author = this.nodes.find((x) => x.key.equals(p.author));
    if (!author) return;
    msg.verified ??= this.verifyProposal(author, p);
    if (!msg.verified) return;
    if (n.byz === 'mirror' && author.byz === null) this.mirrorProposal(n, author, p);
    this.apply(n, n.core.handle({ type: 'proposal', proposal: p }));
  }

  private verifyProposal(author: SimNode, p: SignedProposal): boolean {
    if (!mac(author.secret, 'proposal', encodeProposalBody(p)).equals(p.sig)) return false;
    if (!isVoteProposal(p) && p.pol) {
      // A proof of lock is only as good as every prevote signature in it.
      const prevote = encodeProposalBody(prevoteOf(CONTRACT_ID, p.pol));
      for (const s of p.pol.sigs) {
        const signer = this.nodes.find((x) => x.key.equals(s.pubkey));
        if (!signer || !mac(signer.secret, 'proposal', prevote).equals(s.sig)) return false;
      }
    }
    return true;
  }

  // ---- the shell: performing a core's actions -----------------------------------------------------------

  private apply(n: SimNode, actions: ConsensusAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'broadcast':
          this.shellBroadcast(n, a.proposal);
          break;
        case 'attest':
          this.shellAttest(n, a.seqNo, a.hash);
          break;
        case 'relay':
          if (n.byz === null || n.byz === 'replay' || n.byz === 'equivocate') for (const p of a.proposals) this.broadcastMsg(n, { kind: 'p', bytes: encodeSignedProposal(p), vote: true }, false);
          break;
        case 'persistLock':
          // Through the on-disk encoding, as a real shell would store it.
          n.lock = a.lock ? decodePersistedLock(encodePersistedLock(a.lock), DEFAULT_LIMITS) : null;
          break;
        case 'closeLedger':
          this.closeLedger(n, a.ledger);
          break;
        case 'execute':
          this.execute(n, a.ledger);
          break;
        case 'requestSync':
          if (!n.syncInFlight) {
            n.syncInFlight = true;
            this.queue.push({ at: this.now + this.rng.int(20, 300), kind: 'sync', node: n.index, epoch: n.epoch, req: a.request });
          }
          break;
        case 'fetchInputs':
          this.queue.push({ at: this.now + this.rng.int(2 * this.net.delayMinMs, 2 * this.net.delayMaxMs), kind: 'fetch', node: n.index, epoch: n.epoch, hashes: a.hashes });
          break;
        case 'voteStatus':
          break;
        case 'log':
          if (a.level !== 'debug') this.log(`node ${n.index} ${a.level}: ${a.message}`);
          break;
      }
    }
  }

  private signProposal(n: SimNode, p: Proposal): Msg {
    const sig = mac(n.secret, 'proposal', encodeProposalBody(p));
    return { kind: 'p', bytes: encodeSignedProposal({ ...p, author: n.key, sig } as SignedProposal), vote: p.stage === 3 };
  }

  private signAttestation(n: SimNode, seqNo: number, h: Buffer): Msg {
    return { kind: 'a', bytes: encodeAttestation({ seqNo, hash: h, author: n.key, sig: mac(n.secret, 'ledger-close', h) }), vote: true };
  }

  private shellBroadcast(n: SimNode, p: Proposal): void {
    if (n.byz === null || n.byz === 'replay') return this.broadcastMsg(n, this.signProposal(n, p));
    if (n.byz === 'mirror' || n.byz === 'garbage') return; // they speak only in their own way
    if (n.byz === 'wrongState') return this.broadcastMsg(n, this.signProposal(n, lieAboutState(p)));
    // equivocate: each peer gets one of two versions; some peers get both (so it can be caught)
    const twin = this.mutate(p);
    for (const to of this.nodes) {
      if (to === n) continue;
      const both = this.rng.chance(0.3);
      if (both || this.rng.chance(0.5)) this.send(n.index, to.index, this.signProposal(n, p));
      if (both || this.rng.chance(0.5)) this.send(n.index, to.index, this.signProposal(n, twin));
    }
    this.queue.push({ at: this.now, kind: 'deliver', node: n.index, from: n.index, msg: this.signProposal(n, p), loopback: true });
  }

  private shellAttest(n: SimNode, seqNo: number, h: Buffer): void {
    if (n.byz === 'mirror' || n.byz === 'garbage') return;
    if (n.byz === 'equivocate') {
      const fake = this.rng.bytes(32);
      for (const to of this.nodes) if (to !== n) this.send(n.index, to.index, this.signAttestation(n, seqNo, this.rng.chance(0.5) ? h : fake));
    }
    this.broadcastMsg(n, this.signAttestation(n, seqNo, h));
  }

  private mutate(p: Proposal): Proposal {
    if (!isVoteProposal(p)) {
      const inputs = p.inputs.length > 0 && this.rng.chance(0.5) ? p.inputs.slice(1) : [...p.inputs, Buffer.alloc(40, 0xff)];
      return { ...p, inputs: uniqSorted(inputs), result: this.rng.chance(0.3) ? null : p.result, pol: null };
    }
    if (!p.value || this.rng.chance(0.3)) return { ...p, value: null };
    const v: Value = { ...p.value, timestampMs: Math.max(0, p.value.timestampMs - ROUND_MS) };
    return { ...p, value: v };
  }

  // ---- ledgers and the invariants -------------------------------------------------------------------

  private closeLedger(n: SimNode, l: ClosedLedger): void {
    const h = l.header;
    if (h.seqNo !== n.lastClosed.seqNo + 1) return this.fail(`node ${n.index} closed ${h.seqNo} after ${n.lastClosed.seqNo}: the chain must grow by one`);
    if (!h.prevHash.equals(n.lastClosed.hash)) return this.fail(`node ${n.index} ledger ${h.seqNo} does not chain onto its ledger ${n.lastClosed.seqNo}`);
    if (h.seqNo > 1 && h.timestampMs <= n.lastClosed.timestampMs) return this.fail(`node ${n.index} ledger ${h.seqNo} timestamp does not increase`);
    this.checkLedger(n, l);
    n.ledgers.set(h.seqNo, { ledger: l });
    n.lastClosed = { seqNo: h.seqNo, hash: l.hash, timestampMs: h.timestampMs };
    for (const i of l.inputs) n.inLedger.add(i.toString('hex'));
  }

  /** Invariants every ledger an honest node holds must satisfy, however it got there. */
  private checkLedger(n: SimNode, l: ClosedLedger): void {
    if (n.byz !== null) return;
    const h = l.header;
    if (!ledgerHash(h).equals(l.hash)) return this.fail(`ledger ${h.seqNo} hash is not ledgerHash(header)`);
    if (!inputListHash(l.inputs.map((x) => ({ hash: x.subarray(8) }))).equals(h.inputHash)) return this.fail(`ledger ${h.seqNo} inputHash does not match its inputs`);
    if (!userListHash(l.users).equals(h.userHash)) return this.fail(`ledger ${h.seqNo} userHash does not match its users`);
    // The certificate: ≥ q distinct UNL members signed exactly this hash.
    const signers = new Set<string>();
    for (const s of l.quorum) {
      const signer = this.nodes.find((x) => x.key.equals(s.pubkey));
      const k = `${s.sig.toString('latin1')}${l.hash.toString('latin1')}${signer?.index}`;
      const ok = this.goodQcSigs.has(k) || (!!signer && mac(signer.secret, 'ledger-close', l.hash).equals(s.sig));
      if (!signer || !ok) return this.fail(`ledger ${h.seqNo} carries an invalid quorum signature`);
      this.goodQcSigs.add(k);
      signers.add(signer.key.toString('hex'));
    }
    if (signers.size < this.q) return this.fail(`ledger ${h.seqNo} closed with ${signers.size} signatures, quorum is ${this.q}`);
    this.noteDecided(n, h.seqNo, l.hash);
    for (const i of l.inputs) {
      const k = i.toString('hex');
      const max = this.submitted.get(k);
      if (max === undefined) return this.fail(`ledger ${h.seqNo} includes input ${k.slice(0, 16)} nobody submitted`);
      if (h.seqNo > max) return this.fail(`ledger ${h.seqNo} includes input ${k.slice(0, 16)} after its max ledger ${max}`);
      const at = this.inputSeq.get(k);
      if (at !== undefined && at !== h.seqNo) return this.fail(`input ${k.slice(0, 16)} is in ledgers ${at} and ${h.seqNo}`);
      this.inputSeq.set(k, h.seqNo);
    }
  }

  private noteDecided(n: SimNode, seqNo: number, h: Buffer): void {
    const k = h.toString('hex');
    const known = this.decided.get(seqNo);
    if (known === undefined) {
      this.decided.set(seqNo, k);
      if (seqNo > this.maxDecided) this.maxDecided = seqNo;
      if (this.partitionStartMax !== null && this.sc.expect.noNewLedgerInPartition && seqNo > this.partitionStartMax) {
        this.fail(`ledger ${seqNo} was decided by node ${n.index} during a partition that leaves no side a quorum`);
      }
    } else if (known !== k) {
      this.fail(`FORK: honest nodes hold different ledgers at seq ${seqNo} (${known.slice(0, 12)} vs ${k.slice(0, 12)} at node ${n.index})`);
    }
  }

  /** After every step: what each honest core has decided agrees with every other honest core. */
  private checkDecisions(): void {
    for (const n of this.nodes) {
      if (n.byz !== null || !n.core) continue;
      const d = n.core.lastDecided;
      if (d === n.checkedDecision) continue; // unchanged since the last step
      n.checkedDecision = d;
      if (d.seqNo > 0) this.noteDecided(n, d.seqNo, d.hash);
    }
  }

  private checkHeal(): void {
    const w = this.sc.expect.healWithinRounds;
    if (!w || !this.healedAt) return;
    if (this.maxDecided > this.healedAt.baseline) {
      this.healedAt = null;
      return;
    }
    if (this.now - this.healedAt.at > w * ROUND_MS) this.fail(`no ledger within ${w} rounds after the partition healed`);
  }

  private finalChecks(): void {
    const e = this.sc.expect;
    if (e.fork) return this.fail('expected the attack at the fault bound to fork the cluster, it did not');
    const honestUp = this.honest().filter((n) => !this.sc.crashedFromStart.includes(n.index));
    const maxClosed = Math.max(0, ...honestUp.map((n) => n.lastClosed.seqNo));
    if (e.minLedgerFraction !== undefined && maxClosed < e.minLedgerFraction * this.sc.rounds) {
      return this.fail(`liveness: ${maxClosed} ledgers in ${this.sc.rounds} rounds, expected ≥ ${Math.ceil(e.minLedgerFraction * this.sc.rounds)}`);
    }
    const silentOk = honestUp.length >= this.q;
    if (e.minTailLedgers !== undefined && silentOk && this.sc.quietTailRounds > 0) {
      const grown = this.maxDecided - this.tailStartMax;
      if (grown < e.minTailLedgers) return this.fail(`liveness: ${grown} ledgers in the ${this.sc.quietTailRounds}-round quiet tail, expected ≥ ${e.minTailLedgers}`);
      for (const n of honestUp) {
        if (n.lastClosed.seqNo < this.maxDecided - 3) return this.fail(`node ${n.index} did not catch up: lcl ${n.lastClosed.seqNo}, cluster at ${this.maxDecided}`);
      }
    }
  }

  // ---- execution and sync (the shell's other duties) ---------------------------------------------------

  private execute(n: SimNode, l: ClosedLedger): void {
    const prev = n.results.get(l.header.seqNo - 1);
    if (!prev) return this.fail(`node ${n.index} asked to execute ${l.header.seqNo} without the result of ${l.header.seqNo - 1}`);
    let result = runContract(prev, l.hash, l.header.seqNo);
    if (n.corruptP > 0 && this.rng.chance(n.corruptP)) {
      result = { ...result, stateRoot: this.rng.bytes(32) }; // a bad disk, a nondeterministic contract
      this.log(`node ${n.index} executor corrupts its state at ${l.header.seqNo}`);
    }
    const slow = this.rng.chance(this.sc.slowExecP) ? this.rng.int(ROUND_MS, 2 * ROUND_MS) : 0;
    this.queue.push({ at: this.now + this.rng.int(1, this.sc.execMaxMs) + slow, kind: 'execDone', node: n.index, epoch: n.epoch, seqNo: l.header.seqNo, result });
  }

  /** Ledger + state sync from one reachable honest peer: records verified, state by hash. */
  private syncNode(index: number, epoch: number, req: SyncRequest): void {
    const n = this.nodes[index];
    if (!n.up || n.epoch !== epoch || !n.core) return;
    n.syncInFlight = false;
    const peers = this.nodes.filter((p) => p !== n && p.up && p.byz === null && this.connected(p.index, n.index) && p.lastClosed.seqNo >= n.lastClosed.seqNo);
    if (peers.length === 0) return;
    const top = Math.max(...peers.map((p) => p.lastClosed.seqNo));
    const peer = this.rng.pick(peers.filter((p) => p.lastClosed.seqNo === top));
    const target = peer.lastClosed.seqNo;
    if (target === n.lastClosed.seqNo && req.reason !== 'state') return;
    if (!peer.results.has(target) && target === n.lastClosed.seqNo) return; // nothing newer to give
    // Find where our chain meets the peer's, then take the peer's certified records after it.
    let base = n.lastClosed.seqNo;
    while (base > 0 && !peer.ledgers.get(base)?.ledger.hash.equals(n.ledgers.get(base)!.ledger.hash)) base--;
    if (base < n.lastClosed.seqNo) this.log(`node ${n.index} sync rewinds from ${n.lastClosed.seqNo} to ${base}`);
    const taken: Buffer[] = [];
    n.lastClosed = base === 0 ? { seqNo: 0, hash: GENESIS_HASH, timestampMs: 0 } : { seqNo: base, hash: n.ledgers.get(base)!.ledger.hash, timestampMs: n.ledgers.get(base)!.ledger.header.timestampMs };
    for (let s = base + 1; s <= target; s++) {
      const rec = peer.ledgers.get(s)!.ledger;
      this.closeLedger(n, rec); // the same chain and certificate checks as a consensus close
      taken.push(...rec.inputs);
    }
    // State: the one the target ledger certifies (after target-1), then the target ledger executed
    // here, as the real shell does. Never the peer's own result for the target: nothing certifies
    // it yet, and a peer with a corrupt executor would hand its error on (two such nodes out of five
    // at 75 % split the prevotes 3:2 for good).
    const h = peer.ledgers.get(target)!.ledger.header;
    const before: ExecResult = { stateRoot: h.stateHash, outputRoot: h.outputHash, configHash: h.configHash };
    n.results.set(target - 1, before);
    const result = runContract(before, peer.ledgers.get(target)!.ledger.hash, target);
    n.results.set(target, result);
    this.syncs++;
    this.log(`node ${n.index} synced to ${target} from node ${peer.index} (${req.reason})`);
    this.apply(n, n.core.handle({ type: 'syncDone', lcl: n.lastClosed, result, inputsInLedgers: taken }));
  }

  // ---- users ---------------------------------------------------------------------------------------

  private submitInputs(): void {
    const count = this.rng.int(0, 2 * this.sc.inputsPerRound);
    const entries = this.honest().filter((n) => n.up);
    if (entries.length === 0) return;
    for (let i = 0; i < count; i++) {
      const u = this.rng.int(0, this.users.length - 1);
      const nonce = (this.userNonce.get(u) ?? 0n) + 1n;
      this.userNonce.set(u, nonce);
      const ordered = Buffer.alloc(40);
      ordered.writeBigUInt64BE(nonce, 0);
      tagHash('input', Buffer.from(`${this.seed}:${this.inputCounter++}`)).copy(ordered, 8);
      const maxLedgerSeqNo = this.maxDecided + this.rng.int(3, 10);
      this.submitted.set(ordered.toString('hex'), maxLedgerSeqNo);
      const entry = this.rng.pick(entries);
      const input = { hash: ordered, user: this.users[u], maxLedgerSeqNo };
      this.offerInput(entry, input);
      // The entry node relays the signed input to its peers (HotPocket's NUP), over the lossy net.
      if (this.sc.relay === 'split') continue;
      for (const to of this.nodes) {
        if (to === entry || (this.sc.relay === 'partial' && this.rng.chance(0.5))) continue;
        if (!this.connected(entry.index, to.index) || this.rng.chance(this.net.dropP)) continue;
        const delay = this.rng.int(this.net.delayMinMs, this.net.delayMaxMs);
        this.queue.push({ at: this.now + delay, kind: 'input', node: to.index, from: entry.index, input });
      }
    }
  }

  private offerInput(n: SimNode, input: SimInput): void {
    if (!n.up || !n.core) return;
    // The shell's input pool refuses what is already in one of its ledgers or expired.
    if (n.inLedger.has(input.hash.toString('hex')) || input.maxLedgerSeqNo <= n.lastClosed.seqNo) return;
    n.held.set(input.hash.toString('hex'), input);
    this.apply(n, n.core.handle({ type: 'inputsAvailable', inputs: [input] }));
  }

  // ---- Byzantine behaviours ------------------------------------------------------------------------

  private byzTick(n: SimNode): void {
    if (n.byz === 'garbage') {
      for (let k = this.rng.int(1, 3); k > 0; k--) this.send(n.index, this.rng.int(0, this.nodes.length - 1), this.garbage(n));
    } else if (n.byz === 'replay') {
      for (let k = 0; k < 3 && n.captured.length > 0; k++) this.send(n.index, this.rng.int(0, this.nodes.length - 1), this.rng.pick(n.captured));
    }
  }

  private garbage(n: SimNode): Msg {
    const r = this.rng;
    const d = n.core!.lastDecided;
    const seqNo = Math.max(1, d.seqNo + r.pick([0, 1, 1, 2, r.int(3, 100)]));
    const roundMs = Math.max(0, Math.floor((this.localTime(n) / ROUND_MS) + r.int(-3, 1)) * ROUND_MS);
    const prevHash = r.chance(0.7) ? d.hash : r.bytes(32);
    const res = (): ExecResult => ({ outputRoot: r.bytes(32), stateRoot: r.bytes(32), configHash: r.bytes(32) });
    const list = (len: number, k: number): Buffer[] => uniqSorted(Array.from({ length: k }, () => (len === 33 ? Buffer.concat([Buffer.from([0xed]), r.bytes(32)]) : r.bytes(len))));
    if (r.chance(0.15)) return { kind: 'a', bytes: encodeAttestation({ seqNo, hash: r.bytes(32), author: n.key, sig: mac(n.secret, 'ledger-close', r.bytes(32)) }) };
    if (r.chance(0.1)) return { kind: r.chance(0.5) ? 'p' : 'a', bytes: r.bytes(r.int(0, 300)) }; // undecodable
    const stage = r.int(0, 3) as 0 | 1 | 2 | 3;
    let p: Proposal;
    if (stage <= 1) {
      const value: Value = { seqNo, timestampMs: roundMs - ROUND_MS, prevHash, result: res(), inputs: list(40, r.int(0, 3)), users: list(33, r.int(0, 2)) };
      const pol = stage === 0 && r.chance(0.3) ? { roundMs: Math.max(0, roundMs - ROUND_MS), value, sigs: this.nodes.map((x) => ({ pubkey: x.key, sig: r.bytes(64) })) } : null;
      p = { contractId: CONTRACT_ID, stage: stage as 0 | 1, seqNo, roundMs, prevHash, result: r.chance(0.5) ? res() : null, inputs: list(40, r.int(0, 4)), users: list(33, r.int(0, 3)), pol };
    } else {
      const value: Value | null = r.chance(0.2) ? null : { seqNo, timestampMs: roundMs, prevHash, result: res(), inputs: list(40, r.int(0, 3)), users: list(33, r.int(0, 2)) };
      p = { contractId: r.chance(0.9) ? CONTRACT_ID : 'other', stage: stage as 2 | 3, seqNo, roundMs, prevHash, value };
    }
    return this.signProposal(n, p);
  }

  /** Collusion at the bound: echo each honest node's own proposal back to it, as if we agreed. */
  private mirrorProposal(n: SimNode, author: SimNode, p: SignedProposal): void {
    const { author: _a, sig: _s, ...body } = p;
    void _a;
    void _s;
    this.send(n.index, author.index, this.signProposal(n, body as Proposal));
  }

  private mirrorAttestation(n: SimNode, author: SimNode, seqNo: number, h: Buffer): void {
    this.send(n.index, author.index, this.signAttestation(n, seqNo, h));
  }
}

function uniqSorted(list: Buffer[]): Buffer[] {
  const m = new Map(list.map((b) => [b.toString('hex'), b]));
  return [...m.values()].sort(Buffer.compare);
}

function lieAboutState(p: Proposal): Proposal {
  const bogus: ExecResult = { outputRoot: tagHash('lie-out'), stateRoot: tagHash('lie-state'), configHash: tagHash('lie-cfg') };
  if (!isVoteProposal(p)) return { ...p, result: bogus, pol: null };
  return { ...p, value: p.value ? { ...p.value, result: bogus } : null };
}

// ---- running scenarios ---------------------------------------------------------------------------

function seedsFor(name: string, defaultCount: number): number[] {
  const only = process.env.HP_SIM_SEED;
  if (only !== undefined) return [Number(only) >>> 0];
  const count = process.env.HP_SIM_SEEDS ? Math.max(1, Number(process.env.HP_SIM_SEEDS)) : defaultCount;
  let base = 0;
  for (const ch of name) base = (Math.imul(base, 31) + ch.charCodeAt(0)) >>> 0;
  return Array.from({ length: count }, (_, i) => (base + i * 7919) >>> 0);
}

function runOne(make: (seed: number) => Scenario, seed: number): { sc: Scenario; result: RunResult; trace: string } {
  const sc = make(seed);
  const sim = new Simulation(sc, seed);
  const result = sim.run();
  return { sc, result, trace: sim.trace() };
}

let totalRounds = 0;
let totalMs = 0;

for (const s of SCENARIOS) {
  const only = process.env.HP_SIM_SCENARIO;
  if (only && only !== s.name) continue;
  test(`consensus simulation: ${s.name}`, (t) => {
    const seeds = seedsFor(s.name, s.seeds);
    const t0 = performance.now();
    let rounds = 0;
    let ledgers = 0;
    let inputs = 0;
    let submitted = 0;
    let equivocations = 0;
    let syncs = 0;
    const forks: string[] = [];
    for (const seed of seeds) {
      const { sc, result, trace } = runOne(s.make, seed);
      rounds += result.rounds * sc.nodes;
      ledgers += result.ledgers;
      inputs += result.inputsIncluded;
      submitted += result.inputsSubmitted;
      equivocations += result.equivocationsSeen;
      syncs += result.syncs;
      const expectFork = sc.expect.fork === true;
      const forked = result.violation?.startsWith('FORK') ?? false;
      if (expectFork && forked) {
        forks.push(`seed ${seed}: ${result.violation}`); // the checker caught the attack at the bound, as it must
        continue;
      }
      if (result.violation) {
        const knobs = `N=${sc.nodes} T=${sc.threshold} q=${quorumSize(sc.nodes, sc.threshold)} maxEquivocators=${maxEquivocators(sc.nodes, sc.threshold)} byz=${JSON.stringify(sc.byzantine)} net=${JSON.stringify(sc.net)}`;
        assert.fail(
          `[consensus-sim] scenario ${s.name} seed ${seed} failed: ${result.violation}\n  ${knobs}\n` +
            `  replay: HP_SIM_SCENARIO=${s.name} HP_SIM_SEED=${seed} node --test dist/test/consensus-sim.test.js\n--- last events ---\n${trace}`,
        );
      }
    }
    const ms = performance.now() - t0;
    totalRounds += rounds;
    totalMs += ms;
    t.diagnostic(
      `${seeds.length} seeds, ${rounds} node-rounds in ${ms.toFixed(0)} ms (${Math.round((rounds / ms) * 1000)} node-rounds/s); ` +
        `${ledgers} ledgers, ${inputs}/${submitted} inputs included, ${equivocations} equivocations caught, ${syncs} syncs`,
    );
    for (const f of forks) t.diagnostic(`expected fork detected, ${f}`);
  });
}

test('consensus: wire codec round trip and refusal of malformed bytes', () => {
  const r = new Rng(7);
  const h = (): Buffer => r.bytes(32);
  const value: Value = { seqNo: 9, timestampMs: 4000, prevHash: h(), result: { outputRoot: h(), stateRoot: h(), configHash: h() }, inputs: uniqSorted([r.bytes(40), r.bytes(40)]), users: uniqSorted([Buffer.concat([Buffer.from([0xed]), h()])]) };
  const author = Buffer.concat([Buffer.from([0xed]), h()]);
  const cert = { roundMs: 3600, value, sigs: [{ pubkey: author, sig: r.bytes(64) }] };
  const props: Proposal[] = [
    { contractId: CONTRACT_ID, stage: 0, seqNo: 9, roundMs: 4000, prevHash: value.prevHash, result: value.result, inputs: value.inputs, users: value.users, pol: cert },
    { contractId: CONTRACT_ID, stage: 1, seqNo: 9, roundMs: 4000, prevHash: value.prevHash, result: null, inputs: [], users: [], pol: null },
    { contractId: CONTRACT_ID, stage: 2, seqNo: 9, roundMs: 4000, prevHash: value.prevHash, value },
    { contractId: CONTRACT_ID, stage: 3, seqNo: 9, roundMs: 4000, prevHash: value.prevHash, value: null },
  ];
  for (const p of props) {
    const signed = { ...p, author, sig: r.bytes(64) } as SignedProposal;
    const wire = encodeSignedProposal(signed);
    const back = decodeSignedProposal(wire, DEFAULT_LIMITS);
    assert.deepEqual(back, signed);
    assert.ok(encodeSignedProposal(back).equals(wire), 'canonical: re-encoding gives the same bytes');
    for (const cut of [0, 1, wire.length - 1]) assert.throws(() => decodeSignedProposal(wire.subarray(0, cut), DEFAULT_LIMITS));
    assert.throws(() => decodeSignedProposal(Buffer.concat([wire, Buffer.from([0])]), DEFAULT_LIMITS), /trailing/);
  }
  const lock = { seqNo: 9, roundMs: 3600, value, cert };
  assert.deepEqual(decodePersistedLock(encodePersistedLock(lock), DEFAULT_LIMITS), lock);
  const att = { seqNo: 9, hash: h(), author, sig: r.bytes(64) };
  assert.deepEqual(decodeAttestation(encodeAttestation(att)), att);
});

test('consensus simulation: summary', (t) => {
  t.diagnostic(`total ${totalRounds} node-rounds in ${totalMs.toFixed(0)} ms`);
});

// Unit checks of the threshold arithmetic the docs table is built from.
test('consensus: threshold arithmetic and constructor refusal', () => {
  assert.equal(quorumSize(5, 80), 4);
  assert.equal(quorumSize(3, 66), 2);
  assert.equal(quorumSize(10, 66), 7);
  assert.equal(maxEquivocators(4, 80), 3);
  assert.equal(maxEquivocators(3, 66), 0);
  assert.equal(maxSilent(5, 80), 1);
  const key = Buffer.concat([Buffer.from([0xed]), Buffer.alloc(32, 1)]);
  for (const bad of [50, 49, 0, 101, 66.5]) {
    assert.throws(
      () => new ConsensusCore({ contractId: 'c', unl: [key], self: key, thresholdPercent: bad, roundtimeMs: 1000 }, { lcl: { seqNo: 0, hash: GENESIS_HASH, timestampMs: 0 }, result: null, nowMs: 0 }),
      /threshold must be an integer percentage in 51\.\.100/,
    );
  }
});

// Directed: the p2p layer delivers each signed message once (it drops ids it has seen), so a
// relayed decision proof reaches a member only the first time, whatever its core could do with it
// then. The simulator's network does not dedup; this drives four cores over one that does. As in
// cluster-sync-faults' liar test (4 members at 66 %, q = 3): A, B and D decide ledger 3, but D dies
// right after its precommit, so 3 has two attestations and can only be certified with C's. C comes
// back from far behind (genesis) and is handed the proof before it has synced to 2; then its sync
// runs, and every later relay of the proof is a duplicate. It must still decide 3 and attest.
test('consensus: a member that was behind when a decision proof was relayed decides it after its sync (p2p dedup)', () => {
  const R = 400;
  const keys = [0, 1, 2, 3].map((i) => Buffer.concat([Buffer.from([0xed]), tagHash('directed-key', Buffer.from([i]))]));
  const secrets = [0, 1, 2, 3].map((i) => tagHash('directed-secret', Buffer.from([i])));
  const genesis: LedgerRef = { seqNo: 0, hash: GENESIS_HASH, timestampMs: 0 };
  const nodes = keys.map(() => ({ core: null as ConsensusCore | null, up: false, seen: new Set<string>(), ledgers: [] as ClosedLedger[], results: new Map([[0, GENESIS_RESULT]]) }));
  const A = 0, B = 1, C = 2, D = 3;
  let now = T0 + 1;
  const inbox: { to: number; ev: ConsensusEvent; id: string | null }[] = [];
  const syncWanted = new Set<number>();
  const closedRef = (i: number): LedgerRef => {
    const l = nodes[i].ledgers.at(-1);
    return l ? { seqNo: l.header.seqNo, hash: l.hash, timestampMs: l.header.timestampMs } : genesis;
  };
  const boot = (i: number): void => {
    const n = nodes[i];
    n.up = true;
    n.core = new ConsensusCore({ contractId: CONTRACT_ID, unl: keys, self: keys[i], thresholdPercent: 66, roundtimeMs: R }, { lcl: closedRef(i), result: n.results.get(closedRef(i).seqNo)!, nowMs: now });
  };
  // To every other node (the network), dedup'd there by id; the author's own copy loops back.
  const post = (from: number, ev: ConsensusEvent, id: string, loopback: boolean, skip = -1): void => {
    for (let to = 0; to < nodes.length; to++) if (to !== from && to !== skip) inbox.push({ to, ev, id });
    if (loopback) inbox.push({ to: from, ev, id: null });
  };
  const apply = (i: number, actions: ConsensusAction[]): void => {
    const n = nodes[i];
    for (const a of actions) {
      if (!n.up) return;
      if (a.type === 'broadcast') {
        const p = { ...a.proposal, author: keys[i], sig: mac(secrets[i], 'proposal', encodeProposalBody(a.proposal)) } as SignedProposal;
        n.seen.add(p.sig.toString('hex'));
        post(i, { type: 'proposal', proposal: p }, p.sig.toString('hex'), true);
        if (i === D && p.stage === 3 && p.seqNo === 3) n.up = false; // SIGKILL right after its precommit leaves
      } else if (a.type === 'attest') {
        const att = { seqNo: a.seqNo, hash: a.hash, author: keys[i], sig: mac(secrets[i], 'ledger-close', a.hash) };
        n.seen.add(att.sig.toString('hex'));
        post(i, { type: 'attestation', attestation: att }, att.sig.toString('hex'), true);
      } else if (a.type === 'relay') {
        for (const p of a.proposals) post(i, { type: 'proposal', proposal: p }, p.sig.toString('hex'), false, keys.findIndex((k) => k.equals(p.author)));
      } else if (a.type === 'closeLedger') {
        n.ledgers.push(a.ledger);
      } else if (a.type === 'execute') {
        const s = a.ledger.header.seqNo;
        n.results.set(s, runContract(n.results.get(s - 1)!, a.ledger.hash, s));
        inbox.push({ to: i, ev: { type: 'executionDone', seqNo: s, ...n.results.get(s)! }, id: null });
      } else if (a.type === 'requestSync') {
        syncWanted.add(i);
      }
    }
  };
  const drain = (): void => {
    while (inbox.length > 0) {
      const { to, ev, id } = inbox.shift()!;
      const n = nodes[to];
      if (!n.up || !n.core) continue;
      if (id !== null) {
        if (n.seen.has(id)) continue;
        n.seen.add(id);
      }
      apply(to, n.core.handle(ev));
    }
  };
  // The shell's catch-up: the certified records a peer holds past ours, replayed; syncDone either way.
  const sync = (i: number): void => {
    const n = nodes[i];
    if (!n.up || !n.core) return;
    const peer = nodes.filter((p) => p.up && p !== n).sort((x, y) => y.ledgers.length - x.ledgers.length)[0];
    for (const l of peer?.ledgers.slice(n.ledgers.length) ?? []) {
      n.ledgers.push(l);
      n.results.set(l.header.seqNo, runContract(n.results.get(l.header.seqNo - 1)!, l.hash, l.header.seqNo));
    }
    const lcl = closedRef(i);
    apply(i, n.core.handle({ type: 'syncDone', lcl, result: n.results.get(lcl.seqNo)!, inputsInLedgers: [] }));
  };
  const runRounds = (rounds: number, until: () => boolean): void => {
    for (let k = 0; k < 4 * rounds && !until(); k++) {
      now += R / 4;
      for (let i = 0; i < nodes.length; i++) if (nodes[i].up) apply(i, nodes[i].core!.handle({ type: 'tick', nowMs: now }));
      drain();
      for (const i of [...syncWanted]) sync(i);
      syncWanted.clear();
      drain();
    }
  };

  // A, B and D close 1 and 2; D dies having precommitted 3; A and B decide 3 but cannot certify it.
  for (const i of [A, B, D]) boot(i);
  runRounds(30, () => !nodes[D].up && nodes[A].core!.lastDecided.seqNo === 3 && nodes[B].core!.lastDecided.seqNo === 3);
  assert.equal(nodes[D].up, false, 'D died after its precommit for 3');
  for (const i of [A, B]) {
    assert.equal(nodes[i].core!.lastDecided.seqNo, 3, `node ${i} decided 3`);
    assert.equal(nodes[i].core!.lastClosed.seqNo, 2, `node ${i} could not certify 3`);
  }

  // C restarts at genesis; A and B relay the proof of 3 at the next round start, C syncs to 2.
  boot(C);
  const honest = [A, B, C];
  runRounds(40, () => honest.every((i) => nodes[i].ledgers.length >= 5));
  const trace = honest.map((i) => `node ${i} lcl=${closedRef(i).seqNo} ${nodes[i].core!.describe()}`).join('\n');
  for (const i of honest) assert.ok(nodes[i].ledgers.length >= 5, `node ${i} closes ledgers again after C's sync:\n${trace}`);
  for (let s = 1; s <= 5; s++) {
    const h = nodes[A].ledgers[s - 1].hash;
    for (const i of honest) assert.ok(nodes[i].ledgers[s - 1].hash.equals(h), `node ${i} holds A's ledger ${s}`);
  }
});

/**
 * N cores on a scripted network, stepped every 10 ms for `rounds` rounds of 400 ms: `deliverAt` says
 * when a proposal sent at `now` reaches the others (default: at once), `execMs` how long node i's executions
 * take. Returns what each node closed and, for node 0, the stage in which each ledger closed.
 */
function runScripted(o: {
  nodes: number; threshold: number; rounds: number;
  deliverAt?: (from: number, p: Proposal, now: number) => number; execMs?: (node: number) => number;
}): { closed: ClosedLedger[][]; closedInStage: number[] } {
  const R = 400;
  const keys = [...Array(o.nodes).keys()].map((i) => Buffer.concat([Buffer.from([0xed]), tagHash('scripted-key', Buffer.from([i]))]));
  const secrets = keys.map((_, i) => tagHash('scripted-secret', Buffer.from([i])));
  const genesis: LedgerRef = { seqNo: 0, hash: GENESIS_HASH, timestampMs: 0 };
  let now = T0 + 1;
  const cores = keys.map((k) => new ConsensusCore({ contractId: CONTRACT_ID, unl: keys, self: k, thresholdPercent: o.threshold, roundtimeMs: R }, { lcl: genesis, result: GENESIS_RESULT, nowMs: now }));
  const results = cores.map(() => new Map([[0, GENESIS_RESULT]]));
  const closed = cores.map(() => [] as ClosedLedger[]);
  const closedInStage: number[] = [];
  const queue: { at: number; to: number; ev: ConsensusEvent }[] = [];
  const all = (at: (to: number) => number, ev: ConsensusEvent) => keys.forEach((_, to) => queue.push({ at: at(to), to, ev }));
  const apply = (i: number, actions: ConsensusAction[]): void => {
    for (const a of actions) {
      if (a.type === 'broadcast') {
        const p = { ...a.proposal, author: keys[i], sig: mac(secrets[i], 'proposal', encodeProposalBody(a.proposal)) } as SignedProposal;
        const at = o.deliverAt?.(i, p, now) ?? now;
        all((to) => (to === i ? now : at), { type: 'proposal', proposal: p });
      } else if (a.type === 'attest') {
        all(() => now, { type: 'attestation', attestation: { seqNo: a.seqNo, hash: a.hash, author: keys[i], sig: mac(secrets[i], 'ledger-close', a.hash) } });
      } else if (a.type === 'closeLedger') {
        closed[i].push(a.ledger);
        if (i === 0) closedInStage.push(Math.floor(((now - T0) % R) / (R / 4)));
      } else if (a.type === 'execute') {
        const s = a.ledger.header.seqNo;
        results[i].set(s, runContract(results[i].get(s - 1)!, a.ledger.hash, s));
        queue.push({ at: now + (o.execMs?.(i) ?? 0), to: i, ev: { type: 'executionDone', seqNo: s, ...results[i].get(s)! } });
      }
    }
  };
  for (let step = 0; step < o.rounds * (R / 10); step++) {
    now = T0 + 1 + step * 10;
    cores.forEach((c, i) => apply(i, c.handle({ type: 'tick', nowMs: now })));
    for (let k = 0; k < queue.length; ) {
      if (queue[k].at > now) {
        k++;
        continue;
      }
      const m = queue.splice(k, 1)[0];
      apply(m.to, cores[m.to].handle(m.ev));
    }
  }
  for (let i = 1; i < o.nodes; i++) {
    for (let s = 0; s < Math.min(closed[0].length, closed[i].length); s++) assert.ok(closed[i][s].hash.equals(closed[0][s].hash), `node ${i} ledger ${s + 1} differs from node 0's`);
  }
  return { closed, closedInStage };
}

test('consensus: a polka completed after its round still decides (late precommit), so a member whose prevotes are always late does not stall 3 nodes at 80 %', () => {
  // Node 2's prevotes reach the others only 20 ms into the next round: every polka they see completes late.
  const { closed, closedInStage } = runScripted({ nodes: 3, threshold: 80, rounds: 10, deliverAt: (from, p, now) => (from === 2 && p.stage === 2 ? p.roundMs + 400 + 20 : now) });
  // 10 rounds, the first sat out: without the late precommit nodes 0 and 1 never precommit, and nothing closes.
  assert.ok(closed[0].length >= 4, `ledgers closed: ${closed[0].length} (in stages ${JSON.stringify(closedInStage)})`);
  assert.ok(closedInStage.every((st) => st <= 1), `closed in the next round's stage 0 or 1: ${JSON.stringify(closedInStage)}`);
});

test('consensus: when every member is needed (q = N), a node whose result comes after stage 2 holds its prevote back instead of dooming the round', () => {
  // Node 2 finishes each execution 350 ms after the close: past the next round's stage-2 boundary, before its end.
  const { closed } = runScripted({ nodes: 3, threshold: 80, rounds: 13, execMs: (i) => (i === 2 ? 350 : 0) });
  // 12 voting rounds: a ledger a round with the held-back prevote, one every two rounds without it.
  assert.ok(closed[0].length >= 9, `ledgers closed in 12 rounds: ${closed[0].length}`);
});
