// Runs one contract execution through native/hp-contract-launcher (which owns the SEQPACKET
// control/NPL sockets Node cannot create). Node owns everything else: the args JSON on the
// contract's stdin, the inputs file, one stream socketpair per user (read here directly) and the
// bridge socket carrying control/NPL packets and the launcher's start/exit reports.
//
// Nothing here touches req.cwd: it may be a FUSE mount served by this very process, and a
// synchronous fs call on it would deadlock. Only the contract process (after chdir) uses it.
import { spawn, ChildProcess, StdioOptions } from 'node:child_process';
import type { Socket } from 'node:net';
import type fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { buildArgsJson, fdLayout, FdLayout } from './args';
import { ARGS_PACKET, BridgeChannel, BridgeParser, encodeBridgeFrame, MAX_PACKET, PUBKEY_HEX_LEN, UserOutputParser } from './framing';
import { fillInputsFile, openInputsFile } from './inputs';
import { defaultLauncherPath, isNodeBinary, launcherArgv } from './launcher';
import type { ContractExecution, ContractLaunch, ContractRun, ContractRunRequest, ContractRunResult, ContractStdio, PreparedContract } from './types';

/** Hard cap on one output message even with userOutputBytes = 0, so a bogus header cannot OOM us. */
export const MAX_OUTPUT_MESSAGE_BYTES = 128 * 1024 * 1024;
/** After the launcher exits, how long user sockets may stay open (a daemon that escaped the group). */
const EOF_GRACE_MS = 2000;
/** The launcher enforces execTimeoutMs itself; this only catches a launcher that stopped responding. */
const BACKSTOP_MS = 3000;
const CAPTURE_CAP = 1024 * 1024;
const PUBKEY_RE = new RegExp(`^[0-9a-fA-F]{${PUBKEY_HEX_LEN}}$`);

/** Starts a contract execution; `done` resolves with its result (crashes and timeouts included). */
export function startContract(req: ContractRunRequest): ContractExecution {
  return newExecution(req, req.users.length, req.args.readonly).start(req);
}

/** Runs a contract to completion. */
export function runContract(req: ContractRunRequest): Promise<ContractRunResult> {
  return startContract(req).done;
}

/**
 * Starts a contract process ahead of its run (warm start): Node's boot and the contract's module
 * loading happen now, off the critical path; start() later hands it the run's inputs and args.
 * `slots` user sockets are made; a run may use the first ones. `readonly` fixes the fd layout.
 */
export function prepareContract(launch: ContractLaunch & { slots: number; readonly: boolean }): PreparedContract {
  if (!launch.argsAsPackets) throw new Error('a contract started ahead of its run needs argsAsPackets (see ContractLaunch)');
  return newExecution(launch, launch.slots, launch.readonly);
}

function newExecution(launch: ContractLaunch, slots: number, readonly: boolean): Execution {
  validateLaunch(launch);
  if (!Number.isSafeInteger(slots) || slots < 0) throw new RangeError(`slots must be a non-negative integer, got ${slots}`);
  return new Execution({ ...launch, argsAsPackets: launch.argsAsPackets ?? isNodeBinary(launch.binPath) }, slots, readonly);
}

interface ExitReport {
  code: number;
  signal: number;
  timedOut: boolean;
  nplTruncated: boolean;
}

/** What the process did, before it is matched to a run's users. */
interface RawResult {
  slotOutputs: Buffer[][];
  truncatedSlots: Set<number>;
  exit: ExitReport;
  tStarted: number;
  tExited: number;
  error?: string;
  stdout?: Buffer;
  stderr?: Buffer;
}

class Execution implements ContractExecution, PreparedContract {
  private readonly spawned: Promise<{ child: ChildProcess; inputs: fsp.FileHandle }>;
  private readonly collected: Promise<RawResult>;
  private collectedResolve!: (r: Promise<RawResult>) => void;
  private runDone: Promise<ContractRunResult> | null = null;
  private run: ContractRun | null = null;
  private bridge: Socket | null = null;
  private readonly fds: FdLayout;
  private queued: Buffer[] = []; // frames for the launcher before it reports the contract started
  private child: ChildProcess | null = null;
  private contractPid = 0;
  private ended = false; // the contract exited (or the run is over): deliveries are dropped
  private finished = false; // result built: never signal these pids again (they may be reused)
  private killRequested = false;
  private backstopFired = false;
  private tGo = 0;
  private backstop: NodeJS.Timeout | undefined;

