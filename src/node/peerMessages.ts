// What nodes say to each other over the peer network (src/p2p), and how each body is checked.
// The p2p envelope already proves who wrote a message, for which contract and in which signing
// context; here are the kinds, their bodies, and the strict decoders (anything unexpected is a
// PeerBodyError, which the caller counts against the sender).
//
//   hpn.prop    raw proposal body (consensus/proposalCodec.ts), flags exactly PROPOSAL_FLAGS
//   hpn.att     raw attestation (author ‖ signIn('ledger-close', contractId, ledger hash))
//   hpn.inputs  {i: [[protocol 0|1, user, container, sig], …]}  user-signed inputs, relayed as signed
//   hpn.getin   {h: [input hash, …]}                             "send me these input bodies"
//   hpn.osig    {s: seqNo, r: output root, g: sig}               HotPocket-format output root signature
//   hpn.npl     {s: seqNo, d: bytes}                             contract-to-contract message, context 'npl'
//
// Requests (unsigned p2p req/res frames on the authenticated link; answers are byte lists, below):
//   hpn.getlgr  {f: from seq, t: to seq}     → encoded ledger records (ledger/ledgerCodec.ts)
//   hpn.getobj  32-byte hashes back to back  → the state objects (state/sync.ts), a prefix at least
import { verifyIn } from '../crypto/domain';
import { HASH_BYTES } from '../crypto/hash';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';
import { encodeProposalBody, prevoteOf } from '../consensus/proposalCodec';
import type { PolCert, Proposal } from '../consensus/types';
import { signedPayload } from '../p2p/envelope';
import { decodeValue, encodeValue, FLAG_RELAY } from '../p2p/wire';
import type { UserProtocol } from '../users/nodeApi';

export const KIND = Object.freeze({
  proposal: 'hpn.prop',
  attestation: 'hpn.att',
  inputs: 'hpn.inputs',
  getInputs: 'hpn.getin',
  outputSig: 'hpn.osig',
  npl: 'hpn.npl',
});

/** What nodes ask each other (p2p req/res frames). */
export const REQUEST = Object.freeze({
  ledgers: 'hpn.getlgr',
  objects: 'hpn.getobj',
});

/** State objects per request: 32 blocks of 64 KiB keep an answer at 2 MiB. */
export const MAX_OBJECTS_PER_REQUEST = 32;
/** An object answer stops before this size (one object is always sent), under the 4 MiB frame limit. */
export const MAX_OBJECT_REPLY_BYTES = 3 * 1024 * 1024;

/** Ledgers per hpn.getlgr request; an answer also stops at MAX_LEDGER_REPLY_BYTES. */
export const MAX_LEDGERS_PER_REQUEST = 64;
export const MAX_LEDGER_REPLY_BYTES = 2 * 1024 * 1024;

/**
 * Proposals always travel as raw bodies with the relay flag and nothing else, so the bytes a
 * proposal's author signed are a function of the proposal alone: a PolCert holds only signatures,
 * and each is re-checked against the stage-2 proposal rebuilt from the certificate (prevoteOf).
 */
export const PROPOSAL_FLAGS = FLAG_RELAY;

/** Inputs per hpn.inputs / hpn.getin message; a batch stays well under the peer frame limit. */
export const MAX_INPUTS_PER_MESSAGE = 4096;

export class PeerBodyError extends Error {}

/** What a proposal's author signs (in context 'proposal'), as carried by the p2p envelope. */
export function proposalSignedPayload(p: Proposal): Buffer {
  return signedPayload(PROPOSAL_FLAGS, KIND.proposal, encodeProposalBody(p));
}

/** Every signature in a PolCert verifies over the prevote it claims (the core checks the rest). */
export function polCertSignaturesValid(contractId: string, cert: PolCert): boolean {
  let payload: Buffer;
  try {
    payload = proposalSignedPayload(prevoteOf(contractId, cert));
  } catch {
    return false;
  }
  return cert.sigs.every((s) => verifyIn('proposal', contractId, payload, s.sig, s.pubkey));
}

export interface WireInput {
  protocol: UserProtocol;
  user: Buffer;
  container: Buffer;
  sig: Buffer;
}

export function encodeInputs(inputs: WireInput[]): object {
  return { i: inputs.map((x) => [x.protocol === 'json' ? 0 : 1, x.user, x.container, x.sig]) };
}

/** Structure only: each input's signature is checked by the receiver (users/inputs.ts). */
export function decodeInputs(body: unknown, maxContainerBytes: number): WireInput[] {
  const list = field(body, 'i');
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_INPUTS_PER_MESSAGE) throw new PeerBodyError(`hpn.inputs needs 1..${MAX_INPUTS_PER_MESSAGE} inputs`);
  return list.map((x, n) => {
    if (!Array.isArray(x) || x.length !== 4 || (x[0] !== 0 && x[0] !== 1)) throw new PeerBodyError(`hpn.inputs[${n}] is not [protocol, user, container, sig]`);
    const user = bytes(x[1], `hpn.inputs[${n}].user`, PUBLIC_KEY_BYTES);
    const container = bytes(x[2], `hpn.inputs[${n}].container`);
    if (container.length === 0 || container.length > maxContainerBytes) throw new PeerBodyError(`hpn.inputs[${n}].container must be 1..${maxContainerBytes} bytes`);
    const sig = bytes(x[3], `hpn.inputs[${n}].sig`, SIGNATURE_BYTES);
    return { protocol: x[0] === 0 ? 'json' : 'bson', user, container, sig } satisfies WireInput;
  });
}

export function encodeGetInputs(hashes: Buffer[]): object {
  return { h: hashes };
}

