// Helper for bench/node.ts (not a benchmark itself): runs one thing in its own process so the load
// generator's signing, hashing and TLS do not compete with it on the same event loop.
//
//   node nodeRunner.js node <nodeDir>   startNode(nodeDir); reports {ready, url, pubkey}, then one
//                                       {round} message per round (HpNode's 'round' event)
//   node nodeRunner.js echo <nodeDir>   a bare wss:// echo server with the node's TLS certificate:
//                                       the transport baseline (every binary message is sent back)
//
// Both stop cleanly (node: rounds finish, mounts unmount, ledger flushed) on SIGTERM/SIGINT or when
// the parent's IPC channel goes away, then exit 0, so --cpu-prof profiles get written.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import type { RoundTimings } from '../src/node/node';
import { nodePaths } from '../src/node/nodeDir';
import { startNode } from '../src/node/runNode';

export type RunnerMessage =
  | { type: 'ready'; url: string; pubkey: string; pid: number }
  | { type: 'round'; timings: RoundTimings }
  | { type: 'error'; error: string };

const send = (m: RunnerMessage) => {
  if (process.connected) process.send!(m);
};

async function runNode(dir: string): Promise<() => Promise<void>> {
  const running = await startNode(dir, { logLevel: 'warn' });
  running.node.on('round', (timings: RoundTimings) => send({ type: 'round', timings }));
  running.node.once('fatal', (err: Error) => send({ type: 'error', error: `node fatal: ${err.message}` }));
  send({ type: 'ready', url: running.userUrl.replace('//localhost:', '//127.0.0.1:'), pubkey: running.node.keys.publicKey.toString('hex'), pid: process.pid });
  return () => running.stop();
}

async function runEcho(dir: string): Promise<() => Promise<void>> {
  const p = nodePaths(dir);
  const server = https.createServer({ cert: fs.readFileSync(p.tlsCert), key: fs.readFileSync(p.tlsKey) });
  const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 5 * 1024 * 1024 });
  wss.on('connection', (ws) => {
    ws.on('error', () => undefined);
    ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  send({ type: 'ready', url: `wss://127.0.0.1:${port}`, pubkey: '', pid: process.pid });
  return async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  };
}

async function main(): Promise<void> {
  const [mode, dir] = process.argv.slice(2);
  if (!process.send) throw new Error('nodeRunner must be forked with an IPC channel (bench/node.ts does this)');
  if ((mode !== 'node' && mode !== 'echo') || !dir) throw new Error('usage: nodeRunner.js node|echo <nodeDir>');
  // Started at once; a signal during startup waits for it, so nothing is left mounted.
  const started = mode === 'node' ? runNode(path.resolve(dir)) : runEcho(path.resolve(dir));
  let stopping: Promise<void> | null = null;
  const shutdown = (why: string) => {
    stopping ??= (async () => {
      try {
        const stop = await started;
        await stop();
      } catch (err) {
        process.stderr.write(`[nodeRunner ${mode}] stop after ${why} failed: ${(err as Error).message}\n`);
      }
      if (process.connected) process.disconnect();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('disconnect', () => shutdown('parent disconnect'));
  await started;
}

main().catch((err: Error) => {
  send({ type: 'error', error: err.stack ?? String(err) });
  process.stderr.write(`[nodeRunner] ${err.stack ?? err}\n`);
  process.exit(1);
});
