// How the node keeps its consensus actions ordered behind durable writes without blocking its
// event loop (src/node/actionQueue.ts), and the small durable files those writes go to
// (src/node/nodeFiles.ts: the consensus lock, the last execution's result).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ActionQueue } from '../src/node/actionQueue';
import { LockFile } from '../src/node/nodeFiles';
import type { PersistedLock } from '../src/consensus/types';

type Act = { name: string; write?: Promise<void> };

/** A well-formed lock for ledger `seqNo` (the bytes do not matter to the file, only that they round-trip). */
function lockFor(seqNo: number): PersistedLock {
  const h = (b: number) => Buffer.alloc(32, b);
  const value = { seqNo, timestampMs: 1_700_000_000_000, prevHash: h(1), result: { outputRoot: h(2), stateRoot: h(3), configHash: h(4) }, inputs: [], users: [] };
  return { seqNo, roundMs: 200, value, cert: { roundMs: 200, value, sigs: [{ pubkey: Buffer.alloc(33, 5), sig: Buffer.alloc(64, 6) }] } };
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A queue whose performer records what ran, drained the way the node drains it. */
function recordingQueue() {
  const ran: string[] = [];
  const failures: string[] = [];
  let drains = 0;
  const q: ActionQueue<Act> = new ActionQueue<Act>(
    (a) => {
      ran.push(a.name);
      if (a.name.startsWith('throw')) throw new Error(`${a.name} broke`);
      return a.write;
    },
    (a, err) => failures.push(`${a.name}: ${err.message}`),
    () => {
      drains++;
      while (q.runNext());
    },
  );
  const run = () => {
    while (q.runNext());
  };
  return { q, ran, failures, run, drains: () => drains };
}

test('action queue: actions behind a pending write wait for it, in order; events handled meanwhile queue behind', async () => {
  const { q, ran, run, drains } = recordingQueue();
  const lock = deferred();
  q.push([{ name: 'broadcast prevote' }, { name: 'persist lock', write: lock.promise }, { name: 'broadcast precommit' }, { name: 'close ledger' }]);
  run();
  assert.deepEqual(ran, ['broadcast prevote', 'persist lock'], 'the precommit waits for the lock to be durable');
  assert.equal(q.waiting, true);
  // The core handles more events meanwhile: their actions go behind, not around.
  q.push([{ name: 'attest' }]);
  run();
  assert.deepEqual(ran, ['broadcast prevote', 'persist lock']);
  assert.equal(q.length, 3);
  let idle = false;
  const idleP = q.idle().then(() => {
    idle = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(idle, false, 'idle() waits for the write');
  lock.resolve();
  await idleP;
  assert.equal(drains(), 1);
  assert.deepEqual(ran, ['broadcast prevote', 'persist lock', 'broadcast precommit', 'close ledger', 'attest'], 'the rest ran, in order, before idle() resolved');
  assert.equal(q.waiting, false);
  assert.equal(q.length, 0);
});

test('action queue: a failed action or write is reported and the queue goes on; close drops what has not started', async () => {
  const { q, ran, failures, run } = recordingQueue();
  const w = deferred();
  q.push([{ name: 'throw now' }, { name: 'write', write: w.promise }, { name: 'after' }]);
  run();
  assert.deepEqual(failures, ['throw now: throw now broke']);
  w.reject(new Error('ENOSPC'));
  await q.idle();
  assert.deepEqual(failures, ['throw now: throw now broke', 'write: ENOSPC']);
  assert.deepEqual(ran, ['throw now', 'write', 'after']);

  const slow = deferred();
  q.push([{ name: 'slow write', write: slow.promise }, { name: 'never' }]);
  run();
  const closed = q.close();
  slow.resolve();
  await closed;
  assert.deepEqual(ran.slice(3), ['slow write'], 'close waited for the write and dropped the action behind it');
});

test('lock file: saves land in the order asked (never two writers on one temp file), and null removes it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-lockfile-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = new LockFile(path.join(dir, 'lock'));
  const lock = lockFor;
  assert.equal(file.load(), null);
  const saves = [];
  for (let s = 1; s <= 20; s++) saves.push(file.save(lock(s)));
  await Promise.all(saves);
  assert.equal(file.load()?.seqNo, 20, 'the last save wins');
  assert.deepEqual(fs.readdirSync(dir), ['lock'], 'no temp file left');
  await Promise.all([file.save(null), file.save(lock(21)), file.save(null)]);
  assert.equal(file.load(), null);
  assert.deepEqual(fs.readdirSync(dir), []);
  await file.save(null); // removing what is not there is fine
  const st = await file.save(lock(22)).then(() => fs.statSync(path.join(dir, 'lock')));
  assert.equal(st.mode & 0o777, 0o600);
});

test('lock file: a failed write rejects its own save only; the next one still lands', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-lockfile-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const inner = path.join(dir, 'sub');
  fs.mkdirSync(inner);
  const file = new LockFile(path.join(inner, 'lock'));
  const lock = lockFor(5);
  fs.rmSync(inner, { recursive: true });
  await assert.rejects(file.save(lock), /ENOENT/);
  fs.mkdirSync(inner);
  await file.save(lock);
  assert.equal(file.load()?.seqNo, 5);
});
