// [benchmark] cluster: 3 nodes on 127.0.0.1, echo contract: lowest roundtime at which ≥ 99 % of rounds close a ledger, input→output latency at 200 ms, sustained signed 1 KiB inputs/s, against HotPocket's default 1000 ms.
// Usage: npm run bench -- cluster [--quick] [--rounds N] [--roundtimes 400,300,200,150,100] [--seconds S]
//          [--rate R] [--clients N] [--tput-roundtime MS] [--threshold P] [--light-rate R] [--no-single] [--logs-dir DIR]
//          [--cpu-prof-dir DIR]   (V8 CPU profile of every node process, written when it stops)
//   env: HP_BENCH_ROUNDS, HP_BENCH_ROUNDTIMES, HP_BENCH_SECONDS, HP_BENCH_RATE, HP_BENCH_TPUT_ROUNDTIME, HP_BENCH_CLIENTS,
//        HP_BENCH_THRESHOLD, HP_BENCH_LIGHT_RATE (the options win)
//
// Every cluster is created fresh with ensureCluster (src/node/cluster.ts: node1..N sharing a UNL),
// on free ports picked by listening on port 0, users and peers on 127.0.0.1, threshold 80 %; each
// node is a child `node bin/hp-node run <dir>` whose stderr we parse: one line per closed ledger,
// `ledger <seq> <hash12> inputs=<n> signers=<k> state=<root12>`. This process is the load generator
// (bench/rawUser.ts: raw wss:// users, JSON protocol, signed contract_input), and shares the
// machine's cores with the nodes, their statefs children and the contract processes.
//
//   sweep       for each roundtime, a fresh 3-node cluster runs --rounds wall-clock rounds under a
//               light load (--light-rate inputs/s, Poisson arrivals, users spread over the nodes):
//               fraction of rounds that closed a ledger = ledgers closed / rounds elapsed, per node
//   latency     from the same light load at 200 ms: submit → the echo's contract_output, ms and rounds
//   throughput  on the 200 ms cluster after its sweep window: --clients users spread over the nodes
//               offer --rate signed 1 KiB inputs/s for --seconds; accepted statuses/s, rejects by
//               reason, CPU (utime+stime from /proc) and RSS of every node process
//   baselines   the same cluster at HotPocket's default roundtime 1000 ms (rounds closing, latency),
//               and one node alone at 200 ms and 1000 ms (latency without consensus)
//   checks      every seq's ledger hash (and state root) identical on all nodes, in every cluster
//
// Results go to stdout as one markdown table plus notes; progress goes to stderr.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readConfig } from '../src/config/nodeConfig';
import { ensureCluster, onLines } from '../src/node/cluster';
import { cleanStaleMounts } from '../src/state/mounts';
import { argValue, benchContract, fmtMs, fmtRate, fmtRejects, makeLog, markdown, numOpt, p50, quantile, removeBenchDir, REPO_ROOT, runBench, sleep, useLoopbackPorts } from './common';
import { childPids, freePorts, procCpuSeconds, procStatusMiB, treeCpuSeconds, waitExit } from './processes';
import { LedgerWindow, LoadStats, newLoadStats, openSockets, RawUser, wholeLedgers } from './rawUser';

const QUICK = process.argv.includes('--quick');

function listOpt(name: string, env: string, dflt: number[]): number[] {
  const v = argValue(name) ?? process.env[env];
  if (!v) return dflt;
  const xs = v.split(',').map((x) => Number(x.trim()));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 50)) throw new Error(`--${name} / ${env}: "${v}" is not a list of roundtimes in ms (integers ≥ 50)`);
  return xs;
}

const CFG = {
  nodes: 3,
  roundtimes: [...new Set(listOpt('roundtimes', 'HP_BENCH_ROUNDTIMES', [400, 300, 200, 150, 100]))].sort((a, b) => b - a),
  rounds: Math.round(numOpt('rounds', 'HP_BENCH_ROUNDS', QUICK ? 30 : 500)), // per sweep roundtime
  stableFraction: 0.99,
  thresholdPercent: Math.round(numOpt('threshold', 'HP_BENCH_THRESHOLD', 80)),
  lightRate: numOpt('light-rate', 'HP_BENCH_LIGHT_RATE', 5), // inputs/s during the sweep and latency runs
  lightUsers: 3, // one per node
  latencyRoundtime: 200,
  latencyInputsWanted: 300, // a latency run outside the sweep lasts long enough for this many
  tputRoundtime: Math.round(numOpt('tput-roundtime', 'HP_BENCH_TPUT_ROUNDTIME', 200)),
  tputRate: numOpt('rate', 'HP_BENCH_RATE', 2500),
  tputSeconds: numOpt('seconds', 'HP_BENCH_SECONDS', QUICK ? 10 : 60),
  tputWarmupS: QUICK ? 2 : 5,
  tputClients: Math.round(numOpt('clients', 'HP_BENCH_CLIENTS', 30)),
  tputMaxInFlight: 4000, // per client: beyond it the generator holds back (counted as "held back")
  payloadBytes: 1024,
  hpDefaultRoundtimeMs: 1000,
  baselineRounds: QUICK ? 12 : 60,
  single: !process.argv.includes('--no-single'),
  singleRounds: { 200: QUICK ? 30 : 100, 1000: QUICK ? 0 : 30 } as Record<number, number>,
  warmupRounds: 5,
  startTimeoutMs: 60_000,
  childExitTimeoutMs: 15_000,
  drainTimeoutMs: 10_000,
  logsDir: argValue('logs-dir'),
  cpuProfDir: argValue('cpu-prof-dir'),
} as const;

