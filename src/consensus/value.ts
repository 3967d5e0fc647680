// Values (candidate ledgers): their header, their digest (= the ledger hash they would close as),
// and the structural checks every received value must pass before it is counted.
import { HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES } from '../crypto/keys';
import { inputListHash, LedgerHeader, ledgerHash, userListHash } from '../ledger/ledgerHash';
import { ExecResult, ORDERED_HASH_BYTES, Value } from './types';

/** The ledger header a value closes as: stage-3 agreement is agreement on this header's hash. */
export function valueHeader(v: Value): LedgerHeader {
  return {
    seqNo: v.seqNo,
    timestampMs: v.timestampMs,
    prevHash: v.prevHash,
    stateHash: v.result.stateRoot,
    configHash: v.result.configHash,
    userHash: userListHash(v.users),
    inputHash: inputListHash(v.inputs.map((h) => ({ hash: h.subarray(8) }))),
    outputHash: v.result.outputRoot,
  };
}

// Values are immutable once built or decoded, so their digest is computed once per object.
const digestCache = new WeakMap<Value, Buffer>();

export function valueDigest(v: Value): Buffer {
  let d = digestCache.get(v);
  if (!d) {
    d = ledgerHash(valueHeader(v));
    digestCache.set(v, d);
  }
  return d;
}

export function resultEquals(a: ExecResult, b: ExecResult): boolean {
  return a.stateRoot.equals(b.stateRoot) && a.outputRoot.equals(b.outputRoot) && a.configHash.equals(b.configHash);
}

export function resultKey(r: ExecResult): string {
  return r.stateRoot.toString('hex') + r.outputRoot.toString('hex') + r.configHash.toString('hex');
}

export function isAscending(list: readonly Buffer[], size: number): boolean {
  for (let i = 0; i < list.length; i++) {
    if (!Buffer.isBuffer(list[i]) || list[i].length !== size) return false;
    if (i > 0 && Buffer.compare(list[i - 1], list[i]) >= 0) return false;
  }
  return true;
}

export function resultProblem(r: ExecResult): string | null {
  for (const k of ['outputRoot', 'stateRoot', 'configHash'] as const) {
    if (!Buffer.isBuffer(r[k]) || r[k].length !== HASH_BYTES) return `result.${k} must be ${HASH_BYTES} bytes`;
  }
  return null;
}

export interface ListBounds {
  maxInputsPerLedger: number;
  maxUsersPerLedger: number;
}

/** What is structurally wrong with a value (sizes, order, bounds), or null. */
export function valueProblem(v: Value, bounds: ListBounds): string | null {
  if (!Number.isSafeInteger(v.seqNo) || v.seqNo < 1) return `value seqNo ${v.seqNo} must be a positive integer`;
  if (!Number.isSafeInteger(v.timestampMs) || v.timestampMs < 0) return `value timestampMs ${v.timestampMs} must be a non-negative integer`;
  if (!Buffer.isBuffer(v.prevHash) || v.prevHash.length !== HASH_BYTES) return `value prevHash must be ${HASH_BYTES} bytes`;
  const r = resultProblem(v.result);
  if (r) return `value ${r}`;
  if (v.inputs.length > bounds.maxInputsPerLedger) return `value has ${v.inputs.length} inputs, limit ${bounds.maxInputsPerLedger}`;
  if (v.users.length > bounds.maxUsersPerLedger) return `value has ${v.users.length} users, limit ${bounds.maxUsersPerLedger}`;
  if (!isAscending(v.inputs, ORDERED_HASH_BYTES)) return `value inputs must be strictly ascending ${ORDERED_HASH_BYTES}-byte ordered hashes`;
  if (!isAscending(v.users, PUBLIC_KEY_BYTES)) return `value users must be strictly ascending ${PUBLIC_KEY_BYTES}-byte keys`;
  return null;
}

/** Sorted, de-duplicated copy (Buffer byte order). */
export function sortedUnique(list: Iterable<Buffer>): Buffer[] {
  const byHex = new Map<string, Buffer>();
  for (const b of list) byHex.set(b.toString('hex'), b);
  return [...byHex.values()].sort(Buffer.compare);
}
