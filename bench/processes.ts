// Child-process and OS helpers shared by the benchmarks: RSS and CPU time from /proc, waiting for
// (and killing) children, free TCP ports.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const USER_HZ = 100; // clock ticks per second in /proc/<pid>/stat on Linux

interface ProcStat {
  ppid: number;
  selfS: number; // utime + stime
  childrenS: number; // cutime + cstime: reaped children
}

function readStat(pid: number | string): ProcStat | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] = state (field 3)
    return { ppid: Number(f[1]), selfS: (Number(f[11]) + Number(f[12])) / USER_HZ, childrenS: (Number(f[13]) + Number(f[14])) / USER_HZ };
  } catch {
    return null; // exited meanwhile
  }
}

/** CPU seconds (utime + stime) used so far by `pid` itself, NaN if it is gone. */
export function procCpuSeconds(pid: number): number {
  return readStat(pid)?.selfS ?? NaN;
}

/** CPU seconds used so far by `pid` and every live descendant (reaped children via cutime/cstime). */
export function treeCpuSeconds(pid: number): number {
  const stats = new Map<number, ProcStat>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(d);
    if (st) stats.set(Number(d), st);
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    const st = stats.get(p);
    if (st) total += st.selfS + st.childrenS;
    for (const [c, s] of stats) if (s.ppid === p) todo.push(c);
  }
  return total;
}

/** The live direct children of `pid` (from /proc), e.g. a node's statefs process. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (/^\d+$/.test(d) && readStat(d)?.ppid === pid) out.push(Number(d));
  }
  return out;
}

/** `n` distinct TCP ports free on `host` right now: all listened on at once (port 0), then released. */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

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
