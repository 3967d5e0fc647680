// [benchmark] sync: state sync on a 3-node cluster: a node that was down while 10 MiB of a 1 GiB state changed (bytes fetched, restart → synced), a brand-new node fetching the whole state (MiB/s, peak RSS), against rsync.
// Usage: npm run bench -- sync [--quick] [--state-mb N] [--changed-mb N] [--roundtime MS] [--logs-dir DIR] [--cpu-prof-dir DIR]
//   env: HP_BENCH_STATE_MB, HP_BENCH_CHANGED_MB, HP_BENCH_ROUNDTIME (the options win), HP_BENCH_SERVE_MIB (every node's mesh.serve_mib_per_sec)
//   --quick: 128 MiB of state (else 1024 MiB); the changed amount stays 10 MiB unless given.
//   --logs-dir keeps every node's log (<node>-run<r>.log); --cpu-prof-dir writes a V8 CPU profile per node run.
//
// One cluster (ensureCluster, src/node/cluster.ts) of 3 `hp-node run` children on 127.0.0.1, free ports,
// threshold 66 % (quorum 2 of 3), roundtime 500 ms. The contract is test/contracts/writer/index.js in a
// temp contract dir next to a data.bin of --state-mb MiB of distinct pseudo-random 64 KiB blocks (the
// genesis state the three nodes import). Input "patch <k>" (a signed contract_input) overwrites block k.
//
//   changed   node3 stops (SIGTERM, waited for); --changed-mb of blocks (distinct k, spread at random over
//             data.bin) are patched through node1; once every patch is accepted and 21 more ledgers
//             closed, node3 is spawned again. Measured: transfer.stateBytes / ledgerBytes from its
//             run/status.json, bytes its peer sockets received (tcp_info bytes_received from `ss`),
//             spawn → "vote status: synced" with lcl ≥ the others' (split: start-up, noticing it is
//             behind, ledger records, the sync itself from its "state sync done in <ms> ms" line, the
//             rest), VmHWM of the node process and the peak RSS of its process tree (sampled).
//   fresh     node3 stops again; its state store and ledger are replaced by a new node's genesis (the
//             writer contract without data.bin, imported as createNode does) and it is spawned: it must
//             fetch every ledger record and the whole state. Same measures; MiB/s = stateBytes / the
//             sync's own duration (verification and durable writes included), and over the wall time.
//   cached    (info) the fresh case once more, after reading node1/node2's packs into the page cache
//             (their packs may be cold by then: written ~1 min before, and this machine reclaims cache).
//   baseline  rsync on local disk (after the cluster stopped): (a) delta transfer (--no-whole-file -I)
//             of the patched data.bin onto an old copy (same block positions changed, random bytes):
//             bytes sent + received and literal data from --stats, time; (b) the full data.bin into an
//             empty dir: time, MiB/s, and with an fsync of the copy. Skipped, with a note, without rsync.
//   serving   node1/node2's consensus while they serve the full sync (ledgers closed per wall-clock round,
//             "vote status: unreliable" lines) against the 21 ledgers they closed alone before (node3 down).
//   checks    ledger hash + state root equal on every node for every seq they all logged.
//
// Results go to stdout as one markdown table plus notes; progress goes to stderr.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { readConfig } from '../src/config/nodeConfig';
import { hash } from '../src/crypto/hash';
import { generateKeyPair, sign } from '../src/crypto/keys';
import { ensureCluster, onLines } from '../src/node/cluster';
import { PATCH_FILE, STATE_SUBDIR } from '../src/node/nodeDir';
import { patchConfigOf } from '../src/node/patchConfig';
import { ObjectStore } from '../src/state/blockstore';
import { importDirectory } from '../src/state/importExport';
import { FANOUT, fileDepth } from '../src/state/objects';
import { cleanStaleMounts } from '../src/state/mounts';
import { argValue, CONTRACT_ENV, makeLog, markdown, numOpt, removeBenchDir, REPO_ROOT, runBench, sleep, useLoopbackPorts } from './common';
import { childPids, freePorts, procStatusMiB, waitExit } from './processes';

const QUICK = process.argv.includes('--quick');

const BLOCK = 64 * 1024;
const MiB = 1024 * 1024;

const CFG = (() => {
  const stateMiB = Math.round(numOpt('state-mb', 'HP_BENCH_STATE_MB', QUICK ? 128 : 1024));
  const changedMiB = numOpt('changed-mb', 'HP_BENCH_CHANGED_MB', 10);
  const stateBlocks = (stateMiB * MiB) / BLOCK;
  const changedBlocks = Math.round((changedMiB * MiB) / BLOCK);
  if (changedBlocks < 1 || changedBlocks > stateBlocks) throw new Error(`--changed-mb ${changedMiB}: must be 64 KiB .. --state-mb (${stateMiB} MiB)`);
  return {
    stateMiB,
    stateBlocks,
    changedBlocks,
    roundtimeMs: Math.round(numOpt('roundtime', 'HP_BENCH_ROUNDTIME', 500)),
    thresholdPercent: 66,
    ledgersAfterPatches: 21, // "> 20 more ledgers closed" after the last patch was accepted
    patchBatch: 40, // patches in flight at once
    startTimeoutMs: 120_000,
    childExitTimeoutMs: 20_000,
    // A sync slower than ~8 MiB/s is a failure worth reporting, not waiting for.
    syncTimeoutMs: 90_000 + (stateMiB * 1000) / 8,
    verifyLedgers: 3, // ledgers node3 must close with the others after it rejoined
    logsDir: argValue('logs-dir'),
    cpuProfDir: argValue('cpu-prof-dir'),
    targets: { changedOverhead: 0.02, restartMs: 2000, fullMiBps: 200, fullRssMiB: 256 },
  } as const;
})();

const HP_NODE_BIN = path.join(REPO_ROOT, 'bin', 'hp-node');
const WRITER = path.join(REPO_ROOT, 'test', 'contracts', 'writer', 'index.js');
const log = makeLog('sync');
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bench-sync-'));

// ---- nodes: `hp-node run` children, watched through their logs ------------------------------------

interface LogLine {
  at: number; // performance.now() when it arrived
  text: string;
}

interface LedgerLine {
  seq: number;
  hash: string;
  state: string;
  at: number; // performance.now() when the line arrived
}

