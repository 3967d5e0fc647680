#!/bin/sh
# Builds the native helpers into native/build/ (run by `npm run build`). Needs gcc + libc headers.
set -eu
cd "$(dirname "$0")"
mkdir -p build
# Rebuild only when the source is newer, so `npm run build` stays fast.
if [ ! -x build/hp-contract-launcher ] || [ hp-contract-launcher.c -nt build/hp-contract-launcher ]; then
  gcc -O2 -Wall -Wextra -o build/hp-contract-launcher.tmp hp-contract-launcher.c
  mv build/hp-contract-launcher.tmp build/hp-contract-launcher
fi