  constructor(
    private readonly launch: ContractLaunch,
    readonly slots: number,
    readonly readonly: boolean,
  ) {
    this.fds = fdLayout(slots, readonly);
    this.collected = new Promise((resolve) => (this.collectedResolve = resolve));
    this.collected.catch(() => undefined); // observed through done or discard()
    this.spawned = this.spawn();
    this.spawned.catch(() => undefined);
  }

  get done(): Promise<ContractRunResult> {
    if (!this.runDone) throw new Error('contract execution not started');
    return this.runDone;
  }

  start(run: ContractRun): ContractExecution {
    if (this.run) throw new Error('this contract process was already started');
    if (run.args.readonly !== this.readonly) throw new Error(`a ${this.readonly ? 'read-only' : 'consensus'} process cannot take a ${run.args.readonly ? 'read-only' : 'consensus'} run`);
    if (run.users.length > this.slots) throw new RangeError(`${run.users.length} users, but this process has ${this.slots} user sockets`);
    validateRun(run);
    this.run = run;
    const t0 = performance.now();
    this.runDone = this.go(run).then(() => this.collected).then((raw) => this.result(raw, run, t0));
    return this;
  }

  async discard(): Promise<void> {
    if (this.run) throw new Error('discard() is for a process that was never started');
    this.kill();
    await this.spawned.then((s) => s.inputs.close().catch(() => undefined), () => undefined);
    await this.collected.catch(() => undefined);
  }

  deliverNpl(senderPubkeyHex: string, data: Buffer): boolean {
    if (!PUBKEY_RE.test(senderPubkeyHex)) throw new TypeError(`NPL sender must be ${PUBKEY_HEX_LEN} hex chars`);
    if (data.length > MAX_PACKET) throw new RangeError(`NPL message over ${MAX_PACKET} bytes`);
    if (this.readonly || this.ended) return false;
    // Key and data travel in one frame; the launcher turns them into the SDK's two packets.
    this.toLauncher(encodeBridgeFrame(BridgeChannel.Npl, Buffer.concat([Buffer.from(senderPubkeyHex, 'latin1'), data])));
    return true;
  }

  sendControl(msg: unknown): boolean {
    const buf = Buffer.from(JSON.stringify(msg));
    if (buf.length > MAX_PACKET) throw new RangeError(`control message over ${MAX_PACKET} bytes`);
    if (this.ended) return false;
    this.toLauncher(encodeBridgeFrame(BridgeChannel.Control, buf));
    return true;
  }

  kill(): void {
    this.killRequested = true;
    // The contract's group only, so the launcher still drains and reports; before the contract
    // is known to have started, the launcher (its death SIGKILLs the contract: PDEATHSIG).
    this.killGroups(this.contractPid === 0);
  }

  /**
   * Frames wait until the launcher reports the contract started: one that fails to start exits at
   * once, and a write to its closed bridge would make Node drop the error report still unread in it.
   */
  private toLauncher(frame: Buffer): void {
    if (this.bridge && this.contractPid !== 0) this.bridge.write(frame);
    else this.queued.push(frame);
  }

