// Serving an authenticated user's requests (§2.3 -> §2.4). Everything here works on an already
// decoded message; failures become one contract_input_status rejection plus a bad-message count.
import { WireObject } from './codec';
import { parseSignedInput, signatureProblem } from './inputs';
import { inputStatusMsg, ledgerQueryResultMsg, lclResponseMsg, parseRequest, readResponseMsg, statResponseMsg, SubscriptionChannel } from './messages';
import type { RejectReason, UserNodeApi, UserProtocol } from './nodeApi';

export type LogFn = (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;

/** What a request handler may use of its session. */
export interface RequestContext {
  readonly api: UserNodeApi;
  readonly protocol: UserProtocol;
  readonly pubkey: Buffer;
  readonly subscriptions: Set<SubscriptionChannel>;
  readonly jobs: JobScheduler; // read requests and ledger queries
  readonly label: string; // for logs
  readonly log: LogFn;
  isOpen(): boolean;
  send(msg: WireObject): void;
  /** A protocol-level bad message: counted against max_bad_msgs_per_min. */
  countBad(detail: string): void;
}

export function handleRequest(ctx: RequestContext, msg: Record<string, unknown>): void {
  const parsed = parseRequest(ctx.protocol, msg);
  if (!parsed.ok) return reject(ctx, parsed.reason, parsed.inputHash, parsed.detail, true);
  const req = parsed.req;
  const api = ctx.api;
  switch (req.type) {
    case 'contract_input': {
      if (api.inputsFull?.()) return reject(ctx, 'round_inputs_overflow', req.inputHash, 'node refused the input: round_inputs_overflow (its input pool is full)', false);
      const check = parseSignedInput(ctx.protocol, req.container, req.sig, req.inputHash);
      if (!check.ok) return reject(ctx, check.reason, check.inputHash, check.detail, true);
      // Refusals that need no signature (window, nonce, round budget) first: under overload most
      // inputs are refused, and then a refusal costs no signature check.
      const early = api.precheckInput?.(ctx.pubkey, check.input);
      if (early && !early.ok) return reject(ctx, early.reason, check.input.inputHash, `node refused the input: ${early.reason}`, false);
      const forged = signatureProblem(ctx.pubkey, check.input);
      if (forged && !forged.ok) return reject(ctx, forged.reason, forged.inputHash, forged.detail, true);
      const res = api.submitInput(ctx.pubkey, check.input);
      // Admission refusals (expired window, old nonce...) are ordinary outcomes, not abuse: not counted.
      if (!res.ok) reject(ctx, res.reason, check.input.inputHash, `node refused the input: ${res.reason}`, false);
      return;
    }
    case 'contract_read_request':
      // HotPocket silently ignores reads when they are disabled.
      if (!api.status().readRequestsEnabled) return;
      if (!ctx.jobs.submit(() => runRead(ctx, req.id, req.content))) ctx.countBad(`read request ${JSON.stringify(req.id.slice(0, 64))} dropped: too many queued requests`);
      return;
    case 'stat':
      return ctx.send(statResponseMsg(api.hpVersion, api.lcl(), api.status(), api.unl()));
    case 'lcl':
      return ctx.send(lclResponseMsg(api.lcl()));
    case 'subscription':
      if (req.enabled) ctx.subscriptions.add(req.channel);
      else ctx.subscriptions.delete(req.channel);
      return;
    case 'ledger_query':
      if (!ctx.jobs.submit(() => runLedgerQuery(ctx, req.id, req.seqNo, { inputs: req.inputs, outputs: req.outputs }))) {
        ctx.countBad(`ledger query ${JSON.stringify(req.id.slice(0, 64))} dropped: too many queued requests`);
      }
      return;
  }
}

function reject(ctx: RequestContext, reason: RejectReason, inputHash: Buffer, detail: string, countAsBad: boolean): void {
  ctx.log('debug', `${ctx.label}: rejected (${reason}): ${detail}`);
  ctx.send(inputStatusMsg('rejected', inputHash, reason));
  if (countAsBad) ctx.countBad(detail);
}

async function runRead(ctx: RequestContext, id: string, content: Buffer): Promise<void> {
  let outputs: Buffer[];
  try {
    outputs = await ctx.api.readRequest(ctx.pubkey, content);
  } catch (err) {
    ctx.log('warn', `${ctx.label}: read request ${JSON.stringify(id.slice(0, 64))} failed: ${(err as Error).message}`);
    return;
  }
  for (const out of outputs) {
    if (!ctx.isOpen()) return;
    ctx.send(readResponseMsg(id, out));
  }
}

async function runLedgerQuery(ctx: RequestContext, id: string, seqNo: number, include: { inputs: boolean; outputs: boolean }): Promise<void> {
  let msg: WireObject;
  try {
    msg = ledgerQueryResultMsg(id, await ctx.api.ledgerQuery(seqNo, include, ctx.pubkey));
  } catch (err) {
    ctx.log('warn', `${ctx.label}: ledger query ${seqNo} failed: ${(err as Error).message}`);
    msg = ledgerQueryResultMsg(id, { error: 'exec_failure' });
  }
  if (ctx.isOpen()) ctx.send(msg);
}

/** Bounded per-session execution of slow requests: `concurrency` at once, `maxQueued` waiting, the rest refused. */
export class JobScheduler {
  private running = 0;
  private readonly queue: Array<() => Promise<void>> = [];
  private stopped = false;

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued: number,
  ) {}

  /** False when the queue is full (the request is dropped). */
  submit(task: () => Promise<void>): boolean {
    if (this.stopped) return true;
    if (this.running < this.concurrency) {
      this.run(task);
      return true;
    }
    if (this.queue.length >= this.maxQueued) return false;
    this.queue.push(task);
    return true;
  }

  /** Drops waiting jobs (the session closed); running ones finish and find the session closed. */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
  }

  private run(task: () => Promise<void>): void {
    this.running++;
    task()
      .catch(() => undefined)
      .finally(() => {
        this.running--;
        const next = this.queue.shift();
        if (next && !this.stopped) this.run(next);
      });
  }
}
