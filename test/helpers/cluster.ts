// A multi-process cluster for integration tests: N `hp-node run` children sharing a UNL, optionally
// with every directed peer link through its own LoopbackProxy so a test can partition the network.
// Each node's output goes to a ring buffer (for timeout errors) and to <node dir>/node-output.log.
// Everything is torn down when the test ends: children killed by PID, FUSE mounts cleared, proxies
// stopped, ports released. Node indices are 0-based everywhere (index i is directory node<i+1>).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { NodeConfig, readConfig, writeConfig } from '../../src/config/nodeConfig';
import { KeyPair, readKeyFile } from '../../src/crypto/keys';
import { clusterNodeInfo, ensureCluster, onLines, spawnNode } from '../../src/node/cluster';
import { PeerNetwork } from '../../src/p2p/network';
import { cleanStaleMounts } from '../../src/state/mounts';
import { deferCleanup, REPO_ROOT, tempDir } from './fixtures';
import { RawUser } from './rawUser';
import { LoopbackProxy } from './tcpProxy';

const KEEP_LOGS_DIR = process.env.HP_TEST_LOG_DIR;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- ports ----

const PORT_LOCKS = path.join(os.tmpdir(), 'hp-test-ports');
const myPortLocks: string[] = [];
process.once('exit', () => myPortLocks.forEach((f) => fs.rmSync(f, { force: true })));

/** The kernel's ephemeral range: listen(0) and outgoing connections take ports from it. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    /* not Linux: assume the IANA range */
  }
  return [49152, 65535];
}

/** Reserves `port` against other test processes: a lock file naming this PID (a dead owner's lock is taken over). */
function lockPort(port: number): boolean {
  const file = path.join(PORT_LOCKS, String(port));
  // Written aside and linked into place, so the lock never exists without its owner's PID.
  const tmp = path.join(PORT_LOCKS, `.${process.pid}-${port}`);
  fs.writeFileSync(tmp, String(process.pid));
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.linkSync(tmp, file);
        myPortLocks.push(file);
        return true;
      } catch {
        let owner = 0;
        try {
          owner = Number(fs.readFileSync(file, 'utf8'));
        } catch {
          continue; // released meanwhile
        }
        if (owner === process.pid || (owner > 0 && isAlive(owner))) return false;
        fs.rmSync(file, { force: true });
      }
    }
    return false;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/**
 * `n` distinct ports free on this host. They are picked below the kernel's ephemeral range, so no
 * listen(0) (proxies, other tests' nodes) or outgoing connection can take one before the node that
 * is handed it binds it, and reserved with a lock file against concurrently running test files.
 */
export async function freePorts(n: number): Promise<number[]> {
  fs.mkdirSync(PORT_LOCKS, { recursive: true });
  const hi = Math.min(ephemeralRange()[0], 65536);
  const lo = Math.max(1024, Math.min(10_000, hi - 4096));
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > 50 * n + 200) throw new Error(`no ${n} free ports found in ${lo}..${hi - 1}`);
    const port = lo + Math.floor(Math.random() * (hi - lo));
    if (ports.includes(port) || !lockPort(port)) continue;
    if (await canListen(port)) ports.push(port);
  }
  return ports;
}

/**
 * A base port such that base..base+n-1 are all free and reserved like freePorts' (for commands
 * that number ports consecutively, e.g. `hp-node cluster --user-port-base`).
 */
export async function freePortBlock(n: number): Promise<number> {
  fs.mkdirSync(PORT_LOCKS, { recursive: true });
  const hi = Math.min(ephemeralRange()[0], 65536) - n;
  const lo = Math.max(1024, Math.min(10_000, hi - 4096));
  for (let tries = 0; tries < 200; tries++) {
    const base = lo + Math.floor(Math.random() * (hi - lo));
    let k = 0;
    while (k < n && lockPort(base + k) && (await canListen(base + k))) k++;
    if (k === n) return base;
  }
  throw new Error(`no ${n} consecutive free ports found in ${lo}..${hi + n - 1}`);
}

