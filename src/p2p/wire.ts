// Peer wire frames: each WebSocket binary frame is one MessagePack array whose first element is the
// frame type. Decoding is strict (exact arity, types and lengths) and never trusts a length the
// peer claims: anything else is a WireError, which the caller counts as a bad message.
//
//   hello: [1, version, contractId: str, pubkey: bin 33, challenge: bin 32]
//   auth:  [2, sig: bin 64]
//   msg:   [3, context: str, kind: str, author: bin 33, flags: uint, body: bin, sig: bin 64]
//   req:   [4, kind: str, id: uint, body: bin]   a question to this one peer (never relayed)
//   res:   [5, id: uint, body: bin]              its answer
//
// req/res are not signed: they travel only on the link whose two keys the handshake proved, carry
// no votes, and whatever an answer holds (ledger records, state objects) is verified by its
// certificate or hash before use. Signing megabytes of state per answer cost more than the rest of
// a sync together; a wrong answer is still pinned on the peer at the other end of the link.
import { Decoder, Encoder } from '@msgpack/msgpack';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES } from '../crypto/keys';
import type { SigningContext } from '../crypto/domain';

export const PROTOCOL_VERSION = 1;
export const CHALLENGE_BYTES = 32;

/** Contexts a peer message may be signed in; 'peer-hello' is reserved for the handshake. */
export type MessageContext = Exclude<SigningContext, 'peer-hello'>;
export const MESSAGE_CONTEXTS: readonly MessageContext[] = Object.freeze(['proposal', 'npl', 'ledger-close', 'sync']);

/** Message kinds are short ASCII names so they frame cleanly inside the signed payload. */
export const KIND_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;
/** flags bit 0: the author asks every node to relay the message to its other peers. */
export const FLAG_RELAY = 1;
/** flags bit 1: body is a MessagePack-encoded value (else raw bytes). */
export const FLAG_MSGPACK_BODY = 2;
const KNOWN_FLAGS = FLAG_RELAY | FLAG_MSGPACK_BODY;

export class WireError extends Error {}

export interface HelloFrame {
  type: 'hello';
  version: number;
  contractId: string;
  pubkey: Buffer;
  challenge: Buffer;
}
export interface AuthFrame {
  type: 'auth';
  sig: Buffer;
}
export interface MsgFrame {
  type: 'msg';
  context: MessageContext;
  kind: string;
  author: Buffer;
  flags: number;
  body: Buffer;
  sig: Buffer;
}
export interface ReqFrame {
  type: 'req';
  kind: string;
  id: number;
  body: Buffer;
}
export interface ResFrame {
  type: 'res';
  id: number;
  body: Buffer;
}
export type Frame = HelloFrame | AuthFrame | MsgFrame | ReqFrame | ResFrame;

const T_HELLO = 1;
const T_AUTH = 2;
const T_MSG = 3;
const T_REQ = 4;
const T_RES = 5;

// useBigInt64 makes bigint round-trip as bigint (and numbers above 2^32 as float64, still numbers);
// sortKeys makes an object's encoding independent of property insertion order.
const encoder = new Encoder({ useBigInt64: true, sortKeys: true });
const decoder = new Decoder({ useBigInt64: true });

export function encodeValue(value: unknown): Buffer {
  const u8 = encoder.encode(value);
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Decodes one MessagePack value that must span all of `bytes`; WireError otherwise. */
export function decodeValue(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new WireError(`undecodable MessagePack: ${(e as Error).message}`);
  }
}

export function encodeHello(f: Omit<HelloFrame, 'type'>): Buffer {
  return encodeValue([T_HELLO, f.version, f.contractId, f.pubkey, f.challenge]);
}
export function encodeAuth(sig: Buffer): Buffer {
  return encodeValue([T_AUTH, sig]);
}
export function encodeMsg(f: Omit<MsgFrame, 'type'>): Buffer {
  return encodeValue([T_MSG, f.context, f.kind, f.author, f.flags, f.body, f.sig]);
}

export function encodeReq(kind: string, id: number, body: Uint8Array): Buffer {
  return encodeValue([T_REQ, kind, id, body]);
}

/**
 * An answer frame with room for a `bodyLength`-byte body, returned with that body as a view:
 * the caller writes the body in place, so however large it is, it is copied once, into the frame.
 */
