// The content-addressed objects a state tree is made of, their byte encodings and their hashes.
//
// Every object hash is BLAKE3(tag ‖ content) with an 8-byte tag per object kind, so a block can
// never be confused with a directory listing (domain separation), and every composite hash is an
// ordered, length-prefixed encoding (never XOR: the hpfs collisions in reference/hotpocket-hpfs.md
// §4.5 cannot happen). Only content is hashed; the store keeps `content` and the kind, not the tag.
//
//   block  = H("hpn:blk\0" ‖ bytes)
//   list   = H("hpn:lst\0" ‖ u8 depth ‖ child hashes)             fan-out node over a file's blocks
//   file   = H("hpn:fil\0" ‖ u64 size ‖ u8 depth ‖ child hashes)   depth 0: children are blocks
//   link   = H("hpn:lnk\0" ‖ target bytes)
//   dir    = H("hpn:dir\0" ‖ u32 n ‖ n × entry), entries sorted by name bytes,
//            entry = u8 kind ‖ u32 mode ‖ u64 mtimeMs ‖ u16 nameLen ‖ name ‖ child hash
//   root   = H("hpn:rot\0" ‖ u32 mode ‖ u64 mtimeMs ‖ dir hash)
//
// Mode and mtime live in the parent's entry (they are observable by the contract, so they are
// hashed, and every node must see the same stat()); file content hashes are independent of names.
import { hash, HASH_BYTES, hashWithPrefix } from '../crypto/hash';

export enum ObjectKind {
  Block = 1,
  List = 2,
  File = 3,
  Link = 4,
  Dir = 5,
  Root = 6,
}

const TAGS: Record<ObjectKind, Buffer> = {
  [ObjectKind.Block]: Buffer.from('hpn:blk\0'),
  [ObjectKind.List]: Buffer.from('hpn:lst\0'),
  [ObjectKind.File]: Buffer.from('hpn:fil\0'),
  [ObjectKind.Link]: Buffer.from('hpn:lnk\0'),
  [ObjectKind.Dir]: Buffer.from('hpn:dir\0'),
  [ObjectKind.Root]: Buffer.from('hpn:rot\0'),
};
export const TAG_BYTES = 8;

/**
 * Children per list/file node: 32 × 32 B = 1 KiB nodes; 4 levels cover 64 GiB at 64 KiB blocks.
 * Small on purpose: every list node on the path of a changed block travels in a sync, so scattered
 * changes cost ~1 KiB of tree per changed block (1.5 % of 10 MiB changed in a 1 GiB file; fan-out
 * 1024 cost 5 %), while a full sync pays 1/32 more objects, 0.05 % more bytes.
 */
export const FANOUT = 32;
export const MAX_NAME_BYTES = 255;
export const MAX_LINK_BYTES = 4095;

export enum EntryKind {
  File = 1,
  Dir = 2,
  Link = 3,
}

export interface DirEntry {
  name: string;
  kind: EntryKind;
  mode: number; // permission bits only (0o7777)
  mtimeMs: number;
  hash: Buffer; // file, dir or link object hash
}

export function hashObject(kind: ObjectKind, content: Uint8Array): Buffer {
  return hashWithPrefix(TAGS[kind], content);
}

/**
 * Hashes a block held at `buf[TAG_BYTES..]` without copying it: the caller reserved the first
 * TAG_BYTES bytes, which this fills with the block tag.
 */
export function hashBlockInPlace(bufWithTagRoom: Buffer): Buffer {
  return hashTaggedInPlace(ObjectKind.Block, bufWithTagRoom);
}

/** Same for any kind: `buf` holds TAG_BYTES of room followed by the content. */
export function hashTaggedInPlace(kind: ObjectKind, buf: Buffer): Buffer {
  TAGS[kind].copy(buf, 0);
  return hash(buf);
}

/**
 * hashObject for content that sits inside a larger buffer (an object in a received frame): the
 * TAG_BYTES before it are borrowed for the tag and put back, so one one-shot hash call covers it
 * without a copy (the streaming hasher costs ~17 µs more per 64 KiB block here). Falls back to
 * hashObject when there is no room before the content.
 */
export function hashObjectBorrowingRoom(kind: ObjectKind, content: Uint8Array): Buffer {
  if (content.byteOffset < TAG_BYTES) return hashObject(kind, content);
  const view = Buffer.from(content.buffer, content.byteOffset - TAG_BYTES, content.byteLength + TAG_BYTES);
  const saved = view.readBigUInt64LE(0);
  try {
    return hashTaggedInPlace(kind, view);
  } finally {
    view.writeBigUInt64LE(saved, 0);
  }
}

