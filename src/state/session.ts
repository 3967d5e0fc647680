// A view of one snapshot as a POSIX tree, read-only or read-write with copy-on-write.
//
// A read-write session loads directories and block lists lazily from the snapshot and keeps every
// change in memory as a tree of nodes plus dirty blocks in "slots" of the store's open write
// transaction (so dirty data lives on disk, not in RSS). Nothing is hashed per write: `commit`
// hashes only dirty blocks and the nodes above them, then swaps the store's root atomically.
// Every operation throws FsError with a POSIX code; the FUSE server turns it into an errno.
import { toHex } from '../crypto/hash';
import { ObjectStore, StoreTxn, SnapshotInfo } from './blockstore';
import {
  DirEntry, EntryKind, FANOUT, MAX_LINK_BYTES, ObjectKind, TAG_BYTES,
  encodeDir, encodeFile, encodeList, encodeRoot, fileDepth, hashBlockInPlace, nameError,
} from './objects';

export class FsError extends Error {
  constructor(readonly code: string, message: string) {
    // ENOENT on lookups is routine (every create looks the name up first): skip the stack capture,
    // which cost ~10 µs per error.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`${code}: ${message}`);
    Error.stackTraceLimit = limit;
  }
}

/** Prefix of the names a file still in use gets when it is unlinked; never part of the state. */
export const HIDDEN_PREFIX = '.fuse_hidden';
/** The names files still referenced when unlinked are hidden under (lowLevelFuse.ts, after libfuse 2). */
export const LIBFUSE_HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;

/** A slot offset in the transaction's pack (dirty), a committed block hash, or null for zeros. */
type BlockRef = number | Buffer | null;

interface Node {
  kind: EntryKind;
  mode: number;
  mtimeMs: number;
  name: string;
  parent: Node | null;
  /** Hash of this node's object; valid while !dirty. */
  hash: Buffer | null;
  dirty: boolean;
  children: Map<string, Node> | null; // dirs; null until loaded
  sortedNames: string[] | null; // dirs; readdir cache
  size: number; // files
  blocks: BlockRef[] | null; // files; null until loaded
  /** Files: list hashes of the loaded version by level (see ObjectStore.fileBlocks), or null. */
  lists: Buffer[][] | null;
  /** Files: groups of FANOUT blocks changed since loading; every group from dirtyFrom on too. */
  dirtyGroups: Set<number> | null;
  dirtyFrom: number;
  target: string; // links
}

export interface Quota {
  bytes: number;
  files: number;
}

export interface Stat {
  mode: number; // with S_IF* type bits
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  blksize: number;
  blocks: number;
}

export interface SessionOptions {
  writable: boolean;
  /** The session clock (unix ms): every change is stamped with it, so every node sees the same stat(). */
  timeMs: number;
  quota?: Partial<Quota>;
}

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const O_ACCMODE = 3;
const O_RDONLY = 0;
const UNKNOWN_SIZE = -1;

export const DEFAULT_QUOTA: Quota = { bytes: 1024 ** 4, files: 10_000_000 };

/**
 * File handle numbers are unique across all sessions of the process: a descriptor opened in one
 * session and used after the mount switched to the next one must get EBADF, never another file.
 */
let nextHandle = 1;

export class Session {
  readonly root: Node;
  private rootMode: number;
  private readonly txn: StoreTxn | null;
  private readonly handles = new Map<number, Node>();
  private readonly hidden = new Map<string, Node>();
  private bytes: number;
  private files: number;
  private readonly quota: Quota;
  private readonly blockSize: number;
  private closed = false;

  constructor(readonly store: ObjectStore, readonly baseRoot: Buffer, private readonly opts: SessionOptions) {
    const root = store.getRoot(baseRoot);
    this.rootMode = root.mode;
    this.root = newNode(EntryKind.Dir, root.mode, root.mtimeMs, '', null, root.dir);
    this.blockSize = store.blockSizeBytes;
    this.quota = { ...DEFAULT_QUOTA, ...opts.quota };
    const info = store.snapshots.find((s) => s.root === toHex(baseRoot));
    const totals = info ?? (opts.writable ? countTree(store, root.dir) : { bytes: 0, files: 0 });
    this.bytes = totals.bytes;
    this.files = totals.files;
    this.txn = opts.writable ? store.begin() : null;
  }

