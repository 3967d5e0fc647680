// Runs one contract execution through native/hp-contract-launcher (which owns the SEQPACKET
// control/NPL sockets Node cannot create). Node owns everything else: the args JSON on the
// contract's stdin, the inputs file, one stream socketpair per user (read here directly) and the
// bridge socket carrying control/NPL packets and the launcher's start/exit reports.
//
// Nothing here touches req.cwd: it may be a FUSE mount served by this very process, and a
// synchronous fs call on it would deadlock. Only the contract process (after chdir) uses it.
import { spawn, ChildProcess, StdioOptions } from 'node:child_process';
import type { Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { buildArgsJson, fdLayout, FdLayout } from './args';
import { BridgeChannel, BridgeParser, encodeBridgeFrame, MAX_PACKET, PUBKEY_HEX_LEN, UserOutputParser } from './framing';
import { writeInputsFile } from './inputs';
import { defaultLauncherPath, launcherArgv } from './launcher';
import type { ContractExecution, ContractRunRequest, ContractRunResult, ContractStdio } from './types';

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
  validate(req);
  return new Execution(req);
}

/** Runs a contract to completion. */
export function runContract(req: ContractRunRequest): Promise<ContractRunResult> {
  return startContract(req).done;
}

interface ExitReport {
  code: number;
  signal: number;
  timedOut: boolean;
  nplTruncated: boolean;
}

class Execution implements ContractExecution {
  readonly done: Promise<ContractRunResult>;
  private bridge: Socket | null = null;
  private queued: Buffer[] = []; // frames for the launcher before it is spawned
  private child: ChildProcess | null = null;
  private contractPid = 0;
  private ended = false; // the contract exited (or the run is over): deliveries are dropped
  private finished = false; // result built: never signal these pids again (they may be reused)
  private killRequested = false;
  private backstopFired = false;

  constructor(private readonly req: ContractRunRequest) {
    this.done = this.run();
  }

