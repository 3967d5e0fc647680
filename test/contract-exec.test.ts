// Contract executor: real contract processes (the unmodified hotpocket-nodejs-contract SDK, plus
// /bin/sh and python3 contracts written straight against the POSIX interface) run through
// native/build/hp-contract-launcher. A plain temp directory stands in for the state mount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { prepareContract, runContract, startContract } from '../src/contract';
import type { ContractRunRequest, ContractRunResult } from '../src/contract';
import { fdLayout } from '../src/contract/args';
import { BridgeParser, UserOutputParser } from '../src/contract/framing';
import { launcherArgv } from '../src/contract/launcher';
import { tempDir } from './helpers/fixtures';

const SDK = require.resolve('hotpocket-nodejs-contract');
const NODE = process.execPath;
const key = (c: string) => 'ed' + c.repeat(64);
const SELF = key('a');
const PEER = key('b');
const U1 = key('1');
const U2 = key('2');
const U3 = key('3');
const LIMITS = { execTimeoutMs: 20_000, userOutputBytes: 0, nplOutputBytes: 0, procCpuSeconds: 0, procMemBytes: 0, procOfdCount: 0 };

/** Writes an SDK contract (`HotPocket` in scope) into dir and returns its path. */
function sdkContract(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `const HotPocket = require(${JSON.stringify(SDK)});\n${body}\n`);
  return file;
}

/** True when `pid` no longer exists or is a zombie. */
function processDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** A run request with a fresh state dir (req.cwd) and the contracts dir next to it. */
function request(t: TestContext, over: Partial<ContractRunRequest> & { binArgs: string[] }): ContractRunRequest {
  const root = tempDir(t, 'hp-contract-');
  const cwd = path.join(root, 'state');
  fs.mkdirSync(cwd);
  return {
    binPath: NODE,
    env: {},
    cwd,
    args: {
      hpVersion: '0.6.4',
      contractId: '3f2b1c9e-0000-4000-8000-000000000001',
      publicKey: SELF,
      timestamp: 1700000000123,
      readonly: false,
      lclSeqNo: 7,
      lclHash: 'c'.repeat(64),
      unl: { [SELF]: { active_on: 1700000000000 }, [PEER]: { active_on: 1700000000001 } },
    },
    users: [],
    limits: LIMITS,
    stderr: 'capture',
    ...over,
  };
}

/** A dir for contract sources that outlives nothing but the test. */
const srcDir = (t: TestContext) => tempDir(t, 'hp-contract-src-');
const texts = (r: ContractRunResult, pk: string) => r.outputs.get(pk)!.map((b) => b.toString());
/** Failure messages carry the contract's stderr. */
const why = (r: ContractRunResult) => `stderr: ${r.stderr?.toString()} error: ${r.error}`;

const ECHO = `
const fs = require('fs');
async function contract(ctx) {
  for (const user of ctx.users.list()) {
    for (const input of user.inputs) {
      const buf = await ctx.users.read(input);
      await user.send('Echoing: ' + buf.toString());
    }
  }
}
new HotPocket.Contract().init(contract);`;

test('a cold Node contract gets its args even when the node writes them late (its event loop busy after the spawn)', async (t) => {
  // 48 MiB of inputs: the inputs file takes a few dozen event-loop turns to write, and the args go
  // out only after it. This event loop stalls meanwhile, past the contract's boot, so the SDK's
  // readFile(stdin) runs before the args exist. Over a pipe it read '' and the contract crashed.
  const COUNT = `
async function contract(ctx) {
  const u = ctx.users.list()[0];
  await u.send('inputs=' + u.inputs.length);
}
new HotPocket.Contract().init(contract);`;
  const big = Array.from({ length: 6 }, () => Buffer.alloc(8 * 1024 * 1024, 7));
  const req = request(t, { binArgs: [sdkContract(srcDir(t), 'late.js', COUNT)], users: [{ pubkeyHex: U1, inputs: big }] });
  const run = runContract(req);
  // Stall as soon as the launcher exists (a child of this process), while the inputs are still being written.
  const launched = () => fs.readdirSync('/proc').some((d) => /^\d+$/.test(d) && (() => {
    try {
      return fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(process.pid);
    } catch {
      return false;
    }
  })());
  while (!launched()) await new Promise((r) => setImmediate(r));
  const until = Date.now() + 1000;
  while (Date.now() < until) { /* busy: the args cannot be written meanwhile */ }
  const r = await run;
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(texts(r, U1), ['"inputs=6"']);
});