export function hashBlock(data: Uint8Array): Buffer {
  return hashObject(ObjectKind.Block, data);
}

export function encodeList(depth: number, children: Buffer[]): Buffer {
  const out = Buffer.allocUnsafe(1 + children.length * HASH_BYTES);
  out[0] = depth;
  children.forEach((c, i) => c.copy(out, 1 + i * HASH_BYTES));
  return out;
}

export function decodeList(content: Buffer): { depth: number; children: Buffer[] } {
  if ((content.length - 1) % HASH_BYTES !== 0) throw new Error(`corrupt list node: length ${content.length}`);
  return { depth: content[0], children: splitHashes(content, 1) };
}

export function encodeFile(size: number, depth: number, children: Buffer[]): Buffer {
  const out = Buffer.allocUnsafe(9 + children.length * HASH_BYTES);
  out.writeBigUInt64BE(BigInt(size), 0);
  out[8] = depth;
  children.forEach((c, i) => c.copy(out, 9 + i * HASH_BYTES));
  return out;
}

export function decodeFile(content: Buffer): { size: number; depth: number; children: Buffer[] } {
  if (content.length < 9 || (content.length - 9) % HASH_BYTES !== 0) {
    throw new Error(`corrupt file node: length ${content.length}`);
  }
  return { size: Number(content.readBigUInt64BE(0)), depth: content[8], children: splitHashes(content, 9) };
}

function splitHashes(buf: Buffer, start: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = start; o < buf.length; o += HASH_BYTES) out.push(buf.subarray(o, o + HASH_BYTES));
  return out;
}

/** Byte-wise name order, the same on every node whatever the locale. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function encodeDir(entries: DirEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => compareNames(a.name, b.name));
  const parts: Buffer[] = [];
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(sorted.length, 0);
  parts.push(head);
  for (const e of sorted) {
    const name = Buffer.from(e.name);
    const fixed = Buffer.allocUnsafe(15);
    fixed[0] = e.kind;
    fixed.writeUInt32BE(e.mode >>> 0, 1);
    fixed.writeBigUInt64BE(BigInt(e.mtimeMs), 5);
    fixed.writeUInt16BE(name.length, 13);
    parts.push(fixed, name, e.hash);
  }
  return Buffer.concat(parts);
}

export function decodeDir(content: Buffer): DirEntry[] {
  const count = content.readUInt32BE(0);
  const entries: DirEntry[] = [];
  let o = 4;
  for (let i = 0; i < count; i++) {
    if (o + 15 > content.length) throw new Error('corrupt dir node: truncated entry');
    const kind = content[o] as EntryKind;
    const mode = content.readUInt32BE(o + 1);
    const mtimeMs = Number(content.readBigUInt64BE(o + 5));
    const nameLen = content.readUInt16BE(o + 13);
    o += 15;
    const name = content.subarray(o, o + nameLen).toString();
    o += nameLen;
    const hash = content.subarray(o, o + HASH_BYTES);
    o += HASH_BYTES;
    if (hash.length !== HASH_BYTES) throw new Error('corrupt dir node: truncated hash');
    entries.push({ name, kind, mode, mtimeMs, hash });
  }
  if (o !== content.length) throw new Error(`corrupt dir node: ${content.length - o} trailing bytes`);
  return entries;
}

export function encodeRoot(mode: number, mtimeMs: number, dirHash: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + HASH_BYTES);
  out.writeUInt32BE(mode >>> 0, 0);
  out.writeBigUInt64BE(BigInt(mtimeMs), 4);
  dirHash.copy(out, 12);
  return out;
}

export function decodeRoot(content: Buffer): { mode: number; mtimeMs: number; dir: Buffer } {
  if (content.length !== 12 + HASH_BYTES) throw new Error(`corrupt root node: length ${content.length}`);
  return { mode: content.readUInt32BE(0), mtimeMs: Number(content.readBigUInt64BE(4)), dir: content.subarray(12) };
}

/** Depth of the fan-out tree for a file of `blockCount` blocks (0: the file node lists blocks). */
export function fileDepth(blockCount: number): number {
  let depth = 0;
  let capacity = FANOUT;
  while (blockCount > capacity) {
    depth++;
    capacity *= FANOUT;
  }
  return depth;
}

/**
 * Why a name is not allowed in state, or null when it is. Names are bytes: no '/', no NUL, not
 * '.' or '..', 1..255 bytes, and not the prefix libfuse uses for files unlinked while open.
 */
export function nameError(name: string): 'EINVAL' | 'ENAMETOOLONG' | null {
  if (name.length === 0 || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) return 'EINVAL';
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return 'ENAMETOOLONG';
  return null;
}
