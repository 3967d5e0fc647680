// The object store under a state directory: append-only pack files of content-addressed objects,
// an append-only index (hash → pack, offset, length, kind) and one HEAD file that names what is
// committed. Never one OS file per block.
//
// Layout of <store>/:
//   HEAD               JSON, replaced atomically (tmp + fsync + rename + dir fsync) at every commit
//   index.<gen>        52-byte records; only the first HEAD.indexBytes bytes are valid
//   packs/<id>.pack    object bytes; only the first HEAD.activePackBytes of the active pack are valid
//   LOCK               pid of the one writer process
//
// Crash safety: a commit writes pack bytes, fsyncs, appends index records, fsyncs, then swaps HEAD.
// Whatever a crash leaves past the lengths HEAD names is torn or uncommitted, and a writer that
// opens the store truncates it away, so the store always opens at the last committed root.
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { HASH_BYTES, toHex } from '../crypto/hash';
import { fdatasync, replaceDurably } from '../io/durable';
import {
  decodeDir, decodeFile, decodeList, decodeRoot, encodeDir, encodeRoot, EntryKind, hashObject, hashTaggedInPlace, ObjectKind, TAG_BYTES,
} from './objects';

export const DEFAULT_BLOCK_SIZE_BYTES = 64 * 1024;
export const DEFAULT_RETAIN_SNAPSHOTS = 16;
/** A new pack is started once the active one passes this size, so GC can rewrite packs piecemeal. */
const PACK_ROLL_BYTES = 1024 * 1024 * 1024;
const INDEX_RECORD_BYTES = 52;
/** Dirty bytes after which a transaction starts flushing its pack in the background. */
const FLUSH_AHEAD_BYTES = 16 * 1024 * 1024;
const PUT_BATCH_BYTES = 1024 * 1024;
/** Read size of damagedObjects(): large enough that syscalls vanish, small enough to stay in cache. */
const VERIFY_CHUNK_BYTES = 8 * 1024 * 1024;
const FORMAT = 1;

export interface ObjectLocation {
  kind: ObjectKind;
  pack: number;
  offset: number;
  length: number;
}

export interface SnapshotInfo {
  root: string; // hex
  commit: number; // commit counter of the store, grows by one per commit
  timeMs: number; // the session clock the snapshot was committed with
  bytes: number; // logical bytes of all files
  files: number; // files + dirs + links, root excluded
}

interface Head {
  format: number;
  blockSizeBytes: number;
  indexGen: number;
  indexBytes: number;
  activePack: number;
  activePackBytes: number;
  commits: number;
  retainSnapshots: number;
  snapshots: SnapshotInfo[]; // oldest first; the last one is the current state
}

export class StoreError extends Error {
  constructor(message: string, readonly code: string = 'EIO') {
    super(message);
  }
}

export interface OpenOptions {
  readOnly?: boolean;
  /** How long a writer waits for a live previous writer to exit (ms). */
  lockWaitMs?: number;
}

export class ObjectStore {
  private readonly index = new Map<string, ObjectLocation>();
  private readonly packFds = new Map<number, number>();
  private readonly verified = new Set<string>();
  private indexFd = -1;
  private txn: StoreTxn | null = null;
  /** Roots held by open read-only sessions, kept alive by GC whatever the retention says. */
  readonly pins = new Map<string, number>();

  private constructor(readonly dir: string, private head: Head, readonly readOnly: boolean) {}

  get blockSizeBytes(): number {
    return this.head.blockSizeBytes;
  }

  get current(): SnapshotInfo {
    return this.head.snapshots[this.head.snapshots.length - 1];
  }

  get snapshots(): readonly SnapshotInfo[] {
    return this.head.snapshots;
  }

  /** Creates an empty store whose root is an empty directory with mode 0755 and the given time. */
  static create(dir: string, opts: { blockSizeBytes?: number; timeMs?: number; retainSnapshots?: number } = {}): ObjectStore {
    const blockSizeBytes = opts.blockSizeBytes ?? DEFAULT_BLOCK_SIZE_BYTES;
    if (!Number.isInteger(blockSizeBytes) || blockSizeBytes < 4096 || blockSizeBytes > 16 * 1024 * 1024 || (blockSizeBytes & (blockSizeBytes - 1)) !== 0) {
      throw new StoreError(`invalid block size ${blockSizeBytes}: use a power of two between 4096 and 16 MiB`, 'EINVAL');
    }
    if (fs.existsSync(path.join(dir, 'HEAD'))) throw new StoreError(`${dir} already holds a state store (HEAD exists)`, 'EEXIST');
    fs.mkdirSync(path.join(dir, 'packs'), { recursive: true });
    const head: Head = {
      format: FORMAT,
      blockSizeBytes,
      indexGen: 1,
      indexBytes: 0,
      activePack: 1,
      activePackBytes: 0,
      commits: 0,
      retainSnapshots: opts.retainSnapshots ?? DEFAULT_RETAIN_SNAPSHOTS,
      snapshots: [],
    };
    fs.writeFileSync(path.join(dir, `index.${head.indexGen}`), '');
    fs.writeFileSync(path.join(dir, 'packs', `${head.activePack}.pack`), '');
    const store = new ObjectStore(dir, head, false);
    store.acquireLock();
    store.openFiles();
    const txn = store.begin();
    const emptyDir = txn.put(ObjectKind.Dir, encodeDir([]));
    const root = txn.put(ObjectKind.Root, encodeRoot(0o755, opts.timeMs ?? 0, emptyDir));
    txn.commit(root, { timeMs: opts.timeMs ?? 0, bytes: 0, files: 0 });
    return store;
  }

