// The fd numbers the contract sees and the args JSON written to its stdin, in HotPocket's field
// order (hpcore sc.cpp write_contract_args); old C contracts parse it at fixed byte offsets.
import type { ContractArgs } from './types';

/** Fds 0-2 are stdio, 3 is the launcher's bridge (close-on-exec for the contract). */
export const USER_IN_FD = 4;
const FIRST_USER_OUT_FD = 5;

export interface FdLayout {
  userInFd: number;
  userOutFds: number[];
  controlFd: number;
  /** Absent in read-only runs (no NPL). */
  nplFd?: number;
}

export function fdLayout(userCount: number, readonly: boolean): FdLayout {
  const userOutFds = Array.from({ length: userCount }, (_, i) => FIRST_USER_OUT_FD + i);
  const controlFd = FIRST_USER_OUT_FD + userCount;
  return { userInFd: USER_IN_FD, userOutFds, controlFd, nplFd: readonly ? undefined : controlFd + 1 };
}

/** [offset, length] of each input in the inputs file, per user. */
export type InputSpans = Array<Array<[number, number]>>;

export function buildArgsJson(a: ContractArgs, users: string[], spans: InputSpans, fds: FdLayout): string {
  const usersObj: Record<string, Array<number | [number, number]>> = {};
  users.forEach((pk, i) => {
    usersObj[pk] = [fds.userOutFds[i], ...spans[i]];
  });
  // Insertion order is the JSON order; undefined fields are left out by JSON.stringify.
  const args = {
    hp_version: a.hpVersion,
    contract_id: a.contractId,
    public_key: a.publicKey,
    // "" rather than absent when not configured: the C SDK copies the field blindly.
    private_key: a.privateKey ?? '',
    timestamp: a.readonly ? 0 : a.timestamp,
    readonly: a.readonly,
    lcl_seq_no: a.readonly ? undefined : a.lclSeqNo ?? 0,
    lcl_hash: a.readonly ? undefined : a.lclHash ?? '',
    npl_fd: fds.nplFd,
    control_fd: fds.controlFd,
    user_in_fd: fds.userInFd,
    users: usersObj,
    unl: a.unl,
    // For the "fallback" SDK variant, which dispatches on mode and ignores readonly.
    mode: a.readonly ? 'read_req' : 'consensus',
  };
  return JSON.stringify(args);
}
