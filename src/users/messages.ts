// The authenticated part of the HotPocket 0.6 user protocol: parsing what users send (§2.3) into
// typed requests, and building what the node sends (§2.4) with HotPocket's field names and order.
import { hash } from '../crypto/hash';
import { ContractData, isPlainObject, WireObject, WireValue } from './codec';
import { binary, safeUint, str } from './fields';
import type {
  CollapsedHashTree,
  ContractOutputEvent,
  LedgerId,
  LedgerQueryResult,
  LedgerRecord,
  NodeStatus,
  RejectReason,
  UserProtocol,
  VoteStatus,
} from './nodeApi';

export type SubscriptionChannel = 'unl_change' | 'ledger_event';

export type UserRequest =
  | { type: 'contract_input'; container: Buffer; sig: Buffer; inputHash: Buffer }
  | { type: 'contract_read_request'; id: string; content: Buffer }
  | { type: 'stat' }
  | { type: 'lcl' }
  | { type: 'subscription'; channel: SubscriptionChannel; enabled: boolean }
  | { type: 'ledger_query'; id: string; seqNo: number; inputs: boolean; outputs: boolean };

export type RequestParse =
  | { ok: true; req: UserRequest }
  | { ok: false; reason: 'bad_msg_format' | 'invalid_msg_type'; inputHash: Buffer; detail: string };

const EMPTY = Buffer.alloc(0);

function bad(detail: string, inputHash: Buffer = EMPTY): RequestParse {
  return { ok: false, reason: 'bad_msg_format', inputHash, detail };
}

/** Validates the fields of a decoded message; never throws. */
export function parseRequest(protocol: UserProtocol, m: Record<string, unknown>): RequestParse {
  const type = str(m.type);
  if (type === undefined) return bad('"type" must be a string');
  switch (type) {
    case 'contract_input': {
      const sig = binary(protocol, m.sig);
      // HotPocket reports a malformed input under blake3(sig) so the client can match it to its submission.
      const inputHash = sig ? hash(sig) : EMPTY;
      const container = protocol === 'json' ? (typeof m.input_container === 'string' ? Buffer.from(m.input_container, 'utf8') : undefined) : binary(protocol, m.input_container);
      if (!sig) return bad(`"sig" must be ${protocol === 'json' ? 'a hex string' : 'binary'}`, inputHash);
      if (!container) return bad(`"input_container" must be ${protocol === 'json' ? 'a string' : 'binary'}`, inputHash);
      return { ok: true, req: { type, container, sig, inputHash } };
    }
    case 'contract_read_request': {
      const id = str(m.id);
      const content = protocol === 'json' ? (typeof m.content === 'string' ? Buffer.from(m.content, 'utf8') : undefined) : binary(protocol, m.content);
      if (id === undefined) return bad('"id" must be a string');
      if (!content) return bad(`"content" must be ${protocol === 'json' ? 'a string' : 'binary'}`);
      return { ok: true, req: { type, id, content } };
    }
    case 'stat':
    case 'lcl':
      return { ok: true, req: { type } };
    case 'subscription': {
      const channel = m.channel;
      if (typeof m.enabled !== 'boolean') return bad('"enabled" must be a boolean');
      if (channel !== 'unl_change' && channel !== 'ledger_event') return bad('"channel" must be "unl_change" or "ledger_event" (health_event is not offered by this node)');
      return { ok: true, req: { type, channel, enabled: m.enabled } };
    }
    case 'ledger_query': {
      const id = str(m.id);
      if (!id) return bad('"id" must be a non-empty string');
      if (m.filter_by !== 'seq_no') return bad('"filter_by" must be "seq_no"');
      if (!isPlainObject(m.params)) return bad('"params" must be an object');
      if (!Array.isArray(m.include)) return bad('"include" must be an array');
      const seqNo = safeUint(m.params.seq_no);
      if (seqNo === undefined) return bad('"params.seq_no" must be a non-negative integer');
      return { ok: true, req: { type, id, seqNo, inputs: m.include.includes('inputs'), outputs: m.include.includes('outputs') } };
    }
    default:
      return { ok: false, reason: 'invalid_msg_type', inputHash: EMPTY, detail: `unknown message type ${JSON.stringify(type.slice(0, 64))}` };
  }
}