// ---- asking a node over the user protocol ----

/** `lcl` request: the node's last closed ledger. */
export async function askLcl(u: RawUser, timeoutMs = 5000): Promise<{ seqNo: number; hash: string }> {
  u.send({ type: 'lcl' });
  const m = await u.next((x) => x.type === 'lcl_response', timeoutMs);
  return { seqNo: Number(m.ledger_seq_no), hash: String(m.ledger_hash) };
}

let queryId = 0;

/** `ledger_query` by seq_no: the ledger's hash (hex), or null when the node has no such ledger. */
export async function askLedgerHash(u: RawUser, seq: number, timeoutMs = 5000): Promise<string | null> {
  const id = `harness-${++queryId}`;
  u.send({ type: 'ledger_query', id, filter_by: 'seq_no', params: { seq_no: seq }, include: [] });
  const m = await u.next((x) => x.type === 'ledger_query_result' && x.reply_for === id, timeoutMs);
  if (m.error) throw new Error(`ledger_query ${seq} failed: ${m.error}`);
  const rec = (m.results as Array<Record<string, unknown>>)[0];
  return rec ? String(rec.hash) : null;
}

/**
 * Polls `pred` every 200 ms until it is true (a throw counts as false). On timeout, throws naming
 * `what`, the last error and `context()` (logs); `abort()` returning a reason ends the wait at once.
 */
export async function pollUntil(pred: () => Promise<boolean>, timeoutMs: number, what: string, context: () => string = () => '', abort: () => string | null = () => null): Promise<void> {
  const end = Date.now() + timeoutMs;
  let lastErr: Error | undefined;
  for (;;) {
    try {
      if (await pred()) return;
      lastErr = undefined;
    } catch (err) {
      lastErr = err as Error;
    }
    const why = abort() ?? (Date.now() >= end ? `timed out after ${timeoutMs} ms` : null);
    if (why) throw new Error(`${why} waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ''}\n${context()}`);
    await sleep(200);
  }
}

// ---- the cluster ----

export interface TestClusterOptions {
  nodes: number;
  contractDir: string;
  thresholdPercent?: number;
  roundtimeMs?: number;
  contractEnv?: Record<string, string>;
  contractArgs?: string;
  /** Route every directed peer link i→j through its own proxy (needed for partition()). */
  viaProxy?: boolean;
  /** log.level of every node (default 'info'). */
  logLevel?: NodeConfig['log']['level'];
  /** Last word on each node's config before it first starts (i is 0-based). */
  configure?: (i: number, cfg: NodeConfig) => void;
}

export interface TestCluster {
  /** The cluster directory (node1..nodeN inside). */
  readonly dir: string;
  readonly dirs: string[];
  readonly userUrls: string[];
  readonly publicKeys: string[];
  /** PID of each node while its process runs, else null. */
  pids(): Array<number | null>;
  isRunning(i: number): boolean;
  /** Sends `signal` to node i; for a terminating signal, resolves once the process has exited. */
  kill(i: number, signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGSTOP / SIGCONT: a node that is alive but silent. */
  stop(i: number): void;
  cont(i: number): void;
  /** Starts node i again after its process exited (clears what the dead one left mounted first). */
  restart(i: number): Promise<void>;
  /** Cuts every peer link between nodes of different groups (each node in exactly one group); links within a group are restored. */
  partition(groups: number[][]): void;
  /** Restores every peer link. */
  heal(): void;
  /** The proxy carrying node `from`'s connections to node `to` (viaProxy only), to cut one direction. */
  link(from: number, to: number): LoopbackProxy;
  /** Node i's last closed ledger, asked over the user protocol (`lcl`). */
  lcl(i: number): Promise<{ seqNo: number; hash: string }>;
  /** Hash (hex) of node i's ledger `seq`, or null if it has none (`ledger_query` by seq_no). */
  ledgerHash(i: number, seq: number): Promise<string | null>;
  /** Polls `pred` every 200 ms (a throw counts as false); on timeout throws with every node's last log lines. */
  waitFor(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void>;
  waitForSeq(i: number, seq: number, timeoutMs: number): Promise<void>;
  /** Node i's captured output (the last ~400 lines, over all its restarts). */
  logs(i: number): string[];
  /** The last `lines` lines of each node, for failure messages. */
  logReport(lines?: number): string;
}

const RING_LINES = 400;
const REQUEST_TIMEOUT_MS = 5000;
const STOP_GRACE_MS = 10_000;
const NOT_TERMINAL = new Set<string>(['SIGSTOP', 'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGWINCH', 'SIGCHLD', 'SIGURG', 'SIGUSR1']);

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One incarnation of a node process. */
interface NodeProc {
  child: ChildProcess;
  exited: Promise<Exit>;
  exit: Exit | null;
  paused: boolean;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]).finally(() => clearTimeout(timer));
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal); // the node and what it left behind (statefs servers, contracts)
  } catch {
    /* already gone */
  }
}

