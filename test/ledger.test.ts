// The ledger: hash formats, the append-only store's chain assertions, and crash recovery of its
// file (torn tails at every byte, flipped bytes at the tail and in the middle).
import test from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Blake3Hasher } from '@napi-rs/blake-hash-linux-x64-gnu';
import { hash } from '../src/crypto/hash';
import { encodeRecord } from '../src/ledger/ledgerCodec';
import {
  GENESIS_HASH, genesisLedger, inputListHash, LedgerHeader, ledgerHash, LedgerInput, LedgerOutput, LedgerRecord,
  outputListHash, recordProblem, userListHash, ZERO_HASH,
} from '../src/ledger/ledgerHash';
import { LEDGER_FILE, LedgerStore } from '../src/ledger/ledgerStore';
import { tempDir } from './helpers/fixtures';

const T0 = 1_700_000_000_000;

function pubkey(): Buffer {
  return Buffer.concat([Buffer.from([0xed]), crypto.randomBytes(32)]);
}

function input(nonce: bigint, blob: Buffer, protocol: 'json' | 'bson' = 'json'): LedgerInput {
  const sig = crypto.randomBytes(64);
  return { pubkey: pubkey(), hash: hash(sig), nonce, blob, container: Buffer.concat([Buffer.from('{"input":"'), blob, Buffer.from('"}')]), sig, protocol };
}

function output(blobs: Buffer[]): LedgerOutput {
  return { pubkey: pubkey(), hash: crypto.randomBytes(32), blobs };
}

/** A valid successor of `prev` with hashes computed the way the node does. */
function next(prev: LedgerRecord, body: { inputs?: LedgerInput[]; outputs?: LedgerOutput[]; users?: Buffer[]; quorum?: number } = {}): LedgerRecord {
  const inputs = body.inputs ?? [];
  const outputs = body.outputs ?? [];
  const users = [...(body.users ?? []), ...inputs.map((i) => i.pubkey)].sort(Buffer.compare);
  const header: LedgerHeader = {
    seqNo: prev.seqNo + 1,
    timestampMs: T0 + prev.seqNo * 1000,
    prevHash: prev.hash,
    stateHash: crypto.randomBytes(32),
    configHash: crypto.randomBytes(32),
    userHash: userListHash(users),
    inputHash: inputListHash(inputs),
    outputHash: outputListHash(outputs),
  };
  const quorum = Array.from({ length: body.quorum ?? 2 }, () => ({ pubkey: pubkey(), sig: crypto.randomBytes(64) }));
  return { ...header, hash: ledgerHash(header), users, inputs, outputs, quorum };
}

/** Three ledgers with inputs (edge-case nonces, binary and empty blobs), outputs and quorum. */
function chain3(): LedgerRecord[] {
  const r1 = next(genesisLedger(), {
    inputs: [input(0n, crypto.randomBytes(300)), input((1n << 64n) - 1n, Buffer.alloc(0), 'bson'), input(1n << 53n, Buffer.from([0, 255, 0, 10]))],
    outputs: [output([crypto.randomBytes(100), Buffer.alloc(0)]), output([])],
    users: [pubkey()],
  });
  const r2 = next(r1, { outputs: [output([Buffer.from('out')])], quorum: 0 });
  const r3 = next(r2, { inputs: [input(42n, crypto.randomBytes(200), 'bson')], quorum: 3 });
  return [r1, r2, r3];
}

interface Opened {
  store: LedgerStore;
  warnings: string[];
}

function open(t: TestContext, dir: string): Opened {
  const warnings: string[] = [];
  const store = LedgerStore.open(dir, { warn: (l) => warnings.push(l) });
  t.after(() => store.close());
  return { store, warnings };
}

/** Appends records and returns the file size before each one (= its frame offset) and after the last. */
function appendAll(store: LedgerStore, dir: string, recs: LedgerRecord[]): number[] {
  const file = path.join(dir, LEDGER_FILE);
  const ends = [fs.statSync(file).size];
  for (const r of recs) {
    store.append(r);
    ends.push(fs.statSync(file).size);
  }
  return ends;
}