const LEDGER_LINE = /\bledger (\d+) ([0-9a-f]{12}) inputs=(\d+) signers=(\d+) state=([0-9a-f]{12})/;
const LEVEL = /^\S+ (debug|info|warn|error)\s/;

class BenchNode {
  child: ChildProcess | null = null;
  pid = 0;
  lastSeq = 0;
  readonly ledgers = new Map<number, LedgerLine>(); // every run of this node dir
  lines: LogLine[] = []; // this run's lines
  readonly problems: string[] = []; // warn / error lines, every run
  exited: { code: number | null; signal: string | null } | null = null;
  spawnedAt = 0;
  runs = 0;
  private logFile: fs.WriteStream | null = null;
  stopping = false; // a stop we asked for: its exit is expected

  constructor(readonly name: string, readonly dir: string, readonly userPort: number, readonly peerPort: number) {}

  get running(): boolean {
    return !!this.child && !this.exited;
  }

  spawn(): void {
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS; // tens of ms per start-up, and the node needs none
    this.runs++;
    const logDir = CFG.logsDir ? path.resolve(CFG.logsDir) : path.join(tmpRoot, 'logs');
    fs.mkdirSync(logDir, { recursive: true });
    this.logFile = fs.createWriteStream(path.join(logDir, `${this.name}-run${this.runs}.log`));
    this.lines = [];
    this.exited = null;
    this.stopping = false;
    this.lastSeq = 0;
    this.spawnedAt = performance.now();
    const prof = CFG.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(CFG.cpuProfDir)}`, `--cpu-prof-name=${this.name}-run${this.runs}.cpuprofile`] : [];
    const child = spawn(process.execPath, [...prof, HP_NODE_BIN, 'run', this.dir], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.child = child;
    this.pid = child.pid!;
    child.once('error', (err) => this.problems.push(`cannot start: ${err.message}`));
    child.once('exit', (code, signal) => {
      this.exited = { code, signal };
      if (!this.stopping) log(`${this.name} (pid ${this.pid}) exited unexpectedly: code ${code} signal ${signal}`);
    });
    const file = this.logFile;
    for (const stream of [child.stdout!, child.stderr!]) onLines(stream, (line) => this.onLine(line, file));
  }

  private onLine(text: string, file: fs.WriteStream): void {
    file.write(`${text}\n`);
    this.lines.push({ at: performance.now(), text });
    const m = LEDGER_LINE.exec(text);
    if (m) {
      const seq = Number(m[1]);
      this.ledgers.set(seq, { seq, hash: m[2], state: m[5], at: performance.now() });
      this.lastSeq = Math.max(this.lastSeq, seq);
      return;
    }
    const lvl = LEVEL.exec(text)?.[1];
    if (lvl === 'warn' || lvl === 'error') this.problems.push(`${this.name}#${this.runs}: ${text}`);
  }

  /** The first line of this run matching `re` (at or after `after`), or null. */
  find(re: RegExp, after = 0): LogLine | null {
    return this.lines.find((l) => l.at >= after && re.test(l.text)) ?? null;
  }

  /** SIGTERM by PID, wait for the exit, SIGKILL it (and its children) if it hangs. */
  async stop(): Promise<void> {
    if (!this.child) return;
    this.stopping = true;
    if (!this.exited) {
      const kids = childPids(this.pid); // statefs: only killed if the node itself had to be
      try {
        process.kill(this.pid, 'SIGTERM'); // the node finishes its round, unmounts, flushes
      } catch { /* already gone */ }
      await waitExit(this.child, CFG.childExitTimeoutMs, () => {
        log(`${this.name} (pid ${this.pid}) did not exit within ${CFG.childExitTimeoutMs} ms: SIGKILL`);
        for (const k of kids) {
          try {
            process.kill(k, 'SIGKILL');
          } catch { /* gone */ }
        }
      });
    }
    const f = this.logFile;
    this.logFile = null;
    if (f) await new Promise<void>((resolve) => f.end(() => resolve()));
  }

  status(): NodeStatus | null {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, 'run', 'status.json'), 'utf8')) as NodeStatus;
    } catch {
      return null; // not written yet, or being replaced
    }
  }

  tail(n: number): string {
    return this.lines.slice(-n).map((l) => `    ${l.text}`).join('\n');
  }
}

interface NodeStatus {
  pid: number;
  updated: string;
  lcl: { seqNo: number; hash: string };
  voteStatus: string;
  transfer: { ledgerRecords: number; ledgerBytes: number; rejectedRecords: number; stateObjects: number; stateBytes: number; rejectedObjects: number; stateSyncs: number };
  sync: { objectsFetched: number; bytesFetched: number; objectsLocal: number; pending: number; elapsedMs: number; bytesPerSec: number } | null;
  eventLoopDelayMs?: { p50: number; p99: number; max: number }; // over the second before `updated`
}

const nodes: BenchNode[] = [];

async function waitUntil(what: string, timeoutMs: number, cond: () => boolean, watch?: BenchNode): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    const dead = nodes.find((n) => n.child && n.exited && !n.stopping);
    if (dead) throw new Error(`${dead.name} exited (code ${dead.exited!.code}, signal ${dead.exited!.signal}) while waiting for ${what}; its last lines:\n${dead.tail(15)}`);
    if (performance.now() - t0 > timeoutMs) {
      throw new Error(`timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what} (lcl ${nodes.map((n) => `${n.name} ${n.lastSeq}`).join(', ')})` +
        `${watch ? `; ${watch.name}'s last lines:\n${watch.tail(15)}` : ''}`);
    }
    await sleep(20);
  }
}

// ---- a user that submits "patch <k>" inputs -------------------------------------------------------

class PatchUser {
  private readonly keys = generateKeyPair();
  private ws!: WebSocket;
  private nonce = 0;
  lcl = 0;
  readonly statuses = new Map<string, { status: string; reason?: string; ledger?: number }>();
  private readonly waiters = new Set<() => void>();

