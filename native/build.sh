#!/bin/sh
# Builds the native helpers into native/build/ (run by `npm run build`). Needs gcc, libc headers,
# libfuse3-dev + pkg-config, and Node's headers (/usr/include/node, shipped with Node's packages).
set -eu
cd "$(dirname "$0")"
mkdir -p build
# Rebuild only when the source is newer, so `npm run build` stays fast.
if [ ! -x build/hp-contract-launcher ] || [ hp-contract-launcher.c -nt build/hp-contract-launcher ]; then
  gcc -O2 -Wall -Wextra -o build/hp-contract-launcher.tmp hp-contract-launcher.c
  mv build/hp-contract-launcher.tmp build/hp-contract-launcher
fi
node_include="$(dirname "$(dirname "$(command -v node)")")/include/node"
if [ ! -f build/hp_fuse.node ] || [ hp-fuse.c -nt build/hp_fuse.node ]; then
  if ! pkg-config --exists fuse3; then
    echo "native/build.sh: libfuse3 headers are missing: apt-get install -y libfuse3-dev pkg-config (scripts/setup.sh does)" >&2
    exit 1
  fi
  # shellcheck disable=SC2046
  gcc -O2 -Wall -Wextra -shared -fPIC -I"$node_include" $(pkg-config --cflags fuse3) -o build/hp_fuse.node.tmp hp-fuse.c $(pkg-config --libs fuse3)
  mv build/hp_fuse.node.tmp build/hp_fuse.node
fi
# The C echo contract (examples/native-echo), for `npm run bench -- cluster --contract native`.
if [ ! -x build/native-echo ] || [ ../examples/native-echo/echo.c -nt build/native-echo ]; then
  gcc -O2 -Wall -Wextra -o build/native-echo.tmp ../examples/native-echo/echo.c
  mv build/native-echo.tmp build/native-echo
fi