const HP_NODE_BIN = path.join(REPO_ROOT, 'bin', 'hp-node');
const CONTRACT = benchContract();
const log = makeLog('cluster');
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bench-cluster-'));

// ---- a cluster of `hp-node run` children, watched through their logs -----------------------------

interface LedgerLine {
  seq: number;
  hash: string; // first 12 hex digits, as logged
  state: string;
  inputs: number;
  signers: number;
  atMs: number; // performance.now() when the line arrived
}

interface ClusterNode {
  name: string;
  dir: string;
  url: string;
  child: ChildProcess;
  pid: number;
  ledgers: Map<number, LedgerLine>;
  lastSeq: number;
  ready: boolean;
  problems: string[]; // warn / error lines
  unreliableFlaps: number; // "vote status: unreliable" lines
  exited: { code: number | null; signal: string | null; atMs: number } | null;
  logFile: fs.WriteStream;
}

const LEDGER_LINE = /\bledger (\d+) ([0-9a-f]{12}) inputs=(\d+) signers=(\d+) state=([0-9a-f]{12})/;
const LEVEL = /^\S+ (debug|info|warn|error)\s/;

const liveClusters = new Set<BenchCluster>();

class BenchCluster {
  readonly nodes: ClusterNode[] = [];
  private stopped: Promise<void> | null = null;

  private constructor(readonly label: string, readonly dir: string, readonly roundtimeMs: number, private readonly dirs: string[]) {}

  /** Creates node1..N with ensureCluster, then moves them to free loopback ports and our settings. */
  static async create(label: string, n: number, roundtimeMs: number): Promise<BenchCluster> {
    const dir = path.join(tmpRoot, label);
    // Placeholder port bases: every port is replaced below by one free right now.
    const r = (await ensureCluster(dir, {
      nodes: n, ...CONTRACT, userPortBase: 20000, peerPortBase: 30000, roundtimeMs,
    })) as unknown as string[] | { dirs: string[] };
    const dirs = Array.isArray(r) ? r : r.dirs;
    const ports = await freePorts(2 * n);
    const userPorts = ports.slice(0, n);
    const peerPorts = ports.slice(n);
    useLoopbackPorts(dirs, userPorts, peerPorts, (cfg) => {
      cfg.contract.consensus.roundtime = roundtimeMs;
      cfg.contract.consensus.threshold = CFG.thresholdPercent;
      cfg.log.level = process.env.HP_BENCH_LOG_LEVEL === 'debug' ? 'debug' : 'info'; // the per-ledger lines are info
    });
    return new BenchCluster(label, dir, roundtimeMs, dirs);
  }