  get writable(): boolean {
    return this.txn !== null;
  }

  get timeMs(): number {
    return this.opts.timeMs;
  }

  /** Sets the clock of a session opened before its time was known (its changes were held until now). */
  setTime(timeMs: number): void {
    this.opts.timeMs = timeMs;
  }

  usage(): { bytes: number; files: number; quota: Quota } {
    return { bytes: this.bytes, files: this.files, quota: this.quota };
  }

  // ---- lookups -------------------------------------------------------------------------------

  resolve(path: string): Node {
    if (path === '/' || path === '') return this.root;
    const hidden = this.hidden.get(path);
    if (hidden) return hidden;
    let node = this.root;
    for (const part of path.split('/')) {
      if (part === '') continue;
      if (node.kind !== EntryKind.Dir) throw new FsError('ENOTDIR', `${path}: a path component is not a directory`);
      const child = this.childrenOf(node).get(part);
      if (!child) throw new FsError('ENOENT', `${path}: no such file or directory`);
      node = child;
    }
    return node;
  }

  private resolveParent(path: string): { parent: Node; name: string } {
    const slash = path.lastIndexOf('/');
    const name = path.slice(slash + 1);
    const parent = this.resolve(path.slice(0, slash) || '/');
    if (parent.kind !== EntryKind.Dir) throw new FsError('ENOTDIR', `${path}: parent is not a directory`);
    return { parent, name };
  }

  private childrenOf(dir: Node): Map<string, Node> {
    if (!dir.children) {
      dir.children = new Map();
      for (const e of this.store.getDir(dir.hash!)) dir.children.set(e.name, nodeFromEntry(e, dir));
    }
    return dir.children;
  }

  getattr(path: string): Stat {
    return this.statOf(this.resolve(path), path);
  }

  fgetattr(fh: number): Stat {
    const node = this.handle(fh);
    return this.statOf(node, this.pathOf(node));
  }

  private statOf(node: Node, path: string): Stat {
    const size = node.kind === EntryKind.File ? this.sizeOf(node) : node.kind === EntryKind.Link ? Buffer.byteLength(this.linkTarget(node)) : 4096;
    const type = node.kind === EntryKind.Dir ? S_IFDIR : node.kind === EntryKind.Link ? S_IFLNK : S_IFREG;
    return {
      mode: type | (node === this.root ? this.rootMode : node.mode),
      size,
      mtimeMs: node.mtimeMs,
      ino: inodeNumber(path),
      nlink: 1,
      blksize: this.blockSize,
      blocks: Math.ceil(size / 512),
    };
  }

  readdir(path: string): string[] {
    const dir = this.resolve(path);
    if (dir.kind !== EntryKind.Dir) throw new FsError('ENOTDIR', `${path}: not a directory`);
    if (!dir.sortedNames) dir.sortedNames = [...this.childrenOf(dir).keys()].sort(compareBytes);
    return dir.sortedNames;
  }

  readlink(path: string): string {
    const node = this.resolve(path);
    if (node.kind !== EntryKind.Link) throw new FsError('EINVAL', `${path}: not a symbolic link`);
    return this.linkTarget(node);
  }

  private linkTarget(node: Node): string {
    if (node.target === '' && node.hash) node.target = this.store.getLink(node.hash);
    return node.target;
  }

  statfs(): { bytesTotal: number; bytesFree: number; filesTotal: number; filesFree: number; blockSize: number } {
    return {
      bytesTotal: this.quota.bytes,
      bytesFree: Math.max(0, this.quota.bytes - this.bytes),
      filesTotal: this.quota.files,
      filesFree: Math.max(0, this.quota.files - this.files),
      blockSize: this.blockSize,
    };
  }

  // ---- open files ----------------------------------------------------------------------------

