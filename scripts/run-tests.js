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
// The runner's own summary ("ℹ pass N") can sit far above the end when failures are listed
// after it, so the counts are picked up wherever they pass by.
let tail = '';
const seen = {};
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  tail = (tail + d.toString()).slice(-4000);
  for (const m of tail.matchAll(/ℹ (pass|fail|cancelled) (\d+)/g)) seen[m[1]] = Number(m[2]);
});
child.on('exit', (code) => {
  const num = (name) => seen[name] || 0;
  const passed = num('pass');
  const failed = num('fail') + num('cancelled');
  const ok = code === 0 && failed === 0 && passed > 0;
  console.log(`${passed} passed, ${ok ? failed : Math.max(failed, 1)} failed`);
  process.exit(ok ? 0 : 1);
});
