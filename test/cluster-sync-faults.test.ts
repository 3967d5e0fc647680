// State sync under faults, on real clusters. (1) A brand-new node syncing a large state is killed
// with SIGKILL half-way: after a restart it resumes from the objects it had already verified and
// persisted, fetching only the rest. (2) A UNL peer answers every object request with wrong bytes
// (random, or a real object that is not the one asked): the syncing node rejects them, drops the
// liar, and completes the sync from the honest peers. Both end with identical ledgers.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readConfig } from '../src/config/nodeConfig';
import { readKeyFile } from '../src/crypto/keys';
import { createNode } from '../src/node/nodeDir';
import { decodeGetObjects, encodeByteList, REQUEST } from '../src/node/peerMessages';
import { ObjectStore } from '../src/state/blockstore';
import { REPO_ROOT, tempDir } from './helpers/fixtures';
import { assertRejoined, impersonate, minLcl, nodeStatus, patchBlocks, startTestCluster, TestCluster, writerContract } from './helpers/cluster';

const ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };
const BLOCK = 64 * 1024;
const MiB = 1024 * 1024;


interface SyncProgress {
  objectsFetched: number;
  bytesFetched: number;
  objectsLocal: number;
  pending: number;
}

/** The blocks of /state/data.bin in node `from`'s current snapshot, and which of them node `at`'s store holds. */
function dataBlocks(c: TestCluster, from: number, at: number): { total: number; held: number } {
  const src = ObjectStore.open(path.join(c.dirs[from], 'state'), { readOnly: true });
  let blocks: Buffer[];
  try {
    blocks = src.fileBlocks(src.entryHash(Buffer.from(src.current.root, 'hex'), '/state/data.bin')!).blocks;
  } finally {
    src.close();
  }
  const dst = ObjectStore.open(path.join(c.dirs[at], 'state'), { readOnly: true });
  try {
    return { total: blocks.length, held: blocks.filter((h) => dst.has(h)).length };
  } finally {
    dst.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('state sync killed with SIGKILL half-way resumes after a restart without fetching the verified objects again', async (t) => {
  const DATA = 128 * MiB; // ~4 s of sync (see the serving cap below): status.json (written every second) shows it part-way
  const t0 = Date.now();
  // Serving is capped at 16 MiB/s per peer, so the 128 MiB take ~4 s and the test can watch it part-way.
  const c = await startTestCluster(t, {
    nodes: 3, contractDir: writerContract(t, { randomBytes: DATA }), contractEnv: ENV, roundtimeMs: 300, thresholdPercent: 66,
    configure: (_i, cfg) => void (cfg.mesh.serve_mib_per_sec = 16),
  });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= 2, 60_000, 'the cluster closes ledgers');

  // Node 3 becomes brand new: its genesis state without data.bin, and no ledgers.
  await c.kill(2, 'SIGTERM');
  const cfg = readConfig(path.join(c.dirs[2], 'config.json'));
  const fresh = path.join(tempDir(t, 'hp-fresh-'), 'node3');
  await createNode(fresh, {
    contractDir: writerContract(t),
    contractEnv: ENV,
    contractId: cfg.contract.id,
    unl: cfg.contract.unl,
    keyPair: readKeyFile(path.join(c.dirs[2], 'keys.json')),
    roundtimeMs: cfg.contract.consensus.roundtime,
  });
  fs.rmSync(path.join(c.dirs[2], 'state'), { recursive: true, force: true });
  fs.renameSync(path.join(fresh, 'state'), path.join(c.dirs[2], 'state'));
  fs.rmSync(path.join(c.dirs[2], 'ledger'), { recursive: true, force: true }); // a fresh one holds genesis only
  fs.rmSync(path.join(c.dirs[2], 'run', 'status.json'), { force: true });
  const before = dataBlocks(c, 0, 2);
  assert.equal(before.held, 0, 'the new node holds no block of data.bin');
  const downAt = (await c.lcl(0)).seqNo;
  await c.waitFor(async () => (await minLcl(c, [0, 1])) >= downAt + 20, 60_000, '20 more ledgers without node 3');

  // First run: watch its sync progress and kill it part-way.
  const setupMs = Date.now() - t0;
  const firstRunAt = Date.now();
  await c.restart(2);
  let seen: SyncProgress | null = null;
  const observed: number[] = [];
  const end = Date.now() + 60_000;
  while (!seen && Date.now() < end) {
    const s = nodeStatus(c, 2);
    if (s?.sync) observed.push(s.sync.bytesFetched);
    // Past its first quarter (the first batches are only tree nodes), and not finished.
    if (s?.sync && s.sync.bytesFetched >= DATA / 4) seen = s.sync;
    else if (s && s.transfer.stateSyncs > 0) break; // finished between two status writes
    else await sleep(20);
  }
  assert.ok(seen, `node 3's status showed its sync in progress (observed ${JSON.stringify(observed)}, transfer ${JSON.stringify(nodeStatus(c, 2)?.transfer)})\n${c.logReport(20)}`);
  await c.kill(2, 'SIGKILL');
  const atKill = dataBlocks(c, 0, 2);
  const needed = atKill.total * BLOCK;
  const persisted = atKill.held * BLOCK;
  t.diagnostic(`setup ${setupMs} ms; first run: status showed ${seen.objectsFetched} objects / ${seen.bytesFetched} bytes fetched; at SIGKILL the store held ${atKill.held}/${atKill.total} data.bin blocks (${persisted} bytes)`);
  assert.ok(seen.bytesFetched < needed, `the sync was part-way when killed (${seen.bytesFetched} of ${needed} bytes)`);
  assert.ok(atKill.held < atKill.total, `the kill came before every block was here (${atKill.held}/${atKill.total})`);
  // What the status reported as fetched was persisted before it was reported (tree nodes aside).
  assert.ok(persisted + 256 * 1024 >= seen.bytesFetched, `the ${seen.bytesFetched} bytes reported fetched are on disk (${persisted} bytes of blocks held)`);

  // Second run: resumes from what is on disk.
  const t1 = Date.now();
  await c.restart(2);
  // Under load (other test files in parallel) replaying the ledgers closed meanwhile takes a while.
  await assertRejoined(c, 2, [0, 1], 90_000);
  const s3 = nodeStatus(c, 2)!;
  t.diagnostic(`second run: ${JSON.stringify(s3.transfer)}; rejoined in ${Date.now() - t1} ms (the first ran ${t1 - firstRunAt} ms before the kill); ${c.logs(2).filter((l) => /state sync done/.test(l)).join(' | ')}`);
  assert.ok(s3.transfer.stateSyncs >= 1, `node 3 completed a state sync: ${JSON.stringify(s3.transfer)}`);
  const missing = needed - persisted;
  const slack = 256 * 1024; // tree nodes (root, directories, data.bin's file and list nodes) and index.js
  assert.ok(s3.transfer.stateBytes >= missing, `the second run fetched the ${missing} bytes still missing (${s3.transfer.stateBytes})`);
  assert.ok(s3.transfer.stateBytes <= missing + slack, `the second run fetched ${s3.transfer.stateBytes} bytes: no more than the ${missing} still missing (+ ${slack} slack), not the ${needed} of the whole file`);
  assert.ok(seen.bytesFetched + s3.transfer.stateBytes <= needed + slack, `both runs together fetched ${seen.bytesFetched} + ${s3.transfer.stateBytes} bytes for ${needed}`);
  assert.equal(dataBlocks(c, 0, 2).held, atKill.total, 'node 3 holds all of data.bin');
});

test('a UNL peer serving wrong state objects is rejected and the sync completes from the honest peers', async (t) => {
  const c = await startTestCluster(t, { nodes: 4, contractDir: writerContract(t, { randomBytes: 4 * MiB }), contractEnv: ENV, roundtimeMs: 300, thresholdPercent: 66 });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2, 3])) >= 2, 60_000, 'the 4-node cluster closes ledgers');

  // Node 3 goes down; 8 blocks of data.bin change over 30+ rounds (nodes 1, 2, 4 are a quorum of 3).
  await c.kill(2, 'SIGTERM');
  const patched = [3, 9, 17, 22, 40, 41, 50, 63];
  const downAt = await patchBlocks(t, c, 0, patched);
  await c.waitFor(async () => (await minLcl(c, [0, 1, 3])) >= downAt + 30, 60_000, '30 more ledgers without node 3');

  // Node 4 turns liar: its key and peer port, answering every object request with wrong bytes.
  const { net: liar, keys } = await impersonate(t, c, 3);
  // Real objects of node 4's store (its genesis blocks of data.bin): valid objects, just not the ones asked.
  const store4 = ObjectStore.open(path.join(c.dirs[3], 'state'), { readOnly: true });
  const realBlocks = store4.fileBlocks(store4.entryHash(Buffer.from(store4.current.root, 'hex'), '/state/data.bin')!).blocks.map((h) => ({ hash: h, bytes: store4.get(h) }));
  store4.close();
  const lies = { requests: 0, objects: 0, askedBy: new Set<string>() };
  liar.on('request', (r) => {
    if (r.kind !== REQUEST.objects) return;
    const hashes = decodeGetObjects(r.body);
    lies.requests++;
    lies.askedBy.add(r.from);
    // By turns: a real block of data.bin that is not the object asked, or random bytes.
    const out = hashes.map((h) => (lies.objects++ % 2 === 0 ? realBlocks.find((b) => !b.hash.equals(h))!.bytes : crypto.randomBytes(BLOCK)));
    r.reply(encodeByteList(out));
  });

  // Node 3 comes back: nodes 1 and 2 cannot close ledgers without it, so its sync target holds still.
  const t1 = Date.now();
  await c.restart(2);
  await assertRejoined(c, 2, [0, 1]);
  const s3 = nodeStatus(c, 2)!;
  const badLines = c.logs(2).filter((l) => l.includes('served a bad state object'));
  t.diagnostic(`node 3 rejoined in ${Date.now() - t1} ms; transfer ${JSON.stringify(s3.transfer)}; liar answered ${lies.requests} request(s) for ${lies.objects} object(s); ${badLines.length} 'bad state object' log line(s)`);
  assert.ok(lies.requests > 0 && lies.askedBy.has(c.publicKeys[2]), `the liar was asked for objects by node 3: ${JSON.stringify({ ...lies, askedBy: [...lies.askedBy] })}`);
  assert.ok(s3.transfer.rejectedObjects > 0, `node 3 rejected the liar's objects: ${JSON.stringify(s3.transfer)}`);
  // Every lie that arrived in time was rejected and logged (an answer can also come after the
  // requester stopped waiting, or after the liar was dropped and the sync finished elsewhere).
  assert.ok(badLines.length >= 1 && badLines.length <= lies.objects, `${badLines.length} of the liar's ${lies.objects} objects were rejected and logged`);
  assert.ok(badLines.length > 0 && badLines.every((l) => l.includes(keys.publicKey.toString('hex').slice(0, 10))), `node 3 logged the liar (and only the liar) as serving bad objects:\n${badLines.slice(0, 5).join('\n')}`);
  assert.ok(s3.transfer.stateSyncs >= 1, `node 3 completed a state sync: ${JSON.stringify(s3.transfer)}`);
  // Only the patched blocks were accepted (from honest peers), plus a few small tree nodes.
  const changed = patched.length * BLOCK;
  assert.ok(s3.transfer.stateBytes >= changed && s3.transfer.stateBytes <= changed + 16 * 1024, `node 3 fetched ${s3.transfer.stateBytes} state bytes for ${changed} changed`);
  // The three honest nodes close ledgers again together.
  const at = await minLcl(c, [0, 1, 2]);
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= at + 3, 30_000, 'the honest nodes close ledgers again');
  await assertRejoined(c, 2, [0, 1]);
});
