// The node's config.json: its shape, defaults and validation. Validation runs on every start and
// names every bad field with what was expected, so an operator can fix them all in one go.
// Field names follow HotPocket's hp.cfg where one exists (docs/CONFIG.md documents each field).
import fs from 'node:fs';
import { isPublicKeyHex } from '../crypto/keys';

export interface RoundLimits {
  user_input_bytes: number; // per user per round; 0 = unlimited
  user_output_bytes: number; // per user per execution; 0 = unlimited
  npl_output_bytes: number;
  proc_cpu_seconds: number; // RLIMIT_CPU; 0 = none
  proc_mem_bytes: number; // RLIMIT_DATA; 0 = none
  proc_ofd_count: number; // RLIMIT_NOFILE; 0 = none
  exec_timeout: number; // ms; the contract is killed after this
}

export interface NodeConfig {
  version: 1;
  contract: {
    id: string;
    version: string;
    bin_path: string;
    bin_args: string;
    environment: Record<string, string>;
    unl: string[];
    max_input_ledger_offset: number;
    give_private_key: boolean;
    /**
     * Start a Node.js contract's process ahead of its ledger so its boot is off the round's critical
     * path (absent = true; other executables always start at the close).
     */
    warm_start?: boolean;
    consensus: { roundtime: number; threshold: number };
    round_limits: RoundLimits;
    state_quota: { bytes: number; files: number };
  };
  user: {
    port: number;
    listen_host: string;
    tls: boolean;
    max_bytes_per_msg: number;
    max_bytes_per_min: number;
    max_bad_msgs_per_min: number;
    max_connections: number;
    max_in_connections_per_host: number;
    idle_timeout: number;
    concurrent_read_requests: number;
  };
  mesh: {
    port: number;
    listen_host: string;
    known_peers: string[];
    /** State bytes per second this node serves to syncing peers, in MiB (absent = DEFAULT_SERVE_MIB_PER_SEC). */
    serve_mib_per_sec?: number;
  };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
}

export const DEFAULT_USER_PORT = 8081;
export const DEFAULT_PEER_PORT = 22861;
/** Serving state to a syncing peer: two peers at this rate reach the 200 MiB/s a fresh node aims for. */
export const DEFAULT_SERVE_MIB_PER_SEC = 128;

export function defaultConfig(opts: { contractId: string; unl: string[]; binPath: string; binArgs: string; userPort?: number; peerPort?: number; roundtimeMs?: number }): NodeConfig {
  return {
    version: 1,
    contract: {
      id: opts.contractId,
      version: '1.0',
      bin_path: opts.binPath,
      bin_args: opts.binArgs,
      environment: {},
      unl: opts.unl,
      max_input_ledger_offset: 10,
      give_private_key: false,
      consensus: { roundtime: opts.roundtimeMs ?? 1000, threshold: 80 },
      round_limits: {
        user_input_bytes: 1024 * 1024,
        user_output_bytes: 4 * 1024 * 1024,
        npl_output_bytes: 1024 * 1024,
        proc_cpu_seconds: 0,
        proc_mem_bytes: 0,
        proc_ofd_count: 0,
        exec_timeout: 10_000,
      },
      state_quota: { bytes: 10 * 1024 ** 3, files: 1_000_000 },
    },
    user: {
      port: opts.userPort ?? DEFAULT_USER_PORT,
      listen_host: '0.0.0.0',
      tls: true,
      max_bytes_per_msg: 5 * 1024 * 1024,
      max_bytes_per_min: 0,
      max_bad_msgs_per_min: 60,
      max_connections: 1000,
      max_in_connections_per_host: 0,
      idle_timeout: 0,
      concurrent_read_requests: 4,
    },
    mesh: { port: opts.peerPort ?? DEFAULT_PEER_PORT, listen_host: '0.0.0.0', known_peers: [] },
    log: { level: 'info' },
  };
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`invalid config ${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}\nfix these fields (see docs/CONFIG.md) and start again`);
  }
}

type Check = (path: string, v: unknown) => string | null;

const int = (min: number, max: number): Check => (p, v) =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? null : `${p}: expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`;
const str = (nonEmpty = true): Check => (p, v) => (typeof v === 'string' && (!nonEmpty || v.length > 0) ? null : `${p}: expected a ${nonEmpty ? 'non-empty ' : ''}string, got ${JSON.stringify(v)}`);
const bool: Check = (p, v) => (typeof v === 'boolean' ? null : `${p}: expected true or false, got ${JSON.stringify(v)}`);
const optional = (check: Check): Check => (p, v) => (v === undefined ? null : check(p, v));
const oneOf = (...values: string[]): Check => (p, v) => (values.includes(v as string) ? null : `${p}: expected one of ${values.join(', ')}, got ${JSON.stringify(v)}`);

