// The user WebSocket server: listens (wss:// with a PEM cert+key, or plain ws://), enforces the
// connection-level limits (per host, pending handshakes, users, idle), keeps one session per user
// key, and fans the node's events out to the sessions they concern.
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { encodeMessage, WireObject } from './codec';
import { CloseCode, closeReason, resolveLimits, UserServerLimits } from './limits';
import { contractOutputMsg, inputStatusMsg, ledgerCreatedMsg, SubscriptionChannel, unlChangeMsg, voteStatusMsg } from './messages';
import type { UserNodeApi, UserNodeEvents, UserProtocol } from './nodeApi';
import type { LogFn } from './requests';
import { Refusal, SessionHost, UserSession } from './session';

export interface UserServerOptions {
  /** Listen address; default "0.0.0.0". */
  host?: string;
  /** Listen port; 0 picks a free one (see `port` after start). */
  port: number;
  /** PEM certificate and key for wss://; omit or null for plain ws:// (e.g. behind a TLS proxy). */
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
  limits?: Partial<UserServerLimits>;
  /** Default: warnings and errors to stderr. */
  log?: LogFn;
}

const defaultLog: LogFn = (level, msg) => {
  if (level === 'warn' || level === 'error') console.error(`[users] ${level}: ${msg}`);
};

export class UserServer implements SessionHost {
  readonly limits: UserServerLimits;
  readonly log: LogFn;
  private readonly httpServer: http.Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<UserSession>();
  private readonly users = new Map<string, UserSession>(); // pubkey hex -> authenticated session
  private readonly perHost = new Map<string, number>();
  private readonly nodeListeners: Array<[keyof UserNodeEvents, (...args: never[]) => void]> = [];
  private sweepTimer: NodeJS.Timeout | null = null;
  private started = false;

