"""flexmoe.sweep against `flexmoe sweep`: the same grid stores the same runs,
a second call finds them stored, and bad input raises naming the key."""
import pytest

import flexmoe

GRID = dict(gpus=[8, 16], policies=["static", "flexmoe"], seeds=[0, 3], iterations="0:20")
SAME = ["kind", "policy", "cluster", "engine", "trace", "trace_hash", "config_key", "gpus",
        "seed", "iterations", "mean_ms", "compute_ms", "alltoall_ms", "allreduce_ms",
        "migration_ms", "other_ms", "balance_mean", "bytes_alltoall", "bytes_migrated",
        "tokens_dropped", "tokens_total", "effective_ms"]


def _runs(db):
    runs = flexmoe.results(db).runs
    return runs[SAME].sort_values("config_key").reset_index(drop=True)


def test_sweep_stores_what_the_cli_sweep_stores(sample, cli, tmp_path):
    db_cli, db_py = tmp_path / "cli.db", tmp_path / "py.db"
    cli("sweep", "--trace", sample, "--gpus", "8,16", "--policy", "static", "--policy",
        "flexmoe", "--seeds", "0,3", "--iterations", "0:20", "--db", db_cli, "--quiet")
    df = flexmoe.sweep(sample, db=db_py, jobs=2, **GRID)
    assert len(df) == 8 and set(df["status"]) == {"computed"}
    assert list(df["gpus"]) == [8, 8, 8, 8, 16, 16, 16, 16]
    assert list(df["seed"]) == [0, 0, 3, 3] * 2
    assert list(df["policy"]) == ["static", "flexmoe"] * 4
    assert df["error"].isna().all() and (df["iterations"] == 20).all()
    py = _runs(db_py)
    assert len(py) == 8
    assert py.equals(_runs(db_cli))
    # the points' summaries are the stored runs'
    stored = flexmoe.results(db_py).runs.set_index("id")
    assert (stored.loc[df["run_id"], "mean_ms"].to_numpy() == df["mean_ms"].to_numpy()).all()
    assert df.attrs["summary"]["computed"] == 8

    again = flexmoe.sweep(sample, db=db_py, **GRID)
    assert set(again["status"]) == {"stored"}
    assert list(again["run_id"]) == list(df["run_id"])
    assert len(flexmoe.results(db_py).runs) == 8


def test_bad_sweep_input_raises_naming_the_key(sample, tmp_path):
    db = tmp_path / "bad.db"
    with pytest.raises(flexmoe.ConfigError) as e:
        flexmoe.sweep(sample, gpus=[12], db=db)
    assert str(e.value) == "gpus: 12 is not a multiple of 8 GPUs per node of cluster dgx-h100"
    with pytest.raises(flexmoe.ConfigError) as e:
        flexmoe.sweep(sample, gpus=8, jobs=0, db=db)
    assert str(e.value) == "jobs: 0 is out of range: must be between 1 and 256"
    with pytest.raises(flexmoe.ConfigError, match="policies: unknown policy 'bogus'"):
        flexmoe.sweep(sample, gpus=8, policies=["static", "bogus"], db=db)
    with pytest.raises(flexmoe.ConfigError, match="unknown key 'network'"):
        flexmoe.sweep(sample, gpus=8, network="exact", db=db)
    assert not db.exists() or flexmoe.results(db).runs.empty


def test_keys_lists_the_table(sample):
    k = flexmoe.keys().set_index("name")
    assert k.loc["top_k", "flag"] == "--top-k" and k.loc["top_k", "max"] == 64
    assert k.loc["engine", "choices"] == ["analytic", "des"]
    assert "sweep" in k.loc["gpus", "scope"] and "sim" not in k.loc["gpus", "scope"]
    # every keyword simulate takes is a key of the table
    with pytest.raises(flexmoe.ConfigError) as e:
        flexmoe.simulate(sample, bogus=1)
    listed = str(e.value).split("(keys: ")[1].rstrip(")").split(", ")
    assert listed == [n for n, s in zip(k.index, k["scope"]) if "sim" in s]


def test_commands_lists_the_cli_help(cli):
    c = flexmoe.commands().set_index("name")
    assert list(c.columns) == ["summary", "usage", "tail"]
    # the menu is the table's usage, a line per command, its tail
    menu = cli("--help")
    assert menu.startswith(c.loc["", "usage"]) and menu.endswith(c.loc["", "tail"])
    for name in ["sim", "sweep", "report", "trace", "place", "run", "validate"]:
        assert "  %-10s %s\n" % (name, c.loc[name, "summary"]) in menu
    # a command's --help is its usage, the flags (the keys of its scope), its tail
    for name in ["sim", "trace gen", "report"]:
        text = cli(*name.split(), "--help")
        assert text.startswith(c.loc[name, "usage"]) and text.endswith(c.loc[name, "tail"])
    assert "--top-k K" in cli("sim", "--help")
    assert "\n  hot-experts  " in c.loc["trace gen", "tail"].split("example:")[0]
