// User server tests: the unmodified hotpocket-js-client (json and bson, over wss) against the server
// backed by a small in-memory node model, plus raw-WebSocket tests for every rejection and abuse case.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { test, TestContext } from 'node:test';
import { Binary, deserialize, serialize, Long } from 'bson';
import { WebSocket } from 'ws';
import { hash } from '../src/crypto/hash';
import { generateKeyPair, KeyPair, sign, verify } from '../src/crypto/keys';
import { embedContractData, looksLikeJson } from '../src/users/codec';
import { closeReason, UserServerLimits } from '../src/users/limits';
import type {
  LedgerInputRecord,
  LedgerOutputRecord,
  LedgerQueryResult,
  LedgerRecord,
  NodeStatus,
  SubmittedInput,
  SubmitResult,
  UserNodeApi,
  UserProtocol,
  VoteStatus,
} from '../src/users/nodeApi';
import { buildMerkleTree, buildOutputTree, collapseForUser, collapsedTreeRoot, userOutputHash } from '../src/users/outputHash';
import { UserServer } from '../src/users/server';
import { generateTlsCertificate, TlsCertificate } from '../src/users/tls';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const HotPocket = require('hotpocket-js-client');
HotPocket.setLogLevel(1); // errors only: keeps test output readable

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------------------------------------
// A small but real in-memory node: admits inputs, closes ledgers on demand, runs an echo "contract",
// computes HotPocket-format output hashes, trees and UNL signatures, and answers ledger queries.

type Pending = { user: Buffer; input: SubmittedInput };

class ModelNode extends EventEmitter implements UserNodeApi {
  readonly hpVersion = '0.6.4';
  readonly contractId = '3c5f1c56-97a2-4ac6-9d6b-f4ad3e0c9b11';
  readonly contractVersion = '1.0';
  readonly nodeKey = generateKeyPair();
  readonly peerKey = generateKeyPair(); // a second UNL member that co-signs output roots
  readonly publicKey = this.nodeKey.publicKey;
  unlKeys = [hex(this.nodeKey.publicKey), hex(this.peerKey.publicKey)].sort();
  readonly ledgers: LedgerRecord[] = [];
  readonly raw = new Map<number, { inputs: LedgerInputRecord[]; outputs: LedgerOutputRecord[] }>();
  readonly pending: Pending[] = [];
  readonly lastNonce = new Map<string, bigint>();
  readonly signedChallenges: Buffer[] = [];
  readonly reads: Buffer[] = [];
  readsEnabled = true;
  voteStatus: VoteStatus = 'synced';
  readDelayMs = 0;

  constructor() {
    super();
    const zero = Buffer.alloc(32);
    this.ledgers.push({ seqNo: 0, timestampMs: 0, hash: zero, prevHash: zero, stateHash: zero, configHash: zero, userHash: zero, inputHash: zero, outputHash: zero });
  }

  signServerChallenge(message: Buffer): Buffer {
    this.signedChallenges.push(message);
    return sign(message, this.nodeKey.secretKey);
  }
  unl(): string[] {
    return this.unlKeys;
  }
  lcl() {
    const l = this.ledgers[this.ledgers.length - 1];
    return { seqNo: l.seqNo, hash: l.hash };
  }
  status(): NodeStatus {
    return { voteStatus: this.voteStatus, roundTimeMs: 1000, contractExecutionEnabled: true, readRequestsEnabled: this.readsEnabled, isFullHistoryNode: false, weaklyConnected: false, peers: ['127.0.0.1:22861'] };
  }
  /** When set, the node takes no inputs: the server must refuse before parsing or checking anything. */
  full = false;
  inputsFull(): boolean {
    return this.full;
  }
  submitInput(user: Buffer, input: SubmittedInput): SubmitResult {
    const lcl = this.lcl().seqNo;
    if (input.maxLedgerSeqNo > lcl + 10) return { ok: false, reason: 'max_ledger_offset_exceeded' };
    if (input.maxLedgerSeqNo <= lcl) return { ok: false, reason: 'max_ledger_expired' };
    const last = this.lastNonce.get(hex(user));
    if (last !== undefined && input.nonce <= last) return { ok: false, reason: 'nonce_expired' };
    this.lastNonce.set(hex(user), input.nonce);
    this.pending.push({ user, input });
    return { ok: true };
  }
  async readRequest(_user: Buffer, content: Buffer): Promise<Buffer[]> {
    this.reads.push(content);
    if (this.readDelayMs) await new Promise((r) => setTimeout(r, this.readDelayMs));
    return [Buffer.concat([Buffer.from('read:'), content]), Buffer.from('second output')];
  }
  ledgerQuery(seqNo: number, include: { inputs: boolean; outputs: boolean }): LedgerQueryResult | null {
    if (seqNo === 999) return { error: 'exec_failure' };
    const ledger = this.ledgers.find((l) => l.seqNo === seqNo);
    if (!ledger) return null;
    const raw = this.raw.get(seqNo) ?? { inputs: [], outputs: [] };
    return { ledger, ...(include.inputs ? { inputs: raw.inputs } : {}), ...(include.outputs ? { outputs: raw.outputs } : {}) };
  }

