// patch.cfg, the contract-visible copy of the contract section of the config, in HotPocket's
// format (hotpocket-sdk-protocols.md §1.7): contracts read it with ctx.getConfig() and may change it.
import type { NodeConfig } from '../config/nodeConfig';

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
