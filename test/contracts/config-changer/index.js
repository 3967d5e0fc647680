// Test contract: changes the cluster's consensus settings through patch.cfg, as a HotPocket
// contract would (ctx.getConfig/updateConfig of hotpocket-nodejs-contract, unmodified).
//   "roundtime <ms>"      sets consensus.roundtime
//   "unl-remove <pubkey>" removes a node from the UNL
//   "peers-add <host:port>" asks the node to dial a peer (peer_changeset)
// Anything else is echoed.
const HotPocket = require('hotpocket-nodejs-contract');

async function contract(ctx) {
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      const [cmd, arg] = (await ctx.users.read(input)).toString().split(' ');
      if (ctx.readonly) continue;
      if (cmd === 'peers-add') {
        await ctx.updatePeers([arg], []);
        await user.send(`dialing ${arg}`);
      } else if (cmd === 'roundtime' || cmd === 'unl-remove') {
        const cfg = await ctx.getConfig();
        if (cmd === 'roundtime') cfg.consensus.roundtime = Number(arg);
        else cfg.unl = cfg.unl.filter((k) => k !== arg);
        await ctx.updateConfig(cfg);
        await user.send(`set ${cmd} ${arg}`);
      } else {
        await user.send(`echo ${cmd}`);
      }
    }
  }
}

new HotPocket.Contract().init(contract);
