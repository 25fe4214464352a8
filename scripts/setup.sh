#!/usr/bin/env bash
# Installs what flexmoe needs on a fresh Debian 12 machine (run as root).
#   scripts/setup.sh          build and run dependencies
#   scripts/setup.sh --test   also what the test-suite needs (notebook stack, clang for fuzzing)
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# Installs the Debian packages given that are not installed yet.
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

apt_ensure meson ninja-build pkg-config gcc libc6-dev \
  libgsl-dev libsqlite3-dev libjansson-dev libxxhash-dev libcriterion-dev \
  libopenmpi-dev openmpi-bin sqlite3 python3 python3-pip

pip_install() {
  # pyenv / venv interpreters take plain pip; Debian's system one needs the flag.
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if [ "${1:-}" = "--test" ]; then
  # clang and its libFuzzer runtime for the fuzz targets (tests/fuzz)
  apt_ensure clang libclang-rt-14-dev
  # PyTorch for the capture hook's tests and example (traces/capture): Debian's
  # CPU-only build, about 170 packages, 50 MB, 30 s (PyPI's wheel pulls GBs of
  # CUDA libraries). It goes to Debian's /usr/bin/python3; tests/meson.build
  # picks that interpreter for the torch tests when python3 on PATH lacks torch.
  apt_ensure python3-torch
  # the Python package's tests (scripts/test.sh): a venv of that python3, and
  # patchelf, which meson-python runs on the wheel's libraries
  apt_ensure python3-venv patchelf
  for req in "$here"/notebooks/requirements.txt; do
    [ -f "$req" ] && pip_install -r "$req"
  done
fi
exit 0
