// The state's integrity at rest: which objects under a root no longer match their hashes (a byte
// flipped on disk while the node was down, rot, a cut pack), found by reading every stored object
// once. checkInBackground runs it on a worker thread, so a node can start (and vote) without
// waiting for a whole store to be re-hashed; what it finds is then repaired from peers.
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { ObjectStore } from './blockstore';
import { decodeDir, decodeFile, decodeList, decodeRoot, EntryKind, ObjectKind } from './objects';

export interface DamagedObject {
  hash: string; // hex
  path: string; // the file or directory it belongs to
}

/**
 * Objects under `root` that are damaged (bytes no longer match their hash: tampering or rot) or
 * missing, with the path they belong to. Every stored object is hashed once, pack by pack; the tree
 * is then walked through its (small) tree nodes only, to find which of those the state uses.
 */
export function corruptObjects(store: ObjectStore, root: Buffer): DamagedObject[] {
  const damaged = store.damagedObjects();
  const bad: DamagedObject[] = [];
  const visit = (hash: Buffer, kind: ObjectKind, path: string) => {
    const hex = hash.toString('hex');
    if (damaged.has(hex) || !store.has(hash)) return void bad.push({ hash: hex, path });
    if (kind === ObjectKind.Block || kind === ObjectKind.Link) return; // checked by damagedObjects above
    let content: Buffer;
    try {
      content = store.get(hash, kind);
    } catch {
      return void bad.push({ hash: hex, path }); // stored as another kind
    }
    switch (kind) {
      case ObjectKind.Root:
        return visit(decodeRoot(content).dir, ObjectKind.Dir, '/');
      case ObjectKind.Dir:
        for (const e of decodeDir(content)) {
          visit(e.hash, e.kind === EntryKind.Dir ? ObjectKind.Dir : e.kind === EntryKind.File ? ObjectKind.File : ObjectKind.Link, path === '/' ? `/${e.name}` : `${path}/${e.name}`);
        }
        return;
      default: {
        const n = kind === ObjectKind.File ? decodeFile(content) : decodeList(content);
        for (const c of n.children) visit(c, n.depth > 0 ? ObjectKind.List : ObjectKind.Block, path);
      }
    }
  };
  visit(root, ObjectKind.Root, '/');
  return bad;
}

/** corruptObjects over a read-only view of the store at `storeDir`, on a worker thread. */
export function checkInBackground(storeDir: string, root: string): Promise<DamagedObject[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(__filename, { workerData: { storeDir, root } satisfies CheckJob });
    worker.once('message', (m: { bad?: DamagedObject[]; error?: string }) => (m.bad ? resolve(m.bad) : reject(new Error(m.error))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`state check worker exited (code ${code}) without a result`)));
  });
}

interface CheckJob {
  storeDir: string;
  root: string;
}

if (!isMainThread && (workerData as CheckJob | null)?.storeDir && path.basename(__filename).startsWith('integrity')) {
  const job = workerData as CheckJob;
  try {
    const store = ObjectStore.open(job.storeDir, { readOnly: true });
    try {
      parentPort!.postMessage({ bad: corruptObjects(store, Buffer.from(job.root, 'hex')) });
    } finally {
      store.close();
    }
  } catch (err) {
    parentPort!.postMessage({ error: `cannot check the state store ${job.storeDir}: ${(err as Error).message}` });
  }
}
