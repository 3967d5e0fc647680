// Waiting for the answer to one request (on the peer link or a bulk stream), with a timeout.

/**
 * Registers `entry(done)` under `id` in `waiting`, sends, and resolves with what `done` is given:
 * the answer, or null when `send` fails, `timeoutMs` passes or the caller gives up (done(null)).
 * `done` removes the entry, so a late answer finds nothing. Never rejects.
 */
export function answerTo<T>(waiting: Map<number, T>, id: number, timeoutMs: number, entry: (done: (answer: Buffer | null) => void) => T, send: () => boolean): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (answer: Buffer | null) => {
      clearTimeout(timer);
      waiting.delete(id);
      resolve(answer);
    };
    waiting.set(id, entry(done));
    if (!send()) done(null);
  });
}
