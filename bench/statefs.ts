// [benchmark] statefs: our session mount vs the native disk vs a raw fuse-native passthrough.
// Usage: npm run bench -- statefs [--quick] [--only=seq,read,rand,small,commit]
//
// All three targets live in one temp dir on the same disk and are measured in the same run. The
// workloads run here, in the bench process, with sync fs calls: that is safe because both FUSE
// servers are child processes (a process must never touch its own mount, dependencies.md §1).
// Results go to stdout as one markdown table; progress goes to stderr.
import { ChildProcess, fork, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ObjectStore } from '../src/state/blockstore';
import { cleanStaleMounts } from '../src/state/mounts';
import { StatefsMount } from '../src/state/statefsClient';
import type { PassthroughMessage } from './passthroughServer';
import { procStatusMiB, waitExit } from './processes';

const KiB = 1024;
const MiB = 1024 * KiB;
const QUICK = process.argv.includes('--quick');
const SCALE = QUICK ? 8 : 1; // --quick: every size and count divided by 8
const WORKLOADS = ['seq', 'read', 'rand', 'small', 'commit'] as const;
type Workload = (typeof WORKLOADS)[number];

const CFG = {
  seqBytes: (256 * MiB) / SCALE,
  ioChunkBytes: 1 * MiB,
  randFileBytes: (64 * MiB) / SCALE,
  randOps: Math.round(10_000 / SCALE),
  randWriteBytes: 4 * KiB,
  smallFiles: Math.round(10_000 / SCALE),
  smallFileBytes: 1 * KiB,
  // At least 16 MiB, so the 256 spread 4 KiB writes always land in 256 distinct 64 KiB blocks.
  commitStateBytes: [Math.max(16 * MiB, (64 * MiB) / SCALE), (1024 * MiB) / SCALE],
  commitDirtyBytes: 1 * MiB, // not scaled: it is what the latency target is about
  commitReps: 5,
  reps: 3, // runs per throughput measurement; the table shows the median
  readyTimeoutMs: 15_000,
  childExitTimeoutMs: 10_000,
} as const;

type TargetName = 'native' | 'pt' | 'ours';
interface Target {
  name: TargetName;
  dir: string; // where the workload's files go
  begin(): Promise<void>; // opens a session (ours only)
  commit(): Promise<void>; // commits it (ours only)
}

// ---- plumbing: logging, timing, child processes, cleanup ------------------------------------------

const startedAt = process.hrtime.bigint();
const secondsSince = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;
const log = (msg: string) => process.stderr.write(`[statefs +${secondsSince(startedAt).toFixed(1)}s] ${msg}\n`);

