// Ed25519 checks of relayed user inputs on a worker thread. Under load they were a quarter of a
// node's event loop (~110 µs each on this machine class, every input checked by every node), and
// the loop they held up is the one that runs the consensus stages and the contract's session: a
// result that came late because signature slices sat in front of it cost the round ("our result of
// the last ledger is not ready"). On the worker they run beside the loop, on a core when one is
// free, at the OS scheduler's mercy rather than in the loop's queue.
//
// A batch travels as one transferred buffer ([u32 length, message, signature, key] per item) and
// comes back as one byte per item, so a batch of 64 inputs is two messages, not 192 clones. Jobs
// are answered in order. If the worker fails or exits, its waiting batches and every later one are
// checked here in the loop (a broken worker would fail again).
import path from 'node:path';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, verify } from './keys';

export interface SignedItem {
  message: Uint8Array;
  sig: Uint8Array;
  pubkey: Uint8Array; // 33 bytes, 0xED-prefixed
}

interface Job {
  id: number;
  packed: ArrayBuffer;
}

interface JobDone {
  id: number;
  ok: Uint8Array;
}

/** Below this many items a batch is checked in place: a round trip to the worker costs more. */
const MIN_WORKER_BATCH = 4;

let worker: Worker | null = null;
let failed = false;
let nextId = 1;
const waiting = new Map<number, { items: SignedItem[]; well: boolean[]; resolve: (ok: boolean[]) => void }>();

/** Bytes of one packed item: [u32 message length, message, signature, key]. */
function packedBytes(messageLength: number): number {
  return 4 + messageLength + SIGNATURE_BYTES + PUBLIC_KEY_BYTES;
}

function verifyInPlace(items: SignedItem[]): boolean[] {
  return items.map((i) => verify(i.message, i.sig, i.pubkey));
}

/** One signature check per item, in order: true where `sig` is `pubkey`'s signature of `message`. */
export function verifyBatch(items: SignedItem[]): Promise<boolean[]> {
  const w = items.length < MIN_WORKER_BATCH || failed ? null : ensureWorker();
  if (!w) return Promise.resolve(verifyInPlace(items));
  // Items with a malformed key or signature fail without a trip (and keep the packing simple).
  const well = items.map((i) => i.sig.length === SIGNATURE_BYTES && i.pubkey.length === PUBLIC_KEY_BYTES);
  const packed = Buffer.allocUnsafeSlow(items.reduce((n, i, k) => n + (well[k] ? packedBytes(i.message.length) : 0), 0));
  let at = 0;
  items.forEach((i, k) => {
    if (!well[k]) return;
    packed.writeUInt32BE(i.message.length, at);
    packed.set(i.message, at + 4);
    packed.set(i.sig, at + 4 + i.message.length);
    packed.set(i.pubkey, at + 4 + i.message.length + SIGNATURE_BYTES);
    at += packedBytes(i.message.length);
  });
  const id = nextId++;
  return new Promise<boolean[]>((resolve) => {
    waiting.set(id, { items, well, resolve });
    if (waiting.size === 1) w.ref();
    w.postMessage({ id, packed: packed.buffer } satisfies Job, [packed.buffer]);
  });
}

function ensureWorker(): Worker | null {
  if (worker) return worker;
  try {
    const w = new Worker(path.join(__dirname, 'verifyWorker.js'));
    w.on('message', (m: JobDone) => {
      const job = waiting.get(m.id);
      if (!job) return;
      waiting.delete(m.id);
      if (waiting.size === 0) w.unref();
      let j = 0; // one answer per well-formed item, in order
      job.resolve(job.well.map((isWell) => isWell && m.ok[j++] === 1));
    });
    const fail = (why: string) => {
      if (worker !== w) return;
      worker = null;
      failed = true;
      process.emitWarning(`signature worker ${why}; checking signatures on the main thread from now on`);
      // Its batches are checked here, in order, so no caller waits forever.
      for (const [id, job] of [...waiting]) {
        waiting.delete(id);
        job.resolve(verifyInPlace(job.items));
      }
    };
    w.on('error', (err) => fail(`failed: ${err.message}`));
    w.on('exit', (code) => fail(`exited (${code})`));
    // Ref'd only while batches wait (see verifyBatch): an idle worker must not keep a stopped
    // node alive (a ref'd one did, until the benchmark's SIGKILL), and a waiting batch must not be
    // dropped by the process exiting under it. After the listeners: adding one refs it again.
    w.unref();
    worker = w;
    return w;
  } catch (err) {
    failed = true;
    process.emitWarning(`cannot start the signature worker (${(err as Error).message}); checking signatures on the main thread`);
    return null;
  }
}

/** Test hook: ends the worker as a crash would (its waiting batches are checked in place). */
export function killVerifyWorkerForTest(): Promise<number> | null {
  return worker ? worker.terminate() : null;
}

/** Test hook: whether checks run on the worker (false once it has failed). */
export function verifyWorkerWorks(): boolean {
  return !failed;
}

// ---- the worker side ---------------------------------------------------------------------------

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (job: Job) => {
    const buf = Buffer.from(job.packed);
    const ok: number[] = [];
    for (let at = 0; at < buf.length; ) {
      const len = buf.readUInt32BE(at);
      const msg = buf.subarray(at + 4, at + 4 + len);
      const sig = buf.subarray(at + 4 + len, at + 4 + len + SIGNATURE_BYTES);
      const pk = buf.subarray(at + 4 + len + SIGNATURE_BYTES, at + packedBytes(len));
      ok.push(verify(msg, sig, pk) ? 1 : 0);
      at += packedBytes(len);
    }
    const out = Uint8Array.from(ok);
    port.postMessage({ id: job.id, ok: out } satisfies JobDone, [out.buffer]);
  });
}
