#!/usr/bin/env bash
# The README's main command: install everything, then run the main job: a node running the echo
# contract (examples/echo) in ./demo/node1, created on first run and resumed afterwards. Ctrl-C
# stops it cleanly. Talk to it with: node examples/echo/client.js wss://localhost:8081
# (The cluster issue turns this into a local 3-node cluster.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
dir=${HP_DEMO_DIR:-demo/node1}
if [ ! -f "$dir/config.json" ]; then
  node bin/hp-node new "$dir" --contract examples/echo/contract \
    --contract-env "NODE_PATH=$PWD/node_modules" --user-port "${HP_USER_PORT:-8081}" --roundtime 500
fi
echo "echo client: node examples/echo/client.js wss://localhost:${HP_USER_PORT:-8081}"
exec node bin/hp-node run "$dir"
