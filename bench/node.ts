// [benchmark] node: one node, echo contract, roundtime 200 ms: input→output latency, sustained signed inputs/s, per-round time split.
// Usage: npm run bench -- node [--quick] [--window=N] [--clients=N] [--cpu-prof-dir=DIR]
//
// The node runs in its own process (bench/nodeRunner.ts, forked: startNode + its 'round' events over
// IPC); this process is only the load generator, so client signing/hashing/TLS does not share the
// node's event loop. Both still share the machine's cores with the node's statefs child and the
// contract processes: the title says how many there are.
//
//   latency     a few unmodified hotpocket-js-client clients, each submitting one unique input at a
//               random phase of the round and waiting for its "Echoing: <msg>" contract_output
//   throughput  50 raw wss:// clients speaking the same protocol (handshake, signed JSON
//               contract_input, sodium-native signatures like src/crypto/keys.ts), each keeping
//               --window inputs in flight with increasing nonces; counts accepted statuses and
//               outputs per second, rejects by reason
//   rounds      the node's own per-round split (ledger close, spawn, execute, commit, total)
//   baselines   measured here, in the same run: spawning /bin/true and `node -e ''` (the contract
//               process floor), a bare wss:// echo server (round trip, and the load generator's
//               own ceiling through it), and the same node at HotPocket's default roundtime 1000 ms
//
// Results go to stdout as one markdown table; progress goes to stderr.
import { ChildProcess, fork, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { readConfig, writeConfig } from '../src/config/nodeConfig';
import { generateKeyPair, sign } from '../src/crypto/keys';
import type { RoundTimings } from '../src/node/node';
import { createNode } from '../src/node/nodeDir';
import { fuseMountsUnder } from '../src/state/mounts';
import { argValue, benchContract, CONTRACT_ENV, fmtMs, fmtRate, fmtRejects, makeLog, markdown, p50, quantile, removeBenchDir, runBench, sleep } from './common';
import type { RunnerMessage } from './nodeRunner';
import { procStatusMiB, treeCpuSeconds, waitExit } from './processes';
import { LedgerWindow, newLoadStats, openSockets as sockets, RawUser, wholeLedgers } from './rawUser';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const HotPocket = require('hotpocket-js-client');
HotPocket.setLogLevel(1);

const QUICK = process.argv.includes('--quick');
const CONTRACT = benchContract();

const CFG = {
  roundtimeMs: 200,
  hpDefaultRoundtimeMs: 1000,
  latencyClients: 3,
  latencyPerClient: QUICK ? 10 : 40,
  latency1000PerClient: QUICK ? 3 : 8,
  loadClients: Number(argValue('clients') ?? 50),
  window: Number(argValue('window') ?? 100), // inputs in flight per client
  loadWarmupS: QUICK ? 1 : 3,
  loadSeconds: QUICK ? 5 : 20,
  drainTimeoutMs: 5_000,
  spawnReps: QUICK ? 10 : 30,
  echoRttReps: QUICK ? 200 : 1000,
  echoLoadSeconds: QUICK ? 2 : 5,
  readyTimeoutMs: 30_000,
  childExitTimeoutMs: 15_000,
  outputTimeoutMs: 15_000,
  cpuProfDir: argValue('cpu-prof-dir'),
} as const;

// ---- plumbing: logging, stats, child processes, cleanup -----------------------------------------

const log = makeLog('node');

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bench-node-'));
const runners = new Set<ChildProcess>();
const officialClients = new Set<{ close(): Promise<void> }>();


interface Runner {
  child: ChildProcess;
  url: string;
  pubkey: string;
  rounds: Array<RoundTimings & { atMs: number }>;
}

/** Forks bench/nodeRunner.js in `mode` for `dir` and resolves once it reports its URL. */
async function startRunner(mode: 'node' | 'echo', dir: string, execArgv: string[] = []): Promise<Runner> {
  const child = fork(path.join(__dirname, 'nodeRunner.js'), [mode, dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  runners.add(child);
  child.once('exit', () => runners.delete(child));
  const rounds: Runner['rounds'] = [];
  const ready = await new Promise<{ url: string; pubkey: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${mode} runner not ready within ${CFG.readyTimeoutMs} ms`)), CFG.readyTimeoutMs);
    child.on('message', (m: RunnerMessage) => {
      if (m.type === 'ready') {
        clearTimeout(timer);
        resolve(m);
      } else if (m.type === 'round') rounds.push({ ...m.timings, atMs: performance.now() });
      else if (m.type === 'error') {
        clearTimeout(timer);
        log(`${mode} runner error: ${m.error}`);
        reject(new Error(`${mode} runner: ${m.error}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${mode} runner exited with code ${code} before it was ready`));
    });
  });
  return { child, ...ready, rounds };
}

async function stopRunner(r: Runner): Promise<void> {
  try {
    process.kill(r.child.pid!, 'SIGTERM'); // the node finishes its round, unmounts, flushes
  } catch { /* already gone */ }
  await waitExit(r.child, CFG.childExitTimeoutMs, () => log(`runner ${r.child.pid} did not exit within ${CFG.childExitTimeoutMs} ms: SIGKILL`));
}

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const ws of sockets) ws.terminate();
    await Promise.all([...officialClients].map((c) => c.close().catch(() => undefined)));
    await Promise.all([...runners].map(async (c) => {
      try {
        process.kill(c.pid!, 'SIGTERM');
      } catch { /* already gone */ }
      await waitExit(c, CFG.childExitTimeoutMs, () => log(`runner ${c.pid} did not exit within ${CFG.childExitTimeoutMs} ms: SIGKILL`));
    }));
    removeBenchDir(tmpRoot, log);
  })();
  return cleaning;
}

// ---- node directories ---------------------------------------------------------------------------

async function makeNodeDir(name: string, roundtimeMs: number): Promise<string> {
  const dir = path.join(tmpRoot, name);
  const created = await createNode(dir, {
    ...CONTRACT,
    userPort: 0,
    roundtimeMs,
  });
  const cfg = readConfig(created.paths.config);
  cfg.user.listen_host = '127.0.0.1'; // load stays on loopback
  cfg.log.level = 'warn';
  writeConfig(created.paths.config, cfg);
  return dir;
}

// ---- baselines: process spawn floor -------------------------------------------------------------

function spawnOnce(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore', env: CONTRACT_ENV, cwd: '/' });
    c.once('error', reject);
    c.once('exit', () => resolve(performance.now() - t0));
  });
}

async function spawnBaselines(): Promise<{ trueMs: number[]; nodeMs: number[] }> {
  const trueMs: number[] = [];
  const nodeMs: number[] = [];
  await spawnOnce('/bin/true', []); // warm the page cache
  await spawnOnce(process.execPath, ['-e', '']);
  for (let i = 0; i < CFG.spawnReps; i++) {
    trueMs.push(await spawnOnce('/bin/true', []));
    nodeMs.push(await spawnOnce(process.execPath, ['-e', '']));
  }
  return { trueMs, nodeMs };
}

// ---- throughput (the raw client: bench/rawUser.ts) -----------------------------------------------

interface LoadResult {
  seconds: number;
  accepted: number; // statuses received inside the window
  outputs: number;
  /** Per ledger: inputs accepted into (and outputs delivered with) the ledgers closed in the window. */
  ledgers: LedgerWindow | null;
  badOutputs: number;
  rejected: Map<string, number>;
  outputLatMs: number[];
  nodeCpuS: number;
  benchCpuS: number;
  roundsFrom: number; // index into runner.rounds: first round of the measured window
  roundsTo: number;
}

async function throughput(node: Runner): Promise<LoadResult> {
  const stats = newLoadStats();
  const users = Array.from({ length: CFG.loadClients }, (_, i) => new RawUser(i, stats));
  log(`throughput: connecting ${users.length} raw clients`);
  await Promise.all(users.map((u, i) => u.connect(node.url, i === 0)));
  for (let i = 0; i < 50 && stats.lcl === 0; i++) await sleep(20);
  let running = true;
  for (const u of users) {
    u.onStatus = () => {
      while (running && u.inFlight < CFG.window) u.submit();
    };
    u.onStatus();
  }
  log(`throughput: ${users.length} clients x ${CFG.window} in flight; warming up ${CFG.loadWarmupS} s`);
  await sleep(CFG.loadWarmupS * 1000);
  const roundsFrom = node.rounds.length;
  const cpu0 = treeCpuSeconds(node.child.pid!);
  const bench0 = process.cpuUsage();
  const t0 = performance.now();
  stats.counting = true;
  for (let s = 1; s <= CFG.loadSeconds; s++) {
    const a0 = stats.accepted;
    await sleep(1000);
    if (s % (QUICK ? 1 : 5) === 0 || s === CFG.loadSeconds) {
      log(`throughput: ${s} s: ${stats.accepted} accepted (${stats.accepted - a0}/s last second), ${stats.outputs} outputs, lcl ${stats.lcl}`);
    }
  }
  stats.counting = false;
  const seconds = (performance.now() - t0) / 1000;
  const nodeCpuS = treeCpuSeconds(node.child.pid!) - cpu0;
  const b = process.cpuUsage(bench0);
  const roundsTo = node.rounds.length;
  running = false;
  const t1 = performance.now();
  await sleep(500); // statuses and outputs of the last ledger in the window are on their way
  const ledgers = wholeLedgers(stats, t0, t1);
  const result: LoadResult = {
    seconds, ledgers, accepted: stats.accepted, outputs: stats.outputs, badOutputs: stats.badOutputs, rejected: new Map(stats.rejected),
    outputLatMs: [...stats.outputLatMs], nodeCpuS, benchCpuS: (b.user + b.system) / 1e6, roundsFrom, roundsTo,
  };
  // Drain: let what is in flight finish so the node stops cleanly without a backlog.
  const tDrain = performance.now();
  while (users.some((u) => u.inFlight > 0) && performance.now() - tDrain < CFG.drainTimeoutMs) await sleep(50);
  await Promise.all(users.map((u) => u.close()));
  return result;
}

// ---- the official client (latency) --------------------------------------------------------------

interface LatencyResult {
  ms: number[];
  rejected: Map<string, number>;
  roundsFrom: number;
  roundsTo: number;
}

async function latency(node: Runner, perClient: number, roundtimeMs: number): Promise<LatencyResult> {
  const ms: number[] = [];
  const rejected = new Map<string, number>();
  const clients = await Promise.all(Array.from({ length: CFG.latencyClients }, async () => {
    const keys = await HotPocket.generateKeys();
    const client = await HotPocket.createClient([node.url], keys, { protocol: HotPocket.protocols.json, trustedServerKeys: [node.pubkey] });
    officialClients.add(client);
    if (!(await client.connect())) throw new Error(`official client could not connect to ${node.url}`);
    return client;
  }));
  // One warm-up input per client (first contract runs, JIT), not counted.
  const roundsFrom = node.rounds.length;
  await Promise.all(clients.map(async (client: any, c: number) => {
    const waiting = new Map<string, (t: number) => void>();
    client.on(HotPocket.events.contractOutput, (r: { outputs: unknown[] }) => {
      const now = performance.now();
      for (const o of r.outputs) waiting.get(String(o))?.(now);
    });
    for (let i = 0; i <= perClient; i++) {
      await sleep(Math.random() * roundtimeMs); // a random phase of the round
      const msg = `lat-${c}-${i}-${crypto.randomBytes(4).toString('hex')}`;
      const out = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no output for ${msg} within ${CFG.outputTimeoutMs} ms`)), CFG.outputTimeoutMs);
        waiting.set(`Echoing: ${msg}`, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
      const t0 = performance.now();
      // Default max ledger (lcl + 10, fetched with an lcl request) as an application would submit.
      const sub = await client.submitContractInput(msg, i + 1, 10, true);
      const st = await sub.submissionStatus;
      if (st.status !== 'accepted') {
        rejected.set(st.reason, (rejected.get(st.reason) ?? 0) + 1);
        out.catch(() => undefined);
        continue;
      }
      const t1 = await out;
      waiting.delete(`Echoing: ${msg}`);
      if (i > 0) ms.push(t1 - t0);
    }
  }));
  const roundsTo = node.rounds.length;
  for (const c of clients) {
    await c.close();
    officialClients.delete(c);
  }
  return { ms, rejected, roundsFrom, roundsTo };
}

