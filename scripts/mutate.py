#!/usr/bin/env python3
"""Mutation testing: plant small bugs one at a time and see whether the tests notice.

    python3 scripts/mutate.py list                      # the defined mutants
    python3 scripts/mutate.py run [--build DIR] [--only ID,...] [--report FILE]
    python3 scripts/mutate.py generate > tests/mutation/mutants.json   # (re)define the set

The set of mutants is tests/mutation/mutants.json: each one a file, a line number, the
exact text of that line, the operator and the mutated line. `generate` proposes sites
in placement/, sim/, traces/ and store/ (relational and logical operators, off-by-one,
dropped terms and swapped arguments, a fixed number per file chosen with a fixed seed);
the chosen set is committed so every run plants the same mutants.

`run` works in a scratch git worktree of HEAD (the working tree is never touched): for
each mutant it patches the line (refusing a mutant whose line no longer matches), builds
incrementally, and runs the test suite of the mutated library plus the end-to-end CLI
suite (placement -> placement, cli; sim -> sim, cli; traces -> traces; store -> store).
A mutant is killed when a test fails or times out, survives when all pass, and is
stillborn when it does not compile (not counted). Each mutant's result and the tests that
killed it go to the report (markdown). Not part of CI: a full run takes about an hour on
two cores.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SET = os.path.join(ROOT, "tests", "mutation", "mutants.json")
SUITES = {"placement": ["placement", "cli"], "sim": ["sim", "cli"], "traces": ["traces"],
          "store": ["store"]}
FILES = {
    "placement": ["pl_eplb.c", "pl_greedy.c", "pl_route.c", "pl_cost.c", "pl_placement.c",
                  "pl_predict.c", "policy_capacity.c", "policy_fastermoe.c",
                  "policy_smartmoe.c", "policy_eplb.c", "policy_flexmoe.c", "policy_oracle.c",
                  "policy_util.c", "pl_policy.c"],
    "sim": ["sim_engine.c", "sim_fluid.c", "sim_net.c", "sim_evq.c", "sim_cluster.c",
            "sim_profile.c"],
    "traces": ["tr_rescale.c", "tr_sample.c", "tr_trace.c", "tr_stats.c", "tr_gen.c"],
    "store": ["st_store.c"],
}
PER_FILE = 3  # generate: mutants proposed per file

# (name, pattern, replacement): applied to the first match on the line
OPERATORS = [
    ("lt->le", r"(?<![<>=!])<(?![<=])", "<="),
    ("le->lt", r"<=", "<"),
    ("gt->ge", r"(?<![<>=-])>(?![>=])", ">="),
    ("ge->gt", r">=", ">"),
    ("eq->ne", r"==", "!="),
    ("and->or", r"&&", "||"),
    ("or->and", r"\|\|", "&&"),
    ("drop+1", r"\s*\+\s*1\b(?!\.)", ""),
    ("drop-1", r"\s*-\s*1\b(?!\.)", ""),
    ("add->sub", r"(?<=[\w)\]]) \+ (?=[\w(])", " - "),
    ("mul->div", r"(?<=[\w)\]]) \* (?=[\w(])", " / "),
    ("pluseq->minuseq", r"\+=", "-="),
]


def code_line(line):
    s = line.strip()
    return (s and not s.startswith(("*", "/*", "//", "#")) and '"' not in s and "'" not in s
            and not s.endswith("*/") and "for (" not in s
            and not re.search(r"alloc\(|memset|memcpy|sizeof|assert", s))


def generate():
    rng = random.Random(2026_12_06)
    out = []
    for lib, files in FILES.items():
        for f in files:
            path = os.path.join(lib, f)
            lines = open(os.path.join(ROOT, path)).read().split("\n")
            sites = []
            for i, line in enumerate(lines):
                if not code_line(line):
                    continue
                for name, pat, rep in OPERATORS:
                    if re.search(pat, line):
                        sites.append((i + 1, name, pat, rep, line))
            rng.shuffle(sites)
            used = set()
            for n, name, pat, rep, line in sites:
                if n in used or len(used) >= PER_FILE:
                    continue
                used.add(n)
                out.append({"id": f"{lib}/{f}:{n}:{name}", "lib": lib, "file": path, "line": n,
                            "operator": name, "original": line,
                            "mutated": re.sub(pat, rep, line, count=1)})
    json.dump(out, sys.stdout, indent=1)
    print()


def sh(cmd, cwd, timeout=None):
    p = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def failed_tests(log):
    return sorted(set(re.findall(r"\d+/\d+ \S+ / (\S+)\s+(?:FAIL|ERROR|TIMEOUT)", log)))


def run(args):
    mutants = json.load(open(SET))
    if args.only:
        keep = set(args.only.split(","))
        mutants = [m for m in mutants if m["id"] in keep]
    wt = args.worktree
    head = sh("git rev-parse HEAD", ROOT)[1].strip()
    if not os.path.isdir(wt):
        sh(f"git worktree add --detach {wt} {head}", ROOT)
    else:  # a reused worktree: move it to this HEAD, or it tests an older commit
        rc, log = sh(f"git checkout --quiet --detach {head}", wt)
        if rc:
            sys.exit(f"{wt}: cannot move to {head}:\n{log}")
    build = os.path.join(wt, "build-mut")
    if not os.path.isdir(build):
        rc, log = sh("meson setup build-mut --buildtype=debugoptimized -Dcuda=disabled", wt)
        if rc:
            sys.exit("meson setup failed:\n" + log)
    rc, log = sh("meson compile -C build-mut", wt)
    if rc:
        sys.exit("the unmutated tree does not build:\n" + log[-2000:])
    results = []
    t0 = time.time()
    for k, m in enumerate(mutants):
        path = os.path.join(wt, m["file"])
        text = open(path).read().split("\n")
        at = m["line"] - 1
        if at >= len(text) or text[at] != m["original"]:
            # the file moved on: the same line text, if it occurs exactly once
            hits = [i for i, t in enumerate(text) if t == m["original"]]
            if len(hits) != 1:
                results.append((m, "stale", "the line changed since the mutant was defined"))
                continue
            at = hits[0]
        text[at] = m["mutated"]
        open(path, "w").write("\n".join(text))
        try:
            rc, log = sh("meson compile -C build-mut", wt, timeout=600)
            if rc:
                status, why = "stillborn", "does not compile"
            else:
                suites = " ".join(f"--suite {s}" for s in SUITES[m["lib"]])
                try:
                    rc, log = sh(f"meson test -C build-mut {suites} --num-processes 2 "
                                 f"--timeout-multiplier 1", wt, timeout=900)
                    fails = failed_tests(log)
                    status, why = ("killed", ", ".join(fails) or "a test failed") if rc else \
                        ("survived", "")
                except subprocess.TimeoutExpired:
                    status, why = "killed", "test run timed out"
        finally:
            text[at] = m["original"]
            open(path, "w").write("\n".join(text))
        results.append((m, status, why))
        print(f"[{k + 1}/{len(mutants)} {time.time() - t0:.0f}s] {status:9} {m['id']} {why}",
              flush=True)
    sh("meson compile -C build-mut", wt)
    counted = [r for r in results if r[1] in ("killed", "survived")]
    killed = sum(1 for r in counted if r[1] == "killed")
    lines = [f"# Mutation run {time.strftime('%Y-%m-%d')} at {sh('git rev-parse --short HEAD', wt)[1].strip()}",
             "", f"{len(mutants)} mutants: {killed} killed, "
             f"{len(counted) - killed} survived, "
             f"{sum(1 for r in results if r[1] == 'stillborn')} stillborn, "
             f"{sum(1 for r in results if r[1] == 'stale')} stale; kill rate "
             f"{100.0 * killed / max(1, len(counted)):.1f}% ({time.time() - t0:.0f} s)", "",
             "| mutant | result | killed by |", "|---|---|---|"]
    for m, status, why in results:
        lines.append(f"| `{m['id']}` `{m['mutated'].strip()}` | {status} | {why} |")
    report = "\n".join(lines) + "\n"
    if args.report:
        open(args.report, "w").write(report)
    print(report)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("generate")
    r = sub.add_parser("run")
    r.add_argument("--worktree", default="/tmp/flexmoe-mutants")
    r.add_argument("--only")
    r.add_argument("--report")
    a = ap.parse_args()
    if a.cmd == "generate":
        generate()
    elif a.cmd == "list":
        for m in json.load(open(SET)):
            print(f"{m['id']:50} {m['mutated'].strip()}")
    else:
        return run(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
