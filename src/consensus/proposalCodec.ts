// Canonical bytes of proposals and attestations. The body encoding is what the author signs
// (signIn('proposal', contractId, body), or as the body of a p2p envelope with fixed flags), so
// it must be one deterministic function of the proposal; a stage-2 body is rebuilt from a PolCert
// entry to check its signature (prevoteOf). Integers are big-endian; every list is count-prefixed.
//
//   body  = "hpn:prop" ‖ u8 version ‖ u8 stage ‖ u16 len ‖ contractId ‖ u64 seqNo ‖ u64 roundMs ‖ prevHash
//           stage 0/1: u8 flags(1 result, 2 pol) ‖ [result] ‖ list(ordered hash 40) ‖ list(pubkey 33) ‖ [pol]
//           stage 2/3: u8 hasValue ‖ [value]
//   value = u64 seqNo ‖ u64 timestampMs ‖ prevHash ‖ result ‖ list(ordered hash) ‖ list(pubkey)
//   result = outputRoot ‖ stateRoot ‖ configHash;   pol = u64 roundMs ‖ value ‖ u16 n ‖ n × (pubkey ‖ sig)
//   signed proposal on the wire = author(33) ‖ sig(64) ‖ body
//   attestation on the wire     = "hpn:att\0" ‖ u64 seqNo ‖ hash ‖ author ‖ sig
//   persisted lock (disk)       = "hpn:lock" ‖ u64 seqNo ‖ u64 roundMs ‖ pol
import { hash, HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';
import { isAscending, ListBounds, resultProblem, valueProblem } from './value';
import type { Attestation, ExecResult, PersistedLock, PolCert, Proposal, SignedProposal, Value } from './types';
import { isVoteProposal, ORDERED_HASH_BYTES } from './types';

const PROP_MAGIC = Buffer.from('hpn:prop');
const ATT_MAGIC = Buffer.from('hpn:att\0');
const LOCK_MAGIC = Buffer.from('hpn:lock');
const VERSION = 1;
const FLAG_RESULT = 1;
const FLAG_POL = 2;
/** A PolCert never needs more signatures than a UNL has members; this bounds decoding. */
export const MAX_POL_SIGS = 1024;
const MAX_CONTRACT_ID_BYTES = 256;

export class ProposalCodecError extends Error {}

/** Writes into one growing buffer (proposals are small; this avoids a Buffer per field). */
class Writer {
  private buf = Buffer.allocUnsafe(512);
  private o = 0;
  private room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.o + n));
    this.buf.copy(bigger, 0, 0, this.o);
    this.buf = bigger;
  }
  u8(n: number): void {
    this.room(1);
    this.buf[this.o++] = n;
  }
  u16(n: number): void {
    this.room(2);
    this.o = this.buf.writeUInt16BE(n, this.o);
  }
  u32(n: number): void {
    this.room(4);
    this.o = this.buf.writeUInt32BE(n, this.o);
  }
  u64(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new ProposalCodecError(`cannot encode ${n} as u64`);
    this.room(8);
    this.o = this.buf.writeUInt32BE(Math.floor(n / 2 ** 32), this.o);
    this.o = this.buf.writeUInt32BE(n % 2 ** 32, this.o);
  }
  fixed(b: Buffer, len: number, what: string): void {
    if (!Buffer.isBuffer(b) || b.length !== len) throw new ProposalCodecError(`${what} must be ${len} bytes`);
    this.room(len);
    this.o += b.copy(this.buf, this.o);
  }
  list(items: readonly Buffer[], len: number, what: string): void {
    this.u32(items.length);
    for (const b of items) this.fixed(b, len, what);
  }
  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.o));
  }
}

/** Reads fields as views of one private copy of the message (never of the shell's receive buffer). */
class Reader {
  o = 0;
  private readonly buf: Buffer;
  constructor(src: Buffer) {
    this.buf = Buffer.from(src);
  }
  take(n: number): Buffer {
    if (this.o + n > this.buf.length) throw new ProposalCodecError(`message ends early: need ${n} bytes at ${this.o} of ${this.buf.length}`);
    const b = this.buf.subarray(this.o, this.o + n);
    this.o += n;
    return b;
  }
  u8(): number {
    if (this.o + 1 > this.buf.length) throw new ProposalCodecError('message ends early');
    return this.buf[this.o++];
  }
  u16(): number {
    if (this.o + 2 > this.buf.length) throw new ProposalCodecError('message ends early');
    const v = this.buf.readUInt16BE(this.o);
    this.o += 2;
    return v;
  }
  u32(): number {
    if (this.o + 4 > this.buf.length) throw new ProposalCodecError('message ends early');
    const v = this.buf.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }
  u64(what: string): number {
    if (this.o + 8 > this.buf.length) throw new ProposalCodecError('message ends early');
    const hi = this.buf.readUInt32BE(this.o);
    const lo = this.buf.readUInt32BE(this.o + 4);
    this.o += 8;
    if (hi >= 2 ** 21) throw new ProposalCodecError(`${what} is beyond 2^53`);
    return hi * 2 ** 32 + lo;
  }
  list(len: number, max: number, what: string): Buffer[] {
    const n = this.u32();
    if (n > max) throw new ProposalCodecError(`${what}: ${n} items, limit ${max}`);
    if (n * len > this.buf.length - this.o) throw new ProposalCodecError(`${what}: count ${n} exceeds the remaining bytes`);
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) out.push(this.take(len));
    return out;
  }
  end(): void {
    if (this.o !== this.buf.length) throw new ProposalCodecError(`${this.buf.length - this.o} trailing bytes`);
  }
}

