// Peer network tests: real WebSocket servers on 127.0.0.1 (port 0), real nodes and a raw peer that
// speaks the wire protocol by hand, so forged, replayed, garbage and flooding traffic can be sent.
// Misbehaving raw connections use their own loopback source addresses (127.0.0.x) so address bans
// cannot touch the honest nodes, which all connect from 127.0.0.1.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test, TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { verifyIn } from '../src/crypto/domain';
import { generateKeyPair, KeyPair } from '../src/crypto/keys';
import { createEnvelope } from '../src/p2p/envelope';
import { helloPayload, newChallenge, signHello, verifyHello } from '../src/p2p/handshake';
import { SeenIds } from '../src/p2p/dedup';
import { backoffDelayMs, parsePeerAddress, peerUrl } from '../src/p2p/dialTarget';
import { PeerCloseCode, PeerLimits, resolvePeerLimits } from '../src/p2p/limits';
import { BULK_PROTOCOL, BULK_TICKET_HEADER, FrameReader, TicketBook } from '../src/p2p/bulk';
import { PeerEvent, PeerMessage, PeerNetwork, PeerRequest } from '../src/p2p/network';
import { allocRes, decodeFrame, encodeAuth, encodeHello, encodeMsg, encodeValue, Frame, HelloFrame, MessageContext, PROTOCOL_VERSION } from '../src/p2p/wire';

const CONTRACT = '6a1e07a2-5b43-4c1b-9f0e-p2p-test';
const hex = (k: KeyPair) => k.publicKey.toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

// Fast redials and short handshake timeouts keep the file well under 30 s.
const TEST_LIMITS: Partial<PeerLimits> = { reconnectBaseMs: 50, reconnectMaxMs: 400, handshakeTimeoutMs: 2000 };

interface TestNode {
  net: PeerNetwork;
  keys: KeyPair;
  hex: string;
  port: number;
  addr: string;
  msgs: PeerMessage[];
  events: PeerEvent[];
}

async function startNode(
  t: TestContext,
  keys: KeyPair,
  o: { unl: string[]; peers?: string[]; allowObservers?: boolean; limits?: Partial<PeerLimits>; clock?: () => number; port?: number },
): Promise<TestNode> {
  const pn = new PeerNetwork({
    contractId: CONTRACT,
    keys,
    listen: { host: '127.0.0.1', port: o.port ?? 0 },
    peers: o.peers ?? [],
    unl: () => o.unl,
    allowObservers: o.allowObservers ?? false,
    limits: { ...TEST_LIMITS, ...o.limits },
    clock: o.clock,
  });
  const n: TestNode = { net: pn, keys, hex: hex(keys), port: 0, addr: '', msgs: [], events: [] };
  pn.on('message', (m) => n.msgs.push(m));
  pn.on('peer', (e) => n.events.push(e));
  t.after(() => pn.stop());
  await pn.start();
  n.port = pn.address().port;
  n.addr = `127.0.0.1:${n.port}`;
  return n;
}

/** A hand-driven peer connection speaking the wire protocol, for sending what honest nodes never would. */
class RawPeer {
  private readonly frames: Buffer[] = [];
  private wake: (() => void) | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      this.frames.push(d);
      this.wake?.();
    });
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
  }

  static open(t: TestContext, port: number, localAddress: string): Promise<RawPeer> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress, perMessageDeflate: false });
    t.after(() => ws.terminate());
    const p = new RawPeer(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(p));
      ws.once('error', reject);
    });
  }

  async next(timeoutMs = 2000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (Date.now() > end) throw new Error('raw peer: no frame received');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 20);
      });
    }
    return decodeFrame(this.frames.shift() as Buffer);
  }

  send(b: Buffer): void {
    this.ws.send(b, { binary: true });
  }

  /** Full initiator handshake as `keys`; returns what was exchanged so tests can replay it. */
  async handshake(keys: KeyPair, challenge = newChallenge(), replayAuth?: Buffer): Promise<{ challenge: Buffer; server: HelloFrame; authSent: Buffer; serverAuth: Frame | null }> {
    this.send(encodeHello({ version: PROTOCOL_VERSION, contractId: CONTRACT, pubkey: keys.publicKey, challenge }));
    const server = (await this.next()) as HelloFrame;
    assert.equal(server.type, 'hello');
    const serverAuth = await this.next();
    assert.equal(serverAuth.type, 'auth');
    const authSent = replayAuth ?? encodeAuth(signHello(CONTRACT, { signer: keys.publicKey, other: server.pubkey, initiatorChallenge: challenge, responderChallenge: server.challenge, role: 'initiator' }, keys.secretKey));
    this.send(authSent);
    return { challenge, server, authSent, serverAuth };
  }
}

function envelope(keys: KeyPair, kind: string, body: Uint8Array | object, o: { relay?: boolean; context?: MessageContext; contractId?: string } = {}) {
  return createEnvelope({ contractId: o.contractId ?? CONTRACT, keys, context: o.context ?? 'proposal', kind, body, relay: o.relay ?? true });
}

