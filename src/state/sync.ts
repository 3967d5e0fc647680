// State sync: bring a store to a quorum-certified root by fetching only the objects it lacks.
// The walk goes top-down from the target root; a subtree whose node we already hold (and which
// verifies) is walked locally, so only divergent branches and blocks travel. Every fetched object
// is checked against the hash its parent names before it is stored, so a peer can waste our time
// but never plant a byte. Verified objects are persisted in batches as they arrive (no new
// snapshot), so a sync killed half-way resumes without fetching them again; the target becomes
// the current snapshot only once its whole tree is present.
import { ObjectStore } from './blockstore';
import { hashInWorker, hasherMemory, hasherWorks, onOneSlab } from './hashWorker';
import { decodeDir, decodeFile, decodeList, decodeRoot, EntryKind, hashObject, hashObjectBorrowingRoom, ObjectKind } from './objects';

export interface SyncFetch {
  /**
   * Asks `peer` for these objects. Resolves with the answer: entries in the order asked (null = the
   * peer lacks it), possibly only a prefix (the rest is "not now": asked again, no strike); or null
   * when no answer came (timeout, link down), which counts as a strike for every object.
   */
  (peer: string, hashes: Buffer[]): Promise<Array<Buffer | null> | null>;
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
  /** Peers to ask: a list, or a function asked at every request (peers that connect mid-sync help too). */
  peers: string[] | (() => string[]);
  fetch: SyncFetch;
  /** Objects per request (a response stays under the peer frame limit: 32 × 64 KiB = 2 MiB). */
  batch?: number;
  /** Requests in flight, spread over the peers; a new one goes out as soon as one is answered. */
  parallel?: number;
  /** Verified bytes written before they are made durable (fdatasync) and count as resumable. */
  persistEveryBytes?: number;
  timeMs: number; // the imported snapshot's time (the ledger's)
  onProgress?: (p: StateSyncProgress) => void;
  /** Least time between two onProgress calls (default 250 ms; the last one always comes). */
  progressEveryMs?: number;
  /**
   * The fetch answers objects as views into one received message each, with TAG_BYTES of that
   * message (frame and item headers, the end of the previous object) before every object, which
   * nothing else reads meanwhile: hpn.getobj answers are so. Verification then borrows those bytes
   * for the hash's tag instead of streaming the tag and the object through two hasher calls.
   */
  answersHaveRoom?: boolean;
  /** A peer sent bytes that do not hash to what was asked: the caller penalises it. */
  onBadPeer?: (peer: string, reason: string) => void;
  /** Objects to treat as missing even if the store has them (they failed verification). */
  distrust?: ReadonlySet<string>;
  signal?: { aborted: boolean };
}

