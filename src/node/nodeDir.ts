// A node directory: where everything of one node lives, and `hp-node new` that creates it.
//
//   config.json     validated on every start (docs/CONFIG.md)
//   keys.json       Ed25519 key pair, mode 0600
//   tls/            self-signed certificate for wss:// (key 0600)
//   state/          the state store; its tree holds state/ (the contract's cwd) and patch.cfg
//   ledger/         the hash-chained ledger
//   run/            mountpoints while running (rw/ for rounds, ro/ for read requests)
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { defaultConfig, NodeConfig, readConfig, writeConfig } from '../config/nodeConfig';
import { generateKeyPair, KeyPair, readKeyFile, writeKeyFile } from '../crypto/keys';
import { ObjectStore } from '../state/blockstore';
import { importDirectory } from '../state/importExport';
import { patchConfigOf } from './patchConfig';

export interface NodePaths {
  dir: string;
  config: string;
  keys: string;
  tlsCert: string;
  tlsKey: string;
  store: string;
  ledger: string;
  rwMount: string;
  roMount: string;
  /** Written by the running node every second: what `hp-node status` prints. */
  status: string;
  log: string;
}

export function nodePaths(dir: string): NodePaths {
  const d = path.resolve(dir);
  return {
    dir: d,
    config: path.join(d, 'config.json'),
    keys: path.join(d, 'keys.json'),
    tlsCert: path.join(d, 'tls', 'cert.pem'),
    tlsKey: path.join(d, 'tls', 'key.pem'),
    store: path.join(d, 'state'),
    ledger: path.join(d, 'ledger'),
    rwMount: path.join(d, 'run', 'rw'),
    roMount: path.join(d, 'run', 'ro'),
    status: path.join(d, 'run', 'status.json'),
    log: path.join(d, 'log'),
  };
}

/** Where the contract's files live inside the state tree (its cwd); patch.cfg sits beside it. */
export const STATE_SUBDIR = 'state';
export const PATCH_FILE = 'patch.cfg';

export interface NewNodeOptions {
  contractDir: string;
  contractBin?: string;
  contractArgs?: string;
  contractId?: string;
  contractEnv?: Record<string, string>;
  userPort?: number;
  peerPort?: number;
  roundtimeMs?: number;
  /** UNL to write (default: this node alone); `hp-node cluster` passes the shared one. */
  unl?: string[];
  keyPair?: KeyPair;
}

export async function createNode(dir: string, opts: NewNodeOptions): Promise<{ paths: NodePaths; config: NodeConfig; keys: KeyPair; root: string }> {
  const paths = nodePaths(dir);
  if (fs.existsSync(paths.config)) throw new Error(`${paths.dir} already holds a node (config.json exists); use \`hp-node run ${dir}\``);
  if (!fs.statSync(opts.contractDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`--contract ${opts.contractDir}: not a directory`);
  fs.mkdirSync(paths.dir, { recursive: true });
  fs.mkdirSync(path.dirname(paths.tlsCert), { recursive: true, mode: 0o700 });
  fs.mkdirSync(paths.log, { recursive: true });
  const keys = opts.keyPair ?? generateKeyPair();
  writeKeyFile(paths.keys, keys);
  const config = defaultConfig({
    contractId: opts.contractId ?? crypto.randomUUID(),
    unl: opts.unl ?? [keys.publicKey.toString('hex')],
    binPath: opts.contractBin ?? process.execPath,
    binArgs: opts.contractArgs ?? 'index.js',
    userPort: opts.userPort,
    peerPort: opts.peerPort,
    roundtimeMs: opts.roundtimeMs,
  });
  config.contract.environment = { ...opts.contractEnv };
  writeConfig(paths.config, config);
  const { generateTlsCertificate } = await import('../users/tls');
  const tls = await generateTlsCertificate(`${keys.publicKey.toString('hex')}.hotpocket.contract`);
  fs.writeFileSync(paths.tlsKey, tls.key, { mode: 0o600 });
  fs.writeFileSync(paths.tlsCert, tls.cert);
  // Genesis state: the contract's files under state/ plus patch.cfg, all stamped with time 0 so
  // every node created from the same files and config starts from the same root.
  const store = ObjectStore.create(paths.store, { timeMs: 0 });
  try {
    const snap = importDirectory(store, opts.contractDir, 0, {
      under: `/${STATE_SUBDIR}`,
      extraFiles: { [`/${PATCH_FILE}`]: Buffer.from(JSON.stringify(patchConfigOf(config), null, 4)) },
    });
    return { paths, config, keys, root: snap.root };
  } finally {
    store.close();
  }
}

export function loadNode(dir: string): { paths: NodePaths; config: NodeConfig; keys: KeyPair } {
  const paths = nodePaths(dir);
  if (!fs.existsSync(paths.config)) throw new Error(`${paths.dir} is not a node directory (no config.json); create one with \`hp-node new ${dir} --contract <dir>\``);
  const config = readConfig(paths.config);
  const keys = readKeyFile(paths.keys);
  if (config.contract.unl.length === 1 && config.contract.unl[0] !== keys.publicKey.toString('hex')) {
    // A single-node UNL that is not this node can never close a ledger: say so now, not after a silent hang.
    throw new Error(`${paths.config}: contract.unl holds one key that is not this node's (${keys.publicKey.toString('hex')}), so no ledger could ever close`);
  }
  return { paths, config, keys };
}
