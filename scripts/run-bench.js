#!/usr/bin/env node
'use strict';
// Runs one compiled benchmark: node scripts/run-bench.js <name> [args...] runs dist/bench/<name>.js.
// A benchmark is a file in bench/ whose header comment starts with "// [benchmark]"; the other files
// there are helpers (FUSE servers, workers) and are not offered as names.
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const dir = path.join(__dirname, '..', 'dist', 'bench');

function benchmarks() {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .filter((f) => fs.readFileSync(path.join(dir, f), 'utf8').slice(0, 2000).includes('// [benchmark]'))
    .map((f) => f.slice(0, -3))
    .sort();
}

const [name, ...args] = process.argv.slice(2);
const names = benchmarks();
if (!name || !names.includes(name)) {
  console.error(name ? `unknown benchmark "${name}"` : 'missing benchmark name');
  console.error(names.length ? `available: ${names.join(', ')}` : `no benchmarks compiled in ${dir}: run \`npm run build\` first`);
  console.error('usage: npm run bench -- <name> [options]   e.g. npm run bench -- statefs --quick');
  process.exit(1);
}

const child = spawn(process.execPath, [path.join(dir, `${name}.js`), ...args], { stdio: 'inherit' });
// Ctrl-C already reaches the benchmark through the terminal's process group: wait while it cleans up.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