  constructor(
    readonly api: UserNodeApi,
    private readonly opts: UserServerOptions,
  ) {
    if (!/^0\.6\./.test(api.hpVersion)) throw new Error(`hpVersion must start with "0.6." (hotpocket-js-client refuses anything else), got "${api.hpVersion}"`);
    if (!api.contractId || !api.contractVersion) throw new Error('contractId and contractVersion must be non-empty (the official client refuses empty ones)');
    if (api.publicKey.length !== 33 || api.publicKey[0] !== 0xed) throw new Error('node publicKey must be 33 bytes starting with 0xED');
    this.limits = resolveLimits(opts.limits);
    this.log = opts.log ?? defaultLog;
    const l = this.limits;
    this.httpServer = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: l.handshakeTimeoutMs }) : http.createServer();
    // Slow or half-open HTTP upgrades get the same deadline as the WebSocket handshake.
    this.httpServer.headersTimeout = l.handshakeTimeoutMs;
    this.httpServer.requestTimeout = l.handshakeTimeoutMs;
    this.httpServer.maxConnections = l.maxUsers + l.maxPendingHandshakes;
    this.httpServer.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      res.end('HotPocket user endpoint: connect with a WebSocket client\n');
    });
    // No compression: HotPocket does not use it, and inflating is an easy memory bomb.
    this.wss = new WebSocketServer({ server: this.httpServer, maxPayload: l.maxMessageBytes, perMessageDeflate: false, clientTracking: false });
    this.wss.on('connection', (ws, req) => this.onConnection(ws, normalizeHost(req.socket.remoteAddress)));
    this.wss.on('error', (err) => this.log('error', `user WebSocket server error: ${err.message}`));
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('user server already started');
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`cannot listen for users on ${this.opts.host ?? '0.0.0.0'}:${this.opts.port}: ${err.message}`));
      this.httpServer.once('error', onError);
      this.httpServer.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        this.httpServer.off('error', onError);
        this.httpServer.on('error', (err) => this.log('error', `user server socket error: ${err.message}`));
        resolve();
      });
    });
    this.started = true;
    this.listenNode('input_status', (ev) => {
      // Like HotPocket, never report already_submitted after the fact: the first submission got its answer.
      if (ev.reason === 'already_submitted') return;
      const s = this.users.get(ev.user.toString('hex'));
      const ledger = ev.ledgerSeqNo !== undefined && ev.ledgerHash ? { seqNo: ev.ledgerSeqNo, hash: ev.ledgerHash } : undefined;
      s?.send(inputStatusMsg(ev.status, ev.inputHash, ev.reason, ledger));
    });
    this.listenNode('contract_output', (ev) => this.users.get(ev.user.toString('hex'))?.send(contractOutputMsg(ev)));
    this.listenNode('ledger_created', (ledger) => this.broadcast('ledger_event', ledgerCreatedMsg(ledger)));
    this.listenNode('vote_status', (ev) => this.broadcast('ledger_event', voteStatusMsg(ev.voteStatus)));
    this.listenNode('unl_change', (ev) => this.broadcast('unl_change', unlChangeMsg(ev.unl)));
    const idle = this.limits.idleTimeoutMs;
    if (idle > 0) {
      this.sweepTimer = setInterval(() => this.closeIdle(idle), Math.max(10, Math.min(1000, Math.floor(idle / 2))));
      this.sweepTimer.unref();
    }
  }

  /** Closes every session (1001), waits up to closeGraceMs for them, and stops listening. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    for (const [event, fn] of this.nodeListeners) this.api.off(event, fn as never);
    this.nodeListeners.length = 0;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    const closing = [...this.sessions].map((s) => new Promise<void>((resolve) => s.onClosed(resolve)));
    for (const s of this.sessions) s.close(CloseCode.goingAway, 'server shutting down');
    await Promise.all(closing);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => {
      this.httpServer.close(() => resolve());
      this.httpServer.closeAllConnections();
    });
  }

  get port(): number {
    const addr = this.httpServer.address() as AddressInfo | null;
    if (!addr) throw new Error('user server is not listening');
    return addr.port;
  }

  /** ws(s)://host:port for clients on this machine. */
  get url(): string {
    const host = this.opts.host && this.opts.host !== '0.0.0.0' && this.opts.host !== '::' ? this.opts.host : '127.0.0.1';
    return `${this.opts.tls ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${this.port}`;
  }

  stats(): { connections: number; pendingHandshakes: number; users: number } {
    return { connections: this.sessions.size, pendingHandshakes: this.sessions.size - this.users.size, users: this.users.size };
  }

  // ---- SessionHost ----

  admit(session: UserSession): Refusal | null {
    if (this.users.has(session.pubkeyHex)) {
      return { code: CloseCode.policyViolation, reason: `duplicate session: ${session.pubkeyHex} is already connected` };
    }
    if (this.users.size >= this.limits.maxUsers) {
      return { code: CloseCode.tryAgainLater, reason: `server full: ${this.limits.maxUsers} users connected, try again later` };
    }
    this.users.set(session.pubkeyHex, session);
    return null;
  }

  closed(session: UserSession): void {
    this.sessions.delete(session);
    if (this.users.get(session.pubkeyHex) === session) this.users.delete(session.pubkeyHex);
    const n = (this.perHost.get(session.remoteHost) ?? 1) - 1;
    if (n > 0) this.perHost.set(session.remoteHost, n);
    else this.perHost.delete(session.remoteHost);
  }

  // ---- internals ----

  private onConnection(ws: WebSocket, host: string): void {
    const l = this.limits;
    const fromHost = this.perHost.get(host) ?? 0;
    if (!this.started) return refuse(ws, CloseCode.goingAway, 'server shutting down', l.closeGraceMs);
    if (l.maxConnectionsPerHost > 0 && fromHost >= l.maxConnectionsPerHost) {
      return refuse(ws, CloseCode.policyViolation, `too many connections from ${host}: limit is ${l.maxConnectionsPerHost} per host`, l.closeGraceMs);
    }
    if (this.sessions.size - this.users.size >= l.maxPendingHandshakes) {
      return refuse(ws, CloseCode.tryAgainLater, `server busy: ${l.maxPendingHandshakes} handshakes in progress, try again later`, l.closeGraceMs);
    }
    const session = new UserSession(ws, host, this);
    this.sessions.add(session);
    this.perHost.set(host, fromHost + 1);
    session.start();
  }

  private listenNode<E extends keyof UserNodeEvents>(event: E, fn: UserNodeEvents[E]): void {
    // A failure while serving one event must not throw back into the node's code.
    const guarded = ((...args: never[]) => {
      try {
        (fn as (...a: never[]) => void)(...args);
      } catch (err) {
        this.log('error', `user server failed to deliver node event ${event}: ${(err as Error).stack ?? String(err)}`);
      }
    }) as UserNodeEvents[E];
    this.api.on(event, guarded);
    this.nodeListeners.push([event, guarded as (...args: never[]) => void]);
  }

  /** Sends to every authenticated subscriber, encoding once per protocol. */
  private broadcast(channel: SubscriptionChannel, msg: WireObject): void {
    const encoded: Partial<Record<UserProtocol, Buffer>> = {};
    for (const s of this.users.values()) {
      if (!s.subscriptions.has(channel)) continue;
      const bytes = (encoded[s.protocol] ??= encodeMessage(s.protocol, msg));
      s.sendRaw(bytes);
    }
  }

  private closeIdle(idleMs: number): void {
    const now = Date.now();
    for (const s of this.users.values()) {
      if (now - s.lastActivityMs >= idleMs) s.close(CloseCode.policyViolation, `idle timeout: no message for ${idleMs} ms`);
    }
  }
}

/** Closes a connection we will not serve, destroying it if the client ignores the close. */
function refuse(ws: WebSocket, code: number, reason: string, graceMs: number): void {
  ws.on('error', () => undefined);
  const timer = setTimeout(() => ws.terminate(), graceMs);
  ws.on('close', () => clearTimeout(timer));
  ws.close(code, closeReason(reason));
}

/** "::ffff:1.2.3.4" and "1.2.3.4" are the same host. */
function normalizeHost(addr: string | undefined): string {
  if (!addr) return 'unknown';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}
