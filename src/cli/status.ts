// `hp-node status <dir>`: what the running node last wrote to run/status.json, checked for
// staleness (a node that died leaves its last status behind).
import fs from 'node:fs';
import { nodePaths } from '../node/nodeDir';

const STALE_MS = 5000;

export function printStatus(dir: string, json: boolean): number {
  const file = nodePaths(dir).status;
  let s: Record<string, any>;
  try {
    s = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    console.error(`no status at ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): is the node running? start it with \`hp-node run ${dir}\``);
    return 1;
  }
  const age = Date.now() - Date.parse(s.updated);
  let alive = true;
  try {
    process.kill(s.pid, 0);
  } catch {
    alive = false;
  }
  if (json) {
    console.log(JSON.stringify({ ...s, running: alive && age < STALE_MS }, null, 2));
    return alive ? 0 : 1;
  }
  const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
  const t = s.transfer;
  console.log(`node ${s.publicKey} (pid ${s.pid}, ${alive ? (age < STALE_MS ? 'running' : `no update for ${Math.round(age / 1000)} s`) : 'NOT running'})`);
  console.log(`  ledger     ${s.lcl.seqNo} ${s.lcl.hash}`);
  console.log(`  state      ${s.stateRoot}`);
  console.log(`  vote       ${s.voteStatus}; UNL of ${s.unl.length}, quorum ${s.quorum}, roundtime ${s.roundtimeMs} ms`);
  console.log(`  peers      ${s.peers.length} connected`);
  if (s.eventLoopDelayMs) console.log(`  event loop ${s.eventLoopDelayMs.p50} ms late at the median, ${s.eventLoopDelayMs.p99} ms at p99, ${s.eventLoopDelayMs.max} ms at most (last second)`);
  if (s.executions) console.log(`  executions ${s.executions.warm} warm-started, ${s.executions.cold} cold, ${s.executions.discarded} warm processes discarded`);
  console.log(`  catch-up   ${t.ledgerRecords} ledgers (${mib(t.ledgerBytes)}) fetched, ${t.rejectedRecords} rejected`);
  console.log(`  state sync ${t.stateSyncs} done, ${t.stateObjects} objects (${mib(t.stateBytes)}) fetched, ${t.rejectedObjects} rejected`);
  if (s.sync) {
    const left = s.sync.pending;
    console.log(`  syncing    to ${s.sync.target.slice(0, 16)}…: ${s.sync.objectsFetched} objects (${mib(s.sync.bytesFetched)}) fetched, ${s.sync.objectsLocal} already here, ${left} queued, ${mib(s.sync.bytesPerSec)}/s`);
  }
  return alive ? 0 : 1;
}