test('echo contract: every user gets its inputs echoed in order (JSON protocol)', async (t) => {
  const big = 'x'.repeat(10_000); // spans three 4 KiB pages: the next input starts at 12288
  const req = request(t, {
    binArgs: [sdkContract(srcDir(t), 'echo.js', ECHO)],
    users: [
      { pubkeyHex: U1, inputs: [Buffer.from('a1'), Buffer.from(big), Buffer.from('a3')] },
      { pubkeyHex: U2, inputs: [Buffer.from('b1')] },
      { pubkeyHex: U3, inputs: [] },
    ],
  });
  const r = await runContract(req);
  assert.equal(r.exitCode, 0, why(r));
  assert.equal(r.signal, null);
  assert.equal(r.timedOut, false);
  assert.deepEqual(texts(r, U1), ['"Echoing: a1"', `"Echoing: ${big}"`, '"Echoing: a3"']);
  assert.deepEqual(texts(r, U2), ['"Echoing: b1"']);
  assert.deepEqual(texts(r, U3), []);
  assert.deepEqual(r.truncatedUsers, []);
  assert.ok(r.timings.spawnMs >= 0 && r.timings.execMs > 0);
});

test('args JSON: HotPocket field order, aligned input spans, fd layout, env and fds the contract sees', async (t) => {
  // A shell proves the interface needs no SDK: stdin is the args JSON, then EOF; /proc/$$/environ
  // is exactly the environment execve was given.
  // bash, not dash: dash applies a command's redirections in the shell itself (keeping a saved
  // copy at fd 10 while ls runs), bash applies them in the forked child.
  const script = 'ls /proc/$$/fd > fds.txt; cat > args.json; tr "\\0" "\\n" < /proc/$$/environ > environ.txt; exit 0';
  const consensus = request(t, {
    binPath: '/bin/bash',
    binArgs: ['-c', script],
    env: { ONLY: 'this', 'WITH SPACE': 'a b' },
    users: [
      { pubkeyHex: U1, inputs: [Buffer.from('hi'), Buffer.alloc(4097, 1), Buffer.alloc(0), Buffer.from('z')] },
      { pubkeyHex: U2, inputs: [] },
    ],
  });
  const r = await runContract(consensus);
  assert.equal(r.exitCode, 0, why(r));
  const raw = fs.readFileSync(path.join(consensus.cwd, 'args.json'), 'utf8');
  const args = JSON.parse(raw);
  assert.deepEqual(Object.keys(args), [
    'hp_version', 'contract_id', 'public_key', 'private_key', 'timestamp', 'readonly', 'lcl_seq_no', 'lcl_hash',
    'npl_fd', 'control_fd', 'user_in_fd', 'users', 'unl', 'mode',
  ]);
  assert.equal(args.private_key, ''); // not configured
  assert.equal(args.timestamp, 1700000000123);
  assert.equal(args.readonly, false);
  assert.equal(args.lcl_seq_no, 7);
  assert.equal(args.mode, 'consensus');
  assert.deepEqual(args.users, { [U1]: [7, [0, 2], [4096, 4097], [12288, 0], [12288, 1]], [U2]: [8] });
  assert.deepEqual([args.user_in_fd, args.control_fd, args.npl_fd], [4, 5, 6]);
  assert.deepEqual(args.unl, consensus.args.unl);
  assert.equal(fs.readFileSync(path.join(consensus.cwd, 'environ.txt'), 'utf8'), 'ONLY=this\nWITH SPACE=a b\n');
  // 3 (the launcher bridge) and everything else the launcher or Node had open are closed.
  assert.deepEqual(fs.readFileSync(path.join(consensus.cwd, 'fds.txt'), 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b), [0, 1, 2, 4, 5, 6, 7, 8]);

  const ro = request(t, { binPath: '/bin/sh', binArgs: ['-c', 'cat > args.json'], users: [{ pubkeyHex: U1, inputs: [Buffer.from('q')] }] });
  ro.args = { ...ro.args, readonly: true, privateKey: key('d') + 'd'.repeat(64) };
  const r2 = await runContract(ro);
  assert.equal(r2.exitCode, 0, why(r2));
  const roArgs = JSON.parse(fs.readFileSync(path.join(ro.cwd, 'args.json'), 'utf8'));
  assert.deepEqual(Object.keys(roArgs), ['hp_version', 'contract_id', 'public_key', 'private_key', 'timestamp', 'readonly', 'control_fd', 'user_in_fd', 'users', 'unl', 'mode']);
  assert.equal(roArgs.timestamp, 0);
  assert.equal(roArgs.private_key, key('d') + 'd'.repeat(64));
  assert.equal(roArgs.mode, 'read_req');
  assert.deepEqual(roArgs.users, { [U1]: [6, [0, 1]] });
  assert.equal(roArgs.control_fd, 5);
});

