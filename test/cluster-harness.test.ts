// The multi-process cluster harness, on what runs today: a one-node cluster closes ledgers that the
// harness reads over the user protocol, and survives SIGSTOP/SIGCONT, kill -9 + restart and SIGTERM.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fuseMountsUnder } from '../src/state/mounts';
import { startTestCluster, freePorts } from './helpers/cluster';
import { HEX64, REPO_ROOT } from './helpers/fixtures';

const ECHO = path.join(REPO_ROOT, 'examples', 'echo', 'contract');
const NODE_PATH = path.join(REPO_ROOT, 'node_modules');

test('freePorts: distinct ports that can be listened on', async () => {
  const ports = await freePorts(20);
  assert.equal(new Set(ports).size, 20);
  for (const p of ports) {
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer().once('error', reject);
      s.listen(p, '127.0.0.1', () => s.close(() => resolve()));
    });
  }
  const more = await freePorts(5);
  assert.equal(more.some((p) => ports.includes(p)), false, 'a port handed out twice');
});

test('one-node cluster: ledgers close, lcl/ledgerHash over the user protocol, stop/cont, kill -9 and restart, SIGTERM', async (t) => {
  const c = await startTestCluster(t, { nodes: 1, contractDir: ECHO, contractEnv: { NODE_PATH }, roundtimeMs: 200 });
  assert.equal(c.dirs.length, 1);
  assert.match(c.userUrls[0], /^wss:\/\/127\.0\.0\.1:\d+$/);
  assert.match(c.publicKeys[0], /^ed[0-9a-f]{64}$/);
  assert.equal(typeof c.pids()[0], 'number');

  await c.waitForSeq(0, 3, 15_000);
  const first = await c.lcl(0);
  assert.ok(first.seqNo >= 3);
  assert.match(first.hash, HEX64);
  assert.equal(await c.ledgerHash(0, first.seqNo), first.hash, 'ledger_query and lcl agree');
  const h2 = await c.ledgerHash(0, 2);
  assert.match(h2!, HEX64);
  assert.equal(await c.ledgerHash(0, first.seqNo + 100_000), null, 'a ledger not closed yet');

  // Paused and resumed: it carries on closing ledgers.
  c.stop(0);
  await new Promise((r) => setTimeout(r, 500));
  c.cont(0);
  await c.waitForSeq(0, first.seqNo + 2, 10_000);

  // kill -9, then restart: the chain is still there and grows; the harness reconnects by itself.
  const killed = await c.kill(0);
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal(c.pids()[0], null);
  await assert.rejects(c.lcl(0), /node1 is not running/);
  await c.restart(0);
  await c.waitFor(async () => (await c.lcl(0)).seqNo >= first.seqNo + 2, 15_000, 'node1 to answer after the restart with its old chain');
  const resumed = await c.lcl(0);
  await c.waitForSeq(0, resumed.seqNo + 2, 10_000);
  assert.equal(await c.ledgerHash(0, 2), h2, 'ledger 2 unchanged across the crash');

  // The captured output: ring buffer and log file, over both incarnations.
  const logs = c.logs(0);
  assert.equal(logs.filter((l) => l.includes('hp-node running: users at')).length, 2, logs.join('\n'));
  assert.ok(fs.readFileSync(path.join(c.dirs[0], 'node-output.log'), 'utf8').includes('exited (SIGKILL)'));

  // A timeout names what it waited for and shows the logs.
  await assert.rejects(c.waitFor(async () => false, 300, 'the impossible'), (err: Error) => /timed out after 300 ms waiting for the impossible/.test(err.message) && err.message.includes('--- node1'));
  assert.throws(() => c.partition([[0]]), /viaProxy/);

  // SIGTERM: a clean stop, nothing left mounted.
  const stopped = await c.kill(0, 'SIGTERM');
  assert.equal(stopped.code, 0, c.logReport());
  assert.deepEqual(fuseMountsUnder(c.dir), []);
});
