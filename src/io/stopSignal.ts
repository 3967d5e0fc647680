// The first SIGINT or SIGTERM, as a promise.
//
// Call it before any long start-up step and before printing a "ready" line: until a listener is
// installed, SIGTERM has its default action and kills the process outright, skipping the clean
// stop. A supervisor (or a test) reacting to the ready line can signal before the next line runs
// when the machine is busy, so the listener must already be there when that line is written.
// After the first signal the listeners are removed: a second Ctrl-C during a slow stop forces exit.

export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