test('read-only run: readonly context, timestamp 0, no lcl, NPL refused by the SDK, no NPL delivery', async (t) => {
  const src = sdkContract(srcDir(t), 'ro.js', `
async function contract(ctx) {
  const user = ctx.users.list()[0];
  const input = (await ctx.users.read(user.inputs[0])).toString();
  await user.send(['ro', ctx.readonly, ctx.timestamp, ctx.lclSeqNo, ctx.lclHash, ctx.unl.count(), input].join(':'));
  try { await ctx.unl.send('x'); } catch (e) { await user.send('npl: ' + e); }
}
new HotPocket.Contract().init(contract);`);
  const req = request(t, { binArgs: [src], users: [{ pubkeyHex: U1, inputs: [Buffer.from('read this')] }] });
  req.args = { ...req.args, readonly: true };
  const exec = startContract(req);
  assert.equal(exec.deliverNpl(PEER, Buffer.from('nope')), false);
  const r = await exec.done;
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(texts(r, U1), ['"ro:true:0:::0:read this"', '"npl: NPL messages not available in readonly mode."']);
});

test('a contract that writes to its state directory: the change is there for the next run', async (t) => {
  const src = sdkContract(srcDir(t), 'counter.js', `
const fs = require('fs');
async function contract(ctx) {
  const n = fs.existsSync('counter.txt') ? Number(fs.readFileSync('counter.txt', 'utf8')) + 1 : 1;
  fs.writeFileSync('counter.txt', String(n));
  fs.appendFileSync('exects.txt', 'ts:' + ctx.timestamp + '\\n');
  for (const u of ctx.users.list()) await u.send('count:' + n);
}
new HotPocket.Contract().init(contract);`);
  const req = request(t, { binArgs: [src], users: [{ pubkeyHex: U1, inputs: [] }] });
  const r1 = await runContract(req);
  const r2 = await runContract({ ...req, args: { ...req.args, timestamp: 1700000001000 } });
  assert.equal(r1.exitCode, 0, why(r1));
  assert.equal(r2.exitCode, 0, why(r2));
  assert.deepEqual(texts(r1, U1), ['"count:1"']);
  assert.deepEqual(texts(r2, U1), ['"count:2"']);
  assert.equal(fs.readFileSync(path.join(req.cwd, 'exects.txt'), 'utf8'), 'ts:1700000000123\nts:1700000001000\n');
});