  async connect(url: string): Promise<void> {
    this.ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    this.ws.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${url}: handshake timeout`)), 15_000);
      this.ws.once('close', (code) => reject(new Error(`${url}: closed (${code}) during the handshake`)));
      let stage = 0;
      this.ws.on('message', (data: Buffer) => {
        const m = JSON.parse(data.toString('utf8'));
        if (stage === 0 && m.type === 'user_challenge') {
          stage = 1;
          const sig = sign(Buffer.from(m.challenge, 'utf8'), this.keys.secretKey);
          this.send({ type: 'user_challenge_response', sig: sig.toString('hex'), pubkey: this.keys.publicKey.toString('hex'), server_challenge: crypto.randomBytes(8).toString('hex'), protocol: 'json' });
        } else if (stage === 1 && m.type === 'server_challenge_response') {
          stage = 2;
          clearTimeout(timer);
          this.send({ type: 'subscription', channel: 'ledger_event', enabled: true });
          this.send({ type: 'lcl' });
          resolve();
        } else if (stage === 2) this.onMessage(m);
      });
    });
  }

  private send(msg: unknown): void {
    this.ws.send(Buffer.from(JSON.stringify(msg)), { binary: true });
  }

  private onMessage(m: Record<string, any>): void {
    if (m.type === 'contract_input_status') {
      this.statuses.set(m.input_hash, { status: m.status, reason: m.reason, ledger: m.ledger_seq_no });
      if (typeof m.ledger_seq_no === 'number') this.lcl = Math.max(this.lcl, m.ledger_seq_no);
    } else if (m.type === 'lcl_response') this.lcl = Math.max(this.lcl, m.ledger_seq_no);
    else if (m.type === 'ledger_event' && m.event === 'ledger_created') this.lcl = Math.max(this.lcl, m.ledger.seq_no);
    for (const w of this.waiters) w();
  }

  /** Sends a signed contract_input; returns its input hash (hex), as its status names it. */
  submit(input: string, maxLedgerOffset = 10): string {
    const container = JSON.stringify({ input, nonce: ++this.nonce, max_ledger_seq_no: this.lcl + maxLedgerOffset });
    const sig = sign(Buffer.from(container, 'utf8'), this.keys.secretKey);
    this.send({ type: 'contract_input', input_container: container, sig: sig.toString('hex') });
    return hash(sig).toString('hex');
  }

  async waitStatuses(hashes: string[], timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (!hashes.every((h) => this.statuses.has(h))) {
      const left = end - performance.now();
      if (left <= 0) throw new Error(`${hashes.filter((h) => !this.statuses.has(h)).length} of ${hashes.length} patch inputs got no status within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const w = () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        };
        const timer = setTimeout(w, Math.min(left, 200));
        this.waiters.add(w);
      });
    }
  }

  close(): void {
    this.ws?.terminate();
  }
}

// ---- measurements around one restart of node3 -------------------------------------------------------

interface RestartResult {
  label: string;
  spawnToStartedMs: number; // "ledger at seq" line: store open, state mounted, listening
  spawnToBehindMs: number; // "behind (...)": the consensus noticed it is behind
  spawnToSyncStartMs: number; // "state sync: ... fetching": the ledger records are in
  syncLogMs: number; // from "state sync done in <ms> ms"
  syncLine: string;
  syncStartAt: number; // performance.now() of its "state sync: ... fetching" line
  syncDoneAt: number;
  spawnToSyncDoneMs: number;
  spawnToSyncedMs: number; // "vote status: synced" and lcl ≥ the others'
  status: NodeStatus;
  peerBytesReceived: number; // tcp_info bytes_received of node3's peer sockets, NaN if unknown
  peerSockets: number;
  hwmMiB: number; // VmHWM of the node process
  treePeakMiB: number; // peak of the summed VmRSS of the process tree, sampled every 100 ms
  statefsHwmMiB: number; // VmHWM of the statefs child running after the sync
  lclAtSynced: number;
  othersAtSynced: number;
  rounds: string[]; // notable lines of this run (behind, caught up, sync progress)
  /** The serving nodes' event-loop delay, per second (their status.json) while this node synced. */
  serversLoop: string;
}