/** Connects `rawKeys` to `node` from `localAddress` and waits until the node admitted it. */
async function rawAdmitted(t: TestContext, node: TestNode, rawKeys: KeyPair, localAddress: string): Promise<RawPeer> {
  const raw = await RawPeer.open(t, node.port, localAddress);
  await raw.handshake(rawKeys);
  await waitFor(() => node.net.connectedPeers().includes(hex(rawKeys)), 'raw peer admitted');
  return raw;
}

function expectRefused(port: number, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress });
    ws.on('error', (e) => resolve(e.message));
    ws.on('open', () => {
      ws.terminate();
      resolve('opened');
    });
  });
}

// ---------------------------------------------------------------------------------------------

test('line A–B–C: mutual auth, a relayed broadcast reaches C exactly once with a valid signature', async (t) => {
  const [ka, kb, kc] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kc)];
  const B = await startNode(t, kb, { unl });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  const C = await startNode(t, kc, { unl, peers: [B.addr] });
  await waitFor(() => B.net.connectedPeers().length === 2 && A.net.connectedPeers().length === 1 && C.net.connectedPeers().length === 1, 'A–B–C up');
  assert.deepEqual(B.net.connectedPeers(), [A.hex, C.hex].sort());
  assert.deepEqual(A.net.connectedPeers(), [B.hex]);
  assert.deepEqual(C.net.connectedPeers(), [B.hex]);
  assert.deepEqual(A.events, [{ pubkeyHex: B.hex, state: 'up', isUnl: true, inbound: false }]);
  assert.deepEqual(B.events.map((e) => [e.pubkeyHex, e.state, e.isUnl, e.inbound]).sort(), [[A.hex, 'up', true, true], [C.hex, 'up', true, true]].sort());

  const body = { seq: 7, stage: 1, hashes: [Buffer.from([1, 2, 3])], big: 2n ** 60n }; // bin values arrive as Buffers
  const sent = A.net.broadcast('proposal', body, { relay: true });
  assert.deepEqual(sent.sentTo, [B.hex]);
  await waitFor(() => C.msgs.length === 1, 'relayed message at C');
  await sleep(150); // room for any duplicate to show up
  assert.equal(C.msgs.length, 1);
  assert.equal(B.msgs.length, 1);
  assert.equal(A.msgs.length, 0, 'own message relayed back is not delivered');
  const m = C.msgs[0];
  assert.equal(m.author, A.hex);
  assert.equal(m.from, B.hex);
  assert.equal(m.relayed, true);
  assert.equal(m.isUnl, true);
  assert.equal(m.kind, 'proposal');
  assert.equal(m.context, 'proposal');
  assert.equal(m.id, sent.id);
  assert.deepEqual(m.body, body);
  assert.equal(verifyIn('proposal', CONTRACT, m.signed, m.sig, ka.publicKey), true);
  assert.equal(verifyIn('proposal', 'other-contract', m.signed, m.sig, ka.publicKey), false);
  assert.equal(B.msgs[0].relayed, false);
  assert.equal(B.msgs[0].from, A.hex);
  assert.equal(B.net.stats().peers[A.hex].relayed, 1);

  // Without relay it stays one hop; raw bytes stay bytes; the context is the caller's.
  const bytes = Buffer.from('npl payload');
  A.net.broadcast('npl-data', bytes, { context: 'npl' });
  await waitFor(() => B.msgs.length === 2, 'direct message at B');
  assert.deepEqual(B.msgs[1].body, bytes);
  assert.equal(B.msgs[1].context, 'npl');
  assert.equal(verifyIn('npl', CONTRACT, B.msgs[1].signed, B.msgs[1].sig, ka.publicKey), true);

  assert.equal(A.net.sendTo(B.hex, 'direct', { x: 1 }), true);
  assert.equal(A.net.sendTo(C.hex, 'direct', { x: 1 }), false, 'C is not a direct peer of A');
  await waitFor(() => B.msgs.length === 3, 'sendTo at B');
  assert.deepEqual(B.msgs[2].body, { x: 1 });

  // And the other direction: C → B → A.
  C.net.broadcast('proposal', { seq: 8 }, { relay: true });
  await waitFor(() => A.msgs.length === 1, 'C message at A');
  await sleep(100);
  assert.equal(C.msgs.length, 1, 'C got nothing further: npl and direct messages were not relayed');
  assert.equal(A.msgs.length, 1);
  assert.equal(A.msgs[0].author, C.hex);
  assert.throws(() => A.net.broadcast('proposal', { x: 1 }, { context: 'peer-hello' as MessageContext }), /context must be one of/);
  assert.throws(() => A.net.broadcast('bad kind!', { x: 1 }), /kind/);
});

test('dedup: the same envelope sent twice is delivered (and relayed) once', async (t) => {
  const [ka, kb, kx] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kx)];
  const B = await startNode(t, kb, { unl });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');
  const X = await rawAdmitted(t, B, kx, '127.0.0.1');
  const frame = encodeMsg(envelope(kx, 'proposal', { seq: 1 }));
  X.send(frame);
  X.send(frame);
  await waitFor(() => B.net.stats().peers[hex(kx)].framesIn === 2, 'both copies at B');
  await waitFor(() => A.msgs.length === 1, 'relayed copy at A');
  await sleep(100);
  assert.equal(B.msgs.length, 1);
  assert.equal(A.msgs.length, 1);
  const s = B.net.stats().peers[hex(kx)];
  assert.equal(s.delivered, 1);
  assert.equal(s.duplicates, 1);
  assert.equal(s.badMessages, 0);
});

