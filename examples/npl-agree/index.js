// NPL agreement contract (hotpocket-nodejs-contract 0.7.x, unmodified): in every round with inputs,
// each node draws a random number and sends it to the UNL over the node party line; every node
// waits for all members' numbers (its own included) and takes the largest. Executions on different
// nodes start with different random draws yet commit the same state and send the same output,
// which only holds if NPL delivered every message to every node within the round.
const HotPocket = require('hotpocket-nodejs-contract');
const crypto = require('crypto');
const fs = require('fs');

const WAIT_MS = Number(process.env.NPL_WAIT_MS || 3000);

async function contract(ctx) {
  if (ctx.readonly) return;
  const users = ctx.users.list().filter((u) => u.inputs.length > 0);
  if (users.length === 0) return;
  const received = new Map();
  const all = new Promise((resolve) => {
    ctx.unl.onMessage((node, msg) => {
      received.set(node.publicKey, BigInt(msg.toString()));
      if (received.size === ctx.unl.count()) resolve();
    });
  });
  await ctx.unl.send(String(crypto.randomBytes(6).readUIntBE(0, 6)));
  await Promise.race([all, new Promise((r) => setTimeout(r, WAIT_MS))]);
  const agreed = [...received.values()].reduce((a, b) => (b > a ? b : a), 0n);
  fs.writeFileSync('agreed.txt', `${ctx.lclSeqNo} ${agreed}\n`, { flag: 'a' });
  for (const u of users) await u.send(`agreed ${agreed} from ${received.size} of ${ctx.unl.count()}`);
}

// forceTerminate: after onMessage the SDK keeps a read pending on the NPL socket; exit when done.
new HotPocket.Contract().init(contract, HotPocket.clientProtocols.json, true);
