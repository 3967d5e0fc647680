// Durable file operations on libuv's threads (an fsync on the event loop stalls everything the
// loop serves). A replaced file is written to `<file>.tmp`, fsync'ed, renamed over the file and the
// directory fsync'ed: a crash leaves the old version or the new one, never a mix.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** Replaces `file` with `data` atomically and durably. */
export async function replaceDurably(file: string, data: string | Uint8Array, mode = 0o666): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
  await syncDir(path.dirname(file));
}

/** Removes `file` durably; a file that is not there is fine. */
export async function removeDurably(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return;
  }
  await syncDir(path.dirname(file));
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fdatasync on a libuv thread; fs.fdatasync is looked up on each call, so a test can make it fail. */
export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}
