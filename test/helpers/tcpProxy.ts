// A TCP forwarder on 127.0.0.1 that a test can cut like a network partition: blocking destroys
// every live connection and refuses new ones until unblocked. One proxy per directed peer link
// lets a cluster test cut exactly the links it wants.
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export class LoopbackProxy {
  private readonly sockets = new Set<net.Socket>();
  private blocked = false;
  private stopped = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    readonly targetPort: number,
  ) {}

  /** Listens on 127.0.0.1, port 0 (see `.port`), forwarding every connection to 127.0.0.1:targetPort. */
  static async start(targetPort: number): Promise<LoopbackProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined); // accept errors (EMFILE...) must not crash the test process
    const proxy = new LoopbackProxy(server, (server.address() as AddressInfo).port, targetPort);
    server.on('connection', (s) => proxy.accept(s));
    return proxy;
  }

  get isBlocked(): boolean {
    return this.blocked;
  }

  /** Live forwarded connections (both halves of each count once each). */
  get connections(): number {
    return this.sockets.size;
  }

  /** Blocking cuts every live connection now and each new one on arrival; unblocking lets new ones through. */
  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
    if (blocked) this.destroyAll();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(inbound: net.Socket): void {
    if (this.blocked || this.stopped) {
      inbound.on('error', () => undefined);
      inbound.destroy();
      return;
    }
    const outbound = net.connect(this.targetPort, '127.0.0.1');
    // An error on either side (target down, reset) ends the pair; a graceful end is passed on by pipe().
    const cut = () => {
      inbound.destroy();
      outbound.destroy();
    };
    for (const s of [inbound, outbound]) {
      this.sockets.add(s);
      s.on('error', cut);
      s.once('close', () => this.sockets.delete(s));
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  }

  private destroyAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}
