// Echo contract, written against the unmodified npm package hotpocket-nodejs-contract (0.7.x).
// Every input is echoed back to its sender; consensus runs also count inputs in state/echo-count.txt,
// and a read request "count" answers with that count.
//
// Each SDK read and send is an fs call on libuv's thread pool: awaited one after another, a ledger
// of 2,000 inputs spent most of its time waiting on them. So each user's inputs are read at once,
// and users are served side by side; one user's outputs still go out in the order of its inputs
// (the sends to one user are awaited in turn), which keeps every node's outputs identical.
const HotPocket = require('hotpocket-nodejs-contract');
const fs = require('fs');

async function contract(ctx) {
  const countFile = 'echo-count.txt';
  let count = fs.existsSync(countFile) ? Number(fs.readFileSync(countFile, 'utf8')) : 0;
  await Promise.all(ctx.users.list().map(async (user) => {
    const msgs = await Promise.all(user.inputs.map((input) => ctx.users.read(input)));
    for (const buf of msgs) {
      const msg = buf.toString();
      if (ctx.readonly && msg === 'count') {
        await user.send(`count: ${count}`);
        continue;
      }
      count++;
      await user.send(`Echoing: ${msg}`);
    }
  }));
  if (!ctx.readonly) fs.writeFileSync(countFile, String(count));
}

new HotPocket.Contract().init(contract);
