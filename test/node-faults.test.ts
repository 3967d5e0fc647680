// A node keeps closing rounds through contracts that crash, hang, flood or fill the state; a
// contract needs no SDK (Python over the raw POSIX interface); `hp-node run` stops cleanly; a node
// killed with -9 mid-round restarts with every accepted input in exactly one ledger.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { readConfig, writeConfig } from '../src/config/nodeConfig';
import { LedgerStore } from '../src/ledger/ledgerStore';
import { createNode } from '../src/node/nodeDir';
import { startNode } from '../src/node/runNode';
import { fuseMountsUnder } from '../src/state/mounts';
import { deferCleanup, exportStore, HP_NODE_BIN, REPO_ROOT, tempDir } from './helpers/fixtures';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const HotPocket = require('hotpocket-js-client');
HotPocket.setLogLevel(1);

const NODE_PATH = path.join(REPO_ROOT, 'node_modules');

const UNRULY = `
const HotPocket = require('hotpocket-nodejs-contract');
const fs = require('fs');
new HotPocket.Contract().init(async (ctx) => {
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      const msg = (await ctx.users.read(input)).toString();
      if (msg === 'crash') { fs.writeFileSync('crashed-state', 'x'); process.kill(process.pid, 'SIGSEGV'); }
      if (msg === 'hang') { fs.writeFileSync('hung-state', 'x'); for (;;) {} }
      if (msg === 'flood') { for (let i = 0; i < 100; i++) await user.send('y'.repeat(100000)); }
      if (msg === 'fill') { try { fs.writeFileSync('big', Buffer.alloc(3 * 1024 * 1024)); } catch (e) { await user.send('fill: ' + e.code); } }
      await user.send('ok: ' + msg);
    }
  }
});
`;

async function unrulyNode(t: import('node:test').TestContext) {
  const base = tempDir(t, 'hp-node-');
  const contract = path.join(base, 'contract');
  fs.mkdirSync(contract);
  fs.writeFileSync(path.join(contract, 'index.js'), UNRULY);
  const dir = path.join(base, 'node');
  await createNode(dir, { contractDir: contract, contractEnv: { NODE_PATH }, userPort: 0, roundtimeMs: 200 });
  const cfg = readConfig(path.join(dir, 'config.json'));
  cfg.contract.round_limits.exec_timeout = 1000;
  cfg.contract.round_limits.user_output_bytes = 1024 * 1024;
  cfg.contract.state_quota.bytes = 2 * 1024 * 1024;
  writeConfig(path.join(dir, 'config.json'), cfg);
  const running = await startNode(dir, { logLevel: 'error' });
  deferCleanup(t, () => running.stop());
  const keys = await HotPocket.generateKeys();
  const client = await HotPocket.createClient([running.userUrl], keys, {});
  deferCleanup(t, () => client.close());
  assert.equal(await client.connect(), true);
  return { running, client, dir };
}