export interface StateSyncResult extends StateSyncProgress {
  root: string;
  /** Requests sent, and their round trips (ask → answer filed), for the log. */
  requests: number;
  rttMsMean: number;
  rttMsMax: number;
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
/**
 * Consecutive batches of blocks that go to one peer before the next is asked: the walk asks for
 * blocks in pack order, so a peer reads runs of PEER_RUN × batch blocks back to back, which its
 * kernel's readahead follows better than every other batch (+4 % with cold packs, syncpair bench).
 * Tree nodes go round robin: every peer is asked early, so a lying one is found early.
 */
const PEER_RUN = 4;
const BUSY_PEER_PAUSE_MS = 50;
const PROGRESS_EVERY_MS = 250;
const DEFAULT_PERSIST_EVERY_BYTES = 32 * 1024 * 1024;
/** Fetched bytes that may be on their way to disk at once (held in memory until written). */
const WRITE_BEHIND_BYTES = 32 * 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function syncState(store: ObjectStore, target: Buffer, o: StateSyncOptions): Promise<StateSyncResult> {
  const peersNow = () => (typeof o.peers === 'function' ? o.peers() : o.peers);
  if (peersNow().length === 0) throw new Error('state sync needs at least one peer');
  const batch = o.batch ?? 32;
  const parallel = o.parallel ?? 8;
  const persistEvery = o.persistEveryBytes ?? DEFAULT_PERSIST_EVERY_BYTES;
  const t0 = Date.now();
  const p: StateSyncProgress = { objectsFetched: 0, bytesFetched: 0, objectsLocal: 0, objectsRejected: 0, pending: 0, elapsedMs: 0 };
  const changed: string[] = [];
  const stack: Want[] = [{ hash: target, kind: ObjectKind.Root, path: '/', tries: 0 }];
  const missing: Want[] = [];
  const asked = new Set<string>();
  // Peers still trusted in this sync: one that sends bytes not matching their hash is dropped
  // (while another remains), so a liar costs one batch, not the whole sync.
  const dropped = new Set<string>();
  /** The next peer to ask, round robin in runs over the trusted ones (all, if every one was dropped). */
  const pickPeer = (blocks: boolean): string => {
    const all = peersNow();
    const trusted = all.filter((p) => !dropped.has(p));
    const from = trusted.length > 0 ? trusted : all;
    if (from.length === 0) throw new Error('state sync: no peer left to ask (all disconnected)');
    return from[(blocks ? Math.floor(nextBlocks++ / PEER_RUN) : next++) % from.length];
  };
  let next = 0;
  let nextBlocks = 0;

  const childrenOf = (w: Want, content: Buffer): Want[] => {
    const kids: Want[] = [];
    // Copies: `content` may lie in an answer slab that is reused once its objects are written.
    const add = (hash: Buffer, kind: ObjectKind, path: string) => kids.push({ hash: Buffer.from(hash), kind, path, tries: 0 });
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
    while (stack.length > 0 && missing.length < 2 * batch * parallel) {
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

  // A pipeline: `parallel` requests stay in flight; each answer is verified and written as it
  // arrives, the walk continues from it, and the next request goes out at once. Writes go out
  // behind (libuv threads): receiving and hashing the next answers never waits for the disk unless
  // WRITE_BEHIND_BYTES are still on their way to it. Every persistEvery bytes a checkpoint makes
  // what was written durable (a kill loses at most that much work), also off this thread, while
  // the fetching goes on.
  const txn = store.begin();
  txn.writeBehind();
  // Fetched objects count in the progress once durable: what a status shows survives a kill.
  const unpersisted = { objects: 0, bytes: 0 };
  let checkpointing: Promise<void> | null = null;
  const checkpoint = () => {
    const counted = { ...unpersisted };
    unpersisted.objects = unpersisted.bytes = 0;
    checkpointing = txn.checkpoint().then(
      () => {
        p.objectsFetched += counted.objects;
        p.bytesFetched += counted.bytes;
      },
      (err: Error) => void (failure ??= err),
    ).finally(() => (checkpointing = null));
  };
  /** Waits for the running checkpoint and the writes, then makes the rest durable (ends txn). */
  const persistAll = async () => {
    await checkpointing;
    while (txn.inflightBytes > 0) await txn.drain(0); // answers filed meanwhile may add writes
    txn.persist();
    p.objectsFetched += unpersisted.objects;
    p.bytesFetched += unpersisted.bytes;
    unpersisted.objects = unpersisted.bytes = 0;
  };
  const inflight = new Set<Promise<void>>();
  let failure: Error | null = null;
  let lastProgress = 0;
  /** Files the objects of one answer, requeueing what did not come. */
  const take = async (peer: string, g: Want[], got: Array<Buffer | null> | null) => {
    const present = got ? got.filter((c): c is Buffer => !!c) : [];
    try {
      await file(peer, g, got, present);
    } finally {
      // An answer read into a hasher slab (state/hashWorker.ts) goes back to the pool once the
      // objects taken from it are on their way to disk and written (the pack write reads them).
      if (present.length > 0 && onOneSlab(present)) void txn.written().then(() => hasherMemory.give(present[0]), () => hasherMemory.give(present[0]));
    }
  };
  const file = async (peer: string, g: Want[], got: Array<Buffer | null> | null, present: Buffer[]) => {
    // Every object is hashed before any is stored: hashing may borrow the bytes before an object,
    // which end the previous one, and a stored object's bytes may be on their way to disk.
    const good = await verify(g, got, present);
    if (good === null) return void missing.push(...g); // the hasher failed: ask again
    g.forEach((w, i) => {
      const content = got === null ? null : got[i];
      if (content === undefined) return void missing.push(w); // past a short answer: not now
      if (content) {
        if (good[i]) {
          txn.put(w.kind, content, o.distrust?.has(w.hash.toString('hex')), w.hash);
          unpersisted.objects++;
          unpersisted.bytes += content.length;
          if (!isLeaf(w.kind)) stack.push(...childrenOf(w, content));
          return;
        }
        p.objectsRejected++;
        o.onBadPeer?.(peer, `object ${w.hash.toString('hex').slice(0, 12)} (${ObjectKind[w.kind]}) does not match its hash`);
        if (peersNow().some((q) => q !== peer && !dropped.has(q))) dropped.add(peer);
      }
      if (++w.tries >= MAX_TRIES * Math.max(1, peersNow().length)) throw new Error(`no peer served object ${w.hash.toString('hex')} (${ObjectKind[w.kind]} at ${w.path})`);
      missing.push(w);
    });
  };
  /**
   * Which objects of an answer hash to what was asked: on the hasher thread when the answer lies in
   * one of its slabs, else here. Null: the hasher failed.
   */
  const verify = async (g: Want[], got: Array<Buffer | null> | null, present: Buffer[]): Promise<boolean[] | null> => {
    if (o.answersHaveRoom && present.length > 0 && hasherWorks() && onOneSlab(present)) {
      const hashes = await hashInWorker(g.filter((_, i) => got![i]).map((w) => w.kind), present);
      if (!hashes) return null;
      let k = 0;
      return g.map((w, i) => !!got![i] && hashes[k++].equals(w.hash));
    }
    return g.map((w, i) => {
      const content = got?.[i];
      return !!content && (o.answersHaveRoom ? hashObjectBorrowingRoom(w.kind, content) : hashObject(w.kind, content)).equals(w.hash);
    });
  };
  const rtt = { n: 0, sum: 0, max: 0 };
  const launch = (g: Want[]) => {
    const peer = pickPeer(g.every((w) => w.kind === ObjectKind.Block));
    const asked = Date.now();
    const job = o
      .fetch(peer, g.map((w) => w.hash))
      .catch(() => null)
      .then((got) => {
        const ms = Date.now() - asked;
        rtt.n++;
        rtt.sum += ms;
        rtt.max = Math.max(rtt.max, ms);
        return got;
      })
      .then((got) => {
        // A peer that answers with nothing at all is out of budget: let it breathe before the next ask.
        if (got !== null && got.length === 0) return sleep(BUSY_PEER_PAUSE_MS).then(() => got);
        return got;
      })
      .then(async (got) => {
        try {
          if (!failure) await take(peer, g, got);
        } catch (err) {
          failure = err as Error;
        }
        inflight.delete(job); // only now: the loop ends when nothing is in flight, children included
      });
    inflight.add(job);
  };

  try {
    for (;;) {
      if (failure) throw failure;
      if (o.signal?.aborted) throw new Error('state sync aborted');
      expand();
      while (inflight.size < parallel && missing.length > 0) launch(missing.splice(0, batch));
      if (inflight.size === 0) break;
      await Promise.race(inflight);
      // A checkpoint still running when the next is due (the disk is slower than the peers) is not
      // waited for: the next one starts after it, covering more.
      if (unpersisted.bytes >= persistEvery && !checkpointing) checkpoint();
      else if (txn.inflightBytes > WRITE_BEHIND_BYTES) await txn.drain(WRITE_BEHIND_BYTES / 2);
      const now = Date.now();
      if (now - lastProgress >= (o.progressEveryMs ?? PROGRESS_EVERY_MS)) {
        lastProgress = now;
        p.elapsedMs = now - t0;
        o.onProgress?.({ ...p });
      }
    }
    await persistAll();
    if (failure) throw failure;
  } catch (err) {
    await Promise.allSettled([...inflight]);
    // What was verified stays: a retry (or the restarted node) starts from there.
    try {
      await persistAll();
    } catch {
      await txn.drain(0).catch(() => undefined);
      txn.abort();
    }
    throw err;
  }
  p.elapsedMs = Date.now() - t0;
  o.onProgress?.({ ...p });
  const snap = store.importSnapshot(target, [], o.timeMs);
  p.elapsedMs = Date.now() - t0;
  return { ...p, root: snap.root, changedPaths: changed, requests: rtt.n, rttMsMean: rtt.n ? Math.round(rtt.sum / rtt.n) : 0, rttMsMax: rtt.max };
}