  /** Closes a ledger with every pending input, "executes" the contract and emits what a node would. */
  closeLedger(opts: { outputs?: (blob: Buffer) => Buffer[]; extraUsers?: number } = {}): LedgerRecord {
    const prev = this.ledgers[this.ledgers.length - 1];
    const seqNo = prev.seqNo + 1;
    const inputs = this.pending.splice(0);
    const run = opts.outputs ?? ((blob: Buffer) => [Buffer.concat([Buffer.from('Echoing: '), blob])]);
    const users = new Map<string, { pubkey: Buffer; outputs: Buffer[]; real: boolean }>();
    for (const { user, input } of inputs) {
      const u = users.get(hex(user)) ?? { pubkey: user, outputs: [], real: true };
      u.outputs.push(...run(input.blob));
      users.set(hex(user), u);
    }
    for (let i = 0; i < (opts.extraUsers ?? 0); i++) {
      const pubkey = generateKeyPair().publicKey;
      users.set(hex(pubkey), { pubkey, outputs: [Buffer.from(`other user ${i}`)], real: false });
    }
    const stateHash = hash(Buffer.from(`state after ${seqNo}`));
    const userHashes = new Map([...users.values()].map((u) => [hex(u.pubkey), userOutputHash(u.pubkey, u.outputs)]));
    const tree = buildOutputTree([...userHashes.values()], stateHash);
    const unlSig: Array<[Buffer, Buffer]> = [
      [this.nodeKey.publicKey, sign(tree.hash, this.nodeKey.secretKey)],
      [this.peerKey.publicKey, sign(tree.hash, this.peerKey.secretKey)],
    ];
    const fields = {
      seqNo,
      timestampMs: 1_700_000_000_000 + seqNo * 1000,
      prevHash: prev.hash,
      stateHash,
      configHash: hash(Buffer.from('config')),
      userHash: hash(Buffer.concat([...users.values()].map((u) => u.pubkey))),
      inputHash: hash(Buffer.concat(inputs.map((i) => i.input.inputHash))),
      outputHash: tree.hash,
    };
    const ledger: LedgerRecord = { ...fields, hash: hash(Buffer.concat([Buffer.from(String(seqNo)), fields.prevHash, stateHash, fields.userHash, fields.inputHash, fields.outputHash])) };
    this.ledgers.push(ledger);
    this.raw.set(seqNo, {
      inputs: inputs.map(({ user, input }) => ({ pubkey: user, hash: input.inputHash, nonce: input.nonce, blob: input.blob })),
      outputs: [...users.values()].map((u) => ({ pubkey: u.pubkey, hash: userHashes.get(hex(u.pubkey))!, blobs: u.outputs })),
    });
    for (const { user, input } of inputs) this.emit('input_status', { user, inputHash: input.inputHash, status: 'accepted', ledgerSeqNo: seqNo, ledgerHash: ledger.hash });
    for (const u of users.values()) {
      if (!u.real) continue;
      const h = userHashes.get(hex(u.pubkey))!;
      this.emit('contract_output', { user: u.pubkey, ledgerSeqNo: seqNo, ledgerHash: ledger.hash, outputs: u.outputs, outputHash: h, hashTree: collapseForUser(tree, h), unlSig });
    }
    this.emit('ledger_created', ledger);
    return ledger;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

let certPromise: Promise<TlsCertificate> | null = null;
const testCert = () => (certPromise ??= generateTlsCertificate('test.hotpocket.contract'));

async function startServer(t: TestContext, node: ModelNode, opts: { tls?: boolean; limits?: Partial<UserServerLimits> } = {}): Promise<{ server: UserServer; logs: string[] }> {
  const logs: string[] = [];
  const server = new UserServer(node, { host: '127.0.0.1', port: 0, tls: opts.tls ? await testCert() : null, limits: opts.limits, log: (level, msg) => logs.push(`${level}: ${msg}`) });
  await server.start();
  t.after(() => server.stop());
  return { server, logs };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A hand-driven protocol client on a plain `ws` socket. */
class RawClient {
  private readonly queue: Buffer[] = [];
  private readonly waiters: Array<(b: Buffer | null) => void> = [];
  private isClosed = false;
  readonly closed: Promise<{ code: number; reason: string }>;
  protocol: UserProtocol = 'json';

  private constructor(readonly ws: WebSocket) {
    ws.on('error', () => undefined);
    ws.on('message', (d: Buffer) => {
      const w = this.waiters.shift();
      if (w) w(d);
      else this.queue.push(d);
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.isClosed = true;
        for (const w of this.waiters.splice(0)) w(null);
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  static async open(t: TestContext, url: string): Promise<RawClient> {
    const c = new RawClient(new WebSocket(url, { rejectUnauthorized: false }));
    t.after(() => c.ws.terminate());
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('error', reject);
    });
    return c;
  }

  /** Opens and completes the handshake. */
  static async user(t: TestContext, url: string, protocol: UserProtocol = 'json', keys: KeyPair = generateKeyPair()): Promise<RawClient & { keys: KeyPair }> {
    const c = await RawClient.open(t, url);
    await c.handshake(keys, protocol, null);
    return Object.assign(c, { keys });
  }

  next(timeoutMs = 3000): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.isClosed) return Promise.reject(new Error('socket closed'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error('no message within timeout'));
      }, timeoutMs);
      const waiter = (b: Buffer | null) => {
        clearTimeout(timer);
        if (b) resolve(b);
        else reject(new Error('socket closed'));
      };
      this.waiters.push(waiter);
    });
  }

  async nextText(): Promise<string> {
    return (await this.next()).toString('utf8');
  }

  async nextMsg(): Promise<Record<string, unknown>> {
    const b = await this.next();
    return this.protocol === 'json' ? JSON.parse(b.toString('utf8')) : deserialize(b, { useBigInt64: true });
  }

  async expectSilence(ms = 150): Promise<void> {
    await sleep(ms);
    assert.equal(this.queue.length, 0, `unexpected message: ${this.queue[0]?.toString()}`);
  }

  sendJson(obj: unknown): void {
    this.ws.send(Buffer.from(JSON.stringify(obj)), { binary: true });
  }

  send(obj: Record<string, unknown>): void {
    if (this.protocol === 'json') this.sendJson(obj);
    else this.ws.send(serialize(obj), { binary: true });
  }

  async handshake(keys: KeyPair, protocol: UserProtocol, serverChallenge: string | null): Promise<Record<string, unknown> | null> {
    const challenge = JSON.parse(await this.nextText());
    this.sendJson({
      type: 'user_challenge_response',
      sig: hex(sign(Buffer.from(challenge.challenge), keys.secretKey)),
      pubkey: hex(keys.publicKey),
      ...(serverChallenge !== null ? { server_challenge: serverChallenge } : {}),
      protocol,
    });
    this.protocol = protocol;
    return serverChallenge !== null ? JSON.parse(await this.nextText()) : null;
  }
}

/** A signed contract_input in the client's protocol, as hotpocket-js-client builds it. */
function signedInput(protocol: UserProtocol, keys: KeyPair, input: string, nonce: number, maxLedger: number, containerOverride?: Buffer) {
  const container =
    containerOverride ??
    (protocol === 'json'
      ? Buffer.from(JSON.stringify({ input, nonce, max_ledger_seq_no: maxLedger }))
      : Buffer.from(serialize({ input: Buffer.from(input), nonce: Long.fromNumber(nonce), max_ledger_seq_no: Long.fromNumber(maxLedger) })));
  const sig = sign(container, keys.secretKey);
  const msg = protocol === 'json' ? { type: 'contract_input', input_container: container.toString('utf8'), sig: hex(sig) } : { type: 'contract_input', input_container: container, sig };
  return { msg, sig, inputHash: hash(sig) };
}

const rejectedJson = (reason: string, inputHash = '') => `{"type":"contract_input_status","status":"rejected","reason":"${reason}","input_hash":"${inputHash}"}`;

// ---------------------------------------------------------------------------------------------
// The unmodified hotpocket-js-client, both protocols, over wss.

