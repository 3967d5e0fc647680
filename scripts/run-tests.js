#!/usr/bin/env node
'use strict';
// Runs every compiled test file with node's test runner and ends with the plain summary line CI
// reads: "N passed, N failed". Usage: node scripts/run-tests.js [name-filter...]
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const dir = path.join(__dirname, '..', 'dist', 'test');
const filters = process.argv.slice(2);
const files = fs.existsSync(dir)
  ? fs.readdirSync(dir).filter((f) => f.endsWith('.test.js')).filter((f) => !filters.length || filters.some((x) => f.includes(x))).sort().map((f) => path.join(dir, f))
  : [];
if (files.length === 0) {
  console.error('no compiled tests found in dist/test: run `npm run build` first');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const child = spawn(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=2', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
let tail = '';
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  tail = (tail + d.toString()).slice(-4000);
});
child.on('exit', (code) => {
  const num = (name) => Number((new RegExp(`ℹ ${name} (\\d+)`).exec(tail) || [])[1] || 0);
  const passed = num('pass');
  const failed = num('fail') + num('cancelled');
  const ok = code === 0 && failed === 0 && passed > 0;
  console.log(`${passed} passed, ${ok ? failed : Math.max(failed, 1)} failed`);
  process.exit(ok ? 0 : 1);
});
