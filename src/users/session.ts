// One user connection: handshake, per-connection limits, outbound backpressure and closing.
// Every path that a client controls ends in a reply, a counted bad message or a close of THIS
// connection; nothing a client sends can throw out of here.
import type { RawData, WebSocket } from 'ws';
import { decodeMessage, encodeMessage, WireObject } from './codec';
import { newChallenge, serverChallengeMessage, serverChallengeResponseMsg, userChallengeMsg, verifyChallengeResponse } from './handshake';
import { CloseCode, closeReason, UserServerLimits, WindowCounter } from './limits';
import { inputStatusMsg, SubscriptionChannel } from './messages';
import type { UserNodeApi, UserProtocol } from './nodeApi';
import { handleRequest, JobScheduler, LogFn, RequestContext } from './requests';

export interface Refusal {
  code: number;
  reason: string;
}

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly api: UserNodeApi;
  readonly limits: UserServerLimits;
  readonly log: LogFn;
  /** Registers a session whose handshake verified; a refusal (duplicate key, server full) closes it. */
  admit(session: UserSession): Refusal | null;
  /** Called exactly once when the socket has closed. */
  closed(session: UserSession): void;
}

type State = 'handshake' | 'ready' | 'closing' | 'closed';

const EMPTY = Buffer.alloc(0);
/** A real user_challenge_response is about 300 bytes. */
const MAX_HANDSHAKE_BYTES = 4096;

export class UserSession implements RequestContext {
  private state: State = 'handshake';
  private readonly challenge = newChallenge();
  private readonly bytesPerMin: WindowCounter;
  private readonly badMsgsPerMin: WindowCounter;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;
  lastActivityMs = Date.now();
  pubkey: Buffer = EMPTY;
  pubkeyHex = '';
  protocol: UserProtocol = 'json';
  readonly subscriptions = new Set<SubscriptionChannel>();
  readonly jobs: JobScheduler;
  private readonly closeWaiters: Array<() => void> = [];

  constructor(
    private readonly ws: WebSocket,
    readonly remoteHost: string,
    private readonly host: SessionHost,
  ) {
    const l = host.limits;
    this.bytesPerMin = new WindowCounter(l.maxBytesPerMin);
    this.badMsgsPerMin = new WindowCounter(l.maxBadMsgsPerMin);
    this.jobs = new JobScheduler(l.maxConcurrentRequestsPerSession, l.maxQueuedRequestsPerSession);
  }

  get api(): UserNodeApi {
    return this.host.api;
  }
  get log(): LogFn {
    return this.host.log;
  }
  get label(): string {
    return this.pubkeyHex ? `user ${this.pubkeyHex.slice(0, 10)}.. (${this.remoteHost})` : `connection from ${this.remoteHost}`;
  }
  isOpen(): boolean {
    return this.state === 'ready';
  }

  /** Calls `fn` once the socket has closed (at once if it already has). */
  onClosed(fn: () => void): void {
    if (this.state === 'closed') fn();
    else this.closeWaiters.push(fn);
  }

  /** Sends the user challenge and arms the handshake timeout. */
  start(): void {
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('close', () => this.onClose());
    // Socket errors (resets, protocol violations) are followed by 'close'; without a listener they would crash the process.
    this.ws.on('error', (err) => this.host.log('debug', `${this.label}: socket error: ${err.message}`));
    const t = this.host.limits.handshakeTimeoutMs;
    this.handshakeTimer = setTimeout(() => this.close(CloseCode.policyViolation, `handshake timeout: no valid user_challenge_response within ${t} ms`), t);
    const api = this.host.api;
    this.sendRaw(userChallengeMsg(api.hpVersion, api.contractId, api.contractVersion, this.challenge));
  }

  /** Sends a protocol message in this session's protocol. */
  send(msg: WireObject): void {
    if (this.state !== 'ready') return;
    this.sendRaw(encodeMessage(this.protocol, msg));
  }