for (const protocol of ['json', 'bson'] as const) {
  test(`hotpocket-js-client (${protocol}, wss): handshake, stat, lcl, input, verified output, read, ledger query, events`, async (t) => {
    const node = new ModelNode();
    const { server } = await startServer(t, node, { tls: true });
    assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+$/);
    const keys = await HotPocket.generateKeys();
    const client = await HotPocket.createClient([server.url], keys, {
      protocol,
      contractId: node.contractId,
      contractVersion: node.contractVersion,
      trustedServerKeys: [hex(node.publicKey)],
    });
    const outputs: Array<{ ledgerSeqNo: number; outputs: unknown[]; outputHash: unknown }> = [];
    const ledgerEvents: Array<{ event: string; ledger?: { seqNo: number }; voteStatus?: string }> = [];
    const unlChanges: unknown[][] = [];
    client.on(HotPocket.events.contractOutput, (r: (typeof outputs)[0]) => outputs.push(r));
    client.on(HotPocket.events.ledgerEvent, (e: (typeof ledgerEvents)[0]) => ledgerEvents.push(e));
    client.on(HotPocket.events.unlChange, (u: unknown[]) => unlChanges.push(u));
    assert.equal(await client.connect(), true, 'client connects');
    t.after(() => client.close());
    // The node signed exactly server_challenge + contract id + version.
    assert.equal(node.signedChallenges.length, 1);
    assert.match(node.signedChallenges[0].toString(), new RegExp(`^[0-9a-f]{32}${node.contractId}${node.contractVersion.replace('.', '\\.')}$`));

    const bin = (v: unknown) => (protocol === 'json' ? (v as string) : hex(v as Buffer));
    const st = await client.getStatus();
    assert.equal(st.hpVersion, '0.6.4');
    assert.equal(st.ledgerSeqNo, 0);
    assert.equal(bin(st.ledgerHash), '00'.repeat(32));
    assert.equal(st.voteStatus, 'synced');
    assert.equal(st.roundTime, 1000);
    assert.equal(st.contractExecutionEnabled, true);
    assert.equal(st.readRequestsEnabled, true);
    assert.equal(st.isFullHistoryNode, false);
    assert.equal(st.weaklyConnected, false);
    assert.deepEqual(st.currentUnl.map(bin), node.unlKeys);
    assert.deepEqual(st.peers, ['127.0.0.1:22861']);
    const lcl = await client.getLcl();
    assert.equal(lcl.ledgerSeqNo, 0);

    await client.subscribe(HotPocket.notificationChannels.ledgerEvent);
    const sub = await client.submitContractInput('hello');
    await waitFor(() => node.pending.length === 1, 'input admitted by the node');
    const admitted = node.pending[0].input;
    assert.equal(admitted.protocol, protocol);
    assert.equal(admitted.blob.toString(), 'hello');
    assert.equal(admitted.maxLedgerSeqNo, 10); // lcl 0 + default offset 10
    assert.ok(admitted.nonce > 0n);
    assert.equal(bin(sub.hash), hex(admitted.inputHash));
    assert.ok(verify(admitted.container, admitted.sig, Buffer.from(keys.publicKey)));

    // 20 other users make the output tree two levels deep (22 leaves, fan-out 16).
    const ledger = node.closeLedger({ extraUsers: 20 });
    const status = await sub.submissionStatus;
    assert.equal(status.status, 'accepted');
    assert.equal(status.ledgerSeqNo, 1);
    assert.equal(bin(status.ledgerHash), hex(ledger.hash));
    await waitFor(() => outputs.length === 1, 'verified contract output (output_hash, hash_tree, unl_sig)');
    assert.equal(outputs[0].ledgerSeqNo, 1);
    assert.deepEqual(
      outputs[0].outputs.map((o) => (protocol === 'json' ? o : (o as Buffer).toString())),
      ['Echoing: hello'],
    );
    await waitFor(() => ledgerEvents.length === 1, 'ledger_created event');
    assert.equal(ledgerEvents[0].event, 'ledger_created');
    assert.equal(ledgerEvents[0].ledger!.seqNo, 1);

    // An output whose root is signed by only half the UNL must be dropped by the client (< 80%).
    const root = hash(Buffer.from('forged root'));
    const h = userOutputHash(Buffer.from(keys.publicKey), [Buffer.from('forged')]);
    const tree = buildOutputTree([h], hash(Buffer.from('state')));
    node.emit('contract_output', {
      user: Buffer.from(keys.publicKey), ledgerSeqNo: 1, ledgerHash: ledger.hash, outputs: [Buffer.from('forged')], outputHash: h,
      hashTree: collapseForUser(tree, h), unlSig: [[node.nodeKey.publicKey, sign(root, node.nodeKey.secretKey)]],
    });
    // ...while a correctly signed second round right after it is delivered.
    const sub2 = await client.submitContractInput('second', null, 5);
    await waitFor(() => node.pending.length === 1, 'second input admitted');
    node.closeLedger();
    assert.equal((await sub2.submissionStatus).status, 'accepted');
    await waitFor(() => outputs.length === 2, 'second verified output');
    assert.equal(outputs.length, 2, 'the under-signed output was dropped by the client');
    assert.equal(outputs[1].ledgerSeqNo, 2);

    // Rejections from node admission reach the client immediately.
    const sub3 = await client.submitContractInput('too late', 5, 1, false); // max ledger 1 <= lcl 2
    assert.deepEqual(await sub3.submissionStatus, { status: 'rejected', reason: 'max_ledger_expired' });

    // Read request: the client resolves with the first contract_read_response.
    const read = await client.submitContractReadRequest('q1');
    assert.equal(protocol === 'json' ? read : (read as Buffer).toString(), 'read:q1');

    // Ledger query with inputs and outputs.
    const q = await client.getLedgerBySeqNo(1, true, true);
    assert.equal(q.seqNo, 1);
    assert.equal(q.timestamp, 1_700_000_001_000);
    assert.equal(bin(q.hash), hex(ledger.hash));
    assert.equal(bin(q.outputHash), hex(ledger.outputHash));
    assert.equal(q.inputs.length, 1);
    assert.equal(bin(q.inputs[0].pubkey), hex(keys.publicKey));
    assert.equal(bin(q.inputs[0].hash), hex(admitted.inputHash));
    assert.equal(q.inputs[0].nonce, Number(admitted.nonce));
    assert.equal(bin(q.inputs[0].blob), hex(Buffer.from('hello')));
    assert.equal(q.outputs.length, 21);
    const own = q.outputs.find((o: { pubkey: unknown }) => bin(o.pubkey) === hex(keys.publicKey));
    assert.deepEqual(own.blobs.map(bin), [hex(Buffer.from('Echoing: hello'))]);
    assert.equal(await client.getLedgerBySeqNo(50, false, false), null);

    // UNL change (auto-subscribed because trustedServerKeys is set) and vote status events.
    const newUnl = [...node.unlKeys, hex(generateKeyPair().publicKey)].sort();
    node.unlKeys = newUnl;
    node.emit('unl_change', { unl: newUnl });
    node.emit('vote_status', { voteStatus: 'desync' });
    await waitFor(() => unlChanges.length === 1 && ledgerEvents.length === 3, 'unl_change and vote_status events');
    // (In BSON the client sorts raw key Buffers with Array#sort, i.e. by their string form: compare as a set.)
    assert.deepEqual(unlChanges[0].map(bin).sort(), newUnl);
    assert.deepEqual(ledgerEvents[2], { event: 'vote_status', voteStatus: 'desync' });
  });
}

test('hotpocket-js-client (json) sees JSON-looking outputs decoded; with trusted keys they fail its hash check, as with HotPocket', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { tls: true });
  const plainKeys = await HotPocket.generateKeys();
  const trustingKeys = await HotPocket.generateKeys();
  const plain = await HotPocket.createClient([server.url], plainKeys, { protocol: 'json' });
  const trusting = await HotPocket.createClient([server.url], trustingKeys, { protocol: 'json', trustedServerKeys: [hex(node.publicKey)] });
  const plainOut: unknown[][] = [];
  const trustingOut: unknown[][] = [];
  plain.on(HotPocket.events.contractOutput, (r: { outputs: unknown[] }) => plainOut.push(r.outputs));
  trusting.on(HotPocket.events.contractOutput, (r: { outputs: unknown[] }) => trustingOut.push(r.outputs));
  assert.deepEqual(await Promise.all([plain.connect(), trusting.connect()]), [true, true]);
  t.after(() => Promise.all([plain.close(), trusting.close()]));
  const outputsFor = (blob: Buffer): Buffer[] =>
    blob.toString() === 'quirk' ? ['{"a":1}', '"hi"', '12.5', 'plain', '{oops}'].map((s) => Buffer.from(s)) : [Buffer.from(blob.toString() === 'quoted' ? '"hi"' : 'plain text')];
  await plain.submitContractInput('quirk');
  await trusting.submitContractInput('quoted');
  await waitFor(() => node.pending.length === 2, 'both inputs admitted');
  node.closeLedger({ outputs: outputsFor });
  await trusting.submitContractInput('plain', null, 5);
  await waitFor(() => node.pending.length === 1, 'third input admitted');
  node.closeLedger({ outputs: outputsFor });
  await waitFor(() => plainOut.length === 1 && trustingOut.length === 1, 'outputs delivered');
  assert.deepEqual(plainOut[0], [{ a: 1 }, 'hi', 12.5, 'plain', '{oops}']);
  // The node hashed the raw bytes '"hi"', the client hashes the decoded 'hi': dropped. Plain text verifies.
  assert.deepEqual(trustingOut, [['plain text']]);
});

