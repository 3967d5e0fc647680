// The partition proxy of the cluster tests: forwards bytes, cuts live links and refuses new ones
// while blocked, and lets them through again once unblocked.
import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { deferCleanup } from './helpers/fixtures';
import { LoopbackProxy } from './helpers/tcpProxy';

async function echoServer(t: import('node:test').TestContext): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  deferCleanup(t, () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  }));
  return (server.address() as AddressInfo).port;
}

async function startProxy(t: import('node:test').TestContext, target: number): Promise<LoopbackProxy> {
  const proxy = await LoopbackProxy.start(target);
  deferCleanup(t, () => proxy.stop());
  return proxy;
}

/** A connected client that collects what it reads and records how it ended. */
function connect(t: import('node:test').TestContext, port: number) {
  const socket = net.connect(port, '127.0.0.1');
  deferCleanup(t, () => socket.destroy());
  let data = '';
  socket.on('data', (d) => (data += d));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    closed,
    /** Writes `msg` and resolves once it has come back. */
    async roundTrip(msg: string, timeoutMs = 2000): Promise<void> {
      const want = data.length + msg.length;
      socket.write(msg);
      const end = Date.now() + timeoutMs;
      while (data.length < want) {
        if (Date.now() > end || socket.destroyed) throw new Error(`echo of ${JSON.stringify(msg)} not received (got ${JSON.stringify(data)})`);
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(data.slice(want - msg.length, want), msg);
    },
  };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

test('forwards data both ways, including a large payload', async (t) => {
  const proxy = await startProxy(t, await echoServer(t));
  const c = connect(t, proxy.port);
  await c.roundTrip('hello');
  await c.roundTrip('x'.repeat(1024 * 1024), 10_000);
  assert.equal(proxy.connections, 2);
});

test('blocking cuts live connections and refuses new ones; unblocking lets new ones through', async (t) => {
  const proxy = await startProxy(t, await echoServer(t));
  const live = connect(t, proxy.port);
  await live.roundTrip('before');

  proxy.setBlocked(true);
  await within(live.closed, 2000, 'the live connection was not cut');
  assert.equal(proxy.connections, 0);
  const refused = connect(t, proxy.port);
  await within(refused.closed, 2000, 'a new connection was not refused while blocked');
  await assert.rejects(refused.roundTrip('nothing', 300));

  proxy.setBlocked(false);
  const again = connect(t, proxy.port);
  await again.roundTrip('after');
});

test('a target that is down closes the inbound connection; stop() closes everything', async (t) => {
  const free = net.createServer();
  await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
  const deadPort = (free.address() as AddressInfo).port;
  await new Promise<void>((resolve) => free.close(() => resolve()));
  const toNowhere = await startProxy(t, deadPort);
  const c = connect(t, toNowhere.port);
  await within(c.closed, 2000, 'the inbound connection stayed open with no target');

  const proxy = await startProxy(t, await echoServer(t));
  const live = connect(t, proxy.port);
  await live.roundTrip('hi');
  await proxy.stop();
  await within(live.closed, 2000, 'stop() left a connection open');
  await assert.rejects(new Promise<void>((resolve, reject) => {
    const s = net.connect(proxy.port, '127.0.0.1', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  }));
});
