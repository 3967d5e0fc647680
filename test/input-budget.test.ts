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
  for (let i = 0; i < 30; i++) b.observe(100, 150 + 10); // the contract got 10x faster
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