// ---- baseline: bare wss:// echo -----------------------------------------------------------------

async function echoBaseline(url: string): Promise<{ rttMs: number[]; msgsPerS: number }> {
  // Round trip: one socket, one message at a time, the size of a real contract_input.
  const kp = generateKeyPair();
  const probe = (i: number) => {
    const container = JSON.stringify({ input: `echo-${i}`, nonce: i + 1, max_ledger_seq_no: 10 });
    return Buffer.from(JSON.stringify({ type: 'contract_input', input_container: container, sig: sign(Buffer.from(container), kp.secretKey).toString('hex') }));
  };
  const open = () =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => undefined);
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  const ws = await open();
  const rttMs: number[] = [];
  for (let i = 0; i < CFG.echoRttReps + 20; i++) {
    const msg = probe(i);
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ws.once('message', () => resolve());
      ws.send(msg, { binary: true });
    });
    if (i >= 20) rttMs.push(performance.now() - t0); // the first 20 warm up
  }
  ws.close();
  // Throughput ceiling of this load generator: the same clients, window and signing, echoed back.
  const conns = await Promise.all(Array.from({ length: CFG.loadClients }, open));
  let count = 0;
  let running = true;
  const t0 = performance.now();
  for (const [c, s] of conns.entries()) {
    let inFlight = 0;
    let n = 0;
    const pump = () => {
      while (running && inFlight < CFG.window) {
        inFlight++;
        s.send(probe(c * 1e9 + n++), { binary: true });
      }
    };
    s.on('message', (data: Buffer) => {
      inFlight--;
      JSON.parse(data.toString('utf8')); // the raw client parses every reply too
      count++;
      pump();
    });
    pump();
  }
  await sleep(CFG.echoLoadSeconds * 1000);
  running = false;
  const msgsPerS = count / ((performance.now() - t0) / 1000);
  for (const s of conns) s.terminate();
  return { rttMs, msgsPerS };
}

