#!/usr/bin/env bash
# scripts/gpu-validate.sh without a GPU (TAP): its arguments, its plan
# (--dry-run: every policy at its defaults, the build check, calibrate,
# validate) and, on a machine without a GPU, a build check that stops at the
# self-check with the backend's own reason and exit 1.
# usage: test_gpu_validate.sh SOURCE_ROOT FLEXMOE
set -u
root=$1 bin=$2
script="$root/scripts/gpu-validate.sh"
n=0 bad=0
check() { # description, command...
  local what=$1
  shift
  n=$((n + 1))
  if "$@"; then echo "ok $n - $what"; else echo "not ok $n - $what"; bad=1; fi
}
out=$(mktemp) err=$(mktemp) dir=$(mktemp -d)
trap 'rm -rf "$out" "$err" "$dir"' EXIT
runs() { "$script" "$@" >"$out" 2>"$err"; }
code() { # expected code, args...
  local want=$1
  shift
  runs "$@"
  [ $? -eq "$want" ]
}
says() { grep -q -- "$1" "$err"; }
one_line() { [ "$(wc -l <"$err")" -eq 1 ]; }

echo "1..13"
check "--help exits 0 with an example" code 0 --help
check "--help names every step" grep -q "flexmoe:background=0" "$out"
check "an unknown flag exits 2" code 2 --bogus
check "... naming it on one line" bash -c "grep -q -- \"unknown argument '--bogus'\" '$err' && [ \$(wc -l <'$err') -eq 1 ]"
check "--partitions 0 exits 2 naming the range" bash -c "'$script' --partitions 0 2>&1 | grep -q -- '--partitions 0: give a whole number 1..64'"
check "--d-model 12 exits 2" code 2 --d-model 12
check "--iterations 5:5 exits 2" code 2 --iterations 5:5
check "--real that does not exist exits 2" code 2 --real /nonexistent.npy
check "a flag without its value exits 2" code 2 --out
check "--dry-run plans the build check, self-check, calibrate, validate" \
  bash -c "'$script' --dry-run --out '$dir/o' >'$out' && grep -q -- '--version' '$out' && grep -q 'run --backend cuda .* --check' '$out' && grep -q 'calibrate --backend cuda' '$out' && grep -q 'validate --backend cuda' '$out'"
check "--dry-run validates the seven policies at their defaults" \
  bash -c "grep 'validate --backend' '$out' | grep -o -- '--policy [^ ]*' | tr '\n' ' ' | grep -qx -- '--policy static --policy capacity --policy fastermoe --policy smartmoe --policy eplb --policy flexmoe --policy flexmoe:background=0 '"
check "--dry-run runs nothing" test ! -e "$dir/o"
if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
  echo "ok 13 - # SKIP a GPU is present: the no-GPU path cannot be checked"
else
  # a cuda build stops at the self-check (no usable GPU); a cpu-only build
  # at the build check (no cuda backend)
  check "without a GPU the build check fails with exit 1 and the reason" \
    bash -c "'$script' --bin '$bin' --out '$dir/g' >/dev/null 2>'$err'; [ \$? -eq 1 ] && { grep -q 'selfcheck failed' '$err' || grep -q 'has no cuda backend' '$err'; } && grep -qi 'cuda' '$err'"
fi
exit $bad
