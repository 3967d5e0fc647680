// Parent side of a statefs child: start it, wait for its mount, drive sessions, stop it.
import { ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { SnapshotInfo } from './blockstore';
import type { Quota } from './session';
import { cleanStaleMounts } from './mounts';
import type { StatefsChildArgs, StatefsGo, StatefsReply, StatefsRequest } from './statefsProtocol';

const READY_TIMEOUT_MS = 15_000;

export class StatefsError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type Pending = { resolve: (r: Extract<StatefsReply, { type: 'reply' }>) => void; reject: (e: Error) => void };

/** A running statefs child serving one mountpoint. */
export class StatefsMount {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private exited: Promise<number>;
  root: string;

  private constructor(private readonly child: ChildProcess, readonly mountpoint: string, root: string, exited: Promise<number>) {
    this.root = root;
    this.exited = exited;
    child.on('message', (m: StatefsReply) => {
      if (m.type !== 'reply') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      p?.resolve(m);
    });
    void exited.then((code) => {
      for (const p of this.pending.values()) p.reject(new StatefsError(`statefs child exited (code ${code}) before answering`, 'EIO'));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Boots a child and mounts at once (see PreparedStatefs to boot ahead of time). */
  static start(args: StatefsChildArgs): Promise<StatefsMount> {
    return PreparedStatefs.boot(args).mount();
  }

  /** @internal PreparedStatefs hands over its running child. */
  static adopt(child: ChildProcess, mountpoint: string, root: string, exited: Promise<number>): StatefsMount {
    return new StatefsMount(child, mountpoint, root, exited);
  }

  private request(req: WithoutId<StatefsRequest>): Promise<Extract<StatefsReply, { type: 'reply'; ok: true }>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.child.connected) return reject(new StatefsError('statefs child is not running', 'EIO'));
      this.pending.set(id, {
        resolve: (r) => (r.ok ? resolve(r) : reject(new StatefsError(r.error, r.code))),
        reject,
      });
      this.child.send({ ...req, id } as StatefsRequest);
    });
  }

  /**
   * Opens a read-write session over the current root, stamped with `timeMs`. With null the clock is
   * not known yet: reads go on, changes wait until arm() sets it.
   */
  async begin(timeMs: number | null, quota?: Partial<Quota>): Promise<void> {
    await this.request({ cmd: 'begin', timeMs, quota });
  }

  /** Sets the clock of a session begun with null and lets its held changes go. */
  async arm(timeMs: number): Promise<void> {
    await this.request({ cmd: 'arm', timeMs });
  }

  /** Commits the session; `hashPaths` asks for the object hashes of some entries of the new root. */
  async commit(hashPaths?: string[]): Promise<SnapshotInfo & { hashes: Record<string, string | null> }> {
    const r = await this.request({ cmd: 'commit', hashPaths });
    this.root = r.snapshot!.root;
    return { ...r.snapshot!, hashes: r.hashes ?? {} };
  }

  /** Read-only views: move to the store's newest committed root (another process commits). */
  async refresh(): Promise<SnapshotInfo> {
    const r = await this.request({ cmd: 'refresh' });
    this.root = r.snapshot!.root;
    return r.snapshot!;
  }

  async rollback(): Promise<SnapshotInfo> {
    const r = await this.request({ cmd: 'rollback' });
    return r.snapshot!;
  }

  async gc(): Promise<unknown> {
    return (await this.request({ cmd: 'gc' })).result;
  }

  /** Unmounts and waits for the child to exit. */
  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await this.request({ cmd: 'close' }).catch(() => undefined);
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
    cleanStaleMounts(this.mountpoint);
  }

  /** Resolves with the child's exit code when it exits for any reason. */
  waitExit(): Promise<number> {
    return this.exited;
  }
}

/**
 * A statefs child that has booted (Node, the FUSE add-on, modules: most of a mount's time) but not yet
 * opened the store or mounted: mount() does that, when the store is free. Lets a node overlap the
 * boot with work that holds the store, such as its start-up check or a state sync.
 */
export class PreparedStatefs {
  private readonly booted: Promise<void>;
  private readonly exited: Promise<number>;
  private used = false;

  private constructor(private readonly child: ChildProcess, private readonly mountpoint: string) {
    this.exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    this.booted = new Promise<void>((resolve, reject) => {
      const onMessage = (m: StatefsReply) => {
        if (m.type !== 'booted') return;
        child.off('message', onMessage);
        resolve();
      };
      child.on('message', onMessage);
      void this.exited.then((code) => reject(new StatefsError(`statefs exited with code ${code} while booting (see its message above)`, 'EIO')));
    });
    this.booted.catch(() => undefined); // observed by mount()
  }

  static boot(args: StatefsChildArgs): PreparedStatefs {
    const mountpoint = path.resolve(args.mountpoint);
    const child = fork(path.join(__dirname, 'statefsChild.js'), [], {
      env: { ...process.env, HP_STATEFS_ARGS: JSON.stringify({ ...args, mountpoint }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    return new PreparedStatefs(child, mountpoint);
  }

  /** Opens the store and mounts; resolves once the mount is serving. Once only. */
  async mount(): Promise<StatefsMount> {
    if (this.used) throw new Error('this statefs child was already mounted or cancelled');
    this.used = true;
    const { child, mountpoint } = this;
    cleanStaleMounts(mountpoint);
    fs.mkdirSync(mountpoint, { recursive: true });
    const root = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new StatefsError(`statefs did not mount ${mountpoint} within ${READY_TIMEOUT_MS} ms`, 'ETIMEDOUT'));
      }, READY_TIMEOUT_MS);
      const onMessage = (m: StatefsReply) => {
        if (m.type !== 'ready') return;
        child.off('message', onMessage);
        clearTimeout(timer);
        resolve(m.root);
      };
      child.on('message', onMessage);
      this.booted.then(() => child.send({ cmd: 'go' } satisfies StatefsGo), () => undefined);
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new StatefsError(`statefs exited with code ${code} before mounting ${mountpoint} (see its message above)`, 'EIO'));
      });
    });
    return StatefsMount.adopt(child, mountpoint, root, this.exited);
  }

  /** Stops a child that will not be mounted after all. */
  async cancel(): Promise<void> {
    if (this.used) return;
    this.used = true;
    this.child.kill('SIGTERM');
    await this.exited;
  }
}
