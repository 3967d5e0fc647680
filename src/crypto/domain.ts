// Domain separation for every signature in hp-node's own protocols. A signed message is
//   "hp-node/<context>\0" ‖ contract id ‖ "\0" ‖ payload
// The context is a fixed non-hex ASCII word, so no signed message can equal bytes another party
// chose (e.g. a bare 32-byte digest or a hex challenge), and a signature made for one contract or
// purpose is useless for another. HotPocket-compatible signatures (user handshake, output roots)
// keep their upstream format and never go through here; their formats cannot start with "hp-node/".
import { sign, verify } from './keys';

export type SigningContext = 'peer-hello' | 'proposal' | 'npl' | 'ledger-close' | 'sync';

/** What goes in front of every payload signed in `context` for `contractId`. */
export function domainPrefix(context: SigningContext, contractId: string): Buffer {
  return Buffer.from(`hp-node/${context}\0${contractId}\0`);
}

export function domainMessage(context: SigningContext, contractId: string, payload: Uint8Array): Buffer {
  return Buffer.concat([domainPrefix(context, contractId), payload]);
}

export function signIn(context: SigningContext, contractId: string, payload: Uint8Array, secretKey: Buffer): Buffer {
  return sign(domainMessage(context, contractId, payload), secretKey);
}

export function verifyIn(context: SigningContext, contractId: string, payload: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  return verify(domainMessage(context, contractId, payload), signature, publicKey);
}