/** Three records written to a fresh ledger in <temp>/src: the records, frame ends and file bytes. */
function writtenChain(t: TestContext): { base: string; src: string; recs: LedgerRecord[]; ends: number[]; full: Buffer } {
  const base = tempDir(t, 'hp-ledger-');
  const src = path.join(base, 'src');
  const recs = chain3();
  const s = LedgerStore.open(src);
  const ends = appendAll(s, src, recs);
  s.close();
  return { base, src, recs, ends, full: fs.readFileSync(path.join(src, LEDGER_FILE)) };
}

test('ledgerHash is BLAKE3 over the tagged fixed-length header; genesis is its all-zero case', () => {
  const zeroHeader = Buffer.concat([Buffer.from('hpn:ledger\0'), Buffer.alloc(16 + 6 * 32)]);
  assert.equal(GENESIS_HASH.toString('hex'), hash(zeroHeader).toString('hex'));
  const g = genesisLedger();
  assert.equal(g.seqNo, 0);
  assert.equal(g.timestampMs, 0);
  for (const k of ['prevHash', 'stateHash', 'configHash', 'userHash', 'inputHash', 'outputHash'] as const) assert.deepEqual(g[k], ZERO_HASH);
  assert.deepEqual(g.hash, GENESIS_HASH);
  assert.equal(recordProblem(g), null);

  const hs = Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i + 1));
  const h: LedgerHeader = { seqNo: 7, timestampMs: T0, prevHash: hs[0], stateHash: hs[1], configHash: hs[2], userHash: hs[3], inputHash: hs[4], outputHash: hs[5] };
  const seqTime = Buffer.alloc(16);
  seqTime.writeBigUInt64BE(7n, 0);
  seqTime.writeBigUInt64BE(BigInt(T0), 8);
  assert.deepEqual(ledgerHash(h), hash(Buffer.concat([Buffer.from('hpn:ledger\0'), seqTime, ...hs])));
});

test('the ledger hash changes when any header field changes', () => {
  const base: LedgerHeader = {
    seqNo: 5, timestampMs: T0, prevHash: Buffer.alloc(32, 1), stateHash: Buffer.alloc(32, 2), configHash: Buffer.alloc(32, 3),
    userHash: Buffer.alloc(32, 4), inputHash: Buffer.alloc(32, 5), outputHash: Buffer.alloc(32, 6),
  };
  const variants: LedgerHeader[] = [base, { ...base, seqNo: 6 }, { ...base, timestampMs: T0 + 1 }];
  for (const k of ['prevHash', 'stateHash', 'configHash', 'userHash', 'inputHash', 'outputHash'] as const) {
    const changed = Buffer.from(base[k]);
    changed[31] ^= 1;
    variants.push({ ...base, [k]: changed });
  }
  // Swapping two hash fields must matter too (positions are part of the format).
  variants.push({ ...base, stateHash: base.configHash, configHash: base.stateHash });
  const hashes = new Set(variants.map((v) => ledgerHash(v).toString('hex')));
  assert.equal(hashes.size, variants.length);
  assert.throws(() => ledgerHash({ ...base, stateHash: Buffer.alloc(31) }), /stateHash is 31 bytes, expected 32/);
  assert.throws(() => ledgerHash({ ...base, seqNo: -1 }), /seqNo -1 must be a non-negative safe integer/);
});

test('list hashes: order matters, counts and tags frame them, empty lists are zero', () => {
  const a = input(1n, Buffer.from('a'));
  const b = input(2n, Buffer.from('b'));
  assert.notDeepEqual(inputListHash([a, b]), inputListHash([b, a]));
  assert.deepEqual(inputListHash([a, b]), hash(Buffer.concat([Buffer.from('hpn:inputs\0'), Buffer.from([0, 0, 0, 2]), a.hash, b.hash])));
  assert.deepEqual(inputListHash([]), ZERO_HASH);
  assert.deepEqual(userListHash([]), ZERO_HASH);
  assert.deepEqual(outputListHash([]), ZERO_HASH);

  const k1 = pubkey();
  const k2 = pubkey();
  assert.deepEqual(userListHash([k1, k2]), hash(Buffer.concat([Buffer.from('hpn:users\0'), Buffer.from([0, 0, 0, 2]), k1, k2])));
  const o = output([Buffer.from('x')]);
  assert.deepEqual(outputListHash([o]), hash(Buffer.concat([Buffer.from('hpn:outputs\0'), Buffer.from([0, 0, 0, 1]), o.pubkey, o.hash])));
  // Same 32 bytes as a one-item input list and as something else: the tags keep them apart.
  const x = crypto.randomBytes(32);
  assert.notDeepEqual(inputListHash([{ hash: x }]), hash(Buffer.concat([Buffer.from('hpn:users\0'), Buffer.from([0, 0, 0, 1]), x])));

  // Different input orders give different ledgers.
  const g = genesisLedger();
  const r1 = next(g, { inputs: [a, b] });
  const r2 = { ...r1, inputs: [b, a], inputHash: inputListHash([b, a]) };
  r2.hash = ledgerHash(r2);
  assert.notDeepEqual(r1.hash, r2.hash);
  assert.equal(recordProblem(r2), null);
});

