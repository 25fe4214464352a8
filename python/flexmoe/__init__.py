"""flexmoe: which MoE expert placement policy makes training fastest on a cluster.

The C libraries of flexmoe through their C API (libflexmoe, cffi), no
subprocess:

- simulate(trace, ...): `flexmoe sim --format json` as a pandas DataFrame,
  one row per policy;
- results(db): a results database's runs, iterations and validations as
  DataFrames;
- report(db): `flexmoe report`'s policy comparison as a DataFrame;
- trace_loads(db): the per-expert token loads stored for each trace;
- Planner(policy, experts=, gpus=, ...): the placement planner for a
  training framework (observe counts, get plans);
- capture: the PyTorch hook that records a model's routing as a trace
  (traces/capture/flexmoe_capture.py).

Errors raise ConfigError (a ValueError: a parameter is wrong) or InputError
(an OSError: a file cannot be read or written), both flexmoe.Error, whose
text is the library's one sentence naming what is at fault.
"""
import json
import os
from collections import namedtuple

import pandas as pd

from . import _lib
from . import capture
from ._errors import ConfigError, Error, InputError
from ._planner import Move, Plan, Planner

__all__ = ["simulate", "results", "Results", "report", "trace_loads", "Planner", "Plan", "Move", "capture", "Error",
           "ConfigError", "InputError", "version"]

Results = namedtuple("Results", "runs iterations validations")
Results.__doc__ = "The tables of a results database as pandas DataFrames."


def version():
    """The version of the loaded libflexmoe, e.g. '0.1.0'."""
    return _lib.ffi.string(_lib.lib().fm_version()).decode()


def _call(fn, arg):
    """fn(arg, &result, err, len) -> the result text, or the sentence raised."""
    lib = _lib.lib()
    out = _lib.ffi.new("char **")
    err = _lib.ffi.new("char[]", _lib.ERRLEN)
    rc = fn(arg.encode(), out, err, _lib.ERRLEN)
    if rc != _lib.FM_OK:
        msg = _lib.ffi.string(err).decode(errors="replace")
        raise (ConfigError if rc == _lib.FM_EUSAGE else InputError)(msg)
    try:
        return _lib.ffi.string(out[0]).decode()
    finally:
        lib.fm_free(out[0])


def _iterations(it):
    if it is None or isinstance(it, str):
        return it
    if isinstance(it, range) and it.step == 1:
        return [it.start, it.stop]
    if isinstance(it, (tuple, list)) and len(it) == 2:
        return [None if x is None else int(x) for x in it]
    raise ConfigError("iterations: %r is not a range 'A:B', (A, B) or range(A, B)" % (it,))


def simulate_json(trace, **config):
    """simulate()'s configuration; returns the text `flexmoe sim --format json`
    prints (without its final newline)."""
    req = {"trace": os.fspath(trace)}
    for key, value in config.items():
        if value is None:
            continue
        if key == "iterations":
            value = _iterations(value)
        elif key in ("db", "profile", "cluster") and isinstance(value, os.PathLike):
            value = os.fspath(value)
        req[key] = value
    try:
        text = json.dumps(req)
    except (TypeError, ValueError) as e:
        raise ConfigError("request: %s" % e) from None
    return _call(_lib.lib().fm_simulate_json, text)


