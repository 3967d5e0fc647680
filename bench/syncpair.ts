// [benchmark] syncpair: the state sync pipeline alone, no cluster: a fresh store fetches a whole state from 2 serving processes over the real peer network (bulk streams, and the WebSocket link), warm and cold, against rsync with fsync.
// Usage: npm run bench -- syncpair [--state-mb N] [--runs N]   (env HP_BENCH_STATE_MB; default 1024 MiB, 2 runs)
//
// One store of --state-mb MiB of random 64 KiB blocks (one file) is built in a temp dir. Two child
// processes (this file, role "server") open it read-only and answer hpn.getobj the way a node does
// (src/node/node.ts onObjectRequest: reads on libuv threads into the answer frame). The parent is a
// PeerNetwork on 127.0.0.1 that dials both and runs syncState into an empty store with the node's
// options. Measured per run: MiB/s over the sync (verification and durable writes included), the
// parent's CPU ms per MiB (all its threads), the servers' CPU ms per MiB served, request round trips.
// Cases: bulk streams with the servers' pack in the page cache ("warm"), after drop_caches ("cold",
// root only: the servers read from disk as a node's cold state would), and over the WebSocket link
// (warm). Baseline in the same run: rsync of the pack file into an empty dir + fsync, warm.
// Why: the 3-node `sync` benchmark shares two cores and one disk with three nodes' rounds, which
// moves its figure by ±15 % between runs; this one isolates the transfer path.
import { ChildProcess, fork, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair, KeyPair } from '../src/crypto/keys';
import { decodeByteList, decodeGetObjects, encodeByteList, encodeGetObjects, MAX_OBJECT_REPLY_BYTES, MAX_OBJECTS_PER_REQUEST, REQUEST, writeByteList } from '../src/node/peerMessages';
import { PeerNetwork } from '../src/p2p/network';
import { ObjectLocation, ObjectStore } from '../src/state/blockstore';
import { importDirectory } from '../src/state/importExport';
import { hasherMemory } from '../src/state/hashWorker';
import { syncState } from '../src/state/sync';
import { makeLog, markdown, numOpt, runBench } from './common';

const MiB = 1024 * 1024;
const CONTRACT = 'syncpair-bench';
const STATE_MIB = Math.round(numOpt('state-mb', 'HP_BENCH_STATE_MB', 1024));
const RUNS = Math.max(1, Math.round(numOpt('runs', 'HP_BENCH_SYNCPAIR_RUNS', 2)));
const log = makeLog('syncpair');

interface Served {
  cpuMs: number;
}

// ---- server role --------------------------------------------------------------------------------

async function serve(): Promise<void> {
  const keys = JSON.parse(process.env.HP_SYNCPAIR_KEYS!) as { pub: string; sec: string };
  const unl = JSON.parse(process.env.HP_SYNCPAIR_UNL!) as string[];
  const store = ObjectStore.open(process.env.HP_SYNCPAIR_STORE!, { readOnly: true });
  const net = new PeerNetwork({ contractId: CONTRACT, keys: { publicKey: Buffer.from(keys.pub, 'hex'), secretKey: Buffer.from(keys.sec, 'hex') }, listen: { host: '127.0.0.1', port: 0 }, peers: [], unl: () => unl, allowObservers: false });
  net.on('request', (r) => {
    if (r.kind !== REQUEST.objects) return void r.reply([]);
    const locs: Array<ObjectLocation | null> = [];
    let bytes = 0;
    for (const h of decodeGetObjects(r.body)) {
      const loc = store.locate(h) ?? null;
      if (loc && locs.length > 0 && bytes + loc.length > MAX_OBJECT_REPLY_BYTES) break;
      locs.push(loc);
      bytes += 4 + (loc?.length ?? 0);
    }
    r.replyIntoLater(bytes, (body) => {
      const reads: Array<{ loc: ObjectLocation; into: Buffer }> = [];
      writeByteList(body, locs, (loc, into) => reads.push({ loc, into }));
      return store.readInto(reads.map((x) => x.loc), reads.map((x) => x.into));
    }).catch(() => r.reply(encodeByteList(locs.map(() => null))));
  });
  await net.start();
  process.send!({ port: net.address().port });
  process.on('message', (m) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpuMs: (u.user + u.system) / 1000 } satisfies Served);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- parent -------------------------------------------------------------------------------------