async function timed(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return secondsSince(t0);
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bench-statefs-'));
const mounts = new Set<StatefsMount>();
const ptChildren = new Set<ChildProcess>();


/** Forks the raw passthrough server over `backing` and resolves once its mount is ready. */
async function startPassthrough(backing: string, mountpoint: string): Promise<ChildProcess> {
  const child = fork(path.join(__dirname, 'passthroughServer.js'), [backing, mountpoint], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  ptChildren.add(child);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`passthrough did not mount ${mountpoint} within ${CFG.readyTimeoutMs} ms`)), CFG.readyTimeoutMs);
    child.once('message', (m: PassthroughMessage) => {
      clearTimeout(timer);
      if (m.type === 'ready') resolve();
      else reject(new Error(`passthrough failed to mount ${mountpoint}: ${m.error}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`passthrough exited with code ${code} before mounting ${mountpoint}`));
    });
  });
  return child;
}

async function stopPassthrough(child: ChildProcess): Promise<void> {
  try {
    process.kill(child.pid!, 'SIGTERM'); // it unmounts, then exits
  } catch { /* already gone */ }
  await waitExit(child, CFG.childExitTimeoutMs);
  ptChildren.delete(child);
}

async function startOurs(storeDir: string, mountpoint: string): Promise<StatefsMount> {
  ObjectStore.create(storeDir, { timeMs: 0 }).close();
  const m = await StatefsMount.start({ storeDir, mountpoint, readOnly: false });
  mounts.add(m);
  return m;
}

async function stopOurs(m: StatefsMount): Promise<void> {
  await m.close();
  mounts.delete(m);
}

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const m of mounts) await stopOurs(m).catch((e: Error) => log(`closing statefs ${m.pid}: ${e.message}`));
    for (const c of ptChildren) await stopPassthrough(c);
    cleanStaleMounts(tmpRoot); // anything a crashed child left behind
    const t0 = process.hrtime.bigint();
    fs.rmSync(tmpRoot, { recursive: true, force: true });
    log(`removed ${tmpRoot} in ${secondsSince(t0).toFixed(1)} s`);
  })();
  return cleaning;
}

/** Flushes everything dirty so one measurement does not pay for the previous one's writeback. */
function settle(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

let dropWarned = false;
/** Drops the page cache (root only) so a read really goes to disk; returns false if it cannot. */
function dropCaches(): boolean {
  settle();
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch (err) {
    if (!dropWarned) log(`cannot drop the page cache (${(err as Error).message}); "cold" reads may be cached`);
    dropWarned = true;
    return false;
  }
}


// ---- workloads (sync fs calls against a directory) -----------------------------------------------

/** Deterministic PRNG so every target gets the same offsets. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Makes every 4 KiB page of `buf` unique per call, so no block dedups in the content-addressed store. */
function stamp(buf: Buffer, counter: number): void {
  for (let o = 0; o + 4 <= buf.length; o += 4 * KiB) buf.writeUInt32LE(counter, o);
}

function writeFully(fd: number, buf: Buffer, pos: number): void {
  for (let done = 0; done < buf.length; ) done += fs.writeSync(fd, buf, done, buf.length - done, pos + done);
}

function seqWrite(file: string, totalBytes: number, fsync = true): void {
  const buf = crypto.randomBytes(CFG.ioChunkBytes);
  const fd = fs.openSync(file, 'w');
  for (let pos = 0, i = 0; pos < totalBytes; pos += buf.length, i++) {
    stamp(buf, i);
    writeFully(fd, buf, pos);
  }
  if (fsync) fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function seqRead(file: string, expectBytes: number): void {
  const fd = fs.openSync(file, 'r'); // a fresh open, so FUSE drops its page cache and re-reads
  const buf = Buffer.allocUnsafe(CFG.ioChunkBytes);
  let total = 0;
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) total += n;
  fs.closeSync(fd);
  if (total !== expectBytes) throw new Error(`${file}: read ${total} bytes, expected ${expectBytes}`);
}

function randomWrites(file: string, fileBytes: number, ops: number, sizeBytes: number, seed: number): void {
  const rnd = mulberry32(seed);
  const slots = fileBytes / sizeBytes;
  const buf = crypto.randomBytes(sizeBytes);
  const fd = fs.openSync(file, 'r+');
  for (let i = 0; i < ops; i++) {
    buf.writeUInt32LE(i, 0);
    writeFully(fd, buf, Math.floor(rnd() * slots) * sizeBytes);
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

const smallName = (dir: string, i: number) => path.join(dir, `f${i}`);

function smallCreate(dir: string): void {
  const buf = crypto.randomBytes(CFG.smallFileBytes);
  for (let i = 0; i < CFG.smallFiles; i++) {
    buf.writeUInt32LE(i, 0);
    const fd = fs.openSync(smallName(dir, i), 'w');
    writeFully(fd, buf, 0);
    fs.closeSync(fd);
  }
}

function smallStat(dir: string): void {
  for (let i = 0; i < CFG.smallFiles; i++) {
    const size = fs.statSync(smallName(dir, i)).size;
    if (size !== CFG.smallFileBytes) throw new Error(`${smallName(dir, i)}: size ${size}, expected ${CFG.smallFileBytes}`);
  }
}

function smallRead(dir: string): void {
  for (let i = 0; i < CFG.smallFiles; i++) {
    const buf = fs.readFileSync(smallName(dir, i));
    if (buf.length !== CFG.smallFileBytes || buf.readUInt32LE(0) !== i) throw new Error(`${smallName(dir, i)}: wrong content read back`);
  }
}

/** Dirties commitDirtyBytes of `file` as `count` writes spread evenly over it (one per stripe). */
function dirtySpread(file: string, fileBytes: number, count: number, seed: number): void {
  const size = CFG.commitDirtyBytes / count;
  const stripe = fileBytes / count;
  const rnd = mulberry32(seed);
  const buf = crypto.randomBytes(size);
  const fd = fs.openSync(file, 'r+');
  for (let j = 0; j < count; j++) {
    buf.writeUInt32LE(seed * count + j, 0); // unique content: no write may dedup into another's block
    writeFully(fd, buf, j * stripe + Math.floor(rnd() * (stripe / size)) * size);
  }
  fs.closeSync(fd);
}

// ---- the run ------------------------------------------------------------------------------------

/** Every repetition of every measurement, in seconds (commit latency: ms), by row key and target. */
type Results = Partial<Record<string, Partial<Record<TargetName, number[]>>>>;
const results: Results = {};
const notes: string[] = [];
const put = (key: string, t: TargetName, value: number) => ((results[key] ??= {})[t] ??= []).push(value);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** The median of a row's repetitions for one target, or undefined if it was not measured. */
const med = (key: string, t: TargetName) => (results[key]?.[t]?.length ? median(results[key]![t]!) : undefined);
const fmtRuns = (key: string, digits = 2) =>
  (['native', 'pt', 'ours'] as const).filter((t) => results[key]?.[t]).map((t) => `${t} ${results[key]![t]!.map((x) => x.toFixed(digits)).join('/')}`).join('; ');

async function runAll(selected: Set<Workload>): Promise<void> {
  if (!fs.existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: this benchmark needs FUSE (run scripts/setup.sh as root)');
  log(`temp dir ${tmpRoot}${QUICK ? ' (--quick: sizes / 8)' : ''}, ${CFG.reps} interleaved runs per measurement`);
  if (os.loadavg()[0] > 0.5) log(`load average is ${os.loadavg()[0].toFixed(2)} before we start: other processes are busy, figures will be noisy`);

  const nativeDir = path.join(tmpRoot, 'native');
  const ptBacking = path.join(tmpRoot, 'pt-backing');
  fs.mkdirSync(nativeDir);
  fs.mkdirSync(ptBacking);
  const pt = await startPassthrough(ptBacking, path.join(tmpRoot, 'pt-mnt'));
  const ours = await startOurs(path.join(tmpRoot, 'store'), path.join(tmpRoot, 'ours-mnt'));
  log(`mounted passthrough (pid ${pt.pid}) and statefs (pid ${ours.pid})`);
  let clock = 1_000;
  const targets: Target[] = [
    { name: 'native', dir: nativeDir, begin: async () => undefined, commit: async () => undefined },
    { name: 'pt', dir: path.join(tmpRoot, 'pt-mnt'), begin: async () => undefined, commit: async () => undefined },
    { name: 'ours', dir: ours.mountpoint, begin: () => ours.begin((clock += 1_000)), commit: async () => void (await ours.commit()) },
  ];
  // Targets take turns within each repetition, so a burst of outside load hits all of them alike.
  const reps = async (what: string, fn: (t: Target, rep: number) => Promise<string>) => {
    dropCaches(); // every section starts from an empty page cache, whatever the previous one left
    for (let rep = 0; rep < CFG.reps; rep++) {
      for (const t of targets) log(`${what} #${rep + 1} ${t.name}: ${await fn(t, rep)}`);
    }
  };

  if (selected.has('seq')) {
    await reps(`seq write ${mib(CFG.seqBytes)}`, async (t) => {
      await t.begin();
      settle();
      const write = await timed(() => seqWrite(path.join(t.dir, 'seq.bin'), CFG.seqBytes));
      const commit = await timed(() => t.commit());
      put('seq', t.name, write + commit);
      if (t.name === 'ours') put('seqCommitPart', t.name, commit);
      return `${(write + commit).toFixed(2)} s`;
    });
    notes.push(`seq write runs (s): ${fmtRuns('seq')}; of which ours' commit: ${fmtRuns('seqCommitPart').replace('ours ', '')}`);
  }

  if (selected.has('read')) {
    await reps(`read ${mib(CFG.seqBytes)}`, async (t) => {
      const file = path.join(t.dir, 'seq.bin');
      const cold = dropCaches();
      const first = await timed(() => seqRead(file, CFG.seqBytes));
      put(cold ? 'readCold' : 'readWarm', t.name, first);
      const again = await timed(() => seqRead(file, CFG.seqBytes));
      put('readWarm', t.name, again);
      return `${cold ? 'cold' : 'uncached'} ${first.toFixed(2)} s, again ${again.toFixed(2)} s`;
    });
    notes.push(`read runs (s): cold: ${fmtRuns('readCold')}; again: ${fmtRuns('readWarm')}`);
  }

  if (selected.has('rand')) {
    for (const t of targets) {
      await t.begin();
      seqWrite(path.join(t.dir, 'rand.bin'), CFG.randFileBytes); // the file being overwritten is committed state, not timed
      await t.commit();
    }
    await reps(`random ${CFG.randOps} x 4 KiB`, async (t, rep) => {
      await t.begin();
      settle();
      const writes = await timed(() => randomWrites(path.join(t.dir, 'rand.bin'), CFG.randFileBytes, CFG.randOps, CFG.randWriteBytes, rep));
      const commit = await timed(() => t.commit());
      put('rand', t.name, writes + commit);
      if (t.name === 'ours') put('randCommitPart', t.name, commit);
      return `${(writes + commit).toFixed(2)} s`;
    });
    notes.push(`random write runs (s): ${fmtRuns('rand')}; of which ours' commit: ${fmtRuns('randCommitPart', 3).replace('ours ', '')}`);
  }

  if (selected.has('small')) {
    await reps(`${CFG.smallFiles} small files`, async (t, rep) => {
      const dir = path.join(t.dir, `small-${rep}`);
      await t.begin();
      fs.mkdirSync(dir);
      settle();
      const create = await timed(() => smallCreate(dir));
      const stat = await timed(() => smallStat(dir));
      const read = await timed(() => smallRead(dir));
      put('smallCreate', t.name, create);
      put('smallStat', t.name, stat);
      put('smallRead', t.name, read);
      if (t.name === 'ours') put('smallCommit', t.name, await timed(() => t.commit()));
      return `create ${create.toFixed(2)} s, stat ${stat.toFixed(2)} s, read ${read.toFixed(2)} s`;
    });
    for (const [key, what] of [['smallCreate', 'create'], ['smallStat', 'stat'], ['smallRead', 'read'], ['smallCommit', 'commit']]) {
      notes.push(`small files ${what} runs (s): ${fmtRuns(key)}`);
    }
  }

  notes.push(`statefs child peak RSS (main mount): ${procStatusMiB(ours.pid, 'VmHWM').toFixed(0)} MiB`);
  await stopOurs(ours);
  await stopPassthrough(pt);
  log('main mounts closed');

  if (selected.has('commit')) {
    for (const [i, stateBytes] of CFG.commitStateBytes.entries()) await commitLatency(i, stateBytes);
  }
}

/** Builds a committed state of `stateBytes` in a fresh store, then times commit() after 1 MiB dirty. */
async function commitLatency(i: number, stateBytes: number): Promise<void> {
  const base = path.join(tmpRoot, `commit-${i}`);
  fs.mkdirSync(base);
  dropCaches();
  const m = await startOurs(path.join(base, 'store'), path.join(base, 'mnt'));
  const file = path.join(m.mountpoint, 'state.bin');
  let clock = 1_000;
  await m.begin(clock);
  seqWrite(file, stateBytes, false);
  const build = await timed(() => m.commit());
  notes.push(`initial commit of a fresh ${mib(stateBytes)} state: ${build.toFixed(2)} s`);
  for (const [pattern, count] of [['4k', CFG.commitDirtyBytes / (4 * KiB)], ['64k', CFG.commitDirtyBytes / (64 * KiB)]] as const) {
    const ms: number[] = [];
    for (let rep = 0; rep < CFG.commitReps; rep++) {
      await m.begin((clock += 1_000));
      settle(); // flush the previous round's writeback first; the commit pays only for its own
      dirtySpread(file, stateBytes, count, rep + 1);
      ms.push((await timed(() => m.commit())) * 1000);
    }
    for (const x of ms) put(`commit${pattern}:${i}`, 'ours', x);
    notes.push(`commit after ${count} x ${pattern === '4k' ? '4 KiB' : '64 KiB'} writes in ${mib(stateBytes)}: ${ms.map((x) => x.toFixed(1)).join(', ')} ms`);
    log(`commit, ${mib(stateBytes)} state, ${count} x ${pattern} dirty: median ${median(ms).toFixed(1)} ms`);
  }
  notes.push(`statefs child peak RSS (${mib(stateBytes)} state): ${procStatusMiB(m.pid, 'VmHWM').toFixed(0)} MiB`);
  const t0 = process.hrtime.bigint();
  await stopOurs(m);
  log(`statefs (${mib(stateBytes)} state) stopped in ${secondsSince(t0).toFixed(1)} s`);
}

// ---- the table ----------------------------------------------------------------------------------

function mib(bytes: number): string {
  return bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}

const fmtRate = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)}k` : x >= 100 ? x.toFixed(0) : x.toFixed(1));

interface RowSpec {
  label: string;
  key: string;
  /** How a time in seconds is shown. */
  show: (s: number) => string;
  /** The baseline the target compares with, and the limit on ours/baseline (max) or baseline/ours (min). */
  vs?: { target: TargetName; max?: number; min?: number; what: string };
  /** Absolute limit in ms (commit latency). */
  maxMs?: number;
  flatWith?: string; // key of the smaller-state row this one must stay flat against
}

function rows(): RowSpec[] {
  const secs = (bytes: number) => (s: number) => `${s.toFixed(2)} s (${fmtRate(bytes / MiB / s)} MiB/s)`;
  const ops = (n: number, unit: string) => (s: number) => `${s.toFixed(2)} s (${fmtRate(n / s)} ${unit}/s)`;
  const rate = (bytes: number) => (s: number) => `${fmtRate(bytes / MiB / s)} MiB/s`;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const [small, large] = CFG.commitStateBytes;
  const n = CFG.smallFiles;
  return [
    { label: `seq write ${mib(CFG.seqBytes)}, 1 MiB writes + fsync (+commit)`, key: 'seq', show: secs(CFG.seqBytes), vs: { target: 'native', max: 2.5, what: 'native' } },
    { label: `${CFG.randOps} random 4 KiB pwrites in ${mib(CFG.randFileBytes)} + fsync (+commit)`, key: 'rand', show: ops(CFG.randOps, 'ops'), vs: { target: 'native', max: 10, what: 'native' } },
    { label: `create+write+close ${n} x 1 KiB files`, key: 'smallCreate', show: ops(n, 'files'), vs: { target: 'native', max: 10, what: 'native' } },
    { label: `stat ${n} small files`, key: 'smallStat', show: ops(n, 'files'), vs: { target: 'native', max: 10, what: 'native' } },
    { label: `read back ${n} small files`, key: 'smallRead', show: ops(n, 'files'), vs: { target: 'native', max: 10, what: 'native' } },
    { label: `commit after ${n} small files (info)`, key: 'smallCommit', show: (s) => ms(s * 1000) },
    { label: `commit, 256 x 4 KiB dirty, ${mib(small)} state`, key: 'commit4k:0', show: ms, maxMs: 20 },
    { label: `commit, 256 x 4 KiB dirty, ${mib(large)} state`, key: 'commit4k:1', show: ms, maxMs: 20, flatWith: 'commit4k:0' },
    { label: `commit, 16 x 64 KiB dirty, ${mib(small)} state`, key: 'commit64k:0', show: ms, maxMs: 20 },
    { label: `commit, 16 x 64 KiB dirty, ${mib(large)} state`, key: 'commit64k:1', show: ms, maxMs: 20, flatWith: 'commit64k:0' },
    { label: `read ${mib(CFG.seqBytes)} (1 MiB reads), page cache dropped`, key: 'readCold', show: rate(CFG.seqBytes), vs: { target: 'pt', min: 0.5, what: 'passthrough' } },
    { label: `read ${mib(CFG.seqBytes)} again, backing file cached`, key: 'readWarm', show: rate(CFG.seqBytes), vs: { target: 'pt', min: 0.5, what: 'passthrough' } },
  ];
}

/** "Flat": the 16x larger state costs at most 1.5x, or at most 5 ms (a quarter of the budget) more. */
const isFlat = (largeMs: number, smallMs: number) => largeMs <= Math.max(smallMs * 1.5, smallMs + 5);

function table(): string {
  const head = ['workload', 'ours', 'native', 'passthrough', 'ratio', 'target', 'ok', 'ours/pt time'];
  const body: string[][] = [];
  for (const r of rows()) {
    const v: Partial<Record<TargetName, number>> = { native: med(r.key, 'native'), pt: med(r.key, 'pt'), ours: med(r.key, 'ours') };
    if (v.ours === undefined) continue;
    const cell = (t: TargetName) => (v[t] === undefined ? '—' : r.show(v[t]!));
    let ratio = '—';
    let target = '—';
    let ok = '';
    if (r.vs && v[r.vs.target] !== undefined) {
      const base = v[r.vs.target]!;
      if (r.vs.max !== undefined) {
        const x = v.ours / base; // times: lower is better
        [ratio, target, ok] = [`${x.toPrecision(3)}x ${r.vs.what}`, `≤ ${r.vs.max}x ${r.vs.what}`, x <= r.vs.max ? 'yes' : 'NO'];
      } else {
        const x = base / v.ours; // throughput of ours over baseline's
        [ratio, target, ok] = [`${x.toPrecision(3)}x ${r.vs.what}`, `≥ ${r.vs.min}x ${r.vs.what}`, x >= r.vs.min! ? 'yes' : 'NO'];
      }
    } else if (r.maxMs !== undefined) {
      const smallMs = r.flatWith ? med(r.flatWith, 'ours') : undefined;
      const under = v.ours <= r.maxMs;
      if (smallMs !== undefined) {
        ratio = `${(v.ours / smallMs).toPrecision(3)}x smaller state`;
        target = `≤ ${r.maxMs} ms, flat`;
        ok = under && isFlat(v.ours, smallMs) ? 'yes' : 'NO';
      } else {
        target = `≤ ${r.maxMs} ms`;
        ok = under ? 'yes' : 'NO';
      }
    }
    // How much of the gap is FUSE itself: our time over the raw passthrough's for the same work.
    const vsPt = v.pt === undefined ? '—' : `${(v.ours / v.pt).toPrecision(3)}x`;
    body.push([r.label, cell('ours'), cell('native'), cell('pt'), ratio, target, ok, vsPt]);
  }
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) => `| ${cells.map((x, c) => x.padEnd(widths[c])).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
  const bad = only?.filter((w) => !(WORKLOADS as readonly string[]).includes(w));
  if (bad?.length) throw new Error(`unknown workload(s) ${bad.join(', ')}: choose from ${WORKLOADS.join(', ')}`);
  const selected = new Set<Workload>((only as Workload[] | undefined) ?? WORKLOADS);
  if (selected.has('read')) selected.add('seq'); // reads the file the seq workload wrote

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      log(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const loadBefore = os.loadavg()[0];
  try {
    await runAll(selected);
  } finally {
    await cleanup();
  }
  const title = `statefs benchmark${QUICK ? ' (--quick, sizes / 8)' : ''}: ${os.cpus().length} cores, node ${process.version}, ` +
    `temp dir in ${os.tmpdir()}, load average ${loadBefore.toFixed(2)} before / ${os.loadavg()[0].toFixed(2)} after`;
  const legend = [
    `ours = statefs session mount (times include begin..commit where marked +commit); native = the same disk directly; ` +
      `passthrough = raw fuse-native passthrough (big_writes). Throughput cells are the median of ${CFG.reps} interleaved runs, ` +
      `commit latency the median of ${CFG.commitReps}; ratio = ours over the baseline the target names; ` +
      `ours/pt time = our time over the passthrough's for the same work (above 1 = slower).`,
    `"flat" = the 16x larger state's commit median is at most 1.5x, or at most 5 ms more than, the smaller state's.`,
  ];
  process.stdout.write(`\n${title}\n\n${table()}\n\n${legend.join('\n')}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  log('done');
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`statefs benchmark failed: ${err.stack ?? err}\n`);
    void cleanup().finally(() => process.exit(1));
  },
);