test('hotpocket-js-client refuses a node whose key is not trusted (server challenge is really verified)', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { tls: true });
  const keys = await HotPocket.generateKeys();
  const client = await HotPocket.createClient([server.url], keys, { trustedServerKeys: [hex(generateKeyPair().publicKey)], connectionTimeoutMs: 1500 });
  t.after(() => client.close());
  assert.equal(await client.connect(), false);
});

// ---------------------------------------------------------------------------------------------
// Raw protocol: exact messages, over plain ws:// (the TLS-less option) unless noted.

test('handshake messages are exact; the server challenge response signs challenge+id+version', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { tls: true });
  const c = await RawClient.open(t, server.url);
  const text = await c.nextText();
  const ch = JSON.parse(text);
  assert.match(ch.challenge, /^[0-9a-f]{32}$/);
  assert.equal(text, `{"hp_version":"0.6.4","type":"user_challenge","contract_id":"${node.contractId}","contract_version":"1.0","challenge":"${ch.challenge}"}`);
  const keys = generateKeyPair();
  c.sendJson({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch.challenge), keys.secretKey)), pubkey: hex(keys.publicKey), server_challenge: 'abc123', protocol: 'json' });
  const resp = await c.nextText();
  const sig = sign(Buffer.from(`abc123${node.contractId}1.0`), node.nodeKey.secretKey);
  assert.equal(resp, `{"type":"server_challenge_response","sig":"${hex(sig)}","pubkey":"${hex(node.publicKey)}","unl":["${node.unlKeys.join('","')}"]}`);
  c.sendJson({ type: 'lcl' });
  assert.equal(await c.nextText(), `{"type":"lcl_response","ledger_seq_no":0,"ledger_hash":"${'00'.repeat(32)}"}`);
});

test('handshake without server_challenge authenticates silently', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  assert.match(server.url, /^ws:\/\//);
  const c = await RawClient.user(t, server.url);
  await c.expectSilence();
  c.sendJson({ type: 'stat' });
  const st = await c.nextText();
  assert.equal(
    st,
    `{"type":"stat_response","hp_version":"0.6.4","ledger_seq_no":0,"ledger_hash":"${'00'.repeat(32)}","vote_status":"synced","round_time":1000,` +
      `"contract_execution_enabled":true,"read_requests_enabled":true,"is_full_history_node":false,"weakly_connected":false,` +
      `"current_unl":["${node.unlKeys.join('","')}"],"peers":["127.0.0.1:22861"]}`,
  );
  assert.equal(server.stats().users, 1);
  assert.equal(node.signedChallenges.length, 0);
});

test('handshake failures close the connection with a clear reason', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  const keys = generateKeyPair();
  const cases: Array<[string, (challenge: string) => Buffer | string, number, string | RegExp]> = [
    ['bad signature', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch + 'x'), keys.secretKey)), pubkey: hex(keys.publicKey), protocol: 'json' }), 1008, 'handshake failed: challenge signature does not verify with the given pubkey'],
    ['signature by another key', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), generateKeyPair().secretKey)), pubkey: hex(keys.publicKey), protocol: 'json' }), 1008, 'handshake failed: challenge signature does not verify with the given pubkey'],
    ['malformed JSON', () => '{"type":"user_challenge_response",', 1008, /^handshake failed: not a valid JSON document: /],
    ['binary garbage', () => randomBytes(64), 1008, /^handshake failed: not a valid JSON document: /],
    ['wrong type', () => JSON.stringify({ type: 'stat' }), 1008, 'handshake failed: expected a user_challenge_response message'],
    ['bad pubkey', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), keys.secretKey)), pubkey: 'ed1234', protocol: 'json' }), 1008, 'handshake failed: "pubkey" must be "ed" followed by 64 hex characters'],
    ['sig not hex', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: 'zz' + ch, pubkey: hex(keys.publicKey), protocol: 'json' }), 1008, 'handshake failed: "sig" must be a hex string'],
    ['unknown protocol', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), keys.secretKey)), pubkey: hex(keys.publicKey), protocol: 'xml' }), 1008, 'handshake failed: "protocol" must be "json" or "bson"'],
    ['server challenge too long', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), keys.secretKey)), pubkey: hex(keys.publicKey), server_challenge: 'a'.repeat(33), protocol: 'json' }), 1008, 'handshake failed: "server_challenge" must be 1-32 printable ASCII characters'],
    ['server challenge spelling our signing domain', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), keys.secretKey)), pubkey: hex(keys.publicKey), server_challenge: 'hp-node/proposal', protocol: 'json' }), 1008, 'handshake failed: "server_challenge" must be 1-32 printable ASCII characters'],
    ['server challenge with NUL', (ch) => JSON.stringify({ type: 'user_challenge_response', sig: hex(sign(Buffer.from(ch), keys.secretKey)), pubkey: hex(keys.publicKey), server_challenge: 'a\u0000b', protocol: 'json' }), 1008, 'handshake failed: "server_challenge" must be 1-32 printable ASCII characters'],
    ['oversized handshake', () => Buffer.alloc(5000, 0x20), 1009, 'handshake failed: user_challenge_response larger than 4096 bytes'],
  ];
  for (const [name, make, code, reason] of cases) {
    const c = await RawClient.open(t, server.url);
    const ch = JSON.parse(await c.nextText()).challenge;
    const payload = make(ch);
    c.ws.send(typeof payload === 'string' ? Buffer.from(payload) : payload, { binary: true });
    const closed = await c.closed;
    assert.equal(closed.code, code, name);
    if (typeof reason === 'string') assert.equal(closed.reason, reason, name);
    else assert.match(closed.reason, reason, name);
  }
  // A text frame during the handshake.
  const c = await RawClient.open(t, server.url);
  await c.next();
  c.ws.send('{"type":"user_challenge_response"}');
  assert.deepEqual(await c.closed, { code: 1003, reason: 'handshake failed: text frames are not supported, send binary frames' });
  assert.equal(node.signedChallenges.length, 0, 'the node key never signed anything for failed handshakes');
  await waitFor(() => server.stats().connections === 0, 'all failed sessions released');
});

test('unauthenticated connections are closed after the handshake timeout', async (t) => {
  const { server } = await startServer(t, new ModelNode(), { limits: { handshakeTimeoutMs: 200 } });
  const c = await RawClient.open(t, server.url);
  const started = Date.now();
  assert.deepEqual(await c.closed, { code: 1008, reason: 'handshake timeout: no valid user_challenge_response within 200 ms' });
  assert.ok(Date.now() - started >= 150);
});