  static open(dir: string, opts: OpenOptions = {}): ObjectStore {
    const head = readHead(dir);
    const store = new ObjectStore(dir, head, !!opts.readOnly);
    if (!store.readOnly) {
      store.acquireLock(opts.lockWaitMs ?? 0);
      store.recover();
    }
    store.openFiles();
    store.loadIndex();
    return store;
  }

  /** Reads just the committed root of a store, without loading its index. */
  static readCurrentRoot(dir: string): SnapshotInfo {
    const head = readHead(dir);
    return head.snapshots[head.snapshots.length - 1];
  }

  close(): void {
    if (this.txn) this.txn.abort();
    for (const fd of this.packFds.values()) fs.closeSync(fd);
    this.packFds.clear();
    if (this.indexFd >= 0) fs.closeSync(this.indexFd);
    this.indexFd = -1;
    if (!this.readOnly) {
      try {
        if (fs.readFileSync(this.lockPath(), 'utf8').trim() === String(process.pid)) fs.unlinkSync(this.lockPath());
      } catch { /* already gone */ }
    }
  }

  has(hash: Buffer): boolean {
    return this.index.has(toHex(hash));
  }

  locate(hash: Buffer): ObjectLocation | undefined {
    return this.index.get(toHex(hash));
  }

  /** Reads and verifies one object; throws StoreError if it is missing or its bytes do not hash to it. */
  get(hash: Buffer, expectKind?: ObjectKind): Buffer {
    const hex = toHex(hash);
    const loc = this.index.get(hex);
    if (!loc) throw new StoreError(`object ${hex} is not in the store at ${this.dir}`, 'ENOENT');
    if (expectKind !== undefined && loc.kind !== expectKind) {
      throw new StoreError(`object ${hex} is a ${ObjectKind[loc.kind]}, expected a ${ObjectKind[expectKind]}`);
    }
    // Read with room for the tag in front, so verification hashes in place without a copy.
    const buf = Buffer.allocUnsafe(TAG_BYTES + loc.length);
    const content = buf.subarray(TAG_BYTES);
    this.readAt(loc.pack, loc.offset, content);
    if (!this.verified.has(hex)) {
      if (!hashTaggedInPlace(loc.kind, buf).equals(hash)) {
        throw new StoreError(`corrupt store ${this.dir}: object ${hex} in pack ${loc.pack} at ${loc.offset} does not match its hash; restore the node from peers`);
      }
      // Blocks are re-read often (every FUSE read); tree nodes are small, so only blocks are cached.
      if (loc.kind === ObjectKind.Block) this.verified.add(hex);
    }
    return content;
  }

  /**
   * Copies bytes [start, start+length) of block `hash` into `into`, zero-filling past its end.
   * A block already verified in this process is read straight into `into` (no buffer, no copy).
   */
  readBlockRange(hash: Buffer, start: number, into: Buffer, intoOffset: number, length: number): void {
    const hex = toHex(hash);
    const loc = this.index.get(hex);
    let n: number;
    if (loc && loc.kind === ObjectKind.Block && this.verified.has(hex)) {
      n = Math.max(0, Math.min(length, loc.length - start));
      if (n > 0) this.readAt(loc.pack, loc.offset + start, into.subarray(intoOffset, intoOffset + n));
    } else {
      const block = this.get(hash, ObjectKind.Block);
      n = Math.max(0, Math.min(length, block.length - start));
      block.copy(into, intoOffset, start, start + n);
    }
    if (n < length) into.fill(0, intoOffset + n, intoOffset + length);
  }

  /**
   * Hex hashes of stored objects whose bytes on disk no longer hash to them. Reads each pack in
   * order, in chunks of many objects, and hashes them in place: a fraction of the cost of get()
   * per object (no buffer per object, no random reads), so a start-up check of a whole store is
   * bounded by the disk and BLAKE3, not by syscalls.
   */
  damagedObjects(): Set<string> {
    const bad = new Set<string>();
    const byPack = new Map<number, Array<[string, ObjectLocation]>>();
    for (const entry of this.index) {
      let list = byPack.get(entry[1].pack);
      if (!list) byPack.set(entry[1].pack, (list = []));
      list.push(entry);
    }
    // Each object is hashed where it lies, its kind's tag written over the 8 bytes before it
    // (the previous object's tail, already hashed, or the chunk's head room) and put back after.
    const chunk = Buffer.allocUnsafe(TAG_BYTES + VERIFY_CHUNK_BYTES);
    const saved = Buffer.allocUnsafe(TAG_BYTES);
    for (const [pack, list] of byPack) {
      list.sort((a, b) => a[1].offset - b[1].offset);
      for (let i = 0; i < list.length; ) {
        const start = list[i][1].offset;
        let end = start + list[i][1].length;
        let j = i + 1;
        while (j < list.length && list[j][1].offset + list[j][1].length - start <= VERIFY_CHUNK_BYTES) end = Math.max(end, list[j][1].offset + list[j++][1].length);
        const buf = end - start <= VERIFY_CHUNK_BYTES ? chunk.subarray(0, TAG_BYTES + end - start) : Buffer.allocUnsafe(TAG_BYTES + end - start);
        let readable = true;
        try {
          this.readAt(pack, start, buf.subarray(TAG_BYTES));
        } catch {
          readable = false; // the pack ends early: check these one by one
        }
        for (let k = i; k < j; k++) {
          const [hex, loc] = list[k];
          if (!readable) {
            try {
              this.get(Buffer.from(hex, 'hex'));
            } catch {
              bad.add(hex);
            }
            continue;
          }
          const at = loc.offset - start; // the tag goes at buf[at .. at+8), the object follows
          buf.copy(saved, 0, at, at + TAG_BYTES);
          if (toHex(hashTaggedInPlace(loc.kind, buf.subarray(at, at + TAG_BYTES + loc.length))) !== hex) bad.add(hex);
          saved.copy(buf, at);
        }
        i = j;
      }
    }
    return bad;
  }

