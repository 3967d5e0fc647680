// The fd numbers the contract sees and the args JSON written to its stdin, in HotPocket's field
// order (hpcore sc.cpp write_contract_args); old C contracts parse it at fixed byte offsets.
import type { ContractArgs } from './types';

/** Fds 0-2 are stdio, 3 is the launcher's bridge (close-on-exec for the contract). */
export const USER_IN_FD = 4;
const CONTROL_FD = 5;

export interface FdLayout {
  userInFd: number;
  /** One socket per user slot; the first `users.length` are announced in the args JSON. */
  userOutFds: number[];
  controlFd: number;
  /** Absent in read-only runs (no NPL). */
  nplFd?: number;
}

/**
 * Channels first, then user sockets: every number the args JSON announces depends only on the
 * run's users, not on how many spare slots a process started ahead of its ledger holds.
 */
export function fdLayout(slots: number, readonly: boolean): FdLayout {
  const nplFd = readonly ? undefined : CONTROL_FD + 1;
  const first = (nplFd ?? CONTROL_FD) + 1;
  const userOutFds = Array.from({ length: slots }, (_, i) => first + i);
  return { userInFd: USER_IN_FD, userOutFds, controlFd: CONTROL_FD, nplFd };
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
