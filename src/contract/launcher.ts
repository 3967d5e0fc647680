// Where the native launcher lives and the argv it takes (see native/hp-contract-launcher.c).
import path from 'node:path';
import type { FdLayout } from './args';
import type { ContractLimits } from './types';

/** native/build/hp-contract-launcher of this repository (built by `npm run build`). */
export function defaultLauncherPath(): string {
  // dist/src/contract/launcher.js -> repo root (and the same from src/ under ts-node-like runners).
  const root = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
  return path.join(root, 'native', 'build', 'hp-contract-launcher');
}

/**
 * Node.js binaries: their SDK reads its args with readFile(stdin), which takes the packet socket as
 * is (and must have it: see ContractLaunch.argsAsPackets).
 */
export function isNodeBinary(binPath: string, self = process.execPath): boolean {
  return binPath === self || /^node(js)?[0-9.]*$/.test(binPath.slice(binPath.lastIndexOf('/') + 1));
}

export function launcherArgv(binPath: string, binArgs: string[], cwd: string, fds: FdLayout, limits: ContractLimits, argsAsPackets: boolean, execAfterArgs = false): string[] {
  const lastKept = fds.userOutFds.length > 0 ? fds.userOutFds[fds.userOutFds.length - 1] : fds.userInFd;
  const argv = ['--cwd', cwd, '--control-fd', String(fds.controlFd), '--keep', `${fds.userInFd}-${lastKept}`];
  if (argsAsPackets) argv.push('--args-packets');
  if (execAfterArgs) {
    if (!argsAsPackets) throw new Error('execAfterArgs needs argsAsPackets: the args reach the launcher as packets');
    argv.push('--exec-after-args');
  }
  if (fds.nplFd !== undefined) argv.push('--npl-fd', String(fds.nplFd));
  const opt = (name: string, v: number) => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`contract limit ${name} must be a non-negative integer, got ${v}`);
    if (v > 0) argv.push(name, String(v));
  };
  opt('--timeout-ms', limits.execTimeoutMs);
  opt('--npl-limit', limits.nplOutputBytes);
  opt('--cpu-seconds', limits.procCpuSeconds);
  opt('--mem-bytes', limits.procMemBytes);
  opt('--nofile', limits.procOfdCount);
  return [...argv, '--', binPath, ...binArgs];
}
