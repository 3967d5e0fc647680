// The user handshake (§2.2), always JSON:
//   node -> user_challenge {hp_version, type, contract_id, contract_version, challenge: 32 hex chars}
//   user -> user_challenge_response {type, sig over the challenge STRING, pubkey "ed..", server_challenge?, protocol}
//   node -> server_challenge_response {type, sig, pubkey, unl} only when server_challenge was given;
//           sig = node key over utf8(server_challenge + contract_id + contract_version).
import { randomBytes } from 'node:crypto';
import { verify } from '../crypto/keys';
import { decodeMessage, encodeMessage } from './codec';
import { hexBytes } from './fields';
import type { UserProtocol } from './nodeApi';

export const CHALLENGE_BYTES = 16;

export function newChallenge(): string {
  return randomBytes(CHALLENGE_BYTES).toString('hex');
}

export function userChallengeMsg(hpVersion: string, contractId: string, contractVersion: string, challenge: string): Buffer {
  return encodeMessage('json', { hp_version: hpVersion, type: 'user_challenge', contract_id: contractId, contract_version: contractVersion, challenge });
}

export type ChallengeResponse =
  | { ok: true; pubkey: Buffer; protocol: UserProtocol; serverChallenge: string | null }
  | { ok: false; detail: string };

const PUBKEY_HEX = /^ed[0-9a-f]{64}$/i;
// Printable ASCII only, and never our own signing-domain prefix: the node signs this string followed
// by the contract id, so it must not be able to spell "hp-node/<context>\0..." (crypto/domain.ts).
const SERVER_CHALLENGE = /^[\x20-\x7e]{1,32}$/;

/** Checks a user_challenge_response against the challenge we issued; never throws. */
export function verifyChallengeResponse(data: Buffer, challenge: string): ChallengeResponse {
  const d = decodeMessage('json', data);
  if (!d.ok) return { ok: false, detail: d.detail };
  const m = d.msg;
  if (m.type !== 'user_challenge_response') return { ok: false, detail: 'expected a user_challenge_response message' };
  if (typeof m.pubkey !== 'string' || !PUBKEY_HEX.test(m.pubkey)) return { ok: false, detail: '"pubkey" must be "ed" followed by 64 hex characters' };
  const sig = hexBytes(m.sig);
  if (!sig) return { ok: false, detail: '"sig" must be a hex string' };
  let serverChallenge: string | null = null;
  if (m.server_challenge !== undefined && m.server_challenge !== null) {
    const sc = m.server_challenge;
    if (typeof sc !== 'string' || !SERVER_CHALLENGE.test(sc) || sc.startsWith('hp-node/')) {
      return { ok: false, detail: '"server_challenge" must be 1-32 printable ASCII characters' };
    }
    serverChallenge = sc;
  }
  if (m.protocol !== 'json' && m.protocol !== 'bson') return { ok: false, detail: '"protocol" must be "json" or "bson"' };
  // Signature last: it is the expensive check.
  const pubkey = Buffer.from(m.pubkey, 'hex');
  if (!verify(Buffer.from(challenge, 'utf8'), sig, pubkey)) return { ok: false, detail: 'challenge signature does not verify with the given pubkey' };
  return { ok: true, pubkey, protocol: m.protocol, serverChallenge };
}

/** The exact bytes the node signs for a server challenge (HotPocket-compatible). */
export function serverChallengeMessage(serverChallenge: string, contractId: string, contractVersion: string): Buffer {
  return Buffer.from(serverChallenge + contractId + contractVersion, 'utf8');
}

export function serverChallengeResponseMsg(sig: Buffer, nodePubkey: Buffer, unl: string[]): Buffer {
  return encodeMessage('json', { type: 'server_challenge_response', sig, pubkey: nodePubkey, unl });
}
