// `hp-node cluster`: N local nodes sharing one UNL and contract id, each a child `hp-node run`.
// Created on first use (node1..nodeN), resumed afterwards; Ctrl-C/SIGTERM stop them all cleanly.
import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readConfig, writeConfig } from '../config/nodeConfig';
import { generateKeyPair } from '../crypto/keys';
import { createNode } from './nodeDir';

export interface ClusterOptions {
  nodes: number;
  contractDir: string;
  contractBin?: string;
  contractArgs?: string;
  contractEnv?: Record<string, string>;
  userPortBase: number;
  peerPortBase: number;
  roundtimeMs?: number;
  log?: (line: string) => void;
}

const HP_NODE_BIN = path.join(__dirname, '..', '..', '..', 'bin', 'hp-node');

/** Creates the node directories that do not exist yet; all share the UNL and contract id. */
export async function ensureCluster(dir: string, opts: ClusterOptions): Promise<string[]> {
  const dirs = Array.from({ length: opts.nodes }, (_, i) => path.join(dir, `node${i + 1}`));
  const existing = dirs.filter((d) => fs.existsSync(path.join(d, 'config.json')));
  if (existing.length === dirs.length) return dirs;
  if (existing.length > 0) {
    throw new Error(`${dir} holds ${existing.length} of ${opts.nodes} nodes; remove it or run with --nodes ${existing.length}`);
  }
  const keys = dirs.map(() => generateKeyPair());
  const unl = keys.map((k) => k.publicKey.toString('hex')).sort();
  const contractId = crypto.randomUUID();
  for (let i = 0; i < dirs.length; i++) {
    await createNode(dirs[i], {
      contractDir: opts.contractDir,
      contractBin: opts.contractBin,
      contractArgs: opts.contractArgs,
      contractEnv: opts.contractEnv,
      contractId,
      unl,
      keyPair: keys[i],
      userPort: opts.userPortBase + i,
      peerPort: opts.peerPortBase + i,
      roundtimeMs: opts.roundtimeMs,
    });
    const cfgFile = path.join(dirs[i], 'config.json');
    const cfg = readConfig(cfgFile);
    cfg.mesh.known_peers = dirs.map((_, j) => `127.0.0.1:${opts.peerPortBase + j}`).filter((_, j) => j !== i);
    writeConfig(cfgFile, cfg);
  }
  return dirs;
}

/** Runs every node as a child process until SIGINT/SIGTERM; resolves with the exit code. */
export async function runCluster(dirs: string[], log: (line: string) => void = console.log): Promise<number> {
  const children: ChildProcess[] = [];
  const exited: Array<Promise<number>> = [];
  for (const d of dirs) {
    const child = spawn(process.execPath, [HP_NODE_BIN, 'run', d], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    exited.push(new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 1))));
    child.stdout!.on('data', (b: Buffer) => {
      for (const line of b.toString().split('\n').filter(Boolean)) log(`[${path.basename(d)}] ${line}`);
    });
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // One node dying is reported; the others keep running (that is what a cluster is for).
  exited.forEach((p, i) => void p.then((code) => { if (!stopping) log(`[${path.basename(dirs[i])}] exited with code ${code}`); }));
  const codes = await Promise.all(exited);
  return stopping && codes.every((c) => c === 0) ? 0 : 1;
}