  /** Marks blocks this process has just hashed itself (at commit) as verified. */
  markVerified(hexes: Iterable<string>): void {
    for (const h of hexes) this.verified.add(h);
  }

  getRoot(hash: Buffer): { mode: number; mtimeMs: number; dir: Buffer } {
    return decodeRoot(this.get(hash, ObjectKind.Root));
  }

  getDir(hash: Buffer) {
    return decodeDir(this.get(hash, ObjectKind.Dir));
  }

  getFile(hash: Buffer) {
    return decodeFile(this.get(hash, ObjectKind.File));
  }

  /**
   * A file's size, its ordered block hashes and the hashes of its list nodes by level
   * (`lists[k - 1]`: the lists k levels above the blocks; the last level is the file node's
   * children), so a commit can re-hash only the lists above changed blocks.
   */
  fileBlocks(fileHash: Buffer): { size: number; blocks: Buffer[]; lists: Buffer[][] } {
    const file = this.getFile(fileHash);
    const lists: Buffer[][] = [];
    let level = file.children;
    for (let depth = file.depth; depth > 0; depth--) {
      lists[depth - 1] = level;
      const next: Buffer[] = [];
      for (const h of level) {
        const list = decodeList(this.get(h, ObjectKind.List));
        if (list.depth !== depth - 1) throw new StoreError(`corrupt list node ${toHex(h)}: depth ${list.depth}, expected ${depth - 1}`);
        next.push(...list.children);
      }
      level = next;
    }
    return { size: file.size, blocks: level, lists };
  }

