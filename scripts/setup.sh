#!/usr/bin/env bash
# Installs everything hp-node needs on a fresh Debian 12 machine with Node 20 (run as root):
# FUSE runtime (libfuse2 for fuse-native, fuse3 for fusermount3), libfuse3-dev + pkg-config for the
# state mount's native helper, tools the tests drive, gcc for native/, npm deps, build (`npm run
# build` also compiles native/).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in libfuse2 fuse3 libfuse3-dev pkg-config sqlite3 git gcc libc6-dev rsync; do  # gcc, libfuse3-dev: native/; rsync: bench sync baseline
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { echo "setup: /dev/fuse is missing; this machine cannot serve FUSE mounts" >&2; exit 1; }
npm ci --no-audit --no-fund
npm run build --silent
