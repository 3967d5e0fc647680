// patch.cfg, the contract-visible copy of the contract section of the config, in HotPocket's
// format (hotpocket-sdk-protocols.md §1.7): contracts read it with ctx.getConfig() and may change it.
import type { NodeConfig } from '../config/nodeConfig';
import { isPublicKeyHex } from '../crypto/keys';

export interface PatchConfig {
  version: string;
  unl: string[];
  bin_path: string;
  bin_args: string;
  environment: Record<string, string>;
  max_input_ledger_offset: number;
  consensus: { mode: 'public' | 'private'; roundtime: number; stage_slice: number; threshold: number };
  npl: { mode: 'public' | 'private' };
  round_limits: {
    user_input_bytes: number;
    user_output_bytes: number;
    npl_output_bytes: number;
    proc_cpu_seconds: number;
    proc_mem_bytes: number;
    proc_ofd_count: number;
    exec_timeout: number;
  };
}

export function patchConfigOf(cfg: NodeConfig): PatchConfig {
  const c = cfg.contract;
  return {
    version: c.version,
    unl: [...c.unl].sort(),
    bin_path: c.bin_path,
    bin_args: c.bin_args,
    environment: c.environment,
    max_input_ledger_offset: c.max_input_ledger_offset,
    consensus: { mode: 'private', roundtime: c.consensus.roundtime, stage_slice: 25, threshold: c.consensus.threshold },
    npl: { mode: 'private' },
    round_limits: { ...c.round_limits },
  };
}

/** What the consensus takes from a contract-edited patch.cfg. */
export interface ConsensusSettings {
  unl: string[]; // lower-case hex, sorted
  roundtime: number;
  threshold: number;
}

/**
 * The consensus settings in a patch.cfg the contract wrote, or a description of what is wrong with
 * it. Every node reads the same bytes (the file is part of the agreed state), so every node
 * reaches the same verdict and a bad edit is ignored everywhere alike.
 */
export function consensusSettingsOf(bytes: Buffer): ConsensusSettings | string {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    return `patch.cfg is not JSON: ${(err as Error).message}`;
  }
  const d = doc as Partial<PatchConfig> | null;
  if (!d || typeof d !== 'object') return 'patch.cfg must be a JSON object';
  const unl = d.unl;
  if (!Array.isArray(unl) || unl.length === 0 || !unl.every((k) => typeof k === 'string' && isPublicKeyHex(k))) return 'patch.cfg unl must be a non-empty list of node public keys';
  const keys = [...new Set(unl.map((k) => k.toLowerCase()))].sort();
  if (keys.length !== unl.length) return 'patch.cfg unl lists a key twice';
  const rt = d.consensus?.roundtime;
  if (!Number.isSafeInteger(rt) || (rt as number) < 50 || (rt as number) > 3_600_000) return 'patch.cfg consensus.roundtime must be an integer in 50..3600000';
  const th = d.consensus?.threshold;
  if (!Number.isSafeInteger(th) || (th as number) <= 50 || (th as number) > 100) return 'patch.cfg consensus.threshold must be an integer in 51..100';
  return { unl: keys, roundtime: rt as number, threshold: th as number };
}
