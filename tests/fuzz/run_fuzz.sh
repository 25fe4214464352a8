#!/usr/bin/env bash
# run_fuzz.sh TARGET CORPUS: one fuzz test. Runs TARGET for
# FLEXMOE_FUZZ_SECONDS (default 15) seconds over a scratch copy of the seed
# CORPUS; exit 1 on any finding (libFuzzer's default error code, 77, would
# read as "skipped" to meson).
set -euo pipefail
target=$1 corpus=$2
scratch=$(mktemp -d /tmp/flexmoe-fuzz-corpus-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$target" -max_total_time="${FLEXMOE_FUZZ_SECONDS:-15}" -error_exitcode=1 \
  -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "$scratch" "$corpus"
