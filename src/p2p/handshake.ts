// What each side signs to prove its key during the peer handshake. The statement names both keys,
// both fresh challenges (initiator's first) and the signer's role, in a fixed 131-byte layout, and
// is signed in the 'peer-hello' context bound to the contract id. A node therefore never signs bytes
// the other side chose alone (its own fresh challenge is always inside), a signature captured on one
// connection is useless on another (different challenges), and it can never pass as a proposal or
// any other signature (different context) — the oracle HotPocket's PeerChallenge has (reference §9.1).
import { randomBytes } from 'node:crypto';
import { PUBLIC_KEY_BYTES } from '../crypto/keys';
import { signIn, verifyIn } from '../crypto/domain';
import { CHALLENGE_BYTES } from './wire';

export type Role = 'initiator' | 'responder';
const ROLE_BYTE: Record<Role, number> = { initiator: 1, responder: 2 };
export const HELLO_PAYLOAD_BYTES = 2 * PUBLIC_KEY_BYTES + 2 * CHALLENGE_BYTES + 1;

export function newChallenge(): Buffer {
  return randomBytes(CHALLENGE_BYTES);
}

export interface HelloStatement {
  signer: Buffer; // the key making the statement
  other: Buffer; // the key it is talking to
  initiatorChallenge: Buffer;
  responderChallenge: Buffer;
  role: Role; // the signer's role on this connection
}

/** signer ‖ other ‖ initiator challenge ‖ responder challenge ‖ role byte. */
export function helloPayload(s: HelloStatement): Buffer {
  if (s.signer.length !== PUBLIC_KEY_BYTES || s.other.length !== PUBLIC_KEY_BYTES) throw new Error(`hello keys must be ${PUBLIC_KEY_BYTES} bytes`);
  if (s.initiatorChallenge.length !== CHALLENGE_BYTES || s.responderChallenge.length !== CHALLENGE_BYTES) throw new Error(`hello challenges must be ${CHALLENGE_BYTES} bytes`);
  const out = Buffer.concat([s.signer, s.other, s.initiatorChallenge, s.responderChallenge, Buffer.from([ROLE_BYTE[s.role]])]);
  if (out.length !== HELLO_PAYLOAD_BYTES) throw new Error('hello payload length invariant broken');
  return out;
}

export function signHello(contractId: string, s: HelloStatement, secretKey: Buffer): Buffer {
  return signIn('peer-hello', contractId, helloPayload(s), secretKey);
}

export function verifyHello(contractId: string, s: HelloStatement, sig: Uint8Array): boolean {
  return verifyIn('peer-hello', contractId, helloPayload(s), sig, s.signer);
}
