// Stream framing: user output sockets ([u32 BE length][payload]) and the launcher bridge
// ([u8 channel][u32 BE length][payload]). Both buffer partial headers and bodies across reads
// (HotPocket's own parser assumes a header is never split; ours must not).

/** A FIFO of chunks that hands out exact byte ranges without re-concatenating everything. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already consumed from chunks[0]
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first n bytes (n <= length) without consuming them. */
  peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    for (let i = 0; copied < n; i++) {
      const c = i === 0 ? first.subarray(this.head) : this.chunks[i];
      copied += c.copy(out, copied, 0, Math.min(c.length, n - copied));
    }
    return out;
  }

  /** Consumes and returns n bytes (n <= length). */
  take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out = this.peek(n);
    // A view into a read chunk would pin that whole chunk; copy when it is a small part of it.
    if (n <= first.length - this.head && first.length > n * 2) out = Buffer.from(out);
    this.skip(n);
    return out;
  }

  skip(n: number): void {
    this.length -= n;
    while (n > 0) {
      const avail = this.chunks[0].length - this.head;
      if (n < avail) {
        this.head += n;
        return;
      }
      n -= avail;
      this.chunks.shift();
      this.head = 0;
    }
  }
}

/**
 * One user's output stream. `push` returns false once the user is over its limit: the caller then
 * closes the socket (HotPocket semantics); complete messages before that point are kept.
 */
export class UserOutputParser {
  readonly messages: Buffer[] = [];
  private readonly q = new ByteQueue();
  private accepted = 0;
  overLimit = false;

  /** limitBytes: payload bytes allowed in this run (0 = unlimited); maxMessageBytes: hard cap per message. */
  constructor(private readonly limitBytes: number, private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): boolean {
    if (this.overLimit) return false;
    this.q.push(chunk);
    while (this.q.length >= 4) {
      const len = this.q.peek(4).readUInt32BE(0);
      // Decided on the header alone, so an announced huge body is never buffered.
      if ((this.limitBytes > 0 && this.accepted + len > this.limitBytes) || len > this.maxMessageBytes) {
        this.overLimit = true;
        return false;
      }
      if (this.q.length < 4 + len) break;
      this.q.skip(4);
      this.messages.push(this.q.take(len));
      this.accepted += len;
    }
    return true;
  }

  /** Bytes of an incomplete message left when the stream ended (dropped). */
  get pendingBytes(): number {
    return this.q.length;
  }
}

export const enum BridgeChannel {
  Meta = 0,
  Control = 1,
  Npl = 2,
  /** Node -> launcher only: the next packet of the args JSON (--args-packets); empty = the end. */
  Args = 3,
}

/** Largest ARGS packet: small enough for any reader's buffer (Node's readFile reads 64 KiB). */
export const ARGS_PACKET = 8 * 1024;

export interface BridgeFrame {
  channel: number;
  payload: Buffer;
}

export const MAX_PACKET = 128 * 1024; // SDK / launcher SEQPACKET limit
export const PUBKEY_HEX_LEN = 66;
const MAX_BRIDGE_FRAME = PUBKEY_HEX_LEN + MAX_PACKET;

/** Parses launcher -> node frames; throws on a frame the launcher can never send. */
export class BridgeParser {
  private readonly q = new ByteQueue();

  push(chunk: Buffer): BridgeFrame[] {
    this.q.push(chunk);
    const frames: BridgeFrame[] = [];
    while (this.q.length >= 5) {
      const hdr = this.q.peek(5);
      const len = hdr.readUInt32BE(1);
      if (len > MAX_BRIDGE_FRAME) throw new Error(`launcher bridge: frame of ${len} bytes`);
      if (this.q.length < 5 + len) break;
      this.q.skip(5);
      frames.push({ channel: hdr[0], payload: this.q.take(len) });
    }
    return frames;
  }
}

export function encodeBridgeFrame(channel: BridgeChannel, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = channel;
  out.writeUInt32BE(payload.length, 1);
  payload.copy(out, 5);
  return out;
}
