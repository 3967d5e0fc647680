// Warm start's pure decisions (src/node/warmStart.ts): which contracts may start ahead, and how
// many user sockets a process started ahead holds. The mechanism itself is exercised end to end
// in contract-exec (executor) and node-e2e (a node's executions).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isNodeBinary } from '../src/contract/launcher';
import { MAX_WARM_SLOTS, MIN_WARM_SLOTS, warmSlots } from '../src/node/warmStart';

test('Node.js binaries boot ahead of their run; other programs are exec-ed once their args are in', () => {
  assert.equal(isNodeBinary('/usr/bin/node'), true);
  assert.equal(isNodeBinary('/usr/local/bin/node20'), true);
  assert.equal(isNodeBinary('/opt/x/nodejs'), true);
  assert.equal(isNodeBinary('/srv/bin/runner', '/srv/bin/runner'), true, 'the node running hp-node, whatever its name');
  assert.equal(isNodeBinary('/usr/bin/python3'), false);
  assert.equal(isNodeBinary('/usr/bin/nodemon'), false);
  assert.equal(isNodeBinary('/bin/sh'), false);
});

test('warm slots: twice the most recent users, within bounds, leaving room under proc_ofd_count', () => {
  assert.equal(warmSlots(0), MIN_WARM_SLOTS);
  assert.equal(warmSlots(30), 60);
  assert.equal(warmSlots(10_000), MAX_WARM_SLOTS);
  assert.equal(warmSlots(30, 1024), 60, 'a generous limit changes nothing');
  assert.equal(warmSlots(30, 64), 64 - 7 - 32, 'fds 0-6 and 32 of the contract\'s own stay free');
  assert.equal(warmSlots(30, 16), 0, 'a tight limit: no spare sockets at all (ledgers with users start cold)');
});
