// A tiny "contract" for the state demo: it only reads and writes plain files in its cwd, which
// `hp-node state exec` has mounted as a session of the state store.
const fs = require('fs');
const n = fs.existsSync('counter.txt') ? Number(fs.readFileSync('counter.txt', 'utf8')) : 0;
fs.writeFileSync('counter.txt', String(n + 1));
fs.mkdirSync('log', { recursive: true });
fs.appendFileSync('log/runs.txt', `run ${n + 1}\n`);
console.log(`counter is now ${n + 1}`);
if (process.argv[2] === 'fail') process.exit(1); // demonstrates rollback