export async function startTestCluster(t: TestContext, opts: TestClusterOptions): Promise<TestCluster> {
  const n = opts.nodes;
  const dir = path.join(tempDir(t, 'hp-cluster-'), 'cluster');
  const ports = await freePorts(2 * n);
  const userPorts = ports.slice(0, n);
  const peerPorts = ports.slice(n);
  // ensureCluster numbers ports consecutively from a base; the allocated ones are written below.
  const { dirs } = await ensureCluster(dir, {
    nodes: n,
    contractDir: opts.contractDir,
    contractArgs: opts.contractArgs,
    contractEnv: opts.contractEnv,
    userPortBase: 1024,
    peerPortBase: 1024 + n,
    roundtimeMs: opts.roundtimeMs,
    thresholdPercent: opts.thresholdPercent,
  });

  const procs: Array<NodeProc | null> = dirs.map(() => null);
  const everSpawned: number[] = [];
  const rings: string[][] = dirs.map(() => []);
  const users: Array<{ proc: NodeProc; user: Promise<RawUser> } | null> = dirs.map(() => null);
  const proxies = new Map<string, LoopbackProxy>(); // "i>j"
  deferCleanup(t, async () => {
    await Promise.all(procs.map(async (p) => {
      if (!p || p.exit) return;
      try {
        process.kill(p.child.pid!, 'SIGCONT');
        process.kill(p.child.pid!, 'SIGTERM');
      } catch {
        /* exiting already */
      }
      if ((await withTimeout(p.exited, STOP_GRACE_MS)) === 'timeout') {
        signalGroup(p.child.pid, 'SIGKILL');
        await withTimeout(p.exited, 5000);
      }
    }));
    for (const pid of everSpawned) signalGroup(pid, 'SIGKILL');
    for (const u of users) void u?.user.then((x) => x.close(), () => undefined);
    await Promise.all([...proxies.values()].map((p) => p.stop()));
    cleanStaleMounts(dir);
  });

  // Peer links, then each node's final config.
  const linkKey = (from: number, to: number) => `${from}>${to}`;
  if (opts.viaProxy) {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) proxies.set(linkKey(i, j), await LoopbackProxy.start(peerPorts[j]));
  }
  for (let i = 0; i < n; i++) {
    const file = path.join(dirs[i], 'config.json');
    const cfg = readConfig(file);
    cfg.user.port = userPorts[i];
    cfg.mesh.port = peerPorts[i];
    cfg.mesh.known_peers = dirs.flatMap((_, j) => (j === i ? [] : [`127.0.0.1:${opts.viaProxy ? proxies.get(linkKey(i, j))!.port : peerPorts[j]}`]));
    cfg.log.level = opts.logLevel ?? 'info';
    opts.configure?.(i, cfg);
    writeConfig(file, cfg);
  }
  const info = clusterNodeInfo(dirs);
  const userUrls = info.map((x) => x.userUrl.replace('://localhost:', '://127.0.0.1:'));
  const name = (i: number) => `node${i + 1}`;

  const record = (i: number, line: string) => {
    const ring = rings[i];
    ring.push(line);
    if (ring.length > RING_LINES) ring.splice(0, ring.length - RING_LINES);
    try {
      fs.appendFileSync(path.join(dirs[i], 'node-output.log'), line + '\n');
      // For a post-mortem: HP_TEST_LOG_DIR=<dir> keeps every node's output after the test's cleanup.
      if (KEEP_LOGS_DIR) fs.appendFileSync(path.join(KEEP_LOGS_DIR, `${path.basename(path.dirname(dirs[i]))}-${name(i)}.log`), line + '\n');
    } catch {
      /* the directory is being removed */
    }
  };

  const spawn = (i: number) => {
    const child = spawnNode(dirs[i], { detached: true }); // own process group: cleanup can reach its orphans
    const proc: NodeProc = { child, exit: null, paused: false, exited: null! };
    proc.exited = new Promise<Exit>((resolve) => {
      child.once('error', (err) => {
        record(i, `[harness] cannot spawn: ${err.message}`);
        proc.exit ??= { code: null, signal: null };
        resolve(proc.exit);
      });
      child.once('exit', (code, signal) => {
        proc.exit = { code, signal };
        record(i, `[harness] ${name(i)} exited (${signal ?? `code ${code}`})`);
        resolve(proc.exit);
      });
    });
    onLines(child.stdout!, (l) => record(i, l));
    onLines(child.stderr!, (l) => record(i, l));
    if (child.pid) everSpawned.push(child.pid);
    record(i, `[harness] ${new Date().toISOString()} started ${name(i)} pid ${child.pid}`);
    procs[i] = proc;
  };

  const check = (i: number) => {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw new Error(`no node ${i} in a cluster of ${n} (indices are 0-based)`);
  };
  const running = (i: number): NodeProc | null => {
    const p = procs[i];
    return p && !p.exit ? p : null;
  };
  const logReport = (lines = 30) =>
    rings.map((r, i) => `--- ${name(i)} (last ${Math.min(lines, r.length)} lines)\n${r.slice(-lines).join('\n')}`).join('\n');

  /** A user connection to node i's current process, opened on first use and after a restart. */
  const userOf = async (i: number): Promise<RawUser> => {
    const p = running(i);
    if (!p) throw new Error(`${name(i)} is not running`);
    const cached = users[i];
    if (cached && cached.proc === p) {
      const u = await cached.user.catch(() => null);
      if (u?.isOpen) return u;
      if (users[i] === cached) users[i] = null;
      u?.close();
      return userOf(i);
    }
    void cached?.user.then((u) => u.close(), () => undefined);
    const entry = { proc: p, user: RawUser.connect(userUrls[i], REQUEST_TIMEOUT_MS) };
    users[i] = entry;
    entry.user.catch(() => {
      if (users[i] === entry) users[i] = null;
    });
    return entry.user;
  };

  /** One request/response; any failure drops the connection so a late reply cannot answer a later request. */
  const withUser = async <T>(i: number, what: string, ask: (u: RawUser) => Promise<T>): Promise<T> => {
    check(i);
    let u: RawUser;
    try {
      u = await userOf(i);
    } catch (err) {
      throw new Error(`${name(i)}: cannot connect as a user to ${userUrls[i]} (${(err as Error).message})`);
    }
    try {
      return await ask(u);
    } catch (err) {
      if (users[i]?.proc === procs[i]) users[i] = null;
      u.close();
      throw new Error(`${name(i)}: ${what}: ${(err as Error).message}`);
    }
  };

  const cluster: TestCluster = {
    dir,
    dirs,
    userUrls,
    publicKeys: info.map((x) => x.publicKey),
    pids: () => procs.map((_, i) => running(i)?.child.pid ?? null),
    isRunning: (i) => (check(i), !!running(i)),
    async kill(i, signal = 'SIGKILL') {
      check(i);
      const p = running(i);
      if (!p) return procs[i]?.exit ?? { code: null, signal: null };
      process.kill(p.child.pid!, signal);
      if (NOT_TERMINAL.has(signal)) {
        if (signal === 'SIGSTOP' || signal === 'SIGCONT') p.paused = signal === 'SIGSTOP';
        return { code: null, signal: null };
      }
      // A stopped process only acts on SIGKILL; let it see the signal it was sent.
      if (p.paused && signal !== 'SIGKILL') process.kill(p.child.pid!, 'SIGCONT');
      p.paused = false;
      const exit = await withTimeout(p.exited, 15_000);
      if (exit === 'timeout') throw new Error(`${name(i)} (pid ${p.child.pid}) did not exit within 15 s of ${signal}\n${logReport()}`);
      return exit;
    },
    stop(i) {
      check(i);
      const p = running(i);
      if (!p) throw new Error(`${name(i)} is not running`);
      process.kill(p.child.pid!, 'SIGSTOP');
      p.paused = true;
    },
    cont(i) {
      check(i);
      const p = running(i);
      if (!p) throw new Error(`${name(i)} is not running`);
      process.kill(p.child.pid!, 'SIGCONT');
      p.paused = false;
    },
    async restart(i) {
      check(i);
      if (running(i)) throw new Error(`${name(i)} is still running; kill() it before restart()`);
      // What the dead process left: its orphans (a contract, a statefs server) and its mounts.
      signalGroup(procs[i]?.child.pid, 'SIGKILL');
      cleanStaleMounts(dirs[i]);
      spawn(i);
    },
    partition(groups) {
      if (!opts.viaProxy) throw new Error('partition() needs a cluster started with viaProxy: true');
      const groupOf = new Map<number, number>();
      groups.forEach((g, gi) => g.forEach((i) => {
        check(i);
        if (groupOf.has(i)) throw new Error(`partition: ${name(i)} is in two groups`);
        groupOf.set(i, gi);
      }));
      if (groupOf.size !== n) throw new Error(`partition: every node must be in a group; missing ${dirs.map((_, i) => i).filter((i) => !groupOf.has(i)).map(name).join(', ')}`);
      for (const [key, proxy] of proxies) {
        const [from, to] = key.split('>').map(Number);
        proxy.setBlocked(groupOf.get(from) !== groupOf.get(to));
      }
    },
    heal() {
      for (const proxy of proxies.values()) proxy.setBlocked(false);
    },
    link(from, to) {
      check(from);
      check(to);
      const p = proxies.get(linkKey(from, to));
      if (!p) throw new Error(opts.viaProxy ? `no link from ${name(from)} to itself` : 'link() needs a cluster started with viaProxy: true');
      return p;
    },
    async lcl(i) {
      return withUser(i, 'lcl', (u) => askLcl(u, REQUEST_TIMEOUT_MS));
    },
    async ledgerHash(i, seq) {
      return withUser(i, `ledger_query ${seq}`, (u) => askLedgerHash(u, seq, REQUEST_TIMEOUT_MS));
    },
    waitFor(pred, timeoutMs, what) {
      return pollUntil(pred, timeoutMs, what, () => logReport(30));
    },
    waitForSeq(i, seq, timeoutMs) {
      return cluster.waitFor(async () => (await cluster.lcl(i)).seqNo >= seq, timeoutMs, `${name(i)} to close ledger ${seq}`);
    },
    logs: (i) => (check(i), [...rings[i]]),
    logReport,
  };

  for (let i = 0; i < n; i++) spawn(i);
  return cluster;
}

