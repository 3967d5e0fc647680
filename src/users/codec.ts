// Wire encoding for the two user protocols. Messages are built once as a protocol-neutral value tree
// and written as JSON (binary values as lower-case hex, integers as plain digits) or BSON (binary
// values as binary subtype 0, integers as int64), which is how HotPocket encodes them.
import { deserialize, serialize } from 'bson';
import type { UserProtocol } from './nodeApi';

/**
 * Bytes produced by the contract (outputs, read replies). BSON sends them as binary; JSON sends
 * them as text, embedded raw when they look like JSON (HotPocket's quirk, see embedContractData).
 */
export class ContractData {
  constructor(readonly bytes: Buffer) {}
}

export type WireValue = null | boolean | number | bigint | string | Buffer | ContractData | WireValue[] | WireObject;
export interface WireObject {
  [key: string]: WireValue;
}

export function encodeMessage(protocol: UserProtocol, msg: WireObject): Buffer {
  if (protocol === 'json') return Buffer.from(toJson(msg), 'utf8');
  const bytes = serialize(toBson(msg) as Record<string, unknown>);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function toJson(v: WireValue): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new Error(`cannot encode non-finite number ${v}`);
      return String(v);
    case 'bigint':
      return v.toString();
    case 'string':
      return JSON.stringify(v);
  }
  if (Buffer.isBuffer(v)) return `"${v.toString('hex')}"`;
  if (v instanceof ContractData) return embedContractData(v.bytes);
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  return `{${Object.entries(v)
    .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
    .join(',')}}`;
}

function toBson(v: WireValue): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string' || typeof v === 'bigint') return v;
  // Integers go out as int64 like HotPocket's encoder; bson would otherwise pick int32 or double.
  if (typeof v === 'number') return Number.isSafeInteger(v) ? BigInt(v) : v;
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ContractData) return v.bytes;
  if (Array.isArray(v)) return v.map(toBson);
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = toBson(x);
  return out;
}

/**
 * HotPocket (usrmsg_json.cpp is_json_string) inserts contract data into JSON messages unquoted when
 * it "looks like" JSON: non-empty and wrapped in "" {} or [], or exactly true/false, or only digits
 * with at most one dot. Everything else is sent as a JSON string.
 */
export function looksLikeJson(text: string): boolean {
  if (text.length === 0) return false;
  const first = text[0];
  const last = text[text.length - 1];
  if ((first === '"' && last === '"') || (first === '{' && last === '}') || (first === '[' && last === ']')) return true;
  if (text === 'true' || text === 'false') return true;
  let dot = false;
  for (const c of text) {
    if (c === '.') {
      if (dot) return false;
      dot = true;
    } else if (c < '0' || c > '9') return false;
  }
  return true;
}

/**
 * JSON text for contract data: raw when it looks like JSON (mirroring HotPocket) AND actually parses,
 * otherwise a JSON string. The parse check is ours: HotPocket would emit e.g. `{oops}` or `01` raw and
 * make the whole message unparsable for the client; we send such data as a string instead.
 */
export function embedContractData(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  if (looksLikeJson(text)) {
    try {
      JSON.parse(text);
      return text;
    } catch {
      // fall through: not valid JSON after all
    }
  }
  return JSON.stringify(text);
}

export type Decoded = { ok: true; msg: Record<string, unknown> } | { ok: false; detail: string };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses one inbound message into a plain object; never throws. */
export function decodeMessage(protocol: UserProtocol, data: Buffer): Decoded {
  let msg: unknown;
  try {
    msg = protocol === 'json' ? JSON.parse(utf8.decode(data)) : deserialize(data, { useBigInt64: true });
  } catch (err) {
    return { ok: false, detail: `not a valid ${protocol.toUpperCase()} document: ${(err as Error).message}` };
  }
  if (!isPlainObject(msg)) return { ok: false, detail: `message must be a ${protocol.toUpperCase()} object` };
  return { ok: true, msg };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