test('forged signature, wrong contract id, tampered body and wrong author are dropped and counted', async (t) => {
  const [ka, kb, kx] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kx)];
  const B = await startNode(t, kb, { unl });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');
  const X = await rawAdmitted(t, B, kx, '127.0.0.1');

  const forged = envelope(kx, 'proposal', { seq: 1 });
  forged.sig = Buffer.from(forged.sig);
  forged.sig[5] ^= 1;
  const otherContract = envelope(kx, 'proposal', { seq: 2 }, { contractId: 'another-contract' });
  const tampered = envelope(kx, 'proposal', Buffer.from('pay 10'));
  tampered.body = Buffer.from('pay 99');
  const impersonated = { ...envelope(kx, 'proposal', { seq: 3 }), author: ka.publicKey }; // X's signature, A's name
  const contextSwapped = { ...envelope(kx, 'proposal', { seq: 4 }), context: 'npl' as MessageContext };
  for (const e of [forged, otherContract, tampered, impersonated, contextSwapped]) X.send(encodeMsg(e));
  X.send(encodeMsg(envelope(kx, 'proposal', { seq: 5 })));
  await waitFor(() => B.msgs.length === 1, 'the one valid message');
  await waitFor(() => A.msgs.length === 1, 'valid message relayed to A');
  await sleep(100);
  assert.deepEqual(B.msgs.map((m) => m.body), [{ seq: 5 }]);
  assert.deepEqual(A.msgs.map((m) => m.body), [{ seq: 5 }], 'nothing invalid was relayed');
  const s = B.net.stats().peers[hex(kx)];
  assert.equal(s.badMessages, 5);
  assert.equal(s.delivered, 1);
  assert.equal(s.bans, 0);
  assert.ok(B.net.connectedPeers().includes(hex(kx)), 'below maxBadMsgsPerMin the peer stays connected');
});

test('bad messages past the limit, or an oversized frame, disconnect and ban that peer key; others unaffected', async (t) => {
  const [ka, kb, kx, ky] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kx), hex(ky)];
  const B = await startNode(t, kb, { unl, limits: { maxBadMsgsPerMin: 3, banBaseMs: 60_000, maxMessageBytes: 64 * 1024 } });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');

  const X = await rawAdmitted(t, B, kx, '127.0.0.1');
  X.send(Buffer.from('not msgpack at all \xff\xfe'));
  X.send(Buffer.from([0xc1])); // a byte MessagePack never uses
  X.send(Buffer.from([0x93, 0x07, 0x01, 0x02])); // well-formed array, unknown frame type
  const closed = await X.closed;
  assert.equal(closed.code, PeerCloseCode.tooManyBadMessages);
  assert.match(closed.reason, /banned for 60 s/);
  let s = B.net.stats();
  assert.equal(s.peers[hex(kx)].badMessages, 3);
  assert.equal(s.peers[hex(kx)].bans, 1);
  assert.deepEqual(s.bans.map((b) => b.target), [`key:${hex(kx)}`]);
  // While banned the key is refused even with a valid handshake.
  const again = await RawPeer.open(t, B.port, '127.0.0.1');
  await again.handshake(kx);
  assert.equal((await again.closed).code, PeerCloseCode.banned);

  const Y = await rawAdmitted(t, B, ky, '127.0.0.1');
  Y.send(Buffer.alloc(64 * 1024 + 1, 0x90)); // one byte over maxMessageBytes
  assert.equal((await Y.closed).code, PeerCloseCode.messageTooBig);
  await waitFor(() => B.net.stats().peers[hex(ky)].bans === 1, 'oversized sender banned');

  s = B.net.stats();
  assert.equal(s.handshakes.refusedBanned, 1);
  assert.deepEqual(B.net.connectedPeers(), [A.hex], 'A is untouched');
  A.net.broadcast('proposal', { after: 'bans' });
  await waitFor(() => B.msgs.length === 1, 'A still heard');
  assert.equal(B.msgs[0].author, A.hex);
});

test('pre-auth garbage, malformed HTTP and oversized frames close and ban that address only', async (t) => {
  const [ka, kb] = [generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb)];
  const B = await startNode(t, kb, { unl, limits: { maxMessageBytes: 64 * 1024 } });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');

  const g = await RawPeer.open(t, B.port, '127.0.0.2');
  g.send(Buffer.from('garbage before any hello'));
  assert.equal((await g.closed).code, PeerCloseCode.handshakeFailed);
  assert.match(await expectRefused(B.port, '127.0.0.2'), /403/);

  const o = await RawPeer.open(t, B.port, '127.0.0.3');
  o.send(Buffer.alloc(64 * 1024 + 1, 0x42));
  assert.equal((await o.closed).code, PeerCloseCode.messageTooBig);
  assert.match(await expectRefused(B.port, '127.0.0.3'), /403/);

  const sock = net.connect({ host: '127.0.0.1', port: B.port, localAddress: '127.0.0.4' });
  t.after(() => sock.destroy());
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write('\x16\x03\x01 definitely not HTTP\r\n\r\n');
  await new Promise<void>((r) => sock.once('close', () => r()));
  assert.match(await expectRefused(B.port, '127.0.0.4'), /403/);

  const s = B.net.stats();
  assert.equal(s.handshakes.preAuthOffenses, 3);
  assert.deepEqual(s.bans.map((b) => b.target).sort(), ['addr:127.0.0.2', 'addr:127.0.0.3', 'addr:127.0.0.4']);
  assert.equal(s.handshakes.refusedBanned, 3);
  assert.deepEqual(B.net.connectedPeers(), [A.hex], 'A is untouched');
  A.net.broadcast('proposal', { still: 'fine' });
  await waitFor(() => B.msgs.length === 1, 'A still heard');
});

