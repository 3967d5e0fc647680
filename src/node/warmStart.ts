// Warm start: the next execution's contract process, started while the round is still open.
//
// A Node.js contract spends most of a short execution booting (Node itself, then its modules,
// loaded from the state mount): 60 ms alone, 150-250 ms with three nodes on two cores. That is
// longer than the time between a ledger's close and the next round's prevote, which needs the
// execution's result. So after each execution the node begins the next session with no clock yet
// (reads go on, changes wait: statefs WriteGate) and starts the contract in it; the process loads
// its code and blocks reading its args. When the next ledger closes, the session gets the
// ledger's time and the process its args. What it can observe is what a process started at the
// close observes: the same committed files, every change stamped with the ledger's time, and its
// exec_timeout counted from its args.
import { prepareContract } from '../contract/executor';
import type { ContractLaunch, PreparedContract } from '../contract/types';
import type { Quota } from '../state/session';
import type { StatefsMount } from '../state/statefsClient';
import type { Logger } from './log';

/** User sockets a warm process holds at least: a ledger with more users starts cold. */
export const MIN_WARM_SLOTS = 32;
/** And at most: each is a socketpair and a Node stream. */
export const MAX_WARM_SLOTS = 256;

/** Fds a contract keeps free for its own files when proc_ofd_count caps them. */
const OWN_FDS = 32;

/**
 * Slots for the next run, given the most users a recent ledger had: room for twice that, but
 * never so many that spare sockets eat into the contract's RLIMIT_NOFILE (0 = none): fds 0-6 and
 * the sockets sit below the limit, and the contract must still be able to open its own files.
 */
export function warmSlots(recentMaxUsers: number, procOfdCount = 0): number {
  const wanted = Math.min(MAX_WARM_SLOTS, Math.max(MIN_WARM_SLOTS, 2 * recentMaxUsers));
  return procOfdCount > 0 ? Math.max(0, Math.min(wanted, procOfdCount - 7 - OWN_FDS)) : wanted;
}

interface Prepared {
  proc: PreparedContract;
  /**
   * The mount whose session it waits in: a remount (sync, rollback) ends that session, and on the
   * same mount the root cannot move while it waits (statefs refuses to commit a held session).
   */
  mount: StatefsMount;
  /** Launch settings and quota it was started with. */
  key: string;
}

export class WarmStart {
  private next: Prepared | null = null;
  private pending: Promise<void> = Promise.resolve();
  private recentUsers: number[] = [];
  /** Processes used / started cold because none fitted (for status and the bench). */
  readonly counts = { warm: 0, cold: 0, discarded: 0 };

  constructor(
    private readonly mount: () => StatefsMount,
    private readonly log: Logger,
  ) {}

  /** Notes a ledger's user count; the most among the last 32 sizes the next process. */
  noteUsers(users: number): number {
    this.recentUsers.push(users);
    if (this.recentUsers.length > 32) this.recentUsers.shift();
    return Math.max(...this.recentUsers);
  }

  /** Begins the next session without a clock and starts the contract in it (no-op if one waits). */
  prepare(launch: ContractLaunch, quota: Quota, slots: number): void {
    this.pending = this.pending.then(async () => {
      if (this.next) return;
      const mount = this.mount();
      await mount.begin(null, quota);
      try {
        const proc = prepareContract({ ...launch, slots, readonly: false, argsAsPackets: true });
        this.next = { proc, mount, key: keyOf(launch, quota) };
      } catch (err) {
        await mount.rollback();
        throw err;
      }
    }).catch((err: Error) => this.log.warn(`cannot start the next contract process ahead of its ledger (it will start at the close): ${err.message}`));
  }

  /**
   * The waiting process, if it waits on the current mount, was started with these settings and has a
   * socket for every user: its session gets the ledger's time. Otherwise it is dropped and null
   * says: begin a session and start a process now.
   */
  async take(launch: ContractLaunch, quota: Quota, users: number, timeMs: number): Promise<PreparedContract | null> {
    await this.pending;
    const n = this.next;
    this.next = null;
    const mount = this.mount();
    if (n && n.mount === mount && n.key === keyOf(launch, quota) && users <= n.proc.slots) {
      await mount.arm(timeMs);
      this.counts.warm++;
      return n.proc;
    }
    if (n) await this.drop(n);
    this.counts.cold++;
    return null;
  }

  /** Kills a waiting process and ends its session (before a sync, a remount or a stop). */
  async discard(): Promise<void> {
    await this.pending;
    const n = this.next;
    this.next = null;
    if (n) await this.drop(n);
  }

  private async drop(n: Prepared): Promise<void> {
    this.counts.discarded++;
    const exited = n.proc.discard(); // the kill is sent at once
    // End the session before waiting for the exit: a write the process made while loading is held
    // until the session's clock is set, and a FUSE request already handed to the server keeps even
    // a killed process in the kernel until it is answered. Ending the session answers it (EIO).
    if (n.mount === this.mount()) await n.mount.rollback();
    await exited;
  }
}

function keyOf(launch: ContractLaunch, quota: Quota): string {
  return JSON.stringify([launch.binPath, launch.binArgs, launch.env, launch.limits, launch.cwd, launch.stderr, quota]);
}
