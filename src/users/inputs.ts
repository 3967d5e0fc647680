// Signed contract inputs (§2.3): parse the input_container, check its fields and verify the user's
// signature over the exact container bytes. HotPocket defers the signature check to consensus; we
// check on receipt so a forged input is rejected at once and never reaches the node or its peers.
import { deserialize } from 'bson';
import { hash } from '../crypto/hash';
import { verify } from '../crypto/keys';
import { isPlainObject } from './codec';
import { bsonBytes, uint } from './fields';
import type { RejectReason, SubmittedInput, UserProtocol } from './nodeApi';

export type InputCheck = { ok: true; input: SubmittedInput } | { ok: false; reason: RejectReason; inputHash: Buffer; detail: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** An input's id (HotPocket: the hash of the user's signature), known before anything is checked. */
export function inputHashOf(sig: Buffer): Buffer {
  return hash(sig);
}

/**
 * The container's fields and the input's id, short of the signature check (so cheap refusals can
 * come first). `inputHash`: inputHashOf(sig) when the caller has it already (a native call each).
 */
export function parseSignedInput(protocol: UserProtocol, container: Buffer, sig: Buffer, inputHash = inputHashOf(sig)): InputCheck {
  const fields = parseContainer(protocol, container);
  if (typeof fields === 'string') return { ok: false, reason: 'bad_msg_format', inputHash, detail: fields };
  return { ok: true, input: { container, sig, protocol, inputHash, ...fields } };
}

/** Whether the user signed exactly this container. */
export function signatureProblem(user: Buffer, input: SubmittedInput): InputCheck | null {
  if (verify(input.container, input.sig, user)) return null;
  return { ok: false, reason: 'bad_sig', inputHash: input.inputHash, detail: 'input_container signature does not verify with the user key' };
}

/** Everything short of node-side admission (ledger window, nonce order, round limits). */
export function checkSignedInput(protocol: UserProtocol, user: Buffer, container: Buffer, sig: Buffer): InputCheck {
  const parsed = parseSignedInput(protocol, container, sig);
  if (!parsed.ok) return parsed;
  return signatureProblem(user, parsed.input) ?? parsed;
}

type ContainerFields = Pick<SubmittedInput, 'blob' | 'nonce' | 'maxLedgerSeqNo'>;

/** The container's fields, or a description of what is wrong with it. */
function parseContainer(protocol: UserProtocol, container: Buffer): ContainerFields | string {
  let doc: unknown;
  try {
    doc = protocol === 'json' ? JSON.parse(utf8.decode(container)) : deserialize(container, { useBigInt64: true });
  } catch (err) {
    return `input_container is not a valid ${protocol.toUpperCase()} document: ${(err as Error).message}`;
  }
  if (!isPlainObject(doc)) return 'input_container must be an object';
  const blob = protocol === 'json' ? (typeof doc.input === 'string' ? Buffer.from(doc.input, 'utf8') : undefined) : bsonBytes(doc.input);
  if (!blob) return `input_container.input must be ${protocol === 'json' ? 'a string' : 'binary'}`;
  const nonce = uint(doc.nonce);
  if (nonce === undefined || nonce === 0n) return 'input_container.nonce must be a positive integer (at most 2^53-1 in JSON)';
  const maxLedger = uint(doc.max_ledger_seq_no);
  if (maxLedger === undefined || maxLedger > BigInt(Number.MAX_SAFE_INTEGER)) return 'input_container.max_ledger_seq_no must be a non-negative integer below 2^53';
  return { blob, nonce, maxLedgerSeqNo: Number(maxLedger) };
}