test('append/get round-trips records with inputs, outputs and quorum; get reads from disk', (t) => {
  const dir = path.join(tempDir(t, 'hp-ledger-'), 'ledger'); // not yet there: open creates it
  const { store, warnings } = open(t, dir);
  assert.deepEqual(store.last(), genesisLedger());
  assert.equal(fs.statSync(path.join(dir, LEDGER_FILE)).size, 44); // header only; genesis is implicit

  const recs = chain3();
  appendAll(store, dir, recs);
  assert.deepEqual(store.last(), recs[2]);
  assert.deepEqual(store.get(0), genesisLedger());
  for (const r of recs) assert.deepEqual(store.get(r.seqNo), r);
  const r1 = store.get(1)!;
  assert.equal(r1.inputs[1].nonce, (1n << 64n) - 1n);
  assert.equal(typeof r1.inputs[0].nonce, 'bigint');
  assert.equal(r1.inputs[1].protocol, 'bson');
  assert.deepEqual(r1.inputs[2].blob, Buffer.from([0, 255, 0, 10]));
  assert.equal(r1.outputs[0].blobs[1].length, 0);
  assert.equal(store.get(2)!.quorum.length, 0);
  assert.equal(store.get(3)!.quorum.length, 3);
  assert.equal(store.get(4), null);
  assert.equal(store.get(-1), null);
  assert.equal(store.get(1.5), null);
  assert.deepEqual(warnings, []);

  // The stored tip is a private copy: a caller reusing its buffers cannot change it.
  recs[2].hash.fill(0);
  assert.notDeepEqual(store.last().hash, ZERO_HASH);
});

test('reopen continues the chain', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const a = LedgerStore.open(dir);
  a.append(recs[0]);
  a.append(recs[1]);
  a.close();
  assert.throws(() => a.append(recs[2]), /is closed/);

  const { store, warnings } = open(t, dir);
  assert.deepEqual(store.last(), recs[1]);
  store.append(recs[2]);
  const r4 = next(recs[2], { inputs: [input(9n, Buffer.from('four'))] });
  store.append(r4);
  store.close();

  const { store: again } = open(t, dir);
  assert.equal(again.last().seqNo, 4);
  assert.deepEqual(again.last(), r4);
  for (const r of [...recs, r4]) assert.deepEqual(again.get(r.seqNo), r);
  assert.deepEqual(warnings, []);
});

test('append rejects records that do not extend the chain or are inconsistent', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const { store } = open(t, dir);
  const [r1, r2] = chain3();
  store.append(r1);
  const sizeBefore = fs.statSync(path.join(dir, LEDGER_FILE)).size;

  assert.throws(() => store.append(r1), /got seq 1, but the last ledger is 1 so the next must be 2/);
  const skip = next(r2);
  assert.throws(() => store.append(skip), /got seq 3, but the last ledger is 1 so the next must be 2/);

  const badPrev = { ...r2, prevHash: crypto.randomBytes(32) };
  badPrev.hash = ledgerHash(badPrev);
  assert.throws(() => store.append(badPrev), /breaks the chain: ledger 2 has prevHash [0-9a-f]{64}, but ledger 1 hashes to/);

  assert.throws(() => store.append({ ...r2, hash: crypto.randomBytes(32) }), /hash [0-9a-f]{64} is not ledgerHash\(header\)/);
  const badTime = { ...r2, timestampMs: r2.timestampMs + 1 }; // header changed, hash not recomputed
  assert.throws(() => store.append(badTime), /is not ledgerHash\(header\)/);

  const badUsers = { ...r2, userHash: crypto.randomBytes(32) };
  badUsers.hash = ledgerHash(badUsers);
  assert.throws(() => store.append(badUsers), /userHash does not match/);
  const unsorted = next(r1, { users: [pubkey(), pubkey()] });
  unsorted.users.reverse();
  unsorted.userHash = userListHash(unsorted.users);
  unsorted.hash = ledgerHash(unsorted);
  assert.throws(() => store.append(unsorted), /users must be sorted ascending/);
  const badInput = next(r1, { inputs: [{ ...input(1n, Buffer.from('x')), hash: crypto.randomBytes(32) }] });
  assert.throws(() => store.append(badInput), /inputs\[0\]: hash must be blake3\(sig\)/);

  // Nothing was written by the rejected appends, and the right record still goes in.
  assert.equal(fs.statSync(path.join(dir, LEDGER_FILE)).size, sizeBefore);
  store.append(r2);
  assert.equal(store.last().seqNo, 2);
});

