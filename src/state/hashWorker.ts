// Object hashing on a worker thread, for a sync's big answers: the event loop that receives the
// answers and writes them to the store is the sync's bottleneck (BLAKE3 was ~15 % of it), while the
// machine usually has a core to spare. An answer's memory is transferred to the worker and back,
// never copied; only answers that own their ArrayBuffer may go (big bulk answers, p2p/bulk.ts).
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { HASH_BYTES } from '../crypto/hash';
import { hashObjectBorrowingRoom, ObjectKind } from './objects';

const ROLE = 'hp-node object hasher';

interface HashJob {
  id: number;
  memory: ArrayBuffer;
  /** offset, length, kind of each object within `memory`, flattened. */
  items: number[];
}

interface HashDone {
  id: number;
  memory: ArrayBuffer;
  hashes: Uint8Array;
}

let worker: Worker | null = null;
/** Set when a worker failed: this process hashes in place from then on (a broken worker would fail again). */
let failed = false;
let nextId = 1;
const waiting = new Map<number, (done: HashDone | null) => void>();

/** False once a worker has failed in this process: callers hash in place instead. */
export function hasherWorks(): boolean {
  return !failed;
}

/**
 * Hashes objects that are views into one ArrayBuffer that holds nothing else, each with TAG_BYTES
 * of it before the object that nobody reads meanwhile (hashObjectBorrowingRoom's rule). The buffer
 * travels to the worker, so the given views are unusable afterwards (detached): use the `contents`
 * returned (same bytes, same order). Resolves with null if the worker failed.
 */
export function hashInWorker(kinds: readonly ObjectKind[], contents: readonly Buffer[]): Promise<{ hashes: Buffer[]; contents: Buffer[] } | null> {
  const memory = contents[0].buffer as ArrayBuffer;
  if (contents.some((c) => c.buffer !== memory)) throw new Error('hashInWorker: the objects must share one ArrayBuffer');
  const items: number[] = [];
  contents.forEach((c, i) => items.push(c.byteOffset, c.byteLength, kinds[i]));
  const w = (worker ??= startWorker());
  const id = nextId++;
  if (waiting.size === 0) w.ref(); // a job is waiting: keep the process alive for its answer
  return new Promise((resolve) => {
    waiting.set(id, (done) => {
      if (!done) return resolve(null);
      const hashes = Buffer.from(done.hashes.buffer, done.hashes.byteOffset, done.hashes.byteLength);
      resolve({
        hashes: contents.map((_, i) => hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)),
        // From the offsets taken before the transfer: the old views now read as empty.
        contents: contents.map((_, i) => Buffer.from(done.memory, items[3 * i], items[3 * i + 1])),
      });
    });
    w.postMessage({ id, memory, items } satisfies HashJob, [memory]);
  });
}

function startWorker(): Worker {
  const w = new Worker(path.join(__dirname, 'hashWorker.js'), { workerData: { role: ROLE } });
  w.on('message', (m: HashDone) => {
    const done = waiting.get(m.id);
    waiting.delete(m.id);
    if (waiting.size === 0) w.unref(); // idle: never keeps the process alive
    done?.(m);
  });
  // A worker that fails or dies must not hang a sync: the waiting answers count as not received
  // (asked again), and later ones are hashed in place.
  const fail = (why: string) => {
    if (worker === w) worker = null;
    if (waiting.size === 0) return;
    failed = true;
    for (const [id, done] of waiting) {
      waiting.delete(id);
      done(null);
    }
    process.emitWarning(`object hasher worker ${why}; hashing in place from now on`);
  };
  w.on('error', (err) => fail(`failed: ${err.message}`));
  w.on('exit', (code) => fail(`exited (code ${code})`));
  return w;
}

if (!isMainThread && workerData?.role === ROLE) {
  parentPort!.on('message', (job: HashJob) => {
    const hashes = Buffer.allocUnsafeSlow((job.items.length / 3) * HASH_BYTES); // its own ArrayBuffer: transferred
    for (let i = 0; i < job.items.length; i += 3) {
      const content = Buffer.from(job.memory, job.items[i], job.items[i + 1]);
      hashObjectBorrowingRoom(job.items[i + 2] as ObjectKind, content).copy(hashes, (i / 3) * HASH_BYTES);
    }
    parentPort!.postMessage({ id: job.id, memory: job.memory, hashes } satisfies HashDone, [job.memory, hashes.buffer as ArrayBuffer]);
  });
}