  /** The object hash of the entry at `path` ("/a/b") in snapshot `root`, or null if there is none. */
  entryHash(root: Buffer, path: string): Buffer | null {
    let dir = this.getRoot(root).dir;
    const parts = path.split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) {
      const e = this.getDir(dir).find((x) => x.name === parts[i]);
      if (!e) return null;
      if (i === parts.length - 1) return e.hash;
      if (e.kind !== EntryKind.Dir) return null;
      dir = e.hash;
    }
    return dir;
  }

  getLink(hash: Buffer): string {
    return this.get(hash, ObjectKind.Link).toString();
  }

  /**
   * Reads objects into the given buffers on libuv's threads, one readv per run of objects lying back
   * to back in one pack (the blocks of one file usually do), so a server never blocks its event
   * loop on the disk. Not verified (see get()). The store must stay open until this settles.
   */
  async readInto(locs: readonly ObjectLocation[], intos: readonly Buffer[]): Promise<void> {
    const runs: Array<Promise<void>> = [];
    for (let i = 0; i < locs.length;) {
      let j = i + 1;
      while (j < locs.length && locs[j].pack === locs[i].pack && locs[j].offset === locs[j - 1].offset + locs[j - 1].length) j++;
      runs.push(this.readRun(locs[i].pack, locs[i].offset, intos.slice(i, j)));
      i = j;
    }
    await Promise.all(runs);
  }

  private async readRun(pack: number, offset: number, run: Buffer[]): Promise<void> {
    const fd = this.packFd(pack);
    let bufs = run.filter((b) => b.length > 0);
    let at = offset;
    while (bufs.length > 0) {
      const n = await new Promise<number>((resolve, reject) => fs.readv(fd, bufs, at, (err, read) => (err ? reject(err) : resolve(read))));
      if (n === 0) throw new StoreError(`corrupt store ${this.dir}: pack ${pack} ends before offset ${at + bufs.reduce((k, b) => k + b.length, 0)}`);
      at += n;
      // Past a short read: drop the buffers filled, go on in the one filled in part.
      let left = n;
      while (bufs.length > 0 && left >= bufs[0].length) left -= bufs.shift()!.length;
      if (left > 0) bufs[0] = bufs[0].subarray(left);
    }
  }

  readAt(pack: number, offset: number, into: Buffer): void {
    const fd = this.packFd(pack);
    let done = 0;
    while (done < into.length) {
      const n = fs.readSync(fd, into, done, into.length - done, offset + done);
      if (n === 0) throw new StoreError(`corrupt store ${this.dir}: pack ${pack} ends before offset ${offset + into.length}`);
      done += n;
    }
  }

  /** Starts the one write transaction of this store (a session's scratch space and its commit). */
  begin(): StoreTxn {
    if (this.readOnly) throw new StoreError(`store ${this.dir} is open read-only`, 'EROFS');
    if (this.txn) throw new StoreError('a write transaction is already open on this store', 'EBUSY');
    if (this.head.activePackBytes >= PACK_ROLL_BYTES) this.rollPack();
    this.txn = new StoreTxn(this, this.head.activePack, this.packFd(this.head.activePack), this.head.activePackBytes);
    return this.txn;
  }

  /** Called by StoreTxn. */
  finishTxn(txn: StoreTxn, outcome: { root: Buffer | null; meta: Omit<SnapshotInfo, 'root' | 'commit'>; added: Map<string, ObjectLocation>; packBytes: number } | null): SnapshotInfo | null {
    if (this.txn !== txn) throw new StoreError('transaction is not the open one');
    this.txn = null;
    if (!outcome) {
      fs.ftruncateSync(this.packFd(txn.pack), this.head.activePackBytes);
      return null;
    }
    fs.fdatasyncSync(this.packFd(txn.pack));
    const records = indexRecords(outcome.added);
    if (records.length > 0) {
      fs.writeSync(this.indexFd, records, 0, records.length, this.head.indexBytes);
      fs.fdatasyncSync(this.indexFd);
    }
    // A null root stores objects without making a snapshot (sync checkpoints): durable, but
    // unreachable until a snapshot that needs them is imported (gc may drop them before).
    const snapshot: SnapshotInfo | null = outcome.root ? { root: toHex(outcome.root), commit: this.head.commits + 1, ...outcome.meta } : null;
    const snapshots = snapshot ? [...this.head.snapshots, snapshot].slice(-Math.max(1, this.head.retainSnapshots)) : this.head.snapshots;
    this.writeHead({
      ...this.head,
      indexBytes: this.head.indexBytes + records.length,
      activePackBytes: outcome.packBytes,
      commits: snapshot?.commit ?? this.head.commits,
      snapshots,
    });
    this.register(outcome.added);
    return snapshot;
  }

  /**
   * Called by StoreTxn.checkpoint(): makes `entries` (all within the first `packBytes` of the
   * pack, whose writes have completed) durable and part of the store while the transaction stays
   * open. The same steps as a commit without a snapshot, each on a libuv thread.
   */
  async checkpointTxn(txn: StoreTxn, entries: ReadonlyArray<[string, ObjectLocation]>, packBytes: number): Promise<void> {
    if (this.txn !== txn) throw new StoreError('transaction is not the open one');
    await fdatasync(this.packFd(txn.pack));
    const records = indexRecords(entries);
    await writeAsync(this.indexFd, records, 0, records.length, this.head.indexBytes);
    await fdatasync(this.indexFd);
    const head = { ...this.head, indexBytes: this.head.indexBytes + records.length, activePackBytes: packBytes };
    await replaceDurably(path.join(this.dir, 'HEAD'), headText(head));
    this.head = head;
    this.register(entries);
  }

  /** Objects a transaction made durable join the index; its blocks were hashed from these very bytes. */
  private register(entries: Iterable<[string, ObjectLocation]>): void {
    for (const [hex, loc] of entries) {
      this.index.set(hex, loc);
      if (loc.kind === ObjectKind.Block) this.verified.add(hex);
    }
  }

  private rollPack(): void {
    const id = this.head.activePack + 1;
    fs.writeFileSync(path.join(this.dir, 'packs', `${id}.pack`), '');
    fsyncDir(path.join(this.dir, 'packs'));
    this.writeHead({ ...this.head, activePack: id, activePackBytes: 0 });
  }

  /**
   * Drops objects no retained or pinned snapshot reaches, rewriting packs that are mostly garbage.
   * Crash-safe: new pack and index are durable before HEAD names them; old files go last.
   */
  gc(opts: { minGarbageRatio?: number } = {}): { packsRewritten: number; bytesFreed: number; objectsLive: number } {
    if (this.readOnly || this.txn) throw new StoreError('gc needs the writer and no open transaction', 'EBUSY');
    const live = new Set<string>();
    const roots = [...this.head.snapshots.map((s) => s.root), ...this.pins.keys()];
    for (const root of roots) this.markLive(Buffer.from(root, 'hex'), ObjectKind.Root, live);
    const liveBytes = new Map<number, number>();
    const totalBytes = new Map<number, number>();
    for (const [hex, loc] of this.index) {
      totalBytes.set(loc.pack, (totalBytes.get(loc.pack) ?? 0) + loc.length);
      if (live.has(hex)) liveBytes.set(loc.pack, (liveBytes.get(loc.pack) ?? 0) + loc.length);
    }
    const minGarbage = opts.minGarbageRatio ?? 0.5;
    const victims = new Set<number>();
    for (const pack of this.listPacks()) {
      const size = this.packDiskBytes(pack);
      if (size === 0 && pack === this.head.activePack) continue;
      if ((liveBytes.get(pack) ?? 0) <= size * (1 - minGarbage)) victims.add(pack);
    }
    const droppedEntries = [...this.index.keys()].some((hex) => !live.has(hex));
    if (victims.size === 0 && !droppedEntries) return { packsRewritten: 0, bytesFreed: 0, objectsLive: live.size };

    const newPack = Math.max(...this.listPacks(), this.head.activePack) + 1;
    const newPackPath = this.packPath(newPack);
    const newFd = fs.openSync(newPackPath, 'w+');
    const newIndex = new Map<string, ObjectLocation>();
    let offset = 0;
    let bytesFreed = 0;
    for (const [hex, loc] of this.index) {
      if (!live.has(hex)) continue;
      if (!victims.has(loc.pack)) {
        newIndex.set(hex, loc);
        continue;
      }
      const buf = Buffer.allocUnsafe(loc.length);
      this.readAt(loc.pack, loc.offset, buf);
      fs.writeSync(newFd, buf, 0, buf.length, offset);
      newIndex.set(hex, { ...loc, pack: newPack, offset });
      offset += loc.length;
    }
    fs.fdatasyncSync(newFd);
    this.packFds.set(newPack, newFd);
    for (const v of victims) bytesFreed += this.packDiskBytes(v);
    bytesFreed -= offset;

    const indexGen = this.head.indexGen + 1;
    const records = Buffer.alloc(newIndex.size * INDEX_RECORD_BYTES);
    let o = 0;
    for (const [hex, loc] of newIndex) {
      writeIndexRecord(records, o, hex, loc);
      o += INDEX_RECORD_BYTES;
    }
    const indexPath = path.join(this.dir, `index.${indexGen}`);
    const indexFd = fs.openSync(indexPath, 'w+');
    fs.writeSync(indexFd, records, 0, records.length, 0);
    fs.fdatasyncSync(indexFd);
    fsyncDir(path.join(this.dir, 'packs'));
    const oldIndexGen = this.head.indexGen;
    const activeIsVictim = victims.has(this.head.activePack);
    this.writeHead({
      ...this.head,
      indexGen,
      indexBytes: records.length,
      activePack: activeIsVictim ? newPack : this.head.activePack,
      activePackBytes: activeIsVictim ? offset : this.head.activePackBytes,
    });
    fs.closeSync(this.indexFd);
    this.indexFd = indexFd;
    fs.rmSync(path.join(this.dir, `index.${oldIndexGen}`), { force: true });
    for (const v of victims) {
      const fd = this.packFds.get(v);
      if (fd !== undefined) fs.closeSync(fd);
      this.packFds.delete(v);
      fs.rmSync(this.packPath(v), { force: true });
    }
    if (!activeIsVictim && offset === 0) {
      // Nothing was moved; the empty new pack is not referenced by anything.
      fs.closeSync(newFd);
      this.packFds.delete(newPack);
      fs.rmSync(newPackPath, { force: true });
    }
    this.index.clear();
    for (const [hex, loc] of newIndex) this.index.set(hex, loc);
    for (const hex of this.verified) if (!newIndex.has(hex)) this.verified.delete(hex);
    return { packsRewritten: victims.size, bytesFreed: Math.max(0, bytesFreed), objectsLive: live.size };
  }

  /**
   * Builds a snapshot from objects fetched elsewhere (state sync): each object is stored under the
   * hash of its own bytes (so nothing unverified can be stored under a hash it does not have), then
   * the tree under `root` must be complete, and only then does `root` become the current snapshot.
   * Objects the store already has need not be passed. Throws, storing nothing, if anything is missing.
   */
  importSnapshot(root: Buffer, objects: Iterable<{ kind: ObjectKind; content: Buffer }>, timeMs: number): SnapshotInfo {
    const txn = this.begin();
    try {
      for (const o of objects) txn.put(o.kind, o.content);
      let bytes = 0;
      let files = 0;
      const need = (h: Buffer, what: string) => {
        if (!txn.has(h)) throw new StoreError(`cannot import snapshot ${toHex(root)}: ${what} ${toHex(h)} is missing`, 'ENOENT');
      };
      const walkFile = (h: Buffer) => {
        const f = decodeFile(txn.get(h));
        bytes += f.size;
        let level = f.children;
        for (let d = f.depth; d > 0; d--) {
          level.forEach((c) => need(c, 'list node'));
          level = level.flatMap((c) => decodeList(txn.get(c)).children);
        }
        level.forEach((b) => need(b, 'block'));
      };
      const walkDir = (h: Buffer) => {
        need(h, 'directory');
        for (const e of decodeDir(txn.get(h))) {
          files++;
          need(e.hash, EntryKind[e.kind].toLowerCase());
          if (e.kind === EntryKind.Dir) walkDir(e.hash);
          else if (e.kind === EntryKind.File) walkFile(e.hash);
        }
      };
      need(root, 'root');
      walkDir(decodeRoot(txn.get(root)).dir);
      return txn.commit(root, { timeMs, bytes, files });
    } catch (err) {
      txn.abort();
      throw err;
    }
  }

  /**
   * Runs gc once packs hold more than twice the largest retained snapshot plus `slackBytes`:
   * cheap to check after every commit, and bounds disk use to a small multiple of live state.
   */
  maybeGc(slackBytes = 256 * 1024 * 1024): ReturnType<ObjectStore['gc']> | null {
    const live = Math.max(...this.head.snapshots.map((s) => s.bytes));
    if (this.packBytes() <= 2 * live + slackBytes) return null;
    return this.gc();
  }

  /** Disk bytes held by pack files, for GC heuristics and status. */
  packBytes(): number {
    let total = 0;
    for (const p of this.listPacks()) total += this.packDiskBytes(p);
    return total;
  }

  /** Bytes a pack really occupies: slots of small files leave holes, which cost no disk. */
  private packDiskBytes(pack: number): number {
    const st = fs.statSync(this.packPath(pack));
    const valid = pack === this.head.activePack ? this.head.activePackBytes : st.size;
    return Math.min(valid, st.blocks * 512);
  }

  private markLive(hash: Buffer, kind: ObjectKind, live: Set<string>): void {
    const hex = toHex(hash);
    if (live.has(hex)) return;
    live.add(hex);
    switch (kind) {
      case ObjectKind.Root:
        this.markLive(this.getRoot(hash).dir, ObjectKind.Dir, live);
        break;
      case ObjectKind.Dir:
        for (const e of this.getDir(hash)) {
          const k = e.kind === EntryKind.Dir ? ObjectKind.Dir : e.kind === EntryKind.File ? ObjectKind.File : ObjectKind.Link;
          this.markLive(e.hash, k, live);
        }
        break;
      case ObjectKind.File: {
        const f = this.getFile(hash);
        for (const c of f.children) this.markLive(c, f.depth === 0 ? ObjectKind.Block : ObjectKind.List, live);
        break;
      }
      case ObjectKind.List: {
        const l = decodeList(this.get(hash, ObjectKind.List));
        for (const c of l.children) this.markLive(c, l.depth === 0 ? ObjectKind.Block : ObjectKind.List, live);
        break;
      }
      default:
        break;
    }
  }

  private writeHead(head: Head): void {
    const tmp = path.join(this.dir, 'HEAD.tmp');
    const fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, headText(head));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, path.join(this.dir, 'HEAD'));
    fsyncDir(this.dir);
    this.head = head;
  }

  private lockPath(): string {
    return path.join(this.dir, 'LOCK');
  }

  /**
   * Takes the writer lock. A live holder gets up to `waitMs` to go away first: a statefs child
   * whose parent was just killed is still unmounting when the restarted node opens the store.
   */
  private acquireLock(waitMs = 0): void {
    const lock = this.lockPath();
    const deadline = Date.now() + waitMs;
    for (;;) {
      let holder = 0;
      try {
        holder = Number(fs.readFileSync(lock, 'utf8').trim());
      } catch { /* no lock file */ }
      if (!holder || holder === process.pid || !processAlive(holder)) break;
      if (Date.now() >= deadline) {
        throw new StoreError(`state store ${this.dir} is in use by process ${holder}; stop it first (or open read-only)`, 'EBUSY');
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
    fs.writeFileSync(lock, `${process.pid}\n`);
  }

  /** Drops whatever a crash left past the committed lengths (torn index tail, uncommitted packs). */
  private recover(): void {
    const indexPath = path.join(this.dir, `index.${this.head.indexGen}`);
    if (fs.statSync(indexPath).size > this.head.indexBytes) fs.truncateSync(indexPath, this.head.indexBytes);
    for (const name of fs.readdirSync(this.dir)) {
      const m = /^index\.(\d+)$/.exec(name);
      if ((m && Number(m[1]) !== this.head.indexGen) || name === 'HEAD.tmp') fs.rmSync(path.join(this.dir, name), { force: true });
    }
    const activePath = this.packPath(this.head.activePack);
    if (!fs.existsSync(activePath)) fs.writeFileSync(activePath, '');
    if (fs.statSync(activePath).size > this.head.activePackBytes) fs.truncateSync(activePath, this.head.activePackBytes);
    for (const p of this.listPacks()) {
      if (p > this.head.activePack) fs.rmSync(this.packPath(p), { force: true });
    }
  }

  private openFiles(): void {
    this.indexFd = fs.openSync(path.join(this.dir, `index.${this.head.indexGen}`), this.readOnly ? 'r' : 'r+');
  }

  private loadIndex(): void {
    const buf = Buffer.allocUnsafe(this.head.indexBytes);
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.indexFd, buf, done, buf.length - done, done);
      if (n === 0) throw new StoreError(`corrupt store ${this.dir}: index shorter than HEAD says (${done} < ${buf.length})`);
      done += n;
    }
    for (let o = 0; o + INDEX_RECORD_BYTES <= buf.length; o += INDEX_RECORD_BYTES) {
      const hex = buf.toString('hex', o, o + HASH_BYTES);
      this.index.set(hex, {
        kind: buf[o + 32] as ObjectKind,
        pack: buf.readUInt32BE(o + 36),
        length: buf.readUInt32BE(o + 40),
        offset: Number(buf.readBigUInt64BE(o + 44)),
      });
    }
  }

  private listPacks(): number[] {
    return fs.readdirSync(path.join(this.dir, 'packs'))
      .map((n) => /^(\d+)\.pack$/.exec(n))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]));
  }

  private packPath(id: number): string {
    return path.join(this.dir, 'packs', `${id}.pack`);
  }

  packFd(id: number): number {
    let fd = this.packFds.get(id);
    if (fd === undefined) {
      fd = fs.openSync(this.packPath(id), this.readOnly ? 'r' : 'r+');
      this.packFds.set(id, fd);
    }
    return fd;
  }
}

