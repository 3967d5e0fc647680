// The store and session logic in-process (no FUSE): hashing rules, commit/rollback, crash
// recovery of the on-disk format, GC, and an incremental-vs-from-scratch property test.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ObjectStore } from '../src/state/blockstore';
import { Session } from '../src/state/session';
import { exportSnapshot, importDirectory } from '../src/state/importExport';
import { decodeDir, decodeList, encodeDir, EntryKind, fileDepth, FANOUT, nameError, ObjectKind } from '../src/state/objects';
import { tempDir } from './helpers/fixtures';

const T = 1_700_000_000_000;

function openSession(store: ObjectStore, timeMs = T): Session {
  return new Session(store, Buffer.from(store.current.root, 'hex'), { writable: true, timeMs });
}

function writeFile(s: Session, p: string, data: Buffer, offset = 0): void {
  let fh: number;
  try {
    fh = s.open(p, 1);
  } catch {
    fh = s.create(p, 0o644);
  }
  s.write(fh, data, data.length, offset);
  s.release(fh);
}

function readFile(s: Session, p: string): Buffer {
  const fh = s.open(p, 0);
  const size = s.getattr(p).size;
  const buf = Buffer.alloc(size);
  s.read(fh, buf, size, 0);
  s.release(fh);
  return buf;
}

function storeAt(t: import('node:test').TestContext, opts: { blockSizeBytes?: number; retainSnapshots?: number } = {}): ObjectStore {
  const store = ObjectStore.create(path.join(tempDir(t), 'store'), { timeMs: T, ...opts });
  t.after(() => store.close());
  return store;
}

test('dir encoding is ordered by name bytes and round-trips', () => {
  const h = crypto.randomBytes(32);
  const entries = [
    { name: 'b', kind: EntryKind.File, mode: 0o644, mtimeMs: 5, hash: h },
    { name: 'a', kind: EntryKind.Dir, mode: 0o755, mtimeMs: 6, hash: h },
    { name: 'é', kind: EntryKind.Link, mode: 0o777, mtimeMs: 7, hash: h },
  ];
  const decoded = decodeDir(encodeDir(entries));
  assert.deepEqual(decoded.map((e) => e.name), ['a', 'b', 'é']);
  assert.deepEqual(encodeDir(entries), encodeDir([...entries].reverse()));
  assert.equal(decoded[0].mtimeMs, 6);
});

test('fan-out depth and name rules', () => {
  assert.equal(fileDepth(0), 0);
  assert.equal(fileDepth(FANOUT), 0);
  assert.equal(fileDepth(FANOUT + 1), 1);
  assert.equal(fileDepth(FANOUT * FANOUT + 1), 2);
  assert.equal(nameError('ok.txt'), null);
  assert.equal(nameError('..'), 'EINVAL');
  assert.equal(nameError('a/b'), 'EINVAL');
  assert.equal(nameError('a\0b'), 'EINVAL');
  assert.equal(nameError('x'.repeat(256)), 'ENAMETOOLONG');
  assert.equal(nameError('é'.repeat(128)), 'ENAMETOOLONG'); // 256 bytes
});

test('commit makes a new root; rollback leaves the store untouched', (t) => {
  const store = storeAt(t);
  const empty = store.current.root;
  const s1 = openSession(store);
  writeFile(s1, '/a', Buffer.from('hello'));
  s1.rollback();
  assert.equal(store.current.root, empty);
  assert.equal(fs.statSync(path.join(store.dir, 'packs', '1.pack')).size > 0, true);

  const s2 = openSession(store);
  writeFile(s2, '/a', Buffer.from('hello'));
  const snap = s2.commit();
  assert.notEqual(snap.root, empty);
  assert.equal(store.current.root, snap.root);
  assert.deepEqual({ bytes: snap.bytes, files: snap.files }, { bytes: 5, files: 1 });

  const s3 = openSession(store);
  assert.equal(readFile(s3, '/a').toString(), 'hello');
  assert.equal(s3.getattr('/a').mtimeMs, T);
  s3.rollback();
});

