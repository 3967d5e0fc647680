// Every bound the user server enforces, with defaults and the close codes it uses. One bad client
// must only ever hurt itself: each limit closes (or rejects) the offending connection alone.

export interface UserServerLimits {
  /** Largest WebSocket message accepted (ws maxPayload); bigger frames close with 1009. HotPocket: 5 MB. */
  maxMessageBytes: number;
  /** Inbound bytes per connection per 60 s window; exceeding closes the connection. 0 = unlimited. */
  maxBytesPerMin: number;
  /** Protocol-level bad messages per connection per 60 s window; exceeding closes it. 0 = unlimited. */
  maxBadMsgsPerMin: number;
  /** Simultaneous connections (pending or authenticated) from one IP address. 0 = unlimited. */
  maxConnectionsPerHost: number;
  /** Authenticated user sessions (HotPocket hard-codes 64). */
  maxUsers: number;
  /** Connections still in the handshake at once. */
  maxPendingHandshakes: number;
  /** Time a new connection has to complete the handshake (HotPocket: 5 s). */
  handshakeTimeoutMs: number;
  /** Close an authenticated session after this long without a message from it. 0 = never. */
  idleTimeoutMs: number;
  /** Slow requests (read requests, ledger queries) one session may have executing at once. */
  maxConcurrentRequestsPerSession: number;
  /** Slow requests one session may have waiting; more are dropped and count as bad messages. */
  maxQueuedRequestsPerSession: number;
  /** Unsent bytes buffered for one client; a client that stops reading is closed past this. */
  maxOutboundBufferBytes: number;
  /** Grace period for a closing client to complete the close handshake before the socket is destroyed. */
  closeGraceMs: number;
}

export const DEFAULT_LIMITS: Readonly<UserServerLimits> = Object.freeze({
  maxMessageBytes: 5 * 1024 * 1024,
  maxBytesPerMin: 0,
  maxBadMsgsPerMin: 60,
  maxConnectionsPerHost: 0,
  maxUsers: 1000,
  maxPendingHandshakes: 1000,
  handshakeTimeoutMs: 5000,
  idleTimeoutMs: 0,
  maxConcurrentRequestsPerSession: 4,
  maxQueuedRequestsPerSession: 64,
  maxOutboundBufferBytes: 64 * 1024 * 1024,
  closeGraceMs: 2000,
});

/** Resolves and checks a partial limits object; throws naming the bad field. */
export function resolveLimits(partial: Partial<UserServerLimits> = {}): UserServerLimits {
  const limits = { ...DEFAULT_LIMITS, ...partial };
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`user server limit ${k} must be a non-negative integer, got ${String(v)}`);
  }
  if (limits.maxMessageBytes < 1024) throw new Error(`user server limit maxMessageBytes must be >= 1024, got ${limits.maxMessageBytes}`);
  if (limits.handshakeTimeoutMs === 0) throw new Error('user server limit handshakeTimeoutMs must be > 0');
  if (limits.maxUsers === 0 || limits.maxPendingHandshakes === 0 || limits.maxConcurrentRequestsPerSession === 0) {
    throw new Error('user server limits maxUsers, maxPendingHandshakes and maxConcurrentRequestsPerSession must be > 0');
  }
  return limits;
}

/** WebSocket close codes the server uses (RFC 6455 §7.4.1). */
export const CloseCode = Object.freeze({
  normal: 1000,
  goingAway: 1001, // server stopping
  unsupportedData: 1003, // text frame during the handshake
  policyViolation: 1008, // handshake failure/timeout, rate limits, duplicate user, per-host limit, idle
  messageTooBig: 1009, // sent by ws itself when a frame exceeds maxMessageBytes; also oversized handshakes
  internalError: 1011, // a bug of ours while handling the connection's message
  tryAgainLater: 1013, // server full (max users / pending handshakes)
});

/** Close reasons must fit a control frame (125 bytes including the 2-byte code). */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= 123) return text;
  let out = '';
  for (const ch of text) {
    if (Buffer.byteLength(out + ch) > 120) break;
    out += ch;
  }
  return out + '...';
}

/**
 * A fixed-window counter as in HotPocket's comm_session::increment_metric: the window starts at the
 * first count, and the limit trips when the total within `windowMs` exceeds `limit`.
 */
export class WindowCounter {
  private startMs = 0;
  private total = 0;

  constructor(
    readonly limit: number,
    readonly windowMs = 60_000,
  ) {}

  /** Adds `amount`; true when the limit is now exceeded (always false for limit 0). */
  add(amount: number, nowMs: number): boolean {
    if (this.limit === 0) return false;
    if (this.total === 0 || nowMs - this.startMs > this.windowMs) {
      this.startMs = nowMs;
      this.total = 0;
    }
    this.total += amount;
    return this.total > this.limit;
  }

  get count(): number {
    return this.total;
  }
}
