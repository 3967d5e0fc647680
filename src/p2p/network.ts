// The peer network: a WebSocket listener plus dialers for configured peers, mutually authenticated
// sessions (session.ts), and signed, deduplicated, rate-limited, relayed messages (envelope.ts).
// Policy lives here: who is admitted (UNL, observers, bans, maxPeers), which of two connections to
// the same peer survives, what counts as a bad message, and when to redial.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { KeyPair, verify } from '../crypto/keys';
import type { Logger } from '../node/log';
import { answerTo } from './answers';
import { BanList } from './bans';
import { AnswerMemory, BULK_PROTOCOL, BULK_TICKET_HEADER, BULK_TICKET_REQUEST, BulkClient, decodeTicketAnswer, encodeTicketAnswer, NO_TICKET_ANSWER, serveBulk, TicketBook } from './bulk';
import { SeenIds } from './dedup';
import { backoffDelayMs, PeerAddress, parsePeerAddress, peerUrl } from './dialTarget';
import { createEnvelope, decodeBody, envelopeId, messageId, signedBytes } from './envelope';
import { PeerCloseCode, PeerLimits, resolvePeerLimits } from './limits';
import { TokenBucket, WindowCounter } from './rate';
import { PeerSession, SessionHost } from './session';
import { decodeFrame, encodeMsg, allocRes, encodeReq, FLAG_RELAY, Frame, looksLikeRes, MessageContext, MsgFrame } from './wire';

export interface PeerNetworkOptions {
  contractId: string;
  keys: KeyPair;
  /** Where to accept peers; port 0 picks a free port (see address()). null = dial only. */
  listen: { host: string; port: number } | null;
  /** "host:port" addresses to dial and keep dialing (config known_peers). */
  peers: string[];
  /** Current UNL as lower-case hex public keys; called often, so return the same array while unchanged. */
  unl: () => string[];
  /** Admit authenticated peers outside the UNL as observers (they receive; what they author is not relayed). */
  allowObservers: boolean;
  limits?: Partial<PeerLimits>;
  log?: Logger;
  /** Milliseconds clock for rate limits, bad-message windows and bans (tests and simulation freeze it). */
  clock?: () => number;
  /** Source address for outbound connections (tests use distinct loopback addresses). */
  localAddress?: string;
  /** Where bulk answers are read into (bulkRequest's callers give them back); default: new buffers. */
  answerMemory?: AnswerMemory;
}

/** Our bulk stream to one peer: being opened (client pending), open, or failed (retryAt set). */
interface BulkEntry {
  client: Promise<BulkClient | null>;
  open: BulkClient | null;
  retryAt: number;
}

export interface PeerMessage {
  /** BLAKE3 message id (hex): author plus everything signed, not the signature. */
  id: string;
  /** The directly connected peer that sent it to us. */
  from: string;
  /** The key that signed it (verified). */
  author: string;
  kind: string;
  context: MessageContext;
  /** Envelope flags as signed (wire.ts FLAG_*). */
  flags: number;
  /** A Buffer when the author sent bytes, else the decoded MessagePack object (its binary values are Buffers). */
  body: Uint8Array | object;
  /** True when it came through a relay (author !== from). */
  relayed: boolean;
  /** Author is in the UNL now; messages with isUnl false are observers' and must not count as votes. */
  isUnl: boolean;
  /** The direct sender is in the UNL now. */
  fromUnl: boolean;
  /** Exactly what the author signed (verifyIn(context, contractId, signed, sig, author)): kept for quorum certificates. */
  signed: Uint8Array;
  sig: Uint8Array;
}

/** A question from a directly connected peer (wire.ts req frame): answer it with reply(), at most once. */
export interface PeerRequest {
  /** The peer at the other end of the link (its key proven by the handshake). */
  from: string;
  kind: string;
  body: Buffer;
  fromUnl: boolean;
  /** Sends `parts` (concatenated) as the answer; false if the peer is gone or its buffer is full. */
  reply(parts: readonly Uint8Array[]): boolean;
  /**
   * Sends an answer of `length` bytes that `fill` writes straight into the outgoing frame. If fill
   * throws, nothing is sent and the request can still be answered.
   */
  replyInto(length: number, fill: (body: Buffer) => void): boolean;
  /** replyInto with a fill that completes later (reads on libuv's threads); if it rejects, nothing is sent. */
  replyIntoLater(length: number, fill: (body: Buffer) => Promise<void>): Promise<boolean>;
}

/** An answer frame being prepared: `body` is where it goes; send() ships it (false if the peer is gone). */
export interface ReservedAnswer {
  body: Buffer;
  send(): boolean;
}

export interface PeerEvent {
  pubkeyHex: string;
  state: 'up' | 'down';
  isUnl: boolean;
  inbound: boolean;
}

export interface SendOptions {
  /** Signing context (domain.ts); 'proposal' unless given. 'peer-hello' is reserved for the handshake. */
  context?: MessageContext;
}
export interface BroadcastOptions extends SendOptions {
  /** Ask every receiving node to relay it to its other peers (for nodes without a direct link). */
  relay?: boolean;
}
export interface BroadcastResult {
  id: string;
  /** The author signature of the sealed message (what a quorum certificate keeps). */
  sig: Buffer;
  /** Peers it was handed to (not dropped by backpressure). */
  sentTo: string[];
}

