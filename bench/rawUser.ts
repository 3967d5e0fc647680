// The load generator's HotPocket user, shared by bench/node.ts and bench/cluster.ts (not a benchmark
// itself): a raw wss:// client in the JSON protocol that submits signed contract_input messages to
// the echo contract and counts statuses, outputs and input→output latency into a shared LoadStats.
import crypto from 'node:crypto';
import { WebSocket } from 'ws';
import { generateKeyPair, KeyPair, sign } from '../src/crypto/keys';

/** Every socket a RawUser (or a benchmark's own probe) opened and has not seen close: terminate them on cleanup. */
export const openSockets = new Set<WebSocket>();

export interface LoadStats {
  counting: boolean;
  accepted: number;
  rejected: Map<string, number>;
  outputs: number;
  badOutputs: number;
  outputLatMs: number[]; // submit -> contract_output holding its echo, counted inputs only
  lcl: number;
  acceptedByLedger: Map<number, number>; // ledger seq -> inputs accepted into it (all, not only counted)
  outputsByLedger: Map<number, number>; // ledger seq -> outputs delivered with it
  ledgerAt: Map<number, number>; // ledger seq -> when a subscribed client first heard ledger_created
}

export function newLoadStats(): LoadStats {
  return {
    counting: false, accepted: 0, rejected: new Map(), outputs: 0, badOutputs: 0, outputLatMs: [], lcl: 0,
    acceptedByLedger: new Map(), outputsByLedger: new Map(), ledgerAt: new Map(),
  };
}

export interface LedgerWindow {
  from: number; // first ledger closed in the window (its inputs arrived before it: not counted)
  to: number; // last ledger closed in the window
  spanS: number; // between the two closes
  accepted: number; // inputs accepted into ledgers from+1..to
  outputs: number; // outputs delivered with ledgers from+1..to
}

/**
 * Steady-state rate from whole ledgers: those a subscribed client heard close inside [t0, t1], the
 * first one excluded (its inputs arrived before it), over the time between the first and the last
 * close. Null when fewer than two closed in the window.
 */
export function wholeLedgers(stats: LoadStats, t0: number, t1: number): LedgerWindow | null {
  const closed = [...stats.ledgerAt].filter(([, at]) => at >= t0 && at <= t1).sort((a, b) => a[0] - b[0]);
  if (closed.length < 2) return null;
  const [from, fromAt] = closed[0];
  const [to, toAt] = closed[closed.length - 1];
  let accepted = 0;
  let outputs = 0;
  for (let l = from + 1; l <= to; l++) {
    accepted += stats.acceptedByLedger.get(l) ?? 0;
    outputs += stats.outputsByLedger.get(l) ?? 0;
  }
  return { from, to, spanS: (toAt - fromAt) / 1000, accepted, outputs };
}

export interface RawUserOptions {
  /** Pad each input to this many bytes (the input string "u<id>-<nonce>-xxx…"); 0 = unpadded. */
  payloadBytes?: number;
  /** max_ledger_seq_no = the latest ledger seen + this (HotPocket's client default: 10). */
  maxLedgerOffset?: number;
}

const ECHO = /^Echoing: u\d+-(\d+)(?:-x*)?$/;

/**
 * A HotPocket 0.6 user over wss:// in the JSON protocol, as src/users/handshake.ts expects it:
 * user_challenge -> user_challenge_response (signed challenge, our own server_challenge) ->
 * server_challenge_response; then signed contract_input messages, binary frames throughout.
 * Inputs carry increasing nonces, so one user must submit through one node only.
 */
export class RawUser {
  private readonly keys: KeyPair = generateKeyPair();
  private readonly pubkeyHex = this.keys.publicKey.toString('hex');
  private ws!: WebSocket;
  private nonce = 0;
  inFlight = 0;
  submitted = 0;
  private readonly sentAt = new Map<number, number>(); // nonce -> submit time
  private readonly counted = new Set<number>(); // nonces submitted while counting
  private readonly padding: string;
  private readonly maxLedgerOffset: number;
  onStatus: () => void = () => undefined;

  constructor(readonly id: number, private readonly stats: LoadStats, opts: RawUserOptions = {}) {
    this.padding = opts.payloadBytes ? 'x'.repeat(opts.payloadBytes) : '';
    this.maxLedgerOffset = opts.maxLedgerOffset ?? 10;
  }