  /** Sends pre-encoded bytes (broadcasts encode once per protocol). */
  sendRaw(bytes: Buffer): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const max = this.host.limits.maxOutboundBufferBytes;
    if (this.ws.bufferedAmount + bytes.length > max && this.ws.bufferedAmount > 0) {
      this.close(CloseCode.policyViolation, `outbound buffer over ${max} bytes: the client is not reading its messages`);
      return;
    }
    this.ws.send(bytes, { binary: true });
  }

  countBad(detail: string): void {
    if (this.badMsgsPerMin.add(1, Date.now())) {
      this.host.log('info', `${this.label}: bad message limit exceeded; last one: ${detail}`);
      this.close(CloseCode.policyViolation, `too many bad messages: more than ${this.badMsgsPerMin.limit} per minute`);
    }
  }

  /** Starts the close handshake; the socket is destroyed if the client does not answer in time. */
  close(code: number, reason: string): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.state = 'closing';
    this.clearHandshakeTimer();
    this.jobs.stop();
    this.host.log(code === CloseCode.goingAway ? 'debug' : 'info', `${this.label}: closing (${code}): ${reason}`);
    try {
      this.ws.close(code, closeReason(reason));
    } catch {
      this.ws.terminate();
    }
    this.killTimer = setTimeout(() => this.ws.terminate(), this.host.limits.closeGraceMs);
  }

  private onMessage(raw: RawData, isBinary: boolean): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    const data = Buffer.isBuffer(raw) ? raw : Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw);
    this.lastActivityMs = Date.now();
    if (this.bytesPerMin.add(data.length, this.lastActivityMs)) {
      this.close(CloseCode.policyViolation, `rate limit: more than ${this.bytesPerMin.limit} bytes received per minute`);
      return;
    }
    try {
      if (this.state === 'handshake') this.onHandshakeMessage(data, isBinary);
      else this.onRequest(data, isBinary);
    } catch (err) {
      // A bug of ours, not the client's: log loudly, keep the node up, drop only this connection.
      this.host.log('error', `${this.label}: internal error handling a message: ${(err as Error).stack ?? String(err)}`);
      this.close(CloseCode.internalError, 'internal server error');
    }
  }

  private onHandshakeMessage(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      this.close(CloseCode.unsupportedData, 'handshake failed: text frames are not supported, send binary frames');
      return;
    }
    // An unauthenticated peer does not get to make us parse megabytes.
    if (data.length > MAX_HANDSHAKE_BYTES) {
      this.close(CloseCode.messageTooBig, `handshake failed: user_challenge_response larger than ${MAX_HANDSHAKE_BYTES} bytes`);
      return;
    }
    const res = verifyChallengeResponse(data, this.challenge);
    if (!res.ok) {
      this.close(CloseCode.policyViolation, `handshake failed: ${res.detail}`);
      return;
    }
    this.pubkey = res.pubkey;
    this.pubkeyHex = res.pubkey.toString('hex');
    this.protocol = res.protocol;
    const refusal = this.host.admit(this);
    if (refusal) {
      this.close(refusal.code, refusal.reason);
      return;
    }
    this.clearHandshakeTimer();
    this.state = 'ready';
    if (res.serverChallenge !== null) {
      const api = this.host.api;
      const sig = api.signServerChallenge(serverChallengeMessage(res.serverChallenge, api.contractId, api.contractVersion));
      this.sendRaw(serverChallengeResponseMsg(sig, api.publicKey, api.unl()));
    }
    this.host.log('debug', `${this.label}: authenticated (${this.protocol})`);
  }

  private onRequest(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      this.rejectUnparsed('text frames are not supported, send binary frames');
      return;
    }
    const d = decodeMessage(this.protocol, data);
    if (!d.ok) {
      this.rejectUnparsed(d.detail);
      return;
    }
    handleRequest(this, d.msg);
  }

  private rejectUnparsed(detail: string): void {
    this.host.log('debug', `${this.label}: rejected (bad_msg_format): ${detail}`);
    this.send(inputStatusMsg('rejected', EMPTY, 'bad_msg_format'));
    this.countBad(detail);
  }

  private onClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.clearHandshakeTimer();
    if (this.killTimer) clearTimeout(this.killTimer);
    this.jobs.stop();
    this.host.closed(this);
    for (const fn of this.closeWaiters.splice(0)) fn();
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }
}
