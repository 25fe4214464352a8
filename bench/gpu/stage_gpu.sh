#!/bin/bash
# stage_gpu.sh - build the CUDA variant and stage what the GPU machine needs
# into DEST (default /work/main/.gpu, git-ignored in the checkout the device
# tool ships): bin/flexmoe (no MPI), bin/flexmoe-nccl (MPI + NCCL),
# bin/bench_kernels, the shared libraries the GPU machine lacks (GSL,
# jansson), the bundled sample trace, moe_torch.py and run_h200.sh.
# Then, with the device tool: run `bash .gpu/run_h200.sh` with carry [".gpu"].
# (Tests stay enabled in these builds: bench/placement needs test_env.)
set -e
SRC=$(cd "$(dirname "$0")/../.." && pwd)
G=${1:-/work/main/.gpu}
mkdir -p "$G"
cd "$G"
[ -d build ] || meson setup build "$SRC" -Dcuda=enabled -Dmpi=disabled -Dnccl=disabled >/dev/null
[ -d build-nccl ] || meson setup build-nccl "$SRC" -Dcuda=enabled >/dev/null
ninja -C build -j2 cli/flexmoe bench/gpu/bench_kernels >/dev/null
ninja -C build-nccl -j2 cli/flexmoe >/dev/null
rm -rf bin lib
mkdir -p bin lib
cp build/cli/flexmoe bin/flexmoe
cp build-nccl/cli/flexmoe bin/flexmoe-nccl
cp build/bench/gpu/bench_kernels bin/
for l in libgsl.so.27 libgslcblas.so.0 libjansson.so.4; do cp -L /lib/x86_64-linux-gnu/$l lib/$l; done
cp "$SRC"/traces/samples/gpt-l6-e32-top2-aux-200.npy "$SRC"/traces/samples/gpt-l6-e32-top2-aux-200.json .
cp "$SRC"/bench/gpu/moe_torch.py "$SRC"/bench/gpu/run_h200.sh .
du -sh --exclude=build --exclude=build-nccl "$G"
