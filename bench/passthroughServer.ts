// A raw fuse-native passthrough of a backing directory: the baseline our statefs mount is measured
// against. Run only as a forked child (`fork(this, [backingDir, mountpoint])`): the FUSE-serving
// process must never touch its own mount, and the parent's pipe tells it when to unmount.
// Handlers use sync fs calls (2x faster than async ones here, reference/dependencies.md §2); the
// FUSE file handle is the backing file's own fd.
import fs from 'node:fs';
import path from 'node:path';
import Fuse from 'fuse-native';

type Cb = (...args: any[]) => void;

export type PassthroughMessage = { type: 'ready' } | { type: 'error'; error: string };

/** Answers the kernel with fn's results, or the negative errno of whatever fn threw. */
function run(cb: Cb, fn: () => unknown[] | void): void {
  let result: unknown[] | void;
  try {
    result = fn();
  } catch (err) {
    return cb(errnoOf(err));
  }
  cb(0, ...(result ?? []));
}

/** read/write answer with a byte count (or a negative errno) as their only argument. */
function runCount(cb: Cb, fn: () => number): void {
  try {
    cb(fn());
  } catch (err) {
    cb(errnoOf(err));
  }
}

function errnoOf(err: unknown): number {
  const errno = (err as NodeJS.ErrnoException).errno;
  return typeof errno === 'number' && errno < 0 ? errno : Fuse.EIO;
}

export function passthroughOps(backing: string): Record<string, Cb> {
  const p = (rel: string) => path.join(backing, rel);
  return {
    getattr: (rel: string, cb: Cb) => run(cb, () => [fs.lstatSync(p(rel))]),
    // fuse-native routes fgetattr to getattr anyway (§1 item 2); kept for completeness.
    fgetattr: (rel: string, fd: number, cb: Cb) => run(cb, () => [fd ? fs.fstatSync(fd) : fs.lstatSync(p(rel))]),
    access: (rel: string, mode: number, cb: Cb) => run(cb, () => fs.accessSync(p(rel), mode)),
    statfs: (rel: string, cb: Cb) => run(cb, () => {
      const s = fs.statfsSync(p(rel));
      return [{ bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: 255 }];
    }),
    readdir: (rel: string, cb: Cb) => run(cb, () => [fs.readdirSync(p(rel))]),
    readlink: (rel: string, cb: Cb) => run(cb, () => [fs.readlinkSync(p(rel))]),
    open: (rel: string, flags: number, cb: Cb) => run(cb, () => [fs.openSync(p(rel), flags)]),
    create: (rel: string, mode: number, cb: Cb) => run(cb, () => [fs.openSync(p(rel), 'w+', mode)]),
    release: (_rel: string, fd: number, cb: Cb) => run(cb, () => fs.closeSync(fd)),
    read: (_rel: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => runCount(cb, () => fs.readSync(fd, buf, 0, len, pos)),
    write: (_rel: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) => runCount(cb, () => fs.writeSync(fd, buf, 0, len, pos)),
    // The real argument order is (path, datasync, fd, cb), not the README's (§1 item 1).
    fsync: (_rel: string, datasync: number, fd: number, cb: Cb) => run(cb, () => (datasync ? fs.fdatasyncSync(fd) : fs.fsyncSync(fd))),
    flush: (_rel: string, _fd: number, cb: Cb) => cb(0),
    truncate: (rel: string, size: number, cb: Cb) => run(cb, () => fs.truncateSync(p(rel), size)),
    ftruncate: (rel: string, fd: number, size: number, cb: Cb) => run(cb, () => (fd ? fs.ftruncateSync(fd, size) : fs.truncateSync(p(rel), size))),
    unlink: (rel: string, cb: Cb) => run(cb, () => fs.unlinkSync(p(rel))),
    rename: (src: string, dest: string, cb: Cb) => run(cb, () => fs.renameSync(p(src), p(dest))),
    mkdir: (rel: string, mode: number, cb: Cb) => run(cb, () => fs.mkdirSync(p(rel), mode)),
    rmdir: (rel: string, cb: Cb) => run(cb, () => fs.rmdirSync(p(rel))),
    symlink: (target: string, rel: string, cb: Cb) => run(cb, () => fs.symlinkSync(target, p(rel))),
    chmod: (rel: string, mode: number, cb: Cb) => run(cb, () => fs.chmodSync(p(rel), mode)),
    utimens: (rel: string, atimeMs: number, mtimeMs: number, cb: Cb) => run(cb, () => fs.utimesSync(p(rel), atimeMs / 1000, mtimeMs / 1000)),
  };
}

function main(): void {
  const [backing, mountpoint] = process.argv.slice(2);
  if (!backing || !mountpoint || !process.send) {
    process.stderr.write('passthroughServer: fork it with [backingDir, mountpoint] and an IPC channel\n');
    process.exit(2);
  }
  const send = (m: PassthroughMessage) => process.connected && process.send!(m);
  const fuse = new Fuse(mountpoint, passthroughOps(path.resolve(backing)), {
    force: true,
    mkdir: true,
    autoUnmount: true, // libfuse's helper unmounts even if this process is SIGKILLed
    fsname: 'pt,big_writes', // the only way to pass big_writes through fuse-native (§1 item 3)
  });
  let exiting = false;
  const exit = () => {
    if (exiting) return;
    exiting = true;
    fuse.unmount(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('disconnect', exit); // parent gone: never serve an orphaned mount
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
  fuse.mount((err) => {
    if (err) {
      send({ type: 'error', error: err.message });
      process.exit(3);
    }
    send({ type: 'ready' });
  });
}

if (require.main === module) main();
