// `hp-node new`, `hp-node run`: creating and running a node; `hp-node cluster`: N of them locally.
import { Command, InvalidArgumentError } from 'commander';
import { MAX_CLUSTER_NODES } from '../node/cluster';
import { createNode } from '../node/nodeDir';

export function parsePort(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError(`"${v}" is not a TCP port (1..65535)`);
  return n;
}

export function parseRoundtime(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 50 || n > 3_600_000) throw new InvalidArgumentError(`"${v}" is not a roundtime in ms (50..3600000)`);
  return n;
}

export function parseNodeCount(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CLUSTER_NODES) throw new InvalidArgumentError(`"${v}" is not a node count (1..${MAX_CLUSTER_NODES})`);
  return n;
}

/** Same bounds as config validation: at 50% or less two halves could each close a ledger (a fork). */
export function parseThreshold(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 51 || n > 100) throw new InvalidArgumentError(`"${v}" is not a threshold in percent (51..100; 50 or less cannot prevent forks)`);
  return n;
}

function collectEnv(v: string, acc: Record<string, string>): Record<string, string> {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${v}" is not KEY=VALUE`);
  return { ...acc, [v.slice(0, eq)]: v.slice(eq + 1) };
}

export function registerNodeCommands(program: Command): void {
  program
    .command('new <dir>')
    .description('create a node directory: keys (0600), config, TLS certificate, genesis state from the contract directory')
    .requiredOption('--contract <contract-dir>', 'directory whose files become the contract state')
    .option('--contract-bin <path>', 'contract executable (absolute path)', process.execPath)
    .option('--contract-args <args>', 'contract arguments, split on spaces', 'index.js')
    .option('--contract-id <id>', 'contract id (default: a random UUID; must match across the cluster)')
    .option('--contract-env <KEY=VALUE>', 'environment variable for the contract (repeatable; contracts inherit nothing else)', collectEnv, {})
    .option('--user-port <n>', 'WebSocket port for users', parsePort, 8081)
    .option('--peer-port <n>', 'port for peers', parsePort, 22861)
    .option('--roundtime <ms>', 'round time in milliseconds', parseRoundtime, 1000)
    .action(async (dir: string, o: { contract: string; contractBin: string; contractArgs: string; contractId?: string; contractEnv: Record<string, string>; userPort: number; peerPort: number; roundtime: number }) => {
      const r = await createNode(dir, {
        contractDir: o.contract,
        contractBin: o.contractBin,
        contractArgs: o.contractArgs,
        contractId: o.contractId,
        contractEnv: o.contractEnv,
        userPort: o.userPort,
        peerPort: o.peerPort,
        roundtimeMs: o.roundtime,
      });
      console.log(`created node ${r.paths.dir}`);
      console.log(`  public key   ${r.keys.publicKey.toString('hex')}`);
      console.log(`  contract id  ${r.config.contract.id}`);
      console.log(`  genesis root ${r.root}`);
      console.log(`start it with: hp-node run ${dir}`);
    });

  program
    .command('run <dir>')
    .description('run a node until SIGINT/SIGTERM')
    .option('--log-level <level>', 'debug, info, warn or error (overrides the config)')
    .action(async (dir: string, o: { logLevel?: string }) => {
      const { runNodeUntilSignal } = await import('../node/runNode');
      process.exitCode = await runNodeUntilSignal(dir, { logLevel: o.logLevel });
    });

  program
    .command('status <dir>')
    .description("a running node's position, vote status, peers, and what catching up and state sync fetched (from <dir>/run/status.json)")
    .option('--json', 'print the raw JSON')
    .action(async (dir: string, o: { json?: boolean }) => {
      const { printStatus } = await import('./status');
      process.exitCode = printStatus(dir, !!o.json);
    });

  program
    .command('cluster <dir>')
    .description('run N local nodes sharing one UNL and contract id until SIGINT/SIGTERM (created in <dir>/node1..N on first use, resumed afterwards)')
    .requiredOption('--nodes <n>', `number of nodes (1..${MAX_CLUSTER_NODES})`, parseNodeCount)
    .option('--contract <contract-dir>', 'directory whose files become the contract state (needed to create the cluster)')
    .option('--contract-bin <path>', 'contract executable (absolute path)', process.execPath)
    .option('--contract-args <args>', 'contract arguments, split on spaces', 'index.js')
    .option('--contract-env <KEY=VALUE>', 'environment variable for the contract (repeatable)', collectEnv, {})
    .option('--user-port-base <n>', 'node i listens for users on this + i - 1', parsePort, 8081)
    .option('--peer-port-base <n>', 'node i listens for peers on this + i - 1', parsePort, 22861)
    .option('--roundtime <ms>', 'round time in milliseconds', parseRoundtime, 1000)
    .option('--threshold <percent>', 'share of the UNL whose votes close a ledger (51..100; default 80)', parseThreshold)
    .action(async (dir: string, o: ClusterCliOptions, cmd: Command) => {
      const { clusterNodeInfo, ensureCluster, runCluster } = await import('../node/cluster');
      const { dirs, created } = await ensureCluster(dir, {
        nodes: o.nodes,
        contractDir: o.contract,
        contractBin: o.contractBin,
        contractArgs: o.contractArgs,
        contractEnv: o.contractEnv,
        userPortBase: o.userPortBase,
        peerPortBase: o.peerPortBase,
        roundtimeMs: o.roundtime,
        thresholdPercent: o.threshold,
      });
      if (!created) {
        // Resuming runs the nodes as configured; say so rather than silently ignore what was asked.
        const ignored = CREATE_ONLY.filter((k) => cmd.getOptionValueSource(k) === 'cli');
        if (ignored.length) console.error(`hp-node: ${dir} already holds the cluster; ignoring ${ignored.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} (edit each nodeN/config.json to change them)`);
      }
      for (const n of clusterNodeInfo(dirs)) console.log(`${n.name}  ${n.userUrl}  ${n.publicKey}`);
      process.exitCode = await runCluster(dirs);
    });
}

interface ClusterCliOptions {
  nodes: number;
  contract?: string;
  contractBin: string;
  contractArgs: string;
  contractEnv: Record<string, string>;
  userPortBase: number;
  peerPortBase: number;
  roundtime: number;
  threshold?: number;
}

const CREATE_ONLY = ['contract', 'contractBin', 'contractArgs', 'contractEnv', 'userPortBase', 'peerPortBase', 'roundtime', 'threshold'];
