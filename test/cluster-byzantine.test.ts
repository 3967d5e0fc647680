// A Byzantine UNL member against three honest node processes. The harness runs four real nodes,
// kills the fourth and takes over its key and peer port with a PeerNetwork of its own that lies:
// equivocating prevotes, wrong state results, garbage before and after the handshake, replays of
// honest messages, and user inputs with forged signatures. At T = 66 % the quorum is 3 of 4, so
// the honest three close ledgers alone; the lies must change nothing they agree on.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { readConfig } from '../src/config/nodeConfig';
import { decodeProposalBody, encodeProposalBody } from '../src/consensus/proposalCodec';
import { DEFAULT_LIMITS, Proposal } from '../src/consensus/types';
import { generateKeyPair, sign } from '../src/crypto/keys';
import { KIND, encodeInputs } from '../src/node/peerMessages';
import { PeerMessage } from '../src/p2p/network';
import { REPO_ROOT } from './helpers/fixtures';
import { RawUser } from './helpers/rawUser';
import { impersonate, minLcl, startTestCluster } from './helpers/cluster';

const ENV = { NODE_PATH: path.join(REPO_ROOT, 'node_modules') };
const HONEST = [0, 1, 2];


const rand = () => crypto.randomBytes(32);

test('a Byzantine member (equivocation, wrong state, garbage, replays, forged inputs) cannot split or stop the honest nodes', async (t) => {
  const c = await startTestCluster(t, { nodes: 4, contractDir: path.join(REPO_ROOT, 'examples', 'echo', 'contract'), contractEnv: ENV, roundtimeMs: 500, thresholdPercent: 66 });
  await c.waitFor(async () => (await minLcl(c, [0, 1, 2, 3])) >= 2, 60_000, 'the 4-node cluster closes ledgers');
  // The liar: node 4's key and address, its own rules.
  const { net: byz, keys } = await impersonate(t, c, 3);

  const seen: PeerMessage[] = [];
  const lies = { equivocations: 0, wrongResults: 0, replays: 0, garbage: 0, forged: 0 };
  byz.on('message', (m) => {
    if (seen.length < 2000) seen.push(m);
    if (m.kind !== KIND.proposal || !(m.body instanceof Uint8Array)) return;
    let p: Proposal;
    try {
      p = decodeProposalBody(Buffer.from(m.body), DEFAULT_LIMITS);
    } catch {
      return;
    }
    if (p.stage !== 0) return;
    const base = { contractId: p.contractId, seqNo: p.seqNo, roundMs: p.roundMs, prevHash: p.prevHash };
    const wrong = () => ({ outputRoot: rand(), stateRoot: rand(), configHash: rand() });
    // A result nobody else has, in stages 0 and 1.
    byz.broadcast(KIND.proposal, encodeProposalBody({ ...base, stage: 0, result: wrong(), inputs: [], users: [], pol: null }), { relay: true });
    byz.broadcast(KIND.proposal, encodeProposalBody({ ...base, stage: 1, result: wrong(), inputs: [], users: [], pol: null }), { relay: true });
    lies.wrongResults += 2;
    // Two different prevotes and precommits for the same slot.
    for (const stage of [2, 3] as const) {
      for (let k = 0; k < 2; k++) {
        const value = { seqNo: p.seqNo, timestampMs: p.roundMs, prevHash: p.prevHash, result: wrong(), inputs: [], users: [] };
        byz.broadcast(KIND.proposal, encodeProposalBody({ ...base, stage, value }), { relay: true });
      }
      lies.equivocations++;
    }
    // Replays: honest messages from a few rounds ago, forwarded again unchanged.
    for (const old of seen.splice(0, Math.max(0, seen.length - 50)).slice(0, 20)) {
      byz.forward({ context: old.context, kind: old.kind, author: Buffer.from(old.author, 'hex'), flags: old.flags, body: Buffer.from(old.body as Uint8Array), sig: Buffer.from(old.sig) });
      lies.replays++;
    }
  });

  // Garbage after the handshake (signed by us, so it is our fault) and before it (raw TCP junk).
  const garbage = setInterval(() => {
    byz.broadcast(KIND.proposal, crypto.randomBytes(120), { relay: true });
    byz.broadcast(KIND.inputs, { i: 'not a list' }, { relay: true });
    lies.garbage += 2;
    const s = net.connect(readConfig(path.join(c.dirs[0], 'config.json')).mesh.port, '127.0.0.1', () => s.end(crypto.randomBytes(300)));
    s.on('error', () => undefined);
  }, 700);
  t.after(() => clearInterval(garbage));

  // User inputs whose signature is not the claimed user's.
  const victim = generateKeyPair();
  const forger = generateKeyPair();
  const forgedInputs = setInterval(() => {
    const container = Buffer.from(JSON.stringify({ input: 'transfer everything to the forger', nonce: Date.now(), max_ledger_seq_no: 1_000_000 }));
    byz.broadcast(KIND.inputs, encodeInputs([{ protocol: 'json', user: victim.publicKey, container, sig: sign(container, forger.secretKey) }]), { relay: true });
    lies.forged++;
  }, 500);
  t.after(() => clearInterval(forgedInputs));

  // Meanwhile a real user's input goes in through node 1.
  const start = await minLcl(c, HONEST);
  const u = await RawUser.connect(c.userUrls[0]);
  t.after(() => u.close());
  const inputHash = u.submit('an honest input', 1, start + 8);
  const status = await u.next((m) => m.type === 'contract_input_status' && m.input_hash === inputHash, 30_000);
  assert.equal(status.status, 'accepted', JSON.stringify(status));

  await c.waitFor(async () => (await minLcl(c, HONEST)) >= start + 8, 90_000, 'the honest nodes keep closing ledgers under attack');
  clearInterval(garbage);
  clearInterval(forgedInputs);
  assert.ok(lies.equivocations > 4 && lies.wrongResults > 4 && lies.replays > 0 && lies.forged > 4, `the liar lied: ${JSON.stringify(lies)}`);

  // One history among the honest: every seq has one hash, the honest input is in it exactly there.
  const upTo = await minLcl(c, HONEST);
  for (let s = 1; s <= upTo; s++) {
    const hashes = new Set(await Promise.all(HONEST.map((i) => c.ledgerHash(i, s))));
    assert.equal(hashes.size, 1, `ledger ${s} differs between honest nodes: ${[...hashes].join(' vs ')}`);
  }
  for (const i of HONEST) assert.equal(await c.ledgerHash(i, status.ledger_seq_no), status.ledger_hash);
  // What they noticed: the equivocation (as signed evidence) and the forged inputs.
  const logs = HONEST.flatMap((i) => c.logs(i));
  const liar = keys.publicKey.toString('hex');
  assert.ok(logs.some((l) => l.includes('EVIDENCE proposal-equivocation') && l.includes(liar)), 'equivocation evidence against the liar is logged');
  assert.ok(logs.some((l) => /dropped \d+ relayed input\(s\) whose user signature or format is invalid/.test(l)), 'forged inputs are dropped and logged');
  // The garbage and forgeries never made it into a ledger: every accepted input is the honest one.
  const ledgerWithInput = await new Promise<Record<string, any>>((resolve, reject) => {
    u.send({ type: 'ledger_query', id: 'q1', filter_by: 'seq_no', params: { seq_no: status.ledger_seq_no }, include: ['inputs'] });
    u.next((m) => m.type === 'ledger_query_result' && m.reply_for === 'q1', 10_000).then(resolve, reject);
  });
  const inputs = ledgerWithInput.results[0].inputs as Array<{ pubkey: string }>;
  assert.deepEqual(inputs.map((i) => i.pubkey), [u.keys.publicKey.toString('hex')]);
});
