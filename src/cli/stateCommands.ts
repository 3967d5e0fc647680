// `hp-node state …` and `hp-node mount`: the state store from the command line.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ObjectStore } from '../state/blockstore';
import { exportSnapshot, importDirectory } from '../state/importExport';
import { StatefsMount } from '../state/statefsClient';
import { parseHashHex } from '../crypto/hash';
import { stopSignal } from '../io/stopSignal';

function parseTime(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`"${v}" is not a unix time in milliseconds`);
  return n;
}

function parseRoot(v: string): string {
  try {
    parseHashHex(v, 'root');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return v;
}

/** A store directory, or a node directory holding one in state/. */
export function resolveStoreDir(dir: string): string {
  if (fs.existsSync(path.join(dir, 'HEAD'))) return dir;
  if (fs.existsSync(path.join(dir, 'state', 'HEAD'))) return path.join(dir, 'state');
  throw new Error(`${dir} is neither a state store nor a node directory (no HEAD or state/HEAD); create one with \`hp-node state init ${dir}\``);
}

export function registerStateCommands(program: Command): void {
  const state = program.command('state').description('create, change and inspect state stores');

  state
    .command('init <store-dir>')
    .description('create a state store, optionally importing a directory, and print its root hash')
    .option('--from <plain-dir>', 'import the files of this directory')
    .option('--time <unix-ms>', 'mtime stamped on imported entries (same on every node)', parseTime, 0)
    .option('--block-size <bytes>', 'block size of the Merkle tree (fixed for the life of the store)', (v) => Number(v), 65536)
    .action((dir: string, opts: { from?: string; time: number; blockSize: number }) => {
      if (opts.from && !fs.statSync(opts.from, { throwIfNoEntry: false })?.isDirectory()) {
        throw new Error(`--from ${opts.from}: not a directory`);
      }
      const store = ObjectStore.create(dir, { blockSizeBytes: opts.blockSize, timeMs: opts.time });
      try {
        const snap = opts.from ? importDirectory(store, opts.from, opts.time) : store.current;
        console.log(snap.root);
      } finally {
        store.close();
      }
    });

  state
    .command('root <store-dir>')
    .description('print the committed root hash')
    .action((dir: string) => {
      console.log(ObjectStore.readCurrentRoot(resolveStoreDir(dir)).root);
    });

  state
    .command('export <store-dir> <dest-dir>')
    .description('write a committed snapshot out as plain files')
    .option('--root <hash>', 'snapshot to export (default: the current one)', parseRoot)
    .action((dir: string, dest: string, opts: { root?: string }) => {
      const store = ObjectStore.open(resolveStoreDir(dir), { readOnly: true });
      try {
        const r = exportSnapshot(store, dest, opts.root);
        console.error(`exported ${r.files} entries, ${r.bytes} bytes to ${dest}`);
      } finally {
        store.close();
      }
    });

  state
    .command('exec <store-dir>')
    .description('run a command in a read-write session mounted as its cwd; commit on exit 0, roll back otherwise')
    .option('--time <unix-ms>', 'session clock stamped on every change', parseTime)
    .argument('<command...>', 'the command and its arguments (after --)')
    .action(async (dir: string, command: string[], opts: { time?: number }) => {
      const code = await execInSession(resolveStoreDir(dir), command, opts.time ?? Date.now());
      process.exitCode = code;
    });

  program
    .command('mount <store-or-node-dir> <mountpoint>')
    .description('mount a committed snapshot read-only until Ctrl-C / SIGTERM')
    .option('--root <hash>', 'snapshot to show (default: the current one)', parseRoot)
    .action(async (dir: string, mountpoint: string, opts: { root?: string }) => {
      const storeDir = resolveStoreDir(dir);
      const signalled = stopSignal();
      const mount = await StatefsMount.start({ storeDir, mountpoint, readOnly: true, root: opts.root });
      console.log(`mounted ${opts.root ?? mount.root} of ${storeDir} read-only at ${mount.mountpoint}; Ctrl-C to unmount`);
      await Promise.race([signalled, mount.waitExit()]);
      await mount.close();
      console.log(`unmounted ${mount.mountpoint}`);
    });
}

async function execInSession(storeDir: string, command: string[], timeMs: number): Promise<number> {
  const mountpoint = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-state-'));
  const mount = await StatefsMount.start({ storeDir, mountpoint, readOnly: false });
  try {
    await mount.begin(timeMs);
    // stdout is relayed so the root can be printed on a line of its own whatever the command wrote.
    const child = spawn(command[0], command.slice(1), { cwd: mount.mountpoint, stdio: ['inherit', 'pipe', 'inherit'] });
    let lastByte = 0x0a;
    child.stdout!.on('data', (d: Buffer) => {
      process.stdout.write(d);
      lastByte = d[d.length - 1];
    });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const code = await new Promise<number>((resolve) => {
      child.once('error', (err) => {
        console.error(`hp-node: cannot run ${command[0]}: ${err.message}`);
        resolve(127);
      });
      child.once('close', (c, sig) => resolve(c ?? 128 + (sig ? os.constants.signals[sig] : 0)));
    });
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    const snap = code === 0 ? await mount.commit() : await mount.rollback();
    if (code !== 0) console.error(`hp-node: command exited with ${code}; session rolled back`);
    console.log(`${lastByte === 0x0a ? '' : '\n'}${snap.root}`);
    return code;
  } finally {
    await mount.close();
    fs.rmSync(mountpoint, { recursive: true, force: true });
  }
}
