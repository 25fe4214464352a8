"""Bad input through Python: one exception carrying the library's sentence,
which names the file, key or value at fault."""
import pytest

import flexmoe


def test_a_missing_trace_raises_an_oserror_naming_the_file(tmp_path):
    missing = tmp_path / "nope.npy"
    with pytest.raises(flexmoe.InputError) as e:
        flexmoe.simulate(missing)
    assert isinstance(e.value, OSError) and isinstance(e.value, flexmoe.Error)
    assert str(e.value) == "%s: cannot open: No such file or directory" % missing


def test_an_unknown_policy_raises_a_valueerror_naming_it(sample):
    with pytest.raises(flexmoe.ConfigError) as e:
        flexmoe.simulate(sample, policies=["static", "bogus"])
    assert isinstance(e.value, ValueError)
    # named as Python spells the key (the CLI says --policy)
    assert str(e.value).startswith("policies: unknown policy 'bogus'")


def test_a_bad_parameter_raises_a_valueerror_naming_it_and_its_range(sample):
    with pytest.raises(flexmoe.ConfigError) as e:
        flexmoe.simulate(sample, nodes=0)
    assert str(e.value) == "nodes: 0 is out of range: must be between 1 and 65536"
    with pytest.raises(flexmoe.ConfigError, match="top_k: 65 is out of range"):
        flexmoe.simulate(sample, top_k=65)
    with pytest.raises(flexmoe.ConfigError, match="unknown key 'dmodel'"):
        flexmoe.simulate(sample, dmodel=512)
    with pytest.raises(flexmoe.ConfigError, match="engine: 'fast' is not analytic or des"):
        flexmoe.simulate(sample, engine="fast")
    with pytest.raises(flexmoe.ConfigError, match="^iterations: 0:900 is not inside the trace's 0:200"):
        flexmoe.simulate(sample, iterations=(0, 900))
    with pytest.raises(flexmoe.ConfigError, match=r"^tokens_per_gpu must be between 1 and 1073741824"):
        flexmoe.simulate(sample, tokens_per_gpu=2 ** 35)
    with pytest.raises(flexmoe.ConfigError, match="iterations: empty range 5:5"):
        flexmoe.simulate(sample, iterations="5:5")
    with pytest.raises(flexmoe.Error, match="unknown cluster preset .nope."):
        flexmoe.simulate(sample, cluster="nope")


def test_results_of_a_missing_database_raise_naming_it(tmp_path):
    with pytest.raises(flexmoe.InputError, match="no such results database"):
        flexmoe.results(tmp_path / "none.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite")
    with pytest.raises(flexmoe.InputError, match="junk.db"):
        flexmoe.results(junk)
