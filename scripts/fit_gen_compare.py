#!/usr/bin/env python3
"""fit_gen_compare.py - how well `trace gen --fit` reproduces a real trace, per layer.

For each trace: `flexmoe trace fit` (calibration seed 1), `flexmoe trace gen --fit`
for MULT times the original length with --seed SEED, then `flexmoe trace stats
--format json` on both; prints a Markdown table per trace: the median and p90 of
the lag-1 L1 change and the skew (expert max/mean load median), real vs generated
and the error in percent. Standard library only; everything it writes goes to a
temporary directory.

usage: scripts/fit_gen_compare.py --flexmoe BIN [--mult M] [--seed S] TRACE.npy ...
Exit 0 when every error is within the issue-19 tolerances (10% for the change
quantiles, 5% for the skew), 1 otherwise, 2 on bad usage.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

KEYS = [("change_l1_lag1_p50", "lag-1 change p50", 0.10),
        ("change_l1_lag1_p90", "lag-1 change p90", 0.10),
        ("max_mean_p50", "skew (max/mean p50)", 0.05)]


def stats(flexmoe, path):
    out = subprocess.run([flexmoe, "trace", "stats", path, "--format", "json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def compare(flexmoe, trace, mult, seed, tmp):
    name = os.path.splitext(os.path.basename(trace))[0]
    fit, gen = os.path.join(tmp, name + "-fit.json"), os.path.join(tmp, name + "-gen.npy")
    subprocess.run([flexmoe, "trace", "fit", trace, "-o", fit, "--seed", "1"], check=True,
                   capture_output=True)
    real = stats(flexmoe, trace)
    iters = real["shape"][0] * mult
    subprocess.run([flexmoe, "trace", "gen", "--fit", fit, "--iterations", str(iters),
                    "--seed", str(seed), "-o", gen], check=True, capture_output=True)
    got = stats(flexmoe, gen)
    print("%s: real %d iterations, generated %d (seed %d)\n" % (name, real["shape"][0], iters,
                                                               seed))
    print("| layer | " + " | ".join("%s real | gen | err" % k[1] for k in KEYS) + " |")
    print("|---|" + "---:|---:|---:|" * len(KEYS))
    worst = 0.0
    ok = True
    for r, g in zip(real["layers"], got["layers"]):
        cells = []
        for key, _, tol in KEYS:
            err = g[key] / r[key] - 1
            ok = ok and abs(err) <= tol
            worst = max(worst, abs(err))
            digits = 2 if key == "max_mean_p50" else 4
            cells.append("%.*f | %.*f | %+.1f%%" % (digits, r[key], digits, g[key], 100 * err))
        print("| %d | %s |" % (r["layer"], " | ".join(cells)))
    print("\nworst error %.1f%%\n" % (100 * worst))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flexmoe", required=True)
    ap.add_argument("--mult", type=int, default=8)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    if a.mult < 1:
        ap.error("--mult must be at least 1")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for t in a.traces:
            ok = compare(a.flexmoe, t, a.mult, a.seed, tmp) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
