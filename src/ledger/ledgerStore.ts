// The hash-chained ledger on disk: one append-only file, <dir>/ledger.log.
//
//   file header  "HPNLEDGR" ‖ u32 version ‖ 32-byte random checksum key     (44 bytes)
//   frames       u32 payload length ‖ 16-byte checksum ‖ payload (ledgerCodec.ts), one per ledger
//
// The checksum is keyed BLAKE3 under the file's own random key. A plain checksum would let bytes a
// user chose (an input blob holding a copy of a frame) pass for a record when open() looks past a
// damaged one; with the key no byte sequence outside this file can.
//
// Crash safety: the file is created complete (tmp + fsync + rename + dir fsync); each append is
// written at the end before append() returns (readable at once) and fdatasync'ed on libuv's
// threads, one fdatasync at a time for all the appends made before it (group commit): append's
// promise says when that record is durable, synced() when all are (an fdatasync on the event
// loop stalled rounds and peers). A crash can only leave a torn last frame, which open() truncates away with one warning. Damage followed by valid records
// is not a torn write, and open() refuses rather than silently dropping committed ledgers.
// Genesis (seq 0) is implicit and never written.
import { Blake3Hasher } from '@napi-rs/blake-hash-linux-x64-gnu';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HASH_BYTES } from '../crypto/hash';
import { fdatasync } from '../io/durable';
import { decodeRecord, encodeRecord, HASH_OFFSET, MIN_PAYLOAD_BYTES, PAYLOAD_FORMAT, SEQ_OFFSET } from './ledgerCodec';
import { genesisLedger, ledgerHash, LedgerRecord, recordProblem } from './ledgerHash';

export const LEDGER_FILE = 'ledger.log';
const MAGIC = Buffer.from('HPNLEDGR');
const FILE_VERSION = 1;
const FILE_HEADER_BYTES = MAGIC.length + 4 + 32;
const FRAME_HEADER_BYTES = 4 + 16;
const SCAN_CHUNK_BYTES = 1024 * 1024;

export interface LedgerOpenOptions {
  /** Where the one-line torn-tail warning goes; stderr by default. */
  warn?: (line: string) => void;
}

export interface InputLocation {
  seqNo: number;
  ledgerHash: Buffer;
}

export class LedgerStore {
  /** offsets[seqNo - 1] = file offset of that ledger's frame. */
  private readonly offsets: number[] = [];
  /** input hash (hex) → seqNo of the first ledger holding it. */
  private readonly inputs = new Map<string, number>();
  private lastRec: LedgerRecord = genesisLedger();
  private end = FILE_HEADER_BYTES;
  /** Set when a write or fsync failed: what is on disk is then unknown until a reopen. */
  private failed: string | null = null;
  /** Appends written and waiting for the next fdatasync, whether one runs, and how many are not durable. */
  private nextGroup: Array<{ seqNo: number; before: number; resolve: () => void; reject: (e: Error) => void }> | null = null;
  private syncRunning = false;
  private unsynced = 0;
  /** Settles when the newest append is durable or failed (groups settle in order); never rejects. */
  private newest: Promise<void> = Promise.resolve();

  private constructor(readonly file: string, private fd: number, private readonly key: Buffer) {}

