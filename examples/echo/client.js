#!/usr/bin/env node
// Echo client, using the unmodified npm package hotpocket-js-client (0.5.x).
// Usage: node examples/echo/client.js [wss://host:port ...] — then type lines; each is sent as an
// input and the contract's echo is printed. "read <text>" sends a read request instead.
const HotPocket = require('hotpocket-js-client');
const readline = require('readline');

async function main() {
  const servers = process.argv.slice(2).length ? process.argv.slice(2) : ['wss://localhost:8081'];
  const keys = await HotPocket.generateKeys();
  const client = await HotPocket.createClient(servers, keys, { protocol: HotPocket.protocols.json });
  if (!(await client.connect())) {
    console.error(`could not connect to ${servers.join(', ')}`);
    process.exit(1);
  }
  console.log(`connected to ${servers.join(', ')}; type a message (Ctrl-D to quit)`);
  client.on(HotPocket.events.contractOutput, (r) => r.outputs.forEach((o) => console.log(`[ledger ${r.ledgerSeqNo}] ${o}`)));
  client.on(HotPocket.events.disconnect, () => { console.log('disconnected'); process.exit(1); });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    if (line.startsWith('read ')) {
      console.log('read reply:', await client.submitContractReadRequest(line.slice(5)));
      continue;
    }
    const sub = await client.submitContractInput(line);
    sub.submissionStatus.then((s) => { if (s.status !== 'accepted') console.log(`input ${s.status}: ${s.reason}`); });
  }
  await client.close();
}

main().catch((err) => { console.error(err); process.exit(1); });
