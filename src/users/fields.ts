// Typed field readers shared by the handshake, request and input-container parsers. Each returns
// undefined for a missing or wrongly typed value, so callers turn that into one clear rejection.
import { Binary } from 'bson';
import type { UserProtocol } from './nodeApi';

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Strict hex (even length, hex digits only) to bytes. */
export function hexBytes(v: unknown): Buffer | undefined {
  return typeof v === 'string' && HEX.test(v) ? Buffer.from(v, 'hex') : undefined;
}

/** A binary field: hex string in JSON, BSON binary in BSON. */
export function binary(protocol: UserProtocol, v: unknown): Buffer | undefined {
  if (protocol === 'json') return hexBytes(v);
  return bsonBytes(v);
}

export function bsonBytes(v: unknown): Buffer | undefined {
  if (!(v instanceof Binary)) return undefined;
  const bytes = v.buffer.subarray(0, v.position);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A non-negative integer as bigint: a JSON number, or a BSON int32/int64 (deserialized with
 * useBigInt64). JSON numbers beyond 2^53-1 cannot be read exactly by JSON.parse, so they are
 * refused rather than silently rounded.
 */
export function uint(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v >= 0n && v < 2n ** 63n ? v : undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  return undefined;
}

/** A non-negative integer that must fit a JS number exactly (ledger seq numbers). */
export function safeUint(v: unknown): number | undefined {
  const b = uint(v);
  return b !== undefined && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : undefined;
}