test('one session per user key: a duplicate is refused, the first keeps working', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  const first = await RawClient.user(t, server.url);
  const dup = await RawClient.open(t, server.url);
  await dup.handshake(first.keys, 'json', null);
  assert.deepEqual(await dup.closed, { code: 1008, reason: `duplicate session: ${hex(first.keys.publicKey)} is already connected` });
  first.sendJson({ type: 'lcl' });
  assert.match(await first.nextText(), /^\{"type":"lcl_response"/);
  // Once the first disconnects, the key may connect again.
  first.ws.close();
  await first.closed;
  await waitFor(() => server.stats().users === 0, 'first session released');
  const again = await RawClient.open(t, server.url);
  await again.handshake(first.keys, 'json', null);
  again.sendJson({ type: 'lcl' });
  assert.match(await again.nextText(), /^\{"type":"lcl_response"/);
});

test('max users and connections per host are enforced with clear reasons', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxUsers: 1, maxConnectionsPerHost: 3 } });
  const a = await RawClient.user(t, server.url);
  const b = await RawClient.open(t, server.url);
  await b.handshake(generateKeyPair(), 'json', null);
  assert.deepEqual(await b.closed, { code: 1013, reason: 'server full: 1 users connected, try again later' });
  await waitFor(() => server.stats().connections === 1, 'refused session released');
  const p1 = await RawClient.open(t, server.url);
  const p2 = await RawClient.open(t, server.url);
  const p3 = await RawClient.open(t, server.url);
  assert.deepEqual(await p3.closed, { code: 1008, reason: 'too many connections from 127.0.0.1: limit is 3 per host' });
  assert.equal((await p1.next()).length > 0 && (await p2.next()).length > 0, true, 'the others got their challenges');
  a.sendJson({ type: 'lcl' });
  assert.match(await a.nextText(), /^\{"type":"lcl_response"/);
});

test('json: every malformed or invalid message gets the exact rejection, the session stays usable', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxBadMsgsPerMin: 1000 } });
  const c = await RawClient.user(t, server.url, 'json');
  const sendRaw = (b: Buffer | string, binary = true) => c.ws.send(typeof b === 'string' ? Buffer.from(b) : b, { binary });
  const expect = async (reason: string, inputHash = '') => assert.equal(await c.nextText(), rejectedJson(reason, inputHash));

  sendRaw('{"type":"stat"'); // truncated JSON
  await expect('bad_msg_format');
  sendRaw(randomBytes(200)); // binary garbage
  await expect('bad_msg_format');
  sendRaw(Buffer.from([0xff, 0xfe, 0x7b, 0x7d])); // invalid UTF-8
  await expect('bad_msg_format');
  sendRaw('{"type":"stat"}', false); // text frame
  await expect('bad_msg_format');
  sendRaw('[1,2,3]');
  await expect('bad_msg_format');
  sendRaw('null');
  await expect('bad_msg_format');
  sendRaw('{}');
  await expect('bad_msg_format');
  sendRaw('{"type":42}');
  await expect('bad_msg_format');
  sendRaw('{"type":"launch_missiles"}');
  await expect('invalid_msg_type');
  sendRaw('{"type":"contract_input","input_container":5,"sig":"00"}');
  await expect('bad_msg_format', hex(hash(Buffer.from([0]))));
  sendRaw('{"type":"contract_input","input_container":"{}","sig":17}');
  await expect('bad_msg_format');
  sendRaw('{"type":"contract_read_request","id":1,"content":"x"}');
  await expect('bad_msg_format');
  sendRaw('{"type":"contract_read_request","id":"1","content":{"a":1}}');
  await expect('bad_msg_format');
  sendRaw('{"type":"subscription","channel":"health_event","enabled":true}');
  await expect('bad_msg_format');
  sendRaw('{"type":"subscription","channel":"ledger_event","enabled":"yes"}');
  await expect('bad_msg_format');
  sendRaw('{"type":"ledger_query","id":"","filter_by":"seq_no","params":{"seq_no":1},"include":[]}');
  await expect('bad_msg_format');
  sendRaw('{"type":"ledger_query","id":"q","filter_by":"hash","params":{"seq_no":1},"include":[]}');
  await expect('bad_msg_format');
  sendRaw('{"type":"ledger_query","id":"q","filter_by":"seq_no","params":{"seq_no":1e300},"include":[]}');
  await expect('bad_msg_format');
  sendRaw('{"type":"ledger_query","id":"q","filter_by":"seq_no","params":{"seq_no":-1},"include":[]}');
  await expect('bad_msg_format');

  // Signed inputs: container problems and signature problems are reported under blake3(sig).
  const badContainers = [
    'not json',
    '[]',
    '{"input":"x","nonce":0,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":-3,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":1.5,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":1000000000000000000000000000000,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":9007199254740993,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":"7","max_ledger_seq_no":5}',
    '{"input":7,"nonce":7,"max_ledger_seq_no":5}',
    '{"input":"x","nonce":7}',
    '{"input":"x","nonce":7,"max_ledger_seq_no":1e20}',
  ];
  for (const container of badContainers) {
    const s = signedInput('json', c.keys, '', 0, 0, Buffer.from(container));
    c.sendJson(s.msg);
    await expect('bad_msg_format', hex(s.inputHash));
  }
  const forged = signedInput('json', generateKeyPair(), 'hi', 5, 5); // signed by someone else
  c.sendJson(forged.msg);
  await expect('bad_sig', hex(forged.inputHash));
  const shortSig = { type: 'contract_input', input_container: '{"input":"x","nonce":1,"max_ledger_seq_no":5}', sig: 'abcd' };
  c.sendJson(shortSig);
  await expect('bad_sig', hex(hash(Buffer.from('abcd', 'hex'))));
  assert.equal(node.pending.length, 0, 'nothing invalid reached the node');

  // Node admission results are forwarded as-is.
  const expired = signedInput('json', c.keys, 'hi', 5, 0);
  c.sendJson(expired.msg);
  await expect('max_ledger_expired', hex(expired.inputHash));
  const far = signedInput('json', c.keys, 'hi', 5, 11);
  c.sendJson(far.msg);
  await expect('max_ledger_offset_exceeded', hex(far.inputHash));
  const ok = signedInput('json', c.keys, 'hi', 5, 3);
  c.sendJson(ok.msg);
  await c.expectSilence(); // accepted inputs are answered when their ledger closes
  const replay = signedInput('json', c.keys, 'again', 5, 3);
  c.sendJson(replay.msg);
  await expect('nonce_expired', hex(replay.inputHash));
  const ledger = node.closeLedger();
  assert.equal(await c.nextText(), `{"type":"contract_input_status","status":"accepted","input_hash":"${hex(ok.inputHash)}","ledger_seq_no":1,"ledger_hash":"${hex(ledger.hash)}"}`);
  const out = JSON.parse(await c.nextText());
  assert.deepEqual(out.outputs, ['Echoing: hi']);

  // Still fully usable after all of that.
  c.sendJson({ type: 'lcl' });
  assert.equal(await c.nextText(), `{"type":"lcl_response","ledger_seq_no":1,"ledger_hash":"${hex(ledger.hash)}"}`);
  assert.equal(server.stats().users, 1);
});

