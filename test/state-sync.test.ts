// State sync between two real stores on disk (no network): only divergent objects move, every
// object is verified, a lying peer is dropped, a sync stopped half-way resumes without fetching
// again what it already stored, and damage on disk is found and repaired.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ObjectStore } from '../src/state/blockstore';
import { exportSnapshot, importDirectory } from '../src/state/importExport';
import { corruptObjects } from '../src/state/integrity';
import { BYTE_LIST_ITEM_HEADER, decodeByteList, writeByteList } from '../src/node/peerMessages';
import { allocRes } from '../src/p2p/wire';
import { hashInWorker, hasherMemory, hasherSlabsTaken, hasherWorks } from '../src/state/hashWorker';
import { hashObject, hashObjectBorrowingRoom, ObjectKind } from '../src/state/objects';
import { syncState } from '../src/state/sync';
import { tempDir } from './helpers/fixtures';

const BLOCK = 64 * 1024;

/** A directory with a 2 MiB file of distinct blocks and a few small files. */
function makeTree(dir: string, variant: (data: Buffer) => void = () => undefined): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  const data = crypto.createHash('sha256').update('seed').digest();
  const big = Buffer.alloc(32 * BLOCK);
  for (let o = 0; o < big.length; o += 32) crypto.createHash('sha256').update(data).update(String(o)).digest().copy(big, o);
  variant(big);
  fs.writeFileSync(path.join(dir, 'big.bin'), big);
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha');
  fs.writeFileSync(path.join(dir, 'sub', 'b.txt'), 'beta');
}

function storeFrom(t: Parameters<typeof tempDir>[0], variant?: (data: Buffer) => void): ObjectStore {
  const src = path.join(tempDir(t), 'tree');
  makeTree(src, variant);
  const store = ObjectStore.create(path.join(tempDir(t), 'store'), { timeMs: 0 });
  importDirectory(store, src, 0);
  t.after(() => store.close());
  return store;
}

/** A peer that serves objects of `store` (and counts what it served). */
function peerOf(store: ObjectStore) {
  const served = { objects: 0 };
  const fetch = async (_peer: string, hashes: Buffer[]) =>
    hashes.map((h) => {
      if (!store.has(h)) return null;
      served.objects++;
      return store.get(h);
    });
  return { fetch, served };
}

test('only divergent objects are fetched, each verified; the target ends byte-identical', async (t) => {
  const source = storeFrom(t, (d) => {
    d.fill(7, 5 * BLOCK, 6 * BLOCK); // two changed blocks
    d.fill(9, 20 * BLOCK + 100, 20 * BLOCK + 200);
  });
  const target = storeFrom(t);
  const root = Buffer.from(source.current.root, 'hex');
  const { fetch } = peerOf(source);
  const r = await syncState(target, root, { peers: ['p1'], fetch, timeMs: 5 });
  assert.equal(target.current.root, source.current.root);
  assert.equal(r.objectsRejected, 0);
  // The two changed blocks plus the nodes above them (file node, root dir, root); nothing else.
  assert.ok(r.bytesFetched >= 2 * BLOCK && r.bytesFetched < 2 * BLOCK + 8 * 1024, `fetched ${r.bytesFetched} bytes`);
  assert.deepEqual(r.changedPaths, ['/big.bin']);
  const a = path.join(tempDir(t), 'a');
  const b = path.join(tempDir(t), 'b');
  exportSnapshot(source, a);
  exportSnapshot(target, b);
  assert.ok(fs.readFileSync(path.join(a, 'big.bin')).equals(fs.readFileSync(path.join(b, 'big.bin'))));
});

test('a peer serving wrong bytes is rejected and dropped; the sync completes from the honest one', async (t) => {
  const source = storeFrom(t, (d) => d.fill(1, 0, 4 * BLOCK));
  const target = storeFrom(t);
  const honest = peerOf(source);
  const bad: string[] = [];
  let liarAsked = 0;
  const fetch = async (peer: string, hashes: Buffer[]) => {
    if (peer !== 'liar') return honest.fetch(peer, hashes);
    liarAsked++;
    return hashes.map(() => crypto.randomBytes(BLOCK));
  };
  const r = await syncState(target, Buffer.from(source.current.root, 'hex'), { peers: ['liar', 'honest'], fetch, timeMs: 5, batch: 2, parallel: 2, onBadPeer: (p) => bad.push(p) });
  assert.equal(target.current.root, source.current.root);
  assert.ok(r.objectsRejected > 0 && bad.every((p) => p === 'liar') && bad.length > 0);
  assert.equal(liarAsked, 1, 'after one bad batch the liar is not asked again');
});