const IS_SERVER = process.env.HP_SYNCPAIR_ROLE === 'server';
// The parent's only: the server children (this file too) must not leave temp dirs behind.
const tmpRoot = IS_SERVER ? '' : fs.mkdtempSync(path.join(os.tmpdir(), 'hp-bench-syncpair-'));
const children: ChildProcess[] = [];

function askCpu(c: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    c.once('message', (m: Served) => resolve(m.cpuMs));
    c.send('cpu');
  });
}

function dropCaches(): boolean {
  spawnSync('sync');
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

interface RunFigures {
  mibps: number;
  cpuPerMiB: number;
  serverCpuPerMiB: number;
  rttMean: number;
}

async function syncOnce(net: PeerNetwork, servers: ChildProcess[], root: Buffer, over: 'bulk' | 'link', n: number): Promise<RunFigures> {
  const dir = path.join(tmpRoot, `dst-${over}-${n}`);
  const store = ObjectStore.create(dir, { timeMs: 0 });
  const before = await Promise.all(servers.map(askCpu));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  try {
    const res = await syncState(store, root, {
      peers: () => net.connectedPeers(),
      fetch: async (peer, hashes) => {
        const body = over === 'bulk'
          ? await net.bulkRequest(peer, REQUEST.objects, encodeGetObjects(hashes), 30_000)
          : await net.request(peer, REQUEST.objects, encodeGetObjects(hashes), 30_000);
        return body ? decodeByteList(body, hashes.length, 'answer') : null;
      },
      batch: MAX_OBJECTS_PER_REQUEST,
      answersHaveRoom: true,
      timeMs: 0,
    });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const after = await Promise.all(servers.map(askCpu));
    const mib = res.bytesFetched / MiB;
    return {
      mibps: mib / (ms / 1000),
      cpuPerMiB: (cpu.user + cpu.system) / 1000 / mib,
      serverCpuPerMiB: after.reduce((s, x, i) => s + x - before[i], 0) / mib,
      rttMean: res.rttMsMean,
    };
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function rsyncBaseline(pack: string): { mibps: number } | null {
  if (spawnSync('rsync', ['--version']).status !== 0) return null;
  const dst = path.join(tmpRoot, 'rsync');
  fs.mkdirSync(dst);
  const t0 = performance.now();
  const r = spawnSync('rsync', ['--whole-file', pack, dst + '/']);
  if (r.status !== 0) throw new Error(`rsync failed: ${r.stderr}`);
  const fd = fs.openSync(path.join(dst, path.basename(pack)), 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  const ms = performance.now() - t0;
  fs.rmSync(dst, { recursive: true, force: true });
  return { mibps: fs.statSync(pack).size / MiB / (ms / 1000) };
}

async function main(): Promise<void> {
  log(`building a ${STATE_MIB} MiB store in ${tmpRoot}`);
  const data = path.join(tmpRoot, 'data', 'state');
  fs.mkdirSync(data, { recursive: true });
  const fd = fs.openSync(path.join(data, 'data.bin'), 'w');
  for (let i = 0; i < STATE_MIB; i++) fs.writeSync(fd, crypto.randomBytes(MiB));
  fs.closeSync(fd);
  const srcDir = path.join(tmpRoot, 'src');
  const src = ObjectStore.create(srcDir, { timeMs: 0 });
  importDirectory(src, path.dirname(data), 0);
  const root = Buffer.from(src.current.root, 'hex');
  src.close();
  fs.rmSync(path.dirname(data), { recursive: true, force: true });
  const pack = path.join(srcDir, 'packs', fs.readdirSync(path.join(srcDir, 'packs')).sort()[0]);

  const keys: KeyPair[] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = keys.map((k) => k.publicKey.toString('hex'));
  const ports: number[] = [];
  for (const k of keys.slice(1)) {
    const env = { ...process.env, HP_SYNCPAIR_ROLE: 'server', HP_SYNCPAIR_STORE: srcDir, HP_SYNCPAIR_UNL: JSON.stringify(unl), HP_SYNCPAIR_KEYS: JSON.stringify({ pub: k.publicKey.toString('hex'), sec: k.secretKey.toString('hex') }) };
    const c = fork(__filename, [], { env });
    children.push(c);
    ports.push(await new Promise<number>((resolve, reject) => {
      c.once('message', (m: { port: number }) => resolve(m.port));
      c.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    }));
  }
  const net = new PeerNetwork({ contractId: CONTRACT, keys: keys[0], listen: { host: '127.0.0.1', port: 0 }, peers: ports.map((p) => `127.0.0.1:${p}`), unl: () => unl, allowObservers: false, answerMemory: hasherMemory });
  await net.start();
  try {
    while (net.connectedPeers().length < 2) await new Promise((r) => setTimeout(r, 20));
    const cases: Array<{ name: string; over: 'bulk' | 'link'; cold: boolean }> = [
      { name: 'bulk streams, servers\' pack cached', over: 'bulk', cold: false },
      { name: 'bulk streams, servers\' pack cold (drop_caches)', over: 'bulk', cold: true },
      { name: 'WebSocket link, servers\' pack cached', over: 'link', cold: false },
    ];
    const results = new Map<string, RunFigures[]>(cases.map((c) => [c.name, []]));
    let coldOk = true;
    for (let n = 0; n < RUNS; n++) {
      for (const c of cases) {
        if (c.cold && !(coldOk = dropCaches())) continue;
        if (!c.cold) warmPageCache(pack); // reads the pack: the servers' page cache is warm
        const f = await syncOnce(net, children, root, c.over, n);
        results.get(c.name)!.push(f);
        log(`${c.name} #${n + 1}: ${f.mibps.toFixed(1)} MiB/s, ${f.cpuPerMiB.toFixed(2)} ms CPU/MiB here, servers ${f.serverCpuPerMiB.toFixed(2)}, rtt ${f.rttMean} ms`);
      }
    }
    const rsync = rsyncBaseline(pack);
    const median = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const body = cases.filter((c) => results.get(c.name)!.length > 0).map((c) => {
      const rs = results.get(c.name)!;
      const mibps = median(rs.map((r) => r.mibps));
      return [
        `${c.name}: ${STATE_MIB} MiB fetched, verified, written durably`,
        `${mibps.toFixed(1)} MiB/s (runs: ${rs.map((r) => r.mibps.toFixed(0)).join(', ')})`,
        `${median(rs.map((r) => r.cpuPerMiB)).toFixed(2)} ms / ${median(rs.map((r) => r.serverCpuPerMiB)).toFixed(2)} ms`,
        `${median(rs.map((r) => r.rttMean))} ms`,
        rsync ? `${rsync.mibps.toFixed(1)} MiB/s` : '— (no rsync)',
        rsync ? `${(mibps / rsync.mibps).toFixed(2)}x rsync` : '—',
      ];
    });
    console.log(`\nsyncpair benchmark: ${STATE_MIB} MiB, 2 serving processes, 127.0.0.1; ${os.cpus().length} cores; node ${process.version}; load average ${os.loadavg()[0].toFixed(2)} at the end\n`);
    console.log(markdown(['sync', 'median rate', 'CPU per MiB: receiver / servers', 'round trip mean', 'rsync + fsync (same run, cached)', 'ratio'], body));
    if (!coldOk) console.log('\n- cold case skipped: writing /proc/sys/vm/drop_caches needs root');
  } finally {
    await net.stop();
  }
}

/** Reads the pack once so the servers find it in the page cache. */
function warmPageCache(pack: string): void {
  const fd = fs.openSync(pack, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  for (let at = 0; fs.readSync(fd, buf, 0, buf.length, at) > 0; at += buf.length);
  fs.closeSync(fd);
}

async function cleanup(): Promise<void> {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(tmpRoot, { recursive: true, force: true });
}

if (IS_SERVER) void serve();
else runBench('syncpair', main, cleanup, log);