test('a non-UNL key is refused unless observers are allowed; observers receive but are not relayed', async (t) => {
  const [kb, kf, kd, kb2] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
  // Strict node: the UNL is {B, F}; D is outside it.
  const B = await startNode(t, kb, { unl: [hex(kb), hex(kf)] });
  const D = await startNode(t, kd, { unl: [hex(kb), hex(kf), hex(kb2)], peers: [B.addr] });
  await waitFor(() => B.net.stats().handshakes.refusedNotInUnl >= 1, 'D refused by B');
  await waitFor(() => D.net.connectedPeers().length === 0, 'D sees the refusal');
  assert.deepEqual(B.net.connectedPeers(), []);
  assert.deepEqual(B.events, [], 'B never admitted D');
  D.net.removePeers('*');

  // Open node: B2 admits D as an observer; F is a UNL member connected to B2.
  const unl2 = [hex(kb2), hex(kf)];
  const B2 = await startNode(t, kb2, { unl: unl2, allowObservers: true });
  const F = await startNode(t, kf, { unl: unl2, peers: [B2.addr] });
  D.net.addPeers([B2.addr]);
  await waitFor(() => B2.net.connectedPeers().length === 2 && F.net.connectedPeers().length === 1, 'B2 has F and D');
  const dUp = B2.events.find((e) => e.pubkeyHex === D.hex);
  assert.deepEqual(dUp, { pubkeyHex: D.hex, state: 'up', isUnl: false, inbound: true });

  F.net.broadcast('proposal', { from: 'F' }, { relay: true });
  await waitFor(() => D.msgs.length === 1, 'observer receives UNL traffic');
  assert.equal(D.msgs[0].author, F.hex);
  assert.equal(D.msgs[0].isUnl, true);
  assert.equal(D.msgs[0].relayed, true);

  D.net.broadcast('proposal', { from: 'D' }, { relay: true });
  await waitFor(() => B2.msgs.some((m) => m.author === D.hex), 'observer message at B2');
  await sleep(150);
  const fromD = B2.msgs.filter((m) => m.author === D.hex);
  assert.equal(fromD.length, 1);
  assert.equal(fromD[0].isUnl, false, 'flagged: not a vote');
  assert.equal(F.msgs.length, 0, 'observer message not relayed to F');
  assert.equal(B2.net.stats().peers[D.hex].relayed, 0);
});

test('a handshake signature replayed on another connection (different challenge) fails', async (t) => {
  const [kb, kx] = [generateKeyPair(), generateKeyPair()];
  const B = await startNode(t, kb, { unl: [hex(kb), hex(kx)] });
  const c1 = await RawPeer.open(t, B.port, '127.0.0.5');
  const first = await c1.handshake(kx);
  await waitFor(() => B.net.connectedPeers().includes(hex(kx)), 'X admitted on connection 1');

  // Connection 2 claims X again with the same initiator challenge and replays X's captured signature.
  const c2 = await RawPeer.open(t, B.port, '127.0.0.6');
  const second = await c2.handshake(kx, first.challenge, first.authSent);
  assert.notDeepEqual(second.server.challenge, first.server.challenge, 'B picks a fresh challenge per connection');
  const closed = await c2.closed;
  assert.equal(closed.code, PeerCloseCode.handshakeFailed);
  assert.match(closed.reason, /signature does not verify/);
  assert.equal(B.net.stats().handshakes.preAuthOffenses, 1);
  assert.deepEqual(B.events.map((e) => e.state), ['up'], 'connection 1 unaffected, no second session');
  assert.deepEqual(B.net.connectedPeers(), [hex(kx)]);

  // B's own signature on connection 2 covers B's fresh challenge: it verifies only for that exact
  // statement, never for bytes the other side chose alone, and never in another context.
  const bSig = (second.serverAuth as { sig: Buffer }).sig;
  const stmt = { signer: kb.publicKey, other: kx.publicKey, initiatorChallenge: first.challenge, responderChallenge: second.server.challenge, role: 'responder' as const };
  assert.equal(verifyHello(CONTRACT, stmt, bSig), true);
  assert.equal(verifyHello(CONTRACT, { ...stmt, responderChallenge: first.server.challenge }, bSig), false);
  assert.equal(verifyIn('proposal', CONTRACT, helloPayload(stmt), bSig, kb.publicKey), false);
});