function writeResult(w: Writer, r: ExecResult): void {
  w.fixed(r.outputRoot, HASH_BYTES, 'outputRoot');
  w.fixed(r.stateRoot, HASH_BYTES, 'stateRoot');
  w.fixed(r.configHash, HASH_BYTES, 'configHash');
}

function readResult(r: Reader): ExecResult {
  return { outputRoot: r.take(HASH_BYTES), stateRoot: r.take(HASH_BYTES), configHash: r.take(HASH_BYTES) };
}

function writeValue(w: Writer, v: Value): void {
  w.u64(v.seqNo);
  w.u64(v.timestampMs);
  w.fixed(v.prevHash, HASH_BYTES, 'value prevHash');
  writeResult(w, v.result);
  w.list(v.inputs, ORDERED_HASH_BYTES, 'ordered input hash');
  w.list(v.users, PUBLIC_KEY_BYTES, 'user pubkey');
}

function readValue(r: Reader, b: ListBounds): Value {
  const seqNo = r.u64('value seqNo');
  const timestampMs = r.u64('value timestampMs');
  const prevHash = r.take(HASH_BYTES);
  const result = readResult(r);
  const inputs = r.list(ORDERED_HASH_BYTES, b.maxInputsPerLedger, 'value inputs');
  const users = r.list(PUBLIC_KEY_BYTES, b.maxUsersPerLedger, 'value users');
  return { seqNo, timestampMs, prevHash, result, inputs, users };
}

function writePol(w: Writer, pol: PolCert): void {
  w.u64(pol.roundMs);
  writeValue(w, pol.value);
  if (pol.sigs.length > MAX_POL_SIGS) throw new ProposalCodecError(`pol has ${pol.sigs.length} signatures, limit ${MAX_POL_SIGS}`);
  w.u16(pol.sigs.length);
  for (const s of pol.sigs) {
    w.fixed(s.pubkey, PUBLIC_KEY_BYTES, 'pol pubkey');
    w.fixed(s.sig, SIGNATURE_BYTES, 'pol sig');
  }
}

function readPol(r: Reader, bounds: ListBounds): PolCert {
  const roundMs = r.u64('pol roundMs');
  const value = readValue(r, bounds);
  const n = r.u16();
  if (n > MAX_POL_SIGS) throw new ProposalCodecError(`pol has ${n} signatures, limit ${MAX_POL_SIGS}`);
  const sigs = [];
  for (let i = 0; i < n; i++) sigs.push({ pubkey: r.take(PUBLIC_KEY_BYTES), sig: r.take(SIGNATURE_BYTES) });
  return { roundMs, value, sigs };
}

// Proposals are immutable once built or decoded: encode each object once.
const bodyCache = new WeakMap<Proposal, Buffer>();

/** The exact bytes the author signs. */
export function encodeProposalBody(p: Proposal): Buffer {
  const cached = bodyCache.get(p);
  if (cached) return cached;
  const w = new Writer();
  w.fixed(PROP_MAGIC, PROP_MAGIC.length, 'magic');
  w.u8(VERSION);
  w.u8(p.stage);
  const cid = Buffer.from(p.contractId, 'utf8');
  if (cid.length > MAX_CONTRACT_ID_BYTES) throw new ProposalCodecError(`contract id is ${cid.length} bytes, limit ${MAX_CONTRACT_ID_BYTES}`);
  w.u16(cid.length);
  w.fixed(cid, cid.length, 'contract id');
  w.u64(p.seqNo);
  w.u64(p.roundMs);
  w.fixed(p.prevHash, HASH_BYTES, 'prevHash');
  if (!isVoteProposal(p)) {
    w.u8((p.result ? FLAG_RESULT : 0) | (p.pol ? FLAG_POL : 0));
    if (p.result) writeResult(w, p.result);
    w.list(p.inputs, ORDERED_HASH_BYTES, 'ordered input hash');
    w.list(p.users, PUBLIC_KEY_BYTES, 'user pubkey');
    if (p.pol) writePol(w, p.pol);
  } else {
    w.u8(p.value ? 1 : 0);
    if (p.value) writeValue(w, p.value);
  }
  const body = w.done();
  bodyCache.set(p, body);
  return body;
}

