// `hp-node new`, `hp-node run`: creating and running a node.
import { Command, InvalidArgumentError } from 'commander';
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
}
