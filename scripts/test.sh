#!/usr/bin/env bash
# Fresh machine to a tested build: installs what is missing (test extras too),
# builds with warnings as errors and runs the whole default test-suite, then
# builds again with AddressSanitizer + UndefinedBehaviorSanitizer (CPU only)
# and runs the suite once more under them, then runs the libFuzzer targets of
# every parser for a short fixed time each (clang).
#
# Tests that need what a machine may lack skip visibly (meson's summary counts
# them; docs/testing.md). FLEXMOE_REQUIRE names the needs whose tests must run,
# failing instead of skipping: by default what setup.sh --test installs (torch,
# MPI, the sqlite3 shell, the notebook stack); CI (.ci/run) requires all, the
# real traces of ../shared and an unprivileged user (as root: nobody able to
# run the build, so not a clone under a private /root) included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
export FLEXMOE_REQUIRE=${FLEXMOE_REQUIRE-torch,mpi,sqlite3,notebooks}

meson setup build-test -Dwerror=true --buildtype=debugoptimized --reconfigure >/dev/null 2>&1 ||
  meson setup build-test -Dwerror=true --buildtype=debugoptimized >/dev/null
meson compile -C build-test
meson test -C build-test --print-errorlogs --num-processes 2
python3 tests/check_skips.py build-test

# The Python package (pyproject.toml, python/): `pip install .` into a venv of
# the python3 that imports torch (Debian's, with python3-torch and numpy seen
# through --system-site-packages; a venv needs no --break-system-packages and
# works as root from a fresh clone), then its pytest suite (python/tests). The
# build runs without isolation on the pinned backend, in build-py/wheel.
py=python3
python3 -c 'import torch' 2>/dev/null || py=/usr/bin/python3
"$py" -m venv --system-site-packages build-py/venv
build-py/venv/bin/pip install -q --disable-pip-version-check -r python/tests/requirements.txt
# The training frameworks flexmoe.capture is tested on (python/tests/
# requirements-capture.txt says why these pins): DeepSpeed without its declared
# deps (they would pull a CUDA torch) and built against Debian's torch, the
# newest release in the venv and the oldest tested one in build-py/deepspeed-old.
build-py/venv/bin/pip install -q --disable-pip-version-check -r python/tests/requirements-capture.txt
build-py/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation deepspeed==0.19.8
[ -f build-py/deepspeed-old/deepspeed/__init__.py ] ||
  build-py/venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --target build-py/deepspeed-old deepspeed==0.13.5
build-py/venv/bin/pip install -q --disable-pip-version-check --no-build-isolation \
  --config-settings=build-dir="$PWD/build-py/wheel" .
build-py/venv/bin/python -m pytest -q -rs -p no:cacheprovider python/tests

meson setup build-asan -Dwerror=true -Dcuda=disabled -Db_sanitize=address,undefined \
  -Db_lundef=false --buildtype=debug --reconfigure >/dev/null 2>&1 ||
  meson setup build-asan -Dwerror=true -Dcuda=disabled -Db_sanitize=address,undefined \
    -Db_lundef=false --buildtype=debug >/dev/null
meson compile -C build-asan
# an unoptimised sanitizer build runs 3-5x slower than debugoptimized: each
# test's limit is 4x its default-run limit (placement/policies took 33.6 s
# against meson's default 30 s on a 2-core AMD EPYC machine, 2026-12-07)
LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite notebooks --timeout-multiplier 4
python3 tests/check_skips.py build-asan

# libFuzzer targets of every parser (clang; tests/fuzz/meson.build): each runs
# FLEXMOE_FUZZ_SECONDS (default 15) from its seed corpus, failing on any crash,
# leak or sanitizer report.
CC=clang meson setup build-fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
  -Dcuda=disabled -Dtests=disabled --reconfigure >/dev/null 2>&1 ||
  CC=clang meson setup build-fuzz -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcuda=disabled -Dtests=disabled >/dev/null
meson compile -C build-fuzz
meson test -C build-fuzz --suite fuzz --print-errorlogs