test('same content in a different order gives the same root; one swapped block does not', (t) => {
  const bs = 64 * 1024;
  const A = crypto.randomBytes(bs);
  const B = crypto.randomBytes(bs);
  const build = (order: 'ab' | 'ba', swap = false) => {
    const store = storeAt(t);
    const s = openSession(store);
    s.mkdir('/d', 0o755);
    const blocks = swap ? [B, A] : [A, B];
    if (order === 'ab') {
      writeFile(s, '/d/f', blocks[0], 0);
      writeFile(s, '/d/f', blocks[1], bs);
      writeFile(s, '/x', Buffer.from('x'));
    } else {
      writeFile(s, '/x', Buffer.from('tmp'));
      s.truncate('/x', 0);
      writeFile(s, '/x', Buffer.from('x'));
      writeFile(s, '/tmp', blocks[1], bs);
      writeFile(s, '/tmp', blocks[0], 0);
      s.rename('/tmp', '/d/f');
    }
    return s.commit().root;
  };
  assert.equal(build('ab'), build('ba'));
  assert.notEqual(build('ab'), build('ab', true));
});

test('identical sibling files changed identically still change the root (no XOR cancellation)', (t) => {
  const store = storeAt(t);
  const roots: string[] = [];
  for (const content of ['hello', 'world', 'a 46-byte string, long enough to be different']) {
    const s = openSession(store);
    writeFile(s, '/a.txt', Buffer.from(content));
    s.truncate('/a.txt', content.length);
    writeFile(s, '/b.txt', Buffer.from(content));
    s.truncate('/b.txt', content.length);
    roots.push(s.commit().root);
  }
  assert.equal(new Set(roots).size, 3);
});

test('truncate shrink then grow reads zeros; sparse writes hash like dense ones', (t) => {
  const store = storeAt(t, { blockSizeBytes: 4096 });
  const s = openSession(store);
  writeFile(s, '/f', Buffer.alloc(10000, 7));
  s.truncate('/f', 5000);
  s.truncate('/f', 9000);
  const got = readFile(s, '/f');
  assert.equal(got.subarray(0, 5000).every((b) => b === 7), true);
  assert.equal(got.subarray(5000).every((b) => b === 0), true);
  writeFile(s, '/sparse', Buffer.from([1]), 0);
  writeFile(s, '/sparse', Buffer.from([2]), 10 * 4096 + 3);
  const dense = Buffer.alloc(10 * 4096 + 4);
  dense[0] = 1;
  dense[10 * 4096 + 3] = 2;
  writeFile(s, '/dense', dense);
  const root1 = s.commit();
  const s2 = openSession(store);
  const fileHash = (p: string) => decodeDir(store.get(store.getRoot(Buffer.from(root1.root, 'hex')).dir)).find((e) => e.name === p)!.hash.toString('hex');
  assert.equal(fileHash('sparse'), fileHash('dense'));
  assert.deepEqual(readFile(s2, '/f'), got);
  s2.rollback();
});

test('incremental roots equal from-scratch roots after random operations (property)', (t) => {
  const seedBase = 0x5eed;
  for (let round = 0; round < 3; round++) {
    const rnd = mulberry32(seedBase + round);
    const store = storeAt(t, { blockSizeBytes: 4096 });
    const files = new Set<string>();
    for (let session = 0; session < 4; session++) {
      const s = openSession(store);
      for (let op = 0; op < 60; op++) {
        const name = `/f${Math.floor(rnd() * 8)}`;
        const r = rnd();
        if (r < 0.5) {
          const len = Math.floor(rnd() * 20000);
          writeFile(s, name, crypto.randomBytes(len), Math.floor(rnd() * 30000));
          files.add(name);
        } else if (r < 0.7 && files.has(name)) {
          s.truncate(name, Math.floor(rnd() * 40000));
        } else if (r < 0.8 && files.has(name)) {
          s.unlink(name);
          files.delete(name);
        } else if (r < 0.9 && files.has(name)) {
          const to = `/f${Math.floor(rnd() * 8)}`;
          s.rename(name, to);
          files.delete(name);
          files.add(to);
        } else if (files.has(name)) {
          s.chmod(name, rnd() < 0.5 ? 0o600 : 0o644);
        }
      }
      s.commit();
    }
    const plain = path.join(tempDir(t), 'plain');
    exportSnapshot(store, plain);
    const fresh = ObjectStore.create(path.join(tempDir(t), 'fresh'), { timeMs: T, blockSizeBytes: 4096 });
    const scratch = importDirectory(fresh, plain, T);
    fresh.close();
    assert.equal(scratch.root, store.current.root, `round ${round}`);
  }
});