  deliverNpl(senderPubkeyHex: string, data: Buffer): boolean {
    if (!PUBKEY_RE.test(senderPubkeyHex)) throw new TypeError(`NPL sender must be ${PUBKEY_HEX_LEN} hex chars`);
    if (data.length > MAX_PACKET) throw new RangeError(`NPL message over ${MAX_PACKET} bytes`);
    if (this.req.args.readonly || this.ended) return false;
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

  private toLauncher(frame: Buffer): void {
    if (this.bridge) this.bridge.write(frame);
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

  private async run(): Promise<ContractRunResult> {
    const req = this.req;
    const t0 = performance.now();
    const fds = fdLayout(req.users.length, req.args.readonly);
    const inputs = await writeInputsFile(
      req.users.map((u) => u.inputs),
      req.tmpDir,
    );
    let done: Promise<ContractRunResult>;
    try {
      const argsJson = buildArgsJson(req.args, req.users.map((u) => u.pubkeyHex), inputs.spans, fds);
      const child = this.spawnLauncher(fds, inputs.fh.fd);
      // Listen before the next await: a launcher that fails fast (execve/chdir error) can exit
      // while fh.close() is in the thread pool, and a missed 'exit' would leave `done` pending.
      done = this.collect(child, fds, t0);
      done.catch(() => undefined); // it may reject while fh.close() is pending; the caller gets it
      child.stdin!.on('error', () => undefined); // the contract may exit without reading its args
      child.stdin!.end(argsJson);
    } catch (err) {
      await inputs.fh.close();
      throw err;
    }
    // The launcher holds its own copy (fd 4). Once it is spawned, collect() reports the run.
    await inputs.fh.close().catch(() => undefined);
    return done;
  }

  private spawnLauncher(fds: FdLayout, inputsFd: number): ChildProcess {
    const req = this.req;
    const stdio: StdioOptions = [
      'pipe', // 0: args JSON
      stdioOf(req.stdout),
      stdioOf(req.stderr),
      'pipe', // 3: bridge
      inputsFd, // 4: user_in_fd
      ...req.users.map(() => 'pipe' as const), // 5..: user outputs
    ];
    const argv = launcherArgv(req.binPath, req.binArgs, path.resolve(req.cwd), fds, req.limits);
    // env: the launcher passes its own environment to execve, so the contract gets exactly req.env.
    // cwd '/': the launcher must not hold the state mount busy; the contract chdirs itself.
    const child = spawn(req.launcherPath ?? defaultLauncherPath(), argv, { stdio, env: req.env, cwd: '/', detached: true });
    this.child = child;
    this.bridge = child.stdio[3] as Socket;
    for (const frame of this.queued) this.bridge.write(frame);
    this.queued = [];
    if (this.killRequested) this.killGroups(true);
    return child;
  }

  private collect(child: ChildProcess, fds: FdLayout, t0: number): Promise<ContractRunResult> {
    const req = this.req;
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
      const truncated = new Set<string>();
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
      const parsers = req.users.map((u, i) => {
        const parser = new UserOutputParser(req.limits.userOutputBytes, MAX_OUTPUT_MESSAGE_BYTES);
        const sock = child.stdio[fds.userOutFds[i]] as Socket;
        track(sock);
        sock.on('data', (chunk: Buffer) => {
          if (!parser.push(chunk)) {
            truncated.add(u.pubkeyHex); // HotPocket closes the socket; further writes fail (EPIPE)
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
          else if (f.channel === BridgeChannel.Npl) hook('onNplMessage', () => req.onNplMessage?.(f.payload));
          else if (f.channel === BridgeChannel.Control) {
            let msg: unknown;
            try {
              msg = JSON.parse(f.payload.toString());
            } catch {
              continue; // HotPocket ignores control packets that are not JSON
            }
            hook('onControlMessage', () => req.onControlMessage?.(msg));
          }
        }
      });

      const onMeta = (m: { event: string; [k: string]: unknown }) => {
        if (m.event === 'started') {
          tStarted = performance.now();
          this.contractPid = m.pid as number;
          if (this.killRequested) this.killGroups(false);
        } else if (m.event === 'error') {
          startError = `${m.stage} failed: ${m.message}`;
        } else if (m.event === 'exit') {
          tExited = performance.now();
          this.ended = true;
          report = m as unknown as ExitReport;
        }
      };

      // Backstop only: the launcher kills the contract at execTimeoutMs itself.
      const backstop =
        req.limits.execTimeoutMs > 0
          ? setTimeout(() => {
              this.backstopFired = true;
              this.killGroups(true);
            }, req.limits.execTimeoutMs + BACKSTOP_MS)
          : undefined;

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
        clearTimeout(backstop);
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
        const result: ContractRunResult = {
          outputs: new Map(req.users.map((u, i) => [u.pubkeyHex, parsers[i].messages])),
          exitCode: exit.signal ? null : exit.code,
          signal: exit.signal ? signalName(exit.signal) : null,
          timedOut: exit.timedOut,
          truncatedUsers: req.users.filter((u) => truncated.has(u.pubkeyHex)).map((u) => u.pubkeyHex),
          nplTruncated: exit.nplTruncated,
          timings: {
            spawnMs: (tStarted || tExited) - t0,
            execMs: tStarted ? tExited - tStarted : 0,
          },
        };
        if (startError) result.error = startError;
        if (req.stdout === 'capture') result.stdout = Buffer.concat(captured.stdout);
        if (req.stderr === 'capture') result.stderr = Buffer.concat(captured.stderr);
        resolve(result);
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

function validate(req: ContractRunRequest): void {
  const noNul = (s: unknown, what: string) => {
    if (typeof s !== 'string' || s.includes('\0')) throw new TypeError(`${what} must be a string without NUL`);
  };
  noNul(req.binPath, 'binPath');
  if (!req.binPath) throw new TypeError('binPath is empty');
  req.binArgs.forEach((a, i) => noNul(a, `binArgs[${i}]`));
  noNul(req.cwd, 'cwd');
  for (const [k, v] of Object.entries(req.env)) {
    if (!k || k.includes('=')) throw new TypeError(`bad environment name ${JSON.stringify(k)}`);
    noNul(k, 'env name');
    noNul(v, `env ${k}`);
  }
  const seen = new Set<string>();
  for (const u of req.users) {
    if (!u.pubkeyHex || seen.has(u.pubkeyHex)) throw new TypeError(`bad or duplicate user ${u.pubkeyHex}`);
    seen.add(u.pubkeyHex);
  }
}
