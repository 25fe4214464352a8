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
The notebooks never write to the database.
"""
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


def save(fig, name):
    """Saves fig as FLEXMOE_FIGURES/name (PNG) and returns the path."""
    path = os.path.join(figures_dir(), name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print("wrote", path)
    return path
