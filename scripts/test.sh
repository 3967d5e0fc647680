#!/usr/bin/env bash
# The README's test command: install everything, build, run all tests, print "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
node scripts/run-tests.js "$@"
