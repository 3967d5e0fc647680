// Real multi-process clusters on 127.0.0.1: every node is an `hp-node run` process with its own
// FUSE state mount, contracts run for real, peers talk over WebSocket, users use the unmodified
// hotpocket-js-client. Faults are real too: kill -9, SIGSTOP, and partitions cut by proxies.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/fixtures';
import { RawUser } from './helpers/rawUser';
import { minLcl, nodeStatus, startTestCluster, TestCluster } from './helpers/cluster';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const HotPocket = require('hotpocket-js-client');
HotPocket.setLogLevel(1);

const ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };
const ECHO = path.join(REPO_ROOT, 'examples', 'echo', 'contract');

/** Every seq in 1..upTo has one hash on all the given nodes (they may be at different lcls). */
async function assertNoFork(c: TestCluster, nodes: number[], upTo: number): Promise<void> {
  for (let s = 1; s <= upTo; s++) {
    const hashes = new Set<string>();
    for (const i of nodes) {
      const h = await c.ledgerHash(i, s);
      if (h) hashes.add(h);
    }
    assert.ok(hashes.size <= 1, `fork at ledger ${s}: ${[...hashes].join(' vs ')}\n${c.logReport(20)}`);
  }
}


/** Waits until every listed node has closed `ahead` more ledgers than the highest lcl now. */
async function progress(c: TestCluster, nodes: number[], ahead: number, timeoutMs: number, what: string): Promise<number> {
  const start = Math.max(...(await Promise.all(nodes.map((i) => c.lcl(i)))).map((x) => x.seqNo));
  await c.waitFor(async () => (await minLcl(c, nodes)) >= start + ahead, timeoutMs, what);
  return start + ahead;
}

test('3 nodes: inputs sent through different nodes land in the same ledgers; every node\'s users get outputs the official client verifies against the whole UNL', async (t) => {
  const c = await startTestCluster(t, { nodes: 3, contractDir: ECHO, contractEnv: ENV, roundtimeMs: 400 });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= 2, 60_000, 'the cluster closes ledgers');
  const accepted: Array<{ via: number; seq: number; hash: string }> = [];
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const keys = await HotPocket.generateKeys();
    const client = await HotPocket.createClient([c.userUrls[i]], keys, { protocol: HotPocket.protocols.json, trustedServerKeys: c.publicKeys });
    assert.equal(await client.connect(), true, `client connects to node ${i + 1}`);
    clients.push(client);
    t.after(() => client.close());
  }
  const outputs = clients.map((client) => {
    const got: string[] = [];
    client.on(HotPocket.events.contractOutput, (r: { outputs: string[] }) => got.push(...r.outputs));
    return got;
  });
  await Promise.all(
    clients.map(async (client, i) => {
      const sub = await client.submitContractInput(`hello from a user of node ${i + 1}`);
      const s = await sub.submissionStatus;
      assert.equal(s.status, 'accepted', `input via node ${i + 1}: ${JSON.stringify(s)}`);
      accepted.push({ via: i, seq: s.ledgerSeqNo, hash: s.ledgerHash });
    }),
  );
  // Outputs come one ledger later, signed by ≥ 80 % of the UNL (the client drops anything less).
  await c.waitFor(async () => outputs.every((o, i) => o.includes(`Echoing: hello from a user of node ${i + 1}`)), 30_000, 'each user gets its echo, verified');
  for (const a of accepted) {
    for (let i = 0; i < 3; i++) assert.equal(await c.ledgerHash(i, a.seq), a.hash, `node ${i + 1} holds ledger ${a.seq} as accepted via node ${a.via + 1}`);
  }
  await assertNoFork(c, [0, 1, 2], await minLcl(c, [0, 1, 2]));
});

