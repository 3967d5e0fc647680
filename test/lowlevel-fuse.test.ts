// Pure logic of the low-level FUSE adapter: the kernel node id ↔ path table and the dirent
// records readdir answers with. The mount itself is exercised by statefs-posix.test.ts.
import test from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { WriteGate } from '../src/state/fuseOps';
import { direntBuffer, guarded, NodeTable } from '../src/state/lowLevelFuse';

test('NodeTable: ids follow renames, unlinked nodes lose their path, forget frees ids', () => {
  const t = new NodeTable();
  const dir = t.ref(1, 'd');
  const file = t.ref(dir, 'f');
  assert.equal(t.ref(dir, 'f'), file, 'a second lookup of the same name gets the same id');
  assert.equal(t.path(1), '/');
  assert.equal(t.path(file), '/d/f');
  assert.equal(t.childPath(dir, 'g'), '/d/g');

  t.moved(1, 'd', 1, 'e'); // the directory moves: its children's paths follow
  assert.equal(t.path(file), '/e/f');
  assert.equal(t.idOf(1, 'd'), undefined);

  const other = t.ref(dir, 'g');
  t.moved(dir, 'g', dir, 'f'); // rename over f: f's node leaves the tree, g's takes the name
  assert.equal(t.path(other), '/e/f');
  assert.equal(t.path(file), null);
  assert.equal(t.idOf(dir, 'f'), other);

  t.forget(file, 2); // both lookups forgotten: the id is gone
  assert.equal(t.path(file), null);
  t.unlinked(dir, 'f');
  assert.equal(t.path(other), null);
  assert.equal(t.childPath(other, 'x'), null);
  t.forget(other, 1);
  const again = t.ref(dir, 'f');
  assert.notEqual(again, other, 'a new file under an old name gets a new id');
  assert.equal(t.path(again), '/e/f');
});

test('NodeTable: a hidden node is reported for removal once no handle and no kernel lookup holds it', () => {
  const t = new NodeTable();
  const id = t.ref(1, 'f');
  assert.ok(t.isHeld(id), 'the kernel holds a lookup');
  t.opened(id);
  assert.ok(t.isOpen(id));
  t.forget(id, 1);
  assert.ok(t.isHeld(id), 'still open');
  assert.equal(t.path(id), '/f', 'still open: still known');
  t.moved(1, 'f', 1, '.fuse_hidden0000000100000001'); // what unlink of a held file does
  assert.equal(t.closed(id), '/.fuse_hidden0000000100000001', 'last close, no lookup left: remove it');
  assert.equal(t.path(id), null, 'and the id is gone');

  const g = t.ref(1, 'g');
  t.opened(g);
  t.moved(1, 'g', 1, '.fuse_hidden0000000100000002');
  assert.equal(t.closed(g), null, 'closed, but the kernel may still ask about it by id');
  assert.equal(t.path(g), '/.fuse_hidden0000000100000002');
  assert.equal(t.forget(g, 1), '/.fuse_hidden0000000100000002', 'forgotten too: remove it');
  assert.equal(t.isHeld(g), false);

  const plain = t.ref(1, 'h');
  t.opened(plain);
  t.opened(plain);
  assert.equal(t.closed(plain), null, 'not hidden');
  assert.equal(t.closed(plain), null);
  assert.equal(t.isOpen(plain), false);
  assert.equal(t.path(plain), '/h', 'the kernel still holds a lookup');
  assert.equal(t.forget(plain, 1), null, 'a visible name is never reported for removal');
});

test('direntBuffer: 8-byte aligned fuse_dirent records from an offset, as many as fit', () => {
  const names = ['.', '..', 'a', 'longer-name', 'ü'];
  const parse = (buf: Buffer, length: number) => {
    const out: Array<{ off: number; name: string; type: number }> = [];
    for (let at = 0; at < length;) {
      const namelen = buf.readUInt32LE(at + 16);
      out.push({ off: Number(buf.readBigUInt64LE(at + 8)), name: buf.toString('utf8', at + 24, at + 24 + namelen), type: buf.readUInt32LE(at + 20) });
      at += (24 + namelen + 7) & ~7;
    }
    return out;
  };
  const [all, n] = direntBuffer(names, 0, 4096);
  assert.deepEqual(parse(all, n).map((e) => e.name), names);
  assert.deepEqual(parse(all, n).map((e) => e.off), [1, 2, 3, 4, 5], 'each record names the offset of the next');
  assert.deepEqual(parse(all, n).map((e) => e.type), [4, 4, 0, 0, 0], '. and .. are directories, the rest unknown');
  const [tail, m] = direntBuffer(names, 3, 4096);
  assert.deepEqual(parse(tail, m).map((e) => e.name), ['longer-name', 'ü']);
  const [some, k] = direntBuffer(names, 0, 64); // 32 bytes per short record: two fit in 64, not three
  assert.deepEqual(parse(some, k).map((e) => e.name), ['.', '..']);
  assert.equal(direntBuffer(names, 5, 4096)[1], 0, 'past the end: nothing');
});

test('a handler that throws answers its request with EIO; a held operation that throws does not block the rest', (t) => {
  const replies: Array<[number, number]> = [];
  const binding = { replyErr: (slot: number, errno: number) => replies.push([slot, errno]) } as unknown as Parameters<typeof guarded>[1];
  const stderr = t.mock.method(process.stderr, 'write', () => true);
  const h = guarded({ lookup: () => { throw new Error('bug'); }, forget: () => { throw new Error('bug'); }, getattr: (slot: number) => binding.replyErr(slot, 0) }, binding);
  h.lookup(7, 1, 'x');
  h.forget(-1, 2, 1); // a notification: nothing to answer
  h.getattr(3);
  assert.deepEqual(replies, [[7, os.constants.errno.EIO], [3, 0]]);
  assert.equal(stderr.mock.callCount(), 2, 'each failure is reported');

  const gate = new WriteGate();
  gate.hold();
  const ran: number[] = [];
  gate.pass(() => undefined, () => ran.push(1));
  gate.pass(() => undefined, () => { throw new Error('bug'); });
  gate.pass(() => undefined, () => ran.push(3));
  gate.release(true);
  assert.deepEqual(ran, [1, 3]);
  assert.equal(stderr.mock.callCount(), 3);
});
