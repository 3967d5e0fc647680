// Contract execution: one HotPocket-compatible contract process per call (see executor.ts).
export { runContract, startContract, MAX_OUTPUT_MESSAGE_BYTES } from './executor';
export { buildArgsJson, fdLayout } from './args';
export type { FdLayout, InputSpans } from './args';
export type {
  ContractArgs,
  ContractExecution,
  ContractLimits,
  ContractRunRequest,
  ContractRunResult,
  ContractStdio,
  ContractUser,
} from './types';