/**
 * One write transaction: a bump allocator over the active pack past its committed end. Sessions
 * keep dirty blocks in slots here, so a commit registers them where they already are instead of
 * copying; tree nodes are appended at commit. Abort truncates the pack back.
 */
export class StoreTxn {
  private next: number;
  private unflushedBytes = 0;
  private flushing = false;
  /** Objects appended by put() and not yet written: tree nodes are small, so they go out in batches. */
  private pending: Buffer[] = [];
  private pendingStart = 0;
  private pendingBytes = 0;
  private readonly added = new Map<string, ObjectLocation>();
  private done = false;
  /** Write-behind (a sync's bulk puts): batches are written on libuv's threads, see writeBehind(). */
  private behind = false;
  private inflight = 0;
  private writeError: Error | null = null;
  private drained: Array<() => void> = [];
  /** Asynchronous writes not yet completed (a checkpoint waits for those issued before it). */
  private readonly writes = new Set<Promise<void>>();
  private checkpointing = false;

  constructor(private readonly store: ObjectStore, readonly pack: number, readonly fd: number, readonly base: number) {
    this.next = base;
  }

  /** Reserves `length` bytes aligned to `align`, returning their pack offset. */
  alloc(length: number, align = 1): number {
    this.assertOpen();
    this.writePending();
    const offset = Math.ceil(this.next / align) * align;
    this.next = offset + length;
    return offset;
  }