def simulate(trace, cluster="dgx-h100", nodes=None, policies=None, engine="analytic",
             iterations=None, seed=None, **model):
    """Simulates training on a routing trace with each placement policy.

    trace: .npy (with its .json sidecar) or .csv; cluster: a preset
    (`flexmoe clusters`) or a cluster .json; nodes: cluster size (default the
    preset's); policies: specs, "name" or "name:key=value,..." (default
    every registered policy); engine: "analytic" or "des"; iterations:
    "A:B", (A, B) or range(A, B) of the trace; seed: 0 to 2^63 - 1 (0).
    model: gpus_per_node, d_model, d_ff, top_k, tokens_per_gpu, slots,
    profile, network ("hose" or "exact"), threads (1 or 2), db (a results
    database to record the runs in; default none).

    Returns a DataFrame, one row per policy, with the columns of
    `flexmoe sim --format json` (breakdown_ms flattened to
    breakdown_ms.compute, ...); df.attrs["json"] holds that JSON text.
    """
    if isinstance(policies, str):
        policies = [policies]
    text = simulate_json(trace, cluster=cluster, nodes=nodes,
                         policies=None if policies is None else list(policies), engine=engine,
                         iterations=iterations, seed=seed, **model)
    df = pd.json_normalize(json.loads(text)["runs"])
    df.attrs["json"] = text
    return df


def results(db):
    """The results database db (a file `flexmoe sim`, `sweep`, `run` or
    `validate` wrote) as Results(runs, iterations, validations), DataFrames:
    runs = the complete runs with their means (id, kind, policy, cluster,
    engine, trace, ..., mean_ms, effective_ms), iterations = their
    iteration rows (run_id, iteration, time_ms, ...), validations = predicted
    vs measured runs and the relative errors."""
    doc = json.loads(_call(_lib.lib().fm_results_json, os.fspath(db)))
    return Results(*(pd.DataFrame(doc[t]["rows"], columns=doc[t]["columns"])
                     for t in ("runs", "iterations", "validations")))


def report(db, kind=None):
    """The policy comparison of the results database db, as `flexmoe report
    --format json` computes it (run/fm_report.h): one row per (kind, trace,
    cluster, engine, iterations, gpus, policy) of the complete runs (of kind
    "sim" or "gpu"; None: both), a configuration stored twice counted once.

    Columns: those of the command's JSON rows (mean_iteration_ms,
    effective_iteration_ms, speedup_vs_static and oracle_gap in effective
    time, breakdown_ms.compute, ..., balance_mean), iteration_range split
    into first_iteration and end_iteration, plus trace_hash, name (the
    table's short policy name) and run_ids (the runs a row averages: ids of
    results(db).runs). Missing peers and infinite times are NaN.
    """
    text = _call(lambda path, out, err, n: _lib.lib().fm_report_json(
        path, _lib.ffi.NULL if kind is None else str(kind).encode(), out, err, n), os.fspath(db))
    rows = json.loads(text)["rows"]
    df = pd.json_normalize(rows) if rows else pd.DataFrame(columns=[
        "kind", "trace", "cluster", "engine", "iteration_range", "gpus", "policy", "runs",
        "iterations", "mean_iteration_ms", "effective_iteration_ms", "speedup_vs_static",
        "oracle_gap", "breakdown_ms.compute", "breakdown_ms.alltoall", "breakdown_ms.allreduce",
        "breakdown_ms.migration", "breakdown_ms.other", "balance_mean", "migrated_bytes",
        "dropped_tokens", "trace_hash", "name", "run_ids"])
    at = df.columns.get_loc("iteration_range")
    rng = list(df.pop("iteration_range"))
    df.insert(at, "end_iteration", [r[1] for r in rng])
    df.insert(at, "first_iteration", [r[0] for r in rng])
    num = ["mean_iteration_ms", "effective_iteration_ms", "speedup_vs_static", "oracle_gap",
           "balance_mean"] + [c for c in df.columns if c.startswith("breakdown_ms.")]
    df[num] = df[num].astype(float)
    return df


def trace_loads(db):
    """The token loads `flexmoe sweep` stores for each trace it runs, of the
    results database db, as a DataFrame: trace (path), trace_hash,
    iteration, layer, expert, tokens (token slots summed over the
    data-parallel ranks); empty when none are stored."""
    doc = json.loads(_call(_lib.lib().fm_trace_loads_json, os.fspath(db)))
    return pd.DataFrame(doc["rows"], columns=doc["columns"])
