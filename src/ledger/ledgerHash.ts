// Ledger records and how they hash (pure; no I/O). Modelled on HotPocket's ledger
// (hotpocket-core.md §3.10) but with hp-node's own hash formats: every hash is domain-tagged and
// every list is count-prefixed, so no two different ledgers or lists can hash the same bytes.
// The quorum signatures sign `hash` and are therefore outside it.
import { hash, HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';

export interface LedgerInput {
  pubkey: Buffer; // 33 bytes, 0xED-prefixed
  hash: Buffer; // 32 bytes = blake3(sig)
  nonce: bigint; // u64
  blob: Buffer; // raw input bytes
  container: Buffer; // the exact signed input_container bytes
  sig: Buffer; // 64 bytes
  protocol: 'json' | 'bson';
}

export interface LedgerOutput {
  pubkey: Buffer; // 33 bytes
  hash: Buffer; // the user's output hash
  blobs: Buffer[];
}

export interface QuorumSignature {
  pubkey: Buffer; // 33 bytes
  sig: Buffer; // 64 bytes
}

export interface LedgerHeader {
  seqNo: number;
  timestampMs: number;
  prevHash: Buffer;
  stateHash: Buffer;
  configHash: Buffer;
  userHash: Buffer;
  inputHash: Buffer;
  outputHash: Buffer;
}

export interface LedgerRecord extends LedgerHeader {
  hash: Buffer; // ledgerHash(header)
  users: Buffer[]; // pubkeys, strictly ascending by bytes
  inputs: LedgerInput[];
  outputs: LedgerOutput[];
  quorum: QuorumSignature[];
}

export const ZERO_HASH: Buffer = Buffer.alloc(HASH_BYTES);
export const U64_MAX = (1n << 64n) - 1n;

const TAG_LEDGER = Buffer.from('hpn:ledger\0');
const TAG_USERS = Buffer.from('hpn:users\0');
const TAG_INPUTS = Buffer.from('hpn:inputs\0');
const TAG_OUTPUTS = Buffer.from('hpn:outputs\0');

const HEADER_HASHES = ['prevHash', 'stateHash', 'configHash', 'userHash', 'inputHash', 'outputHash'] as const;

/** H("hpn:ledger\0" ‖ u64 seqNo ‖ u64 timestampMs ‖ six 32-byte hashes); all fixed-length, so no framing needed. */
export function ledgerHash(h: LedgerHeader): Buffer {
  const buf = Buffer.alloc(TAG_LEDGER.length + 16 + HEADER_HASHES.length * HASH_BYTES);
  let o = TAG_LEDGER.copy(buf, 0);
  o = buf.writeBigUInt64BE(toU64(h.seqNo, 'seqNo'), o);
  o = buf.writeBigUInt64BE(toU64(h.timestampMs, 'timestampMs'), o);
  for (const k of HEADER_HASHES) {
    if (h[k].length !== HASH_BYTES) throw new Error(`ledger ${h.seqNo}: ${k} is ${h[k].length} bytes, expected ${HASH_BYTES}`);
    o += h[k].copy(buf, o);
  }
  return hash(buf);
}

// As in HotPocket, an empty list hashes to 32 zero bytes: genesis (all-zero hashes, no users,
// inputs or outputs) is then self-consistent, and an idle ledger's list hashes read as "none".

/** H("hpn:users\0" ‖ u32 count ‖ 33-byte keys); the caller passes them sorted. */
export function userListHash(sortedPubkeys: readonly Buffer[]): Buffer {
  if (sortedPubkeys.length === 0) return Buffer.from(ZERO_HASH);
  return hash(Buffer.concat([TAG_USERS, u32(sortedPubkeys.length), ...sortedPubkeys.map((k) => fixed(k, PUBLIC_KEY_BYTES, 'user pubkey'))]));
}

/** H("hpn:inputs\0" ‖ u32 count ‖ 32-byte input hashes in ledger order). */
export function inputListHash(inputs: readonly Pick<LedgerInput, 'hash'>[]): Buffer {
  if (inputs.length === 0) return Buffer.from(ZERO_HASH);
  return hash(Buffer.concat([TAG_INPUTS, u32(inputs.length), ...inputs.map((i) => fixed(i.hash, HASH_BYTES, 'input hash'))]));
}

/** H("hpn:outputs\0" ‖ u32 count ‖ (33-byte pubkey ‖ 32-byte output hash) in order). */
export function outputListHash(outputs: readonly Pick<LedgerOutput, 'pubkey' | 'hash'>[]): Buffer {
  if (outputs.length === 0) return Buffer.from(ZERO_HASH);
  const parts: Buffer[] = [TAG_OUTPUTS, u32(outputs.length)];
  for (const out of outputs) parts.push(fixed(out.pubkey, PUBLIC_KEY_BYTES, 'output pubkey'), fixed(out.hash, HASH_BYTES, 'output hash'));
  return hash(Buffer.concat(parts));
}

/** The implicit ledger 0: seq 0, time 0, all-zero hashes, empty lists; its own hash is computed. */
export function genesisLedger(): LedgerRecord {
  const header: LedgerHeader = {
    seqNo: 0,
    timestampMs: 0,
    prevHash: Buffer.from(ZERO_HASH),
    stateHash: Buffer.from(ZERO_HASH),
    configHash: Buffer.from(ZERO_HASH),
    userHash: Buffer.from(ZERO_HASH),
    inputHash: Buffer.from(ZERO_HASH),
    outputHash: Buffer.from(ZERO_HASH),
  };
  return { ...header, hash: ledgerHash(header), users: [], inputs: [], outputs: [], quorum: [] };
}

export const GENESIS_HASH: Buffer = genesisLedger().hash;

export function headerOf(rec: LedgerHeader): LedgerHeader {
  const { seqNo, timestampMs, prevHash, stateHash, configHash, userHash, inputHash, outputHash } = rec;
  return { seqNo, timestampMs, prevHash, stateHash, configHash, userHash, inputHash, outputHash };
}

/**
 * What is wrong with a record on its own (field sizes, the users/inputs lists against their
 * hashes, `hash` against the header), or null. `outputHash` is not checked against `outputs`: the
 * node may put a Merkle root over the outputs there (node/roundResult.ts), which needs the state hash.
 */
export function recordProblem(rec: LedgerRecord): string | null {
  const at = `ledger ${rec.seqNo}`;
  if (!isU64Number(rec.seqNo)) return `${at}: seqNo must be a non-negative safe integer`;
  if (!isU64Number(rec.timestampMs)) return `${at}: timestampMs ${rec.timestampMs} must be a non-negative safe integer`;
  for (const k of [...HEADER_HASHES, 'hash'] as const) {
    if (!Buffer.isBuffer(rec[k]) || rec[k].length !== HASH_BYTES) return `${at}: ${k} must be a ${HASH_BYTES}-byte Buffer`;
  }
  for (let i = 0; i < rec.users.length; i++) {
    const u = rec.users[i];
    if (!Buffer.isBuffer(u) || u.length !== PUBLIC_KEY_BYTES) return `${at}: users[${i}] must be a ${PUBLIC_KEY_BYTES}-byte pubkey`;
    if (i > 0 && Buffer.compare(rec.users[i - 1], u) >= 0) return `${at}: users must be sorted ascending without duplicates (users[${i}] is out of order)`;
  }
  for (let i = 0; i < rec.inputs.length; i++) {
    const p = inputProblem(rec.inputs[i]);
    if (p) return `${at}: inputs[${i}]: ${p}`;
  }
  for (let i = 0; i < rec.outputs.length; i++) {
    const out = rec.outputs[i];
    if (!isBuf(out.pubkey, PUBLIC_KEY_BYTES)) return `${at}: outputs[${i}].pubkey must be ${PUBLIC_KEY_BYTES} bytes`;
    if (!isBuf(out.hash, HASH_BYTES)) return `${at}: outputs[${i}].hash must be ${HASH_BYTES} bytes`;
    if (!Array.isArray(out.blobs) || !out.blobs.every((b) => Buffer.isBuffer(b))) return `${at}: outputs[${i}].blobs must be Buffers`;
  }
  for (let i = 0; i < rec.quorum.length; i++) {
    const q = rec.quorum[i];
    if (!isBuf(q.pubkey, PUBLIC_KEY_BYTES) || !isBuf(q.sig, SIGNATURE_BYTES)) return `${at}: quorum[${i}] needs a ${PUBLIC_KEY_BYTES}-byte pubkey and a ${SIGNATURE_BYTES}-byte sig`;
  }
  if (!userListHash(rec.users).equals(rec.userHash)) return `${at}: userHash does not match userListHash(users)`;
  if (!inputListHash(rec.inputs).equals(rec.inputHash)) return `${at}: inputHash does not match inputListHash(inputs)`;
  if (!ledgerHash(rec).equals(rec.hash)) return `${at}: hash ${rec.hash.toString('hex')} is not ledgerHash(header) ${ledgerHash(rec).toString('hex')}`;
  return null;
}

function inputProblem(i: LedgerInput): string | null {
  if (!isBuf(i.pubkey, PUBLIC_KEY_BYTES)) return `pubkey must be ${PUBLIC_KEY_BYTES} bytes`;
  if (!isBuf(i.sig, SIGNATURE_BYTES)) return `sig must be ${SIGNATURE_BYTES} bytes`;
  if (!isBuf(i.hash, HASH_BYTES) || !hash(i.sig).equals(i.hash)) return 'hash must be blake3(sig)';
  if (typeof i.nonce !== 'bigint' || i.nonce < 0n || i.nonce > U64_MAX) return 'nonce must be a u64 bigint';
  if (i.protocol !== 'json' && i.protocol !== 'bson') return `protocol must be "json" or "bson", not ${String(i.protocol)}`;
  if (!Buffer.isBuffer(i.blob) || !Buffer.isBuffer(i.container)) return 'blob and container must be Buffers';
  return null;
}

function isU64Number(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

function isBuf(b: unknown, len: number): b is Buffer {
  return Buffer.isBuffer(b) && b.length === len;
}

function toU64(n: number, what: string): bigint {
  if (!isU64Number(n)) throw new Error(`ledger ${what} ${n} must be a non-negative safe integer`);
  return BigInt(n);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function fixed(b: Buffer, len: number, what: string): Buffer {
  if (b.length !== len) throw new Error(`${what} is ${b.length} bytes, expected ${len}`);
  return b;
}
