"""Checks that the notebooks' figures draw the database's numbers.

Usage: check_figures.py FIGURES DB REPORT_JSON TRACE_NPY [validation]

notebooks/flexmoe_nb.save writes beside each figure NAME.png the values it
draws, read back from the figure's artists (NAME.json). This script
recomputes each figure's values on its own, from the database (plain SQL,
not flexmoe_nb), from `flexmoe report --format json` and from the trace
file, and compares them: every line, bar, point and image cell. With
`validation` it checks the validation figures instead (the test inserts a
validations row first). Exits 1 naming the first value that differs.
"""
import json
import math
import os
import re
import sqlite3
import sys

import numpy as np

FIG, DB, REPORT, TRACE = sys.argv[1:5]
VALIDATION = len(sys.argv) > 5 and sys.argv[5] == "validation"
con = sqlite3.connect(f"file:{DB}?mode=ro", uri=True)
report = json.load(open(REPORT))["rows"]
checked = 0


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def same(a, b, what, rel=1e-9):
    """a (drawn) equals b (recomputed) to rel; None (NaN/inf drawn) only
    for a non-finite b."""
    global checked
    checked += 1
    b = None if b is None else float(b)
    if a is None or b is None or not math.isfinite(b):
        if not (a is None and (b is None or not math.isfinite(b))):
            fail(f"{what}: drawn {a}, database {b}")
        return
    if not math.isclose(a, b, rel_tol=rel, abs_tol=1e-12):
        fail(f"{what}: drawn {a!r}, database {b!r}")


def same_list(a, b, what, rel=1e-9):
    if len(a) != len(b):
        fail(f"{what}: {len(a)} values drawn, {len(b)} in the database")
    for i, (x, y) in enumerate(zip(a, b)):
        same(x, y, f"{what}[{i}]", rel)


def figure(name):
    path = os.path.join(FIG, name + ".json")
    if not os.path.exists(path):
        fail(f"{path}: no figure data (flexmoe_nb.save writes it beside the PNG)")
    return json.load(open(path))["axes"]


def drawn(items):
    """Artists the notebook labelled (matplotlib names the others _child...)."""
    return [x for x in items if not x["label"].startswith("_")]


def base(policy):
    return policy.split(":")[0]


def gpus_in(title):
    m = re.search(r"(\d+) GPUs", title)
    if not m:
        fail(f"no GPU count in the title {title!r}")
    return int(m.group(1))


def d_model_in(title):
    """The model width a figure's title names (its configuration)."""
    m = re.search(r"d_model=(\d+)", title)
    if not m:
        fail(f"no model shape (d_model=) in the title {title!r}")
    return int(m.group(1))


def sim_runs(gpus=None, d_model=None):
    """{run id: policy} of the complete simulation runs (at gpus, of the
    model width d_model: the database holds two shapes)."""
    q = ("SELECT id, policy, gpus, json_extract(params_json, '$.d_model') FROM runs "
         "WHERE kind = 'sim' AND status = 'complete'")
    return {i: p for i, p, g, d in con.execute(q)
            if (gpus is None or g == gpus) and (d_model is None or d == d_model)}


def report_row(policy_base, gpus, d_model):
    rows = [r for r in report if base(r["policy"]) == policy_base and r["gpus"] == gpus
            and r["params"]["d_model"] == d_model]
    if len(rows) != 1:
        fail(f"report: {len(rows)} rows for {policy_base} at {gpus} GPUs, d_model {d_model}")
    return rows[0]