test('large files: re-hashing only the lists above changed blocks gives from-scratch roots (property)', (t) => {
  // 4 KiB blocks: FANOUT^2 blocks (4 MiB) is where a file's tree grows from two list levels to three.
  const bs = 4096;
  const depth2 = FANOUT * FANOUT * bs;
  const rnd = mulberry32(0xb10c);
  const store = storeAt(t, { blockSizeBytes: bs });
  const sizes = [depth2 - 3 * bs, depth2 + 5 * bs, 40 * bs + 100];
  const s0 = openSession(store);
  sizes.forEach((size, i) => writeFile(s0, `/big${i}`, crypto.randomBytes(size)));
  s0.commit();
  const seenDepths = new Set<number>();
  for (let session = 0; session < 8; session++) {
    const s = openSession(store);
    for (let op = 0; op < 40; op++) {
      const name = `/big${Math.floor(rnd() * sizes.length)}`;
      const size = s.getattr(name).size;
      const r = rnd();
      if (r < 0.6) {
        writeFile(s, name, crypto.randomBytes(1 + Math.floor(rnd() * 3 * bs)), Math.floor(rnd() * size));
      } else if (r < 0.75) {
        writeFile(s, name, crypto.randomBytes(1 + Math.floor(rnd() * 40 * bs)), size); // append: may add a level
      } else if (r < 0.9) {
        s.truncate(name, Math.max(0, size - Math.floor(rnd() * 60 * bs))); // shrink: may drop a level
      } else {
        s.truncate(name, size + Math.floor(rnd() * 20 * bs)); // sparse growth
      }
    }
    for (const [i] of sizes.entries()) seenDepths.add(fileDepth(Math.ceil(s.getattr(`/big${i}`).size / bs)));
    s.commit();
    const plain = path.join(tempDir(t), `plain${session}`);
    exportSnapshot(store, plain);
    const fresh = ObjectStore.create(path.join(tempDir(t), `fresh${session}`), { timeMs: T, blockSizeBytes: bs });
    const scratch = importDirectory(fresh, plain, T);
    fresh.close();
    assert.equal(scratch.root, store.current.root, `session ${session}`);
  }
  assert.ok(seenDepths.has(1) && seenDepths.has(2), `files crossed tree depths: ${[...seenDepths]}`);
});
test('a torn tail past HEAD (crash mid-commit) is dropped on open', (t) => {
  const dir = path.join(tempDir(t), 'store');
  let store = ObjectStore.create(dir, { timeMs: T });
  const s = openSession(store);
  writeFile(s, '/a', Buffer.from('committed'));
  const snap = s.commit();
  // An uncommitted session that wrote data and a torn index record, then "crashed".
  const s2 = openSession(store);
  writeFile(s2, '/b', crypto.randomBytes(200_000));
  fs.appendFileSync(path.join(dir, 'index.1'), crypto.randomBytes(30));
  fs.writeFileSync(path.join(dir, 'HEAD.tmp'), '{"torn":');
  fs.writeFileSync(path.join(dir, 'LOCK'), '999999\n'); // a dead writer's lock
  (store as unknown as { txn: null }).txn = null; // simulate the process dying without cleanup
  const packSize = fs.statSync(path.join(dir, 'packs', '1.pack')).size;
  assert.ok(packSize > 200_000);

  store = ObjectStore.open(dir);
  t.after(() => store.close());
  assert.equal(store.current.root, snap.root);
  assert.ok(fs.statSync(path.join(dir, 'packs', '1.pack')).size < packSize);
  assert.equal(fs.existsSync(path.join(dir, 'HEAD.tmp')), false);
  const s3 = openSession(store);
  assert.equal(readFile(s3, '/a').toString(), 'committed');
  assert.throws(() => s3.getattr('/b'), /ENOENT/);
  s3.rollback();
});

