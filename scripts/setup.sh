#!/usr/bin/env bash
# Installs what flexmoe needs on a fresh Debian 12 machine (run as root).
#   scripts/setup.sh          build and run dependencies
#   scripts/setup.sh --test   also what the test-suite needs (notebook stack)
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

apt_pkgs=(meson ninja-build pkg-config gcc libc6-dev
          libgsl-dev libsqlite3-dev libjansson-dev libxxhash-dev libcriterion-dev
          libopenmpi-dev openmpi-bin sqlite3 python3 python3-pip)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pip_install() {
  # pyenv / venv interpreters take plain pip; Debian's system one needs the flag.
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if [ "${1:-}" = "--test" ]; then
  # clang and its libFuzzer runtime for the fuzz targets (tests/fuzz)
  fuzz_pkgs=(clang libclang-rt-14-dev)
  fmissing=()
  for p in "${fuzz_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || fmissing+=("$p")
  done
  if [ ${#fmissing[@]} -gt 0 ]; then
    echo "setup: installing ${fmissing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${fmissing[@]}" >/dev/null
  fi
  # (traces/capture/requirements.txt is torch: multi-GB, optional; its tests skip without it)
  for req in "$here"/notebooks/requirements.txt; do
    [ -f "$req" ] && pip_install -r "$req"
  done
fi
exit 0
