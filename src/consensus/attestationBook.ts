// Attestations ("I closed ledger N as H", signed 'ledger-close') by seq. A member attesting two
// hashes at one seq signed a fork: both are kept as evidence and none of its attestations at that
// seq count. A quorum of the rest for one hash is the ledger's certificate.
import type { QuorumSignature } from '../ledger/ledgerHash';
import type { Attestation } from './types';

export type AttestOutcome = { kind: 'added' } | { kind: 'duplicate' } | { kind: 'equivocation'; first: Attestation };

export class AttestationBook {
  private readonly bySeq = new Map<number, Map<string, Attestation>>();
  private readonly equivocators = new Map<number, Set<string>>();

  add(a: Attestation, authorHex: string): AttestOutcome {
    const eq = this.equivocators.get(a.seqNo);
    if (eq?.has(authorHex)) return { kind: 'duplicate' };
    let m = this.bySeq.get(a.seqNo);
    if (!m) {
      m = new Map();
      this.bySeq.set(a.seqNo, m);
    }
    const first = m.get(authorHex);
    if (!first) {
      m.set(authorHex, a);
      return { kind: 'added' };
    }
    if (first.hash.equals(a.hash)) return { kind: 'duplicate' };
    m.delete(authorHex);
    const set = eq ?? new Set<string>();
    set.add(authorHex);
    this.equivocators.set(a.seqNo, set);
    return { kind: 'equivocation', first };
  }

  /** The certificate so far for (seqNo, hash), sorted by pubkey. */
  signatures(seqNo: number, hash: Buffer): QuorumSignature[] {
    const out: QuorumSignature[] = [];
    for (const a of this.bySeq.get(seqNo)?.values() ?? []) if (a.hash.equals(hash)) out.push({ pubkey: a.author, sig: a.sig });
    return out.sort((x, y) => Buffer.compare(x.pubkey, y.pubkey));
  }

  /** Forget seqs before `seqNo` (closed: their certificates are on disk). */
  prune(seqNo: number): void {
    for (const s of this.bySeq.keys()) if (s < seqNo) this.bySeq.delete(s);
    for (const s of this.equivocators.keys()) if (s < seqNo) this.equivocators.delete(s);
  }
}
