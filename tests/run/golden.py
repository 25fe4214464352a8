#!/usr/bin/env python3
"""Golden outputs of `flexmoe sim --format json`, `sweep`, `report --format
json`, `trace info`, `trace stats` and `place` on the bundled sample trace, recorded before the orchestration moved
from cli/ into the run library (issue 15), compared byte for byte.

Every case gives --seed/--seeds explicitly, so aligning the default seed does
not change them. Masked, and only these: the wall-clock line of the sweep's
summary ("wall N s ...") and the temporary database path (the "database" key of
report, the "already in DB" and "results:" lines of sweep), which differ from
run to run by construction. Nothing else is masked: a changed digit fails.

usage: golden.py --flexmoe BIN --source-root DIR [--update]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

TRACE = "traces/samples/gpt-l6-e32-top2-aux-200.npy"
POLICIES = ["static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"]
ALL = [a for p in POLICIES for a in ("--policy", p)]

# name -> argument list (after the binary); "{db}" is the temporary database
SIM = ["sim", "--trace", TRACE, "--format", "json", "--no-db"]
CASES = [
    ("sim-default-seed0", SIM + ALL + ["--seed", "0"]),
    ("sim-nodes2-it0-50-seed0", SIM + ALL + ["--nodes", "2", "--iterations", "0:50", "--seed", "0"]),
    ("sim-nodes2-it0-50-seed1", SIM + ALL + ["--nodes", "2", "--iterations", "0:50", "--seed", "1"]),
    ("sim-gpn4-it100-150-seed7", SIM + ALL + ["--gpus-per-node", "4", "--iterations", "100:150",
                                             "--seed", "7"]),
    ("sim-des-nodes2-it0-20-seed0", SIM + ["--policy", "static", "--policy", "flexmoe",
                                          "--policy", "eplb", "--engine", "des", "--nodes", "2",
                                          "--iterations", "0:20", "--seed", "0"]),
    ("sweep", ["sweep", "--trace", TRACE, "--policy", "static", "--policy", "flexmoe",
               "--policy", "oracle", "--gpus", "8,16,32", "--seeds", "1,2",
               "--iterations", "0:30", "--db", "{db}", "--quiet", "--jobs", "2"]),
    ("report", ["report", "--db", "{db}", "--format", "json"]),
    # trace and place, recorded before their orchestration moved into
    # run/fm_trace and run/fm_place (issue 15)
    ("trace-info", ["trace", "info", TRACE]),
    ("trace-info-json-it10-60", ["trace", "info", TRACE, "--iterations", "10:60",
                                 "--format", "json"]),
    ("trace-stats-json", ["trace", "stats", TRACE, "--format", "json"]),
    ("trace-stats-it0-120", ["trace", "stats", TRACE, "--iterations", ":120"]),
    ("place", ["place", "--trace", TRACE, "--gpus", "8", "--slots", "6", "--policy",
               "flexmoe:threshold=1.2,horizon=50", "--iteration", "120", "--layer", "0"]),
    ("place-json-eplb-it40", ["place", "--trace", TRACE, "--gpus", "16", "--policy", "eplb",
                              "--iteration", "40", "--seed", "3", "--format", "json"]),
]


def mask(name, text, db):
    text = text.replace(db, "DB")
    if name == "sweep":
        text = re.sub(r"wall [0-9.]+ s", "wall N s", text)
    return text


def run_all(flexmoe, root):
    out = {}
    with tempfile.TemporaryDirectory(prefix="flexmoe-golden-") as tmp:
        db = os.path.join(tmp, "golden.db")
        for name, args in CASES:
            argv = [flexmoe] + [a.replace("{db}", db) for a in args]
            p = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                sys.exit(f"{name}: exit {p.returncode}: {p.stderr.strip()}")
            out[name] = mask(name, p.stdout, db)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flexmoe", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--update", action="store_true", help="record the outputs")
    a = ap.parse_args()
    gold = os.path.join(a.source_root, "tests", "run", "golden")
    got = run_all(os.path.abspath(a.flexmoe), a.source_root)
    print(f"1..{len(CASES)}")
    bad = 0
    for i, (name, _) in enumerate(CASES, 1):
        path = os.path.join(gold, name + ".out")
        if a.update:
            with open(path, "w") as f:
                f.write(got[name])
            print(f"ok {i} - {name} recorded")
            continue
        with open(path) as f:
            want = f.read()
        if want == got[name]:
            print(f"ok {i} - {name}")
            continue
        bad += 1
        w, g = want.splitlines(), got[name].splitlines()
        first = next((k for k in range(min(len(w), len(g))) if w[k] != g[k]), min(len(w), len(g)))
        print(f"not ok {i} - {name} differs from {path} at line {first + 1}")
        print(f"#  want: {w[first] if first < len(w) else '(end)'}")
        print(f"#  got:  {g[first] if first < len(g) else '(end)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