test('reconnects after the peer restarts on the same port', async (t) => {
  const [ka, kb] = [generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb)];
  const B = await startNode(t, kb, { unl });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');
  await B.net.stop();
  await waitFor(() => A.events.length === 2, 'A sees B down');
  await sleep(300); // A's redials fail meanwhile (connection refused)
  assert.ok(A.net.stats().handshakes.failedDials >= 1);
  const B2 = await startNode(t, kb, { unl, port: B.port });
  await waitFor(() => A.events.length === 3 && B2.net.connectedPeers().length === 1, 'A reconnected to restarted B');
  assert.deepEqual(A.events.map((e) => e.state), ['up', 'down', 'up']);
  A.net.broadcast('proposal', { after: 'restart' });
  await waitFor(() => B2.msgs.length === 1, 'message after restart');
});

test('a connection to our own key is refused and not redialed', async (t) => {
  const ks = generateKeyPair();
  const S = await startNode(t, ks, { unl: [hex(ks)] });
  S.net.addPeers([S.addr]);
  await waitFor(() => S.net.stats().handshakes.selfConnections === 2, 'both ends of the self-connection refused');
  await sleep(400); // several reconnect periods
  assert.equal(S.net.stats().handshakes.selfConnections, 2, 'not redialed');
  assert.deepEqual(S.net.connectedPeers(), []);
  assert.deepEqual(S.events, []);
});

test('duplicate connections between two nodes resolve to the one the lower key initiated', async (t) => {
  const [kp, kq] = [generateKeyPair(), generateKeyPair()];
  const unl = [hex(kp), hex(kq)];
  const P = await startNode(t, kp, { unl });
  const Q = await startNode(t, kq, { unl, peers: [P.addr] });
  P.net.addPeers([Q.addr]); // both dial each other
  await waitFor(() => P.net.connectedPeers().length === 1 && Q.net.connectedPeers().length === 1 && P.net.stats().handshakes.pending === 0 && Q.net.stats().handshakes.pending === 0, 'P–Q up');
  await sleep(300);
  const lowerIsP = P.hex < Q.hex;
  // On the lower key's side the kept session is outbound; on the higher key's side it is inbound.
  assert.equal(P.net.stats().peers[Q.hex].inbound, !lowerIsP);
  assert.equal(Q.net.stats().peers[P.hex].inbound, lowerIsP);
  assert.equal(P.net.stats().peers[Q.hex].connected, true);
  assert.equal(P.events.at(-1)?.state, 'up');
  assert.equal(Q.events.at(-1)?.state, 'up');
  P.net.broadcast('proposal', { over: 'the kept link' });
  await waitFor(() => Q.msgs.length === 1, 'message over the surviving connection');
});

/** An answer frame as a peer would send it. */
function encodeRes(id: number, parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const r = allocRes(id, body.length);
  body.copy(r.body);
  return r.frame;
}

test('rate limit drops a flood from one peer while another peer is still heard', async (t) => {
  const [ka, kb, kx] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kx)];
  const frozen = 1_000_000; // no refill: the bucket's burst is exactly what gets through
  const B = await startNode(t, kb, { unl, limits: { maxMsgsPerSecPerPeer: 10 }, clock: () => frozen });
  const A = await startNode(t, ka, { unl, peers: [B.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1, 'A–B up');
  const X = await rawAdmitted(t, B, kx, '127.0.0.1');
  for (let i = 0; i < 100; i++) X.send(encodeMsg(envelope(kx, 'proposal', { i })));
  for (let i = 0; i < 5; i++) A.net.broadcast('proposal', { a: i });
  await waitFor(() => B.net.stats().peers[hex(kx)].framesIn === 100 && B.net.stats().peers[A.hex].delivered === 5, 'flood and A processed');
  const s = B.net.stats().peers;
  assert.equal(s[hex(kx)].delivered, 10);
  assert.equal(s[hex(kx)].rateDropped, 90);
  assert.equal(s[hex(kx)].badMessages, 0, 'rate drops are not bad messages');
  assert.equal(s[A.hex].rateDropped, 0);
  assert.deepEqual(B.msgs.filter((m) => m.author === A.hex).map((m) => m.body), [0, 1, 2, 3, 4].map((a) => ({ a })));
  assert.deepEqual(B.msgs.filter((m) => m.author === hex(kx)).map((m) => m.body), [...Array(10).keys()].map((i) => ({ i })));
});

test('maxPeers: a UNL peer replaces an observer, a further observer is refused', async (t) => {
  const [kb, kf, kd, ke] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(kb), hex(kf)];
  const B = await startNode(t, kb, { unl, allowObservers: true, limits: { maxPeers: 1 } });
  const D = await rawAdmitted(t, B, kd, '127.0.0.1');
  const F = await rawAdmitted(t, B, kf, '127.0.0.1');
  assert.equal((await D.closed).code, PeerCloseCode.full);
  assert.deepEqual(B.net.connectedPeers(), [hex(kf)]);
  const E = await RawPeer.open(t, B.port, '127.0.0.1');
  await E.handshake(ke);
  assert.equal((await E.closed).code, PeerCloseCode.full);
  assert.equal(B.net.stats().handshakes.refusedFull, 1);
  assert.deepEqual(B.events.map((e) => [e.pubkeyHex, e.state]), [[hex(kd), 'up'], [hex(kd), 'down'], [hex(kf), 'up']]);
  assert.equal(F.ws.readyState, WebSocket.OPEN);
});