const SCHEMA: Record<string, Check> = {
  version: (p, v) => (v === 1 ? null : `${p}: expected 1 (this hp-node reads config version 1), got ${JSON.stringify(v)}`),
  'contract.id': str(),
  'contract.version': str(),
  'contract.bin_path': (p, v) => (typeof v === 'string' && v.startsWith('/') ? null : `${p}: expected an absolute path (contracts get no PATH), got ${JSON.stringify(v)}`),
  'contract.bin_args': str(false),
  'contract.environment': (p, v) =>
    v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string') ? null : `${p}: expected an object of string values`,
  'contract.unl': (p, v) => {
    if (!Array.isArray(v) || v.length === 0) return `${p}: expected a non-empty array of node public keys`;
    const bad = v.filter((k) => !isPublicKeyHex(k));
    if (bad.length) return `${p}: not public keys ("ed" + 64 hex): ${bad.map((b) => JSON.stringify(b)).join(', ')}`;
    return new Set(v).size === v.length ? null : `${p}: lists a key twice`;
  },
  'contract.max_input_ledger_offset': int(0, 65535),
  'contract.give_private_key': bool,
  'contract.warm_start': optional(bool),
  'contract.consensus.roundtime': int(50, 3_600_000),
  // Two quorums must intersect: a threshold of 50% or less would let two halves close different ledgers.
  'contract.consensus.threshold': (p, v) => (Number.isSafeInteger(v) && (v as number) > 50 && (v as number) <= 100 ? null : `${p}: expected an integer in 51..100 (≤ 50% cannot prevent forks), got ${JSON.stringify(v)}`),
  'contract.round_limits.user_input_bytes': int(0, 2 ** 40),
  'contract.round_limits.user_output_bytes': int(0, 2 ** 40),
  'contract.round_limits.npl_output_bytes': int(0, 2 ** 40),
  'contract.round_limits.proc_cpu_seconds': int(0, 86_400),
  'contract.round_limits.proc_mem_bytes': int(0, 2 ** 50),
  'contract.round_limits.proc_ofd_count': int(0, 1_048_576),
  'contract.round_limits.exec_timeout': int(10, 3_600_000),
  'contract.state_quota.bytes': int(1024, 2 ** 50),
  'contract.state_quota.files': int(1, 2 ** 32),
  'user.port': int(0, 65535),
  'user.listen_host': str(),
  'user.tls': bool,
  'user.max_bytes_per_msg': int(1024, 256 * 1024 * 1024),
  'user.max_bytes_per_min': int(0, 2 ** 40),
  'user.max_bad_msgs_per_min': int(0, 1_000_000),
  'user.max_connections': int(1, 1_000_000),
  'user.max_in_connections_per_host': int(0, 1_000_000),
  'user.idle_timeout': int(0, 86_400_000),
  'user.concurrent_read_requests': int(0, 64),
  'mesh.port': int(0, 65535),
  'mesh.listen_host': str(),
  'mesh.known_peers': (p, v) =>
    Array.isArray(v) && v.every((x) => typeof x === 'string' && /^[^\s:]+:\d{1,5}$/.test(x)) ? null : `${p}: expected an array of "host:port" strings`,
  'mesh.serve_mib_per_sec': optional(int(1, 1_000_000)),
  'log.level': oneOf('debug', 'info', 'warn', 'error'),
};

function lookup(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

/** Every problem with `obj` as a config, field by field (empty when valid). */
export function configProblems(obj: unknown): string[] {
  const problems: string[] = [];
  for (const [path, check] of Object.entries(SCHEMA)) {
    const p = check(path, lookup(obj, path));
    if (p) problems.push(p);
  }
  const known = new Set(Object.keys(SCHEMA).flatMap((k) => k.split('.').map((_, i, a) => a.slice(0, i + 1).join('.'))));
  const walk = (o: unknown, prefix: string) => {
    if (!o || typeof o !== 'object' || Array.isArray(o) || prefix === 'contract.environment') return;
    for (const k of Object.keys(o)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (!known.has(path)) problems.push(`${path}: unknown field (misspelt?)`);
      else walk((o as Record<string, unknown>)[k], path);
    }
  };
  walk(obj, '');
  return problems;
}

export function readConfig(file: string): NodeConfig {
  let obj: unknown;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(file, [`cannot read or parse: ${(err as Error).message}`]);
  }
  const problems = configProblems(obj);
  if (problems.length) throw new ConfigError(file, problems);
  return obj as NodeConfig;
}

export function writeConfig(file: string, cfg: NodeConfig): void {
  const problems = configProblems(cfg);
  if (problems.length) throw new ConfigError(file, problems);
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
}
