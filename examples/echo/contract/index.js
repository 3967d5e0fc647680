// Echo contract, written against the unmodified npm package hotpocket-nodejs-contract (0.7.x).
// Every input is echoed back to its sender; consensus runs also count inputs in state/echo-count.txt,
// and a read request "count" answers with that count.
const HotPocket = require('hotpocket-nodejs-contract');
const fs = require('fs');

async function contract(ctx) {
  const countFile = 'echo-count.txt';
  let count = fs.existsSync(countFile) ? Number(fs.readFileSync(countFile, 'utf8')) : 0;
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      const msg = (await ctx.users.read(input)).toString();
      if (ctx.readonly && msg === 'count') {
        await user.send(`count: ${count}`);
        continue;
      }
      count++;
      await user.send(`Echoing: ${msg}`);
    }
  }
  if (!ctx.readonly) fs.writeFileSync(countFile, String(count));
}

new HotPocket.Contract().init(contract);