export function decodeProposalBody(buf: Buffer, bounds: ListBounds): Proposal {
  const r = new Reader(buf);
  if (!r.take(PROP_MAGIC.length).equals(PROP_MAGIC)) throw new ProposalCodecError('not a proposal (bad magic)');
  const version = r.u8();
  if (version !== VERSION) throw new ProposalCodecError(`unknown proposal version ${version}`);
  const stage = r.u8();
  const cidLen = r.u16();
  if (cidLen > MAX_CONTRACT_ID_BYTES) throw new ProposalCodecError(`contract id is ${cidLen} bytes, limit ${MAX_CONTRACT_ID_BYTES}`);
  const contractId = r.take(cidLen).toString('utf8');
  const seqNo = r.u64('seqNo');
  const roundMs = r.u64('roundMs');
  const prevHash = r.take(HASH_BYTES);
  let p: Proposal;
  if (stage === 0 || stage === 1) {
    const flags = r.u8();
    if (flags & ~(FLAG_RESULT | FLAG_POL)) throw new ProposalCodecError(`unknown proposal flags ${flags}`);
    const result = flags & FLAG_RESULT ? readResult(r) : null;
    const inputs = r.list(ORDERED_HASH_BYTES, bounds.maxInputsPerLedger, 'inputs');
    const users = r.list(PUBLIC_KEY_BYTES, bounds.maxUsersPerLedger, 'users');
    const pol = flags & FLAG_POL ? readPol(r, bounds) : null;
    p = { contractId, stage, seqNo, roundMs, prevHash, result, inputs, users, pol };
  } else if (stage === 2 || stage === 3) {
    const has = r.u8();
    if (has > 1) throw new ProposalCodecError(`bad value flag ${has}`);
    p = { contractId, stage, seqNo, roundMs, prevHash, value: has ? readValue(r, bounds) : null };
  } else {
    throw new ProposalCodecError(`bad stage ${stage}`);
  }
  r.end();
  bodyCache.set(p, buf);
  return p;
}

/** 32-byte identity of a proposal's content (author and signature excluded): equal ids = same vote. */
const idCache = new WeakMap<Proposal, Buffer>();
export function proposalId(p: Proposal): Buffer {
  let id = idCache.get(p);
  if (!id) {
    id = hash(encodeProposalBody(p));
    idCache.set(p, id);
  }
  return id;
}

export function encodeSignedProposal(p: SignedProposal): Buffer {
  const body = encodeProposalBody(p);
  if (p.author.length !== PUBLIC_KEY_BYTES || p.sig.length !== SIGNATURE_BYTES) throw new ProposalCodecError('author must be 33 bytes and sig 64 bytes');
  return Buffer.concat([p.author, p.sig, body]);
}

export function decodeSignedProposal(buf: Buffer, bounds: ListBounds): SignedProposal {
  if (buf.length < PUBLIC_KEY_BYTES + SIGNATURE_BYTES) throw new ProposalCodecError('signed proposal too short');
  const own = Buffer.from(buf);
  const author = own.subarray(0, PUBLIC_KEY_BYTES);
  const sig = own.subarray(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES + SIGNATURE_BYTES);
  const body = own.subarray(PUBLIC_KEY_BYTES + SIGNATURE_BYTES);
  const p = decodeProposalBody(body, bounds);
  return Object.assign(p, { author, sig });
}

/** The stage-2 proposal a PolCert signature signed: the shell verifies each cert entry against it. */
export function prevoteOf(contractId: string, cert: PolCert): Proposal {
  return { contractId, stage: 2, seqNo: cert.value.seqNo, roundMs: cert.roundMs, prevHash: cert.value.prevHash, value: cert.value };
}

export function encodeAttestation(a: Attestation): Buffer {
  const w = new Writer();
  w.fixed(ATT_MAGIC, ATT_MAGIC.length, 'magic');
  w.u64(a.seqNo);
  w.fixed(a.hash, HASH_BYTES, 'attested hash');
  w.fixed(a.author, PUBLIC_KEY_BYTES, 'author');
  w.fixed(a.sig, SIGNATURE_BYTES, 'sig');
  return w.done();
}

export function decodeAttestation(buf: Buffer): Attestation {
  const r = new Reader(buf);
  if (!r.take(ATT_MAGIC.length).equals(ATT_MAGIC)) throw new ProposalCodecError('not an attestation (bad magic)');
  const a = { seqNo: r.u64('seqNo'), hash: r.take(HASH_BYTES), author: r.take(PUBLIC_KEY_BYTES), sig: r.take(SIGNATURE_BYTES) };
  r.end();
  return a;
}