test('hashing an object in a frame borrows the bytes before it and puts them back', () => {
  const frame = crypto.randomBytes(40 + BLOCK);
  const before = Buffer.from(frame);
  for (const [at, kind] of [[0, ObjectKind.Block], [3, ObjectKind.List], [8, ObjectKind.Block], [40, ObjectKind.Dir]] as const) {
    const content = frame.subarray(at, at + 1000);
    assert.ok(hashObjectBorrowingRoom(kind, content).equals(hashObject(kind, content)), `object at ${at}`);
    assert.ok(frame.equals(before), `bytes before the object at ${at} restored`);
  }
});

test('answers framed as on the wire are verified in place: same result, frames untouched, liars still caught', async (t) => {
  const source = storeFrom(t, (d) => d.fill(3, 0, 8 * BLOCK));
  const target = storeFrom(t);
  const frames: Array<{ frame: Buffer; copy: Buffer }> = [];
  const fetch = async (peer: string, hashes: Buffer[]) => {
    const items = hashes.map((h) => (source.has(h) ? source.get(h) : null));
    if (peer === 'liar') items.forEach((it) => it?.fill(0xee, 0, 1));
    const { frame, body } = allocRes(7, items.reduce((n, it) => n + BYTE_LIST_ITEM_HEADER + (it?.length ?? 0), 0));
    writeByteList(body, items, (it, into) => it.copy(into));
    frames.push({ frame, copy: Buffer.from(frame) });
    return decodeByteList(body, hashes.length, 'test answer');
  };
  const bad: string[] = [];
  const r = await syncState(target, Buffer.from(source.current.root, 'hex'), { peers: ['liar', 'honest'], fetch, answersHaveRoom: true, timeMs: 5, batch: 4, parallel: 2, onBadPeer: (p) => bad.push(p) });
  assert.equal(target.current.root, source.current.root);
  assert.ok(r.objectsRejected > 0 && bad.length > 0 && bad.every((p) => p === 'liar'));
  assert.ok(frames.every((f) => f.frame.equals(f.copy)), 'no answer frame was left changed');
});

test('answers read into hasher slabs are hashed on the worker thread: the same bytes are stored, liars caught, slabs given back', async (t) => {
  const source = storeFrom(t, (d) => d.fill(5, 3 * BLOCK, 20 * BLOCK));
  const target = storeFrom(t);
  let slabbed = 0;
  const fetch = async (peer: string, hashes: Buffer[]) => {
    const items = hashes.map((h) => (source.has(h) ? source.get(h) : null));
    if (peer === 'liar') items.forEach((it) => it?.fill(0xee, 0, 1));
    const bytes = 16 + items.reduce((n, it) => n + BYTE_LIST_ITEM_HEADER + (it?.length ?? 0), 0);
    const frame = hasherMemory.take(Math.max(bytes, 256 * 1024)).subarray(0, bytes); // as the bulk stream reads a big answer
    if (frame.buffer instanceof SharedArrayBuffer) slabbed++;
    writeByteList(frame.subarray(16), items, (it, into) => it.copy(into));
    return decodeByteList(frame.subarray(16), hashes.length, 'test answer');
  };
  const bad: string[] = [];
  const r = await syncState(target, Buffer.from(source.current.root, 'hex'), {
    peers: ['liar', 'honest'], fetch, answersHaveRoom: true, timeMs: 5, batch: 4, parallel: 3, onBadPeer: (p) => bad.push(p),
  });
  assert.ok(slabbed > 0);
  await new Promise((res) => setTimeout(res, 50)); // the last give-backs follow the last pack writes
  assert.equal(hasherSlabsTaken(), 0, 'every slab went back to the pool');
  assert.equal(target.current.root, source.current.root);
  assert.ok(r.objectsRejected > 0 && bad.every((p) => p === 'liar'));
  assert.deepEqual(corruptObjects(target, Buffer.from(target.current.root, 'hex')), [], 'every stored object hashes to its name');
  const a = path.join(tempDir(t), 'a');
  const b = path.join(tempDir(t), 'b');
  exportSnapshot(source, a);
  exportSnapshot(target, b);
  assert.ok(fs.readFileSync(path.join(a, 'big.bin')).equals(fs.readFileSync(path.join(b, 'big.bin'))));
});

test('a sync stopped half-way resumes without fetching again what it stored; nothing is current until complete', async (t) => {
  const source = storeFrom(t, (d) => {
    for (let k = 0; k < 16; k++) d.fill(k + 1, k * BLOCK, (k + 1) * BLOCK); // 16 distinct changed blocks
  });
  const target = storeFrom(t);
  const oldRoot = target.current.root;
  const root = Buffer.from(source.current.root, 'hex');
  const { fetch, served } = peerOf(source);
  const signal = { aborted: false };
  // A peer slower than a checkpoint (a real one is), so progress counts what became durable on the way.
  const slowFetch = async (peer: string, hashes: Buffer[]) => {
    await new Promise((r) => setTimeout(r, 30));
    return fetch(peer, hashes);
  };
  await assert.rejects(
    syncState(target, root, {
      peers: ['p'], fetch: slowFetch, timeMs: 5, batch: 2, parallel: 1, signal, progressEveryMs: 0, persistEveryBytes: 1,
      onProgress: (p) => {
        if (p.objectsFetched >= 6) signal.aborted = true;
      },
    }),
    /aborted/,
  );
  assert.equal(target.current.root, oldRoot, 'the old snapshot stays current');
  const first = served.objects;
  // Reopen, as a restarted node would: the stored objects are durable.
  const dir = target.dir;
  target.close();
  const again = ObjectStore.open(dir);
  t.after(() => again.close());
  served.objects = 0;
  const r = await syncState(again, root, { peers: ['p'], fetch, timeMs: 5 });
  assert.equal(again.current.root, source.current.root);
  // 16 changed blocks + file node + root dir + root = 19 objects in all, fetched once.
  assert.equal(first + r.objectsFetched, 19, `first run ${first}, resumed run ${r.objectsFetched}`);
});

