// Serves the path-based statefs operations (fuseOps.ts) through native/hp-fuse.c: libfuse 3's
// inode-based low-level API, polled on this process's event loop. A request costs two thread
// wake-ups instead of fuse-native's four (~40 us instead of ~70-100 us per request on 2 cores),
// writes arrive in 1 MiB pieces, and file pages stay in the kernel's cache across opens.
//
// The kernel names files by node id; NodeTable maps ids to (parent id, name), as libfuse 2's
// high-level layer did for fuse-native, so the Session keeps its path API. A file unlinked or
// renamed over while the kernel or a handle still refers to it is first renamed to a hidden name
// in its directory (".fuse_hidden" + 16 hex digits, which the Session keeps out of the state) and
// removed once its last handle is closed and the kernel has forgotten it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanStaleMounts } from './mounts';
import { LIBFUSE_HIDDEN_NAME } from './session';

type Cb = (...args: any[]) => void;
export type PathOps = Record<string, Cb>;

interface Binding {
  mount(mountpoint: string, options: string, handlers: object): number;
  unmount(): void;
  replyErr(slot: number, errno: number): void;
  replyEntry(slot: number, attr: Float64Array, timeoutSec: number): void;
  replyAttr(slot: number, attr: Float64Array, timeoutSec: number): void;
  replyCreate(slot: number, attr: Float64Array, timeoutSec: number, fh: number, flags: number): void;
  replyOpen(slot: number, fh: number, flags: number): void;
  replyBuf(slot: number, buf: Buffer, length: number): void;
  replyWrite(slot: number, count: number): void;
  replyReadlink(slot: number, target: string): void;
  replyStatfs(slot: number, values: Float64Array): void;
}

const BINDING_PATH = path.join(__dirname, '..', '..', '..', 'native', 'build', 'hp_fuse.node');
let binding: Binding | null = null;

function loadBinding(): Binding {
  if (binding) return binding;
  try {
    binding = require(BINDING_PATH) as Binding;
  } catch (err) {
    throw new Error(`cannot load ${BINDING_PATH} (${(err as Error).message}): build it with \`npm run build\` (needs gcc and libfuse3-dev; scripts/setup.sh installs them)`);
  }
  return binding;
}

/** Kernel cache lifetime of entries, negative entries and attributes: see statefsChild.ts. */
const CACHE_SEC = 3600;
const ROOT_ID = 1;
const OPEN_KEEP_CACHE = 1;
const OPEN_NOFLUSH = 4;
const FUSE_UNKNOWN_INO = 0xffffffff;
const DT_DIR = 4;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
// mtime, mtime_now: atime is not kept (an atime-only change must leave the entry as it is)
const SET_MTIME = (1 << 5) | (1 << 8);
const NO_ID = 0xffffffff; // chown's "leave unchanged"

const E = os.constants.errno;

interface NodeEntry {
  parent: number; // 0 once unlinked
  name: string;
  nlookup: number;
  open: number;
}

/** The kernel's node ids and where each one sits in the tree now. */
export class NodeTable {
  private readonly nodes = new Map<number, NodeEntry>();
  private readonly byName = new Map<string, number>();
  private nextId = ROOT_ID + 1;

  constructor() {
    this.clear();
  }

  clear(): void {
    this.nodes.clear();
    this.byName.clear();
    this.nodes.set(ROOT_ID, { parent: 0, name: '', nlookup: 1, open: 0 });
    this.nextId = ROOT_ID + 1;
  }

  private static key(parent: number, name: string): string {
    return `${parent}/${name}`;
  }

