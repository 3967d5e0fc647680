// UNL members' signatures of each execution's output root, in HotPocket's format (a raw Ed25519
// signature of the 32-byte root), which `contract_output.unl_sig` carries so the upstream client
// can check that ≥ 80 % of the UNL produced the same outputs. Signatures arrive before or after
// our own execution, so they are kept per (seq, signer) and checked against the root we need.
import { verify } from '../crypto/keys';

/** Seqs kept behind the newest one seen: outputs of N are delivered when ledger N+1 closes. */
const KEEP_SEQS = 8;

export class OutputSigBook {
  private readonly bySeq = new Map<number, Map<string, { root: Buffer; sig: Buffer }>>();
  private newest = 0;

  constructor(private readonly isMember: (pubkeyHex: string) => boolean) {}

  /** Keeps the first signature each member sends for a seq (a second one cannot help anyone). */
  add(seqNo: number, signerHex: string, root: Buffer, sig: Buffer): void {
    if (!this.isMember(signerHex) || seqNo + KEEP_SEQS < this.newest) return;
    let m = this.bySeq.get(seqNo);
    if (!m) {
      m = new Map();
      this.bySeq.set(seqNo, m);
    }
    if (m.size >= 1024 || m.has(signerHex)) return;
    m.set(signerHex, { root, sig });
    if (seqNo > this.newest) {
      this.newest = seqNo;
      for (const s of this.bySeq.keys()) if (s + KEEP_SEQS < seqNo) this.bySeq.delete(s);
    }
  }

  /** [pubkey, sig] of every member whose signature verifies over `root` for `seqNo`. */
  signers(seqNo: number, root: Buffer): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const [hex, e] of this.bySeq.get(seqNo) ?? []) {
      const pk = Buffer.from(hex, 'hex');
      if (e.root.equals(root) && this.isMember(hex) && verify(root, e.sig, pk)) out.push([pk, e.sig]);
    }
    return out.sort((a, b) => Buffer.compare(a[0], b[0]));
  }
}