export function allocRes(id: number, bodyLength: number): { frame: Buffer; body: Buffer } {
  const idBytes = encodeValue(id);
  const head = 2 + idBytes.length + 5;
  const frame = Buffer.allocUnsafe(head + bodyLength);
  frame[0] = 0x93; // fixarray of 3
  frame[1] = T_RES;
  idBytes.copy(frame, 2);
  frame[2 + idBytes.length] = 0xc6; // bin 32
  frame.writeUInt32BE(bodyLength, 3 + idBytes.length);
  return { frame, body: frame.subarray(head) };
}

/** True when `data` starts like an answer frame (checked before any rate bucket is charged). */
export function looksLikeRes(data: Uint8Array): boolean {
  return data.length > 2 && data[0] === 0x93 && data[1] === T_RES;
}

export function decodeFrame(data: Uint8Array): Frame {
  const v = decodeValue(data);
  if (!Array.isArray(v) || v.length === 0) throw new WireError('frame is not a non-empty MessagePack array');
  switch (v[0]) {
    case T_HELLO: {
      arity(v, 5, 'hello');
      const version = v[1];
      if (!Number.isSafeInteger(version) || (version as number) < 0) throw new WireError('hello version must be a non-negative integer');
      if (typeof v[2] !== 'string' || v[2].length > 256) throw new WireError('hello contract id must be a string of at most 256 characters');
      return { type: 'hello', version: version as number, contractId: v[2], pubkey: bin(v[3], PUBLIC_KEY_BYTES, 'hello pubkey'), challenge: bin(v[4], CHALLENGE_BYTES, 'hello challenge') };
    }
    case T_AUTH:
      arity(v, 2, 'auth');
      return { type: 'auth', sig: bin(v[1], SIGNATURE_BYTES, 'auth signature') };
    case T_MSG: {
      arity(v, 7, 'msg');
      const context = v[1];
      if (!(MESSAGE_CONTEXTS as readonly unknown[]).includes(context)) throw new WireError(`msg context ${JSON.stringify(String(context)).slice(0, 40)} is not one of ${MESSAGE_CONTEXTS.join(', ')}`);
      if (typeof v[2] !== 'string' || !KIND_PATTERN.test(v[2])) throw new WireError('msg kind must match ' + String(KIND_PATTERN));
      const flags = v[4];
      if (!Number.isSafeInteger(flags) || (flags as number) < 0 || ((flags as number) & ~KNOWN_FLAGS) !== 0) throw new WireError(`msg flags ${String(flags)} has unknown bits`);
      return { type: 'msg', context: context as MessageContext, kind: v[2], author: bin(v[3], PUBLIC_KEY_BYTES, 'msg author'), flags: flags as number, body: bin(v[5], -1, 'msg body'), sig: bin(v[6], SIGNATURE_BYTES, 'msg signature') };
    }
    case T_REQ: {
      arity(v, 4, 'req');
      if (typeof v[1] !== 'string' || !KIND_PATTERN.test(v[1])) throw new WireError('req kind must match ' + String(KIND_PATTERN));
      return { type: 'req', kind: v[1], id: requestId(v[2], 'req'), body: bin(v[3], -1, 'req body') };
    }
    case T_RES:
      arity(v, 3, 'res');
      return { type: 'res', id: requestId(v[1], 'res'), body: bin(v[2], -1, 'res body') };
    default:
      throw new WireError(`unknown frame type ${String(v[0]).slice(0, 20)}`);
  }
}

function requestId(x: unknown, what: string): number {
  if (typeof x === 'bigint' && x <= BigInt(Number.MAX_SAFE_INTEGER)) x = Number(x);
  if (!Number.isSafeInteger(x) || (x as number) < 0) throw new WireError(`${what} id must be a non-negative safe integer`);
  return x as number;
}

function arity(v: unknown[], n: number, what: string): void {
  if (v.length !== n) throw new WireError(`${what} frame must have ${n} elements, got ${v.length}`);
}

/** A bin field as a Buffer view (no copy); `len` -1 = any length. */
function bin(x: unknown, len: number, what: string): Buffer {
  if (!(x instanceof Uint8Array)) throw new WireError(`${what} must be binary`);
  if (len >= 0 && x.length !== len) throw new WireError(`${what} must be ${len} bytes, got ${x.length}`);
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}