test('a block damaged on disk is found with its path, and a sync that distrusts it repairs it', async (t) => {
  const source = storeFrom(t);
  const target = storeFrom(t);
  assert.equal(target.current.root, source.current.root);
  const root = Buffer.from(target.current.root, 'hex');
  const block = target.fileBlocks(target.entryHash(root, '/big.bin')!).blocks[7];
  const loc = target.locate(block)!;
  const dir = target.dir;
  target.close();
  const fd = fs.openSync(path.join(dir, 'packs', `${loc.pack}.pack`), 'r+');
  fs.writeSync(fd, Buffer.from([0xff]), 0, 1, loc.offset + 3);
  fs.closeSync(fd);
  const damaged = ObjectStore.open(dir);
  t.after(() => damaged.close());
  const bad = corruptObjects(damaged, root);
  assert.deepEqual(bad, [{ hash: block.toString('hex'), path: '/big.bin' }]);
  const { fetch } = peerOf(source);
  const r = await syncState(damaged, root, { peers: ['p'], fetch, timeMs: 5, distrust: new Set(bad.map((b) => b.hash)) });
  assert.equal(r.objectsFetched, 1);
  assert.equal(r.bytesFetched, BLOCK);
  damaged.close();
  const reopened = ObjectStore.open(dir);
  t.after(() => reopened.close());
  assert.deepEqual(corruptObjects(reopened, root), [], 'the repaired copy is what the store reads now, after a reopen too');
});

test('start-up check: a damaged tree node and a pack cut short are found, their neighbours are not', (t) => {
  const store = storeFrom(t);
  const root = Buffer.from(store.current.root, 'hex');
  const fileNode = store.entryHash(root, '/big.bin')!;
  const fileLoc = store.locate(fileNode)!;
  const all = [root, store.getRoot(root).dir, ...['/big.bin', '/a.txt', '/sub', '/sub/b.txt'].map((p) => store.entryHash(root, p)!)];
  for (const f of ['/big.bin', '/a.txt', '/sub/b.txt']) all.push(...store.fileBlocks(store.entryHash(root, f)!).blocks);
  const lastBlock = store.fileBlocks(fileNode).blocks.map((h) => store.locate(h)!).filter((l) => l.pack === fileLoc.pack).sort((a, b) => b.offset - a.offset)[0];
  const cutAt = lastBlock.offset + 10;
  // Exactly the objects stored past the cut, plus the damaged file node.
  const expected = new Set(all.filter((h) => {
    const l = store.locate(h)!;
    return l.pack === fileLoc.pack && l.offset + l.length > cutAt;
  }).map((h) => h.toString('hex')));
  expected.add(fileNode.toString('hex'));
  assert.ok(expected.size >= 2, 'the cut reaches at least the last block');
  const dir = store.dir;
  store.close();
  const packPath = path.join(dir, 'packs', `${fileLoc.pack}.pack`);
  const fd = fs.openSync(packPath, 'r+');
  fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, fileLoc.offset + fileLoc.length - 1);
  fs.closeSync(fd);
  const damaged = ObjectStore.open(dir);
  assert.deepEqual(damaged.damagedObjects(), new Set([fileNode.toString('hex')]), 'only the file node, not the objects packed beside it');
  assert.deepEqual(corruptObjects(damaged, root), [{ hash: fileNode.toString('hex'), path: '/big.bin' }]);
  damaged.close();
  fs.truncateSync(packPath, cutAt);
  const cut = ObjectStore.open(dir, { readOnly: true });
  t.after(() => cut.close());
  assert.deepEqual(cut.damagedObjects(), expected);
});

// Last in this file: it leaves this process hashing in place.
test('a hasher worker that fails answers null (the answer is fetched again) and is not used again', async () => {
  const memory = hasherMemory.take(256 * 1024);
  const content = memory.subarray(64, 64 + 1000);
  assert.equal(hasherWorks(), true);
  assert.equal(await hashInWorker([99 as ObjectKind], [content]), null, 'an unknown kind throws in the worker');
  assert.equal(hasherWorks(), false);
});
