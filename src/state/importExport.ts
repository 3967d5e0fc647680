// Moving plain directories into and out of a state store, through the same Session code the FUSE
// mount uses (so an imported tree hashes exactly as if a contract had written it).
import fs from 'node:fs';
import path from 'node:path';
import { ObjectStore, SnapshotInfo } from './blockstore';
import { EntryKind } from './objects';
import { FsError, Session } from './session';
import { parseHashHex } from '../crypto/hash';

const COPY_CHUNK_BYTES = 1024 * 1024;

/**
 * Copies `srcDir` into the store as a new snapshot on top of the current one. Every imported entry
 * gets `timeMs` as its mtime (not the source's), so every node importing the same files gets the
 * same root. Only regular files, directories and symlinks can be imported.
 */
export function importDirectory(
  store: ObjectStore,
  srcDir: string,
  timeMs: number,
  opts: { under?: string; extraFiles?: Record<string, Buffer> } = {},
): SnapshotInfo {
  const session = new Session(store, Buffer.from(store.current.root, 'hex'), { writable: true, timeMs });
  try {
    const under = opts.under ?? '';
    if (under) session.mkdir(under, 0o755);
    for (const [p, data] of Object.entries(opts.extraFiles ?? {})) {
      const fh = session.create(p, 0o644);
      session.write(fh, data, data.length, 0);
      session.release(fh);
    }
    const buf = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
    const walk = (abs: string, rel: string) => {
      for (const name of fs.readdirSync(abs).sort()) {
        const a = path.join(abs, name);
        const r = `${rel}/${name}`;
        const st = fs.lstatSync(a);
        if (st.isDirectory()) {
          session.mkdir(r, st.mode & 0o7777);
          walk(a, r);
        } else if (st.isSymbolicLink()) {
          session.symlink(fs.readlinkSync(a), r);
        } else if (st.isFile()) {
          const fh = session.create(r, st.mode & 0o7777);
          const fd = fs.openSync(a, 'r');
          try {
            let pos = 0;
            for (;;) {
              const n = fs.readSync(fd, buf, 0, buf.length, pos);
              if (n === 0) break;
              session.write(fh, buf, n, pos);
              pos += n;
            }
          } finally {
            fs.closeSync(fd);
            session.release(fh);
          }
        } else {
          throw new FsError('EINVAL', `${a}: only files, directories and symlinks can be imported`);
        }
      }
    };
    walk(path.resolve(srcDir), under);
    return session.commit();
  } catch (err) {
    session.rollback();
    throw err;
  }
}

/** Writes the snapshot `root` (default: current) into `destDir` with modes and mtimes. */
export function exportSnapshot(store: ObjectStore, destDir: string, rootHex?: string): { files: number; bytes: number } {
  const root = rootHex ? parseHashHex(rootHex, 'root') : Buffer.from(store.current.root, 'hex');
  if (!store.has(root)) throw new Error(`root ${toHexSafe(root)} is not in the store ${store.dir} (see \`hp-node state root\` for the current one)`);
  const rootNode = store.getRoot(root);
  fs.mkdirSync(destDir, { recursive: true });
  let files = 0;
  let bytes = 0;
  const walk = (dirHash: Buffer, dest: string) => {
    const dirTimes: Array<[string, number]> = [];
    for (const e of store.getDir(dirHash)) {
      const out = path.join(dest, e.name);
      files++;
      if (e.kind === EntryKind.Dir) {
        fs.mkdirSync(out, { recursive: true });
        walk(e.hash, out);
        fs.chmodSync(out, e.mode);
        dirTimes.push([out, e.mtimeMs]);
      } else if (e.kind === EntryKind.Link) {
        fs.rmSync(out, { force: true });
        fs.symlinkSync(store.getLink(e.hash), out);
      } else {
        const { size, blocks } = store.fileBlocks(e.hash);
        const fd = fs.openSync(out, 'w', e.mode);
        try {
          let pos = 0;
          for (const b of blocks) {
            const data = store.get(b);
            fs.writeSync(fd, data, 0, data.length, pos);
            pos += data.length;
          }
          fs.ftruncateSync(fd, size);
        } finally {
          fs.closeSync(fd);
        }
        fs.chmodSync(out, e.mode);
        fs.utimesSync(out, e.mtimeMs / 1000, e.mtimeMs / 1000);
        bytes += size;
      }
    }
    for (const [p, t] of dirTimes) fs.utimesSync(p, t / 1000, t / 1000);
  };
  walk(rootNode.dir, destDir);
  fs.chmodSync(destDir, rootNode.mode);
  return { files, bytes };
}

function toHexSafe(b: Buffer): string {
  return b.toString('hex');
}