// ---- assertions shared by the cluster tests ----

/** The smallest last-closed-ledger seq among `nodes`. */
export async function minLcl(c: TestCluster, nodes: number[]): Promise<number> {
  return Math.min(...(await Promise.all(nodes.map((i) => c.lcl(i)))).map((l) => l.seqNo));
}

/** What node i last wrote to run/status.json (what `hp-node status` prints), or null before the first write. */
export function nodeStatus(c: TestCluster, i: number): Record<string, any> | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(c.dirs[i], 'run', 'status.json'), 'utf8'));
  } catch {
    return null;
  }
}

/** Node i has caught up with `others`, votes again, and holds the same ledgers (first, middle, last). */
export async function assertRejoined(c: TestCluster, i: number, others: number[], timeoutMs = 60_000): Promise<void> {
  await c.waitFor(async () => (await c.lcl(i)).seqNo >= (await minLcl(c, others)) && nodeStatus(c, i)?.voteStatus === 'synced', timeoutMs, `node ${i + 1} catches up and votes again`);
  const upTo = await minLcl(c, [i, ...others]);
  for (const s of [1, Math.floor(upTo / 2), upTo]) {
    const hashes = new Set(await Promise.all([i, ...others].map((n) => c.ledgerHash(n, s))));
    assert.equal(hashes.size, 1, `ledger ${s} (which names the state root) is the same on every node`);
  }
}