  /** Spawns every node; resolves once each listens for users and has closed a first ledger. */
  async start(): Promise<void> {
    liveClusters.add(this);
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS; // tens of ms per start-up, and the node needs none
    const logDir = CFG.logsDir ? path.resolve(CFG.logsDir) : this.dir;
    fs.mkdirSync(logDir, { recursive: true });
    for (const d of this.dirs) {
      const cfg = readConfig(path.join(d, 'config.json'));
      const name = path.basename(d);
      const prof = CFG.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(CFG.cpuProfDir)}`, `--cpu-prof-name=${this.label}-${name}.cpuprofile`] : [];
      const child = spawn(process.execPath, [...prof, HP_NODE_BIN, 'run', d], { stdio: ['ignore', 'pipe', 'pipe'], env });
      const node: ClusterNode = {
        name, dir: d, url: `wss://127.0.0.1:${cfg.user.port}`, child, pid: child.pid!, ledgers: new Map(), lastSeq: 0, ready: false,
        problems: [], unreliableFlaps: 0, exited: null, logFile: fs.createWriteStream(path.join(logDir, `${this.label}-${name}.log`)),
      };
      child.once('error', (err) => node.problems.push(`cannot start: ${err.message}`));
      child.once('exit', (code, signal) => {
        node.exited = { code, signal, atMs: performance.now() };
        if (!this.stopped) log(`${this.label}/${name} (pid ${node.pid}) exited unexpectedly: code ${code} signal ${signal}`);
      });
      for (const stream of [child.stdout!, child.stderr!]) onLines(stream, (line) => this.onLine(node, line));
      this.nodes.push(node);
    }
    const t0 = performance.now();
    while (!this.nodes.every((n) => n.ready && n.lastSeq >= 1)) {
      const dead = this.nodes.find((n) => n.exited);
      if (dead) throw new Error(`${this.label}/${dead.name} exited during start-up (code ${dead.exited!.code}); last problems: ${dead.problems.slice(-3).join(' | ') || 'none'}`);
      if (performance.now() - t0 > CFG.startTimeoutMs) {
        throw new Error(`${this.label}: not every node closed a first ledger within ${CFG.startTimeoutMs} ms (` +
          `${this.nodes.map((n) => `${n.name}: ${n.ready ? 'up' : 'not listening'}, lcl ${n.lastSeq}`).join('; ')})`);
      }
      await sleep(50);
    }
  }

  private onLine(node: ClusterNode, line: string): void {
    node.logFile.write(`${line}\n`);
    const m = LEDGER_LINE.exec(line);
    if (m) {
      const seq = Number(m[1]);
      node.ledgers.set(seq, { seq, hash: m[2], inputs: Number(m[3]), signers: Number(m[4]), state: m[5], atMs: performance.now() });
      node.lastSeq = Math.max(node.lastSeq, seq);
      return;
    }
    if (line.includes('users: ws') || line.startsWith('hp-node running')) node.ready = true;
    if (line.includes('vote status: unreliable')) node.unreliableFlaps++;
    const lvl = LEVEL.exec(line)?.[1];
    if (lvl === 'warn' || lvl === 'error') node.problems.push(line);
  }

  /** SIGTERM every node by PID, wait, SIGKILL stragglers (and their children), clear mounts, remove the dirs. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.all(this.nodes.map(async (n) => {
        if (n.exited) return;
        const kids = childPids(n.pid); // statefs: only needs killing if the node itself had to be
        try {
          process.kill(n.pid, 'SIGTERM'); // the node finishes its round, unmounts, flushes
        } catch { /* already gone */ }
        await waitExit(n.child, CFG.childExitTimeoutMs, () => {
          log(`${this.label}/${n.name} (pid ${n.pid}) did not exit within ${CFG.childExitTimeoutMs} ms: SIGKILL`);
          for (const k of kids) {
            try {
              process.kill(k, 'SIGKILL');
            } catch { /* gone */ }
          }
        });
      }));
      await Promise.all(this.nodes.map((n) => new Promise<void>((resolve) => n.logFile.end(() => resolve()))));
      const stale = cleanStaleMounts(this.dir);
      if (stale) log(`${this.label}: cleared ${stale} stale FUSE mount(s)`);
      fs.rmSync(this.dir, { recursive: true, force: true });
      liveClusters.delete(this);
    })();
    return this.stopped;
  }

  /** Ledger hashes and state roots of every seq, compared across the nodes (up to the lowest tip). */
  verify(): Verification {
    const common = Math.min(...this.nodes.map((n) => n.lastSeq));
    const top = Math.max(...this.nodes.map((n) => n.lastSeq));
    const mismatches: string[] = [];
    const missing: string[] = [];
    for (let s = 1; s <= common; s++) {
      const lines = this.nodes.map((n) => n.ledgers.get(s));
      const absent = this.nodes.filter((_, i) => !lines[i]).map((n) => n.name);
      if (absent.length) missing.push(`seq ${s} not logged by ${absent.join(', ')}`);
      const present = lines.filter((l): l is LedgerLine => !!l);
      if (new Set(present.map((l) => `${l.hash}/${l.state}`)).size > 1) {
        mismatches.push(`seq ${s}: ${this.nodes.map((n, i) => `${n.name} ${lines[i] ? `${lines[i]!.hash} state ${lines[i]!.state}` : '—'}`).join(', ')}`);
      }
    }
    return { label: this.label, compared: common, top, tips: this.nodes.map((n) => n.lastSeq), mismatches, missing };
  }
}

interface Verification {
  label: string;
  compared: number; // seqs 1..compared were checked on every node
  top: number;
  tips: number[];
  mismatches: string[];
  missing: string[];
}


// ---- users --------------------------------------------------------------------------------------

/** `count` raw users, user i on node i mod N; user 0 also subscribes to ledger events. */
async function connectUsers(cluster: BenchCluster, count: number, stats: LoadStats, idBase: number, payloadBytes = 0): Promise<RawUser[]> {
  const users = Array.from({ length: count }, (_, i) => new RawUser(idBase + i, stats, { payloadBytes }));
  await Promise.all(users.map((u, i) => u.connect(cluster.nodes[i % cluster.nodes.length].url, i === 0)));
  for (let i = 0; i < 100 && stats.lcl === 0; i++) await sleep(20);
  return users;
}

/** Light load: Poisson arrivals at `rate`/s, each input from a random user. Returns a stop function. */
function lightLoad(users: RawUser[], rate: number): () => void {
  let running = true;
  void (async () => {
    while (running) {
      await sleep(-Math.log(1 - Math.random()) * (1000 / rate));
      if (!running) break;
      const u = users[Math.floor(Math.random() * users.length)];
      if (u.inFlight < 100) u.submit();
    }
  })();
  return () => {
    running = false;
  };
}

// ---- one run: a cluster at one roundtime ----------------------------------------------------------

interface RoundsResult {
  rounds: number; // wall-clock rounds elapsed in the window
  closed: number[]; // ledgers closed per node in the window
  fraction: number; // min over nodes of closed / rounds
  gapsRounds: number[]; // node 1: time between consecutive ledger lines, in rounds
  ledgersPerS: number;
}

interface LatencyResult {
  ms: number[];
  submitted: number;
  rejected: Map<string, number>;
  noOutput: number;
}

interface ThroughputResult {
  seconds: number;
  offeredRate: number;
  sent: number;
  heldBack: number;
  accepted: number;
  rejected: Map<string, number>;
  rejectedAfter: Map<string, number>; // statuses that arrived during the drain
  outputs: number;
  badOutputs: number;
  outputLatMs: number[];
  ledgers: LedgerWindow | null;
  nodeCpuS: number[]; // the node process itself
  treeCpuS: number[]; // node + statefs + contract processes
  rssMiB: number[];
  hwmMiB: number[];
  childRssMiB: number[]; // the node's live children (statefs) at the end of the window
  benchCpuS: number;
  inputsPerLedger: number[];
  ledgersClosed: number; // by node1 inside the window
  longestStallS: number; // longest time inside the window without a ledger line from node1
}

