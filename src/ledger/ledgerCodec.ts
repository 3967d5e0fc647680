// The on-disk payload of one ledger record: a compact big-endian binary encoding, chosen over BSON
// because js-bson serializes into a fixed 17 MiB buffer (a ledger's blobs can be larger), stores
// int64 signed (nonces are u64), and buys nothing for a format only this module reads.
//
//   u8 format (1) ‖ u64 seqNo ‖ u64 timestampMs ‖ hash ‖ prevHash ‖ stateHash ‖ configHash ‖
//   userHash ‖ inputHash ‖ outputHash                                  (fixed 241 bytes)
//   u32 n ‖ n × pubkey(33)                                             users
//   u32 n ‖ n × (pubkey ‖ hash ‖ u64 nonce ‖ u8 protocol ‖ sig ‖ u32 len ‖ blob ‖ u32 len ‖ container)
//   u32 n ‖ n × (pubkey ‖ hash ‖ u32 count ‖ count × (u32 len ‖ blob))  outputs
//   u32 n ‖ n × (pubkey ‖ sig(64))                                     quorum
//
// Decoded Buffers are views into the payload (no copies); the payload belongs to the record.
import { HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';
import type { LedgerInput, LedgerOutput, LedgerRecord, QuorumSignature } from './ledgerHash';

export const PAYLOAD_FORMAT = 1;
/** Where the fields sit, so the store can read seqNo or hash without decoding a whole record. */
export const SEQ_OFFSET = 1;
export const HASH_OFFSET = 17;
/** The smallest payload there is: the fixed part and four empty lists. */
export const MIN_PAYLOAD_BYTES = 17 + 7 * HASH_BYTES + 4 * 4;

const PROTOCOLS = ['json', 'bson'] as const;

export function encodeRecord(rec: LedgerRecord): Buffer {
  let size = MIN_PAYLOAD_BYTES + rec.users.length * PUBLIC_KEY_BYTES + rec.quorum.length * (PUBLIC_KEY_BYTES + SIGNATURE_BYTES);
  for (const i of rec.inputs) size += PUBLIC_KEY_BYTES + HASH_BYTES + 8 + 1 + SIGNATURE_BYTES + 8 + i.blob.length + i.container.length;
  for (const out of rec.outputs) {
    size += PUBLIC_KEY_BYTES + HASH_BYTES + 4;
    for (const b of out.blobs) size += 4 + b.length;
  }
  const w = new Writer(Buffer.allocUnsafe(size));
  w.u8(PAYLOAD_FORMAT);
  w.u64(BigInt(rec.seqNo));
  w.u64(BigInt(rec.timestampMs));
  for (const h of [rec.hash, rec.prevHash, rec.stateHash, rec.configHash, rec.userHash, rec.inputHash, rec.outputHash]) w.fixed(h, HASH_BYTES);
  w.u32(rec.users.length);
  for (const u of rec.users) w.fixed(u, PUBLIC_KEY_BYTES);
  w.u32(rec.inputs.length);
  for (const i of rec.inputs) {
    w.fixed(i.pubkey, PUBLIC_KEY_BYTES);
    w.fixed(i.hash, HASH_BYTES);
    w.u64(i.nonce);
    w.u8(PROTOCOLS.indexOf(i.protocol));
    w.fixed(i.sig, SIGNATURE_BYTES);
    w.bytes(i.blob);
    w.bytes(i.container);
  }
  w.u32(rec.outputs.length);
  for (const out of rec.outputs) {
    w.fixed(out.pubkey, PUBLIC_KEY_BYTES);
    w.fixed(out.hash, HASH_BYTES);
    w.u32(out.blobs.length);
    for (const b of out.blobs) w.bytes(b);
  }
  w.u32(rec.quorum.length);
  for (const q of rec.quorum) {
    w.fixed(q.pubkey, PUBLIC_KEY_BYTES);
    w.fixed(q.sig, SIGNATURE_BYTES);
  }
  if (w.o !== size) throw new Error(`ledger encoder bug: wrote ${w.o} of ${size} bytes`);
  return w.buf;
}

/** Decodes a payload; throws (naming the field) on any malformed or trailing bytes. */
export function decodeRecord(buf: Buffer): LedgerRecord {
  const r = new Reader(buf);
  const format = r.u8();
  if (format !== PAYLOAD_FORMAT) throw new Error(`unknown ledger payload format ${format}`);
  const seqNo = r.safeU64('seqNo');
  const timestampMs = r.safeU64('timestampMs');
  const [hash, prevHash, stateHash, configHash, userHash, inputHash, outputHash] = Array.from({ length: 7 }, () => r.take(HASH_BYTES));
  const users = r.list(() => r.take(PUBLIC_KEY_BYTES));
  const inputs = r.list((): LedgerInput => {
    const pubkey = r.take(PUBLIC_KEY_BYTES);
    const h = r.take(HASH_BYTES);
    const nonce = r.u64();
    const protocol = PROTOCOLS[r.u8()];
    if (!protocol) throw new Error('bad input protocol byte');
    const sig = r.take(SIGNATURE_BYTES);
    return { pubkey, hash: h, nonce, protocol, sig, blob: r.bytes(), container: r.bytes() };
  });
  const outputs = r.list((): LedgerOutput => ({ pubkey: r.take(PUBLIC_KEY_BYTES), hash: r.take(HASH_BYTES), blobs: r.list(() => r.bytes()) }));
  const quorum = r.list((): QuorumSignature => ({ pubkey: r.take(PUBLIC_KEY_BYTES), sig: r.take(SIGNATURE_BYTES) }));
  if (r.o !== buf.length) throw new Error(`${buf.length - r.o} trailing bytes after the record`);
  return { seqNo, timestampMs, hash, prevHash, stateHash, configHash, userHash, inputHash, outputHash, users, inputs, outputs, quorum };
}

class Writer {
  o = 0;
  constructor(readonly buf: Buffer) {}
  u8(n: number): void {
    this.o = this.buf.writeUInt8(n, this.o);
  }
  u32(n: number): void {
    this.o = this.buf.writeUInt32BE(n, this.o);
  }
  u64(n: bigint): void {
    this.o = this.buf.writeBigUInt64BE(n, this.o);
  }
  fixed(b: Buffer, len: number): void {
    if (b.length !== len) throw new Error(`ledger field is ${b.length} bytes, expected ${len}`);
    this.o += b.copy(this.buf, this.o);
  }
  bytes(b: Buffer): void {
    this.u32(b.length);
    this.o += b.copy(this.buf, this.o);
  }
}

class Reader {
  o = 0;
  constructor(private readonly buf: Buffer) {}
  take(n: number): Buffer {
    if (this.o + n > this.buf.length) throw new Error(`record ends early: need ${n} bytes at ${this.o} of ${this.buf.length}`);
    const b = this.buf.subarray(this.o, this.o + n);
    this.o += n;
    return b;
  }
  u8(): number {
    return this.take(1)[0];
  }
  u32(): number {
    return this.take(4).readUInt32BE(0);
  }
  u64(): bigint {
    return this.take(8).readBigUInt64BE(0);
  }
  safeU64(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what} ${v} is beyond 2^53`);
    return Number(v);
  }
  bytes(): Buffer {
    return this.take(this.u32());
  }
  list<T>(item: () => T): T[] {
    const n = this.u32();
    // Every item takes at least 4 bytes, so a corrupt count cannot make us allocate wildly.
    if (n > (this.buf.length - this.o) / 4) throw new Error(`list count ${n} exceeds the remaining bytes`);
    const out: T[] = [];
    for (let k = 0; k < n; k++) out.push(item());
    return out;
  }
}
