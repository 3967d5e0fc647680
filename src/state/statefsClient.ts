// Parent side of a statefs child: start it, wait for its mount, drive sessions, stop it.
import { ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { SnapshotInfo } from './blockstore';
import type { Quota } from './session';
import { cleanStaleMounts } from './mounts';
import type { StatefsChildArgs, StatefsReply, StatefsRequest } from './statefsProtocol';

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

  static async start(args: StatefsChildArgs): Promise<StatefsMount> {
    const mountpoint = path.resolve(args.mountpoint);
    cleanStaleMounts(mountpoint);
    fs.mkdirSync(mountpoint, { recursive: true });
    const child = fork(path.join(__dirname, 'statefsChild.js'), [], {
      env: { ...process.env, HP_STATEFS_ARGS: JSON.stringify({ ...args, mountpoint }) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    const exited = new Promise<number>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
    const root = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new StatefsError(`statefs did not mount ${mountpoint} within ${READY_TIMEOUT_MS} ms`, 'ETIMEDOUT'));
      }, READY_TIMEOUT_MS);
      child.once('message', (m: StatefsReply) => {
        clearTimeout(timer);
        if (m.type === 'ready') resolve(m.root);
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new StatefsError(`statefs exited with code ${code} before mounting ${mountpoint} (see its message above)`, 'EIO'));
      });
    });
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

  /** Opens a read-write session over the current root, stamped with `timeMs`. */
  async begin(timeMs: number, quota?: Partial<Quota>): Promise<void> {
    await this.request({ cmd: 'begin', timeMs, quota });
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
