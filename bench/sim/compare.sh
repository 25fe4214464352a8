#!/bin/bash
# compare.sh - two builds of flexmoe side by side on one trace (issue 19):
# for 64, 256 and 1,024 GPUs (dgx-h100, 8 per node) and static and flexmoe
# with --engine des, each build runs the same first ITERS iterations in
# turn (A, B, A, B: REPS times), and the script prints each one's median
# wall and CPU seconds per 1,000 iterations (x 1,000 / ITERS, set-up
# included) and the ratios A / B. The machine is shared and noisy: only the
# ratios of one run mean much, and CPU seconds less than wall seconds.
#
#   bench/sim/compare.sh OLD_FLEXMOE NEW_FLEXMOE TRACE [ITERS] [THREADS] [REPS] [SIZES]
#
# THREADS is passed as --threads (default 2; a build whose --threads takes
# only 1 or 2 gets min(THREADS, 2)).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
A=$1 B=$2 TRACE=$3 ITERS=${4:-50} TH=${5:-2} REPS=${6:-3} SIZES=${7:-64,256,1024}
THA=$TH
if ! "$A" sim --help 2>&1 | grep -q -- '--threads N'; then THA=$((TH > 2 ? 2 : TH)); fi
# one run: prints "wall cpu"
one() {
  local bin=$1 th=$2 g=$3 pol=$4 out
  out=$( { /usr/bin/time -f '%e %U %S' "$bin" sim --trace "$TRACE" --cluster dgx-h100 \
      --nodes $((g / 8)) --gpus-per-node 8 --engine des --policy "$pol" \
      --iterations "0:$ITERS" --threads "$th" --no-db --format json >/dev/null; } 2>&1 | tail -1)
  awk -v s="$out" 'BEGIN { split(s, a, " "); printf "%s %s\n", a[1], a[2] + a[3] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "# compare.sh: A = $A, B = $B"
echo "# trace $TRACE, iterations 0:$ITERS, threads A $THA B $TH, $REPS runs each (median),"
echo "# $(nproc) cores, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%6s %-8s %12s %12s %12s %12s %9s %9s\n" gpus policy A_wall_1000 B_wall_1000 \
  A_cpu_1000 B_cpu_1000 wall_A/B cpu_A/B
IFS=, read -ra GS <<<"$SIZES"
for g in "${GS[@]}"; do
  for pol in static flexmoe; do
    aw=() ac=() bw=() bc=()
    for ((r = 0; r < REPS; r++)); do
      read -r w c < <(one "$A" "$THA" "$g" "$pol"); aw+=("$w"); ac+=("$c")
      read -r w c < <(one "$B" "$TH" "$g" "$pol"); bw+=("$w"); bc+=("$c")
    done
    AW=$(printf '%s\n' "${aw[@]}" | median) AC=$(printf '%s\n' "${ac[@]}" | median)
    BW=$(printf '%s\n' "${bw[@]}" | median) BC=$(printf '%s\n' "${bc[@]}" | median)
    awk -v g="$g" -v p="$pol" -v aw="$AW" -v bw="$BW" -v ac="$AC" -v bc="$BC" -v n="$ITERS" \
      'BEGIN { k = 1000 / n; printf "%6d %-8s %12.1f %12.1f %12.1f %12.1f %9.2f %9.2f\n",
               g, p, aw * k, bw * k, ac * k, bc * k, aw / bw, ac / bc }'
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
