// One peer connection (either direction): runs the mutual-authentication handshake, then hands
// binary frames to the network. Both sides send hello {contract id, key, fresh challenge} at once;
// on the other's hello each signs the statement in handshake.ts and sends it; each side is open
// once the other's signature verifies. Anything wrong before that closes this connection alone;
// nothing the peer sends can throw out of here.
import type { RawData, WebSocket } from 'ws';
import type { KeyPair } from '../crypto/keys';
import type { Logger } from '../node/log';
import { HelloStatement, newChallenge, Role, signHello, verifyHello } from './handshake';
import { closeReason, PeerCloseCode, PeerLimits } from './limits';
import { AuthFrame, decodeFrame, encodeAuth, encodeHello, Frame, HelloFrame, PROTOCOL_VERSION, WireError } from './wire';

/** What a session needs from the network that owns it. */
export interface SessionHost {
  readonly contractId: string;
  readonly keys: KeyPair;
  readonly limits: PeerLimits;
  readonly log: Logger;
  /** The peer proved its key; the host admits the session or closes it (UNL, bans, duplicates). */
  authenticated(s: PeerSession): void;
  /** A frame from an authenticated peer, not yet decoded. */
  frame(s: PeerSession, data: Buffer, isBinary: boolean): void;
  /** Misbehaviour: before authentication every offense is fatal (the session is already closing). */
  offense(s: PeerSession, reason: string, fatal: boolean): void;
  /** Called exactly once, when the socket has closed. */
  closed(s: PeerSession): void;
}

type State = 'connecting' | 'hello' | 'auth' | 'open' | 'closed';

const CLOSE_GRACE_MS = 1000;

export class PeerSession {
  private state: State = 'connecting';
  private readonly ourChallenge = newChallenge();
  private theirChallenge: Buffer | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  private alive = true;
  peerKey: Buffer | null = null;
  peerHex = '';
  /** Set by the host on admission; observers are admitted peers outside the UNL. */
  isUnl = false;
  admitted = false;
  readonly createdMs = Date.now();
  openedMs = 0;
  /** Why the socket closed: our code and reason when we closed it, else the peer's. */
  closeCode = 0;
  closeText = '';
  closedByUs = false;

