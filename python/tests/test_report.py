"""flexmoe.report is `flexmoe report --format json`'s comparison, and
flexmoe.trace_loads the loads `flexmoe sweep` stores, of a database the CLI
wrote (what the notebooks draw)."""
import json

import numpy as np
import pytest

import flexmoe


@pytest.fixture(scope="module")
def swept(sample, cli, tmp_path_factory):
    db = tmp_path_factory.mktemp("report") / "s.db"
    cli("sweep", "--trace", sample, "--policy", "static", "--policy", "capacity", "--policy",
        "oracle:max_steps=4", "--gpus", "8,16", "--iterations", "0:6", "--db", db, "--quiet")
    return db


def test_report_rows_are_the_commands(swept, cli):
    want = json.loads(cli("report", "--db", swept, "--format", "json"))["rows"]
    got = flexmoe.report(swept)
    assert list(got.policy) == [r["policy"] for r in want] and list(got.gpus) == [8] * 3 + [16] * 3
    assert list(got["name"]) == ["static", "capacity", "oracle"] * 2
    for r, (_, g) in zip(want, got.iterrows()):
        assert [g.first_iteration, g.end_iteration] == r["iteration_range"] == [0, 6]
        for key in ("mean_iteration_ms", "effective_iteration_ms", "speedup_vs_static",
                    "oracle_gap", "balance_mean"):
            if r[key] is None:  # capacity drops tokens: no gap to the (dropless) oracle
                assert np.isnan(g[key]) and key == "oracle_gap" and g.dropped_tokens > 0, key
            else:
                assert g[key] == pytest.approx(r[key], rel=1e-8), key
        assert (g.seed, g["params.d_model"], g.config) == (r["seed"], r["params"]["d_model"],
                                                           r["config"])
        assert g["breakdown_ms.alltoall"] == pytest.approx(r["breakdown_ms"]["alltoall"], rel=1e-8)
        assert g.dropped_tokens == r["dropped_tokens"] and len(g.run_ids) == r["runs"] == 1
    assert (got[got.policy == "capacity"].effective_iteration_ms >
            got[got.policy == "capacity"].mean_iteration_ms).all()  # capacity drops tokens
    runs = flexmoe.results(swept).runs
    assert sorted(i for ids in got.run_ids for i in ids) == sorted(runs.id)
    assert flexmoe.report(swept, kind="gpu").empty


def test_two_model_shapes_are_compared_apart(sample, cli, tmp_path):
    """Issue 18: a second model shape in the same database is its own
    configuration: its own static and oracle, never averaged with the first,
    and no dropless policy below its own oracle."""
    db = tmp_path / "two.db"
    for shape in ([], ["--d-model", "1024", "--d-ff", "4096"]):
        cli("sweep", "--trace", sample, "--policy", "static", "--policy", "flexmoe", "--policy",
            "oracle", "--gpus", "8", "--iterations", "0:4", "--db", db, "--quiet", *shape)
    got = flexmoe.report(db)
    assert sorted(got["params.d_model"]) == [384] * 3 + [1024] * 3 and (got.runs == 1).all()
    for dm, d in got.groupby("params.d_model"):
        assert d.group.nunique() == 1 and d.config.str.contains("d_model=%d," % dm).all()
        static = d[d.policy == "static"].effective_iteration_ms.item()
        oracle = d[d.policy.str.startswith("oracle")].effective_iteration_ms.item()
        assert d.speedup_vs_static.to_numpy() == pytest.approx(
            static / d.effective_iteration_ms.to_numpy(), rel=1e-8)
        assert (d.oracle_gap >= 0).all() and (d.effective_iteration_ms >= oracle).all()
    assert got.group.nunique() == 2


def test_trace_loads_are_the_traces_counts(swept, sample):
    loads = flexmoe.trace_loads(swept)
    c = np.load(sample)
    counts = c.sum(axis=2) if c.ndim == 4 else c  # [iteration, layer, expert]
    its = sorted(loads.iteration.unique())
    assert set(loads.trace) == {sample} and len(loads) == len(its) * counts.shape[1] * counts.shape[2]
    cube = loads.sort_values(["iteration", "layer", "expert"]).tokens.to_numpy()
    assert np.array_equal(cube.reshape(len(its), *counts.shape[1:]), counts[its])


def test_bad_kind_and_missing_database(swept, tmp_path):
    with pytest.raises(flexmoe.ConfigError, match="kind: 'x' is not one of sim gpu"):
        flexmoe.report(swept, kind="x")
    with pytest.raises(flexmoe.InputError, match="no such results database"):
        flexmoe.trace_loads(tmp_path / "none.db")