test('building blocks: backoff bounds, peer addresses, dedup window, limits validation', () => {
  for (let attempt = 0; attempt < 40; attempt++) {
    const d = Math.min(10_000, 200 * 2 ** attempt);
    assert.equal(backoffDelayMs(attempt, 200, 10_000, () => 0), d / 2);
    assert.equal(backoffDelayMs(attempt, 200, 10_000, () => 1), d);
  }
  assert.deepEqual(parsePeerAddress('10.0.0.5:22861'), { host: '10.0.0.5', port: 22861, key: '10.0.0.5:22861' });
  assert.deepEqual(parsePeerAddress('[::1]:80'), { host: '::1', port: 80, key: '[::1]:80' });
  assert.equal(peerUrl(parsePeerAddress('[::1]:80')), 'ws://[::1]:80/');
  for (const bad of ['host', 'host:0', 'host:70000', ':80', '::1:80', 'a b:1']) assert.throws(() => parsePeerAddress(bad), /must be "host:port"/, bad);
  const seen = new SeenIds(3);
  for (const id of ['a', 'b', 'c']) seen.add(id);
  assert.equal(seen.has('a'), true); // refreshes a: b is now the oldest
  seen.add('d');
  assert.deepEqual(['a', 'b', 'c', 'd'].map((x) => seen.has(x)), [true, false, true, true]);
  assert.equal(seen.size, 3);
  assert.throws(() => resolvePeerLimits({ maxPeers: 0 }), /maxPeers must be > 0/);
  assert.throws(() => resolvePeerLimits({ maxMsgsPerSecPerPeer: -1 }), /non-negative integer/);
  assert.throws(() => resolvePeerLimits({ maxPeer: 3 } as Partial<PeerLimits>), /unknown peer limit "maxPeer"/);
  assert.equal(resolvePeerLimits().maxMessageBytes, 4 * 1024 * 1024);
});

test('requests: answered by that peer only, large answers exempt from the byte budget, unsolicited ones charged, timeouts and lost links resolve null', async (t) => {
  const [ka, kb, kx] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kx)];
  const frozen = 1_000_000; // no refill: A's byte budget from each peer is its burst alone (1 MiB)
  const limits = { maxBytesPerSecPerPeer: 64 * 1024, maxMessageBytes: 1024 * 1024 };
  const A = await startNode(t, ka, { unl, limits, clock: () => frozen });
  const B = await startNode(t, kb, { unl, peers: [A.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1 && B.net.connectedPeers().length === 1, 'A–B up');
  const big = Buffer.alloc(900 * 1024, 7); // 14x the byte budget A grants B
  const seen: Array<{ from: string; kind: string; body: string }> = [];
  B.net.on('request', (r) => {
    seen.push({ from: r.from, kind: r.kind, body: r.body.toString() });
    if (r.kind === 'test.big') r.reply([Buffer.from('head:'), big]);
    else if (r.kind === 'test.into') r.replyInto(3, (b) => b.write('abc'));
    // 'test.silent' is never answered
  });
  const answer = await A.net.request(B.hex, 'test.big', Buffer.from('q1'), 2000);
  assert.ok(answer && answer.length === 5 + big.length && answer.subarray(0, 5).toString() === 'head:' && answer.subarray(5).equals(big), 'the whole 900 KiB answer arrived');
  assert.equal((await A.net.request(B.hex, 'test.into', Buffer.from('q2'), 2000))?.toString(), 'abc');
  assert.deepEqual(seen, [{ from: A.hex, kind: 'test.big', body: 'q1' }, { from: A.hex, kind: 'test.into', body: 'q2' }]);
  assert.equal(A.net.stats().peers[B.hex].rateDropped, 0, 'answers to our requests do not pay the byte budget');
  assert.equal(A.net.stats().peers[B.hex].answers, 2);
  // No answer in time: null, and the late answer is counted, not delivered.
  const t0 = Date.now();
  assert.equal(await A.net.request(B.hex, 'test.silent', Buffer.alloc(0), 150), null);
  assert.ok(Date.now() - t0 >= 140);
  // Not connected: null at once.
  assert.equal(await A.net.request(hex(kx), 'test.big', Buffer.alloc(0), 2000), null);

  // A raw peer sending answers nobody asked for: counted as late, charged to its byte budget, no ban.
  const X = await rawAdmitted(t, A, kx, '127.0.0.1');
  const junk = Buffer.alloc(400 * 1024, 1); // the byte burst is max(budget, maxMessageBytes) = 1 MiB
  for (let id = 1; id <= 3; id++) X.send(encodeRes(id, [junk]));
  await waitFor(() => A.net.stats().peers[hex(kx)].framesIn === 3, 'unsolicited answers processed');
  const sx = A.net.stats().peers[hex(kx)];
  assert.equal(sx.lateAnswers, 3);
  assert.equal(sx.rateDropped, 1, 'two fit the 1 MiB byte burst, the third did not');
  assert.equal(sx.badMessages, 0);
  // A malformed request kind is a bad message.
  X.send(encodeValue([4, 'bad kind!', 1, Buffer.alloc(1)]));
  await waitFor(() => A.net.stats().peers[hex(kx)].badMessages === 1, 'malformed request counted');

  // The link goes down while a request waits: null, before its timeout.
  const pending = A.net.request(B.hex, 'test.silent', Buffer.alloc(0), 10_000);
  const t1 = Date.now();
  await B.net.stop();
  assert.equal(await pending, null);
  assert.ok(Date.now() - t1 < 5000, 'resolved by the disconnect, not the 10 s timeout');
});

