// The per-ledger input budget a node learns from its own executions (src/node/inputBudget.ts), and
// the consensus input book honouring it in stage-0 proposals only.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { InputBook, smallestSorted } from '../src/consensus/inputBook';
import { DEFAULT_LIMITS } from '../src/consensus/types';
import { InputBudget } from '../src/node/inputBudget';

test('input budget: unlimited until measured, then what fits half a round, within floor and ceiling', () => {
  const b = new InputBudget(1000, 4096, 16);
  assert.equal(b.maxInputs, 4096, 'nothing measured yet');
  for (let i = 0; i < 5; i++) b.observe(0, 150); // contract start + commit: 150 ms
  assert.equal(b.maxInputs, 4096, 'input-less runs alone say nothing about the cost per input');
  for (let i = 0; i < 10; i++) b.observe(1000, 150 + 1000); // 1 ms per input
  // Half a round is 500 ms, 150 of it fixed: 350 inputs.
  assert.ok(Math.abs(b.maxInputs - 350) <= 2, `~350 inputs (${b.maxInputs})`);
  for (let i = 0; i < 30; i++) b.observe(100 + 200 * (i % 2), 150 + (10 + 20 * (i % 2))); // the contract got 10x faster
  assert.ok(b.maxInputs > 3000, `grows back when executions speed up (${b.maxInputs})`);
  const slow = new InputBudget(200, 4096, 16);
  slow.observe(0, 300);
  slow.observe(500, 2300); // 4 ms per input; an empty execution alone (300 ms) outlasts half a round
  assert.equal(slow.maxInputs, 187, 'inputs may take 3 x (300 − 50) ms = 750 ms at 4 ms each');
  slow.observe(10, Number.NaN);
  assert.equal(slow.maxInputs, 187, 'nonsense timings are ignored');
  const crawl = new InputBudget(200, 4096, 16);
  crawl.observe(0, 20);
  crawl.observe(10, 1020); // 100 ms per input: 60 ms of room holds none
  assert.equal(crawl.maxInputs, 16, 'never below the floor: the chain keeps moving, slowly');
});

test('input budget: a busy machine slows every execution: that is fixed cost, not cost per input (no collapse to the floor)', () => {
  const b = new InputBudget(200, 4096, 16);
  for (let i = 0; i < 5; i++) b.observe(0, 20); // idle: 20 ms per execution
  // Loaded: every execution takes 60 ms more whatever its size; an input costs 0.2 ms.
  for (let i = 0; i < 40; i++) {
    const n = 20 + ((i * 37) % 60);
    b.observe(n, 80 + 0.2 * n + (i % 3) * 5);
  }
  // ~85 ms fixed now, more than half of the 100 ms share: the overload rule lets inputs take
  // 3 x (85 − 50) = 105 ms, ~525 inputs at 0.2 ms (a per-input cost inflated by the 60 ms gives 16).
  assert.ok(b.maxInputs >= 400 && b.maxInputs <= 650, `${b.maxInputs}`);
});

test('input budget: ledgers at the budget that run well within their time raise it (the fit cannot see past equal sizes)', () => {
  const b = new InputBudget(200, 4096, 16);
  for (let i = 0; i < 24; i++) b.observe(40 + 40 * (i % 2), 60 + 40 * (i % 2)); // 1 ms per input, 20 fixed
  assert.equal(b.maxInputs, 80);
  for (let i = 0; i < 30; i++) b.observe(80, 30); // then every ledger at the cap takes 30 of its 100 ms
  assert.ok(b.maxInputs >= 100, `at least 1.25 x the largest comfortable ledger (${b.maxInputs})`);
  for (let i = 0; i < 30; i++) {
    const n = b.maxInputs;
    b.observe(n, 20 + 0.1 * n);
  }
  assert.ok(Math.abs(b.maxInputs - 800) <= 10, `the real cost per input (0.1 ms) is learned: (100 − 20) / 0.1 (${b.maxInputs})`);
});

test('input book: stage-0 proposals carry at most the cap, lowest keys first; stage-1 keeps are not capped by it', () => {
  const book = new InputBook(DEFAULT_LIMITS);
  const user = Buffer.concat([Buffer.from([0xed]), crypto.randomBytes(32)]);
  const inputs = Array.from({ length: 100 }, (_, n) => {
    const nonce = Buffer.alloc(8);
    nonce.writeBigUInt64BE(BigInt(n + 1));
    return { hash: Buffer.concat([nonce, crypto.randomBytes(32)]), user, maxLedgerSeqNo: 10 };
  });
  book.offer(inputs, 1);
  const capped = book.own(1, 10);
  assert.equal(capped.inputs.length, 10);
  assert.deepEqual(capped.inputs, inputs.slice(0, 10).map((i) => i.hash), 'the ten lowest nonces');
  assert.equal(book.own(1).inputs.length, 100, 'no cap: everything held');
  const kept = book.keep([{ inputs: inputs.map((i) => i.hash), users: [user] }], 1, 1);
  assert.equal(kept.inputs.length, 100, 'what others proposed is still kept (the cap is only what we propose)');
});

test('smallestSorted: the k smallest in order, for any k, with duplicates, against a full sort', () => {
  const cmp = (a: number, b: number) => a - b;
  for (let round = 0; round < 200; round++) {
    const n = crypto.randomInt(0, 300);
    const items = Array.from({ length: n }, () => crypto.randomInt(0, round % 2 ? 20 : 1_000_000));
    const k = crypto.randomInt(0, n + 5);
    const expected = [...items].sort(cmp).slice(0, k);
    assert.deepEqual(smallestSorted([...items], k, cmp), expected, `n=${n} k=${k}`);
  }
});

test('input budget: ledger sizes alone at one value keep the last fitted cost; the probe still needs room', () => {
  const b = new InputBudget(200, 4096, 16);
  for (let i = 0; i < 24; i++) b.observe(100 + 100 * (i % 2), 20 + 0.4 * (100 + 100 * (i % 2))); // 0.4 ms per input
  assert.equal(b.maxInputs, 200);
  for (let i = 0; i < 30; i++) b.observe(200, 101); // at the cap, over the 75 % mark: no probe
  assert.ok(b.maxInputs <= 200, `no growth without comfortable ledgers (${b.maxInputs})`);
});
