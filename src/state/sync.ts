// State sync: bring a store to a quorum-certified root by fetching only the objects it lacks.
// The walk goes top-down from the target root; a subtree whose node we already hold (and which
// verifies) is walked locally, so only divergent branches and blocks travel. Every fetched object
// is checked against the hash its parent names before it is stored, so a peer can waste our time
// but never plant a byte. Verified objects are persisted in batches as they arrive (no new
// snapshot), so a sync killed half-way resumes without fetching them again; the target becomes
// the current snapshot only once its whole tree is present.
import { ObjectStore } from './blockstore';
import { decodeDir, decodeFile, decodeList, decodeRoot, EntryKind, hashObject, ObjectKind } from './objects';

export interface SyncFetch {
  /** Asks `peer` for these objects; resolves with one entry per hash (null = the peer lacks it). */
  (peer: string, hashes: Buffer[]): Promise<Array<Buffer | null>>;
}

export interface StateSyncProgress {
  objectsFetched: number;
  bytesFetched: number;
  objectsLocal: number; // tree nodes and blocks found locally (not fetched)
  objectsRejected: number; // objects whose bytes did not match the requested hash
  pending: number; // objects known to be missing, not fetched yet
  elapsedMs: number;
}

export interface StateSyncOptions {
  peers: string[];
  fetch: SyncFetch;
  /** Objects per request (a response stays under the peer frame limit: 32 × 64 KiB = 2 MiB). */
  batch?: number;
  /** Requests in flight, spread over the peers. */
  parallel?: number;
  timeMs: number; // the imported snapshot's time (the ledger's)
  onProgress?: (p: StateSyncProgress) => void;
  /** A peer sent bytes that do not hash to what was asked: the caller penalises it. */
  onBadPeer?: (peer: string, reason: string) => void;
  /** Objects to treat as missing even if the store has them (they failed verification). */
  distrust?: ReadonlySet<string>;
  signal?: { aborted: boolean };
}

export interface StateSyncResult extends StateSyncProgress {
  root: string;
  /** Paths (up to 100) of files and directories whose objects had to be fetched. */
  changedPaths: string[];
}

interface Want {
  hash: Buffer;
  kind: ObjectKind;
  path: string;
  tries: number;
}

const MAX_CHANGED_PATHS = 100;
const MAX_TRIES = 6;