test('5 nodes at 80 %: survives kill -9 of one, follows again after SIGSTOP, closes nothing during a 2|3 partition and never forks', async (t) => {
  const c = await startTestCluster(t, { nodes: 5, contractDir: ECHO, contractEnv: ENV, roundtimeMs: 500, viaProxy: true });
  const all = [0, 1, 2, 3, 4];
  await c.waitFor(async () => (await minLcl(c, all)) >= 2, 90_000, 'the 5-node cluster closes ledgers');

  // kill -9 one node: q = 4 of 5, so the others go on.
  await c.kill(4, 'SIGKILL');
  await progress(c, [0, 1, 2, 3], 4, 60_000, 'ledgers keep closing with node 5 dead');
  await c.restart(4);
  await c.waitFor(async () => (await c.lcl(4)).seqNo >= (await minLcl(c, [0, 1, 2, 3])) && nodeStatus(c, 4)?.voteStatus === 'synced', 90_000, 'node 5 catches up and votes again after its restart');

  // SIGSTOP one node for 10 s: alive but silent; the rest close ledgers; once resumed it follows.
  c.stop(3);
  const stoppedAt = Date.now();
  const during = await progress(c, [0, 1, 2, 4], 3, 60_000, 'ledgers close while node 4 is stopped');
  await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
  c.cont(3);
  await c.waitFor(async () => (await c.lcl(3)).seqNo > during + 2, 90_000, 'node 4 follows the cluster again after SIGCONT');

  // Partition {1,2} | {3,4,5}: neither side has 4 of 5.
  c.partition([[0, 1], [2, 3, 4]]);
  await new Promise((r) => setTimeout(r, 2000)); // what was in flight settles
  // A node still catching up may fetch ledgers decided before the cut; no new one may appear.
  const highest = async () => Math.max(...(await Promise.all(all.map((i) => c.lcl(i)))).map((l) => l.seqNo));
  const before = await highest();
  await new Promise((r) => setTimeout(r, 4000)); // 8 rounds
  assert.equal(await highest(), before, `no ledger closes on either side of the partition\n${c.logReport(15)}`);
  c.heal();
  await progress(c, all, 3, 90_000, 'progress resumes on every node after the partition heals');
  await assertNoFork(c, all, await minLcl(c, all));
});

test('a contract that is non-deterministic on one node: that node is detected as desync, the others go on', async (t) => {
  const c = await startTestCluster(t, {
    nodes: 3,
    contractDir: path.join(REPO_ROOT, 'test', 'contracts', 'nondeterministic'),
    contractEnv: ENV,
    roundtimeMs: 400,
    thresholdPercent: 66, // q = ceil(0.66 · 3) = 2: two honest executors are a quorum
    configure: (i, cfg) => {
      if (i === 2) cfg.contract.environment.HP_TEST_NONDET = '1';
    },
  });
  await c.waitFor(async () => (await minLcl(c, [0, 1])) >= 3, 60_000, 'the honest pair closes ledgers');
  const u = await RawUser.connect(c.userUrls[2]);
  t.after(() => u.close());
  await c.waitFor(async () => {
    u.send({ type: 'stat' });
    const s = await u.next((m) => m.type === 'stat_response', 5000);
    return s.vote_status === 'desync';
  }, 30_000, 'node 3 reports vote_status desync');
  assert.ok(c.logs(2).some((l) => /differs from the quorum|certifies a state after/.test(l)), 'node 3 logs why it is out of sync');
  await progress(c, [0, 1], 3, 30_000, 'the other two keep closing ledgers');
  await assertNoFork(c, [0, 1, 2], await minLcl(c, [0, 1]));
});

