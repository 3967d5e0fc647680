// The inputs this node can vote for: those whose bodies the shell holds (candidates), those already
// in a decided ledger (never proposed again), and the bodies it asked the shell to fetch. Also the
// stage ladder's item counting: which inputs and users enough of the UNL proposed.
import { PUBLIC_KEY_BYTES } from '../crypto/keys';
import type { CandidateInput, ConsensusLimits, Value } from './types';
import { ORDERED_HASH_BYTES } from './types';
import { sortedUnique } from './value';

// Map keys for inputs and users: binary strings (one char per byte) are cheaper to build than hex
// and never shown to people; their string order is byte order. Lists are immutable once built or
// decoded, so each is keyed once.
export const key = (b: Buffer): string => b.toString('latin1');
const listKeys = new WeakMap<readonly Buffer[], string[]>();
export function keysOf(list: readonly Buffer[]): string[] {
  let ks = listKeys.get(list);
  if (!ks) {
    ks = list.map(key);
    listKeys.set(list, ks);
  }
  return ks;
}

/** An input whose body the shell holds, with its map keys. */
export interface Held extends CandidateInput {
  key: string;
  userKey: string;
}

const byKey = (a: Held, b: Held): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * The k smallest items in ascending order (reorders `items`): a quickselect, then a sort of those
 * k only. A stage-0 proposal under load takes a few hundred inputs from a pool of thousands, and
 * sorting the whole pool every round was a tenth of a loaded node's CPU.
 */
export function smallestSorted<T>(items: T[], k: number, cmp: (a: T, b: T) => number): T[] {
  if (k >= items.length) return items.sort(cmp);
  if (k <= 0) return [];
  const t = k - 1;
  let lo = 0;
  let hi = items.length - 1;
  while (lo < hi) {
    const pivot = items[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (cmp(items[i], pivot) < 0) i++;
      while (cmp(items[j], pivot) > 0) j--;
      if (i <= j) {
        const x = items[i];
        items[i] = items[j];
        items[j] = x;
        i++;
        j--;
      }
    }
    if (t <= j) hi = j;
    else if (t >= i) lo = i;
    else break; // t sits among items equal to the pivot
  }
  return items.slice(0, k).sort(cmp);
}

/** What a proposal contributes to item counting. */
export interface ItemProposal {
  inputs: Buffer[];
  users: Buffer[];
}

type Bounds = Pick<ConsensusLimits, 'maxInputsPerLedger' | 'maxUsersPerLedger' | 'maxCandidateInputs' | 'includedMemorySeqs'>;

export class InputBook {
  private readonly held = new Map<string, Held>();
  private readonly included = new Map<string, number>(); // key → forget after this seq
  private readonly fetched = new Map<string, number>(); // key → round in which we last asked for it
  private connected: Buffer[] = [];

  constructor(private readonly limits: Bounds) {}

  get size(): number {
    return this.held.size;
  }

  /** Admits bodies the shell holds; returns the keys it added or already knew of. */
  offer(inputs: CandidateInput[], seqNo: number): string[] {
    const seen: string[] = [];
    for (const i of inputs) {
      if (!Buffer.isBuffer(i.hash) || i.hash.length !== ORDERED_HASH_BYTES || !Buffer.isBuffer(i.user) || i.user.length !== PUBLIC_KEY_BYTES || !Number.isSafeInteger(i.maxLedgerSeqNo)) continue;
      const k = key(i.hash);
      seen.push(k);
      if (this.included.has(k) || this.held.has(k) || i.maxLedgerSeqNo < seqNo) continue;
      if (this.held.size >= this.limits.maxCandidateInputs) continue; // the shell's pool bounds this too
      this.held.set(k, { hash: i.hash, user: i.user, maxLedgerSeqNo: i.maxLedgerSeqNo, key: k, userKey: key(i.user) });
    }
    return seen;
  }

  setConnectedUsers(users: Buffer[]): void {
    const ok = users.filter((u) => Buffer.isBuffer(u) && u.length === PUBLIC_KEY_BYTES);
    this.connected = sortedUnique(ok).slice(0, this.limits.maxUsersPerLedger);
  }

  /** Stage 0: what we hold that ledger seqNo may include (the first `cap` in key order), plus the connected users. */
  own(seqNo: number, cap = this.limits.maxInputsPerLedger): { inputs: Buffer[]; users: Buffer[] } {
    const pool = [...this.held.values()].filter((c) => c.maxLedgerSeqNo >= seqNo);
    // Twice the cap: room for inputs assemble() skips when their author would pass the user bound.
    return this.assemble(smallestSorted(pool, 2 * Math.min(cap, this.limits.maxInputsPerLedger), byKey), this.connected, cap);
  }

  /** Stages 1–2: items at least `need` proposals carry, restricted to inputs whose bodies we hold. */
  keep(props: ItemProposal[], need: number, seqNo: number): { inputs: Buffer[]; users: Buffer[] } {
    const inputVotes = new Map<string, number>();
    const userVotes = new Map<string, { user: Buffer; n: number }>();
    for (const p of props) {
      for (const k of keysOf(p.inputs)) inputVotes.set(k, (inputVotes.get(k) ?? 0) + 1);
      const uks = keysOf(p.users);
      for (let i = 0; i < uks.length; i++) {
        const e = userVotes.get(uks[i]);
        if (e) e.n++;
        else userVotes.set(uks[i], { user: p.users[i], n: 1 });
      }
    }
    const pool: Held[] = [];
    for (const [k, n] of inputVotes) {
      const c = this.held.get(k);
      if (n >= need && c && c.maxLedgerSeqNo >= seqNo) pool.push(c);
    }
    const users: Buffer[] = [];
    for (const e of userVotes.values()) if (e.n >= need) users.push(e.user);
    return this.assemble(pool.sort(byKey), users);
  }

