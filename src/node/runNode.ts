// `hp-node run`: wires a node directory to a running HpNode and its user server, and stops both
// cleanly on SIGINT/SIGTERM (rounds finish, mounts unmount, the ledger is flushed, exit 0).
import fs from 'node:fs';
import { stopSignal } from '../io/stopSignal';
import { UserServer } from '../users/server';
import { createLogger, LogLevel } from './log';
import { HpNode } from './node';
import { loadNode } from './nodeDir';
import { NodeUserApi } from './userApi';

export interface RunningNode {
  node: HpNode;
  users: UserServer;
  userUrl: string;
  stop(): Promise<void>;
}

export async function startNode(dir: string, opts: { logLevel?: string } = {}): Promise<RunningNode> {
  const { paths, config, keys } = loadNode(dir);
  const level = (opts.logLevel ?? config.log.level) as LogLevel;
  const log = createLogger(level, `node:${keys.publicKey.toString('hex').slice(2, 10)}`);
  const node = new HpNode(paths, config, keys, log);
  await node.start();
  const api = new NodeUserApi(node);
  const u = config.user;
  const users = new UserServer(api, {
    host: u.listen_host,
    port: u.port,
    tls: u.tls ? { cert: fs.readFileSync(paths.tlsCert), key: fs.readFileSync(paths.tlsKey) } : null,
    limits: {
      maxMessageBytes: u.max_bytes_per_msg,
      maxBytesPerMin: u.max_bytes_per_min,
      maxBadMsgsPerMin: u.max_bad_msgs_per_min,
      maxConnectionsPerHost: u.max_in_connections_per_host,
      maxUsers: u.max_connections,
      idleTimeoutMs: u.idle_timeout,
    },
    log: (lvl, msg) => (lvl === 'error' ? log.error(msg) : lvl === 'warn' ? log.warn(msg) : log.debug(msg)),
  });
  try {
    await users.start();
  } catch (err) {
    await node.stop();
    throw new Error(`cannot listen for users on ${u.listen_host}:${u.port}: ${(err as Error).message}`);
  }
  const userUrl = `${u.tls ? 'wss' : 'ws'}://${u.listen_host === '0.0.0.0' ? 'localhost' : u.listen_host}:${users.port}`;
  log.info(`users: ${userUrl}`);
  let stopped: Promise<void> | null = null;
  return {
    node,
    users,
    userUrl,
    stop: () => (stopped ??= (async () => {
      await users.stop();
      await node.stop();
    })()),
  };
}

/** Runs until SIGINT/SIGTERM (or a fatal error); resolves with the process exit code. */
export async function runNodeUntilSignal(dir: string, opts: { logLevel?: string } = {}): Promise<number> {
  const signalled = stopSignal(); // a signal during start-up stops the node once it is up
  const running = await startNode(dir, opts);
  console.log(`hp-node running: users at ${running.userUrl}`);
  const code = await Promise.race([
    signalled.then(() => 0),
    new Promise<number>((resolve) => running.node.once('fatal', () => resolve(1))),
  ]);
  await running.stop();
  return code;
}