export interface PeerCounters {
  connected: boolean;
  isUnl: boolean;
  inbound: boolean;
  address: string;
  connects: number;
  disconnects: number;
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
  delivered: number;
  duplicates: number;
  /** Their frames we forwarded to other peers. */
  relayed: number;
  badMessages: number;
  rateDropped: number;
  /** Requests they answered / answers that came after we stopped waiting (not counted as bad). */
  answers: number;
  lateAnswers: number;
  /** Our frames to them dropped because their outbound buffer was full. */
  sendDropped: number;
  bans: number;
  lastBadReason: string;
}

export interface PeerNetworkStats {
  peers: Record<string, PeerCounters>;
  handshakes: {
    pending: number;
    /** Misbehaviour before a key was proven (garbage, oversized frames, bad handshake signatures). */
    preAuthOffenses: number;
    refusedBanned: number;
    refusedNotInUnl: number;
    /** Refused for maxPeers or the pending-handshake caps. */
    refusedFull: number;
    selfConnections: number;
    failedDials: number;
  };
  bans: Array<{ target: string; strikes: number; remainingMs: number }>;
  dedupEntries: number;
  /** Bulk streams (bulk.ts): ours opened / failed to open, peers' accepted / refused (bad ticket). */
  bulk: { opened: number; failed: number; served: number; refused: number };
}

export declare interface PeerNetwork {
  on(event: 'message', listener: (m: PeerMessage) => void): this;
  on(event: 'peer', listener: (e: PeerEvent) => void): this;
  on(event: 'request', listener: (r: PeerRequest) => void): this;
  once(event: 'message', listener: (m: PeerMessage) => void): this;
  once(event: 'peer', listener: (e: PeerEvent) => void): this;
  off(event: 'message', listener: (m: PeerMessage) => void): this;
  off(event: 'peer', listener: (e: PeerEvent) => void): this;
  off(event: 'request', listener: (r: PeerRequest) => void): this;
}

interface PeerRecord {
  c: PeerCounters;
  msgBucket: TokenBucket;
  byteBucket: TokenBucket;
  badWindow: WindowCounter;
}

interface Target {
  addr: PeerAddress;
  attempts: number;
  timer: NodeJS.Timeout | null;
  session: PeerSession | null;
  /** Learned on the first successful handshake; lets us skip dialing a peer already connected inbound. */
  pubkeyHex: string;
  /** The address turned out to be this node: never dialed again. */
  self: boolean;
}

/** Close codes meaning "the peer does not want us": back off as for a failed dial, even after a handshake. */
const REFUSALS = new Set<number>([PeerCloseCode.contractMismatch, PeerCloseCode.notInUnl, PeerCloseCode.banned, PeerCloseCode.handshakeFailed, PeerCloseCode.tooManyBadMessages, PeerCloseCode.handshakeTimeout, PeerCloseCode.full, PeerCloseCode.versionMismatch]);
const NOOP_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => NOOP_LOG };
const STOP_WAIT_MS = 3000;
/** After a bulk stream could not be opened to a peer, its big answers come over the link this long. */
const BULK_RETRY_MS = 30_000;
/** Requests one bulk stream may have unanswered (a requester keeps a handful in flight). */
const MAX_BULK_PENDING = 64;

export class PeerNetwork extends EventEmitter {
  readonly contractId: string;
  readonly keys: KeyPair;
  readonly limits: PeerLimits;
  private readonly ownHex: string;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly host: SessionHost;
  private readonly seen: SeenIds;
  private readonly bans: BanList;
  /** Admitted sessions, one per peer key. */
  private readonly sessions = new Map<string, PeerSession>();
  /** Sessions still in the handshake. */
  private readonly pending = new Set<PeerSession>();
  /** Every socket not yet closed, for stop(). */
  private readonly live = new Set<PeerSession>();
  private readonly targets = new Map<string, Target>();
  private readonly records = new Map<string, PeerRecord>();
  private readonly hs = { preAuthOffenses: 0, refusedBanned: 0, refusedNotInUnl: 0, refusedFull: 0, selfConnections: 0, failedDials: 0 };
  private httpServer: http.Server | null = null;
  private wss: WebSocketServer | null = null;
  private tick: NodeJS.Timeout | null = null;
  private started = false;
  private unlArr: string[] | null = null;
  private unlSet = new Set<string>();
  /** Our requests waiting for an answer, by id; ids start at random so a restarted node does not reuse recent ones. */
  private readonly waiting = new Map<number, { peer: string; done: (body: Buffer | null) => void }>();
  private nextRequestId = 1 + Math.floor(Math.random() * 2 ** 40);
  /** Bulk streams (bulk.ts): tickets we handed out, streams we serve per peer, ours to each peer. */
  private readonly tickets = new TicketBook();
  private readonly bulkServed = new Map<string, Set<Socket>>();
  private readonly bulkLinks = new Map<string, BulkEntry>();
  private readonly bulkCounts = { opened: 0, failed: 0, served: 0, refused: 0 };

