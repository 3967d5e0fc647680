// Contract execution: one HotPocket-compatible contract process per call (see executor.ts).
export { prepareContract, runContract, startContract, MAX_OUTPUT_MESSAGE_BYTES } from './executor';
export { buildArgsJson, fdLayout } from './args';
export type { FdLayout, InputSpans } from './args';
export type {
  ContractArgs,
  ContractExecution,
  ContractLaunch,
  ContractLimits,
  ContractRun,
  ContractRunRequest,
  ContractRunResult,
  ContractStdio,
  ContractUser,
  PreparedContract,
} from './types';
