// The statefs child process: serves one FUSE mount of a state store and nothing else. It spawns no
// process (the /dev/fuse fd is not close-on-exec, and touching our own mount from here
// deadlocks), takes orders from its parent over IPC, and unmounts and exits when the parent dies.
import { ObjectStore } from './blockstore';
import { makeFuseOps, withOpCounts, WriteGate } from './fuseOps';
import { LowLevelFuse } from './lowLevelFuse';
import { Session } from './session';
import type { StatefsChildArgs, StatefsGo, StatefsReply, StatefsRequest } from './statefsProtocol';
import { parseHashHex } from '../crypto/hash';

// The kernel caches entries, absent names, attributes (lowLevelFuse.ts: an hour) and file pages.
// Caching is safe because the kernel sees every change a session makes, and a commit leaves the
// tree exactly as the session showed it; the incoherent swaps, a rollback and a refresh, remount
// (~10 ms) to drop the cache. Without caching every stat() costs a round trip through this process.

function send(msg: StatefsReply): void {
  if (process.connected) process.send!(msg);
}

function main(args: StatefsChildArgs): void {
  let store = ObjectStore.open(args.storeDir, { readOnly: args.readOnly, lockWaitMs: 10_000 });
  const viewRoot = () => (args.root && args.readOnly ? parseHashHex(args.root, 'root') : Buffer.from(store.current.root, 'hex'));
  let session = new Session(store, viewRoot(), { writable: false, timeMs: store.current.timeMs });
  const gate = new WriteGate();
  const ops = withOpCounts(makeFuseOps(() => session, process.getuid!(), process.getgid!(), gate));
  const newFuse = () => new LowLevelFuse(args.mountpoint, ops, { readOnly: args.readOnly, holding: () => gate.holding });
  let fuse = newFuse();
  /** Unmounts and mounts again, which drops every kernel cache of the mount. */
  const remount = () => new Promise<void>((resolve, reject) => {
    fuse.unmount((err) => {
      if (err) return reject(err);
      fuse = newFuse();
      fuse.mount((e) => (e ? reject(e) : resolve()));
    });
  });

  /** Ends the current session; changes a held session was keeping back fail (EIO). */
  const endSession = () => {
    gate.release(false);
    session.rollback();
  };

  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    endSession();
    // Let go of the store before the (slow) unmount, so a restarted node can open it at once.
    store.close();
    fuse.unmount(() => process.exit(code));
    setTimeout(() => process.exit(code), 5000).unref();
  };

  const handle = (req: StatefsRequest) => {
    try {
      switch (req.cmd) {
        case 'begin':
          if (args.readOnly) throw Object.assign(new Error('this mount is read-only'), { code: 'EROFS' });
          endSession();
          session = new Session(store, Buffer.from(store.current.root, 'hex'), { writable: true, timeMs: req.timeMs ?? 0, quota: req.quota });
          if (req.timeMs === null) gate.hold();
          return send({ type: 'reply', id: req.id, ok: true });
        case 'arm':
          if (!gate.holding) throw Object.assign(new Error('no session waits for its clock'), { code: 'EINVAL' });
          session.setTime(req.timeMs);
          gate.release(true);
          return send({ type: 'reply', id: req.id, ok: true });
        case 'commit': {
          if (!session.writable || !session.isOpen) throw Object.assign(new Error('no open read-write session to commit'), { code: 'EINVAL' });
          if (gate.holding) throw Object.assign(new Error('the session waits for its clock (arm it first)'), { code: 'EINVAL' });
          const snapshot = session.commit();
          const root = Buffer.from(snapshot.root, 'hex');
          session = new Session(store, root, { writable: false, timeMs: snapshot.timeMs });
          const hashes = Object.fromEntries((req.hashPaths ?? []).map((p) => [p, store.entryHash(root, p)?.toString('hex') ?? null]));
          send({ type: 'reply', id: req.id, ok: true, snapshot, hashes });
          const gc = store.maybeGc(); // after the reply: the caller is not kept waiting
          if (gc) process.stderr.write(`statefs: gc rewrote ${gc.packsRewritten} pack(s), freed ${gc.bytesFreed} bytes\n`);
          return;
        }
        case 'rollback': {
          const hadChanges = session.writable && session.isOpen;
          endSession();
          session = new Session(store, viewRoot(), { writable: false, timeMs: store.current.timeMs });
          const reply = () => send({ type: 'reply', id: req.id, ok: true, snapshot: store.current });
          if (!hadChanges) return reply();
          return void remount().then(reply, (err: Error) => {
            process.stderr.write(`statefs: remount after rollback failed: ${err.message}\n`);
            exit(4);
          });
        }
        case 'refresh': {
          // A read-only view of a store another process writes: pick up its newest commit.
          if (!args.readOnly || args.root) throw Object.assign(new Error('refresh is for read-only views of the current root'), { code: 'EINVAL' });
          store.close();
          store = ObjectStore.open(args.storeDir, { readOnly: true });
          session = new Session(store, Buffer.from(store.current.root, 'hex'), { writable: false, timeMs: store.current.timeMs });
          return void remount().then(() => send({ type: 'reply', id: req.id, ok: true, snapshot: store.current }), (err: Error) => {
            process.stderr.write(`statefs: remount after refresh failed: ${err.message}\n`);
            exit(4);
          });
        }
        case 'gc':
          if (session.writable && session.isOpen) throw Object.assign(new Error('gc while a session is open'), { code: 'EBUSY' });
          return send({ type: 'reply', id: req.id, ok: true, result: store.gc() });
        case 'close':
          send({ type: 'reply', id: req.id, ok: true });
          return exit(0);
      }
    } catch (err) {
      const e = err as Error & { code?: string };
      send({ type: 'reply', id: req.id, ok: false, error: e.message, code: e.code ?? 'EIO' });
    }
  };

  process.on('message', (m) => handle(m as StatefsRequest));
  process.on('disconnect', () => exit(0)); // parent died or let go: never serve an orphaned mount
  process.on('SIGTERM', () => exit(0));
  process.on('SIGINT', () => exit(0));

  fuse.mount((err) => {
    if (err) {
      process.stderr.write(`statefs: cannot mount ${args.mountpoint}: ${err.message}\n`);
      store.close();
      process.exit(3);
    }
    send({ type: 'ready', root: store.current.root });
  });
}

// Booting (Node, the native FUSE helper, these modules) is most of the time a mount takes, so a parent may
// start us before the store is free (during a state sync, say) and send 'go' when it is.
const childArgs = JSON.parse(process.env.HP_STATEFS_ARGS ?? 'null') as StatefsChildArgs | null;
if (!childArgs || !process.send) {
  process.stderr.write('statefs child: run by hp-node through IPC only\n');
  process.exit(2);
}
const leaveIfOrphaned = () => process.exit(0);
const onGo = (m: unknown) => {
  if ((m as StatefsGo).cmd !== 'go') return;
  process.off('message', onGo);
  process.off('disconnect', leaveIfOrphaned);
  main(childArgs);
};
process.on('message', onGo);
process.on('disconnect', leaveIfOrphaned);
send({ type: 'booted' });
