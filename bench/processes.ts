// Child-process helpers shared by the benchmarks.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';

/** One field of /proc/<pid>/status in MiB (VmRSS: current resident set; VmHWM: its peak), NaN if gone. */
export function procStatusMiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Waits for `child` to exit, SIGKILLing it (and calling `onKill`) after `timeoutMs`. */
export function waitExit(child: ChildProcess, timeoutMs: number, onKill?: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      onKill?.();
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch { /* already gone */ }
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
