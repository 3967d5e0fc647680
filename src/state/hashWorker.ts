// Object hashing on a worker thread, for a sync's big answers: the event loop that receives the
// answers and writes them to the store is the sync's bottleneck (BLAKE3 was ~15 % of it), while the
// machine usually has a core to spare.
//
// The answers are read straight into slabs of shared memory (`hasherMemory`, handed to the bulk
// stream as its answer allocator) that the worker was given once, so a job is only offsets: no
// copy, no transfer. Why not transfer each answer's own ArrayBuffer (the first version): every
// transfer counts as a fresh external allocation on each side, and at ~250 MiB/s that made V8 run
// a full GC ~8 times a second, its marking threads taking ~a third of a core. A slab goes back to
// the pool when the sync has written the answer's objects (`give`); the pool and the worker are
// dropped after IDLE_RETIRE_MS without use, so an idle node holds neither.
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { HASH_BYTES } from '../crypto/hash';
import { hashObjectBorrowingRoom, ObjectKind } from './objects';

const ROLE = 'hp-node object hasher';
/** A slab holds one answer (peerMessages' MAX_OBJECT_REPLY_BYTES is 3 MiB, plus framing). */
const SLAB_BYTES = 4 * 1024 * 1024;
/** Answers in flight (8) plus those whose objects are still being written (≤ 32 MiB), with room. */
const MAX_SLABS = 24;
/** Smaller answers are not worth a slab (hashing them here is cheap). */
const MIN_SLAB_USE = 256 * 1024;
const IDLE_RETIRE_MS = 5000;

type ToWorker = { slab: number; memory: SharedArrayBuffer } | HashJob;

interface HashJob {
  id: number;
  slab: number;
  /** offset, length, kind of each object within the slab, flattened. */
  items: number[];
}

interface HashDone {
  id: number;
  hashes: Uint8Array;
}

let worker: Worker | null = null;
/** Slabs the current worker has been given (slabs[0..sent)). */
let sent = 0;
/** Set when a worker failed: this process hashes in place from then on (a broken worker would fail again). */
let failed = false;
let nextId = 1;
const waiting = new Map<number, (done: HashDone | null) => void>();

const slabs: SharedArrayBuffer[] = [];
const slabIndex = new Map<SharedArrayBuffer, number>();
const free: number[] = [];
const taken = new Set<number>();
let retireTimer: NodeJS.Timeout | null = null;

/** False once a worker has failed in this process: callers hash in place instead. */
export function hasherWorks(): boolean {
  return !failed;
}

/**
 * Answer memory for the bulk stream: a slab for a big answer while one is free, else an ordinary
 * buffer. The taker gives a slab back (once) when nothing reads the answer any more; giving back
 * anything else is a no-op, so callers need not know which they got.
 */
export const hasherMemory = {
  take(bytes: number): Buffer {
    if (bytes < MIN_SLAB_USE || bytes > SLAB_BYTES || failed) return Buffer.allocUnsafe(bytes);
    let i = free.pop();
    if (i === undefined) {
      if (slabs.length >= MAX_SLABS) return Buffer.allocUnsafe(bytes);
      i = slabs.length;
      const memory = new SharedArrayBuffer(SLAB_BYTES);
      slabs.push(memory);
      slabIndex.set(memory, i);
    }
    taken.add(i);
    touch();
    return Buffer.from(slabs[i], 0, bytes);
  },
  give(b: Buffer): void {
    const i = slabIndex.get(b.buffer as SharedArrayBuffer);
    if (i === undefined || !taken.delete(i)) return;
    free.push(i);
    touch();
  },
};

/** Slabs taken and not given back (tests, diagnostics). */
export function hasherSlabsTaken(): number {
  return taken.size;
}

/** True when every one of `contents` lies in one slab: they can be hashed on the worker. */
export function onOneSlab(contents: readonly Buffer[]): boolean {
  const memory = contents[0]?.buffer;
  return !!memory && slabIndex.has(memory as SharedArrayBuffer) && contents.every((c) => c.buffer === memory);
}

/**
 * Hashes objects lying in one slab (onOneSlab), each with TAG_BYTES of the slab before it that
 * nobody reads meanwhile (hashObjectBorrowingRoom's rule): the caller leaves the slab alone until
 * this resolves. Resolves with the hashes in order, or null if the worker failed.
 */
export function hashInWorker(kinds: readonly ObjectKind[], contents: readonly Buffer[]): Promise<Buffer[] | null> {
  if (!onOneSlab(contents)) throw new Error('hashInWorker: the objects must lie in one slab of hasherMemory');
  const slab = slabIndex.get(contents[0].buffer as SharedArrayBuffer)!;
  const items: number[] = [];
  contents.forEach((c, i) => items.push(c.byteOffset, c.byteLength, kinds[i]));
  const w = (worker ??= startWorker());
  for (; sent < slabs.length; sent++) w.postMessage({ slab: sent, memory: slabs[sent] } satisfies ToWorker);
  const id = nextId++;
  if (waiting.size === 0) w.ref(); // a job is waiting: keep the process alive for its answer
  touch();
  return new Promise((resolve) => {
    waiting.set(id, (done) => {
      if (!done) return resolve(null);
      const hashes = Buffer.from(done.hashes.buffer, done.hashes.byteOffset, done.hashes.byteLength);
      resolve(contents.map((_, i) => hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES)));
    });
    w.postMessage({ id, slab, items } satisfies ToWorker);
  });
}

/** Any use restarts the idle clock; after IDLE_RETIRE_MS of none, the worker and the pool go. */
function touch(): void {
  if (retireTimer) clearTimeout(retireTimer);
  retireTimer = setTimeout(retire, IDLE_RETIRE_MS);
  retireTimer.unref();
}

function retire(): void {
  retireTimer = null;
  if (waiting.size > 0) return touch();
  // Slabs still taken (an answer dropped on an error path) are simply forgotten: their buffers
  // stay valid while referenced, and giving them back later is a no-op.
  slabs.length = 0;
  slabIndex.clear();
  free.length = 0;
  taken.clear();
  const w = worker;
  worker = null;
  sent = 0;
  void w?.terminate();
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
    if (worker !== w) return; // retired
    worker = null;
    sent = 0;
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
  const mine: SharedArrayBuffer[] = [];
  parentPort!.on('message', (m: ToWorker) => {
    if ('memory' in m) return void (mine[m.slab] = m.memory);
    const hashes = new Uint8Array((m.items.length / 3) * HASH_BYTES);
    for (let i = 0; i < m.items.length; i += 3) {
      const content = Buffer.from(mine[m.slab], m.items[i], m.items[i + 1]);
      hashes.set(hashObjectBorrowingRoom(m.items[i + 2] as ObjectKind, content), (i / 3) * HASH_BYTES);
    }
    parentPort!.postMessage({ id: m.id, hashes } satisfies HashDone);
  });
}
