#!/usr/bin/env bash
# Executes the four notebooks headless (notebooks/run.py, over nbclient) on a small
# database built by `flexmoe sweep` from the bundled sample, and checks the
# figures they write: each exists, and every value it draws (flexmoe_nb.save
# writes them beside the PNG) equals the one check_figures.py recomputes from
# the database, `flexmoe report` and the trace. The notebooks read the
# database through the flexmoe package: its modules from this tree, laid out
# as `pip install .` installs them, over this build's libflexmoe (argument 1;
# FLEXMOE_LIBRARY). Exit 77 (skip) when the notebook stack is not installed
# (1 when FLEXMOE_REQUIRE names notebooks or all):
#   pip install -r notebooks/requirements.txt
set -euo pipefail
: "${FLEXMOE_BIN:?run through meson test}" "${FLEXMOE_SOURCE_ROOT:?run through meson test}"
lib=${1:?usage: test_notebooks.sh LIBFLEXMOE (run through meson test)}
if ! python3 -c "import nbconvert, nbclient, ipykernel, pandas, matplotlib, cffi" 2>/dev/null; then
  why="the notebook stack is not installed (pip install -r notebooks/requirements.txt)"
  case ",${FLEXMOE_REQUIRE:-}," in
    *,notebooks,* | *,all,*)
      echo "FLEXMOE_REQUIRE names notebooks, but $why" >&2
      exit 1 ;;
  esac
  echo "SKIP: $why"
  exit 77
fi
trace=$FLEXMOE_SOURCE_ROOT/traces/samples/gpt-l6-e32-top2-aux-200.npy
if [ ! -f "$trace" ]; then
  echo "bundled sample $trace not present: the tree is incomplete" >&2
  exit 1
