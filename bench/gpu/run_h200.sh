#!/bin/bash
# run_h200.sh - the device check of the runtime on one H200, as one script
# (device time is scarce). Run from the checkout root with the GPU build
# shipped in .gpu/ (bin/, lib/, the sample trace): see docs/runtime.md.
# Writes everything under $OUT (at most 8 files come back).
set -o pipefail
G=.gpu
export LD_LIBRARY_PATH=$PWD/$G/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
T=$G/gpt-l6-e32-top2-aux-200.npy
F=$G/bin/flexmoe
LOG=$OUT/log.txt
say() { echo "=== $* ($(date -u +%T))" | tee -a $LOG; }
say device
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,driver_version --format=csv 2>&1 | tee -a $LOG
ldd $F | grep "not found" | tee -a $LOG
say "1. kernels: checks vs CPU twins, FFN vs cuBLAS, permute/combine vs copy, MoE layer"
timeout 180 $G/bin/bench_kernels $T $OUT/layer_counts.json 2>&1 | tee $OUT/bench.txt | tee -a $LOG
say "1b. the same MoE layer in PyTorch"
timeout 120 python3 $G/moe_torch.py $OUT/layer_counts.json 2>&1 | tee -a $OUT/bench.txt | tee -a $LOG
say "2. executor self-check on 4 partitions: placement independence, tokens, checksums"
timeout 240 $F run --backend cuda --partitions 4 --trace $T --iterations 0:6 --d-model 128 --d-ff 256 \
  --tokens-per-gpu 256 --policy static --policy flexmoe --policy eplb --check 2>&1 | tee -a $LOG
say "3. calibrate"
timeout 180 $F calibrate --backend cuda --partitions 4 --d-model 1024 --d-ff 4096 \
  --out $OUT/h200-green-4.json --db $OUT/flexmoe.db 2>&1 | tee -a $LOG
say "4. validate"
timeout 400 $F validate --backend cuda --partitions 4 --trace $T --iterations ${ITERS:-0:200} \
  --d-model 1024 --d-ff 4096 --policy static --policy flexmoe:background=0 --policy eplb:background=0 \
  --profile $OUT/h200-green-4.json --db $OUT/flexmoe.db --format json > $OUT/validate.json 2>>$LOG
echo "validate exit $?" | tee -a $LOG
python3 - $OUT/validate.json <<'PY' 2>&1 | tee -a $LOG
import json, sys
v = json.load(open(sys.argv[1]))
print("predictor:", v["predictor"])
for r in v["runs"]:
    print("%-10s time pred %8.3f meas %8.3f err %+6.1f%%" % (r["policy"].split(":")[0], r["predicted_ms"], r["measured_ms"], 100 * r["error"]))
    for k, p in r["phases"].items():
        print("%-10s %-9s pred %8.3f meas %8.3f err %+6.1f%%" % ("", k, p["predicted_ms"], p["measured_ms"], 100 * p["error"]))
print("median_abs_error %.4f p95_abs_error %.4f ranking_agrees %s" % (v["median_abs_error"], v["p95_abs_error"], v["ranking_agrees"]))
PY
say "5. nccl backend, one rank under mpirun"
if [ -x $G/bin/flexmoe-nccl ] && ! ldd $G/bin/flexmoe-nccl | grep -q "not found"; then
  timeout 60 mpirun --allow-run-as-root -n 1 $G/bin/flexmoe-nccl run --backend nccl --trace $T \
    --iterations 0:5 --d-model 128 --d-ff 256 --tokens-per-gpu 256 --policy static --check 2>&1 | tee -a $LOG
else
  echo "flexmoe-nccl: missing libraries: $(ldd $G/bin/flexmoe-nccl 2>&1 | grep 'not found' | tr '\n' ' ')" | tee -a $LOG
fi
say done