  constructor(
    private readonly ws: WebSocket,
    readonly role: Role,
    readonly remoteAddress: string,
    private readonly host: SessionHost,
    /** The configured address this session dialed (outbound only). */
    readonly targetKey: string | null = null,
  ) {
    this.handshakeTimer = setTimeout(() => this.close(PeerCloseCode.handshakeTimeout, `handshake not completed within ${host.limits.handshakeTimeoutMs} ms`), host.limits.handshakeTimeoutMs);
    ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(toBuffer(data), isBinary));
    ws.on('pong', () => (this.alive = true));
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports protocol violations (oversized or malformed frames) here, then closes itself.
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.host.offense(this, `frame larger than maxMessageBytes (${host.limits.maxMessageBytes})`, true);
      else if (err.code?.startsWith('WS_ERR_')) this.host.offense(this, `WebSocket protocol error: ${err.message}`, true);
      else host.log.debug(`${this.label}: socket error: ${err.message}`);
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClose(code, reason.toString()));
    if (role === 'responder') this.start();
    else ws.once('open', () => this.start());
  }

  get label(): string {
    const who = this.peerHex ? `peer ${this.peerHex.slice(0, 10)}..` : 'peer';
    return `${who} (${this.role === 'initiator' ? 'to' : 'from'} ${this.targetKey ?? this.remoteAddress})`;
  }
  get isOpen(): boolean {
    return this.state === 'open';
  }
  get isClosed(): boolean {
    return this.state === 'closed';
  }
  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  /** Sends one binary frame; false when the session is not open (the frame is dropped). */
  send(frame: Buffer): boolean {
    if (this.state !== 'open' || this.ws.readyState !== this.ws.OPEN) return false;
    this.ws.send(frame, { binary: true });
    return true;
  }

  /** Closes with a code the peer can act on; the socket is destroyed if the peer does not answer. */
  close(code: number, reason: string): void {
    if (this.state === 'closed' || this.killTimer) return;
    this.closeCode = code;
    this.closeText = reason;
    this.closedByUs = true;
    this.clearTimers();
    this.host.log.debug(`${this.label}: closing (${code} ${reason})`);
    try {
      if (this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
      else this.ws.close(code, closeReason(reason));
    } catch {
      this.ws.terminate();
    }
    this.killTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
  }

  private start(): void {
    if (this.state !== 'connecting') return;
    this.state = 'hello';
    this.ws.send(encodeHello({ version: PROTOCOL_VERSION, contractId: this.host.contractId, pubkey: this.host.keys.publicKey, challenge: this.ourChallenge }), { binary: true });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.state === 'closed' || this.killTimer) return;
    this.alive = true;
    if (this.state === 'open') return this.host.frame(this, data, isBinary);
    if (!isBinary) return this.fail('text frame during the handshake');
    let f: Frame;
    try {
      f = decodeFrame(data);
    } catch (e) {
      return this.fail(e instanceof WireError ? e.message : `bad handshake frame: ${(e as Error).message}`);
    }
    if (this.state === 'hello' && f.type === 'hello') return this.onHello(f);
    if (this.state === 'auth' && f.type === 'auth') return this.onAuth(f);
    this.fail(`unexpected ${f.type} frame during the handshake (state ${this.state})`);
  }

  private onHello(f: HelloFrame): void {
    const h = this.host;
    if (f.version !== PROTOCOL_VERSION) return this.close(PeerCloseCode.versionMismatch, `peer protocol version ${f.version} unsupported; this node speaks ${PROTOCOL_VERSION}`);
    if (f.contractId !== h.contractId) return this.close(PeerCloseCode.contractMismatch, `contract id mismatch: this node runs ${h.contractId}`);
    if (f.pubkey.equals(h.keys.publicKey)) return this.close(PeerCloseCode.selfConnection, 'self connection: the peer has this node\'s own key; remove it from the peer list');
    if (f.challenge.equals(this.ourChallenge)) return this.fail('peer echoed our challenge');
    this.peerKey = Buffer.from(f.pubkey);
    this.peerHex = this.peerKey.toString('hex');
    this.theirChallenge = Buffer.from(f.challenge);
    this.state = 'auth';
    this.ws.send(encodeAuth(signHello(h.contractId, this.statement('us'), h.keys.secretKey)), { binary: true });
  }

  private onAuth(f: AuthFrame): void {
    if (!verifyHello(this.host.contractId, this.statement('them'), f.sig)) return this.fail('handshake signature does not verify (wrong key, contract or challenge)');
    this.state = 'open';
    this.openedMs = Date.now();
    this.clearTimers();
    this.pingTimer = setInterval(() => this.ping(), this.host.limits.pingIntervalMs);
    this.host.authenticated(this);
  }

  /** The statement `who` signs on this connection; challenges are always initiator's first. */
  private statement(who: 'us' | 'them'): HelloStatement {
    const ours = this.ourChallenge;
    const theirs = this.theirChallenge as Buffer;
    const us = this.host.keys.publicKey;
    const them = this.peerKey as Buffer;
    const weInitiated = this.role === 'initiator';
    return {
      signer: who === 'us' ? us : them,
      other: who === 'us' ? them : us,
      initiatorChallenge: weInitiated ? ours : theirs,
      responderChallenge: weInitiated ? theirs : ours,
      role: (who === 'us') === weInitiated ? 'initiator' : 'responder',
    };
  }

  private fail(reason: string): void {
    this.close(PeerCloseCode.handshakeFailed, `handshake failed: ${reason}`);
    this.host.offense(this, reason, true);
  }

  private ping(): void {
    if (!this.alive) return this.close(PeerCloseCode.pingTimeout, `no pong within ${this.host.limits.pingIntervalMs} ms`);
    this.alive = false;
    try {
      this.ws.ping();
    } catch {
      /* socket already closing: the close event follows */
    }
  }

  private onClose(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (!this.closedByUs) {
      this.closeCode = code;
      this.closeText = reason;
    }
    this.clearTimers();
    if (this.killTimer) clearTimeout(this.killTimer);
    this.killTimer = null;
    this.host.closed(this);
  }

  private clearTimers(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.handshakeTimer = this.pingTimer = null;
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