  static open(dir: string, opts: LedgerOpenOptions = {}): LedgerStore {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, LEDGER_FILE);
    fs.rmSync(`${file}.tmp`, { force: true }); // a creation that crashed before its rename
    if (!fs.existsSync(file)) createFile(file);
    const fd = fs.openSync(file, 'r+');
    try {
      const header = preadUpTo(fd, 0, FILE_HEADER_BYTES);
      if (header.length < FILE_HEADER_BYTES || !header.subarray(0, MAGIC.length).equals(MAGIC)) {
        throw new Error(`${file} is not an hp-node ledger (bad header); move it away to start a fresh ledger or restore it from a backup`);
      }
      const version = header.readUInt32BE(MAGIC.length);
      if (version !== FILE_VERSION) throw new Error(`${file} has ledger format ${version}; this hp-node reads format ${FILE_VERSION}`);
      const store = new LedgerStore(file, fd, Buffer.from(header.subarray(MAGIC.length + 4)));
      store.scan(opts.warn ?? ((line) => process.stderr.write(`${line}\n`)));
      return store;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** The newest ledger (genesis on a fresh store). Treat it as read-only. */
  last(): LedgerRecord {
    return this.lastRec;
  }

  /** Ledger `seqNo` read from disk and checksum-verified; null if there is none. */
  get(seqNo: number): LedgerRecord | null {
    if (!Number.isSafeInteger(seqNo) || seqNo < 0 || seqNo > this.lastRec.seqNo) return null;
    if (seqNo === 0) return genesisLedger();
    this.assertOpen();
    const off = this.offsets[seqNo - 1];
    const head = preadUpTo(this.fd, off, FRAME_HEADER_BYTES);
    const len = head.length === FRAME_HEADER_BYTES ? head.readUInt32BE(0) : 0;
    const payload = preadUpTo(this.fd, off + FRAME_HEADER_BYTES, len);
    let rec: LedgerRecord | null = null;
    if (payload.length === len && len > 0 && this.checksum(payload).equals(head.subarray(4))) {
      try {
        rec = decodeRecord(payload);
      } catch { /* reported below */ }
    }
    if (!rec || rec.seqNo !== seqNo) {
      throw new Error(`corrupt ledger ${this.file}: ledger ${seqNo} at offset ${off} changed on disk since it was opened; restore the ledger from a backup or peers`);
    }
    return rec;
  }

  /** The ledger that holds an input (by its 32-byte hash), or null: for replay checks and status replies. */
  findInput(inputHash: Buffer): InputLocation | null {
    const seqNo = this.inputs.get(inputHash.toString('hex'));
    if (seqNo === undefined) return null;
    return { seqNo, ledgerHash: this.hashOf(seqNo) };
  }

  /**
   * Appends the next ledger: written (and readable) when this returns, durable when the promise
   * resolves; it rejects if the fdatasync failed, and so does every append after it (Linux reports
   * a lost write-back once: a later fdatasync that succeeds says nothing about the earlier one).
   * A record that does not extend the chain, or is inconsistent in itself, is a bug in the caller
   * and throws.
   */
  append(rec: LedgerRecord): Promise<void> {
    this.assertOpen();
    if (this.failed) throw new Error(this.failed);
    const last = this.lastRec;
    if (rec.seqNo !== last.seqNo + 1) {
      throw new Error(`ledger append out of order: got seq ${rec.seqNo}, but the last ledger is ${last.seqNo} so the next must be ${last.seqNo + 1} (bug in the caller)`);
    }
    if (!Buffer.isBuffer(rec.prevHash) || !rec.prevHash.equals(last.hash)) {
      throw new Error(`ledger append breaks the chain: ledger ${rec.seqNo} has prevHash ${hex(rec.prevHash)}, but ledger ${last.seqNo} hashes to ${last.hash.toString('hex')} (bug in the caller)`);
    }
    const problem = recordProblem(rec);
    if (problem) throw new Error(`ledger append rejected: ${problem} (bug in the caller)`);

    const payload = encodeRecord(rec);
    const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    head.writeUInt32BE(payload.length, 0);
    this.checksum(payload).copy(head, 4);
    try {
      writeAllAt(this.fd, [head, payload], this.end);
    } catch (err) {
      // After a failed write or fsync the page cache cannot be trusted; only a reopen (which
      // rescans the file) can say what is durable, so refuse further appends.
      try {
        fs.ftruncateSync(this.fd, this.end);
      } catch { /* reported through `failed` */ }
      this.failed = `ledger ${this.file}: appending ledger ${rec.seqNo} failed (${(err as Error).message}); restart the node to reopen the ledger (it resumes at ${last.seqNo} or ${rec.seqNo})`;
      throw new Error(this.failed);
    }
    this.offsets.push(this.end);
    this.indexInputs(rec);
    // Keep a private decoded copy, so callers reusing their Buffers cannot change our chain tip.
    this.lastRec = decodeRecord(payload);
    this.end += FRAME_HEADER_BYTES + payload.length;
    return this.syncAppended(rec.seqNo, last.seqNo);
  }

  /** Resolves when every append so far is durable; rejects if one of them failed to be. */
  synced(): Promise<void> {
    return this.newest.then(
      () => {
        if (this.failed) throw new Error(this.failed);
      },
      () => {
        throw new Error(this.failed ?? `ledger ${this.file}: an append failed`);
      },
    );
  }

  /**
   * Group commit: one fdatasync at a time, covering every append written before it started; the
   * appends made meanwhile wait for the next one (a catch-up appends dozens of records at once).
   */
  private syncAppended(seqNo: number, before: number): Promise<void> {
    this.unsynced++;
    const done = new Promise<void>((resolve, reject) => {
      (this.nextGroup ??= []).push({ seqNo, before, resolve, reject });
    });
    this.newest = done.catch(() => undefined);
    if (!this.syncRunning) this.startSync();
    return done;
  }

  private startSync(): void {
    const group = this.nextGroup;
    this.nextGroup = null;
    if (!group) return;
    const fd = this.fd;
    const settle = (err: Error | null) => {
      this.unsynced -= group.length;
      this.syncRunning = false;
      for (const w of group) (err ? w.reject(err) : w.resolve());
      this.startSync();
    };
    // Closed meanwhile: close() made these durable.
    if (fd < 0) return settle(null);
    this.syncRunning = true;
    const run = this.failed ? Promise.reject(new Error(this.failed)) : fdatasync(fd);
    run.then(
      () => settle(null),
      (err: Error) => {
        if (this.fd !== fd) return settle(null);
        this.failed ??= `ledger ${this.file}: making ledger ${group[0].seqNo} durable failed (${err.message}); restart the node to reopen the ledger (it resumes at ${group[0].before} or later)`;
        settle(new Error(this.failed));
      },
    );
  }

  /** Closes the file, first making durable what an unfinished fdatasync was still to cover. */
  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      if (this.unsynced > 0 && !this.failed) fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** One pass over the file: index every frame, check the chain, and cut off a torn tail. */
  private scan(warn: (line: string) => void): void {
    const size = fs.fstatSync(this.fd).size;
    const reader = new ChunkReader(this.fd, size);
    let off = FILE_HEADER_BYTES;
    let lastPayload: Buffer | null = null;
    let prev = this.lastRec;
    while (off < size) {
      const head = reader.read(off, FRAME_HEADER_BYTES);
      const len = head ? head.readUInt32BE(0) : 0;
      const payload = head && len >= MIN_PAYLOAD_BYTES ? reader.read(off + FRAME_HEADER_BYTES, len) : null;
      let problem: string | null = null;
      let rec: LedgerRecord | null = null;
      if (!head) problem = `frame header cut short (${size - off} of ${FRAME_HEADER_BYTES} bytes)`;
      else if (len < MIN_PAYLOAD_BYTES) problem = `impossible frame length ${len}`;
      else if (!payload) problem = `frame of ${len} bytes runs past the end of the file`;
      else if (!this.checksum(payload).equals(head.subarray(4))) problem = 'checksum mismatch';
      else {
        try {
          rec = decodeRecord(payload);
        } catch (err) {
          problem = `undecodable record: ${(err as Error).message}`;
        }
      }
      if (rec) {
        if (rec.seqNo !== prev.seqNo + 1) problem = `seq ${rec.seqNo} does not follow ${prev.seqNo}`;
        else if (!rec.prevHash.equals(prev.hash)) problem = `ledger ${rec.seqNo}'s prevHash is not the hash of ledger ${prev.seqNo}`;
        // append() checked the body against the header and the keyed checksum says these are the
        // bytes it wrote, so the header hash is all that is re-checked (open stays fast on long ledgers).
        else if (!ledgerHash(rec).equals(rec.hash)) problem = `ledger ${rec.seqNo}'s hash does not match its header`;
      }
      if (problem || !rec || !payload) {
        this.cutTail(reader, off, prev.seqNo, problem ?? 'bad frame', warn);
        break;
      }
      this.offsets.push(off);
      this.indexInputs(rec);
      prev = rec;
      lastPayload = payload;
      off += FRAME_HEADER_BYTES + len;
    }
    // Re-decode from a copy so the tip does not pin a whole scan chunk.
    if (lastPayload) this.lastRec = decodeRecord(Buffer.from(lastPayload));
    this.end = Math.min(off, size);
  }

  /** Truncates a torn tail at `off`, unless a valid frame follows it (then it is damage: refuse). */
  private cutTail(reader: ChunkReader, off: number, lastSeq: number, problem: string, warn: (line: string) => void): void {
    const later = this.findFrameAfter(reader, off, lastSeq);
    if (later) {
      throw new Error(
        `corrupt ledger ${this.file}: the record at offset ${off} (after ledger ${lastSeq}) is bad (${problem}), ` +
        `yet a valid record (ledger ${later.seqNo}) follows at offset ${later.offset}, so this is damage, not a torn write. ` +
        'hp-node will not drop committed ledgers: restore the ledger from a backup or from peers.',
      );
    }
    const dropped = reader.size - off;
    fs.ftruncateSync(this.fd, off);
    fs.fdatasyncSync(this.fd);
    warn(`hp-node: ledger ${this.file}: dropped ${dropped} bytes of torn tail at offset ${off} (${problem}); the ledger resumes at seq ${lastSeq}`);
  }

  /** The first checksum-valid frame of a later ledger starting anywhere after `off`, if any. */
  private findFrameAfter(reader: ChunkReader, off: number, lastSeq: number): { offset: number; seqNo: number } | null {
    const probe = FRAME_HEADER_BYTES + SEQ_OFFSET + 8;
    for (let o = off + 1; o + FRAME_HEADER_BYTES + MIN_PAYLOAD_BYTES <= reader.size; o++) {
      const head = reader.read(o, probe)!;
      const len = head.readUInt32BE(0);
      // Cheap filters first; the keyed checksum is the real test.
      if (len < MIN_PAYLOAD_BYTES || o + FRAME_HEADER_BYTES + len > reader.size) continue;
      if (head[FRAME_HEADER_BYTES] !== PAYLOAD_FORMAT) continue;
      const seq = head.readBigUInt64BE(FRAME_HEADER_BYTES + SEQ_OFFSET);
      if (seq <= BigInt(lastSeq)) continue;
      const sum = Buffer.from(head.subarray(4, FRAME_HEADER_BYTES));
      if (this.checksum(reader.read(o + FRAME_HEADER_BYTES, len)!).equals(sum)) return { offset: o, seqNo: Number(seq) };
    }
    return null;
  }

  private indexInputs(rec: LedgerRecord): void {
    for (const i of rec.inputs) {
      const k = i.hash.toString('hex');
      if (!this.inputs.has(k)) this.inputs.set(k, rec.seqNo);
    }
  }

  private hashOf(seqNo: number): Buffer {
    if (seqNo === this.lastRec.seqNo) return Buffer.from(this.lastRec.hash);
    this.assertOpen();
    const h = preadUpTo(this.fd, this.offsets[seqNo - 1] + FRAME_HEADER_BYTES + HASH_OFFSET, HASH_BYTES);
    if (h.length !== HASH_BYTES) throw new Error(`corrupt ledger ${this.file}: ledger ${seqNo} is cut short on disk; restore the ledger from a backup or peers`);
    return h;
  }

  private checksum(payload: Buffer): Buffer {
    return Blake3Hasher.newKeyed(this.key).update(payload).digestBuffer().subarray(0, 16);
  }

  private assertOpen(): void {
    if (this.fd < 0) throw new Error(`ledger ${this.file} is closed`);
  }
}

/** Sequential reads through 1 MiB chunks, so a scan costs one syscall per chunk, not per frame. */
class ChunkReader {
  private buf: Buffer = Buffer.alloc(0);
  private start = 0;
  constructor(private readonly fd: number, readonly size: number) {}

