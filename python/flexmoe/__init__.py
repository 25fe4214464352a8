"""flexmoe: which MoE expert placement policy makes training fastest on a cluster.

The C libraries of flexmoe through their C API (libflexmoe, cffi), no
subprocess:

- simulate(trace, ...): `flexmoe sim --format json` as a pandas DataFrame,
  one row per policy;
- sweep(trace, gpus=[...], db=...): `flexmoe sweep` (a grid of simulations
  recorded in a results database) as a DataFrame, one row per grid point;
- keys(): the table of configuration keys simulate and sweep take (the
  CLI's flags under their Python names: type, range, default, unit, help),
  and the other commands' keys (scope "run", ..., "trace import"; named
  "COMMAND.key");
- results(db): a results database's runs, iterations and validations as
  DataFrames;
- report(db): `flexmoe report`'s policy comparison as a DataFrame;
- trace_loads(db): the per-expert token loads stored for each trace;
- Planner(policy, experts=, gpus=, ...): the placement planner for a
  training framework (observe counts, get plans and each iteration's
  temporaries);
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
from ._planner import Move, Plan, Planner, Temporary

__all__ = ["simulate", "sweep", "keys", "commands", "results", "Results", "report", "trace_loads", "Planner", "Plan", "Move", "Temporary", "capture", "Error",
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


def keys():
    """The table of configuration keys (run/fm_keys.h) as a DataFrame, one
    row per key: name (the keyword of simulate and sweep), flag (the CLI's),
    type, min, max, default, choices, unit, scope (the commands that take
    it: "sim", "sweep", then the CLI's other commands, "run" to "trace
    import", whose keys are named "COMMAND.key") and help. The CLI's flags,
    the JSON requests and these keywords are read from this one table."""
    lib = _lib.lib()
    text = lib.fm_keys_json()
    if text == _lib.ffi.NULL:
        raise MemoryError("flexmoe.keys: out of memory")
    try:
        rows = json.loads(_lib.ffi.string(text).decode())
    finally:
        lib.fm_free(text)
    cols = ["name", "flag", "type", "min", "max", "default", "choices", "unit", "scope", "help"]
    # object columns: the bounds stay exact integers (2^63 - 1), None where none
    return pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in cols})


def commands():
    """The table of the CLI's commands (run/fm_commands.h) as a DataFrame,
    one row per command: name ("sim", "trace info"; "" is flexmoe itself),
    summary (its line in `flexmoe --help`), usage and tail (the prose of its
    --help before and after the flag lines; the flags are the rows of
    keys() whose scope names the command)."""
    lib = _lib.lib()
    text = lib.fm_commands_json()
    if text == _lib.ffi.NULL:
        raise MemoryError("flexmoe.commands: out of memory")
    try:
        rows = json.loads(_lib.ffi.string(text).decode())
    finally:
        lib.fm_free(text)
    return pd.DataFrame(rows, columns=["name", "summary", "usage", "tail"])


def _request(config):
    """The JSON request of keyword arguments (None: absent)."""
    req = {}
    for key, value in config.items():
        if value is None:
            continue
        if key == "iterations":
            value = _iterations(value)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, (tuple, range)):
            value = list(value)
        if isinstance(value, list):
            value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        req[key] = value
    try:
        return json.dumps(req)
    except (TypeError, ValueError) as e:
        raise ConfigError("request: %s" % e) from None


def sweep(trace, gpus, policies=None, seeds=None, db="flexmoe.db", jobs=1, cluster=None,
          **model):
    """Simulates every point of the grid trace(s) x cluster(s) x gpus x seeds
    x policies and records each in the results database db, as `flexmoe
    sweep` does (points already complete in db are skipped, so a sweep
    resumes; duplicates run once).

    trace: a path or a list of them; gpus: cluster sizes in GPUs (an int or
    a list); policies: specs (default the seven of `flexmoe policies`);
    seeds: an int or a list (default 0); db: the results database; jobs:
    worker processes (1 to 256); cluster: a preset or .json, or a list
    (default dgx-h100). model: gpus_per_node, engine, iterations, d_model,
    d_ff, top_k, tokens_per_gpu, slots, profile, lock_wait, plan_moves
    (keys() lists them with their ranges).

    Returns a DataFrame, one row per grid point in grid order: trace,
    cluster, gpus, nodes, gpus_per_node, seed, policy (as given), status
    ("computed", "stored" before this call, "elsewhere", "duplicate",
    "failed", "lost"), error (a failed point's sentence), and the stored
    run: run_id, iterations, mean_ms, effective_ms, compute_ms,
    alltoall_ms, allreduce_ms, migration_ms, other_ms, balance_mean,
    bytes_migrated, tokens_dropped, tokens_total (the columns of
    results(db).runs). df.attrs["summary"] holds the counts. A point that
    fails does not raise: its status and error say why; a bad key or value
    raises ConfigError before anything runs.
    """
    if isinstance(policies, str):
        policies = [policies]
    text = _call(_lib.lib().fm_sweep_json, _request(dict(
        trace=trace, gpus=gpus, policies=policies, seeds=seeds, db=db, jobs=jobs,
        cluster=cluster, **model)))
    doc = json.loads(text)
    t = doc["points"]
    df = pd.DataFrame(t["rows"], columns=t["columns"])
    num = ["mean_ms", "effective_ms", "compute_ms", "alltoall_ms", "allreduce_ms",
           "migration_ms", "other_ms", "balance_mean"]
    df[num] = df[num].astype(float)
    df.attrs["summary"] = doc["summary"]
    return df


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
    profile, network ("hose" or "exact"), threads (1 to 256, default every
    core; same results), db (a results database to record the runs in;
    default none). keys() lists every key
    with its range, default and unit.

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
    engine, trace, ..., mean_ms, effective_ms) and what their configuration
    is beside those (seed, gpus, gpus_per_node, params_json: the stored
    parameters as JSON text, model shape included; compare runs only of one
    configuration, as report(db) does), iterations = their
    iteration rows (run_id, iteration, time_ms, ...), validations = predicted
    vs measured runs and the relative errors."""
    doc = json.loads(_call(_lib.lib().fm_results_json, os.fspath(db)))
    return Results(*(pd.DataFrame(doc[t]["rows"], columns=doc[t]["columns"])
                     for t in ("runs", "iterations", "validations")))


def report(db, kind=None):
    """The policy comparison of the results database db, as `flexmoe report
    --format json` computes it (run/fm_report.h): one row per configuration
    and policy of the complete runs (of kind "sim" or "gpu"; None: both), a
    configuration stored twice counted once. Runs are compared only inside
    a group: the same kind, trace, cluster, GPUs, model shape and every
    other stored parameter, engine, iteration range and seed; never across
    configurations. Columns seed, gpus_per_node, params.* (the stored
    parameters: params.d_model, params.d_ff, params.top_k, ...), config (the
    configuration in words), group and family (group without its size)
    say which; oracle_gap is NaN for a policy that drops tokens (the
    oracle, which processes every token, bounds dropless policies only).

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
        "dropped_tokens", "seed", "gpus_per_node", "params", "config", "group", "family",
        "trace_hash", "name", "run_ids"])
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
