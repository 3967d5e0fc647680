// Recovery on real clusters: a node that was down while the state changed comes back and fetches
// only what differs; a node whose store was damaged on disk finds it at start and repairs it from
// peers. Both are checked on the node's own transfer counters (run/status.json).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ObjectStore } from '../src/state/blockstore';
import { REPO_ROOT } from './helpers/fixtures';
import { assertRejoined, minLcl, nodeStatus, patchBlocks, startTestCluster, writerContract } from './helpers/cluster';

const ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };
const BLOCK = 64 * 1024;
const DATA_BLOCKS = 64; // data.bin: 4 MiB of distinct blocks

/** The writer contract plus a 4 MiB data.bin of distinct 64 KiB blocks. */
/** DATA_BLOCKS distinct blocks, the same on every run. */
function genesisData(): Buffer {
  const data = Buffer.alloc(DATA_BLOCKS * BLOCK);
  let seed = crypto.createHash('sha256').update('genesis').digest();
  for (let o = 0; o < data.length; o += 32) {
    seed.copy(data, o);
    seed = crypto.createHash('sha256').update(seed).digest();
  }
  return data;
}

test('state sync: a node down for 30+ rounds fetches about the bytes that changed; one whose store was damaged on disk repairs that block only', async (t) => {
  const c = await startTestCluster(t, { nodes: 3, contractDir: writerContract(t, genesisData()), contractEnv: ENV, roundtimeMs: 300, thresholdPercent: 66 });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= 2, 60_000, 'the cluster closes ledgers');

  // Node 3 goes down; 8 blocks of data.bin change while it is away, over 30+ rounds.
  await c.kill(2, 'SIGTERM');
  const patched = [3, 9, 17, 22, 40, 41, 50, 63];
  const downAt = await patchBlocks(t, c, 0, patched);
  await c.waitFor(async () => (await minLcl(c, [0, 1])) >= downAt + 30, 60_000, '30 more ledgers without node 3');

  let t0 = Date.now();
  await c.restart(2);
  await assertRejoined(c, 2, [0, 1]);
  t.diagnostic(`node 3: restart → caught up and voting in ${Date.now() - t0} ms`);
  const s3 = nodeStatus(c, 2)!;
  const changed = patched.length * BLOCK;
  assert.ok(s3.transfer.stateSyncs >= 1, `node 3 synced its state: ${JSON.stringify(s3.transfer)}`);
  // Only the patched blocks travel, plus a few small tree nodes (file node, directories, root).
  assert.ok(s3.transfer.stateBytes >= changed && s3.transfer.stateBytes <= changed + 16 * 1024, `node 3 fetched ${s3.transfer.stateBytes} state bytes for ${changed} changed`);
  assert.ok(c.logs(2).some((l) => /state sync done .*paths that differed: .*\/state\/data\.bin/.test(l)), 'the sync names the path that differed');

  // Node 2: one block of data.bin flipped on disk while it is stopped.
  await c.kill(1, 'SIGTERM');
  const storeDir = path.join(c.dirs[1], 'state');
  const store = ObjectStore.open(storeDir);
  const root = Buffer.from(store.current.root, 'hex');
  const blocks = store.fileBlocks(store.entryHash(root, '/state/data.bin')!).blocks;
  const victim = store.locate(blocks[30])!; // a block no patch touched
  store.close();
  const fd = fs.openSync(path.join(storeDir, 'packs', `${victim.pack}.pack`), 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, victim.offset + 1000);
  b[0] ^= 0x5a;
  fs.writeSync(fd, b, 0, 1, victim.offset + 1000);
  fs.closeSync(fd);
  const before = nodeStatus(c, 1)!.transfer.stateBytes;
  const syncsBefore = nodeStatus(c, 1)!.transfer.stateSyncs;
  t0 = Date.now();
  await c.restart(1);
  await c.waitFor(async () => c.logs(1).some((l) => /state store is damaged: 1 object\(s\) .*\/state\/data\.bin/.test(l)), 30_000, 'node 2 finds the damaged block (start-up check)');
  // The check runs once the node votes with the others again; its repair shows in status.json (written every second).
  await c.waitFor(async () => (nodeStatus(c, 1)?.transfer.stateSyncs ?? 0) > syncsBefore, 30_000, 'node 2 repairs it from peers');
  await assertRejoined(c, 1, [0, 2]);
  t.diagnostic(`node 2: restart → repaired, caught up and voting in ${Date.now() - t0} ms`);
  const fetched = nodeStatus(c, 1)!.transfer.stateBytes - before;
  assert.ok(fetched >= BLOCK && fetched <= BLOCK + 16 * 1024, `node 2 fetched ${fetched} bytes to repair one ${BLOCK}-byte block`);
  const repaired = ObjectStore.open(storeDir, { readOnly: true });
  t.after(() => repaired.close());
  assert.deepEqual(repaired.damagedObjects(), new Set(), 'the store reads the repaired copy');
});
