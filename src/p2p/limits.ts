// Every bound the peer network enforces, with defaults and reasons, plus the close codes it uses.
// One misbehaving peer must only ever hurt itself: each limit drops, closes or bans that peer alone.

export interface PeerLimits {
  /** Largest WebSocket frame accepted (ws maxPayload), envelope included; bigger closes with 1009 and bans. */
  maxMessageBytes: number;
  /** Frames per second one authenticated peer may send (token bucket, burst = 1 s); excess is dropped. 0 = unlimited. */
  maxMsgsPerSecPerPeer: number;
  /** Bytes per second one authenticated peer may send; burst = max(this, maxMessageBytes). 0 = unlimited. */
  maxBytesPerSecPerPeer: number;
  /** Message ids remembered for deduplication (LRU entries, 32-byte ids: ~100 bytes each). */
  dedupWindow: number;
  /** Authenticated sessions at once; when full a UNL peer may replace an observer, anyone else is refused. */
  maxPeers: number;
  /** Inbound connections still in the handshake at once; more are refused with HTTP 503. */
  maxPendingHandshakes: number;
  /** Of those, from one IP address, so one host cannot starve the others. */
  maxPendingPerAddress: number;
  /** Time a connection has to complete the mutual-authentication handshake. */
  handshakeTimeoutMs: number;
  /** Bad messages from one peer within 60 s at which it is disconnected and banned. */
  maxBadMsgsPerMin: number;
  /** First ban length; each further ban of the same peer doubles it, up to banMaxMs. */
  banBaseMs: number;
  banMaxMs: number;
  /** Reconnect backoff for configured peers: base * 2^attempt with jitter, capped. */
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  /** Ping interval; a peer that misses a whole interval without a pong is dropped. */
  pingIntervalMs: number;
  /** Unsent bytes buffered for one peer; sends beyond this are dropped (and counted) instead of queued. */
  maxOutboundBufferBytes: number;
  /** Per-key counters kept in stats(); the oldest disconnected entries are forgotten beyond this. */
  maxStatsEntries: number;
}

export const DEFAULT_PEER_LIMITS: Readonly<PeerLimits> = Object.freeze({
  maxMessageBytes: 4 * 1024 * 1024,
  // A 30-node UNL at 200 ms rounds relays ~600 proposals/s through one well-connected peer.
  maxMsgsPerSecPerPeer: 2000,
  maxBytesPerSecPerPeer: 32 * 1024 * 1024,
  dedupWindow: 16384,
  maxPeers: 64,
  maxPendingHandshakes: 64,
  maxPendingPerAddress: 8,
  handshakeTimeoutMs: 5000,
  maxBadMsgsPerMin: 10,
  banBaseMs: 30_000,
  banMaxMs: 3_600_000,
  reconnectBaseMs: 200,
  reconnectMaxMs: 10_000,
  pingIntervalMs: 10_000,
  maxOutboundBufferBytes: 64 * 1024 * 1024,
  maxStatsEntries: 1024,
});

/** Resolves and checks a partial limits object; throws naming the bad field. */
export function resolvePeerLimits(partial: Partial<PeerLimits> = {}): PeerLimits {
  const limits: PeerLimits = { ...DEFAULT_PEER_LIMITS };
  for (const [k, v] of Object.entries(partial)) {
    if (v === undefined) continue;
    if (!(k in DEFAULT_PEER_LIMITS)) throw new Error(`unknown peer limit "${k}"; known limits: ${Object.keys(DEFAULT_PEER_LIMITS).join(', ')}`);
    (limits as unknown as Record<string, unknown>)[k] = v;
  }
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`peer limit ${k} must be a non-negative integer, got ${String(v)}`);
  }
  if (limits.maxMessageBytes < 1024) throw new Error(`peer limit maxMessageBytes must be >= 1024, got ${limits.maxMessageBytes}`);
  for (const k of ['dedupWindow', 'maxPeers', 'maxPendingHandshakes', 'maxPendingPerAddress', 'handshakeTimeoutMs', 'maxBadMsgsPerMin', 'reconnectBaseMs', 'pingIntervalMs'] as const) {
    if (limits[k] === 0) throw new Error(`peer limit ${k} must be > 0`);
  }
  if (limits.reconnectMaxMs < limits.reconnectBaseMs) throw new Error(`peer limit reconnectMaxMs (${limits.reconnectMaxMs}) must be >= reconnectBaseMs (${limits.reconnectBaseMs})`);
  if (limits.banMaxMs < limits.banBaseMs) throw new Error(`peer limit banMaxMs (${limits.banMaxMs}) must be >= banBaseMs (${limits.banBaseMs})`);
  return limits;
}

/**
 * WebSocket close codes. 1xxx are RFC 6455 §7.4.1; 4xxx are ours, so the other side (and its logs)
 * can tell why it was refused and whether retrying can help.
 */
export const PeerCloseCode = Object.freeze({
  normal: 1000, // peer removed from our list
  goingAway: 1001, // node stopping
  messageTooBig: 1009, // sent by ws itself when a frame exceeds maxMessageBytes
  duplicate: 4001, // another connection to the same peer is kept (the one the lower key initiated)
  contractMismatch: 4002, // the peer runs another contract
  notInUnl: 4003, // key not in our UNL and observers are not allowed
  selfConnection: 4004, // the peer is this node (own key)
  banned: 4005, // key or address is banned for a while
  handshakeFailed: 4006, // malformed handshake or signature that does not verify
  tooManyBadMessages: 4007, // maxBadMsgsPerMin exceeded; now banned
  handshakeTimeout: 4008,
  full: 4009, // maxPeers reached
  versionMismatch: 4010, // unsupported protocol version
  pingTimeout: 4011,
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