/**
 * A temp contract dir with test/contracts/writer (input "patch <k>" rewrites block k of data.bin)
 * and its genesis data.bin: `data` bytes, or none.
 */
export function writerContract(t: TestContext, data?: Buffer | { randomBytes: number }): string {
  const dir = path.join(tempDir(t, 'hp-writer-'), 'contract');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(REPO_ROOT, 'test', 'contracts', 'writer', 'index.js'), path.join(dir, 'index.js'));
  if (Buffer.isBuffer(data)) fs.writeFileSync(path.join(dir, 'data.bin'), data);
  else if (data && data.randomBytes > 0) {
    const chunk = 4 * 1024 * 1024;
    const fd = fs.openSync(path.join(dir, 'data.bin'), 'w');
    for (let o = 0; o < data.randomBytes; o += chunk) fs.writeSync(fd, crypto.randomBytes(Math.min(chunk, data.randomBytes - o)));
    fs.closeSync(fd);
  }
  return dir;
}

/**
 * Kills node i (SIGKILL) and takes over its key and peer port with a bare PeerNetwork the test
 * drives: a member that says (or answers) whatever the test wants. Stopped after the test.
 */
export async function impersonate(t: TestContext, c: TestCluster, i: number): Promise<{ net: PeerNetwork; keys: KeyPair; contractId: string }> {
  await c.kill(i, 'SIGKILL');
  const cfg = readConfig(path.join(c.dirs[i], 'config.json'));
  const keys = readKeyFile(path.join(c.dirs[i], 'keys.json'));
  const pn = new PeerNetwork({
    contractId: cfg.contract.id,
    keys,
    listen: { host: '127.0.0.1', port: cfg.mesh.port },
    peers: cfg.mesh.known_peers,
    unl: () => cfg.contract.unl,
    allowObservers: false,
  });
  await pn.start();
  t.after(() => pn.stop());
  return { net: pn, keys, contractId: cfg.contract.id };
}

/**
 * Through node i's user port: one "patch <k>" input (writer contract) per block, each waited for
 * until accepted; resolves with the seq the cluster was at afterwards.
 */
export async function patchBlocks(t: TestContext, c: TestCluster, i: number, blocks: number[]): Promise<number> {
  const u = await RawUser.connect(c.userUrls[i]);
  t.after(() => u.close());
  let nonce = 1;
  for (const k of blocks) {
    const hash = u.submit(`patch ${k}`, nonce++, (await c.lcl(i)).seqNo + 5);
    const s = await u.next((m) => m.type === 'contract_input_status' && m.input_hash === hash, 20_000);
    assert.equal(s.status, 'accepted', JSON.stringify(s));
  }
  return (await c.lcl(i)).seqNo;
}