def check_policies():
    # iteration time per iteration, one line per policy of the shown size
    (ax,) = figure("policies_iteration_time")
    gpus, dm = gpus_in(ax["title"]), d_model_in(ax["title"])
    runs = sim_runs(gpus, dm)
    lines = drawn(ax["lines"])
    if sorted(l["label"] for l in lines) != sorted(base(p) for p in runs.values()):
        fail(f"policies_iteration_time: lines {[l['label'] for l in lines]}, runs "
             f"{sorted(runs.values())} at {gpus} GPUs")
    for l in lines:
        (rid,) = [i for i, p in runs.items() if base(p) == l["label"]]
        rows = con.execute("SELECT iteration, time_ms FROM iterations WHERE run_id = ? "
                           "ORDER BY iteration", (rid,)).fetchall()
        same_list(l["x"], [r[0] for r in rows], f"policies_iteration_time {l['label']} x", 0)
        same_list(l["y"], [r[1] for r in rows], f"policies_iteration_time {l['label']} y", 0)
    # speedup over static: bars of the real policies, the oracle's as a line
    (ax,) = figure("policies_speedup")
    if gpus_in(ax["title"]) != gpus or d_model_in(ax["title"]) != dm:
        fail("policies_speedup shows another configuration than policies_iteration_time")
    (bars,) = ax["bars"]
    names = [b["x"] for b in bars["bars"]]
    if sorted(names) != sorted(base(p) for p in runs.values() if base(p) != "oracle"):
        fail(f"policies_speedup: bars {names}")
    for b in bars["bars"]:
        same(b["height"], report_row(b["x"], gpus, dm)["speedup_vs_static"],
             f"policies_speedup {b['x']}", 1e-8)
    (orc,) = [l for l in drawn(ax["lines"]) if l["label"].startswith("oracle bound")]
    same_list(orc["y"], [report_row("oracle", gpus, dm)["speedup_vs_static"]] * 2,
              "policies_speedup oracle line", 1e-8)
    # breakdown: stacked bars, each phase's mean over the run's iterations
    (ax,) = figure("policies_breakdown")
    phases = [c["label"] for c in ax["bars"]]
    if phases != ["compute", "alltoall", "allreduce", "migration", "other"]:
        fail(f"policies_breakdown: phases {phases}")
    bottom = {}
    for c in ax["bars"]:
        for b in c["bars"]:
            (rid,) = [i for i, p in runs.items() if base(p) == b["x"]]
            (mean,) = con.execute(f"SELECT avg({c['label']}_ms) FROM iterations WHERE run_id = ?",
                                  (rid,)).fetchone()
            same(b["height"], mean, f"policies_breakdown {b['x']} {c['label']}")
            same(b["bottom"], bottom.get(b["x"], 0.0), f"policies_breakdown {b['x']} stack")
            bottom[b["x"]] = bottom.get(b["x"], 0.0) + mean


def check_sweep():
    """One figure per model shape (the database holds two), each drawing
    only the runs of the shape its title names."""
    shapes = sorted({d for (d,) in con.execute(
        "SELECT DISTINCT json_extract(params_json, '$.d_model') FROM runs WHERE kind = 'sim'")})
    drawn_shapes = []
    for n in range(len(shapes)):
        fig = json.load(open(os.path.join(FIG, ("sweep_speedup" if n == 0 else
                                                 f"sweep_speedup_{n}") + ".json")))
        dm = d_model_in(fig["suptitle"])
        drawn_shapes.append(dm)
        left, right = fig["axes"]
        for ax, key in ((left, "speedup_vs_static"), (right, "effective_iteration_ms")):
            lines = drawn(ax["lines"])
            if sorted(l["label"] for l in lines) != sorted({base(p) for p in
                                                            sim_runs(None, dm).values()}):
                fail(f"sweep_speedup d_model {dm}: lines {[l['label'] for l in lines]}")
            for l in lines:
                sizes = sorted({r["gpus"] for r in report if base(r["policy"]) == l["label"]
                                and r["params"]["d_model"] == dm})
                same_list(l["x"], sizes, f"sweep_speedup {dm} {l['label']} GPUs", 0)
                same_list(l["y"], [report_row(l["label"], g, dm)[key] for g in sizes],
                          f"sweep_speedup {dm} {l['label']} {key}", 1e-8)
    if sorted(drawn_shapes) != shapes:
        fail(f"sweep figures of d_model {drawn_shapes}, database {shapes}")


def trace_counts():
    """The trace file's counts summed over ranks: [iteration, layer, expert]."""
    c = np.load(TRACE, mmap_mode="r")
    return np.asarray(c, dtype=np.int64).sum(axis=2) if c.ndim == 4 else np.asarray(c)


