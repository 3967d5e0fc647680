// `hp-node cluster`: creates N nodes sharing a UNL, prints their URLs, runs them until SIGINT
// (exit 0, nothing left mounted), and resumes the same chain when run again; bad arguments are
// refused with clear messages.
import test from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ensureCluster } from '../src/node/cluster';
import { fuseMountsUnder, cleanStaleMounts } from '../src/state/mounts';
import { askLcl, askLedgerHash, freePortBlock, pollUntil } from './helpers/cluster';
import { deferCleanup, HEX64, HP_NODE_BIN, hpNode, REPO_ROOT, tempDir } from './helpers/fixtures';
import { RawUser } from './helpers/rawUser';

const ECHO = path.join(REPO_ROOT, 'examples', 'echo', 'contract');
const NODE_PATH = path.join(REPO_ROOT, 'node_modules');

interface ClusterRun {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  exitCode: () => number | null | undefined;
}

/** `hp-node cluster <args>` in its own process group, killed (group) and unmounted when the test ends. */
function startCli(t: import('node:test').TestContext, dir: string, args: string[]): ClusterRun {
  const child = spawn(process.execPath, [HP_NODE_BIN, 'cluster', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (d) => (out = (out + d).slice(-200_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-200_000)));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c, sig) => resolve((code = c ?? (sig ? 128 : null)))));
  deferCleanup(t, async () => {
    if (code === undefined) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
      await exited;
    }
    cleanStaleMounts(dir);
  });
  return { child, output: () => out, exited, exitCode: () => code };
}

const tail = (s: string, lines = 60) => s.split('\n').slice(-lines).join('\n');

/** Asks one node (fresh connection each time: nodes restart between runs). */
async function ask<T>(url: string, fn: (u: RawUser) => Promise<T>): Promise<T> {
  const u = await RawUser.connect(url, 5000);
  try {
    return await fn(u);
  } finally {
    u.close();
  }
}

/** Waits for the "nodeK  <url>  <pubkey>" lines; returns URLs (as 127.0.0.1) and keys in node order. */
async function nodeLines(run: ClusterRun, n: number): Promise<{ urls: string[]; keys: string[] }> {
  const re = /^node(\d+) {2}(wss?:\/\/\S+) {2}(ed[0-9a-f]{64})$/gm;
  const found = () => [...run.output().matchAll(re)];
  await pollUntil(async () => found().length >= n, 30_000, `${n} node lines`, () => tail(run.output()), () => (run.exitCode() !== undefined ? `hp-node cluster exited (${run.exitCode()})` : null));
  const lines = found().slice(0, n);
  assert.deepEqual(lines.map((m) => Number(m[1])), Array.from({ length: n }, (_, i) => i + 1));
  return { urls: lines.map((m) => m[2].replace('://localhost:', '://127.0.0.1:')), keys: lines.map((m) => m[3]) };
}

async function stopCli(run: ClusterRun, dir: string): Promise<void> {
  run.child.kill('SIGINT');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([run.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 20_000)))]);
  clearTimeout(timer);
  assert.equal(code, 0, `hp-node cluster after SIGINT: ${code}\n${tail(run.output())}`);
  assert.deepEqual(fuseMountsUnder(dir), []);
  assert.equal(fs.readFileSync('/proc/mounts', 'utf8').includes(dir), false, 'a mount under the cluster dir is left');
}

for (const nodes of [1, 3]) {
  test(`hp-node cluster --nodes ${nodes}: URLs printed, ledgers agree, SIGINT exits 0 unmounted, a rerun resumes the chain`, async (t) => {
    const dir = path.join(tempDir(t, 'hp-cluster-cli-'), 'cluster');
    const args = [
      '--nodes', String(nodes),
      '--contract', ECHO,
      '--contract-env', `NODE_PATH=${NODE_PATH}`,
      '--user-port-base', String(await freePortBlock(nodes)),
      '--peer-port-base', String(await freePortBlock(nodes)),
      '--roundtime', '400',
    ];
    const all = Array.from({ length: nodes }, (_, i) => i);

    let run = startCli(t, dir, args);
    const first = await nodeLines(run, nodes);
    const running = () => (run.exitCode() !== undefined ? `hp-node cluster exited (${run.exitCode()})` : null);
    const lcls = () => Promise.all(first.urls.map((u) => ask(u, (x) => askLcl(x))));
    await pollUntil(async () => (await lcls()).every((l) => l.seqNo >= 3), 30_000, 'every node to close ledger 3', () => tail(run.output()), running);
    const h3 = await Promise.all(first.urls.map((u) => ask(u, (x) => askLedgerHash(x, 3))));
    assert.match(h3[0]!, HEX64);
    assert.deepEqual(h3, all.map(() => h3[0]), 'the nodes disagree on ledger 3');
    const before = Math.max(...(await lcls()).map((l) => l.seqNo));
    await stopCli(run, dir);

    // Second run: same nodes (same keys), the chain continues from where it stopped.
    run = startCli(t, dir, args);
    const second = await nodeLines(run, nodes);
    assert.deepEqual(second.keys, first.keys, 'the rerun created new nodes instead of resuming');
    assert.deepEqual(second.urls, first.urls);
    await pollUntil(async () => (await lcls()).every((l) => l.seqNo >= before + 2), 30_000, `every node to close ledgers past ${before} (where the first run got to)`, () => tail(run.output()), running);
    const again = await Promise.all(second.urls.map((u) => ask(u, (x) => askLedgerHash(x, 3))));
    assert.deepEqual(again, h3, 'ledger 3 changed: the chain was not resumed');
    await stopCli(run, dir);
  });
}

test('hp-node cluster refuses bad arguments with clear messages', async (t) => {
  const bad = async (args: string[], message: RegExp) => {
    const r = await hpNode(['cluster', path.join(tempDir(t), 'c'), ...args], { timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, message);
  };
  await bad(['--nodes', '0', '--contract', ECHO], /"0" is not a node count \(1\.\.64\)/);
  await bad(['--nodes', '65', '--contract', ECHO], /"65" is not a node count/);
  await bad(['--nodes', '3', '--contract', ECHO, '--threshold', '50'], /"50" is not a threshold in percent \(51\.\.100/);
  await bad(['--nodes', '3', '--contract', ECHO, '--threshold', '101'], /"101" is not a threshold/);
  await bad(['--nodes', '3'], /--contract <contract-dir> is needed to create one/);
  await bad(['--nodes', '2', '--contract', ECHO, '--user-port-base', '9000', '--peer-port-base', '9001'], /overlap/);

  // An existing cluster of another size is refused, not extended or truncated.
  const dir = path.join(tempDir(t), 'c2');
  const { dirs } = await ensureCluster(dir, { nodes: 2, contractDir: ECHO, userPortBase: 9000, peerPortBase: 9100, thresholdPercent: 67 });
  assert.equal(JSON.parse(fs.readFileSync(path.join(dirs[0], 'config.json'), 'utf8')).contract.consensus.threshold, 67);
  const r = await hpNode(['cluster', dir, '--nodes', '3'], { timeoutMs: 20_000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /already holds a cluster of 2 nodes; run it with --nodes 2/);
});
