"""flexmoe.results reads a database the CLI wrote: runs, iterations and
validations as DataFrames that agree with what the CLI printed."""
import json

import pytest

import flexmoe


def test_runs_and_iterations_of_a_sim_written_by_the_cli(sample, cli, tmp_path):
    db = tmp_path / "r.db"
    out = json.loads(cli("sim", "--trace", sample, "--policy", "static", "--policy", "eplb",
                         "--iterations", "10:40", "--db", db, "--format", "json"))["runs"]
    r = flexmoe.results(db)
    assert list(r.runs["id"]) == [o["run_id"] for o in out] == [1, 2]
    assert list(r.runs["policy"]) == [o["policy"] for o in out]
    assert (r.runs["kind"] == "sim").all() and (r.runs["iterations"] == 30).all()
    for o, (_, row) in zip(out, r.runs.iterrows()):
        assert row["mean_ms"] == pytest.approx(o["mean_iteration_ms"], rel=1e-7)
        assert row["effective_ms"] == pytest.approx(o["effective_iteration_ms"], rel=1e-7)
        assert row["bytes_migrated"] == o["migrated_bytes"]
    assert len(r.iterations) == 60
    assert list(r.iterations.loc[r.iterations.run_id == 2, "iteration"]) == list(range(10, 40))
    means = r.iterations.groupby("run_id")["time_ms"].mean()
    assert list(means) == pytest.approx(list(r.runs["mean_ms"]), rel=1e-12)
    assert r.validations.empty and "err_time" in r.validations.columns


def test_a_validation_written_by_the_cli(sample, cli, tmp_path):
    db = tmp_path / "v.db"
    cli("validate", "--backend", "cpu", "--trace", sample, "--iterations", "0:2", "--d-model", 64,
        "--d-ff", 128, "--tokens-per-gpu", 64, "--slots", 8, "--policy", "static", "--db", db,
        "--format", "json")
    r = flexmoe.results(db)
    assert sorted(r.runs["kind"]) == ["gpu", "sim"]
    assert len(r.validations) == 1
    v = r.validations.iloc[0]
    kind = dict(zip(r.runs["id"], r.runs["kind"]))
    assert kind[v["predicted_run"]] == "sim" and kind[v["measured_run"]] == "gpu"
    mean = dict(zip(r.runs["id"], r.runs["mean_ms"]))
    want = (mean[v["predicted_run"]] - mean[v["measured_run"]]) / mean[v["measured_run"]]
    assert v["err_time"] == pytest.approx(want, rel=1e-6)
