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
notebooks/run.py sets both (--db, --out) and runs the notebooks without
writing into notebooks/.
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


# Runs are compared inside a group of `flexmoe report`: one configuration
# (trace, cluster, GPUs, model shape and every other stored parameter,
# engine, iterations, seed) but the policy; a family is a group without its
# size (the lines of a sweep). Both are columns of report(): group, family,
# and config (the family in words).
GROUP = ["group"]

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
    NaN where the peer is missing (and the oracle gap of a policy that drops
    tokens: the oracle is dropless; one with shadow=0 makes no per-iteration
    copies, so fastermoe's shadows and flexmoe's temporaries can go below it); name = the report's short
    policy name, run_ids = the runs it averages, group / family / config =
    its configuration. Columns renamed to the notebooks' short names
    (_REPORT_NAMES), plus trace_name, base_policy and drops."""
    df = flexmoe.report(path or db_path(), kind).rename(columns=_REPORT_NAMES)
    df["trace_name"] = df.trace.map(lambda p: os.path.basename(p) if p else "-")
    df["base_policy"] = df.policy.str.split(":").str[0]
    df["drops"] = df.dropped_tokens.astype(float) > 0  # no oracle bound for these
    return df


def title(row, gpus=True, width=90):
    """A figure title that carries the configuration of a report row: its
    family in words (trace, cluster, engine, iterations, seed, model shape
    and what else differs; `flexmoe report`'s block header) and, with gpus,
    the cluster size; wrapped to lines of about width characters."""
    import textwrap
    text = row["config"] + (f", {int(row['gpus'])} GPUs" if gpus else "")
    return "\n".join(textwrap.wrap(text, width))


_NICE = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8]


def readable_log_axis(axis, values, fmt="{:g}"):
    """Ticks a log axis at round values inside the range of values (about 4
    to 8 labels: 1, 1.5, 2, 3, 5 ... per decade as the range allows), so
    that it never labels only one or two powers; fmt formats a tick."""
    import matplotlib.ticker as mt
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return
    lo, hi = v.min(), v.max()
    ticks = []
    for subs in ([1], [1, 2, 5], [1, 1.5, 2, 3, 5, 7], _NICE):
        ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1,
                                              int(np.ceil(np.log10(hi))) + 1)
                 for m in subs if lo / 1.15 <= m * 10.0 ** e <= hi * 1.15]
        if len(ticks) >= 4:
            break
    axis.set_major_locator(mt.FixedLocator(ticks))
    axis.set_major_formatter(mt.FuncFormatter(lambda x, _: fmt.format(float(f"{x:.3g}"))))
    axis.set_minor_formatter(mt.NullFormatter())


def clip_spikes(ax, lines, factor=1.5):
    """lines: the y values of each line drawn. When the largest value is over
    factor x the highest of the lines' 99th percentiles (a lone spike would
    flatten every other line), limits the y axis to 1.3 x that percentile
    and says in the axes how many points lie above and the largest; the
    lines keep every value. Otherwise the axis starts at 0. Returns whether
    it clipped."""
    vals = [np.asarray(v, dtype=float) for v in lines]
    vals = [v[np.isfinite(v)] for v in vals]
    vals = [v for v in vals if len(v)]
    if not vals:
        return False
    basis = max(np.percentile(v, 99) for v in vals)
    top_value = max(v.max() for v in vals)
    if basis <= 0 or top_value <= factor * basis:
        ax.set_ylim(bottom=0)
        return False
    top = 1.3 * basis
    ax.set_ylim(0, top)
    n = int(sum((v > top).sum() for v in vals))
    ax.text(0.01, 0.97, f"y axis clipped at {top:.3g} ms: {n} point(s) above it, "
            f"the highest {top_value:.3g} ms", transform=ax.transAxes, ha="left", va="top",
            fontsize=8, color="dimgrey")
    return True


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
    (figure_data) and its suptitle beside it as the same name with .json;
    returns the PNG's path."""
    path = os.path.join(figures_dir(), name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"figure": name, "suptitle": sup, "axes": figure_data(fig)}, f)
    plt.close(fig)
    print("wrote", path)
    return path
