// Test contract for state sync: "patch <k>" overwrites the k-th 64 KiB block of data.bin with
// bytes derived from k and the ledger (deterministic on every node), so a test knows exactly how
// many state bytes changed. data.bin is created by the test (4 MiB) before the genesis state.
const HotPocket = require('hotpocket-nodejs-contract');
const crypto = require('crypto');
const fs = require('fs');

const BLOCK = 64 * 1024;

async function contract(ctx) {
  if (ctx.readonly) return;
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      const [cmd, arg] = (await ctx.users.read(input)).toString().split(' ');
      if (cmd !== 'patch') continue;
      const k = Number(arg);
      const bytes = Buffer.alloc(BLOCK);
      let seed = crypto.createHash('sha256').update(`${ctx.lclSeqNo}:${k}`).digest();
      for (let o = 0; o < BLOCK; o += 32) {
        seed.copy(bytes, o);
        seed = crypto.createHash('sha256').update(seed).digest();
      }
      const fd = fs.openSync('data.bin', 'r+');
      fs.writeSync(fd, bytes, 0, BLOCK, k * BLOCK);
      fs.closeSync(fd);
      await user.send(`patched ${k}`);
    }
  }
}

new HotPocket.Contract().init(contract);