test('a full input pool refuses every input before its container is parsed or its signature checked', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxBadMsgsPerMin: 1000 } });
  const c = await RawClient.user(t, server.url, 'json');
  const expect = async (reason: string, inputHash: Buffer) => assert.equal(await c.nextText(), rejectedJson(reason, hex(inputHash)));
  node.full = true;
  const good = signedInput('json', c.keys, 'hi', 5, 3);
  c.sendJson(good.msg);
  await expect('round_inputs_overflow', good.inputHash);
  // A forged signature and a garbage container get the same cheap answer (nothing was looked at).
  const forged = signedInput('json', generateKeyPair(), 'hi', 6, 3);
  c.sendJson(forged.msg);
  await expect('round_inputs_overflow', forged.inputHash);
  const garbage = signedInput('json', c.keys, '', 0, 0, Buffer.from('not json'));
  c.sendJson(garbage.msg);
  await expect('round_inputs_overflow', garbage.inputHash);
  assert.equal(node.pending.length, 0);
  node.full = false;
  c.sendJson(good.msg);
  await c.expectSilence(); // admitted now
  assert.equal(node.pending.length, 1);
  assert.equal(server.stats().users, 1, 'refusals for a full pool are not bad messages: the session stays');
});

test('bson: garbage and wrongly typed messages are rejected; replies use binary and int64', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxBadMsgsPerMin: 1000 } });
  const c = await RawClient.user(t, server.url, 'bson');
  const expectRejected = async (reason: string, inputHash: Buffer = Buffer.alloc(0)) => {
    const m = await c.nextMsg();
    assert.deepEqual(Object.keys(m), ['type', 'status', 'reason', 'input_hash']);
    assert.equal(m.type, 'contract_input_status');
    assert.equal(m.status, 'rejected');
    assert.equal(m.reason, reason);
    assert.ok(m.input_hash instanceof Binary);
    assert.equal(hex((m.input_hash as Binary).buffer), hex(inputHash));
  };
  c.ws.send(randomBytes(100), { binary: true });
  await expectRejected('bad_msg_format');
  c.ws.send(Buffer.from('{"type":"stat"}'), { binary: true }); // JSON in a BSON session
  await expectRejected('bad_msg_format');
  const doc = Buffer.from(serialize({ type: 'stat' }));
  doc.writeInt32LE(1 << 30, 0); // lying length prefix
  c.ws.send(doc, { binary: true });
  await expectRejected('bad_msg_format');
  c.send({ type: 'lcl', nested: JSON.parse('['.repeat(500) + ']'.repeat(500)) }); // deep nesting is fine
  const lclMsg = await c.nextMsg();
  assert.equal(lclMsg.type, 'lcl_response');
  assert.equal(typeof lclMsg.ledger_seq_no, 'bigint', 'ledger_seq_no is int64');
  assert.ok(lclMsg.ledger_hash instanceof Binary);
  c.send({ type: 'hack' });
  await expectRejected('invalid_msg_type');
  c.send({ type: 'contract_input', input_container: 'a string', sig: Buffer.alloc(64) });
  await expectRejected('bad_msg_format', hash(Buffer.alloc(64)));
  c.send({ type: 'contract_read_request', id: 'r', content: 'a string, not binary' });
  await expectRejected('bad_msg_format');
  c.send({ type: 'ledger_query', id: 'q', filter_by: 'seq_no', params: { seq_no: 1.5 }, include: [] });
  await expectRejected('bad_msg_format');
  for (const container of [
    serialize({ input: 'string, not binary', nonce: Long.fromNumber(1), max_ledger_seq_no: Long.fromNumber(5) }),
    serialize({ input: Buffer.from('x'), nonce: 1.5, max_ledger_seq_no: Long.fromNumber(5) }),
    serialize({ input: Buffer.from('x'), nonce: Long.fromNumber(0), max_ledger_seq_no: Long.fromNumber(5) }),
    serialize({ input: Buffer.from('x'), nonce: Long.fromNumber(-5), max_ledger_seq_no: Long.fromNumber(5) }),
    serialize({ input: Buffer.from('x'), nonce: Long.fromNumber(1) }),
    randomBytes(40),
  ]) {
    const s = signedInput('bson', c.keys, '', 0, 0, Buffer.from(container));
    c.send(s.msg);
    await expectRejected('bad_msg_format', s.inputHash);
  }
  const forged = signedInput('bson', generateKeyPair(), 'x', 1, 5);
  c.send(forged.msg);
  await expectRejected('bad_sig', forged.inputHash);

  // A valid input with a nonce beyond 2^53 (BSON carries it exactly as int64).
  const container = Buffer.from(serialize({ input: Buffer.from([0, 1, 2]), nonce: Long.fromBigInt(2n ** 60n + 1n), max_ledger_seq_no: Long.fromNumber(4) }));
  const good = signedInput('bson', c.keys, '', 0, 0, container);
  c.send(good.msg);
  await c.expectSilence();
  assert.equal(node.pending[0].input.nonce, 2n ** 60n + 1n);
  assert.deepEqual(node.pending[0].input.blob, Buffer.from([0, 1, 2]));
  const ledger = node.closeLedger({ outputs: () => [Buffer.from([0xde, 0xad]), Buffer.from('{"a":1}')] });
  const status = await c.nextMsg();
  assert.deepEqual(Object.keys(status), ['type', 'status', 'input_hash', 'ledger_seq_no', 'ledger_hash']);
  assert.equal(status.ledger_seq_no, 1n);
  const out = await c.nextMsg();
  assert.deepEqual(Object.keys(out), ['type', 'ledger_seq_no', 'ledger_hash', 'outputs', 'output_hash', 'hash_tree', 'unl_sig']);
  assert.equal(out.ledger_seq_no, 1n);
  assert.deepEqual((out.outputs as Binary[]).map((o) => hex(o.buffer)), ['dead', hex(Buffer.from('{"a":1}'))]);
  assert.equal(hex((out.output_hash as Binary).buffer), hex(userOutputHash(c.keys.publicKey, [Buffer.from([0xde, 0xad]), Buffer.from('{"a":1}')])));
  const tree = out.hash_tree as Array<Binary | null>;
  assert.equal(tree.length, 2); // [own leaf, state hash]
  assert.equal(tree[0], null);
  assert.equal(hex(collapsedTreeRoot([null, Buffer.from((tree[1] as Binary).buffer)], Buffer.from((out.output_hash as Binary).buffer))), hex(ledger.outputHash));
  // Ledger query: nonce comes back as int64, blobs as binary.
  c.send({ type: 'ledger_query', id: 'q1', filter_by: 'seq_no', params: { seq_no: Long.fromNumber(1) }, include: ['inputs'] });
  const q = await c.nextMsg();
  assert.equal(q.reply_for, 'q1');
  assert.equal(q.error, null);
  const rec = (q.results as Array<Record<string, unknown>>)[0];
  assert.deepEqual(Object.keys(rec), ['seq_no', 'timestamp', 'hash', 'prev_hash', 'state_hash', 'config_hash', 'user_hash', 'input_hash', 'output_hash', 'inputs']);
  assert.equal(rec.timestamp, 1_700_000_001_000n);
  const inp = (rec.inputs as Array<Record<string, unknown>>)[0];
  assert.equal(inp.nonce, 2n ** 60n + 1n);
  assert.equal(hex((inp.blob as Binary).buffer), '000102');
});

