// Config validation names every bad field; `hp-node run` refuses a bad config with exit 1, and
// `hp-node new` writes keys readable by the owner only.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { configProblems, defaultConfig } from '../src/config/nodeConfig';
import { hpNode, REPO_ROOT, tempDir } from './helpers/fixtures';

const KEY = 'ed' + 'ab'.repeat(32);

test('a default config is valid; every bad field is named with what was expected', () => {
  const good = defaultConfig({ contractId: 'c1', unl: [KEY], binPath: '/usr/bin/node', binArgs: 'index.js' });
  assert.deepEqual(configProblems(good), []);
  const bad = JSON.parse(JSON.stringify(good));
  bad.contract.unl = ['nope', KEY];
  bad.contract.bin_path = 'node';
  bad.contract.consensus.threshold = 50;
  bad.contract.consensus.roundtime = 'fast';
  bad.user.port = 70000;
  bad.user.tls = 'yes';
  bad.mesh.known_peers = ['localhost'];
  bad.contract.round_limits.exec_timeout = -1;
  bad.log.level = 'loud';
  bad.user.extra = 1;
  delete bad.contract.id;
  const problems = configProblems(bad);
  const fields = problems.map((p) => p.split(':')[0]);
  assert.deepEqual(fields.sort(), [
    'contract.bin_path', 'contract.consensus.roundtime', 'contract.consensus.threshold', 'contract.id',
    'contract.round_limits.exec_timeout', 'contract.unl', 'log.level', 'mesh.known_peers', 'user.extra', 'user.port', 'user.tls',
  ].sort());
  assert.match(problems.find((p) => p.startsWith('contract.consensus.threshold'))!, /cannot prevent forks/);
  assert.match(problems.find((p) => p.startsWith('contract.unl'))!, /"nope"/);
  assert.match(problems.find((p) => p.startsWith('user.extra'))!, /unknown field/);
  assert.deepEqual(configProblems(null).length > 5, true);
});

test('hp-node new writes 0600 keys and a valid config; run refuses a broken config with exit 1', async (t) => {
  const dir = path.join(tempDir(t), 'node');
  const made = await hpNode(['new', dir, '--contract', path.join(REPO_ROOT, 'examples', 'echo', 'contract'), '--user-port', '18555', '--roundtime', '300']);
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /public key {3}ed[0-9a-f]{64}/);
  assert.equal(fs.statSync(path.join(dir, 'keys.json')).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(dir, 'tls', 'key.pem')).mode & 0o777, 0o600);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(cfg.user.port, 18555);
  assert.equal(cfg.contract.consensus.roundtime, 300);
  assert.equal(cfg.contract.bin_path, process.execPath);
  const again = await hpNode(['new', dir, '--contract', path.join(REPO_ROOT, 'examples', 'echo', 'contract')]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already holds a node/);

  cfg.contract.consensus.threshold = 40;
  cfg.user.port = 'x';
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  const run = await hpNode(['run', dir], { timeoutMs: 20_000 });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /contract\.consensus\.threshold: expected an integer in 51\.\.100/);
  assert.match(run.stderr, /user\.port: expected an integer/);

  // A UNL of one key that is not this node's could never close a ledger: refused up front.
  const foreign = { ...cfg, contract: { ...cfg.contract, unl: [KEY], consensus: { roundtime: 300, threshold: 80 } }, user: { ...cfg.user, port: 18555 } };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(foreign));
  const alone = await hpNode(['run', dir], { timeoutMs: 20_000 });
  assert.equal(alone.code, 1);
  assert.match(alone.stderr, /holds one key that is not this node's/);

  fs.chmodSync(path.join(dir, 'keys.json'), 0o644);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, contract: { ...cfg.contract, consensus: { roundtime: 300, threshold: 80 } }, user: { ...cfg.user, port: 18555 } }));
  const loose = await hpNode(['run', dir], { timeoutMs: 20_000 });
  assert.equal(loose.code, 1);
  assert.match(loose.stderr, /readable by others .* chmod 600/);
});
