"""flexmoe.simulate is `flexmoe sim --format json`: the same bytes, for every
policy, and the DataFrame holds those values."""
import json
import math

import pandas as pd

import flexmoe


def test_the_package_is_the_installed_one_with_its_library():
    assert "site-packages" in flexmoe.__file__ or "dist-packages" in flexmoe.__file__
    assert flexmoe.version().count(".") == 2


def test_every_policy_gives_the_cli_json_byte_for_byte(sample, cli, policy_names):
    assert len(policy_names) >= 7
    text = flexmoe.simulate_json(sample)  # every registered policy, all 200 iterations
    assert text + "\n" == cli("sim", "--trace", sample, "--no-db", "--format", "json")
    runs = json.loads(text)["runs"]
    assert [r["policy"].split(":")[0] for r in runs] == policy_names


def test_the_dataframe_has_one_row_per_policy_with_the_json_values(sample, cli, policy_names):
    df = flexmoe.simulate(sample, policies=policy_names, iterations=(20, 60), seed=3)
    want = json.loads(cli("sim", "--trace", sample, *sum([["--policy", p] for p in policy_names], []),
                          "--iterations", "20:60", "--seed", "3", "--no-db", "--format", "json"))
    # same keys, order and values (parsed: the C writer spells 7.3575e-5 where Python writes e-05)
    pairs = lambda text: json.loads(text, object_pairs_hook=list)
    assert pairs(df.attrs["json"]) == pairs(json.dumps(want))
    flat = pd.json_normalize(want["runs"])
    assert list(df.columns) == list(flat.columns)
    assert "breakdown_ms.alltoall" in df.columns and "run_id" not in df.columns
    assert len(df) == len(policy_names)
    for col in df.columns:
        for a, b in zip(df[col], flat[col]):
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), col
    assert df.loc[0, "speedup_vs_static"] == 1.0 and (df["iterations"] == 40).all()


def test_des_on_two_nodes_recorded_in_a_database(sample, cli, tmp_path):
    args = dict(cluster="dgx-a100", nodes=2, engine="des", iterations="0:10",
                policies=["static", "eplb", "capacity:cf=1.5"], d_model=1024, top_k=2)
    text = flexmoe.simulate_json(sample, db=str(tmp_path / "py.db"), **args)
    out = cli("sim", "--trace", sample, "--cluster", "dgx-a100", "--nodes", 2, "--engine", "des",
              "--iterations", "0:10", "--policy", "static", "--policy", "eplb", "--policy",
              "capacity:cf=1.5", "--d-model", 1024, "--top-k", 2, "--db", tmp_path / "cli.db",
              "--format", "json")
    assert text + "\n" == out
    recorded = json.loads(text)["runs"]
    assert [r.pop("run_id") for r in recorded] == [1, 2, 3]
    # without a db: no run_id, the same numbers
    assert json.loads(flexmoe.simulate_json(sample, **args))["runs"] == recorded