  connect(url: string, subscribeLedger: boolean): Promise<void> {
    this.ws = new WebSocket(url, { rejectUnauthorized: false, perMessageDeflate: false });
    openSockets.add(this.ws);
    this.ws.on('close', () => openSockets.delete(this.ws));
    this.ws.on('error', () => undefined); // followed by 'close'; an unhandled one would crash us
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client ${this.id}: handshake timeout`)), 15_000);
      this.ws.once('error', (err) => reject(new Error(`client ${this.id}: ${err.message}`)));
      this.ws.once('close', (code, reason) => reject(new Error(`client ${this.id}: closed (${code}) ${reason}`)));
      let stage = 0;
      this.ws.on('message', (data: Buffer) => {
        const m = JSON.parse(data.toString('utf8'));
        if (stage === 0 && m.type === 'user_challenge') {
          stage = 1;
          const sig = sign(Buffer.from(m.challenge, 'utf8'), this.keys.secretKey);
          const resp = { type: 'user_challenge_response', sig: sig.toString('hex'), pubkey: this.pubkeyHex, server_challenge: crypto.randomBytes(8).toString('hex'), protocol: 'json' };
          this.ws.send(Buffer.from(JSON.stringify(resp)), { binary: true });
        } else if (stage === 1 && m.type === 'server_challenge_response') {
          stage = 2;
          clearTimeout(timer);
          if (subscribeLedger) this.send({ type: 'subscription', channel: 'ledger_event', enabled: true });
          this.send({ type: 'lcl' });
          resolve();
        } else if (stage === 2) this.onMessage(m);
      });
    });
  }

  private send(msg: unknown): void {
    this.ws.send(Buffer.from(JSON.stringify(msg)), { binary: true });
  }

  submit(): void {
    const nonce = ++this.nonce;
    let input = `u${this.id}-${nonce}`;
    if (this.padding) input = `${input}-${this.padding}`.slice(0, Math.max(input.length + 1, this.padding.length));
    const container = JSON.stringify({ input, nonce, max_ledger_seq_no: this.stats.lcl + this.maxLedgerOffset });
    const sig = sign(Buffer.from(container, 'utf8'), this.keys.secretKey);
    this.sentAt.set(nonce, performance.now());
    if (this.stats.counting) this.counted.add(nonce);
    this.inFlight++;
    this.submitted++;
    this.send({ type: 'contract_input', input_container: container, sig: sig.toString('hex') });
  }

  private onMessage(m: Record<string, any>): void {
    const st = this.stats;
    switch (m.type) {
      case 'contract_input_status': {
        this.inFlight--;
        if (st.counting) {
          if (m.status === 'accepted') st.accepted++;
          else st.rejected.set(m.reason, (st.rejected.get(m.reason) ?? 0) + 1);
        }
        if (m.status === 'accepted' && typeof m.ledger_seq_no === 'number') {
          st.lcl = Math.max(st.lcl, m.ledger_seq_no);
          st.acceptedByLedger.set(m.ledger_seq_no, (st.acceptedByLedger.get(m.ledger_seq_no) ?? 0) + 1);
        }
        this.onStatus();
        break;
      }
      case 'contract_output': {
        const now = performance.now();
        if (st.counting) st.outputs += m.outputs.length;
        st.outputsByLedger.set(m.ledger_seq_no, (st.outputsByLedger.get(m.ledger_seq_no) ?? 0) + m.outputs.length);
        for (const o of m.outputs as unknown[]) {
          const mm = typeof o === 'string' ? ECHO.exec(o) : null;
          if (!mm) {
            st.badOutputs++;
            continue;
          }
          const nonce = Number(mm[1]);
          const t = this.sentAt.get(nonce);
          this.sentAt.delete(nonce);
          if (t !== undefined && this.counted.delete(nonce) && st.counting) st.outputLatMs.push(now - t);
        }
        break;
      }
      case 'ledger_event':
        if (m.event === 'ledger_created') {
          st.lcl = Math.max(st.lcl, m.ledger.seq_no);
          if (!st.ledgerAt.has(m.ledger.seq_no)) st.ledgerAt.set(m.ledger.seq_no, performance.now());
        }
        break;
      case 'lcl_response':
        st.lcl = Math.max(st.lcl, m.ledger_seq_no);
        break;
    }
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000);
      this.ws.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.ws.close();
    });
  }
}