  /** Bounded, sorted input and user lists; every kept input's author is among the users. */
  private assemble(sortedPool: Held[], extraUsers: Buffer[], cap = this.limits.maxInputsPerLedger): { inputs: Buffer[]; users: Buffer[] } {
    const inputs: Buffer[] = [];
    const authors = new Map<string, Buffer>();
    for (const c of sortedPool) {
      if (inputs.length >= Math.min(cap, this.limits.maxInputsPerLedger)) break;
      if (!authors.has(c.userKey)) {
        if (authors.size >= this.limits.maxUsersPerLedger) continue;
        authors.set(c.userKey, c.user);
      }
      inputs.push(c.hash);
    }
    for (const u of sortedUnique(extraUsers)) {
      if (authors.size >= this.limits.maxUsersPerLedger) break;
      const k = key(u);
      if (!authors.has(k)) authors.set(k, u);
    }
    return { inputs, users: [...authors.values()].sort(Buffer.compare) };
  }

  /** Why this node could not execute `v`'s inputs as ledger seqNo, or null. */
  problemWith(v: Value, seqNo: number): string | null {
    const users = new Set(keysOf(v.users));
    const ks = keysOf(v.inputs);
    for (let i = 0; i < ks.length; i++) {
      const c = this.held.get(ks[i]);
      if (!c) return `input ${v.inputs[i].toString('hex').slice(16, 28)} not held`;
      if (c.maxLedgerSeqNo < seqNo) return 'input expired';
      if (!users.has(c.userKey)) return 'input author not among users';
    }
    return null;
  }

  /**
   * Inputs at least `need` proposals carry (and every input of `wantedValues`) whose bodies we
   * lack and have not asked for in the last two rounds: a node that leaves out what the others
   * keep splits the prevotes, so the shell fetches them from the proposers. Bounded by one ledger.
   */
  toFetch(props: (ItemProposal & { author: Buffer })[], need: number, wantedValues: (Value | undefined)[], roundMs: number, roundtimeMs: number): { hashes: Buffer[]; from: Buffer[] } {
    const counts = new Map<string, { hash: Buffer; n: number }>();
    const lacking = (k: string): boolean => !this.held.has(k) && !this.included.has(k);
    for (const v of wantedValues) {
      if (!v) continue;
      const ks = keysOf(v.inputs);
      for (let i = 0; i < ks.length; i++) if (lacking(ks[i])) counts.set(ks[i], { hash: v.inputs[i], n: Infinity });
    }
    for (const p of props) {
      const ks = keysOf(p.inputs);
      for (let i = 0; i < ks.length; i++) {
        if (!lacking(ks[i])) continue;
        const e = counts.get(ks[i]);
        if (e) e.n++;
        else counts.set(ks[i], { hash: p.inputs[i], n: 1 });
      }
    }
    if (counts.size === 0) return { hashes: [], from: [] };
    const again = roundMs - 2 * roundtimeMs;
    for (const [k, r] of this.fetched) if (r <= again) this.fetched.delete(k);
    const wanted = new Map<string, Buffer>();
    for (const [k, e] of counts) {
      if (e.n < need || this.fetched.has(k) || wanted.size >= this.limits.maxInputsPerLedger) continue;
      this.fetched.set(k, roundMs);
      wanted.set(k, e.hash);
    }
    const from = props.filter((p) => keysOf(p.inputs).some((k) => wanted.has(k))).map((p) => p.author);
    return { hashes: [...wanted.values()].sort(Buffer.compare), from };
  }

  /** Ledger seqNo took these inputs: never propose them again; drop what expires with it.
   *  Returns the keys of those whose bodies we do not hold. */
  consume(inputs: readonly Buffer[], seqNo: number): Set<string> {
    const missing = new Set<string>();
    for (const k of keysOf(inputs)) {
      const c = this.held.get(k);
      if (!c) missing.add(k);
      this.held.delete(k);
      this.included.set(k, c ? c.maxLedgerSeqNo : seqNo + this.limits.includedMemorySeqs);
    }
    this.expire(seqNo);
    return missing;
  }

  /** Inputs a sync brought in ledgers up to seqNo. */
  consumeSynced(inputs: readonly Buffer[], seqNo: number): void {
    for (const h of inputs) {
      const k = key(h);
      this.held.delete(k);
      this.included.set(k, seqNo + this.limits.includedMemorySeqs);
    }
    this.expire(seqNo);
  }

  /** Ledger seqNo is decided: inputs valid only up to it can no longer be included. */
  private expire(seqNo: number): void {
    for (const [k, until] of this.included) if (until < seqNo) this.included.delete(k);
    for (const [k, c] of this.held) if (c.maxLedgerSeqNo <= seqNo) this.held.delete(k);
  }
}