test('a torn last record is truncated at every cut point and appending continues', (t) => {
  const { base, recs, ends, full } = writtenChain(t);
  const [start3, end3] = [ends[2], ends[3]];
  assert.equal(full.length, end3);
  assert.ok(end3 - start3 > 300, 'the last record spans a few hundred bytes');

  // Every byte offset inside the last frame; appending again checked at a spread of them.
  const dir = path.join(base, 'cut');
  fs.mkdirSync(dir);
  const file = path.join(dir, LEDGER_FILE);
  for (let cut = start3; cut < end3; cut++) {
    fs.writeFileSync(file, full.subarray(0, cut));
    const warnings: string[] = [];
    const store = LedgerStore.open(dir, { warn: (l) => warnings.push(l) });
    try {
      assert.equal(store.last().seqNo, 2, `cut at ${cut}`);
      assert.deepEqual(store.last(), recs[1]);
      assert.equal(fs.statSync(file).size, start3);
      if (cut === start3) assert.deepEqual(warnings, []);
      else {
        assert.equal(warnings.length, 1, `cut at ${cut}`);
        assert.match(warnings[0], new RegExp(`dropped ${cut - start3} bytes of torn tail at offset ${start3} .*resumes at seq 2$`));
      }
      if ((cut - start3) % 37 === 0 || cut === end3 - 1 || cut - start3 < 22) {
        store.append(recs[2]);
        assert.deepEqual(fs.readFileSync(file), full);
      }
    } finally {
      store.close();
    }
  }
  const { store, warnings } = open(t, dir);
  assert.equal(store.last().seqNo, 3);
  assert.deepEqual(warnings, []);
});

test('a zero-filled tail (metadata written, data not) is truncated', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const s = LedgerStore.open(dir);
  const ends = appendAll(s, dir, recs.slice(0, 2));
  s.close();
  fs.appendFileSync(path.join(dir, LEDGER_FILE), Buffer.alloc(4096));
  const { store, warnings } = open(t, dir);
  assert.equal(store.last().seqNo, 2);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /dropped 4096 bytes .*impossible frame length 0/);
  assert.equal(fs.statSync(path.join(dir, LEDGER_FILE)).size, ends[2]);
  store.append(recs[2]);
  assert.deepEqual(store.get(3), recs[2]);
});

test('a flipped byte in the last record is a torn tail: truncated with one warning', (t) => {
  const { base, recs, ends, full } = writtenChain(t);
  const start3 = ends[2];
  // payload middle, payload last byte, checksum, length field
  const cases: Array<[number, RegExp]> = [
    [start3 + 20 + 150, /checksum mismatch/],
    [full.length - 1, /checksum mismatch/],
    [start3 + 10, /checksum mismatch/],
    [start3 + 3, /runs past the end of the file|checksum mismatch/],
    [start3, /runs past the end of the file/],
  ];
  for (const [at, why] of cases) {
    const dir = path.join(base, `flip-${at}`);
    fs.mkdirSync(dir);
    const bad = Buffer.from(full);
    bad[at] ^= 0x40;
    fs.writeFileSync(path.join(dir, LEDGER_FILE), bad);
    const { store, warnings } = open(t, dir);
    assert.equal(store.last().seqNo, 2, `flip at ${at}`);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], new RegExp(`dropped ${full.length - start3} bytes of torn tail at offset ${start3}`));
    assert.match(warnings[0], why);
    store.append(recs[2]);
    assert.deepEqual(store.get(3), recs[2]);
  }
});

