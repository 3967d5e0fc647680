// Object hashing on a worker thread, for a sync's big answers: the event loop that receives the
// answers and writes them to the store is the sync's bottleneck (BLAKE3 was ~15 % of it), while the
// machine usually has a core to spare. Only answers held in a SharedArrayBuffer go there (bulk
// streams read them into one, see p2p/bulk.ts): the worker reads them in place, nothing is copied
// or transferred, and the caller does not touch them until the hashes come back.
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { hashObjectBorrowingRoom, ObjectKind } from './objects';

const ROLE = 'hp-node object hasher';

interface HashJob {
  id: number;
  memory: SharedArrayBuffer;
  /** offset, length, kind of each object within `memory`, flattened. */
  items: number[];
}

let worker: Worker | null = null;
let nextId = 1;
const waiting = new Map<number, (hashes: Buffer | null) => void>();

/**
 * Hashes objects that are views into one SharedArrayBuffer, each with TAG_BYTES of that buffer
 * before it that nobody reads meanwhile (hashObjectBorrowingRoom's rule), on the worker thread.
 * Resolves with their hashes in order, or with none if the worker failed (hash them in place then).
 */
export function hashSharedObjects(kinds: readonly ObjectKind[], contents: readonly Buffer[]): Promise<Buffer[]> {
  const memory = contents[0].buffer;
  if (!(memory instanceof SharedArrayBuffer) || contents.some((c) => c.buffer !== memory)) throw new Error('hashSharedObjects: the objects must share one SharedArrayBuffer');
  const items: number[] = [];
  contents.forEach((c, i) => items.push(c.byteOffset, c.byteLength, kinds[i]));
  const w = (worker ??= startWorker());
  const id = nextId++;
  return new Promise((resolve) => {
    waiting.set(id, (all) => resolve(all ? contents.map((_, i) => all.subarray(i * 32, i * 32 + 32)) : []));
    w.postMessage({ id, memory, items } satisfies HashJob);
  });
}

export function isShared(b: Buffer): boolean {
  return b.buffer instanceof SharedArrayBuffer;
}

function startWorker(): Worker {
  const w = new Worker(path.join(__dirname, 'hashWorker.js'), { workerData: { role: ROLE } });
  w.on('message', (m: { id: number; hashes: Uint8Array }) => {
    const done = waiting.get(m.id);
    waiting.delete(m.id);
    done?.(Buffer.from(m.hashes.buffer, m.hashes.byteOffset, m.hashes.byteLength));
  });
  w.on('error', (err) => {
    // A bug here must not hang a sync: the waiting jobs fail over to hashing in place.
    worker = null;
    for (const [id, done] of waiting) {
      waiting.delete(id);
      done(null);
    }
    process.emitWarning(`object hasher worker failed: ${err.message}`);
  });
  w.on('exit', () => {
    if (worker === w) worker = null;
  });
  w.unref(); // an idle hasher never keeps the process alive (after the listeners: they would ref it)
  return w;
}

if (!isMainThread && workerData?.role === ROLE) {
  parentPort!.on('message', (job: HashJob) => {
    const out = Buffer.allocUnsafeSlow((job.items.length / 3) * 32); // its own ArrayBuffer: transferred below
    for (let i = 0; i < job.items.length; i += 3) {
      const content = Buffer.from(job.memory, job.items[i], job.items[i + 1]);
      hashObjectBorrowingRoom(job.items[i + 2] as ObjectKind, content).copy(out, (i / 3) * 32);
    }
    parentPort!.postMessage({ id: job.id, hashes: out }, [out.buffer as ArrayBuffer]);
  });
}
