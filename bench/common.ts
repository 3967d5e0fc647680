// Helpers shared by the node benchmarks (bench/node.ts, bench/cluster.ts), not a benchmark itself:
// the echo contract they run, command-line options, progress logging, quantiles and the markdown table.
import fs from 'node:fs';
import path from 'node:path';
import { NodeConfig, readConfig, writeConfig } from '../src/config/nodeConfig';
import { cleanStaleMounts, fuseMountsUnder } from '../src/state/mounts';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const ECHO_CONTRACT = path.join(REPO_ROOT, 'examples', 'echo', 'contract');
// The environment the node gives the contract (config contract.environment and nothing else): an
// inherited NODE_EXTRA_CA_CERTS, say, would add tens of ms to every node start-up.
export const CONTRACT_ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };

/** The echo contract a node benchmark runs: how ensureCluster/createNode are told to run it. */
export interface BenchContract {
  name: string;
  contractDir: string;
  contractBin?: string;
  contractArgs?: string;
  contractEnv: Record<string, string>;
}

/**
 * `--contract node` (default): examples/echo on the upstream Node.js SDK, a Node process per
 * ledger (~50 ms of boot each). `--contract native`: examples/native-echo, the same replies from
 * a C program (built by native/build.sh), so the figures show the node's own costs.
 */
export function benchContract(): BenchContract {
  const which = argValue('contract') ?? process.env.HP_BENCH_CONTRACT ?? 'node';
  if (which === 'node') return { name: 'echo (Node.js, hotpocket-nodejs-contract)', contractDir: ECHO_CONTRACT, contractEnv: CONTRACT_ENV };
  if (which === 'native') {
    const bin = path.join(REPO_ROOT, 'native', 'build', 'native-echo');
    if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run \`npm run build\` (native/build.sh compiles examples/native-echo/echo.c)`);
    return { name: 'echo (native C, examples/native-echo)', contractDir: path.join(REPO_ROOT, 'examples', 'native-echo'), contractBin: bin, contractArgs: '', contractEnv: {} };
  }
  throw new Error(`--contract / HP_BENCH_CONTRACT: "${which}" is neither node nor native`);
}

/** `--name=value` or `--name value` from the command line, else undefined. */
export function argValue(name: string, argv: string[] = process.argv): string | undefined {
  const flag = `--${name}`;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith(`${flag}=`)) return argv[i].slice(flag.length + 1);
    if (argv[i] === flag && i + 1 < argv.length && !argv[i + 1].startsWith('--')) return argv[i + 1];
  }
  return undefined;
}

/** A positive number from `--name` or the environment variable `env`, else `dflt`; throws naming both. */
export function numOpt(name: string, env: string, dflt: number): number {
  const v = argValue(name) ?? process.env[env];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} / ${env}: "${v}" is not a positive number`);
  return n;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A progress logger to stderr: `[name +12.3s] message`. */
export function makeLog(name: string): (msg: string) => void {
  const startedAt = performance.now();
  return (msg: string) => process.stderr.write(`[${name} +${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${msg}\n`);
}

export function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
export const p50 = (xs: number[]) => quantile(xs, 0.5);

export const fmtMs = (x: number) => (Number.isNaN(x) ? '—' : x >= 100 ? `${x.toFixed(0)} ms` : x >= 10 ? `${x.toFixed(1)} ms` : `${x.toFixed(2)} ms`);
export const fmtRate = (x: number) => `${Math.round(x).toLocaleString('en-US')}/s`;
export const fmtRejects = (m: Map<string, number>) => (m.size ? [...m].map(([r, n]) => `${r} ${n}`).join(', ') : 'none');

export function markdown(head: string[], body: string[][]): string {
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) => `| ${cells.map((x, c) => x.padEnd(widths[c])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

/**
 * Runs a benchmark's main(), then its cleanup whatever happened (children, mounts, temp dirs),
 * and exits 0, or 1 with the error on stderr.
 */
export function runBench(name: string, main: () => Promise<void>, cleanup: () => Promise<void>, log: (msg: string) => void = () => undefined): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      log(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  main().then(
    async () => {
      await cleanup();
      log('done');
      process.exit(0);
    },
    async (err: Error) => {
      process.stderr.write(`${name} benchmark failed: ${err.stack ?? err}\n`);
      await cleanup();
      process.exit(1);
    },
  );
}

/** Unmounts whatever a crashed node left mounted under a benchmark's temp dir, removes it, says so. */
export function removeBenchDir(dir: string, log: (msg: string) => void): void {
  const stale = cleanStaleMounts(dir); // only if a node crashed
  if (stale) log(`cleared ${stale} stale FUSE mount(s) under ${dir}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const left = fuseMountsUnder(dir).length;
  log(`removed ${dir}${left ? ` (${left} mounts still there!)` : ''}`);
}

/**
 * Points node i of a cluster at 127.0.0.1 and the given free ports (users, peers), every node
 * dialling the others; `edit` changes anything else in each config before it is written.
 */
export function useLoopbackPorts(dirs: string[], userPorts: number[], peerPorts: number[], edit: (cfg: NodeConfig, i: number) => void = () => undefined): void {
  dirs.forEach((d, i) => {
    const file = path.join(d, 'config.json');
    const cfg = readConfig(file);
    cfg.user.listen_host = '127.0.0.1';
    cfg.user.port = userPorts[i];
    cfg.mesh.listen_host = '127.0.0.1';
    cfg.mesh.port = peerPorts[i];
    cfg.mesh.known_peers = peerPorts.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`);
    edit(cfg, i);
    writeConfig(file, cfg);
  });
}