  /** SIGKILLs the contract's group, and the launcher's (a session leader: spawned detached). */
  private killGroups(launcherToo: boolean): void {
    if (this.finished) return;
    for (const pgid of [this.contractPid, launcherToo ? this.child?.pid ?? 0 : 0]) {
      if (pgid > 0) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  }

  /** Opens the (empty) inputs file and spawns the launcher; the contract boots and waits for its args. */
  private async spawn(): Promise<{ child: ChildProcess; inputs: fsp.FileHandle }> {
    let inputs: fsp.FileHandle;
    try {
      inputs = await openInputsFile(this.launch.tmpDir);
    } catch (err) {
      this.collectedResolve(Promise.reject(err));
      throw err;
    }
    try {
      const child = this.spawnLauncher(inputs.fd);
      // Listen at once: a launcher that fails fast (execve/chdir error) can exit before any await
      // returns, and a missed 'exit' would leave the run pending.
      this.collectedResolve(this.collect(child));
      child.stdin?.on('error', () => undefined); // the contract may exit without reading its args
      return { child, inputs };
    } catch (err) {
      await inputs.close();
      this.collectedResolve(Promise.reject(err));
      throw err;
    }
  }

  /** Fills the inputs file, writes the args JSON and starts the launcher's clock. */
  private async go(run: ContractRun): Promise<void> {
    const { child, inputs } = await this.spawned;
    try {
      const spans = await fillInputsFile(inputs, run.users.map((u) => u.inputs));
      const argsJson = buildArgsJson(run.args, run.users.map((u) => u.pubkeyHex), spans, this.fds);
      this.tGo = performance.now();
      if (this.launch.argsAsPackets) {
        // The launcher feeds them to the contract's stdin and starts its exec_timeout clock at the end.
        const bytes = Buffer.from(argsJson);
        // With execAfterArgs the launcher reports the start only after them: they cannot wait for it.
        const send = (frame: Buffer) => (this.launch.execAfterArgs ? this.bridge!.write(frame) : this.toLauncher(frame));
        for (let off = 0; off < bytes.length; off += ARGS_PACKET) send(encodeBridgeFrame(BridgeChannel.Args, bytes.subarray(off, off + ARGS_PACKET)));
        send(encodeBridgeFrame(BridgeChannel.Args, Buffer.alloc(0)));
      } else {
        child.stdin!.end(argsJson);
      }
      // Backstop only: the launcher kills the contract at execTimeoutMs itself (counted from go).
      const timeout = this.launch.limits.execTimeoutMs;
      if (timeout > 0 && !this.finished) {
        this.backstop = setTimeout(() => {
          this.backstopFired = true;
          this.killGroups(true);
        }, timeout + BACKSTOP_MS);
      }
    } finally {
      // The launcher (and the contract) hold their own copy at fd 4.
      await inputs.close().catch(() => undefined);
    }
    // Sockets of slots this run leaves unused: nobody will write to them.
    for (const fd of this.fds.userOutFds.slice(run.users.length)) (child.stdio[fd] as Socket | null)?.destroy();
  }

  private result(raw: RawResult, run: ContractRun, t0: number): ContractRunResult {
    const tRun = Math.max(this.tGo || t0, raw.tStarted || 0);
    const result: ContractRunResult = {
      outputs: new Map(run.users.map((u, i) => [u.pubkeyHex, raw.slotOutputs[i] ?? []])),
      exitCode: raw.exit.signal ? null : raw.exit.code,
      signal: raw.exit.signal ? signalName(raw.exit.signal) : null,
      timedOut: raw.exit.timedOut,
      truncatedUsers: run.users.filter((_, i) => raw.truncatedSlots.has(i)).map((u) => u.pubkeyHex),
      nplTruncated: raw.exit.nplTruncated,
      timings: {
        spawnMs: raw.tStarted || raw.tExited ? Math.max(0, Math.min(tRun, raw.tExited || tRun) - t0) : 0,
        execMs: raw.tStarted ? Math.max(0, raw.tExited - tRun) : 0,
        warm: raw.tStarted > 0 && raw.tStarted < t0,
      },
    };
    if (raw.error) result.error = raw.error;
    if (raw.stdout) result.stdout = raw.stdout;
    if (raw.stderr) result.stderr = raw.stderr;
    return result;
  }

  private spawnLauncher(inputsFd: number): ChildProcess {
    const { launch: req, fds } = this;
    const stdio: StdioOptions = [
      req.argsAsPackets ? 'ignore' : 'pipe', // 0: args JSON (or the launcher's SEQPACKET socket)
      stdioOf(req.stdout),
      stdioOf(req.stderr),
      'pipe', // 3: bridge
      inputsFd, // 4: user_in_fd
    ];
    // The channel numbers (control, NPL) come before the user sockets: the launcher dup2s over them.
    while (stdio.length < (fds.userOutFds[0] ?? 0)) stdio.push('ignore');
    for (const _ of fds.userOutFds) stdio.push('pipe'); // user outputs
    const argv = launcherArgv(req.binPath, req.binArgs, path.resolve(req.cwd), fds, req.limits, req.argsAsPackets ?? false, req.execAfterArgs ?? false);
    // env: the launcher passes its own environment to execve, so the contract gets exactly req.env.
    // cwd '/': the launcher must not hold the state mount busy; the contract chdirs itself.
    const child = spawn(req.launcherPath ?? defaultLauncherPath(), argv, { stdio, env: req.env, cwd: '/', detached: true });
    this.child = child;
    this.bridge = child.stdio[3] as Socket;
    if (this.killRequested) this.killGroups(true);
    return child;
  }

  private collect(child: ChildProcess): Promise<RawResult> {
    const { launch: req, fds } = this;
    return new Promise((resolve, reject) => {
      let tStarted = 0;
      let tExited = 0;
      let report: ExitReport | null = null;
      let startError: string | undefined;
      let launcherExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
      let spawnError: Error | null = null;
      let protocolError: Error | null = null;
      let openStreams = 0;
      let graceTimer: NodeJS.Timeout | undefined;
      const streams: Readable[] = [];
      const truncated = new Set<number>();
      const captured: Record<'stdout' | 'stderr', Buffer[]> = { stdout: [], stderr: [] };

      const track = (s: Readable | null | undefined) => {
        if (!s) return;
        streams.push(s);
        openStreams++;
        s.on('error', () => undefined); // EPIPE/ECONNRESET after a close is expected
        s.once('close', () => {
          openStreams--;
          maybeFinish();
        });
      };

      // User outputs, read straight from the contract's sockets.
      const parsers = fds.userOutFds.map((fd, i) => {
        const parser = new UserOutputParser(req.limits.userOutputBytes, MAX_OUTPUT_MESSAGE_BYTES);
        const sock = child.stdio[fd] as Socket;
        track(sock);
        sock.on('data', (chunk: Buffer) => {
          if (!parser.push(chunk)) {
            truncated.add(i); // HotPocket closes the socket; further writes fail (EPIPE)
            sock.destroy();
          }
        });
        return parser;
      });

      for (const name of ['stdout', 'stderr'] as const) {
        if (req[name] !== 'capture') continue;
        const s = child[name];
        track(s);
        let size = 0;
        s?.on('data', (d: Buffer) => {
          if (size < CAPTURE_CAP) captured[name].push(d.subarray(0, CAPTURE_CAP - size));
          size += d.length;
        });
      }

      // The bridge: start/exit reports and control/NPL packets from the contract.
      const bridgeParser = new BridgeParser();
      track(this.bridge);
      this.bridge!.on('data', (chunk: Buffer) => {
        let frames;
        try {
          frames = bridgeParser.push(chunk);
        } catch (err) {
          protocolError = err as Error;
          this.killGroups(true);
          this.bridge!.destroy();
          return;
        }
        for (const f of frames) {
          if (f.channel === BridgeChannel.Meta) onMeta(parseMeta(f.payload));
          else if (f.channel === BridgeChannel.Npl) hook('onNplMessage', () => this.run?.onNplMessage?.(f.payload));
          else if (f.channel === BridgeChannel.Control) {
            let msg: unknown;
            try {
              msg = JSON.parse(f.payload.toString());
            } catch {
              continue; // HotPocket ignores control packets that are not JSON
            }
            hook('onControlMessage', () => this.run?.onControlMessage?.(msg));
          }
        }
      });

      const onMeta = (m: { event: string; [k: string]: unknown }) => {
        if (m.event === 'started') {
          tStarted = performance.now();
          this.contractPid = m.pid as number;
          if (this.killRequested) this.killGroups(false);
          for (const frame of this.queued) this.bridge!.write(frame);
          this.queued = [];
        } else if (m.event === 'error') {
          startError = `${m.stage} failed: ${m.message}`;
        } else if (m.event === 'exit') {
          tExited = performance.now();
          this.ended = true;
          report = m as unknown as ExitReport;
        }
      };

      child.once('error', (err) => {
        spawnError = err; // e.g. ENOENT: launcher not built
        launcherExit ??= { code: null, signal: null };
        for (const s of streams) s.destroy();
        maybeFinish();
      });
      child.once('exit', (code, signal) => {
        launcherExit = { code, signal };
        this.ended = true;
        tExited ||= performance.now();
        // Normally every socket hits EOF now; a process that left the contract's group may hold one.
        graceTimer = setTimeout(() => streams.forEach((s) => s.destroy()), EOF_GRACE_MS);
        maybeFinish();
      });

      const maybeFinish = () => {
        if (this.finished || !launcherExit || openStreams > 0) return;
        this.finished = true;
        this.ended = true;
        clearTimeout(this.backstop);
        clearTimeout(graceTimer);
        if (spawnError) {
          const hint = (spawnError as NodeJS.ErrnoException).code === 'ENOENT' ? ' (run `npm run build` to compile native/)' : '';
          return reject(new Error(`cannot start hp-contract-launcher: ${spawnError.message}${hint}`));
        }
        if (protocolError) return reject(protocolError);
        const exit = report ?? fromLauncherExit(launcherExit, this.backstopFired);
        if (!report && !tStarted && !this.killRequested && !this.backstopFired) {
          return reject(new Error(`hp-contract-launcher failed before starting the contract (exit ${launcherExit.code ?? launcherExit.signal})`));
        }
        const raw: RawResult = { slotOutputs: parsers.map((p) => p.messages), truncatedSlots: truncated, exit, tStarted, tExited };
        if (startError) raw.error = startError;
        if (req.stdout === 'capture') raw.stdout = Buffer.concat(captured.stdout);
        if (req.stderr === 'capture') raw.stderr = Buffer.concat(captured.stderr);
        resolve(raw);
      };
    });
  }
}

function parseMeta(payload: Buffer): { event: string; [k: string]: unknown } {
  try {
    return JSON.parse(payload.toString());
  } catch {
    return { event: 'unknown' }; // never sent by our launcher; ignored rather than crashing the node
  }
}

/** Exit info when the launcher died without its exit report (killed by the backstop or kill()). */
function fromLauncherExit(e: { code: number | null; signal: NodeJS.Signals | null }, backstop: boolean): ExitReport {
  const signal = e.signal ? os.constants.signals[e.signal] : e.code !== null && e.code > 128 ? e.code - 128 : 0;
  return { code: e.code ?? 0, signal, timedOut: backstop, nplTruncated: false };
}

function signalName(n: number): NodeJS.Signals | null {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n);
  return entry ? (entry[0] as NodeJS.Signals) : null;
}