interface RunResult {
  label: string;
  nodes: number;
  roundtimeMs: number;
  rounds: RoundsResult;
  latency: LatencyResult;
  throughput: ThroughputResult | null;
  verification: Verification;
  problems: Array<{ node: string; lines: string[] }>;
  unreliableFlaps: number[];
  exits: string[];
  startS: number;
}

async function runCluster(label: string, nodes: number, rt: number, rounds: number, withThroughput: boolean): Promise<RunResult> {
  const tStart = performance.now();
  const cluster = await BenchCluster.create(label, nodes, rt);
  log(`${label}: ${nodes} node(s), roundtime ${rt} ms, threshold ${CFG.thresholdPercent} %: starting`);
  try {
    await cluster.start();
    const startS = (performance.now() - tStart) / 1000;
    log(`${label}: every node closed ledger 1 after ${startS.toFixed(1)} s (pids ${cluster.nodes.map((n) => n.pid).join(', ')}); ${CFG.warmupRounds} warm-up rounds`);
    const stats = newLoadStats();
    const users = await connectUsers(cluster, CFG.lightUsers, stats, 1);
    const stopLight = lightLoad(users, CFG.lightRate);
    await sleep(CFG.warmupRounds * rt);

    // The window: `rounds` wall-clock rounds under the light load.
    const seq0 = cluster.nodes.map((n) => n.lastSeq);
    const submitted0 = users.reduce((a, u) => a + u.submitted, 0);
    const t0 = performance.now();
    stats.counting = true;
    const windowMs = rounds * rt;
    for (let done = 0; done < windowMs;) {
      const step = Math.min(windowMs - done, 30_000);
      await sleep(step);
      done += step;
      if (done < windowMs) log(`${label}: ${Math.round(done / rt)}/${rounds} rounds, lcl ${cluster.nodes.map((n) => n.lastSeq).join('/')}`);
    }
    const t1 = performance.now();
    const seq1 = cluster.nodes.map((n) => n.lastSeq);
    stopLight();
    const submitted = users.reduce((a, u) => a + u.submitted, 0) - submitted0;
    // Let the outputs of inputs sent in the window arrive (they still count), then stop counting.
    const tDrain = performance.now();
    while (stats.outputLatMs.length + sumMap(stats.rejected) < submitted && performance.now() - tDrain < Math.max(3000, 12 * rt)) await sleep(20);
    stats.counting = false;
    const elapsedRounds = (t1 - t0) / rt;
    const closed = seq1.map((s, i) => s - seq0[i]);
    const gaps = [...cluster.nodes[0].ledgers.values()].filter((l) => l.atMs >= t0 && l.atMs <= t1).sort((a, b) => a.seq - b.seq);
    const gapsRounds = gaps.slice(1).map((l, i) => (l.atMs - gaps[i].atMs) / rt);
    const roundsRes: RoundsResult = {
      rounds: elapsedRounds, closed, fraction: Math.min(...closed) / elapsedRounds, gapsRounds, ledgersPerS: Math.min(...closed) / ((t1 - t0) / 1000),
    };
    const latency: LatencyResult = {
      ms: [...stats.outputLatMs], submitted, rejected: new Map(stats.rejected),
      noOutput: Math.max(0, submitted - stats.outputLatMs.length - sumMap(stats.rejected)),
    };
    log(`${label}: ${closed.join('/')} ledgers in ${elapsedRounds.toFixed(0)} rounds = ${(100 * roundsRes.fraction).toFixed(1)} % (min); ` +
      `ledger every ${p50(gapsRounds).toFixed(2)} rounds (median); latency p50 ${fmtMs(p50(latency.ms))} p99 ${fmtMs(quantile(latency.ms, 0.99))} over ${latency.ms.length} inputs` +
      `${latency.noOutput ? `, ${latency.noOutput} without output` : ''}${latency.rejected.size ? `, rejected: ${fmtRejects(latency.rejected)}` : ''}`);
    await Promise.all(users.map((u) => u.close()));

    const throughput = withThroughput ? await runThroughput(cluster) : null;
    await cluster.stop();
    const verification = cluster.verify();
    log(`${label}: stopped; hashes ${verification.mismatches.length ? `DIFFER at ${verification.mismatches.length} seqs` : 'identical'} on seqs 1..${verification.compared} (tips ${verification.tips.join('/')})`);
    return {
      label, nodes, roundtimeMs: rt, rounds: roundsRes, latency, throughput, verification,
      problems: cluster.nodes.map((n) => ({ node: n.name, lines: n.problems })),
      unreliableFlaps: cluster.nodes.map((n) => n.unreliableFlaps),
      exits: cluster.nodes.filter((n) => n.exited && n.exited.code !== 0).map((n) => `${n.name} exited with code ${n.exited!.code} signal ${n.exited!.signal}`),
      startS,
    };
  } finally {
    await cluster.stop();
  }
}

const sumMap = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