def check_traces():
    tag = os.path.splitext(os.path.basename(TRACE))[0]
    rows = con.execute("SELECT l.iteration, l.layer, l.expert, l.tokens FROM trace_loads l "
                       "JOIN traces t ON t.id = l.trace_id").fetchall()
    if not rows:
        fail("trace_loads is empty")
    its = sorted({r[0] for r in rows})
    layers = sorted({r[1] for r in rows})
    experts = sorted({r[2] for r in rows})
    loads = np.zeros((len(its), len(layers), len(experts)))
    for it, ly, e, tok in rows:
        loads[its.index(it), layers.index(ly), experts.index(e)] = tok
    # the database's loads are the trace's
    full = trace_counts()
    for i, it in enumerate(its):
        if not np.array_equal(loads[i], full[it][layers][:, experts]):
            fail(f"trace_loads of iteration {it} differ from {TRACE}")
    axes = figure(f"traces_heatmap_{tag}")
    if len(axes) != len(layers):
        fail(f"traces_heatmap: {len(axes)} panels for {len(layers)} layers")
    for ax, ly in zip(axes, layers):
        if ax["title"] != f"layer {ly}":
            fail(f"traces_heatmap: panel {ax['title']!r}, want layer {ly}")
        (im,) = ax["images"]
        share = loads[:, layers.index(ly), :]
        share = share / share.sum(axis=1, keepdims=True)
        if im["shape"] != [len(experts), len(its)]:
            fail(f"traces_heatmap layer {ly}: image {im['shape']}")
        same_list(im["values"], list(share.T.ravel()), f"traces_heatmap layer {ly}", 1e-12)
    imb, fluct = figure(f"traces_imbalance_{tag}")
    for ax, what in ((imb, "imbalance"), (fluct, "fluctuation")):
        lines = drawn(ax["lines"])
        if [l["label"] for l in lines] != [f"layer {ly}" for ly in layers]:
            fail(f"traces_imbalance {what}: lines {[l['label'] for l in lines]}")
        for l, ly in zip(lines, layers):
            m = loads[:, layers.index(ly), :]
            if what == "imbalance":
                x, y = its, m.max(axis=1) / m.mean(axis=1)
            else:
                p = m / m.sum(axis=1, keepdims=True)
                x, y = its[1:], 0.5 * np.abs(np.diff(p, axis=0)).sum(axis=1)
            same_list(l["x"], x, f"traces_imbalance {what} layer {ly} x", 0)
            same_list(l["y"], list(y), f"traces_imbalance {what} layer {ly} y", 1e-12)


def check_validation():
    (ax,) = figure("validation_scatter")
    val = con.execute("SELECT v.predicted_run, v.measured_run, p.policy, v.err_time, "
                      "v.err_compute, v.err_alltoall, v.err_allreduce, v.err_migration, "
                      "v.err_other FROM validations v JOIN runs p ON p.id = v.predicted_run "
                      "ORDER BY v.id").fetchall()
    pts = ax["points"]
    if sorted(p["label"] for p in pts) != sorted({v[2] for v in val}):
        fail(f"validation_scatter: series {[p['label'] for p in pts]}")
    for p in pts:
        mine = [v for v in val if v[2] == p["label"]]
        mean = lambda run: con.execute("SELECT avg(time_ms) FROM iterations WHERE run_id = ?",
                                       (run,)).fetchone()[0]
        same_list(p["x"], [mean(v[1]) for v in mine], f"validation_scatter {p['label']} measured")
        same_list(p["y"], [mean(v[0]) for v in mine], f"validation_scatter {p['label']} predicted")
    # one validation: every line of box k (whiskers, caps, box, median)
    # sits at the phase's error in percent
    (ax,) = figure("validation_errors")
    phases = [(i, [v[3 + i] for v in val if v[3 + i] is not None]) for i in range(6)]
    phases = [(i, e) for i, e in phases if e]
    if len(val) != 1:
        fail("validation_errors: the check knows the one-validation case only")
    for k, (i, errs) in enumerate(phases, start=1):
        ys = [y for l in ax["lines"] if l["x"] and all(abs(x - k) < 0.5 for x in l["x"])
              for y in l["y"]]
        if not ys:
            fail(f"validation_errors: nothing drawn for phase {i} at box {k}")
        same_list(ys, [100 * errs[0]] * len(ys), f"validation_errors box {k}")


if VALIDATION:
    check_validation()
else:
    check_policies()
    check_sweep()
    check_traces()
print(f"ok: the figures draw the database's values ({checked} values compared)")
