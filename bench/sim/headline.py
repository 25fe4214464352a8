#!/usr/bin/env python3
"""The head-to-head: flexmoe against every baseline, as a markdown table.

For each trace and GPU count runs `flexmoe sim --format json --no-db` with:
static; capacity (DeepSpeed's rule, compared by effective time); capacity:drop=0
(DeepSpeed's dropless mode); fastermoe; smartmoe; eplb (its default memory:
ceil(E/G) + 1 slots); flexmoe (the cluster's slots); flexmoe and eplb at the
other's memory (flexmoe:slots=ceil(E/G)+1, eplb:slots=the cluster's); oracle.
Prints the mean (effective) ms per iteration of each and flexmoe's speedup
over each baseline, at flexmoe's default memory and at eplb's.

    headline.py --flexmoe build/cli/flexmoe --trace T [--trace T2] \
        [--gpus 8,16,32,64] [--engine analytic] [--iterations A:B] [--extra ARGS]
"""
import argparse
import json
import sys

from fmsim import sim_runs


def sim(flexmoe, trace, gpus, engine, iterations, extra, policies):
    return sim_runs(flexmoe, trace, gpus, engine, policies, iterations, extra=extra)[0]


def experts_of(trace):
    with open(trace.rsplit(".", 1)[0] + ".json") as f:
        return int(json.load(f)["experts"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flexmoe", required=True)
    ap.add_argument("--trace", action="append", required=True)
    ap.add_argument("--gpus", default="8,16,32,64")
    ap.add_argument("--engine", default="analytic")
    ap.add_argument("--iterations")
    ap.add_argument("--extra", help="more sim flags, e.g. '--d-model 4096 --d-ff 14336'")
    a = ap.parse_args()
    for trace in a.trace:
        E = experts_of(trace)
        name = trace.rsplit("/", 1)[-1]
        print(f"\n{name}, engine {a.engine}, iterations {a.iterations or 'all'} {a.extra or ''}\n")
        print("| GPUs | slots flexmoe / eplb | static | capacity eff (drop %) | DS dropless | fastermoe "
              "| smartmoe | eplb | eplb @flex mem | flexmoe | flexmoe @eplb mem | oracle "
              "| over fastermoe | over DS dropless | over capacity eff | over eplb | over smartmoe "
              "| @eplb mem: over eplb |")
        print("|" + "---|" * 18)
        for g in (int(x) for x in a.gpus.split(",")):
            s_eplb = -(-E // g) + 1
            # the cluster's slots: ask the simulator
            probe = sim(a.flexmoe, trace, g, a.engine, "0:1", a.extra, ["static"])[0]
            s_flex = min(probe["slots_per_gpu"], E)
            s_eplb = min(s_eplb, s_flex)
            pols = ["static", "capacity", "capacity:drop=0", "fastermoe", "smartmoe", "eplb",
                    f"eplb:slots={s_flex}", "flexmoe", f"flexmoe:slots={s_eplb}", "oracle"]
            runs = sim(a.flexmoe, trace, g, a.engine, a.iterations, a.extra, pols)
            eff = [r["effective_iteration_ms"] for r in runs]
            cap = runs[1]
            st, ca, dl, fm, sm, ep, epf, fx, fxe, orc = eff
            drop = 1 - cap["mean_iteration_ms"] / cap["effective_iteration_ms"]  # eff = mean / (1 - share)
            print(f"| {g} | {s_flex} / {s_eplb} | {st:.3f} | {ca:.3f} ({drop * 100:.1f}) | {dl:.3f} "
                  f"| {fm:.3f} | {sm:.3f} | {ep:.3f} | {epf:.3f} | {fx:.3f} | {fxe:.3f} | {orc:.3f} "
                  f"| {fm / fx:.2f}x | {dl / fx:.2f}x | {ca / fx:.2f}x | {ep / fx:.2f}x | {sm / fx:.2f}x "
                  f"| {ep / fxe:.2f}x |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