  /** The node's path now, or null if it was unlinked (or the id is unknown). */
  path(id: number): string | null {
    if (id === ROOT_ID) return '/';
    const parts: string[] = [];
    for (let at = id; at !== ROOT_ID;) {
      const n = this.nodes.get(at);
      if (!n || n.parent === 0) return null;
      parts.push(n.name);
      at = n.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  childPath(parent: number, name: string): string | null {
    const dir = this.path(parent);
    return dir === null ? null : dir === '/' ? `/${name}` : `${dir}/${name}`;
  }

  idOf(parent: number, name: string): number | undefined {
    return this.byName.get(NodeTable.key(parent, name));
  }

  /** The id of (parent, name), counting one more kernel reference to it. */
  ref(parent: number, name: string): number {
    const key = NodeTable.key(parent, name);
    let id = this.byName.get(key);
    if (id === undefined) {
      id = this.nextId++;
      this.nodes.set(id, { parent, name, nlookup: 0, open: 0 });
      this.byName.set(key, id);
    }
    this.nodes.get(id)!.nlookup += 1;
    return id;
  }

  /** Counts the kernel letting go; returns the node's path if it was hidden and is now unused. */
  forget(id: number, count: number): string | null {
    const n = this.nodes.get(id);
    if (!n || id === ROOT_ID) return null;
    n.nlookup = Math.max(0, n.nlookup - count);
    return this.releaseIfUnused(id, n);
  }

  opened(id: number): void {
    const n = this.nodes.get(id);
    if (n) n.open += 1;
  }

  /** Counts a close; returns the node's path if it was hidden and is now unused. */
  closed(id: number): string | null {
    const n = this.nodes.get(id);
    if (!n) return null;
    n.open = Math.max(0, n.open - 1);
    return this.releaseIfUnused(id, n);
  }

  /** Whether the kernel (a lookup it has not forgotten) or an open handle still refers to the node. */
  isHeld(id: number | undefined): boolean {
    const n = id === undefined ? undefined : this.nodes.get(id);
    return n !== undefined && (n.nlookup > 0 || n.open > 0);
  }

  isOpen(id: number | undefined): boolean {
    return id !== undefined && (this.nodes.get(id)?.open ?? 0) > 0;
  }

  private releaseIfUnused(id: number, n: NodeEntry): string | null {
    const hiddenPath = n.nlookup === 0 && n.open === 0 && isHiddenName(n.name) ? this.path(id) : null;
    this.dropIfUnused(id, n);
    return hiddenPath;
  }

  /** (parent, name) is gone from the tree: its node lives on only while the kernel or a handle holds it. */
  unlinked(parent: number, name: string): void {
    const key = NodeTable.key(parent, name);
    const id = this.byName.get(key);
    if (id === undefined) return;
    this.byName.delete(key);
    const n = this.nodes.get(id)!;
    n.parent = 0;
    this.dropIfUnused(id, n);
  }

  moved(parent: number, name: string, newParent: number, newName: string): void {
    this.unlinked(newParent, newName);
    const key = NodeTable.key(parent, name);
    const id = this.byName.get(key);
    if (id === undefined) return;
    this.byName.delete(key);
    const n = this.nodes.get(id)!;
    n.parent = newParent;
    n.name = newName;
    this.byName.set(NodeTable.key(newParent, newName), id);
  }

  private dropIfUnused(id: number, n: NodeEntry): void {
    if (n.nlookup > 0 || n.open > 0) return;
    this.nodes.delete(id);
    if (n.parent !== 0 && this.byName.get(NodeTable.key(n.parent, n.name)) === id) this.byName.delete(NodeTable.key(n.parent, n.name));
  }
}

let hiddenCounter = 0;
const isHiddenName = (name: string) => LIBFUSE_HIDDEN_NAME.test(name);
const nextHiddenName = () => `.fuse_hidden${(process.pid >>> 0).toString(16).padStart(8, '0')}${(++hiddenCounter >>> 0).toString(16).padStart(8, '0')}`;

export interface LowLevelFuseOptions {
  readOnly: boolean;
  /** True while mutating operations are being held (their write data must then be copied). */
  holding: () => boolean;
}

/** One FUSE mount served by the native helper; at most one per process at a time. */
export class LowLevelFuse {
  private readonly table = new NodeTable();
  private readonly dirs = new Map<number, string[] | null>();
  private nextDirHandle = 1;
  private readBuf = Buffer.alloc(128 * 1024);
  private readonly attr = new Float64Array(10);
  private readonly statfsValues = new Float64Array(6);
  private mounted = false;

  constructor(readonly mountpoint: string, private readonly ops: PathOps, private readonly opts: LowLevelFuseOptions) {}

  mount(cb: (err: Error | null) => void): void {
    try {
      const b = loadBinding();
      fs.mkdirSync(this.mountpoint, { recursive: true });
      cleanStaleMounts(this.mountpoint);
      this.table.clear();
      this.dirs.clear();
      const options = ['fsname=hpstate', 'subtype=hpstate', 'allow_other', 'auto_unmount', this.opts.readOnly ? 'ro' : 'rw'].join(',');
      b.mount(this.mountpoint, options, guarded(this.handlers(), b));
      this.mounted = true;
    } catch (err) {
      return cb(err as Error);
    }
    cb(null);
  }

  unmount(cb: (err: Error | null) => void): void {
    try {
      if (this.mounted) loadBinding().unmount();
      this.mounted = false;
    } catch (err) {
      return cb(err as Error);
    }
    cb(null);
  }

  private handlers(): Record<string, (slot: number, ...args: any[]) => void> {
    const b = loadBinding();
    const ops = this.ops;
    const table = this.table;
    const attr = this.attr;
    const fail = (slot: number, errno: number) => b.replyErr(slot, errno < 0 ? -errno : errno || E.EIO);
    const fillAttr = (id: number, st: { ino: number; mode: number; nlink: number; uid: number; gid: number; size: number; blocks: number; blksize: number; mtime: number }) => {
      attr.set([id, st.ino, st.mode, st.nlink, st.uid, st.gid, st.size, st.blocks, st.blksize, st.mtime]);
      return attr;
    };
    /** Answers with the attributes of node `id`, by handle if there is one. */
    const replyAttr = (slot: number, id: number, p: string, fh: number) => {
      const reply = (err: number, st: never) => (err ? fail(slot, err) : b.replyAttr(slot, fillAttr(id, st), CACHE_SEC));
      if (fh) ops.fgetattr(p, fh, reply);
      else ops.getattr(p, reply);
    };
    /** Path of an id, or answers ENOENT (a node unlinked meanwhile) and returns null. */
    const pathOr = (slot: number, id: number): string | null => {
      const p = table.path(id);
      if (p === null) fail(slot, E.ENOENT);
      return p;
    };
    const childOr = (slot: number, parent: number, name: string): string | null => {
      const p = table.childPath(parent, name);
      if (p === null) fail(slot, E.ENOENT);
      return p;
    };
    /** Stats a just-made entry and answers with it (one more kernel reference to its id). */
    const replyNewEntry = (slot: number, parent: number, name: string, p: string) =>
      ops.getattr(p, (err: number, st: never) => (err ? fail(slot, err) : b.replyEntry(slot, fillAttr(table.ref(parent, name), st), CACHE_SEC)));
    /**
     * Moves (parent, name) to a hidden name, then runs `then`: for a node something still refers
     * to (table.isHeld): an open handle, or the kernel, which may have walked a path to it just
     * before an unlink or a rename over it and then asks about it by id. A disk filesystem answers
     * such calls for the old file; so does the hidden name, until the last close and the FORGET.
     */
    const hideAside = (slot: number, parent: number, name: string, then: () => void) => {
      const hidden = nextHiddenName();
      ops.rename(table.childPath(parent, name)!, table.childPath(parent, hidden)!, (err: number) => {
        if (err) return fail(slot, err);
        table.moved(parent, name, parent, hidden);
        then();
      });
    };

    return {
      lookup: (slot: number, parent: number, name: string) => {
        const p = childOr(slot, parent, name);
        if (p === null) return;
        ops.getattr(p, (err: number, st: never) => {
          if (err === -E.ENOENT) {
            attr.fill(0); // node id 0: the kernel caches the name's absence
            return b.replyEntry(slot, attr, CACHE_SEC);
          }
          if (err) return fail(slot, err);
          b.replyEntry(slot, fillAttr(table.ref(parent, name), st), CACHE_SEC);
        });
      },
      forget: (_slot: number, id: number, count: number) => {
        const hidden = table.forget(id, count);
        if (hidden !== null) ops.unlink(hidden, () => undefined); // gone with its session already, at worst
      },
      getattr: (slot: number, id: number, fh: number) => {
        const p = fh ? table.path(id) ?? '' : pathOr(slot, id);
        if (p === null) return;
        replyAttr(slot, id, p, fh);
      },
      setattr: (slot: number, id: number, toSet: number, mode: number, uid: number, gid: number, size: number, fh: number) => {
        // Only a size change can go by handle alone; the rest needs the node's path (never '',
        // which the Session reads as the root).
        const p = fh && !(toSet & ~SET_SIZE) ? table.path(id) ?? '' : pathOr(slot, id);
        if (p === null) return;
        const steps: Array<(next: Cb) => void> = [];
        if (toSet & SET_MODE) steps.push((next) => ops.chmod(p, mode, next));
        if (toSet & (SET_UID | SET_GID)) steps.push((next) => ops.chown(p, toSet & SET_UID ? uid : NO_ID, toSet & SET_GID ? gid : NO_ID, next));
        if (toSet & SET_SIZE) steps.push((next) => (fh ? ops.ftruncate(p, fh, size, next) : ops.truncate(p, size, next)));
        if (toSet & SET_MTIME) steps.push((next) => ops.utimens(p, 0, 0, next));
        const finish = () => replyAttr(slot, id, p, fh);
        const step = (i: number) => (i === steps.length ? finish() : steps[i]((err: number) => (err ? fail(slot, err) : step(i + 1))));
        step(0);
      },
      readlink: (slot: number, id: number) => {
        const p = pathOr(slot, id);
        if (p !== null) ops.readlink(p, (err: number, target: string) => (err ? fail(slot, err) : b.replyReadlink(slot, target)));
      },
      mkdir: (slot: number, parent: number, name: string, mode: number) => {
        const p = childOr(slot, parent, name);
        if (p !== null) ops.mkdir(p, mode, (err: number) => (err ? fail(slot, err) : replyNewEntry(slot, parent, name, p)));
      },
      unlink: (slot: number, parent: number, name: string) => {
        const p = childOr(slot, parent, name);
        if (p === null) return;
        if (table.isHeld(table.idOf(parent, name))) return hideAside(slot, parent, name, () => b.replyErr(slot, 0));
        ops.unlink(p, (err: number) => {
          if (err) return fail(slot, err);
          table.unlinked(parent, name);
          b.replyErr(slot, 0);
        });
      },
      rmdir: (slot: number, parent: number, name: string) => {
        const p = childOr(slot, parent, name);
        if (p === null) return;
        ops.rmdir(p, (err: number) => {
          if (err) return fail(slot, err);
          table.unlinked(parent, name);
          b.replyErr(slot, 0);
        });
      },
      symlink: (slot: number, target: string, parent: number, name: string) => {
        const p = childOr(slot, parent, name);
        if (p !== null) ops.symlink(target, p, (err: number) => (err ? fail(slot, err) : replyNewEntry(slot, parent, name, p)));
      },
      rename: (slot: number, parent: number, name: string, newParent: number, newName: string) => {
        const from = childOr(slot, parent, name);
        const to = from === null ? null : childOr(slot, newParent, newName);
        if (from === null || to === null) return;
        const go = () => ops.rename(from, to, (err: number) => {
          if (err) return fail(slot, err);
          table.moved(parent, name, newParent, newName);
          b.replyErr(slot, 0);
        });
        if (!table.isHeld(table.idOf(newParent, newName))) return go();
        // Only a non-directory replacing another is moved aside first: the checks that involve a
        // directory (ENOTEMPTY, EISDIR, ENOTDIR) need the target where it is.
        const isDir = (st: { mode: number }) => (st.mode & S_IFMT) === S_IFDIR;
        ops.getattr(to, (err: number, st: never) => {
          if (err || isDir(st)) return go();
          ops.getattr(from, (e: number, fromSt: never) => (e || isDir(fromSt) ? go() : hideAside(slot, newParent, newName, go)));
        });
      },
      open: (slot: number, id: number, flags: number) => {
        const p = pathOr(slot, id);
        if (p === null) return;
        ops.open(p, flags, (err: number, fh: number) => {
          if (err) return fail(slot, err);
          table.opened(id);
          // Page cache kept across opens: every change to a file goes through this mount, and a
          // swap the kernel does not see (rollback, refresh) remounts.
          b.replyOpen(slot, fh, OPEN_KEEP_CACHE | OPEN_NOFLUSH);
        });
      },
      create: (slot: number, parent: number, name: string, mode: number) => {
        const p = childOr(slot, parent, name);
        if (p === null) return;
        ops.create(p, mode, (err: number, fh: number) => {
          if (err) return fail(slot, err);
          ops.fgetattr(p, fh, (e: number, st: never) => {
            if (e) return fail(slot, e);
            const id = table.ref(parent, name);
            table.opened(id);
            b.replyCreate(slot, fillAttr(id, st), CACHE_SEC, fh, OPEN_KEEP_CACHE | OPEN_NOFLUSH);
          });
        });
      },
      read: (slot: number, _id: number, fh: number, size: number, offset: number) => {
        if (this.readBuf.length < size) this.readBuf = Buffer.alloc(size);
        const buf = this.readBuf;
        ops.read('', fh, buf, size, offset, (n: number) => (n < 0 ? fail(slot, n) : b.replyBuf(slot, buf, n)));
      },
      write: (slot: number, _id: number, fh: number, data: Buffer, size: number, offset: number) => {
        // The data lives in libfuse's receive buffer until this handler returns.
        const own = this.opts.holding() ? Buffer.from(data) : data;
        ops.write('', fh, own, size, offset, (n: number) => (n < 0 ? fail(slot, n) : b.replyWrite(slot, n)));
      },
      release: (slot: number, id: number, fh: number) => {
        ops.release('', fh, () => {
          const hidden = table.closed(id);
          if (hidden === null) return b.replyErr(slot, 0);
          ops.unlink(hidden, () => b.replyErr(slot, 0));
        });
      },
      opendir: (slot: number, id: number) => {
        const p = pathOr(slot, id);
        if (p === null) return;
        ops.opendir(p, 0, (err: number) => {
          if (err) return fail(slot, err);
          const dh = this.nextDirHandle++;
          this.dirs.set(dh, null);
          b.replyOpen(slot, dh, 0);
        });
      },
      readdir: (slot: number, id: number, dh: number, size: number, offset: number) => {
        const listed = this.dirs.get(dh);
        const answer = (names: string[]) => b.replyBuf(slot, ...direntBuffer(names, offset, size));
        if (listed && offset > 0) return answer(listed);
        const p = pathOr(slot, id);
        if (p === null) return;
        ops.readdir(p, (err: number, names: string[]) => {
          if (err) return fail(slot, err);
          const all = ['.', '..', ...names];
          if (this.dirs.has(dh)) this.dirs.set(dh, all);
          answer(all);
        });
      },
      releasedir: (_slot: number, _id: number, dh: number) => void this.dirs.delete(dh),
      statfs: (slot: number) => {
        ops.statfs('/', (err: number, s: { bsize: number; blocks: number; bfree: number; files: number; ffree: number; namemax: number }) => {
          if (err) return fail(slot, err);
          this.statfsValues.set([s.bsize, s.blocks, s.bfree, s.files, s.ffree, s.namemax]);
          b.replyStatfs(slot, this.statfsValues);
        });
      },
    };
  }
}

/**
 * A handler that throws (a bug, never a caller's bad input: those come back as errnos) answers its
 * request with EIO and the mount goes on serving everyone else, instead of the exception taking
 * the statefs child down.
 */
export function guarded(handlers: Record<string, (slot: number, ...args: any[]) => void>, b: Binding): Record<string, (slot: number, ...args: any[]) => void> {
  return Object.fromEntries(Object.entries(handlers).map(([name, fn]) => [name, (slot: number, ...args: unknown[]) => {
    try {
      fn(slot, ...args);
    } catch (err) {
      process.stderr.write(`statefs: ${name} failed, answering EIO: ${(err as Error).stack ?? err}\n`);
      if (slot >= 0) b.replyErr(slot, E.EIO); // reported, not thrown, if it had been answered already
    }
  }]));
}

/** struct fuse_dirent records for names[offset..] that fit in `size` bytes: [buffer, length]. */
export function direntBuffer(names: string[], offset: number, size: number): [Buffer, number] {
  const out = Buffer.alloc(size);
  let at = 0;
  for (let i = offset; i < names.length; i++) {
    const nameBytes = Buffer.byteLength(names[i]);
    const recLen = (24 + nameBytes + 7) & ~7;
    if (at + recLen > size) break;
    out.writeBigUInt64LE(BigInt(FUSE_UNKNOWN_INO), at);
    out.writeBigUInt64LE(BigInt(i + 1), at + 8); // the offset of the next entry
    out.writeUInt32LE(nameBytes, at + 16);
    out.writeUInt32LE(i < 2 ? DT_DIR : 0, at + 20); // DT_UNKNOWN for the rest: callers stat if they care
    out.write(names[i], at + 24);
    at += recLen;
  }
  return [out, at];
}
