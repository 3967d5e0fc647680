// Public types of the contract executor (one HotPocket-compatible contract process per call).

/** What the contract sees in its args JSON (HotPocket field names in the comments). */
export interface ContractArgs {
  hpVersion: string; // hp_version
  contractId: string; // contract_id
  publicKey: string; // public_key, "ed" + 64 hex
  /** private_key, "ed" + 128 hex. Only when the operator opted in; otherwise "" is sent. */
  privateKey?: string;
  /** Consensus time of the round (unix ms); read-only runs send 0 whatever is given here. */
  timestamp: number;
  readonly: boolean;
  lclSeqNo?: number; // lcl_seq_no, consensus runs only
  lclHash?: string; // lcl_hash, consensus runs only
  /** unl: { "<pubkey hex>": { active_on: <unix ms> } } in the caller's order. */
  unl: Record<string, { active_on: number }>;
}

export interface ContractUser {
  pubkeyHex: string;
  /** Raw input bytes in consensus order. */
  inputs: Buffer[];
}

/** HotPocket round_limits; 0 means unlimited / not set. */
export interface ContractLimits {
  execTimeoutMs: number;
  /** Payload bytes (not counting the 4-byte headers) one user may receive in one run. */
  userOutputBytes: number;
  /** Bytes the contract may send over NPL in one run; the NPL channel is closed beyond it. */
  nplOutputBytes: number;
  procCpuSeconds: number; // RLIMIT_CPU
  procMemBytes: number; // RLIMIT_DATA
  procOfdCount: number; // RLIMIT_NOFILE
}

/** Where the contract's stdout/stderr go: discarded, this process's, collected into the result, or an fd. */
export type ContractStdio = 'ignore' | 'inherit' | 'capture' | number;

/** How to start a contract process: everything but the run's args and users. */
export interface ContractLaunch {
  binPath: string; // absolute (no PATH search, as in HotPocket), or relative to cwd
  binArgs: string[];
  /** The contract's whole environment: nothing is inherited. */
  env: Record<string, string>;
  /** The state directory. Never touched by this process (it may be a FUSE mount we serve). */
  cwd: string;
  limits: ContractLimits;
  stdout?: ContractStdio; // default 'ignore'
  stderr?: ContractStdio; // default 'ignore'
  /** Directory for the (immediately unlinked) inputs file; default /dev/shm, else os.tmpdir(). */
  tmpDir?: string;
  /** Path of hp-contract-launcher; default native/build/hp-contract-launcher in this repo. */
  launcherPath?: string;
  /**
   * Stdin is a SOCK_SEQPACKET socket the launcher feeds with the args JSON in packets of at most
   * 8 KiB, instead of a pipe. Needed to start a Node contract ahead of its run (prepareContract):
   * Node makes a pipe non-blocking and its readFile(0) would fail while the args are not there
   * yet. Fine for any reader with buffers of 8 KiB or more, not for byte-at-a-time readers
   * (a shell's `read`), so only Node contracts use it. Default: true for Node binaries, cold runs
   * too: a Node contract that reaches readFile(0) before the args are written to a pipe reads ''
   * (Node made the pipe non-blocking; its readFile takes EAGAIN for the end), which a busy parent
   * event loop made happen (seen once in CI).
   */
  argsAsPackets?: boolean;
  /**
   * With argsAsPackets, for contracts that are not Node.js: the launcher may start ahead, but it
   * execs the contract only once the whole args JSON arrived, and stdin is then a file holding it
   * (any read size works). Starting such a launcher ahead (prepareContract) saves the fork of this
   * process and the launcher's set-up, while the contract runs no earlier than a cold start.
   */
  execAfterArgs?: boolean;
}

/** What one run hands the contract. */
export interface ContractRun {
  args: ContractArgs;
  /** Users in the order they appear in the args JSON (HotPocket: sorted by binary pubkey). */
  users: ContractUser[];
  /** Contract -> node NPL message (one packet, <= 128 KiB). */
  onNplMessage?: (data: Buffer) => void;
  /** Contract -> node control message, parsed JSON (e.g. {type:"peer_changeset",add,remove}). */
  onControlMessage?: (msg: unknown) => void;
}

export type ContractRunRequest = ContractLaunch & ContractRun;

export interface ContractRunResult {
  /** Every user of the request, messages in emission order (complete frames only). */
  outputs: Map<string, Buffer[]>;
  /** Exit code when the contract exited normally (127: it could not be started, see error). */
  exitCode: number | null;
  /** Signal that killed the contract (SIGKILL after a timeout). */
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Users whose output exceeded limits.userOutputBytes: their socket was closed. */
  truncatedUsers: string[];
  /** The contract exceeded limits.nplOutputBytes and its NPL channel was closed. */
  nplTruncated: boolean;
  /** Set when the contract process could not be started (chdir/execve/rlimit failed). */
  error?: string;
  timings: {
    /**
     * From start() until the contract could run: inputs file, args and, for a process not started
     * ahead (cold), spawn, fork and execve.
     */
    spawnMs: number;
    /** From then until the contract exited (a cold process's own boot included). */
    execMs: number;
    /** The process was started ahead of its run and had booted while it waited. */
    warm: boolean;
  };
  stdout?: Buffer; // with stdout: 'capture'
  stderr?: Buffer; // with stderr: 'capture'
}

/**
 * A contract process started ahead of its run (warm start): it boots, loads its code from the state
 * directory and blocks reading its args on stdin; its exec_timeout clock has not started.
 */
export interface PreparedContract {
  /** User sockets it holds: a run may have at most this many users. */
  readonly slots: number;
  readonly readonly: boolean;
  /** Hands the process its run (once). */
  start(run: ContractRun): ContractExecution;
  /** Kills a process that will not run after all; resolves once it is gone. */
  discard(): Promise<void>;
}

/** A running execution: NPL/control delivery into the contract while it runs. */
export interface ContractExecution {
  readonly done: Promise<ContractRunResult>;
  /**
   * Queues an NPL message for the contract (delivered as a 66-hex-char key packet, then the data
   * packet). Messages sent before the contract reads are buffered. Returns false when dropped:
   * read-only run, or the contract already exited.
   */
  deliverNpl(senderPubkeyHex: string, data: Buffer): boolean;
  /** Sends one control packet (JSON) to the contract; HotPocket itself never does. */
  sendControl(msg: unknown): boolean;
  /** SIGKILLs the contract's process group now (node shutdown); `done` still resolves. */
  kill(): void;
}
