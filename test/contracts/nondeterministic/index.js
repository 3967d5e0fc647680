// Test contract: echoes inputs and counts them in state like examples/echo, but where the
// environment says HP_TEST_NONDET=1 it also writes random bytes to state each round, so that one
// node's state diverges from the others'.
const HotPocket = require('hotpocket-nodejs-contract');
const crypto = require('crypto');
const fs = require('fs');

async function contract(ctx) {
  let count = fs.existsSync('count.txt') ? Number(fs.readFileSync('count.txt', 'utf8')) : 0;
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      count++;
      await user.send(`echo ${(await ctx.users.read(input)).toString()}`);
    }
  }
  if (ctx.readonly) return;
  fs.writeFileSync('count.txt', String(count));
  if (process.env.HP_TEST_NONDET === '1') fs.writeFileSync('noise.bin', crypto.randomBytes(64));
}

new HotPocket.Contract().init(contract);
