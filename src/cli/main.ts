// hp-node command line.
import { Command } from 'commander';
import { registerNodeCommands } from './nodeCommands';
import { registerStateCommands } from './stateCommands';

const pkg = require('../../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command('hp-node')
    .description('HotPocket-compatible smart-contract node with a Merkle-tracked FUSE state directory')
    .version(pkg.version);
  registerNodeCommands(program);
  registerStateCommands(program);
  return program;
}

export async function main(): Promise<void> {
  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    console.error(`hp-node: ${(err as Error).message}`);
    process.exitCode = process.exitCode || 1;
  }
}

if (require.main === module) void main();