test('a flipped byte in an earlier record refuses to open, naming the offset', (t) => {
  const { base, ends, full } = writtenChain(t);
  const start2 = ends[1];
  // In record 2's payload, in its length field (which then points nowhere sensible), and in record 1.
  const cases: Array<[number, number, RegExp]> = [
    [start2 + 20 + 60, start2, /checksum mismatch/],
    [start2 + 2, start2, /.*/],
    [ends[0] + 20 + 5, ends[0], /checksum mismatch/],
  ];
  for (const [at, badOffset, why] of cases) {
    const dir = path.join(base, `flip-${at}`);
    fs.mkdirSync(dir);
    const bad = Buffer.from(full);
    bad[at] ^= 0x01;
    const file = path.join(dir, LEDGER_FILE);
    fs.writeFileSync(file, bad);
    assert.throws(() => LedgerStore.open(dir, { warn: () => assert.fail('must not warn and truncate') }), (err: Error) => {
      assert.match(err.message, new RegExp(`corrupt ledger .*: the record at offset ${badOffset} \\(after ledger ${badOffset === start2 ? 1 : 0}\\) is bad`));
      assert.match(err.message, why);
      assert.match(err.message, /a valid record \(ledger \d\) follows at offset \d+, so this is damage, not a torn write/);
      assert.match(err.message, /restore the ledger from a backup or from peers/);
      return true;
    });
    assert.deepEqual(fs.readFileSync(file), bad, 'a refused open leaves the file as it was');
  }
});

test('a frame copied from another ledger file inside a blob does not count as a later record', (t) => {
  const base = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  // Ledger B holds the same first two records and then its own record 3: a genuine frame, but under B's key.
  const other = path.join(base, 'other');
  const b = LedgerStore.open(other);
  const bEnds = appendAll(b, other, recs);
  b.close();
  const foreignFrame = fs.readFileSync(path.join(other, LEDGER_FILE)).subarray(bEnds[2]);

  const dir = path.join(base, 'a');
  const a = LedgerStore.open(dir);
  const aEnds = appendAll(a, dir, recs.slice(0, 2));
  const r3 = next(recs[1], { inputs: [input(1n, foreignFrame)] });
  a.append(r3);
  a.close();
  const file = path.join(dir, LEDGER_FILE);
  fs.truncateSync(file, fs.statSync(file).size - 1); // torn after the embedded frame
  const { store, warnings } = open(t, dir);
  assert.equal(store.last().seqNo, 2);
  assert.equal(warnings.length, 1);
  assert.equal(fs.statSync(file).size, aEnds[2]);
});

test('findInput finds inputs by hash, after reopen and after new appends', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const s = LedgerStore.open(dir);
  appendAll(s, dir, recs);
  s.close();

  const { store } = open(t, dir);
  for (const r of recs) {
    for (const i of r.inputs) assert.deepEqual(store.findInput(i.hash), { seqNo: r.seqNo, ledgerHash: r.hash });
  }
  assert.equal(store.findInput(crypto.randomBytes(32)), null);
  const late = input(77n, Buffer.from('late'));
  assert.equal(store.findInput(late.hash), null);
  const r4 = next(recs[2], { inputs: [late] });
  store.append(r4);
  assert.deepEqual(store.findInput(late.hash), { seqNo: 4, ledgerHash: r4.hash });
  assert.deepEqual(store.findInput(recs[0].inputs[1].hash), { seqNo: 1, ledgerHash: recs[0].hash });
});

test('a file that is not a ledger is refused, not overwritten', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const file = path.join(dir, LEDGER_FILE);
  fs.writeFileSync(file, 'hello, not a ledger\n');
  assert.throws(() => LedgerStore.open(dir), /is not an hp-node ledger \(bad header\); move it away/);
  assert.equal(fs.readFileSync(file, 'utf8'), 'hello, not a ledger\n');
});

/** A well-formed frame under the file's own checksum key (44-byte header: magic, version, key). */
function forgeFrame(file: string, rec: LedgerRecord): Buffer {
  const key = fs.readFileSync(file).subarray(12, 44);
  const payload = encodeRecord(rec);
  const head = Buffer.alloc(20);
  head.writeUInt32BE(payload.length, 0);
  Blake3Hasher.newKeyed(Buffer.from(key)).update(payload).digestBuffer().copy(head, 4, 0, 16);
  return Buffer.concat([head, payload]);
}