  writeAt(offset: number, data: Uint8Array, dataOffset = 0, length = data.length - dataOffset): void {
    let done = 0;
    while (done < length) done += fs.writeSync(this.fd, data, dataOffset + done, length - done, offset + done);
    this.noteWritten(length);
  }

  private noteWritten(length: number): void {
    this.unflushedBytes += length;
    if (this.unflushedBytes >= FLUSH_AHEAD_BYTES && !this.flushing) {
      // Start writing dirty slots to disk on a libuv thread while FUSE keeps the JS thread busy,
      // so the fsync at commit finds little left to do.
      this.flushing = true;
      this.unflushedBytes = 0;
      fs.fdatasync(this.fd, () => (this.flushing = false));
    }
  }

  readAt(offset: number, into: Buffer, intoOffset = 0, length = into.length - intoOffset): number {
    if (this.inflight > 0) throw new StoreError('read from a write-behind transaction before drain()', 'EBUSY');
    if (this.pendingBytes > 0 && offset + length > this.pendingStart) this.writePending();
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, into, intoOffset + done, length - done, offset + done);
      if (n === 0) break; // past the end of a sparse slot: the rest reads as zeros
      done += n;
    }
    if (done < length) into.fill(0, intoOffset + done, intoOffset + length);
    return length;
  }

  has(hash: Buffer): boolean {
    const hex = toHex(hash);
    return this.added.has(hex) || this.store.has(hash);
  }

  /** Registers bytes already written at `offset` as the object `hash` (no-op if it exists). */
  adopt(hash: Buffer, kind: ObjectKind, offset: number, length: number): void {
    this.assertOpen();
    if (this.has(hash)) return;
    this.added.set(toHex(hash), { kind, pack: this.pack, offset, length });
  }

  /**
   * Appends an object unless the store already has it; returns its hash. `replace` stores it even
   * so: a repaired copy of an object whose stored bytes were found corrupt (the index's last
   * record for a hash wins, now and when the index is reloaded). `verifiedHash`: the caller has
   * just hashed `content` itself (a sync checks every object it fetches), so it is not hashed again.
   */
  put(kind: ObjectKind, content: Buffer, replace = false, verifiedHash?: Buffer): Buffer {
    const hash = verifiedHash ?? hashObject(kind, content);
    if (this.has(hash) && !(replace && !this.added.has(toHex(hash)))) return hash;
    this.assertOpen();
    if (this.pendingBytes === 0) this.pendingStart = this.next;
    const offset = this.next;
    this.next += content.length;
    this.pending.push(content);
    this.pendingBytes += content.length;
    if (this.pendingBytes >= PUT_BATCH_BYTES) this.writePending(this.behind);
    this.added.set(toHex(hash), { kind, pack: this.pack, offset, length: content.length });
    return hash;
  }

  /**
   * From now on put() writes its batches asynchronously, so the caller's thread keeps working (a
   * sync receiving the next objects) while the kernel takes the bytes, however slowly the disk
   * drains its page cache. The caller bounds the bytes in flight with drain(); persist() and
   * commit() need drain(0) first.
   */
  writeBehind(): void {
    this.behind = true;
  }

  /**
   * Resolves once everything put so far is written to the pack (put's current batch goes out now):
   * from then on the pack no longer reads the callers' buffers, which may be reused.
   */
  async written(): Promise<void> {
    if (!this.done) this.writePending(this.behind);
    await Promise.all([...this.writes]);
  }

  /** Bytes handed to the kernel and not yet written. */
  get inflightBytes(): number {
    return this.inflight;
  }

  /** Resolves once at most `maxInflight` bytes are still being written; rejects if a write failed. */
  async drain(maxInflight = 0): Promise<void> {
    while (this.inflight > maxInflight) await new Promise<void>((r) => this.drained.push(r));
    if (this.writeError) throw this.writeError;
  }

  private writePending(async = false): void {
    if (this.pendingBytes === 0) return;
    const batch = this.pending;
    const length = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    if (async) {
      this.inflight += length;
      const write = new Promise<void>((resolve) =>
        fs.writev(this.fd, batch, this.pendingStart, (err, n) => {
          this.inflight -= length;
          this.writes.delete(write);
          if (err || n < length) this.writeError ??= new StoreError(`cannot write to pack ${this.pack}: ${err?.message ?? `short write (${n} of ${length} bytes)`}`);
          else this.noteWritten(length);
          const waiting = this.drained;
          this.drained = [];
          for (const w of waiting) w();
          resolve();
        }),
      );
      this.writes.add(write);
      return;
    }
    if (batch.length === 1) return this.writeAt(this.pendingStart, batch[0]);
    // One gathered write (no concatenated copy) while it completes, the usual case.
    const n = fs.writevSync(this.fd, batch, this.pendingStart);
    this.noteWritten(n);
    if (n < length) this.writeAt(this.pendingStart + n, Buffer.concat(batch, length).subarray(n));
  }

  /** Reads an object written in this transaction or already committed. */
  get(hash: Buffer): Buffer {
    const loc = this.added.get(toHex(hash));
    if (!loc) return this.store.get(hash);
    const buf = Buffer.allocUnsafe(loc.length);
    this.readAt(loc.offset, buf);
    return buf;
  }

  commit(root: Buffer, meta: Omit<SnapshotInfo, 'root' | 'commit'>): SnapshotInfo {
    this.assertOpen();
    this.assertDrained();
    if (!this.has(root)) throw new StoreError(`commit of root ${toHex(root)} that was never written`);
    this.writePending();
    this.done = true;
    return this.store.finishTxn(this, { root, meta, added: this.added, packBytes: this.next })!;
  }

  /**
   * Makes the objects put so far durable and part of the store (a sync's resume point) while the
   * transaction stays open: puts go on meanwhile and become durable at the next checkpoint, persist
   * or commit. The flushes run on libuv's threads, so the caller's thread is never blocked on the
   * disk. One at a time; await it before commit(), persist() or abort().
   */
  async checkpoint(): Promise<void> {
    this.assertOpen();
    this.assertNoCheckpoint();
    this.checkpointing = true;
    try {
      this.writePending(this.behind);
      const packBytes = this.next;
      const entries = [...this.added];
      await Promise.all([...this.writes]);
      if (this.writeError) throw this.writeError;
      await this.store.checkpointTxn(this, entries, packBytes);
      for (const [hex] of entries) this.added.delete(hex);
    } finally {
      this.checkpointing = false;
    }
  }

  /** Makes the objects put so far durable without a new snapshot, and ends the transaction. */
  persist(): void {
    this.assertOpen();
    this.assertDrained();
    this.writePending();
    this.done = true;
    this.store.finishTxn(this, { root: null, meta: { timeMs: 0, bytes: 0, files: 0 }, added: this.added, packBytes: this.next });
  }

  abort(): void {
    if (this.done) return;
    this.assertNoCheckpoint();
    this.done = true;
    this.store.finishTxn(this, null);
  }

  get isOpen(): boolean {
    return !this.done;
  }

  private assertDrained(): void {
    this.assertNoCheckpoint();
    if (this.inflight > 0) throw new StoreError('write-behind transaction not drained: await drain() first', 'EBUSY');
    if (this.writeError) throw this.writeError;
  }

  private assertOpen(): void {
    if (this.done) throw new StoreError('transaction already finished');
  }

  /** Ending the transaction while a checkpoint writes HEAD would race it. */
  private assertNoCheckpoint(): void {
    if (this.checkpointing) throw new StoreError('a checkpoint of this transaction is still running: await it first', 'EBUSY');
  }
}

