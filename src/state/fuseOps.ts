// Path-based FUSE operation handlers over whichever Session is current, in fuse-native's calling
// convention (callback with a negative errno or 0 and results); lowLevelFuse.ts serves them. The
// operations it answers itself (flush, fsync, access, xattrs: ENOSYS; link, mknod: EPERM) are
// not here. Handlers are synchronous (sync fs calls are 2x faster than async ones on this path, see
// reference/dependencies.md §2) and turn every FsError or fs error into the matching negative
// errno; nothing unsupported fakes success.
import os from 'node:os';
import { FsError, Session } from './session';

type Cb = (...args: any[]) => void;

const EIO = -os.constants.errno.EIO;

export function errnoOf(err: unknown): number {
  const code = (err as { code?: string }).code;
  const errno = code ? (os.constants.errno as Record<string, number>)[code] : undefined;
  if (typeof errno === 'number' && errno > 0) return -errno;
  process.stderr.write(`statefs: internal error, answering EIO: ${(err as Error).stack ?? err}\n`);
  return EIO;
}

/** Calls per operation, printed at exit when HP_STATEFS_OPSTATS=1 (for finding chatty workloads). */
export function withOpCounts(ops: Record<string, Cb>): Record<string, Cb> {
  if (process.env.HP_STATEFS_OPSTATS !== '1') return ops;
  const counts: Record<string, number> = {};
  process.on('exit', () => process.stderr.write(`statefs op counts: ${JSON.stringify(counts)}\n`));
  return Object.fromEntries(Object.entries(ops).map(([name, fn]) => [name, (...args: unknown[]) => {
    counts[name] = (counts[name] ?? 0) + 1;
    return fn(...args);
  }]));
}

/** Operations that change the tree: the ones a WriteGate holds. */
const MUTATING = ['create', 'write', 'truncate', 'ftruncate', 'unlink', 'rename', 'mkdir', 'rmdir', 'symlink', 'chmod', 'chown', 'utimens'];

/**
 * Holds the changes to a session opened before its clock is known: a contract started ahead of its
 * ledger may read (load its code) but its first change waits until the ledger's time is set, so
 * every change is stamped with the round's time, as in a contract started after the close.
 */
export class WriteGate {
  private held = false;
  private queue: Array<(run: boolean) => void> = [];

  hold(): void {
    this.held = true;
  }

  get holding(): boolean {
    return this.held;
  }

  /** Lets held operations go in arrival order (run), or fails them with EIO (the run is dropped). */
  release(run: boolean): void {
    this.held = false;
    const queue = this.queue;
    this.queue = [];
    // One op that throws must not leave the ones after it (and their callers) waiting for ever.
    for (const op of queue) {
      try {
        op(run);
      } catch (err) {
        process.stderr.write(`statefs: a held operation failed: ${(err as Error).stack ?? err}\n`);
      }
    }
  }

  pass(cb: Cb, op: () => void): void {
    if (!this.held) return op();
    this.queue.push((run) => (run ? op() : cb(EIO)));
  }
}

export function makeFuseOps(current: () => Session, uid: number, gid: number, gate?: WriteGate): Record<string, Cb> {
  const ops = baseOps(current, uid, gid);
  if (gate) {
    for (const name of MUTATING) {
      const op = ops[name];
      ops[name] = (...args: unknown[]) => gate.pass(args[args.length - 1] as Cb, () => op(...args));
    }
  }
  return ops;
}

function baseOps(current: () => Session, uid: number, gid: number): Record<string, Cb> {
  // Runs `fn` and answers the kernel; `fn` returns the success values after the 0 status.
  const run = (cb: Cb, fn: () => unknown[] | void) => {
    let result: unknown[] | void;
    try {
      result = fn();
    } catch (err) {
      return cb(errnoOf(err));
    }
    return cb(0, ...(result ?? []));
  };
  const stat = (s: ReturnType<Session['getattr']>) => ({
    mode: s.mode, uid, gid, size: s.size, nlink: s.nlink, ino: s.ino, blksize: s.blksize, blocks: s.blocks,
    atime: s.mtimeMs, mtime: s.mtimeMs, ctime: s.mtimeMs,
  });
  return {
    getattr: (path: string, cb: Cb) => run(cb, () => [stat(current().getattr(path))]),
    fgetattr: (path: string, fd: number, cb: Cb) => run(cb, () => [stat(fd ? current().fgetattr(fd) : current().getattr(path))]),
    readdir: (path: string, cb: Cb) => run(cb, () => [current().readdir(path)]),
    readlink: (path: string, cb: Cb) => run(cb, () => [current().readlink(path)]),
    statfs: (_path: string, cb: Cb) => run(cb, () => {
      const s = current().statfs();
      const bsize = s.blockSize;
      const blocks = Math.min(0xffffffff, Math.floor(s.bytesTotal / bsize));
      const free = Math.min(blocks, Math.floor(s.bytesFree / bsize));
      const files = Math.min(0xffffffff, s.filesTotal);
      const ffree = Math.min(files, s.filesFree);
      return [{ bsize, frsize: bsize, blocks, bfree: free, bavail: free, files, ffree, favail: ffree, fsid: 0, flag: 0, namemax: 255 }];
    }),
    open: (path: string, flags: number, cb: Cb) => run(cb, () => [current().open(path, flags)]),
    opendir: (path: string, _flags: number, cb: Cb) => run(cb, () => {
      if (!(current().getattr(path).mode & 0o040000)) throw new FsError('ENOTDIR', `${path}: not a directory`);
      return [0];
    }),
    create: (path: string, mode: number, cb: Cb) => run(cb, () => [current().create(path, mode)]),
    release: (_path: string, fd: number, cb: Cb) => run(cb, () => void current().release(fd)),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => {
      try {
        cb(current().read(fd, buf, len, pos));
      } catch (err) {
        cb(errnoOf(err));
      }
    },
    write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => {
      try {
        cb(current().write(fd, buf, len, pos));
      } catch (err) {
        cb(errnoOf(err));
      }
    },
    truncate: (path: string, size: number, cb: Cb) => run(cb, () => void current().truncate(path, size)),
    ftruncate: (path: string, fd: number, size: number, cb: Cb) => run(cb, () => void (fd ? current().ftruncate(fd, size) : current().truncate(path, size))),
    unlink: (path: string, cb: Cb) => run(cb, () => void current().unlink(path)),
    rename: (src: string, dest: string, cb: Cb) => run(cb, () => void current().rename(src, dest)),
    mkdir: (path: string, mode: number, cb: Cb) => run(cb, () => void current().mkdir(path, mode)),
    rmdir: (path: string, cb: Cb) => run(cb, () => void current().rmdir(path)),
    symlink: (target: string, path: string, cb: Cb) => run(cb, () => void current().symlink(target, path)),
    chmod: (path: string, mode: number, cb: Cb) => run(cb, () => void current().chmod(path, mode)),
    chown: (path: string, u: number, g: number, cb: Cb) => run(cb, () => void current().chown(path, u, g)),
    utimens: (path: string, _atime: number, _mtime: number, cb: Cb) => run(cb, () => void current().utimens(path)),
  };
}
