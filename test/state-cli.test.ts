// The `hp-node state …` and `hp-node mount` commands, as an operator or another tool runs them.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fuseMountsUnder } from '../src/state/mounts';
import { HEX64, HP_NODE_BIN, hpNode, lastLine, tempDir } from './helpers/fixtures';

test('init --from, exec commits on 0 and rolls back otherwise, root, export --root', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha');
  fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'beta');
  const store = path.join(dir, 'store');

  const init = await hpNode(['state', 'init', store, '--from', src]);
  assert.equal(init.code, 0, init.stderr);
  const root0 = lastLine(init.stdout);
  assert.match(root0, HEX64);
  // The same files imported elsewhere give the same root (genesis is reproducible across nodes).
  const init2 = await hpNode(['state', 'init', path.join(dir, 'store2'), '--from', src]);
  assert.equal(lastLine(init2.stdout), root0);

  const ok = await hpNode(['state', 'exec', store, '--time', '1000', '--', 'sh', '-c', 'cat a.txt; echo gamma > c.txt']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^alpha/);
  const root1 = lastLine(ok.stdout);
  assert.match(root1, HEX64);
  assert.notEqual(root1, root0);
  assert.equal(lastLine((await hpNode(['state', 'root', store])).stdout), root1);

  const bad = await hpNode(['state', 'exec', store, '--time', '2000', '--', 'sh', '-c', 'rm a.txt; exit 3']);
  assert.equal(bad.code, 3);
  assert.equal(lastLine(bad.stdout), root1);
  assert.match(bad.stderr, /rolled back/);
  assert.equal(lastLine((await hpNode(['state', 'root', store])).stdout), root1);

  const out0 = path.join(dir, 'out0');
  const exp = await hpNode(['state', 'export', store, out0, '--root', root0]);
  assert.equal(exp.code, 0, exp.stderr);
  assert.deepEqual(fs.readdirSync(out0).sort(), ['a.txt', 'sub']);
  const out1 = path.join(dir, 'out1');
  await hpNode(['state', 'export', store, out1]);
  assert.equal(fs.readFileSync(path.join(out1, 'c.txt'), 'utf8'), 'gamma\n');
  assert.equal(fs.statSync(path.join(out1, 'c.txt')).mtimeMs, 1000);
});

test('clear errors for bad arguments and missing stores', async (t) => {
  const dir = tempDir(t);
  const missing = await hpNode(['state', 'root', path.join(dir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /neither a state store nor a node directory/);
  const store = path.join(dir, 'store');
  await hpNode(['state', 'init', store]);
  const again = await hpNode(['state', 'init', store]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already holds a state store/);
  const badRoot = await hpNode(['state', 'export', store, path.join(dir, 'o'), '--root', 'xyz']);
  assert.notEqual(badRoot.code, 0);
  assert.match(badRoot.stderr, /invalid root "xyz"/);
  const unknownRoot = await hpNode(['state', 'export', store, path.join(dir, 'o'), '--root', 'ab'.repeat(32)]);
  assert.notEqual(unknownRoot.code, 0);
  assert.match(unknownRoot.stderr, /is not in the store/);
  const badTime = await hpNode(['state', 'exec', store, '--time', 'soon', '--', 'true']);
  assert.notEqual(badTime.code, 0);
  assert.match(badTime.stderr, /not a unix time/);
  const noCmd = await hpNode(['state', 'exec', store, '--', 'definitely-not-a-command-xyz']);
  assert.equal(noCmd.code, 127);
});

test('hp-node mount shows a snapshot read-only until SIGTERM, old roots too', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'store');
  const root0 = lastLine((await hpNode(['state', 'init', store])).stdout);
  await hpNode(['state', 'exec', store, '--time', '5', '--', 'sh', '-c', 'echo v1 > f']);
  const mnt = path.join(dir, 'mnt');
  for (const [args, expect] of [[[], ['f']], [['--root', root0], []]] as const) {
    const child = spawn(process.execPath, [HP_NODE_BIN, 'mount', store, mnt, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mount did not come up: ${out}`)), 15_000);
      child.stdout.on('data', () => { if (out.includes('mounted')) { clearTimeout(timer); resolve(); } });
    });
    assert.deepEqual(await fs.promises.readdir(mnt), expect);
    await assert.rejects(fs.promises.writeFile(path.join(mnt, 'g'), 'x'), /EROFS/);
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0);
    assert.match(out, /unmounted/);
    assert.deepEqual(fuseMountsUnder(mnt), []);
  }
});

test('hp-node mount: a SIGTERM while the mount is still starting unmounts cleanly once it is up', async (t) => {
  const dir = tempDir(t);
  const store = path.join(dir, 'store');
  await hpNode(['state', 'init', store]);
  const mnt = path.join(dir, 'mnt');
  const child = spawn(process.execPath, [HP_NODE_BIN, 'mount', store, mnt], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (code, sig) => r([code, sig])));
  // The FUSE child exists only once start-up is under way, i.e. after the command took the signal over.
  const children = `/proc/${child.pid}/task/${child.pid}/children`;
  const deadline = Date.now() + 15_000;
  while (!fs.readFileSync(children, 'utf8').trim()) {
    assert.ok(Date.now() < deadline, 'the mount never started its FUSE child');
    await new Promise((r) => setTimeout(r, 2));
  }
  child.kill('SIGTERM');
  assert.deepEqual(await exited, [0, null]);
  assert.match(out, /unmounted/);
  assert.deepEqual(fuseMountsUnder(mnt), []);
});
