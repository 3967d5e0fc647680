// Far more than HotPocket's 64 users on one node: 1,000 authenticated wss:// users at once, 300 of
// them submitting in the same round, every input accepted and echoed to its own user.
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createNode } from '../src/node/nodeDir';
import { startNode } from '../src/node/runNode';
import { deferCleanup, REPO_ROOT, tempDir } from './helpers/fixtures';
import { RawUser } from './helpers/rawUser';

const USERS = 1000;
const SUBMITTERS = 300;

test(`${USERS} concurrent authenticated users; ${SUBMITTERS} inputs in one round all echoed`, async (t) => {
  const dir = path.join(tempDir(t, 'hp-node-'), 'node');
  await createNode(dir, { contractDir: path.join(REPO_ROOT, 'examples', 'echo', 'contract'), contractEnv: { NODE_PATH: path.join(REPO_ROOT, 'node_modules') }, userPort: 0, roundtimeMs: 500 });
  const running = await startNode(dir, { logLevel: 'error' });
  deferCleanup(t, () => running.stop());

  const users: RawUser[] = [];
  deferCleanup(t, () => users.forEach((u) => u.close()));
  for (let i = 0; i < USERS; i += 50) {
    users.push(...(await Promise.all(Array.from({ length: Math.min(50, USERS - i) }, () => RawUser.connect(running.userUrl)))));
  }
  // Every user is served: a stat round trip each (which also proves its handshake was processed).
  await Promise.all(users.map(async (u) => {
    u.send({ type: 'stat' });
    const s = await u.next((m) => m.type === 'stat_response');
    assert.equal(typeof s.ledger_seq_no, 'number');
  }));
  assert.equal(running.users.stats().users, USERS, 'all users authenticated at once');

  const lcl = running.node.lcl().seqNo;
  const submitted = users.slice(0, SUBMITTERS).map((u, i) => ({ u, i, hash: u.submit(`msg-${i}`, 1, lcl + 8) }));
  await Promise.all(submitted.map(async ({ u, i, hash }) => {
    const st = await u.next((m) => m.type === 'contract_input_status' && m.input_hash === hash);
    assert.equal(st.status, 'accepted', JSON.stringify(st));
    const out = await u.next((m) => m.type === 'contract_output');
    assert.deepEqual(out.outputs, [`Echoing: msg-${i}`]);
  }));
});