/** The lock a node must keep across restarts (persistLock): write it before the precommit leaves. */
export function encodePersistedLock(l: PersistedLock): Buffer {
  const w = new Writer();
  w.fixed(LOCK_MAGIC, LOCK_MAGIC.length, 'magic');
  w.u64(l.seqNo);
  w.u64(l.roundMs);
  writePol(w, l.cert);
  return w.done();
}

export function decodePersistedLock(buf: Buffer, bounds: ListBounds): PersistedLock {
  const r = new Reader(buf);
  if (!r.take(LOCK_MAGIC.length).equals(LOCK_MAGIC)) throw new ProposalCodecError('not a persisted lock (bad magic)');
  const seqNo = r.u64('seqNo');
  const roundMs = r.u64('roundMs');
  const cert = readPol(r, bounds);
  r.end();
  const vp = valueProblem(cert.value, bounds);
  if (vp || cert.value.seqNo !== seqNo || cert.roundMs !== roundMs) throw new ProposalCodecError(`persisted lock is inconsistent: ${vp ?? 'seq or round differs from its certificate'}`);
  return { seqNo, roundMs, value: cert.value, cert };
}

/**
 * What is structurally wrong with a proposal (sizes, list order, bounds, stage-specific fields),
 * or null. Checks that need the node's state (seq, UNL, rounds) are the core's.
 */
// Proposals are immutable: one structural check per object and bounds.
const problemCache = new WeakMap<Proposal, { bounds: ListBounds; problem: string | null }>();

export function proposalProblem(p: Proposal, bounds: ListBounds): string | null {
  const cached = problemCache.get(p);
  if (cached && cached.bounds.maxInputsPerLedger === bounds.maxInputsPerLedger && cached.bounds.maxUsersPerLedger === bounds.maxUsersPerLedger) return cached.problem;
  const problem = checkProposal(p, bounds);
  problemCache.set(p, { bounds: { maxInputsPerLedger: bounds.maxInputsPerLedger, maxUsersPerLedger: bounds.maxUsersPerLedger }, problem });
  return problem;
}

function checkProposal(p: Proposal, bounds: ListBounds): string | null {
  if (typeof p.contractId !== 'string') return 'contractId must be a string';
  if (!Number.isSafeInteger(p.seqNo) || p.seqNo < 1) return `seqNo ${p.seqNo} must be a positive integer`;
  if (!Number.isSafeInteger(p.roundMs) || p.roundMs < 0) return `roundMs ${p.roundMs} must be a non-negative integer`;
  if (!Buffer.isBuffer(p.prevHash) || p.prevHash.length !== HASH_BYTES) return `prevHash must be ${HASH_BYTES} bytes`;
  if (p.stage === 0 || p.stage === 1) {
    if (p.result) {
      const rp = resultProblem(p.result);
      if (rp) return rp;
    }
    if (p.inputs.length > bounds.maxInputsPerLedger) return `${p.inputs.length} inputs, limit ${bounds.maxInputsPerLedger}`;
    if (p.users.length > bounds.maxUsersPerLedger) return `${p.users.length} users, limit ${bounds.maxUsersPerLedger}`;
    if (!isAscending(p.inputs, ORDERED_HASH_BYTES)) return 'inputs must be strictly ascending 40-byte ordered hashes';
    if (!isAscending(p.users, PUBLIC_KEY_BYTES)) return 'users must be strictly ascending 33-byte keys';
    if (p.stage === 1 && p.pol) return 'a stage-1 proposal carries no pol';
    if (p.pol) {
      if (!Number.isSafeInteger(p.pol.roundMs) || p.pol.roundMs >= p.roundMs) return 'pol round must be before the proposal round';
      const vp = valueProblem(p.pol.value, bounds);
      if (vp) return `pol ${vp}`;
      if (p.pol.value.seqNo !== p.seqNo || !p.pol.value.prevHash.equals(p.prevHash)) return 'pol value is for another seq or parent';
      if (p.pol.sigs.length > MAX_POL_SIGS) return 'too many pol signatures';
    }
    return null;
  }
  if (p.stage === 2 || p.stage === 3) {
    if (!p.value) return null;
    const vp = valueProblem(p.value, bounds);
    if (vp) return vp;
    if (p.value.seqNo !== p.seqNo || !p.value.prevHash.equals(p.prevHash)) return 'value is for another seq or parent';
    if (p.value.timestampMs > p.roundMs) return 'value timestamp is after the proposal round';
    return null;
  }
  return `bad stage ${String((p as { stage: unknown }).stage)}`;
}
