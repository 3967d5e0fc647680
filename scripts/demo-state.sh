#!/usr/bin/env bash
# The state demo: a store created from examples/state-demo, a "contract" run in three sessions
# (two commit, one fails and rolls back), the roots printed, the result exported and checked.
set -euo pipefail
cd "$(dirname "$0")/.."
hp="node bin/hp-node"
work=${HP_DEMO_DIR:-$(mktemp -d /tmp/hp-state-demo.XXXXXX)}
store="$work/store"
echo "== genesis: import examples/state-demo into $store"
$hp state init "$store" --from examples/state-demo
for i in 1 2; do
  echo "== session $i (commits)"
  $hp state exec "$store" --time $((1700000000000 + i * 1000)) -- node counter.js
done
echo "== session 3 (exits 1: rolled back)"
$hp state exec "$store" --time 1700000003000 -- node counter.js fail || true
echo "== committed root: $($hp state root "$store")"
$hp state export "$store" "$work/export"
echo "== exported counter.txt: $(cat "$work/export/counter.txt") (expected 2)"
[ "$(cat "$work/export/counter.txt")" = 2 ]
echo "== inspect it yourself: node bin/hp-node mount $store $work/mnt   (Ctrl-C to unmount)"