// ---- node -> user messages (field order as HotPocket writes them) ----

export function inputStatusMsg(status: 'accepted' | 'rejected', inputHash: Buffer, reason?: RejectReason, ledger?: LedgerId): WireObject {
  const msg: WireObject = { type: 'contract_input_status', status };
  if (status === 'rejected') msg.reason = reason ?? 'bad_msg_format';
  msg.input_hash = inputHash;
  if (status === 'accepted' && ledger) {
    msg.ledger_seq_no = ledger.seqNo;
    msg.ledger_hash = ledger.hash;
  }
  return msg;
}

export function statResponseMsg(hpVersion: string, lcl: LedgerId, st: NodeStatus, unl: string[]): WireObject {
  return {
    type: 'stat_response',
    hp_version: hpVersion,
    ledger_seq_no: lcl.seqNo,
    ledger_hash: lcl.hash,
    vote_status: st.voteStatus,
    round_time: st.roundTimeMs,
    contract_execution_enabled: st.contractExecutionEnabled,
    read_requests_enabled: st.readRequestsEnabled,
    is_full_history_node: st.isFullHistoryNode,
    weakly_connected: st.weaklyConnected,
    current_unl: unl.map(keyBytes),
    peers: st.peers.slice(0, 100),
  };
}

export function lclResponseMsg(lcl: LedgerId): WireObject {
  return { type: 'lcl_response', ledger_seq_no: lcl.seqNo, ledger_hash: lcl.hash };
}

export function readResponseMsg(replyFor: string, content: Buffer): WireObject {
  return { type: 'contract_read_response', reply_for: replyFor, content: new ContractData(content) };
}

export function contractOutputMsg(ev: ContractOutputEvent): WireObject {
  return {
    type: 'contract_output',
    ledger_seq_no: ev.ledgerSeqNo,
    ledger_hash: ev.ledgerHash,
    outputs: ev.outputs.map((o) => new ContractData(o)),
    output_hash: ev.outputHash,
    hash_tree: hashTreeWire(ev.hashTree),
    unl_sig: ev.unlSig.map(([pk, sig]) => [pk, sig]),
  };
}

function hashTreeWire(t: CollapsedHashTree): WireValue[] {
  return t.map((e) => (Array.isArray(e) ? hashTreeWire(e) : e));
}

export function unlChangeMsg(unl: string[]): WireObject {
  return { type: 'unl_change', unl: unl.map(keyBytes) };
}

export function ledgerCreatedMsg(ledger: LedgerRecord): WireObject {
  return { type: 'ledger_event', event: 'ledger_created', ledger: ledgerFields(ledger) };
}

export function voteStatusMsg(voteStatus: VoteStatus): WireObject {
  return { type: 'ledger_event', event: 'vote_status', vote_status: voteStatus };
}

export function ledgerQueryResultMsg(replyFor: string, result: LedgerQueryResult | null): WireObject {
  const msg: WireObject = { type: 'ledger_query_result', reply_for: replyFor };
  if (result && 'error' in result) return { ...msg, error: result.error, results: [] };
  if (!result) return { ...msg, error: null, results: [] };
  const rec: WireObject = ledgerFields(result.ledger);
  if (result.inputs) rec.inputs = result.inputs.map((i) => ({ pubkey: i.pubkey, hash: i.hash, nonce: i.nonce, blob: i.blob }));
  if (result.outputs) rec.outputs = result.outputs.map((o) => ({ pubkey: o.pubkey, hash: o.hash, blobs: o.blobs }));
  return { ...msg, error: null, results: [rec] };
}

function ledgerFields(l: LedgerRecord): WireObject {
  return {
    seq_no: l.seqNo,
    timestamp: l.timestampMs,
    hash: l.hash,
    prev_hash: l.prevHash,
    state_hash: l.stateHash,
    config_hash: l.configHash,
    user_hash: l.userHash,
    input_hash: l.inputHash,
    output_hash: l.outputHash,
  };
}

/** UNL keys are "ed..." hex in the API; on the wire they are binary (hex again in JSON). */
function keyBytes(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}
