#!/usr/bin/env python3
"""Lists the tests a `meson test` run skipped, and fails when one of them is required.

  check_skips.py BUILD_DIR

Reads BUILD_DIR/meson-logs/testlog.json. A test that can skip is in a suite named
after what it needs (real-traces, torch, mpi, sqlite3, unprivileged, notebooks;
docs/testing.md); FLEXMOE_REQUIRE (comma-separated needs, or "all") names those that
must run. The tests fail by themselves when a required need is missing; this check
also catches a skip no test reported as such (a Criterion filter that no longer
matches its test, say). Exit 1 when a required test skipped, else 0.
"""

import json
import os
import re
import sys

NEEDS = ("real-traces", "torch", "mpi", "sqlite3", "unprivileged", "notebooks")


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    log = os.path.join(sys.argv[1], "meson-logs", "testlog.json")
    req = {n.strip() for n in os.environ.get("FLEXMOE_REQUIRE", "").split(",") if n.strip()}
    if "all" in req:
        req = set(NEEDS)
    skipped, bad = [], []
    with open(log, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            if t.get("result") != "SKIP":
                continue
            # "project:suite+suite / name"
            m = re.match(r"^[^:]+:(\S+) / (.*)$", t["name"])
            suites = m.group(1).split("+") if m else []
            name = m.group(2) if m else t["name"]
            why = ""
            for out in (t.get("stdout") or "").split("\n"):
                w = re.search(r"# SKIP (.*)$", out) or re.match(r"^SKIP:? (.*)$", out)
                if w and w.group(1) != "test was skipped":
                    why = w.group(1).strip()
                    break
            needs = [s for s in suites if s in NEEDS]
            must = [n for n in needs if n in req]
            skipped.append((name, ",".join(needs) or "-", why or "(no reason given)", must))
            if must or not needs:
                bad.append(name)
    if skipped:
        print("skipped tests:")
        print("  %-40s %-14s %s" % ("test", "needs", "why"))
        for name, needs, why, must in skipped:
            print("  %-40s %-14s %s%s" % (name, needs, why, "   <- required" if must else ""))
    else:
        print("skipped tests: none")
    for name in bad:
        print("check_skips: %s skipped, but %s" % (
            name, "FLEXMOE_REQUIRE requires it" if any(
                s[0] == name and s[3] for s in skipped)
            else "it is in no need's suite (every skippable test must be: tests/require.h)"),
            file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