test('json: contract data is embedded raw when it looks like JSON (HotPocket quirk), else as a string', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  const c = await RawClient.user(t, server.url, 'json');
  const s = signedInput('json', c.keys, 'x', 1, 5);
  c.sendJson(s.msg);
  await waitFor(() => node.pending.length === 1, 'input admitted');
  const outs = ['{"a":1}', '"quoted"', '[1,2]', 'true', '12.5', 'plain text', '', '{oops}', '01', '1.2.3', 'with "quotes" and \\ and \n'];
  const ledger = node.closeLedger({ outputs: () => outs.map((o) => Buffer.from(o)) });
  await c.next(); // accepted status
  const text = await c.nextText();
  const h = userOutputHash(c.keys.publicKey, outs.map((o) => Buffer.from(o)));
  const expectedOutputs = '[{"a":1},"quoted",[1,2],true,12.5,"plain text","","{oops}","01","1.2.3","with \\"quotes\\" and \\\\ and \\n"]';
  assert.ok(text.startsWith(`{"type":"contract_output","ledger_seq_no":1,"ledger_hash":"${hex(ledger.hash)}","outputs":${expectedOutputs},"output_hash":"${hex(h)}","hash_tree":[null,"`), text);
  assert.match(text, /"unl_sig":\[\["ed[0-9a-f]{64}","[0-9a-f]{128}"\],\["ed[0-9a-f]{64}","[0-9a-f]{128}"\]\]\}$/);
  // Read responses follow the same rule, one message per output, reply_for = id.
  c.sendJson({ type: 'contract_read_request', id: 'r"1', content: '{"q":true}' });
  assert.equal(await c.nextText(), '{"type":"contract_read_response","reply_for":"r\\"1","content":"read:{\\"q\\":true}"}');
  assert.equal(await c.nextText(), '{"type":"contract_read_response","reply_for":"r\\"1","content":"second output"}');
  assert.deepEqual(node.reads.map(String), ['{"q":true}']);
});

test('json: ledger query results, not found and exec_failure are exact', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  const c = await RawClient.user(t, server.url, 'json');
  c.sendJson({ type: 'ledger_query', id: 'a', filter_by: 'seq_no', params: { seq_no: 7 }, include: ['inputs', 'outputs'] });
  assert.equal(await c.nextText(), '{"type":"ledger_query_result","reply_for":"a","error":null,"results":[]}');
  c.sendJson({ type: 'ledger_query', id: 'b', filter_by: 'seq_no', params: { seq_no: 999 }, include: [] });
  assert.equal(await c.nextText(), '{"type":"ledger_query_result","reply_for":"b","error":"exec_failure","results":[]}');
  c.sendJson({ type: 'ledger_query', id: 'c', filter_by: 'seq_no', params: { seq_no: 0 }, include: ['inputs', 'bogus'] });
  const z = '00'.repeat(32);
  assert.equal(
    await c.nextText(),
    `{"type":"ledger_query_result","reply_for":"c","error":null,"results":[{"seq_no":0,"timestamp":0,"hash":"${z}","prev_hash":"${z}","state_hash":"${z}","config_hash":"${z}","user_hash":"${z}","input_hash":"${z}","output_hash":"${z}","inputs":[]}]}`,
  );
});

test('subscriptions: only subscribers get ledger and UNL events, exact JSON', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node);
  const sub = await RawClient.user(t, server.url);
  const other = await RawClient.user(t, server.url);
  sub.sendJson({ type: 'subscription', channel: 'ledger_event', enabled: true });
  sub.sendJson({ type: 'subscription', channel: 'unl_change', enabled: true });
  sub.sendJson({ type: 'lcl' }); // ordering barrier: subscriptions are processed before this reply
  await sub.next();
  const ledger = node.closeLedger();
  const f = (b: Buffer) => hex(b);
  assert.equal(
    await sub.nextText(),
    `{"type":"ledger_event","event":"ledger_created","ledger":{"seq_no":1,"timestamp":1700000001000,"hash":"${f(ledger.hash)}","prev_hash":"${f(ledger.prevHash)}","state_hash":"${f(ledger.stateHash)}","config_hash":"${f(ledger.configHash)}","user_hash":"${f(ledger.userHash)}","input_hash":"${f(ledger.inputHash)}","output_hash":"${f(ledger.outputHash)}"}}`,
  );
  node.emit('vote_status', { voteStatus: 'unreliable' });
  assert.equal(await sub.nextText(), '{"type":"ledger_event","event":"vote_status","vote_status":"unreliable"}');
  node.emit('unl_change', { unl: [hex(node.publicKey)] });
  assert.equal(await sub.nextText(), `{"type":"unl_change","unl":["${hex(node.publicKey)}"]}`);
  await other.expectSilence();
  sub.sendJson({ type: 'subscription', channel: 'ledger_event', enabled: false });
  sub.sendJson({ type: 'lcl' });
  await sub.next();
  node.closeLedger();
  await sub.expectSilence();
});

test('read requests: ignored when disabled, bounded per session', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxConcurrentRequestsPerSession: 1, maxQueuedRequestsPerSession: 1, maxBadMsgsPerMin: 1000 } });
  const c = await RawClient.user(t, server.url);
  node.readsEnabled = false;
  c.sendJson({ type: 'contract_read_request', id: 'x', content: 'q' });
  c.sendJson({ type: 'lcl' });
  assert.match(await c.nextText(), /^\{"type":"lcl_response"/, 'the read produced no reply');
  node.readsEnabled = true;
  node.readDelayMs = 100;
  for (const id of ['1', '2', '3']) c.sendJson({ type: 'contract_read_request', id, content: id });
  const replies = [await c.nextText(), await c.nextText(), await c.nextText(), await c.nextText()].map((s) => JSON.parse(s).reply_for);
  assert.deepEqual(replies, ['1', '1', '2', '2'], 'one running, one queued, the third dropped');
  await c.expectSilence(250);
});

