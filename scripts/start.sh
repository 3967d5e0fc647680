#!/usr/bin/env bash
# The README's main command: install everything, then run the main job (for now the state demo;
# the node and cluster issues replace it with a local 3-node cluster running examples/echo).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./scripts/demo-state.sh