/** Every live descendant of `pid` (statefs, contract processes). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    for (const c of childPids(todo.pop()!)) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/** Bytes received on node `pid`'s TCP sockets to/from the peer ports (tcp_info, via `ss`). */
function peerBytesReceived(pid: number, peerPorts: number[]): { bytes: number; sockets: number } {
  const r = spawnSync('ss', ['-tinpH', 'state', 'established'], { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0 || !r.stdout) return { bytes: NaN, sockets: 0 };
  // ss prints a socket's line (addresses, users:((...pid=N...))) followed by an indented tcp_info line.
  const lines = r.stdout.split('\n');
  let bytes = 0;
  let sockets = 0;
  for (let i = 0; i < lines.length; i++) {
    const head = lines[i];
    if (!head.includes(`pid=${pid},`)) continue;
    const addrs = head.trim().split(/\s+/).filter((f) => /:\d+$/.test(f));
    const ports = addrs.map((a) => Number(a.slice(a.lastIndexOf(':') + 1)));
    if (!ports.some((p) => peerPorts.includes(p))) continue;
    const info = `${lines[i + 1] ?? ''}`;
    const m = /bytes_received:(\d+)/.exec(info) ?? /bytes_received:(\d+)/.exec(head);
    if (m) {
      bytes += Number(m[1]);
      sockets++;
    }
  }
  return { bytes, sockets };
}

async function restartAndMeasure(label: string, n3: BenchNode, others: BenchNode[]): Promise<RestartResult> {
  fs.rmSync(path.join(n3.dir, 'run', 'status.json'), { force: true }); // the old run's counters must not be read
  const othersAt = Math.min(...others.map((o) => o.lastSeq));
  log(`${label}: spawning ${n3.name} again (the others are at ledger ${othersAt})`);
  n3.spawn();
  const t0 = n3.spawnedAt;
  let treePeak = 0;
  // The others' status.json, one sample per second each: how late their event loops ran.
  const loops = others.map(() => new Map<string, { at: number; d: { p50: number; p99: number; max: number } }>());
  const sampler = setInterval(() => {
    others.forEach((o, i) => {
      const s = o.status();
      if (s?.eventLoopDelayMs) loops[i].set(s.updated, { at: performance.now(), d: s.eventLoopDelayMs });
    });
    if (!n3.running) return;
    const pids = [n3.pid, ...descendants(n3.pid)];
    treePeak = Math.max(treePeak, pids.reduce((a, p) => a + (procStatusMiB(p, 'VmRSS') || 0), 0));
  }, 100);
  let lastProgress = performance.now();
  try {
    let syncedAt = 0;
    let othersAtSynced = 0;
    await waitUntil(`${n3.name} to sync and vote again`, CFG.syncTimeoutMs, () => {
      if (performance.now() - lastProgress > 5000) {
        lastProgress = performance.now();
        const s = n3.status();
        log(`${label}: ${((performance.now() - t0) / 1000).toFixed(0)} s: ${n3.name} lcl ${n3.lastSeq}, vote ${s?.voteStatus ?? '?'}` +
          (s?.sync ? `, syncing: ${(s.sync.bytesFetched / MiB).toFixed(1)} MiB in ${(s.sync.elapsedMs / 1000).toFixed(1)} s (${(s.sync.bytesPerSec / MiB).toFixed(1)} MiB/s), ${s.sync.pending} queued` : '') +
          `; others at ${others.map((o) => o.lastSeq).join('/')}`);
      }
      const done = n3.find(/state sync done in \d+ ms/);
      const synced = n3.find(/vote status: synced/, done?.at ?? 0);
      if (!done || !synced) return false;
      const others0 = Math.min(...others.map((o) => o.lastSeq));
      if (n3.lastSeq < others0) return false;
      syncedAt = performance.now();
      othersAtSynced = others0;
      return true;
    }, n3);
    const at = (re: RegExp) => n3.find(re)?.at ?? NaN;
    const syncedLine = n3.find(/vote status: synced/, n3.find(/state sync done in \d+ ms/)!.at)!;
    // The line, or the ledger line that brought lcl up to the others', whichever came later (polled at 20 ms).
    const syncedMs = Math.max(syncedLine.at, Math.min(syncedAt, syncedLine.at + 20)) - t0;
    const doneLine = n3.find(/state sync done in \d+ ms/)!;
    const hwmMiB = procStatusMiB(n3.pid, 'VmHWM');
    const statefs = childPids(n3.pid);
    const statefsHwmMiB = statefs.reduce((a, p) => a + (procStatusMiB(p, 'VmHWM') || 0), 0);
    const peerPorts = nodes.map((x) => x.peerPort);
    const wire = peerBytesReceived(n3.pid, peerPorts);
    // status.json is written every second: wait for one that counts this sync.
    const got: { s: NodeStatus | null } = { s: null };
    await waitUntil(`${n3.name}'s status.json to show the sync`, 10_000, () => {
      const s = n3.status();
      got.s = s;
      return !!s && s.pid === n3.pid && s.transfer.stateSyncs >= 1 && !s.sync;
    }, n3);
    const res: RestartResult = {
      label,
      spawnToStartedMs: at(/ledger at seq \d+/) - t0,
      spawnToBehindMs: at(/\bbehind \(/) - t0,
      spawnToSyncStartMs: at(/state sync: .*fetching what differs/) - t0,
      syncLogMs: Number(/state sync done in (\d+) ms/.exec(doneLine.text)![1]),
      syncLine: doneLine.text.replace(/^.*?(state sync done)/, '$1'),
      syncStartAt: at(/state sync: .*fetching what differs/),
      syncDoneAt: doneLine.at,
      spawnToSyncDoneMs: doneLine.at - t0,
      spawnToSyncedMs: syncedMs,
      status: got.s!,
      peerBytesReceived: wire.bytes,
      peerSockets: wire.sockets,
      hwmMiB,
      treePeakMiB: treePeak,
      statefsHwmMiB,
      lclAtSynced: n3.lastSeq,
      othersAtSynced,
      serversLoop: others.map((o, i) => {
        const inSync = [...loops[i].values()].filter((x) => x.at >= doneLine.at - (Number(/state sync done in (\d+) ms/.exec(doneLine.text)![1])) && x.at <= doneLine.at + 1000).map((x) => x.d);
        if (inSync.length === 0) return `${o.name} —`;
        const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        return `${o.name} median p50 ${med(inSync.map((d) => d.p50))} ms, median p99 ${med(inSync.map((d) => d.p99))} ms, worst ${Math.max(...inSync.map((d) => d.max))} ms (${inSync.length} s)`;
      }).join('; '),
      rounds: n3.lines.filter((l) => /\bbehind \(|caught up|state sync|out of sync|vote status/.test(l.text))
        .slice(0, 12).map((l) => `+${((l.at - t0) / 1000).toFixed(2)} s ${l.text.replace(/^\S+ \S+\s+/, '')}`),
    };
    log(`${label}: ${n3.name} synced ${(res.spawnToSyncedMs / 1000).toFixed(2)} s after spawn (sync ${res.syncLogMs} ms); ` +
      `${res.status.transfer.stateBytes} state bytes, ${res.status.transfer.ledgerRecords} ledger records (${res.status.transfer.ledgerBytes} bytes); VmHWM ${hwmMiB.toFixed(0)} MiB`);
    // It keeps closing the same ledgers as the others.
    const from = n3.lastSeq;
    await waitUntil(`${n3.name} to close ${CFG.verifyLedgers} more ledgers with the others`, 30_000, () => n3.lastSeq >= from + CFG.verifyLedgers && others.every((o) => o.lastSeq >= from + CFG.verifyLedgers), n3);
    return res;
  } finally {
    clearInterval(sampler);
  }
}

// ---- setup ------------------------------------------------------------------------------------------

/** The writer contract plus a data.bin of `blocks` distinct pseudo-random 64 KiB blocks. */
function makeContract(dir: string, blocks: number): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(WRITER, path.join(dir, 'index.js'));
  if (blocks === 0) return;
  const fd = fs.openSync(path.join(dir, 'data.bin'), 'w');
  try {
    const chunkBlocks = 64; // 4 MiB per write
    for (let b = 0; b < blocks; b += chunkBlocks) {
      const n = Math.min(chunkBlocks, blocks - b);
      fs.writeSync(fd, crypto.randomBytes(n * BLOCK));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** `count` distinct block indexes in [0, blocks), at random. */
function pickBlocks(blocks: number, count: number): number[] {
  const set = new Set<number>();
  while (set.size < count) set.add(crypto.randomInt(0, blocks));
  return [...set];
}

async function createCluster(contractDir: string): Promise<void> {
  const dir = path.join(tmpRoot, 'cluster');
  const ports = await freePorts(6);
  // Port bases only pass ensureCluster's checks: every port is replaced by a free one below.
  const r = await ensureCluster(dir, {
    nodes: 3, contractDir, contractEnv: CONTRACT_ENV, userPortBase: 20000, peerPortBase: 30000, roundtimeMs: CFG.roundtimeMs, thresholdPercent: CFG.thresholdPercent,
  });
  const userPorts = ports.slice(0, 3);
  const peerPorts = ports.slice(3);
  useLoopbackPorts(r.dirs, userPorts, peerPorts, (cfg) => {
    cfg.log.level = 'info'; // ledger, vote status and sync lines are info
    if (process.env.HP_BENCH_SERVE_MIB) cfg.mesh.serve_mib_per_sec = Number(process.env.HP_BENCH_SERVE_MIB);
  });
  r.dirs.forEach((d, i) => nodes.push(new BenchNode(path.basename(d), d, userPorts[i], peerPorts[i])));
}

/** Reads every pack of these nodes' stores once (into the page cache); returns the ms it took. */
function readPacks(nodes: BenchNode[]): number {
  const t0 = performance.now();
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (const n of nodes) {
    const dir = path.join(n.dir, 'state', 'packs');
    for (const f of fs.readdirSync(dir)) {
      const fd = fs.openSync(path.join(dir, f), 'r');
      try {
        for (let at = 0, got = 1; got > 0; at += got) got = fs.readSync(fd, buf, 0, buf.length, at);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  return performance.now() - t0;
}

/** Node3 as a brand-new node: no ledger, a store holding only a small genesis (as createNode makes it). */
function makeFresh(n3: BenchNode, smallContract: string): void {
  for (const sub of ['state', 'ledger']) fs.rmSync(path.join(n3.dir, sub), { recursive: true, force: true });
  fs.rmSync(path.join(n3.dir, 'run', 'status.json'), { force: true });
  const cfg = readConfig(path.join(n3.dir, 'config.json'));
  const store = ObjectStore.create(path.join(n3.dir, 'state'), { timeMs: 0 });
  try {
    importDirectory(store, smallContract, 0, {
      under: `/${STATE_SUBDIR}`,
      extraFiles: { [`/${PATCH_FILE}`]: Buffer.from(JSON.stringify(patchConfigOf(cfg), null, 4)) },
    });
  } finally {
    store.close();
  }
}

// ---- rsync baseline -----------------------------------------------------------------------------------

interface RsyncResult {
  version: string;
  delta: { ms: number; sent: number; received: number; literal: number; matched: number } | null;
  full: { ms: number; fsyncMs: number; sent: number } | null;
  error?: string;
}

function rsyncStat(out: string, name: string): number {
  const m = new RegExp(`${name}: ([\\d,.]+)`).exec(out);
  return m ? Number(m[1].replace(/,/g, '')) : NaN;
}

function runRsync(args: string[]): { ms: number; out: string } {
  const t0 = performance.now();
  const r = spawnSync('rsync', args, { encoding: 'utf8', maxBuffer: 16 * MiB });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`rsync ${args.join(' ')} exited with ${r.status}: ${(r.stderr || r.error?.message || '').trim().slice(0, 300)}`);
  return { ms, out: r.stdout };
}

function rsyncBaseline(genesisData: string, changed: number[]): RsyncResult | null {
  const v = spawnSync('rsync', ['--version'], { encoding: 'utf8' });
  if (v.error || v.status !== 0) return null;
  const version = /version (\S+)/.exec(v.stdout)?.[1] ?? '?';
  const dir = path.join(tmpRoot, 'rsync');
  const res: RsyncResult = { version, delta: null, full: null };
  try {
    // (a) delta: an old copy (the genesis data.bin) at the destination, the new one = the same blocks changed.
    for (const d of ['old', 'new', 'empty']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    const oldFile = path.join(dir, 'old', 'data.bin');
    const newFile = path.join(dir, 'new', 'data.bin');
    fs.copyFileSync(genesisData, oldFile);
    fs.copyFileSync(genesisData, newFile);
    const fd = fs.openSync(newFile, 'r+');
    for (const k of changed) fs.writeSync(fd, crypto.randomBytes(BLOCK), 0, BLOCK, k * BLOCK);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    log(`rsync ${version}: delta transfer of ${CFG.stateMiB} MiB with ${changed.length} blocks changed`);
    const a = runRsync(['-a', '--stats', '--no-whole-file', '--ignore-times', newFile, oldFile]);
    res.delta = {
      ms: a.ms, sent: rsyncStat(a.out, 'Total bytes sent'), received: rsyncStat(a.out, 'Total bytes received'),
      literal: rsyncStat(a.out, 'Literal data'), matched: rsyncStat(a.out, 'Matched data'),
    };
    if (!fs.readFileSync(oldFile).equals(fs.readFileSync(newFile))) throw new Error('rsync delta: the destination differs from the source afterwards');
    // (b) full copy into an empty directory, then an fsync of the copy (our sync writes durably).
    log(`rsync ${version}: full copy of ${CFG.stateMiB} MiB`);
    const b = runRsync(['-a', '--stats', newFile, path.join(dir, 'empty') + '/']);
    const t0 = performance.now();
    const cfd = fs.openSync(path.join(dir, 'empty', 'data.bin'), 'r');
    fs.fsyncSync(cfd);
    fs.closeSync(cfd);
    res.full = { ms: b.ms, fsyncMs: performance.now() - t0, sent: rsyncStat(b.out, 'Total bytes sent') };
  } catch (err) {
    res.error = (err as Error).message;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return res;
}

// ---- the table --------------------------------------------------------------------------------------

const mib = (b: number) => `${(b / MiB).toFixed(2)} MiB`;
const secs = (ms: number) => (Number.isNaN(ms) ? '—' : `${(ms / 1000).toFixed(2)} s`);
const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)} %`;

interface Consensus {
  windowS: number;
  closedPerRound: number[]; // per serving node: ledgers closed / wall-clock rounds in the window
  flaps: number[]; // "vote status: unreliable" lines in the window
}

/** How the consensus of the serving nodes fared in [from, to] (performance.now() times). */
function consensusIn(servers: BenchNode[], from: number, to: number): Consensus {
  const rounds = (to - from) / CFG.roundtimeMs;
  return {
    windowS: (to - from) / 1000,
    closedPerRound: servers.map((n) => [...n.ledgers.values()].filter((l) => l.at >= from && l.at <= to).length / rounds),
    flaps: servers.map((n) => n.lines.filter((l) => l.at >= from && l.at <= to && l.text.includes('vote status: unreliable')).length),
  };
}

interface Check {
  compared: number;
  mismatches: string[];
}

function verifyLedgers(): Check {
  const seqs = new Set<number>();
  for (const n of nodes) for (const s of n.ledgers.keys()) seqs.add(s);
  const mismatches: string[] = [];
  let compared = 0;
  for (const s of [...seqs].sort((a, b) => a - b)) {
    const ls = nodes.map((n) => n.ledgers.get(s));
    const present = ls.filter((l): l is LedgerLine => !!l);
    if (present.length < 2) continue;
    compared++;
    if (new Set(present.map((l) => `${l.hash}/${l.state}`)).size > 1) {
      mismatches.push(`seq ${s}: ${nodes.map((n, i) => `${n.name} ${ls[i] ? `${ls[i]!.hash} state ${ls[i]!.state}` : '—'}`).join(', ')}`);
    }
  }
  return { compared, mismatches };
}

function report(o: {
  changed: RestartResult; fresh: RestartResult; cached: RestartResult; changedBytes: number; listsTouched: number; rsync: RsyncResult | null; check: Check;
  genesisS: number; dataGenS: number; patchS: number; downLedgers: number; loadBefore: number; quiet: Consensus; serving: Consensus;
}): string {
  const T = CFG.targets;
  const c = o.changed;
  const f = o.fresh;
  const rs = o.rsync;
  const body: string[][] = [];
  const noRsync = rs ? (rs.error ? `rsync failed: ${rs.error.slice(0, 80)}` : '') : 'skipped: rsync not installed';
  const cBytes = c.status.transfer.stateBytes;
  const over = cBytes / o.changedBytes - 1;
  const dWire = rs?.delta ? rs.delta.sent + rs.delta.received : NaN;
  body.push([
    `changed state: state bytes fetched by the restarted node for ${mib(o.changedBytes)} changed (${CFG.changedBlocks} random 64 KiB blocks of a ${CFG.stateMiB} MiB data.bin)`,
    `${cBytes.toLocaleString('en-US')} B = ${mib(cBytes)} (${pct(over)} over the changed bytes; ${c.status.transfer.stateObjects} objects)`,
    rs?.delta ? `rsync --no-whole-file: ${dWire.toLocaleString('en-US')} B sent+received (literal ${mib(rs.delta.literal)})` : noRsync || '—',
    rs?.delta ? `${(cBytes / dWire).toFixed(3)}x rsync; ${(cBytes / o.changedBytes).toFixed(3)}x changed` : `${(cBytes / o.changedBytes).toFixed(3)}x changed`,
    `≤ changed + ${100 * T.changedOverhead} %`,
    over <= T.changedOverhead ? 'yes' : 'NO',
  ]);
  body.push([
    `changed state: everything node3's peer sockets received, spawn → synced (tcp_info; consensus traffic included)`,
    Number.isNaN(c.peerBytesReceived) ? 'unknown (ss failed)' : `${mib(c.peerBytesReceived)} over ${c.peerSockets} socket(s); ledger records ${c.status.transfer.ledgerRecords} (${(c.status.transfer.ledgerBytes / 1024).toFixed(1)} KiB)`,
    '—', Number.isNaN(c.peerBytesReceived) ? '—' : `${(c.peerBytesReceived / o.changedBytes).toFixed(3)}x changed`, '(info)', '',
  ]);
  body.push([
    `changed state: spawn → "vote status: synced" with lcl ≥ the others' (node3 down for ${o.downLedgers} ledgers)`,
    `${secs(c.spawnToSyncedMs)} (start-up ${secs(c.spawnToStartedMs)}, noticing it is behind ${secs(c.spawnToBehindMs - c.spawnToStartedMs)}, ledger records ${secs(c.spawnToSyncStartMs - c.spawnToBehindMs)}, ` +
      `state sync ${c.syncLogMs} ms, after it ${secs(c.spawnToSyncedMs - c.spawnToSyncDoneMs)})`,
    rs?.delta ? `rsync delta ${secs(rs.delta.ms)}` : noRsync || '—',
    rs?.delta ? `${(c.spawnToSyncedMs / rs.delta.ms).toFixed(2)}x rsync; the sync alone ${(c.syncLogMs / rs.delta.ms).toFixed(2)}x` : '—',
    `≤ ${secs(T.restartMs)}`,
    c.spawnToSyncedMs <= T.restartMs ? 'yes' : 'NO',
  ]);
  body.push([
    `changed state: peak RSS of the restarted node`,
    `node process VmHWM ${c.hwmMiB.toFixed(0)} MiB; process tree ${c.treePeakMiB.toFixed(0)} MiB (sampled 100 ms); statefs after the sync VmHWM ${c.statefsHwmMiB.toFixed(0)} MiB`,
    '—', '—', '(info)', '',
  ]);
  const fBytes = f.status.transfer.stateBytes;
  const fRate = fBytes / MiB / (f.syncLogMs / 1000);
  const rsFull = rs?.full ? (CFG.stateMiB * MiB) / MiB / ((rs.full.ms + rs.full.fsyncMs) / 1000) : NaN;
  body.push([
    `fresh node: full state sync rate (${mib(fBytes)} in ${f.status.transfer.stateObjects} objects; hash checks and durable writes included; duration from its "state sync done" line)`,
    `${fRate.toFixed(1)} MiB/s (${f.syncLogMs} ms)`,
    rs?.full ? `rsync full copy ${rsFull.toFixed(1)} MiB/s incl. fsync (${secs(rs.full.ms + rs.full.fsyncMs)}); ${((CFG.stateMiB * 1000) / rs.full.ms).toFixed(1)} MiB/s without` : noRsync || '—',
    rs?.full ? `${(fRate / rsFull).toFixed(2)}x rsync` : '—',
    `≥ ${T.fullMiBps} MiB/s`,
    fRate >= T.fullMiBps ? 'yes' : 'NO',
  ]);
  const k = o.cached;
  const kRate = k.status.transfer.stateBytes / MiB / (k.syncLogMs / 1000);
  body.push([
    `fresh node again, node1/node2's packs read into the page cache just before`,
    `${kRate.toFixed(1)} MiB/s (${k.syncLogMs} ms); VmHWM ${k.hwmMiB.toFixed(0)} MiB`,
    rs?.full ? `rsync full copy ${rsFull.toFixed(1)} MiB/s incl. fsync` : noRsync || '—',
    rs?.full ? `${(kRate / rsFull).toFixed(2)}x rsync` : '—',
    '(info)', '',
  ]);
  body.push([
    `fresh node: spawn → "vote status: synced" with lcl ≥ the others'`,
    `${secs(f.spawnToSyncedMs)} = ${(fBytes / MiB / (f.spawnToSyncedMs / 1000)).toFixed(1)} MiB/s overall (start-up ${secs(f.spawnToStartedMs)}, behind ${secs(f.spawnToBehindMs - f.spawnToStartedMs)}, ` +
      `${f.status.transfer.ledgerRecords} ledger records ${secs(f.spawnToSyncStartMs - f.spawnToBehindMs)}, state sync ${secs(f.syncLogMs)}, after it ${secs(f.spawnToSyncedMs - f.spawnToSyncDoneMs)})`,
    rs?.full ? `rsync full copy ${secs(rs.full.ms)} (+ fsync ${secs(rs.full.fsyncMs)})` : noRsync || '—',
    rs?.full ? `${(f.spawnToSyncedMs / (rs.full.ms + rs.full.fsyncMs)).toFixed(2)}x rsync's time` : '—',
    '(info)', '',
  ]);
  body.push([
    `fresh node: peak RSS of the node process while fetching ${CFG.stateMiB} MiB`,
    `VmHWM ${f.hwmMiB.toFixed(0)} MiB; process tree ${f.treePeakMiB.toFixed(0)} MiB (sampled); statefs after the sync VmHWM ${f.statefsHwmMiB.toFixed(0)} MiB`,
    '—', '—', `≤ ${T.fullRssMiB} MiB`, f.hwmMiB <= T.fullRssMiB ? 'yes' : 'NO',
  ]);
  const q = o.quiet;
  const sv = o.serving;
  const cons = (x: Consensus) => `${x.closedPerRound.map((r) => `${(100 * r).toFixed(0)} %`).join(' / ')} of rounds closed a ledger, ${x.flaps.join(' / ')} "unreliable" lines in ${x.windowS.toFixed(0)} s`;
  body.push([
    `node1 / node2 consensus while serving the full sync (node3 syncing, not voting)`,
    cons(sv),
    `before, node3 down: ${cons(q)}`,
    `${(Math.min(...sv.closedPerRound) / Math.min(...q.closedPerRound)).toFixed(2)}x the ledger rate`,
    '(info)', '',
  ]);
  body.push([
    `ledger hash + state root identical on every node at every seq`,
    o.check.mismatches.length ? `NO: ${o.check.mismatches.length} seqs differ` : `yes, ${o.check.compared} seqs compared`,
    '—', '—', 'identical', o.check.mismatches.length ? 'NO' : 'yes',
  ]);
  const rejected = c.status.transfer.rejectedObjects + f.status.transfer.rejectedObjects + c.status.transfer.rejectedRecords + f.status.transfer.rejectedRecords;
  const title = `sync benchmark${QUICK ? ' (--quick)' : ''}: 3 hp-node processes on 127.0.0.1, writer contract, ${CFG.stateMiB} MiB data.bin, threshold ${CFG.thresholdPercent} % (quorum 2 of 3), ` +
    `roundtime ${CFG.roundtimeMs} ms; ${os.cpus().length} cores; node ${process.version}; load average ${o.loadBefore.toFixed(2)} before / ${os.loadavg()[0].toFixed(2)} after`;
  const notes: string[] = [
    `setup: data.bin generated in ${o.dataGenS.toFixed(1)} s; genesis (3 stores importing it) ${o.genesisS.toFixed(1)} s; ${CFG.changedBlocks} patches accepted in ${o.patchS.toFixed(1)} s`,
    `changed: blocks touched ${o.listsTouched} list node(s) of data.bin's tree (up to ${FANOUT} hashes = ${FANOUT * 32} B each; file nodes of files over ${FANOUT} blocks point to lists), so the ` +
      `tree nodes alone are ~${mib(o.listsTouched * FANOUT * 32)} on top of the blocks: fetched − changed = ${((cBytes - o.changedBytes) / 1024).toFixed(1)} KiB in ${c.status.transfer.stateObjects - CFG.changedBlocks} objects besides the blocks`,
    `changed: ${c.syncLine}`,
    `fresh: ${f.syncLine}`,
    `fresh: the serving nodes' event loops ran late by (per second, from their status.json): ${f.serversLoop}`,
    `fresh, servers' state cached: ${o.cached.syncLine}`,
    `changed: node3 synced at lcl ${c.lclAtSynced} (others ${c.othersAtSynced}); fresh: at ${f.lclAtSynced} (others ${f.othersAtSynced})`,
    `rejected objects/records during the syncs: ${rejected}`,
    ...c.rounds.map((l) => `changed ${l}`),
    ...f.rounds.map((l) => `fresh ${l}`),
  ];
  if (!rs) notes.push('rsync is not installed: baseline rows skipped (scripts/setup.sh does not install it; `apt-get install -y rsync`)');
  else if (rs.error) notes.push(`rsync ${rs.version}: ${rs.error}`);
  else if (rs.delta) notes.push(`rsync ${rs.version} delta: sent ${rs.delta.sent} B, received ${rs.delta.received} B, literal ${rs.delta.literal} B, matched ${rs.delta.matched} B in ${secs(rs.delta.ms)} (reads both files, writes a new copy)`);
  for (const m of o.check.mismatches.slice(0, 5)) notes.push(`MISMATCH ${m}`);
  // warn/error lines: the sync's own lines are warnings by design; show each other kind once.
  const kinds = new Map<string, { n: number; first: string }>();
  for (const l of nodes.flatMap((n) => n.problems)) {
    const k = l.replace(/^\S+ \S+ \S+\s+\S+ /, '').replace(/[0-9a-f]{8,}/g, '…').replace(/\d+/g, 'N').slice(0, 90);
    const e = kinds.get(k);
    if (e) e.n++;
    else kinds.set(k, { n: 1, first: l });
  }
  for (const { n, first } of [...kinds.values()].slice(0, 12)) notes.push(`warn/error ×${n}: ${first.slice(0, 300)}`);
  if (CFG.logsDir) notes.push(`node logs: ${path.resolve(CFG.logsDir)}/node<k>-run<r>.log`);
  return `\n${title}\n\n${markdown(['workload', 'ours', 'baseline (same run)', 'ratio', 'target', 'ok'], body)}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`;
}

// ---- main -------------------------------------------------------------------------------------------

let cleaning: Promise<void> | null = null;
let user: PatchUser | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    user?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    removeBenchDir(tmpRoot, log);
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  log(`temp dir ${tmpRoot}${QUICK ? ' (--quick)' : ''}; ${os.cpus().length} cores; state ${CFG.stateMiB} MiB, ${CFG.changedBlocks} blocks to change; roundtime ${CFG.roundtimeMs} ms`);
  if (loadBefore > 0.5) log(`load average is ${loadBefore.toFixed(2)} before we start: other processes are busy, figures will be noisy`);

  let t = performance.now();
  const contractDir = path.join(tmpRoot, 'contract');
  makeContract(contractDir, CFG.stateBlocks);
  const dataGenS = (performance.now() - t) / 1000;
  const smallContract = path.join(tmpRoot, 'contract-small');
  makeContract(smallContract, 0);
  log(`data.bin: ${CFG.stateMiB} MiB in ${dataGenS.toFixed(1)} s; creating the cluster (3 genesis stores)`);
  t = performance.now();
  await createCluster(contractDir);
  const genesisS = (performance.now() - t) / 1000;
  log(`genesis in ${genesisS.toFixed(1)} s; starting ${nodes.length} nodes`);
  const [n1, n2, n3] = nodes;
  for (const n of nodes) n.spawn();
  await waitUntil('every node to close ledger 2', CFG.startTimeoutMs, () => nodes.every((n) => n.lastSeq >= 2));
  log(`cluster up: lcl ${nodes.map((n) => n.lastSeq).join('/')} (pids ${nodes.map((n) => n.pid).join(', ')})`);

  // ---- 1. changed state -------------------------------------------------------------------------
  const downFrom = n3.lastSeq;
  await n3.stop();
  log(`changed: ${n3.name} stopped at ledger ${downFrom}; patching ${CFG.changedBlocks} blocks through ${n1.name}`);
  user = new PatchUser();
  await user.connect(`wss://127.0.0.1:${n1.userPort}`);
  await sleep(200); // its lcl
  const changed = pickBlocks(CFG.stateBlocks, CFG.changedBlocks);
  t = performance.now();
  let lastAccepted = 0;
  const todo = [...changed];
  let attempts = 0;
  while (todo.length) {
    const batch = todo.splice(0, CFG.patchBatch);
    const sent = batch.map((k) => ({ k, h: user!.submit(`patch ${k}`) }));
    await user.waitStatuses(sent.map((s) => s.h), 30_000);
    for (const s of sent) {
      const st = user.statuses.get(s.h)!;
      if (st.status === 'accepted') lastAccepted = Math.max(lastAccepted, st.ledger ?? 0);
      else {
        if (++attempts > CFG.changedBlocks) throw new Error(`too many rejected patches (last: ${st.reason})`);
        todo.push(s.k);
      }
    }
  }
  const patchS = (performance.now() - t) / 1000;
  log(`changed: ${CFG.changedBlocks} patches accepted in ${patchS.toFixed(1)} s (last in ledger ${lastAccepted}, ${attempts} resubmitted); waiting for ${CFG.ledgersAfterPatches} more ledgers`);
  user.close();
  user = null;
  const quietFrom = performance.now();
  await waitUntil(`${CFG.ledgersAfterPatches} ledgers after the patches`, 60_000 + CFG.ledgersAfterPatches * CFG.roundtimeMs * 4,
    () => n1.lastSeq >= lastAccepted + CFG.ledgersAfterPatches && n2.lastSeq >= lastAccepted + CFG.ledgersAfterPatches);
  const downLedgers = Math.min(n1.lastSeq, n2.lastSeq) - downFrom;
  const quiet = consensusIn([n1, n2], quietFrom, performance.now());
  const changedRes = await restartAndMeasure('changed', n3, [n1, n2]);

  // ---- 2. fresh node ----------------------------------------------------------------------------
  await n3.stop();
  makeFresh(n3, smallContract);
  log(`fresh: ${n3.name} now holds no ledger and a ${fs.readdirSync(smallContract).join('+')} genesis`);
  const freshRes = await restartAndMeasure('fresh', n3, [n1, n2]);
  const serving = consensusIn([n1, n2], freshRes.syncStartAt, freshRes.syncDoneAt);

  // ---- 2b. fresh node again, the servers' packs read into the page cache first (info) ------------
  await n3.stop();
  makeFresh(n3, smallContract);
  const warmMs = readPacks([n1, n2]);
  log(`fresh, servers' state cached: read node1/node2's packs in ${warmMs.toFixed(0)} ms`);
  const cachedRes = await restartAndMeasure('fresh-cached', n3, [n1, n2]);

  const check = verifyLedgers();
  log(`ledgers: ${check.mismatches.length ? `${check.mismatches.length} seqs DIFFER` : 'identical'} on ${check.compared} seqs; stopping the cluster`);
  await Promise.all(nodes.map((n) => n.stop()));
  const stale = cleanStaleMounts(tmpRoot);
  if (stale) log(`cleared ${stale} stale FUSE mount(s)`);
  fs.rmSync(path.join(tmpRoot, 'cluster'), { recursive: true, force: true }); // disk for the baseline

  // ---- 3. baseline ------------------------------------------------------------------------------
  const rsync = rsyncBaseline(path.join(contractDir, 'data.bin'), changed);
  if (!rsync) log('rsync is not installed: skipping the baseline (apt-get install -y rsync; scripts/setup.sh does not install it)');

  // List nodes on the changed blocks' paths, every level of data.bin's fan-out tree.
  let listsTouched = 0;
  for (let d = 0, span = FANOUT; d < fileDepth(CFG.stateBlocks); d++, span *= FANOUT) listsTouched += new Set(changed.map((k) => Math.floor(k / span))).size;
  process.stdout.write(report({
    changed: changedRes, fresh: freshRes, cached: cachedRes, changedBytes: CFG.changedBlocks * BLOCK, listsTouched, rsync, check, genesisS, dataGenS, patchS, downLedgers, loadBefore, quiet, serving,
  }));
}

runBench('sync', main, cleanup, log);