test('NPL: contracts on 3 nodes agree on a value over the node party line', async (t) => {
  const c = await startTestCluster(t, { nodes: 3, contractDir: path.join(REPO_ROOT, 'examples', 'npl-agree'), contractEnv: ENV, roundtimeMs: 500, logLevel: process.env.HP_NPL_DEBUG ? 'debug' : undefined });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= 2, 60_000, 'the cluster closes ledgers');
  const keys = await HotPocket.generateKeys();
  const client = await HotPocket.createClient([c.userUrls[1]], keys, { protocol: HotPocket.protocols.json, trustedServerKeys: c.publicKeys });
  assert.equal(await client.connect(), true);
  t.after(() => client.close());
  const out = new Promise<string[]>((resolve) => client.on(HotPocket.events.contractOutput, (r: { outputs: string[] }) => resolve(r.outputs)));
  const s = await (await client.submitContractInput('agree')).submissionStatus;
  assert.equal(s.status, 'accepted');
  const [msg] = await out;
  // Every node heard all three numbers (its own included) and took the same maximum: same
  // state everywhere, and the client saw the output signed by the UNL.
  assert.match(msg, /^agreed \d+ from 3 of 3$/);
  await progress(c, [0, 1, 2], 2, 30_000, 'ledgers after the NPL round');
  const seq = s.ledgerSeqNo + 1; // the ledger that records the state after executing the input's
  const hashes = await Promise.all([0, 1, 2].map((i) => c.ledgerHash(i, seq)));
  assert.equal(new Set(hashes).size, 1, `one ledger ${seq} on every node: ${hashes.join(', ')}`);
});

test('patch.cfg and peer_changeset: a contract changes the roundtime, adds a peer and removes a node from the UNL; every node switches at the same ledger, users get unl_change', async (t) => {
  const c = await startTestCluster(t, { nodes: 3, contractDir: path.join(REPO_ROOT, 'test', 'contracts', 'config-changer'), contractEnv: ENV, roundtimeMs: 400, thresholdPercent: 67 });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2])) >= 2, 60_000, 'the cluster closes ledgers');
  const u = await RawUser.connect(c.userUrls[0]);
  t.after(() => u.close());
  u.send({ type: 'subscription', channel: 'unl_change', enabled: true });
  const lcl = await c.lcl(0);
  u.submit('roundtime 600', 1, lcl.seqNo + 10);
  await c.waitFor(async () => [0, 1, 2].every((i) => c.logs(i).some((l) => /certified a new patch\.cfg: UNL of 3 .* roundtime 600 ms/.test(l))), 30_000, 'every node switches to roundtime 600');
  u.submit('peers-add 127.0.0.1:9', 2, (await c.lcl(0)).seqNo + 10);
  await c.waitFor(async () => [0, 1, 2].every((i) => c.logs(i).some((l) => /the contract changed the peer list: \+\[127\.0\.0\.1:9\]/.test(l))), 30_000, 'peer_changeset reaches every node');
  const removed = c.publicKeys[2];
  u.submit(`unl-remove ${removed}`, 3, (await c.lcl(0)).seqNo + 10);
  const change = await u.next((m) => m.type === 'unl_change', 30_000);
  assert.deepEqual([...change.unl].sort(), c.publicKeys.filter((k) => k !== removed).sort());
  await c.waitFor(async () => c.logs(2).some((l) => /no longer in the UNL/.test(l)), 30_000, 'node 3 knows it left the UNL');
  await progress(c, [0, 1], 3, 60_000, 'the two remaining members close ledgers on their own');
});

test('3 nodes at 66 %: a node cut off, healed and still catching up when another dies forms the quorum with the third and closes ledgers', async (t) => {
  const c = await startTestCluster(t, { nodes: 3, contractDir: ECHO, contractEnv: ENV, roundtimeMs: 300, thresholdPercent: 66, viaProxy: true });
  for (const i of [0, 1, 2]) await c.waitForSeq(i, 3, 30_000);
  c.partition([[0, 1], [2]]);
  const cut = (await c.lcl(2)).seqNo;
  await c.waitForSeq(0, (await c.lcl(0)).seqNo + 5, 30_000);
  assert.ok((await c.lcl(2)).seqNo <= cut + 1, 'the isolated node alone closes nothing');
  c.heal();
  await c.waitForSeq(2, (await c.lcl(0)).seqNo + 2, 30_000);
  // Node 2 dies while node 3 may still be a ledger or two behind: nodes 1 and 3 are the quorum.
  await c.kill(1);
  await progress(c, [0, 2], 3, 60_000, 'nodes 1 and 3 close ledgers together');
  await assertNoFork(c, [0, 2], await minLcl(c, [0, 2]));
});