export function decodeGetInputs(body: unknown): Buffer[] {
  const list = field(body, 'h');
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_INPUTS_PER_MESSAGE) throw new PeerBodyError(`hpn.getin needs 1..${MAX_INPUTS_PER_MESSAGE} hashes`);
  return list.map((h, n) => bytes(h, `hpn.getin[${n}]`, HASH_BYTES));
}

export interface OutputSig {
  seqNo: number;
  root: Buffer;
  sig: Buffer;
}

export function encodeOutputSig(o: OutputSig): object {
  return { s: o.seqNo, r: o.root, g: o.sig };
}

export function decodeOutputSig(body: unknown): OutputSig {
  return { seqNo: seq(field(body, 's'), 'hpn.osig.s'), root: bytes(field(body, 'r'), 'hpn.osig.r', HASH_BYTES), sig: bytes(field(body, 'g'), 'hpn.osig.g', SIGNATURE_BYTES) };
}

export interface NplMessage {
  seqNo: number; // the ledger whose execution sent it
  data: Buffer;
}

export function encodeNpl(m: NplMessage): object {
  return { s: m.seqNo, d: m.data };
}

export function decodeNpl(body: unknown, maxBytes: number): NplMessage {
  const data = bytes(field(body, 'd'), 'hpn.npl.d');
  if (data.length > maxBytes) throw new PeerBodyError(`hpn.npl.d is ${data.length} bytes, over ${maxBytes}`);
  return { seqNo: seq(field(body, 's'), 'hpn.npl.s'), data };
}

// Requests (p2p req/res frames: unsigned, on the authenticated link, answered by that peer only).

export function encodeGetLedgers(from: number, to: number): Buffer {
  return encodeValue({ f: from, t: to });
}

export function decodeGetLedgers(body: Buffer): { from: number; to: number } {
  const v = decodeValue(body);
  const from = seq(field(v, 'f'), 'hpn.getlgr.f');
  const to = seq(field(v, 't'), 'hpn.getlgr.t');
  if (from < 1 || to < from || to - from >= MAX_LEDGERS_PER_REQUEST) throw new PeerBodyError(`hpn.getlgr needs 1 ≤ f ≤ t < f + ${MAX_LEDGERS_PER_REQUEST}`);
  return { from, to };
}

/** hpn.getobj asks for objects by hash: the body is the 32-byte hashes back to back. */
export function encodeGetObjects(hashes: readonly Buffer[]): Buffer {
  return Buffer.concat(hashes);
}

export function decodeGetObjects(body: Buffer): Buffer[] {
  const n = body.length / HASH_BYTES;
  if (!Number.isInteger(n) || n < 1 || n > MAX_OBJECTS_PER_REQUEST) throw new PeerBodyError(`hpn.getobj needs 1..${MAX_OBJECTS_PER_REQUEST} hashes of ${HASH_BYTES} bytes, got ${body.length} bytes`);
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) out.push(body.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
  return out;
}

/**
 * Answers (ledger records, state objects) are lists of byte strings: per item a u32 BE of its
 * length + 1 (0 = "I do not have it") and its bytes. Returned as parts so each item is copied once,
 * into the answer frame. An object answer may stop early (a prefix of what was asked): the rest is
 * "not now" (size or serving budget), to be asked again.
 */
export function encodeByteList(items: ReadonlyArray<Buffer | null>): Buffer[] {
  const parts: Buffer[] = [];
  for (const it of items) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(it === null ? 0 : it.length + 1);
    parts.push(len);
    if (it !== null && it.length > 0) parts.push(it);
  }
  return parts;
}

export const BYTE_LIST_ITEM_HEADER = 4;

/** Writes a byte list of items whose bytes `read` puts in place (sized by `length`) into `body`. */
export function writeByteList<T extends { length: number }>(body: Buffer, items: ReadonlyArray<T | null>, read: (item: T, into: Buffer) => void): void {
  let at = 0;
  for (const it of items) {
    body.writeUInt32BE(it === null ? 0 : it.length + 1, at);
    at += BYTE_LIST_ITEM_HEADER;
    if (it === null) continue;
    read(it, body.subarray(at, at + it.length));
    at += it.length;
  }
  if (at !== body.length) throw new Error(`byte list filled ${at} of ${body.length} bytes`);
}

export function decodeByteList(body: Buffer, maxItems: number, what: string): Array<Buffer | null> {
  const out: Array<Buffer | null> = [];
  let at = 0;
  while (at < body.length) {
    if (out.length >= maxItems) throw new PeerBodyError(`${what} has more than ${maxItems} items`);
    if (at + 4 > body.length) throw new PeerBodyError(`${what} item ${out.length} is cut short`);
    const n = body.readUInt32BE(at);
    at += 4;
    if (n === 0) {
      out.push(null);
      continue;
    }
    if (at + n - 1 > body.length) throw new PeerBodyError(`${what} item ${out.length} claims ${n - 1} bytes, ${body.length - at} left`);
    out.push(body.subarray(at, at + n - 1));
    at += n - 1;
  }
  return out;
}

function field(body: unknown, name: string): unknown {
  if (body === null || typeof body !== 'object' || body instanceof Uint8Array || Array.isArray(body)) throw new PeerBodyError(`expected a MessagePack map with "${name}"`);
  return (body as Record<string, unknown>)[name];
}

function bytes(v: unknown, what: string, len?: number): Buffer {
  if (!(v instanceof Uint8Array)) throw new PeerBodyError(`${what} must be bytes`);
  if (len !== undefined && v.length !== len) throw new PeerBodyError(`${what} must be ${len} bytes, got ${v.length}`);
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
}

function seq(v: unknown, what: string): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new PeerBodyError(`${what} must be a ledger seq number`);
  return n;
}
