// Admission rules of the input pool (pure logic): every rejection reason, replay and reorder.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { admissionCapacity, InputPool, MIN_ADMISSION, PendingInput } from '../src/node/inputPool';

function input(user: string, nonce: bigint, maxLedgerSeqNo: number, bytes = 10): PendingInput {
  const hash = crypto.randomBytes(32);
  const u = Buffer.from(user.padEnd(66, '0'), 'hex');
  return {
    user: u, userHex: u.toString('hex'), hash, hashHex: hash.toString('hex'), nonce, maxLedgerSeqNo,
    blob: Buffer.alloc(bytes), container: Buffer.alloc(0), sig: Buffer.alloc(64), protocol: 'json',
  };
}

const A = 'eda1';
const B = 'edb2';

test('ledger window: expired and too far ahead are refused', () => {
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 0, maxPendingInputs: 100 }, () => false);
  assert.deepEqual(pool.admit(input(A, 1n, 5), 5), { ok: false, reason: 'max_ledger_expired' });
  assert.deepEqual(pool.admit(input(A, 1n, 16), 5), { ok: false, reason: 'max_ledger_offset_exceeded' });
  assert.deepEqual(pool.admit(input(A, 1n, 15), 5), { ok: true });
  const unbounded = new InputPool({ maxInputLedgerOffset: 0, userInputBytesPerRound: 0, maxPendingInputs: 100 }, () => false);
  assert.deepEqual(unbounded.admit(input(A, 1n, 1_000_000), 5), { ok: true });
});

test('nonces strictly increase per user, for ever; users are independent', () => {
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 0, maxPendingInputs: 100 }, () => false);
  assert.deepEqual(pool.admit(input(A, 0n, 10), 1), { ok: false, reason: 'bad_msg_format' });
  assert.deepEqual(pool.admit(input(A, 5n, 10), 1), { ok: true });
  assert.deepEqual(pool.admit(input(A, 5n, 10), 1), { ok: false, reason: 'nonce_expired' });
  assert.deepEqual(pool.admit(input(A, 4n, 10), 1), { ok: false, reason: 'nonce_expired' }, 'reordered');
  assert.deepEqual(pool.admit(input(B, 1n, 10), 1), { ok: true });
  // Even after the earlier input's max ledger has passed, an old nonce stays refused.
  assert.deepEqual(pool.admit(input(A, 5n, 20), 15), { ok: false, reason: 'nonce_expired' });
  pool.noteLedgerInput(input(B, 0n, 0).userHex, 50n);
  assert.deepEqual(pool.admit(input(B, 49n, 20), 15), { ok: false, reason: 'nonce_expired' });
  assert.deepEqual(pool.admit(input(B, 51n, 20), 15), { ok: true });
});

test('an input already in a ledger or already pending is already_submitted', () => {
  const seen = new Set<string>();
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 0, maxPendingInputs: 100 }, (h) => seen.has(h));
  const i = input(A, 1n, 10);
  assert.deepEqual(pool.admit(i, 1), { ok: true });
  assert.deepEqual(pool.admit({ ...i }, 1), { ok: false, reason: 'already_submitted' });
  const j = input(A, 2n, 10);
  seen.add(j.hashHex);
  assert.deepEqual(pool.admit(j, 1), { ok: false, reason: 'already_submitted' });
});

test('per-user bytes per round and the pool size are bounded', () => {
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 100, maxPendingInputs: 3 }, () => false);
  assert.deepEqual(pool.admit(input(A, 1n, 10, 60), 1), { ok: true });
  assert.deepEqual(pool.admit(input(A, 2n, 10, 60), 1), { ok: false, reason: 'round_inputs_overflow' });
  assert.deepEqual(pool.admit(input(A, 3n, 10, 40), 1), { ok: true });
  assert.deepEqual(pool.admit(input(B, 1n, 10), 1), { ok: true });
  assert.deepEqual(pool.admit(input(B, 2n, 10), 1), { ok: false, reason: 'round_inputs_overflow' }, 'pool full');
  // Taking the inputs for a ledger frees the user's round budget.
  assert.equal(pool.take(pool.all().map((i) => i.hashHex)).length, 3);
  assert.deepEqual(pool.admit(input(A, 4n, 10, 60), 2), { ok: true });
});

test('admission capacity: user inputs beyond it are refused before any check; relayed ones still come in', () => {
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 0, maxPendingInputs: 100 }, () => false, 2);
  assert.deepEqual(pool.admit(input(A, 1n, 10), 1), { ok: true });
  assert.deepEqual(pool.admit(input(B, 1n, 10), 1), { ok: true });
  const late = input(A, 2n, 10);
  assert.equal(pool.refusal(late, 1), 'round_inputs_overflow', 'the precheck (before the signature) already refuses it');
  assert.deepEqual(pool.admitRelayed(input('eda0', 1n, 10), 1), { ok: true }, 'the UNL must keep seeing the same candidates');
  pool.capacity = 10;
  assert.deepEqual(pool.admit(late, 1), { ok: true });
});

test('admission capacity grows twofold per execution only while ledgers take inputs and it is half used; the budget caps it', () => {
  assert.equal(admissionCapacity(4096, MIN_ADMISSION, MIN_ADMISSION, 100), 2 * MIN_ADMISSION, 'in use: doubles');
  assert.equal(admissionCapacity(4096, 4096, 100, 100), 4096, 'mostly idle: stays');
  assert.equal(admissionCapacity(4096, 4096, 4096, 0), 4096, 'ledgers take nothing (a stall): stays');
  assert.equal(admissionCapacity(100, 8192, 8192, 100), Math.max(MIN_ADMISSION, 400), 'four ledgers at the budget at most');
  assert.equal(admissionCapacity(16, 8192, 0, 0), MIN_ADMISSION, 'never below the minimum');
});

test('expired inputs are handed back once; the rest stay until taken', () => {
  const pool = new InputPool({ maxInputLedgerOffset: 10, userInputBytesPerRound: 0, maxPendingInputs: 100 }, () => false);
  const a2 = input(A, 2n, 10);
  const b1 = input(B, 1n, 3);
  const a1 = input('eda0', 1n, 10);
  for (const i of [a2, b1, a1]) assert.deepEqual(pool.admit(i, 1), { ok: true });
  const expired = pool.expire(3);
  assert.deepEqual(expired.map((i) => i.hashHex), [b1.hashHex]);
  assert.deepEqual(pool.expire(3), []);
  assert.deepEqual(new Set(pool.all().map((i) => i.hashHex)), new Set([a2.hashHex, a1.hashHex]));
  assert.deepEqual(pool.take([a1.hashHex, a2.hashHex]).map((i) => i?.hashHex), [a1.hashHex, a2.hashHex]);
  assert.equal(pool.size, 0);
});