test('non-Node contract (python3): pread + mmap inputs, framed writes split across reads, SEQPACKET control/NPL', async (t) => {
  const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
  if (!python) return t.skip('no python3');
  const file = path.join(srcDir(t), 'contract.py');
  fs.writeFileSync(file, `
import json, mmap, os, socket, struct, sys, time
args = json.load(sys.stdin)
infd = args['user_in_fd']
size = os.fstat(infd).st_size
mm = mmap.mmap(infd, size, prot=mmap.PROT_READ)
for pk, spec in args['users'].items():
    out = spec[0]
    for off, ln in spec[1:]:
        data = os.pread(infd, ln, off)
        assert mm[off:off + ln] == data
        msg = b'py:' + pk[:3].encode() + b':' + data
        frame = struct.pack('>I', len(msg)) + msg
        # Header split across writes: the node must buffer partial frames.
        for part in (frame[:2], frame[2:5], frame[5:]):
            os.write(out, part)
            time.sleep(0.02)
ctl = socket.socket(fileno=args['control_fd'])
npl = socket.socket(fileno=args['npl_fd'])
assert ctl.type == socket.SOCK_SEQPACKET and npl.type == socket.SOCK_SEQPACKET
ctl.send(json.dumps({'type': 'peer_changeset', 'add': ['10.0.0.1:22860'], 'remove': '*'}).encode())
npl.send(b'one')
npl.send(b'two')
`);
  const controls: unknown[] = [];
  const npls: string[] = [];
  const req = request(t, {
    binPath: python,
    binArgs: [file],
    users: [
      { pubkeyHex: U1, inputs: [Buffer.from('first'), Buffer.alloc(5000, 'y')] },
      { pubkeyHex: U2, inputs: [Buffer.from('second')] },
    ],
    onControlMessage: (m) => controls.push(m),
    onNplMessage: (d) => npls.push(d.toString()),
  });
  const r = await runContract(req);
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(texts(r, U1), ['py:ed1:first', 'py:ed1:' + 'y'.repeat(5000)]);
  assert.deepEqual(texts(r, U2), ['py:ed2:second']);
  assert.deepEqual(controls, [{ type: 'peer_changeset', add: ['10.0.0.1:22860'], remove: '*' }]);
  assert.deepEqual(npls, ['one', 'two']);
});

test('crash: death by signal and a non-zero exit are reported, outputs before the crash kept', async (t) => {
  const dir = srcDir(t);
  const segv = sdkContract(dir, 'segv.js', `
async function contract(ctx) {
  await ctx.users.list()[0].send('before crash');
  process.kill(process.pid, 'SIGSEGV');
}
new HotPocket.Contract().init(contract);`);
  const r = await runContract(request(t, { binArgs: [segv], users: [{ pubkeyHex: U1, inputs: [] }] }));
  assert.equal(r.signal, 'SIGSEGV', why(r));
  assert.equal(r.exitCode, null);
  assert.equal(r.timedOut, false);
  assert.deepEqual(texts(r, U1), ['"before crash"']);

  const fail = sdkContract(dir, 'fail.js', `
async function contract(ctx) { process.exitCode = 3; throw new Error('contract bug'); }
new HotPocket.Contract().init(contract);`);
  const r2 = await runContract(request(t, { binArgs: [fail] }));
  assert.equal(r2.exitCode, 3);
  assert.equal(r2.signal, null);
});

