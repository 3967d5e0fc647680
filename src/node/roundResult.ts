// What one contract execution leaves for the next ledger: the outputs per user, their hashes, the
// HotPocket output tree over them and the state hash (src/users/outputHash.ts), and this node's
// signature of the tree root.
import { sign } from '../crypto/keys';
import { buildOutputTree, collapseForUser, HashTreeNode, userOutputHash } from '../users/outputHash';
import type { CollapsedHashTree } from '../users/nodeApi';

export interface UserOutputs {
  user: Buffer; // 33-byte public key
  outputs: Buffer[];
  hash: Buffer; // blake3(pubkey ‖ outputs…), the format hotpocket-js-client verifies
}

export interface ExecutionResult {
  seqNo: number; // ledger whose inputs were executed
  users: UserOutputs[]; // sorted by output hash
  stateRoot: Buffer;
  outputRoot: Buffer;
  tree: HashTreeNode;
  unlSig: Array<[Buffer, Buffer]>; // [pubkey, signature over outputRoot]
}

/**
 * An output that is a JSON string literal (what the JSON-mode contract SDK makes of
 * `user.send("text")`) becomes its text. The unmodified client verifies output hashes over the
 * values it decodes, so hashing the quoted bytes (as HotPocket does) fails verification; with the
 * text in the ledger, hash and delivery agree for JSON and BSON users alike.
 */
export function normalizeOutput(out: Buffer): Buffer {
  if (out.length < 2 || out[0] !== 0x22 || out[out.length - 1] !== 0x22) return out;
  try {
    const v: unknown = JSON.parse(out.toString('utf8'));
    return typeof v === 'string' ? Buffer.from(v) : out;
  } catch {
    return out;
  }
}

export function finishExecution(seqNo: number, outputs: Map<string, Buffer[]>, stateRoot: Buffer, signer: { publicKey: Buffer; secretKey: Buffer }): ExecutionResult {
  const users = [...outputs.entries()].map(([hex, outs]): [Buffer, Buffer[]] => [Buffer.from(hex, 'hex'), outs.map(normalizeOutput)]);
  return finishExecutionFromUsers(seqNo, users, stateRoot, signer);
}

/** The same from outputs already normalized (a saved result being reloaded). */
export function finishExecutionFromUsers(seqNo: number, outputs: Array<[Buffer, Buffer[]]>, stateRoot: Buffer, signer: { publicKey: Buffer; secretKey: Buffer }): ExecutionResult {
  const users: UserOutputs[] = outputs
    .filter(([, outs]) => outs.length > 0)
    .map(([user, outs]) => ({ user, outputs: outs, hash: userOutputHash(user, outs) }))
    .sort((a, b) => Buffer.compare(a.hash, b.hash));
  const tree = buildOutputTree(users.map((u) => u.hash), stateRoot);
  // Signed raw, the format the upstream client verifies. The root hashes contract outputs and
  // state, so nobody can steer it to bytes of their choosing.
  return { seqNo, users, stateRoot, outputRoot: tree.hash, tree, unlSig: [[signer.publicKey, sign(tree.hash, signer.secretKey)]] };
}

export function proofFor(result: ExecutionResult, user: UserOutputs): CollapsedHashTree {
  return collapseForUser(result.tree, user.hash);
}