/** A hook that throws must not break the run; it is reported as a process warning instead. */
function hook(name: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    process.emitWarning(`contract executor: ${name} threw: ${(err as Error)?.stack ?? err}`);
  }
}

function stdioOf(s: ContractStdio | undefined): 'ignore' | 'inherit' | 'pipe' | number {
  return s === undefined ? 'ignore' : s === 'capture' ? 'pipe' : s;
}

const noNul = (s: unknown, what: string) => {
  if (typeof s !== 'string' || s.includes('\0')) throw new TypeError(`${what} must be a string without NUL`);
};

function validateLaunch(req: ContractLaunch): void {
  noNul(req.binPath, 'binPath');
  if (!req.binPath) throw new TypeError('binPath is empty');
  req.binArgs.forEach((a, i) => noNul(a, `binArgs[${i}]`));
  noNul(req.cwd, 'cwd');
  for (const [k, v] of Object.entries(req.env)) {
    if (!k || k.includes('=')) throw new TypeError(`bad environment name ${JSON.stringify(k)}`);
    noNul(k, 'env name');
    noNul(v, `env ${k}`);
  }
}

function validateRun(req: ContractRun): void {
  const seen = new Set<string>();
  for (const u of req.users) {
    if (!u.pubkeyHex || seen.has(u.pubkeyHex)) throw new TypeError(`bad or duplicate user ${u.pubkeyHex}`);
    seen.add(u.pubkeyHex);
  }
}