  open(path: string, flags: number): number {
    const node = this.resolve(path);
    if (node.kind === EntryKind.Dir) {
      if ((flags & O_ACCMODE) !== O_RDONLY) throw new FsError('EISDIR', `${path}: is a directory`);
    } else if ((flags & O_ACCMODE) !== O_RDONLY) {
      this.assertWritable(path);
    }
    return this.addHandle(node);
  }

  create(path: string, mode: number): number {
    const { parent, name } = this.resolveParent(path);
    this.assertNewName(parent, name, path);
    const node = newNode(EntryKind.File, mode & 0o7777, this.opts.timeMs, name, parent, null);
    node.blocks = [];
    this.attach(parent, node);
    return this.addHandle(node);
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  private addHandle(node: Node): number {
    const fh = nextHandle++;
    this.handles.set(fh, node);
    return fh;
  }

  private handle(fh: number): Node {
    const node = this.handles.get(fh);
    if (!node) throw new FsError('EBADF', `file handle ${fh} is not open`);
    return node;
  }

  read(fh: number, into: Buffer, length: number, offset: number): number {
    const node = this.handle(fh);
    if (node.kind !== EntryKind.File) throw new FsError('EISDIR', 'read of a directory');
    const blocks = this.blocksOf(node);
    if (offset >= node.size) return 0;
    const end = Math.min(offset + length, node.size);
    const bs = this.blockSize;
    let pos = offset;
    while (pos < end) {
      const idx = Math.floor(pos / bs);
      const inBlock = pos - idx * bs;
      const n = Math.min(end - pos, bs - inBlock);
      const ref = blocks[idx];
      if (ref === null || ref === undefined) into.fill(0, pos - offset, pos - offset + n);
      else if (typeof ref === 'number') this.txn!.readAt(ref + inBlock, into, pos - offset, n);
      else this.store.readBlockRange(ref, inBlock, into, pos - offset, n);
      pos += n;
    }
    return end - offset;
  }


  write(fh: number, data: Buffer, length: number, offset: number): number {
    const node = this.handle(fh);
    this.assertWritable(this.pathOf(node));
    if (node.kind !== EntryKind.File) throw new FsError('EISDIR', 'write to a directory');
    const end = offset + length;
    const blocks = this.blocksOf(node);
    if (end > node.size) this.resize(node, end);
    const bs = this.blockSize;
    // Map each touched block to a slot, then write runs of adjacent slots with one pwrite each
    // (a 128 KiB FUSE write over two fresh blocks is one syscall).
    let runSlot = -1;
    let runStart = offset;
    let runLength = 0;
    let pos = offset;
    while (pos < end) {
      const idx = Math.floor(pos / bs);
      const blockStart = idx * bs;
      const n = Math.min(end - pos, blockStart + bs - pos);
      let ref = blocks[idx];
      if (typeof ref !== 'number') {
        const coversValid = pos === blockStart && pos + n >= Math.min(blockStart + bs, node.size);
        ref = coversValid ? this.txn!.alloc(bs, bs) : this.cow(node, idx);
        blocks[idx] = ref;
        (node.dirtyGroups ??= new Set()).add(Math.floor(idx / FANOUT));
      }
      const target = ref + (pos - blockStart);
      if (runLength > 0 && target === runSlot + runLength) {
        runLength += n;
      } else {
        if (runLength > 0) this.txn!.writeAt(runSlot, data, runStart - offset, runLength);
        runSlot = target;
        runStart = pos;
        runLength = n;
      }
      pos += n;
    }
    if (runLength > 0) this.txn!.writeAt(runSlot, data, runStart - offset, runLength);
    this.touch(node);
    return length;
  }

  truncate(path: string, size: number): void {
    const node = this.resolve(path);
    this.ftruncateNode(node, path, size);
  }

  ftruncate(fh: number, size: number): void {
    const node = this.handle(fh);
    this.ftruncateNode(node, this.pathOf(node), size);
  }

  private ftruncateNode(node: Node, path: string, size: number): void {
    this.assertWritable(path);
    if (node.kind === EntryKind.Dir) throw new FsError('EISDIR', `${path}: is a directory`);
    if (node.kind !== EntryKind.File) throw new FsError('EINVAL', `${path}: not a regular file`);
    if (!Number.isSafeInteger(size) || size < 0) throw new FsError('EINVAL', `${path}: invalid size ${size}`);
    this.blocksOf(node);
    if (size !== node.size) this.resize(node, size);
    this.touch(node);
  }

  /** Grows (zero-filled) or shrinks a file, keeping "slot bytes past EOF are zero" true. */
  private resize(node: Node, size: number): void {
    const blocks = this.blocksOf(node);
    const bs = this.blockSize;
    const old = node.size;
    // The old or new last block changes length, and blocks past it come or go.
    const kept = Math.min(blocks.length, Math.ceil(size / bs));
    node.dirtyFrom = Math.min(node.dirtyFrom, Math.floor(Math.max(0, kept - 1) / FANOUT));
    // A file unlinked while open (parent null) is outside the state: its bytes are not counted.
    const counted = node.parent !== null;
    if (size > old) {
      if (counted && this.bytes + (size - old) > this.quota.bytes) {
        throw new FsError('ENOSPC', `state quota of ${this.quota.bytes} bytes exceeded (growing a file to ${size} bytes)`);
      }
      // The committed last block is shorter than a block; make its zero tail part of the content.
      const lastIdx = Math.floor((old - 1) / bs);
      if (old % bs !== 0 && blocks[lastIdx] instanceof Buffer) blocks[lastIdx] = this.cow(node, lastIdx);
      const count = Math.ceil(size / bs);
      while (blocks.length < count) blocks.push(null);
    } else {
      const count = Math.ceil(size / bs);
      blocks.length = count;
      const keep = size - (count - 1) * bs;
      if (count > 0 && keep < bs) {
        const ref = blocks[count - 1];
        if (ref instanceof Buffer) {
          node.size = size; // copy only what survives
          blocks[count - 1] = this.cow(node, count - 1);
        } else if (typeof ref === 'number') {
          this.txn!.writeAt(ref + keep, Buffer.alloc(bs - keep));
        }
      }
    }
    if (counted) this.bytes += size - old;
    node.size = size;
  }

  /** Copies block `idx` (its bytes below EOF) into a fresh slot and returns the slot. */
  private cow(node: Node, idx: number): number {
    const bs = this.blockSize;
    const slot = this.txn!.alloc(bs, bs);
    const ref = this.blocksOf(node)[idx];
    if (ref instanceof Buffer) {
      const block = this.store.get(ref, ObjectKind.Block);
      const valid = Math.min(block.length, Math.max(0, node.size - idx * bs));
      if (valid > 0) this.txn!.writeAt(slot, block, 0, valid);
    } else if (typeof ref === 'number') {
      const buf = Buffer.allocUnsafe(bs);
      this.txn!.readAt(ref, buf);
      this.txn!.writeAt(slot, buf);
    }
    return slot;
  }

  private blocksOf(node: Node): BlockRef[] {
    if (!node.blocks) {
      const file = node.hash ? this.store.fileBlocks(node.hash) : { size: 0, blocks: [], lists: [] };
      node.blocks = file.blocks;
      node.lists = file.lists;
      node.size = file.size;
    }
    return node.blocks;
  }

  private sizeOf(node: Node): number {
    if (node.size === UNKNOWN_SIZE) node.size = this.store.getFile(node.hash!).size;
    return node.size;
  }

  // ---- namespace -----------------------------------------------------------------------------

  mkdir(path: string, mode: number): void {
    const { parent, name } = this.resolveParent(path);
    this.assertNewName(parent, name, path);
    const node = newNode(EntryKind.Dir, mode & 0o7777, this.opts.timeMs, name, parent, null);
    node.children = new Map();
    this.attach(parent, node);
  }

  symlink(target: string, path: string): void {
    const { parent, name } = this.resolveParent(path);
    this.assertNewName(parent, name, path);
    if (target.length === 0 || target.includes('\0')) throw new FsError('EINVAL', `${path}: empty or NUL symlink target`);
    if (Buffer.byteLength(target) > MAX_LINK_BYTES) throw new FsError('ENAMETOOLONG', `${path}: symlink target longer than ${MAX_LINK_BYTES} bytes`);
    const node = newNode(EntryKind.Link, 0o777, this.opts.timeMs, name, parent, null);
    node.target = target;
    this.attach(parent, node);
  }

  unlink(path: string): void {
    this.assertWritable(path);
    const node = this.resolve(path);
    if (this.hidden.get(path) === node) {
      this.hidden.delete(path);
      return;
    }
    if (node.kind === EntryKind.Dir) throw new FsError('EISDIR', `${path}: is a directory (use rmdir)`);
    this.detach(node);
  }

  rmdir(path: string): void {
    this.assertWritable(path);
    const node = this.resolve(path);
    if (node === this.root) throw new FsError('EBUSY', 'cannot remove the state root');
    if (node.kind !== EntryKind.Dir) throw new FsError('ENOTDIR', `${path}: not a directory`);
    if (this.childrenOf(node).size > 0) throw new FsError('ENOTEMPTY', `${path}: directory not empty`);
    this.detach(node);
  }

  rename(from: string, to: string): void {
    this.assertWritable(from);
    const node = this.resolve(from);
    if (node === this.root) throw new FsError('EBUSY', 'cannot rename the state root');
    const { parent, name } = this.resolveParent(to);
    if (LIBFUSE_HIDDEN_NAME.test(name)) {
      // libfuse hides a file that is unlinked while open: keep it readable by path, outside the tree.
      this.detach(node);
      this.hidden.set(to, node);
      return;
    }
    const err = nameError(name);
    if (err) throw new FsError(err, `${to}: invalid file name`);
    if (name.startsWith(HIDDEN_PREFIX)) throw new FsError('EINVAL', `${to}: names starting with ${HIDDEN_PREFIX} are reserved`);
    for (let p: Node | null = parent; p; p = p.parent) {
      if (p === node) throw new FsError('EINVAL', `cannot move ${from} into itself (${to})`);
    }
    const existing = this.childrenOf(parent).get(name);
    if (existing === node) return;
    if (existing) {
      if (existing.kind === EntryKind.Dir) {
        if (node.kind !== EntryKind.Dir) throw new FsError('EISDIR', `${to}: is a directory`);
        if (this.childrenOf(existing).size > 0) throw new FsError('ENOTEMPTY', `${to}: directory not empty`);
      } else if (node.kind === EntryKind.Dir) {
        throw new FsError('ENOTDIR', `${to}: not a directory`);
      }
      this.detach(existing);
    }
    const oldParent = node.parent!;
    this.childrenOf(oldParent).delete(node.name);
    oldParent.sortedNames = null;
    this.touch(oldParent);
    node.name = name;
    node.parent = parent;
    this.childrenOf(parent).set(name, node);
    parent.sortedNames = null;
    this.touch(parent);
  }

  chmod(path: string, mode: number): void {
    this.assertWritable(path);
    const node = this.resolve(path);
    if (node === this.root) this.rootMode = mode & 0o7777;
    else node.mode = mode & 0o7777;
    this.markEntryChanged(node);
  }

  chown(path: string, uid: number, gid: number): void {
    const node = this.resolve(path);
    const same = (uid === -1 || uid === 0xffffffff || uid === process.getuid!()) && (gid === -1 || gid === 0xffffffff || gid === process.getgid!());
    if (!same) throw new FsError('EPERM', `${this.pathOf(node)}: state files have one owner; chown is not supported`);
  }

  /**
   * Stamps the entry with the session clock, whatever time was asked for. Timestamps are part of
   * the hashed state, and FUSE delivers `touch`'s UTIME_NOW as this server's wall clock, so
   * honouring the value would let nodes diverge.
   */
  utimens(path: string): void {
    this.assertWritable(path);
    const node = this.resolve(path);
    node.mtimeMs = this.opts.timeMs;
    this.markEntryChanged(node);
  }

  // ---- commit --------------------------------------------------------------------------------

  /** Hashes what changed, persists it and makes it the store's current snapshot. Ends the session. */
  commit(): SnapshotInfo {
    if (!this.txn) throw new FsError('EROFS', 'commit of a read-only session');
    this.assertOpen();
    const dirHash = this.commitNode(this.root);
    const rootHash = this.txn.put(ObjectKind.Root, encodeRoot(this.rootMode, this.root.mtimeMs, dirHash));
    const info = this.txn.commit(rootHash, { timeMs: this.opts.timeMs, bytes: this.bytes, files: this.files });
    this.closed = true;
    return info;
  }

  /** Drops every change of this session. */
  rollback(): void {
    if (this.closed) return;
    this.closed = true;
    this.txn?.abort();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  private commitNode(node: Node): Buffer {
    if (!node.dirty && node.hash) return node.hash;
    const txn = this.txn!;
    let hash: Buffer;
    if (node.kind === EntryKind.Dir) {
      const entries: DirEntry[] = [];
      for (const child of this.childrenOf(node).values()) {
        entries.push({ name: child.name, kind: child.kind, mode: child.mode, mtimeMs: child.mtimeMs, hash: this.commitNode(child) });
      }
      hash = txn.put(ObjectKind.Dir, encodeDir(entries));
    } else if (node.kind === EntryKind.Link) {
      hash = txn.put(ObjectKind.Link, Buffer.from(this.linkTarget(node)));
    } else {
      hash = this.commitFile(node);
    }
    node.hash = hash;
    node.dirty = false;
    return hash;
  }

  private commitFile(node: Node): Buffer {
    const txn = this.txn!;
    const blocks = this.blocksOf(node);
    const blockHash = this.blockHasher(node);
    const depth = fileDepth(blocks.length);
    if (depth === 0) return txn.put(ObjectKind.File, encodeFile(node.size, 0, blocks.map((_, i) => blockHash(i))));
    // Only the lists above changed blocks are re-hashed, so the cost follows the change, not the
    // file. Without the lists it was loaded with (a new file, or its depth changed), all of them are.
    const groups = Math.ceil(blocks.length / FANOUT);
    const known = node.lists?.length === depth;
    const lists = known ? node.lists! : Array.from({ length: depth }, (): Buffer[] => []);
    const dirty = new Set(known ? node.dirtyGroups : []);
    for (let g = known ? node.dirtyFrom : 0; g < groups; g++) dirty.add(g);
    let changed = [...dirty];
    let below = blockHash;
    let belowCount = blocks.length;
    for (let k = 1; k <= depth; k++) {
      const level = lists[k - 1];
      const count = Math.ceil(belowCount / FANOUT);
      level.length = count;
      for (const g of changed) {
        if (g >= count) continue;
        const children: Buffer[] = [];
        for (let i = g * FANOUT; i < Math.min(belowCount, (g + 1) * FANOUT); i++) children.push(below(i));
        level[g] = txn.put(ObjectKind.List, encodeList(k - 1, children));
      }
      changed = [...new Set(changed.map((g) => Math.floor(g / FANOUT)))];
      below = (i) => level[i];
      belowCount = count;
    }
    return txn.put(ObjectKind.File, encodeFile(node.size, depth, lists[depth - 1]));
  }

  /** Hash of block `idx` of a file being committed: stored as is, a dirty slot adopted in place, or zeros. */
  private blockHasher(node: Node): (idx: number) => Buffer {
    const txn = this.txn!;
    const bs = this.blockSize;
    const blocks = node.blocks!;
    const buf = Buffer.allocUnsafe(TAG_BYTES + bs);
    return (idx) => {
      const ref = blocks[idx];
      if (ref instanceof Buffer) return ref;
      const length = Math.min(bs, node.size - idx * bs);
      const view = buf.subarray(0, TAG_BYTES + length);
      if (typeof ref === 'number') {
        txn.readAt(ref, view, TAG_BYTES, length);
        const h = hashBlockInPlace(view);
        txn.adopt(h, ObjectKind.Block, ref, length);
        return h;
      }
      view.fill(0, TAG_BYTES);
      const h = hashBlockInPlace(view);
      if (!txn.has(h)) txn.put(ObjectKind.Block, Buffer.from(view.subarray(TAG_BYTES)));
      return h;
    };
  }

  // ---- helpers -------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) throw new FsError('EIO', 'the state session is closed');
  }

  private assertWritable(path: string): void {
    this.assertOpen();
    if (!this.txn) throw new FsError('EROFS', `${path}: this state view is read-only`);
  }

  private assertNewName(parent: Node, name: string, path: string): void {
    this.assertWritable(path);
    const err = nameError(name);
    if (err) throw new FsError(err, `${path}: invalid file name (no '/', NUL, '.', '..'; at most 255 bytes)`);
    if (name.startsWith(HIDDEN_PREFIX)) throw new FsError('EINVAL', `${path}: names starting with ${HIDDEN_PREFIX} are reserved`);
    if (this.childrenOf(parent).has(name)) throw new FsError('EEXIST', `${path}: already exists`);
    if (this.files + 1 > this.quota.files) throw new FsError('EDQUOT', `state quota of ${this.quota.files} files exceeded`);
  }

  private attach(parent: Node, node: Node): void {
    this.childrenOf(parent).set(node.name, node);
    parent.sortedNames = null;
    this.files += 1;
    this.touch(parent);
    markDirty(node);
  }

  private detach(node: Node): void {
    const parent = node.parent!;
    this.childrenOf(parent).delete(node.name);
    parent.sortedNames = null;
    node.parent = null;
    this.files -= 1;
    if (node.kind === EntryKind.File) this.bytes -= this.sizeOf(node);
    this.touch(parent);
  }

  /** Stamps a content change with the session clock. */
  private touch(node: Node): void {
    node.mtimeMs = this.opts.timeMs;
    markDirty(node);
  }

  /** Mode and mtime are stored in the parent's entry. */
  private markEntryChanged(node: Node): void {
    markDirty(node.parent ?? node);
  }

  pathOf(node: Node): string {
    if (node === this.root) return '/';
    for (const [p, n] of this.hidden) if (n === node) return p;
    const parts: string[] = [];
    for (let n: Node | null = node; n && n !== this.root; n = n.parent) parts.push(n.name);
    return '/' + parts.reverse().join('/');
  }
}

function newNode(kind: EntryKind, mode: number, mtimeMs: number, name: string, parent: Node | null, hash: Buffer | null): Node {
  return { kind, mode, mtimeMs, name, parent, hash, dirty: hash === null, children: null, sortedNames: null, size: 0, blocks: null, lists: null, dirtyGroups: null, dirtyFrom: Infinity, target: '' };
}

function nodeFromEntry(e: DirEntry, parent: Node): Node {
  const node = newNode(e.kind, e.mode, e.mtimeMs, e.name, parent, Buffer.from(e.hash));
  node.size = e.kind === EntryKind.File ? UNKNOWN_SIZE : 0; // read from the file node on first use
  return node;
}

/** Invariant: every ancestor of a dirty node is dirty, so the walk stops at the first dirty one. */
function markDirty(node: Node): void {
  node.dirty = true;
  for (let n = node.parent; n && !n.dirty; n = n.parent) n.dirty = true;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Stable 32-bit inode numbers from the path (FNV-1a): the same on every node, no counter state. */
function inodeNumber(path: string): number {
  if (path === '/') return 1;
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) {
    h ^= path.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h >>>= 0;
  return h < 2 ? h + 2 : h;
}

function countTree(store: ObjectStore, dirHash: Buffer): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (h: Buffer) => {
    for (const e of store.getDir(h)) {
      files++;
      if (e.kind === EntryKind.File) bytes += store.getFile(e.hash).size;
      else if (e.kind === EntryKind.Dir) walk(e.hash);
    }
  };
  walk(dirHash);
  return { bytes, files };
}

