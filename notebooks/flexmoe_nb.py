"""Shared helpers of the flexmoe notebooks: find the results database, read
the policy comparison of `flexmoe report` through the flexmoe package
(flexmoe.report; runs, iterations and validations come from
flexmoe.results), and save figures. The package reads the database through
libflexmoe, read-only.

Environment:
  FLEXMOE_DB       the results database; default: ../flexmoe.db (the
                   repository root, where the quick start and `flexmoe sweep`
                   run from the root write it) if it exists, else flexmoe.db
                   in the current folder.
  FLEXMOE_FIGURES  folder for the PNG figures; default: figures/ next to the
                   notebooks.
The notebooks never write to the database (the package opens it read-only). Beside each figure NAME.png,
save() writes NAME.json: the values the figure draws, read back from the
figure itself (figure_data), so they can be checked against the database
(tests/store/test_notebooks.sh does).
"""
import json
import os

import flexmoe
import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: figures go to files
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def db_path():
    """The database the notebooks read (see the module comment)."""
    env = os.environ.get("FLEXMOE_DB")
    if env:
        return env
    for cand in (os.path.join(HERE, "..", "flexmoe.db"), "flexmoe.db"):
        if os.path.exists(cand):
            return os.path.normpath(cand)
    return os.path.normpath(os.path.join(HERE, "..", "flexmoe.db"))


def figures_dir():
    path = os.environ.get("FLEXMOE_FIGURES") or os.path.join(HERE, "figures")
    os.makedirs(path, exist_ok=True)
    return path


# Runs are compared inside a group: same trace, cluster, engine, iterations
# and size (as `flexmoe report` does).
GROUP = ["kind", "trace_name", "trace_hash", "cluster", "engine", "it_first", "it_end", "gpus"]

# flexmoe.report's columns by the short names the notebooks use.
_REPORT_NAMES = {
    "first_iteration": "it_first", "end_iteration": "it_end", "mean_iteration_ms": "mean_ms",
    "effective_iteration_ms": "effective_ms", "speedup_vs_static": "speedup",
    "balance_mean": "balance", "breakdown_ms.compute": "compute_ms",
    "breakdown_ms.alltoall": "alltoall_ms", "breakdown_ms.allreduce": "allreduce_ms",
    "breakdown_ms.migration": "migration_ms", "breakdown_ms.other": "other_ms",
}


def results(path=None):
    """flexmoe.results of the database: runs, iterations, validations."""
    return flexmoe.results(path or db_path())


def report(kind="sim", path=None):
    """`flexmoe report`'s comparison of the database (flexmoe.report): one row
    per (group, policy), its means over seeds, speedup over static and gap to
    the oracle in effective time (mean / (1 - dropped share of token slots):
    a policy that drops tokens cannot look faster than the work it does),
    NaN where the peer is missing; name = the report's short policy name,
    run_ids = the runs it averages. Columns renamed to the notebooks' short
    names (_REPORT_NAMES), plus trace_name and base_policy."""
    df = flexmoe.report(path or db_path(), kind).rename(columns=_REPORT_NAMES)
    df["trace_name"] = df.trace.map(lambda p: os.path.basename(p) if p else "-")
    df["base_policy"] = df.policy.str.split(":").str[0]
    return df


POLICY_ORDER = ["static", "capacity", "fastermoe", "smartmoe", "eplb", "flexmoe", "oracle"]


def policy_sort_key(policy):
    base = policy.split(":")[0]
    return (POLICY_ORDER.index(base) if base in POLICY_ORDER else len(POLICY_ORDER), policy)


def style(policy):
    """Line style per policy: the oracle bound dashed black, static grey."""
    base = policy.split(":")[0]
    if base == "oracle":
        return dict(color="black", linestyle="--")
    if base == "static":
        return dict(color="grey")
    return {}


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None  # JSON has no NaN or inf


def _nums(a):
    return [_num(v) for v in np.ravel(np.asarray(a, dtype=float))]


def _ticks(axis):
    """{position: label} of an axis' tick labels (categorical bars)."""
    return {round(t.get_position()[0 if axis.axis_name == "x" else 1], 6): t.get_text()
            for t in axis.get_ticklabels() if t.get_text()}


def figure_data(fig):
    """What fig draws, per axes: lines (label, x, y in data coordinates;
    axhline's x in axes fraction), bars (each container's label and, per
    bar, its x tick label, height and bottom), scatter points (label, x, y)
    and images (the array, rows as drawn). Read from the artists, not from
    the notebook's variables. Call it after the figure is drawn (save does):
    tick labels exist only then."""
    out = []
    for ax in fig.get_axes():
        if ax.get_label() == "<colorbar>":
            continue
        ticks = _ticks(ax.xaxis)
        d = {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
             "lines": [], "bars": [], "points": [], "images": []}
        for ln in ax.get_lines():
            d["lines"].append({"label": ln.get_label(), "x": _nums(ln.get_xdata()),
                               "y": _nums(ln.get_ydata())})
        for c in ax.containers:
            if not hasattr(c, "patches"):
                continue
            bars = []
            for r in c.patches:
                x = r.get_x() + r.get_width() / 2
                bars.append({"x": ticks.get(round(x, 6), _num(x)), "height": _num(r.get_height()),
                             "bottom": _num(r.get_y())})
            d["bars"].append({"label": c.get_label(), "bars": bars})
        for col in ax.collections:
            off = np.asarray(col.get_offsets(), dtype=float)
            if off.ndim == 2 and off.shape[0] and col.get_label():
                d["points"].append({"label": col.get_label(), "x": _nums(off[:, 0]),
                                    "y": _nums(off[:, 1])})
        for im in ax.get_images():
            a = np.ma.filled(np.ma.asarray(im.get_array(), dtype=float), np.nan)
            d["images"].append({"shape": list(a.shape), "values": _nums(a)})
        out.append(d)
    return out


def save(fig, name):
    """Saves fig as FLEXMOE_FIGURES/name (PNG) and the values it draws
    (figure_data) beside it as the same name with .json; returns the PNG's
    path."""
    path = os.path.join(figures_dir(), name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"figure": name, "axes": figure_data(fig)}, f)
    plt.close(fig)
    print("wrote", path)
    return path
