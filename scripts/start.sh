#!/usr/bin/env bash
# The README's main command: install everything, then run the main job: a local 3-node cluster
# running the echo contract (examples/echo) in ./demo/cluster (created on first run, resumed
# afterwards). Users connect to any node: wss://localhost:8081, :8082, :8083. Ctrl-C stops all
# three cleanly. Talk to it with: node examples/echo/client.js wss://localhost:8081
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
dir=${HP_DEMO_DIR:-demo/cluster}
base=${HP_USER_PORT:-8081}
echo "echo client: node examples/echo/client.js wss://localhost:$base (or :$((base + 1)), :$((base + 2)))"
exec node bin/hp-node cluster "$dir" --nodes 3 --contract examples/echo/contract \
  --contract-env "NODE_PATH=$PWD/node_modules" --user-port-base "$base" \
  --peer-port-base "${HP_PEER_PORT:-22861}" --roundtime "${HP_ROUNDTIME:-500}"
