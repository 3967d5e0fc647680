// Contract-output hashing exactly as HotPocket does it (hpcore consensus.cpp, util/merkle_hash_tree.cpp)
// and as hotpocket-js-client verifies it (verifyContractOutputTrust), so that the unmodified client
// accepts our outputs when it pins trustedServerKeys:
//   user output hash = blake3(user pubkey (33 bytes) ‖ output 1 ‖ output 2 ...)   (no length framing: upstream format)
//   leaves           = user output hashes sorted bytewise, then the post-execution state hash last
//   tree             = groups of 16 consecutive nodes, parent = blake3(concat child hashes);
//                      a group of one child is that child; repeat until one node remains
//   unl_sig          = each UNL node's Ed25519 signature over the 32-byte root
// Each user gets the tree collapsed to the path to their own leaf, with that leaf as null.
import { hash, HASH_BYTES } from '../crypto/hash';
import type { CollapsedHashTree } from './nodeApi';

export const OUTPUT_TREE_FANOUT = 16;

export interface HashTreeNode {
  hash: Buffer;
  children: HashTreeNode[];
}

/** blake3(pubkey ‖ outputs...): the per-user output hash the client recomputes. */
export function userOutputHash(pubkey: Buffer, outputs: readonly Uint8Array[]): Buffer {
  if (pubkey.length !== 33) throw new Error(`user pubkey must be 33 bytes, got ${pubkey.length}`);
  return hash(Buffer.concat([pubkey, ...outputs]));
}

/** Builds the fan-out tree over `leaves` in the given order (HotPocket's create_groups). */
export function buildMerkleTree(leaves: readonly Buffer[], fanout = OUTPUT_TREE_FANOUT): HashTreeNode {
  if (leaves.length === 0) throw new Error('a hash tree needs at least one leaf');
  if (fanout < 2) throw new Error(`fan-out must be >= 2, got ${fanout}`);
  let level: HashTreeNode[] = leaves.map((h) => ({ hash: h, children: [] }));
  while (level.length > 1) {
    const parents: HashTreeNode[] = [];
    for (let i = 0; i < level.length; i += fanout) {
      const group = level.slice(i, i + fanout);
      parents.push(group.length === 1 ? group[0] : { hash: hash(Buffer.concat(group.map((c) => c.hash))), children: group });
    }
    level = parents;
  }
  return level[0];
}

/** The round's output tree: sorted user output hashes, state hash last. Always >= 2 leaves. */
export function buildOutputTree(userOutputHashes: readonly Buffer[], stateHash: Buffer): HashTreeNode {
  if (stateHash.length !== HASH_BYTES) throw new Error(`state hash must be ${HASH_BYTES} bytes, got ${stateHash.length}`);
  const sorted = [...userOutputHashes].sort(Buffer.compare);
  return buildMerkleTree([...sorted, stateHash]);
}

/**
 * The tree as sent to the user owning `userHash`: every subtree not on the path to that leaf is
 * replaced by its hash, the leaf itself by null (HotPocket's collapse + populate_output_hash_array).
 */
export function collapseForUser(root: HashTreeNode, userHash: Buffer): CollapsedHashTree {
  if (root.children.length === 0) throw new Error('cannot collapse a single-leaf tree: the output tree always has the state hash as a second leaf');
  const path = findPath(root, userHash);
  if (!path) throw new Error(`output hash ${userHash.toString('hex')} is not a leaf of this tree`);
  const collapse = (node: HashTreeNode, depth: number): CollapsedHashTree => {
    const onPath = path[depth + 1];
    return node.children.map((c) => (c !== onPath ? c.hash : c.children.length === 0 ? null : collapse(c, depth + 1)));
  };
  return collapse(root, 0);
}

function findPath(node: HashTreeNode, leafHash: Buffer): HashTreeNode[] | null {
  if (node.children.length === 0) return node.hash.equals(leafHash) ? [node] : null;
  for (const c of node.children) {
    const p = findPath(c, leafHash);
    if (p) return [node, ...p];
  }
  return null;
}

/**
 * Folds a collapsed tree back to its root with `selfHash` in place of the single null, as the
 * client does. Throws if there is no null or more than one.
 */
export function collapsedTreeRoot(tree: CollapsedHashTree, selfHash: Buffer): Buffer {
  let nulls = 0;
  const fold = (t: CollapsedHashTree): Buffer =>
    hash(
      Buffer.concat(
        t.map((e) => {
          if (Array.isArray(e)) return fold(e);
          if (e === null) {
            nulls++;
            return selfHash;
          }
          return e;
        }),
      ),
    );
  const root = fold(tree);
  if (nulls !== 1) throw new Error(`a collapsed output tree must contain exactly one null leaf, found ${nulls}`);
  return root;
}
