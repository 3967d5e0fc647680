// The signature worker (src/crypto/verifyWorker.ts): the same answers as checking in place, in
// order, for good, forged and malformed items; and when the worker dies, nothing waits forever.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import test from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, sign } from '../src/crypto/keys';
import { killVerifyWorkerForTest, SignedItem, verifyBatch, verifyWorkerWorks } from '../src/crypto/verifyWorker';

function items(n: number): { list: SignedItem[]; expected: boolean[] } {
  const kp = generateKeyPair();
  const other = generateKeyPair();
  const list: SignedItem[] = [];
  const expected: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const message = Buffer.from(`input ${i} `.repeat(1 + (i % 50)));
    const sig = sign(message, kp.secretKey);
    switch (i % 5) {
      case 0: // forged: signed by someone else
        list.push({ message, sig: sign(message, other.secretKey), pubkey: kp.publicKey });
        expected.push(false);
        break;
      case 1: // altered message
        list.push({ message: Buffer.concat([message, Buffer.from('!')]), sig, pubkey: kp.publicKey });
        expected.push(false);
        break;
      case 2: // malformed signature length (never packed for the worker)
        list.push({ message, sig: sig.subarray(0, 63), pubkey: kp.publicKey });
        expected.push(false);
        break;
      default:
        list.push({ message, sig, pubkey: kp.publicKey });
        expected.push(true);
    }
  }
  return { list, expected };
}

test('signature worker: batches answer like in-place checks, in order, for good, forged, altered and malformed items', async () => {
  const batches = [items(64), items(3), items(200), items(17)];
  // Several batches in flight at once: answers must come back to the right caller.
  const got = await Promise.all(batches.map((b) => verifyBatch(b.list)));
  batches.forEach((b, k) => assert.deepEqual(got[k], b.expected, `batch ${k}`));
  assert.ok(verifyWorkerWorks(), 'the worker is in use');
});

test('signature worker: one that dies answers its waiting batches in place, and later batches are checked in place', async () => {
  const first = items(64);
  await verifyBatch(first.list); // the worker is up
  const inFlight = [items(300), items(300)];
  const pending = inFlight.map((b) => verifyBatch(b.list));
  await killVerifyWorkerForTest();
  const got = await Promise.all(pending);
  inFlight.forEach((b, k) => assert.deepEqual(got[k], b.expected, `batch ${k} waiting when the worker died`));
  assert.equal(verifyWorkerWorks(), false, 'the process stopped using the worker');
  const later = items(40);
  assert.deepEqual(await verifyBatch(later.list), later.expected, 'checked in place afterwards');
});

test('signature worker: a waiting batch keeps its process alive until answered, an idle worker never does', () => {
  // A stopped node's process must exit by itself (a ref'd idle worker kept it alive until SIGKILL),
  // and one whose only work left is a batch in flight must not exit before the answer.
  const script = `
    const v = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'crypto', 'verifyWorker.js'))});
    const k = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'crypto', 'keys.js'))});
    const kp = k.generateKeyPair();
    const items = [...Array(32).keys()].map((i) => { const m = Buffer.from('input ' + i); return { message: m, sig: k.sign(m, kp.secretKey), pubkey: kp.publicKey }; });
    v.verifyBatch(items).then((ok) => console.log('answered ' + ok.filter(Boolean).length));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.signal, null, `the process exited by itself (signal ${r.signal}; stderr ${r.stderr})`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'answered 32');
});