async function runThroughput(cluster: BenchCluster): Promise<ThroughputResult> {
  const stats = newLoadStats();
  const users = await connectUsers(cluster, CFG.tputClients, stats, 1000, CFG.payloadBytes);
  const rate = CFG.tputRate;
  log(`throughput: ${users.length} users over ${cluster.nodes.length} nodes offering ${fmtRate(rate)} signed ${CFG.payloadBytes}-byte inputs; warming up ${CFG.tputWarmupS} s`);
  let sent = 0;
  let heldBack = 0;
  let next = 0;
  const tPace = performance.now();
  // Open loop: every tick sends what the target rate says is due by now, round-robin over the users.
  const pacer = setInterval(() => {
    const due = Math.floor((rate * (performance.now() - tPace)) / 1000) - sent - heldBack;
    for (let k = 0; k < Math.min(due, rate / 10); k++) {
      const u = users[next++ % users.length];
      if (u.inFlight >= CFG.tputMaxInFlight) heldBack++;
      else {
        u.submit();
        sent++;
      }
    }
  }, 5);
  await sleep(CFG.tputWarmupS * 1000);
  const cpu0 = cluster.nodes.map((n) => procCpuSeconds(n.pid));
  const tree0 = cluster.nodes.map((n) => treeCpuSeconds(n.pid));
  const bench0 = process.cpuUsage();
  const sent0 = sent;
  const held0 = heldBack;
  const seq0 = cluster.nodes[0].lastSeq;
  const t0 = performance.now();
  stats.counting = true;
  for (let s = 1; s <= CFG.tputSeconds; s++) {
    const a0 = stats.accepted;
    await sleep(1000);
    if (s % (QUICK ? 2 : 10) === 0 || s === CFG.tputSeconds) {
      log(`throughput: ${s} s: ${stats.accepted} accepted (${stats.accepted - a0} last second), sent ${sent - sent0}, held back ${heldBack - held0}, ` +
        `rejected ${sumMap(stats.rejected)}, lcl ${cluster.nodes.map((n) => n.lastSeq).join('/')}`);
    }
  }
  stats.counting = false;
  const t1 = performance.now();
  const seconds = (t1 - t0) / 1000;
  const nodeCpuS = cluster.nodes.map((n, i) => procCpuSeconds(n.pid) - cpu0[i]);
  const treeCpuS = cluster.nodes.map((n, i) => treeCpuSeconds(n.pid) - tree0[i]);
  const b = process.cpuUsage(bench0);
  const rssMiB = cluster.nodes.map((n) => procStatusMiB(n.pid, 'VmRSS'));
  const hwmMiB = cluster.nodes.map((n) => procStatusMiB(n.pid, 'VmHWM'));
  const childRssMiB = cluster.nodes.map((n) => childPids(n.pid).reduce((a, c) => a + (procStatusMiB(c, 'VmRSS') || 0), 0));
  const seq1 = cluster.nodes[0].lastSeq;
  clearInterval(pacer);
  const sentInWindow = sent - sent0;
  const heldInWindow = heldBack - held0;
  const accepted = stats.accepted;
  const rejected = new Map(stats.rejected);
  const outputs = stats.outputs;
  const outputLatMs = [...stats.outputLatMs];
  await sleep(Math.max(500, cluster.roundtimeMs)); // statuses of the last ledger in the window are on their way
  const ledgers = wholeLedgers(stats, t0, t1);
  const inputsPerLedger: number[] = [];
  const closedAt = [t0];
  for (let s = seq0 + 1; s <= seq1; s++) {
    const l = cluster.nodes[0].ledgers.get(s);
    if (l) {
      inputsPerLedger.push(l.inputs);
      closedAt.push(l.atMs);
    }
  }
  closedAt.push(t1);
  const longestStallS = Math.max(...closedAt.slice(1).map((t, i) => t - closedAt[i])) / 1000;
  // Drain what is still in flight, so the nodes stop without a backlog; late rejects are reported.
  const before = new Map(stats.rejected);
  stats.counting = true;
  const tDrain = performance.now();
  while (users.some((u) => u.inFlight > 0) && performance.now() - tDrain < CFG.drainTimeoutMs) await sleep(50);
  stats.counting = false;
  const rejectedAfter = new Map([...stats.rejected].map(([r, n]) => [r, n - (before.get(r) ?? 0)] as [string, number]).filter(([, n]) => n > 0));
  const stillInFlight = users.reduce((a, u) => a + u.inFlight, 0);
  if (stillInFlight) log(`throughput: ${stillInFlight} inputs still without a status ${CFG.drainTimeoutMs} ms after the load stopped`);
  await Promise.all(users.map((u) => u.close()));
  return {
    seconds, offeredRate: rate, sent: sentInWindow, heldBack: heldInWindow, accepted, rejected, rejectedAfter, outputs, badOutputs: stats.badOutputs,
    outputLatMs, ledgers, nodeCpuS, treeCpuS, rssMiB, hwmMiB, childRssMiB, benchCpuS: (b.user + b.system) / 1e6, inputsPerLedger,
    ledgersClosed: seq1 - seq0, longestStallS,
  };
}

// ---- the table ----------------------------------------------------------------------------------

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

