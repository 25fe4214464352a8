#!/usr/bin/env bash
# Fresh machine to first answer: installs what is missing, builds flexmoe, and
# compares every placement policy on the bundled real routing trace on a
# simulated 2-node DGX H100 cluster. Results land in flexmoe.db.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -d build ] || meson setup build --buildtype=release >/dev/null
meson compile -C build >/dev/null
./build/cli/flexmoe sim --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \
  --cluster dgx-h100 --nodes 2 --db flexmoe.db
echo
./build/cli/flexmoe report --db flexmoe.db