test('a checkpoint makes what was put durable while puts go on; a crash after it keeps exactly that', async (t) => {
  const dir = path.join(tempDir(t), 'store');
  let store = ObjectStore.create(dir, { timeMs: T });
  const root = store.current.root;
  const txn = store.begin();
  txn.writeBehind();
  const blocks = Array.from({ length: 40 }, () => crypto.randomBytes(64 * 1024));
  const hashes = blocks.slice(0, 20).map((b) => txn.put(ObjectKind.Block, b));
  const running = txn.checkpoint();
  assert.throws(() => txn.persist(), /checkpoint .* still running/); // ending it now would race HEAD
  const later = blocks.slice(20).map((b) => txn.put(ObjectKind.Block, b)); // puts go on meanwhile
  await running;
  await txn.drain(0);
  assert.ok(later.every((h) => txn.has(h)) && hashes.every((h) => store.has(h)));
  // "Crash": the process dies with the transaction open; the next writer opens the store.
  (store as unknown as { txn: null }).txn = null;
  fs.writeFileSync(path.join(dir, 'LOCK'), '999999\n');
  store.close();
  store = ObjectStore.open(dir);
  t.after(() => store.close());
  assert.equal(store.current.root, root, 'no snapshot came of it');
  hashes.forEach((h, i) => assert.ok(store.get(h, ObjectKind.Block).equals(blocks[i]), `checkpointed block ${i} survives`));
  assert.ok(later.every((h) => !store.has(h)), 'blocks put after the checkpoint are gone');
  // A transaction that checkpoints and then aborts keeps the checkpointed objects, not the rest.
  const txn2 = store.begin();
  const kept = txn2.put(ObjectKind.Block, blocks[20]);
  await txn2.checkpoint();
  const dropped = txn2.put(ObjectKind.Block, blocks[21]);
  txn2.abort();
  assert.ok(store.has(kept) && !store.has(dropped));
});

test('readInto reads objects in runs (back to back, gaps, out of order) on libuv threads, byte-exact', async (t) => {
  const store = storeAt(t);
  const txn = store.begin();
  const blocks = Array.from({ length: 12 }, (_, i) => crypto.randomBytes(1000 + 97 * i));
  const hashes = blocks.map((b) => txn.put(ObjectKind.Block, b));
  txn.persist();
  // Runs of neighbours, a gap, a reversed pair and a repeat: every object lands in its own slot.
  const order = [0, 1, 2, 3, 7, 8, 5, 4, 11, 11, 6];
  const intos = order.map((i) => Buffer.alloc(blocks[i].length));
  await store.readInto(order.map((i) => store.locate(hashes[i])!), intos);
  order.forEach((i, k) => assert.ok(intos[k].equals(blocks[i]), `slot ${k} holds block ${i}`));
  // A location past the end of the pack is an error, not zeros.
  const last = store.locate(hashes[11])!;
  await assert.rejects(store.readInto([{ ...last, offset: last.offset + 1_000_000 }], [Buffer.alloc(10)]), /ends before/);
});

test('a second writer is refused while the first is alive', (t) => {
  const store = storeAt(t);
  fs.writeFileSync(path.join(store.dir, 'LOCK'), `${process.ppid}\n`);
  assert.throws(() => ObjectStore.open(store.dir), /in use by process/);
  fs.writeFileSync(path.join(store.dir, 'LOCK'), `${process.pid}\n`);
});

test('corrupt pack bytes are detected on read, never served', (t) => {
  const store = storeAt(t);
  const s = openSession(store);
  writeFile(s, '/a', Buffer.alloc(5000, 1));
  const root = s.commit().root;
  const dirEntry = decodeDir(store.get(store.getRoot(Buffer.from(root, 'hex')).dir))[0];
  const block = store.fileBlocks(dirEntry.hash).blocks[0];
  const loc = store.locate(block)!;
  const fd = fs.openSync(path.join(store.dir, 'packs', `${loc.pack}.pack`), 'r+');
  fs.writeSync(fd, Buffer.from([2]), 0, 1, loc.offset + 10);
  fs.closeSync(fd);
  const reader = ObjectStore.open(store.dir, { readOnly: true });
  t.after(() => reader.close());
  assert.throws(() => reader.get(block), /corrupt store .* does not match its hash/);
});

