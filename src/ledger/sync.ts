// Checks on ledger records fetched from a peer (ledger catch-up): nothing the serving peer says is
// trusted beyond what the UNL signed. A record is accepted only if it extends our chain, is
// consistent in itself, carries a quorum certificate (≥ q distinct UNL members signing
// 'ledger-close' over its hash), and every input in it is the one its user signed (the header
// commits to input hashes = blake3(sig); the container and blob are checked against the signature).
import { verifyIn } from '../crypto/domain';
import { checkSignedInput } from '../users/inputs';
import type { LedgerRecord } from './ledgerHash';
import { recordProblem } from './ledgerHash';

export interface ChainTip {
  seqNo: number;
  hash: Buffer;
  timestampMs: number;
}

export interface CertificateRules {
  contractId: string;
  unl: ReadonlySet<string>; // lower-case hex keys
  quorum: number;
}

/** Distinct UNL members whose 'ledger-close' signature over `rec.hash` verifies. */
export function certifiedBy(rec: Pick<LedgerRecord, 'hash' | 'quorum'>, rules: CertificateRules): number {
  const seen = new Set<string>();
  for (const q of rec.quorum) {
    const k = q.pubkey.toString('hex');
    if (seen.has(k) || !rules.unl.has(k)) continue;
    if (verifyIn('ledger-close', rules.contractId, rec.hash, q.sig, q.pubkey)) seen.add(k);
  }
  return seen.size;
}

/** What is wrong with `rec` as the ledger after `tip`, or null. */
export function fetchedRecordProblem(rec: LedgerRecord, tip: ChainTip, rules: CertificateRules): string | null {
  const at = `ledger ${rec.seqNo}`;
  if (rec.seqNo !== tip.seqNo + 1) return `${at}: expected ledger ${tip.seqNo + 1}`;
  if (!rec.prevHash.equals(tip.hash)) return `${at}: prevHash ${rec.prevHash.toString('hex').slice(0, 12)} does not link to ledger ${tip.seqNo} (${tip.hash.toString('hex').slice(0, 12)})`;
  if (rec.timestampMs <= tip.timestampMs) return `${at}: timestamp ${rec.timestampMs} is not after ledger ${tip.seqNo}'s`;
  const p = recordProblem(rec);
  if (p) return p;
  const n = certifiedBy(rec, rules);
  if (n < rules.quorum) return `${at}: certificate has ${n} valid UNL signatures, the quorum is ${rules.quorum}`;
  const users = new Set(rec.users.map((u) => u.toString('hex')));
  for (const [k, i] of rec.inputs.entries()) {
    const c = checkSignedInput(i.protocol, i.pubkey, i.container, i.sig);
    if (!c.ok) return `${at}: inputs[${k}]: ${c.detail}`;
    if (!c.input.blob.equals(i.blob) || c.input.nonce !== i.nonce) return `${at}: inputs[${k}]: blob or nonce differs from the signed container`;
    if (c.input.maxLedgerSeqNo < rec.seqNo) return `${at}: inputs[${k}] expired at ledger ${c.input.maxLedgerSeqNo}`;
    if (!users.has(i.pubkey.toString('hex'))) return `${at}: inputs[${k}]: author is not among the ledger's users`;
  }
  return null;
}