fi
tmp=$(mktemp -d /tmp/flexmoe-nb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
db=$tmp/nb.db
# notebooks/run.py puts the figures under --out/figures
export FLEXMOE_DB=$db FLEXMOE_FIGURES=$tmp/out/figures
# the package as python/meson.build installs it (the capture hook included)
mkdir -p "$tmp/site/flexmoe"
cp "$FLEXMOE_SOURCE_ROOT"/python/flexmoe/*.py "$tmp/site/flexmoe/"
cp "$FLEXMOE_SOURCE_ROOT/traces/capture/flexmoe_capture.py" "$tmp/site/flexmoe/capture.py"
export PYTHONPATH=$tmp/site${PYTHONPATH:+:$PYTHONPATH} FLEXMOE_LIBRARY=$lib

# The oracle with few planner steps: the full one takes seconds per iteration.
"$FLEXMOE_BIN" sweep --trace "$trace" --policy static --policy capacity --policy flexmoe \
  --policy oracle:max_steps=4 --gpus 8,16 --iterations 0:10 --jobs 2 --db "$db" --quiet
# A second model shape in the same database (issue 18: it used to be mixed
# into the first one's figures): each figure must draw one shape, named in
# its title (check_figures.py).
"$FLEXMOE_BIN" sweep --trace "$trace" --policy static --policy flexmoe \
  --policy oracle:max_steps=4 --gpus 8,16 --iterations 0:10 --d-model 1024 --d-ff 4096 \
  --jobs 2 --db "$db" --quiet

# The documented way to run them (README, docs/results.md): notebooks/run.py,
# which must leave notebooks/ as it was (no *.nbconvert.ipynb, figures or
# byte code in the tree).
tree_state() { find "$FLEXMOE_SOURCE_ROOT/notebooks" -printf '%P %s %T@\n' | sort; }
tree_state >"$tmp/tree.before"
execute() { # one run.py for several notebooks: a kernel start-up is slow
  python3 "$FLEXMOE_SOURCE_ROOT/notebooks/run.py" --db "$db" --out "$tmp/out" --timeout 300 \
    "$@" >"$tmp/run.log" 2>&1 ||
    { cat "$tmp/run.log" >&2; echo "FAIL: a notebook did not run: $*" >&2; exit 1; }
  for nb in "$@"; do
    [ -s "$tmp/out/$nb.ipynb" ] || { echo "FAIL: notebooks/$nb.ipynb: no output" >&2; exit 1; }
    echo "ok: notebooks/$nb.ipynb"
  done
  tree_state | diff "$tmp/tree.before" - >&2 ||
    { echo "FAIL: running the notebooks changed notebooks/ in the tree" >&2; exit 1; }
}
expect() {
  for f in "$@"; do
    compgen -G "$FLEXMOE_FIGURES/$f" >/dev/null ||
      { echo "FAIL: no figure $f in $FLEXMOE_FIGURES: $(ls "$FLEXMOE_FIGURES")" >&2; exit 1; }
  done
}

# The notebooks compare policies with flexmoe.report (through their helper):
# the same rows as `flexmoe report --format json` (to its 9 significant
# digits), effective time (capacity drops tokens here), speedup over static
# and gap to the oracle; each row's run_ids are its runs.
"$FLEXMOE_BIN" report --db "$db" --format json >"$tmp/report.json"
PYTHONPATH=$FLEXMOE_SOURCE_ROOT/notebooks:$PYTHONPATH python3 - "$tmp/report.json" "$tmp/site" <<'PY'
import json, math, sys
import flexmoe, flexmoe_nb as fx
assert flexmoe.__file__.startswith(sys.argv[2]), flexmoe.__file__  # this tree's package
rows = json.load(open(sys.argv[1]))["rows"]
cmp = fx.report("sim")
runs = flexmoe.results(fx.db_path()).runs
assert len(rows) == len(cmp), (len(rows), len(cmp))
dropping = 0
for r, (_, m) in zip(rows, cmp.iterrows()):
    assert (r["policy"], r["gpus"], r["runs"]) == (m.policy, m.gpus, len(m.run_ids)), r["policy"]
    assert r["iteration_range"] == [m.it_first, m.it_end], r["policy"]
    mine = runs[runs.id.isin(m.run_ids)]
    assert (mine.policy == r["policy"]).all() and (mine.gpus == r["gpus"]).all(), r["policy"]
    for key, col in (("mean_iteration_ms", "mean_ms"), ("effective_iteration_ms", "effective_ms"),
                     ("speedup_vs_static", "speedup"), ("oracle_gap", "oracle_gap")):
        want, got = r[key], m[col]
        assert (want is None and not math.isfinite(got)) or \
            math.isclose(want, got, rel_tol=1e-8, abs_tol=1e-12), (r["policy"], key, want, got)
    dropping += r["effective_iteration_ms"] > r["mean_iteration_ms"]
assert dropping >= 2, "capacity at 8 and 16 GPUs should drop tokens"
print(f"ok: flexmoe.report agrees with flexmoe report on {len(rows)} rows")
PY

execute traces policies sweep validation
expect 'traces_heatmap_*.png' 'traces_imbalance_*.png' policies_iteration_time.png \
  policies_speedup.png policies_breakdown.png sweep_speedup.png
check() { python3 "$FLEXMOE_SOURCE_ROOT/tests/store/check_figures.py" "$FLEXMOE_FIGURES" "$db" \
  "$tmp/report.json" "$trace" "$@"; }
check
# The size is a parameter: --gpus 8 draws the 8-GPU group (the default picks
# 16, the most GPUs), checked the same way; a size the database lacks is an
# error naming the sizes it has.
grep -q "16 GPUs" "$FLEXMOE_FIGURES/policies_speedup.json" ||
  { echo "FAIL: policies.ipynb did not pick the 16-GPU group by default" >&2; exit 1; }
python3 "$FLEXMOE_SOURCE_ROOT/notebooks/run.py" --db "$db" --out "$tmp/out" --gpus 8 policies \
  >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log" >&2; echo "FAIL: run.py --gpus 8" >&2; exit 1; }
grep -q "8 GPUs" "$FLEXMOE_FIGURES/policies_speedup.json" ||
  { echo "FAIL: run.py --gpus 8 did not draw 8 GPUs" >&2; exit 1; }
check
if python3 "$FLEXMOE_SOURCE_ROOT/notebooks/run.py" --db "$db" --out "$tmp/out3" --gpus 3 \
  policies >"$tmp/run3.log" 2>&1 || ! grep -q "GPUS = 3: no simulation runs of that size" \
  "$tmp/run3.log" || ! grep -q "sizes there: \[8, 16\]" "$tmp/run3.log"; then
  cat "$tmp/run3.log" >&2; echo "FAIL: run.py --gpus 3 should fail naming the sizes" >&2; exit 1
fi
echo "ok: the policies notebook's size is the parameter GPUS (notebooks/run.py --gpus)"
tree_state | diff "$tmp/tree.before" - >&2 ||
  { echo "FAIL: running the notebooks changed notebooks/ in the tree" >&2; exit 1; }
# No validations yet: the notebook says so and draws nothing.
grep -q "validations table is empty" "$tmp/out/validation.ipynb" ||
  { echo "FAIL: validation.ipynb did not report the empty table" >&2; exit 1; }
[ ! -e "$FLEXMOE_FIGURES/validation_scatter.png" ] ||
  { echo "FAIL: a validation figure from an empty table" >&2; exit 1; }

# A validation pair (fixture: two of the sweep's runs stand for predicted and
# measured) and the notebook draws it.
python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("INSERT INTO validations(predicted_run, measured_run, err_time, err_compute, "
            "err_alltoall) VALUES (1, 2, 0.04, -0.02, 0.10)")
con.commit()
PY
execute validation
expect validation_scatter.png validation_errors.png
check validation
echo "notebooks: 4 executed, $(ls "$FLEXMOE_FIGURES"/*.png | wc -l) figures"
