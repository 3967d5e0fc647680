// BLAKE3-256 through @napi-rs/blake-hash: measured 4.8 GB/s on 64 KiB one-shot calls here, ~3x the
// `blake3` package per small block, and it installs from npm without a compiler (docs/ARCHITECTURE.md).
// The platform package is required directly: the umbrella @napi-rs/blake-hash lists optional
// builds for platforms the registry does not serve, which breaks `npm ci` (docs/ARCHITECTURE.md).
import { blake3, Blake3Hasher } from '@napi-rs/blake-hash-linux-x64-gnu';

export const HASH_BYTES = 32;

/** Raw BLAKE3-256 of one buffer. Callers add their own domain tag (see state/objects.ts). */
export function hash(data: Uint8Array): Buffer {
  return blake3(data);
}

/**
 * BLAKE3-256 of `prefix ‖ data`. Measured here: below ~32 KiB one concatenation and a one-shot call
 * is faster (3 µs vs 12 µs at 100 B); above it, the copy costs more than the streaming hasher's calls.
 */
export function hashWithPrefix(prefix: Buffer, data: Uint8Array): Buffer {
  if (data.byteLength < 32 * 1024) return blake3(Buffer.concat([prefix, data]));
  return new Blake3Hasher().update(prefix).update(Buffer.from(data.buffer, data.byteOffset, data.byteLength)).digestBuffer();
}

export function toHex(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex');
}

const HEX_HASH = /^[0-9a-f]{64}$/;

/** Parses a 64-char lower-case hex hash; throws a message naming the bad value. */
export function parseHashHex(hex: string, what = 'hash'): Buffer {
  if (!HEX_HASH.test(hex)) throw new Error(`invalid ${what} "${hex}": expected 64 lower-case hex characters`);
  return Buffer.from(hex, 'hex');
}
