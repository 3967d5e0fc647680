// Shared fixtures for integration tests: temp dirs, stores, mounts and child processes that are
// always cleaned up (unmounted, killed by PID, removed), even when a test fails.
import { spawn, SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { ObjectStore } from '../../src/state/blockstore';
import { exportSnapshot } from '../../src/state/importExport';
import { StatefsMount } from '../../src/state/statefsClient';
import { cleanStaleMounts } from '../../src/state/mounts';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const HP_NODE_BIN = path.join(REPO_ROOT, 'bin', 'hp-node');

const cleanups = new WeakMap<TestContext, Array<() => unknown>>();

/**
 * Runs `fn` when the test ends, last registered first (so a node started in a temp dir is stopped
 * before the dir goes), whatever the test's outcome.
 */
export function deferCleanup(t: TestContext, fn: () => unknown): void {
  let list = cleanups.get(t);
  if (!list) {
    const fns: Array<() => unknown> = [];
    cleanups.set(t, fns);
    list = fns;
    t.after(async () => {
      for (const f of fns.reverse()) {
        try {
          await f();
        } catch (err) {
          process.stderr.write(`cleanup failed: ${(err as Error).message}\n`);
        }
      }
    });
  }
  list.push(fn);
}

/** A fresh temp dir removed (after unmounting anything under it) when the test ends. */
export function tempDir(t: TestContext, prefix = 'hp-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  deferCleanup(t, () => {
    cleanStaleMounts(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Creates an empty store (optionally importing `from`) and returns its directory. */
export function newStore(t: TestContext, opts: { from?: string; timeMs?: number; blockSizeBytes?: number } = {}): string {
  const dir = path.join(tempDir(t, 'hp-store-'), 'store');
  const store = ObjectStore.create(dir, { timeMs: opts.timeMs ?? 0, blockSizeBytes: opts.blockSizeBytes });
  try {
    if (opts.from) {
      // Imported through the same session code the mount uses.
      const { importDirectory } = require('../../src/state/importExport') as typeof import('../../src/state/importExport');
      importDirectory(store, opts.from, opts.timeMs ?? 0);
    }
  } finally {
    store.close();
  }
  return dir;
}

/** Starts a statefs child on a temp mountpoint; closed (unmounted, child exited) after the test. */
/** Writes a store's committed state (its current root) into `dest` as plain files. */
export function exportStore(storeDir: string, dest: string): string {
  const store = ObjectStore.open(storeDir, { readOnly: true });
  try {
    exportSnapshot(store, dest);
  } finally {
    store.close();
  }
  return dest;
}

export async function mountStore(t: TestContext, storeDir: string, opts: { readOnly?: boolean; root?: string } = {}): Promise<StatefsMount> {
  const mountpoint = path.join(tempDir(t, 'hp-mnt-'), 'mnt');
  const mount = await StatefsMount.start({ storeDir, mountpoint, readOnly: !!opts.readOnly, root: opts.root });
  deferCleanup(t, async () => {
    try {
      process.kill(mount.pid, 0);
      await mount.close();
    } catch {
      cleanStaleMounts(mountpoint);
    }
  });
  return mount;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (killed after `timeoutMs`), capturing its output. */
export function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? (sig ? 128 : 1), stdout, stderr });
    });
    child.stdin!.on('error', () => undefined); // the command may exit without reading its input
    child.stdin!.end(opts.input ?? '');
  });
}

/** `sh -c script` with cwd `cwd`; rejects with the output when it exits non-zero. */
export async function sh(cwd: string, script: string, timeoutMs = 60_000): Promise<string> {
  const r = await run('sh', ['-c', script], { cwd, timeoutMs });
  if (r.code !== 0) throw new Error(`sh exited ${r.code}: ${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}

/** Runs the hp-node CLI. */
export function hpNode(args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return run(process.execPath, [HP_NODE_BIN, ...args], opts);
}

export const HEX64 = /^[0-9a-f]{64}$/;

/** The last non-empty stdout line (where `state exec`/`state init` print the root). */
export function lastLine(out: string): string {
  const lines = out.trim().split('\n');
  return lines[lines.length - 1];
}
