// `hp-node cluster`: N local nodes sharing one UNL and contract id, each a child `hp-node run`.
// Created on first use (node1..nodeN), resumed afterwards; Ctrl-C/SIGTERM stop them all cleanly.
import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { readConfig, writeConfig } from '../config/nodeConfig';
import { generateKeyPair, readKeyFile } from '../crypto/keys';
import { createNode } from './nodeDir';

export interface ClusterOptions {
  nodes: number;
  /** Needed only to create the cluster; a resumed cluster already holds its genesis state. */
  contractDir?: string;
  contractBin?: string;
  contractArgs?: string;
  contractEnv?: Record<string, string>;
  /** Node i (1-based) listens for users on userPortBase + i - 1 and for peers on peerPortBase + i - 1. */
  userPortBase: number;
  peerPortBase: number;
  roundtimeMs?: number;
  /** contract.consensus.threshold (percent of the UNL); the config default when absent. */
  thresholdPercent?: number;
}

export const MAX_CLUSTER_NODES = 64;

export const HP_NODE_BIN = path.join(__dirname, '..', '..', '..', 'bin', 'hp-node');

const NODE_DIR = /^node(\d+)$/;

/** The nodeK directories (with a config.json) already in `dir`, by K. */
function existingNodes(dir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => NODE_DIR.exec(n))
    .filter((m): m is RegExpExecArray => !!m && fs.existsSync(path.join(dir, m[0], 'config.json')))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/**
 * Creates the cluster's node directories, or checks that `dir` holds exactly `opts.nodes` of them
 * (node1..nodeN) and returns them as they are: creation options do not change an existing cluster.
 * Returns the node directories in order, and whether they were created now.
 */
export async function ensureCluster(dir: string, opts: ClusterOptions): Promise<{ dirs: string[]; created: boolean }> {
  const n = opts.nodes;
  if (!Number.isInteger(n) || n < 1 || n > MAX_CLUSTER_NODES) throw new Error(`a cluster has 1..${MAX_CLUSTER_NODES} nodes, not ${n}`);
  const dirs = Array.from({ length: n }, (_, i) => path.join(dir, `node${i + 1}`));
  const existing = existingNodes(dir);
  if (existing.length > 0) {
    const expected = existing.map((_, i) => i + 1);
    if (existing.join() !== expected.join()) {
      throw new Error(`${dir} holds nodes ${existing.map((k) => `node${k}`).join(', ')}, not node1..node${existing.length}; it is not a cluster this command created`);
    }
    if (existing.length !== n) throw new Error(`${dir} already holds a cluster of ${existing.length} node${existing.length === 1 ? '' : 's'}; run it with --nodes ${existing.length}, or use another directory for ${n}`);
    return { dirs, created: false };
  }
  if (!opts.contractDir) throw new Error(`${dir} holds no cluster yet: --contract <contract-dir> is needed to create one`);
  checkPortRange('user', opts.userPortBase, n);
  checkPortRange('peer', opts.peerPortBase, n);
  if (Math.abs(opts.userPortBase - opts.peerPortBase) < n) {
    throw new Error(`user ports ${opts.userPortBase}..${opts.userPortBase + n - 1} and peer ports ${opts.peerPortBase}..${opts.peerPortBase + n - 1} overlap; move one base`);
  }

  const keys = dirs.map(() => generateKeyPair());
  const unl = keys.map((k) => k.publicKey.toString('hex')).sort();
  const contractId = crypto.randomUUID();
  for (let i = 0; i < n; i++) {
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
    if (opts.thresholdPercent !== undefined) cfg.contract.consensus.threshold = opts.thresholdPercent;
    writeConfig(cfgFile, cfg);
  }
  return { dirs, created: true };
}

function checkPortRange(what: string, base: number, n: number): void {
  if (!Number.isInteger(base) || base < 1 || base + n - 1 > 65535) throw new Error(`--${what}-port-base ${base}: ports ${base}..${base + n - 1} are not all TCP ports (1..65535)`);
}

export interface ClusterNodeInfo {
  name: string; // node1...
  dir: string;
  userUrl: string;
  publicKey: string; // "ed" + 64 hex
}

/** What a user needs to reach each node, from the node directories as they are now. */
export function clusterNodeInfo(dirs: string[]): ClusterNodeInfo[] {
  return dirs.map((dir) => {
    const cfg = readConfig(path.join(dir, 'config.json'));
    const u = cfg.user;
    const host = u.listen_host === '0.0.0.0' || u.listen_host === '::' ? 'localhost' : u.listen_host;
    return {
      name: path.basename(dir),
      dir,
      userUrl: `${u.tls ? 'wss' : 'ws'}://${host}:${u.port}`,
      publicKey: readKeyFile(path.join(dir, 'keys.json')).publicKey.toString('hex'),
    };
  });
}

/** Calls `fn` with each complete line of `stream` (a last unterminated line at its end too). */
export function onLines(stream: Readable, fn: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop()!;
    for (const p of parts) fn(p);
  });
  stream.on('end', () => {
    if (rest) fn(rest);
    rest = '';
  });
}

/** Starts `hp-node run <dir>` as a child with stdout and stderr piped (the caller reads both). */
export function spawnNode(dir: string, opts: { detached?: boolean } = {}): ChildProcess {
  return spawn(process.execPath, [HP_NODE_BIN, 'run', dir], { stdio: ['ignore', 'pipe', 'pipe'], detached: !!opts.detached });
}

/**
 * Runs every node as a child process until SIGINT/SIGTERM, which is forwarded to each as SIGTERM;
 * resolves with 0 when all of them then stopped cleanly, else 1. Node output is passed to `log`
 * line by line, prefixed with the node's name (stderr lines to `logErr`).
 */
export async function runCluster(dirs: string[], log: (line: string) => void = console.log, logErr: (line: string) => void = console.error): Promise<number> {
  const children: ChildProcess[] = [];
  const exited: Array<Promise<number>> = [];
  for (const d of dirs) {
    const name = path.basename(d);
    const child = spawnNode(d);
    children.push(child);
    exited.push(new Promise((resolve) => {
      child.once('error', (err) => {
        logErr(`[${name}] cannot start: ${err.message}`);
        resolve(1);
      });
      child.once('exit', (code) => resolve(code ?? 1));
    }));
    onLines(child.stdout!, (line) => log(`[${name}] ${line}`));
    onLines(child.stderr!, (line) => logErr(`[${name}] ${line}`));
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    // One node dying is reported; the others keep running (that is what a cluster is for).
    exited.forEach((p, i) => void p.then((code) => {
      if (!stopping) logErr(`[${path.basename(dirs[i])}] exited with code ${code}`);
    }));
    const codes = await Promise.all(exited);
    return stopping && codes.every((c) => c === 0) ? 0 : 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
