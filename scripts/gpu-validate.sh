#!/usr/bin/env bash
# gpu-validate.sh - the GPU validation run of issue 16, in one go on a GPU
# machine (docs/runtime.md, "Validating on a GPU"): a build check, the
# calibration of the cuda backend, then `flexmoe validate --backend cuda`
# for every policy at its defaults on the bundled sample trace (and a real
# trace when given and time is left), writing the tables, the JSON and the
# database under one output folder. Planned to finish in under 8 minutes
# (--budget); every step runs under `timeout` with what is left of it.
#
# The GPU machine cannot build (no GSL, no Criterion: /work/shared/GPU.md):
# build with -Dcuda=enabled on a build machine, ship the build folder with
# the shared libraries `ldd` says are missing, and point --bin at it (and
# LD_LIBRARY_PATH at the libraries). Exit status: 0 all steps passed, 1 a
# step failed (its log names it), 2 bad arguments.
set -uo pipefail

usage() {
  cat <<'EOF'
usage: scripts/gpu-validate.sh [--bin FLEXMOE] [--out DIR] [--partitions N]
                               [--iterations A:B] [--d-model D] [--d-ff F]
                               [--trace SAMPLE.npy] [--real TRACE.npy]
                               [--budget SECONDS] [--dry-run] [--help]

Runs on a GPU machine, in order, each step logged under DIR:
  1. build check: FLEXMOE has the cuda backend, its shared libraries resolve,
     and a 2-iteration cuda replay with background moves passes --check;
  2. flexmoe calibrate --backend cuda --partitions N -> DIR/profile.json (+ DB);
  3. flexmoe validate --backend cuda --partitions N on the sample for static,
     capacity, fastermoe, smartmoe, eplb, flexmoe (default) and
     flexmoe:background=0 -> DIR/validate-sample.{json,txt}, DIR/flexmoe.db;
  4. the same on --real TRACE when given and the budget has time left.

defaults: --bin build/cli/flexmoe, --out gpu-validate-<UTC time>,
          --partitions 4, --iterations 0:50, --d-model 1024, --d-ff 4096,
          --trace traces/samples/gpt-l6-e32-top2-aux-200.npy, --budget 450
--dry-run prints the commands without running anything.

example (on the H200):
  LD_LIBRARY_PATH=$PWD/gpu-libs:/usr/local/cuda/lib64 \
    scripts/gpu-validate.sh --bin build-gpu/cli/flexmoe --out gpu-run \
    --real ../shared/traces/real/gpt-l6-e32-top2-aux.npy
EOF
}

die() { # exit code, message
  echo "gpu-validate: $2" >&2
  exit "$1"
}

cd "$(dirname "$0")/.." || die 1 "cannot enter the source root"

BIN=build/cli/flexmoe
OUT="gpu-validate-$(date -u +%Y%m%d-%H%M%S)"
PARTS=4
ITERS=0:50
DMODEL=1024
DFF=4096
TRACE=traces/samples/gpt-l6-e32-top2-aux-200.npy
REAL=
BUDGET=450
DRY=0

need() { # flag, value count left
  [ "$2" -ge 2 ] || die 2 "$1 needs a value (see --help)"
}
is_int() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) need "$1" $#; BIN=$2; shift 2 ;;
    --out) need "$1" $#; OUT=$2; shift 2 ;;
    --partitions) need "$1" $#; PARTS=$2; shift 2 ;;
    --iterations) need "$1" $#; ITERS=$2; shift 2 ;;
    --d-model) need "$1" $#; DMODEL=$2; shift 2 ;;
    --d-ff) need "$1" $#; DFF=$2; shift 2 ;;
    --trace) need "$1" $#; TRACE=$2; shift 2 ;;
    --real) need "$1" $#; REAL=$2; shift 2 ;;
    --budget) need "$1" $#; BUDGET=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die 2 "unknown argument '$1' (see --help)" ;;
  esac
done

ok_parts() { is_int "$PARTS" && [ "$PARTS" -ge 1 ] && [ "$PARTS" -le 64 ]; }
ok_shape() { is_int "$1" && [ "$1" -ge 8 ] && [ $(($1 % 8)) -eq 0 ]; }
ok_iters() { [[ "$ITERS" =~ ^[0-9]+:[0-9]+$ ]] && [ "${ITERS%%:*}" -lt "${ITERS##*:}" ]; }
ok_budget() { is_int "$BUDGET" && [ "$BUDGET" -ge 60 ] && [ "$BUDGET" -le 3600 ]; }
if ! ok_parts; then die 2 "--partitions $PARTS: give a whole number 1..64"; fi
if ! ok_shape "$DMODEL"; then die 2 "--d-model $DMODEL: give a multiple of 8"; fi
if ! ok_shape "$DFF"; then die 2 "--d-ff $DFF: give a multiple of 8"; fi
if ! ok_iters; then die 2 "--iterations $ITERS: give A:B with A < B"; fi
if ! ok_budget; then die 2 "--budget $BUDGET: give seconds, 60..3600"; fi
[ -f "$TRACE" ] || die 2 "--trace $TRACE: no such file"
[ -z "$REAL" ] || [ -f "$REAL" ] || die 2 "--real $REAL: no such file"

