// Messages between a parent process and its statefs child (Node IPC channel, advanced serialization).
import type { Quota } from './session';
import type { SnapshotInfo } from './blockstore';

export interface StatefsChildArgs {
  storeDir: string;
  mountpoint: string;
  /** Read-only view of this root (hex); default: the store's current root. */
  root?: string;
  /** Never allow a read-write session (hp-node mount). */
  readOnly: boolean;
}

export type StatefsRequest =
  /** timeMs null: the clock is not known yet; changes wait for 'arm' (reads go on). */
  | { id: number; cmd: 'begin'; timeMs: number | null; quota?: Partial<Quota> }
  | { id: number; cmd: 'arm'; timeMs: number }
  | { id: number; cmd: 'commit'; hashPaths?: string[] }
  | { id: number; cmd: 'refresh' }
  | { id: number; cmd: 'rollback' }
  | { id: number; cmd: 'gc' }
  | { id: number; cmd: 'close' };

/** Sent (without an id) once, when the parent wants the mount: the child boots first and waits for it. */
export interface StatefsGo {
  cmd: 'go';
}

export type StatefsReply =
  | { type: 'booted' }
  | { type: 'ready'; root: string }
  | { type: 'reply'; id: number; ok: true; snapshot?: SnapshotInfo; result?: unknown; hashes?: Record<string, string | null> }
  | { type: 'reply'; id: number; ok: false; error: string; code: string };