test('gc keeps retained snapshots readable and frees the rest', (t) => {
  const store = storeAt(t, { retainSnapshots: 2 });
  const payloads: Buffer[] = [];
  for (let i = 0; i < 6; i++) {
    const s = openSession(store);
    const p = crypto.randomBytes(300_000);
    payloads.push(p);
    writeFile(s, '/big', p);
    s.commit();
  }
  const before = store.packBytes();
  const r = store.gc();
  assert.ok(r.bytesFreed > 0, 'gc freed nothing');
  assert.ok(store.packBytes() < before / 2, `packs ${store.packBytes()} vs ${before}`);
  for (const snap of store.snapshots) {
    const v = new Session(store, Buffer.from(snap.root, 'hex'), { writable: false, timeMs: T });
    assert.ok(payloads.some((p) => p.equals(readFile(v, '/big'))));
  }
  // The store still opens cleanly and writes continue after gc.
  store.close();
  const again = ObjectStore.open(store.dir);
  const s = openSession(again);
  assert.deepEqual(readFile(s, '/big'), payloads[5]);
  writeFile(s, '/more', Buffer.from('after gc'));
  s.commit();
  again.close();
  (store as unknown as { close: () => void }).close = () => undefined;
});

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('a snapshot imported from verified objects (sync) becomes current only when complete', (t) => {
  const src = storeAt(t, { blockSizeBytes: 4096 });
  const s = openSession(src);
  s.mkdir('/d', 0o755);
  writeFile(s, '/d/big', crypto.randomBytes(50_000));
  writeFile(s, '/small', Buffer.from('small'));
  s.symlink('d/big', '/link');
  const snap = s.commit();
  const root = Buffer.from(snap.root, 'hex');
  // Every object reachable from the root, as a peer would serve them.
  const objects: Array<{ kind: number; content: Buffer; hash: string }> = [];
  const seen = new Set<string>();
  const collect = (h: Buffer) => {
    const hex = h.toString('hex');
    if (seen.has(hex)) return;
    seen.add(hex);
    const loc = src.locate(h)!;
    const content = src.get(h);
    objects.push({ kind: loc.kind, content, hash: hex });
    if (loc.kind === 6) collect(src.getRoot(h).dir);
    else if (loc.kind === 5) src.getDir(h).forEach((e) => collect(e.hash));
    else if (loc.kind === 3 || loc.kind === 2) {
      (loc.kind === 3 ? src.getFile(h).children : decodeList(content).children).forEach(collect);
    }
  };
  collect(root);

  const dst = storeAt(t, { blockSizeBytes: 4096 });
  const before = dst.current.root;
  // A missing block: refused, nothing changes.
  const block = objects.find((o) => o.kind === 1)!;
  assert.throws(() => dst.importSnapshot(root, objects.filter((o) => o !== block), T), /block [0-9a-f]{64} is missing/);
  assert.equal(dst.current.root, before);
  // A tampered object lands under another hash, so the tree it belongs to stays incomplete.
  const tampered = objects.map((o) => (o === block ? { ...o, content: Buffer.concat([o.content, Buffer.from('x')]) } : o));
  assert.throws(() => dst.importSnapshot(root, tampered, T), /is missing/);
  assert.equal(dst.current.root, before);
  // All of them: the same root, the same files, the same totals.
  const imported = dst.importSnapshot(root, objects, T);
  assert.equal(imported.root, snap.root);
  assert.deepEqual({ bytes: imported.bytes, files: imported.files }, { bytes: snap.bytes, files: snap.files });
  const view = new Session(dst, root, { writable: false, timeMs: T });
  assert.deepEqual(readFile(view, '/small'), Buffer.from('small'));
  assert.equal(view.readlink('/link'), 'd/big');
  assert.equal(readFile(view, '/d/big').length, 50_000);
});