export async function syncState(store: ObjectStore, target: Buffer, o: StateSyncOptions): Promise<StateSyncResult> {
  if (o.peers.length === 0) throw new Error('state sync needs at least one peer');
  const batch = o.batch ?? 32;
  const parallel = o.parallel ?? 8;
  const t0 = Date.now();
  const p: StateSyncProgress = { objectsFetched: 0, bytesFetched: 0, objectsLocal: 0, objectsRejected: 0, pending: 0, elapsedMs: 0 };
  const changed: string[] = [];
  const stack: Want[] = [{ hash: target, kind: ObjectKind.Root, path: '/', tries: 0 }];
  const missing: Want[] = [];
  const asked = new Set<string>();
  // Peers still trusted in this sync: one that sends bytes not matching their hash is dropped
  // (while another remains), so a liar costs one batch, not the whole sync.
  const peers = [...o.peers];
  let next = 0;

  const childrenOf = (w: Want, content: Buffer): Want[] => {
    const kids: Want[] = [];
    const add = (hash: Buffer, kind: ObjectKind, path: string) => kids.push({ hash, kind, path, tries: 0 });
    switch (w.kind) {
      case ObjectKind.Root:
        add(decodeRoot(content).dir, ObjectKind.Dir, '/');
        break;
      case ObjectKind.Dir:
        for (const e of decodeDir(content)) {
          const path = w.path === '/' ? `/${e.name}` : `${w.path}/${e.name}`;
          add(e.hash, e.kind === EntryKind.Dir ? ObjectKind.Dir : e.kind === EntryKind.File ? ObjectKind.File : ObjectKind.Link, path);
        }
        break;
      case ObjectKind.File: {
        const f = decodeFile(content);
        for (const c of f.children) add(c, f.depth > 0 ? ObjectKind.List : ObjectKind.Block, w.path);
        break;
      }
      case ObjectKind.List: {
        const l = decodeList(content);
        for (const c of l.children) add(c, l.depth > 0 ? ObjectKind.List : ObjectKind.Block, w.path);
        break;
      }
      default:
        break;
    }
    return kids;
  };

  const isLeaf = (k: ObjectKind) => k === ObjectKind.Block || k === ObjectKind.Link;

  /** Walks what we hold locally, collecting what we lack, until enough is queued to fetch. */
  const expand = () => {
    while (stack.length > 0 && missing.length < batch * parallel) {
      const w = stack.pop()!;
      const hex = w.hash.toString('hex');
      if (store.has(w.hash) && !o.distrust?.has(hex)) {
        p.objectsLocal++;
        if (!isLeaf(w.kind)) stack.push(...childrenOf(w, store.get(w.hash, w.kind)));
        continue;
      }
      if (asked.has(hex)) continue; // the same object twice in one tree (identical files)
      asked.add(hex);
      missing.push(w);
      if (changed.length < MAX_CHANGED_PATHS && w.kind !== ObjectKind.Root && w.kind !== ObjectKind.Dir && !changed.includes(w.path)) changed.push(w.path);
    }
    p.pending = missing.length;
  };

  expand();
  while (missing.length > 0) {
    if (o.signal?.aborted) throw new Error('state sync aborted');
    const round = missing.splice(0, batch * parallel);
    const groups: Want[][] = [];
    for (let i = 0; i < round.length; i += batch) groups.push(round.slice(i, i + batch));
    const results = await Promise.all(groups.map(async (g) => {
      const peer = peers[next++ % peers.length];
      try {
        return { peer, g, got: await o.fetch(peer, g.map((w) => w.hash)) };
      } catch {
        return { peer, g, got: g.map(() => null) };
      }
    }));
    const txn = store.begin();
    try {
      for (const { peer, g, got } of results) {
        g.forEach((w, i) => {
          const content = got[i] ?? null;
          if (content && hashObject(w.kind, content).equals(w.hash)) {
            txn.put(w.kind, content, o.distrust?.has(w.hash.toString('hex')));
            p.objectsFetched++;
            p.bytesFetched += content.length;
            if (!isLeaf(w.kind)) stack.push(...childrenOf(w, content));
            return;
          }
          if (content) {
            p.objectsRejected++;
            o.onBadPeer?.(peer, `object ${w.hash.toString('hex').slice(0, 12)} (${ObjectKind[w.kind]}) does not match its hash`);
            const at = peers.indexOf(peer);
            if (at >= 0 && peers.length > 1) peers.splice(at, 1);
          }
          if (++w.tries >= MAX_TRIES * Math.max(1, o.peers.length)) throw new Error(`no peer served object ${w.hash.toString('hex')} (${ObjectKind[w.kind]} at ${w.path})`);
          missing.push(w);
        });
      }
      txn.persist();
    } catch (err) {
      txn.abort();
      throw err;
    }
    p.elapsedMs = Date.now() - t0;
    expand();
    o.onProgress?.({ ...p });
  }
  const snap = store.importSnapshot(target, [], o.timeMs);
  p.elapsedMs = Date.now() - t0;
  return { ...p, root: snap.root, changedPaths: changed };
}

/** Hashes of objects under `root` whose bytes no longer match their hash (disk tampering or rot). */
export function corruptObjects(store: ObjectStore, root: Buffer): Array<{ hash: string; path: string }> {
  const bad: Array<{ hash: string; path: string }> = [];
  const visit = (hash: Buffer, kind: ObjectKind, path: string) => {
    let content: Buffer;
    try {
      content = store.get(hash, kind); // verified against its hash on the first read in a process
    } catch {
      bad.push({ hash: hash.toString('hex'), path });
      return;
    }
    switch (kind) {
      case ObjectKind.Root:
        return visit(decodeRoot(content).dir, ObjectKind.Dir, '/');
      case ObjectKind.Dir:
        for (const e of decodeDir(content)) {
          visit(e.hash, e.kind === EntryKind.Dir ? ObjectKind.Dir : e.kind === EntryKind.File ? ObjectKind.File : ObjectKind.Link, path === '/' ? `/${e.name}` : `${path}/${e.name}`);
        }
        return;
      case ObjectKind.File:
      case ObjectKind.List: {
        const n = kind === ObjectKind.File ? decodeFile(content) : decodeList(content);
        for (const c of n.children) visit(c, n.depth > 0 ? ObjectKind.List : ObjectKind.Block, path);
        return;
      }
      default:
        return;
    }
  };
  visit(root, ObjectKind.Root, '/');
  return bad;
}
