// Finding and clearing FUSE mounts left behind by a crashed server (reference/dependencies.md §6).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

interface MountInfo {
  mountpoint: string;
  fstype: string;
  minor: number;
}

/** FUSE mounts at or below `dir`, from /proc/self/mountinfo (octal escapes decoded). */
export function fuseMountsUnder(dir: string): MountInfo[] {
  const target = path.resolve(dir);
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 0) continue;
    const fstype = fields[sep + 1];
    if (!fstype?.startsWith('fuse')) continue;
    const mountpoint = fields[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mountpoint !== target && !mountpoint.startsWith(target + '/')) continue;
    out.push({ mountpoint, fstype, minor: Number(fields[2].split(':')[1]) });
  }
  return out;
}

/**
 * Lazily unmounts any FUSE mount at `dir` (`fusermount -uz`); if that fails, aborts the FUSE
 * connection through fusectl, which also frees a server stuck in the kernel.
 * Returns how many mounts were cleared.
 */
export function cleanStaleMounts(dir: string): number {
  const mounts = fuseMountsUnder(dir);
  for (const m of mounts.reverse()) {
    const r = spawnSync('fusermount', ['-uz', m.mountpoint], { stdio: 'ignore' });
    if (r.status === 0) continue;
    // fusermount also fails when the mount went away meanwhile (its server's auto_unmount watcher
    // got there first). Its connection number may then already belong to a new mount elsewhere:
    // abort only a connection that is still mounted here.
    if (!fuseMountsUnder(m.mountpoint).some((x) => x.mountpoint === m.mountpoint && x.minor === m.minor)) continue;
    abortConnection(m.minor);
    spawnSync('umount', ['-l', m.mountpoint], { stdio: 'ignore' });
  }
  return mounts.length;
}

function abortConnection(minor: number): void {
  const ctl = '/sys/fs/fuse/connections';
  try {
    if (!fs.existsSync(path.join(ctl, String(minor)))) spawnSync('mount', ['-t', 'fusectl', 'fusectl', ctl], { stdio: 'ignore' });
    fs.writeFileSync(path.join(ctl, String(minor), 'abort'), '1');
  } catch {
    /* nothing more we can do; the caller reports the mount if it is still there */
  }
}