test('oversized frames close only the offender (1009)', async (t) => {
  const { server } = await startServer(t, new ModelNode(), { limits: { maxMessageBytes: 2048 } });
  const good = await RawClient.user(t, server.url);
  const bad = await RawClient.user(t, server.url);
  bad.ws.send(Buffer.alloc(4096, 0x61), { binary: true });
  assert.equal((await bad.closed).code, 1009);
  good.sendJson({ type: 'lcl' });
  assert.match(await good.nextText(), /^\{"type":"lcl_response"/);
});

test('bytes-per-minute limit closes only the offender', async (t) => {
  const { server } = await startServer(t, new ModelNode(), { limits: { maxBytesPerMin: 8192 } });
  const good = await RawClient.user(t, server.url);
  const bad = await RawClient.user(t, server.url);
  const filler = JSON.stringify({ type: 'lcl', pad: 'x'.repeat(1000) });
  for (let i = 0; i < 9; i++) bad.ws.send(Buffer.from(filler), { binary: true });
  assert.deepEqual(await bad.closed, { code: 1008, reason: 'rate limit: more than 8192 bytes received per minute' });
  good.sendJson({ type: 'lcl' });
  assert.match(await good.nextText(), /^\{"type":"lcl_response"/);
});

test('bad-messages-per-minute limit closes only the offender', async (t) => {
  const { server } = await startServer(t, new ModelNode(), { limits: { maxBadMsgsPerMin: 3 } });
  const good = await RawClient.user(t, server.url, 'bson');
  const bad = await RawClient.user(t, server.url);
  for (let i = 0; i < 4; i++) bad.ws.send(Buffer.from('garbage'), { binary: true });
  assert.deepEqual(await bad.closed, { code: 1008, reason: 'too many bad messages: more than 3 per minute' });
  good.send({ type: 'lcl' });
  assert.equal((await good.nextMsg()).type, 'lcl_response');
});

test('idle authenticated sessions are closed after idleTimeoutMs', async (t) => {
  const { server } = await startServer(t, new ModelNode(), { limits: { idleTimeoutMs: 200 } });
  const c = await RawClient.user(t, server.url);
  assert.deepEqual(await c.closed, { code: 1008, reason: 'idle timeout: no message for 200 ms' });
});

test('a client that stops reading is closed when its outbound buffer overflows', async (t) => {
  const node = new ModelNode();
  const { server } = await startServer(t, node, { limits: { maxOutboundBufferBytes: 1024 * 1024, closeGraceMs: 200 } });
  const slow = await RawClient.user(t, server.url);
  const good = await RawClient.user(t, server.url);
  slow.sendJson({ type: 'subscription', channel: 'ledger_event', enabled: true });
  slow.sendJson({ type: 'lcl' });
  await slow.next();
  slow.ws.pause(); // stop reading from the socket
  const big = Buffer.alloc(256 * 1024, 0x62);
  for (let i = 0; i < 200 && server.stats().users === 2; i++) {
    node.emit('contract_output', { user: slow.keys.publicKey, ledgerSeqNo: 1, ledgerHash: Buffer.alloc(32), outputs: [big], outputHash: Buffer.alloc(32), hashTree: [null, Buffer.alloc(32)], unlSig: [] });
    await sleep(1);
  }
  await waitFor(() => server.stats().users === 1, 'slow reader closed');
  good.sendJson({ type: 'lcl' });
  assert.match(await good.nextText(), /^\{"type":"lcl_response"/);
});

test('stop() closes every session with 1001 and releases the port', async (t) => {
  const node = new ModelNode();
  const server = new UserServer(node, { host: '127.0.0.1', port: 0, log: () => undefined });
  await server.start();
  const c = await RawClient.user(t, server.url);
  const pending = await RawClient.open(t, server.url);
  await server.stop();
  assert.deepEqual(await c.closed, { code: 1001, reason: 'server shutting down' });
  assert.equal((await pending.closed).code, 1001);
  assert.equal(node.listenerCount('contract_output'), 0, 'node listeners removed');
});

test('garbage never crashes the server: random frames from many connections', async (t) => {
  const node = new ModelNode();
  const { server, logs } = await startServer(t, node, { limits: { maxBadMsgsPerMin: 5 } });
  const clients = await Promise.all([0, 1, 2, 3].map((i) => RawClient.user(t, server.url, i % 2 ? 'bson' : 'json')));
  for (let round = 0; round < 10; round++) {
    for (const c of clients) {
      const r = Math.random();
      const frame = r < 0.3 ? randomBytes(Math.floor(Math.random() * 300)) : r < 0.6 ? Buffer.from(serialize({ type: 'contract_input', input_container: randomBytes(20), sig: randomBytes(64) })) : Buffer.from(JSON.stringify({ type: 'ledger_query', id: 'x', filter_by: 'seq_no', params: { seq_no: Math.random() * 1e20 }, include: 'no' }));
      if (c.ws.readyState === WebSocket.OPEN) c.ws.send(frame, { binary: Math.random() < 0.9 });
    }
  }
  await Promise.all(clients.map((c) => c.closed));
  const fresh = await RawClient.user(t, server.url);
  fresh.sendJson({ type: 'lcl' });
  assert.match(await fresh.nextText(), /^\{"type":"lcl_response"/);
  assert.deepEqual(logs.filter((l) => l.startsWith('error')), []);
});

// ---------------------------------------------------------------------------------------------
// Pure helpers

test('output tree: every user of a multi-level tree folds back to the signed root', () => {
  for (const users of [1, 2, 15, 16, 17, 40, 300]) {
    const hashes = Array.from({ length: users }, (_, i) => userOutputHash(Buffer.concat([Buffer.from([0xed]), hash(Buffer.from(`u${i}`))]), [Buffer.from(`out ${i}`)]));
    const state = hash(Buffer.from('state'));
    const tree = buildOutputTree(hashes, state);
    for (const h of hashes) assert.equal(hex(collapsedTreeRoot(collapseForUser(tree, h), h)), hex(tree.hash), `users=${users}`);
  }
  // Two leaves: root = blake3(sorted user hash ‖ state hash); a lone group child is promoted.
  const a = hash(Buffer.from('a'));
  const s = hash(Buffer.from('s'));
  assert.equal(hex(buildOutputTree([a], s).hash), hex(hash(Buffer.concat([a, s]))));
  const leaves17 = Array.from({ length: 17 }, (_, i) => hash(Buffer.from([i])));
  const t17 = buildMerkleTree(leaves17);
  assert.equal(t17.children.length, 2);
  assert.equal(t17.children[1].children.length, 0, 'the 17th leaf is promoted, not wrapped');
  assert.equal(hex(t17.children[1].hash), hex(leaves17[16]));
  assert.equal(hex(t17.hash), hex(hash(Buffer.concat([hash(Buffer.concat(leaves17.slice(0, 16))), leaves17[16]]))));
  assert.throws(() => collapseForUser(buildOutputTree([a], s), hash(Buffer.from('nope'))), /is not a leaf/);
});

test('generateTlsCertificate: a self-signed P-256 certificate with the given common name', async () => {
  const { cert, key } = await generateTlsCertificate('ed00.hotpocket.contract', { validDays: 30 });
  const x509 = new X509Certificate(cert);
  assert.match(x509.subject, /CN=ed00\.hotpocket\.contract/);
  assert.equal(x509.publicKey.asymmetricKeyType, 'ec');
  assert.ok(x509.checkPrivateKey(createPrivateKey(key)));
  const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
  assert.ok(days > 29 && days < 31, `validity ${days} days`);
});

test('JSON embedding heuristic matches HotPocket is_json_string (inverted) plus a validity guard', () => {
  for (const raw of ['{}', '{"a":1}', '[]', '"x"', 'true', 'false', '123', '1.5', '.', '1.', '01']) assert.equal(looksLikeJson(raw), true, raw);
  for (const str of ['', 'x', 'True', '1.2.3', '-1', '1e5', '{', '"x', ' {}', 'null']) assert.equal(looksLikeJson(str), false, str);
  assert.equal(embedContractData(Buffer.from('{"a":1}')), '{"a":1}');
  assert.equal(embedContractData(Buffer.from('01')), '"01"');
  assert.equal(embedContractData(Buffer.from('.')), '"."');
  assert.equal(embedContractData(Buffer.from('null')), '"null"');
  assert.equal(closeReason('x'.repeat(200)).length <= 123, true);
  assert.equal(Buffer.byteLength(closeReason('é'.repeat(100))) <= 123, true);
});