function gapHistogram(gaps: number[]): string {
  if (!gaps.length) return 'no gaps';
  const h = new Map<number, number>();
  for (const g of gaps) {
    const k = Math.max(1, Math.round(g));
    h.set(k, (h.get(k) ?? 0) + 1);
  }
  return [...h].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k}: ${((100 * n) / gaps.length).toFixed(0)} %`).join(', ');
}

function latencyCell(r: RunResult, q: number): string {
  const x = quantile(r.latency.ms, q);
  return `${fmtMs(x)} = ${(x / r.roundtimeMs).toFixed(2)} rounds`;
}

function report(runs: RunResult[], loadBefore: number): string {
  const sweep = runs.filter((r) => r.nodes === CFG.nodes && CFG.roundtimes.includes(r.roundtimeMs) && r.label.startsWith('sweep'));
  const base = runs.find((r) => r.label === 'baseline-1000');
  const lat = runs.find((r) => r.nodes === CFG.nodes && r.roundtimeMs === CFG.latencyRoundtime && r.label !== 'baseline-1000');
  const tput = runs.find((r) => r.throughput)?.throughput ?? null;
  const single = runs.filter((r) => r.nodes === 1);
  const body: string[][] = [];
  const baseFrac = base ? `${base.roundtimeMs} ms: ${pct(base.rounds.fraction)} of ${base.rounds.rounds.toFixed(0)} rounds` : '—';

  const stable = sweep.filter((r) => r.rounds.fraction >= CFG.stableFraction && !r.verification.mismatches.length);
  const lowest = stable.length ? Math.min(...stable.map((r) => r.roundtimeMs)) : null;
  const best = [...sweep].sort((a, b) => b.rounds.fraction - a.rounds.fraction)[0];
  body.push([
    `lowest roundtime with ≥ ${100 * CFG.stableFraction} % of rounds closing a ledger (${CFG.nodes} nodes, ${CFG.lightRate} inputs/s; tried ${CFG.roundtimes.join(', ')} ms)`,
    lowest !== null ? `${lowest} ms` : `none (best: ${best ? `${best.roundtimeMs} ms, ${pct(best.rounds.fraction)}` : '—'})`,
    base ? `HotPocket default ${baseFrac}` : '—',
    lowest !== null ? `${(lowest / CFG.hpDefaultRoundtimeMs).toPrecision(2)}x the roundtime` : '—',
    '≤ 200 ms stable (stretch 100 ms)',
    lowest === null ? 'NO' : lowest <= 100 ? 'yes (stretch too)' : lowest <= 200 ? 'yes' : 'NO',
  ]);
  for (const r of sweep) {
    const g = r.rounds.gapsRounds;
    body.push([
      `rounds closing a ledger at ${r.roundtimeMs} ms (${r.rounds.rounds.toFixed(0)} rounds, ${r.rounds.closed.join('/')} ledgers per node)`,
      `${pct(r.rounds.fraction)}; a ledger every ${p50(g).toFixed(2)} rounds median, p99 ${quantile(g, 0.99).toFixed(2)} (${(r.rounds.ledgersPerS).toFixed(2)} ledgers/s)`,
      base ? `${baseFrac} (${base.rounds.ledgersPerS.toFixed(2)} ledgers/s)` : '—',
      base ? `${(r.rounds.fraction / base.rounds.fraction).toPrecision(3)}x; ${(r.rounds.ledgersPerS / base.rounds.ledgersPerS).toPrecision(3)}x ledgers/s` : '—',
      `≥ ${100 * CFG.stableFraction} %`,
      r.rounds.fraction >= CFG.stableFraction ? 'yes' : 'NO',
    ]);
  }
  if (lat) {
    for (const [label, q, maxRounds] of [['p50', 0.5, 3], ['p99', 0.99, 5]] as const) {
      const ours = quantile(lat.latency.ms, q);
      const b = base ? quantile(base.latency.ms, q) : NaN;
      const singles = single.map((s) => `1 node @ ${s.roundtimeMs} ms: ${latencyCell(s, q)}`);
      body.push([
        `input→output latency ${label} at ${lat.roundtimeMs} ms (${lat.latency.ms.length} inputs at ${CFG.lightRate}/s via ${CFG.nodes} nodes)`,
        latencyCell(lat, q),
        [base ? `${CFG.nodes} nodes @ ${base.roundtimeMs} ms: ${latencyCell(base, q)}` : '', ...singles].filter(Boolean).join('; ') || '—',
        base ? `${(ours / b).toPrecision(3)}x the ${base.roundtimeMs} ms cluster` : '—',
        `≤ ${maxRounds} rounds`,
        ours / lat.roundtimeMs <= maxRounds ? 'yes' : 'NO',
      ]);
    }
  }
  if (tput) {
    const rate = tput.ledgers && tput.ledgers.spanS > 0 ? tput.ledgers.accepted / tput.ledgers.spanS : tput.accepted / tput.seconds;
    const basis = tput.ledgers && tput.ledgers.spanS > 0 ? `ledgers ${tput.ledgers.from + 1}-${tput.ledgers.to} over ${tput.ledgers.spanS.toFixed(1)} s` : `statuses in ${tput.seconds.toFixed(1)} s`;
    body.push([
      `accepted signed ${CFG.payloadBytes}-byte inputs/s at ${CFG.tputRoundtime} ms (${CFG.tputClients} users over ${CFG.nodes} nodes, ${basis})`,
      fmtRate(rate),
      `offered ${fmtRate(tput.offeredRate)} (sent ${fmtRate(tput.sent / tput.seconds)}${tput.heldBack ? `, ${tput.heldBack} held back: ${CFG.tputMaxInFlight} in flight per user` : ''})`,
      `${(rate / tput.offeredRate).toPrecision(3)}x offered`,
      '≥ 2,000/s',
      rate >= 2000 ? 'yes' : 'NO',
    ]);
    const nominal = tput.seconds / (CFG.tputRoundtime / 1000);
    body.push([
      `ledgers closed during that load (node1), longest stretch without one`,
      `${tput.ledgersClosed} in ${tput.seconds.toFixed(0)} s (${((100 * tput.ledgersClosed) / nominal).toFixed(1)} % of rounds); ${tput.longestStallS.toFixed(1)} s = ${((tput.longestStallS * 1000) / CFG.tputRoundtime).toFixed(0)} rounds`,
      lat ? `light load at ${lat.roundtimeMs} ms: ${pct(lat.rounds.fraction)} of rounds` : '—', '—', '(info)', '',
    ]);
    body.push([
      `rejected inputs under that load, by reason`,
      `${fmtRejects(tput.rejected)} (window); ${fmtRejects(tput.rejectedAfter)} (drain)`,
      '—', `${((100 * sumMap(tput.rejected)) / Math.max(1, tput.sent)).toFixed(2)} % of sent`, '(info)', '',
    ]);
    body.push([
      `CPU per node over the ${tput.seconds.toFixed(0)} s window: node process / with statefs + contracts`,
      tput.nodeCpuS.map((c, i) => `node${i + 1} ${((100 * c) / tput.seconds).toFixed(0)} % / ${((100 * tput.treeCpuS[i]) / tput.seconds).toFixed(0)} %`).join(', '),
      `load generator ${((100 * tput.benchCpuS) / tput.seconds).toFixed(0)} %`, '—', `(info; ${os.cpus().length} cores = ${os.cpus().length * 100} %)`, '',
    ]);
    body.push([
      `RSS per node process at the end of the window (peak) + its statefs child`,
      tput.rssMiB.map((r, i) => `node${i + 1} ${r.toFixed(0)} MiB (${tput.hwmMiB[i].toFixed(0)}) + ${tput.childRssMiB[i].toFixed(0)}`).join(', '),
      '—', '—', '(info)', '',
    ]);
    const ipl = tput.inputsPerLedger;
    body.push([
      `inputs per ledger closed during that load (node1)`,
      !ipl.length ? 'no ledger closed' : ipl.length <= 16 ? ipl.join(', ') : `median ${p50(ipl)}, max ${Math.max(...ipl)}, ${ipl.filter((x) => x === 0).length} of ${ipl.length} empty`,
      '—', '—', '(info)', '',
    ]);
    const ol = tput.outputLatMs;
    body.push([
      `input→output latency under that load, p50 / p99`,
      ol.length
        ? `${fmtMs(p50(ol))} / ${fmtMs(quantile(ol, 0.99))} = ${(p50(ol) / CFG.tputRoundtime).toFixed(1)} / ${(quantile(ol, 0.99) / CFG.tputRoundtime).toFixed(1)} rounds (${ol.length} inputs)`
        : 'no input sent in the window got its output in the window',
      '—', '—', '(info)', '',
    ]);
  }
  const bad = runs.filter((r) => r.verification.mismatches.length || r.verification.missing.length);
  const seqs = runs.reduce((a, r) => a + r.verification.compared, 0);
  body.push([
    `ledger hash + state root identical on all nodes at every seq (${runs.filter((r) => r.nodes > 1).length} clusters)`,
    bad.length ? `NO: ${bad.map((r) => `${r.label} ${r.verification.mismatches.length} differ, ${r.verification.missing.length} missing`).join('; ')}` : `yes, ${seqs} seqs checked`,
    '—', '—', 'identical', bad.length ? 'NO' : 'yes',
  ]);
  for (const r of runs) {
    if (sweep.includes(r) && r !== lat) {
      body.push([
        `latency p50 / p99 at ${r.roundtimeMs} ms, ${r.nodes} node${r.nodes > 1 ? 's' : ''} (${r.latency.ms.length} inputs)`,
        `${latencyCell(r, 0.5)} / ${latencyCell(r, 0.99)}`, '—', '—', '(info)', '',
      ]);
    }
  }

  const title = `cluster benchmark${QUICK ? ' (--quick)' : ''}: ${CFG.nodes} hp-node processes on 127.0.0.1, contract ${CONTRACT.name}, threshold ${CFG.thresholdPercent} %, ` +
    `${CFG.rounds} rounds per roundtime; ${os.cpus().length} cores shared by the load generator, the nodes, their statefs children and the contract processes; ` +
    `node ${process.version}; load average ${loadBefore.toFixed(2)} before / ${os.loadavg()[0].toFixed(2)} after`;
  const legend = [
    `Rounds closing = ledgers a node logged during the window / wall-clock rounds elapsed (min over the nodes); "a ledger every k rounds" = time between ` +
      `consecutive ledger lines of node1 / roundtime. Fresh cluster per roundtime, ${CFG.warmupRounds} warm-up rounds after every node closed ledger 1.`,
    `Latency = submit of a signed contract_input (raw wss:// user, one per node, Poisson arrivals at ${CFG.lightRate}/s) → the "Echoing: …" contract_output from the ` +
      `same node; rounds = ms / roundtime. Outputs reach users with the ledger after the one holding the input (HotPocket's one-ledger lag).`,
    `Throughput = contract_input_status "accepted" per second from whole ledgers closed in the ${CFG.tputSeconds} s window (after ${CFG.tputWarmupS} s warm-up), ` +
      `open-loop offered load, ${CFG.payloadBytes}-byte inputs. CPU = utime+stime of each node process from /proc/<pid>/stat (the second figure adds its ` +
      `statefs child and reaped contract processes).`,
  ];
  const notes: string[] = [];
  for (const r of runs) {
    const g = r.rounds.gapsRounds;
    notes.push(`${r.label} (${r.nodes} node${r.nodes > 1 ? 's' : ''}, ${r.roundtimeMs} ms): start ${r.startS.toFixed(1)} s; ${r.rounds.closed.join('/')} ledgers in ${r.rounds.rounds.toFixed(0)} rounds; ` +
      `rounds between ledgers: ${gapHistogram(g)}; latency ${r.latency.ms.length} of ${r.latency.submitted} inputs answered` +
      `${r.latency.noOutput ? `, ${r.latency.noOutput} without output` : ''}${r.latency.rejected.size ? `, rejected: ${fmtRejects(r.latency.rejected)}` : ''}; ` +
      `hashes compared on seqs 1..${r.verification.compared} (tips ${r.verification.tips.join('/')}); "vote status: unreliable" lines ${r.unreliableFlaps.join('/')}; ` +
      `warn/error lines ${r.problems.map((p) => p.lines.length).join('/')}${r.exits.length ? `; ${r.exits.join(', ')}` : ''}`);
    for (const m of [...r.verification.mismatches.slice(0, 5), ...r.verification.missing.slice(0, 5)]) notes.push(`  ${r.label}: ${m}`);
    const lines = r.problems.flatMap((p) => p.lines.map((l) => `${p.node}: ${l}`));
    const kinds = new Map<string, { n: number; first: string }>();
    for (const l of lines) {
      const k = l.replace(/^\S+: \S+ \S+\s+\S+ /, '').replace(/[0-9a-f]{8,}/g, '…').replace(/\d+/g, 'N').slice(0, 90);
      const e = kinds.get(k);
      if (e) e.n++;
      else kinds.set(k, { n: 1, first: l });
    }
    for (const { n, first } of [...kinds.values()].slice(0, 6)) notes.push(`  ${r.label} ×${n}: ${first.slice(0, 300)}`);
  }
  if (tput) {
    notes.push(`throughput: ${tput.accepted} accepted statuses inside the window (${fmtRate(tput.accepted / tput.seconds)}), ${tput.outputs} outputs, ` +
      `${tput.badOutputs} outputs not "Echoing: u<user>-<nonce>-…"; generator CPU ${(tput.benchCpuS / tput.seconds).toFixed(2)} cores`);
  }
  if (CFG.logsDir) notes.push(`node logs: ${path.resolve(CFG.logsDir)}/<run>-node<k>.log`);
  return `\n${title}\n\n${markdown(['workload', 'ours', 'baseline (same run)', 'ratio', 'target', 'ok'], body)}\n\n${legend.join('\n')}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`;
}