const writeAsync = promisify(fs.write);

function headText(head: Head): string {
  return JSON.stringify(head, null, 1) + '\n';
}

function indexRecords(entries: Iterable<[string, ObjectLocation]> & ({ size: number } | { length: number })): Buffer {
  const n = 'size' in entries ? entries.size : entries.length;
  const records = Buffer.alloc(n * INDEX_RECORD_BYTES);
  let o = 0;
  for (const [hex, loc] of entries) {
    writeIndexRecord(records, o, hex, loc);
    o += INDEX_RECORD_BYTES;
  }
  return records;
}

function writeIndexRecord(buf: Buffer, o: number, hex: string, loc: ObjectLocation): void {
  buf.write(hex, o, HASH_BYTES, 'hex');
  buf[o + 32] = loc.kind;
  buf.writeUInt32BE(loc.pack, o + 36);
  buf.writeUInt32BE(loc.length, o + 40);
  buf.writeBigUInt64BE(BigInt(loc.offset), o + 44);
}

function readHead(dir: string): Head {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'HEAD'), 'utf8');
  } catch (err) {
    throw new StoreError(`${dir} is not a state store (no HEAD file): create one with \`hp-node state init ${dir}\``, 'ENOENT');
  }
  const head = JSON.parse(text) as Head;
  if (head.format !== FORMAT) throw new StoreError(`state store ${dir} has format ${head.format}; this hp-node reads format ${FORMAT}`);
  if (!head.snapshots?.length) throw new StoreError(`corrupt state store ${dir}: HEAD names no snapshot`);
  return head;
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