/** A raw TCP client on the peer port: sends `request` bytes, resolves with all it got until closed. */
function rawTcp(port: number, localAddress: string, request: Buffer[], keepOpenMs = 3000): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const sock = net.connect({ port, host: '127.0.0.1', localAddress }, () => request.forEach((b) => sock.write(b)));
    const timer = setTimeout(() => sock.destroy(), keepOpenMs);
    sock.on('data', (d) => got.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got));
    });
  });
}

const upgrade = (ticketHex: string) => Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${BULK_PROTOCOL}\r\n${BULK_TICKET_HEADER}: ${ticketHex}\r\n\r\n`);

test('bulk streams: big answers over a ticketed TCP stream beside the link; bad tickets and bad frames refused; no listener → the link; a lost link ends them', async (t) => {
  const [ka, kb, kc] = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const unl = [hex(ka), hex(kb), hex(kc)];
  const A = await startNode(t, ka, { unl });
  const B = await startNode(t, kb, { unl, peers: [A.addr] });
  await waitFor(() => A.net.connectedPeers().length === 1 && B.net.connectedPeers().length === 1, 'A–B up');
  const big = Buffer.alloc(900 * 1024, 7);
  const onRequest = (r: PeerRequest) => {
    if (r.kind === 'test.big') r.reply([r.body, big]);
    // An answer filled later (as reads on libuv's threads are); a failed fill sends nothing and leaves
    // the request answerable, here with "fill failed".
    if (r.kind === 'test.later') {
      void r.replyIntoLater(big.length, async (body) => {
        await sleep(5);
        if (r.body.toString() === 'fail') throw new Error('read failed');
        big.copy(body);
      }).catch(() => r.reply([Buffer.from('fill failed')]));
    }
    // 'test.silent' is never answered
  };
  B.net.on('request', onRequest);
  // B dialed A, so A opens its stream to the address B's link came from and the port B's ticket names.
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => A.net.bulkRequest(B.hex, 'test.big', Buffer.from(`q${i}:`), 5000)));
  answers.forEach((a, i) => assert.ok(a && a.subarray(0, `q${i}:`.length).toString() === `q${i}:` && a.subarray(-big.length).equals(big), `answer ${i} is its own`));
  assert.deepEqual(A.net.stats().bulk, { opened: 1, failed: 0, served: 0, refused: 0 }, 'one stream, opened once, carried all twelve');
  assert.equal(B.net.stats().bulk.served, 1);
  assert.equal(A.net.stats().peers[B.hex].answers, 1, 'only the ticket came over the WebSocket link');
  assert.ok((await A.net.bulkRequest(B.hex, 'test.later', Buffer.from('ok'), 5000))?.equals(big), 'an answer filled later, over the stream');
  assert.equal((await A.net.bulkRequest(B.hex, 'test.later', Buffer.from('fail'), 5000))?.toString(), 'fill failed');
  assert.ok((await A.net.request(B.hex, 'test.later', Buffer.from('ok'), 5000))?.equals(big), 'and over the link');
  assert.equal((await A.net.request(B.hex, 'test.later', Buffer.from('fail'), 5000))?.toString(), 'fill failed');
  // B → A as well (B dialed A: the stream goes to A's listen port).
  // linkWhileOpening: the first request does not wait for the stream; it goes over the link while
  // the stream opens, and the next one takes the stream.
  A.net.on('request', onRequest);
  const linkAnswers = () => B.net.stats().peers[A.hex].answers;
  const before = linkAnswers();
  assert.ok((await B.net.bulkRequest(A.hex, 'test.big', Buffer.from('x'), 5000, { linkWhileOpening: true }))?.subarray(1).equals(big));
  assert.ok(linkAnswers() >= before + 1, 'answered over the link');
  await waitFor(() => B.net.stats().bulk.opened === 1, 'the stream opened meanwhile');
  const viaLink = linkAnswers();
  assert.ok((await B.net.bulkRequest(A.hex, 'test.big', Buffer.from('y'), 5000, { linkWhileOpening: true }))?.subarray(1).equals(big));
  assert.equal(linkAnswers(), viaLink, 'the second over the stream');

  // A made-up ticket: 403, counted; the port keeps serving.
  const refused = await rawTcp(B.port, '127.0.0.21', [upgrade('ab'.repeat(32))]);
  assert.match(refused.toString(), /^HTTP\/1\.1 403/);
  assert.equal(B.net.stats().bulk.refused, 1);
  // A real ticket (asked for over the link) but a frame over the request limit: the stream is closed and
  // counted against the peer the ticket was issued to; its link stays up.
  const ticket = await A.net.request(B.hex, 'hpn.bulk', Buffer.alloc(0), 2000);
  assert.ok(ticket && ticket.length === 34 && ticket.readUInt16BE(32) === B.port, 'ticket answer: 32 bytes and the port');
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(1 << 30);
  const closed = await rawTcp(B.port, '127.0.0.22', [upgrade(ticket.subarray(0, 32).toString('hex')), huge]);
  assert.match(closed.toString(), /^HTTP\/1\.1 101/);
  await waitFor(() => B.net.stats().peers[A.hex].badMessages === 1, 'bad bulk frame counted');
  // A requester that stops reading: once 16 MiB of answers wait unsent, further ones are dropped.
  const sent: boolean[] = [];
  const counting = (r: PeerRequest) => {
    if (r.kind === 'test.stuck') sent.push(r.reply([big]));
  };
  B.net.on('request', counting);
  const ticket2 = await A.net.request(B.hex, 'hpn.bulk', Buffer.alloc(0), 2000);
  const stuck = net.connect({ port: B.port, host: '127.0.0.1', localAddress: '127.0.0.24' }, () => {
    stuck.write(upgrade(ticket2!.subarray(0, 32).toString('hex')));
    for (let id = 1; id <= 40; id++) {
      const f = Buffer.alloc(4 + 4 + 1 + 10);
      f.writeUInt32BE(15, 0);
      f.writeUInt32BE(id, 4);
      f[8] = 10;
      f.write('test.stuck', 9, 'latin1');
      stuck.write(f);
    }
  });
  stuck.pause(); // never reads
  await waitFor(() => sent.length === 40, 'all 40 stuck requests reached B');
  assert.ok(sent.filter((x) => !x).length >= 10, `answers dropped once the stream backed up: ${sent.map((x) => (x ? 1 : 0)).join('')}`);
  stuck.destroy();
  B.net.off('request', counting);
  // The same ticket a second time: single use.
  assert.match((await rawTcp(B.port, '127.0.0.23', [upgrade(ticket.subarray(0, 32).toString('hex'))])).toString(), /^HTTP\/1\.1 403/);
  assert.deepEqual(A.net.connectedPeers(), [B.hex]);

  // A dial-only peer offers no stream: the answer comes over the link.
  const C = new PeerNetwork({ contractId: CONTRACT, keys: kc, listen: null, peers: [A.addr], unl: () => unl, allowObservers: false, limits: TEST_LIMITS });
  t.after(() => C.stop());
  await C.start();
  C.on('request', onRequest);
  await waitFor(() => A.net.connectedPeers().includes(hex(kc)), 'A–C up');
  assert.ok((await A.net.bulkRequest(hex(kc), 'test.big', Buffer.from('c'), 5000))?.subarray(1).equals(big));
  assert.equal(A.net.stats().bulk.failed, 1);

  // The link goes down while a bulk request waits: null, long before its timeout; the stream is gone.
  const pending = A.net.bulkRequest(B.hex, 'test.silent', Buffer.alloc(0), 10_000);
  const t1 = Date.now();
  await B.net.stop();
  assert.equal(await pending, null);
  assert.ok(Date.now() - t1 < 5000, 'resolved by the disconnect, not the 10 s timeout');
});

test('bulk building blocks: frames split anywhere are reassembled, oversized ones refused; tickets are single use and expire', () => {
  const frames: Buffer[] = [];
  const reader = new FrameReader(100, (f) => frames.push(f));
  const frame = (body: string) => Buffer.concat([Buffer.from([0, 0, 0, body.length]), Buffer.from(body)]);
  const stream = Buffer.concat([frame('hello'), frame(''), frame('x'.repeat(100)), frame('end')]);
  for (let i = 0; i < stream.length; i += 3) reader.push(stream, i, Math.min(stream.length, i + 3));
  assert.deepEqual(frames.map((f) => f.subarray(4).toString()), ['hello', '', 'x'.repeat(100), 'end']);
  assert.throws(() => reader.push(frame('y'.repeat(101))), /over the limit/);
  const book = new TicketBook();
  const t1 = book.issue('peer1', 1000);
  assert.equal(book.redeem(t1.toString('hex'), 2000), 'peer1');
  assert.equal(book.redeem(t1.toString('hex'), 2000), null, 'used once');
  const t2 = book.issue('peer2', 1000);
  assert.equal(book.redeem(t2.toString('hex'), 1000 + 10_000), null, 'expired');
  assert.equal(book.redeem('00'.repeat(32), 1000), null);
  // One peer asking again and again replaces its own tickets only (4 at most), never another's.
  const other = book.issue('peer3', 5000);
  const mine = Array.from({ length: 100 }, () => book.issue('peer4', 5000).toString('hex'));
  assert.deepEqual(mine.map((t) => book.redeem(t, 5001) !== null), [...Array(96).fill(false), true, true, true, true]);
  assert.equal(book.redeem(other.toString('hex'), 5001), 'peer3');
});