// ---- main ---------------------------------------------------------------------------------------

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const ws of openSockets) ws.terminate();
    await Promise.all([...liveClusters].map((c) => c.stop()));
    removeBenchDir(tmpRoot, log);
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  log(`temp dir ${tmpRoot}${QUICK ? ' (--quick)' : ''}; ${os.cpus().length} cores; roundtimes ${CFG.roundtimes.join(', ')} ms x ${CFG.rounds} rounds; ` +
    `throughput ${fmtRate(CFG.tputRate)} for ${CFG.tputSeconds} s at ${CFG.tputRoundtime} ms`);
  if (loadBefore > 0.5) log(`load average is ${loadBefore.toFixed(2)} before we start: other processes are busy, figures will be noisy`);
  const estimateS = CFG.roundtimes.reduce((a, rt) => a + (CFG.rounds * rt) / 1000, 0) + CFG.tputSeconds + CFG.baselineRounds;
  log(`measurement windows alone take about ${Math.round(estimateS / 60)} min`);

  const runs: RunResult[] = [];
  // The sweep; the latency and throughput roundtime gets a run of its own if the sweep skips it.
  const sweepRts = [...CFG.roundtimes];
  for (const rt of [CFG.latencyRoundtime, CFG.tputRoundtime]) if (!sweepRts.includes(rt)) sweepRts.push(rt);
  for (const rt of sweepRts.sort((a, b) => b - a)) {
    const inSweep = CFG.roundtimes.includes(rt);
    const rounds = inSweep ? CFG.rounds : QUICK ? CFG.rounds : Math.ceil(((CFG.latencyInputsWanted / CFG.lightRate) * 1000) / rt);
    runs.push(await runCluster(`${inSweep ? 'sweep' : 'latency'}-${rt}`, CFG.nodes, rt, rounds, rt === CFG.tputRoundtime));
  }
  // HotPocket's default roundtime, same cluster shape and light load.
  runs.push(await runCluster('baseline-1000', CFG.nodes, CFG.hpDefaultRoundtimeMs, CFG.baselineRounds, false));
  // One node alone: the latency without consensus.
  if (CFG.single) {
    for (const rt of [CFG.latencyRoundtime, CFG.hpDefaultRoundtimeMs]) {
      if (CFG.singleRounds[rt] > 0) runs.push(await runCluster(`single-${rt}`, 1, rt, CFG.singleRounds[rt], false));
    }
  }
  process.stdout.write(report(runs, loadBefore));
}

runBench('cluster', main, cleanup, log);
