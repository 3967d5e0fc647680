// The user inputs file: every input at a 4096-aligned offset of one regular file, so contracts can
// pread it (Node SDK) or mmap it (C SDK). Unlinked as soon as it is open, like a memfd.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import type { InputSpans } from './args';

const ALIGN = 4096;
const ZEROS = Buffer.alloc(ALIGN);

/** /dev/shm (tmpfs, no disk I/O) when usable, else the OS temp dir. */
async function defaultDir(): Promise<string> {
  try {
    await fs.access('/dev/shm', fs.constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}

/** Creates the (unlinked) inputs file, empty: fillInputsFile() writes it once the run is known. */
export async function openInputsFile(dir?: string): Promise<fs.FileHandle> {
  const file = path.join(dir ?? (await defaultDir()), `hp-inputs-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
  const fh = await fs.open(file, 'wx+', 0o600);
  try {
    await fs.unlink(file);
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}

/** Writes every user's inputs into an empty inputs file; returns their [offset, length] spans. */
export async function fillInputsFile(fh: fs.FileHandle, perUser: Buffer[][]): Promise<InputSpans> {
  // One writev of [input, zero padding, input, ...]: libuv splits it at IOV_MAX and retries
  // partial writes, so even thousands of inputs cost one thread-pool round trip.
  const spans: InputSpans = [];
  const bufs: Buffer[] = [];
  let pos = 0;
  for (const inputs of perUser) {
    const userSpans: Array<[number, number]> = [];
    for (const input of inputs) {
      const pad = (ALIGN - (pos % ALIGN)) % ALIGN;
      if (pad > 0) bufs.push(ZEROS.subarray(0, pad));
      pos += pad;
      userSpans.push([pos, input.length]);
      if (input.length > 0) bufs.push(input);
      pos += input.length;
    }
    spans.push(userSpans);
  }
  if (bufs.length > 0) {
    const { bytesWritten } = await fh.writev(bufs, 0);
    if (bytesWritten !== pos) throw new Error(`inputs file: wrote ${bytesWritten} of ${pos} bytes`);
  }
  return spans;
}