/** Accepted inputs and outputs per second: from whole ledgers when the window saw at least two close. */
function loadRates(load: LoadResult): { accepted: number; outputs: number; basis: string } {
  const l = load.ledgers;
  if (l && l.spanS > 0) {
    return { accepted: l.accepted / l.spanS, outputs: l.outputs / l.spanS, basis: `ledgers ${l.from + 1}-${l.to} over ${l.spanS.toFixed(1)} s` };
  }
  return { accepted: load.accepted / load.seconds, outputs: load.outputs / load.seconds, basis: `statuses in ${load.seconds.toFixed(1)} s` };
}

// ---- the table ----------------------------------------------------------------------------------

type SplitKey = keyof RoundTimings | 'overhead' | 'other';
function roundSplit(rounds: RoundTimings[], key: SplitKey): { med: number; p95: number } {
  const xs = rounds.map((r) =>
    key === 'overhead' ? r.totalMs - r.execMs : key === 'other' ? r.totalMs - r.spawnMs - r.execMs - r.commitMs : (r[key] as number),
  );
  return { med: p50(xs), p95: quantile(xs, 0.95) };
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  const rt = CFG.roundtimeMs;
  log(`temp dir ${tmpRoot}${QUICK ? ' (--quick)' : ''}; ${os.cpus().length} cores`);
  if (loadBefore > 0.5) log(`load average is ${loadBefore.toFixed(2)} before we start: other processes are busy, figures will be noisy`);
  if (fuseMountsUnder('/').some((m) => m.mountpoint.startsWith(os.tmpdir()))) log('note: other FUSE mounts exist under the temp dir (not ours)');

  const dir200 = await makeNodeDir('node-200', rt);
  const dir1000 = await makeNodeDir('node-1000', CFG.hpDefaultRoundtimeMs);

  // Baselines that need a quiet machine first.
  log(`baseline: spawning /bin/true and \`node -e ''\` ${CFG.spawnReps} times each`);
  const spawnBase = await spawnBaselines();
  log(`baseline: /bin/true ${fmtMs(p50(spawnBase.trueMs))}, node -e '' ${fmtMs(p50(spawnBase.nodeMs))} (medians)`);
  const echo = await startRunner('echo', dir200);
  const echoRes = await echoBaseline(echo.url);
  await stopRunner(echo);
  log(`baseline: wss echo RTT p50 ${fmtMs(p50(echoRes.rttMs))} p99 ${fmtMs(quantile(echoRes.rttMs, 0.99))}; ${CFG.loadClients} clients x ${CFG.window}: ${fmtRate(echoRes.msgsPerS)}`);

  // The node at 200 ms.
  const execArgv = CFG.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(CFG.cpuProfDir)}`] : [];
  const node = await startRunner('node', dir200, execArgv);
  log(`node (roundtime ${rt} ms) at ${node.url}, pid ${node.child.pid}${execArgv.length ? `, CPU profile to ${CFG.cpuProfDir}` : ''}`);
  await sleep(3 * rt); // a few empty rounds first
  const idleRoundsWanted = QUICK ? 10 : 30; // empty rounds: the node's fixed cost per round
  const idleFrom = node.rounds.length;
  await sleep(idleRoundsWanted * rt);
  const idleTo = node.rounds.length;
  const rssFresh = procStatusMiB(node.child.pid!, 'VmRSS');
  log(`latency: ${CFG.latencyClients} official clients x ${CFG.latencyPerClient} sequential inputs`);
  const lat = await latency(node, CFG.latencyPerClient, rt);
  log(`latency: p50 ${fmtMs(p50(lat.ms))} p99 ${fmtMs(quantile(lat.ms, 0.99))} over ${lat.ms.length} inputs`);
  const load = await throughput(node);
  log(`throughput: ${fmtRate(loadRates(load).accepted)} accepted, ${fmtRate(loadRates(load).outputs)} outputs; rejects: ${fmtRejects(load.rejected)}`);
  await sleep(2 * rt);
  const afterFrom = node.rounds.length;
  await sleep(idleRoundsWanted * rt); // empty rounds again: does the node keep what the load left?
  const afterTo = node.rounds.length;
  const rssAfter = procStatusMiB(node.child.pid!, 'VmRSS');
  await stopRunner(node);
  log('node (200 ms) stopped');

  // The same node at HotPocket's default roundtime.
  const node1000 = await startRunner('node', dir1000);
  await sleep(2 * CFG.hpDefaultRoundtimeMs);
  log(`latency at ${CFG.hpDefaultRoundtimeMs} ms roundtime: ${CFG.latencyClients} clients x ${CFG.latency1000PerClient}`);
  const lat1000 = await latency(node1000, CFG.latency1000PerClient, CFG.hpDefaultRoundtimeMs);
  await stopRunner(node1000);
  log(`latency at ${CFG.hpDefaultRoundtimeMs} ms: p50 ${fmtMs(p50(lat1000.ms))} p99 ${fmtMs(quantile(lat1000.ms, 0.99))}`);

  // ---- table ----
  const latRounds = node.rounds.slice(lat.roundsFrom, lat.roundsTo);
  const loadRounds = node.rounds.slice(load.roundsFrom, load.roundsTo);
  const idleRounds = node.rounds.slice(idleFrom, idleTo);
  const afterRounds = node.rounds.slice(afterFrom, afterTo);
  const body: string[][] = [];
  const rttP50 = p50(echoRes.rttMs);
  const rttP99 = quantile(echoRes.rttMs, 0.99);
  for (const [label, q, maxRounds] of [['p50', 0.5, 3], ['p99', 0.99, 5]] as const) {
    const ours = quantile(lat.ms, q);
    const base = quantile(lat1000.ms, q);
    const rounds = ours / rt;
    body.push([
      `input→output latency ${label} (${lat.ms.length} sequential inputs, ${CFG.latencyClients} clients)`,
      `${fmtMs(ours)} = ${rounds.toFixed(2)} rounds`,
      `same node at roundtime ${CFG.hpDefaultRoundtimeMs} ms: ${fmtMs(base)} (${(base / CFG.hpDefaultRoundtimeMs).toFixed(2)} rounds); wss echo RTT ${fmtMs(label === 'p50' ? rttP50 : rttP99)}`,
      `${(ours / base).toPrecision(3)}x the ${CFG.hpDefaultRoundtimeMs} ms node`,
      `≤ ${maxRounds} rounds`,
      rounds <= maxRounds ? 'yes' : 'NO',
    ]);
  }
  const rates = loadRates(load);
  const acceptedRate = rates.accepted;
  body.push([
    `accepted signed inputs/s (${CFG.loadClients} clients x ${CFG.window} in flight, ${rates.basis})`,
    fmtRate(acceptedRate),
    `generator ceiling via bare wss echo: ${fmtRate(echoRes.msgsPerS)}`,
    `${(acceptedRate / echoRes.msgsPerS).toPrecision(3)}x ceiling`,
    '≥ 2,000/s',
    acceptedRate >= 2000 ? 'yes' : 'NO',
  ]);
  body.push([`outputs received/s (same run, same ledgers)`, fmtRate(rates.outputs), '—', `${(rates.outputs / Math.max(1, rates.accepted)).toPrecision(3)} per accepted`, '(info)', '']);
  body.push([
    `input→output latency under that load, p50 / p99`,
    `${fmtMs(p50(load.outputLatMs))} / ${fmtMs(quantile(load.outputLatMs, 0.99))} = ${(p50(load.outputLatMs) / rt).toFixed(1)} / ${(quantile(load.outputLatMs, 0.99) / rt).toFixed(1)} rounds`,
    '—', '—', '(info)', '',
  ]);
  const splitRows: Array<[string, SplitKey, string, number | undefined]> = [
    ['spawn (inputs file + args; cold: launcher → contract exec)', 'spawnMs', `/bin/true spawn+exit ${fmtMs(p50(spawnBase.trueMs))}`, p50(spawnBase.trueMs)],
    ['execute (args → exit; cold: includes Node\'s boot)', 'execMs', `node -e '' spawn+exit ${fmtMs(p50(spawnBase.nodeMs))}`, p50(spawnBase.nodeMs)],
    ['commit (state + round result)', 'commitMs', '—', undefined],
    ['other (status/output fan-out, state begin)', 'other', '—', undefined],
    ['round total', 'totalMs', `roundtime ${rt} ms`, rt],
    ['overhead = total − execute', 'overhead', '—', undefined],
  ];
  for (const [phase, rounds] of [['empty rounds', idleRounds], ['latency phase', latRounds], ['under load', loadRounds]] as const) {
    const avgInputs = rounds.reduce((a, r) => a + r.inputs, 0) / Math.max(1, rounds.length);
    for (const [what, key, baseText, base] of splitRows) {
      const s = roundSplit(rounds, key);
      const isOverhead = key === 'overhead';
      body.push([
        `per round, ${phase} (${rounds.length} rounds, ${rounds.filter((r) => r.warm).length} warm, ${avgInputs.toFixed(phase === 'under load' ? 0 : 1)} inputs avg): ${what}`,
        `${fmtMs(s.med)} / p95 ${fmtMs(s.p95)}`,
        baseText,
        base === undefined ? '—' : `${(s.med / base).toPrecision(3)}x`,
        isOverhead ? '≤ 20 ms' : '(info)',
        isOverhead ? (s.med <= 20 ? (s.p95 <= 20 ? 'yes' : 'median yes, p95 NO') : 'NO') : '',
      ]);
    }
  }
  const roundsPerS = loadRounds.length / load.seconds;
  const title = `node benchmark${QUICK ? ' (--quick)' : ''}: one node, contract ${CONTRACT.name}, roundtime ${rt} ms; ${os.cpus().length} cores shared by ` +
    `the load generator, the node process, its statefs child and the contract processes; node ${process.version}; ` +
    `load average ${loadBefore.toFixed(2)} before / ${os.loadavg()[0].toFixed(2)} after`;
  const legend = [
    `ours = hp-node in its own process (bench/nodeRunner.ts), users over wss:// (TLS, the default config) on 127.0.0.1. ` +
      `Latency = submit (hotpocket-js-client submitContractInput with an lcl lookup, as apps call it) → its "Echoing: …" contract_output, ` +
      `each input sent at a random phase of the round; rounds = ms / ${rt}. Outputs reach users with the ledger after the one holding the input ` +
      `(HotPocket's one-ledger lag), so the floor is 1-2 rounds.`,
    `Throughput = contract_input_status "accepted" per second over ${load.seconds.toFixed(1)} s after ${CFG.loadWarmupS} s warm-up, from ${CFG.loadClients} raw ` +
      `ws clients (same handshake, JSON protocol, sodium-native signatures; a status arrives when the ledger holding the input closes). ` +
      `"generator ceiling" = the same clients, window and signing against a bare wss echo server: what this process can push at all.`,
    `Per-round cells: median / p95 of HpNode's 'round' event. Warm start (the default for Node.js contracts): the process booted while the round ` +
      `was open, so spawn = inputs file + args handed over and execute = args → exit; cold: spawn = inputs file + launcher start → contract exec, execute = ` +
      `exec → exit (includes Node's own start-up, compare node -e ''); other = total − the four parts (input statuses, outputs and ledger_created to users, ` +
      `state session begin); overhead = total − execute, the node's own cost per round. Under load each round holds at most clients × window inputs.`,
  ];
  const after = { spawn: roundSplit(afterRounds, 'spawnMs'), overhead: roundSplit(afterRounds, 'overhead') };
  const notes = [
    `empty rounds after the load (${afterRounds.length}): overhead ${fmtMs(after.overhead.med)} / p95 ${fmtMs(after.overhead.p95)}, ` +
      `spawn ${fmtMs(after.spawn.med)} / p95 ${fmtMs(after.spawn.p95)}; node process RSS ${rssFresh.toFixed(0)} MiB before the load, ${rssAfter.toFixed(0)} MiB after`,
    `statuses received inside the ${load.seconds.toFixed(1)} s window: ${load.accepted} accepted (${fmtRate(load.accepted / load.seconds)}), ${load.outputs} outputs (${fmtRate(load.outputs / load.seconds)}); ` +
      `the table counts whole ledgers instead, since statuses arrive in one burst per ledger`,
    `rejected inputs under load: ${fmtRejects(load.rejected)}; in the latency runs: ${fmtRejects(lat.rejected)} (200 ms), ${fmtRejects(lat1000.rejected)} (1000 ms)`,
    `outputs that were not "Echoing: u<client>-<nonce>": ${load.badOutputs}`,
    `rounds closed under load: ${roundsPerS.toFixed(2)}/s (nominal ${(1000 / rt).toFixed(0)}/s), ${(acceptedRate / Math.max(roundsPerS, 1e-9)).toFixed(0)} inputs per round`,
    `CPU under load: node process tree (node + statefs + launcher + contracts) ${(load.nodeCpuS / load.seconds).toFixed(2)} cores, ` +
      `load generator ${(load.benchCpuS / load.seconds).toFixed(2)} cores, of ${os.cpus().length}`,
    `wss echo RTT: p50 ${fmtMs(rttP50)}, p99 ${fmtMs(rttP99)} (${echoRes.rttMs.length} round trips); spawn medians: /bin/true ${fmtMs(p50(spawnBase.trueMs))}, node -e '' ${fmtMs(p50(spawnBase.nodeMs))}`,
  ];
  process.stdout.write(`\n${title}\n\n${markdown(['metric', 'ours', 'baseline (same run)', 'ratio', 'target', 'ok'], body)}\n\n${legend.join('\n')}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
}

runBench('node', main, cleanup, log);
