"""Shared helpers of the flexmoe notebooks: find and open the results
database read-only, load runs and compare policies the way `flexmoe report`
does, and save figures.

Environment:
  FLEXMOE_DB       the results database; default: ../flexmoe.db (the
                   repository root, where the quick start and `flexmoe sweep`
                   run from the root write it) if it exists, else flexmoe.db
                   in the current folder.
  FLEXMOE_FIGURES  folder for the PNG figures; default: figures/ next to the
                   notebooks.
The notebooks never write to the database. Beside each figure NAME.png,
save() writes NAME.json: the values the figure draws, read back from the
figure itself (figure_data), so they can be checked against the database
(tests/store/test_notebooks.sh does).
"""
import json
import os
import sqlite3

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: figures go to files
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

APPLICATION_ID = 0x464D4F45  # "FMOE", store/include/store/st_store.h
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


def connect(path=None):
    """Opens the database read-only; refuses a file that is not flexmoe's."""
    path = path or db_path()
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no such database (set FLEXMOE_DB, or run `flexmoe sweep` first)")
    # As `flexmoe report` reads: with no writer's log (-wal) or unfinished
    # journal beside it, immutable (no side files, no locks); else read-only.
    quiet = not any(os.path.exists(path + s) for s in ("-wal", "-journal"))
    mode = "mode=ro&immutable=1" if quiet else "mode=ro"
    con = sqlite3.connect(f"file:{os.path.abspath(path)}?{mode}", uri=True)
    try:
        app = con.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not a flexmoe database ({e})") from None
    if app != APPLICATION_ID:
        raise ValueError(f"{path}: not a flexmoe database (application_id {app})")
    return con


def has_table(con, name):
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (name,)).fetchone() is not None


def runs(con, kind="sim"):
    """Complete runs of `kind` with their per-iteration means; a configuration
    stored several times (same config_key) keeps its latest run."""
    df = pd.read_sql_query(
        """SELECT r.id, r.kind, r.policy, c.name AS cluster, r.engine, r.gpus, r.seed,
                  t.path AS trace, t.hash AS trace_hash, r.config_key,
                  count(i.iteration) AS iterations, avg(i.time_ms) AS mean_ms,
                  avg(i.compute_ms) AS compute_ms, avg(i.alltoall_ms) AS alltoall_ms,
                  avg(i.allreduce_ms) AS allreduce_ms, avg(i.migration_ms) AS migration_ms,
                  avg(i.other_ms) AS other_ms, avg(i.balance) AS balance,
                  total(i.tokens_dropped) AS tokens_dropped,
                  total(i.tokens_total) AS tokens_total,
                  min(i.iteration) AS it_first, max(i.iteration) + 1 AS it_end
           FROM runs r LEFT JOIN clusters c ON c.id = r.cluster_id
           LEFT JOIN traces t ON t.id = r.trace_id
           LEFT JOIN iterations i ON i.run_id = r.id
           WHERE r.status = 'complete' AND (? IS NULL OR r.kind = ?)
           GROUP BY r.id ORDER BY r.id""", con, params=(kind, kind))
    keyed = df[df.config_key.notna() & (df.config_key != "")]
    latest = keyed.groupby("config_key").id.max()
    df = df[df.config_key.isna() | (df.config_key == "") | df.id.isin(latest)].copy()
    df["effective_ms"] = effective_ms(df.mean_ms, df.tokens_dropped, df.tokens_total)
    df["trace_name"] = df.trace.fillna("-").map(os.path.basename)
    df["base_policy"] = df.policy.str.split(":").str[0]
    names = short_names(df.policy.unique())
    df["name"] = df.policy.map(names)
    return df.reset_index(drop=True)


def effective_ms(mean_ms, dropped, total):
    """Time per iteration of useful work, as `flexmoe` reports it
    (st_effective_ms in store/st_store.c): mean_ms / (1 - dropped / total)
    with the token slots summed over a run's iterations; mean_ms where
    nothing is dropped or no slots were counted; inf where every slot is
    dropped. It prices dropping as lost throughput only."""
    mean = np.asarray(mean_ms, dtype=float)
    d = np.asarray(dropped, dtype=float)
    t = np.asarray(total, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = mean * t / (t - d)
    return np.where((t <= 0) | (d <= 0), mean, np.where(d >= t, np.inf, eff))


def short_names(specs):
    """{spec: short name}: the base name plus only the parameters that differ
    between the specs of that base (canonical specs list every parameter),
    as `flexmoe report` prints them."""
    out = {}
    by_base = {}
    for s in specs:
        by_base.setdefault(s.split(":")[0], []).append(s)
    for base, group in by_base.items():
        params = [set(s.split(":", 1)[1].split(",")) if ":" in s else set() for s in group]
        common = set.intersection(*params) if params else set()
        for s, p in zip(group, params):
            order = s.split(":", 1)[1].split(",") if ":" in s else []
            diff = [t for t in order if t not in common]
            out[s] = base + (":" + ",".join(diff) if diff else "")
    return out


# Runs are compared inside a group: same trace, cluster, engine, iterations
# and size (as `flexmoe report` does).
GROUP = ["kind", "trace_name", "trace_hash", "cluster", "engine", "it_first", "it_end", "gpus"]


def compare(df):
    """One row per (group, policy): mean over seeds, speedup over static and
    gap to the oracle in the same group (NaN when the peer is missing), both
    over effective time as `flexmoe report` computes them: a policy that
    drops tokens cannot look faster than the work it does."""
    if df.empty:
        return df
    cols = ["mean_ms", "effective_ms", "compute_ms", "alltoall_ms", "allreduce_ms", "migration_ms",
            "other_ms", "balance"]
    agg = {c: (c, "mean") for c in cols}
    agg["runs"] = ("id", "count")
    df = df.fillna({"trace_hash": "", "it_first": 0, "it_end": 0})
    g = (df.groupby(GROUP + ["policy", "base_policy", "name"])
         .agg(**agg).reset_index())

    def peer(name):
        p = g[g.base_policy == name].groupby(GROUP).effective_ms.first()
        return g.set_index(GROUP).index.map(lambda k: p.get(k, float("nan")))

    g["static_ms"] = list(peer("static"))
    g["oracle_ms"] = list(peer("oracle"))
    eff = g.effective_ms
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.isfinite(g.static_ms) & (g.static_ms > 0) & (eff > 0)
        g["speedup"] = np.where(ok, g.static_ms / eff, np.nan)  # 0 when eff is inf
        ok = np.isfinite(g.oracle_ms) & (g.oracle_ms > 0)
        g["oracle_gap"] = np.where(ok, eff / g.oracle_ms - 1, np.nan)
    return g


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