/** Submits one input and resolves with the outputs of the round that executed it. */
async function roundTrip(client: any, msg: string, timeoutMs = 15_000): Promise<string[]> {
  const outputs = new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no output for "${msg}"`)), timeoutMs);
    const on = (r: { outputs: unknown[] }) => {
      const texts = r.outputs.map(String);
      if (texts.some((x) => x.endsWith(msg) || x.startsWith('fill'))) {
        clearTimeout(timer);
        resolve(texts);
      }
    };
    client.on(HotPocket.events.contractOutput, on);
  });
  const st = await (await client.submitContractInput(msg)).submissionStatus;
  assert.equal(st.status, 'accepted', `${msg}: ${JSON.stringify(st)}`);
  return outputs;
}

test('crash, hang, flood and a full state are contained; the node keeps closing rounds', async (t) => {
  const { running, client } = await unrulyNode(t);
  const seqBefore = running.node.lcl().seqNo;

  // Crash (SIGSEGV) and hang (killed at exec_timeout): state rolled back, outputs dropped, rounds go on.
  for (const bad of ['crash', 'hang']) {
    const st = await (await client.submitContractInput(bad)).submissionStatus;
    assert.equal(st.status, 'accepted');
  }
  assert.deepEqual(await roundTrip(client, 'after'), ['ok: after']);

  // Flood beyond user_output_bytes: truncated, not fatal.
  const flood = await (await client.submitContractInput('flood')).submissionStatus;
  assert.equal(flood.status, 'accepted');
  // Writing past the state quota: the contract gets ENOSPC and carries on.
  assert.deepEqual(await roundTrip(client, 'fill'), ['fill: ENOSPC', 'ok: fill']);
  assert.deepEqual(await roundTrip(client, 'still'), ['ok: still']);
  assert.ok(running.node.lcl().seqNo > seqBefore + 5);

  // The crashed and hung runs left nothing in the committed state.
  const view = exportStore(running.node.paths.store, path.join(running.node.paths.dir, 'export'));
  const files = fs.readdirSync(path.join(view, 'state'));
  assert.equal(files.includes('crashed-state'), false);
  assert.equal(files.includes('hung-state'), false);
  assert.equal(files.includes('big'), true);
  assert.ok(fs.statSync(path.join(view, 'state', 'big')).size <= 2 * 1024 * 1024);
});

test('a contract needs no SDK: the Python echo over the raw interface', async (t) => {
  const dir = path.join(tempDir(t, 'hp-node-'), 'node');
  await createNode(dir, { contractDir: path.join(REPO_ROOT, 'examples', 'python-echo'), contractBin: '/usr/bin/python3', contractArgs: 'contract.py', userPort: 0, roundtimeMs: 200 });
  const running = await startNode(dir, { logLevel: 'error' });
  deferCleanup(t, () => running.stop());
  const client = await HotPocket.createClient([running.userUrl], await HotPocket.generateKeys(), {});
  deferCleanup(t, () => client.close());
  assert.equal(await client.connect(), true);
  assert.deepEqual(await roundTrip(client, 'hi'), ['python echo: hi']);
  assert.equal(await client.submitContractReadRequest('r'), 'python echo: r');
});

test('hp-node run: SIGTERM stops cleanly (exit 0, unmounted); kill -9 mid-round loses no accepted input', async (t) => {
  const base = tempDir(t, 'hp-node-');
  const dir = path.join(base, 'node');
  await createNode(dir, { contractDir: path.join(REPO_ROOT, 'examples', 'echo', 'contract'), contractEnv: { NODE_PATH }, userPort: 0, roundtimeMs: 200 });
  const cfg = readConfig(path.join(dir, 'config.json'));
  cfg.user.tls = false;
  writeConfig(path.join(dir, 'config.json'), cfg);

  const start = async () => {
    const child = spawn(process.execPath, [HP_NODE_BIN, 'run', dir], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    deferCleanup(t, () => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node did not start: ${out}\n${err}`)), 20_000);
      child.stdout!.on('data', () => {
        const m = /users at (\S+)/.exec(out);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
    });
    return { child, url };
  };

  // Load: inputs from one user while the node is killed -9 at a random moment mid-run.
  let { child, url } = await start();
  const keys = await HotPocket.generateKeys();
  const client = await HotPocket.createClient([url], keys, {});
  assert.equal(await client.connect(), true);
  const accepted: string[] = [];
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < 30; i++) {
    const sub = await client.submitContractInput(`m${i}`, 1000 + i, 5, true);
    pending.push(sub.submissionStatus.then((s: { status: string }) => { if (s.status === 'accepted') accepted.push(sub.hash); }));
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, 150));
  process.kill(child.pid!, 'SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await Promise.race([Promise.all(pending), new Promise((r) => setTimeout(r, 1000))]);
  await client.close();
  assert.ok(accepted.length > 0, 'some inputs were accepted before the kill');

  ({ child, url } = await start());
  await new Promise((r) => setTimeout(r, 600));
  child.kill('SIGTERM');
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  assert.equal(code, 0, 'SIGTERM exits 0');
  assert.deepEqual(fuseMountsUnder(dir), []);

  // Every input reported accepted is in exactly one ledger, and the chain is whole.
  const ledger = LedgerStore.open(path.join(dir, 'ledger'));
  try {
    const seen = new Map<string, number>();
    for (let s = 1; s <= ledger.last().seqNo; s++) {
      for (const i of ledger.get(s)!.inputs) seen.set(i.hash.toString('hex'), (seen.get(i.hash.toString('hex')) ?? 0) + 1);
    }
    for (const h of accepted) assert.equal(seen.get(h), 1, `accepted input ${h} appears ${seen.get(h) ?? 0} times`);
    assert.ok([...seen.values()].every((n) => n === 1), 'an input appears in two ledgers');
  } finally {
    ledger.close();
  }
});

test('a full disk under the ledger stops the node with a clear error; nothing acknowledged is lost', async (t) => {
  const base = tempDir(t, 'hp-node-');
  const dir = path.join(base, 'node');
  await createNode(dir, { contractDir: path.join(REPO_ROOT, 'examples', 'echo', 'contract'), contractEnv: { NODE_PATH }, userPort: 0, roundtimeMs: 200 });
  // A 1 MiB tmpfs as the ledger directory: the disk fills after a few large inputs.
  const ledgerDir = path.join(dir, 'ledger');
  fs.mkdirSync(ledgerDir, { recursive: true });
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', ledgerDir]);
  if (mounted.status !== 0) return t.skip(`cannot mount a tmpfs here: ${mounted.stderr}`);
  deferCleanup(t, () => spawnSync('umount', ['-l', ledgerDir]));
  const running = await startNode(dir, { logLevel: 'error' });
  deferCleanup(t, () => running.stop());
  const fatal = new Promise<Error>((resolve) => running.node.once('fatal', resolve));
  const client = await HotPocket.createClient([running.userUrl], await HotPocket.generateKeys(), {});
  deferCleanup(t, () => client.close());
  assert.equal(await client.connect(), true);
  const accepted: string[] = [];
  for (let i = 0; i < 8; i++) {
    const sub = await client.submitContractInput('x'.repeat(200_000), 100 + i, 5, true);
    void sub.submissionStatus.then((s: { status: string }) => { if (s.status === 'accepted') accepted.push(sub.hash); });
  }
  let timer: NodeJS.Timeout | undefined;
  const err = await Promise.race([fatal, new Promise<null>((r) => (timer = setTimeout(() => r(null), 15_000)))]);
  clearTimeout(timer);
  assert.ok(err, 'the node did not stop on a full disk');
  // The ledger append or the last execution's result file (same directory), whichever hits it first.
  assert.match(err!.message, /(cannot append ledger \d+|cannot make ledger \d+ durable|cannot record the result of ledger \d+ in \S+last-exec): .*ENOSPC/);
  const { LedgerStore: Store } = await import('../src/ledger/ledgerStore');
  await running.stop();
  const ledger = Store.open(ledgerDir);
  try {
    const inLedger = new Set<string>();
    for (let s = 1; s <= ledger.last().seqNo; s++) for (const i of ledger.get(s)!.inputs) inLedger.add(i.hash.toString('hex'));
    for (const h of accepted) assert.ok(inLedger.has(h), `accepted input ${h} is not in the ledger`);
  } finally {
    ledger.close();
  }
});