POLICIES=(static capacity fastermoe smartmoe eplb flexmoe flexmoe:background=0)
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }

# run NAME CMD...: logged into OUT/NAME.log, under `timeout` with what is
# left of the budget; a failure stops the script naming the step.
run() {
  local name=$1
  shift
  if [ "$DRY" = 1 ]; then
    echo "$*"
    return 0
  fi
  local t
  t=$(left)
  [ "$t" -gt 5 ] || die 1 "$name: no time left of the ${BUDGET}s budget"
  echo "gpu-validate: $name (at most ${t}s) ..." >&2
  if ! timeout "$t" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"; then
    echo "gpu-validate: $name failed; last lines of $OUT/$name.log:" >&2
    tail -n 5 "$OUT/$name.log" >&2
    exit 1
  fi
}

# validate NAME TRACE: every policy at its defaults, JSON + a table
validate() {
  local name=$1 trace=$2 args=()
  for p in "${POLICIES[@]}"; do args+=(--policy "$p"); done
  run "$name" "$BIN" validate --backend cuda --partitions "$PARTS" --trace "$trace" \
    --iterations "$ITERS" --d-model "$DMODEL" --d-ff "$DFF" --profile "$OUT/profile.json" \
    "${args[@]}" --db "$OUT/flexmoe.db" --format json
  [ "$DRY" = 1 ] && return 0
  mv "$OUT/$name.out" "$OUT/$name.json"
  python3 - "$OUT/$name.json" >"$OUT/$name.txt" <<'PY' || cp "$OUT/$name.json" "$OUT/$name.txt"
import json, sys
d = json.load(open(sys.argv[1]))
pct = lambda e: "n/a" if e is None else "%+.1f%%" % (100 * e)
print("%-28s %-10s %12s %12s %9s" % ("policy", "phase", "predicted_ms", "measured_ms", "error"))
for r in d["runs"]:
    print("%-28s %-10s %12.3f %12.3f %9s" % (r["policy"][:28], "time", r["predicted_ms"],
                                            r["measured_ms"], pct(r["error"])))
    for k, v in r["phases"].items():
        print("%-28s %-10s %12.3f %12.3f %9s" % ("", k, v["predicted_ms"] or 0,
                                                v["measured_ms"] or 0, pct(v["error"])))
print("median |error| %s, p95 |error| %s, ranking %s" % (
    pct(d["median_abs_error"]), pct(d["p95_abs_error"]),
    "agrees" if d["ranking_agrees"] else "DIFFERS"))
PY
  cat "$OUT/$name.txt"
}

if [ "$DRY" = 0 ]; then
  mkdir -p "$OUT" || die 1 "--out $OUT: cannot make it"
  [ -x "$BIN" ] || die 1 "--bin $BIN: not an executable (build with -Dcuda=enabled first)"
fi

# 1. build check
if [ "$DRY" = 1 ]; then
  echo "$BIN --version"
else
  ver=$("$BIN" --version 2>&1) || die 1 "$BIN --version failed: $ver"
  [[ "$ver" == *"cuda yes"* ]] ||
    die 1 "$BIN has no cuda backend ($ver): build with meson setup -Dcuda=enabled"
  if command -v ldd >/dev/null && ldd "$BIN" | grep -q "not found"; then
    die 1 "$BIN: shared libraries not found: $(ldd "$BIN" | grep 'not found' | tr -s ' \t\n' ' ')(set LD_LIBRARY_PATH)"
  fi
  echo "$ver" >"$OUT/build-check.log"
fi
run selfcheck "$BIN" run --backend cuda --partitions "$PARTS" --trace "$TRACE" \
  --iterations 0:4 --d-model 64 --d-ff 128 --policy flexmoe --policy eplb:period=1 --check

# 2. calibration
run calibrate "$BIN" calibrate --backend cuda --partitions "$PARTS" --d-model "$DMODEL" \
  --d-ff "$DFF" --name "cuda-$PARTS" --out "$OUT/profile.json" --db "$OUT/flexmoe.db"

# 3. and 4. validation
validate validate-sample "$TRACE"
if [ -n "$REAL" ]; then
  if [ "$DRY" = 1 ] || [ "$(left)" -gt 120 ]; then
    validate validate-real "$REAL"
  else
    echo "gpu-validate: skipping --real: $(left)s of the budget left" >&2
  fi
fi
[ "$DRY" = 1 ] || echo "gpu-validate: done in $(($(date +%s) - START))s; results in $OUT" >&2
