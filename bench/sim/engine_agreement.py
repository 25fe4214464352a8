#!/usr/bin/env python3
"""Engine agreement: every policy on both engines, side by side.

Runs `flexmoe sim --format json --no-db` once per (trace, size, engine) with
every policy, and prints per policy the mean iteration time of the analytic
engine, of the DES, and analytic / des - 1. Exit status 1 when any
|analytic / des - 1| exceeds --tolerance (default 5%), so the bench suite
fails when the engines drift apart.

    engine_agreement.py --flexmoe build/cli/flexmoe \
        --trace traces/samples/gpt-l6-e32-top2-aux-200.npy \
        --trace ../shared/traces/real/gpt-l6-e32-top2-noaux.npy \
        --gpus 8,16,64,1024 [--iterations A:B] [--policy P ...] [--cluster dgx-h100]

Sizes are GPUs of the cluster preset (8 per node: --nodes G/8; below 8 one
node of G). The oracle's planner is slow at 1,024 GPUs; --iterations limits
every run.
"""
import argparse
import sys

from fmsim import sim_runs

DEFAULT_POLICIES = ["static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flexmoe", required=True)
    ap.add_argument("--trace", action="append", required=True)
    ap.add_argument("--gpus", default="8,16,64")
    ap.add_argument("--policy", action="append")
    ap.add_argument("--iterations")
    ap.add_argument("--cluster", default="dgx-h100")
    ap.add_argument("--tolerance", type=float, default=0.05)
    a = ap.parse_args()
    policies = a.policy or DEFAULT_POLICIES
    worst = 0.0
    print(f"# engine agreement: cluster {a.cluster}, iterations {a.iterations or 'all'}")
    print(f"{'trace':34} {'gpus':>5} {'policy':12} {'analytic_ms':>12} {'des_ms':>10} {'a/d-1':>8}")
    for trace in a.trace:
        name = trace.rsplit("/", 1)[-1]
        for g in (int(x) for x in a.gpus.split(",")):
            ra, ta = sim_runs(a.flexmoe, trace, g, "analytic", policies, a.iterations, a.cluster)
            rd, td = sim_runs(a.flexmoe, trace, g, "des", policies, a.iterations, a.cluster)
            for x, y in zip(ra, rd):
                err = x["mean_iteration_ms"] / y["mean_iteration_ms"] - 1
                worst = max(worst, abs(err))
                pol = x["policy"].split(":")[0]
                print(f"{name:34} {g:5d} {pol:12} {x['mean_iteration_ms']:12.4f} "
                      f"{y['mean_iteration_ms']:10.4f} {err * 100:+7.3f}%")
            print(f"{name:34} {g:5d} {'(wall s)':12} {ta:12.1f} {td:10.1f}")
            sys.stdout.flush()
    print(f"# worst |analytic/des - 1| = {worst * 100:.3f}% (tolerance {a.tolerance * 100:.1f}%)")
    return 0 if worst <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
