// Small durable files beside the ledger: the consensus lock (a restarted node must not precommit
// something else for the same seq) and the result of the last execution (so a restart does not
// re-run a contract whose state it already committed). Each is replaced atomically: write a
// temp file, fsync, rename, fsync the directory; a crash leaves the old file or the new one.
import { decode, encode } from '@msgpack/msgpack';
import fs from 'node:fs';
import { decodePersistedLock, encodePersistedLock } from '../consensus/proposalCodec';
import { removeDurably, replaceDurably } from '../io/durable';
import type { PersistedLock } from '../consensus/types';
import { DEFAULT_LIMITS } from '../consensus/types';
import { finishExecutionFromUsers, ExecutionResult } from './roundResult';

// Writes to one file are chained, so they land in the order they were asked for and never share
// the temp file.

/** One file replaced atomically, one write at a time, in the order asked. */
class DurableFile {
  private last: Promise<void> = Promise.resolve();

  constructor(readonly file: string) {}

  /** Resolves when `data` (or, for null, the file's absence) is durable; rejects if that failed. */
  replace(data: Uint8Array | null): Promise<void> {
    const next = this.last.then(() => (data ? replaceDurably(this.file, data, 0o600) : removeDurably(this.file)));
    this.last = next.catch(() => undefined);
    return next;
  }

  /** Resolves once every write asked for so far has finished (failed ones included). */
  idle(): Promise<void> {
    return this.last;
  }
}

function readIfExists(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export class LockFile extends DurableFile {
  save(lock: PersistedLock | null): Promise<void> {
    return this.replace(lock ? encodePersistedLock(lock) : null);
  }

  /** The persisted lock, or null; a damaged file is reported, never silently ignored. */
  load(): PersistedLock | null {
    const buf = readIfExists(this.file);
    if (!buf) return null;
    try {
      return decodePersistedLock(buf, DEFAULT_LIMITS);
    } catch (err) {
      throw new Error(`${this.file} is damaged (${(err as Error).message}); if the node was stopped cleanly, delete it and restart`);
    }
  }
}

/** The last execution: which ledger it ran, the roots it produced, and each user's outputs. */
export class ExecFile extends DurableFile {
  save(r: ExecutionResult, configHash: Buffer): Promise<void> {
    const doc = {
      v: 1,
      seqNo: r.seqNo,
      stateRoot: r.stateRoot,
      configHash,
      outputRoot: r.outputRoot,
      users: r.users.map((u) => [u.user, u.outputs]),
    };
    return this.replace(encode(doc));
  }

  load(signer: { publicKey: Buffer; secretKey: Buffer }): { result: ExecutionResult; configHash: Buffer } | null {
    const buf = readIfExists(this.file);
    if (!buf) return null;
    try {
      const d = decode(buf) as { v: number; seqNo: number; stateRoot: Uint8Array; configHash: Uint8Array; outputRoot: Uint8Array; users: Array<[Uint8Array, Uint8Array[]]> };
      if (d.v !== 1) throw new Error(`unknown version ${d.v}`);
      const result = finishExecutionFromUsers(d.seqNo, d.users.map(([u, outs]) => [Buffer.from(u), outs.map((o) => Buffer.from(o))]), Buffer.from(d.stateRoot), signer);
      if (!result.outputRoot.equals(Buffer.from(d.outputRoot))) throw new Error('its outputs do not hash to its output root');
      return { result, configHash: Buffer.from(d.configHash) };
    } catch (err) {
      // Not fatal: without it the node re-executes the last ledger from its recorded state.
      return null;
    }
  }
}