  constructor(private readonly opts: PeerNetworkOptions) {
    super();
    if (typeof opts.contractId !== 'string' || opts.contractId.length === 0) throw new Error('peer network needs a non-empty contractId');
    this.contractId = opts.contractId;
    this.keys = opts.keys;
    this.ownHex = opts.keys.publicKey.toString('hex');
    this.limits = resolvePeerLimits(opts.limits);
    this.log = opts.log ?? NOOP_LOG;
    this.clock = opts.clock ?? Date.now;
    this.seen = new SeenIds(this.limits.dedupWindow);
    this.bans = new BanList(this.limits.banBaseMs, this.limits.banMaxMs);
    this.host = {
      contractId: this.contractId,
      keys: this.keys,
      limits: this.limits,
      log: this.log,
      authenticated: (s) => this.onAuthenticated(s),
      frame: (s, data, isBinary) => this.onFrame(s, data, isBinary),
      offense: (s, reason, fatal) => this.onOffense(s, reason, fatal),
      closed: (s) => this.onClosed(s),
    };
    this.addPeers(opts.peers);
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle

  async start(): Promise<void> {
    if (this.started) throw new Error('peer network already started');
    const l = this.opts.listen;
    if (l) {
      const server = http.createServer((_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain' });
        res.end('hp-node peer port: WebSocket peers only\n');
      });
      // Bytes that are not even HTTP: count and ban the address like any pre-auth garbage.
      server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
        if (err.code?.startsWith('HPE_')) this.preAuthOffense(socket.remoteAddress ?? '?', `malformed HTTP on the peer port (${err.code})`, true);
        socket.destroy();
      });
      this.wss = new WebSocketServer({
        noServer: true, // upgrades are routed below: WebSocket peers, or a bulk stream
        maxPayload: this.limits.maxMessageBytes,
        perMessageDeflate: false, // compression bombs and CPU; bodies are mostly hashes and signatures
        clientTracking: false,
        verifyClient: (info, cb) => {
          const addr = info.req.socket.remoteAddress ?? '?';
          if (this.bans.remainingMs(`addr:${addr}`, this.clock()) > 0) {
            this.hs.refusedBanned++;
            return cb(false, 403, 'banned');
          }
          let inbound = 0;
          let fromAddr = 0;
          for (const s of this.pending) {
            if (s.role !== 'responder') continue;
            inbound++;
            if (s.remoteAddress === addr) fromAddr++;
          }
          if (inbound >= this.limits.maxPendingHandshakes || fromAddr >= this.limits.maxPendingPerAddress) {
            this.hs.refusedFull++;
            return cb(false, 503, 'too many pending handshakes');
          }
          cb(true);
        },
      });
      server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
        if (String(req.headers.upgrade ?? '').toLowerCase() === BULK_PROTOCOL) return this.acceptBulk(req, socket, head);
        this.wss?.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req.socket.remoteAddress ?? '?'));
      });
      this.wss.on('error', (err) => this.log.error(`peer listener: ${err.message}`));
      this.httpServer = server;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: Error) => reject(new Error(`cannot listen for peers on ${l.host}:${l.port}: ${err.message}; pick another mesh port or stop the process using it`)));
        server.listen(l.port, l.host, () => resolve());
      });
    }
    this.started = true;
    this.tick = setInterval(() => this.maintain(), 1000);
    for (const t of this.targets.values()) this.schedule(t, 0);
    this.log.info(`peer network up${l ? ` on ${this.address().host}:${this.address().port}` : ' (dial only)'}, ${this.targets.size} configured peers`);
  }

  /** Closes every connection and the listener; resolves once all sockets are gone. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    if (this.tick) clearInterval(this.tick);
    this.tick = null;
    for (const t of this.targets.values()) {
      if (t.timer) clearTimeout(t.timer);
      t.timer = null;
    }
    for (const w of [...this.waiting.values()]) w.done(null);
    for (const peer of [...this.bulkServed.keys(), ...this.bulkLinks.keys()]) this.closeBulk(peer);
    for (const s of this.live) s.close(PeerCloseCode.goingAway, 'node stopping');
    const deadline = Date.now() + STOP_WAIT_MS;
    while (this.live.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (this.wss) await new Promise<void>((r) => (this.wss as WebSocketServer).close(() => r()));
    if (this.httpServer) {
      const server = this.httpServer;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    this.wss = null;
    this.httpServer = null;
  }

  /** The bound listen address (port resolved when 0 was asked for). */
  address(): { host: string; port: number } {
    const a = this.httpServer?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error('peer network is not listening: call start() first (and give a listen address)');
    return { host: a.address, port: a.port };
  }

  // ------------------------------------------------------------------------------------------
  // Peer list (config known_peers, contract peer_changeset)

  /** Adds "host:port" peers to dial; validates all before adding any. */
  addPeers(list: string[]): void {
    const parsed = list.map(parsePeerAddress);
    for (const addr of parsed) {
      if (this.targets.has(addr.key)) continue;
      const t: Target = { addr, attempts: 0, timer: null, session: null, pubkeyHex: '', self: false };
      this.targets.set(addr.key, t);
      if (this.started) this.schedule(t, 0);
    }
  }

  /** Stops dialing these peers ('*' = all) and closes the connections we dialed to them. */
  removePeers(list: string[] | '*'): void {
    const keys = list === '*' ? [...this.targets.keys()] : list.map((s) => parsePeerAddress(s).key);
    for (const k of keys) {
      const t = this.targets.get(k);
      if (!t) continue;
      this.targets.delete(k);
      if (t.timer) clearTimeout(t.timer);
      t.timer = null;
      t.session?.close(PeerCloseCode.normal, 'removed from the peer list');
    }
  }

  configuredPeers(): string[] {
    return [...this.targets.keys()];
  }

  // ------------------------------------------------------------------------------------------
  // Messages

  /** Signs and sends a message to every connected peer. Throws if the frame would exceed maxMessageBytes. */
  broadcast(kind: string, body: Uint8Array | object, opts: BroadcastOptions = {}): BroadcastResult {
    const { id, frame, sig } = this.seal(kind, body, opts.context, opts.relay === true);
    this.seen.add(id); // our own message relayed back to us is a duplicate
    const sentTo: string[] = [];
    for (const [hex, s] of this.sessions) if (this.sendFrame(s, frame)) sentTo.push(hex);
    return { id, sentTo, sig };
  }

  /**
   * Sends a message some author already signed, unchanged, to every connected peer but its author
   * (the consensus hands old precommits to members that missed them). Returns how many got it.
   */
  forward(env: Omit<MsgFrame, 'type'>): number {
    const frame = encodeMsg(env);
    if (frame.length > this.limits.maxMessageBytes) return 0;
    const author = env.author.toString('hex');
    let n = 0;
    for (const [hex, s] of this.sessions) if (hex !== author && this.sendFrame(s, frame)) n++;
    return n;
  }

  /** Sends a message some author already signed, unchanged, to one connected peer; false if not connected or dropped. */
  forwardTo(pubkeyHex: string, env: Omit<MsgFrame, 'type'>): boolean {
    const s = this.sessions.get(pubkeyHex);
    const frame = encodeMsg(env);
    return s !== undefined && frame.length <= this.limits.maxMessageBytes && this.sendFrame(s, frame);
  }

  /** Signs and sends a message to one connected peer (never relayed); false if not connected or dropped. */
  sendTo(pubkeyHex: string, kind: string, body: Uint8Array | object, opts: SendOptions = {}): boolean {
    const s = this.sessions.get(pubkeyHex);
    if (!s) return false;
    const { frame } = this.seal(kind, body, opts.context, false);
    return this.sendFrame(s, frame);
  }

  /**
   * Asks one connected peer and resolves with its answer's body, or null when it is not connected,
   * the send was dropped, the link went down or `timeoutMs` passed. Never rejects.
   */
  request(pubkeyHex: string, kind: string, body: Uint8Array, timeoutMs: number): Promise<Buffer | null> {
    const s = this.sessions.get(pubkeyHex);
    if (!s) return Promise.resolve(null);
    const id = this.nextRequestId++;
    return answerTo(this.waiting, id, timeoutMs, (done) => ({ peer: pubkeyHex, done }), () => this.sendFrame(s, encodeReq(kind, id, body)));
  }

  /**
   * request() over the peer's bulk stream (bulk.ts), opened on first use; for big answers (state
   * objects). Falls back to the WebSocket link while a stream cannot be had (the peer offers none,
   * or the connection failed: tried again after BULK_RETRY_MS). `linkWhileOpening`: a request made
   * while the stream is still being opened goes over the link instead of waiting for it (the
   * first steps of a small sync are a few round trips; opening a stream costs two more).
   */
  async bulkRequest(pubkeyHex: string, kind: string, body: Uint8Array, timeoutMs: number, opts: { linkWhileOpening?: boolean } = {}): Promise<Buffer | null> {
    const entry = this.bulkLink(pubkeyHex);
    const client = entry && (entry.open ?? (opts.linkWhileOpening ? null : await entry.client));
    return client && !client.closed ? client.request(kind, body, timeoutMs) : this.request(pubkeyHex, kind, body, timeoutMs);
  }

  private bulkLink(peer: string): BulkEntry | null {
    const now = this.clock();
    const cur = this.bulkLinks.get(peer);
    if (cur && (cur.retryAt === 0 || now < cur.retryAt)) return cur;
    const s = this.sessions.get(peer);
    if (!s) return null;
    const entry: BulkEntry = { client: Promise.resolve(null), open: null, retryAt: 0 };
    entry.client = this.openBulk(s).then(
      (client) => {
        this.bulkCounts.opened++;
        client.onClose(() => {
          if (this.bulkLinks.get(peer) === entry) this.bulkLinks.delete(peer);
        });
        if (this.bulkLinks.get(peer) !== entry) client.close(); // the peer went down meanwhile
        entry.open = client;
        return client;
      },
      (err: Error) => {
        this.bulkCounts.failed++;
        this.log.warn(`${s.label}: no bulk stream (${err.message}); big answers come over the peer link, ${BULK_RETRY_MS / 1000} s until the next try`);
        entry.retryAt = this.clock() + BULK_RETRY_MS;
        return null;
      },
    );
    this.bulkLinks.set(peer, entry);
    return entry;
  }

  private async openBulk(s: PeerSession): Promise<BulkClient> {
    const answer = await this.request(s.peerHex, BULK_TICKET_REQUEST, Buffer.alloc(0), this.limits.handshakeTimeoutMs);
    const t = answer && decodeTicketAnswer(answer);
    if (!t) throw new Error(answer ? 'the peer offers none' : 'no answer to the ticket request');
    // The host we dialed, or the address the peer's link came from; the port it told us.
    const host = (s.targetKey && this.targets.get(s.targetKey)?.addr.host) || s.remoteAddress;
    return BulkClient.open({ host, port: t.port, ticket: t.ticket, localAddress: this.opts.localAddress, maxAnswerBytes: this.limits.maxMessageBytes, connectTimeoutMs: this.limits.handshakeTimeoutMs, answerMemory: this.opts.answerMemory });
  }

  /** A bulk upgrade on the peer port: admitted with a ticket we issued to a peer still connected. */
  private acceptBulk(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    const addr = socket.remoteAddress ?? '?';
    const peer = this.tickets.redeem(String(req.headers[BULK_TICKET_HEADER] ?? ''), this.clock());
    if (this.bans.remainingMs(`addr:${addr}`, this.clock()) > 0 || !peer || !this.sessions.has(peer)) {
      this.bulkCounts.refused++;
      this.preAuthOffense(addr, 'bulk stream upgrade without a valid ticket', false);
      return void socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
    }
    this.bulkCounts.served++;
    const served = this.bulkServed.get(peer) ?? new Set<Socket>();
    this.bulkServed.set(peer, served);
    served.add(socket);
    socket.on('close', () => served.delete(socket));
    const r = this.record(peer);
    serveBulk(socket, head, {
      maxPending: MAX_BULK_PENDING,
      onRequest: (kind, body, reply) => {
        if (!r.msgBucket.take(1, this.clock())) {
          r.c.rateDropped++;
          return void socket.destroy(); // unanswered requests would pile up: the requester falls back
        }
        r.c.delivered++;
        this.emitSafe('request', this.peerRequest(peer, kind, body, reply));
      },
      onBad: (reason) => {
        r.c.badMessages++;
        r.c.lastBadReason = reason;
        this.log.warn(`bulk stream from ${peer.slice(0, 10)} (${addr}): ${reason}; closed`);
      },
    });
  }

  /** Ends the bulk streams to and from a peer (its link went down, or we stop). */
  private closeBulk(peer: string): void {
    for (const sock of this.bulkServed.get(peer) ?? []) sock.destroy();
    this.bulkServed.delete(peer);
    const link = this.bulkLinks.get(peer);
    this.bulkLinks.delete(peer);
    void link?.client.then((c) => c?.close());
  }

  /** A PeerRequest whose answer goes out through `reserve` (a frame of the link or of a bulk stream), once. */
  private peerRequest(from: string, kind: string, body: Buffer, reserve: (length: number) => ReservedAnswer): PeerRequest {
    let answered = false;
    const claim = () => {
      if (answered) throw new Error(`request ${kind} from ${from.slice(0, 10)} answered twice`);
      answered = true;
    };
    const replyInto = (length: number, fill: (body: Buffer) => void): boolean => {
      const a = reserve(length);
      fill(a.body);
      claim();
      return a.send();
    };
    return {
      from,
      kind,
      body,
      fromUnl: this.unl().has(from),
      replyInto,
      replyIntoLater: async (length, fill) => {
        const a = reserve(length);
        claim(); // no second answer may start while this one is being filled
        try {
          await fill(a.body);
        } catch (err) {
          answered = false;
          throw err;
        }
        return a.send();
      },
      reply: (parts) => {
        let length = 0;
        for (const p of parts) length += p.length;
        return replyInto(length, (out) => {
          let at = 0;
          for (const p of parts) {
            out.set(p, at);
            at += p.length;
          }
        });
      },
    };
  }

  /** Keys of admitted peers, sorted. */
  connectedPeers(): string[] {
    return [...this.sessions.keys()].sort();
  }

  stats(): PeerNetworkStats {
    const peers: Record<string, PeerCounters> = {};
    for (const [hex, r] of this.records) peers[hex] = { ...r.c };
    return { peers, handshakes: { pending: this.pending.size, ...this.hs }, bans: this.bans.list(this.clock()), dedupEntries: this.seen.size, bulk: { ...this.bulkCounts } };
  }

  private seal(kind: string, body: Uint8Array | object, context: MessageContext = 'proposal', relay: boolean): { id: string; frame: Buffer; sig: Buffer } {
    const env = createEnvelope({ contractId: this.contractId, keys: this.keys, context, kind, body, relay });
    const frame = encodeMsg(env);
    if (frame.length > this.limits.maxMessageBytes) {
      throw new Error(`peer message "${kind}" is ${frame.length} bytes, over maxMessageBytes (${this.limits.maxMessageBytes}); split the body or raise the limit on every node`);
    }
    return { id: envelopeId(this.contractId, env).toString('hex'), frame, sig: env.sig };
  }

  private sendFrame(s: PeerSession, frame: Buffer): boolean {
    const c = this.record(s.peerHex).c;
    // A peer that stops reading must not grow our memory: drop rather than queue without bound.
    if (s.bufferedBytes + frame.length > this.limits.maxOutboundBufferBytes || !s.send(frame)) {
      c.sendDropped++;
      return false;
    }
    c.framesOut++;
    c.bytesOut += frame.length;
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // Connections

  private accept(ws: WebSocket, remoteAddress: string): void {
    if (!this.started) return ws.terminate();
    const s = new PeerSession(ws, 'responder', remoteAddress, this.host);
    this.pending.add(s);
    this.live.add(s);
  }

  private dial(t: Target): void {
    t.timer = null;
    if (!this.started || this.targets.get(t.addr.key) !== t || t.session || t.self) return;
    if (t.pubkeyHex) {
      if (this.sessions.has(t.pubkeyHex)) return; // connected the other way; onClosed redials when it drops
      const banMs = this.bans.remainingMs(`key:${t.pubkeyHex}`, this.clock());
      if (banMs > 0) return this.schedule(t, banMs);
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(peerUrl(t.addr), { maxPayload: this.limits.maxMessageBytes, perMessageDeflate: false, handshakeTimeout: this.limits.handshakeTimeoutMs, localAddress: this.opts.localAddress });
    } catch (e) {
      this.log.warn(`cannot dial peer ${t.addr.key}: ${(e as Error).message}`);
      t.attempts++;
      return this.schedule(t);
    }
    const s = new PeerSession(ws, 'initiator', t.addr.key, this.host, t.addr.key);
    t.session = s;
    this.pending.add(s);
    this.live.add(s);
  }

  private schedule(t: Target, delayMs?: number): void {
    if (!this.started || t.timer || t.self || this.targets.get(t.addr.key) !== t) return;
    const ms = delayMs ?? backoffDelayMs(t.attempts, this.limits.reconnectBaseMs, this.limits.reconnectMaxMs);
    t.timer = setTimeout(() => this.dial(t), ms);
  }

  private onAuthenticated(s: PeerSession): void {
    this.pending.delete(s);
    const hex = s.peerHex;
    const t = s.targetKey ? this.targets.get(s.targetKey) : undefined;
    if (t && t.session === s) t.pubkeyHex = hex;
    const banMs = this.bans.remainingMs(`key:${hex}`, this.clock());
    if (banMs > 0) {
      this.hs.refusedBanned++;
      return s.close(PeerCloseCode.banned, `banned for another ${Math.ceil(banMs / 1000)} s`);
    }
    const isUnl = this.unl().has(hex);
    if (!isUnl && !this.opts.allowObservers) {
      this.hs.refusedNotInUnl++;
      return s.close(PeerCloseCode.notInUnl, 'key not in this node\'s UNL and observers are not allowed');
    }
    const existing = this.sessions.get(hex);
    if (existing) {
      const keep = this.preferred(existing, s);
      const drop = keep === existing ? s : existing;
      if (keep === s) this.install(s, isUnl);
      drop.close(PeerCloseCode.duplicate, 'duplicate connection: keeping the one initiated by the lower key');
      return;
    }
    if (this.sessions.size >= this.limits.maxPeers) {
      // UNL members outrank observers: the consensus needs them, observers only watch.
      const victim = isUnl ? [...this.sessions.values()].find((x) => !x.isUnl) : undefined;
      if (!victim) {
        this.hs.refusedFull++;
        return s.close(PeerCloseCode.full, `peer limit reached (${this.limits.maxPeers})`);
      }
      this.removeSession(victim);
      victim.close(PeerCloseCode.full, 'peer limit reached: observer replaced by a UNL peer');
    }
    this.install(s, isUnl);
    const c = this.record(hex).c;
    c.connects++;
    if (t) t.attempts = 0;
    this.log.info(`${s.label} up${isUnl ? '' : ' as observer'}`);
    this.emitSafe('peer', { pubkeyHex: hex, state: 'up', isUnl, inbound: s.role === 'responder' } satisfies PeerEvent);
  }

  private install(s: PeerSession, isUnl: boolean): void {
    s.isUnl = isUnl;
    s.admitted = true;
    this.sessions.set(s.peerHex, s);
    const c = this.record(s.peerHex).c;
    Object.assign(c, { connected: true, isUnl, inbound: s.role === 'responder', address: s.targetKey ?? s.remoteAddress });
  }

  /**
   * Of two authenticated connections to one peer, both ends keep the one the lower key initiated.
   * If both were initiated by the same side, the newer wins: the older is likely a dead socket from
   * before that peer restarted.
   */
  private preferred(a: PeerSession, b: PeerSession): PeerSession {
    const lower = this.ownHex < a.peerHex ? this.ownHex : a.peerHex;
    const byLower = (x: PeerSession) => (x.role === 'initiator' ? this.ownHex : x.peerHex) === lower;
    if (byLower(a) !== byLower(b)) return byLower(a) ? a : b;
    return b;
  }

  private removeSession(s: PeerSession): void {
    if (!s.peerHex || this.sessions.get(s.peerHex) !== s) return;
    this.sessions.delete(s.peerHex);
    for (const w of [...this.waiting.values()]) if (w.peer === s.peerHex) w.done(null);
    this.closeBulk(s.peerHex);
    const c = this.record(s.peerHex).c;
    c.connected = false;
    c.disconnects++;
    this.log.info(`${s.label} down (${s.closeCode} ${s.closeText})`);
    this.emitSafe('peer', { pubkeyHex: s.peerHex, state: 'down', isUnl: s.isUnl, inbound: s.role === 'responder' } satisfies PeerEvent);
    // Dial targets that were idle because this peer was connected the other way.
    for (const t of this.targets.values()) if (t.pubkeyHex === s.peerHex && !t.session) this.schedule(t);
  }

  private onClosed(s: PeerSession): void {
    this.pending.delete(s);
    this.live.delete(s);
    this.removeSession(s);
    if (s.closeCode === PeerCloseCode.selfConnection) this.hs.selfConnections++;
    const t = s.targetKey ? this.targets.get(s.targetKey) : undefined;
    if (!t || t.session !== s) return;
    t.session = null;
    if (s.closeCode === PeerCloseCode.selfConnection) {
      t.self = true;
      this.log.warn(`peer address ${t.addr.key} is this node itself; no longer dialing it (remove it from the peer list)`);
      return;
    }
    if (s.closeCode === PeerCloseCode.duplicate && this.sessions.has(s.peerHex)) return; // redialed if that one drops
    if (s.admitted && !REFUSALS.has(s.closeCode)) t.attempts = 0;
    else {
      t.attempts++;
      this.hs.failedDials++;
    }
    this.schedule(t);
  }

  /** Recheck UNL membership (it changes with the contract) and drop peers no longer allowed. */
  private maintain(): void {
    const unl = this.unl();
    for (const s of [...this.sessions.values()]) {
      const isUnl = unl.has(s.peerHex);
      if (isUnl === s.isUnl) continue;
      s.isUnl = isUnl;
      this.record(s.peerHex).c.isUnl = isUnl;
      if (!isUnl && !this.opts.allowObservers) {
        this.removeSession(s);
        s.close(PeerCloseCode.notInUnl, 'key left this node\'s UNL and observers are not allowed');
      }
    }
  }

  private unl(): Set<string> {
    const arr = this.opts.unl();
    if (arr !== this.unlArr) {
      this.unlArr = arr;
      this.unlSet = new Set(arr.map((k) => k.toLowerCase()));
    }
    return this.unlSet;
  }

  // ------------------------------------------------------------------------------------------
  // Inbound frames from admitted peers

  private onFrame(s: PeerSession, data: Buffer, isBinary: boolean): void {
    if (!s.admitted) return; // authenticated but refused: closing
    const r = this.record(s.peerHex);
    const c = r.c;
    const now = this.clock();
    c.framesIn++;
    c.bytesIn += data.length;
    // Cheapest checks first: a flood costs us a counter, not a decode or a signature check. An
    // answer to a request we are waiting on is exempt from the byte budget: we chose its size.
    const answer = isBinary && looksLikeRes(data);
    if (!r.msgBucket.take(1, now) || (!answer && !r.byteBucket.take(data.length, now))) {
      c.rateDropped++;
      return;
    }
    if (!isBinary) return this.badMessage(s, r, 'text frame');
    let f: Frame;
    try {
      f = decodeFrame(data);
    } catch (e) {
      if (answer) r.byteBucket.take(data.length, now);
      return this.badMessage(s, r, (e as Error).message);
    }
    if (f.type === 'res') {
      const w = this.waiting.get(f.id);
      if (w && w.peer === s.peerHex) {
        c.answers++;
        return w.done(f.body);
      }
      // Late (we timed out) or never asked: harmless once, but it pays the byte budget after all.
      c.lateAnswers++;
      if (!r.byteBucket.take(data.length, now)) c.rateDropped++;
      return;
    }
    if (f.type === 'req') {
      const from = s.peerHex;
      const reserve = (length: number): ReservedAnswer => {
        const { frame, body } = allocRes(f.id, length);
        if (frame.length > this.limits.maxMessageBytes) throw new Error(`answer to ${f.kind} is ${frame.length} bytes, over maxMessageBytes (${this.limits.maxMessageBytes})`);
        return {
          body,
          send: () => {
            const now = this.sessions.get(from);
            return now !== undefined && this.sendFrame(now, frame);
          },
        };
      };
      const req = this.peerRequest(from, f.kind, f.body, reserve);
      // The bulk ticket is ours to answer: port 0 (none) when we do not listen.
      if (f.kind === BULK_TICKET_REQUEST) {
        return void req.reply([this.httpServer ? encodeTicketAnswer(this.tickets.issue(from, now), this.address().port) : NO_TICKET_ANSWER]);
      }
      c.delivered++;
      return this.emitSafe('request', req);
    }
    if (f.type !== 'msg') return this.badMessage(s, r, `${f.type} frame after the handshake`);
    const author = f.author.toString('hex');
    const { message: signedMessage, payload: signed } = signedBytes(this.contractId, f);
    const id = messageId(f.author, signedMessage).toString('hex');
    if (author === this.ownHex || this.seen.has(id)) {
      c.duplicates++;
      return;
    }
    // Relays verify too, so whoever hands us a bad signature or body is at fault, not the author.
    if (!verify(signedMessage, f.sig, f.author)) return this.badMessage(s, r, `signature of ${f.kind} by ${author.slice(0, 10)}.. does not verify for this contract`);
    let body: Uint8Array | object;
    try {
      body = decodeBody(f);
    } catch (e) {
      return this.badMessage(s, r, (e as Error).message);
    }
    this.seen.add(id);
    c.delivered++;
    const unl = this.unl();
    const isUnl = unl.has(author);
    // Observers' own messages are delivered (flagged) but never flooded on their behalf.
    if ((f.flags & FLAG_RELAY) !== 0 && isUnl) {
      let n = 0;
      for (const [hex, other] of this.sessions) if (other !== s && hex !== author && this.sendFrame(other, data)) n++;
      if (n > 0) c.relayed++;
    }
    const m: PeerMessage = { id, from: s.peerHex, author, kind: f.kind, context: f.context, flags: f.flags, body, relayed: author !== s.peerHex, isUnl, fromUnl: unl.has(s.peerHex), signed, sig: f.sig };
    this.emitSafe('message', m);
  }

  private badMessage(s: PeerSession, r: PeerRecord, reason: string): void {
    r.c.badMessages++;
    r.c.lastBadReason = reason;
    this.log.debug(`${s.label}: bad message: ${reason}`);
    if (r.badWindow.add(1, this.clock()) >= this.limits.maxBadMsgsPerMin) this.banPeer(s, PeerCloseCode.tooManyBadMessages, `${this.limits.maxBadMsgsPerMin} bad messages within 60 s (last: ${reason})`);
  }

  private banPeer(s: PeerSession, code: number, reason: string): void {
    const ms = this.bans.ban(`key:${s.peerHex}`, this.clock());
    this.record(s.peerHex).c.bans++;
    this.log.warn(`${s.label}: ${reason}; banned for ${ms} ms`);
    s.close(code, `${reason}; banned for ${Math.ceil(ms / 1000)} s`);
  }

  private onOffense(s: PeerSession, reason: string, fatal: boolean): void {
    if (s.admitted) {
      const r = this.record(s.peerHex);
      r.c.badMessages++;
      r.c.lastBadReason = reason;
      if (fatal) this.banPeer(s, PeerCloseCode.tooManyBadMessages, reason);
      return;
    }
    // Before a key is proven the only identity is the address; we dialed outbound ones ourselves,
    // so those just back off (onClosed) instead of being banned.
    this.preAuthOffense(s.remoteAddress, reason, s.role === 'responder');
    s.close(PeerCloseCode.handshakeFailed, `handshake failed: ${reason}`);
  }

  private preAuthOffense(address: string, reason: string, ban: boolean): void {
    this.hs.preAuthOffenses++;
    if (!ban) return this.log.debug(`peer ${address}: ${reason}`);
    const ms = this.bans.ban(`addr:${address}`, this.clock());
    this.log.warn(`connection from ${address}: ${reason}; address banned for ${ms} ms`);
  }

  private record(hex: string): PeerRecord {
    let r = this.records.get(hex);
    if (r) return r;
    const l = this.limits;
    const now = this.clock();
    r = {
      c: { connected: false, isUnl: false, inbound: false, address: '', connects: 0, disconnects: 0, framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, delivered: 0, duplicates: 0, relayed: 0, badMessages: 0, rateDropped: 0, answers: 0, lateAnswers: 0, sendDropped: 0, bans: 0, lastBadReason: '' },
      msgBucket: new TokenBucket(l.maxMsgsPerSecPerPeer, l.maxMsgsPerSecPerPeer, now),
      byteBucket: new TokenBucket(l.maxBytesPerSecPerPeer, Math.max(l.maxBytesPerSecPerPeer, l.maxMessageBytes), now),
      badWindow: new WindowCounter(60_000),
    };
    this.records.set(hex, r);
    if (this.records.size > l.maxStatsEntries) {
      for (const [k, v] of this.records) {
        if (!v.c.connected && k !== hex) {
          this.records.delete(k);
          break;
        }
      }
    }
    return r;
  }

  /** A listener's exception is our caller's bug: log it loudly but keep the socket handler alive. */
  private emitSafe(event: 'message' | 'peer' | 'request', payload: PeerMessage | PeerEvent | PeerRequest): void {
    try {
      this.emit(event, payload);
    } catch (e) {
      this.log.error(`peer network '${event}' listener threw: ${(e as Error).stack ?? String(e)}`);
    }
  }
}
