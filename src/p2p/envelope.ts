// Signed peer messages. The author signs, in the caller's context bound to the contract id,
//   payload = 0x01 (layout version) ‖ flags u8 ‖ kind length u8 ‖ kind ‖ body
// Length framing keeps kind and body apart (reference §9.9); the relay flag is signed so a relayer
// cannot turn a direct message into a flood. Ledger seq and stage live inside the body: the
// consensus layer owns them, this layer only guarantees who said it, for which contract, in which
// context.
import { hashWithPrefix } from '../crypto/hash';
import { domainPrefix, signIn, verifyIn } from '../crypto/domain';
import type { KeyPair } from '../crypto/keys';
import { decodeValue, encodeValue, FLAG_MSGPACK_BODY, FLAG_RELAY, KIND_PATTERN, MESSAGE_CONTEXTS, MessageContext, MsgFrame, WireError } from './wire';

const LAYOUT_VERSION = 1;

/** The bytes the author signs (without the domain prefix that signIn adds). */
export function signedPayload(flags: number, kind: string, body: Uint8Array): Buffer {
  const k = Buffer.from(kind, 'ascii');
  return Buffer.concat([Buffer.from([LAYOUT_VERSION, flags, k.length]), k, body]);
}

export interface NewEnvelope {
  contractId: string;
  keys: KeyPair;
  context: MessageContext;
  kind: string;
  body: Uint8Array | object;
  relay: boolean;
}

export function createEnvelope(e: NewEnvelope): Omit<MsgFrame, 'type'> {
  if (!MESSAGE_CONTEXTS.includes(e.context)) throw new Error(`peer message context must be one of ${MESSAGE_CONTEXTS.join(', ')}, got ${String(e.context)}`);
  if (typeof e.kind !== 'string' || !KIND_PATTERN.test(e.kind)) throw new Error(`peer message kind ${JSON.stringify(e.kind)} must match ${String(KIND_PATTERN)}`);
  if (e.body === null || typeof e.body !== 'object') throw new Error('peer message body must be a Uint8Array or an object');
  const isBytes = e.body instanceof Uint8Array;
  const body = isBytes ? Buffer.from(e.body as Uint8Array) : encodeValue(e.body);
  const flags = (e.relay ? FLAG_RELAY : 0) | (isBytes ? 0 : FLAG_MSGPACK_BODY);
  const sig = signIn(e.context, e.contractId, signedPayload(flags, e.kind, body), e.keys.secretKey);
  return { context: e.context, kind: e.kind, author: e.keys.publicKey, flags, body, sig };
}

export function verifyEnvelope(contractId: string, f: Omit<MsgFrame, 'type'>): boolean {
  return verifyIn(f.context, contractId, signedPayload(f.flags, f.kind, f.body), f.sig, f.author);
}

/**
 * Exactly what the author signed, domain prefix included (`message`), and the payload without it,
 * built with one copy of the body: a receiver derives the id, checks the signature and keeps the
 * payload from these, instead of concatenating a megabyte body three times.
 */
export function signedBytes(contractId: string, f: Omit<MsgFrame, 'type'>): { message: Buffer; payload: Buffer } {
  const prefix = domainPrefix(f.context, contractId);
  const k = Buffer.from(f.kind, 'ascii');
  const message = Buffer.concat([prefix, Buffer.from([LAYOUT_VERSION, f.flags, k.length]), k, f.body]);
  return { message, payload: message.subarray(prefix.length) };
}

/**
 * Message id = BLAKE3(author ‖ exactly what was signed, domain prefix included). It leaves the
 * signature out, so re-encoding the frame or re-signing the same content cannot yield a "new"
 * message that slips past deduplication.
 */
export function messageId(author: Buffer, signedMessage: Buffer): Buffer {
  return hashWithPrefix(author, signedMessage);
}

export function envelopeId(contractId: string, f: Omit<MsgFrame, 'type'>): Buffer {
  return messageId(f.author, signedBytes(contractId, f).message);
}

/** The body as the author gave it: bytes stay bytes, MessagePack bodies must decode to an object. */
export function decodeBody(f: Omit<MsgFrame, 'type'>): Uint8Array | object {
  if ((f.flags & FLAG_MSGPACK_BODY) === 0) return f.body;
  const v = decodeValue(f.body);
  if (v === null || typeof v !== 'object') throw new WireError('msg body flagged as MessagePack does not decode to an object');
  return v;
}