test('a checksum-valid record that breaks the chain is cut at the tail and refused in the middle', (t) => {
  const base = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const wrongPrev = { ...recs[1], prevHash: crypto.randomBytes(32) };
  wrongPrev.hash = ledgerHash(wrongPrev);

  const tailDir = path.join(base, 'tail');
  const a = LedgerStore.open(tailDir);
  const ends = appendAll(a, tailDir, recs.slice(0, 1));
  a.close();
  const file = path.join(tailDir, LEDGER_FILE);
  fs.appendFileSync(file, forgeFrame(file, wrongPrev));
  const { store, warnings } = open(t, tailDir);
  assert.equal(store.last().seqNo, 1);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /ledger 2's prevHash is not the hash of ledger 1/);
  assert.equal(fs.statSync(file).size, ends[1]);

  // The same bad record followed by a valid one (its successor) is damage, not a torn write.
  const midDir = path.join(base, 'mid');
  const b = LedgerStore.open(midDir);
  const midEnds = appendAll(b, midDir, recs.slice(0, 1));
  b.close();
  const midFile = path.join(midDir, LEDGER_FILE);
  fs.appendFileSync(midFile, forgeFrame(midFile, wrongPrev));
  fs.appendFileSync(midFile, forgeFrame(midFile, next(wrongPrev)));
  assert.throws(() => LedgerStore.open(midDir), new RegExp(`record at offset ${midEnds[1]} \\(after ledger 1\\) is bad \\(ledger 2's prevHash.*valid record \\(ledger 3\\) follows`));
});

test('get re-verifies what it reads from disk', (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const { store } = open(t, dir);
  const ends = appendAll(store, dir, chain3());
  const file = path.join(dir, LEDGER_FILE);
  const bytes = fs.readFileSync(file);
  bytes[ends[1] + 20 + 100] ^= 0x01;
  fs.writeFileSync(file, bytes);
  assert.throws(() => store.get(2), new RegExp(`ledger 2 at offset ${ends[1]} changed on disk since it was opened`));
  assert.equal(store.get(1)!.seqNo, 1);
});

test('appends are readable at once and durable in order; close() syncs what is still pending', async (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const store = LedgerStore.open(dir);
  const realFdatasync = fs.fdatasync;
  let syncs = 0;
  t.mock.method(fs, 'fdatasync', (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    syncs++;
    realFdatasync(fd, cb);
  });
  const many = [...recs];
  while (many.length < 30) many.push(next(many[many.length - 1]));
  const order: number[] = [];
  const durable = many.map((r) => store.append(r).then(() => order.push(r.seqNo)));
  assert.deepEqual(store.get(3), recs[2], 'readable before its fdatasync finished');
  await store.synced();
  assert.equal(order.length, 30, 'synced() waited for every append');
  await Promise.all(durable);
  assert.deepEqual(order, many.map((r) => r.seqNo), 'each append resolves after the ones before it');
  assert.ok(syncs >= 1 && syncs <= 2, `group commit: one fdatasync for the first append, one for the 29 written meanwhile (${syncs})`);
  t.mock.restoreAll();
  const r4 = next(many[29]);
  void store.append(r4); // not awaited: close() must make it durable and not leave a rejection behind
  store.close();
  const { store: again } = open(t, dir);
  assert.deepEqual(again.last(), r4);
});

test('a failed fdatasync rejects its append and every later one, even if a later fdatasync would succeed', async (t) => {
  const dir = tempDir(t, 'hp-ledger-');
  const recs = chain3();
  const { store } = open(t, dir);
  await store.append(recs[0]);
  let calls = 0;
  t.mock.method(fs, 'fdatasync', (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    calls++;
    if (calls === 1) return cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    cb(null); // what Linux does after reporting a lost write-back once
  });
  const second = store.append(recs[1]);
  const third = store.append(recs[2]);
  await assert.rejects(second, /making ledger 2 durable failed \(EIO: i\/o error, fdatasync\); restart the node to reopen the ledger \(it resumes at 1 or later\)/);
  await assert.rejects(third, /making ledger 2 durable failed/);
  await assert.rejects(store.synced(), /making ledger 2 durable failed/);
  assert.throws(() => store.append(next(recs[2])), /making ledger 2 durable failed/, 'no appends after a lost write');
});
