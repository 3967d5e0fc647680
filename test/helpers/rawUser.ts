// A minimal HotPocket user on a raw `ws` socket (JSON protocol), light enough to open hundreds:
// handshake, signed contract_input, and a queue of decoded messages.
import { WebSocket } from 'ws';
import { hash } from '../../src/crypto/hash';
import { generateKeyPair, KeyPair, sign } from '../../src/crypto/keys';

export class RawUser {
  readonly keys: KeyPair = generateKeyPair();
  private readonly messages: Array<Record<string, any>> = [];
  private readonly waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('error', () => undefined);
    ws.on('message', (d: Buffer) => {
      this.messages.push(JSON.parse(d.toString('utf8')));
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /**
   * Connects and completes the handshake (JSON protocol, no server challenge). `timeoutMs` bounds
   * the WebSocket upgrade and the challenge, so a stopped (SIGSTOP) node cannot hang the caller.
   */
  static async connect(url: string, timeoutMs = 15_000): Promise<RawUser> {
    const u = new RawUser(new WebSocket(url, { rejectUnauthorized: false, handshakeTimeout: timeoutMs }));
    try {
      await new Promise<void>((resolve, reject) => {
        u.ws.once('open', () => resolve());
        u.ws.once('error', reject);
        u.ws.once('close', () => reject(new Error(`${url} closed the connection during the handshake`)));
      });
    } catch (err) {
      u.close();
      throw err;
    }
    const challenge = await u.next((m) => m.type === 'user_challenge', timeoutMs).catch((err: Error) => {
      u.close();
      throw new Error(`${url}: no user_challenge (${err.message})`);
    });
    u.send({
      type: 'user_challenge_response',
      sig: sign(Buffer.from(challenge.challenge as string), u.keys.secretKey).toString('hex'),
      pubkey: u.keys.publicKey.toString('hex'),
      protocol: 'json',
    });
    return u;
  }

  send(obj: unknown): void {
    this.ws.send(Buffer.from(JSON.stringify(obj)), { binary: true });
  }

  /** Sends a signed input; returns its input hash (hex), as statuses refer to it. */
  submit(input: string, nonce: number, maxLedgerSeqNo: number): string {
    const container = JSON.stringify({ input, nonce, max_ledger_seq_no: maxLedgerSeqNo });
    const sig = sign(Buffer.from(container), this.keys.secretKey);
    this.send({ type: 'contract_input', input_container: container, sig: sig.toString('hex') });
    return hash(sig).toString('hex');
  }

  /** Resolves with (and removes) the first queued or future message matching `pred`. */
  async next(pred: (m: Record<string, any>) => boolean, timeoutMs = 15_000): Promise<Record<string, any>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex(pred);
      if (i >= 0) return this.messages.splice(i, 1)[0];
      const left = end - Date.now();
      if (left <= 0) throw new Error('no matching message within timeout');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** True while the socket is open (false once the node closed it or went away). */
  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  close(): void {
    this.ws.terminate();
  }
}