test('hang: the whole process group is SIGKILLed at execTimeoutMs and the run reports timedOut', async (t) => {
  const src = sdkContract(srcDir(t), 'hang.js', `
const { spawn } = require('child_process');
async function contract(ctx) {
  const child = spawn('/bin/sleep', ['60'], { stdio: 'ignore' }); // a grandchild in the same group
  await ctx.users.list()[0].send('sleeper:' + child.pid);
  await new Promise(() => {}); // never settles
}
new HotPocket.Contract().init(contract);`);
  const t0 = Date.now();
  const r = await runContract(request(t, { binArgs: [src], users: [{ pubkeyHex: U1, inputs: [] }], limits: { ...LIMITS, execTimeoutMs: 1500 } }));
  const elapsed = Date.now() - t0;
  assert.equal(r.timedOut, true, why(r));
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(elapsed >= 1400 && elapsed < 4000, `elapsed ${elapsed} ms`);
  const [out] = texts(r, U1);
  const pid = Number(/^"sleeper:(\d+)"$/.exec(out)![1]);
  // Dead (gone, or a zombie waiting for init) shortly after.
  const alive = () => {
    try {
      return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  for (let i = 0; i < 50 && alive(); i++) await new Promise((res) => setTimeout(res, 20));
  assert.equal(alive(), false, 'the grandchild survived the timeout');
});

test('output flood beyond userOutputBytes: that user is truncated, others unaffected, the run finishes', async (t) => {
  const src = sdkContract(srcDir(t), 'flood.js', `
async function contract(ctx) {
  const [flooder, other] = ctx.users.list();
  for (let i = 0; i < 1000; i++) await flooder.send(Buffer.alloc(1000, 'a')); // errors after the close are swallowed by the SDK
  await other.send('done');
}
new HotPocket.Contract().init(contract);`);
  const base = request(t, { binArgs: [src] });
  const r = await runContract({
    ...base,
    users: [{ pubkeyHex: U1, inputs: [] }, { pubkeyHex: U2, inputs: [] }],
    limits: { ...base.limits, userOutputBytes: 10_500 },
  });
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(r.truncatedUsers, [U1]);
  assert.equal(r.outputs.get(U1)!.length, 10); // 10 x 1000 payload bytes fit, the 11th would not
  assert.ok(r.outputs.get(U1)!.every((b) => b.equals(Buffer.alloc(1000, 'a'))));
  assert.deepEqual(texts(r, U2), ['"done"']);
});

test('NPL round trip: contract -> onNplMessage, deliverNpl -> contract (also before it reads), echoed to a user', async (t) => {
  const src = sdkContract(srcDir(t), 'npl.js', `
async function contract(ctx) {
  const got = [];
  const both = new Promise((resolve) => ctx.unl.onMessage((node, msg) => {
    got.push((node ? node.publicKey.slice(0, 4) : 'unknown') + ':' + msg.toString());
    if (got.length === 2) resolve();
  }));
  await ctx.unl.send('ping');
  await both;
  await ctx.users.list()[0].send(got.join(','));
}
// forceTerminate: after onMessage the SDK leaves a thread-pool read blocked on the NPL fd, which
// keeps Node alive (even process.exit waits for it) until exec_timeout, on HotPocket too. With
// it, the SDK ends the process with SIGINT once the contract function and callbacks settle.
new HotPocket.Contract().init(contract, HotPocket.clientProtocols.json, true);`);
  const fromContract: string[] = [];
  const exec = startContract(
    request(t, {
      binArgs: [src],
      users: [{ pubkeyHex: U1, inputs: [] }],
      onNplMessage: (d) => {
        fromContract.push(d.toString());
        assert.equal(exec.deliverNpl(SELF, Buffer.from('pong')), true);
      },
    }),
  );
  // Delivered before the contract even started: buffered until it reads.
  assert.equal(exec.deliverNpl(PEER, Buffer.from('early')), true);
  const r = await exec.done;
  assert.equal(r.signal, 'SIGINT', why(r));
  assert.equal(r.timedOut, false);
  assert.deepEqual(fromContract, ['ping']);
  assert.deepEqual(texts(r, U1), ['"edbb:early,edaa:pong"']);
  assert.equal(exec.deliverNpl(PEER, Buffer.from('late')), false); // after exit: dropped, as in HotPocket
  assert.throws(() => exec.deliverNpl('not-a-key', Buffer.alloc(1)), TypeError);
});

test('NPL output beyond nplOutputBytes closes the channel', async (t) => {
  const src = sdkContract(srcDir(t), 'nplflood.js', `
async function contract(ctx) {
  await ctx.unl.send('12345678');
  await ctx.unl.send('abcdefgh'); // crosses the 10-byte limit: dropped, channel closed
  await ctx.unl.send('never');
}
new HotPocket.Contract().init(contract);`);
  const got: string[] = [];
  const base = request(t, { binArgs: [src], onNplMessage: (d) => got.push(d.toString()) });
  const r = await runContract({ ...base, limits: { ...base.limits, nplOutputBytes: 10 } });
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(got, ['12345678']);
  assert.equal(r.nplTruncated, true);
});

test('control message: ctx.updatePeers surfaces as a parsed peer_changeset', async (t) => {
  const src = sdkContract(srcDir(t), 'peers.js', `
async function contract(ctx) { await ctx.updatePeers(['10.0.0.5:22860'], ['10.0.0.6:22860']); }
new HotPocket.Contract().init(contract);`);
  const msgs: unknown[] = [];
  const r = await runContract(request(t, { binArgs: [src], onControlMessage: (m) => msgs.push(m) }));
  assert.equal(r.exitCode, 0, why(r));
  assert.deepEqual(msgs, [{ type: 'peer_changeset', add: ['10.0.0.5:22860'], remove: ['10.0.0.6:22860'] }]);
});

test('private key: absent (empty) unless configured', async (t) => {
  const src = sdkContract(srcDir(t), 'pk.js', `
async function contract(ctx) { await ctx.users.list()[0].send(ctx.privateKey ? 'pk:' + ctx.privateKey : 'no private key'); }
new HotPocket.Contract().init(contract);`);
  const req = request(t, { binArgs: [src], users: [{ pubkeyHex: U1, inputs: [] }] });
  const without = await runContract(req);
  const sk = 'ed' + 'e'.repeat(128);
  const withKey = await runContract({ ...req, args: { ...req.args, privateKey: sk } });
  assert.deepEqual(texts(without, U1), ['"no private key"'], why(without));
  assert.deepEqual(texts(withKey, U1), [`"pk:${sk}"`], why(withKey));
});

test('a contract that cannot start is reported (exit 127 + error), not thrown', async (t) => {
  const r = await runContract(request(t, { binPath: '/nonexistent/contract', binArgs: [] }));
  assert.equal(r.exitCode, 127);
  assert.equal(r.error, 'execve failed: No such file or directory');
  const req = request(t, { binPath: '/bin/true', binArgs: [] });
  const r2 = await runContract({ ...req, cwd: path.join(req.cwd, 'missing') });
  assert.equal(r2.exitCode, 127);
  assert.match(r2.error ?? '', /^chdir failed/);
});

test('launchers that exit at once: done always settles (many concurrent failing starts), missing launcher rejects', async (t) => {
  // The launcher of a contract that cannot start exits within milliseconds, possibly before the
  // executor's async bookkeeping (inputs file close) is done: its 'exit' must not be missed.
  const req = request(t, { binPath: '/nonexistent/contract', binArgs: [] });
  let deadline: NodeJS.Timeout | undefined;
  const all = Promise.all(Array.from({ length: 40 }, () => runContract(req)));
  const results = await Promise.race([
    all,
    new Promise<never>((_, reject) => {
      deadline = setTimeout(() => reject(new Error('some runs never settled')), 15_000);
    }),
  ]).finally(() => clearTimeout(deadline));
  for (const r of results) assert.equal(r.exitCode, 127, why(r));
  await assert.rejects(runContract({ ...req, launcherPath: '/nonexistent/hp-contract-launcher' }), /cannot start hp-contract-launcher: .*ENOENT/);
});

test('kill(): SIGKILLs a running contract; done still resolves with the outputs so far', async (t) => {
  const src = sdkContract(srcDir(t), 'wait.js', `
async function contract(ctx) { await ctx.users.list()[0].send('up'); setInterval(() => {}, 1000); await new Promise(() => {}); }
new HotPocket.Contract().init(contract);`);
  const exec = startContract(request(t, { binArgs: [src], users: [{ pubkeyHex: U1, inputs: [] }] }));
  setTimeout(() => exec.kill(), 500);
  const r = await exec.done;
  assert.equal(r.signal, 'SIGKILL');
  assert.equal(r.timedOut, false);
  assert.deepEqual(texts(r, U1), ['"up"']);
});

/** A prepared (warm) process for `req`, with `slots` user sockets. */
const prepare = (req: ContractRunRequest, slots: number) => prepareContract({ ...req, slots, readonly: req.args.readonly, argsAsPackets: true });

test('warm start: a process started ahead boots, waits for its run, and runs it as a cold one would', async (t) => {
  const dir = srcDir(t);
  // Module-level code runs at once (it notes when); the contract body only once the run starts.
  const src = sdkContract(dir, 'warm.js', `
require('fs').writeFileSync(${JSON.stringify(path.join(dir, 'loaded-at'))}, String(Date.now()));
${ECHO.replace("new HotPocket.Contract().init(contract);", "")}
new HotPocket.Contract().init(contract);`);
  const req = request(t, {
    binArgs: [src],
    users: [
      { pubkeyHex: U1, inputs: [Buffer.from('a'), Buffer.from('b')] },
      { pubkeyHex: U2, inputs: [Buffer.from('c')] },
    ],
    // Shorter than the wait below: the timeout clock must start at start(), not at the spawn.
    limits: { ...LIMITS, execTimeoutMs: 800 },
  });
  const warm = prepare(req, 4);
  await new Promise((r) => setTimeout(r, 1200));
  const loadedAt = Number(fs.readFileSync(path.join(dir, 'loaded-at'), 'utf8'));
  const startedAt = Date.now();
  assert.ok(loadedAt > 0 && loadedAt < startedAt - 500, 'the contract loaded its code while it waited');
  const r = await warm.start(req).done;
  assert.equal(r.exitCode, 0, why(r));
  assert.equal(r.timedOut, false);
  assert.equal(r.timings.warm, true);
  assert.deepEqual(texts(r, U1), ['"Echoing: a"', '"Echoing: b"']);
  assert.deepEqual(texts(r, U2), ['"Echoing: c"']);
  assert.deepEqual([...r.outputs.keys()], [U1, U2]);
  // Same run, cold: same outputs.
  const cold = await runContract(req);
  assert.equal(cold.timings.warm, false);
  assert.deepEqual(cold.outputs, r.outputs);
});

test('warm start: fd numbers do not depend on spare slots; a run over the slots, twice or read-only is refused', async (t) => {
  const script = 'cat > args.json; ls /proc/$$/fd > fds.txt; exit 0';
  const req = request(t, { binPath: '/bin/bash', binArgs: ['-c', script], users: [{ pubkeyHex: U1, inputs: [Buffer.from('x')] }] });
  const warm = prepare(req, 3);
  assert.throws(() => warm.start({ ...req, users: [U1, U2, U3, key('4')].map((pubkeyHex) => ({ pubkeyHex, inputs: [] })) }), /4 users, but this process has 3 user sockets/);
  assert.throws(() => warm.start({ ...req, args: { ...req.args, readonly: true } }), /read-only run/);
  const r = await warm.start(req).done;
  assert.equal(r.exitCode, 0, why(r));
  assert.throws(() => warm.start(req), /already started/);
  const args = JSON.parse(fs.readFileSync(path.join(req.cwd, 'args.json'), 'utf8'));
  assert.deepEqual(args.users, { [U1]: [7, [0, 1]] }); // as in a cold run with one user
  assert.deepEqual([args.user_in_fd, args.control_fd, args.npl_fd], [4, 5, 6]);
  // The spare sockets (8, 9) are open in the process but announced nowhere.
  assert.deepEqual(fs.readFileSync(path.join(req.cwd, 'fds.txt'), 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b), [0, 1, 2, 4, 5, 6, 7, 8, 9]);
});

test('warm start: a process that dies while it waits reports that exit; discard() kills a waiting one', async (t) => {
  const dir = srcDir(t);
  const crash = sdkContract(dir, 'crash.js', 'process.exit(3);');
  const req = request(t, { binArgs: [crash], users: [{ pubkeyHex: U1, inputs: [Buffer.from('x')] }] });
  const dead = prepare(req, 1);
  await new Promise((r) => setTimeout(r, 500));
  const r = await dead.start(req).done;
  assert.equal(r.exitCode, 3, why(r));
  assert.deepEqual(texts(r, U1), []);

  const pidFile = path.join(dir, 'pid');
  // Written aside and renamed: the test must never read a half-written (empty) file, whose pid 0
  // would make the kill(0) below probe this test's own process group.
  const waiter = sdkContract(dir, 'waiter.js', `const fs = require('fs');
fs.writeFileSync(${JSON.stringify(pidFile + '.tmp')}, String(process.pid));
fs.renameSync(${JSON.stringify(pidFile + '.tmp')}, ${JSON.stringify(pidFile)});
new HotPocket.Contract().init(async () => {});`);
  const idle = prepare(request(t, { binArgs: [waiter] }), 2);
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(pidFile) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(pid > 1, `the waiting contract wrote its pid (${pid})`);
  await idle.discard();
  // Gone, or dead and not yet reaped: a contract killed through its launcher's death (PDEATHSIG)
  // is reparented, and whether this container's init reaps it is not ours to test.
  assert.ok(processDead(pid), 'the waiting contract is dead after discard()');
});

test('warm start of a non-Node program (execAfterArgs): nothing runs before its run; stdin is a file of the whole args; timeout from the exec', async (t) => {
  const dir = srcDir(t);
  const marker = path.join(dir, 'ran');
  // Byte-at-a-time reads (a shell's `read`) and a test that fd 0 is a regular file, not a socket.
  const script = `echo "$$" > ${JSON.stringify(marker)}; [ -f /dev/stdin ] || exit 9; IFS= read -r first; printf '%s' "$first" > args.json; cat >> args.json; sleep 0.3`;
  const req = request(t, {
    binPath: '/bin/sh',
    binArgs: ['-c', script],
    users: [{ pubkeyHex: U1, inputs: [Buffer.from('x')] }],
    limits: { ...LIMITS, execTimeoutMs: 700 }, // shorter than the wait below plus the run
  });
  const warm = prepareContract({ ...req, slots: 2, readonly: false, argsAsPackets: true, execAfterArgs: true });
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(fs.existsSync(marker), false, 'the program did not start before its run');
  const r = await warm.start(req).done;
  assert.equal(r.exitCode, 0, why(r));
  assert.equal(r.timedOut, false, 'the exec_timeout clock started at the exec');
  const args = JSON.parse(fs.readFileSync(path.join(req.cwd, 'args.json'), 'utf8'));
  assert.deepEqual(args.users, { [U1]: [7, [0, 1]] });
  assert.equal(args.lcl_seq_no, 7);

  // Dropped before its run: the program never starts, the launcher goes away.
  fs.rmSync(marker, { force: true });
  const dropped = prepareContract({ ...req, slots: 1, readonly: false, argsAsPackets: true, execAfterArgs: true });
  await new Promise((r) => setTimeout(r, 300));
  await dropped.discard();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fs.existsSync(marker), false, 'a discarded warm launcher never runs the program');
  assert.throws(() => launcherArgv('/bin/true', [], '/', fdLayout(1, false), LIMITS, false, true), /execAfterArgs needs argsAsPackets/);
});

test('framing: user output and bridge parsers survive byte-by-byte delivery and enforce limits', () => {
  const frame = (s: string) => {
    const b = Buffer.from(s);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(b.length);
    return Buffer.concat([h, b]);
  };
  const all = Buffer.concat([frame('hello'), frame(''), frame('world!')]);
  const p = new UserOutputParser(0, 1 << 20);
  for (const byte of all) assert.equal(p.push(Buffer.from([byte])), true);
  assert.deepEqual(p.messages.map(String), ['hello', '', 'world!']);
  assert.equal(p.pendingBytes, 0);

  const limited = new UserOutputParser(8, 1 << 20);
  assert.equal(limited.push(Buffer.concat([frame('12345'), frame('678')])), true);
  assert.equal(limited.push(frame('9').subarray(0, 4)), false); // header alone decides
  assert.deepEqual(limited.messages.map(String), ['12345', '678']);
  assert.equal(new UserOutputParser(0, 10).push(frame('x'.repeat(11)).subarray(0, 4)), false);

  const bp = new BridgeParser();
  const bf = Buffer.from([2, 0, 0, 0, 3, 0x61, 0x62, 0x63, 0, 0, 0, 0, 0]);
  const frames = [...bf].flatMap((byte) => bp.push(Buffer.from([byte])));
  assert.deepEqual(frames.map((f) => [f.channel, f.payload.toString()]), [[2, 'abc'], [0, '']]);
  assert.throws(() => new BridgeParser().push(Buffer.from([1, 0xff, 0, 0, 0])));
});