  /** Bytes [pos, pos + len), or null if the file ends first. The view stays valid after later reads. */
  read(pos: number, len: number): Buffer | null {
    if (pos + len > this.size) return null;
    if (pos < this.start || pos + len > this.start + this.buf.length) {
      // A fresh buffer each time (not reused), so views handed out earlier stay intact.
      this.buf = preadUpTo(this.fd, pos, Math.min(Math.max(len, SCAN_CHUNK_BYTES), this.size - pos));
      this.start = pos;
      if (this.buf.length < len) return null;
    }
    return this.buf.subarray(pos - this.start, pos - this.start + len);
  }
}

function createFile(file: string): void {
  const header = Buffer.concat([MAGIC, Buffer.alloc(4), crypto.randomBytes(32)]);
  header.writeUInt32BE(FILE_VERSION, MAGIC.length);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    writeAllAt(fd, [header], 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dirFd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Up to `len` bytes at `pos`; shorter only at end of file. */
function preadUpTo(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.allocUnsafe(len);
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, buf, done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done === len ? buf : buf.subarray(0, done);
}

function writeAllAt(fd: number, bufs: Buffer[], pos: number): void {
  for (const b of bufs) {
    let done = 0;
    while (done < b.length) done += fs.writeSync(fd, b, done, b.length - done, pos + done);
    pos += b.length;
  }
}

function hex(b: unknown): string {
  return Buffer.isBuffer(b) ? b.toString('hex') : String(b);
}
